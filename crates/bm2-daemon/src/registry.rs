//! The table of managed instances: ids and names to handles, and target resolution.

use bm2_types::ErrorCode;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bm2_types::{ApiError, ProcId};

pub use crate::supervisor::handle::{Handle, Instance, display_name};

/// All managed instances.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    handles: BTreeMap<ProcId, Handle>,
    next_id: ProcId,
    /// Names reserved by starts that have not registered their instances yet.
    pending: BTreeMap<String, usize>,
}

/// Ids reserved for an app; the name stays taken for other starts until this is dropped, by
/// which time its instances are registered (or the start failed).
#[derive(Debug)]
pub struct Reservation<'a> {
    /// The ids, in order.
    pub ids: Vec<ProcId>,
    name: String,
    registry: &'a Registry,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        if let Some(n) = inner.pending.get_mut(&self.name) {
            *n -= 1;
            if *n == 0 {
                inner.pending.remove(&self.name);
            }
        }
    }
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every handle, by id.
    pub fn all(&self) -> Vec<Handle> {
        self.lock().handles.values().cloned().collect()
    }

    /// The handle of instance `id`.
    pub fn get(&self, id: ProcId) -> Option<Handle> {
        self.lock().handles.get(&id).cloned()
    }

    /// True while a start has reserved ids and not registered its instances yet.
    pub fn starting(&self) -> bool {
        !self.lock().pending.is_empty()
    }

    /// The next id to be given out.
    pub fn next_id(&self) -> ProcId {
        self.lock().next_id
    }

    /// Number of managed instances.
    pub fn len(&self) -> usize {
        self.lock().handles.len()
    }

    /// True when nothing is managed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reserves `n` fresh ids, failing when `name` is taken (managed, or being started by
    /// another request) and `force` is off.
    pub fn reserve(&self, name: &str, n: u32, force: bool) -> Result<Reservation<'_>, ApiError> {
        let mut inner = self.lock();
        if !force {
            let taken: Vec<String> = inner
                .handles
                .values()
                .filter(|h| h.inst.app == name)
                .map(|h| h.inst.id.to_string())
                .collect();
            if !taken.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::AlreadyExists,
                    format!("app {name:?} is already managed (id {})", taken.join(", ")),
                )
                .with_hint("restart it, or use --force to start another copy"));
            }
            if inner.pending.contains_key(name) {
                return Err(ApiError::new(
                    ErrorCode::AlreadyExists,
                    format!("app {name:?} is being started by another command"),
                ));
            }
        }
        let first = inner.next_id;
        inner.next_id += n;
        *inner.pending.entry(name.to_string()).or_default() += 1;
        Ok(Reservation {
            ids: (first..first + n).collect(),
            name: name.to_string(),
            registry: self,
        })
    }

    /// Registers a handle under its id, also moving the id counter past it.
    pub fn insert(&self, handle: Handle) {
        let mut inner = self.lock();
        let id = handle.inst.id;
        inner.next_id = inner.next_id.max(id + 1);
        inner.handles.insert(id, handle);
    }

    /// True when `id` is in use.
    pub fn contains(&self, id: ProcId) -> bool {
        self.lock().handles.contains_key(&id)
    }

    /// Sets the id counter (when restoring state).
    pub fn set_next_id(&self, next: ProcId) {
        let mut inner = self.lock();
        inner.next_id = inner.next_id.max(next);
    }

    /// Forgets an instance. Once nothing is managed (and no start holds ids), ids start from 0
    /// again, as in PM2.
    pub fn remove(&self, id: ProcId) {
        let mut inner = self.lock();
        inner.handles.remove(&id);
        if inner.handles.is_empty() && inner.pending.is_empty() {
            inner.next_id = 0;
        }
    }

    /// Forgets everything and restarts ids from 0.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.handles.clear();
        inner.next_id = 0;
    }

    /// How many instances `app` has now.
    pub fn count_of(&self, app: &str) -> u32 {
        self.lock()
            .handles
            .values()
            .filter(|h| h.inst.app == app)
            .count() as u32
    }

    /// The instances named by `targets`, in id order. Each target must match something.
    pub fn resolve(&self, targets: &[String]) -> Result<Vec<Handle>, ApiError> {
        let inner = self.lock();
        let mut ids = BTreeSet::new();
        for target in targets {
            let matched = match_target(&inner.handles, target)?;
            if matched.is_empty() {
                return Err(unknown_target(&inner.handles, target));
            }
            ids.extend(matched);
        }
        Ok(ids.iter().map(|id| inner.handles[id].clone()).collect())
    }
}

impl Registry {
    /// The instances named by the known `targets`, in id order, and an error for each target
    /// that matches nothing: as PM2, a command given several targets acts on those it knows and
    /// reports the others. Fails when no target matches anything (or one is malformed).
    pub fn resolve_known(
        &self,
        targets: &[String],
    ) -> Result<(Vec<Handle>, Vec<ApiError>), ApiError> {
        let inner = self.lock();
        let mut ids = BTreeSet::new();
        let mut unknown = Vec::new();
        for target in targets {
            let matched = match_target(&inner.handles, target)?;
            if matched.is_empty() {
                unknown.push(unknown_target(&inner.handles, target));
            }
            ids.extend(matched);
        }
        if ids.is_empty() && !unknown.is_empty() {
            return Err(unknown.remove(0));
        }
        let handles = ids.iter().map(|id| inner.handles[id].clone()).collect();
        Ok((handles, unknown))
    }
}

fn match_target(handles: &BTreeMap<ProcId, Handle>, target: &str) -> Result<Vec<ProcId>, ApiError> {
    let t = target.trim();
    if t == "all" {
        return Ok(handles.keys().copied().collect());
    }
    if let Ok(id) = t.parse::<ProcId>() {
        return Ok(handles
            .contains_key(&id)
            .then_some(id)
            .into_iter()
            .collect());
    }
    if let Some(pattern) = t.strip_prefix('/').and_then(|r| r.strip_suffix('/')) {
        let re = regex::Regex::new(pattern).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidTarget,
                format!("bad regular expression {t}: {e}"),
            )
        })?;
        // App names first, as PM2 matches them; instance names (`worker-1`) only when no app
        // name matches, so an app named like another app's instance is never caught with it.
        let by_app: Vec<ProcId> = handles
            .values()
            .filter(|h| re.is_match(&h.inst.app))
            .map(|h| h.inst.id)
            .collect();
        if !by_app.is_empty() {
            return Ok(by_app);
        }
        return Ok(handles
            .values()
            .filter(|h| re.is_match(&h.inst.display_name()))
            .map(|h| h.inst.id)
            .collect());
    }
    let by = |f: &dyn Fn(&Handle) -> bool| -> Vec<ProcId> {
        handles
            .values()
            .filter(|h| f(h))
            .map(|h| h.inst.id)
            .collect()
    };
    for matcher in [
        &(|h: &Handle| h.inst.app == t) as &dyn Fn(&Handle) -> bool,
        &|h: &Handle| h.inst.display_name() == t,
        &|h: &Handle| h.view.borrow().spec.namespace == t,
        &|h: &Handle| {
            let v = h.view.borrow();
            v.spec.script == t || v.exec_path.as_deref().is_some_and(|p| p.as_os_str() == t)
        },
    ] {
        let ids = by(matcher);
        if !ids.is_empty() {
            return Ok(ids);
        }
    }
    Ok(Vec::new())
}

fn unknown_target(handles: &BTreeMap<ProcId, Handle>, target: &str) -> ApiError {
    if handles.is_empty() {
        return ApiError::new(
            ErrorCode::UnknownTarget,
            format!("no process matches {target:?}: no processes are managed"),
        )
        .with_hint("start one with `bm2 start <script>`");
    }
    let names: BTreeSet<String> = handles.values().map(|h| h.inst.display_name()).collect();
    ApiError::new(
        ErrorCode::UnknownTarget,
        format!(
            "no process matches {target:?}; managed: {}",
            names.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
    .with_hint("targets are ids, names, namespaces, `all`, script paths or /regex/")
}
