//! Apps that cannot be spawned: the start fails with a clear message, the app is listed as
//! `errored` with the reason, and the daemon keeps working.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::TestEnv;

/// Runs a `bm2 start` that must fail to spawn app `name`; checks the message (every needle,
/// case-insensitive), the errored row and its reason, and that the daemon still answers.
fn start_fails(env: &TestEnv, args: &[&str], name: &str, needles: &[&str]) -> String {
    let err = env.fail(args);
    let lower = err.to_lowercase();
    for needle in needles {
        assert!(
            lower.contains(&needle.to_lowercase()),
            "stderr of bm2 {args:?} should say {needle:?}: {err}"
        );
    }
    let p = env.proc(name);
    assert_eq!(p["status"], "errored", "row: {p}");
    assert!(p["pid"].is_null(), "row: {p}");
    let reason = env.describe(name)["status_reason"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        reason.contains(&needles[0].to_lowercase()),
        "status_reason {reason:?} should say {:?}",
        needles[0]
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
    start_fails(
        &env,
        &["start", "app.sh", "--cwd", "/nonexistent"],
        "app",
        &["cwd", "/nonexistent"],
    );
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
    let p = env.proc("app");
    assert_eq!(p["status"], "errored", "row: {p}");
    let reason = env.describe("app")["status_reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("bun"), "status_reason: {reason}");
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
    let errored = env.list();
    assert_eq!(errored.len(), 6, "list: {errored:?}");
    assert!(
        errored.iter().all(|p| p["status"] == "errored"),
        "list: {errored:?}"
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
