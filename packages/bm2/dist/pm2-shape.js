"use strict";
/** Process descriptions in PM2's shape (`pm2.list()`, `pm2 jlist`), made from bm2's. */
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
exports.execMode = execMode;
exports.fromDetail = fromDetail;
exports.fromSummary = fromSummary;
const path = __importStar(require("node:path"));
/** PM2's `exec_mode` name. */
function execMode(m) {
    return m === "cluster" || m === "cluster_mode" ? "cluster_mode" : "fork_mode";
}
/** A detailed process in PM2's shape, as `pm2 jlist` gives it. */
function fromDetail(d) {
    const spec = d.spec;
    const cwd = typeof spec.cwd === "string" ? spec.cwd : "/";
    const script = String(spec.script ?? "");
    const env = {
        name: d.name,
        namespace: d.namespace,
        pm_exec_path: path.isAbsolute(script) ? script : path.resolve(cwd, script),
        pm_cwd: cwd,
        exec_interpreter: d.interpreter ?? "none",
        exec_mode: execMode(spec.exec_mode),
        instances: d.instances,
        args: spec.args ?? [],
        node_args: spec.node_args ?? [],
        autorestart: spec.autorestart,
        watch: Boolean(d.watch?.watching),
        pm_out_log_path: d.out_log,
        pm_err_log_path: d.err_log,
        pm_pid_path: d.pid_file,
        env: { ...d.env },
        NODE_APP_INSTANCE: d.instance,
        status: d.status,
        pm_uptime: d.started_at_ms ?? d.created_at_ms,
        created_at: d.created_at_ms,
        pm_id: d.id,
        restart_time: d.restarts,
        unstable_restarts: d.unstable_restarts,
        exit_code: d.last_exit?.code ?? null,
    };
    if (d.log_file)
        env.pm_log_path = d.log_file;
    // PM2 flattens the app's variables into pm2_env; its own keys win.
    for (const [k, v] of Object.entries(d.env))
        if (!(k in env))
            env[k] = v;
    return {
        pid: d.pid ?? 0,
        name: d.name,
        pm2_env: env,
        pm_id: d.id,
        monit: { memory: d.memory, cpu: Math.round(d.cpu * 10) / 10 },
    };
}
/** A summary in PM2's shape (what actions give back: fewer `pm2_env` keys than `list`). */
function fromSummary(s) {
    return {
        pid: s.pid ?? 0,
        name: s.name,
        pm_id: s.id,
        monit: { memory: s.memory, cpu: Math.round(s.cpu * 10) / 10 },
        pm2_env: {
            name: s.name,
            namespace: s.namespace,
            status: s.status,
            pm_id: s.id,
            pm_uptime: s.started_at_ms ?? 0,
            restart_time: s.restarts,
            unstable_restarts: s.unstable_restarts,
            exec_mode: execMode(s.exec_mode),
            NODE_APP_INSTANCE: s.instance,
        },
    };
}
