/** `ProcessManager`: the daemon's processes, metrics and events, promise-based. */
import { EventStream, EventsOptions } from "./events";
import { ConnectionOptions, Transport } from "./transport";
import type { AppOptions, LogLine, MetricsHistory, MetricsSnapshot, PingResponse, ProcDetail, ProcSummary, SaveResponse, StartFlags } from "./types";
/** A process, by id, name, namespace, `all`, script or `/regex/`. */
export type Target = string | number;
/** Options of a `ProcessManager`. */
export interface ProcessManagerOptions extends ConnectionOptions {
    /**
     * Called with what the daemon wants the caller to know about an action that succeeded (an
     * option it ignored, a reload that had to be a restart). Default: `process.emitWarning`.
     */
    onNotice?: (notice: string) => void;
}
/** Options of `logs()`. */
export interface LogsOptions {
    /** Recent lines per stream and instance (default 15). */
    lines?: number;
    /** Include stdout (default true). */
    out?: boolean;
    /** Include stderr (default true). */
    err?: boolean;
}
/** What `sendDataToProcessId()` sends: the app receives `{type: 'process:msg', topic, data}`. */
export interface DataPacket {
    topic?: string;
    data: unknown;
}
/**
 * A client of the bm2 daemon of one home (`$BM2_HOME`, else `~/.bm2`). The daemon is started
 * (with `bm2 ping`) when it is not running. Every method returns a promise; a failure is a
 * `Bm2Error` with the daemon's `code`.
 */
export declare class ProcessManager {
    /** @internal */
    readonly transport: Transport;
    private readonly onNotice;
    private readonly streams;
    constructor(opts?: ProcessManagerOptions);
    /** The daemon's home directory. */
    get home(): string;
    /** The bm2 binary that starts the daemon. */
    get bin(): string;
    /**
     * Registers and starts apps from their options (as in an ecosystem file). Relative paths
     * resolve as in an ecosystem file that sits in `flags.cwd` (default `process.cwd()`): an
     * app's `cwd` from there, its script from its `cwd`. The apps inherit `process.env`. Gives
     * the instances started.
     */
    start(options: AppOptions | AppOptions[], flags?: StartFlags): Promise<ProcSummary[]>;
    /** Every instance, in summary. */
    list(): Promise<ProcSummary[]>;
    /** The matching instances in detail. */
    describe(target: Target | Target[]): Promise<ProcDetail[]>;
    /** Stops processes (they stay registered). */
    stop(target: Target | Target[]): Promise<ProcSummary[]>;
    /** Restarts processes. */
    restart(target: Target | Target[]): Promise<ProcSummary[]>;
    /** Reloads processes without downtime (one instance at a time). */
    reload(target: Target | Target[]): Promise<ProcSummary[]>;
    /** Stops processes and forgets them. */
    delete(target: Target | Target[]): Promise<ProcSummary[]>;
    /** Sets an app's number of instances: `4`, or `"+2"` / `"-1"` relative to now. */
    scale(app: string, instances: number | string): Promise<ProcSummary[]>;
    /** Stops every process. */
    stopAll(): Promise<ProcSummary[]>;
    /** Writes the process list to the dump file, for `resurrect()`. */
    save(): Promise<SaveResponse>;
    /** Starts the processes of the dump file. */
    resurrect(): Promise<ProcSummary[]>;
    /** Every instance's and the machine's figures now. */
    getMetrics(): Promise<MetricsSnapshot>;
    /** The samples of the last `seconds` (default 300). */
    getMetricsHistory(seconds?: number): Promise<MetricsHistory>;
    /** The metrics in Prometheus' text exposition format (0.0.4). */
    getPrometheusMetrics(): Promise<string>;
    /** The last lines of processes' logs (no following), oldest first. */
    logs(target: Target | Target[], opts?: LogsOptions): Promise<LogLine[]>;
    /**
     * Sends `{type: 'process:msg', topic, data}` to a process over its IPC channel (Node's
     * `process.on('message')`).
     */
    sendDataToProcessId(id: Target, packet: DataPacket): Promise<ProcSummary[]>;
    /** Subscribes to the daemon's events; resolves once the subscription is live. */
    events(opts?: EventsOptions): Promise<EventStream>;
    /** The daemon's identity (starts it when it is not running). */
    ping(): Promise<PingResponse>;
    /**
     * Stops every process and the daemon, and waits until the daemon exited. Resolves to null
     * when no daemon was running.
     */
    kill(): Promise<PingResponse | null>;
    /** Ends the event subscriptions of this client (nothing else stays open). */
    close(): void;
    /** @internal An action: its instances, or a `Bm2Error` carrying every failure. */
    action(route: string, body: unknown): Promise<ProcSummary[]>;
}
