//! Cron restarts: a 6-field schedule restarts the app on time, `describe` shows the next run, a
//! stopped app stays stopped, an app that exited by itself is started (PM2's periodic jobs), the
//! app's `TZ` sets the time zone, and bad expressions are refused naming the option.

mod common;

use std::time::{Duration, Instant};

use common::{TestEnv, now_ms};
use serde_json::Value;

fn cron_restarts(d: &Value) -> u64 {
    d["restart_reasons"]["cron"].as_u64().unwrap_or(0)
}

#[test]
fn a_six_field_schedule_restarts_the_app_on_time() {
    let env = TestEnv::new();
    env.script("app.sh", "exec sleep 1000\n");
    env.ok(&["start", "app.sh", "--cron", "*/3 * * * * *"]);
    let first = env.wait_status("app", "online")["pid"].as_u64().unwrap();
    let d = env.describe("app");
    let cron = &d["cron"];
    assert_eq!(cron["expression"], "*/3 * * * * *", "{d}");
    let next = cron["next_run_ms"].as_u64().expect("a next run");
    assert!(
        next.is_multiple_of(3000),
        "next run {next} is not on a multiple of 3 s"
    );
    assert!(
        next > now_ms().saturating_sub(3000) && next <= now_ms() + 3000,
        "{next}"
    );
    let table = env.ok(&["describe", "app"]);
    assert!(table.contains("next run"), "{table}");

    let d = env.wait_for("two cron restarts", || {
        let d = env.describe("app");
        (cron_restarts(&d) >= 2 && d["status"] == "online").then_some(d)
    });
    assert_ne!(d["pid"].as_u64(), Some(first));
    // The restart happened at its scheduled second.
    let due = d["cron"]["last_run_ms"].as_u64().unwrap();
    let at = d["last_restart"]["at_ms"].as_u64().unwrap();
    assert!(due.is_multiple_of(3000), "ran at {due}");
    assert!(
        at >= due && at - due < 2000,
        "due at {due}, restarted at {at}"
    );
    assert_eq!(d["last_restart"]["reason"], "cron");
    let reason = d["status_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("cron_restart"), "{reason}");
}

#[test]
fn a_stopped_app_is_not_started_by_its_schedule() {
    let env = TestEnv::new();
    env.script("app.sh", "exec sleep 1000\n");
    env.ok(&["start", "app.sh", "--cron-restart", "*/2 * * * * *"]);
    env.wait_for("a cron restart", || {
        (cron_restarts(&env.describe("app")) >= 1).then_some(())
    });
    env.ok(&["stop", "app"]);
    let stopped = env.describe("app");
    let restarts = stopped["restarts"].as_u64().unwrap();
    // Two and a half periods later it is still stopped, not restarted.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let d = env.describe("app");
        assert_eq!(d["status"], "stopped", "{d}");
        assert_eq!(d["restarts"].as_u64(), Some(restarts), "{d}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Started again, its schedule resumes.
    env.ok(&["start", "app"]);
    env.wait_for("cron restarts after start", || {
        (cron_restarts(&env.describe("app")) > cron_restarts(&stopped)).then_some(())
    });
}

#[test]
fn a_job_that_exited_by_itself_is_run_again_by_its_schedule() {
    let env = TestEnv::new();
    // A periodic job as in PM2: it runs, exits, and is not restarted but by its schedule.
    env.script("job.sh", "date +%s%N >> runs.log\n");
    env.ok(&[
        "start",
        "job.sh",
        "--no-autorestart",
        "--cron",
        "*/2 * * * * *",
    ]);
    env.wait_for("three runs of the job", || {
        let runs = std::fs::read_to_string(env.path("runs.log")).unwrap_or_default();
        (runs.lines().count() >= 3).then_some(())
    });
}

#[test]
fn the_apps_tz_sets_the_time_zone() {
    let env = TestEnv::new();
    env.script("app.sh", "exec sleep 1000\n");
    env.ok(&[
        "start",
        "app.sh",
        "--env",
        "TZ=America/New_York",
        "--cron",
        "0 3 * * *",
    ]);
    let d = env.describe("app");
    assert_eq!(d["cron"]["time_zone"], "America/New_York", "{d}");
    let next = d["cron"]["next_run_ms"].as_u64().unwrap() / 1000;
    // 03:00 in New York is 07:00 or 08:00 UTC.
    let utc_hour = next % 86_400 / 3600;
    assert!(
        next.is_multiple_of(3600) && (utc_hour == 7 || utc_hour == 8),
        "next run at {next} (UTC hour {utc_hour})"
    );
}

#[test]
fn bad_schedules_are_refused_naming_the_option() {
    let env = TestEnv::new();
    env.script("app.sh", "exec sleep 1000\n");
    for bad in ["61 * * * *", "* * * *", "every day"] {
        let err = env.fail(&["start", "app.sh", "--cron", bad]);
        assert!(err.contains("--cron") && err.contains(bad), "{bad}: {err}");
    }
    let err = env.fail(&[
        "start",
        "app.sh",
        "--cron",
        "0 3 * * *",
        "--env",
        "TZ=Mars/Olympus",
    ]);
    assert!(err.contains("TZ") && err.contains("Mars/Olympus"), "{err}");
    env.file(
        "eco.json",
        r#"{"apps": [{"name": "e", "script": "app.sh", "cron": "0 25 * * *"}]}"#,
    );
    let err = env.fail(&["start", "eco.json"]);
    assert!(err.contains("cron_restart"), "{err}");
    assert!(env.list().is_empty());
}
