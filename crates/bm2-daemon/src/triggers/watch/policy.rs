//! When a watched app restarts: the debounce of changes, and the restart-loop guard. Pure logic
//! on instants given by the caller, so it is tested without clocks or files.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

/// Coalesces a burst of changes into one restart: the restart is due once no change has been
/// seen for `delay`, or `MAX_WAIT_FACTOR` delays after the first change of the burst, whichever
/// comes first (so a file written without pause cannot postpone a restart forever).
#[derive(Debug, Clone)]
pub struct Debounce {
    delay: Duration,
    first: Option<Instant>,
    last: Option<Instant>,
    paths: BTreeSet<String>,
    latest: Option<String>,
}

/// Distinct paths remembered per burst (beyond, they are counted as one more).
const MAX_PATHS: usize = 1000;

/// A burst of changes lasts at most this many delays (and at least [`MIN_MAX_WAIT`]).
pub const MAX_WAIT_FACTOR: u32 = 10;
/// Shortest limit on a burst.
pub const MIN_MAX_WAIT: Duration = Duration::from_secs(2);

impl Debounce {
    /// A debounce of `delay`.
    pub fn new(delay: Duration) -> Debounce {
        Debounce {
            delay,
            first: None,
            last: None,
            paths: BTreeSet::new(),
            latest: None,
        }
    }

    /// Notes a change of `what` at `now`.
    pub fn record(&mut self, now: Instant, what: String) {
        self.first.get_or_insert(now);
        self.last = Some(now);
        if self.paths.len() < MAX_PATHS {
            self.paths.insert(what.clone());
        }
        self.latest = Some(what);
    }

    /// When the pending changes are due to restart the app, if any are pending.
    pub fn due(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        let cap = self.delay.saturating_mul(MAX_WAIT_FACTOR).max(MIN_MAX_WAIT);
        Some((last + self.delay).min(first + cap))
    }

    /// Takes the pending changes: the latest path changed and how many distinct paths changed.
    pub fn take(&mut self) -> Option<(String, usize)> {
        self.first = None;
        self.last = None;
        let count = std::mem::take(&mut self.paths).len();
        self.latest.take().map(|w| (w, count))
    }

    /// Forgets pending changes (those seen while the app was restarting).
    pub fn clear(&mut self) {
        self.take();
    }
}

/// Stops watching an app caught in a restart loop: after a restart on change, the app is on
/// probation for `window`; if during it the app exits by itself (it crashes on the change) or
/// its watched files change again (it writes into what it watches), the restart was unstable.
/// `limit` unstable restarts in a row trip the guard; a restart that stays quiet through its
/// probation resets the count.
#[derive(Debug, Clone)]
pub struct LoopGuard {
    limit: u32,
    window: Duration,
    unstable: u32,
    probation: Option<Probation>,
}

#[derive(Debug, Clone, Copy)]
struct Probation {
    until: Instant,
    exits: u64,
}

/// The guard's judgement of the latest restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to judge, or still on probation.
    Pending,
    /// The restart held: the count of unstable restarts is back to 0.
    Stable,
    /// The restart was unstable; this many in a row.
    Unstable(u32),
    /// This many unstable restarts in a row: stop watching.
    Tripped(u32),
}

impl LoopGuard {
    /// A guard tripping after `limit` unstable restarts, each judged over `window`.
    pub fn new(limit: u32, window: Duration) -> LoopGuard {
        LoopGuard {
            limit: limit.max(1),
            window,
            unstable: 0,
            probation: None,
        }
    }

    /// A restart on change happened at `now`; `exits` is the instance's count of exits by itself.
    pub fn restarted(&mut self, now: Instant, exits: u64) {
        self.probation = Some(Probation {
            until: now + self.window,
            exits,
        });
    }

    /// When the current probation ends, if one runs.
    pub fn probation_end(&self) -> Option<Instant> {
        self.probation.map(|p| p.until)
    }

    /// Judges the latest restart at `now`, given the instance's count of exits by itself and
    /// whether a watched file just changed.
    pub fn judge(&mut self, now: Instant, exits: u64, changed: bool) -> Verdict {
        let Some(p) = self.probation else {
            return Verdict::Pending;
        };
        if exits > p.exits || (changed && now < p.until) {
            self.probation = None;
            self.unstable += 1;
            if self.unstable >= self.limit {
                let n = self.unstable;
                self.unstable = 0;
                return Verdict::Tripped(n);
            }
            return Verdict::Unstable(self.unstable);
        }
        if now >= p.until {
            self.probation = None;
            self.unstable = 0;
            return Verdict::Stable;
        }
        Verdict::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_burst_restarts_once_after_it_quiets_down() {
        let t0 = Instant::now();
        let mut d = Debounce::new(ms(500));
        assert_eq!(d.due(), None);
        d.record(t0, "a.js".into());
        assert_eq!(d.due(), Some(t0 + ms(500)));
        d.record(t0 + ms(300), "b.js".into());
        d.record(t0 + ms(400), "b.js".into());
        assert_eq!(d.due(), Some(t0 + ms(900)));
        assert_eq!(d.take(), Some(("b.js".into(), 2)));
        assert_eq!(d.due(), None);
        assert_eq!(d.take(), None);
    }

    #[test]
    fn a_file_written_without_pause_cannot_postpone_forever() {
        let t0 = Instant::now();
        let mut d = Debounce::new(ms(500));
        for i in 0..100 {
            d.record(t0 + ms(i * 100), "busy.db".into());
        }
        assert_eq!(d.due(), Some(t0 + ms(5000)));
        let mut short = Debounce::new(ms(10));
        short.record(t0, "x".into());
        short.record(t0 + ms(1990), "x".into());
        assert_eq!(short.due(), Some(t0 + MIN_MAX_WAIT));
    }

    #[test]
    fn crashing_on_every_change_trips_the_guard() {
        let t0 = Instant::now();
        let mut g = LoopGuard::new(3, ms(1000));
        assert_eq!(g.judge(t0, 0, true), Verdict::Pending);
        g.restarted(t0, 0);
        assert_eq!(g.judge(t0 + ms(100), 0, false), Verdict::Pending);
        assert_eq!(g.judge(t0 + ms(200), 1, false), Verdict::Unstable(1));
        g.restarted(t0 + ms(5000), 1);
        assert_eq!(g.judge(t0 + ms(5100), 2, false), Verdict::Unstable(2));
        g.restarted(t0 + ms(9000), 2);
        assert_eq!(g.judge(t0 + ms(9100), 3, false), Verdict::Tripped(3));
        assert_eq!(g.probation_end(), None);
    }

    #[test]
    fn writing_into_the_watched_tree_trips_the_guard() {
        let t0 = Instant::now();
        let mut g = LoopGuard::new(2, ms(1000));
        g.restarted(t0, 0);
        assert_eq!(g.judge(t0 + ms(50), 0, true), Verdict::Unstable(1));
        g.restarted(t0 + ms(600), 0);
        assert_eq!(g.judge(t0 + ms(650), 0, true), Verdict::Tripped(2));
    }

    #[test]
    fn a_quiet_probation_resets_the_count() {
        let t0 = Instant::now();
        let mut g = LoopGuard::new(2, ms(1000));
        g.restarted(t0, 0);
        assert_eq!(g.judge(t0 + ms(10), 1, false), Verdict::Unstable(1));
        g.restarted(t0 + ms(100), 1);
        assert_eq!(g.probation_end(), Some(t0 + ms(1100)));
        assert_eq!(g.judge(t0 + ms(1100), 1, false), Verdict::Stable);
        // A change after the probation is an ordinary change.
        assert_eq!(g.judge(t0 + ms(3000), 1, true), Verdict::Pending);
        g.restarted(t0 + ms(4000), 1);
        assert_eq!(g.judge(t0 + ms(4010), 2, false), Verdict::Unstable(1));
    }
}
