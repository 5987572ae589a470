//! The engine's side of `bm2 update` in place: freezing every app into plain values and
//! taking them back, in the new daemon or, when the handover failed, in this one.

use std::time::Duration;

use bm2_types::{ApiError, ErrorCode};

use super::{NewInstance, ProcessManager};
use crate::handover::Frozen;
use crate::persist::StateFile;
use crate::registry::Handle;

/// How long starts under way may take to register their instances before a handover.
const STARTS_GRACE: Duration = Duration::from_secs(10);

/// How long the log pumps may take to stop between two reads.
const PUMPS_GRACE: Duration = Duration::from_secs(2);

impl ProcessManager {
    /// Freezes every app for a handover: new work is refused, starts under way finish, each
    /// supervisor gives up its instance (processes keep running), the balancers park their
    /// connections, and the log pumps stop between two reads. On failure what was frozen is
    /// returned with the reason, to be thawed.
    pub async fn freeze(&self) -> Result<Frozen, (Frozen, ApiError)> {
        self.updating
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut frozen = Frozen::default();
        let deadline = tokio::time::Instant::now() + STARTS_GRACE;
        while self.registry.starting() {
            if tokio::time::Instant::now() >= deadline {
                return Err((frozen, failed("a start under way did not finish in time")));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Each supervisor finishes the command it is running first (a reload, a stop).
        let handles = self.registry.all();
        let instances = futures_util::future::join_all(handles.iter().map(Handle::freeze)).await;
        frozen.instances = instances.into_iter().flatten().map(|b| *b).collect();
        frozen.cluster = Some(self.shared.cluster.freeze().await);
        match self.shared.logs.pumps.freeze(PUMPS_GRACE).await {
            Ok(pumps) => frozen.pumps = pumps,
            Err(pumps) => {
                frozen.pumps = pumps;
                return Err((frozen, failed("an app's output pipe did not stop in time")));
            }
        }
        frozen.metrics = Some(std::mem::take(&mut *self.shared.metrics.history()));
        if let Err(e) = self.shared.persist.flush().await {
            return Err((frozen, failed(&format!("cannot write the state file: {e}"))));
        }
        Ok(frozen)
    }

    /// Takes back what [`ProcessManager::freeze`] gave (in this daemon, after a failed
    /// handover, or in the new one): the log pumps read again, the balancers accept, every
    /// supervisor adopts its instance. Returns how many processes run on.
    pub async fn thaw(&self, frozen: Frozen) -> usize {
        if let Some(history) = frozen.metrics {
            *self.shared.metrics.history() = history;
        }
        let registry = self.registry.clone();
        self.shared.logs.pumps.resume(frozen.pumps, |id| {
            registry.get(id).map(|h| h.inst.logs.clone())
        });
        if let Some(cluster) = frozen.cluster
            && let Err(e) = self.shared.cluster.thaw(cluster).await
        {
            tracing::error!(error = %e, "cannot take back the cluster balancers");
        }
        let mut kept = 0;
        for instance in frozen.instances {
            let running = matches!(
                instance.phase,
                crate::supervisor::frozen::FrozenPhase::Running(_)
            );
            let id = instance.id;
            let Some(handle) = self.registry.get(id) else {
                tracing::error!(
                    id,
                    "an instance handed over is not in the state file; its process is left alone"
                );
                continue;
            };
            match handle.adopt(Box::new(instance)).await {
                Ok(()) => kept += usize::from(running),
                Err(e) => tracing::error!(id, error = %e.message, "cannot take over an instance"),
            }
        }
        self.updating
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.shared.changed();
        kept
    }

    /// The new daemon of a handover: registers the instances of the state file and takes over
    /// what the previous binary froze; an instance meant to run that was not handed over (it
    /// was being started) is started. Returns how many processes were taken over.
    pub async fn take_over(&self, saved: StateFile, frozen: Frozen) -> usize {
        self.registry.set_next_id(saved.next_id);
        let adopted: Vec<u32> = frozen.instances.iter().map(|f| f.id).collect();
        let mut start = Vec::new();
        let mut bases = crate::envs::Interner::default();
        for s in saved.instances {
            let running = s.running && !adopted.contains(&s.id);
            let base_env = bases.share(s.env.clone());
            let handle = self.register(NewInstance::saved(s.id, s, base_env));
            if running {
                start.push(handle);
            }
        }
        let kept = self.thaw(frozen).await;
        for e in super::all(&start, Handle::start).await {
            tracing::error!(error = %e.message, "an app meant to run did not start");
        }
        kept
    }

    /// Counts a handover: the daemon's uptime goes on from `uptime_ms`.
    pub fn handed_over(&self, uptime_ms: u64, handovers: u32) {
        use std::sync::atomic::Ordering;
        self.carried_uptime_ms.store(uptime_ms, Ordering::Relaxed);
        self.handovers.store(handovers, Ordering::Relaxed);
    }

    /// Times this daemon was handed over in place.
    pub fn handovers(&self) -> u32 {
        self.handovers.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Starts an update to `exe`: refuses a second one under way, then checks that `exe` can
    /// take this daemon over (see [`crate::handover::check_binary`]). From here until the
    /// handover is done or abandoned ([`ProcessManager::thaw`]), changes are refused.
    pub async fn begin_update(&self, exe: &std::path::Path) -> Result<(), ApiError> {
        use std::sync::atomic::Ordering;
        if *self.closing.borrow() {
            return Err(ApiError::new(
                ErrorCode::ShuttingDown,
                "the daemon is shutting down; run the command again once it has exited",
            ));
        }
        if self
            .updating
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Err(ApiError::new(
                ErrorCode::UpdateFailed,
                "an update is already under way; run `bm2 ping` to see the binary the daemon runs",
            ));
        }
        let checked = crate::handover::check_binary(exe, &self.shared.table).await;
        if checked.is_err() {
            self.updating.store(false, Ordering::SeqCst);
        }
        checked
    }

    /// Abandons an update begun with [`ProcessManager::begin_update`] before anything froze.
    pub fn abandon_update(&self) {
        self.updating
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

fn failed(why: &str) -> ApiError {
    ApiError::new(
        ErrorCode::UpdateFailed,
        format!("cannot hand the daemon over: {why}"),
    )
    .with_hint("the daemon runs on with every app untouched; run `bm2 update` again")
}
