/** `ProcessManager`: the daemon's processes, metrics and events, promise-based. */

import * as path from "node:path";
import { Bm2Error } from "./errors";
import { EventStream, EventsOptions, subscribe, targetList } from "./events";
import { ConnectionOptions, Transport, eachLine, errorOf, readAll } from "./transport";
import type {
  ActionResponse,
  AppOptions,
  LogLine,
  MetricsHistory,
  MetricsSnapshot,
  PingResponse,
  ProcDetail,
  ProcSummary,
  SaveResponse,
  StartFlags,
} from "./types";

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
export class ProcessManager {
  /** @internal */
  readonly transport: Transport;
  private readonly onNotice: (notice: string) => void;
  private readonly streams = new Set<EventStream>();

  constructor(opts: ProcessManagerOptions = {}) {
    this.transport = new Transport(opts);
    this.onNotice = opts.onNotice ?? ((n) => process.emitWarning(n, "Bm2Notice"));
  }

  /** The daemon's home directory. */
  get home(): string {
    return this.transport.home;
  }

  /** The bm2 binary that starts the daemon. */
  get bin(): string {
    return this.transport.bin;
  }

  /**
   * Registers and starts apps from their options (as in an ecosystem file). Relative paths
   * resolve as in an ecosystem file that sits in `flags.cwd` (default `process.cwd()`): an
   * app's `cwd` from there, its script from its `cwd`. The apps inherit `process.env`. Gives
   * the instances started.
   */
  async start(options: AppOptions | AppOptions[], flags: StartFlags = {}): Promise<ProcSummary[]> {
    const apps = Array.isArray(options) ? options : [options];
    if (apps.length === 0) throw new Bm2Error("invalid_request", "start: no app given");
    const body: Record<string, unknown> = {
      apps,
      cwd: path.resolve(flags.cwd ?? process.cwd()),
      client_env: definedEnv(flags.clientEnv ?? process.env),
      force: flags.force === true,
      if_exists: flags.ifExists ?? "fail",
    };
    if (flags.envName !== undefined) body.env_name = flags.envName;
    return this.action("/v1/start-options", body);
  }

  /** Every instance, in summary. */
  list(): Promise<ProcSummary[]> {
    return this.transport.json("GET", "/v1/processes");
  }

  /** The matching instances in detail. */
  async describe(target: Target | Target[]): Promise<ProcDetail[]> {
    const r = await this.transport.json<{ processes: ProcDetail[] }>("POST", "/v1/describe", {
      targets: targetList(target),
    });
    return r.processes;
  }

  /** Stops processes (they stay registered). */
  stop(target: Target | Target[]): Promise<ProcSummary[]> {
    return this.action("/v1/stop", { targets: targetList(target) });
  }

  /** Restarts processes. */
  restart(target: Target | Target[]): Promise<ProcSummary[]> {
    return this.action("/v1/restart", { targets: targetList(target) });
  }

  /** Reloads processes without downtime (one instance at a time). */
  reload(target: Target | Target[]): Promise<ProcSummary[]> {
    return this.action("/v1/reload", { targets: targetList(target) });
  }

  /** Stops processes and forgets them. */
  delete(target: Target | Target[]): Promise<ProcSummary[]> {
    return this.action("/v1/delete", { targets: targetList(target) });
  }

  /** Sets an app's number of instances: `4`, or `"+2"` / `"-1"` relative to now. */
  scale(app: string, instances: number | string): Promise<ProcSummary[]> {
    return this.action("/v1/scale", { app, instances: String(instances) });
  }

  /** Stops every process. */
  stopAll(): Promise<ProcSummary[]> {
    return this.stop("all");
  }

  /** Writes the process list to the dump file, for `resurrect()`. */
  save(): Promise<SaveResponse> {
    return this.transport.json("POST", "/v1/save");
  }

  /** Starts the processes of the dump file. */
  resurrect(): Promise<ProcSummary[]> {
    return this.action("/v1/resurrect", {});
  }

  /** Every instance's and the machine's figures now. */
  getMetrics(): Promise<MetricsSnapshot> {
    return this.transport.json("GET", "/v1/metrics");
  }

  /** The samples of the last `seconds` (default 300). */
  getMetricsHistory(seconds = 300): Promise<MetricsHistory> {
    if (!Number.isInteger(seconds) || seconds < 0) {
      return Promise.reject(new Bm2Error("invalid_request", `getMetricsHistory: seconds must be a whole number ≥ 0, not ${seconds}`));
    }
    return this.transport.json("GET", `/v1/metrics/history?seconds=${seconds}`);
  }

  /** The metrics in Prometheus' text exposition format (0.0.4). */
  getPrometheusMetrics(): Promise<string> {
    return this.transport.text("GET", "/v1/prometheus", undefined, true, "text/plain; version=0.0.4");
  }

  /** The last lines of processes' logs (no following), oldest first. */
  async logs(target: Target | Target[], opts: LogsOptions = {}): Promise<LogLine[]> {
    const res = await this.transport.open("POST", "/v1/logs", {
      targets: targetList(target),
      lines: opts.lines ?? 15,
      follow: false,
      out: opts.out ?? true,
      err: opts.err ?? true,
    });
    const status = res.statusCode ?? 0;
    if (status < 200 || status >= 300) throw errorOf(status, await readAll(res), "/v1/logs");
    return new Promise((resolve, reject) => {
      const lines: LogLine[] = [];
      eachLine(res, (l) => {
        let e: { id: number; name: string; app: string; stream: string; line: string; skipped?: number };
        try {
          e = JSON.parse(l);
        } catch {
          res.destroy();
          reject(new Bm2Error("bad_response", `a log line that is not JSON: ${l.slice(0, 200)}`));
          return;
        }
        if (e.skipped !== undefined) return;
        lines.push({ type: e.stream === "err" ? "err" : "out", data: e.line, id: e.id, name: e.name, app: e.app });
      });
      res.on("end", () => resolve(lines));
      res.on("error", reject);
      res.on("aborted", () => reject(new Bm2Error("daemon_unreachable", "the daemon closed the log stream mid-answer")));
    });
  }

  /**
   * Sends `{type: 'process:msg', topic, data}` to a process over its IPC channel (Node's
   * `process.on('message')`).
   */
  sendDataToProcessId(id: Target, packet: DataPacket): Promise<ProcSummary[]> {
    const body: Record<string, unknown> = { targets: targetList(id), data: packet.data };
    if (packet.topic !== undefined) body.topic = packet.topic;
    return this.action("/v1/send-data", body);
  }

  /** Subscribes to the daemon's events; resolves once the subscription is live. */
  async events(opts: EventsOptions = {}): Promise<EventStream> {
    const s = await subscribe(this.transport, opts);
    this.streams.add(s);
    s.on("close", () => this.streams.delete(s));
    return s;
  }

  /** The daemon's identity (starts it when it is not running). */
  ping(): Promise<PingResponse> {
    return this.transport.json("GET", "/v1/ping");
  }

  /**
   * Stops every process and the daemon, and waits until the daemon exited. Resolves to null
   * when no daemon was running.
   */
  async kill(): Promise<PingResponse | null> {
    this.close();
    let ping: PingResponse;
    try {
      ping = await this.transport.json<PingResponse>("POST", "/v1/kill", undefined, false);
    } catch (e) {
      if (e instanceof Bm2Error && e.code === "daemon_unreachable") return null;
      throw e;
    }
    const deadline = Date.now() + 15000;
    while (alive(ping.pid)) {
      if (Date.now() > deadline) {
        throw new Bm2Error("internal", `the daemon (pid ${ping.pid}) did not exit within 15 s of kill`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    return ping;
  }

  /** Ends the event subscriptions of this client (nothing else stays open). */
  close(): void {
    for (const s of this.streams) s.close();
    this.streams.clear();
  }

  /** @internal An action: its instances, or a `Bm2Error` carrying every failure. */
  async action(route: string, body: unknown): Promise<ProcSummary[]> {
    const r = await this.transport.json<ActionResponse>("POST", route, body);
    for (const n of r.notices ?? []) this.onNotice(n);
    if (r.errors && r.errors.length > 0) {
      const first = r.errors[0];
      throw new Bm2Error(first.code, r.errors.map((e) => e.message).join("; "), {
        hint: first.hint,
        errors: r.errors,
        processes: r.processes,
      });
    }
    return r.processes;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

function definedEnv(env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}
