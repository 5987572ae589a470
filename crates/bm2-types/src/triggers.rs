//! What the automatic-restart triggers report: why an instance was restarted, and the state of
//! its health check, cron schedule and file watcher.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Why an instance was restarted. Counted per instance in `restart_reasons`, under
/// [`RestartReason::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartReason {
    /// The process exited by itself and the restart policy started it again.
    Crash,
    /// Its process tree used more memory than `max_memory_restart`.
    Memory,
    /// Its health check failed `health_check_max_fails` times in a row.
    Health,
    /// Its `cron_restart` schedule came due.
    Cron,
    /// A watched file changed.
    Watch,
    /// Someone asked: `restart`, `reload`, or `start` of a managed app.
    Manual,
}

impl RestartReason {
    /// Every reason, in a stable order (for exporters that list zeros too).
    pub const ALL: [RestartReason; 6] = [
        RestartReason::Crash,
        RestartReason::Memory,
        RestartReason::Health,
        RestartReason::Cron,
        RestartReason::Watch,
        RestartReason::Manual,
    ];

    /// The name used as the key of `restart_reasons` and in logs: `crash`, `memory`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            RestartReason::Crash => "crash",
            RestartReason::Memory => "memory",
            RestartReason::Health => "health",
            RestartReason::Cron => "cron",
            RestartReason::Watch => "watch",
            RestartReason::Manual => "manual",
        }
    }
}

impl std::fmt::Display for RestartReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The most recent restart of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRestart {
    /// What caused it.
    pub reason: RestartReason,
    /// In words: the exit, the memory used, the failing check, the schedule, the changed file.
    pub detail: String,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// Outcome of the recent health probes of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Not probed yet since the process started (or the process is not running).
    Unknown,
    /// The last probe passed.
    Healthy,
    /// The last probe failed.
    Unhealthy,
}

impl HealthState {
    /// `unknown`, `healthy` or `unhealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Unknown => "unknown",
            HealthState::Healthy => "healthy",
            HealthState::Unhealthy => "unhealthy",
        }
    }
}

/// The health check of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthInfo {
    /// What is probed: `GET http://127.0.0.1:3000/health`, `tcp 127.0.0.1:5432`, `cmd ...`.
    pub check: String,
    /// Outcome of the last probe.
    pub state: HealthState,
    /// Failed probes in a row.
    pub consecutive_fails: u32,
    /// Failed probes in a row that restart the instance.
    pub max_fails: u32,
    /// Why the last failed probe failed.
    pub last_error: Option<String>,
    /// When the last probe ended, in milliseconds since the Unix epoch.
    pub last_check_ms: Option<u64>,
}

/// The cron schedule of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronInfo {
    /// The expression, as given.
    pub expression: String,
    /// The time zone it is read in (the app's `TZ`, else the daemon's local zone).
    pub time_zone: String,
    /// When it next restarts the instance, in milliseconds since the Unix epoch.
    pub next_run_ms: Option<u64>,
    /// When it last came due, in milliseconds since the Unix epoch.
    pub last_run_ms: Option<u64>,
    /// Why the schedule cannot be used (an unknown time zone, say), if it cannot.
    #[serde(default)]
    pub error: Option<String>,
}

/// The file watcher of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchInfo {
    /// True while changes restart the instance.
    pub watching: bool,
    /// The watched paths (absolute).
    pub paths: Vec<PathBuf>,
    /// Ignore patterns in force.
    pub ignore: Vec<String>,
    /// Milliseconds of quiet after a change before the restart.
    pub delay_ms: u64,
    /// Directories under watch.
    pub directories: usize,
    /// Why watching is off although `watch` is set (`bm2 stop --watch`, the restart-loop guard).
    pub off_reason: Option<String>,
    /// The last change seen, relative to the app's directory.
    pub last_change: Option<String>,
    /// A problem with the watch itself (a missing path, the inotify watch limit).
    pub error: Option<String>,
}
