//! Reload: replacing an instance's process without a gap where the two processes can run side
//! by side, and saying that the reload is a restart where they cannot.
//!
//! In cluster mode the balancer owns the public port, so the new process always starts beside
//! the old one. In fork mode the processes listen on the app's port themselves: the new one can
//! only start beside the old one when the old one holds no listening socket that the new one
//! does not share (bm2's held socket, see `cluster/handoff.rs`). Otherwise the reload stops the
//! old process first, says so, and waits until the new process itself listens again.

use bm2_types::ErrorCode;
use std::collections::BTreeSet;
use std::time::Duration;

use bm2_types::{ApiError, ExecMode, RestartReason};

use super::super::kill;
use super::super::phase::Ended;
use super::super::process::{self, Purpose, Running};
use super::Actor;
use crate::cluster::handoff::HeldSocket;
use crate::cluster::listeners;

/// How often a restarted process's listening sockets are looked for.
const LISTEN_POLL: Duration = Duration::from_millis(25);

impl Actor {
    /// Replaces the current process (or starts one when there is none).
    pub(super) async fn reload(&mut self) -> Result<(), ApiError> {
        self.publish(|v| v.reload_notice = None);
        let Some(old_pid) = self.phase.running().map(|r| r.pid) else {
            return self.fresh_start();
        };
        let plan = self.plan_process().map_err(|e| self.spawn_failed(&e))?;
        if self.spec.exec_mode == ExecMode::Fork
            && let Some(ports) = self.ports_in_the_way(old_pid, &plan).await
        {
            return self.reload_by_restart(&ports).await;
        }
        self.replace(plan).await
    }

    /// Replaces the current process without a gap: the new one starts, becomes ready and takes
    /// new connections before the old one is drained and stopped. A cluster process that does
    /// not listen within `listen_timeout` replaces the old one all the same, as in PM2 (a
    /// worker that never listens is not a failure); one that exits, or an app that must say it
    /// is ready (`wait_ready`) and does not, is stopped and the old one keeps serving.
    async fn replace(&mut self, plan: process::Plan) -> Result<(), ApiError> {
        let name = self.inst.display_name();
        // The old process stays the current one until the new one is ready.
        let mut started = self
            .start_planned(plan, Purpose::Replace)
            .map_err(|e| self.spawn_failed(&e))?;
        let timeout = Duration::from_millis(self.spec.listen_timeout);
        let ready = wait_ready(&mut started.running, timeout).await;
        // A cluster process still running without having listened is kept (PM2's reload).
        let keep_unready = self.spec.exec_mode == ExecMode::Cluster
            && !self.spec.wait_ready
            && matches!(started.running.child.try_wait(), Ok(None));
        if !ready && !keep_unready {
            let new_pid = started.running.pid;
            // Stopping the new process spares the current one, the old.
            self.terminate(started.running).await;
            return Err(ApiError::new(
                ErrorCode::NotReady,
                format!(
                    "{name}: the new process (pid {new_pid}) did not become ready within {} ms; the old process (pid {}) keeps serving",
                    timeout.as_millis(),
                    self.phase.pid().unwrap_or_default()
                ),
            ));
        }
        // New connections go to the new process; the old one finishes what it has.
        let Some(old) = self.phase.end(Ended::Stopped) else {
            // The old process exited while the new one started: the new one simply runs.
            self.adopt(started);
            return Ok(());
        };
        let old_pid = old.pid;
        let ready = started.running.ready;
        self.adopt(started);
        if ready {
            self.route_to_current().await;
            self.phase.settle();
            self.publish(|v| v.ready = true);
        }
        let grace = Duration::from_millis(self.spec.kill_timeout);
        self.shared
            .cluster
            .drain(&self.inst.app, old_pid, grace)
            .await;
        drain_shared_socket(&old, grace).await;
        self.terminate(old).await;
        self.counters.restarts += 1;
        let restarts = self.counters.restarts;
        self.publish(|v| v.restarts = restarts);
        self.note_restart(RestartReason::Manual, "reload requested");
        Ok(())
    }

    /// The ports the old process tree listens on through sockets its replacement would not
    /// share: every listening socket but the one bm2 holds, when the replacement gets that one
    /// too. None when there is no such port.
    async fn ports_in_the_way(&self, old_pid: u32, plan: &process::Plan) -> Option<BTreeSet<u16>> {
        let shared = self
            .socket
            .as_ref()
            .filter(|s| plan.socket.as_ref() == Some(s.wanted()))
            .map(HeldSocket::inode);
        let listening = tree_listeners(old_pid).await;
        let ports: BTreeSet<u16> = listening
            .into_iter()
            .filter(|l| Some(l.inode) != shared)
            .map(|l| l.port)
            .collect();
        (!ports.is_empty()).then_some(ports)
    }

    /// Reloads by stopping the old process and then starting the new one, saying so (the
    /// reply, the instance's last restart, the daemon log), and waits until the new process
    /// listens on the app's port through a socket of its own: an error when it does not within
    /// `listen_timeout`. An app without a port (or one whose port was not in the way) is waited
    /// for until it listens on one of the old ports, at most `listen_timeout`.
    async fn reload_by_restart(&mut self, ports: &BTreeSet<u16>) -> Result<(), ApiError> {
        let name = self.inst.display_name();
        let list = ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let (s, it) = if ports.len() == 1 {
            ("", "it")
        } else {
            ("s", "them")
        };
        let notice = format!(
            "{name}: reloaded by a restart, with a short gap: its process listens on port{s} {list} \
             itself, so a new process can only bind {it} once the old one has stopped. For reloads \
             without a gap, let bm2 hold the port: a Node app listens on $PORT (on all interfaces or \
             listen_host) and gets bm2's socket, any other program takes it by socket activation \
             (--socket-activation: LISTEN_FDS, descriptor 3)."
        );
        tracing::warn!(id = self.inst.id, %notice, "reload");
        self.stop(None).await;
        self.counters.restarts += 1;
        self.note_restart(
            RestartReason::Manual,
            &format!(
                "reload requested, done as a restart: the process listens on port{s} {list} itself"
            ),
        );
        self.publish(|v| v.reload_notice = Some(notice.clone()));
        // A socket bm2 held (and that listened) before the new process existed says nothing
        // about the new process.
        let preheld = self
            .socket
            .as_ref()
            .filter(|s| s.is_listening())
            .map(HeldSocket::inode);
        self.fresh_start()?;
        // The app's port must come back; without one, any of the old ports says the app is up
        // again, but the app may as well have listened on ports the system chose.
        let port = self.instance_port().filter(|p| ports.contains(p));
        let wanted: Vec<u16> = port.map_or_else(|| ports.iter().copied().collect(), |p| vec![p]);
        let timeout = Duration::from_millis(self.spec.listen_timeout);
        if self.wait_listening(&wanted, preheld, timeout).await {
            return Ok(());
        }
        let pid = self.phase.running().map(|r| r.pid);
        if port.is_none() && pid.is_some() {
            tracing::info!(id = self.inst.id, ports = %list, "after a reload by restart, the new process does not listen on the old ports");
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::NotReady,
            match pid {
                Some(pid) => format!(
                    "{name}: reloaded by a restart, but the new process (pid {pid}) does not listen on port {} after listen_timeout ({} ms)",
                    wanted[0],
                    timeout.as_millis()
                ),
                None => format!(
                    "{name}: reloaded by a restart, but the new process exited before it listened"
                ),
            },
        ))
    }

    /// Waits until the current process tree listens on one of `ports` through a socket other
    /// than `except`; false when the process exits first or `timeout` passes.
    async fn wait_listening(
        &mut self,
        ports: &[u16],
        except: Option<u64>,
        timeout: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let Some(run) = self.phase.running_mut() else {
                return false;
            };
            // An exit is left for the actor's loop (the status stays in the child).
            if !matches!(run.child.try_wait(), Ok(None)) {
                return false;
            }
            if tree_listeners(run.pid)
                .await
                .iter()
                .any(|l| ports.contains(&l.port) && Some(l.inode) != except)
            {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(LISTEN_POLL).await;
        }
    }

    /// The port of this instance in fork mode (`port + index`).
    fn instance_port(&self) -> Option<u16> {
        let port = self.spec.port?;
        u16::try_from(u32::from(port) + self.inst.index).ok()
    }

    fn spawn_failed(&self, e: &super::spawn::SpawnError) -> ApiError {
        ApiError::new(
            ErrorCode::SpawnFailed,
            format!("{}: spawn failed: {e}", self.inst.display_name()),
        )
    }
}

/// The listening TCP sockets of the process tree under `pid`.
async fn tree_listeners(pid: u32) -> BTreeSet<listeners::Listener> {
    tokio::task::spawn_blocking(move || {
        let tree: Vec<u32> = kill::tree_of(pid, std::time::Instant::now())
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        listeners::of_tree(&tree)
    })
    .await
    .unwrap_or_default()
}

/// Asks a fork-mode Node process that serves bm2's held socket to stop accepting on it (its
/// replacement does) and to finish its connections, through bm2's shim; waits until it says it
/// has, or `grace` passes.
async fn drain_shared_socket(old: &Running, grace: Duration) {
    let Some(ipc) = old.ipc.as_ref().filter(|i| i.listening()) else {
        return;
    };
    ipc.drain();
    let deadline = tokio::time::Instant::now() + grace;
    while !ipc.drained() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until a starting process is ready (and, when it must settle, still running after
/// that); false when it exits or `timeout` passes first.
pub(super) async fn wait_ready(run: &mut Running, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while !run.ready {
        let Some(events) = run.events.as_mut() else {
            return false;
        };
        tokio::select! {
            event = events.recv() => match event {
                Some(e) => run.note(&e),
                None => return false,
            },
            _ = run.child.wait() => return false,
            () = tokio::time::sleep_until(deadline) => return false,
        }
    }
    if !run.settle.is_zero() {
        tokio::select! {
            _ = run.child.wait() => return false,
            () = tokio::time::sleep(run.settle) => {}
        }
    }
    true
}
