//! `restart`, `reload`, `stop`, `delete`, `reset`, `signal`: commands that act on managed
//! instances.

use std::sync::Arc;

use bm2_types::{ActionResponse, ApiError};
use tokio::sync::oneshot;

use super::{Action, ProcessManager, send_all};
use crate::envs::{self, Vars};
use crate::supervisor::actor::{Command, Update, WatchChange};
use crate::supervisor::kill;

impl ProcessManager {
    /// Restarts the instances named by `targets`; with `update_env`, their environment is first
    /// recomputed from that caller environment and their options.
    pub async fn restart(
        &self,
        targets: &[String],
        update_env: Option<&Vars>,
    ) -> Result<ActionResponse, ApiError> {
        self.restart_toggling(targets, update_env, false).await
    }

    /// [`ProcessManager::restart`], first turning file watching on for the instances not
    /// watching and off for those watching when `toggle_watch` is set (`restart --watch`).
    pub async fn restart_toggling(
        &self,
        targets: &[String],
        update_env: Option<&Vars>,
        toggle_watch: bool,
    ) -> Result<ActionResponse, ApiError> {
        let handles = self.registry.resolve(targets)?;
        if toggle_watch {
            send_all(&handles, |r| Command::Watch(WatchChange::Toggle, Some(r))).await;
        }
        let mut errors = Vec::new();
        for h in &handles {
            let update = update_env.map(|client| {
                let spec = h.view.borrow().spec.clone();
                Update {
                    spec: None,
                    base_env: Some(Arc::new(envs::base_env(client, &spec))),
                }
            });
            let (tx, rx) = oneshot::channel();
            if h.tx.send(Command::Restart(update, tx)).await.is_ok() {
                errors.push(rx);
            }
        }
        let mut failures = Vec::new();
        for rx in errors {
            if let Ok(Err(e)) = rx.await {
                failures.push(e);
            }
        }
        self.saved(&mut failures).await;
        Ok(ActionResponse {
            processes: handles.iter().map(|h| self.summary(h)).collect(),
            errors: failures,
        })
    }

    /// Reloads the instances named by `targets`, `parallel` at a time: each gets a new process
    /// that takes over once ready (see the actor's reload).
    pub async fn reload(
        &self,
        targets: &[String],
        parallel: usize,
    ) -> Result<ActionResponse, ApiError> {
        let handles = self.registry.resolve(targets)?;
        let mut errors = Vec::new();
        for chunk in handles.chunks(parallel.max(1)) {
            errors.extend(send_all(chunk, |r| Command::Reload(None, r)).await);
        }
        self.saved(&mut errors).await;
        Ok(ActionResponse {
            processes: handles.iter().map(|h| self.summary(h)).collect(),
            errors,
        })
    }

    /// Applies `action` to every instance named by `targets`.
    pub async fn act(
        &self,
        action: Action,
        targets: &[String],
    ) -> Result<ActionResponse, ApiError> {
        if action != Action::Delete {
            self.refuse_if_closing()?;
        }
        let handles = self.registry.resolve(targets)?;
        let mut errors = match action {
            Action::Delete => {
                let mut errors = self.forget(&handles).await;
                let processes = handles.iter().map(|h| self.summary(h)).collect();
                self.saved(&mut errors).await;
                return Ok(ActionResponse { processes, errors });
            }
            Action::Stop => send_all(&handles, Command::Stop).await,
            Action::Restart => send_all(&handles, |r| Command::Restart(None, r)).await,
            Action::Reset => send_all(&handles, Command::Reset).await,
        };
        self.saved(&mut errors).await;
        Ok(ActionResponse {
            processes: handles.iter().map(|h| self.summary(h)).collect(),
            errors,
        })
    }

    /// Stops the instances named by `targets`; with `stop_watching`, their file watching is
    /// turned off too (`stop --watch`), so that starting them again does not watch either.
    pub async fn stop(
        &self,
        targets: &[String],
        stop_watching: bool,
    ) -> Result<ActionResponse, ApiError> {
        if stop_watching {
            let handles = self.registry.resolve(targets)?;
            let reason = format!(
                "watching turned off at {} by `bm2 stop --watch`",
                humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            );
            send_all(&handles, |r| {
                Command::Watch(WatchChange::Off(reason.clone()), Some(r))
            })
            .await;
        }
        self.act(Action::Stop, targets).await
    }

    /// Sends a signal to the main process of every instance named by `targets`.
    pub async fn signal(
        &self,
        targets: &[String],
        signal: &str,
    ) -> Result<ActionResponse, ApiError> {
        let sig = kill::parse_signal(signal).map_err(|e| ApiError::new("invalid_signal", e))?;
        let handles = self.registry.resolve(targets)?;
        let errors = send_all(&handles, |reply| Command::Signal(sig, reply)).await;
        Ok(ActionResponse {
            processes: handles.iter().map(|h| self.summary(h)).collect(),
            errors,
        })
    }
}
