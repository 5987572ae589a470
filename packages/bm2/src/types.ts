/** The values the daemon's API sends and takes (see docs/api.md). */

import type { ApiErrorBody } from "./errors";

/** A process's state. */
export type ProcStatus = "launching" | "online" | "stopping" | "stopped" | "errored" | "waiting restart";

/** One instance of an app, as `list()` and actions give it. */
export interface ProcSummary {
  /** Instance id (PM2's `pm_id`). */
  id: number;
  /** App name. */
  name: string;
  /** Instance name (`api-1` for the second instance of `api`). */
  instance_name: string;
  /** Instance number within its app (PM2's `NODE_APP_INSTANCE`). */
  instance: number;
  namespace: string;
  exec_mode: "fork" | "cluster";
  status: ProcStatus;
  pid: number | null;
  /** CPU share, percent. */
  cpu: number;
  /** Resident memory, bytes. */
  memory: number;
  restarts: number;
  unstable_restarts: number;
  /** When the running process started (epoch ms). */
  started_at_ms: number | null;
  /** Restarts by reason (`crash`, `memory`, `manual`...). */
  restart_reasons: Record<string, number>;
}

/** One instance in detail (`describe()`): its summary, options and runtime facts. */
export interface ProcDetail extends ProcSummary {
  /** The app's resolved options (snake_case, as in an ecosystem file). */
  spec: Record<string, unknown> & { script: string; cwd?: string | null; args?: string[] };
  instances: number;
  interpreter: string | null;
  env: Record<string, string>;
  pending_env: string[];
  created_at_ms: number;
  last_exit: { code: number | null; signal: string | null; at_ms: number; uptime_ms: number } | null;
  status_reason: string | null;
  file_handles: number | null;
  out_log: string;
  err_log: string;
  log_file: string | null;
  log_dropped_bytes: number;
  pid_file: string;
  [key: string]: unknown;
}

/** The outcome of an action, as the daemon sends it. */
export interface ActionResponse {
  processes: ProcSummary[];
  errors: ApiErrorBody[];
  notices?: string[];
}

/** The daemon's identity (`ping()`, `kill()`). */
export interface PingResponse {
  pid: number;
  version: string;
  protocol: number;
  uptime_ms: number;
  home: string;
  exe?: string | null;
  handovers?: number;
}

/** Where `save()` wrote the dump. */
export interface SaveResponse {
  path: string;
  count: number;
}

/**
 * An app's options as in an ecosystem file: PM2's spellings (`exec_mode`, `max_memory_restart`)
 * or BM2's (`execMode`, `maxMemoryRestart`). The daemon validates them: an unknown or bad key
 * is an `invalid_app` error naming it.
 */
export interface AppOptions {
  name?: string;
  script: string;
  args?: string | string[];
  cwd?: string;
  instances?: number | string;
  exec_mode?: "fork" | "cluster" | "fork_mode" | "cluster_mode";
  execMode?: "fork" | "cluster";
  env?: Record<string, string | number | boolean>;
  [option: string]: unknown;
}

/** How `start()` treats what it is given. */
export interface StartFlags {
  /** Directory relative scripts resolve in (default `process.cwd()`). */
  cwd?: string;
  /** Apply the apps' `env_<name>` block (`--env production`). */
  envName?: string;
  /** Start even when an app of the same name is managed already. */
  force?: boolean;
  /** What to do with an app managed already: refuse (default), restart or reload it. */
  ifExists?: "fail" | "restart" | "reload";
  /** The environment the apps inherit (default `process.env`). */
  clientEnv?: Record<string, string | undefined>;
}

/** One line of `logs()`. */
export interface LogLine {
  /** `out` or `err`. */
  type: "out" | "err";
  /** The line, without its newline. */
  data: string;
  /** Instance id. */
  id: number;
  /** Instance name. */
  name: string;
  /** App name. */
  app: string;
}

/** The process an event is about. */
export interface EventProcess {
  id: number;
  name: string;
  instance: number;
  pid: number | null;
  namespace: string;
}

/** A process's lifecycle event. */
export interface ProcessEvent {
  type: "process:event";
  event: "start" | "online" | "exit" | "restart" | "stop" | "delete" | string;
  at_ms: number;
  process: EventProcess;
  /** Exit code (on `exit`). */
  code?: number | null;
  /** Signal that ended it (on `exit`). */
  signal?: string | null;
  /** Why it restarts (on `restart`): `crash`, `memory`, `manual`... */
  reason?: string | null;
}

/** A line an app wrote (with `events({logs: true})`). */
export interface LogEventMessage {
  type: "log:out" | "log:err";
  at_ms: number;
  process: EventProcess;
  data: string;
}

/** What an app sent with `process.send({type: 'process:msg', data, topic})`. */
export interface ProcessMessage {
  type: "process:msg";
  at_ms: number;
  process: EventProcess;
  data: unknown;
  topic: string | null;
}

/** The daemon dropped `missed` events because this subscriber fell behind. */
export interface LaggedMessage {
  type: "lagged";
  missed: number;
}

export type Bm2Event = ProcessEvent | LogEventMessage | ProcessMessage | LaggedMessage;

/** Where and how the dashboard listens (all optional; the daemon's defaults otherwise). */
export interface DashboardOptions {
  /** Port of the dashboard (default 9615; 0: any free port). */
  port?: number;
  /** Port of the Prometheus endpoint (default 9616; 0: any free port). */
  metricsPort?: number;
  /** Address both listen on (default 127.0.0.1). */
  host?: string;
  /** Serve read-only JSON without the token. */
  publicRead?: boolean;
  /** Most WebSocket sessions open at once. */
  maxSessions?: number;
}

/** A running dashboard. */
export interface DashboardInfo {
  url: string;
  metrics_url: string;
  options: {
    enabled: boolean;
    port: number;
    metrics_port: number;
    host: string;
    public_read: boolean;
    max_sessions: number;
  };
  warning?: string;
}

/** Every instance's and the machine's figures now. */
export interface MetricsSnapshot {
  timestamp: number;
  processes: Array<{
    id: number;
    name: string;
    app: string;
    pid: number | null;
    cpu: number;
    memory: number;
    handles: number | null;
    status: ProcStatus;
    restarts: number;
    uptime: number;
    [key: string]: unknown;
  }>;
  /** The machine (camelCase keys, as the dashboard's API sends them). */
  system: {
    totalMemory: number;
    freeMemory: number;
    cpuCount: number;
    loadAvg: [number, number, number];
    platform: string;
    cpuUsage: number;
    disk: { path: string; totalBytes: number; freeBytes: number } | null;
    network: { rxBytes: number; txBytes: number };
  };
}

/** Samples of the last seconds. */
export interface MetricsHistory {
  interval_ms: number;
  timestamps: number[];
  processes: Array<{ id: number; name: string; cpu: Array<number | null>; memory: Array<number | null> }>;
  system: { cpuUsage: number[]; freeMemory: number[]; [key: string]: unknown };
}
