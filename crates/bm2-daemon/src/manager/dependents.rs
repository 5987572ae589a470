//! `restart_dependents`: after an app restarts (for any reason), the apps that depend on it are
//! restarted once it meets their condition again. Follows the event bus for process starts.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bm2_types::{BusEvent, Lifecycle, ProcId};
use tokio::sync::broadcast;

use super::ProcessManager;
use super::depends::wait_for;
use crate::registry::Handle;

/// Follows `events` while the manager lives, restarting the dependents of restarted apps that
/// have `restart_dependents`.
pub(super) async fn run(
    manager: Weak<ProcessManager>,
    mut events: broadcast::Receiver<Arc<BusEvent>>,
) {
    // Restart counts of the instances seen starting: a start with a higher count is a restart.
    let mut seen: HashMap<ProcId, u32> = HashMap::new();
    // Dependents with a restart under way (several instances of a dependency restart at once).
    let pending: Arc<Mutex<HashSet<String>>> = Arc::default();
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let BusEvent::Process {
            event: Lifecycle::Start,
            process,
            ..
        } = &*event
        else {
            continue;
        };
        let Some(pm) = manager.upgrade() else {
            return;
        };
        let all = pm.registry.all();
        let Some(restarted) = all.iter().find(|h| h.inst.id == process.id) else {
            continue;
        };
        let (restarts, wanted) = {
            let v = restarted.view.borrow();
            (v.restarts, v.spec.restart_dependents)
        };
        let before = seen.insert(process.id, restarts);
        if !wanted || before.is_none_or(|b| restarts <= b) {
            continue;
        }
        let dep = restarted.inst.app.clone();
        let mut dependents: Vec<String> = Vec::new();
        for h in &all {
            let v = h.view.borrow();
            if v.desired_running
                && v.spec.depends_on.contains_key(&dep)
                && !dependents.contains(&h.inst.app)
            {
                dependents.push(h.inst.app.clone());
            }
        }
        for app in dependents {
            let Ok(mut p) = pending.lock() else { continue };
            if !p.insert(app.clone()) {
                continue;
            }
            drop(p);
            let manager = manager.clone();
            let pending = pending.clone();
            let dep = dep.clone();
            tokio::spawn(async move {
                restart_dependent(&manager, &dep, &app).await;
                if let Ok(mut p) = pending.lock() {
                    p.remove(&app);
                }
            });
        }
    }
}

/// Waits until `dep` meets the condition `app` has on it, then restarts `app`.
async fn restart_dependent(manager: &Weak<ProcessManager>, dep: &str, app: &str) {
    let handles_of = |name: &str| -> Vec<Handle> {
        manager.upgrade().map_or_else(Vec::new, |pm| {
            pm.registry
                .all()
                .into_iter()
                .filter(|h| h.inst.app == name)
                .collect()
        })
    };
    let Some(spec) = handles_of(app)
        .first()
        .map(|h| h.view.borrow().spec.clone())
    else {
        return;
    };
    let Some(&cond) = spec.depends_on.get(dep) else {
        return;
    };
    let timeout = Duration::from_millis(
        spec.depends_timeout
            .unwrap_or(bm2_types::DEFAULT_DEPENDS_TIMEOUT_MS),
    );
    if let Err(why) = wait_for(dep, cond, timeout, || handles_of(dep)).await {
        tracing::warn!(app, dep, "not restarted after {dep} restarted: {why}");
        return;
    }
    tracing::info!(
        app,
        dep,
        "restarting {app}: {dep} restarted (restart_dependents)"
    );
    let handles = handles_of(app);
    for e in super::all(&handles, |h| h.restart(None)).await {
        tracing::warn!(app, "restart after {dep} restarted failed: {e}");
    }
}
