//! The periodic sampler: each tick attributes processes to their instance, measures every tree,
//! enforces `max_memory_restart`, reaps orphans adopted by the daemon, and records one history
//! point per instance and one for the machine.
//!
//! A process seen once outside every app tree is not read again: it can only join a tree by being
//! new (a new pid). Its pid is dropped from that list when it disappears, and the list is cleared
//! when the set of main processes changes and every [`FULL_SCAN_EVERY`] ticks, as a guard against
//! pid reuse.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bm2_types::ProcId;
use tokio::time::MissedTickBehavior;

use super::Sample;
use super::history::{Point, SystemPoint, kib};
use super::system::{self, CpuTimes};
use crate::Shared;
use crate::procfs::{self, ProcStat, Tree};
use crate::registry::Handle;
use crate::registry::Registry;

type Key = (u32, u64);

/// Ticks between two scans that read every process.
const FULL_SCAN_EVERY: u32 = 10;

struct Sampler {
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    ticks_per_sec: f64,
    page_size: u64,
    prev_ticks: HashMap<Key, u64>,
    /// The pids of `prev_ticks`: processes of some app tree at the last tick.
    members: HashSet<u32>,
    orphan_owner: HashMap<Key, Option<ProcId>>,
    last: Instant,
    reader: procfs::StatReader,
    outsiders: HashSet<u32>,
    last_mains: Vec<u32>,
    ticks: u32,
    cpu_times: Option<CpuTimes>,
}

/// Samples every `interval` until the runtime ends.
pub async fn run_sampler(shared: Arc<Shared>, registry: Arc<Registry>, interval: Duration) {
    let mut sampler = Sampler {
        shared,
        registry,
        ticks_per_sec: procfs::clock_ticks() as f64,
        page_size: procfs::page_size(),
        prev_ticks: HashMap::new(),
        members: HashSet::new(),
        orphan_owner: HashMap::new(),
        last: Instant::now(),
        reader: procfs::StatReader::default(),
        outsiders: HashSet::new(),
        last_mains: Vec::new(),
        ticks: 0,
        cpu_times: system::cpu_times(),
    };
    sampler.shared.metrics.interval_ms.store(
        interval.as_millis() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    let mut timer = tokio::time::interval(interval);
    timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        timer.tick().await;
        sampler.tick().await;
    }
}

impl Sampler {
    async fn tick(&mut self) {
        let handles = self.registry.all();
        let samples = self.measure(&handles).await;
        self.record(&handles, &samples);
        self.shared.metrics.replace(samples);
    }

    /// Appends the machine's and every instance's point to the history.
    fn record(&mut self, handles: &[Handle], samples: &HashMap<ProcId, Sample>) {
        let now = system::cpu_times();
        let cpu = match (now, self.cpu_times) {
            (Some(now), Some(before)) => now.usage_since(&before),
            _ => 0.0,
        };
        self.cpu_times = now;
        self.shared.metrics.set_system_cpu(cpu);
        let free = system::memory().map_or(0, |(_, free)| free);
        let points = handles.iter().map(|h| {
            let point = samples.get(&h.inst.id).map_or(Point::default(), |s| Point {
                cpu: s.cpu,
                mem_kib: kib(s.memory),
            });
            (h.inst.id, point)
        });
        self.shared.metrics.history().record(
            crate::time::now_ms(),
            SystemPoint {
                cpu,
                free_kib: kib(free),
            },
            points,
        );
    }

    /// Measures every running instance's tree.
    async fn measure(&mut self, handles: &[Handle]) -> HashMap<ProcId, Sample> {
        let running: Vec<_> = handles
            .iter()
            .filter_map(|h| {
                let v = h.view.borrow();
                Some((h, v.pid?, v.spec.max_memory_restart.map(|b| b.0)))
            })
            .collect();
        if running.is_empty() && self.prev_ticks.is_empty() {
            return HashMap::new();
        }
        let mut mains_sorted: Vec<u32> = running.iter().map(|r| r.1).collect();
        mains_sorted.sort_unstable();
        self.ticks += 1;
        if mains_sorted != self.last_mains || self.ticks.is_multiple_of(FULL_SCAN_EVERY) {
            self.outsiders.clear();
            self.last_mains = mains_sorted;
        }
        let snapshot = self.scan().await;
        let elapsed = self.last.elapsed().as_secs_f64().max(1e-3);
        self.last = Instant::now();
        let tree = Tree::new(&snapshot);
        let mains: HashSet<u32> = running.iter().map(|r| r.1).collect();
        let orphans = self.attribute_orphans(&tree, &mains);

        let mut samples = HashMap::with_capacity(running.len());
        let mut next_ticks = HashMap::with_capacity(self.prev_ticks.len());
        for (handle, pid, limit) in running {
            let id = handle.inst.id;
            let mut members: Vec<&ProcStat> = tree.get(pid).into_iter().collect();
            members.extend(tree.descendants(pid));
            for orphan in orphans.iter().filter(|(_, owner)| *owner == id) {
                members.push(orphan.0);
                members.extend(tree.descendants(orphan.0.pid));
            }
            let mut sample = Sample::default();
            let mut delta_ticks = 0u64;
            for p in members.iter().filter(|p| !p.is_zombie()) {
                let key = (p.pid, p.start_time);
                delta_ticks += self
                    .prev_ticks
                    .get(&key)
                    .map_or(0, |prev| p.cpu_ticks.saturating_sub(*prev));
                next_ticks.insert(key, p.cpu_ticks);
                sample.memory += p.rss_pages * self.page_size;
                sample.tree.push(key);
            }
            sample.cpu = (delta_ticks as f64 / self.ticks_per_sec / elapsed * 100.0) as f32;
            if let Some(limit) = limit
                && sample.memory > limit
            {
                handle.memory_exceeded(pid, sample.memory, limit);
            }
            samples.insert(id, sample);
        }
        let members: HashSet<u32> = next_ticks.keys().map(|k| k.0).collect();
        self.reader.keep_open(&members);
        self.outsiders.extend(
            snapshot
                .iter()
                .filter(|p| {
                    !members.contains(&p.pid) && !p.is_zombie() && p.ppid != std::process::id()
                })
                .map(|p| p.pid),
        );
        self.prev_ticks = next_ticks;
        self.members = members;
        let me = std::process::id();
        let zombies = tree
            .children(me)
            .iter()
            .filter(|p| p.is_zombie() && !mains.contains(&p.pid))
            .map(|p| p.pid);
        self.shared.table.reap_orphans(zombies);
        samples
    }

    /// Reads every process not known to be outside all app trees, in the blocking pool so that
    /// the daemon's thread is never held up by `/proc`.
    async fn scan(&mut self) -> Vec<ProcStat> {
        let mut reader = std::mem::take(&mut self.reader);
        let mut outsiders = std::mem::take(&mut self.outsiders);
        let members = std::mem::take(&mut self.members);
        let job = tokio::task::spawn_blocking(move || {
            let pids = procfs::pids();
            let alive: HashSet<u32> = pids.iter().copied().collect();
            outsiders.retain(|pid| alive.contains(pid));
            let snapshot = pids
                .into_iter()
                .filter(|pid| !outsiders.contains(pid))
                .filter_map(|pid| {
                    if members.contains(&pid) {
                        reader.read_kept(pid)
                    } else {
                        reader.read(pid)
                    }
                })
                .collect();
            (reader, outsiders, members, snapshot)
        });
        match job.await {
            Ok((reader, outsiders, members, snapshot)) => {
                self.reader = reader;
                self.outsiders = outsiders;
                self.members = members;
                snapshot
            }
            Err(e) => {
                tracing::error!(error = %e, "process scan failed");
                Vec::new()
            }
        }
    }

    /// Children of the daemon that are not main processes: orphans adopted as subreaper, owned
    /// by the instance whose marker their environment carries.
    fn attribute_orphans<'a>(
        &mut self,
        tree: &Tree<'a>,
        mains: &HashSet<u32>,
    ) -> Vec<(&'a ProcStat, ProcId)> {
        let me = std::process::id();
        let home = format!("BM2_HOME={}", self.shared.home.root().display());
        let mut seen = HashMap::new();
        let mut out = Vec::new();
        for p in tree.children(me) {
            if mains.contains(&p.pid) || p.is_zombie() {
                continue;
            }
            let key = (p.pid, p.start_time);
            let owner = match self.orphan_owner.get(&key) {
                Some(owner) => *owner,
                None => procfs::marked_instance(p.pid, &home),
            };
            seen.insert(key, owner);
            if let Some(id) = owner {
                out.push((*p, id));
            }
        }
        self.orphan_owner = seen;
        out
    }
}
