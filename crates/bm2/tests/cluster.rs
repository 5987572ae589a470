//! Cluster mode: the daemon's load balancer in front of the instances of an app, readiness
//! (port, `process.send('ready')`, `NOTIFY_SOCKET`), zero-downtime reload, scaling, the
//! `shutdown` message, Node apps with a hard-coded port, and `PORT` in fork mode.
//!
//! The apps are small HTTP servers written by the tests that answer with their pid; the tests
//! talk to them with a minimal HTTP/1.0 client over 127.0.0.1.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::load::{
    Failure, KeepAlive, Load, NODE_SERVER, PY_PID_HANDLER, Stats, assert_no_failures, get_pid,
    http_get, parse_pid, set,
};
use common::{DEADLINE, TestEnv, alive, free_port, free_port_pair, kill_pid};
use serde_json::Value;

// ---- apps ----

/// Python: listens on `$PORT` (127.0.0.1), answers with its pid, logs nothing.
fn py_server() -> String {
    format!(
        "\
import http.server, os

{PY_PID_HANDLER}
http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()
"
    )
}

/// Node: listens on `$PORT` at once; instance 0 says it is ready as soon as it listens, the
/// others only once the file `go` exists (`process.send('ready')`).
fn node_gated(go: &Path) -> String {
    let go = go.display().to_string();
    format!(
        "\
const fs = require('fs');
const http = require('http');
http.createServer((q, s) => s.end(String(process.pid))).listen(process.env.PORT, () => {{
  if (process.env.NODE_APP_INSTANCE === '0') return process.send('ready');
  const t = setInterval(() => {{
    if (fs.existsSync({go:?})) {{ clearInterval(t); process.send('ready'); }}
  }}, 20);
}});
"
    )
}

/// Python: like [`node_gated`], but says it is ready with systemd's `READY=1` datagram to
/// `$NOTIFY_SOCKET`.
fn py_gated(go: &Path) -> String {
    let go = go.display().to_string();
    format!(
        "\
import http.server, os, socket, threading, time

{PY_PID_HANDLER}
srv = http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
if os.environ.get('NODE_APP_INSTANCE') != '0':
    while not os.path.exists({go:?}):
        time.sleep(0.02)
addr = os.environ['NOTIFY_SOCKET']
if addr.startswith('@'):
    addr = '\\0' + addr[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b'READY=1', addr)
threading.Event().wait()
"
    )
}

// ---- HTTP client ----

/// `n` requests in a row; the set of pids that answered. Panics on any failure.
fn pids_answering(port: u16, n: usize) -> BTreeSet<u32> {
    (0..n)
        .map(|i| get_pid(port).unwrap_or_else(|e| panic!("request {i} to port {port}: {e}")))
        .collect()
}

/// True when something accepts connections on 127.0.0.1:`port`.
fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .is_ok()
}

// ---- bm2 state ----

/// `bm2 describe <app> --json`: every instance.
fn details(env: &TestEnv, app: &str) -> Vec<Value> {
    serde_json::from_str(&env.ok(&["describe", app, "--json"])).unwrap()
}

fn is_ready(d: &Value) -> bool {
    d["status"] == "online" && d["pid"].is_u64() && d["cluster"]["ready"] == true
}

/// Waits until the app has exactly the instances 0..n, all online and ready behind the
/// balancer; returns their pids by instance index.
fn wait_ready(env: &TestEnv, app: &str, n: usize) -> Vec<u32> {
    env.wait_for(&format!("{n} ready instances of {app}"), || {
        let ds = details(env, app);
        let indexes: BTreeSet<u64> = ds.iter().filter_map(|d| d["instance"].as_u64()).collect();
        (ds.len() == n && indexes == (0..n as u64).collect() && ds.iter().all(is_ready)).then(
            || {
                let mut ds = ds;
                ds.sort_by_key(|d| d["instance"].as_u64());
                ds.iter()
                    .map(|d| d["pid"].as_u64().unwrap() as u32)
                    .collect()
            },
        )
    })
}

/// The describe entry of instance `index` of `app`.
fn detail(env: &TestEnv, app: &str, index: u64) -> Value {
    try_detail(env, app, index).unwrap_or_else(|| panic!("no instance {index} of {app}"))
}

/// The describe entry of instance `index` of `app`, when the app has it.
fn try_detail(env: &TestEnv, app: &str, index: u64) -> Option<Value> {
    if !env.list().iter().any(|p| p["name"] == app) {
        return None;
    }
    details(env, app)
        .into_iter()
        .find(|d| d["instance"] == index)
}

/// The private port of a cluster instance (describe's cluster field): the one bm2 gave it in
/// `PORT`, or the one its server got.
fn private_port(d: &Value) -> Option<u16> {
    d["cluster"]["private_port"].as_u64().map(|p| p as u16)
}

/// Waits for a `bm2` command started in the background; asserts it succeeded.
fn wait_child_ok(child: &mut Child, what: &str) {
    let status = common::wait_for(what, DEADLINE, || child.try_wait().unwrap());
    assert!(status.success(), "{what}: {status}");
}

// ---- 1. balancing ----

#[test]
fn node_cluster_spreads_requests_over_all_instances() {
    let env = TestEnv::new();
    let port = free_port();
    env.file("server.js", NODE_SERVER);
    env.ok(&["start", "server.js", "-i", "4", "--port", &port.to_string()]);
    let pids = wait_ready(&env, "server", 4);
    assert!(
        env.app_rows("server")
            .iter()
            .all(|p| p["exec_mode"] == "cluster"),
        "a Node script with -i runs in cluster mode: {:?}",
        env.app_rows("server")
    );
    let seen = pids_answering(port, 40);
    assert_eq!(seen, set(&pids), "40 requests should reach the 4 instances");
}

#[test]
fn python_with_exec_mode_cluster_spreads_requests_over_all_instances() {
    let env = TestEnv::new();
    let port = free_port();
    env.file("server.py", &py_server());
    env.ok(&[
        "start",
        "server.py",
        "-i",
        "4",
        "--exec-mode",
        "cluster",
        "--port",
        &port.to_string(),
    ]);
    let pids = wait_ready(&env, "server", 4);
    let seen = pids_answering(port, 40);
    assert_eq!(seen, set(&pids), "40 requests should reach the 4 instances");
}

/// Node: listens on `$PORT` (or `fallback` when it is unset) and answers with its pid, the
/// cluster variables, the `PORT` it saw and the port its server really got.
fn node_vars(fallback: u16) -> String {
    format!(
        "\
const http = require('http');
const e = process.env;
const server = http.createServer((q, s) => s.end(JSON.stringify({{ pid: process.pid, PORT: e.PORT,
  BM2_CLUSTER: e.BM2_CLUSTER, BM2_WORKER_ID: e.BM2_WORKER_ID, BM2_INSTANCES: e.BM2_INSTANCES,
  NODE_APP_INSTANCE: e.NODE_APP_INSTANCE, got: server.address().port }})));
server.listen(process.env.PORT || {fallback});
"
    )
}

/// The answers on `port`, asserting that every one of `pids` answered and no other process did.
fn answered_by_all(port: u16, pids: &[u32]) -> BTreeMap<u64, Value> {
    let by_pid = answers_of(port, pids.len());
    assert_eq!(
        by_pid.keys().map(|p| *p as u32).collect::<BTreeSet<_>>(),
        set(pids),
        "who answered on port {port}"
    );
    by_pid
}

/// Requests to `port` until `n` processes have answered (round-robin over ready instances
/// reaches each within a few rounds; a deadline, not a count, bounds it): their answers by pid.
fn answers_of(port: u16, n: usize) -> BTreeMap<u64, Value> {
    let mut by_pid: BTreeMap<u64, Value> = BTreeMap::new();
    let started = Instant::now();
    let mut sent = 0;
    while by_pid.len() < n {
        assert!(
            started.elapsed() < DEADLINE,
            "{sent} requests to port {port} reached only {by_pid:?}"
        );
        let body = http_get(port).unwrap_or_else(|e| panic!("request {sent} to port {port}: {e}"));
        sent += 1;
        let v: Value = serde_json::from_str(&body).unwrap();
        by_pid.insert(v["pid"].as_u64().unwrap(), v);
    }
    by_pid
}

#[test]
fn cluster_instances_get_a_private_port_and_cluster_variables() {
    let env = TestEnv::new();
    let port = free_port();
    env.file("vars.js", &node_vars(0));
    env.ok(&["start", "vars.js", "-i", "4", "--port", &port.to_string()]);
    let pids = wait_ready(&env, "vars", 4);
    let by_pid = answers_of(port, 4);
    assert_eq!(
        by_pid.keys().map(|p| *p as u32).collect::<BTreeSet<_>>(),
        set(&pids),
        "every ready instance answers on port {port}"
    );
    let workers: BTreeSet<&str> = by_pid
        .values()
        .map(|v| v["BM2_WORKER_ID"].as_str().unwrap_or("unset"))
        .collect();
    assert_eq!(workers, BTreeSet::from(["0", "1", "2", "3"]), "{by_pid:?}");
    let mut private = BTreeSet::new();
    for v in by_pid.values() {
        assert_eq!(v["BM2_CLUSTER"], "true", "{v}");
        assert_eq!(v["BM2_INSTANCES"], "4", "{v}");
        assert_eq!(v["NODE_APP_INSTANCE"], v["BM2_WORKER_ID"], "{v}");
        assert_eq!(
            v["PORT"],
            port.to_string(),
            "a Node instance sees the public port in PORT: {v}"
        );
        let got = v["got"].as_u64().unwrap();
        assert_ne!(
            got,
            u64::from(port),
            "an instance must not bind the public port: {v}"
        );
        private.insert(got);
    }
    assert_eq!(
        private.len(),
        4,
        "each instance has its own port: {by_pid:?}"
    );
    for d in details(&env, "vars") {
        let pid = d["pid"].as_u64().unwrap();
        assert_eq!(
            private_port(&d).map(u64::from),
            by_pid[&pid]["got"].as_u64(),
            "describe's private port of pid {pid}: {}",
            d["cluster"]
        );
        let listen = d["cluster"]["listen"].as_str().unwrap_or_default();
        assert!(
            listen.ends_with(&format!(":{port}")),
            "describe's balancer address {listen:?} should be on port {port}"
        );
    }
}

// ---- 1b. cluster apps keep their port ----

/// An ecosystem file with one cluster app of `instances` running `script`, with `extra` (JS
/// object members) added to the app.
fn cluster_file(env: &TestEnv, name: &str, script: &str, instances: u32, extra: &str) {
    env.file(
        "ecosystem.config.js",
        &format!(
            "module.exports = {{ apps: [{{ name: '{name}', script: '{script}', instances: {instances}, \
             exec_mode: 'cluster', {extra} }}] }};\n"
        ),
    );
}

#[test]
fn a_cluster_app_listening_on_port_from_its_env_is_served_on_that_port() {
    let env = TestEnv::new();
    let port = free_port();
    env.file("vars.js", &node_vars(0));
    cluster_file(
        &env,
        "envport",
        "vars.js",
        2,
        &format!("env: {{ PORT: {port} }}"),
    );
    env.ok(&["start", "ecosystem.config.js"]);
    let pids = wait_ready(&env, "envport", 2);
    let by_pid = answered_by_all(port, &pids);
    for v in by_pid.values() {
        assert_eq!(v["PORT"], port.to_string(), "PORT is the app's own: {v}");
    }
}

#[test]
fn a_bun_cluster_app_listening_on_port_from_its_env_is_served_on_that_port() {
    let env = TestEnv::new();
    let port = free_port();
    env.file("vars.js", &node_vars(0));
    cluster_file(
        &env,
        "bunport",
        "vars.js",
        2,
        &format!("interpreter: 'bun', env: {{ PORT: {port} }}"),
    );
    // The daemon this command starts finds bun on its PATH.
    let out = env
        .command(&["start", "ecosystem.config.js"])
        .env("PATH", common::bun::path_with_bun())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pids = wait_ready(&env, "bunport", 2);
    for d in details(&env, "bunport") {
        assert!(
            d["interpreter"]
                .as_str()
                .is_some_and(|i| i.ends_with("bun")),
            "runs under bun: {}",
            d["interpreter"]
        );
    }
    let by_pid = answered_by_all(port, &pids);
    for v in by_pid.values() {
        assert_eq!(v["PORT"], port.to_string(), "PORT is the app's own: {v}");
    }
}

#[test]
fn a_python_cluster_app_is_balanced_on_the_port_from_its_env() {
    let env = TestEnv::new();
    let port = free_port();
    env.file("server.py", &py_server());
    cluster_file(
        &env,
        "pyport",
        "server.py",
        2,
        &format!("env: {{ PORT: {port} }}"),
    );
    env.ok(&["start", "ecosystem.config.js"]);
    let pids = wait_ready(&env, "pyport", 2);
    for d in details(&env, "pyport") {
        assert_ne!(
            private_port(&d),
            Some(port),
            "a Python instance listens on the private port in PORT: {}",
            d["cluster"]
        );
    }
    assert_eq!(pids_answering(port, 8), set(&pids));
}

#[test]
fn a_cluster_app_with_env_production_port_is_served_on_that_port() {
    let env = TestEnv::new();
    let (dev, prod) = (free_port(), free_port());
    env.file("vars.js", &node_vars(0));
    cluster_file(
        &env,
        "prodport",
        "vars.js",
        2,
        &format!("env: {{ PORT: {dev} }}, env_production: {{ PORT: {prod} }}"),
    );
    env.ok(&["start", "ecosystem.config.js", "--env", "production"]);
    let pids = wait_ready(&env, "prodport", 2);
    answered_by_all(prod, &pids);
    assert!(
        !accepts(dev),
        "nothing is served on the development port {dev}"
    );
}

#[test]
fn a_cluster_app_with_a_port_defaulted_in_code_is_served_on_that_port() {
    let env = TestEnv::new();
    let port = free_port();
    // `listen(process.env.PORT || <port>)`, with no PORT anywhere.
    env.file("vars.js", &node_vars(port));
    env.ok(&["start", "vars.js", "-i", "2"]);
    let pids = wait_ready(&env, "vars", 2);
    let by_pid = answered_by_all(port, &pids);
    for v in by_pid.values() {
        assert_eq!(v["PORT"], Value::Null, "bm2 sets no PORT of its own: {v}");
    }
}

#[test]
fn increment_var_port_gives_each_cluster_instance_its_own_public_port() {
    let env = TestEnv::new();
    let port = free_port_pair();
    env.file("vars.js", &node_vars(0));
    cluster_file(
        &env,
        "incr",
        "vars.js",
        2,
        &format!("increment_var: 'PORT', env: {{ PORT: {port} }}"),
    );
    env.ok(&["start", "ecosystem.config.js"]);
    let pids = wait_ready(&env, "incr", 2);
    for (i, pid) in pids.iter().enumerate() {
        let p = port + i as u16;
        let by_pid = answers_of(p, 1);
        assert_eq!(
            by_pid.keys().copied().collect::<Vec<_>>(),
            [u64::from(*pid)],
            "instance {i} alone serves port {p}"
        );
        assert_eq!(by_pid[&u64::from(*pid)]["PORT"], p.to_string());
        // More requests still reach only that instance.
        let more: BTreeSet<u64> = (0..6)
            .map(|_| {
                let body = http_get(p).unwrap();
                serde_json::from_str::<Value>(&body).unwrap()["pid"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(more, BTreeSet::from([u64::from(*pid)]));
    }
}

#[test]
fn a_cluster_app_listening_on_two_ports_is_served_on_both() {
    let env = TestEnv::new();
    let (web, admin) = (free_port(), free_port());
    env.file(
        "two.js",
        &format!(
            "\
const http = require('http');
http.createServer((q, s) => s.end(String(process.pid))).listen({web});
http.createServer((q, s) => s.end('admin ' + process.pid)).listen({{ port: {admin} }});
"
        ),
    );
    env.ok(&["start", "two.js", "-i", "2"]);
    let pids = wait_ready(&env, "two", 2);
    assert_eq!(
        env.wait_for("both instances on the web port", || {
            let seen = pids_answering(web, 8);
            (seen == set(&pids)).then_some(seen)
        }),
        set(&pids)
    );
    let wanted: BTreeSet<String> = pids.iter().map(|p| format!("admin {p}")).collect();
    // The second server of each instance is balanced from when it listens.
    env.wait_for("the admin server of each instance on its port", || {
        let admins: BTreeSet<String> = (0..8).filter_map(|_| http_get(admin).ok()).collect();
        (admins == wanted).then_some(())
    });
}

#[test]
fn a_cluster_app_bound_to_loopback_gets_a_balancer_on_loopback() {
    let env = TestEnv::new();
    let port = free_port();
    env.file(
        "local.js",
        &format!(
            "\
const http = require('http');
http.createServer((q, s) => s.end(String(process.pid))).listen({port}, '127.0.0.1');
"
        ),
    );
    env.ok(&["start", "local.js", "-i", "2"]);
    let pids = wait_ready(&env, "local", 2);
    for d in details(&env, "local") {
        assert_eq!(
            d["cluster"]["listen"],
            format!("127.0.0.1:{port}"),
            "the balancer binds the address the app asked for: {}",
            d["cluster"]
        );
    }
    assert_eq!(pids_answering(port, 8), set(&pids));
}

#[test]
fn a_cluster_app_listening_on_a_host_that_does_not_resolve_is_not_served_everywhere() {
    let env = TestEnv::new();
    let port = free_port();
    let marks = env.path("marks");
    fs::create_dir_all(&marks).unwrap();
    env.file(
        "nowhere.js",
        &format!(
            "\
require('http').createServer((q, s) => s.end('x')).listen({port}, 'no-such-host.invalid', () =>
  require('fs').writeFileSync({marks:?} + '/' + process.pid, ''));
",
            marks = marks.display().to_string()
        ),
    );
    env.ok(&["start", "nowhere.js", "-i", "2"]);
    env.wait_for("both instances listening on their private ports", || {
        (fs::read_dir(&marks).map_or(0, Iterator::count) == 2).then_some(())
    });
    // The name does not resolve: bm2 must not serve the port on every interface instead.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert!(
            !accepts(port),
            "port {port} is served although its host does not resolve"
        );
    }
    for d in details(&env, "nowhere") {
        assert_eq!(d["cluster"]["ready"], false, "{}", d["cluster"]);
    }
}

#[test]
fn listen_host_restricts_the_balancer_address() {
    let env = TestEnv::new();
    let (open, local) = (free_port(), free_port());
    env.file("server.js", NODE_SERVER);
    env.ok(&[
        "start",
        "server.js",
        "--name",
        "open",
        "-i",
        "2",
        "--port",
        &open.to_string(),
    ]);
    env.ok(&[
        "start",
        "server.js",
        "--name",
        "local",
        "-i",
        "2",
        "--port",
        &local.to_string(),
        "--listen-host",
        "127.0.0.1",
    ]);
    wait_ready(&env, "open", 2);
    wait_ready(&env, "local", 2);
    let listen = |app: &str| detail(&env, app, 0)["cluster"]["listen"].clone();
    assert_eq!(listen("local"), format!("127.0.0.1:{local}"));
    let default = listen("open");
    let default = default.as_str().unwrap_or_default();
    assert!(
        default == format!("0.0.0.0:{open}") || default == format!("[::]:{open}"),
        "by default the balancer listens on all interfaces: {default:?}"
    );
    assert_eq!(pids_answering(local, 10).len(), 2);
    assert_eq!(pids_answering(open, 10).len(), 2);
}

#[test]
fn least_conn_sends_new_connections_to_the_least_busy_instance() {
    let env = TestEnv::new();
    let port = free_port();
    let go = env.path("go");
    env.file("gated.js", &node_gated(&go));
    let mut start = env
        .command(&[
            "start",
            "gated.js",
            "-i",
            "2",
            "--port",
            &port.to_string(),
            "--lb",
            "least-conn",
            "--wait-ready",
            "--listen-timeout",
            "60000",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Only instance 0 is ready: three idle connections all go to it.
    let first = env.wait_for("instance 0 to be ready", || {
        let d = try_detail(&env, "gated", 0)?;
        is_ready(&d).then(|| d["pid"].as_u64().unwrap() as u32)
    });
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    env.wait_for("3 open connections to instance 0", || {
        (detail(&env, "gated", 0)["cluster"]["connections"] == 3).then_some(())
    });
    fs::write(&go, "").unwrap();
    let pids = wait_ready(&env, "gated", 2);
    wait_child_ok(&mut start, "bm2 start --wait-ready");
    let second = pids[1];
    let seen: Vec<u32> = (0..10)
        .map(|i| get_pid(port).unwrap_or_else(|e| panic!("request {i}: {e}")))
        .collect();
    assert!(
        seen.iter().all(|p| *p == second),
        "with 3 connections open to {first}, least-conn should send every request to {second}: {seen:?}"
    );
    drop(idle);
}

// ---- 2. crash ----

#[test]
fn an_instance_killed_with_sigkill_fails_no_request_and_comes_back() {
    let env = TestEnv::new();
    let port = free_port();
    env.file("server.js", NODE_SERVER);
    env.ok(&["start", "server.js", "-i", "4", "--port", &port.to_string()]);
    let pids = wait_ready(&env, "server", 4);
    let victim = pids[2];
    let started = Instant::now();
    let mut killed_at = None;
    let mut stats = Stats::default();
    while started.elapsed() < Duration::from_secs(3) {
        if killed_at.is_none() && started.elapsed() >= Duration::from_millis(500) {
            // Between two requests: no request is in flight to it when it dies.
            kill_pid(victim, "KILL");
            killed_at = Some(started.elapsed());
        }
        stats.record(get_pid(port), || {
            format!("at {:?} (killed at {killed_at:?})", started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!alive(victim), "{victim} was killed");
    assert_no_failures(&stats, "the SIGKILL of one instance");
    let back = env.wait_new_pid("server-2", u64::from(victim));
    let now = wait_ready(&env, "server", 4);
    assert_eq!(u64::from(now[2]), back);
    assert_eq!(
        pids_answering(port, 40),
        set(&now),
        "the restarted instance gets requests again"
    );
}

// ---- 3. reload ----

#[test]
fn reload_under_load_fails_no_request_and_replaces_every_process() {
    let env = TestEnv::new();
    let port = free_port();
    env.file("server.js", NODE_SERVER);
    env.ok(&["start", "server.js", "-i", "4", "--port", &port.to_string()]);
    let old = wait_ready(&env, "server", 4);
    let load = Load::start(&[port], 8, Duration::from_millis(5));
    load.wait_requests(100);
    let out = env.ok(&["reload", "server"]);
    let new = wait_ready(&env, "server", 4);
    load.wait_requests(100);
    let stats = load.finish();
    assert_no_failures(&stats, "bm2 reload");
    assert!(
        set(&old).is_disjoint(&set(&new)),
        "every instance should have a new process: old {old:?}, new {new:?} (reload said {out:?})"
    );
    for pid in &old {
        assert!(!alive(*pid), "old process {pid} should have been stopped");
    }
    assert_eq!(pids_answering(port, 40), set(&new));
    let restarts: Vec<Value> = env
        .app_rows("server")
        .iter()
        .map(|p| p["restarts"].clone())
        .collect();
    assert_eq!(
        restarts,
        vec![Value::from(1); 4],
        "one reload replaces each process once (more means a new process died and was restarted)"
    );
}

#[test]
fn reload_under_keep_alive_load_fails_no_request() {
    let env = TestEnv::new();
    let port = free_port();
    env.file("server.js", NODE_SERVER);
    env.ok(&["start", "server.js", "-i", "4", "--port", &port.to_string()]);
    let old = wait_ready(&env, "server", 4);
    // A keep-alive connection per thread, reopened only when the server closes it.
    let clients = (0..8).map(|t| {
        let mut client = KeepAlive::new(port);
        let request = move || {
            client
                .get()
                .map_err(Failure::Other)
                .and_then(|b| parse_pid(&b))
        };
        (format!("thread {t}"), request)
    });
    let load = Load::run(clients, Duration::from_millis(2));
    load.wait_requests(200);
    env.ok(&["reload", "server"]);
    let new = wait_ready(&env, "server", 4);
    load.wait_requests(200);
    let stats = load.finish();
    assert_no_failures(&stats, "bm2 reload with keep-alive clients");
    assert!(
        set(&new).is_subset(&stats.pids),
        "the keep-alive clients moved to the new processes {new:?}: {:?}",
        stats.pids
    );
    for pid in &old {
        assert!(!alive(*pid), "old process {pid} should have been stopped");
    }
}

/// A Node server that answers with the client port it sees.
const NODE_PEER_PORT: &str = "\
const http = require('http');
http.createServer((q, s) => s.end(String(q.socket.remotePort))).listen(process.env.PORT);
";

#[test]
fn node_instances_serve_the_client_socket_itself() {
    // The balancer hands each connection to a Node instance over its IPC channel: the app sees
    // the client's own address, and no byte goes through the daemon.
    let env = TestEnv::new();
    let port = free_port();
    env.file("peer.js", NODE_PEER_PORT);
    env.ok(&["start", "peer.js", "-i", "2", "--port", &port.to_string()]);
    wait_ready(&env, "peer", 2);
    env.wait_for("a connection handed to an instance", || {
        let mut client = KeepAlive::new(port);
        let seen = client.get().ok()?;
        let local = client.conn.as_ref()?.local_addr().ok()?.port();
        (seen.trim() == local.to_string()).then_some(())
    });
    for i in 0..20 {
        let mut client = KeepAlive::new(port);
        let seen = client.get().unwrap_or_else(|e| panic!("request {i}: {e}"));
        let local = client.conn.as_ref().map(|c| c.local_addr().unwrap().port());
        assert_eq!(
            Some(seen.trim().to_string()),
            local.map(|p| p.to_string()),
            "request {i}: the app should see the client's port"
        );
    }
    let total: u64 = details(&env, "peer")
        .iter()
        .map(|d| d["cluster"]["total_connections"].as_u64().unwrap_or(0))
        .sum();
    assert!(total >= 20, "handed connections are counted: {total}");
}

/// A Node server that answers with its pid; on SIGUSR2 it writes `<dir>/blocked-<pid>` and
/// blocks its event loop for good (it reads nothing more, not even its IPC channel).
fn node_blockable(dir: &Path) -> String {
    let dir = dir.display().to_string();
    format!(
        "\
const fs = require('fs');
const http = require('http');
http.createServer((q, s) => s.end(String(process.pid))).listen(process.env.PORT);
process.on('SIGUSR2', () => {{
  fs.writeFileSync({dir:?} + '/blocked-' + process.pid, '');
  for (;;) {{}}
}});
"
    )
}

#[test]
fn connections_handed_to_a_worker_that_dies_before_taking_them_go_to_another() {
    let env = TestEnv::new();
    let port = free_port();
    env.file("block.js", &node_blockable(env.home_path()));
    env.ok(&["start", "block.js", "-i", "2", "--port", &port.to_string()]);
    let pids = wait_ready(&env, "block", 2);
    // Both instances answer (and their shims have had time to say they take handed ones).
    env.wait_for("both instances to answer", || {
        (pids_answering(port, 10) == set(&pids)).then_some(())
    });
    let stuck = pids[1];
    kill_pid(stuck, "USR2");
    env.wait_for("the instance to block", || {
        env.home_path()
            .join(format!("blocked-{stuck}"))
            .exists()
            .then_some(())
    });
    // Round robin sends about half of these to the blocked process, which never takes them.
    let clients: Vec<JoinHandle<Result<u32, Failure>>> = (0..6)
        .map(|_| std::thread::spawn(move || get_pid(port)))
        .collect();
    env.wait_for("connections waiting for the blocked process", || {
        let d = details(&env, "block");
        let waiting = d
            .iter()
            .find(|d| d["pid"].as_u64() == Some(u64::from(stuck)))?["cluster"]["connections"]
            .as_u64()?;
        (waiting > 0).then_some(())
    });
    kill_pid(stuck, "KILL");
    for (i, c) in clients.into_iter().enumerate() {
        let pid = c
            .join()
            .expect("client thread")
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert_ne!(pid, stuck, "client {i} was answered by the blocked process");
    }
}

#[test]
fn graceful_reload_alias_with_parallel_reloads_without_failures() {
    let env = TestEnv::new();
    let port = free_port();
    env.file("server.js", NODE_SERVER);
    env.ok(&["start", "server.js", "-i", "4", "--port", &port.to_string()]);
    let old = wait_ready(&env, "server", 4);
    let load = Load::start(&[port], 4, Duration::from_millis(5));
    load.wait_requests(50);
    env.ok(&["gracefulReload", "server", "--parallel", "2"]);
    let new = wait_ready(&env, "server", 4);
    load.wait_requests(50);
    let stats = load.finish();
    assert_no_failures(&stats, "bm2 gracefulReload --parallel 2");
    assert!(
        set(&old).is_disjoint(&set(&new)),
        "old {old:?}, new {new:?}"
    );
}

#[test]
fn fork_mode_reload_starts_the_new_process_before_stopping_the_old_one() {
    let env = TestEnv::new();
    // Each process appends "start <pid>" when it starts, then says it is ready, and
    // "stop <pid>" when it is stopped.
    let events = env.path("events");
    env.file(
        "forky.py",
        &format!(
            "\
import os, signal, socket, sys, time

def log(line):
    with open({ev:?}, 'a') as f:
        f.write(line + '\\n')

def stop(*args):
    log('stop %d' % os.getpid())
    sys.exit(0)

signal.signal(signal.SIGINT, stop)
signal.signal(signal.SIGTERM, stop)
log('start %d' % os.getpid())
addr = os.environ['NOTIFY_SOCKET']
if addr.startswith('@'):
    addr = '\\0' + addr[1:]
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1', addr)
while True:
    time.sleep(1)
",
            ev = events.display().to_string()
        ),
    );
    env.ok(&[
        "start",
        "forky.py",
        "--wait-ready",
        "--listen-timeout",
        "20000",
    ]);
    let old = env.wait_status("forky", "online")["pid"].as_u64().unwrap();
    env.wait_for("the start line", || {
        fs::read_to_string(&events)
            .ok()
            .filter(|s| s.contains(&format!("start {old}\n")))
    });
    env.ok(&["reload", "forky"]);
    let new = env.wait_new_pid("forky", old);
    let log = env.wait_for("the stop line of the old process", || {
        fs::read_to_string(&events)
            .ok()
            .filter(|s| s.contains(&format!("stop {old}\n")))
    });
    let lines: Vec<&str> = log.lines().collect();
    let started = lines.iter().position(|l| *l == format!("start {new}"));
    let stopped = lines.iter().position(|l| *l == format!("stop {old}"));
    assert!(
        started.is_some() && started < stopped,
        "the new process should be started (and ready) before the old one is stopped: {lines:?}"
    );
}

// ---- 4. reload with an instance that never becomes ready ----

#[test]
fn reload_fails_when_the_new_process_never_becomes_ready_and_the_old_one_keeps_serving() {
    let env = TestEnv::new();
    let port = free_port();
    let marker = env.path("never-ready").display().to_string();
    env.file(
        "stubborn.js",
        &format!(
            "\
const fs = require('fs');
const http = require('http');
if (fs.existsSync({marker:?})) {{
  setInterval(() => {{}}, 1000);
}} else {{
  http.createServer((q, s) => s.end(String(process.pid)))
    .listen(process.env.PORT, () => process.send('ready'));
}}
"
        ),
    );
    env.ok(&[
        "start",
        "stubborn.js",
        "-i",
        "2",
        "--port",
        &port.to_string(),
        "--wait-ready",
        "--listen-timeout",
        "1000",
    ]);
    let old = wait_ready(&env, "stubborn", 2);
    fs::write(&marker, "").unwrap();
    let started = Instant::now();
    let (ok, stdout, stderr) = env.output(&["reload", "stubborn"]);
    assert!(
        !ok,
        "reload should fail:\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "reload should give up after the listen timeout, took {:?}",
        started.elapsed()
    );
    let said = format!("{stdout}{stderr}").to_lowercase();
    assert!(
        said.contains("ready"),
        "the message should say the instance did not become ready:\nstdout: {stdout}\nstderr: {stderr}"
    );
    let now: Vec<(u64, Value)> = env
        .app_rows("stubborn")
        .iter()
        .map(|p| (p["pid"].as_u64().unwrap_or(0), p["status"].clone()))
        .collect();
    assert_eq!(
        now,
        old.iter()
            .map(|p| (u64::from(*p), Value::from("online")))
            .collect::<Vec<_>>(),
        "the old processes stay online"
    );
    assert_eq!(wait_ready(&env, "stubborn", 2), old);
    assert_eq!(
        pids_answering(port, 20),
        set(&old),
        "the old processes still serve"
    );
    env.wait_for("the never-ready processes to be stopped", || {
        (set(&env.app_pids()) == set(&old)).then_some(())
    });
}

#[test]
fn reload_replaces_cluster_workers_that_never_listen_after_listen_timeout() {
    let env = TestEnv::new();
    env.file("worker.js", "setInterval(() => {}, 1000);\n");
    env.ok(&["start", "worker.js", "-i", "2", "--listen-timeout", "500"]);
    let old: Vec<u64> = env.wait_for("both workers online", || {
        let rows = env.app_rows("worker");
        (rows.len() == 2
            && rows
                .iter()
                .all(|p| p["status"] == "online" && p["pid"].is_u64()))
        .then(|| rows.iter().map(|p| p["pid"].as_u64().unwrap()).collect())
    });
    let started = Instant::now();
    let (ok, stdout, stderr) = env.output(&["reload", "worker"]);
    assert!(
        ok,
        "reload replaces workers that never listen:\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "each new worker gets listen_timeout to listen first: {:?}",
        started.elapsed()
    );
    let rows = env.app_rows("worker");
    let new: Vec<u64> = rows.iter().filter_map(|p| p["pid"].as_u64()).collect();
    assert_eq!(new.len(), 2, "{rows:?}");
    assert!(
        new.iter().all(|p| !old.contains(p)),
        "every worker is replaced: {old:?} -> {new:?}"
    );
    assert!(rows.iter().all(|p| p["status"] == "online"), "{rows:?}");
    env.wait_for("the old workers to exit", || {
        old.iter().all(|p| !alive(*p as u32)).then_some(())
    });
}

// ---- 4b. status ----

#[test]
fn cluster_instances_are_online_as_soon_as_they_run_and_ready_apart() {
    let env = TestEnv::new();
    let port = free_port();
    // Python instances that never listen on their private port, and Node workers.
    env.file("idle.py", "import time\nwhile True:\n    time.sleep(1)\n");
    env.file("idle.js", "setInterval(() => {}, 1000);\n");
    let started = Instant::now();
    env.ok(&[
        "start",
        "idle.py",
        "--name",
        "py",
        "-i",
        "2",
        "--exec-mode",
        "cluster",
        "--port",
        &port.to_string(),
        "--listen-timeout",
        "60000",
    ]);
    env.ok(&[
        "start",
        "idle.js",
        "--name",
        "js",
        "-i",
        "2",
        "--listen-timeout",
        "60000",
    ]);
    env.wait_for("all four instances online", || {
        let rows = env.list();
        (rows.len() == 4 && rows.iter().all(|p| p["status"] == "online")).then_some(())
    });
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "online long before listen_timeout: {:?}",
        started.elapsed()
    );
    for app in ["py", "js"] {
        for d in details(&env, app) {
            assert_eq!(d["status"], "online", "{d}");
            assert_eq!(
                d["cluster"]["ready"], false,
                "an instance that does not listen is online but not ready: {}",
                d["cluster"]
            );
        }
    }
}

// ---- 5. --wait-ready ----

/// Instance 0 says it is ready at once, instance 1 once `go` exists: until then instance 1
/// listens but gets no request and is not ready.
fn readiness_is_what_the_app_says(
    env: &TestEnv,
    app: &str,
    port: u16,
    go: &Path,
    mut start: Child,
) {
    let first = env.wait_for("instance 0 to be ready", || {
        let d = try_detail(env, app, 0)?;
        is_ready(&d).then(|| d["pid"].as_u64().unwrap() as u32)
    });
    let (second, second_port) = env.wait_for("instance 1 to listen on its private port", || {
        let d = try_detail(env, app, 1)?;
        let pid = d["pid"].as_u64()?;
        let p = private_port(&d)?;
        accepts(p).then_some((pid as u32, p))
    });
    assert_ne!(second_port, port);
    let d = detail(env, app, 1);
    assert_eq!(
        d["cluster"]["ready"], false,
        "instance 1 listens but has not said it is ready"
    );
    assert_eq!(
        d["status"], "launching",
        "an app with wait_ready is launching until it says it is ready"
    );
    assert_eq!(
        pids_answering(port, 20),
        BTreeSet::from([first]),
        "only the ready instance gets requests"
    );
    assert_eq!(detail(env, app, 1)["cluster"]["ready"], false);
    assert!(alive(second));
    fs::write(go, "").unwrap();
    let pids = wait_ready(env, app, 2);
    assert_eq!(pids, [first, second]);
    assert_eq!(pids_answering(port, 20), set(&pids));
    wait_child_ok(&mut start, "bm2 start --wait-ready");
}

#[test]
fn wait_ready_with_node_process_send() {
    let env = TestEnv::new();
    let port = free_port();
    let go = env.path("go");
    env.file("gated.js", &node_gated(&go));
    let start = env
        .command(&[
            "start",
            "gated.js",
            "-i",
            "2",
            "--port",
            &port.to_string(),
            "--wait-ready",
            "--listen-timeout",
            "60000",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    readiness_is_what_the_app_says(&env, "gated", port, &go, start);
}

#[test]
fn wait_ready_with_notify_socket() {
    let env = TestEnv::new();
    let port = free_port();
    let go = env.path("go");
    env.file("gated.py", &py_gated(&go));
    let start = env
        .command(&[
            "start",
            "gated.py",
            "-i",
            "2",
            "--exec-mode",
            "cluster",
            "--port",
            &port.to_string(),
            "--wait-ready",
            "--listen-timeout",
            "60000",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    readiness_is_what_the_app_says(&env, "gated", port, &go, start);
}

// ---- 6. scale ----

#[test]
fn scale_up_and_down_under_load_fails_no_request() {
    let env = TestEnv::new();
    let port = free_port();
    env.file("server.js", NODE_SERVER);
    env.ok(&["start", "server.js", "-i", "2", "--port", &port.to_string()]);
    let two = wait_ready(&env, "server", 2);
    let load = Load::start(&[port], 4, Duration::from_millis(5));
    load.wait_requests(50);

    env.ok(&["scale", "server", "+2"]);
    let four = wait_ready(&env, "server", 4);
    assert_eq!(four[..2], two[..], "scaling up keeps the running instances");
    load.wait_requests(50);

    env.ok(&["scale", "server", "-1"]);
    let three = wait_ready(&env, "server", 3);
    assert_eq!(
        three[..],
        four[..3],
        "scaling down removes the highest-numbered instance"
    );
    load.wait_requests(50);

    env.ok(&["scale", "server", "2"]);
    let last = wait_ready(&env, "server", 2);
    assert_eq!(last[..], four[..2]);
    load.wait_requests(50);

    let stats = load.finish();
    assert_no_failures(&stats, "scale +2, -1 and 2");
    assert!(
        set(&four).is_subset(&stats.pids),
        "the added instances got requests: {:?} of {four:?}",
        stats.pids
    );
    assert_eq!(env.app_rows("server").len(), 2);
    env.wait_for("the removed instances' processes to exit", || {
        (set(&env.app_pids()) == set(&last)).then_some(())
    });
    assert_eq!(pids_answering(port, 20), set(&last));
}

// ---- 7. --shutdown-with-message ----

/// A Node app that writes `shutdown-<i>` when it gets the `shutdown` message and exits, and
/// `sigint-<i>` if a SIGINT comes first.
fn shutdown_recorder(dir: &Path) -> String {
    format!(
        "\
const fs = require('fs');
const path = require('path');
const http = require('http');
const i = process.env.NODE_APP_INSTANCE;
process.on('message', (m) => {{
  if (m === 'shutdown') {{
    fs.writeFileSync(path.join({dir:?}, 'shutdown-' + i), 'shutdown\\n');
    process.exit(0);
  }}
}});
process.on('SIGINT', () => {{
  fs.writeFileSync(path.join({dir:?}, 'sigint-' + i), 'sigint\\n');
  process.exit(0);
}});
if (process.env.PORT) {{
  http.createServer((q, s) => s.end(String(process.pid))).listen(process.env.PORT);
}} else {{
  setInterval(() => {{}}, 1000);
}}
",
        dir = dir.display().to_string()
    )
}

#[test]
fn shutdown_with_message_in_cluster_mode() {
    let env = TestEnv::new();
    let port = free_port();
    env.file("polite.js", &shutdown_recorder(env.dir.path()));
    env.ok(&[
        "start",
        "polite.js",
        "-i",
        "2",
        "--port",
        &port.to_string(),
        "--shutdown-with-message",
    ]);
    wait_ready(&env, "polite", 2);
    env.ok(&["stop", "polite"]);
    for i in 0..2 {
        assert!(
            !env.path(&format!("sigint-{i}")).exists(),
            "instance {i} got SIGINT before the shutdown message"
        );
        assert_eq!(
            fs::read_to_string(env.path(&format!("shutdown-{i}")))
                .ok()
                .as_deref(),
            Some("shutdown\n"),
            "instance {i} should have received the shutdown message"
        );
        assert_eq!(env.proc(&format!("polite-{i}"))["status"], "stopped");
    }
}

#[test]
fn shutdown_with_message_in_fork_mode() {
    let env = TestEnv::new();
    env.file("polite.js", &shutdown_recorder(env.dir.path()));
    env.ok(&["start", "polite.js", "--shutdown-with-message"]);
    env.wait_status("polite", "online");
    env.ok(&["stop", "polite"]);
    let i = env.proc("polite")["instance"].as_u64().unwrap();
    assert!(
        !env.path(&format!("sigint-{i}")).exists(),
        "the app got SIGINT before the shutdown message"
    );
    assert_eq!(
        fs::read_to_string(env.path(&format!("shutdown-{i}")))
            .ok()
            .as_deref(),
        Some("shutdown\n"),
        "the app should have received the shutdown message"
    );
    assert_eq!(env.proc("polite")["status"], "stopped");
}

// ---- 8. hard-coded port ----

#[test]
fn node_app_with_a_hard_coded_port_is_balanced_on_that_port() {
    let env = TestEnv::new();
    let port = free_port();
    env.file(
        "hard.js",
        &format!(
            "\
const http = require('http');
http.createServer((q, s) => s.end(String(process.pid))).listen({port});
"
        ),
    );
    env.ok(&["start", "hard.js", "-i", "2"]);
    let pids = wait_ready(&env, "hard", 2);
    for d in details(&env, "hard") {
        assert_ne!(
            private_port(&d),
            Some(port),
            "instances listen on private ports: {}",
            d["cluster"]
        );
    }
    assert_eq!(
        pids_answering(port, 20),
        set(&pids),
        "port {port} is balanced over both instances"
    );
}

// ---- 9. PORT in fork mode ----

#[test]
fn fork_mode_instances_get_port_plus_their_index() {
    let env = TestEnv::new();
    let port = free_port();
    env.script(
        "portfork.sh",
        &format!(
            "echo \"$PORT\" > {dir}/port-$NODE_APP_INSTANCE\nexec sleep 1000\n",
            dir = env.dir.path().display()
        ),
    );
    env.ok(&[
        "start",
        "portfork.sh",
        "-i",
        "2",
        "--port",
        &port.to_string(),
    ]);
    assert_eq!(env.wait_marker("port-0"), format!("{port}\n"));
    assert_eq!(env.wait_marker("port-1"), format!("{}\n", port + 1));
    let rows = env.app_rows("portfork");
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|p| p["exec_mode"] == "fork"), "{rows:?}");
    assert!(!accepts(port), "nothing balances port {port} in fork mode");
}

#[test]
fn fork_mode_python_servers_listen_on_port_plus_their_index() {
    let env = TestEnv::new();
    let port = free_port_pair();
    env.file("server.py", &py_server());
    env.ok(&["start", "server.py", "-i", "2", "--port", &port.to_string()]);
    let pids: Vec<u32> = env.wait_for("both instances to answer on their ports", || {
        let a = get_pid(port).ok()?;
        let b = get_pid(port + 1).ok()?;
        Some(vec![a, b])
    });
    let rows = env.app_rows("server");
    let listed: Vec<u32> = rows
        .iter()
        .map(|p| p["pid"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(pids, listed, "instance i answers on port {port} + i");
    assert!(rows.iter().all(|p| p["exec_mode"] == "fork"), "{rows:?}");
}
