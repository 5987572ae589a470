//! `bm2 update` in place: the daemon hands itself over to the bm2 binary the CLI runs from
//! (same pid, re-executed), keeping every app process (same pid, not signalled), its output
//! pipes (no log line lost or doubled), the balancer's listening sockets and proxied connections
//! (no failed request), restart counters and uptimes. A new binary that cannot read the
//! handover falls back to PM2's update (save, new daemon, resurrect) with a warning; a broken
//! one leaves the old daemon and its apps untouched.
//!
//! The new binary is a copy of the tested one in the test's work directory, run as the CLI
//! (`<copy> update`: the daemon is handed to the binary running the command), or a stand-in
//! script named by `bm2 update --binary`.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::load::{
    Failure, KeepAlive, Load, NODE_SERVER, PY_PID_HANDLER, Stats, assert_no_failures, get_pid,
};
use common::{DEADLINE, TestEnv, alive, free_port};
use serde_json::Value;

// ---- apps ----

/// Node: writes `tick N` (N = 1, 2, …) to stdout every millisecond.
const TICKER: &str = "\
let n = 0;
setInterval(() => { n += 1; process.stdout.write(`tick ${n}\\n`); }, 1);
";

/// Python: listens on `$PORT` (127.0.0.1), answers with its pid over HTTP/1.1 (keep-alive),
/// logs nothing.
fn py_server() -> String {
    format!(
        "\
import http.server, os

{PY_PID_HANDLER}
H.protocol_version = 'HTTP/1.1'
http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()
"
    )
}

// ---- the new binary ----

/// A copy of the tested bm2 binary at `<work>/new/bm2` (named `bm2`, as an installed one is).
fn copy_of_bm2(env: &TestEnv) -> PathBuf {
    let dir = env.path("new");
    fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("bm2");
    fs::copy(env!("CARGO_BIN_EXE_bm2"), &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    // Another test thread forking while the copy was open for writing makes its first exec fail
    // with ETXTBSY until that child has exec'd: wait until it runs.
    env.wait_for("the copy of bm2 to run", || {
        Command::new(&copy)
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
    });
    fs::canonicalize(copy).unwrap()
}

/// `bm2 <args>` run by `program` in the test's environment.
fn run_with(env: &TestEnv, program: &Path, args: &[&str]) -> Output {
    let harness = env.command(args);
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(env.dir.path());
    for (k, v) in harness.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.output().expect("run bm2")
}

/// `bm2 update --binary <binary>`: the daemon is handed over to `binary` rather than to the
/// binary running the command (a wrapper or a broken file stands in for a new release).
fn update_to(env: &TestEnv, binary: &Path) -> Output {
    let binary = binary.to_str().expect("a UTF-8 path");
    env.command(&["update", "--binary", binary])
        .output()
        .expect("run bm2")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn describe_output(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

// ---- bm2 state ----

/// `bm2 ping`: (daemon pid, the whole output).
fn ping(env: &TestEnv) -> (u32, String) {
    let out = env.ok(&["ping"]);
    let pid = out
        .split("pid ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no daemon pid in `bm2 ping`: {out}"));
    (pid, out)
}

/// What an update must keep of each process, by `pm_id`: (name, pid, `restart_time`, `pm_uptime`).
type Snapshot = BTreeMap<u64, (String, u64, u64, u64)>;

fn snapshot(env: &TestEnv) -> Snapshot {
    env.jlist()
        .iter()
        .map(|p| {
            let e = &p["pm2_env"];
            (
                p["pm_id"].as_u64().unwrap(),
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["pid"].as_u64().unwrap_or(0),
                    e["restart_time"].as_u64().unwrap(),
                    e["pm_uptime"].as_u64().unwrap_or(0),
                ),
            )
        })
        .collect()
}

fn pids_of(s: &Snapshot) -> BTreeMap<u64, u64> {
    s.iter().map(|(id, (_, pid, _, _))| (*id, *pid)).collect()
}

/// Waits until the app has `n` instances, all online and ready behind the balancer.
fn wait_cluster_ready(env: &TestEnv, app: &str, n: usize) {
    env.wait_for(&format!("{n} ready instances of {app}"), || {
        let ds: Vec<Value> = serde_json::from_str(&env.ok(&["describe", app, "--json"])).unwrap();
        (ds.len() == n
            && ds.iter().all(|d| {
                d["status"] == "online" && d["pid"].is_u64() && d["cluster"]["ready"] == true
            }))
        .then_some(())
    });
}

// ---- the ticking app's log ----

/// The numbers of the `tick N` lines of `log`, in order.
fn ticks(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| l.strip_prefix("tick ")?.trim().parse().ok())
        .collect()
}

/// The highest tick in the log file at `path` (0 when none).
fn last_tick(path: &Path) -> u64 {
    ticks(&fs::read_to_string(path).unwrap_or_default())
        .into_iter()
        .max()
        .unwrap_or(0)
}

/// Asserts that the ticks run from their first to their last number, each exactly once.
fn assert_every_tick_once(ticks: &[u64]) {
    let mut problems = Vec::new();
    for w in ticks.windows(2) {
        if w[1] != w[0] + 1 {
            problems.push(format!("{} followed by {}", w[0], w[1]));
        }
    }
    assert!(
        problems.is_empty(),
        "the ticking app's log has {} gaps or repeats among {} lines ({}..={}); first: {:?}",
        problems.len(),
        ticks.len(),
        ticks.first().unwrap_or(&0),
        ticks.last().unwrap_or(&0),
        &problems[..problems.len().min(10)]
    );
}

// ---- HTTP load ----

type Client = Box<dyn FnMut() -> Result<u32, Failure> + Send>;

/// Requests to `port` in a loop: one client opening a new connection per request, and one
/// keeping a single connection open.
fn load_on(port: u16) -> Load {
    let mut ka = KeepAlive::new(port);
    let clients: Vec<(String, Client)> = vec![
        (
            format!("new connection per request (port {port})"),
            Box::new(move || get_pid(port)),
        ),
        (
            format!("keep-alive connection (port {port})"),
            Box::new(move || ka.get_pid()),
        ),
    ];
    Load::run(clients, Duration::from_millis(2))
}

/// Keeps `load` running for about a second more (and at least 50 requests), then stops it.
fn finish_after_a_second(load: Load) -> Stats {
    let until = Instant::now() + Duration::from_secs(1);
    load.wait_requests(50);
    common::wait_for("a second of load after the update", DEADLINE, || {
        (Instant::now() >= until).then_some(())
    });
    load.finish()
}

// ---- 1. in place ----

#[test]
fn update_in_place_keeps_every_app_running() {
    let env = TestEnv::new();
    let port = free_port();
    env.file("ticker.js", TICKER);
    env.file("server.js", NODE_SERVER);
    env.ok(&["start", "ticker.js", "--name", "ticker"]);
    env.ok(&["start", "server.js", "-i", "4", "--port", &port.to_string()]);
    env.wait_status("ticker", "online");
    wait_cluster_ready(&env, "server", 4);
    let log_path = PathBuf::from(
        env.describe("ticker")["out_log"]
            .as_str()
            .expect("out_log is a path"),
    );
    env.wait_for("the ticker to have written 100 lines", || {
        (last_tick(&log_path) >= 100).then_some(())
    });
    let copy = copy_of_bm2(&env);

    let load = load_on(port);
    load.wait_requests(50);
    let (daemon, _) = ping(&env);
    let before = snapshot(&env);
    assert_eq!(before.len(), 5, "the ticker and 4 instances: {before:?}");

    let started = Instant::now();
    let out = run_with(&env, &copy, &["update"]);
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "`{} update` failed: {}",
        copy.display(),
        describe_output(&out)
    );
    let at_return = last_tick(&log_path);
    let stats = finish_after_a_second(load);
    env.wait_for("200 ticker lines written after the update returned", || {
        (last_tick(&log_path) >= at_return + 200).then_some(())
    });

    let (daemon_after, ping_out) = ping(&env);
    assert_eq!(
        daemon_after,
        daemon,
        "the daemon keeps its pid (it re-executes itself); update took {took:?}; its output: {}",
        describe_output(&out)
    );
    let after = snapshot(&env);
    assert_eq!(
        pids_of(&after),
        pids_of(&before),
        "every app keeps its pid (by pm_id)"
    );
    for pid in pids_of(&before).values() {
        assert!(alive(*pid as u32), "app pid {pid} is still running");
    }
    assert!(
        ping_out.contains(&format!("binary {}", copy.display()))
            && ping_out.contains("updated in place once"),
        "`bm2 ping` names the copy the daemon now runs, updated once: {ping_out}"
    );
    assert_eq!(
        after, before,
        "names, pids, restart counters and start times (pm_uptime) are kept"
    );
    assert_no_failures(&stats, "the update");
    assert_every_tick_once(&ticks(&fs::read_to_string(&log_path).unwrap()));

    env.ok(&["stop", "all"]);
    env.ok(&["kill"]);
    assert!(!alive(daemon), "the daemon exited after `bm2 kill`");
}

#[test]
fn update_in_place_keeps_a_python_cluster_serving() {
    let env = TestEnv::new();
    let port = free_port();
    env.file("server.py", &py_server());
    env.ok(&[
        "start",
        "server.py",
        "-i",
        "2",
        "--exec-mode",
        "cluster",
        "--interpreter",
        "python3",
        "--port",
        &port.to_string(),
    ]);
    wait_cluster_ready(&env, "server", 2);
    let copy = copy_of_bm2(&env);
    let load = load_on(port);
    load.wait_requests(50);
    let (daemon, _) = ping(&env);
    let before = snapshot(&env);

    let out = run_with(&env, &copy, &["update"]);
    assert!(out.status.success(), "{}", describe_output(&out));
    let stats = finish_after_a_second(load);

    assert_eq!(ping(&env).0, daemon, "the daemon keeps its pid");
    assert_eq!(
        snapshot(&env),
        before,
        "both instances keep their pids, counters and start times"
    );
    assert_no_failures(&stats, "the update of a Python cluster app");
}

// ---- 2. a new binary that cannot read the handover ----

#[test]
fn update_falls_back_when_the_new_binary_cannot_take_over() {
    let env = TestEnv::new();
    let real = env!("CARGO_BIN_EXE_bm2");
    let asked = env.path("asked");
    // Reads handover format 99 only; otherwise the real bm2 (run under this script's name).
    let wrapper = fs::canonicalize(env.script(
        "bm2-next",
        &format!(
            "#!/bin/bash\n\
             echo \"$*\" >> {asked:?}\n\
             if [ \"$*\" = \"daemon --handover-formats\" ]; then echo 99; exit 0; fi\n\
             exec -a \"$0\" {real:?} \"$@\"\n"
        ),
    ))
    .unwrap();
    let a = env.start_sleeper("a");
    env.file("ticker.js", TICKER);
    env.ok(&["start", "ticker.js", "--name", "ticker"]);
    let ticker = env.wait_status("ticker", "online")["pid"].as_u64().unwrap();
    let (daemon, _) = ping(&env);

    let out = update_to(&env, &wrapper);
    assert!(out.status.success(), "{}", describe_output(&out));
    let stderr = text(&out.stderr);
    assert!(
        fs::read_to_string(&asked)
            .unwrap_or_default()
            .lines()
            .any(|l| l == "daemon --handover-formats"),
        "the new binary {} was asked which handover formats it reads: {}",
        wrapper.display(),
        describe_output(&out)
    );
    assert!(
        stderr.contains("cannot take over"),
        "a warning says the new binary cannot take over: {}",
        describe_output(&out)
    );
    let (new_daemon, _) = ping(&env);
    assert_ne!(new_daemon, daemon, "PM2's update: a new daemon");
    assert!(!alive(daemon), "the old daemon exited");
    assert_ne!(env.wait_new_pid("a", a), a);
    assert_ne!(env.wait_new_pid("ticker", ticker), ticker);
}

// ---- 3. a broken new binary ----

#[test]
fn a_broken_new_binary_leaves_the_daemon_and_apps_untouched() {
    let env = TestEnv::new();
    env.start_sleeper("a");
    env.file("ticker.js", TICKER);
    env.ok(&["start", "ticker.js", "--name", "ticker"]);
    env.wait_status("ticker", "online");
    let (daemon, ping_before) = ping(&env);
    let before = snapshot(&env);

    let failing = fs::canonicalize(env.script("bm2-failing", "#!/bin/sh\nexit 1\n")).unwrap();
    let not_executable = fs::canonicalize(env.dir.path())
        .unwrap()
        .join("bm2-not-executable");
    fs::copy(env!("CARGO_BIN_EXE_bm2"), &not_executable).unwrap();
    fs::set_permissions(&not_executable, fs::Permissions::from_mode(0o644)).unwrap();

    for broken in [&failing, &not_executable] {
        let out = update_to(&env, broken);
        assert!(
            !out.status.success(),
            "an update to {} must fail: {}",
            broken.display(),
            describe_output(&out)
        );
        assert!(
            text(&out.stderr).contains(&broken.display().to_string()),
            "the error names the new binary {}: {}",
            broken.display(),
            describe_output(&out)
        );
        let (pid, ping_after) = ping(&env);
        assert_eq!(pid, daemon, "the old daemon keeps running");
        assert_eq!(
            ping_after.lines().nth(1),
            ping_before.lines().nth(1),
            "the daemon still runs its own binary, not updated"
        );
        assert_eq!(
            snapshot(&env),
            before,
            "every app untouched after an update to {}",
            broken.display()
        );
        for pid in pids_of(&before).values() {
            assert!(alive(*pid as u32), "app pid {pid} is still running");
        }
        assert_eq!(env.list().len(), 2, "`bm2 list` works");
    }
}

// ---- 4. a handover that fails at the last step ----

/// A stand-in for a new release that passes the format check, then deletes itself: the daemon
/// has frozen everything when its `execve` fails, and must take it all back.
fn vanishing_binary(env: &TestEnv) -> PathBuf {
    let real = env!("CARGO_BIN_EXE_bm2");
    fs::canonicalize(env.script(
        "bm2-vanishing",
        &format!(
            "#!/bin/sh\n\
             if [ \"$*\" = \"daemon --handover-formats\" ]; then rm -f -- \"$0\"; fi\n\
             exec {real:?} \"$@\"\n"
        ),
    ))
    .unwrap()
}

#[test]
fn a_handover_that_fails_at_exec_leaves_every_app_running() {
    let env = TestEnv::new();
    let port = free_port();
    env.file("ticker.js", TICKER);
    env.file("server.js", NODE_SERVER);
    env.ok(&["start", "ticker.js", "--name", "ticker"]);
    env.ok(&["start", "server.js", "-i", "2", "--port", &port.to_string()]);
    env.wait_status("ticker", "online");
    wait_cluster_ready(&env, "server", 2);
    let log_path = PathBuf::from(env.describe("ticker")["out_log"].as_str().unwrap());
    env.wait_for("the ticker to have written 100 lines", || {
        (last_tick(&log_path) >= 100).then_some(())
    });
    let vanishing = vanishing_binary(&env);
    let load = load_on(port);
    load.wait_requests(50);
    let (daemon, ping_before) = ping(&env);
    let before = snapshot(&env);

    let out = update_to(&env, &vanishing);
    assert!(
        !out.status.success(),
        "the exec of a binary gone meanwhile fails: {}",
        describe_output(&out)
    );
    assert!(
        text(&out.stderr).contains(&vanishing.display().to_string()),
        "the error names the binary: {}",
        describe_output(&out)
    );
    let at_return = last_tick(&log_path);
    let stats = finish_after_a_second(load);
    env.wait_for("200 ticker lines written after the failed update", || {
        (last_tick(&log_path) >= at_return + 200).then_some(())
    });
    let (pid, ping_after) = ping(&env);
    assert_eq!(pid, daemon, "the same daemon runs on");
    assert_eq!(
        ping_after.lines().nth(1),
        ping_before.lines().nth(1),
        "still its own binary, not updated"
    );
    assert_eq!(snapshot(&env), before, "every app untouched");
    assert_no_failures(&stats, "a failed handover");
    assert_every_tick_once(&ticks(&fs::read_to_string(&log_path).unwrap()));

    // What was taken back can be handed over again, and the apps still act on commands.
    let copy = copy_of_bm2(&env);
    let out = run_with(&env, &copy, &["update"]);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(snapshot(&env), before);
    env.ok(&["restart", "ticker"]);
    env.wait_new_pid("ticker", before[&0].1);
    env.ok(&["kill"]);
}

// ---- 5. two at once ----

#[test]
fn two_updates_at_once_keep_every_app() {
    let env = TestEnv::new();
    let a = env.start_sleeper("a");
    let copy = copy_of_bm2(&env);
    let (daemon, _) = ping(&env);
    let runs: Vec<Output> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| s.spawn(|| run_with(&env, &copy, &["update"])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let succeeded = runs.iter().filter(|o| o.status.success()).count();
    assert!(succeeded >= 1, "one update at least: {runs:?}");
    for out in runs.iter().filter(|o| !o.status.success()) {
        assert!(
            text(&out.stderr).contains("already under way"),
            "the other one says an update is under way: {}",
            describe_output(out)
        );
    }
    let (pid, ping_out) = ping(&env);
    assert_eq!(pid, daemon);
    assert!(ping_out.contains("updated in place"), "{ping_out}");
    assert_eq!(
        env.proc("a")["pid"].as_u64(),
        Some(a),
        "the app kept its pid"
    );
    env.ok(&["kill"]);
}

// ---- 6. every phase and channel ----

/// Node: echoes each line of its stdin to stdout as `got <line>`.
const ECHO: &str = "\
process.stdin.setEncoding('utf8');
let buf = '';
process.stdin.on('data', d => {
  buf += d;
  let i;
  while ((i = buf.indexOf('\\n')) >= 0) { console.log('got ' + buf.slice(0, i)); buf = buf.slice(i + 1); }
});
";

#[test]
fn update_keeps_stopped_errored_and_waiting_apps_stdin_and_held_ports() {
    let env = TestEnv::new();
    let port = free_port();
    env.file("server.js", NODE_SERVER);
    env.file("echo.js", ECHO);
    env.file("crash.js", "setTimeout(() => process.exit(3), 50);\n");
    // A fork-mode Node server on a port bm2 holds (through the shim, with an IPC channel).
    env.ok(&[
        "start",
        "server.js",
        "--name",
        "web",
        "--port",
        &port.to_string(),
    ]);
    env.ok(&["start", "echo.js", "--name", "echo"]);
    env.start_sleeper("stopped");
    env.ok(&["stop", "stopped"]);
    env.ok(&[
        "start",
        "crash.js",
        "--name",
        "waiting",
        "--restart-delay",
        "4000",
    ]);
    env.wait_status("web", "online");
    env.wait_status("echo", "online");
    env.wait_status("waiting", "waiting restart");
    env.wait_for("the held port to answer", || get_pid(port).ok());
    let before = snapshot(&env);
    let restarts_before = env.proc("waiting")["restarts"].as_u64();
    let copy = copy_of_bm2(&env);

    let out = run_with(&env, &copy, &["update"]);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(snapshot(&env), before);
    assert_eq!(env.proc("stopped")["status"], "stopped");
    assert_eq!(env.proc("waiting")["status"], "waiting restart");

    // stdin carried over: `send` reaches the same process.
    env.ok(&["send", "echo", "hello after the update"]);
    let echo_log = PathBuf::from(env.describe("echo")["out_log"].as_str().unwrap());
    env.wait_for("the echo app to answer", || {
        fs::read_to_string(&echo_log)
            .ok()
            .filter(|l| l.contains("got hello after the update"))
    });
    // The held socket and the shim's IPC channel carried over: a reload replaces the server
    // without a failed request (new connections: a fork-mode reload closes idle keep-alive
    // connections, as HTTP allows).
    let load = Load::start(&[port], 2, Duration::from_millis(2));
    load.wait_requests(20);
    let web = env.proc("web")["pid"].as_u64().unwrap();
    env.ok(&["reload", "web"]);
    let stats = finish_after_a_second(load);
    assert_ne!(env.proc("web")["pid"].as_u64(), Some(web), "reloaded");
    assert_no_failures(&stats, "a reload after the update");
    // The pending restart still happens, once, and counts.
    env.wait_for("the waiting app to restart after its delay", || {
        (env.proc("waiting")["restarts"].as_u64() > restarts_before).then_some(())
    });
    env.ok(&["kill"]);
}
