/** The daemon's event stream (`POST /v1/events`) as an EventEmitter and an async iterator. */
import { EventEmitter } from "node:events";
import type * as http from "node:http";
import { Transport } from "./transport";
import type { Bm2Event } from "./types";
/** What to subscribe to. */
export interface EventsOptions {
    /** Also stream the apps' output lines (`log:out`, `log:err`). */
    logs?: boolean;
    /** Only these processes (ids, names, namespaces, `all`); none = every process. */
    targets?: string | number | Array<string | number>;
}
/**
 * A live subscription. Emits each message under its `type` (`process:event`, `log:out`,
 * `log:err`, `process:msg`, `lagged`) and under `event`; `error` when the connection fails;
 * `close` once it ended (the daemon stopped, or `close()`). Iterate it with `for await`.
 */
export declare class EventStream extends EventEmitter {
    private res;
    private closed;
    private finished;
    private queue;
    private waiters;
    private iterating;
    /** @internal */
    attach(res: http.IncomingMessage, onSubscribed: () => void, onFail: (e: Error) => void): void;
    private deliver;
    private fail;
    private finish;
    /** Ends the subscription (idempotent). */
    close(): void;
    /** True once the subscription ended. */
    get isClosed(): boolean;
    [Symbol.asyncIterator](): AsyncIterator<Bm2Event>;
}
/** Subscribes; resolves once the daemon confirmed the subscription is live. */
export declare function subscribe(t: Transport, opts?: EventsOptions): Promise<EventStream>;
/** Targets as the API takes them: strings. */
export declare function targetList(t: string | number | Array<string | number>): string[];
