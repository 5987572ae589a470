//! The metrics history: per sample, one point per instance and one for the machine, kept for
//! the last [`HISTORY_POINTS`] samples. An instance's points are run-length encoded in 8-byte
//! runs (CPU to 0.1 %, memory in KiB): a busy process costs 8 bytes a sample, an idle one a
//! single run however long it stays idle.
//!
//! Every instance gets a point at every sample (zero while not running), so an instance's points
//! are contiguous and line up with the shared timeline from the sample it first appeared in. An
//! instance that is no longer registered loses its series at the next sample.

use std::collections::{HashMap, VecDeque};

use bm2_types::{HISTORY_POINTS, ProcId};
use serde::{Deserialize, Serialize};

/// One sample of an instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// CPU percent of one core.
    pub cpu: f32,
    /// Resident memory, in KiB (up to 4 TiB).
    pub mem_kib: u32,
}

/// One sample of the machine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemPoint {
    /// CPU busy percent of all CPUs.
    pub cpu: f32,
    /// Available memory, in KiB.
    pub free_kib: u32,
}

/// Kibibytes of `bytes`, saturating at `u32::MAX`.
pub fn kib(bytes: u64) -> u32 {
    u32::try_from(bytes / 1024).unwrap_or(u32::MAX)
}

/// A ring of at most `cap` values that allocates as it fills, to exactly `cap`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ring<T> {
    buf: Vec<T>,
    /// Index of the oldest value once the ring is full.
    head: usize,
    cap: usize,
}

impl<T: Copy> Ring<T> {
    /// An empty ring of capacity `cap` (at least 1).
    pub fn new(cap: usize) -> Self {
        Ring {
            buf: Vec::new(),
            head: 0,
            cap: cap.max(1),
        }
    }

    /// Appends a value, dropping the oldest when full.
    pub fn push(&mut self, v: T) {
        if self.buf.len() < self.cap {
            if self.buf.len() == self.buf.capacity() {
                let grow = self.buf.len().max(16).min(self.cap - self.buf.len());
                self.buf.reserve_exact(grow);
            }
            self.buf.push(v);
        } else {
            self.buf[self.head] = v;
            self.head = (self.head + 1) % self.cap;
        }
    }

    /// Number of values held.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The last `n` values (or all, when fewer), oldest first.
    pub fn last(&self, n: usize) -> impl Iterator<Item = T> + '_ {
        let len = self.buf.len();
        let n = n.min(len);
        (len - n..len).map(move |i| self.buf[(self.head + i) % len])
    }

    /// Bytes allocated for values.
    pub fn allocated_bytes(&self) -> usize {
        self.buf.capacity() * std::mem::size_of::<T>()
    }
}

/// Equal consecutive points of an instance (serialised as one number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "u64", from = "u64")]
struct Run {
    /// CPU in tenths of a percent.
    cpu_tenths: u16,
    /// How many samples in a row had this point.
    count: u16,
    /// Resident memory, in KiB.
    mem_kib: u32,
}

impl From<Run> for u64 {
    fn from(r: Run) -> u64 {
        (u64::from(r.cpu_tenths) << 48) | (u64::from(r.count) << 32) | u64::from(r.mem_kib)
    }
}

impl From<u64> for Run {
    #[allow(clippy::cast_possible_truncation)]
    fn from(v: u64) -> Run {
        Run {
            cpu_tenths: (v >> 48) as u16,
            count: (v >> 32) as u16,
            mem_kib: v as u32,
        }
    }
}

impl Run {
    fn point(self) -> Point {
        Point {
            cpu: f32::from(self.cpu_tenths) / 10.0,
            mem_kib: self.mem_kib,
        }
    }
}

/// The last `cap` points of an instance, run-length encoded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Runs {
    queue: VecDeque<Run>,
    len: usize,
    cap: usize,
}

impl Runs {
    /// No points yet; at most `cap` (at least 1) kept.
    pub fn new(cap: usize) -> Self {
        Runs {
            queue: VecDeque::new(),
            len: 0,
            cap: cap.max(1),
        }
    }

    /// Appends a point (its CPU rounded to 0.1 %), dropping the oldest when full.
    pub fn push(&mut self, p: Point) {
        let cpu_tenths = (p.cpu * 10.0).round().clamp(0.0, f32::from(u16::MAX)) as u16;
        match self.queue.back_mut() {
            Some(r)
                if r.cpu_tenths == cpu_tenths && r.mem_kib == p.mem_kib && r.count < u16::MAX =>
            {
                r.count += 1;
            }
            _ => {
                if self.queue.len() == self.queue.capacity() {
                    let grow = self
                        .queue
                        .len()
                        .max(16)
                        .min(self.cap.saturating_sub(self.queue.len()).max(1));
                    self.queue.reserve_exact(grow);
                }
                self.queue.push_back(Run {
                    cpu_tenths,
                    count: 1,
                    mem_kib: p.mem_kib,
                });
            }
        }
        self.len += 1;
        if self.len > self.cap {
            if let Some(front) = self.queue.front_mut() {
                front.count -= 1;
                if front.count == 0 {
                    self.queue.pop_front();
                }
            }
            self.len -= 1;
        }
    }

    /// Number of points held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The last `n` points (or all, when fewer), oldest first.
    pub fn last(&self, n: usize) -> Vec<Point> {
        let mut left = n.min(self.len);
        let mut out = Vec::with_capacity(left);
        for r in self.queue.iter().rev() {
            if left == 0 {
                break;
            }
            let take = usize::from(r.count).min(left);
            out.extend(std::iter::repeat_n(r.point(), take));
            left -= take;
        }
        out.reverse();
        out
    }

    /// Bytes allocated for runs.
    pub fn allocated_bytes(&self) -> usize {
        self.queue.capacity() * std::mem::size_of::<Run>()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Series {
    /// Sample number of the first point ever pushed.
    first: u64,
    /// Sample number of the last point pushed.
    last: u64,
    points: Runs,
}

/// The values of the last samples, oldest first, as returned by [`History::window`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    /// Sample times, in milliseconds since the epoch.
    pub times: Vec<u64>,
    /// The machine's points, one per time.
    pub system: Vec<SystemPoint>,
    /// Per instance, one point per time; `None` before the instance appeared.
    pub series: Vec<(ProcId, Vec<Option<Point>>)>,
}

/// The history of every instance and of the machine (carried over by `bm2 update`).
#[derive(Debug, Serialize, Deserialize)]
pub struct History {
    cap: usize,
    /// Samples recorded so far.
    samples: u64,
    times: Ring<u64>,
    system: Ring<SystemPoint>,
    series: HashMap<ProcId, Series>,
}

impl Default for History {
    fn default() -> Self {
        History::new(HISTORY_POINTS)
    }
}

impl History {
    /// A history keeping `cap` samples.
    pub fn new(cap: usize) -> Self {
        History {
            cap,
            samples: 0,
            times: Ring::new(cap),
            system: Ring::new(cap),
            series: HashMap::new(),
        }
    }

    /// Records one sample taken at `at_ms`: the machine and every registered instance. Instances
    /// missing from `points` are forgotten.
    pub fn record(
        &mut self,
        at_ms: u64,
        system: SystemPoint,
        points: impl IntoIterator<Item = (ProcId, Point)>,
    ) {
        let n = self.samples;
        let cap = self.cap;
        self.times.push(at_ms);
        self.system.push(system);
        for (id, p) in points {
            let s = self.series.entry(id).or_insert_with(|| Series {
                first: n,
                last: n,
                points: Runs::new(cap),
            });
            s.last = n;
            s.points.push(p);
        }
        self.series.retain(|_, s| s.last == n);
        self.samples += 1;
    }

    /// The samples taken at or after `since_ms`, for every instance or only `only`.
    pub fn window(&self, since_ms: u64, only: Option<ProcId>) -> Window {
        let available = self.times.len();
        let n = self
            .times
            .last(available)
            .filter(|t| *t >= since_ms)
            .count();
        let first = self.samples - n as u64;
        let mut ids: Vec<ProcId> = self
            .series
            .keys()
            .copied()
            .filter(|id| only.is_none_or(|o| o == *id))
            .collect();
        ids.sort_unstable();
        let series = ids
            .into_iter()
            .map(|id| {
                let s = &self.series[&id];
                let start = s.first.max(self.samples - s.points.len() as u64);
                let missing = start.saturating_sub(first).min(n as u64) as usize;
                let mut values = vec![None; missing];
                values.extend(s.points.last(n - missing).into_iter().map(Some));
                (id, values)
            })
            .collect();
        Window {
            times: self.times.last(n).collect(),
            system: self.system.last(n).collect(),
            series,
        }
    }

    /// The last `n` points of one instance, oldest first.
    pub fn recent(&self, id: ProcId, n: usize) -> Vec<Point> {
        self.series
            .get(&id)
            .map(|s| s.points.last(n))
            .unwrap_or_default()
    }

    /// Bytes allocated for points and times.
    pub fn allocated_bytes(&self) -> usize {
        self.times.allocated_bytes()
            + self.system.allocated_bytes()
            + self
                .series
                .values()
                .map(|s| s.points.allocated_bytes() + std::mem::size_of::<(ProcId, Series)>())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(cpu: f32) -> Point {
        Point { cpu, mem_kib: 1 }
    }

    #[test]
    fn the_history_survives_serialisation_whole() {
        let mut h = History::new(5);
        for i in 0..8u64 {
            let sys = SystemPoint {
                cpu: 1.5,
                free_kib: 7,
            };
            h.record(
                1000 + i,
                sys,
                [
                    (0, p(i as f32)),
                    (
                        3,
                        Point {
                            cpu: 12.3,
                            mem_kib: 70_000,
                        },
                    ),
                ],
            );
        }
        let json = serde_json::to_vec(&h).unwrap();
        let back: History = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.window(0, None), h.window(0, None));
        assert_eq!(back.window(0, None).times.len(), 5);
    }

    #[test]
    fn ring_keeps_the_last_values_in_order() {
        let mut r = Ring::new(3);
        assert!(r.is_empty());
        for v in 1..=5 {
            r.push(v);
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.last(10).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(r.last(2).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(r.last(0).count(), 0);
    }

    #[test]
    fn ring_allocates_exactly_its_capacity() {
        let mut r = Ring::new(HISTORY_POINTS);
        for i in 0..10 * HISTORY_POINTS {
            r.push(Point {
                cpu: i as f32,
                mem_kib: 0,
            });
        }
        assert_eq!(r.allocated_bytes(), HISTORY_POINTS * 8);
        assert_eq!(std::mem::size_of::<Point>(), 8);
    }

    #[test]
    fn window_aligns_late_instances_and_drops_deleted_ones() {
        let mut h = History::new(4);
        h.record(1000, SystemPoint::default(), [(0, p(1.0))]);
        h.record(2000, SystemPoint::default(), [(0, p(2.0)), (1, p(10.0))]);
        h.record(3000, SystemPoint::default(), [(0, p(3.0)), (1, p(11.0))]);
        let w = h.window(0, None);
        assert_eq!(w.times, [1000, 2000, 3000]);
        assert_eq!(w.series.len(), 2);
        assert_eq!(w.series[0].1, [Some(p(1.0)), Some(p(2.0)), Some(p(3.0))]);
        assert_eq!(w.series[1].1, [None, Some(p(10.0)), Some(p(11.0))]);

        // Only the last two samples, and only instance 1.
        let w = h.window(2000, Some(1));
        assert_eq!(w.times, [2000, 3000]);
        assert_eq!(w.series, [(1, vec![Some(p(10.0)), Some(p(11.0))])]);

        // Instance 0 is deleted; the ring wraps past its capacity of 4.
        h.record(4000, SystemPoint::default(), [(1, p(12.0))]);
        h.record(5000, SystemPoint::default(), [(1, p(13.0)), (2, p(20.0))]);
        let w = h.window(0, None);
        assert_eq!(w.times, [2000, 3000, 4000, 5000]);
        assert_eq!(w.series.len(), 2);
        assert_eq!(w.series[0].0, 1);
        assert_eq!(
            w.series[0].1,
            [Some(p(10.0)), Some(p(11.0)), Some(p(12.0)), Some(p(13.0))]
        );
        assert_eq!(w.series[1], (2, vec![None, None, None, Some(p(20.0))]));
        assert_eq!(h.recent(1, 2), [p(12.0), p(13.0)]);
        assert!(h.recent(0, 2).is_empty());
    }

    #[test]
    fn window_of_an_empty_history_is_empty() {
        let h = History::default();
        assert_eq!(h.window(0, None), Window::default());
    }

    #[test]
    fn runs_keep_the_last_points_in_order() {
        let mut r = Runs::new(5);
        assert!(r.is_empty());
        for cpu in [1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 1.0] {
            r.push(p(cpu));
        }
        assert_eq!(r.len(), 5);
        assert_eq!(r.last(10), [p(2.0), p(2.0), p(2.0), p(3.0), p(1.0)]);
        assert_eq!(r.last(2), [p(3.0), p(1.0)]);
        assert!(r.last(0).is_empty());
        // CPU is kept to 0.1 %.
        r.push(Point {
            cpu: 12.34,
            mem_kib: 1,
        });
        assert_eq!(r.last(1), [p(12.3)]);
        assert_eq!(std::mem::size_of::<Run>(), 8);
    }

    #[test]
    fn an_idle_instance_costs_one_run_for_the_hour() {
        let mut r = Runs::new(HISTORY_POINTS);
        for _ in 0..10 * HISTORY_POINTS {
            r.push(p(0.0));
        }
        assert_eq!(r.len(), HISTORY_POINTS);
        assert_eq!(r.queue.len(), 1);
        assert!(r.allocated_bytes() <= 16 * 8, "{}", r.allocated_bytes());
        assert_eq!(r.last(3), [p(0.0); 3]);
    }

    #[test]
    fn hundred_apps_for_an_hour_fit_in_a_few_megabytes() {
        // Busy apps: every point differs from the one before (the worst case for the runs).
        let mut h = History::default();
        for t in 0..HISTORY_POINTS as u64 + 10 {
            h.record(
                t * 1000,
                SystemPoint::default(),
                (0..100).map(|id| (id, p((t % 7) as f32 + 0.5))),
            );
        }
        let bytes = h.allocated_bytes();
        eprintln!("history of 100 instances over {HISTORY_POINTS} samples: {bytes} bytes");
        // 100 × 3600 × 8 B of points, plus the shared timeline.
        assert!(bytes < 3 * 1024 * 1024, "{bytes} bytes");
        assert_eq!(h.window(0, Some(7)).series[0].1.len(), HISTORY_POINTS);
    }
}
