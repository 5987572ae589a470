/** Process descriptions in PM2's shape (`pm2.list()`, `pm2 jlist`), made from bm2's. */
import type { ProcDetail, ProcSummary } from "./types";
/** A process as PM2's programmatic API describes it. */
export interface Pm2Process {
    pid: number;
    name: string;
    pm_id: number;
    monit: {
        memory: number;
        cpu: number;
    };
    pm2_env: Pm2Env;
}
/** The part of PM2's `pm2_env` bm2 fills in (and the app's environment, flattened). */
export interface Pm2Env {
    name: string;
    namespace: string;
    status: string;
    pm_id: number;
    pm_uptime: number;
    created_at?: number;
    restart_time: number;
    unstable_restarts: number;
    exec_mode: "fork_mode" | "cluster_mode";
    instances?: number;
    pm_exec_path?: string;
    pm_cwd?: string;
    exec_interpreter?: string;
    args?: string[];
    node_args?: string[];
    pm_out_log_path?: string;
    pm_err_log_path?: string;
    pm_pid_path?: string;
    NODE_APP_INSTANCE: number;
    exit_code?: number | null;
    autorestart?: boolean;
    watch?: boolean;
    env?: Record<string, string>;
    [key: string]: unknown;
}
/** PM2's `exec_mode` name. */
export declare function execMode(m: string | undefined): "fork_mode" | "cluster_mode";
/** A detailed process in PM2's shape, as `pm2 jlist` gives it. */
export declare function fromDetail(d: ProcDetail): Pm2Process;
/** A summary in PM2's shape (what actions give back: fewer `pm2_env` keys than `list`). */
export declare function fromSummary(s: ProcSummary): Pm2Process;
