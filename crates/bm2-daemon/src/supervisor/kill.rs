//! Signalling an app's whole process tree: its process group, its descendants, and the
//! orphans it left with the daemon (as subreaper) that still carry its marker.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::procfs::{self, ProcStat, Tree};

/// The signal to send for a [`bm2_types::Signal`].
pub fn nix_signal(sig: bm2_types::Signal) -> Signal {
    use bm2_types::Signal as S;
    match sig {
        S::HUP => Signal::SIGHUP,
        S::INT => Signal::SIGINT,
        S::QUIT => Signal::SIGQUIT,
        S::ILL => Signal::SIGILL,
        S::TRAP => Signal::SIGTRAP,
        S::ABRT => Signal::SIGABRT,
        S::BUS => Signal::SIGBUS,
        S::FPE => Signal::SIGFPE,
        S::KILL => Signal::SIGKILL,
        S::USR1 => Signal::SIGUSR1,
        S::SEGV => Signal::SIGSEGV,
        S::USR2 => Signal::SIGUSR2,
        S::PIPE => Signal::SIGPIPE,
        S::ALRM => Signal::SIGALRM,
        S::TERM => Signal::SIGTERM,
        S::STKFLT => Signal::SIGSTKFLT,
        S::CHLD => Signal::SIGCHLD,
        S::CONT => Signal::SIGCONT,
        S::STOP => Signal::SIGSTOP,
        S::TSTP => Signal::SIGTSTP,
        S::TTIN => Signal::SIGTTIN,
        S::TTOU => Signal::SIGTTOU,
        S::URG => Signal::SIGURG,
        S::XCPU => Signal::SIGXCPU,
        S::XFSZ => Signal::SIGXFSZ,
        S::VTALRM => Signal::SIGVTALRM,
        S::PROF => Signal::SIGPROF,
        S::WINCH => Signal::SIGWINCH,
        S::IO => Signal::SIGIO,
        S::PWR => Signal::SIGPWR,
        S::SYS => Signal::SIGSYS,
    }
}

/// How to recognise the processes of one app instance.
#[derive(Debug, Clone)]
pub struct Marker {
    /// Environment entries every process of the instance inherits (`BM2_HOME=..`, `BM2_ID=..`).
    pub env: Vec<String>,
}

/// The processes of an instance found now: the tree under its main process, plus orphans of the
/// daemon carrying its marker (and their trees), plus earlier-seen descendants still alive.
/// Children the daemon spawned itself (`spawned`) are main processes, not orphans: their
/// environment is not read (with many apps, that read made stopping them all quadratic). The
/// scan of `/proc` used was started no earlier than `since` (shared with other stops).
pub fn find_tree(
    main_pid: Option<u32>,
    marker: &Marker,
    known: &[(u32, u64)],
    spawned: impl Fn(u32) -> bool,
    since: std::time::Instant,
) -> Vec<(u32, u64)> {
    let snapshot = procfs::snapshot_since(since);
    let tree = Tree::new(&snapshot);
    let me = std::process::id();
    let mut found: Vec<&ProcStat> = Vec::new();
    if let Some(pid) = main_pid {
        found.extend(snapshot.iter().filter(|p| p.pid == pid));
        found.extend(tree.descendants(pid));
    }
    for orphan in tree.children(me) {
        if Some(orphan.pid) != main_pid
            && !spawned(orphan.pid)
            && procfs::environ_contains(orphan.pid, &marker.env)
        {
            found.push(orphan);
            found.extend(tree.descendants(orphan.pid));
        }
    }
    let mut out: Vec<(u32, u64)> = found
        .iter()
        .filter(|p| !p.is_zombie())
        .map(|p| (p.pid, p.start_time))
        .collect();
    for &(pid, start) in known {
        if snapshot
            .iter()
            .any(|p| p.pid == pid && p.start_time == start && !p.is_zombie())
        {
            out.push((pid, start));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// A process and its descendants, as (pid, start time).
pub fn tree_of(pid: u32, since: std::time::Instant) -> Vec<(u32, u64)> {
    let snapshot = procfs::snapshot_since(since);
    let tree = Tree::new(&snapshot);
    snapshot
        .iter()
        .filter(|p| p.pid == pid)
        .chain(tree.descendants(pid))
        .map(|p| (p.pid, p.start_time))
        .collect()
}

/// Processes of this machine carrying `marker`, anywhere in the tree (used after a daemon crash,
/// when the orphans of the old daemon were adopted by init).
pub fn find_marked(marker: &Marker) -> Vec<(u32, u64)> {
    let me = std::process::id();
    procfs::snapshot()
        .iter()
        .filter(|p| p.pid != me && !p.is_zombie() && procfs::environ_contains(p.pid, &marker.env))
        .map(|p| (p.pid, p.start_time))
        .collect()
}

/// Sends `sig` once to every process of a group and of a list: to the group with `killpg`, and
/// to each listed process outside that group that is still the same process.
pub fn signal_all(pgid: Option<u32>, procs: &[(u32, u64)], sig: Signal) {
    let pgid = pgid.filter(|g| *g > 1);
    if let Some(pgid) = pgid {
        let _ = killpg(Pid::from_raw(pgid as i32), sig);
    }
    for &(pid, start) in procs {
        if let Some(s) = procfs::read_stat(pid)
            && s.start_time == start
            && !s.is_zombie()
            && Some(s.pgrp) != pgid
        {
            let _ = kill(Pid::from_raw(pid as i32), sig);
        }
    }
}

/// The listed processes that are zombie children of the daemon, to be reaped.
pub fn zombie_orphans(procs: &[(u32, u64)]) -> Vec<u32> {
    let me = std::process::id();
    procs
        .iter()
        .filter_map(|&(pid, _)| procfs::read_stat(pid))
        .filter(|s| s.ppid == me && s.is_zombie())
        .map(|s| s.pid)
        .collect()
}

/// The listed processes that are still alive.
pub fn alive(procs: &[(u32, u64)]) -> Vec<(u32, u64)> {
    procs
        .iter()
        .copied()
        .filter(|&(pid, start)| procfs::is_same_process(pid, start))
        .collect()
}

/// Polls until none of `procs` is alive; false on timeout.
/// Checks are spaced from 1 ms up to `max_pause`.
pub async fn wait_gone(procs: &[(u32, u64)], timeout: Duration, max_pause: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1).min(max_pause);
    loop {
        if alive(procs).is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(max_pause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signal_maps_to_the_same_number() {
        for &s in bm2_types::Signal::ALL {
            assert_eq!(nix_signal(s) as i32, s.number(), "{s}");
        }
    }
}
