//! The JSON snapshot (`bm2 metrics`) and history (`bm2 metrics --history`) built from the
//! registry and what the sampler measured. Shared by every API that serves metrics.

use bm2_types::ErrorCode;
use bm2_types::{
    ApiError, HISTORY_MAX_SECONDS, MetricsHistory, MetricsSnapshot, ProcId, ProcessHistory,
    ProcessMetrics, SystemHistory, SystemMetrics,
};

use super::system;
use crate::Shared;
use crate::procfs;
use crate::registry::Registry;
use crate::time::now_ms;

/// Every instance and the machine, now.
pub fn snapshot(registry: &Registry, shared: &Shared) -> MetricsSnapshot {
    let now = now_ms();
    let processes = registry
        .all()
        .iter()
        .map(|h| {
            let v = h.view.borrow();
            let (cpu, memory) = match v.pid {
                Some(_) => shared.metrics.usage(h.inst.id),
                None => (0.0, 0),
            };
            ProcessMetrics {
                id: h.inst.id,
                name: h.inst.display_name(),
                app: h.inst.app.clone(),
                pid: v.pid,
                cpu: round2(cpu),
                memory,
                handles: v.pid.and_then(procfs::fd_count),
                status: v.status,
                restarts: v.restarts,
                uptime: match (v.pid, v.started_at_ms) {
                    (Some(_), Some(t)) => now.saturating_sub(t),
                    _ => 0,
                },
                restart_reasons: v.restart_reasons.clone(),
                health: h.triggers.borrow().health.as_ref().map(|h| h.state),
            }
        })
        .collect();
    let (total_memory, free_memory) = system::memory().unwrap_or_default();
    MetricsSnapshot {
        timestamp: now,
        processes,
        system: SystemMetrics {
            total_memory,
            free_memory,
            cpu_count: system::cpu_count(),
            load_avg: system::load_average(),
            platform: std::env::consts::OS.to_string(),
            cpu_usage: round2(shared.metrics.system_cpu()),
            disk: system::disk(shared.home.root()),
            network: system::network(),
        },
    }
}

/// The samples of the last `seconds` (1 to [`HISTORY_MAX_SECONDS`]), for every instance or only
/// the instance `only`.
pub fn history(
    registry: &Registry,
    shared: &Shared,
    seconds: u64,
    only: Option<ProcId>,
) -> Result<MetricsHistory, ApiError> {
    if !(1..=HISTORY_MAX_SECONDS).contains(&seconds) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "history of {seconds} s: give a number of seconds from 1 to {HISTORY_MAX_SECONDS} (one hour is kept)"
            ),
        ));
    }
    let handles = registry.all();
    if let Some(id) = only
        && !handles.iter().any(|h| h.inst.id == id)
    {
        return Err(ApiError::new(
            ErrorCode::UnknownTarget,
            format!("no process with id {id}"),
        ));
    }
    let since = now_ms().saturating_sub(seconds * 1000);
    let window = shared.metrics.history().window(since, only);
    let processes = window
        .series
        .into_iter()
        .filter_map(|(id, points)| {
            let h = handles.iter().find(|h| h.inst.id == id)?;
            Some(ProcessHistory {
                id,
                name: h.inst.display_name(),
                cpu: points.iter().map(|p| p.map(|p| round2(p.cpu))).collect(),
                memory: points
                    .iter()
                    .map(|p| p.map(|p| u64::from(p.mem_kib) * 1024))
                    .collect(),
            })
        })
        .collect();
    Ok(MetricsHistory {
        interval_ms: shared.metrics.interval_ms(),
        timestamps: window.times,
        processes,
        system: SystemHistory {
            cpu_usage: window.system.iter().map(|p| round2(p.cpu)).collect(),
            free_memory: window
                .system
                .iter()
                .map(|p| u64::from(p.free_kib) * 1024)
                .collect(),
        },
    })
}

/// A percentage to two decimals: the precision of `/proc` tick counts, without float noise.
pub fn round2(v: f32) -> f32 {
    (v * 100.0).round() / 100.0
}
