//! The process manager: registers apps, fans commands out to their actors, restores state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bm2_types::{
    ActionResponse, ApiError, AppSpec, ClusterInfo, IfExists, LogsRequest, MetricsHistory,
    MetricsSnapshot, PingResponse, ProcDetail, ProcId, ProcSummary, SaveResponse, StartRequest,
};
use tokio::sync::oneshot;

use crate::Shared;
use crate::envs::{self, Vars};
use crate::logs::{self, InstanceLogs, LogDefaults, LogPaths, Stream};
use crate::persist::{self, STATE_VERSION, SavedInstance, StateFile};
use crate::procfs;
use crate::registry::{Handle, Instance, Registry};
use crate::supervisor::actor::{self, Command, History, InstanceView, Reply, Update, WatchChange};
use crate::supervisor::kill;
use crate::time::now_ms;
use bm2_types::Home;

/// Recent log lines and the feed of new ones, for `bm2 logs`.
pub struct LogSnapshot {
    /// Lines already in the files.
    pub history: Vec<bm2_types::LogEvent>,
    /// New lines, when following.
    pub live: Option<tokio::sync::broadcast::Receiver<Arc<bm2_types::LogEvent>>>,
    /// The instances to follow; `None` for every app.
    pub ids: Option<std::collections::HashSet<ProcId>>,
}

/// What is needed to register one instance.
struct NewInstance {
    id: ProcId,
    index: u32,
    count: u32,
    spec: Arc<AppSpec>,
    base_env: Arc<Vars>,
    history: History,
    created_at_ms: u64,
}

/// Most instances one app may have.
const MAX_INSTANCES: u32 = 4096;

/// A bulk action on targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stop and keep stopped.
    Stop,
    /// Stop if running, then start.
    Restart,
    /// Stop and forget.
    Delete,
    /// Zero restart counters.
    Reset,
}

/// The engine behind the daemon; usable embedded in a tokio runtime.
pub struct ProcessManager {
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    started: Instant,
    closing: tokio::sync::watch::Sender<bool>,
}

impl ProcessManager {
    /// A manager for `home`, with its state writer and sampler running on the current runtime.
    pub fn new(
        home: Home,
        sample_interval: Duration,
        log_defaults: LogDefaults,
    ) -> Arc<ProcessManager> {
        let shared = Arc::new(Shared::new(home, log_defaults));
        let registry = Arc::new(Registry::default());
        let writer = shared.clone();
        let reg = registry.clone();
        tokio::spawn(async move {
            let path = writer.home.state_file();
            writer.persist.run(path, || snapshot_state(&reg)).await;
        });
        tokio::spawn(crate::metrics::run_sampler(
            shared.clone(),
            registry.clone(),
            sample_interval,
        ));
        Arc::new(ProcessManager {
            shared,
            registry,
            started: Instant::now(),
            closing: tokio::sync::watch::channel(false).0,
        })
    }

    /// Follows changes to the process table (the value only counts them).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// Becomes true when the manager shuts down; long-lived streams end then.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// The home this manager works in.
    pub fn home(&self) -> &Home {
        &self.shared.home
    }

    /// Daemon identity and uptime.
    pub fn ping(&self) -> PingResponse {
        PingResponse {
            pid: std::process::id(),
            version: bm2_types::VERSION.to_string(),
            protocol: bm2_types::PROTOCOL_VERSION,
            uptime_ms: self.started.elapsed().as_millis() as u64,
            home: self.shared.home.root().to_path_buf(),
        }
    }

    /// Registers the apps of `req` and starts those with `autostart`.
    pub async fn start(&self, req: StartRequest) -> Result<ActionResponse, ApiError> {
        let mut bases = Vec::with_capacity(req.apps.len());
        for spec in &req.apps {
            validate(spec)?;
            let env = envs::base_env(&req.client_env, spec);
            crate::triggers::validate(spec, env.get("TZ").map(String::as_str))
                .map_err(|e| ApiError::new("invalid_app", format!("app {:?}: {e}", spec.name)))?;
            bases.push(env);
        }
        let restart_existing = req.if_exists != IfExists::Fail && !req.force;
        let reload = req.if_exists == IfExists::Reload;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let mut batch = Vec::new();
        let mut restarted = Vec::new();
        for (spec, base) in req.apps.into_iter().zip(bases) {
            let count = spec.instances.resolve(cpus);
            if count > MAX_INSTANCES {
                return Err(ApiError::new(
                    "invalid_app",
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
                self.act(Action::Delete, &names).await?;
                let base = if req.update_env {
                    base
                } else {
                    (*keep).clone()
                };
                let ids = self.registry.reserve(&spec.name, count, true)?;
                batch.push((Arc::new(spec), ids, base));
                continue;
            }
            let ids = self.registry.reserve(&spec.name, count, req.force)?;
            batch.push((Arc::new(spec), ids, base));
        }
        // The public socket of a cluster app opens before its instances start, so that early
        // connections wait for the first ready instance instead of being refused.
        for (spec, _, _) in &batch {
            if let (bm2_types::ExecMode::Cluster, Some(port)) = (spec.exec_mode, spec.port) {
                self.shared
                    .cluster
                    .balancer(&spec.name, spec.listen_host.as_deref(), port, spec.lb)
                    .await
                    .map_err(|e| {
                        ApiError::new(
                            "listen_failed",
                            format!("{}: cannot listen on port {port}: {e}", spec.name),
                        )
                    })?;
            }
        }
        let mut handles = Vec::new();
        let mut bases = envs::Interner::default();
        for (spec, ids, base) in batch {
            let count = ids.len() as u32;
            let base = bases.share(base);
            for (index, id) in ids.into_iter().enumerate() {
                let handle = self.register(NewInstance {
                    id,
                    index: index as u32,
                    count,
                    spec: spec.clone(),
                    base_env: base.clone(),
                    history: History::default(),
                    created_at_ms: now_ms(),
                });
                handles.push((handle, spec.autostart));
            }
        }
        let starting: Vec<Handle> = handles
            .iter()
            .filter(|(_, a)| *a)
            .map(|(h, _)| h.clone())
            .collect();
        let mut errors = send_all(&starting, Command::Start).await;
        for (h, spec, base_env) in &restarted {
            let update = Update {
                spec: Some(spec.clone()),
                base_env: base_env.clone(),
            };
            let one = std::slice::from_ref(h);
            if reload {
                errors.extend(send_all(one, |r| Command::Reload(Some(update.clone()), r)).await);
            } else {
                errors.extend(send_all(one, |r| Command::Restart(Some(update.clone()), r)).await);
            }
            handles.push((h.clone(), true));
        }
        self.shared.persist.flush().await;
        handles.sort_by_key(|(h, _)| h.inst.id);
        let notices = if reload {
            reload_notices(restarted.iter().map(|(h, _, _)| h))
        } else {
            Vec::new()
        };
        Ok(ActionResponse {
            processes: handles.iter().map(|(h, _)| self.summary(h)).collect(),
            errors,
            notices,
        })
    }

    fn register(&self, new: NewInstance) -> Handle {
        let NewInstance {
            id,
            index,
            count,
            spec,
            base_env,
            history,
            created_at_ms,
        } = new;
        let home = &self.shared.home;
        let marker = actor::marker_for(home.root(), id);
        let name = crate::registry::display_name(&spec.name, index, count);
        let logs = InstanceLogs::open(
            &self.shared.logs,
            &spec,
            LogPaths::for_instance(home, &spec, id, count),
            id,
            name,
        );
        let inst = Arc::new(Instance {
            id,
            app: spec.name.clone(),
            index,
            count,
            created_at_ms,
            logs: Arc::new(std::sync::Mutex::new(logs)),
            pid_file: home.app_pid_file(&spec.name, id),
            marker,
        });
        let handle = actor::spawn_actor(inst, spec, base_env, history, self.shared.clone());
        self.registry.insert(handle.clone());
        self.shared.changed();
        handle
    }

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
        self.shared.persist.flush().await;
        Ok(ActionResponse {
            processes: handles.iter().map(|h| self.summary(h)).collect(),
            errors: failures,
            notices: Vec::new(),
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
        self.shared.persist.flush().await;
        Ok(ActionResponse {
            processes: handles.iter().map(|h| self.summary(h)).collect(),
            errors,
            notices: reload_notices(&handles),
        })
    }

    /// Sets the number of instances of `app` (`N`, `+N`, `-N`): new instances inherit the
    /// app's options and environment; the highest-numbered ones are drained and removed first.
    pub async fn scale(&self, app: &str, how: &str) -> Result<ActionResponse, ApiError> {
        let mut existing: Vec<Handle> = self
            .registry
            .all()
            .into_iter()
            .filter(|h| h.inst.app == app)
            .collect();
        if existing.is_empty() {
            self.registry.resolve(&[app.to_string()])?;
            return Err(ApiError::new(
                "unknown_target",
                format!("{app:?} is an instance, not an app; scale takes an app name"),
            ));
        }
        existing.sort_by_key(|h| h.inst.index);
        let current = existing.len() as i64;
        let bad = || {
            ApiError::new(
                "invalid_request",
                format!("scale {app} {how:?}: expected N, +N or -N"),
            )
        };
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
                "invalid_request",
                format!(
                    "scale {app}: an app keeps at least one instance; use `bm2 delete {app}` to remove it"
                ),
            ));
        }
        if target > i64::from(MAX_INSTANCES) {
            return Err(ApiError::new(
                "invalid_request",
                format!("scale {app}: at most {MAX_INSTANCES} instances"),
            ));
        }
        let target = target as usize;
        if target > existing.len() {
            let template = existing.last().map(Handle::snapshot).ok_or_else(bad)?;
            let next_index = existing.last().map_or(0, |h| h.inst.index + 1);
            let ids = self
                .registry
                .reserve(app, (target - existing.len()) as u32, true)?;
            let mut added = Vec::new();
            for (i, id) in ids.into_iter().enumerate() {
                added.push(self.register(NewInstance {
                    id,
                    index: next_index + i as u32,
                    count: target as u32,
                    spec: template.spec.clone(),
                    base_env: template.base_env.clone(),
                    history: History {
                        watch_off: template.watch_off.clone(),
                        ..History::default()
                    },
                    created_at_ms: now_ms(),
                }));
            }
            let errors = send_all(&added, Command::Start).await;
            self.shared.persist.flush().await;
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
        self.act(Action::Delete, &ids).await
    }

    /// Applies `action` to every instance named by `targets`.
    pub async fn act(
        &self,
        action: Action,
        targets: &[String],
    ) -> Result<ActionResponse, ApiError> {
        let handles = self.registry.resolve(targets)?;
        let errors = send_all(
            &handles,
            match action {
                Action::Stop => Command::Stop,
                Action::Restart => |r| Command::Restart(None, r),
                Action::Delete => Command::Delete,
                Action::Reset => Command::Reset,
            },
        )
        .await;
        let processes = handles.iter().map(|h| self.summary(h)).collect();
        if action == Action::Delete {
            for h in &handles {
                self.registry.remove(h.inst.id);
                self.shared.changed();
                let _ = std::fs::remove_file(&h.inst.pid_file);
            }
            let remaining = self.registry.all();
            for h in &handles {
                if !remaining.iter().any(|r| r.inst.app == h.inst.app) {
                    self.shared.cluster.close(&h.inst.app).await;
                }
            }
        }
        self.shared.persist.flush().await;
        Ok(ActionResponse {
            processes,
            errors,
            notices: Vec::new(),
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
            notices: Vec::new(),
        })
    }

    /// Every instance's list row, by id.
    pub fn list(&self) -> Vec<ProcSummary> {
        self.registry
            .all()
            .iter()
            .map(|h| self.summary(h))
            .collect()
    }

    /// Details of the instances named by `targets`, or of all.
    pub fn details(&self, targets: Option<&[String]>) -> Result<Vec<ProcDetail>, ApiError> {
        let handles = match targets {
            Some(t) => self.registry.resolve(t)?,
            None => self.registry.all(),
        };
        Ok(handles.iter().map(|h| self.detail(h)).collect())
    }

    /// Every instance's and the machine's figures now (`bm2 metrics`). Reads `/proc` in the
    /// blocking pool.
    pub async fn metrics(&self) -> Result<MetricsSnapshot, ApiError> {
        let registry = self.registry.clone();
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || crate::metrics::snapshot::snapshot(&registry, &shared))
            .await
            .map_err(|e| ApiError::new("internal", format!("metrics snapshot failed: {e}")))
    }

    /// The samples of the last `seconds`, of every instance or only `only`
    /// (`bm2 metrics --history`).
    pub fn metrics_history(
        &self,
        seconds: u64,
        only: Option<ProcId>,
    ) -> Result<MetricsHistory, ApiError> {
        crate::metrics::snapshot::history(&self.registry, &self.shared, seconds, only)
    }

    /// The metrics as Prometheus exposition text (`bm2 prometheus`).
    pub async fn prometheus(&self) -> Result<String, ApiError> {
        Ok(crate::metrics::prometheus::render(&self.metrics().await?))
    }

    /// Writes the dump file.
    pub fn save(&self) -> Result<SaveResponse, ApiError> {
        let state = snapshot_state(&self.registry);
        let path = self.shared.home.dump_file();
        persist::store(&path, &state).map_err(|e| ApiError::new("save_failed", e.to_string()))?;
        Ok(SaveResponse {
            path,
            count: state.instances.len(),
        })
    }

    /// Restores the dump file: apps not managed yet are registered, and started if they ran.
    pub async fn resurrect(&self, update_env: Option<&Vars>) -> Result<ActionResponse, ApiError> {
        let path = self.shared.home.dump_file();
        if !path.exists() {
            return Err(
                ApiError::new("no_dump", format!("no dump file at {}", path.display()))
                    .with_hint("run `bm2 save` first"),
            );
        }
        let state = persist::load(&path).map_err(|e| ApiError::new("bad_dump", e.to_string()))?;
        let existing: Vec<(String, u32)> = self
            .registry
            .all()
            .iter()
            .map(|h| (h.inst.app.clone(), h.inst.index))
            .collect();
        let fresh: Vec<SavedInstance> = state
            .instances
            .into_iter()
            .filter(|s| !existing.contains(&(s.spec.name.clone(), s.index)))
            .collect();
        self.restore_instances(fresh, true, update_env).await
    }

    /// Brings back the state of a previous daemon: its leftover processes are stopped, then its
    /// instances are registered under the same ids and started again if they were running.
    pub async fn restore(&self) -> Result<ActionResponse, persist::PersistError> {
        let path = self.shared.home.state_file();
        let state = match persist::load(&path) {
            Ok(s) => s,
            Err(e @ persist::PersistError::Parse { .. }) => {
                let broken = path.with_extension(format!("broken-{}", now_ms()));
                tracing::error!(error = %e, moved_to = %broken.display(), "state file unreadable; starting empty");
                let _ = std::fs::rename(&path, &broken);
                StateFile::default()
            }
            Err(e) => return Err(e),
        };
        self.stop_leftovers(&state).await;
        self.registry.set_next_id(state.next_id);
        let restored = self.restore_instances(state.instances, false, None).await;
        Ok(restored.unwrap_or_default())
    }

    async fn restore_instances(
        &self,
        saved: Vec<SavedInstance>,
        fresh_ids: bool,
        update_env: Option<&Vars>,
    ) -> Result<ActionResponse, ApiError> {
        let mut handles = Vec::new();
        let mut bases = envs::Interner::default();
        for s in saved {
            let id = if fresh_ids && self.registry.contains(s.id) {
                self.registry.reserve(&s.spec.name, 1, true)?[0]
            } else {
                s.id
            };
            let handle = self.register(NewInstance {
                id,
                index: s.index,
                count: s.count,
                base_env: bases.share(match update_env {
                    Some(client) => Arc::new(envs::base_env(client, &s.spec)),
                    None => s.env,
                }),
                spec: s.spec,
                history: History {
                    restarts: s.restarts,
                    restart_reasons: s.restart_reasons,
                    watch_off: s.watch_off,
                    held: s.held,
                },
                created_at_ms: s.created_at_ms,
            });
            let running = s.running;
            handles.push((handle, running));
        }
        let starting: Vec<Handle> = handles
            .iter()
            .filter(|(_, r)| *r)
            .map(|(h, _)| h.clone())
            .collect();
        let errors = send_all(&starting, Command::Start).await;
        self.shared.persist.flush().await;
        Ok(ActionResponse {
            processes: handles.iter().map(|(h, _)| self.summary(h)).collect(),
            errors,
            notices: Vec::new(),
        })
    }

    /// Stops processes a dead daemon of this home left running, so that nothing runs twice:
    /// each app's processes get its kill signal, then SIGKILL after the longest kill timeout.
    async fn stop_leftovers(&self, state: &StateFile) {
        let home = self.shared.home.root();
        let mut all = Vec::new();
        let mut grace = Duration::ZERO;
        for s in &state.instances {
            let mut procs = kill::find_marked(&actor::marker_for(home, s.id));
            let mut group = None;
            if let (Some(pid), Some(start)) = (s.pid, s.pid_start_time)
                && procfs::is_same_process(pid, start)
            {
                group = Some(pid);
                procs.push((pid, start));
            }
            if procs.is_empty() {
                continue;
            }
            let sig =
                kill::parse_signal(&s.spec.kill_signal).unwrap_or(nix::sys::signal::Signal::SIGINT);
            kill::signal_all(group, &procs, sig);
            grace = grace.max(Duration::from_millis(s.spec.kill_timeout));
            all.extend(procs);
        }
        if all.is_empty() {
            return;
        }
        tracing::info!(
            count = all.len(),
            "stopping processes left by a previous daemon"
        );
        if !kill::wait_gone(&all, grace, Duration::from_millis(20)).await {
            kill::signal_all(None, &kill::alive(&all), nix::sys::signal::Signal::SIGKILL);
            kill::wait_gone(&all, Duration::from_secs(5), Duration::from_millis(20)).await;
        }
    }

    /// Stops every instance. With `forget`, also empties the list and the state file (`bm2 kill`);
    /// without, the state file keeps what should run, for the next daemon (shutdown by signal).
    pub async fn shutdown(&self, forget: bool) {
        self.closing.send_replace(true);
        let before = snapshot_state(&self.registry);
        let handles = self.registry.all();
        send_all(&handles, Command::Delete).await;
        let after = if forget {
            StateFile {
                version: STATE_VERSION,
                ..StateFile::default()
            }
        } else {
            StateFile {
                instances: before
                    .instances
                    .into_iter()
                    .map(|s| SavedInstance {
                        pid: None,
                        pid_start_time: None,
                        ..s
                    })
                    .collect(),
                ..before
            }
        };
        self.registry.clear();
        self.shared.changed();
        if let Err(e) = persist::store(&self.shared.home.state_file(), &after) {
            tracing::error!(error = %e, "cannot write state file at shutdown");
        }
    }

    /// Recent lines of the instances named by `req`, and (when following) a feed of new lines,
    /// taken together so that no line is missed or sent twice. Also returns the ids to follow
    /// (`None`: every app, including apps started later).
    pub fn logs(&self, req: &LogsRequest) -> Result<LogSnapshot, ApiError> {
        let everything = req.targets.is_empty() || req.targets.iter().any(|t| t == "all");
        let handles = if everything {
            self.registry.all()
        } else {
            self.registry.resolve(&req.targets)?
        };
        let guards: Vec<_> = handles.iter().map(|h| logs::lock(&h.inst.logs)).collect();
        let mut history = Vec::new();
        for g in &guards {
            if req.out {
                history.extend(g.history(Stream::Out, req.lines));
            }
            if req.err {
                history.extend(g.history(Stream::Err, req.lines));
            }
        }
        let live = req.follow.then(|| self.shared.logs.subscribe());
        drop(guards);
        Ok(LogSnapshot {
            history,
            live,
            ids: (!everything).then(|| handles.iter().map(|h| h.inst.id).collect()),
        })
    }

    /// Sets a variable of `app` in the env store (applied at its next start).
    pub fn env_set(&self, app: &str, key: &str, value: &str) -> Result<(), ApiError> {
        self.require_app(app)?;
        self.shared
            .env_store
            .set(app, key, value)
            .map_err(|e| ApiError::new("env_store", format!("cannot write the env store: {e}")))
    }

    /// The stored variables of `app`.
    pub fn env_get(&self, app: &str) -> Result<Vars, ApiError> {
        self.require_app(app)?;
        Ok(self.shared.env_store.get(app))
    }

    /// Removes one stored variable of `app`, or all.
    pub fn env_delete(&self, app: &str, key: Option<&str>) -> Result<usize, ApiError> {
        self.require_app(app)?;
        self.shared
            .env_store
            .delete(app, key)
            .map_err(|e| ApiError::new("env_store", format!("cannot write the env store: {e}")))
    }

    /// Ok when `app` names an app; an id, an instance name or any other target is refused (the
    /// env store is kept per app, and would never be read under another key).
    fn require_app(&self, app: &str) -> Result<(), ApiError> {
        if self.registry.all().iter().any(|h| h.inst.app == app) {
            return Ok(());
        }
        // Unknown targets get the usual error with the managed names.
        self.registry.resolve(&[app.to_string()])?;
        Err(ApiError::new(
            "unknown_target",
            format!("{app:?} is not an app name; the env store is kept per app, by name"),
        ))
    }

    /// Empties the log files of the instances named by `targets` (all when empty).
    pub fn flush_logs(&self, targets: &[String]) -> Result<usize, ApiError> {
        let handles = if targets.is_empty() {
            self.registry.all()
        } else {
            self.registry.resolve(targets)?
        };
        for h in &handles {
            logs::lock(&h.inst.logs).flush();
        }
        Ok(handles.len())
    }

    /// Reopens every log file; returns how many.
    pub fn reopen_logs(&self) -> usize {
        self.shared.logs.reopen_all()
    }

    fn summary(&self, h: &Handle) -> ProcSummary {
        let v = h.view.borrow();
        let (cpu, memory) = if v.pid.is_some() {
            self.shared.metrics.usage(h.inst.id)
        } else {
            (0.0, 0)
        };
        ProcSummary {
            id: h.inst.id,
            name: h.inst.app.clone(),
            instance_name: h.inst.display_name(),
            instance: h.inst.index,
            namespace: v.spec.namespace.clone(),
            exec_mode: v.spec.exec_mode,
            status: v.status,
            pid: v.pid,
            cpu,
            memory,
            restarts: v.restarts,
            unstable_restarts: v.unstable_restarts,
            started_at_ms: v.pid.and(v.started_at_ms),
            restart_reasons: v.restart_reasons.clone(),
        }
    }

    fn detail(&self, h: &Handle) -> ProcDetail {
        let summary = self.summary(h);
        let v = h.snapshot();
        let cluster = self.cluster_info(h, &v);
        let (paths, dropped) = {
            let logs = logs::lock(&h.inst.logs);
            (logs.paths().clone(), logs.dropped())
        };
        let stored = self.shared.env_store.get(&h.inst.app);
        let triggers = h.triggers.borrow().clone();
        ProcDetail {
            file_handles: v.pid.and_then(procfs::fd_count),
            summary,
            spec: (*v.spec).clone(),
            instances: h.inst.count,
            interpreter: v.interpreter,
            pending_env: pending_env(&v.store_applied, &stored),
            env: if v.env.is_empty() {
                envs::instance_env(
                    &v.base_env,
                    &v.spec,
                    self.shared.home.root(),
                    h.inst.id,
                    h.inst.index,
                    &stored,
                )
            } else {
                envs::with_overlay(&v.base_env, &v.env)
            },
            created_at_ms: h.inst.created_at_ms,
            last_exit: v.last_exit,
            status_reason: v.reason,
            out_log: paths.out.unwrap_or_else(|| "/dev/null".into()),
            err_log: paths.err.unwrap_or_else(|| "/dev/null".into()),
            log_file: paths.combined,
            log_dropped_bytes: dropped,
            pid_file: h.inst.pid_file.clone(),
            cluster,
            last_restart: v.last_restart,
            health: triggers.health,
            cron: triggers.cron,
            watch: triggers.watch,
        }
    }

    fn cluster_info(&self, h: &Handle, v: &InstanceView) -> Option<ClusterInfo> {
        if v.spec.exec_mode != bm2_types::ExecMode::Cluster {
            return None;
        }
        let balancer = v.public_port.and_then(|port| {
            self.shared
                .cluster
                .try_of(&h.inst.app)
                .into_iter()
                .find(|b| b.addr().port() == port)
        });
        let (connections, total) = match (&balancer, v.pid) {
            (Some(b), Some(pid)) => b.connections(pid).unwrap_or_default(),
            _ => (0, 0),
        };
        Some(ClusterInfo {
            listen: balancer.map_or_else(
                || {
                    v.public_port.map_or_else(
                        || "-".to_string(),
                        |p| format!("{}:{p}", v.spec.listen_host.as_deref().unwrap_or("0.0.0.0")),
                    )
                },
                |b| b.addr().to_string(),
            ),
            private_port: v.private_port,
            ready: v.ready && v.pid.is_some(),
            connections,
            total_connections: total,
        })
    }
}

fn validate(spec: &AppSpec) -> Result<(), ApiError> {
    let invalid = |m: String| Err(ApiError::new("invalid_app", m));
    if spec.name.trim().is_empty() {
        return invalid("an app needs a name".into());
    }
    if spec.name == "all" || spec.name.parse::<u64>().is_ok() || spec.name.starts_with('/') {
        return invalid(format!(
            "app name {:?} would be read as a target (all, an id or a /regex/); pick another with --name",
            spec.name
        ));
    }
    if spec.script.trim().is_empty() {
        return invalid(format!("app {:?} has no script", spec.name));
    }
    if let Err(e) = kill::parse_signal(&spec.kill_signal) {
        return invalid(format!("app {:?}: kill_signal: {e}", spec.name));
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

/// Sends a command to each actor and waits for all replies; returns the failures.
/// What the last reload of each of `handles` said when it had to be a restart.
fn reload_notices<'a>(handles: impl IntoIterator<Item = &'a Handle>) -> Vec<String> {
    handles
        .into_iter()
        .filter_map(|h| h.view.borrow().reload_notice.clone())
        .collect()
}

async fn send_all(handles: &[Handle], make: impl Fn(Reply) -> Command) -> Vec<ApiError> {
    let mut pending = Vec::with_capacity(handles.len());
    for h in handles {
        let (tx, rx) = oneshot::channel();
        if h.tx.send(make(tx)).await.is_ok() {
            pending.push(rx);
        }
    }
    let mut errors = Vec::new();
    for rx in pending {
        if let Ok(Err(e)) = rx.await {
            errors.push(e);
        }
    }
    errors
}

/// Names of the stored variables not yet applied: set or changed, or deleted, since the last launch.
fn pending_env(applied: &Vars, stored: &Vars) -> Vec<String> {
    let mut keys: Vec<String> = stored
        .iter()
        .filter(|(k, v)| applied.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .chain(applied.keys().filter(|k| !stored.contains_key(*k)).cloned())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn snapshot_state(registry: &Registry) -> StateFile {
    let instances = registry
        .all()
        .iter()
        .map(|h| {
            let v = h.view.borrow();
            let env = v.base_env.clone();
            SavedInstance {
                id: h.inst.id,
                index: h.inst.index,
                count: h.inst.count,
                spec: v.spec.clone(),
                env,
                running: v.desired_running,
                pid: v.pid,
                pid_start_time: v.pid_start_time,
                restarts: v.restarts,
                created_at_ms: h.inst.created_at_ms,
                restart_reasons: v.restart_reasons.clone(),
                watch_off: v.watch_off.clone(),
                held: v.held,
            }
        })
        .collect();
    StateFile {
        version: STATE_VERSION,
        next_id: registry.next_id(),
        instances,
    }
}
