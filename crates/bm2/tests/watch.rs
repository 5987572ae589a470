//! File watching: a change restarts the app once per debounce window, ignored paths are never
//! watched (a large `node_modules` costs no watches) and never restart it, new directories are
//! picked up, the restart-loop guard turns watching off, `restart --watch` / `stop --watch`
//! toggle it, and deleting an app releases its inotify instance.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::TestEnv;
use serde_json::Value;

fn watch_restarts(d: &Value) -> u64 {
    d["restart_reasons"]["watch"].as_u64().unwrap_or(0)
}

/// Waits until `app` watches files (its directories are walked); returns its describe.
fn wait_watching(env: &TestEnv, app: &str) -> Value {
    env.wait_for(&format!("{app} to watch its files"), || {
        let d = env.describe(app);
        (d["watch"]["watching"] == true && d["watch"]["directories"].as_u64() > Some(0))
            .then_some(d)
    })
}

/// Waits until `app` has been restarted on change `n` times and runs; returns its describe.
fn wait_watch_restarts(env: &TestEnv, app: &str, n: u64) -> Value {
    env.wait_for(&format!("{n} restarts of {app} on change"), || {
        let d = env.describe(app);
        (watch_restarts(&d) >= n && d["status"] == "online").then_some(d)
    })
}

/// Inotify instances the daemon holds open.
fn daemon_inotify_fds(env: &TestEnv) -> usize {
    let pid = env.daemon_pid().expect("daemon running");
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|e| fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().contains("inotify")))
        .count()
}

fn write(env: &TestEnv, rel: &str, text: &str) {
    let path = env.path(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

#[test]
fn a_burst_of_writes_restarts_the_app_once() {
    let env = TestEnv::new();
    env.script("app.sh", "exec sleep 1000\n");
    write(&env, "src/a.js", "1");
    env.ok(&["start", "app.sh", "--watch", "--watch-delay", "800"]);
    let first = env.wait_status("app", "online")["pid"].as_u64().unwrap();
    let d = wait_watching(&env, "app");
    assert_eq!(d["watch"]["paths"][0], env.dir.path().to_str().unwrap());
    assert_eq!(d["watch"]["delay_ms"], 800);

    for i in 0..5 {
        write(&env, "src/a.js", &format!("v{i}"));
        std::thread::sleep(Duration::from_millis(20));
    }
    let d = wait_watch_restarts(&env, "app", 1);
    assert_ne!(d["pid"].as_u64(), Some(first));
    assert_eq!(d["last_restart"]["reason"], "watch");
    assert_eq!(d["last_restart"]["detail"], "src/a.js changed", "{d}");
    let reason = d["status_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("src/a.js changed"), "{reason}");
    // The burst was one change: no second restart once the window has passed.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert_eq!(watch_restarts(&env.describe("app")), 1);
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = fs::read_to_string(env.home_path().join("daemon.log")).unwrap();
    assert!(log.contains("reason=\"watch\""), "{log}");
}

#[test]
fn ignored_paths_are_not_watched_and_do_not_restart() {
    let env = TestEnv::new();
    env.script("app.sh", "exec sleep 1000\n");
    // A large node_modules: 300 directories that must cost no watch.
    for i in 0..300 {
        write(&env, &format!("node_modules/pkg{i}/lib/index.js"), "x");
    }
    write(&env, "src/a.js", "1");
    write(&env, "build/out.tmp", "1");
    fs::create_dir_all(env.path("logs")).unwrap();
    env.ok(&[
        "start",
        "app.sh",
        "--watch",
        "--watch-delay",
        "200",
        "--ignore-watch",
        "node_modules,logs,*.tmp",
        "--output",
        "app-out.log",
    ]);
    let d = wait_watching(&env, "app");
    // The app's directory, src and build: nothing under node_modules or logs.
    assert_eq!(d["watch"]["directories"], 3, "{d}");
    assert_eq!(
        d["watch"]["ignore"],
        serde_json::json!(["node_modules", "logs", "*.tmp"])
    );
    // The app writes its own log file in the watched directory: never a change.
    env.wait_for("the app's log file", || {
        env.path("app-out.log").exists().then_some(())
    });

    write(&env, "node_modules/pkg7/lib/index.js", "changed");
    write(&env, "node_modules/new/index.js", "new");
    write(&env, "logs/today.log", "line");
    write(&env, "build/out.tmp", "2");
    write(&env, "src/b.tmp", "2");
    // Then a change that counts: the restart it causes names it alone.
    write(&env, "src/a.js", "2");
    let d = wait_watch_restarts(&env, "app", 1);
    assert_eq!(d["last_restart"]["detail"], "src/a.js changed", "{d}");
    assert_eq!(watch_restarts(&d), 1, "{d}");
    assert_eq!(d["watch"]["directories"], 3, "{d}");
}

#[test]
fn new_directories_are_watched_too() {
    let env = TestEnv::new();
    env.script("app.sh", "exec sleep 1000\n");
    fs::create_dir_all(env.path("src")).unwrap();
    env.ok(&["start", "app.sh", "--watch", "src", "--watch-delay", "200"]);
    let d = wait_watching(&env, "app");
    assert_eq!(d["watch"]["directories"], 1);
    assert!(
        d["watch"]["paths"][0].as_str().unwrap().ends_with("/src"),
        "{d}"
    );
    // A file outside the watched path: nothing.
    write(&env, "other.js", "x");
    fs::create_dir_all(env.path("src/deep/er")).unwrap();
    let d = wait_watch_restarts(&env, "app", 1);
    assert_eq!(d["watch"]["directories"], 3, "{d}");
    write(&env, "src/deep/er/x.js", "x");
    let d = wait_watch_restarts(&env, "app", 2);
    assert_eq!(d["last_restart"]["detail"], "src/deep/er/x.js changed");
}

#[test]
fn the_loop_guard_stops_watching_an_app_that_crashes_on_every_change() {
    let env = TestEnv::new();
    env.script(
        "app.sh",
        "if grep -q bad conf/settings; then exit 1; fi\nexec sleep 1000\n",
    );
    write(&env, "conf/settings", "good");
    // A long min_uptime: the crash surely falls within each restart's probation.
    env.ok(&[
        "start",
        "app.sh",
        "--watch",
        "conf",
        "--watch-delay",
        "100",
        "--min-uptime",
        "3000",
    ]);
    wait_watching(&env, "app");
    for n in 1..=3 {
        write(&env, "conf/settings", &format!("bad {n}"));
        env.wait_for(&format!("restart {n} on change"), || {
            (watch_restarts(&env.describe("app")) >= n).then_some(())
        });
    }
    let d = env.wait_for("the loop guard", || {
        let d = env.describe("app");
        (d["watch"]["watching"] == false).then_some(d)
    });
    let off = d["watch"]["off_reason"].as_str().unwrap();
    assert!(
        off.contains("restart loop") && off.contains("--watch"),
        "{off}"
    );
    let log = fs::read_to_string(env.home_path().join("daemon.log")).unwrap();
    assert!(log.contains("restart loop"), "{log}");
    let table = env.ok(&["describe", "app"]);
    assert!(table.contains("restart loop"), "{table}");

    // Fixed, and watched again on request.
    write(&env, "conf/settings", "good");
    let out = env.ok(&["restart", "app", "--watch"]);
    assert!(out.contains("watching"), "{out}");
    env.wait_status("app", "online");
    wait_watching(&env, "app");
    write(&env, "conf/settings", "good again");
    wait_watch_restarts(&env, "app", 4);
}

#[test]
fn an_app_that_writes_its_own_watched_files_trips_the_guard() {
    let env = TestEnv::new();
    // Every start appends to a watched file once it is up: each restart causes the next.
    env.script(
        "app.sh",
        "sleep 0.3\nif [ -e state/go ]; then date +%s%N >> state/stamps; fi\nexec sleep 1000\n",
    );
    fs::create_dir_all(env.path("state")).unwrap();
    env.ok(&[
        "start",
        "app.sh",
        "--watch",
        "state",
        "--watch-delay",
        "100",
        "--min-uptime",
        "3000",
    ]);
    wait_watching(&env, "app");
    write(&env, "state/go", "");
    let d = env.wait_for("the loop guard", || {
        let d = env.describe("app");
        (d["watch"]["watching"] == false).then_some(d)
    });
    assert_eq!(watch_restarts(&d), 3, "{d}");
    assert_eq!(d["status"], "online", "the app itself keeps running: {d}");
}

#[test]
fn restart_and_stop_with_watch_toggle_watching() {
    let env = TestEnv::new();
    env.script("app.sh", "exec sleep 1000\n");
    env.ok(&["start", "app.sh", "--watch-delay", "100"]);
    env.wait_status("app", "online");
    assert!(env.describe("app")["watch"].is_null());

    // Not watching: --watch turns it on, for the app's directory (as in PM2).
    let out = env.ok(&["restart", "app", "--watch"]);
    assert!(out.contains("app (id 0): watching"), "{out}");
    let d = wait_watching(&env, "app");
    assert_eq!(d["spec"]["watch"], serde_json::json!(["."]));
    assert_eq!(daemon_inotify_fds(&env), 1);
    write(&env, "x.js", "1");
    wait_watch_restarts(&env, "app", 1);

    // Watching: --watch turns it off.
    let out = env.ok(&["restart", "app", "--watch"]);
    assert!(out.contains("not watching"), "{out}");
    let d = env.describe("app");
    assert_eq!(d["watch"]["watching"], false);
    assert!(
        d["watch"]["off_reason"]
            .as_str()
            .unwrap()
            .contains("restart --watch")
    );
    env.wait_for("the watcher to close", || {
        (daemon_inotify_fds(&env) == 0).then_some(())
    });

    // On again, then `stop --watch` stops the app and its watching; `start` does not watch.
    env.ok(&["restart", "app", "--watch"]);
    wait_watching(&env, "app");
    let out = env.ok(&["stop", "app", "--watch"]);
    assert!(out.contains("not watching"), "{out}");
    env.ok(&["start", "app"]);
    env.wait_status("app", "online");
    let d = env.describe("app");
    assert_eq!(d["watch"]["watching"], false, "{d}");
    assert!(
        d["watch"]["off_reason"]
            .as_str()
            .unwrap()
            .contains("stop --watch")
    );
    // The state survives a save and resurrect.
    env.ok(&["save"]);
    env.ok(&["delete", "app"]);
    env.ok(&["resurrect"]);
    assert_eq!(env.describe("app")["watch"]["watching"], false);

    // A file change while stopped (plain stop) does not start the app.
    env.ok(&["restart", "app", "--watch"]);
    wait_watching(&env, "app");
    env.ok(&["stop", "app"]);
    write(&env, "y.js", "1");
    let until = Instant::now() + Duration::from_millis(800);
    while Instant::now() < until {
        assert_eq!(env.describe("app")["status"], "stopped");
        std::thread::sleep(Duration::from_millis(100));
    }

    let err = env.fail(&["reload", "app", "--watch"]);
    assert!(err.contains("--watch applies to restart"), "{err}");
}

#[test]
fn deleting_a_watched_app_releases_its_watches() {
    let env = TestEnv::new();
    env.script("app.sh", "exec sleep 1000\n");
    env.ok(&["start", "app.sh", "--watch", "-i", "2"]);
    wait_watching(&env, "app-0");
    wait_watching(&env, "app-1");
    assert_eq!(daemon_inotify_fds(&env), 2);
    env.ok(&["delete", "app"]);
    env.wait_for("the watchers to close", || {
        (daemon_inotify_fds(&env) == 0).then_some(())
    });
}

#[test]
fn watch_options_from_an_ecosystem_file() {
    let env = TestEnv::new();
    env.script("app.sh", "exec sleep 1000\n");
    fs::create_dir_all(env.path("lib")).unwrap();
    env.file(
        "ecosystem.config.json",
        r#"{"apps": [{"name": "eco", "script": "app.sh", "watch": ["lib"], "ignoreWatch": ["*.swp"], "watchDelay": 150}]}"#,
    );
    env.ok(&["start", "ecosystem.config.json"]);
    let d = wait_watching(&env, "eco");
    assert_eq!(d["watch"]["delay_ms"], 150);
    assert_eq!(d["watch"]["ignore"], serde_json::json!(["*.swp"]));
    write(&env, "lib/.x.swp", "1");
    write(&env, "lib/x.js", "1");
    let d = wait_watch_restarts(&env, "eco", 1);
    assert_eq!(d["last_restart"]["detail"], "lib/x.js changed");
    let bad =
        r#"{"apps": [{"name": "bad", "script": "app.sh", "watch": true, "ignore_watch": ["a["]}]}"#;
    env.file("bad.config.json", bad);
    let err = env.fail(&["start", "bad.config.json"]);
    assert!(err.contains("ignore_watch"), "{err}");
}
