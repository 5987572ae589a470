/** Errors of the bm2 client: the daemon's own (`code` as the daemon sends it) and the client's. */
/** An error from the daemon or the client. `code` is stable and machine-readable. */
export declare class Bm2Error extends Error {
    /** Stable code: `unknown_target`, `invalid_app`, `not_running`... as the daemon sends it;
     * `daemon_unreachable`, `daemon_start_failed`, `bad_response` from this client. */
    readonly code: string;
    /** What the user can do about it, when the daemon says. */
    readonly hint?: string;
    /** HTTP status of the daemon's answer (absent for client-side errors). */
    readonly status?: number;
    /** Every error of an action that failed for some instances (the first one is this error). */
    readonly errors: ApiErrorBody[];
    /** The instances an action still applied to, when it failed for others. */
    readonly processes: unknown[];
    constructor(code: string, message: string, extra?: {
        hint?: string;
        status?: number;
        errors?: ApiErrorBody[];
        processes?: unknown[];
        cause?: unknown;
    });
    /** The error the daemon sent in a body `{code, message, hint?}`. */
    static fromBody(body: ApiErrorBody, status?: number): Bm2Error;
}
/** An error as the daemon sends it. */
export interface ApiErrorBody {
    code: string;
    message: string;
    hint?: string;
}
