//! The actor's side of the restart triggers: configuring them, granting their restart requests,
//! turning watching on and off, and counting every restart by reason.

use std::sync::Arc;

use bm2_types::{ExecMode, LastRestart, RestartReason};

use super::super::phase::{self, Verdict};
use super::{Actor, WatchChange};
use crate::logs;
use crate::time::now_ms;
use crate::triggers::{self, Outcome, Trigger};

impl Actor {
    /// Starts, replaces or stops the trigger tasks to match the current options.
    pub(super) fn reconfigure_triggers(&mut self) {
        let (env, watch_off) = {
            let v = self.view.borrow();
            (v.base_env.clone(), v.watch_off.clone())
        };
        let mut never_watched = vec![self.shared.home.root().to_path_buf()];
        {
            let logs = logs::lock(&self.inst.logs);
            let paths = logs.paths();
            never_watched.extend(
                [&paths.out, &paths.err, &paths.combined]
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
        }
        self.triggers.configure(&triggers::Setup {
            spec: &self.spec,
            env: &env,
            watch_off: watch_off.as_deref(),
            never_watched,
        });
    }

    /// Records whether the instance is stopped on request (triggers leave it stopped).
    pub(super) fn hold(&mut self, held: bool) {
        if self.view.borrow().held != held {
            self.publish(|v| v.held = held);
        }
    }

    /// Turns watching on or off, as `bm2 restart --watch`, `bm2 stop --watch` or the restart-loop
    /// guard ask.
    pub(super) fn change_watch(&mut self, change: WatchChange) {
        let off = self.view.borrow().watch_off.clone();
        let watch_off = match change {
            WatchChange::Toggle if self.spec.watch.is_empty() => {
                let mut spec = (*self.spec).clone();
                spec.watch = vec![".".to_string()];
                let spec = Arc::new(spec);
                self.spec = spec.clone();
                self.publish(|v| v.spec = spec);
                None
            }
            WatchChange::Toggle if off.is_some() => None,
            WatchChange::Toggle => Some(format!(
                "watching turned off at {} by `bm2 restart --watch`",
                humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            )),
            WatchChange::Off(_) if self.spec.watch.is_empty() => None,
            WatchChange::Off(reason) => Some(reason),
        };
        tracing::info!(id = self.inst.id, watching = watch_off.is_none() && !self.spec.watch.is_empty(), reason = ?watch_off, "file watching changed");
        self.publish(|v| v.watch_off = watch_off);
        self.reconfigure_triggers();
    }

    /// A trigger asks for a restart: granted unless the instance is stopped on request, or the
    /// process it judged is gone.
    pub(super) async fn on_trigger(&mut self, trigger: Trigger) {
        let held = self.view.borrow().held;
        let outcome = match phase::trigger(&self.phase, trigger.pid, held) {
            Verdict::Ignore(why) => {
                Outcome::Ignored(format!("{}: {why}", self.inst.display_name()))
            }
            Verdict::Act => self.restart_for(trigger.reason, &trigger.detail).await,
        };
        let _ = trigger.reply.send(outcome);
    }

    /// Restarts the instance for a trigger: a cluster instance is reloaded (its new process takes
    /// over once ready, so traffic is not interrupted), any other is stopped and started.
    async fn restart_for(&mut self, reason: RestartReason, detail: &str) -> Outcome {
        let text = format!(
            "restarted at {}: {detail}",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        );
        if self.spec.exec_mode == ExecMode::Cluster && self.phase.running().is_some() {
            return match self.reload().await {
                Ok(()) => {
                    self.note_restart(reason, detail);
                    self.publish(|v| v.reason = Some(text));
                    Outcome::Restarted
                }
                Err(e) => Outcome::Failed(e.message),
            };
        }
        // A process that runs is restarted (and counted); a stopped instance is started.
        let running = self.phase.running().is_some();
        self.stop(Some(text.clone())).await;
        if running {
            self.counters.restarts += 1;
        }
        self.note_restart(reason, detail);
        match self.fresh_start() {
            Ok(()) => {
                self.publish(|v| v.reason = Some(text));
                Outcome::Restarted
            }
            Err(e) => Outcome::Failed(e.message),
        }
    }

    /// Counts a restart under its reason, and logs it.
    pub(super) fn note_restart(&mut self, reason: RestartReason, detail: &str) {
        tracing::info!(id = self.inst.id, name = %self.inst.display_name(), reason = reason.as_str(), %detail, "restart");
        let pid = self.phase.running().map(|r| r.pid);
        self.emit(
            bm2_types::Lifecycle::Restart,
            pid,
            None,
            Some(reason.as_str().to_string()),
        );
        let last = LastRestart {
            reason,
            detail: detail.to_string(),
            at_ms: now_ms(),
        };
        self.publish(|v| {
            *v.restart_reasons
                .entry(reason.as_str().to_string())
                .or_default() += 1;
            v.last_restart = Some(last);
        });
    }
}
