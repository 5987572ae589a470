"use strict";
/**
 * PM2's programmatic API over bm2: a script written for `require('pm2')` works with
 * `require('bm2/pm2')`. Callbacks are `(err, result)`; without a callback a method returns a
 * promise. See docs/api.md for what maps and what does not.
 */
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
exports.Pm2Bus = void 0;
exports.connect = connect;
exports.disconnect = disconnect;
exports.start = start;
exports.list = list;
exports.describe = describe;
exports.stop = stop;
exports.restart = restart;
exports.reload = reload;
exports.delete = del;
exports.sendDataToProcessId = sendDataToProcessId;
exports.dump = dump;
exports.resurrect = resurrect;
exports.killDaemon = killDaemon;
exports.launchBus = launchBus;
exports.disconnectBus = disconnectBus;
const node_events_1 = require("node:events");
const path = __importStar(require("node:path"));
const errors_1 = require("./errors");
const process_manager_1 = require("./process-manager");
const pm2_shape_1 = require("./pm2-shape");
let pm;
const buses = new Set();
function manager() {
    if (!pm)
        pm = new process_manager_1.ProcessManager();
    return pm;
}
/** Runs `work` and hands its outcome to `cb`, or returns it as a promise without one. */
function finish(work, cb) {
    const p = Promise.resolve().then(work);
    if (typeof cb !== "function")
        return p;
    p.then((v) => cb(null, v), (e) => cb(e));
}
/**
 * Connects to the daemon, starting it when it is not running. `noDaemon` (PM2's in-process
 * mode) does not exist in bm2: passing true is an error.
 */
function connect(noDaemon, cb) {
    if (typeof noDaemon === "function") {
        cb = noDaemon;
        noDaemon = false;
    }
    return finish(async () => {
        if (noDaemon === true) {
            throw new errors_1.Bm2Error("unsupported", "pm2.connect(true): bm2 has no in-process (no-daemon) mode; apps always run under the bm2 daemon", { hint: "call pm2.connect(cb) instead" });
        }
        return manager().ping();
    }, cb);
}
/** Closes this client's connections (buses); the daemon and its apps keep running. */
function disconnect(cb) {
    return finish(async () => {
        for (const b of buses)
            b.close();
        buses.clear();
        pm?.close();
        pm = undefined;
    }, cb);
}
/** PM2's ecosystem file names (`start('ecosystem.config.js')`). */
const CONFIG_FILE = /\.json$|\.ya?ml$|\.config\.c?js$|\.config\.mjs$/;
/**
 * Starts apps: `start(script, [opts], cb)`, `start(options, cb)`, `start({apps: [...]}, cb)`,
 * `start([options...], cb)` or `start('ecosystem.config.js', [{env: 'production'}], cb)`. Apps
 * of an ecosystem that are running already are restarted, as PM2 does; a single script whose
 * name is taken is refused unless `force` is set.
 */
function start(what, opts, cb) {
    if (typeof opts === "function") {
        cb = opts;
        opts = undefined;
    }
    const extra = (opts ?? {});
    return finish(async () => {
        const { force, ...appOpts } = extra;
        const flags = { force: force === true };
        let apps;
        if (typeof what === "string" && CONFIG_FILE.test(what)) {
            const file = path.resolve(what);
            apps = loadEcosystem(file);
            flags.cwd = path.dirname(file);
            flags.ifExists = "restart";
            if (typeof appOpts.env === "string")
                flags.envName = appOpts.env;
        }
        else if (typeof what === "string") {
            apps = [{ ...appOpts, script: what }];
        }
        else if (Array.isArray(what)) {
            apps = what;
            flags.ifExists = "restart";
        }
        else if (what && Array.isArray(what.apps)) {
            apps = what.apps;
            flags.ifExists = "restart";
        }
        else if (what && typeof what === "object") {
            apps = [{ ...what, ...appOpts }];
        }
        else {
            throw new errors_1.Bm2Error("invalid_app", "pm2.start: give a script path, an options object or an ecosystem");
        }
        if (flags.force)
            flags.ifExists = undefined;
        const started = await manager().start(apps, flags);
        return described(started);
    }, cb);
}
function loadEcosystem(file) {
    if (/\.ya?ml$|\.mjs$/.test(file)) {
        throw new errors_1.Bm2Error("invalid_app", `pm2.start: ${file}: YAML and ES module ecosystem files are read by the CLI only`, {
            hint: `run \`bm2 start ${file}\`, or pass the apps as objects`,
        });
    }
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    delete require.cache[file];
    let mod;
    try {
        mod = require(file);
    }
    catch (e) {
        throw new errors_1.Bm2Error("invalid_app", `pm2.start: cannot read ${file}: ${e.message}`, { cause: e });
    }
    const apps = mod.apps ?? mod;
    if (Array.isArray(apps))
        return apps;
    if (apps && typeof apps === "object")
        return [apps];
    throw new errors_1.Bm2Error("invalid_app", `pm2.start: ${file} has no apps`);
}
/** The instances in PM2's full shape. */
async function described(procs) {
    if (procs.length === 0)
        return [];
    const ids = new Set(procs.map((p) => p.id));
    const details = await manager().describe([...ids]);
    return details.filter((d) => ids.has(d.id)).map(pm2_shape_1.fromDetail);
}
/** Every process, in PM2's shape (`pm2 jlist`). */
function list(cb) {
    return finish(async () => {
        const details = await manager().transport.json("GET", "/v1/processes/details");
        return details.map(pm2_shape_1.fromDetail);
    }, cb);
}
/** The matching processes, in PM2's shape. */
function describe(target, cb) {
    return finish(async () => (await manager().describe(target)).map(pm2_shape_1.fromDetail), cb);
}
function action(name, target, opts, cb) {
    if (typeof opts === "function") {
        cb = opts;
        opts = undefined;
    }
    const updateEnv = opts?.updateEnv === true;
    return finish(async () => {
        const targets = (Array.isArray(target) ? target : [target]).map(String);
        const route = `/v1/${name}`;
        const body = { targets };
        if (updateEnv && (name === "restart" || name === "reload"))
            body.update_env = definedEnv(process.env);
        const procs = await manager().action(route, body);
        return procs.map(pm2_shape_1.fromSummary);
    }, cb);
}
/** Stops processes (name, id, namespace or 'all'). */
function stop(target, opts, cb) {
    return action("stop", target, opts, cb);
}
/** Restarts processes; `{updateEnv: true}` gives them this process's environment. */
function restart(target, opts, cb) {
    return action("restart", target, opts, cb);
}
/** Reloads processes without downtime; `{updateEnv: true}` as for restart. */
function reload(target, opts, cb) {
    return action("reload", target, opts, cb);
}
/** Stops processes and forgets them. */
function del(target, opts, cb) {
    return action("delete", target, opts, cb);
}
/**
 * Sends `packet` (`{topic, data}`) to process `id`, which receives `{type: 'process:msg',
 * topic, data}` with `process.on('message')`. Also `sendDataToProcessId({id, topic, data}, cb)`.
 */
function sendDataToProcessId(id, packet, cb) {
    if (typeof id === "object" && id !== null) {
        if (typeof packet === "function")
            cb = packet;
        packet = id;
        id = id.id;
    }
    const p = packet;
    return finish(async () => {
        if (!p || p.data === undefined || !p.topic) {
            throw new errors_1.Bm2Error("invalid_request", "sendDataToProcessId: ID, DATA or TOPIC field is missing");
        }
        const procs = await manager().sendDataToProcessId(id, { topic: p.topic, data: p.data });
        return { success: true, data: packet, process: procs.map(pm2_shape_1.fromSummary)[0] };
    }, cb);
}
/** Saves the process list for `resurrect` (PM2's `dump`). */
function dump(cb) {
    return finish(async () => {
        const r = await manager().save();
        return { success: true, path: r.path, count: r.count };
    }, cb);
}
/** Restarts the processes of the dump file. */
function resurrect(cb) {
    return finish(async () => (await manager().resurrect()).map(pm2_shape_1.fromSummary), cb);
}
/** Stops every process and the daemon. */
function killDaemon(cb) {
    return finish(async () => {
        for (const b of buses)
            b.close();
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
class Pm2Bus extends node_events_1.EventEmitter {
    stream;
    /** @internal */
    attach(stream) {
        this.stream = stream;
        stream.on("event", (e) => this.relay(e));
        stream.on("error", (e) => {
            if (this.listenerCount("error") > 0)
                this.emit("error", e);
        });
        stream.on("close", () => this.emit("close"));
    }
    relay(e) {
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
    publish(type, packet) {
        this.emit(type, packet);
        for (const name of this.eventNames()) {
            if (typeof name !== "string" || !name.includes("*") || name === type)
                continue;
            const re = new RegExp(`^${name.split("*").map(escape).join("(.+)")}$`);
            const m = re.exec(type);
            if (m)
                this.emit(name, ...m.slice(1), packet);
        }
    }
    /** Ends the subscription. */
    close() {
        this.stream?.close();
    }
}
exports.Pm2Bus = Pm2Bus;
function escape(s) {
    return s.replace(/[.+?^${}()|[\]\\]/g, "\\$&");
}
/** Subscribes to the daemon's events with logs; `cb(err, bus)` once it is live. */
function launchBus(cb) {
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
function disconnectBus(cb) {
    return finish(async () => {
        for (const b of buses)
            b.close();
        buses.clear();
    }, cb);
}
function definedEnv(env) {
    const out = {};
    for (const [k, v] of Object.entries(env))
        if (v !== undefined)
            out[k] = v;
    return out;
}
