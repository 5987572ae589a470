//! `restart`, `reload`, `stop`, `delete`, `reset`, `signal`: commands that act on managed
//! instances.

use std::sync::Arc;

use super::{Action, ProcessManager, all, reload_notices};
use crate::envs::{self, Vars};
use crate::registry::Handle;
use crate::supervisor::command::{Update, WatchChange};
use crate::supervisor::kill;
use bm2_types::{ActionResponse, ApiError};

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
        let (handles, unknown) = self.registry.resolve_known(targets)?;
        if toggle_watch {
            all(&handles, |h| h.watch(WatchChange::Toggle)).await;
        }
        let mut failures = unknown;
        failures.extend(all(&handles, |h| h.restart(new_env(h, update_env))).await);
        self.saved(&mut failures).await;
        Ok(ActionResponse {
            processes: handles.iter().map(|h| self.summary(h)).collect(),
            errors: failures,
            notices: Vec::new(),
        })
    }

    /// Reloads the instances named by `targets`, `parallel` at a time: each gets a new process
    /// that takes over once ready (see the actor's reload); with `update_env`, as for restart,
    /// their environment is first recomputed from that caller environment and their options.
    pub async fn reload(
        &self,
        targets: &[String],
        parallel: usize,
        update_env: Option<&Vars>,
    ) -> Result<ActionResponse, ApiError> {
        let (handles, mut errors) = self.registry.resolve_known(targets)?;
        for chunk in handles.chunks(parallel.max(1)) {
            errors.extend(all(chunk, |h| h.reload(new_env(h, update_env))).await);
        }
        self.saved(&mut errors).await;
        Ok(ActionResponse {
            processes: handles.iter().map(|h| self.summary(h)).collect(),
            errors,
            notices: reload_notices(&handles),
        })
    }

    /// Applies `action` to every instance named by `targets`.
    pub async fn act(
        &self,
        action: Action,
        targets: &[String],
    ) -> Result<ActionResponse, ApiError> {
        if !matches!(action, Action::Delete { .. }) {
            self.refuse_if_closing()?;
        }
        let (handles, unknown) = self.registry.resolve_known(targets)?;
        let mut errors = match action {
            Action::Delete { keep_logs } => {
                let mut errors = unknown;
                errors.extend(self.forget(&handles).await);
                let remaining = self.registry.all();
                crate::logs::cleanup::remove_owned(
                    &self.shared.home,
                    &handles,
                    &remaining,
                    keep_logs,
                )
                .await;
                let processes = handles.iter().map(|h| self.summary(h)).collect();
                self.saved(&mut errors).await;
                drop(handles);
                crate::memory::give_back().await;
                return Ok(ActionResponse {
                    processes,
                    errors,
                    notices: Vec::new(),
                });
            }
            Action::Stop => super::depends::stop_in_order(&handles).await,
            Action::Restart => all(&handles, |h| h.restart(None)).await,
            Action::Reset => all(&handles, Handle::reset).await,
        };
        errors.splice(0..0, unknown);
        self.saved(&mut errors).await;
        Ok(ActionResponse {
            processes: handles.iter().map(|h| self.summary(h)).collect(),
            errors,
            notices: Vec::new(),
        })
    }

    /// Stops the instances named by `targets` and turns their file watching off, as PM2 does
    /// (`watch: false`): starting them again does not watch, `restart --watch` does.
    /// `stop_watching` (`stop --watch`) only changes the reason shown.
    pub async fn stop(
        &self,
        targets: &[String],
        stop_watching: bool,
    ) -> Result<ActionResponse, ApiError> {
        // Refused while the daemon shuts down, before watching is touched.
        self.refuse_if_closing()?;
        // Unknown targets are reported by the stop itself.
        let handles = self
            .registry
            .resolve_known(targets)
            .map(|(h, _)| h)
            .unwrap_or_default();
        let command = if stop_watching {
            "`bm2 stop --watch`"
        } else {
            "`bm2 stop` (as in PM2; `bm2 restart --watch` watches again)"
        };
        let reason = format!(
            "watching turned off at {} by {command}",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        );
        all(&handles, |h| h.watch(WatchChange::Off(reason.clone()))).await;
        self.act(Action::Stop, targets).await
    }

    /// Sends a signal to the main process of every instance named by `targets`.
    pub async fn signal(
        &self,
        targets: &[String],
        signal: bm2_types::Signal,
    ) -> Result<ActionResponse, ApiError> {
        let sig = kill::nix_signal(signal);
        let (handles, mut errors) = self.registry.resolve_known(targets)?;
        errors.extend(all(&handles, |h| h.signal(sig)).await);
        Ok(ActionResponse {
            processes: handles.iter().map(|h| self.summary(h)).collect(),
            errors,
            notices: Vec::new(),
        })
    }
}

/// The update giving `h` the environment recomputed from `client` (the caller's environment of
/// `--update-env`) and its options; none without it.
fn new_env(h: &Handle, client: Option<&Vars>) -> Option<Update> {
    client.map(|client| {
        let spec = h.view.borrow().spec.clone();
        Update {
            spec: None,
            base_env: Some(Arc::new(envs::base_env(client, &spec))),
        }
    })
}
