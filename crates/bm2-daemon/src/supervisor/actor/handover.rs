//! The supervisor's side of `bm2 update`: freezing an instance into plain values (its process
//! keeps running, untouched) and taking one over from them, in the new daemon or, when the
//! handover failed, in this one.

use std::sync::Arc;
use std::time::Duration;

use bm2_types::{ApiError, ErrorCode};
use tokio::sync::mpsc;

use super::{Actor, Command};
use crate::cluster::channels;
use crate::cluster::handoff::HeldSocket;
use crate::cluster::ipc;
use crate::handover::Fd;
use crate::supervisor::child::{Adopted, Child};
use crate::supervisor::command::Outcome;
use crate::supervisor::frozen::{FrozenInstance, FrozenPhase, FrozenRun, FrozenView};
use crate::supervisor::machine::Counters;
use crate::supervisor::phase::{Ended, Phase};
use crate::supervisor::process::Running;

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn left(at: tokio::time::Instant) -> u64 {
    ms(at.saturating_duration_since(tokio::time::Instant::now()))
}

impl Actor {
    /// Gives up the instance: its process, descriptors and counters go into the returned value
    /// and the actor supervises nothing until it adopts one. Nothing is published: what the
    /// instance shows stays as it was.
    pub(super) async fn freeze(&mut self) -> FrozenInstance {
        let phase = match std::mem::replace(&mut self.phase, Phase::Idle(Ended::Stopped)) {
            Phase::Idle(Ended::Stopped) | Phase::Stopping(_) => FrozenPhase::Stopped,
            Phase::Idle(Ended::Errored) => FrozenPhase::Errored,
            Phase::WaitingRestart { at } => FrozenPhase::WaitingRestart { in_ms: left(at) },
            Phase::Running {
                run,
                ready_by,
                launching,
            } => FrozenPhase::Running(self.freeze_run(run, ready_by, launching).await),
        };
        let view = {
            let v = self.view.borrow();
            FrozenView {
                env: (*v.env).clone(),
                store_applied: v.store_applied.clone(),
                pid_start_time: v.pid_start_time,
                started_at_ms: v.started_at_ms,
                restarts: v.restarts,
                restart_reasons: v.restart_reasons.clone(),
                last_restart: v.last_restart.clone(),
                last_exit: v.last_exit.clone(),
                exits: v.exits,
                reason: v.reason.clone(),
                interpreter: v.interpreter.clone(),
                exec_path: v.exec_path.clone(),
                private_port: v.private_port,
                public_port: v.public_port,
                ready: v.ready,
                desired_running: v.desired_running,
                held: v.held,
                watch_off: v.watch_off.clone(),
                reload_notice: v.reload_notice.clone(),
            }
        };
        FrozenInstance {
            id: self.inst.id,
            unstable_restarts: self.counters.unstable_restarts,
            last_backoff_ms: self.counters.last_backoff.map(ms),
            launches: self.launches,
            pending_restart: self.pending_restart.take(),
            phase,
            socket: self.socket.take().map(|s| {
                let (wanted, fd) = s.into_parts();
                (wanted, Fd(fd))
            }),
            view,
        }
    }

    async fn freeze_run(
        &mut self,
        mut run: Running,
        ready_by: Option<tokio::time::Instant>,
        launching: bool,
    ) -> FrozenRun {
        for b in self.shared.cluster.of(&self.inst.app) {
            b.remove(run.pid);
        }
        let ipc = match run.ipc.take() {
            Some(ipc) => ipc.freeze().await,
            None => None,
        };
        let stdin = self.inst.stdin.dup(run.pid).map(Fd);
        let frozen = FrozenRun {
            pid: run.pid,
            uptime_ms: ms(run.started.elapsed()),
            private_port: run.private_port,
            served: run.served.clone(),
            ready: run.ready,
            wait_ready: run.wait_ready,
            expected_ready: run.expected_ready,
            ready_when_listening: run.ready_when_listening,
            settle_ms: ms(run.settle),
            ready_in_ms: ready_by.map(left),
            launching,
            ipc,
            stdin,
        };
        // The process goes on; this daemon no longer waits for it.
        let Running { child, .. } = run;
        child.release();
        frozen
    }

    /// Waits, frozen, for the instance to be adopted again; other commands are refused. True
    /// when the actor must end (its handle is gone).
    pub(super) async fn wait_frozen(&mut self) -> bool {
        loop {
            let Some(cmd) = self.rx.recv().await else {
                return true;
            };
            let busy = || {
                ApiError::new(
                    ErrorCode::ShuttingDown,
                    "bm2 is being updated; run the command again in a moment",
                )
            };
            match cmd {
                Command::Adopt(frozen, reply) => {
                    let _ = reply.send(self.adopt_frozen(*frozen).await);
                    return false;
                }
                Command::Start(r)
                | Command::Stop(r)
                | Command::Restart(_, r)
                | Command::Reload(_, r)
                | Command::Delete(r)
                | Command::Reset(r)
                | Command::Signal(_, r)
                | Command::SendData(_, r)
                | Command::Note(_, r) => {
                    let _ = r.send(Err(busy()));
                }
                Command::Watch(_, r) => {
                    if let Some(r) = r {
                        let _ = r.send(Err(busy()));
                    }
                }
                Command::Trigger(t) => {
                    let _ = t
                        .reply
                        .send(Outcome::Ignored("bm2 is being updated".into()));
                }
                Command::Freeze(_) | Command::MemoryExceeded { .. } => {}
            }
        }
    }

    /// Takes the instance over as `frozen` describes: its process is waited for by pid, its
    /// descriptors are used again, and it is routed to its balancers once ready.
    pub(super) async fn adopt_frozen(&mut self, frozen: FrozenInstance) -> Result<(), ApiError> {
        if !matches!(self.phase, Phase::Idle(_)) {
            return Err(ApiError::new(
                ErrorCode::Internal,
                format!(
                    "{} already supervises a process; it cannot take over another",
                    self.inst.display_name()
                ),
            ));
        }
        let FrozenInstance {
            id: _,
            unstable_restarts,
            last_backoff_ms,
            launches,
            pending_restart,
            phase,
            socket,
            view,
        } = frozen;
        self.counters = Counters {
            restarts: view.restarts,
            unstable_restarts,
            last_backoff: last_backoff_ms.map(Duration::from_millis),
        };
        self.launches = self.launches.max(launches);
        self.pending_restart = pending_restart;
        self.socket = socket.and_then(|(wanted, fd)| {
            HeldSocket::from_fd(wanted, fd.into_inner())
                .inspect_err(|e| {
                    tracing::warn!(id = self.inst.id, error = %e, "cannot keep the app's socket");
                })
                .ok()
        });
        let now = tokio::time::Instant::now();
        self.phase = match phase {
            FrozenPhase::Stopped => Phase::Idle(Ended::Stopped),
            FrozenPhase::Errored => Phase::Idle(Ended::Errored),
            FrozenPhase::WaitingRestart { in_ms } => Phase::WaitingRestart {
                at: now + Duration::from_millis(in_ms),
            },
            FrozenPhase::Running(run) => {
                let ready_by = run.ready_in_ms.map(|l| now + Duration::from_millis(l));
                let launching = run.launching;
                Phase::Running {
                    run: self.adopt_run(run),
                    ready_by,
                    launching,
                }
            }
        };
        let env = Arc::new(view.env);
        self.publish(|v| {
            v.env = env;
            v.store_applied = view.store_applied;
            v.desired_running = view.desired_running;
            v.pid = self.phase.running().map(|r| r.pid);
            v.pid_start_time = view.pid_start_time;
            v.started_at_ms = view.started_at_ms;
            v.restarts = view.restarts;
            v.unstable_restarts = unstable_restarts;
            v.restart_reasons = view.restart_reasons;
            v.last_restart = view.last_restart;
            v.last_exit = view.last_exit;
            v.exits = view.exits;
            v.reason = view.reason;
            v.interpreter = view.interpreter;
            v.exec_path = view.exec_path;
            v.private_port = view.private_port;
            v.public_port = view.public_port;
            v.ready = view.ready;
            v.held = view.held;
            v.watch_off = view.watch_off;
            v.reload_notice = view.reload_notice;
        });
        self.reconfigure_triggers();
        self.route_to_current().await;
        Ok(())
    }

    fn adopt_run(&mut self, run: FrozenRun) -> Running {
        self.shared.table.adopt(run.pid);
        let (tx, rx) = mpsc::unbounded_channel();
        let ipc = run.ipc.and_then(|frozen| {
            ipc::thaw(frozen, tx.clone())
                .inspect_err(|e| {
                    tracing::warn!(id = self.inst.id, error = %e, "cannot keep the app's IPC channel");
                })
                .ok()
        });
        if let (Some(port), false, false) = (run.private_port, run.ready, run.wait_ready) {
            channels::probe_port(port, tx.clone());
        }
        let listens = ipc.is_some() || !run.ready;
        drop(tx);
        let stdin = run
            .stdin
            .and_then(|fd| self.inst.stdin.set_fd(run.pid, fd.into_inner()));
        Running {
            child: Child::Adopted(Adopted::new(run.pid)),
            pid: run.pid,
            started: std::time::Instant::now()
                .checked_sub(Duration::from_millis(run.uptime_ms))
                .unwrap_or_else(std::time::Instant::now),
            private_port: run.private_port,
            served: run.served,
            ready: run.ready,
            wait_ready: run.wait_ready,
            expected_ready: run.expected_ready,
            ready_when_listening: run.ready_when_listening,
            settle: Duration::from_millis(run.settle_ms),
            registered: Vec::new(),
            events: listens.then_some(rx),
            ipc,
            stdin,
        }
    }
}
