//! Apps that cannot be spawned: the start fails with a clear message, registers nothing (so
//! the same command works once the cause is fixed), and the daemon keeps working.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::TestEnv;

/// Runs a `bm2 start` that must fail to spawn app `name`; checks the message (every needle,
/// case-insensitive), that the app is not managed, and that the daemon still answers.
fn start_fails(env: &TestEnv, args: &[&str], name: &str, needles: &[&str]) -> String {
    let err = env.fail(args);
    let lower = err.to_lowercase();
    for needle in needles {
        assert!(
            lower.contains(&needle.to_lowercase()),
            "stderr of bm2 {args:?} should say {needle:?}: {err}"
        );
    }
    assert!(lower.contains("not managed"), "{err}");
    assert!(
        env.list().iter().all(|p| p["name"] != name),
        "{name} should not be managed: {:?}",
        env.list()
    );
    env.ok(&["ping"]);
    assert!(
        env.app_pids().is_empty(),
        "nothing should run: {:?}",
        env.app_pids()
    );
    err
}

#[test]
fn missing_script_is_reported_and_errored() {
    let env = TestEnv::new();
    start_fails(
        &env,
        &["start", "missing.js"],
        "missing",
        &["not found", "missing.js"],
    );
    // Fixed, the same command works (it used to say "already managed").
    env.file("missing.js", "setInterval(() => {}, 1000);\n");
    env.ok(&["start", "missing.js"]);
    env.wait_status("missing", "online");
}

#[test]
fn a_failed_start_of_several_instances_registers_none() {
    let env = TestEnv::new();
    start_fails(
        &env,
        &["start", "absent.sh", "-i", "3"],
        "absent",
        &["not found", "absent.sh"],
    );
    assert!(env.list().is_empty(), "{:?}", env.list());
    let state = std::fs::read_to_string(env.home_path().join("state.json")).unwrap();
    assert!(!state.contains("absent"), "{state}");
    assert!(
        env.log_file_names().is_empty(),
        "log files left: {:?}",
        env.log_file_names()
    );
}

#[test]
fn non_executable_file_without_known_extension_is_reported() {
    let env = TestEnv::new();
    env.file("data.bin", "not a program\n");
    let err = start_fails(
        &env,
        &["start", "data.bin"],
        "data",
        &["not executable", "data.bin"],
    );
    assert!(err.to_lowercase().contains("permission denied"), "{err}");
}

#[test]
fn interpreter_none_on_a_non_executable_file_is_reported() {
    let env = TestEnv::new();
    env.file("plain.sh", "exec sleep 1000\n");
    start_fails(
        &env,
        &["start", "plain.sh", "--interpreter", "none"],
        "plain",
        &["not executable", "plain.sh"],
    );
}

#[test]
fn unknown_interpreter_is_reported() {
    let env = TestEnv::new();
    env.file("app.py", "import time\ntime.sleep(1000)\n");
    start_fails(
        &env,
        &["start", "app.py", "--interpreter", "nonexistent-interp"],
        "app",
        &["interpreter not found", "nonexistent-interp"],
    );
}

#[test]
fn missing_cwd_is_reported() {
    let env = TestEnv::new();
    env.script("app.sh", "exec sleep 1000\n");
    // Reported by the command itself, before anything is created (no daemon is even started).
    let err = env.fail(&["start", "app.sh", "--cwd", "/nonexistent"]);
    assert!(err.contains("cwd") && err.contains("/nonexistent"), "{err}");
    assert!(env.daemon_pid().is_none(), "a daemon was started");
}

#[test]
fn unknown_user_is_reported() {
    let env = TestEnv::new();
    env.script("app.sh", "exec sleep 1000\n");
    start_fails(
        &env,
        &["start", "app.sh", "--uid", "nosuchuser"],
        "app",
        &["nosuchuser"],
    );
}

/// A PATH with only a fake `node` that says it is v20 (and no bun).
fn path_with_node_20(env: &TestEnv) -> String {
    let bin = env.path("fakebin");
    fs::create_dir(&bin).unwrap();
    let node = bin.join("node");
    fs::write(&node, "#!/bin/sh\necho v20.11.1\n").unwrap();
    fs::set_permissions(&node, fs::Permissions::from_mode(0o755)).unwrap();
    bin.display().to_string()
}

#[test]
fn typescript_without_bun_on_node_20_says_what_to_install() {
    let env = TestEnv::new();
    env.file(
        "app.ts",
        "const n: number = 1;\nsetInterval(() => {}, 1000);\n",
    );
    let out = env
        .command(&["start", "app.ts"])
        .env("PATH", path_with_node_20(&env))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "start should fail: {err}");
    let lower = err.to_lowercase();
    assert!(
        lower.contains("install bun"),
        "stderr should say to install bun: {err}"
    );
    assert!(
        lower.contains("node 22"),
        "stderr should name a newer node: {err}"
    );
    assert!(lower.contains("not managed"), "{err}");
    assert!(env.list().is_empty(), "{:?}", env.list());
    env.ok(&["ping"]);
}

#[test]
fn daemon_still_starts_valid_apps_after_spawn_errors() {
    let env = TestEnv::new();
    env.file("data.bin", "x\n");
    env.file("app.py", "import time\ntime.sleep(1000)\n");
    env.file("app.ts", "setInterval(() => {}, 1000);\n");
    env.script("good.sh", "echo good\nexec sleep 1000\n");
    env.fail(&["start", "missing.js"]);
    env.fail(&["start", "data.bin"]);
    env.fail(&[
        "start",
        "app.py",
        "--name",
        "interp",
        "--interpreter",
        "nonexistent-interp",
    ]);
    env.fail(&["start", "good.sh", "--name", "cwd", "--cwd", "/nonexistent"]);
    env.fail(&["start", "good.sh", "--name", "user", "--uid", "nosuchuser"]);
    let ts = env
        .command(&["start", "app.ts"])
        .env("PATH", path_with_node_20(&env))
        .output()
        .unwrap();
    assert!(!ts.status.success());
    let listed = env.list();
    assert!(
        listed.is_empty(),
        "failed starts register nothing: {listed:?}"
    );

    env.ok(&["start", "good.sh"]);
    env.wait_status("good", "online");
    env.wait_out("good", "good\n");
    assert_eq!(env.app_pids().len(), 1, "apps: {:?}", env.app_pids());
    env.ok(&["ping"]);
}

#[test]
fn absurd_instance_counts_are_refused_and_the_daemon_lives_on() {
    let env = TestEnv::new();
    let err = env.fail(&["start", "sleep", "-i", "999999", "--", "1000"]);
    assert!(err.contains("instances"), "{err}");
    env.ok(&["start", "sleep", "--name", "one", "--", "1000"]);
    let err = env.fail(&["scale", "one", "+9223372036854775807"]);
    assert!(err.contains("at most"), "{err}");
    env.ok(&["ping"]);
}
