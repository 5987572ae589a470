//! Automatic restarts: health checks, cron schedules and file watching.
//!
//! Each trigger of an instance is a task of its own that only asks the instance's actor to
//! restart ([`Command::Trigger`]) and publishes its state on a `watch` channel; none of them ever
//! holds up the actor. The actor owns its [`Triggers`]: reconfiguring one replaces its task, and
//! dropping them (when the actor ends, e.g. on delete) aborts every task. The tasks hold only a
//! weak handle on the actor's mailbox, so they never keep an actor alive. (The memory limit is
//! enforced by the sampler, which sees every process anyway: see `metrics::sampler`.)
//!
//! The options are parsed by `bm2_config::triggers`, the one place their rules live: the CLI
//! checks an app with it before anything starts, [`validate`] does the same for any client, and
//! each trigger's configuration is built from the typed values it returns.

pub mod cron;
pub mod health;
pub mod watch;

use std::path::PathBuf;
use std::sync::Arc;

use bm2_types::{AppSpec, ProcId, RestartReason};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::Shared;
use crate::envs::Vars;
use crate::supervisor::command::{Command, InstanceView};
pub use crate::supervisor::command::{Outcome, Trigger, TriggerState};

pub use bm2_config::triggers::{MAX_MS, validate};

/// What the tasks of one instance share.
#[derive(Debug, Clone)]
pub struct Context {
    /// The instance's id.
    pub id: ProcId,
    /// Its index within its app (a check on the app's port goes to this instance's port).
    pub index: u32,
    /// Its name, for the daemon log.
    pub name: String,
    /// The actor's mailbox, held weakly.
    pub mailbox: mpsc::WeakSender<Command>,
    /// The actor's published state.
    pub view: tokio::sync::watch::Receiver<InstanceView>,
    /// Where the tasks publish their state.
    pub state: Arc<tokio::sync::watch::Sender<TriggerState>>,
    /// The daemon's shared parts (the child table, for health commands).
    pub shared: Arc<Shared>,
}

impl Context {
    /// Asks the actor to restart the instance and waits for what it did.
    pub async fn ask(&self, reason: RestartReason, detail: String, pid: Option<u32>) -> Outcome {
        let Some(tx) = self.mailbox.upgrade() else {
            return Outcome::Ignored("the instance is gone".into());
        };
        let (reply, rx) = oneshot::channel();
        let sent = tx
            .send(Command::Trigger(Trigger {
                reason,
                detail,
                pid,
                reply,
            }))
            .await;
        drop(tx);
        if sent.is_err() {
            return Outcome::Ignored("the instance is gone".into());
        }
        rx.await
            .unwrap_or_else(|_| Outcome::Ignored("the instance is gone".into()))
    }

    /// Sends a command to the actor without waiting (false when the actor is gone).
    pub async fn tell(&self, cmd: Command) -> bool {
        match self.mailbox.upgrade() {
            Some(tx) => tx.send(cmd).await.is_ok(),
            None => false,
        }
    }

    /// Updates the published trigger state.
    pub fn publish(&self, f: impl FnOnce(&mut TriggerState)) {
        self.state.send_modify(f);
    }
}

/// A task that is aborted when dropped.
#[derive(Debug)]
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One trigger: its configuration and the task running it.
#[derive(Debug)]
struct Slot<C> {
    config: Option<C>,
    task: Option<Task>,
}

impl<C: PartialEq> Slot<C> {
    /// Runs `start(config)` as the slot's task unless the same configuration already runs.
    fn set<F>(&mut self, config: Option<C>, start: impl FnOnce(&C) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if self.task.is_some() && self.config == config {
            return;
        }
        self.task = config.as_ref().map(|c| Task(tokio::spawn(start(c))));
        self.config = config;
    }
}

impl<C> Default for Slot<C> {
    fn default() -> Self {
        Slot {
            config: None,
            task: None,
        }
    }
}

/// The trigger tasks of one instance. Dropping this ends them all.
#[derive(Debug)]
pub struct Triggers {
    ctx: Context,
    health: Slot<health::HealthConfig>,
    cron: Slot<cron::CronConfig>,
    watch: Slot<watch::WatchConfig>,
}

/// What an instance's triggers are configured from.
#[derive(Debug)]
pub struct Setup<'a> {
    /// The app's options.
    pub spec: &'a AppSpec,
    /// The environment the app is given (its `TZ` sets the cron time zone).
    pub env: &'a Vars,
    /// Why watching is turned off although `watch` is set, if it is.
    pub watch_off: Option<&'a str>,
    /// Paths never watched whatever the patterns say (the app's log files, bm2's home).
    pub never_watched: Vec<PathBuf>,
}

impl Triggers {
    /// No triggers yet; [`Triggers::configure`] starts them.
    pub fn new(ctx: Context) -> Triggers {
        Triggers {
            ctx,
            health: Slot::default(),
            cron: Slot::default(),
            watch: Slot::default(),
        }
    }

    /// Starts, replaces or stops each trigger to match `setup`; a trigger whose configuration is
    /// unchanged keeps running. A configuration that cannot be used (which [`validate`] refuses
    /// at start, so only an old state file or a changed `TZ` can bring one) leaves that trigger
    /// off and is reported in the daemon log (and, for a schedule, by `describe`).
    pub fn configure(&mut self, setup: &Setup<'_>) {
        let ctx = &self.ctx;
        let health = health::HealthConfig::from_spec(setup.spec).unwrap_or_else(|e| {
            tracing::warn!(id = ctx.id, error = %e, "health check disabled");
            None
        });
        if health.is_none() {
            ctx.publish(|s| s.health = None);
        }
        self.health
            .set(health, |c| health::run(ctx.clone(), c.clone()));

        let tz = setup.env.get("TZ").map(String::as_str);
        let cron = match setup.spec.cron_restart.as_deref() {
            None => None,
            Some(expr) => match cron::CronConfig::new(expr, tz) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(id = ctx.id, error = %e, "cron restart disabled");
                    ctx.publish(|s| s.cron = Some(cron::broken(expr, &e)));
                    None
                }
            },
        };
        if cron.is_none() && setup.spec.cron_restart.is_none() {
            ctx.publish(|s| s.cron = None);
        }
        self.cron.set(cron, |c| cron::run(ctx.clone(), c.clone()));

        let watch = match watch::WatchConfig::from_spec(setup.spec, setup.never_watched.clone()) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(id = ctx.id, error = %e, "file watching disabled");
                None
            }
        };
        match (&watch, setup.watch_off) {
            (Some(w), Some(off)) => {
                let info = w.info(false, Some(off.to_string()));
                ctx.publish(|s| s.watch = Some(info));
                self.watch.set(None, |c| watch::run(ctx.clone(), c.clone()));
            }
            (None, _) => {
                ctx.publish(|s| s.watch = None);
                self.watch.set(None, |c| watch::run(ctx.clone(), c.clone()));
            }
            (Some(w), None) => {
                if self.watch.config.as_ref() != Some(w) || self.watch.task.is_none() {
                    // Shown until the watcher has walked the tree and says more.
                    let info = w.info(true, None);
                    ctx.publish(|s| s.watch = Some(info));
                }
                self.watch
                    .set(watch, |c| watch::run(ctx.clone(), c.clone()));
            }
        }
    }
}
