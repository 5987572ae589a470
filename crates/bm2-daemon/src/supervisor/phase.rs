//! The phase of an instance: one value for what its actor is doing, from which the published
//! status follows, and the rules that decide whether a trigger or the memory check may act in
//! a phase. Pure: unit-tested without processes.

use bm2_types::ProcStatus;
use tokio::time::Instant;

/// How an instance without a process got there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Never started, stopped on request, or done (autorestart off, a stop exit code).
    Stopped,
    /// Given up: spawning failed, or too many unstable restarts.
    Errored,
}

/// What the instance is doing. `P` is its running process (the actor's `Running`; a plain pid
/// in tests).
#[derive(Debug)]
pub enum Phase<P> {
    /// No process.
    Idle(Ended),
    /// A process runs; `ready_by` is set until it is ready (or that time passes).
    Running {
        /// The process.
        run: P,
        /// When it counts as settled if it is not ready by then.
        ready_by: Option<Instant>,
        /// It is `launching` until then, not `online` (an app with `wait_ready`, as in PM2);
        /// other processes are online as soon as they run, readiness aside.
        launching: bool,
    },
    /// Its process is being stopped (by a command or a restart); its pid, for the checks.
    Stopping(u32),
    /// The process exited; a new one starts at `at`.
    WaitingRestart {
        /// When.
        at: Instant,
    },
}

/// The pid of a running process, whatever carries it.
pub trait Pid {
    /// Its pid.
    fn pid(&self) -> u32;
}

impl Pid for u32 {
    fn pid(&self) -> u32 {
        *self
    }
}

impl<P: Pid> Phase<P> {
    /// The status shown for this phase.
    pub fn status(&self) -> ProcStatus {
        match self {
            Phase::Idle(Ended::Stopped) => ProcStatus::Stopped,
            Phase::Idle(Ended::Errored) => ProcStatus::Errored,
            Phase::Running {
                ready_by: Some(_),
                launching: true,
                ..
            } => ProcStatus::Launching,
            Phase::Running { .. } => ProcStatus::Online,
            Phase::Stopping(_) => ProcStatus::Stopping,
            Phase::WaitingRestart { .. } => ProcStatus::WaitingRestart,
        }
    }

    /// The running process.
    pub fn running(&self) -> Option<&P> {
        match self {
            Phase::Running { run, .. } => Some(run),
            _ => None,
        }
    }

    /// The running process, to change.
    pub fn running_mut(&mut self) -> Option<&mut P> {
        match self {
            Phase::Running { run, .. } => Some(run),
            _ => None,
        }
    }

    /// The pid of the process that runs (or is being stopped).
    pub fn pid(&self) -> Option<u32> {
        match self {
            Phase::Running { run, .. } => Some(run.pid()),
            Phase::Stopping(pid) => Some(*pid),
            _ => None,
        }
    }

    /// When a process that has not said it is ready counts as online anyway.
    pub fn ready_by(&self) -> Option<Instant> {
        match self {
            Phase::Running { ready_by, .. } => *ready_by,
            _ => None,
        }
    }

    /// When the next process starts, while waiting to restart.
    pub fn restart_at(&self) -> Option<Instant> {
        match self {
            Phase::WaitingRestart { at } => Some(*at),
            _ => None,
        }
    }

    /// The process is ready (or the time to be so passed): it is online.
    pub fn settle(&mut self) {
        if let Phase::Running {
            ready_by,
            launching,
            ..
        } = self
        {
            *ready_by = None;
            *launching = false;
        }
    }

    /// Takes the running process out: the phase becomes `Stopping` (its pid kept for the
    /// checks) until the caller says how it ended.
    pub fn begin_stop(&mut self) -> Option<P> {
        let pid = self.running().map(Pid::pid)?;
        match std::mem::replace(self, Phase::Stopping(pid)) {
            Phase::Running { run, .. } => Some(run),
            _ => None,
        }
    }

    /// Takes the running process out, the phase becoming `Idle(ended)`.
    pub fn end(&mut self, ended: Ended) -> Option<P> {
        match std::mem::replace(self, Phase::Idle(ended)) {
            Phase::Running { run, .. } => Some(run),
            _ => None,
        }
    }
}

/// What to do with a request to act on the instance (a trigger's restart, the memory limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Act.
    Act,
    /// Do nothing, for this reason.
    Ignore(String),
}

/// Whether a trigger's restart applies. `judged` is the pid a health check judged (none for
/// cron and file changes); `held` is true when the instance was stopped on request.
pub fn trigger<P: Pid>(phase: &Phase<P>, judged: Option<u32>, held: bool) -> Verdict {
    if let Phase::Stopping(pid) = phase {
        return Verdict::Ignore(format!("process {pid} is being stopped"));
    }
    if let Some(pid) = judged
        && phase.running().map(Pid::pid) != Some(pid)
    {
        return Verdict::Ignore(format!("process {pid} is not running any more"));
    }
    if held {
        return Verdict::Ignore("it is stopped".into());
    }
    Verdict::Act
}

/// Whether the memory check's restart applies: only to the process that was measured, while it
/// runs.
pub fn memory<P: Pid>(phase: &Phase<P>, measured: u32) -> Verdict {
    match phase.running().map(Pid::pid) {
        Some(pid) if pid == measured => Verdict::Act,
        Some(pid) => Verdict::Ignore(format!(
            "process {measured} was measured, but process {pid} runs now"
        )),
        None => Verdict::Ignore(format!("process {measured} is not running any more")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(pid: u32) -> Phase<u32> {
        Phase::Running {
            run: pid,
            ready_by: None,
            launching: false,
        }
    }

    #[test]
    fn the_status_follows_the_phase() {
        let soon = Instant::now();
        assert_eq!(
            Phase::<u32>::Idle(Ended::Stopped).status(),
            ProcStatus::Stopped
        );
        assert_eq!(
            Phase::<u32>::Idle(Ended::Errored).status(),
            ProcStatus::Errored
        );
        assert_eq!(running(7).status(), ProcStatus::Online);
        let mut launching = Phase::Running {
            run: 7u32,
            ready_by: Some(soon),
            launching: true,
        };
        assert_eq!(launching.status(), ProcStatus::Launching);
        assert_eq!(launching.ready_by(), Some(soon));
        launching.settle();
        assert_eq!(launching.status(), ProcStatus::Online);
        assert_eq!(launching.ready_by(), None);
        // A process that is not ready yet but does not announce it is online as it runs.
        let unready = Phase::Running {
            run: 7u32,
            ready_by: Some(soon),
            launching: false,
        };
        assert_eq!(unready.status(), ProcStatus::Online);
        assert_eq!(unready.ready_by(), Some(soon));
        assert_eq!(Phase::<u32>::Stopping(7).status(), ProcStatus::Stopping);
        let waiting = Phase::<u32>::WaitingRestart { at: soon };
        assert_eq!(waiting.status(), ProcStatus::WaitingRestart);
        assert_eq!(waiting.restart_at(), Some(soon));
        assert_eq!(waiting.pid(), None);
    }

    #[test]
    fn stopping_keeps_the_pid_until_the_end_is_known() {
        let mut p = running(7);
        assert_eq!(p.begin_stop(), Some(7));
        assert_eq!(p.pid(), Some(7));
        assert_eq!(p.status(), ProcStatus::Stopping);
        assert_eq!(p.begin_stop(), None, "nothing runs any more");
        assert_eq!(p.end(Ended::Stopped), None);
        assert_eq!(p.status(), ProcStatus::Stopped);
        let mut p = running(8);
        assert_eq!(p.end(Ended::Errored), Some(8));
        assert_eq!(p.status(), ProcStatus::Errored);
    }

    #[test]
    fn triggers_are_ignored_while_a_stop_is_in_progress() {
        let v = trigger(&Phase::<u32>::Stopping(7), None, false);
        assert!(matches!(v, Verdict::Ignore(r) if r.contains("being stopped")));
        let v = trigger(&Phase::<u32>::Stopping(7), Some(7), false);
        assert!(matches!(v, Verdict::Ignore(_)));
    }

    #[test]
    fn a_health_verdict_on_a_replaced_process_is_ignored() {
        assert!(
            matches!(trigger(&running(8), Some(7), false), Verdict::Ignore(r) if r.contains('7'))
        );
        assert_eq!(trigger(&running(7), Some(7), false), Verdict::Act);
        assert!(matches!(
            trigger(&Phase::<u32>::Idle(Ended::Stopped), Some(7), false),
            Verdict::Ignore(_)
        ));
    }

    #[test]
    fn a_held_instance_is_left_stopped_by_cron_and_watch() {
        let idle = Phase::<u32>::Idle(Ended::Stopped);
        assert!(matches!(trigger(&idle, None, true), Verdict::Ignore(_)));
        // An app that exited by itself (not held) is started by its schedule.
        assert_eq!(trigger(&idle, None, false), Verdict::Act);
        assert_eq!(trigger(&running(3), None, false), Verdict::Act);
    }

    #[test]
    fn a_memory_signal_for_a_pid_that_has_since_changed_is_ignored() {
        assert_eq!(memory(&running(7), 7), Verdict::Act);
        assert!(matches!(memory(&running(8), 7), Verdict::Ignore(r) if r.contains('8')));
        assert!(matches!(
            memory(&Phase::<u32>::Stopping(7), 7),
            Verdict::Ignore(_)
        ));
        let waiting = Phase::<u32>::WaitingRestart { at: Instant::now() };
        assert!(matches!(memory(&waiting, 7), Verdict::Ignore(_)));
    }
}
