//! Fork-mode reload of apps with a port: bm2 holds each instance's listening socket and hands
//! it to every process (Node through the preloaded shim, any program by socket activation), so
//! that a reload refuses no connection; an app that binds its port itself gets a reload that
//! says it is a restart, and that returns once the new process listens.
//!
//! The apps are small HTTP servers that answer with their pid; the load is a loop of HTTP/1.0
//! requests (a new connection each) from threads of the test, over 127.0.0.1.

mod common;

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::load::{Load, NODE_SERVER, PY_PID_HANDLER, Stats, assert_no_failures, get_pid, set};
use common::{DEADLINE, TestEnv, alive, free_port, free_port_pair};

// ---- apps ----

/// Python: takes its listening socket by systemd socket activation (descriptor 3, checked
/// against `LISTEN_FDS` and `LISTEN_PID`), answers with its pid, and on SIGINT stops accepting
/// and finishes the requests it has before exiting.
fn py_activated() -> String {
    format!(
        "\
import http.server, os, signal, socket, sys, threading

{PY_PID_HANDLER}
if os.environ.get('LISTEN_FDS') != '1' or os.environ.get('LISTEN_PID') != str(os.getpid()):
    sys.exit('no socket activation: LISTEN_FDS=%r LISTEN_PID=%r pid %d' % (
        os.environ.get('LISTEN_FDS'), os.environ.get('LISTEN_PID'), os.getpid()))
print('fdname', os.environ.get('LISTEN_FDNAMES'), flush=True)
srv = http.server.ThreadingHTTPServer(('', 0), H, bind_and_activate=False)
srv.socket = socket.socket(fileno=3)
srv.daemon_threads = False

def stop(*args):
    threading.Thread(target=srv.shutdown).start()

signal.signal(signal.SIGINT, stop)
signal.signal(signal.SIGTERM, stop)
srv.serve_forever()
srv.server_close()
"
    )
}

/// Python: binds `127.0.0.1:$PORT` itself (after a second when the file `slow` exists),
/// answers with its pid.
fn py_own_port(slow: &std::path::Path) -> String {
    format!(
        "\
import http.server, os, time

{PY_PID_HANDLER}
if os.path.exists({slow:?}):
    time.sleep(1)
http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()
",
        slow = slow.display().to_string()
    )
}

// ---- load ----

/// Two threads per port, 2 ms between the requests of each.
fn start_load(ports: &[u16]) -> Load {
    Load::start(ports, 2, Duration::from_millis(2))
}

// ---- bm2 state ----

/// The pids of the instances of `app`, by instance index, once all are online.
fn online_pids(env: &TestEnv, app: &str, n: usize) -> Vec<u32> {
    env.wait_for(&format!("{n} online instances of {app}"), || {
        let rows = env.app_rows(app);
        let pids: Vec<u32> = rows
            .iter()
            .filter(|p| p["status"] == "online")
            .filter_map(|p| p["pid"].as_u64().map(|p| p as u32))
            .collect();
        (pids.len() == n && rows.len() == n).then_some(pids)
    })
}

/// Waits until `port` answers with one of `pids`.
fn wait_answer(port: u16, pids: &[u32]) {
    common::wait_for(&format!("port {port} to answer"), DEADLINE, || {
        get_pid(port).ok().filter(|p| pids.contains(p))
    });
}

/// Reloads `app` `times` times under load on `ports`; the stats, and the pids after.
fn reload_under_load(env: &TestEnv, app: &str, n: usize, ports: &[u16], times: usize) -> Stats {
    let load = start_load(ports);
    load.wait_requests(50);
    let mut pids = online_pids(env, app, n);
    for _ in 0..times {
        let (ok, stdout, stderr) = env.output(&["reload", app]);
        assert!(ok, "reload failed:\nstdout: {stdout}\nstderr: {stderr}");
        assert!(
            !stdout.contains("restart"),
            "a reload without a gap says nothing of a restart:\n{stdout}"
        );
        let new = online_pids(env, app, n);
        assert!(
            set(&new).is_disjoint(&set(&pids)),
            "every process is replaced: {pids:?} -> {new:?}"
        );
        pids = new;
        load.wait_requests(50);
    }
    load.finish()
}

/// Reloads `app`, whose new process never becomes ready, under load on `port`: the reload fails
/// and the old process `old` answers every request throughout.
fn failed_reload_under_load(env: &TestEnv, app: &str, port: u16, old: &[u32]) {
    let load = start_load(&[port]);
    load.wait_requests(20);
    let (ok, stdout, stderr) = env.output(&["reload", app]);
    assert!(!ok, "the reload fails:\nstdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("did not become ready"), "{stderr}");
    load.wait_requests(20);
    let stats = load.finish();
    assert_no_failures(&stats, "a failed reload");
    assert_eq!(stats.pids, set(old), "the old process served throughout");
}

/// Starts the socket-activated Python app `body` as `activated` on a free port; the port and
/// its pid once it answers.
fn start_activated(env: &TestEnv, body: &str, min_uptime: &str) -> (u16, Vec<u32>) {
    let port = free_port();
    env.file("activated.py", body);
    env.ok(&[
        "start",
        "activated.py",
        "--port",
        &port.to_string(),
        "--listen-host",
        "127.0.0.1",
        "--socket-activation",
        "--min-uptime",
        min_uptime,
    ]);
    let pids = online_pids(env, "activated", 1);
    wait_answer(port, &pids);
    (port, pids)
}

// ---- tests ----

#[test]
fn node_fork_reload_under_load_refuses_no_connection() {
    let env = TestEnv::new();
    let port = free_port_pair();
    env.file("web.js", NODE_SERVER);
    env.ok(&[
        "start",
        "web.js",
        "-i",
        "2",
        "--exec-mode",
        "fork",
        "--port",
        &port.to_string(),
        "--listen-host",
        "127.0.0.1",
    ]);
    let pids = online_pids(&env, "web", 2);
    wait_answer(port, &pids[..1]);
    wait_answer(port + 1, &pids[1..]);
    assert!(env.list().iter().all(|p| p["exec_mode"] == "fork"));
    let stats = reload_under_load(&env, "web", 2, &[port, port + 1], 3);
    assert_no_failures(&stats, "3 fork-mode reloads of a Node app");
    assert!(
        stats.pids.len() >= 4,
        "old and new processes answered: {stats:?}"
    );
    // Each instance still serves its own port.
    let now = online_pids(&env, "web", 2);
    assert_eq!(get_pid(port).ok(), Some(now[0]));
    assert_eq!(get_pid(port + 1).ok(), Some(now[1]));
}

#[test]
fn python_socket_activation_reload_under_load_refuses_no_connection() {
    let env = TestEnv::new();
    let (port, _) = start_activated(&env, &py_activated(), "300");
    assert!(env.out_log("activated").contains("fdname activated\n"));
    let stats = reload_under_load(&env, "activated", 1, &[port], 3);
    assert_no_failures(&stats, "3 reloads of a socket-activated Python app");
    assert!(stats.pids.len() >= 2, "{stats:?}");
    let d = env.describe("activated");
    assert_eq!(d["restarts"], 3, "{d}");
    // Stopped, the app no longer holds the port.
    env.ok(&["stop", "activated"]);
    common::wait_for("the port to be free", DEADLINE, || {
        TcpListener::bind(("127.0.0.1", port)).ok()
    });
}

#[test]
fn python_binding_its_port_itself_gets_a_reload_that_says_it_is_a_restart() {
    let env = TestEnv::new();
    let port = free_port();
    let slow = env.path("slow");
    env.file("own.py", &py_own_port(&slow));
    env.ok(&[
        "start",
        "own.py",
        "--port",
        &port.to_string(),
        "--listen-timeout",
        "20000",
    ]);
    let old = online_pids(&env, "own", 1);
    wait_answer(port, &old);
    // The new process takes a second to bind: the reload returns only once it listens.
    fs::write(&slow, "").unwrap();
    let (ok, stdout, stderr) = env.output(&["reload", "own"]);
    assert!(ok, "reload failed:\nstdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("reloaded by a restart")
            && stdout.contains(&format!("listens on port {port} itself")),
        "the reload says it is a restart:\n{stdout}"
    );
    let new = get_pid(port)
        .unwrap_or_else(|e| panic!("the new process answers as soon as reload returns: {e:?}"));
    assert!(!old.contains(&new), "{old:?} -> {new}");
    assert!(!alive(old[0]));
    let d = env.describe("own");
    let detail = d["last_restart"]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("done as a restart"), "{d}");
}

#[test]
fn readiness_is_not_granted_while_the_old_process_holds_the_port() {
    let env = TestEnv::new();
    let slow = env.path("slow");
    let events = env.path("events");
    // Listens on $PORT (after 1.5 s when `slow` exists); logs when it listens and when it exits.
    let (_, port, old) = start_node(
        &env,
        "late.js",
        &format!(
            "\
const fs = require('fs');
const http = require('http');
const log = (what) => fs.appendFileSync({events:?}, what + ' ' + process.pid + '\\n');
process.on('exit', () => log('exit'));
process.on('SIGINT', () => process.exit(0));
setTimeout(() => {{
  http.createServer((q, s) => s.end(String(process.pid)))
    .listen(process.env.PORT, () => log('listening'));
}}, fs.existsSync({slow:?}) ? 1500 : 0);
",
            events = events.display().to_string(),
            slow = slow.display().to_string()
        ),
    );
    wait_answer(port, &[old]);
    fs::write(&slow, "").unwrap();
    let load = start_load(&[port]);
    load.wait_requests(20);
    let started = Instant::now();
    env.ok(&["reload", "late"]);
    let took = started.elapsed();
    load.wait_requests(20);
    let stats = load.finish();
    assert_no_failures(&stats, "the reload of a Node app that listens late");
    let new = online_pids(&env, "late", 1)[0];
    assert_ne!(new, old);
    let log = fs::read_to_string(&events).unwrap();
    let at = |line: String| log.lines().position(|l| l == line);
    assert!(
        at(format!("listening {new}")).is_some()
            && at(format!("listening {new}")) < at(format!("exit {old}")),
        "the old process is stopped only once the new one listens: {log}\ndaemon log:\n{}",
        fs::read_to_string(env.home_path().join("daemon.log")).unwrap_or_default()
    );
    assert!(
        took >= Duration::from_millis(1400),
        "reload waited for the new process to listen ({took:?})"
    );
}

#[test]
fn a_reload_whose_new_node_process_dies_keeps_the_old_one_serving() {
    let env = TestEnv::new();
    let port = free_port();
    let broken = env.path("broken");
    env.file(
        "fragile.js",
        &format!(
            "\
if (require('fs').existsSync({broken:?})) throw new Error('bad release');
require('http').createServer((q, s) => s.end(String(process.pid))).listen(process.env.PORT);
",
            broken = broken.display().to_string()
        ),
    );
    env.ok(&[
        "start",
        "fragile.js",
        "--port",
        &port.to_string(),
        "--listen-host",
        "127.0.0.1",
    ]);
    let old = online_pids(&env, "fragile", 1);
    wait_answer(port, &old);
    fs::write(&broken, "").unwrap();
    failed_reload_under_load(&env, "fragile", port, &old);
    assert_eq!(online_pids(&env, "fragile", 1), old);
}

/// Starts `script` (a Node app in the work directory) in fork mode on a free port; its name,
/// port and pid once online.
fn start_node(env: &TestEnv, script: &str, body: &str) -> (String, u16, u32) {
    let port = free_port();
    env.file(script, body);
    env.ok(&[
        "start",
        script,
        "--port",
        &port.to_string(),
        "--listen-host",
        "127.0.0.1",
        "--listen-timeout",
        "20000",
    ]);
    let name = script.trim_end_matches(".js").to_string();
    let pid = online_pids(env, &name, 1)[0];
    (name, port, pid)
}

#[test]
fn node_apps_that_do_not_take_bm2s_socket_reload_as_before_or_say_it_is_a_restart() {
    let env = TestEnv::new();
    // Binds a host of its own choosing: its own socket, so the reload is a restart.
    let (local, port, old) = start_node(
        &env,
        "local.js",
        "require('http').createServer((q, s) => s.end(String(process.pid))).listen(process.env.PORT, 'localhost');\n",
    );
    wait_answer(port, &[old]);
    let out = env.ok(&["reload", &local]);
    assert!(out.contains("reloaded by a restart"), "{out}");
    let new = get_pid(port).expect("the new process listens when reload returns");
    assert_ne!(new, old);
    // A process it starts listens on $PORT: the child binds it (bm2's socket is not the
    // child's descriptor 3), and the reload is a restart too.
    let child = env.path("child.js");
    env.file(
        "child.js",
        "require('http').createServer((q, s) => s.end(String(process.pid))).listen(process.env.PORT);\n",
    );
    let (launcher, port, _) = start_node(
        &env,
        "launcher.js",
        &format!(
            "require('child_process').fork({child:?}).on('exit', (c) => process.exit(c || 1));\n",
            child = child.display().to_string()
        ),
    );
    let first = common::wait_for("the child to answer", DEADLINE, || get_pid(port).ok());
    let out = env.ok(&["reload", &launcher]);
    assert!(out.contains("reloaded by a restart"), "{out}");
    let second = get_pid(port).expect("the new child listens when reload returns");
    assert_ne!(first, second);
    // Never listens on its port: nothing to wait for, nothing to say.
    let (worker, port, old) = start_node(&env, "worker.js", "setInterval(() => {}, 1000);\n");
    let started = Instant::now();
    let out = env.ok(&["reload", &worker]);
    // Well under the 20 s listen_timeout it would otherwise wait (a loaded machine can take
    // seconds to start node).
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "nothing to wait for ({:?})",
        started.elapsed()
    );
    assert!(!out.contains("restart"), "{out}");
    assert_ne!(online_pids(&env, &worker, 1)[0], old);
    // bm2 holds the port for the app, but nothing listens on it until the app does.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn a_socket_activated_reload_whose_new_process_exits_keeps_the_old_one_serving() {
    let env = TestEnv::new();
    let broken = env.path("broken");
    let body = format!(
        "import os, sys\nif os.path.exists({broken:?}):\n    sys.exit('bad release')\n{}",
        py_activated(),
        broken = broken.display().to_string()
    );
    let (port, old) = start_activated(&env, &body, "500");
    fs::write(&broken, "").unwrap();
    failed_reload_under_load(&env, "activated", port, &old);
}

#[test]
fn after_a_daemon_crash_the_app_keeps_its_socket_and_gets_it_back_from_the_new_daemon() {
    let env = TestEnv::new();
    let (port, old) = start_activated(&env, &py_activated(), "300");
    let daemon = env.daemon_pid().expect("daemon pid");
    common::kill_pid(daemon, "KILL");
    common::wait_for("the daemon to die", DEADLINE, || {
        (!alive(daemon)).then_some(())
    });
    // The app holds the socket itself: it serves without the daemon.
    assert_eq!(get_pid(port).ok(), Some(old[0]));
    // The next command starts a new daemon, which restores the app with a socket of its own.
    let new = common::wait_for("the app to be restored", DEADLINE, || {
        let pids = online_pids(&env, "activated", 1);
        (pids != old).then_some(pids)
    });
    wait_answer(port, &new);
    let stats = reload_under_load(&env, "activated", 1, &[port], 1);
    assert_no_failures(&stats, "a reload after a daemon crash");
}

#[test]
fn socket_activation_errors_clearly_where_it_cannot_work() {
    let env = TestEnv::new();
    env.file("activated.py", &py_activated());
    let (ok, stdout, stderr) = env.output(&["start", "activated.py", "--socket-activation"]);
    assert!(
        !ok && format!("{stdout}{stderr}").contains("socket_activation needs the app's port"),
        "without a port:\nstdout: {stdout}\nstderr: {stderr}"
    );
    // A start that fails registers nothing.
    assert!(env.list().is_empty(), "{:?}", env.list());
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (ok, stdout, stderr) = env.output(&[
        "start",
        "activated.py",
        "--socket-activation",
        "--port",
        &port,
        "--listen-host",
        "127.0.0.1",
    ]);
    assert!(
        !ok && format!("{stdout}{stderr}")
            .contains(&format!("cannot listen on 127.0.0.1 port {port}")),
        "a port in use:\nstdout: {stdout}\nstderr: {stderr}"
    );
    // A start that fails registers nothing.
    assert!(env.list().is_empty(), "{:?}", env.list());
    let (ok, stdout, stderr) = env.output(&[
        "start",
        "activated.py",
        "--socket-activation",
        "--exec-mode",
        "cluster",
        "--port",
        &free_port().to_string(),
    ]);
    assert!(
        !ok && format!("{stdout}{stderr}").contains("socket_activation is for fork mode"),
        "cluster mode:\nstdout: {stdout}\nstderr: {stderr}"
    );
}
