//! Processes that a daemon of this home left running when it died (or that were spawned just
//! before it died, before their pids were recorded): found by the pids in the state file and by
//! the marker (`BM2_HOME`, `BM2_ID`) that every app process carries, and stopped before anything
//! is started again, so that nothing runs twice and nothing is orphaned.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bm2_types::ProcId;
use nix::sys::signal::Signal;

use crate::persist::StateFile;
use crate::procfs;
use crate::supervisor::kill;

/// Longest wait for leftovers to exit after their kill signal, whatever their `kill_timeout`.
const MAX_GRACE: Duration = Duration::from_secs(30);

/// A process of this home that no running daemon owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leftover {
    /// Its pid.
    pub pid: u32,
    /// Its start time, so that a recycled pid is never signalled.
    pub start_time: u64,
    /// The instance it belongs to, from its marker (`None`: only its recorded pid matched).
    pub id: Option<ProcId>,
}

/// What [`stop`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stopped {
    /// Processes found.
    pub processes: usize,
    /// Of those, processes of instances the state file did not record.
    pub unrecorded: usize,
    /// Processes that needed SIGKILL.
    pub killed: usize,
}

/// Every live process of `home`: the recorded main pids of `state` that are still the same
/// process, and every process whose environment carries this home's marker. Skips the calling
/// process. Reads `/proc`: call it off the async runtime's threads.
pub fn find(home: &Path, state: &StateFile) -> Vec<Leftover> {
    let me = std::process::id();
    let home_entry = format!("BM2_HOME={}", home.display());
    let mut found: HashMap<u32, Leftover> = HashMap::new();
    for s in &state.instances {
        if let (Some(pid), Some(start)) = (s.pid, s.pid_start_time)
            && pid != me
            && procfs::is_same_process(pid, start)
        {
            found.insert(
                pid,
                Leftover {
                    pid,
                    start_time: start,
                    id: Some(s.id),
                },
            );
        }
    }
    for p in procfs::snapshot() {
        if p.pid == me || p.is_zombie() || found.contains_key(&p.pid) {
            continue;
        }
        if let Some(id) = procfs::marked_instance(p.pid, &home_entry) {
            found.insert(
                p.pid,
                Leftover {
                    pid: p.pid,
                    start_time: p.start_time,
                    id: Some(id),
                },
            );
        }
    }
    let mut out: Vec<Leftover> = found.into_values().collect();
    out.sort_by_key(|l| l.pid);
    out
}

/// Stops every leftover of `home`: each gets its app's kill signal (SIGINT for processes of
/// unrecorded instances) to its process group and itself, then SIGKILL after the longest kill
/// timeout involved (at most 30 s).
pub async fn stop(home: &Path, state: &StateFile) -> Stopped {
    let (home_dir, snapshot) = (home.to_path_buf(), state.clone());
    let procs = tokio::task::spawn_blocking(move || find(&home_dir, &snapshot))
        .await
        .unwrap_or_default();
    if procs.is_empty() {
        return Stopped::default();
    }
    let mut grace = Duration::ZERO;
    let mut unrecorded = 0;
    for p in &procs {
        let spec =
            p.id.and_then(|id| state.instances.iter().find(|s| s.id == id))
                .map(|s| &s.spec);
        let sig = spec.map_or(Signal::SIGINT, |s| kill::nix_signal(s.kill_signal));
        if spec.is_none() {
            unrecorded += 1;
        }
        grace = grace.max(spec.map_or(Duration::from_secs(5), |s| {
            Duration::from_millis(s.kill_timeout)
        }));
        kill::signal_all(Some(p.pid), &[(p.pid, p.start_time)], sig);
    }
    let all: Vec<(u32, u64)> = procs.iter().map(|p| (p.pid, p.start_time)).collect();
    tracing::info!(
        count = all.len(),
        unrecorded,
        "stopping processes left by a previous daemon"
    );
    let mut killed = 0;
    if !kill::wait_gone(&all, grace.min(MAX_GRACE), Duration::from_millis(20)).await {
        let left = kill::alive(&all);
        killed = left.len();
        for &(pid, start) in &left {
            kill::signal_all(Some(pid), &[(pid, start)], Signal::SIGKILL);
        }
        kill::wait_gone(&all, Duration::from_secs(5), Duration::from_millis(20)).await;
    }
    Stopped {
        processes: all.len(),
        unrecorded,
        killed,
    }
}
