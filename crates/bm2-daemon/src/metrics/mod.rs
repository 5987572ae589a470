//! CPU and memory of each instance's whole process tree, sampled periodically.

mod sampler;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bm2_types::ProcId;

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

/// Latest samples, shared between the sampler and readers.
#[derive(Debug, Default)]
pub struct Metrics {
    samples: Mutex<HashMap<ProcId, Sample>>,
}

impl Metrics {
    fn lock(&self) -> MutexGuard<'_, HashMap<ProcId, Sample>> {
        self.samples.lock().unwrap_or_else(PoisonError::into_inner)
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
}
