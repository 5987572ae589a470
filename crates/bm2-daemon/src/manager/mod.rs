//! The process manager: registers apps, fans commands out to their actors, restores state.
//! One module per family of commands.

mod control;
mod dependents;
mod depends;
mod env;
mod handover;
mod logging;
mod send;
mod start;
mod state;

pub use logging::LogSnapshot;

use bm2_types::ErrorCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bm2_types::{
    ApiError, AppSpec, ClusterInfo, MetricsHistory, MetricsSnapshot, PingResponse, ProcDetail,
    ProcId, ProcSummary,
};

use crate::Shared;
use crate::envs::{self, Vars};
use crate::logs::{self, InstanceLogs, LogDefaults, LogPaths};
use crate::persist::{STATE_VERSION, SavedInstance, StateFile};
use crate::procfs;
use crate::registry::{Handle, Instance, Registry};
use crate::supervisor::actor;
use crate::supervisor::command::{History, InstanceView};
use bm2_types::Home;

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

impl NewInstance {
    /// An instance of a state or dump file, under `id`, with `base_env`.
    fn saved(id: ProcId, s: crate::persist::SavedInstance, base_env: Arc<Vars>) -> NewInstance {
        NewInstance {
            id,
            index: s.index,
            count: s.count,
            base_env,
            spec: s.spec,
            history: History {
                restarts: s.restarts,
                restart_reasons: s.restart_reasons,
                watch_off: s.watch_off,
                held: s.held,
                running: s.running,
            },
            created_at_ms: s.created_at_ms,
        }
    }
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
    /// Stop and forget; unless `keep_logs`, remove the log files bm2 named for the instances.
    Delete {
        /// Keep the instances' log files.
        keep_logs: bool,
    },
    /// Zero restart counters.
    Reset,
}

/// The engine behind the daemon; usable embedded in a tokio runtime.
pub struct ProcessManager {
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    started: Instant,
    /// How long the daemon ran before it was last handed over in place (`bm2 update`).
    carried_uptime_ms: std::sync::atomic::AtomicU64,
    /// Times it was handed over in place.
    handovers: std::sync::atomic::AtomicU32,
    /// Set while the daemon is being handed over: changes are refused.
    updating: std::sync::atomic::AtomicBool,
    closing: tokio::sync::watch::Sender<bool>,
    /// True once a shutdown has stopped the apps: long-lived streams (log follows, dashboard
    /// sessions) end then, so that followers see what apps print while they stop.
    streams_end: tokio::sync::watch::Sender<bool>,
    /// The manager itself, for work that must go on when the request that began it is
    /// dropped (a start waiting for dependencies whose client went away).
    this: std::sync::Weak<ProcessManager>,
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
        let manager = Arc::new_cyclic(|this| ProcessManager {
            this: this.clone(),
            shared,
            registry,
            started: Instant::now(),
            carried_uptime_ms: std::sync::atomic::AtomicU64::new(0),
            handovers: std::sync::atomic::AtomicU32::new(0),
            updating: std::sync::atomic::AtomicBool::new(false),
            closing: tokio::sync::watch::channel(false).0,
            streams_end: tokio::sync::watch::channel(false).0,
        });
        tokio::spawn(dependents::run(
            Arc::downgrade(&manager),
            manager.shared.bus.subscribe(),
        ));
        manager
    }

    /// Leaves adopted zombies alone (every reaper: SIGCHLD, samples, stops) until
    /// [`ProcessManager::release_orphans`].
    pub fn hold_orphans(&self) {
        self.shared.table.hold_orphans();
    }

    /// Reaps adopted zombies again.
    pub fn release_orphans(&self) {
        self.shared.table.release_orphans();
    }

    /// Reaps the zombie children of the daemon that it did not spawn itself (orphans adopted as
    /// subreaper, or as PID 1). Blocking: it reads `/proc`.
    pub fn reap_adopted_zombies(&self) {
        let me = std::process::id();
        let zombies = crate::procfs::pids()
            .into_iter()
            .filter_map(crate::procfs::read_stat)
            .filter(|s| s.ppid == me && s.is_zombie())
            .map(|s| s.pid);
        self.shared.table.reap_orphans(zombies);
    }

    /// Follows changes to the process table (the value only counts them).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// Becomes true once a shutdown has stopped the apps (or the daemon exits without one);
    /// long-lived streams end then.
    pub fn streams_end(&self) -> tokio::sync::watch::Receiver<bool> {
        self.streams_end.subscribe()
    }

    /// Ends long-lived streams (log follows, dashboard sessions), so that serving can stop.
    pub fn end_streams(&self) {
        self.streams_end.send_replace(true);
    }

    /// The home this manager works in.
    pub fn home(&self) -> &Home {
        &self.shared.home
    }

    /// Messages for the user about something that happened without a command (a state file
    /// that could not be read, ...), each handed out once.
    pub fn take_notices(&self) -> Vec<String> {
        self.shared.take_notices()
    }

    /// Milliseconds since the daemon started, counting the time before handovers in place.
    pub fn uptime_ms(&self) -> u64 {
        self.carried_uptime_ms
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_add(self.started.elapsed().as_millis() as u64)
    }

    /// Daemon identity and uptime.
    pub fn ping(&self) -> PingResponse {
        PingResponse {
            pid: std::process::id(),
            version: bm2_types::VERSION.to_string(),
            protocol: bm2_types::PROTOCOL_VERSION,
            uptime_ms: self.uptime_ms(),
            home: self.shared.home.root().to_path_buf(),
            exe: std::env::current_exe().ok(),
            handovers: self.handovers.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Refuses changes once the daemon is shutting down.
    fn refuse_if_closing(&self) -> Result<(), ApiError> {
        if self.updating.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ApiError::new(
                ErrorCode::ShuttingDown,
                "bm2 is being updated; run the command again in a moment",
            ));
        }
        if *self.closing.borrow() {
            return Err(ApiError::new(
                ErrorCode::ShuttingDown,
                "the daemon is shutting down; run the command again once it has exited",
            ));
        }
        Ok(())
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
            // Files resolve pid_file to an absolute path; anything else (an API client's
            // relative path) gets the default rather than a file in the daemon's directory.
            pid_file: spec
                .pid_file
                .as_deref()
                .map(std::path::Path::new)
                .filter(|p| p.is_absolute() && *p != std::path::Path::new("/dev/null"))
                .map_or_else(
                    || home.app_pid_file(&spec.name, id),
                    |p| crate::logs::with_id(p, id),
                ),
            marker,
            stdin: Arc::default(),
        });
        let handle = actor::spawn_actor(inst, spec, base_env, history, self.shared.clone());
        self.registry.insert(handle.clone());
        self.shared.changed();
        handle
    }

    /// Ends the actors of `handles` (stopping their processes) and forgets them; a cluster app
    /// left without instances closes its public socket.
    async fn forget(&self, handles: &[Handle]) -> Vec<ApiError> {
        let errors = all(handles, Handle::delete).await;
        for h in handles {
            self.registry.remove(h.inst.id);
            self.shared.changed();
            let _ = std::fs::remove_file(&h.inst.pid_file);
        }
        for h in handles {
            if self.registry.count_of(&h.inst.app) == 0 {
                self.shared.cluster.close(&h.inst.app);
            }
        }
        errors
    }

    /// Waits until the state file holds every change made so far; when it could not be
    /// written (disk full), says so in `errors`: the apps run, but a new daemon would not know.
    async fn saved(&self, errors: &mut Vec<ApiError>) {
        if let Err(e) = self.shared.persist.flush().await {
            errors.push(
                ApiError::new(ErrorCode::StateNotSaved, e.to_string()).with_hint(format!(
                    "the apps are running, but a restarted daemon would not bring this change back; free space in {} and run the command again",
                    self.shared.home.root().display()
                )),
            );
        }
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
        // Counted once for all: `jlist` details every instance.
        let every = self.registry.all();
        let counts = app_counts(&every);
        Ok(handles
            .iter()
            .map(|h| self.detail(h, counts.get(h.inst.app.as_str()).copied().unwrap_or(1)))
            .collect())
    }

    /// Every instance's and the machine's figures now (`bm2 metrics`). Reads `/proc` in the
    /// blocking pool.
    pub async fn metrics(&self) -> Result<MetricsSnapshot, ApiError> {
        let registry = self.registry.clone();
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || crate::metrics::snapshot::snapshot(&registry, &shared))
            .await
            .map_err(|e| {
                ApiError::new(ErrorCode::Internal, format!("metrics snapshot failed: {e}"))
            })
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

    /// The details of one instance of an app that has `instances` instances now.
    fn detail(&self, h: &Handle, instances: u32) -> ProcDetail {
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
            instances,
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
                .of(&h.inst.app)
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

/// What the last reload of each of `handles` said when it had to be a restart.
fn reload_notices<'a>(handles: impl IntoIterator<Item = &'a Handle>) -> Vec<String> {
    handles
        .into_iter()
        .filter_map(|h| h.view.borrow().reload_notice.clone())
        .collect()
}

/// Calls every handle at once and waits for all: one result per handle, in order.
async fn each<'a, F, Fut>(handles: &'a [Handle], call: F) -> Vec<Result<(), ApiError>>
where
    F: FnMut(&'a Handle) -> Fut,
    Fut: std::future::Future<Output = Result<(), ApiError>>,
{
    futures_util::future::join_all(handles.iter().map(call)).await
}

/// Calls every handle at once and waits for all; returns the failures.
async fn all<'a, F, Fut>(handles: &'a [Handle], call: F) -> Vec<ApiError>
where
    F: FnMut(&'a Handle) -> Fut,
    Fut: std::future::Future<Output = Result<(), ApiError>>,
{
    each(handles, call)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect()
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

/// How many instances each app has among `handles`.
fn app_counts(handles: &[Handle]) -> std::collections::HashMap<&str, u32> {
    let mut counts = std::collections::HashMap::new();
    for h in handles {
        *counts.entry(h.inst.app.as_str()).or_default() += 1;
    }
    counts
}

/// The state to write: every instance with its options, intent and current process. Each
/// saved instance records its app's current instance count.
fn snapshot_state(registry: &Registry) -> StateFile {
    let handles = registry.all();
    let counts = app_counts(&handles);
    let instances = handles
        .iter()
        .map(|h| {
            let v = h.view.borrow();
            SavedInstance {
                id: h.inst.id,
                index: h.inst.index,
                count: counts.get(h.inst.app.as_str()).copied().unwrap_or(1),
                spec: v.spec.clone(),
                env: v.base_env.clone(),
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
