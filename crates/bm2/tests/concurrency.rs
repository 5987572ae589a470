//! Many CLI commands at once against one home: one daemon, one consistent process list.

mod common;

use std::collections::BTreeSet;
use std::sync::Barrier;

use common::TestEnv;
use serde_json::Value;

const APPS: usize = 20;

fn name(i: usize) -> String {
    format!("app{i}")
}

/// Runs `command(i)` for i in 0..APPS, all threads released together; returns each outcome.
fn concurrently(
    env: &TestEnv,
    command: impl Fn(usize) -> Vec<String> + Sync,
) -> Vec<(Vec<String>, std::process::Output)> {
    let barrier = Barrier::new(APPS);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..APPS)
            .map(|i| {
                let (barrier, command) = (&barrier, &command);
                s.spawn(move || {
                    let args = command(i);
                    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
                    let mut cmd = env.command(&argv);
                    barrier.wait();
                    let out = cmd.output().expect("run bm2");
                    (args, out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn assert_all_succeeded(results: &[(Vec<String>, std::process::Output)]) {
    for (args, out) in results {
        assert!(
            out.status.success(),
            "bm2 {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Checks that the list holds each app exactly once, with ids 0..APPS.
fn assert_consistent(list: &[Value]) {
    assert_eq!(list.len(), APPS, "list: {list:?}");
    let ids: BTreeSet<u64> = list.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (0..APPS as u64).collect(), "ids: {ids:?}");
    let names: BTreeSet<&str> = list.iter().map(|p| p["name"].as_str().unwrap()).collect();
    let expected: Vec<String> = (0..APPS).map(name).collect();
    assert_eq!(
        names,
        expected.iter().map(String::as_str).collect(),
        "names: {names:?}"
    );
}

/// Starts APPS apps with concurrent `bm2 start` commands, the daemon not running yet.
fn start_concurrently(env: &TestEnv) {
    env.script("app.sh", "exec sleep 1000\n");
    assert!(env.daemon_pid().is_none());
    let results = concurrently(env, |i| {
        vec!["start".into(), "app.sh".into(), "--name".into(), name(i)]
    });
    assert_all_succeeded(&results);
}

#[test]
fn concurrent_starts_share_one_auto_started_daemon() {
    let env = TestEnv::new();
    start_concurrently(&env);
    let list = env.list();
    assert_consistent(&list);
    for i in 0..APPS {
        env.wait_status(&name(i), "online");
    }
    let daemon = env.daemon_pid().expect("daemon.pid");
    // Daemons that lost the race exit by themselves; exactly one must remain, the one of daemon.pid.
    let daemons = env.wait_for("a single daemon process", || {
        let d = env.daemon_pids();
        (d.len() == 1).then_some(d)
    });
    assert_eq!(daemons, [daemon]);
    let ping = env.ok(&["ping"]);
    assert!(ping.contains(&format!("pid {daemon}")), "ping: {ping}");
    assert_eq!(env.app_pids().len(), APPS, "apps: {:?}", env.app_pids());
}

#[test]
fn concurrent_mixed_commands_leave_a_consistent_list() {
    let env = TestEnv::new();
    start_concurrently(&env);
    for i in 0..APPS {
        env.wait_status(&name(i), "online");
    }
    let before: Vec<u64> = (0..APPS)
        .map(|i| env.proc(&name(i))["pid"].as_u64().unwrap())
        .collect();
    let verb = |i: usize| match i % 3 {
        0 => "restart",
        1 => "stop",
        _ => "list",
    };
    let results = concurrently(&env, |i| match verb(i) {
        "list" => vec!["list".into(), "--json".into()],
        v => vec![v.into(), name(i)],
    });
    assert_all_succeeded(&results);
    for (args, out) in &results {
        if args[0] == "list" {
            let listed: Vec<Value> =
                serde_json::from_slice(&out.stdout).expect("list --json is JSON");
            assert_consistent(&listed);
        }
    }

    let list = env.list();
    assert_consistent(&list);
    let mut online = 0;
    for (i, &old_pid) in before.iter().enumerate() {
        let p = env.proc(&name(i));
        match verb(i) {
            "restart" => {
                assert_eq!(p["status"], "online", "{}: {p}", name(i));
                assert_ne!(
                    p["pid"].as_u64().unwrap(),
                    old_pid,
                    "{} kept its pid across restart",
                    name(i)
                );
                assert_eq!(p["restarts"], 1, "{}: {p}", name(i));
                online += 1;
            }
            "stop" => {
                assert_eq!(p["status"], "stopped", "{}: {p}", name(i));
                assert!(p["pid"].is_null(), "{}: {p}", name(i));
            }
            _ => {
                assert_eq!(p["status"], "online", "{}: {p}", name(i));
                assert_eq!(p["pid"].as_u64().unwrap(), old_pid, "{}: {p}", name(i));
                online += 1;
            }
        }
    }
    assert_eq!(env.app_pids().len(), online, "apps: {:?}", env.app_pids());
}

#[test]
fn concurrent_starts_of_one_name_start_it_once() {
    let env = TestEnv::new();
    env.script("app.sh", "exec sleep 1000\n");
    let results = concurrently(&env, |_| {
        vec![
            "start".into(),
            "app.sh".into(),
            "--name".into(),
            "solo".into(),
        ]
    });
    let (ok, failed): (Vec<_>, Vec<_>) = results.iter().partition(|(_, out)| out.status.success());
    assert_eq!(
        ok.len(),
        1,
        "exactly one start should succeed; {} did",
        ok.len()
    );
    for (_, out) in failed {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("already"), "stderr: {err}");
    }
    let list = env.list();
    assert_eq!(list.len(), 1, "list: {list:?}");
    env.wait_status("solo", "online");
    assert_eq!(env.app_pids().len(), 1, "apps: {:?}", env.app_pids());
}

#[test]
fn concurrent_restarts_of_one_app_leave_one_process() {
    let env = TestEnv::new();
    env.script("app.sh", "exec sleep 1000\n");
    env.ok(&["start", "app.sh", "--name", "solo"]);
    let first = env.wait_status("solo", "online")["pid"].as_u64().unwrap();
    let results = concurrently(&env, |_| vec!["restart".into(), "solo".into()]);
    assert_all_succeeded(&results);
    let p = env.proc("solo");
    assert_eq!(p["status"], "online", "{p}");
    assert_eq!(p["restarts"], APPS, "{p}");
    let pid = p["pid"].as_u64().unwrap();
    assert_ne!(pid, first);
    assert_eq!(
        env.app_pids(),
        [pid as u32],
        "only the last process should run"
    );
    assert_eq!(env.list().len(), 1);
}
