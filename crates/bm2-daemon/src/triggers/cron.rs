//! Cron restarts: `cron_restart` (5 fields, or 6 with seconds first, with croner's extensions:
//! `L`, `W`, `#`, `?`, names of days and months, `@daily`...) read in the app's time zone (its
//! `TZ` variable) or the daemon's local one. An instance stopped on request is not started by
//! its schedule (the actor ignores the request); one that exited by itself is.

use std::time::Duration;

use bm2_config::triggers::Schedule;
use bm2_types::{CronInfo, RestartReason};
use jiff::Timestamp;

use super::{Context, Outcome};

/// Longest single sleep: the wall clock is checked again at least this often, so a clock that
/// jumps (suspend, NTP) delays a run by at most this much.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// A parsed schedule and its time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct CronConfig {
    /// The schedule, as parsed by bm2-config.
    pub schedule: Schedule,
}

impl CronConfig {
    /// Parses `expression`, read in the time zone `tz` (an IANA name, a POSIX `TZ` string or a
    /// tzfile path; `None` for the daemon's local zone). Errors name the option.
    pub fn new(expression: &str, tz: Option<&str>) -> Result<CronConfig, String> {
        Schedule::parse(expression, tz).map(|schedule| CronConfig { schedule })
    }

    /// The expression, as given.
    pub fn expression(&self) -> &str {
        &self.schedule.expression
    }

    /// The first run strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        self.schedule.next_after(after)
    }

    fn info(&self, next: Option<Timestamp>, last: Option<Timestamp>) -> CronInfo {
        CronInfo {
            expression: self.schedule.expression.clone(),
            time_zone: self.schedule.zone_name.clone(),
            next_run_ms: next.map(ms),
            last_run_ms: last.map(ms),
            error: None,
        }
    }
}

/// The state shown for a schedule that cannot be used.
pub fn broken(expression: &str, error: &str) -> CronInfo {
    CronInfo {
        expression: expression.to_string(),
        time_zone: String::new(),
        next_run_ms: None,
        last_run_ms: None,
        error: Some(error.to_string()),
    }
}

fn ms(t: Timestamp) -> u64 {
    u64::try_from(t.as_millisecond()).unwrap_or(0)
}

/// Restarts the instance at every run of the schedule until aborted.
pub async fn run(ctx: Context, cfg: CronConfig) {
    let mut last = None;
    loop {
        let Some(next) = cfg.next_after(Timestamp::now()) else {
            ctx.publish(|s| s.cron = Some(cfg.info(None, last)));
            tracing::warn!(id = ctx.id, expression = %cfg.expression(), "cron schedule has no next run");
            return;
        };
        ctx.publish(|s| s.cron = Some(cfg.info(Some(next), last)));
        sleep_until_wall(next).await;
        last = Some(next);
        ctx.publish(|s| s.cron = Some(cfg.info(cfg.next_after(next), last)));
        let detail = format!("cron_restart {:?} came due", cfg.expression());
        match ctx.ask(RestartReason::Cron, detail, None).await {
            Outcome::Restarted => {}
            Outcome::Ignored(why) => {
                tracing::debug!(id = ctx.id, %why, "cron restart skipped");
            }
            Outcome::Failed(e) => tracing::warn!(id = ctx.id, error = %e, "cron restart failed"),
        }
    }
}

/// Sleeps until the wall clock reaches `at`.
async fn sleep_until_wall(at: Timestamp) {
    loop {
        let left = Timestamp::now().duration_until(at);
        let Ok(left) = Duration::try_from(left) else {
            return;
        };
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(MAX_SLEEP)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn five_and_six_fields_and_extensions() {
        let c = CronConfig::new("0 3 * * *", Some("UTC")).unwrap();
        assert_eq!(
            c.next_after(at("2026-03-01T10:00:00Z")),
            Some(at("2026-03-02T03:00:00Z"))
        );
        let c = CronConfig::new("*/3 * * * * *", Some("UTC")).unwrap();
        assert_eq!(
            c.next_after(at("2026-03-01T10:00:01Z")),
            Some(at("2026-03-01T10:00:03Z"))
        );
        // Strictly after: a run due now is the next one's predecessor.
        assert_eq!(
            c.next_after(at("2026-03-01T10:00:03Z")),
            Some(at("2026-03-01T10:00:06Z"))
        );
        let c = CronConfig::new("0 0 L * *", Some("UTC")).unwrap();
        assert_eq!(
            c.next_after(at("2026-02-10T00:00:00Z")),
            Some(at("2026-02-28T00:00:00Z"))
        );
        let c = CronConfig::new("@daily", Some("UTC")).unwrap();
        assert_eq!(
            c.next_after(at("2026-02-10T05:00:00Z")),
            Some(at("2026-02-11T00:00:00Z"))
        );
        let c = CronConfig::new("0 9 * * MON-FRI", Some("UTC")).unwrap();
        // 2026-03-07 is a Saturday.
        assert_eq!(
            c.next_after(at("2026-03-07T12:00:00Z")),
            Some(at("2026-03-09T09:00:00Z"))
        );
    }

    #[test]
    fn runs_are_in_the_given_time_zone() {
        let c = CronConfig::new("0 3 * * *", Some("America/New_York")).unwrap();
        assert_eq!(c.schedule.zone_name, "America/New_York");
        // 03:00 in New York in winter is 08:00 UTC.
        assert_eq!(
            c.next_after(at("2026-01-10T12:00:00Z")),
            Some(at("2026-01-11T08:00:00Z"))
        );
        let c = CronConfig::new("0 3 * * *", Some("EST5EDT,M3.2.0,M11.1.0")).unwrap();
        assert_eq!(
            c.next_after(at("2026-01-10T12:00:00Z")),
            Some(at("2026-01-11T08:00:00Z"))
        );
        assert!(CronConfig::new("0 3 * * *", None).is_ok());
    }

    #[test]
    fn bad_expressions_and_zones_name_the_option() {
        for bad in [
            "not cron",
            "* * * *",
            "* * * * * * *",
            "61 * * * *",
            "0 3 * * FOO",
        ] {
            let e = CronConfig::new(bad, Some("UTC")).unwrap_err();
            assert!(
                e.contains("cron_restart") && e.contains("--cron"),
                "{bad}: {e}"
            );
        }
        let e = CronConfig::new("0 3 * * *", Some("Mars/Olympus")).unwrap_err();
        assert!(e.contains("TZ") && e.contains("Mars/Olympus"), "{e}");
    }
}
