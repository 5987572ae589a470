//! What the daemon reports about managed processes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{AppSpec, CronInfo, ExecMode, HealthInfo, LastRestart, ProcId, WatchInfo};

/// Lifecycle state of one instance, named as PM2 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProcStatus {
    /// Being spawned.
    #[serde(rename = "launching")]
    Launching,
    /// Running.
    #[serde(rename = "online")]
    Online,
    /// Stop signal sent, waiting for the process tree to exit.
    #[serde(rename = "stopping")]
    Stopping,
    /// Not running, by request or because it exited and is not restarted.
    #[serde(rename = "stopped")]
    Stopped,
    /// Gave up: spawn failed or too many unstable restarts.
    #[serde(rename = "errored")]
    Errored,
    /// Exited; will be restarted after a delay.
    #[serde(rename = "waiting restart")]
    WaitingRestart,
}

impl ProcStatus {
    /// The status as shown to users (`waiting restart`, `online`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ProcStatus::Launching => "launching",
            ProcStatus::Online => "online",
            ProcStatus::Stopping => "stopping",
            ProcStatus::Stopped => "stopped",
            ProcStatus::Errored => "errored",
            ProcStatus::WaitingRestart => "waiting restart",
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit code, when it exited by itself.
    pub code: Option<i32>,
    /// Name of the signal that killed it, if any.
    pub signal: Option<String>,
    /// When it ended, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// How long it had been running, in milliseconds.
    pub uptime_ms: u64,
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.code, &self.signal) {
            (_, Some(sig)) => write!(f, "killed by {sig}"),
            (Some(code), None) => write!(f, "exited with code {code}"),
            (None, None) => f.write_str("exited"),
        }
    }
}

/// One row of the process list: cheap to produce and to send for every instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcSummary {
    /// Instance id.
    pub id: ProcId,
    /// App name.
    pub name: String,
    /// Name of this instance: the app name, or `<name>-<i>` when the app has several instances.
    pub instance_name: String,
    /// Index of this instance within its app, from 0.
    pub instance: u32,
    /// Namespace of the app.
    pub namespace: String,
    /// Fork or cluster.
    pub exec_mode: ExecMode,
    /// Current state.
    pub status: ProcStatus,
    /// Pid of the main process while it runs.
    pub pid: Option<u32>,
    /// CPU use of the whole process tree, in percent of one core.
    pub cpu: f32,
    /// Resident memory of the whole process tree, in bytes.
    pub memory: u64,
    /// Restarts since it was started or reset.
    pub restarts: u32,
    /// Consecutive restarts after running less than `min_uptime`.
    pub unstable_restarts: u32,
    /// When the current process started, in milliseconds since the Unix epoch.
    pub started_at_ms: Option<u64>,
    /// Restarts since it was started or reset, by reason (`crash`, `memory`, `health`, `cron`,
    /// `watch`, `manual`); reasons that never happened are absent.
    #[serde(default)]
    pub restart_reasons: BTreeMap<String, u64>,
}

/// Everything known about one instance: its row, its options and its runtime details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcDetail {
    /// The list row.
    #[serde(flatten)]
    pub summary: ProcSummary,
    /// The app's options.
    pub spec: AppSpec,
    /// Number of instances the app was started with.
    pub instances: u32,
    /// The program actually executed: the interpreter, or the script itself.
    pub interpreter: Option<String>,
    /// Full environment given to the process (for an instance that never ran, the one it would get).
    pub env: BTreeMap<String, String>,
    /// Variables set with `bm2 env set`/`delete` that the running process does not have yet.
    #[serde(default)]
    pub pending_env: Vec<String>,
    /// When the instance was registered, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// How the last process ended.
    pub last_exit: Option<ExitInfo>,
    /// Why the instance is in its current state (`errored: spawn failed: ...`).
    pub status_reason: Option<String>,
    /// Open file descriptors of the main process.
    pub file_handles: Option<u32>,
    /// Stdout log file (`/dev/null` when not written).
    pub out_log: PathBuf,
    /// Stderr log file (`/dev/null` when not written).
    pub err_log: PathBuf,
    /// Combined log file, when there is one.
    #[serde(default)]
    pub log_file: Option<PathBuf>,
    /// Bytes of output that could not be written to the log files (disk full, unwritable).
    #[serde(default)]
    pub log_dropped_bytes: u64,
    /// Pid file.
    pub pid_file: PathBuf,
    /// Cluster details, for instances behind the balancer.
    #[serde(default)]
    pub cluster: Option<ClusterInfo>,
    /// The most recent restart: its reason, in words, and when.
    #[serde(default)]
    pub last_restart: Option<LastRestart>,
    /// The health check, when the app has one.
    #[serde(default)]
    pub health: Option<HealthInfo>,
    /// The cron restart schedule, when the app has one.
    #[serde(default)]
    pub cron: Option<CronInfo>,
    /// The file watcher, when the app watches files.
    #[serde(default)]
    pub watch: Option<WatchInfo>,
}

/// An instance of a cluster app, as the balancer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// Public address of the balancer (`0.0.0.0:3000`).
    pub listen: String,
    /// The instance's private port.
    pub private_port: Option<u16>,
    /// Whether it receives connections.
    pub ready: bool,
    /// Connections open to it now.
    pub connections: u64,
    /// Connections it has received.
    pub total_connections: u64,
}
