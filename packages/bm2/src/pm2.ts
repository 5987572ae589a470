/**
 * PM2's programmatic API over bm2: a script written for `require('pm2')` works with
 * `require('bm2/pm2')`. Callbacks are `(err, result)`; without a callback a method returns a
 * promise. See docs/api.md for what maps and what does not.
 */

import { EventEmitter } from "node:events";
import * as path from "node:path";
import { Bm2Error } from "./errors";
import { EventStream } from "./events";
import { ProcessManager, Target } from "./process-manager";
import { Pm2Process, fromDetail, fromSummary } from "./pm2-shape";
import type { AppOptions, Bm2Event, PingResponse, ProcSummary, StartFlags } from "./types";

export type { Pm2Process, Pm2Env } from "./pm2-shape";

/** PM2's callback. */
export type Callback<T = unknown> = (err: Error | null, result?: T) => void;

let pm: ProcessManager | undefined;
const buses = new Set<Pm2Bus>();

function manager(): ProcessManager {
  if (!pm) pm = new ProcessManager();
  return pm;
}

/** Runs `work` and hands its outcome to `cb`, or returns it as a promise without one. */
function finish<T>(work: () => Promise<T>, cb?: Callback<T>): Promise<T> | void {
  const p = Promise.resolve().then(work);
  if (typeof cb !== "function") return p;
  p.then(
    (v) => cb(null, v),
    (e: Error) => cb(e),
  );
}

/**
 * Connects to the daemon, starting it when it is not running. `noDaemon` (PM2's in-process
 * mode) does not exist in bm2: passing true is an error.
 */
export function connect(noDaemon?: boolean | Callback<PingResponse>, cb?: Callback<PingResponse>): Promise<PingResponse> | void {
  if (typeof noDaemon === "function") {
    cb = noDaemon;
    noDaemon = false;
  }
  return finish(async () => {
    if (noDaemon === true) {
      throw new Bm2Error(
        "unsupported",
        "pm2.connect(true): bm2 has no in-process (no-daemon) mode; apps always run under the bm2 daemon",
        { hint: "call pm2.connect(cb) instead" },
      );
    }
    return manager().ping();
  }, cb);
}

/** Closes this client's connections (buses); the daemon and its apps keep running. */
export function disconnect(cb?: Callback<void>): Promise<void> | void {
  return finish(async () => {
    for (const b of buses) b.close();
    buses.clear();
    pm?.close();
    pm = undefined;
  }, cb);
}

/** PM2's ecosystem file names (`start('ecosystem.config.js')`). */
const CONFIG_FILE = /\.json$|\.ya?ml$|\.config\.c?js$|\.config\.mjs$/;

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
export function start(
  what: string | AppOptions | AppOptions[] | { apps: AppOptions[] },
  opts?: (Partial<AppOptions> & StartExtra) | Callback<Pm2Process[]>,
  cb?: Callback<Pm2Process[]>,
): Promise<Pm2Process[]> | void {
  if (typeof opts === "function") {
    cb = opts;
    opts = undefined;
  }
  const extra = (opts ?? {}) as Partial<AppOptions> & StartExtra;
  return finish(async () => {
    const { force, ...appOpts } = extra;
    const flags: StartFlags = { force: force === true };
    let apps: AppOptions[];
    if (typeof what === "string" && CONFIG_FILE.test(what)) {
      const file = path.resolve(what);
      apps = loadEcosystem(file);
      flags.cwd = path.dirname(file);
      flags.ifExists = "restart";
      if (typeof appOpts.env === "string") flags.envName = appOpts.env;
    } else if (typeof what === "string") {
      apps = [{ ...appOpts, script: what } as AppOptions];
    } else if (Array.isArray(what)) {
      apps = what;
      flags.ifExists = "restart";
    } else if (what && Array.isArray((what as { apps?: unknown }).apps)) {
      apps = (what as { apps: AppOptions[] }).apps;
      flags.ifExists = "restart";
    } else if (what && typeof what === "object") {
      apps = [{ ...(what as AppOptions), ...appOpts } as AppOptions];
    } else {
      throw new Bm2Error("invalid_app", "pm2.start: give a script path, an options object or an ecosystem");
    }
    if (flags.force) flags.ifExists = undefined;
    const started = await manager().start(apps, flags);
    return described(started);
  }, cb);
}

function loadEcosystem(file: string): AppOptions[] {
  if (/\.ya?ml$|\.mjs$/.test(file)) {
    throw new Bm2Error("invalid_app", `pm2.start: ${file}: YAML and ES module ecosystem files are read by the CLI only`, {
      hint: `run \`bm2 start ${file}\`, or pass the apps as objects`,
    });
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  delete require.cache[file];
  let mod: unknown;
  try {
    mod = require(file);
  } catch (e) {
    throw new Bm2Error("invalid_app", `pm2.start: cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  const apps = (mod as { apps?: unknown }).apps ?? mod;
  if (Array.isArray(apps)) return apps as AppOptions[];
  if (apps && typeof apps === "object") return [apps as AppOptions];
  throw new Bm2Error("invalid_app", `pm2.start: ${file} has no apps`);
}

/** The instances in PM2's full shape. */
async function described(procs: ProcSummary[]): Promise<Pm2Process[]> {
  if (procs.length === 0) return [];
  const ids = new Set(procs.map((p) => p.id));
  const details = await manager().describe([...ids]);
  return details.filter((d) => ids.has(d.id)).map(fromDetail);
}

/** Every process, in PM2's shape (`pm2 jlist`). */
export function list(cb?: Callback<Pm2Process[]>): Promise<Pm2Process[]> | void {
  return finish(async () => {
    const details = await manager().transport.json<Parameters<typeof fromDetail>[0][]>("GET", "/v1/processes/details");
    return details.map(fromDetail);
  }, cb);
}

/** The matching processes, in PM2's shape. */
export function describe(target: Target, cb?: Callback<Pm2Process[]>): Promise<Pm2Process[]> | void {
  return finish(async () => (await manager().describe(target)).map(fromDetail), cb);
}

type ActionOpts = { updateEnv?: boolean } | Callback<Pm2Process[]>;

function action(
  name: "stop" | "restart" | "reload" | "delete",
  target: Target | Target[],
  opts: ActionOpts | undefined,
  cb: Callback<Pm2Process[]> | undefined,
): Promise<Pm2Process[]> | void {
  if (typeof opts === "function") {
    cb = opts;
    opts = undefined;
  }
  const updateEnv = (opts as { updateEnv?: boolean } | undefined)?.updateEnv === true;
  return finish(async () => {
    const targets = (Array.isArray(target) ? target : [target]).map(String);
    const route = `/v1/${name}`;
    const body: Record<string, unknown> = { targets };
    if (updateEnv && (name === "restart" || name === "reload")) body.update_env = definedEnv(process.env);
    const procs = await manager().action(route, body);
    return procs.map(fromSummary);
  }, cb);
}

/** Stops processes (name, id, namespace or 'all'). */
export function stop(target: Target | Target[], opts?: ActionOpts, cb?: Callback<Pm2Process[]>) {
  return action("stop", target, opts, cb);
}

/** Restarts processes; `{updateEnv: true}` gives them this process's environment. */
export function restart(target: Target | Target[], opts?: ActionOpts, cb?: Callback<Pm2Process[]>) {
  return action("restart", target, opts, cb);
}

/** Reloads processes without downtime; `{updateEnv: true}` as for restart. */
export function reload(target: Target | Target[], opts?: ActionOpts, cb?: Callback<Pm2Process[]>) {
  return action("reload", target, opts, cb);
}

/** Stops processes and forgets them. */
function del(target: Target | Target[], opts?: ActionOpts, cb?: Callback<Pm2Process[]>) {
  return action("delete", target, opts, cb);
}
export { del as delete };

/**
 * Sends `packet` (`{topic, data}`) to process `id`, which receives `{type: 'process:msg',
 * topic, data}` with `process.on('message')`. Also `sendDataToProcessId({id, topic, data}, cb)`.
 */
export function sendDataToProcessId(
  id: Target | { id: Target; topic: string; data: unknown },
  packet?: { topic: string; data: unknown; [k: string]: unknown } | Callback<unknown>,
  cb?: Callback<unknown>,
): Promise<unknown> | void {
  if (typeof id === "object" && id !== null) {
    if (typeof packet === "function") cb = packet;
    packet = id;
    id = (id as { id: Target }).id;
  }
  const p = packet as { topic?: string; data?: unknown } | undefined;
  return finish(async () => {
    if (!p || p.data === undefined || !p.topic) {
      throw new Bm2Error("invalid_request", "sendDataToProcessId: ID, DATA or TOPIC field is missing");
    }
    const procs = await manager().sendDataToProcessId(id as Target, { topic: p.topic, data: p.data });
    return { success: true, data: packet, process: procs.map(fromSummary)[0] };
  }, cb);
}

/** Saves the process list for `resurrect` (PM2's `dump`). */
export function dump(cb?: Callback<unknown>): Promise<unknown> | void {
  return finish(async () => {
    const r = await manager().save();
    return { success: true, path: r.path, count: r.count };
  }, cb);
}

/** Restarts the processes of the dump file. */
export function resurrect(cb?: Callback<Pm2Process[]>): Promise<Pm2Process[]> | void {
  return finish(async () => (await manager().resurrect()).map(fromSummary), cb);
}

/** Stops every process and the daemon. */
export function killDaemon(cb?: Callback<unknown>): Promise<unknown> | void {
  return finish(async () => {
    for (const b of buses) b.close();
    buses.clear();
    return manager().kill();
  }, cb);
}

/**
 * PM2's bus: an EventEmitter of PM2's packets — `process:event` `{event, manually, process,
 * at}`, `log:out` / `log:err` `{process, data, at}` (data ends with a newline),
 * `process:msg` `{process, data, topic?, at}`. Listeners may use wildcards, as on PM2's bus:
 * `bus.on('log:*', (kind, packet) => ...)`, `bus.on('*', (event, packet) => ...)`.
 */
export class Pm2Bus extends EventEmitter {
  private stream: EventStream | undefined;

  /** @internal */
  attach(stream: EventStream): void {
    this.stream = stream;
    stream.on("event", (e: Bm2Event) => this.relay(e));
    stream.on("error", (e: Error) => {
      if (this.listenerCount("error") > 0) this.emit("error", e);
    });
    stream.on("close", () => this.emit("close"));
  }

  private relay(e: Bm2Event): void {
    if (e.type === "lagged") {
      this.publish("lagged", { missed: e.missed });
      return;
    }
    const proc = { name: e.process.name, pm_id: e.process.id, namespace: e.process.namespace };
    switch (e.type) {
      case "process:event":
        this.publish("process:event", {
          event: e.event,
          manually: e.reason === "manual" || e.event === "stop" || e.event === "delete",
          process: {
            ...proc,
            pid: e.process.pid,
            NODE_APP_INSTANCE: e.process.instance,
            exit_code: e.code ?? null,
            signal: e.signal ?? null,
            ...(e.reason ? { restart_reason: e.reason } : {}),
          },
          at: e.at_ms,
        });
        break;
      case "log:out":
      case "log:err":
        this.publish(e.type, { process: { ...proc, rev: null }, data: `${e.data}\n`, at: e.at_ms });
        break;
      case "process:msg":
        this.publish("process:msg", {
          process: { ...proc, versioning: null },
          data: e.data,
          ...(e.topic != null ? { topic: e.topic } : {}),
          at: e.at_ms,
        });
        break;
    }
  }

  private publish(type: string, packet: unknown): void {
    this.emit(type, packet);
    for (const name of this.eventNames()) {
      if (typeof name !== "string" || !name.includes("*") || name === type) continue;
      const re = new RegExp(`^${name.split("*").map(escape).join("(.+)")}$`);
      const m = re.exec(type);
      if (m) this.emit(name, ...m.slice(1), packet);
    }
  }

  /** Ends the subscription. */
  close(): void {
    this.stream?.close();
  }
}

function escape(s: string): string {
  return s.replace(/[.+?^${}()|[\]\\]/g, "\\$&");
}

/** Subscribes to the daemon's events with logs; `cb(err, bus)` once it is live. */
export function launchBus(cb?: Callback<Pm2Bus>): Promise<Pm2Bus> | void {
  return finish(async () => {
    const stream = await manager().events({ logs: true });
    const bus = new Pm2Bus();
    bus.attach(stream);
    buses.add(bus);
    bus.on("close", () => buses.delete(bus));
    return bus;
  }, cb);
}

/** Closes the buses this client opened. */
export function disconnectBus(cb?: Callback<void>): Promise<void> | void {
  return finish(async () => {
    for (const b of buses) b.close();
    buses.clear();
  }, cb);
}

function definedEnv(env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}
