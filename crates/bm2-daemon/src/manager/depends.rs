//! Waiting for an app's dependencies (`depends_on`): whether the instances of a dependency meet
//! a condition, and waiting for it with a deadline.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bm2_types::{ApiError, AppSpec, DependCondition, ErrorCode, HealthState, ProcStatus};
use tokio::sync::watch;

use super::ProcessManager;
use crate::registry::Handle;
use crate::supervisor::command::Update;

/// How often the state is looked at again besides on changes (covers apps with several
/// instances, whose views are not all watched).
const TICK: Duration = Duration::from_millis(100);

/// Where a dependency stands against a condition.
#[derive(Debug, PartialEq, Eq)]
enum Standing {
    /// Met by every instance.
    Met,
    /// Not yet: what it is now, in words.
    Pending(String),
    /// Cannot be met without someone acting: why.
    Failed(String),
}

/// Where the instances of `app` stand against `cond`.
fn standing(app: &str, handles: &[Handle], cond: DependCondition) -> Standing {
    if handles.is_empty() {
        return Standing::Failed(format!("{app} is not managed"));
    }
    for h in handles {
        let v = h.view.borrow();
        let health = h.triggers.borrow().health.as_ref().map(|i| i.state);
        let stopped_by_hand = v.status == ProcStatus::Stopped && !v.desired_running;
        let exit_code = v.last_exit.as_ref().and_then(|e| e.code);
        let one = match (cond, v.status) {
            (_, ProcStatus::Errored) => Standing::Failed(format!("{app} is errored")),
            (DependCondition::Completed, ProcStatus::Stopped | ProcStatus::WaitingRestart)
                if exit_code == Some(0) =>
            {
                Standing::Met
            }
            (DependCondition::Completed, ProcStatus::Stopped) if v.last_exit.is_some() => {
                Standing::Failed(match exit_code {
                    Some(c) => format!("{app} exited with code {c}"),
                    None => format!("{app} was killed by a signal"),
                })
            }
            (_, ProcStatus::Stopped) if stopped_by_hand => {
                Standing::Failed(format!("{app} is stopped"))
            }
            (DependCondition::Started, ProcStatus::Online) => Standing::Met,
            (DependCondition::Ready, ProcStatus::Online) if !v.ready => {
                Standing::Pending(format!("{app} is online, not ready yet"))
            }
            // Without readiness of its own, an app is ready once its start is stable.
            (DependCondition::Ready, ProcStatus::Online)
                if health.is_none()
                    && !v.spec.wait_ready
                    && v.started_at_ms.is_some_and(|t| {
                        crate::time::now_ms().saturating_sub(t) < v.spec.min_uptime
                    }) =>
            {
                Standing::Pending(format!(
                    "{app} is online for less than its min_uptime ({} ms)",
                    v.spec.min_uptime
                ))
            }
            (DependCondition::Ready, ProcStatus::Online) => match health {
                None | Some(HealthState::Healthy) => Standing::Met,
                Some(HealthState::Unknown) => Standing::Pending(format!(
                    "{app} is ready, its health check has not passed yet"
                )),
                Some(HealthState::Unhealthy) => {
                    Standing::Pending(format!("{app} fails its health check"))
                }
            },
            (_, status) => Standing::Pending(format!("{app} is {}", status.as_str())),
        };
        if one != Standing::Met {
            return one;
        }
    }
    Standing::Met
}

/// Waits until the instances `find` gives for `app` meet `cond`, at most `timeout`. `find` is
/// asked again on every look (a dependency may be deleted or scaled meanwhile).
///
/// # Errors
/// Why the condition will not be met: the dependency failed, or the time ran out (with what it
/// was doing then).
pub(super) async fn wait_for(
    app: &str,
    cond: DependCondition,
    timeout: Duration,
    find: impl Fn() -> Vec<Handle>,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let handles = find();
        let pending = match standing(app, &handles, cond) {
            Standing::Met => return Ok(()),
            Standing::Failed(why) => return Err(why),
            Standing::Pending(what) => what,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "not {} within {} ms: {pending}",
                cond.as_str(),
                timeout.as_millis()
            ));
        }
        let Some(first) = handles.first() else {
            continue;
        };
        let mut view = first.view.clone();
        let mut triggers = first.triggers.clone();
        tokio::select! {
            _ = view.changed() => {}
            _ = triggers.changed() => {}
            () = tokio::time::sleep(TICK) => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// What [`ProcessManager::start_waiting`] did.
#[derive(Default)]
pub(super) struct Ordered {
    /// Managed apps restarted once their dependencies were there.
    pub restarted: Vec<Handle>,
    /// New apps whose processes could not be spawned: forgotten again.
    pub dropped: HashSet<String>,
}

/// One app of a start request that waits for others.
struct Waiter {
    spec: Arc<AppSpec>,
    new: Vec<Handle>,
    restart: Vec<(Handle, Update)>,
}

impl ProcessManager {
    /// Starts the apps of a start request that have `depends_on`, each once its dependencies
    /// meet their conditions (all of them waiting at once, so independent chains do not wait on
    /// each other). An app whose dependency fails or times out is left stopped with the reason
    /// shown by `describe`, and an error for it in `errors`. `failed` are the apps of the request
    /// that could not be spawned already.
    pub(super) async fn start_waiting(
        &self,
        specs: &[Arc<AppSpec>],
        new: Vec<Handle>,
        restart: Vec<(Handle, Update)>,
        failed: &HashSet<String>,
        reload: bool,
        errors: &mut Vec<ApiError>,
    ) -> Ordered {
        let mut waiters: Vec<Waiter> = specs
            .iter()
            .filter(|s| s.autostart && !s.depends_on.is_empty())
            .map(|s| Waiter {
                spec: s.clone(),
                new: Vec::new(),
                restart: Vec::new(),
            })
            .collect();
        for h in new {
            if let Some(w) = waiters.iter_mut().find(|w| w.spec.name == h.inst.app) {
                w.new.push(h);
            }
        }
        for (h, u) in restart {
            if let Some(w) = waiters.iter_mut().find(|w| w.spec.name == h.inst.app) {
                w.restart.push((h, u));
            }
        }
        // Whether each waiting app got started: its dependents wait for that first.
        let mut senders = HashMap::new();
        let mut outcomes = HashMap::new();
        for w in &waiters {
            let (tx, rx) = watch::channel(None::<bool>);
            senders.insert(w.spec.name.clone(), tx);
            outcomes.insert(w.spec.name.clone(), rx);
        }
        let runs = waiters.into_iter().map(|w| {
            let tx = senders.remove(&w.spec.name);
            let outcomes = &outcomes;
            async move {
                let done = self.start_one_waiting(w, outcomes, failed, reload).await;
                if let Some(tx) = tx {
                    let _ = tx.send(Some(done.started));
                }
                done
            }
        });
        let mut ordered = Ordered {
            restarted: Vec::new(),
            dropped: HashSet::new(),
        };
        for done in futures_util::future::join_all(runs).await {
            errors.extend(done.errors);
            ordered.restarted.extend(done.restarted);
            ordered.dropped.extend(done.dropped);
        }
        ordered
    }

    /// Waits for the dependencies of one app, then starts (or restarts) it.
    async fn start_one_waiting(
        &self,
        w: Waiter,
        outcomes: &HashMap<String, watch::Receiver<Option<bool>>>,
        failed: &HashSet<String>,
        reload: bool,
    ) -> Done {
        let name = w.spec.name.clone();
        let timeout = Duration::from_millis(
            w.spec
                .depends_timeout
                .unwrap_or(bm2_types::DEFAULT_DEPENDS_TIMEOUT_MS),
        );
        let mut done = Done::default();
        let mut why = None;
        for (dep, cond) in &w.spec.depends_on {
            let head = format!("waiting for {dep} ({})", cond.as_str());
            if failed.contains(dep) {
                why = Some(format!("{head}: {dep} could not be started"));
                break;
            }
            if let Some(rx) = outcomes.get(dep) {
                let mut rx = rx.clone();
                let started = rx
                    .wait_for(Option::is_some)
                    .await
                    .is_ok_and(|o| *o == Some(true));
                if !started {
                    why = Some(format!("{head}: {dep} was not started"));
                    break;
                }
            }
            let found = || {
                self.registry
                    .all()
                    .into_iter()
                    .filter(|h| h.inst.app == *dep)
                    .collect()
            };
            if let Err(e) = wait_for(dep, *cond, timeout, found).await {
                why = Some(format!("{head}: {e}"));
                break;
            }
        }
        if let Some(why) = why {
            for h in w.new.iter().chain(w.restart.iter().map(|(h, _)| h)) {
                let _ = h.note(why.clone()).await;
            }
            tracing::warn!(app = %name, "{why}");
            done.errors.push(
                ApiError::new(
                    ErrorCode::NotReady,
                    format!("{name:?} was not started: {why}"),
                )
                .with_hint(format!(
                    "start it with `bm2 start {name}` once its dependencies run"
                )),
            );
            return done;
        }
        if !w.new.is_empty() {
            let dropped = self.spawn_new(&w.new, &mut done.errors).await;
            done.started = dropped.is_empty();
            done.dropped = dropped;
        }
        if !w.restart.is_empty() {
            for (h, update) in &w.restart {
                let r = if reload {
                    h.reload(Some(update.clone())).await
                } else {
                    h.restart(Some(update.clone())).await
                };
                if let Err(e) = r {
                    done.errors.push(e);
                }
            }
            done.started = done.errors.is_empty();
            done.restarted = w.restart.into_iter().map(|(h, _)| h).collect();
        }
        done
    }
}

/// What became of one waiting app.
#[derive(Default)]
struct Done {
    started: bool,
    errors: Vec<ApiError>,
    restarted: Vec<Handle>,
    dropped: HashSet<String>,
}

/// Stops `handles` with every app before the apps it depends on (all at once when none of
/// them depends on another). Returns the errors.
pub(super) async fn stop_in_order(handles: &[Handle]) -> Vec<ApiError> {
    let mut apps: Vec<&str> = Vec::new();
    for h in handles {
        if !apps.contains(&h.inst.app.as_str()) {
            apps.push(&h.inst.app);
        }
    }
    let depends = |app: &str| -> Vec<String> {
        handles
            .iter()
            .find(|h| h.inst.app == app)
            .map(|h| h.view.borrow().spec.depends_on.keys().cloned().collect())
            .unwrap_or_default()
    };
    let related = apps
        .iter()
        .any(|a| depends(a).iter().any(|d| apps.contains(&d.as_str())));
    if !related {
        return super::all(handles, Handle::stop).await;
    }
    let mut errors = Vec::new();
    for app in bm2_config::depends::stop_order(&apps, depends) {
        let group: Vec<Handle> = handles
            .iter()
            .filter(|h| h.inst.app == app)
            .cloned()
            .collect();
        errors.extend(super::all(&group, Handle::stop).await);
    }
    errors
}
