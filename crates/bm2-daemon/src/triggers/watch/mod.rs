//! File watching: a change under the watched paths restarts the app once the changes quiet down
//! (`watch_delay`); ignored paths are never watched; a restart-loop guard turns watching off for
//! an app that crashes on every change or keeps changing its own watched files, and says why.

pub mod ignore;
pub mod policy;
pub mod tree;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bm2_config::resolve::lexical;
use bm2_config::triggers::{IgnoreWatch, MAX_MS, WatchOptions};
use bm2_types::{AppSpec, RestartReason, WatchInfo};
use futures_util::{FutureExt, StreamExt};
use inotify::Inotify;
use tokio::time::Instant;

use self::ignore::IgnoreSet;
use self::policy::{Debounce, LoopGuard, Verdict};
use self::tree::{Change, Tree};
use super::{Context, Outcome};
use crate::supervisor::command::{Command, WatchChange};

/// Unstable restarts on change in a row that turn watching off.
pub const LOOP_LIMIT: u32 = 3;
/// Shortest probation of a restart on change (the app's `min_uptime` when longer).
pub const MIN_PROBATION: Duration = Duration::from_secs(1);

/// The file watching of an app, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchConfig {
    /// Watched directories and files (absolute).
    pub roots: Vec<PathBuf>,
    /// The app's directory: relative watch paths and ignore patterns start there.
    pub base: PathBuf,
    /// `ignore_watch` patterns, compiled.
    pub ignore: IgnoreWatch,
    /// Paths never watched (the app's own log files, bm2's home).
    pub never: Vec<PathBuf>,
    /// Quiet time after a change before the restart.
    pub delay: Duration,
    /// How long a restart on change is judged by the loop guard.
    pub probation: Duration,
}

impl WatchConfig {
    /// The watching of `spec`, if it watches anything. Errors name the option.
    pub fn from_spec(spec: &AppSpec, never: Vec<PathBuf>) -> Result<Option<WatchConfig>, String> {
        let Some(WatchOptions { ignore, delay }) = WatchOptions::from_spec(spec)? else {
            return Ok(None);
        };
        let base = spec.cwd.clone().unwrap_or_else(|| PathBuf::from("/"));
        let mut roots: Vec<PathBuf> = Vec::new();
        for p in &spec.watch {
            // Paths are watched as written, not resolved.
            let root = lexical(&base.join(p.trim()));
            if !roots.contains(&root) {
                roots.push(root);
            }
        }
        Ok(Some(WatchConfig {
            roots,
            base,
            ignore,
            never,
            delay,
            probation: Duration::from_millis(spec.min_uptime.min(MAX_MS)).max(MIN_PROBATION),
        }))
    }

    /// The state shown by `describe` before any directory is watched.
    pub fn info(&self, watching: bool, off_reason: Option<String>) -> WatchInfo {
        WatchInfo {
            watching,
            paths: self.roots.clone(),
            ignore: self.ignore.patterns().to_vec(),
            delay_ms: self.delay.as_millis() as u64,
            directories: 0,
            off_reason,
            last_change: None,
            error: None,
        }
    }

    /// `path` relative to the app's directory, for messages.
    fn show(&self, path: &Path) -> String {
        path.strip_prefix(&self.base)
            .ok()
            .filter(|rel| !rel.as_os_str().is_empty())
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

/// Watches until aborted, or until the loop guard turns watching off.
pub async fn run(ctx: Context, cfg: WatchConfig) {
    let Some(mut watcher) = Watcher::start(ctx, cfg).await else {
        return;
    };
    watcher.run().await;
}

/// The state of one app's watch task.
struct Watcher {
    ctx: Context,
    cfg: WatchConfig,
    info: WatchInfo,
    stream: inotify::EventStream<Vec<u8>>,
    tree: Tree,
    debounce: Debounce,
    guard: LoopGuard,
}

impl Watcher {
    /// Opens an inotify instance and watches the tree; `None` (after saying why) when it cannot.
    async fn start(ctx: Context, cfg: WatchConfig) -> Option<Watcher> {
        let mut info = cfg.info(true, None);
        let opened = Inotify::init().and_then(|i| i.into_event_stream(vec![0u8; 64 * 1024]));
        let stream = match opened {
            Ok(stream) => stream,
            Err(e) => {
                let e = format!("cannot start inotify: {e}");
                tracing::warn!(id = ctx.id, error = %e, "file watching failed");
                info.watching = false;
                info.error = Some(e);
                ctx.publish(|s| s.watch = Some(info));
                return None;
            }
        };
        let ignore = Arc::new(IgnoreSet::new(
            cfg.ignore.clone(),
            &cfg.base,
            cfg.never.clone(),
        ));
        let mut tree = Tree::new(stream.watches(), ignore, cfg.roots.clone());
        tree.scan().await;
        tracing::info!(id = ctx.id, directories = tree.len(), error = ?tree.error, "watching files");
        let mut watcher = Watcher {
            debounce: Debounce::new(cfg.delay),
            guard: LoopGuard::new(LOOP_LIMIT, cfg.probation),
            ctx,
            cfg,
            info,
            stream,
            tree,
        };
        watcher.publish();
        Some(watcher)
    }

    async fn run(&mut self) {
        let mut view = self.ctx.view.clone();
        loop {
            let (due, probation) = (self.debounce.due(), self.guard.probation_end());
            let verdict = tokio::select! {
                event = self.stream.next() => match event {
                    Some(Ok(event)) => self.on_event(&event).await,
                    Some(Err(e)) => return self.fail(&format!("reading inotify events: {e}")),
                    None => return,
                },
                () = crate::time::sleep_until(due) => {
                    self.restart().await;
                    Verdict::Pending
                }
                () = crate::time::sleep_until(probation) => self.judge(false),
                Ok(()) = view.changed(), if probation.is_some() => self.judge(false),
            };
            if let Verdict::Tripped(n) = verdict {
                return self.trip(n).await;
            }
        }
    }

    /// One inotify event: the tree follows it, and a change counts toward the next restart.
    async fn on_event(&mut self, event: &inotify::Event<std::ffi::OsString>) -> Verdict {
        let (dirs, error) = (self.tree.len(), self.tree.error.clone());
        let change = self
            .tree
            .on_event(event.mask, &event.wd, event.name.as_deref())
            .await;
        if dirs != self.tree.len() || error != self.tree.error {
            self.publish();
        }
        let Some(change) = change else {
            return Verdict::Pending;
        };
        let what = match change {
            Change::Path(p) => self.cfg.show(&p),
            Change::Overflow => "(too many changes to tell)".to_string(),
        };
        self.debounce.record(Instant::now(), what);
        self.judge(true)
    }

    /// The loop guard's judgement of the last restart on change, now.
    fn judge(&mut self, changed: bool) -> Verdict {
        self.guard.judge(Instant::now(), exits(&self.ctx), changed)
    }

    /// Restarts the app for the pending changes. Changes that arrive while it restarts are
    /// taken as part of the same change: the new process starts after them.
    async fn restart(&mut self) {
        let Some((what, count)) = self.debounce.take() else {
            return;
        };
        let detail = match count {
            0 | 1 => format!("{what} changed"),
            2 => format!("{what} and 1 other path changed"),
            n => format!("{what} and {} other paths changed", n - 1),
        };
        self.info.last_change = Some(what);
        self.publish();
        let outcome = self.ctx.ask(RestartReason::Watch, detail, None).await;
        while let Some(Some(Ok(event))) = self.stream.next().now_or_never() {
            self.tree
                .on_event(event.mask, &event.wd, event.name.as_deref())
                .await;
        }
        self.debounce.clear();
        match outcome {
            Outcome::Restarted => self.guard.restarted(Instant::now(), exits(&self.ctx)),
            Outcome::Ignored(why) => {
                tracing::debug!(id = self.ctx.id, %why, "restart on change skipped");
            }
            Outcome::Failed(e) => {
                tracing::warn!(id = self.ctx.id, error = %e, "restart on change failed");
            }
        }
        self.publish();
    }

    /// The loop guard tripped: watching stops, and says why.
    async fn trip(&mut self, restarts: u32) {
        let reason = format!(
            "watching stopped at {}: the app crashed or changed its own watched files after each of its last {restarts} restarts on change (a restart loop); fix it, then `bm2 restart {} --watch`",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
            self.ctx.name
        );
        tracing::warn!(id = self.ctx.id, %reason, "restart loop");
        self.info.watching = false;
        self.info.off_reason = Some(reason.clone());
        self.publish();
        self.ctx
            .tell(Command::Watch(WatchChange::Off(reason), None))
            .await;
    }

    /// Watching failed for good: says why.
    fn fail(&mut self, error: &str) {
        tracing::warn!(id = self.ctx.id, %error, "file watching failed");
        self.info.watching = false;
        self.tree.error = Some(error.to_string());
        self.publish();
    }

    fn publish(&mut self) {
        self.info.directories = self.tree.len();
        self.info.error.clone_from(&self.tree.error);
        let info = self.info.clone();
        self.ctx.publish(|s| s.watch = Some(info));
    }
}

fn exits(ctx: &Context) -> u64 {
    ctx.view.borrow().exits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_paths_are_taken_from_the_app_directory() {
        let spec = AppSpec {
            cwd: Some("/srv/app".into()),
            watch: vec![
                ".".into(),
                "src".into(),
                "./lib/".into(),
                "../shared".into(),
                "/etc/app.conf".into(),
                "src".into(),
            ],
            ..AppSpec::default()
        };
        let cfg = WatchConfig::from_spec(&spec, Vec::new()).unwrap().unwrap();
        let roots: Vec<&str> = cfg.roots.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            roots,
            [
                "/srv/app",
                "/srv/app/src",
                "/srv/app/lib",
                "/srv/shared",
                "/etc/app.conf"
            ]
        );
        assert_eq!(
            cfg.ignore.patterns(),
            ["node_modules", ".git", ".bm2", "logs"]
        );
        assert_eq!(cfg.delay, Duration::from_secs(1));
        assert_eq!(cfg.show(Path::new("/srv/app/src/a.js")), "src/a.js");
        assert_eq!(cfg.show(Path::new("/etc/app.conf")), "/etc/app.conf");
        assert_eq!(
            WatchConfig::from_spec(&AppSpec::default(), Vec::new()),
            Ok(None)
        );
    }

    #[test]
    fn bad_ignore_patterns_are_refused() {
        let spec = AppSpec {
            watch: vec![".".into()],
            ignore_watch: vec!["[".into()],
            ..AppSpec::default()
        };
        assert!(
            WatchConfig::from_spec(&spec, Vec::new())
                .unwrap_err()
                .contains("ignore_watch")
        );
        let spec = AppSpec {
            watch: vec![".".into()],
            watch_delay: u64::MAX,
            ..AppSpec::default()
        };
        let e = WatchConfig::from_spec(&spec, Vec::new()).unwrap_err();
        assert!(e.contains("--watch-delay"), "{e}");
    }
}
