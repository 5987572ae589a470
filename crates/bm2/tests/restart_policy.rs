//! The restart policy seen from outside: crash loops, delays, backoff, stop exit codes,
//! autorestart/autostart, reset, and restarting an errored app.

mod common;

use common::{TestEnv, alive, now_ms};
use serde_json::Value;

/// Crashes on its first run only; later runs stay up as a single process.
const CRASH_ONCE: &str = "if [ ! -e crashed ]; then touch crashed; exit 1; fi\nexec sleep 1000\n";

/// Milliseconds between the end of the previous run and the start of the current one.
fn restart_gap(d: &Value) -> i64 {
    let started = d["started_at_ms"]
        .as_i64()
        .expect("started_at_ms while online");
    let exited = d["last_exit"]["at_ms"]
        .as_i64()
        .expect("last_exit.at_ms after a restart");
    started - exited
}

#[test]
fn crash_loop_with_max_restarts_ends_errored() {
    let env = TestEnv::new();
    env.script("crash.sh", "exit 1\n");
    env.ok(&[
        "start",
        "crash.sh",
        "--name",
        "crash",
        "--max-restarts",
        "3",
    ]);
    let p = env.wait_status("crash", "errored");
    assert_eq!(p["restarts"], 2, "three starts in all, as PM2: {p}");
    assert!(p["pid"].is_null(), "{p}");
    let d = env.describe("crash");
    let reason = d["status_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("min_uptime"), "status_reason: {reason:?}");
    assert_eq!(d["last_exit"]["code"], 1, "{d}");
    assert!(
        env.app_pids().is_empty(),
        "processes of an errored app: {:?}",
        env.app_pids()
    );
}

#[test]
fn crash_is_restarted_at_once_by_default() {
    let env = TestEnv::new();
    // The first run stays up until told to crash; later runs stay up.
    env.script(
        "crash-on-demand.sh",
        "if [ -e crashed ]; then exec sleep 1000; fi\n\
         while [ ! -e crash-now ]; do sleep 0.02; done\n\
         touch crashed\nexit 1\n",
    );
    env.ok(&["start", "crash-on-demand.sh", "--name", "app"]);
    let first = env.wait_status("app", "online")["pid"].as_u64().unwrap();
    assert_eq!(env.proc("app")["restarts"], 0);
    std::fs::write(env.path("crash-now"), "").unwrap();
    let second = env.wait_new_pid("app", first);
    assert!(alive(second as u32));
    let d = env.describe("app");
    assert_eq!(d["restarts"], 1, "{d}");
    assert_eq!(d["last_exit"]["code"], 1, "{d}");
    let gap = restart_gap(&d);
    assert!(gap < 1000, "restart without delay took {gap} ms");
}

#[test]
fn restart_delay_waits_in_waiting_restart() {
    let env = TestEnv::new();
    env.script("crash-once.sh", CRASH_ONCE);
    env.ok(&[
        "start",
        "crash-once.sh",
        "--name",
        "delayed",
        "--restart-delay",
        "800",
    ]);
    let waiting = env.wait_status("delayed", "waiting restart");
    assert!(waiting["pid"].is_null(), "{waiting}");
    env.wait_status("delayed", "online");
    let d = env.describe("delayed");
    assert_eq!(d["restarts"], 1, "{d}");
    let gap = restart_gap(&d);
    assert!(
        gap >= 795,
        "restarted {gap} ms after the exit, expected at least 800"
    );
    assert!(
        gap < 5000,
        "restarted {gap} ms after the exit, expected about 800"
    );
}

#[test]
fn exponential_backoff_delays_grow() {
    let env = TestEnv::new();
    // Runs 1 to 5 crash after 500 ms (each visible online); run 6 stays up.
    env.script(
        "flaky.sh",
        "n=$(cat runs 2>/dev/null || echo 0)\nn=$((n + 1))\necho $n > runs\n\
         if [ $n -le 5 ]; then sleep 0.5; exit 1; fi\nexec sleep 1000\n",
    );
    env.ok(&[
        "start",
        "flaky.sh",
        "--name",
        "flaky",
        "--exp-backoff-restart-delay",
        "100",
    ]);
    // gaps[k] = delay before the run that has `restarts == k`.
    let mut gaps: [Option<i64>; 6] = [None; 6];
    env.wait_for("five backoff restarts, each seen online", || {
        let d = env.describe("flaky");
        let restarts = d["restarts"].as_u64().unwrap() as usize;
        if d["status"] == "online" && (1..=5).contains(&restarts) && gaps[restarts].is_none() {
            gaps[restarts] = Some(restart_gap(&d));
        }
        (restarts == 5 && d["status"] == "online").then_some(())
    });
    let gaps: Vec<i64> = gaps[1..]
        .iter()
        .map(|g| g.expect("every run was seen online"))
        .collect();
    let expected = [100, 150, 225, 337, 506];
    for (gap, want) in gaps.iter().zip(expected) {
        assert!(
            *gap >= want - 5 && *gap < want + 400,
            "backoff gaps {gaps:?}, expected about {expected:?}"
        );
    }
    assert!(
        gaps.windows(2).all(|w| w[1] > w[0]),
        "backoff gaps do not grow: {gaps:?}"
    );
}

#[test]
fn stop_exit_code_ends_stopped_without_restart() {
    let env = TestEnv::new();
    env.script("done.sh", "echo run >> runs\nexit 3\n");
    env.ok(&[
        "start",
        "done.sh",
        "--name",
        "done",
        "--stop-exit-codes",
        "3",
    ]);
    let p = env.wait_status("done", "stopped");
    assert_eq!(p["restarts"], 0, "{p}");
    let d = env.describe("done");
    assert_eq!(d["last_exit"]["code"], 3, "{d}");
    let reason = d["status_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("stop exit code"),
        "status_reason: {reason:?}"
    );
    assert_eq!(
        std::fs::read_to_string(env.path("runs"))
            .unwrap()
            .lines()
            .count(),
        1
    );
}

#[test]
fn other_exit_codes_are_still_restarted_with_stop_exit_codes() {
    let env = TestEnv::new();
    env.script("crash-once.sh", CRASH_ONCE);
    env.ok(&[
        "start",
        "crash-once.sh",
        "--name",
        "app",
        "--stop-exit-codes",
        "3",
    ]);
    env.wait_for("a restart after exit code 1", || {
        let p = env.proc("app");
        (p["status"] == "online" && p["restarts"] == 1).then_some(())
    });
}

#[test]
fn no_autorestart_ends_stopped_after_exit() {
    let env = TestEnv::new();
    env.script("once.sh", "echo run >> runs\nexit 1\n");
    env.ok(&["start", "once.sh", "--name", "once", "--no-autorestart"]);
    let p = env.wait_status("once", "stopped");
    assert_eq!(p["restarts"], 0, "{p}");
    let d = env.describe("once");
    assert_eq!(d["last_exit"]["code"], 1, "{d}");
    let reason = d["status_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("autorestart"), "status_reason: {reason:?}");
    assert_eq!(
        std::fs::read_to_string(env.path("runs"))
            .unwrap()
            .lines()
            .count(),
        1
    );
}

#[test]
fn no_autostart_registers_stopped_until_restarted() {
    let env = TestEnv::new();
    env.script("idle.sh", "echo run >> runs\nexec sleep 1000\n");
    env.ok(&["start", "idle.sh", "--name", "idle", "--no-autostart"]);
    let p = env.proc("idle");
    assert_eq!(p["status"], "stopped", "{p}");
    assert!(p["pid"].is_null(), "{p}");
    assert!(
        env.app_pids().is_empty(),
        "a --no-autostart app runs: {:?}",
        env.app_pids()
    );
    assert!(!env.path("runs").exists(), "the script ran");

    env.ok(&["restart", "idle"]);
    let p = env.wait_status("idle", "online");
    let pid = p["pid"].as_u64().unwrap() as u32;
    assert!(alive(pid));
    assert_eq!(env.app_pids(), vec![pid]);
}

#[test]
fn reset_zeroes_restart_counters() {
    let env = TestEnv::new();
    env.script("crash.sh", "exit 1\n");
    env.ok(&[
        "start",
        "crash.sh",
        "--name",
        "crash",
        "--max-restarts",
        "3",
    ]);
    let p = env.wait_status("crash", "errored");
    assert_eq!(p["restarts"], 2, "{p}");
    assert!(p["unstable_restarts"].as_u64().unwrap() > 0, "{p}");
    env.ok(&["reset", "crash"]);
    let p = env.proc("crash");
    assert_eq!(p["restarts"], 0, "{p}");
    assert_eq!(p["unstable_restarts"], 0, "{p}");
}

#[test]
fn restart_brings_errored_app_back_online() {
    let env = TestEnv::new();
    env.script(
        "fragile.sh",
        "if [ -e broken ]; then exit 1; fi\nexec sleep 1000\n",
    );
    std::fs::write(env.path("broken"), "").unwrap();
    env.ok(&[
        "start",
        "fragile.sh",
        "--name",
        "fragile",
        "--max-restarts",
        "1",
    ]);
    env.wait_status("fragile", "errored");
    std::fs::remove_file(env.path("broken")).unwrap();
    env.ok(&["restart", "fragile"]);
    let p = env.wait_status("fragile", "online");
    let pid = p["pid"].as_u64().unwrap() as u32;
    assert!(alive(pid));
    assert_eq!(env.app_pids(), vec![pid]);
}

#[test]
fn stop_during_restart_delay_cancels_the_restart() {
    let env = TestEnv::new();
    env.script("crash.sh", "echo run >> runs\nexit 1\n");
    env.ok(&[
        "start",
        "crash.sh",
        "--name",
        "crash",
        "--restart-delay",
        "1000",
    ]);
    env.wait_status("crash", "waiting restart");
    env.ok(&["stop", "crash"]);
    let exited = env.describe("crash")["last_exit"]["at_ms"]
        .as_u64()
        .unwrap();
    // Watch past the moment the restart was due: it must stay stopped.
    env.wait_for("the cancelled restart's due time to pass", || {
        let p = env.proc("crash");
        assert_eq!(p["status"], "stopped", "{p}");
        assert!(p["pid"].is_null(), "{p}");
        (now_ms() > exited + 1500).then_some(())
    });
    assert_eq!(
        std::fs::read_to_string(env.path("runs"))
            .unwrap()
            .lines()
            .count(),
        1
    );
}
