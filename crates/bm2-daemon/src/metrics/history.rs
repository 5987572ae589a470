//! The metrics history: per sample, one 8-byte point per instance and one for the machine, in
//! rings of [`HISTORY_POINTS`] that fill (and allocate) as samples come.
//!
//! Every instance gets a point at every sample (zero while not running), so an instance's points
//! are contiguous and line up with the shared timeline from the sample it first appeared in. An
//! instance that is no longer registered loses its series at the next sample.

use std::collections::HashMap;

use bm2_types::{HISTORY_POINTS, ProcId};

/// One sample of an instance.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Point {
    /// CPU percent of one core.
    pub cpu: f32,
    /// Resident memory, in KiB (up to 4 TiB).
    pub mem_kib: u32,
}

/// One sample of the machine.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
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
#[derive(Debug, Clone)]
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

#[derive(Debug)]
struct Series {
    /// Sample number of the first point ever pushed.
    first: u64,
    /// Sample number of the last point pushed.
    last: u64,
    points: Ring<Point>,
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

/// The history of every instance and of the machine.
#[derive(Debug)]
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
                points: Ring::new(cap),
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
                values.extend(s.points.last(n - missing).map(Some));
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
            .map(|s| s.points.last(n).collect())
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
    fn hundred_apps_for_an_hour_fit_in_a_few_megabytes() {
        let mut h = History::default();
        for t in 0..HISTORY_POINTS as u64 + 10 {
            h.record(
                t * 1000,
                SystemPoint::default(),
                (0..100).map(|id| (id, p(0.5))),
            );
        }
        let bytes = h.allocated_bytes();
        eprintln!("history of 100 instances over {HISTORY_POINTS} samples: {bytes} bytes");
        // 100 × 3600 × 8 B of points, plus the shared timeline.
        assert!(bytes < 3 * 1024 * 1024, "{bytes} bytes");
        assert_eq!(h.window(0, Some(7)).series[0].1.len(), HISTORY_POINTS);
    }
}
