//! Metrics: the sampler of CPU and memory per process tree, the history ring, the JSON snapshot
//! and the Prometheus text. The snapshot, history and Prometheus functions are what the API
//! serves; they only read what the sampler left here.

pub mod history;
pub mod prometheus;
mod sampler;
pub mod snapshot;
pub mod system;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bm2_types::ProcId;

pub use history::History;
pub use sampler::run_sampler;

/// The latest measurement of one instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// CPU use of the tree over the last interval, in percent of one core.
    pub cpu: f32,
    /// Resident memory of the tree, in bytes.
    pub memory: u64,
    /// Every process of the tree, as (pid, start time).
    pub tree: Vec<(u32, u64)>,
}

/// Latest samples and the history, shared between the sampler and readers.
#[derive(Debug, Default)]
pub struct Metrics {
    samples: Mutex<HashMap<ProcId, Sample>>,
    history: Mutex<History>,
    /// The machine's CPU busy percent over the last interval, as `f32` bits.
    system_cpu: AtomicU32,
    /// The sample interval, in milliseconds.
    interval_ms: AtomicU64,
}

impl Metrics {
    fn lock(&self) -> MutexGuard<'_, HashMap<ProcId, Sample>> {
        self.samples.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The history, locked.
    pub fn history(&self) -> MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// CPU percent and memory bytes of an instance (zero when not sampled).
    pub fn usage(&self, id: ProcId) -> (f32, u64) {
        self.lock().get(&id).map_or((0.0, 0), |s| (s.cpu, s.memory))
    }

    /// The processes last seen in an instance's tree.
    pub fn tree(&self, id: ProcId) -> Vec<(u32, u64)> {
        self.lock()
            .get(&id)
            .map(|s| s.tree.clone())
            .unwrap_or_default()
    }

    /// Replaces all samples.
    pub fn replace(&self, samples: HashMap<ProcId, Sample>) {
        *self.lock() = samples;
    }

    /// The machine's CPU busy percent over the last interval.
    pub fn system_cpu(&self) -> f32 {
        f32::from_bits(self.system_cpu.load(Ordering::Relaxed))
    }

    fn set_system_cpu(&self, percent: f32) {
        self.system_cpu.store(percent.to_bits(), Ordering::Relaxed);
    }

    /// The sample interval, in milliseconds (0 before the sampler starts).
    pub fn interval_ms(&self) -> u64 {
        self.interval_ms.load(Ordering::Relaxed)
    }
}
