"use strict";
/** `ProcessManager`: the daemon's processes, metrics and events, promise-based. */
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
var __setModuleDefault = (this && this.__setModuleDefault) || (Object.create ? (function(o, v) {
    Object.defineProperty(o, "default", { enumerable: true, value: v });
}) : function(o, v) {
    o["default"] = v;
});
var __importStar = (this && this.__importStar) || (function () {
    var ownKeys = function(o) {
        ownKeys = Object.getOwnPropertyNames || function (o) {
            var ar = [];
            for (var k in o) if (Object.prototype.hasOwnProperty.call(o, k)) ar[ar.length] = k;
            return ar;
        };
        return ownKeys(o);
    };
    return function (mod) {
        if (mod && mod.__esModule) return mod;
        var result = {};
        if (mod != null) for (var k = ownKeys(mod), i = 0; i < k.length; i++) if (k[i] !== "default") __createBinding(result, mod, k[i]);
        __setModuleDefault(result, mod);
        return result;
    };
})();
Object.defineProperty(exports, "__esModule", { value: true });
exports.ProcessManager = void 0;
const path = __importStar(require("node:path"));
const errors_1 = require("./errors");
const events_1 = require("./events");
const transport_1 = require("./transport");
/**
 * A client of the bm2 daemon of one home (`$BM2_HOME`, else `~/.bm2`). The daemon is started
 * (with `bm2 ping`) when it is not running. Every method returns a promise; a failure is a
 * `Bm2Error` with the daemon's `code`.
 */
class ProcessManager {
    /** @internal */
    transport;
    onNotice;
    streams = new Set();
    constructor(opts = {}) {
        this.transport = new transport_1.Transport(opts);
        this.onNotice = opts.onNotice ?? ((n) => process.emitWarning(n, "Bm2Notice"));
    }
    /** The daemon's home directory. */
    get home() {
        return this.transport.home;
    }
    /** The bm2 binary that starts the daemon. */
    get bin() {
        return this.transport.bin;
    }
    /**
     * Registers and starts apps from their options (as in an ecosystem file). Relative paths
     * resolve as in an ecosystem file that sits in `flags.cwd` (default `process.cwd()`): an
     * app's `cwd` from there, its script from its `cwd`. The apps inherit `process.env`. Gives
     * the instances started.
     */
    async start(options, flags = {}) {
        const apps = Array.isArray(options) ? options : [options];
        if (apps.length === 0)
            throw new errors_1.Bm2Error("invalid_request", "start: no app given");
        const body = {
            apps,
            cwd: path.resolve(flags.cwd ?? process.cwd()),
            client_env: definedEnv(flags.clientEnv ?? process.env),
            force: flags.force === true,
            if_exists: flags.ifExists ?? "fail",
        };
        if (flags.envName !== undefined)
            body.env_name = flags.envName;
        return this.action("/v1/start-options", body);
    }
    /** Every instance, in summary. */
    list() {
        return this.transport.json("GET", "/v1/processes");
    }
    /** The matching instances in detail. */
    async describe(target) {
        const r = await this.transport.json("POST", "/v1/describe", {
            targets: (0, events_1.targetList)(target),
        });
        return r.processes;
    }
    /** Stops processes (they stay registered). */
    stop(target) {
        return this.action("/v1/stop", { targets: (0, events_1.targetList)(target) });
    }
    /** Restarts processes. */
    restart(target) {
        return this.action("/v1/restart", { targets: (0, events_1.targetList)(target) });
    }
    /** Reloads processes without downtime (one instance at a time). */
    reload(target) {
        return this.action("/v1/reload", { targets: (0, events_1.targetList)(target) });
    }
    /** Stops processes and forgets them. */
    delete(target) {
        return this.action("/v1/delete", { targets: (0, events_1.targetList)(target) });
    }
    /** Sets an app's number of instances: `4`, or `"+2"` / `"-1"` relative to now. */
    scale(app, instances) {
        return this.action("/v1/scale", { app, instances: String(instances) });
    }
    /** Stops every process. */
    stopAll() {
        return this.stop("all");
    }
    /** Writes the process list to the dump file, for `resurrect()`. */
    save() {
        return this.transport.json("POST", "/v1/save");
    }
    /** Starts the processes of the dump file. */
    resurrect() {
        return this.action("/v1/resurrect", {});
    }
    /** Every instance's and the machine's figures now. */
    getMetrics() {
        return this.transport.json("GET", "/v1/metrics");
    }
    /** The samples of the last `seconds` (default 300). */
    getMetricsHistory(seconds = 300) {
        if (!Number.isInteger(seconds) || seconds < 0) {
            return Promise.reject(new errors_1.Bm2Error("invalid_request", `getMetricsHistory: seconds must be a whole number ≥ 0, not ${seconds}`));
        }
        return this.transport.json("GET", `/v1/metrics/history?seconds=${seconds}`);
    }
    /** The metrics in Prometheus' text exposition format (0.0.4). */
    getPrometheusMetrics() {
        return this.transport.text("GET", "/v1/prometheus", undefined, true, "text/plain; version=0.0.4");
    }
    /** The last lines of processes' logs (no following), oldest first. */
    async logs(target, opts = {}) {
        const res = await this.transport.open("POST", "/v1/logs", {
            targets: (0, events_1.targetList)(target),
            lines: opts.lines ?? 15,
            follow: false,
            out: opts.out ?? true,
            err: opts.err ?? true,
        });
        const status = res.statusCode ?? 0;
        if (status < 200 || status >= 300)
            throw (0, transport_1.errorOf)(status, await (0, transport_1.readAll)(res), "/v1/logs");
        return new Promise((resolve, reject) => {
            const lines = [];
            (0, transport_1.eachLine)(res, (l) => {
                let e;
                try {
                    e = JSON.parse(l);
                }
                catch {
                    res.destroy();
                    reject(new errors_1.Bm2Error("bad_response", `a log line that is not JSON: ${l.slice(0, 200)}`));
                    return;
                }
                if (e.skipped !== undefined)
                    return;
                lines.push({ type: e.stream === "err" ? "err" : "out", data: e.line, id: e.id, name: e.name, app: e.app });
            });
            res.on("end", () => resolve(lines));
            res.on("error", reject);
            res.on("aborted", () => reject(new errors_1.Bm2Error("daemon_unreachable", "the daemon closed the log stream mid-answer")));
        });
    }
    /**
     * Sends `{type: 'process:msg', topic, data}` to a process over its IPC channel (Node's
     * `process.on('message')`).
     */
    sendDataToProcessId(id, packet) {
        const body = { targets: (0, events_1.targetList)(id), data: packet.data };
        if (packet.topic !== undefined)
            body.topic = packet.topic;
        return this.action("/v1/send-data", body);
    }
    /** Subscribes to the daemon's events; resolves once the subscription is live. */
    async events(opts = {}) {
        const s = await (0, events_1.subscribe)(this.transport, opts);
        this.streams.add(s);
        s.on("close", () => this.streams.delete(s));
        return s;
    }
    /** The daemon's identity (starts it when it is not running). */
    ping() {
        return this.transport.json("GET", "/v1/ping");
    }
    /**
     * Stops every process and the daemon, and waits until the daemon exited. Resolves to null
     * when no daemon was running.
     */
    async kill() {
        this.close();
        let ping;
        try {
            ping = await this.transport.json("POST", "/v1/kill", undefined, false);
        }
        catch (e) {
            if (e instanceof errors_1.Bm2Error && e.code === "daemon_unreachable")
                return null;
            throw e;
        }
        const deadline = Date.now() + 15000;
        while (alive(ping.pid)) {
            if (Date.now() > deadline) {
                throw new errors_1.Bm2Error("internal", `the daemon (pid ${ping.pid}) did not exit within 15 s of kill`);
            }
            await new Promise((r) => setTimeout(r, 25));
        }
        return ping;
    }
    /** Ends the event subscriptions of this client (nothing else stays open). */
    close() {
        for (const s of this.streams)
            s.close();
        this.streams.clear();
    }
    /** @internal An action: its instances, or a `Bm2Error` carrying every failure. */
    async action(route, body) {
        const r = await this.transport.json("POST", route, body);
        for (const n of r.notices ?? [])
            this.onNotice(n);
        if (r.errors && r.errors.length > 0) {
            const first = r.errors[0];
            throw new errors_1.Bm2Error(first.code, r.errors.map((e) => e.message).join("; "), {
                hint: first.hint,
                errors: r.errors,
                processes: r.processes,
            });
        }
        return r.processes;
    }
}
exports.ProcessManager = ProcessManager;
function alive(pid) {
    try {
        process.kill(pid, 0);
        return true;
    }
    catch (e) {
        return e.code === "EPERM";
    }
}
function definedEnv(env) {
    const out = {};
    for (const [k, v] of Object.entries(env))
        if (v !== undefined)
            out[k] = v;
    return out;
}
