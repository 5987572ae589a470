"use strict";
/** bm2's JavaScript/TypeScript client: `ProcessManager`, `Dashboard`, `Bm2Error`. */
var __createBinding = (this && this.__createBinding) || (Object.create ? (function(o, m, k, k2) {
    if (k2 === undefined) k2 = k;
    var desc = Object.getOwnPropertyDescriptor(m, k);
    if (!desc || ("get" in desc ? !m.__esModule : desc.writable || desc.configurable)) {
      desc = { enumerable: true, get: function() { return m[k]; } };
    }
    Object.defineProperty(o, k2, desc);
}) : (function(o, m, k, k2) {
    if (k2 === undefined) k2 = k;
    o[k2] = m[k];
}));
var __exportStar = (this && this.__exportStar) || function(m, exports) {
    for (var p in m) if (p !== "default" && !Object.prototype.hasOwnProperty.call(exports, p)) __createBinding(exports, m, p);
};
Object.defineProperty(exports, "__esModule", { value: true });
exports.EventStream = exports.Bm2Error = exports.Dashboard = exports.ProcessManager = void 0;
var process_manager_1 = require("./process-manager");
Object.defineProperty(exports, "ProcessManager", { enumerable: true, get: function () { return process_manager_1.ProcessManager; } });
var dashboard_1 = require("./dashboard");
Object.defineProperty(exports, "Dashboard", { enumerable: true, get: function () { return dashboard_1.Dashboard; } });
var errors_1 = require("./errors");
Object.defineProperty(exports, "Bm2Error", { enumerable: true, get: function () { return errors_1.Bm2Error; } });
var events_1 = require("./events");
Object.defineProperty(exports, "EventStream", { enumerable: true, get: function () { return events_1.EventStream; } });
__exportStar(require("./types"), exports);
