/** Process descriptions in PM2's shape (`pm2.list()`, `pm2 jlist`), made from bm2's. */

import * as path from "node:path";
import type { ProcDetail, ProcSummary } from "./types";

/** A process as PM2's programmatic API describes it. */
export interface Pm2Process {
  pid: number;
  name: string;
  pm_id: number;
  monit: { memory: number; cpu: number };
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
export function execMode(m: string | undefined): "fork_mode" | "cluster_mode" {
  return m === "cluster" || m === "cluster_mode" ? "cluster_mode" : "fork_mode";
}

/** A detailed process in PM2's shape, as `pm2 jlist` gives it. */
export function fromDetail(d: ProcDetail): Pm2Process {
  const spec = d.spec as Record<string, unknown>;
  const cwd = typeof spec.cwd === "string" ? spec.cwd : "/";
  const script = String(spec.script ?? "");
  const env: Pm2Env = {
    name: d.name,
    namespace: d.namespace,
    pm_exec_path: path.isAbsolute(script) ? script : path.resolve(cwd, script),
    pm_cwd: cwd,
    exec_interpreter: d.interpreter ?? "none",
    exec_mode: execMode(spec.exec_mode as string | undefined),
    instances: d.instances,
    args: (spec.args as string[] | undefined) ?? [],
    node_args: (spec.node_args as string[] | undefined) ?? [],
    autorestart: spec.autorestart as boolean | undefined,
    watch: Boolean((d.watch as { watching?: boolean } | null | undefined)?.watching),
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
  if (d.log_file) env.pm_log_path = d.log_file;
  // PM2 flattens the app's variables into pm2_env; its own keys win.
  for (const [k, v] of Object.entries(d.env)) if (!(k in env)) env[k] = v;
  return {
    pid: d.pid ?? 0,
    name: d.name,
    pm2_env: env,
    pm_id: d.id,
    monit: { memory: d.memory, cpu: Math.round(d.cpu * 10) / 10 },
  };
}

/** A summary in PM2's shape (what actions give back: fewer `pm2_env` keys than `list`). */
export function fromSummary(s: ProcSummary): Pm2Process {
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
