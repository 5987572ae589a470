//! Surviving a daemon crash (state restore, stale socket, single daemon per home) and
//! `save` / `resurrect`.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{TestEnv, alive, kill_pid};
use serde_json::Value;

/// Starts `sleep 1000` under each name: single-process apps.
fn start_sleepers(env: &TestEnv, names: &[&str]) {
    for name in names {
        env.ok(&["start", "sleep", "--name", name, "--", "1000"]);
        env.wait_status(name, "online");
    }
}

/// SIGKILLs the daemon of `env` and waits until it is dead; returns its pid.
fn crash_daemon(env: &TestEnv) -> u32 {
    let pid = env.daemon_pid().expect("daemon.pid");
    assert!(alive(pid), "daemon {pid} is not running");
    kill_pid(pid, "KILL");
    env.wait_for("the daemon to die", || (!alive(pid)).then_some(()));
    pid
}

fn by_name<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list:?}"))
}

#[test]
fn daemon_crash_restores_apps_with_same_ids_and_new_pids() {
    let env = TestEnv::new();
    let names = ["alpha", "beta", "gamma"];
    start_sleepers(&env, &names);
    let before = env.list();
    let old_pids: Vec<u32> = before
        .iter()
        .map(|p| p["pid"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(env.app_pids().len(), 3);

    let old_daemon = crash_daemon(&env);
    // The apps outlive the daemon until the next one takes over.
    assert!(
        old_pids.iter().all(|p| alive(*p)),
        "apps died with the daemon"
    );

    let after = env.list();
    assert_ne!(env.daemon_pid(), Some(old_daemon), "no new daemon");
    assert_eq!(after.len(), 3, "{after:?}");
    for name in names {
        let (old, new) = (by_name(&before, name), by_name(&after, name));
        assert_eq!(new["id"], old["id"], "{name} changed id");
    }
    let new_pids: Vec<u32> = env.wait_for("the restored apps to be online", || {
        let list = env.list();
        list.iter()
            .map(|p| (p["status"] == "online").then(|| p["pid"].as_u64().unwrap() as u32))
            .collect()
    });
    for (old, new) in old_pids.iter().zip(&new_pids) {
        assert_ne!(old, new, "an app kept its pid across the daemon crash");
        assert!(alive(*new), "restored pid {new} is not running");
    }
    env.wait_for("the old app processes to be gone", || {
        old_pids.iter().all(|p| !alive(*p)).then_some(())
    });
    let mut live = env.app_pids();
    live.sort_unstable();
    let mut want = new_pids.clone();
    want.sort_unstable();
    assert_eq!(
        live, want,
        "app processes after the restore (old pids were {old_pids:?})"
    );
}

#[test]
fn daemon_crash_leftovers_outside_the_app_tree_are_stopped() {
    let env = TestEnv::new();
    // A double-forked grandchild in a session of its own, reparented away from the app.
    env.script("daemonize.py", common::DOUBLE_FORK);
    env.ok(&["start", "daemonize.py", "--name", "tree"]);
    let main = env.wait_status("tree", "online")["pid"].as_u64().unwrap() as u32;
    let grandchild = env.wait_pid_file("grandchild.pid");
    std::fs::remove_file(env.path("grandchild.pid")).unwrap();
    crash_daemon(&env);
    let new_main = env.wait_new_pid("tree", u64::from(main)) as u32;
    env.wait_for("the old main and grandchild to be gone", || {
        (!alive(main) && !alive(grandchild)).then_some(())
    });
    let new_grandchild = env.wait_pid_file("grandchild.pid");
    let mut live = env.app_pids();
    live.sort_unstable();
    let mut want = vec![new_main, new_grandchild];
    want.sort_unstable();
    assert_eq!(live, want, "app processes after the restore");
}

#[test]
fn daemon_crash_keeps_stopped_apps_stopped() {
    let env = TestEnv::new();
    start_sleepers(&env, &["running", "halted"]);
    env.ok(&["stop", "halted"]);
    crash_daemon(&env);
    let running = env.wait_status("running", "online");
    assert!(alive(running["pid"].as_u64().unwrap() as u32));
    let halted = env.proc("halted");
    assert_eq!(halted["status"], "stopped", "{halted}");
    assert!(halted["pid"].is_null(), "{halted}");
    assert_eq!(env.app_pids().len(), 1, "{:?}", env.app_pids());
}

#[test]
fn second_daemon_refuses_to_start_while_one_runs() {
    let env = TestEnv::new();
    env.ok(&["ping"]);
    let running = env.daemon_pid().unwrap();
    let mut child = env
        .command(&["daemon"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a second `bm2 daemon` kept running while daemon {running} runs");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "second daemon exited with {status}");
    assert!(stderr.contains("already running"), "stderr: {stderr:?}");
    assert_eq!(env.daemon_pid(), Some(running));
    assert!(alive(running));
    env.ok(&["ping"]);
}

#[test]
fn stale_socket_is_replaced_by_the_next_command() {
    let env = TestEnv::new();
    env.ok(&["ping"]);
    let old = crash_daemon(&env);
    let socket = env.home_path().join("daemon.sock");
    assert!(
        socket.exists(),
        "a SIGKILLed daemon should leave its socket behind"
    );
    let out = env.ok(&["ping"]);
    let new = env.daemon_pid().unwrap();
    assert_ne!(new, old);
    assert!(alive(new));
    assert!(out.contains(&format!("pid {new}")), "ping: {out}");
    assert!(socket.exists());
}

#[test]
fn save_kill_resurrect_brings_apps_back() {
    let env = TestEnv::new();
    start_sleepers(&env, &["web", "worker"]);
    let out = env.ok(&["save"]);
    assert!(out.contains("saved 2"), "save: {out}");
    env.ok(&["kill"]);
    env.wait_for("apps to be gone after kill", || {
        env.app_pids().is_empty().then_some(())
    });
    assert!(env.list().is_empty(), "kill forgets the apps");

    env.ok(&["resurrect"]);
    let list = env.wait_for("resurrected apps online", || {
        let list = env.list();
        (list.len() == 2 && list.iter().all(|p| p["status"] == "online")).then_some(list)
    });
    let mut names: Vec<&str> = list.iter().map(|p| p["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["web", "worker"]);
    for p in &list {
        assert!(alive(p["pid"].as_u64().unwrap() as u32), "{p}");
    }
    assert_eq!(env.app_pids().len(), 2);
}

#[test]
fn save_with_no_apps_writes_an_empty_dump() {
    let env = TestEnv::new();
    let out = env.ok(&["save"]);
    assert!(out.contains("saved 0"), "save: {out}");
    let dump: Value =
        serde_json::from_str(&std::fs::read_to_string(env.home_path().join("dump.json")).unwrap())
            .unwrap();
    assert_eq!(dump["instances"], serde_json::json!([]), "{dump}");
    env.ok(&["resurrect"]);
    assert!(env.list().is_empty());
}

#[test]
fn resurrect_without_dump_fails_clearly() {
    let env = TestEnv::new();
    let err = env.fail(&["resurrect"]);
    assert!(err.contains("no dump file"), "stderr: {err}");
    assert!(err.contains("bm2 save"), "stderr: {err}");
}
