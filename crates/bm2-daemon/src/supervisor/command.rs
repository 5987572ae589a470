//! What the actor of an instance is told and what it shows: its commands with their replies,
//! the requests of its triggers, and the views it publishes. A leaf: it knows nothing of the
//! daemon around it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bm2_types::{
    ApiError, AppSpec, CronInfo, ExitInfo, HealthInfo, LastRestart, ProcStatus, RestartReason,
    WatchInfo,
};
use nix::sys::signal::Signal;
use tokio::sync::oneshot;

use crate::envs::Vars;

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
    /// Start a new process, wait until it is ready, move traffic to it, then stop the old one.
    Reload(Option<Update>, Reply),
    /// Stop it and end the actor.
    Delete(Reply),
    /// Zero the restart counters.
    Reset(Reply),
    /// Show why a stopped instance is not running (`waiting for db (ready): ...`); ignored
    /// while it runs.
    Note(String, Reply),
    /// Send a signal to the main process.
    Signal(Signal, Reply),
    /// Send a message over the process's IPC channel (PM2's `sendDataToProcessId`).
    SendData(serde_json::Value, Reply),
    /// A trigger (health check, cron, file watch) asks for a restart.
    Trigger(Trigger),
    /// Turn file watching on or off.
    Watch(WatchChange, Option<Reply>),
    /// Hand the instance over (`bm2 update`): stop supervising, give back what it runs, and
    /// take no other command until [`Command::Adopt`].
    Freeze(oneshot::Sender<Box<super::frozen::FrozenInstance>>),
    /// Take over an instance as a handover left it (in the new daemon, or in this one when the
    /// handover failed).
    Adopt(Box<super::frozen::FrozenInstance>, Reply),
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

/// A change to an instance's file watching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchChange {
    /// `bm2 restart --watch`: watch if not watching (the app's directory when `watch` is unset),
    /// else stop watching.
    Toggle,
    /// Stop watching, for this reason (`bm2 stop --watch`, the restart-loop guard).
    Off(String),
}

/// What an instance carries over from before its actor: counters and toggles restored from the
/// state file.
#[derive(Debug, Clone)]
pub struct History {
    /// Restarts since start or reset.
    pub restarts: u32,
    /// Those restarts by reason.
    pub restart_reasons: BTreeMap<String, u64>,
    /// Why watching is off although `watch` is set.
    pub watch_off: Option<String>,
    /// Stopped on request (or never started): triggers leave it stopped.
    pub held: bool,
    /// Whether it is meant to run: recorded in the state file before its process is spawned,
    /// so that a daemon that dies in between brings it back.
    pub running: bool,
}

impl Default for History {
    fn default() -> Self {
        History {
            restarts: 0,
            restart_reasons: BTreeMap::new(),
            watch_off: None,
            held: true,
            running: false,
        }
    }
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
    /// What the environment of the current (or last) process adds to or changes in `base_env`
    /// (the instance's own variables, the env store's, bm2's marker): the whole environment is
    /// `base_env` with these over it. Kept as a difference so that apps started together share
    /// one copy of the caller's environment. Empty before the first launch.
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
    /// Private port of the current process (cluster mode).
    pub private_port: Option<u16>,
    /// Public port its balancer serves (cluster mode).
    pub public_port: Option<u16>,
    /// Whether the current process receives traffic (cluster) or said it is ready.
    pub ready: bool,
    /// Restarts by reason (`crash`, `memory`, `health`, `cron`, `watch`, `manual`).
    pub restart_reasons: BTreeMap<String, u64>,
    /// The most recent restart.
    pub last_restart: Option<LastRestart>,
    /// Times a process of this instance exited by itself (not stopped by bm2).
    pub exits: u64,
    /// Stopped on request, or never started: cron and watch leave it stopped.
    pub held: bool,
    /// Why file watching is off although `watch` is set.
    pub watch_off: Option<String>,
    /// What the last reload said when it had to be a restart (the old process stopped before
    /// the new one started); none when it replaced the process without a gap.
    pub reload_notice: Option<String>,
}

impl InstanceView {
    /// The state of an instance that has never run.
    pub fn new(spec: Arc<AppSpec>, base_env: Arc<Vars>, history: History) -> Self {
        InstanceView {
            spec,
            base_env,
            env: Arc::default(),
            store_applied: Vars::new(),
            // Meant to run: its process is being started.
            status: if history.running {
                ProcStatus::Launching
            } else {
                ProcStatus::Stopped
            },
            desired_running: history.running,
            pid: None,
            pid_start_time: None,
            started_at_ms: None,
            restarts: history.restarts,
            unstable_restarts: 0,
            last_exit: None,
            reason: None,
            interpreter: None,
            exec_path: None,
            private_port: None,
            public_port: None,
            ready: false,
            restart_reasons: history.restart_reasons,
            last_restart: None,
            exits: 0,
            held: history.held,
            watch_off: history.watch_off,
            reload_notice: None,
        }
    }
}

/// A trigger's request to restart an instance.
#[derive(Debug)]
pub struct Trigger {
    /// What fired.
    pub reason: RestartReason,
    /// In words, for `describe` and the daemon log.
    pub detail: String,
    /// Restart only if this is still the instance's process (a health check judges one process).
    pub pid: Option<u32>,
    /// What the actor did.
    pub reply: oneshot::Sender<Outcome>,
}

/// What the actor did with a [`Trigger`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The instance runs a new process.
    Restarted,
    /// Nothing: the instance was stopped on request, or the process judged is gone already.
    Ignored(String),
    /// The restart was attempted and failed.
    Failed(String),
}

/// The state the trigger tasks of an instance publish, shown by `describe`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TriggerState {
    /// The health check.
    pub health: Option<HealthInfo>,
    /// The cron schedule.
    pub cron: Option<CronInfo>,
    /// The file watcher.
    pub watch: Option<WatchInfo>,
}
