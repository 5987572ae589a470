//! One task per instance: it owns the child process, its status and its restart timer.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bm2_types::{ApiError, AppSpec, ExitInfo, ProcStatus, format_bytes};
use nix::sys::signal::Signal;
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot, watch};

use super::kill::{self, Marker};
use super::machine::{self, Counters, Decision, RestartPolicy};
use super::spawn;
use crate::Shared;
use crate::envs::{self, Vars};
use crate::logs::{self, Stream};
use crate::procfs;
use crate::registry::{Handle, Instance};
use crate::time::now_ms;

/// Answer to a command: done, or why not.
pub type Reply = oneshot::Sender<Result<(), ApiError>>;

/// What an actor can be asked to do.
#[derive(Debug)]
pub enum Command {
    /// Start the process if it is not running.
    Start(Reply),
    /// Stop the process and keep it stopped.
    Stop(Reply),
    /// Stop it if running, then start it, first applying new options or a new base environment.
    Restart(Option<Update>, Reply),
    /// Stop it and end the actor.
    Delete(Reply),
    /// Zero the restart counters.
    Reset(Reply),
    /// Send a signal to the main process.
    Signal(Signal, Reply),
    /// The sampler saw the tree over its memory limit.
    MemoryExceeded {
        /// The main pid that was measured.
        pid: u32,
        /// Bytes in use.
        used: u64,
        /// The limit.
        limit: u64,
    },
}

/// New options for an instance, applied at its next start.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// New options (the instance keeps its environment unless `base_env` is given too).
    pub spec: Option<Arc<AppSpec>>,
    /// New base environment (`--update-env`).
    pub base_env: Option<Arc<Vars>>,
}

/// The published state of an instance.
#[derive(Debug, Clone)]
pub struct InstanceView {
    /// Current options.
    pub spec: Arc<AppSpec>,
    /// The caller's kept variables and the app's own, from which each launch's environment is made.
    pub base_env: Arc<Vars>,
    /// The environment of the current (or last) process.
    pub env: Arc<Vars>,
    /// Variables of the env store applied at the last launch.
    pub store_applied: Vars,
    /// Current status.
    pub status: ProcStatus,
    /// Whether the instance should be running (restored as running after a daemon crash).
    pub desired_running: bool,
    /// Main pid while running.
    pub pid: Option<u32>,
    /// Start time of the main pid, in clock ticks after boot.
    pub pid_start_time: Option<u64>,
    /// When the process started, ms since the epoch.
    pub started_at_ms: Option<u64>,
    /// Restarts since start or reset.
    pub restarts: u32,
    /// Consecutive unstable restarts.
    pub unstable_restarts: u32,
    /// How the last process ended.
    pub last_exit: Option<ExitInfo>,
    /// Why it is in its status.
    pub reason: Option<String>,
    /// Interpreter used for the last launch.
    pub interpreter: Option<String>,
    /// Script or program path of the last launch.
    pub exec_path: Option<PathBuf>,
}

impl InstanceView {
    /// The state of an instance that has never run.
    pub fn new(spec: Arc<AppSpec>, base_env: Arc<Vars>, restarts: u32) -> Self {
        InstanceView {
            spec,
            base_env,
            env: Arc::default(),
            store_applied: Vars::new(),
            status: ProcStatus::Stopped,
            desired_running: false,
            pid: None,
            pid_start_time: None,
            started_at_ms: None,
            restarts,
            unstable_restarts: 0,
            last_exit: None,
            reason: None,
            interpreter: None,
            exec_path: None,
        }
    }
}

struct Running {
    child: Child,
    pid: u32,
    started: Instant,
}

struct Actor {
    inst: Arc<Instance>,
    shared: Arc<Shared>,
    spec: Arc<AppSpec>,
    policy: RestartPolicy,
    counters: Counters,
    child: Option<Running>,
    restart_at: Option<tokio::time::Instant>,
    view: watch::Sender<InstanceView>,
    rx: mpsc::Receiver<Command>,
}

/// Starts the actor of an instance (stopped) and returns its handle.
pub fn spawn_actor(
    inst: Arc<Instance>,
    spec: Arc<AppSpec>,
    base_env: Arc<Vars>,
    restarts: u32,
    shared: Arc<Shared>,
) -> Handle {
    let (tx, rx) = mpsc::channel(16);
    let (view_tx, view_rx) = watch::channel(InstanceView::new(spec.clone(), base_env, restarts));
    let actor = Actor {
        policy: RestartPolicy::from(spec.as_ref()),
        counters: Counters {
            restarts,
            ..Counters::default()
        },
        inst: inst.clone(),
        shared,
        spec,
        child: None,
        restart_at: None,
        view: view_tx,
        rx,
    };
    tokio::spawn(actor.run());
    Handle {
        inst,
        tx,
        view: view_rx,
    }
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
        loop {
            tokio::select! {
                cmd = self.rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    if self.on_command(cmd).await {
                        break;
                    }
                }
                status = wait_child(&mut self.child) => self.on_exit(status),
                () = wait_until(self.restart_at) => {
                    self.restart_at = None;
                    let _ = self.spawn();
                }
            }
        }
    }

    /// Handles one command; true when the actor must end.
    async fn on_command(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Start(reply) => {
                let result = if self.child.is_some() {
                    Ok(())
                } else {
                    self.fresh_start()
                };
                let _ = reply.send(result);
            }
            Command::Stop(reply) => {
                self.stop(None).await;
                let _ = reply.send(Ok(()));
            }
            Command::Restart(update, reply) => {
                self.stop(None).await;
                if let Some(update) = update {
                    self.apply(update);
                }
                self.counters.restarts += 1;
                let _ = reply.send(self.fresh_start());
            }
            Command::Delete(reply) => {
                self.stop(None).await;
                let _ = reply.send(Ok(()));
                return true;
            }
            Command::Reset(reply) => {
                self.counters = Counters::default();
                self.publish(|v| {
                    v.restarts = 0;
                    v.unstable_restarts = 0;
                });
                let _ = reply.send(Ok(()));
            }
            Command::Signal(sig, reply) => {
                let _ = reply.send(self.signal(sig));
            }
            Command::MemoryExceeded { pid, used, limit } => {
                self.on_memory_exceeded(pid, used, limit).await;
            }
        }
        false
    }

    fn apply(&mut self, update: Update) {
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
            self.publish(|v| v.spec = spec);
        }
        if let Some(base) = update.base_env {
            self.publish(|v| v.base_env = base);
        }
    }

    fn fresh_start(&mut self) -> Result<(), ApiError> {
        self.counters.unstable_restarts = 0;
        self.counters.last_backoff = None;
        self.spawn()
    }

    async fn on_memory_exceeded(&mut self, pid: u32, used: u64, limit: u64) {
        if self.child.as_ref().is_none_or(|run| run.pid != pid) {
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
        if self.spawn().is_ok() {
            self.publish(|v| v.reason = Some(reason));
        }
    }

    fn signal(&self, sig: Signal) -> Result<(), ApiError> {
        let Some(run) = &self.child else {
            return Err(ApiError::new(
                "not_running",
                format!("{} is not running", self.inst.display_name()),
            ));
        };
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(run.pid as i32), sig)
            .map_err(|e| ApiError::new("signal_failed", format!("signal to pid {}: {e}", run.pid)))
    }

    /// Starts the process now. On failure the instance is `errored` with the reason.
    fn spawn(&mut self) -> Result<(), ApiError> {
        self.restart_at = None;
        match self.launch() {
            Ok(()) => Ok(()),
            Err(e) => {
                let message = format!("spawn failed: {e}");
                tracing::warn!(id = self.inst.id, %message);
                self.publish(|v| {
                    v.status = ProcStatus::Errored;
                    v.desired_running = false;
                    v.pid = None;
                    v.pid_start_time = None;
                    v.reason = Some(format!("errored: {message}"));
                });
                Err(ApiError::new(
                    "spawn_failed",
                    format!("{}: {message}", self.inst.display_name()),
                ))
            }
        }
    }

    fn launch(&mut self) -> Result<(), spawn::SpawnError> {
        let shared = &self.shared;
        let stored = shared.env_store.get(&self.inst.app);
        let base = self.view.borrow().base_env.clone();
        let env = envs::instance_env(
            &base,
            &self.spec,
            shared.home.root(),
            self.inst.id,
            self.inst.index,
            &stored,
        );
        let launch = spawn::plan(&self.spec, &env, &shared.table)?;
        let mut cmd = spawn::command(&launch, &self.spec, &env)?;
        let mut child = shared
            .table
            .spawn(&mut cmd)
            .map_err(|source| spawn::SpawnError::Os {
                program: launch.program.display().to_string(),
                source,
            })?;
        let pid = child.id().unwrap_or_default();
        if let Some(fd) = child.stdout.take().and_then(|p| p.into_owned_fd().ok()) {
            logs::attach(self.inst.logs.clone(), Stream::Out, fd);
        }
        if let Some(fd) = child.stderr.take().and_then(|p| p.into_owned_fd().ok()) {
            logs::attach(self.inst.logs.clone(), Stream::Err, fd);
        }
        let start_time = procfs::read_stat(pid).map(|s| s.start_time);
        if let Err(e) = std::fs::write(&self.inst.pid_file, pid.to_string()) {
            tracing::warn!(path = %self.inst.pid_file.display(), error = %e, "cannot write pid file");
        }
        self.child = Some(Running {
            child,
            pid,
            started: Instant::now(),
        });
        let restarts = self.counters.restarts;
        let unstable = self.counters.unstable_restarts;
        let env = Arc::new(env);
        self.publish(|v| {
            v.env = env;
            v.store_applied = stored;
            v.status = ProcStatus::Online;
            v.desired_running = true;
            v.pid = Some(pid);
            v.pid_start_time = start_time;
            v.started_at_ms = Some(now_ms());
            v.restarts = restarts;
            v.unstable_restarts = unstable;
            v.interpreter = launch.interpreter;
            v.exec_path = Some(launch.script);
            if !v
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with("restarted"))
            {
                v.reason = None;
            }
        });
        Ok(())
    }

    /// Stops the process tree (kill signal, grace, SIGKILL); the instance ends `stopped`.
    async fn stop(&mut self, reason: Option<String>) {
        self.restart_at = None;
        if let Some(run) = self.child.take() {
            self.publish(|v| v.status = ProcStatus::Stopping);
            let status = self.terminate(run).await;
            let exit = exit_info(status.0, status.1);
            self.publish(|v| v.last_exit = Some(exit));
        }
        self.publish(|v| {
            v.status = ProcStatus::Stopped;
            v.desired_running = false;
            v.pid = None;
            v.pid_start_time = None;
            v.reason = reason;
        });
    }

    async fn terminate(&mut self, mut run: Running) -> (Option<ExitStatus>, Duration) {
        let sig = kill::parse_signal(&self.spec.kill_signal).unwrap_or(Signal::SIGINT);
        let grace = Duration::from_millis(self.spec.kill_timeout);
        let poll = Duration::from_millis(self.spec.kill_retry_time.max(1));
        let deadline = Instant::now() + grace;
        // Without treekill (PM2's `treekill: false`) only the main process is signalled.
        let group = self.spec.treekill.then_some(run.pid);
        let tree = if self.spec.treekill {
            let known = self.shared.metrics.tree(self.inst.id);
            kill::find_tree(Some(run.pid), &self.inst.marker, &known)
        } else {
            procfs::read_stat(run.pid)
                .map(|s| vec![(run.pid, s.start_time)])
                .unwrap_or_default()
        };
        kill::signal_all(group, &tree, sig);
        let status = if let Ok(s) = tokio::time::timeout(grace, run.child.wait()).await {
            s.ok()
        } else {
            kill::signal_all(group, &kill::alive(&tree), Signal::SIGKILL);
            run.child.wait().await.ok()
        };
        let uptime = run.started.elapsed();
        self.shared.table.forget(run.pid);
        if let Some(group) = group {
            // Whatever is left of the tree (setsid'd or double-forked descendants) gets the rest
            // of the grace period, then SIGKILL.
            let rest = kill::find_tree(None, &self.inst.marker, &tree);
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

    /// The process exited by itself: apply the restart policy.
    fn on_exit(&mut self, status: std::io::Result<ExitStatus>) {
        let Some(run) = self.child.take() else { return };
        self.shared.table.forget(run.pid);
        // Group members left behind by the main process are part of the app and end with it.
        if self.spec.treekill {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(run.pid as i32),
                Signal::SIGKILL,
            );
        }
        let exit = exit_info(status.ok(), run.started.elapsed());
        tracing::info!(id = self.inst.id, exit = %exit, "process exited");
        let decision = machine::on_exit(&self.policy, &mut self.counters, &exit);
        let (restarts, unstable) = (self.counters.restarts, self.counters.unstable_restarts);
        self.publish(|v| {
            v.last_exit = Some(exit);
            v.pid = None;
            v.pid_start_time = None;
            v.restarts = restarts;
            v.unstable_restarts = unstable;
        });
        match decision {
            Decision::Restart { delay } if delay.is_zero() => {
                let _ = self.spawn();
            }
            Decision::Restart { delay } => {
                self.restart_at = Some(tokio::time::Instant::now() + delay);
                self.publish(|v| {
                    v.status = ProcStatus::WaitingRestart;
                    v.reason = Some(format!("restarting in {} ms", delay.as_millis()));
                });
            }
            Decision::Stop { reason } => self.publish(|v| {
                v.status = ProcStatus::Stopped;
                v.desired_running = false;
                v.reason = Some(format!("stopped: {reason}"));
            }),
            Decision::Error { reason } => self.publish(|v| {
                v.status = ProcStatus::Errored;
                v.desired_running = false;
                v.reason = Some(format!("errored: {reason}"));
            }),
        }
    }

    /// Updates the published view and schedules a state write.
    fn publish(&self, f: impl FnOnce(&mut InstanceView)) {
        self.view.send_modify(f);
        self.shared.persist.touch();
    }
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

async fn wait_child(child: &mut Option<Running>) -> std::io::Result<ExitStatus> {
    match child {
        Some(run) => run.child.wait().await,
        None => std::future::pending().await,
    }
}

async fn wait_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
