//! `start` and `scale`: plan, record, then spawn. Every name and id is reserved and every
//! instance is in the state file (as meant to run) before any process is spawned, so a daemon
//! that dies half-way through a start comes back with the same apps and no orphan.

use bm2_types::ErrorCode;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bm2_types::{ActionResponse, ApiError, AppSpec, IfExists, StartRequest};

use super::{Action, MAX_INSTANCES, NewInstance, ProcessManager, all, each, reload_notices};
use crate::envs::{self, Vars};
use crate::logs;
use crate::registry::{Handle, Reservation};
use crate::supervisor::command::{History, Update};
use crate::time::now_ms;

/// An app of a start request that gets new instances.
struct Planned<'a> {
    spec: Arc<AppSpec>,
    ids: Reservation<'a>,
    base: Vars,
}

impl ProcessManager {
    /// Starts apps given by their options as an ecosystem file writes them (PM2's or BM2's
    /// spellings): resolved as the CLI resolves a file (relative paths from `cwd`, `env_<name>`
    /// applied), then started as [`ProcessManager::start`] does. Unknown keys come back as
    /// notices; a bad value is an `invalid_app` error naming the key.
    pub async fn start_options(
        &self,
        req: bm2_types::StartOptionsRequest,
    ) -> Result<ActionResponse, ApiError> {
        self.refuse_if_closing()?;
        let bm2_types::StartOptionsRequest {
            apps,
            cwd,
            client_env,
            env_name,
            force,
            if_exists,
        } = req;
        if !cwd.is_absolute() {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("cwd must be an absolute path, not {}", cwd.display()),
            ));
        }
        let text = serde_json::json!({ "apps": apps }).to_string();
        let opts = bm2_config::LoadOptions {
            env_name,
            cwd: Some(cwd.clone()),
            ..bm2_config::LoadOptions::default()
        };
        // Resolving looks at files (scripts, interpreters): not on the daemon's thread.
        let loaded = tokio::task::spawn_blocking(move || {
            bm2_config::load_json(&text, "the app options", cwd, &opts)
        })
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| ApiError::new(ErrorCode::InvalidApp, e.to_string()))?;
        let mut res = self
            .start(StartRequest {
                apps: loaded.apps,
                client_env,
                force,
                if_exists,
                update_env: false,
            })
            .await?;
        res.notices
            .extend(loaded.warnings.iter().map(ToString::to_string));
        Ok(res)
    }

    /// Registers the apps of `req` and starts those with `autostart`. An app whose processes
    /// cannot be spawned at all (missing script, bad interpreter, ...) is not registered: the
    /// same command works once the cause is fixed.
    pub async fn start(&self, req: StartRequest) -> Result<ActionResponse, ApiError> {
        self.refuse_if_closing()?;
        let mut bases = Vec::with_capacity(req.apps.len());
        for spec in &req.apps {
            validate(spec)?;
            let env = envs::base_env(&req.client_env, spec);
            crate::triggers::validate(spec, env.get("TZ").map(String::as_str)).map_err(|e| {
                ApiError::new(ErrorCode::InvalidApp, format!("app {:?}: {e}", spec.name))
            })?;
            bases.push(env);
        }
        // Names and cycles are checked before anything is reserved or started.
        let managed: Vec<String> = self
            .registry
            .all()
            .iter()
            .map(|h| h.inst.app.clone())
            .filter(|a| !req.apps.iter().any(|s| s.name == *a))
            .collect();
        bm2_config::depends::start_order(&req.apps, &managed)
            .map_err(|e| ApiError::new(ErrorCode::InvalidApp, e.to_string()))?;
        // Apps that wait for others are registered stopped and started once those are there.
        let waiting: HashSet<String> = req
            .apps
            .iter()
            .filter(|s| s.autostart && !s.depends_on.is_empty())
            .map(|s| s.name.clone())
            .collect();
        let restart_existing = req.if_exists != IfExists::Fail && !req.force;
        let reload = req.if_exists == IfExists::Reload;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let mut batch: Vec<Planned<'_>> = Vec::new();
        let mut restarted = Vec::new();
        let mut restarted_handles: Vec<Handle> = Vec::new();
        let specs: Vec<Arc<AppSpec>> = req.apps.iter().cloned().map(Arc::new).collect();
        for (spec, base) in req.apps.into_iter().zip(bases) {
            let count = spec.instances.resolve(cpus);
            if count > MAX_INSTANCES {
                return Err(ApiError::new(
                    ErrorCode::InvalidApp,
                    format!(
                        "app {:?}: {count} instances is more than bm2 runs per app ({MAX_INSTANCES})",
                        spec.name
                    ),
                ));
            }
            let existing: Vec<Handle> = self
                .registry
                .all()
                .into_iter()
                .filter(|h| h.inst.app == spec.name)
                .collect();
            if restart_existing && !existing.is_empty() {
                if existing.len() == count as usize {
                    restarted.extend(existing.into_iter().map(|h| {
                        (
                            h,
                            Arc::new(spec.clone()),
                            req.update_env.then(|| Arc::new(base.clone())),
                        )
                    }));
                    continue;
                }
                // The instance count changed: replace the instances, keeping their environment
                // unless asked to update it.
                let keep = existing[0].view.borrow().base_env.clone();
                let names: Vec<String> = existing.iter().map(|h| h.inst.id.to_string()).collect();
                self.act(Action::Delete { keep_logs: true }, &names).await?;
                let base = if req.update_env {
                    base
                } else {
                    (*keep).clone()
                };
                let ids = self.registry.reserve(&spec.name, count, true)?;
                batch.push(Planned {
                    spec: Arc::new(spec),
                    ids,
                    base,
                });
                continue;
            }
            let ids = self.registry.reserve(&spec.name, count, req.force)?;
            batch.push(Planned {
                spec: Arc::new(spec),
                ids,
                base,
            });
        }
        self.open_balancers(&batch).await?;
        let mut handles = Vec::new();
        let mut interner = envs::Interner::default();
        for Planned { spec, ids, base } in batch {
            let count = ids.ids.len() as u32;
            let base = interner.share(base);
            for (index, &id) in ids.ids.iter().enumerate() {
                let handle = self.register(NewInstance {
                    id,
                    index: index as u32,
                    count,
                    spec: spec.clone(),
                    base_env: base.clone(),
                    history: History {
                        running: spec.autostart && !waiting.contains(&spec.name),
                        ..History::default()
                    },
                    created_at_ms: now_ms(),
                });
                handles.push((handle, spec.autostart));
            }
        }
        // Recorded before anything is spawned.
        let mut errors = Vec::new();
        self.saved(&mut errors).await;
        let starting: Vec<Handle> = handles
            .iter()
            .filter(|(h, a)| *a && !waiting.contains(&h.inst.app))
            .map(|(h, _)| h.clone())
            .collect();
        let mut failed = self.spawn_new(&starting, &mut errors).await;
        let mut later = Vec::new();
        for (h, spec, base_env) in restarted {
            let update = Update {
                spec: Some(spec.clone()),
                base_env,
            };
            if waiting.contains(&h.inst.app) {
                later.push((h, update));
                continue;
            }
            let one = std::slice::from_ref(&h);
            if reload {
                errors.extend(all(one, |h| h.reload(Some(update.clone()))).await);
            } else {
                errors.extend(all(one, |h| h.restart(Some(update.clone()))).await);
            }
            restarted_handles.push(h.clone());
            handles.push((h, true));
        }
        if !waiting.is_empty() {
            let new: Vec<Handle> = handles
                .iter()
                .filter(|(h, a)| *a && waiting.contains(&h.inst.app))
                .map(|(h, _)| h.clone())
                .collect();
            // In a task of its own: a client that goes away while the apps wait does not
            // leave them half started.
            let ordered = match self.this.upgrade() {
                Some(pm) => {
                    let failed = failed.clone();
                    let run = tokio::spawn(async move {
                        let mut errors = Vec::new();
                        let ordered = pm
                            .start_waiting(&specs, new, later, &failed, reload, &mut errors)
                            .await;
                        (ordered, errors)
                    });
                    match run.await {
                        Ok((ordered, more)) => {
                            errors.extend(more);
                            ordered
                        }
                        Err(e) => {
                            errors.push(ApiError::new(ErrorCode::Internal, e.to_string()));
                            super::depends::Ordered::default()
                        }
                    }
                }
                None => {
                    self.start_waiting(&specs, new, later, &failed, reload, &mut errors)
                        .await
                }
            };
            for h in ordered.restarted {
                restarted_handles.push(h.clone());
                handles.push((h, true));
            }
            failed.extend(ordered.dropped);
        }
        handles.retain(|(h, _)| !failed.contains(&h.inst.app));
        self.saved(&mut errors).await;
        handles.sort_by_key(|(h, _)| h.inst.id);
        let notices = if reload {
            reload_notices(restarted_handles.iter())
        } else {
            Vec::new()
        };
        Ok(ActionResponse {
            processes: handles.iter().map(|(h, _)| self.summary(h)).collect(),
            errors,
            notices,
        })
    }

    /// The public socket of a cluster app opens before its instances start, so that early
    /// connections wait for the first ready instance instead of being refused.
    async fn open_balancers(&self, batch: &[Planned<'_>]) -> Result<(), ApiError> {
        for p in batch {
            let spec = &p.spec;
            if let (bm2_types::ExecMode::Cluster, Some(port)) = (spec.exec_mode, spec.port) {
                self.shared
                    .cluster
                    .balancer(&spec.name, spec.listen_host.as_deref(), port, spec.lb)
                    .await
                    .map_err(|e| {
                        ApiError::new(
                            ErrorCode::ListenFailed,
                            format!("{}: cannot listen on port {port}: {e}", spec.name),
                        )
                    })?;
            }
        }
        Ok(())
    }

    /// Starts newly registered instances. The apps any of whose instances could not be
    /// spawned are forgotten again (with their other new instances): a start that fails before
    /// its process ran leaves nothing behind. Returns those apps' names.
    pub(super) async fn spawn_new(
        &self,
        handles: &[Handle],
        errors: &mut Vec<ApiError>,
    ) -> HashSet<String> {
        let results = each(handles, Handle::start).await;
        let mut failed = HashSet::new();
        for (h, r) in handles.iter().zip(results) {
            if let Err(e) = r {
                failed.insert(h.inst.app.clone());
                errors.push(e);
            }
        }
        if failed.is_empty() {
            return failed;
        }
        let dropped: Vec<Handle> = handles
            .iter()
            .filter(|h| failed.contains(&h.inst.app))
            .cloned()
            .collect();
        self.forget(&dropped).await;
        // Nothing ran: the files opened for its output go too.
        let remaining = self.registry.all();
        crate::logs::cleanup::remove_owned(&self.shared.home, &dropped, &remaining, false).await;
        for app in &failed {
            errors.push(
                ApiError::new(
                    ErrorCode::NotRegistered,
                    format!("{app:?} was not started, and is not managed"),
                )
                .with_hint("fix the cause above and run the same command again"),
            );
        }
        failed
    }

    /// Sets the number of instances of `app` (`N`, `+N`, `-N`): new instances inherit the
    /// app's options and environment; the highest-numbered ones are drained and removed first.
    pub async fn scale(&self, app: &str, how: &str) -> Result<ActionResponse, ApiError> {
        self.refuse_if_closing()?;
        let mut existing: Vec<Handle> = self
            .registry
            .all()
            .into_iter()
            .filter(|h| h.inst.app == app)
            .collect();
        if existing.is_empty() {
            self.registry.resolve(&[app.to_string()])?;
            return Err(ApiError::new(
                ErrorCode::UnknownTarget,
                format!("{app:?} is an instance, not an app; scale takes an app name"),
            ));
        }
        existing.sort_by_key(|h| h.inst.index);
        let target = scale_target(app, how, existing.len())?;
        if target > existing.len() {
            let template = existing.last().map(Handle::snapshot).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::UnknownTarget,
                    format!("{app:?} has no instances"),
                )
            })?;
            let next_index = existing.last().map_or(0, |h| h.inst.index + 1);
            let ids = self
                .registry
                .reserve(app, (target - existing.len()) as u32, true)?;
            let mut added = Vec::new();
            for (i, &id) in ids.ids.iter().enumerate() {
                added.push(self.register(NewInstance {
                    id,
                    index: next_index + i as u32,
                    count: target as u32,
                    spec: template.spec.clone(),
                    base_env: template.base_env.clone(),
                    history: History {
                        watch_off: template.watch_off.clone(),
                        running: true,
                        ..History::default()
                    },
                    created_at_ms: now_ms(),
                }));
            }
            drop(ids);
            let mut errors = Vec::new();
            self.saved(&mut errors).await;
            errors.extend(all(&added, Handle::start).await);
            self.saved(&mut errors).await;
            return Ok(ActionResponse {
                processes: added.iter().map(|h| self.summary(h)).collect(),
                errors,
                notices: Vec::new(),
            });
        }
        let removed: Vec<Handle> = existing.split_off(target);
        for h in &removed {
            let (pid, grace) = {
                let v = h.view.borrow();
                (v.pid, Duration::from_millis(v.spec.kill_timeout))
            };
            if let Some(pid) = pid {
                self.shared.cluster.drain(app, pid, grace).await;
            }
        }
        let ids: Vec<String> = removed.iter().map(|h| h.inst.id.to_string()).collect();
        self.act(Action::Delete { keep_logs: false }, &ids).await
    }
}

/// The instance count `how` (`N`, `+N`, `-N`) asks for, from `current`.
fn scale_target(app: &str, how: &str, current: usize) -> Result<usize, ApiError> {
    let bad = || {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("scale {app} {how:?}: expected N, +N or -N"),
        )
    };
    let current = current as i64;
    let target = match how.trim() {
        t if t.starts_with('+') => {
            current.saturating_add(t[1..].parse::<i64>().map_err(|_| bad())?)
        }
        t if t.starts_with('-') => {
            current.saturating_sub(t[1..].parse::<i64>().map_err(|_| bad())?)
        }
        t => t.parse::<i64>().map_err(|_| bad())?,
    };
    if target < 1 {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "scale {app}: an app keeps at least one instance; use `bm2 delete {app}` to remove it"
            ),
        ));
    }
    if target > i64::from(MAX_INSTANCES) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("scale {app}: at most {MAX_INSTANCES} instances"),
        ));
    }
    Ok(target as usize)
}

fn validate(spec: &AppSpec) -> Result<(), ApiError> {
    let invalid = |m: String| Err(ApiError::new(ErrorCode::InvalidApp, m));
    if spec.name.trim().is_empty() {
        return invalid("an app needs a name".into());
    }
    bm2_types::limits::check(spec).or_else(|e| invalid(e.message))?;
    // A numeric name is allowed, as in PM2; a number given as a target is an id (PM2's rule), so
    // such an app is reached by its namespace, a /regex/ or `all`. `all` and /regex/ would
    // shadow targets that have no other reading, so they stay refused.
    if spec.name == "all" || spec.name.starts_with('/') {
        return invalid(format!(
            "app name {:?} would be read as a target (all or a /regex/); pick another with --name",
            spec.name
        ));
    }
    if spec.script.trim().is_empty() {
        return invalid(format!("app {:?} has no script", spec.name));
    }
    if let Some(expr) = &spec.log_rotate_interval
        && let Err(e) = logs::config::parse_cron(expr)
    {
        return invalid(format!("app {:?}: log_rotate_interval: {e}", spec.name));
    }
    if let Some(t) = spec
        .log_type
        .as_deref()
        .filter(|t| !matches!(*t, "json" | "raw"))
    {
        return invalid(format!(
            "app {:?}: log_type must be json or raw, not {t:?}",
            spec.name
        ));
    }
    Ok(())
}
