//! Limits on what bm2 accepts, on every road (CLI flags, ecosystem files, the API called
//! directly): app names short enough for the file names derived from them and free of control
//! characters, bounded stop/readiness/restart durations, and a time limit on evaluating JS
//! configs. Names that got in anyway (an old dump) are printed escaped.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{DEADLINE, TestEnv, alive, kill_pid, sleeper_args, wait_for};
use serde_json::{Value, json};

/// POSTs `body` to `path` on the daemon's Unix socket; returns the status and the body.
fn api_post(env: &TestEnv, path: &str, body: &Value) -> (u16, String) {
    let mut s = UnixStream::connect(env.home_path().join("daemon.sock")).expect("daemon socket");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let body = body.to_string();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: bm2\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {raw:?}"));
    let body = raw
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// An app as the API takes it: `sleep 1000` named `name`, with `extra` options.
fn sleeper_spec(name: &str, extra: &Value) -> Value {
    let mut spec = json!({
        "name": name,
        "script": "sleep",
        "interpreter": "none",
        "args": ["1000"],
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    spec
}

/// `/v1/start` with one app; asserts a 400 `invalid_app` whose message contains `needle`.
fn api_refuses(env: &TestEnv, spec: &Value, needle: &str) {
    let (status, body) = api_post(env, "/v1/start", &json!({ "apps": [spec] }));
    assert_eq!(status, 400, "{body}");
    let e: Value = serde_json::from_str(body.trim()).unwrap_or_else(|_| panic!("{body}"));
    assert_eq!(e["code"], "invalid_app", "{body}");
    assert!(
        e["message"].as_str().unwrap().contains(needle),
        "{needle:?} not in {body}"
    );
}

#[test]
fn names_too_long_for_their_log_files_are_refused_everywhere() {
    let env = TestEnv::new();
    let long = "n".repeat(241);
    let e = env.fail(&sleeper_args(&long));
    assert!(
        e.contains("241 bytes") && e.contains("at most 180 bytes"),
        "{e}"
    );
    env.file(
        "eco.json",
        &json!({ "apps": [{ "name": long, "script": "sleep", "args": "1000" }] }).to_string(),
    );
    let e = env.fail(&["start", "eco.json"]);
    assert!(
        e.contains("apps[0].name") && e.contains("at most 180 bytes"),
        "{e}"
    );
    env.ok(&["ping"]);
    api_refuses(&env, &sleeper_spec(&long, &json!({})), "at most 180 bytes");
    assert!(env.list().is_empty());
    assert_eq!(env.log_file_names(), Vec::<String>::new());
}

#[test]
fn the_longest_name_accepted_gets_its_logs_and_their_rotations() {
    let env = TestEnv::new();
    let name = "n".repeat(bm2_types::limits::MAX_NAME_BYTES);
    env.script(
        "chatty.sh",
        "i=0\nwhile [ $i -lt 100 ]; do echo \"line $i 0123456789012345678901234567890123456789\"; \
         i=$((i+1)); done\nexec sleep 1000\n",
    );
    env.ok(&[
        "start",
        "chatty.sh",
        "--name",
        &name,
        "--log-max-size",
        "1K",
        "--log-compress",
    ]);
    env.wait_status(&name, "online");
    let out = env.logs_dir().join(format!("{name}-out.log"));
    let first = env.logs_dir().join(format!("{name}-out.log.1.gz"));
    env.wait_for("the last line and a compressed rotation", || {
        let text = fs::read_to_string(&out).unwrap_or_default();
        (text.contains("line 99 ") && first.exists()).then_some(())
    });
    assert_eq!(env.describe(&name)["log_dropped_bytes"], 0);
}

#[test]
fn control_characters_in_names_are_refused_everywhere() {
    let env = TestEnv::new();
    for name in ["evil\u{1b}[2Jname", "two\nlines", "bidi\u{202e}txt"] {
        let e = env.fail(&sleeper_args(name));
        assert!(e.contains("control character"), "{name:?}: {e}");
        assert!(
            !e.contains('\u{1b}'),
            "the error prints the name raw: {e:?}"
        );
    }
    env.ok(&["ping"]);
    api_refuses(
        &env,
        &sleeper_spec("evil\u{1b}]0;title\u{7}", &json!({})),
        "control character U+001B",
    );
    assert!(env.list().is_empty());
}

#[test]
fn names_with_control_characters_from_an_old_dump_are_printed_escaped() {
    let env = TestEnv::new();
    env.start_sleeper("plain");
    env.ok(&["save"]);
    let dump = env.home_path().join("dump.json");
    let mut state: Value = serde_json::from_str(&fs::read_to_string(&dump).unwrap()).unwrap();
    let evil = "evil\u{1b}[2J\u{1b}[31mname";
    state["instances"][0]["spec"]["name"] = json!(evil);
    fs::write(&dump, state.to_string()).unwrap();
    env.ok(&["delete", "plain"]);
    env.ok(&["resurrect"]);
    env.wait_status(evil, "online");
    let escaped = "evil\\x1b[2J\\x1b[31mname";
    for args in [
        vec!["list"],
        vec!["describe", "all"],
        vec!["logs", "all", "--nostream"],
        vec!["stop", "all"],
    ] {
        let (_, stdout, stderr) = env.output(&args);
        assert!(
            !stdout.contains('\u{1b}') && !stderr.contains('\u{1b}'),
            "bm2 {args:?} printed a raw escape:\n{stdout:?}\n{stderr:?}"
        );
        assert!(
            stdout.contains(escaped) || args[0] == "logs",
            "bm2 {args:?} does not show {escaped}:\n{stdout}"
        );
    }
    // JSON output keeps the name exact (JSON escapes it).
    assert_eq!(env.list()[0]["name"], evil);
}

#[test]
fn durations_longer_than_an_hour_are_refused_everywhere() {
    let env = TestEnv::new();
    for (flag, key) in [
        ("--kill-timeout", "kill_timeout"),
        ("--listen-timeout", "listen_timeout"),
        ("--restart-delay", "restart_delay"),
        ("--min-uptime", "min_uptime"),
    ] {
        let e = env.fail(&[
            "start",
            "sleep",
            "--name",
            "slow",
            "--interpreter",
            "none",
            flag,
            "3600001",
            "--",
            "1000",
        ]);
        assert!(
            e.contains(&format!("{key} ({flag}) is 3600001 ms"))
                && e.contains("at most 3600000 ms (1 hour)"),
            "{e}"
        );
    }
    env.ok(&[
        "start",
        "sleep",
        "--name",
        "hour",
        "--interpreter",
        "none",
        "--kill-timeout",
        "3600000",
        "--",
        "1000",
    ]);
    env.wait_status("hour", "online");
    api_refuses(
        &env,
        &sleeper_spec("huge", &json!({ "kill_timeout": u64::MAX })),
        "kill_timeout (--kill-timeout) is 18446744073709551615 ms",
    );
    api_refuses(
        &env,
        &sleeper_spec(
            "huge",
            &json!({ "health_check_cmd": "true", "health_check_interval": u64::MAX }),
        ),
        "health_check_interval",
    );
    assert_eq!(env.list().len(), 1);
}

/// A JS config that never settles: a child process, then a promise that never resolves while a
/// timer keeps node alive.
const NEVER_SETTLES: &str = r#"
const fs = require("fs");
const { spawn } = require("child_process");
const child = spawn("sleep", ["1000"], { stdio: "ignore" });
fs.writeFileSync(__dirname + "/pids", process.pid + " " + child.pid + "\n");
module.exports = new Promise(() => { setInterval(() => {}, 1000); });
"#;

/// `bm2 start ecosystem.config.js` with `BM2_CONFIG_TIMEOUT_MS=limit_ms`, given `DEADLINE` to
/// finish. When it does not, it is killed, and so are the processes the config wrote to `pids`.
fn start_config(env: &TestEnv, limit_ms: &str) -> Output {
    let mut child = env
        .command(&["start", "ecosystem.config.js"])
        .env("BM2_CONFIG_TIMEOUT_MS", limit_ms)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bm2");
    let deadline = Instant::now() + DEADLINE;
    while child.try_wait().expect("wait for bm2").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let pids = fs::read_to_string(env.path("pids")).unwrap_or_default();
            for pid in pids.split_whitespace().filter_map(|p| p.parse().ok()) {
                kill_pid(pid, "KILL");
            }
            panic!("bm2 start still waited for the config after {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("bm2's output")
}

#[test]
fn a_js_config_that_never_settles_is_stopped_after_the_time_limit() {
    let env = TestEnv::new();
    env.file("ecosystem.config.js", NEVER_SETTLES);
    let out = start_config(&env, "1500");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("ecosystem.config.js")
            && stderr.contains("time limit of 1500 ms")
            && stderr.contains("BM2_CONFIG_TIMEOUT_MS"),
        "{stderr}"
    );
    let pids = env.wait_marker("pids");
    for pid in pids.split_whitespace() {
        let pid: u32 = pid.parse().unwrap();
        wait_for(
            &format!("pid {pid} of the config to be killed"),
            DEADLINE,
            || (!alive(pid)).then_some(()),
        );
    }
    assert!(env.list().is_empty());
}

#[test]
fn a_js_config_leaving_a_timer_running_still_loads_and_leaves_nothing_behind() {
    let env = TestEnv::new();
    env.script("app.sh", "exec sleep 1000\n");
    env.file(
        "ecosystem.config.js",
        r#"
const fs = require("fs");
const { spawn } = require("child_process");
const child = spawn("sleep", ["1000"], { stdio: "inherit" });
fs.writeFileSync(__dirname + "/pids", process.pid + " " + child.pid + "\n");
setInterval(() => {}, 1000);
module.exports = { apps: [{ name: "timer", script: "app.sh" }] };
"#,
    );
    let started = Instant::now();
    let out = start_config(&env, "15000");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited for the timer"
    );
    env.wait_status("timer", "online");
    for pid in env.wait_marker("pids").split_whitespace() {
        let pid: u32 = pid.parse().unwrap();
        wait_for(&format!("pid {pid} of the config to end"), DEADLINE, || {
            (!alive(pid)).then_some(())
        });
    }
}

#[test]
fn a_bad_config_time_limit_is_an_error() {
    let env = TestEnv::new();
    env.file(
        "ecosystem.config.js",
        "module.exports = { apps: [{ name: 'x', script: 'x.sh' }] };\n",
    );
    for bad in ["0", "soon", "-5"] {
        let out = env
            .command(&["start", "ecosystem.config.js"])
            .env("BM2_CONFIG_TIMEOUT_MS", bad)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("BM2_CONFIG_TIMEOUT_MS must be a number of milliseconds"),
            "{stderr}"
        );
    }
}
