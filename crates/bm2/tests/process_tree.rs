//! Stopping and deleting end an app's whole process tree: setsid'd and double-forked
//! descendants, processes that ignore the stop signal, and group members left by a crash.

mod common;

use std::time::{Duration, Instant};

use common::{TestEnv, alive, session};

/// Bash main whose child calls setsid (new session and group) and stays its child. As an
/// asynchronous command of a non-interactive shell, the grandchild ignores SIGINT: only the
/// SIGKILL after the kill timeout ends it.
const SETSID_GRANDCHILD: &str = "setsid bash -c 'echo $$ > grandchild.pid; exec sleep 1000' &\n\
                                 while true; do sleep 0.2; done\n";

/// Starts `script` as `name` and returns (main pid, grandchild pid) once the grandchild runs
/// in a session of its own.
fn start_with_grandchild(env: &TestEnv, script: &str, name: &str) -> (u32, u32) {
    env.ok(&["start", script, "--name", name, "--kill-timeout", "1000"]);
    let main = env.wait_status(name, "online")["pid"].as_u64().unwrap() as u32;
    let grandchild = env.wait_pid_file("grandchild.pid");
    assert_ne!(
        session(grandchild),
        session(main),
        "the grandchild did not leave the session"
    );
    (main, grandchild)
}

#[test]
fn stop_kills_setsid_grandchild() {
    let env = TestEnv::new();
    env.script("setsid.sh", SETSID_GRANDCHILD);
    let (main, grandchild) = start_with_grandchild(&env, "setsid.sh", "tree");
    env.ok(&["stop", "tree"]);
    env.wait_status("tree", "stopped");
    assert!(!alive(main), "main process {main} survived stop");
    assert!(
        !alive(grandchild),
        "setsid grandchild {grandchild} survived stop"
    );
    assert!(
        env.app_pids().is_empty(),
        "left after stop: {:?}",
        env.app_pids()
    );
}

#[test]
fn stop_kills_double_forked_grandchild() {
    let env = TestEnv::new();
    env.script("daemonize.py", common::DOUBLE_FORK);
    let (main, grandchild) = start_with_grandchild(&env, "daemonize.py", "tree");
    env.ok(&["stop", "tree"]);
    env.wait_status("tree", "stopped");
    assert!(!alive(main), "main process {main} survived stop");
    assert!(
        !alive(grandchild),
        "double-forked grandchild {grandchild} survived stop"
    );
    assert!(
        env.app_pids().is_empty(),
        "left after stop: {:?}",
        env.app_pids()
    );
}

#[test]
fn delete_kills_setsid_grandchild() {
    let env = TestEnv::new();
    env.script("setsid.sh", SETSID_GRANDCHILD);
    let (main, grandchild) = start_with_grandchild(&env, "setsid.sh", "tree");
    env.ok(&["delete", "tree"]);
    assert!(env.list().is_empty());
    assert!(!alive(main), "main process {main} survived delete");
    assert!(
        !alive(grandchild),
        "setsid grandchild {grandchild} survived delete"
    );
    assert!(
        env.app_pids().is_empty(),
        "left after delete: {:?}",
        env.app_pids()
    );
}

#[test]
fn delete_kills_double_forked_grandchild() {
    let env = TestEnv::new();
    env.script("daemonize.py", common::DOUBLE_FORK);
    let (main, grandchild) = start_with_grandchild(&env, "daemonize.py", "tree");
    env.ok(&["delete", "tree"]);
    assert!(env.list().is_empty());
    assert!(!alive(main), "main process {main} survived delete");
    assert!(
        !alive(grandchild),
        "double-forked grandchild {grandchild} survived delete"
    );
    assert!(
        env.app_pids().is_empty(),
        "left after delete: {:?}",
        env.app_pids()
    );
}

#[test]
fn process_ignoring_stop_signals_is_killed_after_kill_timeout() {
    let env = TestEnv::new();
    env.script(
        "stubborn.sh",
        "trap '' TERM INT\ntouch ready\nwhile true; do sleep 0.2; done\n",
    );
    env.ok(&[
        "start",
        "stubborn.sh",
        "--name",
        "stubborn",
        "--kill-timeout",
        "500",
    ]);
    let main = env.wait_status("stubborn", "online")["pid"]
        .as_u64()
        .unwrap() as u32;
    env.wait_exists("ready");
    let t = Instant::now();
    env.ok(&["stop", "stubborn"]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(450),
        "stop returned after {took:?}, before the kill timeout"
    );
    assert!(
        took < Duration::from_secs(4),
        "stop took {took:?} with --kill-timeout 500"
    );
    assert_eq!(env.proc("stubborn")["status"], "stopped");
    assert!(!alive(main), "main process {main} survived stop");
    assert!(
        env.app_pids().is_empty(),
        "left after stop: {:?}",
        env.app_pids()
    );
    let d = env.describe("stubborn");
    assert_eq!(d["last_exit"]["signal"], "SIGKILL", "{}", d["last_exit"]);
}

/// Python app that reports the first stop signal it receives in `got`, then exits 0 (ignoring
/// any further stop signal).
const REPORT_SIGNAL: &str = r#"import os, signal, sys, time
def report(signum, frame):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open("got.tmp", "w") as f:
        f.write(signal.Signals(signum).name)
    os.rename("got.tmp", "got")
    sys.exit(0)
signal.signal(signal.SIGINT, report)
signal.signal(signal.SIGTERM, report)
open("ready", "w").close()
while True:
    time.sleep(0.1)
"#;

fn stop_signal_received(extra: &[&str]) -> String {
    let env = TestEnv::new();
    env.script("report.py", REPORT_SIGNAL);
    let mut args = vec!["start", "report.py", "--name", "report"];
    args.extend_from_slice(extra);
    env.ok(&args);
    env.wait_status("report", "online");
    env.wait_exists("ready");
    env.ok(&["stop", "report"]);
    assert_eq!(env.proc("report")["status"], "stopped");
    assert!(
        env.app_pids().is_empty(),
        "left after stop: {:?}",
        env.app_pids()
    );
    let d = env.describe("report");
    assert_eq!(
        d["last_exit"]["code"], 0,
        "the app did not exit by itself: {}",
        d["last_exit"]
    );
    std::fs::read_to_string(env.path("got")).expect("the app reported no signal")
}

#[test]
fn stop_sends_sigint_by_default() {
    assert_eq!(stop_signal_received(&[]), "SIGINT");
}

#[test]
fn stop_sends_the_kill_signal_option() {
    assert_eq!(
        stop_signal_received(&["--kill-signal", "SIGTERM"]),
        "SIGTERM"
    );
}

/// Python app that shuts down gracefully over 500 ms after the first stop signal, then writes
/// every stop signal it received to `got-<instance>` and exits 0.
const COUNT_SIGNALS: &str = r#"import os, signal, time
got = []
def on_signal(signum, frame):
    got.append(signal.Signals(signum).name)
signal.signal(signal.SIGINT, on_signal)
signal.signal(signal.SIGTERM, on_signal)
me = os.environ["NODE_APP_INSTANCE"]
open(f"ready-{me}", "w").close()
while not got:
    time.sleep(0.05)
deadline = time.monotonic() + 0.5
while time.monotonic() < deadline:
    time.sleep(0.05)
with open(f"got-{me}.tmp", "w") as f:
    f.write(" ".join(got))
os.rename(f"got-{me}.tmp", f"got-{me}")
"#;

#[test]
fn stop_signal_is_delivered_once() {
    // Several instances, because a duplicate that arrives while the first signal is still
    // pending merges with it and cannot be seen.
    const N: usize = 6;
    let env = TestEnv::new();
    env.script("count.py", COUNT_SIGNALS);
    env.ok(&["start", "count.py", "--name", "count", "-i", &N.to_string()]);
    for i in 0..N {
        env.wait_exists(&format!("ready-{i}"));
    }
    env.ok(&["stop", "count"]);
    assert!(
        env.app_pids().is_empty(),
        "left after stop: {:?}",
        env.app_pids()
    );
    let got: Vec<String> = (0..N)
        .map(|i| {
            std::fs::read_to_string(env.path(&format!("got-{i}")))
                .unwrap_or_else(|_| "(nothing)".into())
        })
        .collect();
    assert!(
        got.iter().all(|g| g == "SIGINT"),
        "stop signals received by each instance: {got:?}"
    );
}

#[test]
fn crash_kills_children_left_in_the_process_group() {
    let env = TestEnv::new();
    // First run: two background children in the main's group, then a crash.
    env.script(
        "crash-with-children.sh",
        "if [ -e crashed ]; then exec sleep 1000; fi\n\
         sleep 1000 &\necho $! >> children\nsleep 1000 &\necho $! >> children\n\
         touch crashed\nexit 1\n",
    );
    env.ok(&["start", "crash-with-children.sh", "--name", "crashy"]);
    let new_main = env.wait_for("a restart after the crash", || {
        let p = env.proc("crashy");
        (p["status"] == "online" && p["restarts"] == 1).then(|| p["pid"].as_u64().unwrap() as u32)
    });
    let children: Vec<u32> = std::fs::read_to_string(env.path("children"))
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(children.len(), 2);
    env.wait_for("the crashed main's children to be gone", || {
        children.iter().all(|c| !alive(*c)).then_some(())
    });
    assert_eq!(
        env.app_pids(),
        vec![new_main],
        "only the new main should run"
    );
}
