//! File watching: a change under the watched paths restarts the app once the changes quiet down
//! (`watch_delay`); ignored paths are never watched; a restart-loop guard turns watching off for
//! an app that crashes on every change or keeps changing its own watched files, and says why.

pub mod ignore;
pub mod policy;
pub mod tree;

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bm2_types::{AppSpec, RestartReason, WatchInfo};
use futures_util::{FutureExt, StreamExt};
use inotify::Inotify;
use tokio::time::Instant;

use self::ignore::IgnoreSet;
use self::policy::{Debounce, LoopGuard, Verdict};
use self::tree::{Change, Tree};
use super::{Context, Outcome};
use crate::supervisor::actor::{Command, WatchChange};

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
    /// `ignore_watch` patterns.
    pub ignore: Vec<String>,
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
        if spec.watch.is_empty() {
            return Ok(None);
        }
        let base = spec.cwd.clone().unwrap_or_else(|| PathBuf::from("/"));
        let mut roots: Vec<PathBuf> = Vec::new();
        for p in &spec.watch {
            let root = clean(&base.join(p.trim()));
            if !roots.contains(&root) {
                roots.push(root);
            }
        }
        IgnoreSet::new(&spec.ignore_watch, &base, never.clone())?;
        super::check_ms(spec.watch_delay, "watch_delay (--watch-delay)")?;
        let delay = Duration::from_millis(spec.watch_delay);
        Ok(Some(WatchConfig {
            roots,
            base,
            ignore: spec.ignore_watch.clone(),
            never,
            delay,
            probation: Duration::from_millis(spec.min_uptime.min(super::MAX_MS)).max(MIN_PROBATION),
        }))
    }

    /// The state shown by `describe` before any directory is watched.
    pub fn info(&self, watching: bool, off_reason: Option<String>) -> WatchInfo {
        WatchInfo {
            watching,
            paths: self.roots.clone(),
            ignore: self.ignore.clone(),
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

/// `path` without `.` and `..` components (paths are watched as written, not resolved).
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Watches until aborted, or until the loop guard turns watching off.
pub async fn run(ctx: Context, cfg: WatchConfig) {
    let mut info = cfg.info(true, None);
    let started = IgnoreSet::new(&cfg.ignore, &cfg.base, cfg.never.clone()).and_then(|ignore| {
        let inotify = Inotify::init().map_err(|e| format!("cannot start inotify: {e}"))?;
        let stream = inotify
            .into_event_stream(vec![0u8; 64 * 1024])
            .map_err(|e| format!("cannot start inotify: {e}"))?;
        Ok((Arc::new(ignore), stream))
    });
    let (ignore, mut stream) = match started {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(id = ctx.id, error = %e, "file watching failed");
            info.watching = false;
            info.error = Some(e);
            ctx.publish(|s| s.watch = Some(info));
            return;
        }
    };
    let mut tree = Tree::new(stream.watches(), ignore, cfg.roots.clone());
    tree.scan().await;
    info.directories = tree.len();
    info.error.clone_from(&tree.error);
    tracing::info!(id = ctx.id, directories = tree.len(), error = ?tree.error, "watching files");
    ctx.publish(|s| s.watch = Some(info.clone()));

    let mut debounce = Debounce::new(cfg.delay);
    let mut guard = LoopGuard::new(LOOP_LIMIT, cfg.probation);
    let mut view = ctx.view.clone();
    loop {
        let (due, probation) = (debounce.due(), guard.probation_end());
        let verdict = tokio::select! {
            event = stream.next() => {
                let event = match event {
                    Some(Ok(event)) => event,
                    Some(Err(e)) => {
                        tracing::warn!(id = ctx.id, error = %e, "file watching failed");
                        info.watching = false;
                        info.error = Some(format!("reading inotify events: {e}"));
                        ctx.publish(|s| s.watch = Some(info));
                        return;
                    }
                    None => return,
                };
                let change = tree.on_event(event.mask, &event.wd, event.name.as_deref()).await;
                let verdict = change.map_or(Verdict::Pending, |change| {
                    let what = match change {
                        Change::Path(p) => cfg.show(&p),
                        Change::Overflow => "(too many changes to tell)".to_string(),
                    };
                    let now = Instant::now();
                    debounce.record(now, what.clone());
                    info.last_change = Some(what);
                    guard.judge(now, exits(&ctx), true)
                });
                if info.directories != tree.len() || info.error != tree.error || verdict != Verdict::Pending {
                    info.directories = tree.len();
                    info.error.clone_from(&tree.error);
                    ctx.publish(|s| s.watch = Some(info.clone()));
                }
                verdict
            }
            () = wait_until(due) => {
                restart(&ctx, &mut debounce, &mut guard, &mut stream, &mut tree).await;
                Verdict::Pending
            }
            () = wait_until(probation) => guard.judge(Instant::now(), exits(&ctx), false),
            Ok(()) = view.changed(), if probation.is_some() => {
                guard.judge(Instant::now(), exits(&ctx), false)
            }
        };
        if let Verdict::Tripped(n) = verdict {
            let reason = format!(
                "watching stopped at {}: the app crashed or changed its own watched files after each of its last {n} restarts on change (a restart loop); fix it, then `bm2 restart {} --watch`",
                humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
                ctx.name
            );
            tracing::warn!(id = ctx.id, %reason, "restart loop");
            info.watching = false;
            info.off_reason = Some(reason.clone());
            ctx.publish(|s| s.watch = Some(info));
            ctx.tell(Command::Watch(WatchChange::Off(reason), None))
                .await;
            return;
        }
    }
}

/// Restarts the app for the pending changes. Changes that arrive while it restarts are taken as
/// part of the same change: the new process starts after them.
async fn restart(
    ctx: &Context,
    debounce: &mut Debounce,
    guard: &mut LoopGuard,
    stream: &mut inotify::EventStream<Vec<u8>>,
    tree: &mut Tree,
) {
    let Some((what, count)) = debounce.take() else {
        return;
    };
    let detail = match count {
        0 | 1 => format!("{what} changed"),
        2 => format!("{what} and 1 other path changed"),
        n => format!("{what} and {} other paths changed", n - 1),
    };
    let outcome = ctx.ask(RestartReason::Watch, detail, None).await;
    while let Some(Some(Ok(event))) = stream.next().now_or_never() {
        tree.on_event(event.mask, &event.wd, event.name.as_deref())
            .await;
    }
    debounce.clear();
    match outcome {
        Outcome::Restarted => guard.restarted(Instant::now(), exits(ctx)),
        Outcome::Ignored(why) => tracing::debug!(id = ctx.id, %why, "restart on change skipped"),
        Outcome::Failed(e) => tracing::warn!(id = ctx.id, error = %e, "restart on change failed"),
    }
}

fn exits(ctx: &Context) -> u64 {
    ctx.view.borrow().exits
}

async fn wait_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
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
        assert_eq!(cfg.ignore, ["node_modules", ".git", ".bm2", "logs"]);
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
