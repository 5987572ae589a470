"use strict";
/** Errors of the bm2 client: the daemon's own (`code` as the daemon sends it) and the client's. */
Object.defineProperty(exports, "__esModule", { value: true });
exports.Bm2Error = void 0;
/** An error from the daemon or the client. `code` is stable and machine-readable. */
class Bm2Error extends Error {
    /** Stable code: `unknown_target`, `invalid_app`, `not_running`... as the daemon sends it;
     * `daemon_unreachable`, `daemon_start_failed`, `bad_response` from this client. */
    code;
    /** What the user can do about it, when the daemon says. */
    hint;
    /** HTTP status of the daemon's answer (absent for client-side errors). */
    status;
    /** Every error of an action that failed for some instances (the first one is this error). */
    errors;
    /** The instances an action still applied to, when it failed for others. */
    processes;
    constructor(code, message, extra = {}) {
        super(message);
        this.name = "Bm2Error";
        this.code = code;
        if (extra.hint !== undefined)
            this.hint = extra.hint;
        if (extra.status !== undefined)
            this.status = extra.status;
        this.errors = extra.errors ?? [{ code, message, ...(extra.hint ? { hint: extra.hint } : {}) }];
        this.processes = extra.processes ?? [];
        if (extra.cause !== undefined)
            this.cause = extra.cause;
    }
    /** The error the daemon sent in a body `{code, message, hint?}`. */
    static fromBody(body, status) {
        return new Bm2Error(body.code, body.message, { hint: body.hint, status });
    }
}
exports.Bm2Error = Bm2Error;
