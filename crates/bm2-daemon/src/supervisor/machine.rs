//! The restart policy: what to do when a process exits. Pure logic, no IO.

use std::time::Duration;

use bm2_types::{AppSpec, ExitInfo};

/// Growth factor of PM2's exponential backoff between unstable restarts.
const BACKOFF_FACTOR: f64 = 1.5;
/// Ceiling of the exponential backoff.
const BACKOFF_MAX: Duration = Duration::from_secs(15);
/// A process that ran this long resets the exponential backoff.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(30);

/// The options of an app that decide whether and when it is restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restart at all.
    pub autorestart: bool,
    /// Consecutive unstable restarts allowed before giving up.
    pub max_restarts: u32,
    /// Minimum run time for an exit to count as stable.
    pub min_uptime: Duration,
    /// Fixed delay before a restart.
    pub restart_delay: Duration,
    /// Initial delay of exponential backoff, when enabled (overrides `restart_delay`).
    pub exp_backoff: Option<Duration>,
    /// Exit codes that mean "do not restart".
    pub stop_exit_codes: Vec<i32>,
}

impl From<&AppSpec> for RestartPolicy {
    fn from(spec: &AppSpec) -> Self {
        RestartPolicy {
            autorestart: spec.autorestart,
            max_restarts: spec.max_restarts,
            min_uptime: Duration::from_millis(spec.min_uptime),
            restart_delay: Duration::from_millis(spec.restart_delay),
            exp_backoff: spec
                .exp_backoff_restart_delay
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis),
            stop_exit_codes: spec.stop_exit_codes.clone(),
        }
    }
}

/// Restart bookkeeping of one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Restarts since start or reset (PM2's `restart_time`): a restart of a running process, or
    /// an automatic one when it runs.
    pub restarts: u32,
    /// Consecutive unstable restarts.
    pub unstable_restarts: u32,
    /// Delay used by the last backoff restart.
    pub last_backoff: Option<Duration>,
}

/// What to do after an exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start the process again after this delay.
    Restart {
        /// How long to wait first.
        delay: Duration,
    },
    /// Leave it stopped; not a failure.
    Stop {
        /// Why, for `describe`.
        reason: String,
    },
    /// Give up and mark it errored.
    Error {
        /// Why, for `describe`.
        reason: String,
    },
}

/// Decides what follows an exit, updating the counters.
pub fn on_exit(policy: &RestartPolicy, counters: &mut Counters, exit: &ExitInfo) -> Decision {
    if let Some(code) = exit.code
        && policy.stop_exit_codes.contains(&code)
    {
        return Decision::Stop {
            reason: format!("{exit}, which is a stop exit code"),
        };
    }
    if !policy.autorestart {
        return Decision::Stop {
            reason: format!("{exit}; autorestart is off"),
        };
    }
    let uptime = Duration::from_millis(exit.uptime_ms);
    if uptime < policy.min_uptime {
        counters.unstable_restarts += 1;
        // As PM2 (`unstable_restarts >= max_restarts`): with the default 16, the app is started
        // 16 times in all.
        if counters.unstable_restarts >= policy.max_restarts {
            return Decision::Error {
                reason: format!(
                    "{exit} within min_uptime ({} ms) {} times in a row (max_restarts {})",
                    policy.min_uptime.as_millis(),
                    counters.unstable_restarts,
                    policy.max_restarts
                ),
            };
        }
    } else {
        counters.unstable_restarts = 0;
    }
    let delay = match policy.exp_backoff {
        Some(base) => {
            let next = match counters.last_backoff {
                Some(prev) if uptime < BACKOFF_RESET_AFTER => {
                    prev.mul_f64(BACKOFF_FACTOR).min(BACKOFF_MAX)
                }
                _ => base,
            };
            counters.last_backoff = Some(next);
            next
        }
        None => policy.restart_delay,
    };
    // `restarts` counts when the restart runs (PM2's restart_time), not here.
    Decision::Restart { delay }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        RestartPolicy::from(&AppSpec::default())
    }

    fn exit(code: i32, uptime_ms: u64) -> ExitInfo {
        ExitInfo {
            code: Some(code),
            signal: None,
            at_ms: 0,
            uptime_ms,
        }
    }

    #[test]
    fn crash_restarts_immediately_by_default() {
        let mut c = Counters::default();
        let d = on_exit(&policy(), &mut c, &exit(1, 5000));
        assert_eq!(
            d,
            Decision::Restart {
                delay: Duration::ZERO
            }
        );
        assert_eq!(c.restarts, 0, "counted when the restart runs");
        assert_eq!(c.unstable_restarts, 0);
    }

    #[test]
    fn unstable_restarts_past_max_give_up() {
        let p = RestartPolicy {
            max_restarts: 3,
            ..policy()
        };
        let mut c = Counters::default();
        // Three starts in all, as PM2: two restarts, then the third quick exit gives up.
        for _ in 0..2 {
            assert!(matches!(
                on_exit(&p, &mut c, &exit(1, 10)),
                Decision::Restart { .. }
            ));
        }
        match on_exit(&p, &mut c, &exit(1, 10)) {
            Decision::Error { reason } => {
                assert!(
                    reason.contains("exited with code 1 within min_uptime"),
                    "{reason}"
                );
                assert!(reason.contains("3 times"), "{reason}");
            }
            other => panic!("expected error, got {other:?}"),
        }
    }

    #[test]
    fn the_default_crash_loop_starts_sixteen_times() {
        let p = policy();
        let mut c = Counters::default();
        let mut starts = 1;
        while let Decision::Restart { .. } = on_exit(&p, &mut c, &exit(1, 10)) {
            starts += 1;
        }
        assert_eq!(starts, 16, "PM2 starts a crash-looping app 16 times");
    }

    #[test]
    fn stable_run_resets_unstable_count() {
        let p = RestartPolicy {
            max_restarts: 2,
            ..policy()
        };
        let mut c = Counters::default();
        assert!(matches!(
            on_exit(&p, &mut c, &exit(1, 10)),
            Decision::Restart { .. }
        ));
        assert!(matches!(
            on_exit(&p, &mut c, &exit(1, 2000)),
            Decision::Restart { .. }
        ));
        assert_eq!(c.unstable_restarts, 0);
        assert!(matches!(
            on_exit(&p, &mut c, &exit(1, 10)),
            Decision::Restart { .. }
        ));
    }

    #[test]
    fn stop_exit_codes_and_autorestart_off_stop() {
        let p = RestartPolicy {
            stop_exit_codes: vec![0, 3],
            ..policy()
        };
        let mut c = Counters::default();
        assert!(matches!(
            on_exit(&p, &mut c, &exit(3, 10)),
            Decision::Stop { .. }
        ));
        assert!(matches!(
            on_exit(&p, &mut c, &exit(2, 10)),
            Decision::Restart { .. }
        ));
        let p = RestartPolicy {
            autorestart: false,
            ..policy()
        };
        assert!(matches!(
            on_exit(&p, &mut c, &exit(0, 10)),
            Decision::Stop { .. }
        ));
    }

    #[test]
    fn fixed_restart_delay_is_used() {
        let p = RestartPolicy {
            restart_delay: Duration::from_millis(250),
            ..policy()
        };
        let mut c = Counters::default();
        assert_eq!(
            on_exit(&p, &mut c, &exit(1, 5000)),
            Decision::Restart {
                delay: Duration::from_millis(250)
            }
        );
    }

    #[test]
    fn exponential_backoff_grows_caps_and_resets() {
        let p = RestartPolicy {
            exp_backoff: Some(Duration::from_millis(100)),
            max_restarts: 1000,
            ..policy()
        };
        let mut c = Counters::default();
        let mut delays = Vec::new();
        for _ in 0..12 {
            if let Decision::Restart { delay } = on_exit(&p, &mut c, &exit(1, 10)) {
                delays.push(delay.as_millis());
            }
        }
        assert_eq!(&delays[..4], &[100, 150, 225, 337]);
        assert!(delays.windows(2).all(|w| w[1] >= w[0]));
        for _ in 0..20 {
            on_exit(&p, &mut c, &exit(1, 10));
        }
        assert_eq!(c.last_backoff, Some(BACKOFF_MAX));
        let d = on_exit(&p, &mut c, &exit(1, 31_000));
        assert_eq!(
            d,
            Decision::Restart {
                delay: Duration::from_millis(100)
            }
        );
    }
}
