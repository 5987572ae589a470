//! Behaviours as PM2's: counting restarts (`restart_time`, bm2's `restarts`) and the crash-loop
//! limit, `stop` turning watching off, ids starting from 0 again once nothing is managed, and
//! output without a final newline reaching the log while the app runs.

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

#[test]
fn stop_of_a_watched_app_turns_watching_off() {
    let env = TestEnv::new();
    env.script("app.sh", "exec sleep 1000\n");
    env.ok(&["start", "app.sh", "--watch", "--watch-delay", "100"]);
    env.wait_for("watching", || {
        (env.describe("app")["watch"]["watching"] == true).then_some(())
    });
    env.ok(&["stop", "app"]);
    env.ok(&["start", "app"]);
    env.wait_status("app", "online");
    let d = env.describe("app");
    assert_eq!(d["watch"]["watching"], false, "{d}");
    let reason = d["watch"]["off_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("bm2 stop"), "{reason}");
    // A change does not restart it.
    std::fs::write(env.path("x.js"), "1").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert_eq!(env.proc("app")["restarts"], 0);
    // `restart --watch` watches again.
    env.ok(&["restart", "app", "--watch"]);
    env.wait_for("watching again", || {
        (env.describe("app")["watch"]["watching"] == true).then_some(())
    });
}

#[test]
fn ids_start_from_zero_once_nothing_is_managed() {
    let env = TestEnv::new();
    env.start_sleeper("a");
    env.start_sleeper("b");
    assert_eq!(env.proc("b")["id"], 1);
    env.ok(&["delete", "a"]);
    env.start_sleeper("c");
    assert_eq!(
        env.proc("c")["id"],
        2,
        "ids are not reused while apps remain"
    );
    env.ok(&["delete", "all"]);
    env.start_sleeper("d");
    assert_eq!(
        env.proc("d")["id"],
        0,
        "the list was empty: ids start from 0"
    );
}

#[test]
fn stderr_without_a_final_newline_reaches_the_log_while_the_app_runs() {
    let env = TestEnv::new();
    env.script(
        "prompt.sh",
        "printf 'no newline on stderr' >&2\nprintf 'no newline on stdout'\nexec sleep 1000\n",
    );
    env.ok(&["start", "prompt.sh", "--name", "prompt"]);
    let d = env.describe("prompt");
    let err = d["err_log"].as_str().expect("err_log").to_string();
    let started = std::time::Instant::now();
    env.wait_for("the partial stderr line in the error log", || {
        std::fs::read_to_string(&err)
            .ok()
            .filter(|l| l.contains("no newline on stderr"))
    });
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    env.wait_out("prompt", "no newline on stdout");
    assert_eq!(env.proc("prompt")["status"], "online", "the app still runs");
}
