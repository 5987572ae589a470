//! The commands other than `start`: targets, pid/id/ping, signals, list and its JSON forms,
//! describe, aliases, help, kill, and metrics sampling.

mod common;

use std::fs;
use std::time::Duration;

use common::{TestEnv, alive, kill_pid};
use serde_json::Value;

const SLEEPER: &str = "exec sleep 1000\n";

/// Starts `alpha` (from loop.sh) and `beta` (from other.sh), both online.
fn two_apps(env: &TestEnv) {
    env.script("loop.sh", SLEEPER);
    env.script("other.sh", SLEEPER);
    env.ok(&["start", "loop.sh", "--name", "alpha"]);
    env.ok(&["start", "other.sh", "--name", "beta"]);
    env.wait_status("alpha", "online");
    env.wait_status("beta", "online");
}

fn status(env: &TestEnv, name: &str) -> String {
    env.proc(name)["status"].as_str().unwrap().to_string()
}

/// A script that traps SIGUSR2 (writing `usr2` to a marker file), then says it is ready.
fn usr2_trap(env: &TestEnv, name: &str) {
    env.script(
        "trap.sh",
        "trap 'echo got-usr2 > usr2' USR2\necho ready > ready\nwhile true; do sleep 0.05; done\n",
    );
    env.ok(&["start", "trap.sh", "--name", name]);
    env.wait_status(name, "online");
    env.wait_marker("ready");
}

// ---- targets ----

#[test]
fn target_by_id() {
    let env = TestEnv::new();
    two_apps(&env);
    let id = env.proc("beta")["id"].as_u64().unwrap().to_string();
    env.ok(&["stop", &id]);
    env.wait_status("beta", "stopped");
    assert_eq!(status(&env, "alpha"), "online");
}

#[test]
fn target_by_name() {
    let env = TestEnv::new();
    two_apps(&env);
    env.ok(&["stop", "alpha"]);
    env.wait_status("alpha", "stopped");
    assert_eq!(status(&env, "beta"), "online");
}

#[test]
fn target_all() {
    let env = TestEnv::new();
    two_apps(&env);
    env.ok(&["stop", "all"]);
    env.wait_status("alpha", "stopped");
    env.wait_status("beta", "stopped");
    assert!(env.app_pids().is_empty(), "left: {:?}", env.app_pids());
}

#[test]
fn target_by_relative_script_path() {
    let env = TestEnv::new();
    two_apps(&env);
    env.ok(&["stop", "loop.sh"]);
    env.wait_status("alpha", "stopped");
    assert_eq!(status(&env, "beta"), "online");
}

#[test]
fn target_by_regex() {
    let env = TestEnv::new();
    two_apps(&env);
    env.ok(&["stop", "/^al/"]);
    env.wait_status("alpha", "stopped");
    assert_eq!(status(&env, "beta"), "online");
}

#[test]
fn unknown_target_fails_and_lists_the_managed_names() {
    let env = TestEnv::new();
    two_apps(&env);
    let err = env.fail(&["stop", "gamma"]);
    assert!(err.contains("gamma"), "stderr: {err}");
    assert!(
        err.contains("alpha") && err.contains("beta"),
        "stderr should list the names: {err}"
    );
    assert_eq!(status(&env, "alpha"), "online");
    assert_eq!(status(&env, "beta"), "online");
}

#[test]
fn stop_all_with_nothing_managed_fails_with_a_message() {
    let env = TestEnv::new();
    let err = env.fail(&["stop", "all"]);
    assert!(err.contains("no process"), "stderr: {err}");
}

// ---- pid, id, ping ----

#[test]
fn pid_prints_the_pid_of_the_app() {
    let env = TestEnv::new();
    two_apps(&env);
    let pid = env.proc("alpha")["pid"].as_u64().unwrap();
    assert_eq!(env.ok(&["pid", "alpha"]).trim(), pid.to_string());
}

#[test]
fn id_prints_the_ids_as_a_json_array() {
    let env = TestEnv::new();
    env.script("w.sh", SLEEPER);
    env.ok(&["start", "w.sh", "-i", "2"]);
    let ids: Vec<u64> = serde_json::from_str(env.ok(&["id", "w"]).trim()).unwrap();
    let mut expected: Vec<u64> = env
        .list()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    expected.sort_unstable();
    assert_eq!(ids, expected);
    assert_eq!(ids.len(), 2);
}

#[test]
fn ping_prints_the_daemon_pid_and_version() {
    let env = TestEnv::new();
    let out = env.ok(&["ping"]);
    let pid = env.daemon_pid().expect("daemon.pid written");
    assert!(out.contains(&format!("pid {pid}")), "ping: {out}");
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "ping: {out}");
}

// ---- signals ----

#[test]
fn signal_with_the_signal_first_is_delivered() {
    let env = TestEnv::new();
    usr2_trap(&env, "trapper");
    env.ok(&["signal", "SIGUSR2", "trapper"]);
    assert_eq!(env.wait_marker("usr2"), "got-usr2\n");
    assert_eq!(status(&env, "trapper"), "online");
}

#[test]
fn signal_with_the_target_first_is_delivered() {
    let env = TestEnv::new();
    usr2_trap(&env, "trapper");
    env.ok(&["signal", "trapper", "SIGUSR2"]);
    assert_eq!(env.wait_marker("usr2"), "got-usr2\n");
    assert_eq!(status(&env, "trapper"), "online");
}

#[test]
fn signal_to_an_id_target_is_delivered() {
    let env = TestEnv::new();
    env.script("first.sh", SLEEPER);
    env.ok(&["start", "first.sh"]);
    usr2_trap(&env, "trapper");
    let id = env.proc("trapper")["id"].as_u64().unwrap();
    assert_eq!(id, 1, "ids are given from 0 in a fresh daemon");
    // PM2's form: `pm2 sendSignal SIGUSR2 1`; the id is also a valid signal number (SIGHUP).
    env.ok(&["signal", "SIGUSR2", "1"]);
    assert_eq!(env.wait_marker("usr2"), "got-usr2\n");
    assert_eq!(status(&env, "trapper"), "online");
}

#[test]
fn signal_with_a_bad_signal_name_fails_clearly() {
    let env = TestEnv::new();
    two_apps(&env);
    let err = env.fail(&["signal", "SIGBOGUS", "alpha"]);
    assert!(err.to_lowercase().contains("signal"), "stderr: {err}");
    assert_eq!(status(&env, "alpha"), "online");
}

// ---- list ----

const COLUMNS: [&str; 9] = [
    "id",
    "name",
    "namespace",
    "mode",
    "status",
    "pid",
    "cpu",
    "memory",
    "uptime",
];

#[test]
fn list_table_shows_the_columns_and_the_app() {
    let env = TestEnv::new();
    two_apps(&env);
    let pid = env.proc("alpha")["pid"].as_u64().unwrap();
    let out = env.ok(&["list"]);
    let header = out
        .lines()
        .find(|l| l.contains("namespace"))
        .unwrap_or_else(|| panic!("no header in {out}"));
    for col in COLUMNS {
        assert!(
            header
                .split(|c: char| !c.is_alphanumeric())
                .any(|w| w == col),
            "column {col} missing: {out}"
        );
    }
    let row = out
        .lines()
        .find(|l| l.contains("alpha"))
        .unwrap_or_else(|| panic!("no alpha row in {out}"));
    for cell in ["default", "fork", "online", &pid.to_string()] {
        assert!(row.contains(cell), "{cell} missing in row {row:?}");
    }
    assert!(!out.contains('\x1b'), "ANSI escapes with NO_COLOR: {out:?}");
}

#[test]
fn list_piped_without_no_color_has_no_ansi_escapes() {
    let env = TestEnv::new();
    two_apps(&env);
    let out = env
        .command(&["list"])
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("alpha"), "{text}");
    assert!(!text.contains('\x1b'), "ANSI escapes when piped: {text:?}");
}

/// `bm2 list` run on a pseudo-terminal (util-linux `script`); returns what the terminal got.
fn list_on_a_terminal(env: &TestEnv, no_color: bool) -> String {
    let mut cmd = std::process::Command::new("script");
    cmd.args([
        "-qec",
        &format!("{} list", env!("CARGO_BIN_EXE_bm2")),
        "/dev/null",
    ])
    .current_dir(env.dir.path())
    .env("BM2_HOME", env.home_path())
    .env_remove("NO_COLOR")
    .stdin(std::process::Stdio::null());
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    let out = cmd.output().expect("run script (util-linux)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn list_on_a_terminal_is_coloured_unless_no_color_is_set() {
    let env = TestEnv::new();
    two_apps(&env);
    let coloured = list_on_a_terminal(&env, false);
    assert!(
        coloured.contains("alpha") && coloured.contains("\x1b["),
        "expected colours on a terminal: {coloured:?}"
    );
    let plain = list_on_a_terminal(&env, true);
    assert!(plain.contains("alpha"), "{plain:?}");
    assert!(
        !plain.contains('\x1b'),
        "ANSI escapes with NO_COLOR on a terminal: {plain:?}"
    );
}

#[test]
fn list_sort_by_name() {
    let env = TestEnv::new();
    env.script("app.sh", SLEEPER);
    for name in ["charlie", "alpha", "bravo"] {
        env.ok(&["start", "app.sh", "--name", name]);
    }
    let sorted: Vec<Value> =
        serde_json::from_str(&env.ok(&["list", "--sort", "name", "--json"])).unwrap();
    let names: Vec<&str> = sorted.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha", "bravo", "charlie"]);
    let table = env.ok(&["list", "--sort", "name"]);
    let at = |n: &str| {
        table
            .find(n)
            .unwrap_or_else(|| panic!("{n} missing in {table}"))
    };
    assert!(
        at("alpha") < at("bravo") && at("bravo") < at("charlie"),
        "table not sorted by name:\n{table}"
    );
}

#[test]
fn list_sort_by_memory_descending() {
    let env = TestEnv::new();
    env.script("small.sh", SLEEPER);
    env.file("big.py", "import time\nx = b'x' * (64 * 1024 * 1024)\nopen('big-ready', 'w').write('ok\\n')\ntime.sleep(1000)\n");
    env.ok(&["start", "small.sh"]);
    env.ok(&["start", "big.py"]);
    env.wait_marker("big-ready");
    env.wait_for("big to be sampled above 64 MB", || {
        (env.proc("big")["memory"].as_u64().unwrap() > 64 << 20).then_some(())
    });
    let sorted: Vec<Value> =
        serde_json::from_str(&env.ok(&["list", "--sort", "memory:desc", "--json"])).unwrap();
    assert_eq!(sorted[0]["name"], "big", "list: {sorted:?}");
    let mem: Vec<u64> = sorted
        .iter()
        .map(|p| p["memory"].as_u64().unwrap())
        .collect();
    assert!(
        mem.windows(2).all(|w| w[0] >= w[1]),
        "not descending: {mem:?}"
    );
}

#[test]
fn list_sort_by_unknown_field_fails() {
    let env = TestEnv::new();
    two_apps(&env);
    let err = env.fail(&["list", "--sort", "bogus"]);
    assert!(err.contains("bogus"), "stderr: {err}");
}

// ---- jlist, prettylist, describe ----

#[test]
fn jlist_has_the_pm2_shape() {
    let env = TestEnv::new();
    let script = env.script("loop.sh", SLEEPER);
    env.ok(&[
        "start", "loop.sh", "--name", "alpha", "--env", "FOO=bar", "--", "x1",
    ]);
    let pid = env.wait_status("alpha", "online")["pid"].as_u64().unwrap();
    let j = env.jlist();
    assert_eq!(j.len(), 1);
    let p = &j[0];
    assert_eq!(p["name"], "alpha");
    assert_eq!(p["pm_id"], 0);
    assert_eq!(p["pid"], pid);
    assert!(p["monit"]["memory"].is_u64(), "monit: {}", p["monit"]);
    assert!(p["monit"]["cpu"].is_number(), "monit: {}", p["monit"]);
    let e = &p["pm2_env"];
    assert_eq!(e["status"], "online");
    assert_eq!(e["restart_time"], 0);
    assert_eq!(e["unstable_restarts"], 0);
    assert!(
        e["pm_uptime"].as_u64().unwrap() > 1_600_000_000_000,
        "pm_uptime: {}",
        e["pm_uptime"]
    );
    assert!(
        e["created_at"].as_u64().unwrap() > 1_600_000_000_000,
        "created_at: {}",
        e["created_at"]
    );
    assert_eq!(e["exec_mode"], "fork_mode");
    assert_eq!(e["instances"], 1);
    assert_eq!(e["namespace"], "default");
    let script = fs::canonicalize(script).unwrap();
    assert_eq!(e["pm_exec_path"], script.display().to_string());
    assert_eq!(
        e["pm_cwd"],
        fs::canonicalize(env.dir.path())
            .unwrap()
            .display()
            .to_string()
    );
    assert_eq!(e["exec_interpreter"], "bash");
    assert_eq!(e["node_args"], serde_json::json!([]));
    assert_eq!(e["args"], serde_json::json!(["x1"]));
    for key in ["pm_out_log_path", "pm_err_log_path", "pm_pid_path"] {
        assert!(
            e[key].as_str().is_some_and(|s| s.starts_with('/')),
            "{key}: {}",
            e[key]
        );
    }
    assert_eq!(e["watch"], false);
    assert_eq!(e["autorestart"], true);
    assert_eq!(e["env"]["FOO"], "bar");
    assert_eq!(e["FOO"], "bar", "env vars are flattened into pm2_env");
}

#[test]
fn describe_table_shows_name_status_and_script() {
    let env = TestEnv::new();
    two_apps(&env);
    let script = fs::canonicalize(env.path("loop.sh")).unwrap();
    let out = env.ok(&["describe", "alpha"]);
    assert!(out.contains("alpha"), "{out}");
    assert!(out.contains("online"), "{out}");
    assert!(out.contains(&script.display().to_string()), "{out}");
    assert!(!out.contains("beta"), "only alpha is described: {out}");
}

#[test]
fn describe_json_reports_the_last_exit_after_a_crash() {
    let env = TestEnv::new();
    // Crashes with code 3 the first time, then stays up.
    env.script(
        "crash.sh",
        "if [ -e crashed ]; then exec sleep 1000; fi\ntouch crashed\nexit 3\n",
    );
    env.ok(&["start", "crash.sh"]);
    let d = env.wait_for("crash to be restarted after its exit", || {
        let d = env.describe("crash");
        (d["restarts"] == 1 && d["status"] == "online").then_some(d)
    });
    assert_eq!(d["last_exit"]["code"], 3, "last_exit: {}", d["last_exit"]);
    assert!(
        d["last_exit"]["signal"].is_null(),
        "last_exit: {}",
        d["last_exit"]
    );
}

#[test]
fn describe_json_reports_the_signal_that_killed_the_app() {
    let env = TestEnv::new();
    two_apps(&env);
    let pid = env.proc("alpha")["pid"].as_u64().unwrap();
    kill_pid(pid as u32, "KILL");
    env.wait_new_pid("alpha", pid);
    assert_eq!(env.describe("alpha")["last_exit"]["signal"], "SIGKILL");
}

// ---- aliases ----

#[test]
fn list_aliases_list() {
    let env = TestEnv::new();
    two_apps(&env);
    for alias in ["ls", "l", "status", "ps"] {
        let out = env.ok(&[alias]);
        assert!(
            out.contains("alpha") && out.contains("beta"),
            "bm2 {alias}: {out}"
        );
    }
}

#[test]
fn delete_aliases_delete() {
    let env = TestEnv::new();
    two_apps(&env);
    env.ok(&["del", "alpha"]);
    env.ok(&["rm", "beta"]);
    assert!(env.list().is_empty(), "list: {:?}", env.list());
    assert!(env.app_pids().is_empty(), "left: {:?}", env.app_pids());
}

#[test]
fn describe_aliases_describe() {
    let env = TestEnv::new();
    two_apps(&env);
    for alias in ["show", "info"] {
        let out = env.ok(&[alias, "alpha"]);
        assert!(
            out.contains("alpha") && out.contains("online"),
            "bm2 {alias}: {out}"
        );
    }
}

#[test]
fn send_signal_alias_delivers() {
    let env = TestEnv::new();
    usr2_trap(&env, "trapper");
    env.ok(&["sendSignal", "SIGUSR2", "trapper"]);
    assert_eq!(env.wait_marker("usr2"), "got-usr2\n");
}

#[test]
fn dump_alias_saves() {
    let env = TestEnv::new();
    two_apps(&env);
    let out = env.ok(&["dump"]);
    assert!(out.contains("saved 2"), "{out}");
    let dump = fs::read_to_string(env.home_path().join("dump.json")).expect("dump.json written");
    assert!(
        dump.contains("alpha") && dump.contains("beta"),
        "dump: {dump}"
    );
}

// ---- version, help ----

#[test]
fn version_flag_prints_the_version() {
    let env = TestEnv::new();
    let out = env.ok(&["--version"]);
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    assert!(
        env.daemon_pid().is_none(),
        "--version must not start the daemon"
    );
}

#[test]
fn help_works_for_every_command() {
    let env = TestEnv::new();
    for cmd in [
        "start",
        "stop",
        "restart",
        "delete",
        "reset",
        "signal",
        "list",
        "jlist",
        "prettylist",
        "describe",
        "pid",
        "id",
        "ping",
        "kill",
        "save",
        "resurrect",
    ] {
        let out = env.ok(&[cmd, "--help"]);
        assert!(out.contains("Usage"), "bm2 {cmd} --help: {out}");
        assert!(out.contains(cmd), "bm2 {cmd} --help: {out}");
    }
    assert!(
        env.daemon_pid().is_none(),
        "--help must not start the daemon"
    );
}

// ---- kill ----

#[test]
fn kill_stops_every_app_and_the_daemon() {
    let env = TestEnv::new();
    two_apps(&env);
    // An app with a child process too.
    env.script("tree.sh", "sleep 1000 &\necho $! > child.pid\nwait\n");
    env.ok(&["start", "tree.sh"]);
    let child = env.wait_pid_file("child.pid");
    let daemon = env.daemon_pid().expect("daemon.pid");
    let apps = env.app_pids();
    assert_eq!(apps.len(), 4, "apps: {apps:?}");
    assert!(apps.contains(&child), "apps: {apps:?}, child {child}");
    env.ok(&["kill"]);
    assert!(!alive(daemon), "daemon {daemon} still alive after kill");
    let left: Vec<u32> = apps.into_iter().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "app processes left after kill: {left:?}");
    assert!(
        env.marked_pids().is_empty(),
        "left: {:?}",
        env.marked_pids()
    );
}

#[test]
fn kill_without_a_daemon_succeeds_and_says_so() {
    let env = TestEnv::new();
    let out = env.ok(&["kill"]);
    assert!(out.contains("not running"), "{out}");
    assert!(env.daemon_pid().is_none(), "kill must not start a daemon");
}

// ---- metrics ----

#[test]
fn memory_of_a_running_app_is_sampled() {
    let env = TestEnv::new();
    two_apps(&env);
    common::wait_for(
        "alpha's memory to be sampled",
        Duration::from_secs(5),
        || (env.proc("alpha")["memory"].as_u64().unwrap() > 0).then_some(()),
    );
}

#[test]
fn cpu_of_a_busy_app_is_sampled() {
    let env = TestEnv::new();
    env.script("busy.sh", "while :; do :; done\n");
    env.ok(&["start", "busy.sh"]);
    common::wait_for("busy's cpu to be sampled", Duration::from_secs(5), || {
        (env.proc("busy")["cpu"].as_f64().unwrap() > 10.0).then_some(())
    });
    env.ok(&["stop", "busy"]);
}
