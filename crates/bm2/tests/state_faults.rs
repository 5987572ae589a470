//! Faults at shutdown and under hostile clients: the state a daemon leaves when it is stopped
//! by a signal or killed in the middle of a start, `kill` with no daemon, a socket file removed
//! under a live daemon, clients that hang up, very large requests, and a full disk.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::{TestEnv, alive, kill_pid};
use serde_json::{Value, json};

/// Starts `n` sleepers named `app0`.. with one `bm2 start` of a JSON ecosystem file.
fn start_many(env: &TestEnv, n: usize) -> Vec<String> {
    let names: Vec<String> = (0..n).map(|i| format!("app{i}")).collect();
    let apps: Vec<Value> = names
        .iter()
        .map(|n| json!({"name": n, "script": "sleep", "args": "1000", "interpreter": "none"}))
        .collect();
    env.file("eco.json", &json!({ "apps": apps }).to_string());
    env.ok(&["start", "eco.json"]);
    names
}

/// Sends `signal` to the daemon and waits until it has exited.
fn signal_daemon(env: &TestEnv, signal: &str) -> u32 {
    let pid = env.daemon_pid().expect("daemon.pid");
    kill_pid(pid, signal);
    env.wait_for("the daemon to exit", || (!alive(pid)).then_some(()));
    pid
}

fn statuses(env: &TestEnv) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = env
        .list()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn sigterm_keeps_every_app_that_should_run() {
    let env = TestEnv::new();
    let names: Vec<String> = (0..10).map(|i| format!("app{i}")).collect();
    for n in &names {
        env.ok(&["start", "sleep", "--name", n, "--", "1000"]);
    }
    env.ok(&["stop", "app9"]);
    for round in 0..8 {
        for n in &names[..9] {
            env.wait_status(n, "online");
        }
        signal_daemon(&env, "TERM");
        assert!(
            env.app_pids().is_empty(),
            "round {round}: apps left running"
        );
        let state: Value = serde_json::from_str(
            &std::fs::read_to_string(env.home_path().join("state.json")).unwrap(),
        )
        .unwrap();
        let running = state["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["running"] == true)
            .count();
        assert_eq!(running, 9, "round {round}: state after SIGTERM: {state}");
        // The next daemon starts exactly the apps that were running.
        let rows = statuses(&env);
        let online = rows.iter().filter(|(_, s)| s != "stopped").count();
        assert_eq!(online, 9, "round {round}: {rows:?}");
        assert_eq!(
            env.proc("app9")["status"],
            "stopped",
            "round {round}: {rows:?}"
        );
    }
}

#[test]
fn kill_leaves_an_empty_list_for_the_next_daemon() {
    let env = TestEnv::new();
    for round in 0..6 {
        env.start_sleeper("once");
        env.ok(&["stop", "once"]);
        env.ok(&["kill"]);
        assert!(env.list().is_empty(), "round {round}: {:?}", env.list());
        // And the same start works again.
        env.start_sleeper("once");
        env.ok(&["kill"]);
    }
}

#[test]
fn save_kill_resurrect_brings_back_every_saved_app() {
    let env = TestEnv::new();
    let names = start_many(&env, 5);
    for round in 0..3 {
        for n in &names {
            env.wait_status(n, "online");
        }
        env.ok(&["save"]);
        env.ok(&["kill"]);
        assert!(env.app_pids().is_empty(), "round {round}");
        env.ok(&["resurrect"]);
        for n in &names {
            env.wait_status(n, "online");
        }
        assert_eq!(env.app_pids().len(), 5, "round {round}");
    }
}

/// Every live app process of the home is the main process of a listed instance, and no
/// instance has two.
fn assert_no_orphans(env: &TestEnv) {
    let listed: Vec<u32> = env
        .list()
        .iter()
        .filter_map(|p| p["pid"].as_u64())
        .map(|p| p as u32)
        .collect();
    let mut sorted = listed.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), listed.len(), "a pid listed twice: {listed:?}");
    let running = env.app_pids();
    let orphans: Vec<u32> = running
        .iter()
        .copied()
        .filter(|p| !listed.contains(p))
        .collect();
    assert!(orphans.is_empty(), "orphans {orphans:?}; listed {listed:?}");
}

#[test]
fn sigkill_during_a_multi_app_start_leaves_no_orphan() {
    let env = TestEnv::new();
    env.ok(&["ping"]);
    let apps: Vec<Value> = (0..40)
        .map(|i| json!({"name": format!("w{i}"), "script": "sleep", "args": "1000", "interpreter": "none"}))
        .collect();
    env.file("eco.json", &json!({ "apps": apps }).to_string());
    for (round, delay_ms) in [5u64, 30, 80].into_iter().enumerate() {
        let daemon = env.daemon_pid().expect("daemon.pid");
        let mut start = env
            .command(&["start", "eco.json"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill the daemon once the start is under way.
        env.wait_for("the first app process", || {
            (!env.app_pids().is_empty()).then_some(())
        });
        std::thread::sleep(Duration::from_millis(delay_ms));
        kill_pid(daemon, "KILL");
        env.wait_for("the daemon to die", || (!alive(daemon)).then_some(()));
        let _ = start.wait();
        // A new daemon restores what was recorded and stops what was not.
        assert_no_orphans(&env);
        env.ok(&["kill"]);
        assert!(
            env.app_pids().is_empty(),
            "round {round}: kill left {:?}",
            env.app_pids()
        );
        env.ok(&["ping"]);
    }
}

#[test]
fn kill_without_a_daemon_stops_what_the_dead_daemon_left() {
    let env = TestEnv::new();
    start_many(&env, 3);
    assert_eq!(env.app_pids().len(), 3);
    signal_daemon(&env, "KILL");
    assert_eq!(env.app_pids().len(), 3, "apps outlive a killed daemon");
    let out = env.ok(&["kill"]);
    assert!(out.contains("stopped 3 processes"), "{out}");
    assert!(env.app_pids().is_empty(), "{:?}", env.app_pids());
    assert!(env.list().is_empty(), "{:?}", env.list());
}

#[test]
fn a_removed_socket_is_reported_quickly_with_the_daemon_pid() {
    let env = TestEnv::new();
    env.start_sleeper("s");
    let daemon = env.daemon_pid().unwrap();
    std::fs::remove_file(env.home_path().join("daemon.sock")).unwrap();
    std::fs::remove_file(env.home_path().join("daemon.pid")).unwrap();
    let t = Instant::now();
    let err = env.fail(&["list"]);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert!(err.contains(&format!("pid {daemon}")), "{err}");
    assert!(err.contains(&format!("kill {daemon}")), "{err}");
    // `bm2 kill` cannot stop a daemon it cannot reach either: it says which one to stop, and
    // stops nothing behind its back.
    let err = env.fail(&["kill"]);
    assert!(err.contains(&format!("kill {daemon}")), "{err}");
    assert!(alive(daemon));
    // The hint works: the daemon stops its apps, and the next one restores them.
    kill_pid(daemon, "TERM");
    env.wait_for("the daemon to exit", || (!alive(daemon)).then_some(()));
    env.wait_status("s", "online");
}

#[test]
fn clients_that_hang_up_mid_request_do_not_kill_the_daemon() {
    let env = TestEnv::new();
    env.ok(&["ping"]);
    let daemon = env.daemon_pid().unwrap();
    let socket = env.home_path().join("daemon.sock");
    for i in 0..20 {
        let mut s = UnixStream::connect(&socket).unwrap();
        let body = "{\"apps\": [";
        let head = format!(
            "POST /v1/start HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            10_000 + i
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body.as_bytes()).unwrap();
        drop(s);
        // A request whose answer is written to a closed connection.
        let mut s = UnixStream::connect(&socket).unwrap();
        s.write_all(b"GET /v1/processes/details HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .unwrap();
        drop(s);
    }
    env.ok(&["ping"]);
    assert_eq!(env.daemon_pid(), Some(daemon), "the daemon was replaced");
    assert!(alive(daemon));
}

#[test]
fn ecosystem_files_of_thousands_of_apps_start() {
    let env = TestEnv::new();
    let apps: Vec<Value> = (0..2500)
        .map(|i| {
            json!({"name": format!("big-app-number-{i}"), "script": "sleep", "args": "1000",
                   "interpreter": "none", "autostart": false,
                   "env": {"DATABASE_URL": "postgres://user:secret@localhost:5432/db", "INDEX": i}})
        })
        .collect();
    env.file("big.json", &json!({ "apps": apps }).to_string());
    env.ok(&["start", "big.json"]);
    assert_eq!(env.list().len(), 2500);
}

#[test]
fn a_request_over_the_limit_is_refused_with_a_clear_error() {
    let env = TestEnv::new();
    let big = "x".repeat(65 << 20);
    env.file(
        "huge.json",
        &json!({"apps": [{"name": "huge", "script": "sleep", "args": "1", "env": {"BIG": big}}]})
            .to_string(),
    );
    let err = env.fail(&["start", "huge.json"]);
    assert!(err.contains("more than the daemon accepts"), "{err}");
    env.ok(&["ping"]);
}

#[test]
fn scale_updates_the_instance_count_everywhere() {
    let env = TestEnv::new();
    env.ok(&["start", "sleep", "--name", "pool", "-i", "2", "--", "1000"]);
    env.ok(&["scale", "pool", "4"]);
    env.wait_status("pool-3", "online");
    assert_eq!(env.describe("pool-0")["instances"], 4);
    let jlist = env.jlist();
    assert!(
        jlist.iter().all(|p| p["pm2_env"]["instances"] == 4),
        "{jlist:?}"
    );
    env.ok(&["save"]);
    let dump: Value =
        serde_json::from_str(&std::fs::read_to_string(env.home_path().join("dump.json")).unwrap())
            .unwrap();
    assert!(
        dump["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["count"] == 4),
        "{dump}"
    );
    env.ok(&["scale", "pool", "1"]);
    assert_eq!(env.describe("pool")["instances"], 1);
}

#[test]
fn concurrent_first_starts_of_one_app_register_it_once() {
    let env = TestEnv::new();
    env.file(
        "listen.py",
        "import os, socket, time\ns = socket.socket()\ns.bind(('127.0.0.1', int(os.environ['PORT'])))\ns.listen()\ntime.sleep(1000)\n",
    );
    env.ok(&["ping"]);
    for round in 0..4 {
        let name = format!("twin{round}");
        let port = common::free_port().to_string();
        let spawn = || {
            env.command(&[
                "start",
                "listen.py",
                "--name",
                &name,
                "--exec-mode",
                "cluster",
                "-i",
                "2",
                "--port",
                &port,
                "--listen-host",
                "127.0.0.1",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
        };
        let (mut a, mut b) = (spawn(), spawn());
        let ok = [a.wait().unwrap(), b.wait().unwrap()]
            .iter()
            .filter(|s| s.success())
            .count();
        let count = env.list().iter().filter(|p| p["name"] == name).count();
        assert_eq!(count, 2, "round {round}: {:?}", env.list());
        assert_eq!(ok, 1, "round {round}: both or neither start succeeded");
    }
}

#[test]
fn an_unreadable_state_file_is_reported_at_the_next_command() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.home_path()).unwrap();
    std::fs::write(
        env.home_path().join("state.json"),
        "{\"version\": 1, \"inst",
    )
    .unwrap();
    let (ok, _, err) = env.output(&["list"]);
    assert!(ok, "{err}");
    assert!(err.contains("could not be read"), "{err}");
    assert!(err.contains("broken-"), "{err}");
    let (_, _, again) = env.output(&["list"]);
    assert!(!again.contains("could not be read"), "told twice: {again}");
}

#[test]
fn a_daemon_that_cannot_start_says_why() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.home_path()).unwrap();
    std::fs::write(
        env.home_path().join("state.json"),
        r#"{"version": 99, "instances": []}"#,
    )
    .unwrap();
    let err = env.fail(&["list"]);
    assert!(err.contains("newer bm2"), "{err}");
    std::fs::remove_file(env.home_path().join("state.json")).unwrap();
}

#[test]
fn temporary_state_files_left_by_a_crash_are_removed() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.home_path()).unwrap();
    let stale = env.home_path().join(".state.json.4242.7.tmp");
    std::fs::write(&stale, "{\"half").unwrap();
    env.ok(&["ping"]);
    assert!(!stale.exists());
}

/// A tmpfs of `size` mounted on `dir` for the life of the value (root only).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_is_reported_and_nothing_is_lost_when_space_returns() {
    let env = TestEnv::new();
    let Some(_fs) = Tmpfs::mount(env.home_path(), "4m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    env.start_sleeper("first");
    let filler = env.home_path().join("filler");
    // Fill the disk.
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status();
    let (ok, _, err) = env.output(&["start", "sleep", "--name", "second", "--", "1000"]);
    assert!(
        !ok,
        "a start whose state could not be saved must not succeed quietly"
    );
    assert!(err.contains("not saved"), "{err}");
    // The apps run and the daemon lives.
    env.wait_status("second", "online");
    env.wait_status("first", "online");
    let state = std::fs::read_to_string(env.home_path().join("state.json")).unwrap();
    serde_json::from_str::<Value>(&state).expect("state.json stays valid");
    // Space returns: the next change is saved, with both apps.
    std::fs::remove_file(&filler).unwrap();
    env.ok(&["restart", "second"]);
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(env.home_path().join("state.json")).unwrap())
            .unwrap();
    assert_eq!(state["instances"].as_array().unwrap().len(), 2, "{state}");
    env.ok(&["kill"]);
}

#[test]
fn stopping_many_apps_at_once_keeps_the_daemon_small() {
    let env = TestEnv::new();
    start_many(&env, 120);
    env.wait_for("120 apps online", || {
        env.list()
            .iter()
            .all(|p| p["status"] == "online")
            .then_some(())
    });
    env.ok(&["delete", "all"]);
    let daemon = env.daemon_pid().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{daemon}/status")).unwrap();
    let threads: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    // The runtime thread, a bounded pool for blocking work, and the log and proxy helpers;
    // tokio's default pool grew to a thread per app being stopped.
    assert!(
        threads <= 40,
        "the daemon has {threads} threads after stopping 120 apps"
    );
}
