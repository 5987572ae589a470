//! Metrics: the snapshot of `bm2 metrics` and the history of `bm2 metrics --history`.
//!
//! Field names follow the BM2 JSON shape (`totalMemory`, `loadAvg`, ...), which the dashboard
//! and scripts written for BM2 read.

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::{HealthState, ProcId, ProcStatus};

/// Most seconds of history the daemon keeps and serves.
pub const HISTORY_MAX_SECONDS: u64 = 3600;

/// Points kept per instance: one per sample, so one hour at the default 1 s interval.
pub const HISTORY_POINTS: usize = 3600;

/// Everything measured now: each instance and the system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// When it was taken, in milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// One entry per instance, by id.
    pub processes: Vec<ProcessMetrics>,
    /// The machine.
    pub system: SystemMetrics,
}

/// One instance, as measured by the last sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessMetrics {
    /// Instance id.
    pub id: ProcId,
    /// Instance name (`api`, or `api-0` when the app has several instances).
    pub name: String,
    /// App name.
    pub app: String,
    /// Main pid while it runs.
    pub pid: Option<u32>,
    /// CPU use of the whole process tree over the last sample, in percent of one core.
    pub cpu: f32,
    /// Resident memory of the whole process tree, in bytes.
    pub memory: u64,
    /// Open file descriptors of the main process (absent when not running or not readable).
    pub handles: Option<u32>,
    /// Current state.
    pub status: ProcStatus,
    /// Restarts since it was started or reset.
    pub restarts: u32,
    /// Milliseconds since the current process started (0 when not running).
    pub uptime: u64,
    /// Restarts by reason (`crash`, `memory`, `health`, `cron`, `watch`, `manual`).
    #[serde(default)]
    pub restart_reasons: BTreeMap<String, u64>,
    /// Outcome of the last health probe, when the app has a health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthState>,
}

/// The machine: memory, CPUs, load, disk and network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemMetrics {
    /// Physical memory, in bytes (`MemTotal`).
    pub total_memory: u64,
    /// Memory available to new work without swapping, in bytes (`MemAvailable`).
    pub free_memory: u64,
    /// Logical CPUs.
    pub cpu_count: u32,
    /// Load average over 1, 5 and 15 minutes.
    pub load_avg: [f64; 3],
    /// Operating system (`linux`).
    pub platform: String,
    /// CPU busy time of the whole machine over the last sample, in percent of all CPUs.
    pub cpu_usage: f32,
    /// The filesystem holding the bm2 home (logs and state).
    pub disk: Option<DiskMetrics>,
    /// Bytes through every network interface except loopback, since boot.
    pub network: NetworkMetrics,
}

/// Space on one filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskMetrics {
    /// A path on it (the bm2 home).
    pub path: String,
    /// Size, in bytes.
    pub total_bytes: u64,
    /// Space available to unprivileged users, in bytes.
    pub free_bytes: u64,
}

/// Network totals since boot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkMetrics {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
}

/// The samples of the last `seconds`: one shared timeline, and per instance one value per
/// timestamp (`null` before the instance existed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsHistory {
    /// The sample interval, in milliseconds: the spacing of the points.
    pub interval_ms: u64,
    /// When each sample was taken, in milliseconds since the Unix epoch, oldest first.
    pub timestamps: Vec<u64>,
    /// One series per instance, by id.
    pub processes: Vec<ProcessHistory>,
    /// The machine, one value per timestamp.
    pub system: SystemHistory,
}

/// One instance's samples, aligned with [`MetricsHistory::timestamps`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessHistory {
    /// Instance id.
    pub id: ProcId,
    /// Instance name.
    pub name: String,
    /// CPU percent of one core (0 while not running).
    pub cpu: Vec<Option<f32>>,
    /// Resident memory in bytes, to the KiB (0 while not running).
    pub memory: Vec<Option<u64>>,
}

/// The machine's samples, aligned with [`MetricsHistory::timestamps`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemHistory {
    /// CPU busy percent of all CPUs.
    pub cpu_usage: Vec<f32>,
    /// Available memory, in bytes, to the KiB.
    pub free_memory: Vec<u64>,
}
