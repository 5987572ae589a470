//! The handle of a managed instance: what never changes about it, and typed calls to its actor
//! that hide the channel.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bm2_types::{ApiError, ProcId};
use nix::sys::signal::Signal;
use tokio::sync::{mpsc, oneshot, watch};

use super::command::{Command, InstanceView, Reply, TriggerState, Update, WatchChange};
use super::kill::Marker;
use crate::logs::InstanceLogs;

/// What never changes about an instance while it is managed.
#[derive(Debug)]
pub struct Instance {
    /// Its id.
    pub id: ProcId,
    /// Its app's name.
    pub app: String,
    /// Its index within the app.
    pub index: u32,
    /// How many instances the app was started with.
    pub count: u32,
    /// When it was registered, in ms since the epoch.
    pub created_at_ms: u64,
    /// Where its output goes.
    pub logs: Arc<Mutex<InstanceLogs>>,
    /// Pid file.
    pub pid_file: PathBuf,
    /// How its processes are recognised.
    pub marker: Marker,
    /// The stdin pipe of its current process.
    pub stdin: Arc<super::stdin::StdinSlot>,
}

impl Instance {
    /// The instance as events name it, with its current `pid` and `namespace`.
    pub fn proc_ref(&self, pid: Option<u32>, namespace: &str) -> bm2_types::ProcRef {
        bm2_types::ProcRef {
            id: self.id,
            name: self.app.clone(),
            instance: self.index,
            pid,
            namespace: namespace.to_string(),
        }
    }
}

impl Instance {
    /// `<app>-<i>` when the app has (or had, before scaling) several instances, else its name.
    pub fn display_name(&self) -> String {
        display_name(&self.app, self.index, self.count)
    }
}

/// The name of instance `index` of `app` started with `count` instances: `<app>-<i>` when the
/// app has (or had, before scaling) several instances, else the app's name.
pub fn display_name(app: &str, index: u32, count: u32) -> String {
    if count > 1 || index > 0 {
        format!("{app}-{index}")
    } else {
        app.to_string()
    }
}

/// A managed instance: its fixed facts, its actor's mailbox and its published state. Its
/// methods ask the actor and wait for the answer; an actor that has ended (the instance was
/// deleted meanwhile) counts as done.
#[derive(Debug, Clone)]
pub struct Handle {
    /// Fixed facts.
    pub inst: Arc<Instance>,
    /// Mailbox of its actor.
    tx: mpsc::Sender<Command>,
    /// Its current state, as published by its actor.
    pub view: watch::Receiver<InstanceView>,
    /// The state of its health check, cron schedule and file watcher.
    pub triggers: watch::Receiver<TriggerState>,
}

impl Handle {
    /// The handle of the actor listening on `tx`.
    pub fn new(
        inst: Arc<Instance>,
        tx: mpsc::Sender<Command>,
        view: watch::Receiver<InstanceView>,
        triggers: watch::Receiver<TriggerState>,
    ) -> Handle {
        Handle {
            inst,
            tx,
            view,
            triggers,
        }
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> InstanceView {
        self.view.borrow().clone()
    }

    /// Starts the process if it is not running.
    pub async fn start(&self) -> Result<(), ApiError> {
        self.ask(Command::Start).await
    }

    /// Stops the process and keeps it stopped.
    pub async fn stop(&self) -> Result<(), ApiError> {
        self.ask(Command::Stop).await
    }

    /// Stops the process if running, applies `update`, and starts it.
    pub async fn restart(&self, update: Option<Update>) -> Result<(), ApiError> {
        self.ask(|r| Command::Restart(update, r)).await
    }

    /// Replaces the process without a gap (see the actor's reload), applying `update` first.
    pub async fn reload(&self, update: Option<Update>) -> Result<(), ApiError> {
        self.ask(|r| Command::Reload(update, r)).await
    }

    /// Stops the process and ends the actor.
    pub async fn delete(&self) -> Result<(), ApiError> {
        self.ask(Command::Delete).await
    }

    /// Shows `reason` as why the stopped instance is not running.
    pub async fn note(&self, reason: String) -> Result<(), ApiError> {
        self.ask(|r| Command::Note(reason, r)).await
    }

    /// Zeroes the restart counters.
    pub async fn reset(&self) -> Result<(), ApiError> {
        self.ask(Command::Reset).await
    }

    /// Sends `signal` to the main process.
    pub async fn signal(&self, signal: Signal) -> Result<(), ApiError> {
        self.ask(|r| Command::Signal(signal, r)).await
    }

    /// Sends `message` over the process's IPC channel.
    pub async fn send_data(&self, message: serde_json::Value) -> Result<(), ApiError> {
        self.ask(|r| Command::SendData(message, r)).await
    }

    /// Turns file watching on or off.
    pub async fn watch(&self, change: WatchChange) -> Result<(), ApiError> {
        self.ask(|r| Command::Watch(change, Some(r))).await
    }

    /// Tells the actor that the tree of `pid` uses `used` bytes, over `limit`; false when its
    /// mailbox is full (the sampler tells it again at its next pass).
    pub fn memory_exceeded(&self, pid: u32, used: u64, limit: u64) -> bool {
        self.tx
            .try_send(Command::MemoryExceeded { pid, used, limit })
            .is_ok()
    }

    /// Freezes the instance for a handover (see [`Command::Freeze`]); `None` when its actor is
    /// gone.
    pub async fn freeze(&self) -> Option<Box<crate::supervisor::frozen::FrozenInstance>> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Freeze(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Takes over the instance `frozen` describes.
    pub async fn adopt(
        &self,
        frozen: Box<crate::supervisor::frozen::FrozenInstance>,
    ) -> Result<(), ApiError> {
        self.ask(|r| Command::Adopt(frozen, r)).await
    }

    /// A mailbox that does not keep the actor alive, for the tasks the actor owns.
    pub fn weak_mailbox(&self) -> mpsc::WeakSender<Command> {
        self.tx.downgrade()
    }

    async fn ask(&self, make: impl FnOnce(Reply) -> Command) -> Result<(), ApiError> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(make(tx)).await.is_err() {
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }
}
