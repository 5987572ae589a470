//! One task per instance: it owns the child process, its status and its restart timer.

use bm2_types::ErrorCode;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bm2_types::{
    ApiError, AppSpec, BusEvent, ExitInfo, Lifecycle, ProcRef, RestartReason, format_bytes,
};
use nix::sys::signal::Signal;
use tokio::sync::{mpsc, watch};

use super::command::TriggerState;
use super::kill::{self, Marker};
use super::machine::{self, Counters, Decision, RestartPolicy};
use super::phase::{self, Ended, Phase, Verdict};
use super::process::{self, Running};
use super::spawn;
use crate::Shared;
use crate::cluster::handoff::{self, HeldSocket};
use crate::cluster::{Event, Served};
use crate::envs::{self, Vars};
use crate::logs;
use crate::procfs;
use crate::registry::{Handle, Instance};
use crate::time::now_ms;
use crate::triggers::{self, Triggers};

mod handover;
mod reload;
mod triggered;

pub use super::command::{Command, History, InstanceView, Reply, Update, WatchChange};

/// How old a scan of `/proc` may be to find the tree of a process about to be stopped.
const RECENT_SCAN: std::time::Duration = std::time::Duration::from_millis(250);

struct Actor {
    inst: Arc<Instance>,
    shared: Arc<Shared>,
    spec: Arc<AppSpec>,
    policy: RestartPolicy,
    counters: Counters,
    /// What it is doing: its process, if any, lives here.
    phase: Phase<Running>,
    /// The listening socket bm2 holds for the instance's port (fork mode), kept across
    /// restarts and reloads and closed when the instance stops.
    socket: Option<HeldSocket>,
    launches: u64,
    /// What the automatic restart being waited for is about (noted when it runs).
    pending_restart: Option<String>,
    view: watch::Sender<InstanceView>,
    rx: mpsc::Receiver<Command>,
    triggers: Triggers,
}

/// Starts the actor of an instance (stopped) and returns its handle.
pub fn spawn_actor(
    inst: Arc<Instance>,
    spec: Arc<AppSpec>,
    base_env: Arc<Vars>,
    history: History,
    shared: Arc<Shared>,
) -> Handle {
    let (tx, rx) = mpsc::channel(16);
    let restarts = history.restarts;
    let (view_tx, view_rx) = watch::channel(InstanceView::new(spec.clone(), base_env, history));
    let (state_tx, state_rx) = watch::channel(TriggerState::default());
    let triggers = Triggers::new(triggers::Context {
        id: inst.id,
        index: inst.index,
        name: inst.display_name(),
        mailbox: tx.downgrade(),
        view: view_rx.clone(),
        state: Arc::new(state_tx),
        shared: shared.clone(),
    });
    let actor = Actor {
        policy: RestartPolicy::from(spec.as_ref()),
        counters: Counters {
            restarts,
            ..Counters::default()
        },
        inst: inst.clone(),
        shared,
        spec,
        phase: Phase::Idle(Ended::Stopped),
        socket: None,
        launches: 0,
        pending_restart: None,
        view: view_tx,
        rx,
        triggers,
    };
    tokio::spawn(actor.run());
    Handle::new(inst, tx, view_rx, state_rx)
}

/// Builds the marker every process of instance `id` in `home` carries in its environment.
pub fn marker_for(home: &std::path::Path, id: u32) -> Marker {
    Marker {
        env: vec![
            format!("BM2_HOME={}", home.display()),
            format!("BM2_ID={id}"),
        ],
    }
}

impl Actor {
    async fn run(mut self) {
        self.reconfigure_triggers();
        loop {
            let (ready_by, restart_at) = (self.phase.ready_by(), self.phase.restart_at());
            tokio::select! {
                cmd = self.rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    if self.on_command(cmd).await {
                        break;
                    }
                }
                activity = child_activity(&mut self.phase) => match activity {
                    Activity::Exited(status) => self.on_exit(status),
                    Activity::Said(event) => self.on_event(event).await,
                },
                () = crate::time::sleep_until(ready_by) => self.on_not_ready(),
                () = crate::time::sleep_until(restart_at) => self.restart_after_exit(),
            }
        }
    }

    /// Handles one command; true when the actor must end.
    async fn on_command(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Start(reply) => {
                self.hold(false);
                let result = if self.phase.running().is_some() {
                    Ok(())
                } else {
                    self.fresh_start()
                };
                let _ = reply.send(result);
            }
            Command::Stop(reply) => {
                self.hold(true);
                self.stop(None).await;
                self.socket = None;
                self.emit(Lifecycle::Stop, None, None, None);
                let _ = reply.send(Ok(()));
            }
            Command::Restart(update, reply) => {
                self.hold(false);
                // As PM2: restarting a process that runs counts, starting a stopped one not.
                let running = self.phase.running().is_some();
                self.stop(None).await;
                if let Some(update) = update {
                    self.apply(update);
                }
                if running {
                    self.counters.restarts += 1;
                    self.note_restart(RestartReason::Manual, "restart requested");
                }
                let _ = reply.send(self.fresh_start());
            }
            Command::Reload(update, reply) => {
                self.hold(false);
                if let Some(update) = update {
                    self.apply(update);
                }
                let _ = reply.send(self.reload().await);
            }
            Command::Delete(reply) => {
                self.hold(true);
                self.stop(None).await;
                self.socket = None;
                self.emit(Lifecycle::Delete, None, None, None);
                let _ = reply.send(Ok(()));
                return true;
            }
            Command::Reset(reply) => {
                self.counters = Counters::default();
                self.publish(|v| {
                    v.restarts = 0;
                    v.unstable_restarts = 0;
                    v.restart_reasons.clear();
                });
                let _ = reply.send(Ok(()));
            }
            Command::Note(reason, reply) => {
                if self.phase.running().is_none() {
                    self.publish(|v| v.reason = Some(reason));
                }
                let _ = reply.send(Ok(()));
            }
            Command::Trigger(trigger) => self.on_trigger(trigger).await,
            Command::Watch(change, reply) => {
                self.change_watch(change);
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(()));
                }
            }
            Command::Signal(sig, reply) => {
                let _ = reply.send(self.signal(sig));
            }
            Command::SendData(message, reply) => {
                let _ = reply.send(self.send_data(&message));
            }
            Command::MemoryExceeded { pid, used, limit } => {
                self.on_memory_exceeded(pid, used, limit).await;
            }
            Command::Freeze(reply) => {
                let frozen = self.freeze().await;
                let _ = reply.send(Box::new(frozen));
                return self.wait_frozen().await;
            }
            Command::Adopt(frozen, reply) => {
                let _ = reply.send(self.adopt_frozen(*frozen).await);
            }
        }
        false
    }

    fn apply(&mut self, update: Update) {
        let reconfigure = update.spec.is_some() || update.base_env.is_some();
        if let Some(spec) = update.spec {
            self.policy = RestartPolicy::from(spec.as_ref());
            // Log options may have changed: reopen the files for the new options.
            let paths = logs::LogPaths::for_instance(
                &self.shared.home,
                &spec,
                self.inst.id,
                self.inst.count,
            );
            let name = self.inst.display_name();
            let reopened =
                logs::InstanceLogs::open(&self.shared.logs, &spec, paths, self.inst.id, name);
            *logs::lock(&self.inst.logs) = reopened;
            self.spec = spec.clone();
            // New options decide watching afresh.
            self.publish(|v| {
                v.spec = spec;
                v.watch_off = None;
            });
        }
        if let Some(base) = update.base_env {
            self.publish(|v| v.base_env = base);
        }
        if reconfigure {
            self.reconfigure_triggers();
        }
    }

    fn fresh_start(&mut self) -> Result<(), ApiError> {
        self.counters.unstable_restarts = 0;
        self.counters.last_backoff = None;
        self.spawn()
    }

    async fn on_memory_exceeded(&mut self, pid: u32, used: u64, limit: u64) {
        if let Verdict::Ignore(why) = phase::memory(&self.phase, pid) {
            tracing::debug!(id = self.inst.id, %why, "memory limit check ignored");
            return;
        }
        let reason = format!(
            "restarted at {}: memory {} exceeded max_memory_restart {}",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
            format_bytes(used),
            format_bytes(limit)
        );
        tracing::info!(id = self.inst.id, %reason, "memory limit");
        self.stop(Some(reason.clone())).await;
        self.counters.restarts += 1;
        let detail = format!(
            "memory {} exceeded max_memory_restart {}",
            format_bytes(used),
            format_bytes(limit)
        );
        self.note_restart(RestartReason::Memory, &detail);
        if self.spawn().is_ok() {
            self.publish(|v| v.reason = Some(reason));
        }
    }

    fn signal(&self, sig: Signal) -> Result<(), ApiError> {
        let Some(run) = self.phase.running() else {
            return Err(ApiError::new(
                ErrorCode::NotRunning,
                format!("{} is not running", self.inst.display_name()),
            ));
        };
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(run.pid as i32), sig).map_err(|e| {
            ApiError::new(
                ErrorCode::SignalFailed,
                format!("signal to pid {}: {e}", run.pid),
            )
        })
    }

    /// Sends `message` over the current process's IPC channel.
    fn send_data(&self, message: &serde_json::Value) -> Result<(), ApiError> {
        let name = self.inst.display_name();
        let Some(run) = self.phase.running() else {
            return Err(ApiError::new(
                ErrorCode::NotRunning,
                format!("{name} is not running"),
            ));
        };
        let Some(ipc) = &run.ipc else {
            return Err(ApiError::new(
                ErrorCode::NotRunning,
                format!("{name} has no IPC channel (only Node and Bun processes have one)"),
            ));
        };
        ipc.send(message).map_err(|e| {
            ApiError::new(
                ErrorCode::NotRunning,
                format!("{name}: cannot send over its IPC channel: {e}"),
            )
        })
    }

    /// Starts the process now. On failure the instance is `errored` with the reason.
    fn spawn(&mut self) -> Result<(), ApiError> {
        match self.launch() {
            Ok(()) => Ok(()),
            Err(e) => {
                // Nothing serves the port: clients are refused rather than left waiting.
                self.socket = None;
                let message = format!("spawn failed: {e}");
                tracing::warn!(id = self.inst.id, %message);
                self.phase = Phase::Idle(Ended::Errored);
                self.publish(|v| {
                    v.desired_running = false;
                    v.pid = None;
                    v.pid_start_time = None;
                    v.reason = Some(format!("errored: {message}"));
                });
                Err(ApiError::new(
                    ErrorCode::SpawnFailed,
                    format!("{}: {message}", self.inst.display_name()),
                ))
            }
        }
    }

    fn launch(&mut self) -> Result<(), spawn::SpawnError> {
        let plan = self.plan_process()?;
        let started = self.start_planned(plan, process::Purpose::Run)?;
        self.adopt(started);
        Ok(())
    }

    /// Works out how the next process starts, with the current options.
    fn plan_process(&self) -> Result<process::Plan, spawn::SpawnError> {
        let base = self.view.borrow().base_env.clone();
        process::plan(&self.shared, &self.inst, &self.spec, &base)
    }

    /// Starts a planned process, with the listening socket its plan asks for.
    fn start_planned(
        &mut self,
        plan: process::Plan,
        purpose: process::Purpose,
    ) -> Result<process::Started, spawn::SpawnError> {
        self.hold_socket(plan.socket.as_ref())?;
        self.launches += 1;
        process::spawn(
            &self.shared,
            &self.inst,
            &self.spec,
            plan,
            self.launches,
            self.socket.as_ref(),
            purpose,
        )
    }

    /// Holds the listening socket `wanted` describes, keeping the one held when it is the same.
    /// A Node app whose port cannot be held binds it itself, as without bm2; socket activation
    /// cannot do without it.
    fn hold_socket(&mut self, wanted: Option<&handoff::Wanted>) -> Result<(), spawn::SpawnError> {
        let Some(wanted) = wanted else {
            self.socket = None;
            return Ok(());
        };
        if self.socket.as_ref().is_some_and(|s| s.wanted() == wanted) {
            return Ok(());
        }
        self.socket = None;
        let host = wanted
            .host
            .map_or_else(|| "*".to_string(), |h| h.to_string());
        match HeldSocket::bind(wanted) {
            Ok(socket) => self.socket = Some(socket),
            Err(e) if wanted.kind == handoff::Kind::NodeShim => {
                tracing::warn!(id = self.inst.id, port = wanted.port, error = %e,
                    "cannot hold the app's port; the app binds it itself and reloads are restarts");
            }
            Err(e) => {
                return Err(spawn::SpawnError::Socket(format!(
                    "socket activation: cannot listen on {host} port {}: {e}",
                    wanted.port
                )));
            }
        }
        Ok(())
    }

    /// Makes a started process the instance's current one.
    fn adopt(&mut self, started: process::Started) {
        let process::Started {
            running,
            env,
            stored,
            launch,
            start_time,
        } = started;
        let (pid, ready) = (running.pid, running.ready);
        let (private_port, public_port) =
            (running.shown_private_port(), running.shown_public_port());
        let ready_by = (!ready && running.expected_ready)
            .then(|| tokio::time::Instant::now() + Duration::from_millis(self.spec.listen_timeout));
        let launching = ready_by.is_some() && running.wait_ready;
        self.emit(Lifecycle::Start, Some(pid), None, None);
        self.phase = Phase::Running {
            run: running,
            ready_by,
            launching,
        };
        let restarts = self.counters.restarts;
        let unstable = self.counters.unstable_restarts;
        let env = Arc::new(envs::overlay(&self.view.borrow().base_env, env));
        self.publish(|v| {
            v.env = env;
            v.store_applied = stored;
            v.desired_running = true;
            v.pid = Some(pid);
            v.pid_start_time = start_time;
            v.started_at_ms = Some(now_ms());
            v.restarts = restarts;
            v.unstable_restarts = unstable;
            v.interpreter = launch.interpreter;
            v.exec_path = Some(launch.script);
            v.private_port = private_port;
            v.public_port = public_port;
            v.ready = ready;
            if !v
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with("restarted"))
            {
                v.reason = None;
            }
        });
    }

    /// The current process said something: it is ready, or listens for a public port.
    async fn on_event(&mut self, event: Option<Event>) {
        let Some(run) = self.phase.running_mut() else {
            return;
        };
        let Some(event) = event else {
            run.events = None;
            return;
        };
        if let Event::Message { data, topic } = event {
            let pid = run.pid;
            let process = self.proc_ref(Some(pid));
            self.shared.bus.emit(|| BusEvent::Message {
                at_ms: now_ms(),
                process,
                data,
                topic,
            });
            return;
        }
        run.note(&event);
        let (ready, private_port, public_port) =
            (run.ready, run.shown_private_port(), run.shown_public_port());
        self.publish(|v| {
            v.private_port = private_port;
            v.public_port = public_port;
        });
        if ready {
            self.phase.settle();
            self.route_to_current().await;
            self.publish(|v| {
                v.ready = true;
                if v.reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with("not ready"))
                {
                    v.reason = None;
                }
            });
        }
    }

    /// The current process was not ready within `listen_timeout`: it counts as online (as in
    /// PM2) but receives no connections until it is ready.
    fn on_not_ready(&mut self) {
        self.phase.settle();
        let ms = self.spec.listen_timeout;
        self.publish(|v| {
            v.reason = Some(format!(
                "not ready after listen_timeout ({ms} ms); it receives no connections until it is"
            ));
        });
    }

    /// Registers the current process with the balancer of each public port it serves, once it
    /// is ready. The balancer listens on `listen_host`, else on the address the app asked for,
    /// else on all interfaces.
    async fn route_to_current(&mut self) {
        let Some(run) = self.phase.running_mut() else {
            return;
        };
        if !run.ready {
            return;
        }
        let pid = run.pid;
        let ipc = run.ipc.clone();
        let pending: Vec<Served> = run
            .served
            .iter()
            .filter(|s| !run.registered.contains(&s.public))
            .copied()
            .collect();
        for served in pending {
            let host = match self.spec.listen_host.as_deref() {
                Some(h) if !h.is_empty() => Some(h.to_string()),
                _ => served.host.map(|h| h.to_string()),
            };
            match self
                .shared
                .cluster
                .balancer(&self.inst.app, host.as_deref(), served.public, self.spec.lb)
                .await
            {
                Ok(b) => {
                    b.add(pid, served.private, ipc.clone());
                    if let Some(run) = self.phase.running_mut() {
                        run.registered.push(served.public);
                    }
                }
                Err(e) => {
                    let reason = format!("cannot listen on port {}: {e}", served.public);
                    tracing::warn!(id = self.inst.id, %reason, "cluster");
                    self.publish(|v| v.reason = Some(reason));
                }
            }
        }
    }

    /// Stops the process tree (kill signal, grace, SIGKILL); the instance ends `stopped`.
    async fn stop(&mut self, reason: Option<String>) {
        let exit = match self.phase.begin_stop() {
            Some(run) => {
                let pid = run.pid;
                self.publish(|_| {});
                let status = self.terminate(run).await;
                let exit = exit_info(status.0, status.1);
                self.emit(Lifecycle::Exit, Some(pid), Some(&exit), reason.clone());
                Some(exit)
            }
            None => None,
        };
        self.phase = Phase::Idle(Ended::Stopped);
        self.publish(|v| {
            if let Some(exit) = exit {
                v.last_exit = Some(exit);
            }
            v.desired_running = false;
            v.pid = None;
            v.pid_start_time = None;
            v.reason = reason;
        });
    }

    async fn terminate(&mut self, mut run: Running) -> (Option<ExitStatus>, Duration) {
        let sig = kill::nix_signal(self.spec.kill_signal);
        let grace = Duration::from_millis(self.spec.kill_timeout);
        let poll = Duration::from_millis(self.spec.kill_retry_time.max(1));
        let deadline = Instant::now() + grace;
        // Without treekill (PM2's `treekill: false`) only the main process is signalled.
        let group = self.spec.treekill.then_some(run.pid);
        // A scan of /proc a few milliseconds old finds the tree of a running process (its group
        // is signalled too, and the pass after it exits scans again).
        let recent = std::time::Instant::now()
            .checked_sub(RECENT_SCAN)
            .unwrap_or_else(std::time::Instant::now);
        let tree = if self.spec.treekill {
            let known = self.shared.metrics.tree(self.inst.id);
            self.find_tree(Some(run.pid), known, recent).await
        } else {
            procfs::read_stat(run.pid)
                .map(|s| vec![(run.pid, s.start_time)])
                .unwrap_or_default()
        };
        // During a reload the instance has two processes, both carrying its marker: the one
        // staying (the current one) and its descendants are left alone.
        let spared = match self.phase.running().map(|c| c.pid) {
            Some(pid) => off_thread(move || kill::tree_of(pid, recent)).await,
            None => Vec::new(),
        };
        let tree: Vec<(u32, u64)> = tree.into_iter().filter(|p| !spared.contains(p)).collect();
        for b in self.shared.cluster.of(&self.inst.app) {
            b.remove(run.pid);
        }
        let asked = match (&mut run.ipc, crate::config::shutdown_by_message(&self.spec)) {
            (Some(ipc), true) => ipc.send(&serde_json::json!("shutdown")).is_ok(),
            _ => false,
        };
        if !asked {
            kill::signal_all(group, &tree, sig);
        }
        let status = if let Ok(s) = tokio::time::timeout(grace, run.child.wait()).await {
            s.ok()
        } else {
            kill::signal_all(group, &kill::alive(&tree), Signal::SIGKILL);
            run.child.wait().await.ok()
        };
        let exited = std::time::Instant::now();
        let uptime = run.started.elapsed();
        self.shared.table.forget(run.pid);
        if let Some(group) = group {
            // Whatever is left of the tree (setsid'd or double-forked descendants) gets the rest
            // of the grace period, then SIGKILL.
            let rest: Vec<(u32, u64)> = self
                .find_tree(None, tree.clone(), exited)
                .await
                .into_iter()
                .filter(|p| !spared.contains(p))
                .collect();
            let left = deadline.saturating_duration_since(Instant::now());
            if !kill::wait_gone(&rest, left, poll).await {
                kill::signal_all(Some(group), &kill::alive(&rest), Signal::SIGKILL);
                kill::wait_gone(&rest, Duration::from_secs(5), poll).await;
            }
            let _ =
                nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group as i32), Signal::SIGKILL);
            self.shared.table.reap_orphans(kill::zombie_orphans(&rest));
        }
        (status, uptime)
    }

    /// The processes of this instance now (see [`kill::find_tree`]), from a scan of `/proc`
    /// run in the blocking pool: stopping never holds the daemon's thread on `/proc`.
    async fn find_tree(
        &self,
        main: Option<u32>,
        known: Vec<(u32, u64)>,
        since: std::time::Instant,
    ) -> Vec<(u32, u64)> {
        let shared = self.shared.clone();
        let marker = self.inst.marker.clone();
        off_thread(move || kill::find_tree(main, &marker, &known, |p| shared.table.owns(p), since))
            .await
    }

    /// The process exited by itself: apply the restart policy.
    fn on_exit(&mut self, status: std::io::Result<ExitStatus>) {
        let Some(run) = self.phase.end(Ended::Stopped) else {
            return;
        };
        self.shared.table.forget(run.pid);
        for b in self.shared.cluster.of(&self.inst.app) {
            b.remove(run.pid);
        }
        // Group members left behind by the main process are part of the app and end with it.
        if self.spec.treekill {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(run.pid as i32),
                Signal::SIGKILL,
            );
        }
        let exit = exit_info(status.ok(), run.started.elapsed());
        tracing::info!(id = self.inst.id, exit = %exit, "process exited");
        self.emit(Lifecycle::Exit, Some(run.pid), Some(&exit), None);
        let decision = machine::on_exit(&self.policy, &mut self.counters, &exit);
        let (restarts, unstable) = (self.counters.restarts, self.counters.unstable_restarts);
        let detail = format!("{exit} after {} ms", exit.uptime_ms);
        // The phase the decision leads to is shown with the exit, never a passing `stopped`.
        self.phase = match &decision {
            Decision::Restart { delay } => Phase::WaitingRestart {
                at: tokio::time::Instant::now() + *delay,
            },
            Decision::Stop { .. } => Phase::Idle(Ended::Stopped),
            Decision::Error { .. } => Phase::Idle(Ended::Errored),
        };
        self.publish(|v| {
            v.last_exit = Some(exit);
            v.pid = None;
            v.pid_start_time = None;
            v.restarts = restarts;
            v.unstable_restarts = unstable;
            v.exits += 1;
        });
        if matches!(decision, Decision::Restart { .. }) {
            self.pending_restart = Some(detail);
        }
        match decision {
            Decision::Restart { delay } if delay.is_zero() => self.restart_after_exit(),
            Decision::Restart { delay } => {
                self.publish(|v| {
                    v.reason = Some(format!("restarting in {} ms", delay.as_millis()));
                });
            }
            Decision::Stop { reason } => {
                self.socket = None;
                self.publish(|v| {
                    v.desired_running = false;
                    v.reason = Some(format!("stopped: {reason}"));
                });
            }
            Decision::Error { reason } => {
                self.socket = None;
                self.publish(|v| {
                    v.desired_running = false;
                    v.reason = Some(format!("errored: {reason}"));
                });
            }
        }
    }

    /// Runs the automatic restart decided when the process exited: it counts now (PM2's
    /// `restart_time`), whether the new process starts or not.
    fn restart_after_exit(&mut self) {
        self.counters.restarts += 1;
        let restarts = self.counters.restarts;
        let detail = self.pending_restart.take().unwrap_or_default();
        self.note_restart(RestartReason::Crash, &detail);
        self.publish(|v| v.restarts = restarts);
        let _ = self.spawn();
    }

    /// Updates the published view (its status always the phase's) and schedules a state write.
    fn publish(&self, f: impl FnOnce(&mut InstanceView)) {
        let status = self.phase.status();
        let mut online = false;
        self.view.send_modify(|v| {
            f(v);
            online = status == bm2_types::ProcStatus::Online && v.status != status;
            v.status = status;
        });
        if online {
            let pid = self.phase.running().map(|r| r.pid);
            self.emit(Lifecycle::Online, pid, None, None);
        }
        self.shared.persist.touch();
        self.shared.changed();
    }

    /// The process an event is about: this instance, with `pid`.
    fn proc_ref(&self, pid: Option<u32>) -> ProcRef {
        self.inst.proc_ref(pid, &self.spec.namespace)
    }

    /// Publishes a lifecycle event on the bus (built only when someone follows).
    fn emit(
        &self,
        event: Lifecycle,
        pid: Option<u32>,
        exit: Option<&ExitInfo>,
        reason: Option<String>,
    ) {
        self.shared.bus.emit(|| BusEvent::Process {
            event,
            at_ms: now_ms(),
            process: self.proc_ref(pid),
            code: exit.and_then(|e| e.code),
            signal: exit.and_then(|e| e.signal.clone()),
            reason,
        });
    }
}

/// Runs a scan of `/proc` in the blocking pool; nothing found if the pool is gone.
async fn off_thread(scan: impl FnOnce() -> Vec<(u32, u64)> + Send + 'static) -> Vec<(u32, u64)> {
    tokio::task::spawn_blocking(scan).await.unwrap_or_default()
}

fn exit_info(status: Option<ExitStatus>, uptime: Duration) -> ExitInfo {
    use std::os::unix::process::ExitStatusExt;
    let signal = status
        .and_then(|s| s.signal())
        .map(|n| Signal::try_from(n).map_or_else(|_| n.to_string(), |s| s.as_str().to_string()));
    ExitInfo {
        code: status.and_then(|s| s.code()),
        signal,
        at_ms: now_ms(),
        uptime_ms: uptime.as_millis() as u64,
    }
}

/// What the current process did.
enum Activity {
    /// It exited.
    Exited(std::io::Result<ExitStatus>),
    /// It said something (`None`: its channels closed).
    Said(Option<Event>),
}

async fn child_activity(phase: &mut Phase<Running>) -> Activity {
    let Some(run) = phase.running_mut() else {
        return std::future::pending().await;
    };
    match run.events.as_mut() {
        Some(events) => tokio::select! {
            status = run.child.wait() => Activity::Exited(status),
            event = events.recv() => Activity::Said(event),
        },
        None => Activity::Exited(run.child.wait().await),
    }
}
