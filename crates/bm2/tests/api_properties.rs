//! Property test of the daemon's API: arbitrary JSON bodies shaped like each request type
//! (`StartRequest`, `TargetRequest`, `ScaleRequest`, `SignalRequest`, `LogsRequest`, ...), posted
//! over the Unix socket to one real daemon. Every one is answered with JSON (2xx, or 4xx with
//! `{code, message}`), never a 5xx or a dropped connection, and the daemon lives to the end.
//!
//! Values that would make the daemon do something harmful or slow when they are valid (the
//! program to run, paths it writes to, instance counts, timeouts) come from a pool of safe ones;
//! any other value and every wrong type are arbitrary.

mod common;

use std::cell::Cell;
use std::io::BufReader;
use std::time::Duration;

use common::unix_http;
use common::{TestEnv, alive, free_port};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        ".{0,16}".prop_map(Value::String),
    ]
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Mostly `typed`, sometimes a value of any type.
fn or_wrong(typed: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Value> {
    prop_oneof![24 => typed, 1 => leaf(), 1 => any_json()].boxed()
}

fn strings(pool: &'static [&'static str]) -> BoxedStrategy<Value> {
    or_wrong(prop_oneof![
        8 => select(pool).prop_map(|s| json!(s)),
        1 => ".{0,12}".prop_map(Value::String),
    ])
}

/// Mostly strings from `valid`, sometimes from `invalid` or random.
fn mostly(
    valid: &'static [&'static str],
    invalid: &'static [&'static str],
) -> BoxedStrategy<Value> {
    or_wrong(prop_oneof![
        8 => select(valid).prop_map(|s| json!(s)),
        1 => select(invalid).prop_map(|s| json!(s)),
        1 => ".{0,12}".prop_map(Value::String),
    ])
}

/// Strings from `pool` only (for values that name programs or paths).
fn only(pool: Vec<String>) -> BoxedStrategy<Value> {
    let wrong = prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::Bool),
        Just(json!({})),
        Just(json!([1])),
    ];
    prop_oneof![24 => select(pool).prop_map(Value::String), 1 => wrong].boxed()
}

fn numbers(range: std::ops::Range<u64>) -> BoxedStrategy<Value> {
    let wrong = prop_oneof![
        Just(json!(-1)),
        Just(json!(1.5)),
        Just(json!("12")),
        Just(json!(1e30)),
        Just(json!("abc")),
        Just(json!(null)),
    ];
    prop_oneof![24 => range.prop_map(Value::from), 1 => wrong].boxed()
}

fn list_of(item: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    or_wrong(prop::collection::vec(item, 0..4).prop_map(Value::Array))
}

fn string_map() -> BoxedStrategy<Value> {
    or_wrong(
        prop::collection::btree_map("[A-Z_]{1,8}|.{0,8}", ".{0,12}", 0..4).prop_map(|m| json!(m)),
    )
}

/// An object with most of `fields` (each present 85% of the time) and now and then a key the
/// type does not have.
fn object(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    object_with(fields, 0.85)
}

/// An object with some of `fields`, each present with probability `p`, and now and then a key
/// the type does not have.
fn object_with(fields: Vec<(&'static str, BoxedStrategy<Value>)>, p: f64) -> BoxedStrategy<Value> {
    let present: Vec<BoxedStrategy<Option<(String, Value)>>> = fields
        .into_iter()
        .map(|(k, v)| prop::option::weighted(p, v.prop_map(move |v| (k.to_string(), v))).boxed())
        .collect();
    (present, prop::option::weighted(0.05, (".{0,8}", leaf())))
        .prop_map(|(fields, extra)| {
            let mut map: Map<String, Value> = fields.into_iter().flatten().collect();
            if let Some((k, v)) = extra {
                map.insert(k, v);
            }
            Value::Object(map)
        })
        .boxed()
}

const NAMES: &[&str] = &[
    "fa", "fb", "victim", "all", "0", "1", "", "x y", "../x", "💥", "-1",
];
const TARGETS: &[&str] = &[
    "victim",
    "fa",
    "fb",
    "all",
    "0",
    "1",
    "2",
    "99",
    "4294967296",
    "-1",
    "/fa|victim/",
    "/[/",
    "//",
    "default",
    "",
    "sleep",
    "💥",
];
const SIGNALS: &[&str] = &[
    "SIGUSR1", "USR2", "SIGCONT", "SIGSTOP", "SIGKILL", "9", "0", "-1", "99999", "SIGNOPE", "",
    "sigterm", "SIGHUP",
];

fn targets() -> BoxedStrategy<Value> {
    list_of(strings(TARGETS))
}

/// One app of a `StartRequest`, run from `dir`.
fn app(dir: &str, port: u16) -> BoxedStrategy<Value> {
    let paths =
        |names: &[&str]| -> Vec<String> { names.iter().map(|n| format!("{dir}/{n}")).collect() };
    let scripts = [
        vec![
            "sleep".into(),
            "/bin/sleep".into(),
            "true".into(),
            "false".into(),
            String::new(),
        ],
        paths(&["looper.sh", "missing.js", "app.py", "sub/none"]),
        vec!["/nonexistent/app".into()],
    ]
    .concat();
    let logs = [
        paths(&["out.log", "err.log", "all.log", "sub/x.log", "nodir/y.log"]),
        vec!["/dev/null".into(), "NULL".into(), String::new()],
    ]
    .concat();
    let port = port.to_string();
    let fields = vec![
        (
            "name",
            mostly(
                &["fa", "fb", "fc", "x y", "💥", "../x", "victim"],
                &["all", "0", "", "-1"],
            ),
        ),
        ("script", only(scripts)),
        (
            "args",
            or_wrong(
                prop::collection::vec(strings(&["1000", "0.05", "-x", ""]), 0..3)
                    .prop_map(Value::Array),
            ),
        ),
        (
            "cwd",
            only(
                [
                    paths(&[".", "sub", "missing"]),
                    vec!["/".into(), "rel".into()],
                ]
                .concat(),
            ),
        ),
        ("env", string_map()),
        (
            "interpreter",
            only(
                ["none", "sh", "bash", "python3", "node", "/nonexistent", ""]
                    .map(String::from)
                    .to_vec(),
            ),
        ),
        (
            "interpreter_args",
            list_of(only(vec!["-u".into(), String::new()])),
        ),
        ("node_args", list_of(only(vec!["--no-warnings".into()]))),
        ("namespace", strings(&["default", "ns", ""])),
        (
            "instances",
            or_wrong(prop_oneof![
                4 => select(vec![json!(1), json!(2), json!(0), json!("max"), json!(-1), json!("1")]),
                1 => select(vec![json!("abc"), json!(5000), json!(4_294_967_296u64)]),
            ]),
        ),
        (
            "exec_mode",
            mostly(&["fork", "cluster"], &["fork_mode", "Cluster"]),
        ),
        ("autorestart", or_wrong(any::<bool>().prop_map(Value::Bool))),
        ("max_restarts", numbers(0..4)),
        ("min_uptime", numbers(1000..5000)),
        ("restart_delay", numbers(0..500)),
        ("exp_backoff_restart_delay", numbers(100..500)),
        ("kill_timeout", numbers(0..800)),
        ("kill_signal", strings(SIGNALS)),
        ("stop_exit_codes", list_of(numbers(0..300))),
        (
            "max_memory_restart",
            mostly(&["1K", "512M", "1.5G", "100"], &["0", "-5", "x"]),
        ),
        ("autostart", or_wrong(any::<bool>().prop_map(Value::Bool))),
        (
            "uid",
            only(
                ["nobody", "65534", "0", "nosuchuser", ""]
                    .map(String::from)
                    .to_vec(),
            ),
        ),
        (
            "gid",
            only(
                ["nogroup", "65534", "0", "nosuchgroup"]
                    .map(String::from)
                    .to_vec(),
            ),
        ),
        (
            "filter_env",
            or_wrong(prop_oneof![
                any::<bool>().prop_map(Value::Bool),
                Just(json!(["PATH", "BM2_"]))
            ]),
        ),
        (
            "instance_var",
            strings(&["NODE_APP_INSTANCE", "", "=", "A B"]),
        ),
        ("increment_var", strings(&["PORT", "X", ""])),
        ("treekill", or_wrong(any::<bool>().prop_map(Value::Bool))),
        ("kill_retry_time", numbers(10..200)),
        (
            "port",
            or_wrong(select(vec![
                json!(port),
                json!(0),
                json!(70000),
                json!("80"),
            ])),
        ),
        (
            "listen_host",
            strings(&["127.0.0.1", "::1", "256.1.1.1", "nowhere.invalid"]),
        ),
        ("lb", mostly(&["round_robin", "least_conn"], &["random"])),
        ("wait_ready", or_wrong(any::<bool>().prop_map(Value::Bool))),
        ("listen_timeout", numbers(0..1000)),
        ("watch", list_of(only(paths(&[".", "sub", "missing"])))),
        (
            "ignore_watch",
            list_of(strings(&["*.log", "[", "**", "node_modules"])),
        ),
        ("watch_delay", numbers(0..1000)),
        (
            "cron_restart",
            strings(&["* * * * *", "*/2 * * * * *", "61 * * * *", "@daily", "x"]),
        ),
        (
            "health_check_url",
            strings(&["http://127.0.0.1:1/", "https://x/", "ftp://x", "::"]),
        ),
        (
            "health_check_tcp",
            strings(&["127.0.0.1:1", "nohost", ":", "[::1]:99999"]),
        ),
        (
            "health_check_cmd",
            only(vec!["true".into(), "false".into(), "exit 3".into()]),
        ),
        ("health_check_interval", numbers(1000..5000)),
        ("health_check_timeout", numbers(0..2000)),
        ("health_check_max_fails", numbers(0..5)),
        ("out_file", only(logs.clone())),
        ("error_file", only(logs.clone())),
        ("log_file", only(logs)),
        ("merge_logs", or_wrong(any::<bool>().prop_map(Value::Bool))),
        ("time", or_wrong(any::<bool>().prop_map(Value::Bool))),
        (
            "log_date_format",
            strings(&["YYYY-MM-DD", "%Q", "HH:mm:ss.SSS Z", "[[["]),
        ),
        ("log_type", strings(&["json", "raw", ""])),
        (
            "disable_logs",
            or_wrong(any::<bool>().prop_map(Value::Bool)),
        ),
        ("log_max_size", mostly(&["1", "1K", "10M"], &["0", "-1"])),
        ("log_retain", numbers(0..5)),
        (
            "log_compress",
            or_wrong(any::<bool>().prop_map(Value::Bool)),
        ),
        (
            "log_rotate_interval",
            strings(&["* * * * * *", "0 0 * * *", "nope"]),
        ),
    ];
    // About five options per app, name and script nearly always.
    let (main, rest): (Vec<_>, Vec<_>) = fields
        .into_iter()
        .partition(|(k, _)| *k == "name" || *k == "script");
    (object_with(main, 0.95), object_with(rest, 0.08))
        .prop_map(|(mut a, b)| {
            a.as_object_mut()
                .unwrap()
                .extend(b.as_object().unwrap().clone());
            a
        })
        .boxed()
}

/// The routes and the body each takes.
fn request(dir: &str, port: u16) -> impl Strategy<Value = (&'static str, Value)> {
    let targets_only = || object(vec![("targets", targets())]);
    let typed = prop_oneof![
        6 => object(vec![
            ("apps", or_wrong(prop::collection::vec(app(dir, port), 1..3).prop_map(Value::Array))),
            ("client_env", string_map()),
            ("force", or_wrong(any::<bool>().prop_map(Value::Bool))),
            ("if_exists", mostly(&["fail", "restart", "reload"], &["Fail"])),
            ("update_env", or_wrong(any::<bool>().prop_map(Value::Bool))),
        ]).prop_map(|b| ("/v1/start", b)),
        2 => object(vec![("targets", targets()),
            ("stop_watching", or_wrong(any::<bool>().prop_map(Value::Bool)))])
            .prop_map(|b| ("/v1/stop", b)),
        2 => object(vec![("targets", targets()), ("update_env", string_map()),
            ("toggle_watch", or_wrong(any::<bool>().prop_map(Value::Bool)))])
            .prop_map(|b| ("/v1/restart", b)),
        3 => (select(&["/v1/delete", "/v1/reset", "/v1/describe", "/v1/flush", "/v1/reload-logs"][..]),
            targets_only()),
        2 => object(vec![("targets", targets()), ("parallel", numbers(0..4))])
            .prop_map(|b| ("/v1/reload", b)),
        2 => object(vec![("app", strings(NAMES)),
            ("instances", strings(&["1", "2", "+1", "-1", "0", "+0", "max", "abc", "4097",
                "+99999999999999999999", "-5", " 2 ", "+", "-"]))])
            .prop_map(|b| ("/v1/scale", b)),
        2 => object(vec![("targets", targets()), ("signal", strings(SIGNALS))])
            .prop_map(|b| ("/v1/signal", b)),
        2 => object(vec![("targets", targets()), ("lines", numbers(0..1000)),
            ("follow", or_wrong(any::<bool>().prop_map(Value::Bool))),
            ("out", or_wrong(any::<bool>().prop_map(Value::Bool))),
            ("err", or_wrong(any::<bool>().prop_map(Value::Bool)))])
            .prop_map(|b| ("/v1/logs", b)),
        1 => object(vec![("app", strings(NAMES)), ("key", strings(&["K", "", "A=B", "\u{0}"])),
            ("value", strings(&["v", "", "\u{0}"]))])
            .prop_map(|b| ("/v1/env/set", b)),
        1 => (select(&["/v1/env/get", "/v1/env/delete"][..]),
            object(vec![("app", strings(NAMES)), ("key", strings(&["K", ""]))])),
        1 => Just(("/v1/save", json!({}))),
        1 => object(vec![("update_env", string_map())]).prop_map(|b| ("/v1/resurrect", b)),
    ];
    let routes = &[
        "/v1/start",
        "/v1/stop",
        "/v1/restart",
        "/v1/delete",
        "/v1/reset",
        "/v1/describe",
        "/v1/reload",
        "/v1/scale",
        "/v1/signal",
        "/v1/logs",
        "/v1/flush",
        "/v1/reload-logs",
        "/v1/env/set",
        "/v1/env/get",
        "/v1/env/delete",
    ][..];
    prop_oneof![
        8 => typed,
        1 => (select(routes), any_json()),
    ]
}

/// What is wrong with the daemon's answer to `body` on `route`, if anything.
fn check(home: &std::path::Path, route: &str, body: &Value) -> Result<(), String> {
    let bytes = serde_json::to_vec(body).unwrap();
    let follow = route == "/v1/logs" && body["follow"] == true;
    let mut s = unix_http::connect(home, Duration::from_secs(30)).map_err(|e| e.to_string())?;
    std::io::Write::write_all(
        &mut s,
        &unix_http::request_bytes(
            "POST",
            route,
            &[("Content-Type", "application/json")],
            &bytes,
        ),
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut r = BufReader::new(s);
    let mut resp = unix_http::read_head(&mut r)
        .map_err(|e| format!("reading the response: {e}"))?
        .ok_or("the connection closed without a response")?;
    // A followed log never ends: its head is enough (the client then goes away).
    if !(follow && resp.status < 300) {
        unix_http::read_body(&mut r, &mut resp).map_err(|e| format!("reading the body: {e}"))?;
    }
    if !(200..300).contains(&resp.status) && !(400..500).contains(&resp.status) {
        return Err(format!("status {}: {}", resp.status, resp.text()));
    }
    if follow && resp.status < 300 {
        return Ok(());
    }
    if route == "/v1/logs" && resp.status < 300 {
        for line in resp.text().lines() {
            serde_json::from_str::<Value>(line).map_err(|e| format!("log line {line:?}: {e}"))?;
        }
        return Ok(());
    }
    let v: Value = serde_json::from_slice(&resp.body).map_err(|e| {
        format!(
            "status {}, body not JSON ({e}): {:?}",
            resp.status,
            resp.text()
        )
    })?;
    if resp.status >= 400 && !(v["code"].is_string() && v["message"].is_string()) {
        return Err(format!(
            "status {} without code and message: {v}",
            resp.status
        ));
    }
    Ok(())
}

#[test]
fn arbitrary_request_bodies_get_json_answers_and_the_daemon_lives() {
    let env = TestEnv::new();
    env.start_sleeper("victim");
    let pid = env.daemon_pid().unwrap();
    env.script("looper.sh", "while :; do sleep 1; done\n");
    std::fs::create_dir_all(env.path("sub")).unwrap();
    let dir = env.dir.path().display().to_string();
    let requests = request(&dir, free_port());
    let cases = Cell::new(0u32);
    let mut runner = TestRunner::new(Config {
        cases: 600,
        max_shrink_iters: 200,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&requests, |(route, body)| {
        cases.set(cases.get() + 1);
        if !alive(pid) {
            return Err(TestCaseError::fail("the daemon is gone"));
        }
        check(env.home_path(), route, &body)
            .map_err(|e| TestCaseError::fail(format!("POST {route} {body}: {e}")))
    });
    if let Err(e) = result {
        panic!("after {} requests: {e}", cases.get());
    }
    assert!(alive(pid), "the daemon died");
    let ping = unix_http::request(env.home_path(), "GET", "/v1/ping", &[], b"").unwrap();
    assert_eq!(ping.status, 200, "{ping:?}");
    // Every process of this home belongs to an instance the daemon lists.
    env.wait_for("every app process to belong to a listed instance", || {
        let ids: Vec<String> = env.list().iter().map(|p| p["id"].to_string()).collect();
        let strays: Vec<(u32, String)> = env
            .app_pids()
            .into_iter()
            .filter_map(|p| {
                let environ = std::fs::read(format!("/proc/{p}/environ")).ok()?;
                let id = environ
                    .split(|b| *b == 0)
                    .find_map(|kv| kv.strip_prefix(b"BM2_ID="))
                    .map(|v| String::from_utf8_lossy(v).into_owned())?;
                (!ids.contains(&id)).then_some((p, id))
            })
            .collect();
        strays.is_empty().then_some(())
    });
}
