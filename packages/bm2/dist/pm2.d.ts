/**
 * PM2's programmatic API over bm2: a script written for `require('pm2')` works with
 * `require('bm2/pm2')`. Callbacks are `(err, result)`; without a callback a method returns a
 * promise. See docs/api.md for what maps and what does not.
 */
import { EventEmitter } from "node:events";
import { EventStream } from "./events";
import { Target } from "./process-manager";
import { Pm2Process } from "./pm2-shape";
import type { AppOptions, PingResponse } from "./types";
export type { Pm2Process, Pm2Env } from "./pm2-shape";
/** PM2's callback. */
export type Callback<T = unknown> = (err: Error | null, result?: T) => void;
/**
 * Connects to the daemon, starting it when it is not running. `noDaemon` (PM2's in-process
 * mode) does not exist in bm2: passing true is an error.
 */
export declare function connect(noDaemon?: boolean | Callback<PingResponse>, cb?: Callback<PingResponse>): Promise<PingResponse> | void;
/** Closes this client's connections (buses); the daemon and its apps keep running. */
export declare function disconnect(cb?: Callback<void>): Promise<void> | void;
/** Options of `start(script, opts)` that steer the start rather than describe the app. */
interface StartExtra {
    force?: boolean;
}
/**
 * Starts apps: `start(script, [opts], cb)`, `start(options, cb)`, `start({apps: [...]}, cb)`,
 * `start([options...], cb)` or `start('ecosystem.config.js', [{env: 'production'}], cb)`. Apps
 * of an ecosystem that are running already are restarted, as PM2 does; a single script whose
 * name is taken is refused unless `force` is set.
 */
export declare function start(what: string | AppOptions | AppOptions[] | {
    apps: AppOptions[];
}, opts?: (Partial<AppOptions> & StartExtra) | Callback<Pm2Process[]>, cb?: Callback<Pm2Process[]>): Promise<Pm2Process[]> | void;
/** Every process, in PM2's shape (`pm2 jlist`). */
export declare function list(cb?: Callback<Pm2Process[]>): Promise<Pm2Process[]> | void;
/** The matching processes, in PM2's shape. */
export declare function describe(target: Target, cb?: Callback<Pm2Process[]>): Promise<Pm2Process[]> | void;
type ActionOpts = {
    updateEnv?: boolean;
} | Callback<Pm2Process[]>;
/** Stops processes (name, id, namespace or 'all'). */
export declare function stop(target: Target | Target[], opts?: ActionOpts, cb?: Callback<Pm2Process[]>): void | Promise<Pm2Process[]>;
/** Restarts processes; `{updateEnv: true}` gives them this process's environment. */
export declare function restart(target: Target | Target[], opts?: ActionOpts, cb?: Callback<Pm2Process[]>): void | Promise<Pm2Process[]>;
/** Reloads processes without downtime; `{updateEnv: true}` as for restart. */
export declare function reload(target: Target | Target[], opts?: ActionOpts, cb?: Callback<Pm2Process[]>): void | Promise<Pm2Process[]>;
/** Stops processes and forgets them. */
declare function del(target: Target | Target[], opts?: ActionOpts, cb?: Callback<Pm2Process[]>): void | Promise<Pm2Process[]>;
export { del as delete };
/**
 * Sends `packet` (`{topic, data}`) to process `id`, which receives `{type: 'process:msg',
 * topic, data}` with `process.on('message')`. Also `sendDataToProcessId({id, topic, data}, cb)`.
 */
export declare function sendDataToProcessId(id: Target | {
    id: Target;
    topic: string;
    data: unknown;
}, packet?: {
    topic: string;
    data: unknown;
    [k: string]: unknown;
} | Callback<unknown>, cb?: Callback<unknown>): Promise<unknown> | void;
/** Saves the process list for `resurrect` (PM2's `dump`). */
export declare function dump(cb?: Callback<unknown>): Promise<unknown> | void;
/** Restarts the processes of the dump file. */
export declare function resurrect(cb?: Callback<Pm2Process[]>): Promise<Pm2Process[]> | void;
/** Stops every process and the daemon. */
export declare function killDaemon(cb?: Callback<unknown>): Promise<unknown> | void;
/**
 * PM2's bus: an EventEmitter of PM2's packets — `process:event` `{event, manually, process,
 * at}`, `log:out` / `log:err` `{process, data, at}` (data ends with a newline),
 * `process:msg` `{process, data, topic?, at}`. Listeners may use wildcards, as on PM2's bus:
 * `bus.on('log:*', (kind, packet) => ...)`, `bus.on('*', (event, packet) => ...)`.
 */
export declare class Pm2Bus extends EventEmitter {
    private stream;
    /** @internal */
    attach(stream: EventStream): void;
    private relay;
    private publish;
    /** Ends the subscription. */
    close(): void;
}
/** Subscribes to the daemon's events with logs; `cb(err, bus)` once it is live. */
export declare function launchBus(cb?: Callback<Pm2Bus>): Promise<Pm2Bus> | void;
/** Closes the buses this client opened. */
export declare function disconnectBus(cb?: Callback<void>): Promise<void> | void;
