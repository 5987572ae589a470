//! Counting as PM2 counts: `restart_time` (bm2's `restarts`) and the crash-loop limit.

mod common;

use common::TestEnv;

/// Crashes on its first run only; later runs stay up.
const CRASH_ONCE: &str = "if [ ! -e crashed ]; then touch crashed; exit 1; fi\nexec sleep 1000\n";

fn runs(env: &TestEnv) -> usize {
    std::fs::read_to_string(env.path("runs"))
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn a_crash_loop_with_default_settings_is_started_sixteen_times() {
    let env = TestEnv::new();
    env.script("crash.sh", "echo run >> runs\nexit 1\n");
    env.ok(&["start", "crash.sh", "--name", "crash"]);
    let p = env.wait_status("crash", "errored");
    assert_eq!(runs(&env), 16, "started as often as PM2 starts it");
    assert_eq!(p["restarts"], 15, "{p}");
    let pm2 = env
        .jlist()
        .into_iter()
        .find(|p| p["name"] == "crash")
        .unwrap();
    assert_eq!(pm2["pm2_env"]["restart_time"], 15, "{pm2}");
}

#[test]
fn restart_and_start_of_a_stopped_app_do_not_count() {
    let env = TestEnv::new();
    env.start_sleeper("app");
    env.ok(&["stop", "app"]);
    env.ok(&["restart", "app"]);
    let p = env.wait_status("app", "online");
    assert_eq!(p["restarts"], 0, "restart of a stopped app starts it: {p}");
    env.ok(&["stop", "app"]);
    env.ok(&["start", "app"]);
    let p = env.wait_status("app", "online");
    assert_eq!(p["restarts"], 0, "{p}");
    env.ok(&["restart", "app"]);
    env.wait_for("the restart of the running app counted", || {
        let p = env.proc("app");
        (p["status"] == "online" && p["restarts"] == 1).then_some(())
    });
    env.ok(&["stop", "app"]);
    env.ok(&["reload", "app"]);
    let p = env.wait_status("app", "online");
    assert_eq!(p["restarts"], 1, "reload of a stopped app starts it: {p}");
}

#[test]
fn a_delayed_restart_counts_when_it_runs() {
    let env = TestEnv::new();
    env.script("crash-once.sh", CRASH_ONCE);
    env.ok(&[
        "start",
        "crash-once.sh",
        "--name",
        "delayed",
        "--restart-delay",
        "3000",
    ]);
    let waiting = env.wait_status("delayed", "waiting restart");
    assert_eq!(
        waiting["restarts"], 0,
        "not counted while it waits: {waiting}"
    );
    let p = env.wait_status("delayed", "online");
    assert_eq!(p["restarts"], 1, "{p}");
}

#[test]
fn stopping_an_app_waiting_to_restart_does_not_count_the_restart() {
    let env = TestEnv::new();
    env.script("crash-once.sh", CRASH_ONCE);
    env.ok(&[
        "start",
        "crash-once.sh",
        "--name",
        "delayed",
        "--restart-delay",
        "60000",
    ]);
    env.wait_status("delayed", "waiting restart");
    env.ok(&["stop", "delayed"]);
    let p = env.wait_status("delayed", "stopped");
    assert_eq!(p["restarts"], 0, "{p}");
    env.ok(&["start", "delayed"]);
    let p = env.wait_status("delayed", "online");
    assert_eq!(p["restarts"], 0, "{p}");
}
