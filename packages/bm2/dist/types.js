"use strict";
/** The values the daemon's API sends and takes (see docs/api.md). */
Object.defineProperty(exports, "__esModule", { value: true });
