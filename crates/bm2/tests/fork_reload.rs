//! Fork-mode reload of apps with a port: bm2 holds each instance's listening socket and hands
//! it to every process (Node through the preloaded shim, any program by socket activation), so
//! that a reload refuses no connection; an app that binds its port itself gets a reload that
//! says it is a restart, and that returns once the new process listens.
//!
//! The apps are small HTTP servers that answer with their pid; the load is a loop of HTTP/1.0
//! requests (a new connection each) from threads of the test, over 127.0.0.1.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{DEADLINE, TestEnv, alive, free_port};
use serde_json::Value;

// ---- apps ----

/// Node: listens on `$PORT`, answers with its pid.
const NODE_SERVER: &str = "\
const http = require('http');
http.createServer((q, s) => s.end(String(process.pid))).listen(process.env.PORT);
";

/// Python: takes its listening socket by systemd socket activation (descriptor 3, checked
/// against `LISTEN_FDS` and `LISTEN_PID`), answers with its pid, and on SIGINT stops accepting
/// and finishes the requests it has before exiting.
const PY_ACTIVATED: &str = "\
import http.server, os, signal, socket, sys, threading

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = str(os.getpid()).encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

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
";

/// Python: binds `127.0.0.1:$PORT` itself (after a second when the file `slow` exists),
/// answers with its pid.
fn py_own_port(slow: &std::path::Path) -> String {
    format!(
        "\
import http.server, os, time

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = str(os.getpid()).encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

if os.path.exists({slow:?}):
    time.sleep(1)
http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()
",
        slow = slow.display().to_string()
    )
}

// ---- HTTP ----

/// How a request failed.
#[derive(Debug)]
enum Failure {
    /// The connection was refused: nothing listened on the port.
    Refused,
    /// Anything else (reset, timeout, bad answer).
    Other(String),
}

/// `GET /` on 127.0.0.1:`port` with HTTP/1.0; the pid the app answered with.
fn get_pid(port: u16) -> Result<u32, Failure> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| {
        if e.kind() == ErrorKind::ConnectionRefused {
            Failure::Refused
        } else {
            Failure::Other(format!("connect: {e}"))
        }
    })?;
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .map_err(|e| Failure::Other(format!("write: {e}")))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(|e| Failure::Other(format!("read: {e}")))?;
    let text = String::from_utf8_lossy(&buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(Failure::Other(format!("incomplete answer: {text:?}")));
    };
    if head.lines().next().and_then(|l| l.split(' ').nth(1)) != Some("200") {
        return Err(Failure::Other(format!("answer {head:?}")));
    }
    body.trim()
        .parse()
        .map_err(|_| Failure::Other(format!("body is not a pid: {body:?}")))
}

/// What a load saw.
#[derive(Debug, Default)]
struct Stats {
    ok: u64,
    refused: u64,
    other: Vec<String>,
    pids: BTreeSet<u32>,
}

/// Longest a load runs.
const LOAD_BOUND: Duration = Duration::from_mins(1);

/// Threads sending requests in a loop to some ports until [`Load::finish`] (or [`LOAD_BOUND`]).
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    threads: Vec<JoinHandle<Stats>>,
}

impl Load {
    /// Two threads per port, a new connection per request.
    fn start(ports: &[u16]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let threads = ports
            .iter()
            .flat_map(|&p| [p, p])
            .map(|port| {
                let (stop, done) = (stop.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut stats = Stats::default();
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < LOAD_BOUND {
                        match get_pid(port) {
                            Ok(pid) => {
                                stats.ok += 1;
                                stats.pids.insert(pid);
                            }
                            Err(Failure::Refused) => stats.refused += 1,
                            Err(Failure::Other(e)) => stats
                                .other
                                .push(format!("port {port} at {:?}: {e}", started.elapsed())),
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    stats
                })
            })
            .collect();
        Load {
            stop,
            done,
            threads,
        }
    }

    /// Waits until `n` more requests have been answered or failed.
    fn wait_requests(&self, n: u64) {
        let target = self.done.load(Ordering::Relaxed) + n;
        common::wait_for(&format!("{n} more requests"), DEADLINE, || {
            (self.done.load(Ordering::Relaxed) >= target).then_some(())
        });
    }

    fn finish(self) -> Stats {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Stats::default();
        for t in self.threads {
            let s = t.join().expect("load thread");
            all.ok += s.ok;
            all.refused += s.refused;
            all.other.extend(s.other);
            all.pids.extend(s.pids);
        }
        all
    }
}

fn assert_no_failures(stats: &Stats, during: &str) {
    assert!(
        stats.refused == 0 && stats.other.is_empty(),
        "during {during}: {} refused and {} other failures of {} requests; first others: {:#?}",
        stats.refused,
        stats.other.len(),
        stats.ok + stats.refused + stats.other.len() as u64,
        &stats.other[..stats.other.len().min(10)]
    );
    assert!(stats.ok > 0, "no request was answered during {during}");
}

// ---- bm2 state ----

/// The pids of the instances of `app`, by instance index, once all are online.
fn online_pids(env: &TestEnv, app: &str, n: usize) -> Vec<u32> {
    env.wait_for(&format!("{n} online instances of {app}"), || {
        let mut rows: Vec<Value> = env
            .list()
            .into_iter()
            .filter(|p| p["name"] == app)
            .collect();
        rows.sort_by_key(|p| p["instance"].as_u64());
        let pids: Vec<u32> = rows
            .iter()
            .filter(|p| p["status"] == "online")
            .filter_map(|p| p["pid"].as_u64().map(|p| p as u32))
            .collect();
        (pids.len() == n && rows.len() == n).then_some(pids)
    })
}

/// A port P such that P and P + 1 are both free right now (fork instances use P + i).
fn free_port_pair() -> u16 {
    common::wait_for("two consecutive free ports", DEADLINE, || {
        let port = free_port();
        let next = port.checked_add(1)?;
        TcpListener::bind(("127.0.0.1", next)).ok().map(|_| port)
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
    let load = Load::start(ports);
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

fn set(pids: &[u32]) -> BTreeSet<u32> {
    pids.iter().copied().collect()
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
    let port = free_port();
    env.file("activated.py", PY_ACTIVATED);
    env.ok(&[
        "start",
        "activated.py",
        "--port",
        &port.to_string(),
        "--listen-host",
        "127.0.0.1",
        "--socket-activation",
        "--min-uptime",
        "300",
    ]);
    let pids = online_pids(&env, "activated", 1);
    wait_answer(port, &pids);
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
    let port = free_port();
    let slow = env.path("slow");
    let events = env.path("events");
    // Listens on $PORT (after 1.5 s when `slow` exists); logs when it listens and when it exits.
    env.file(
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
    env.ok(&[
        "start",
        "late.js",
        "--port",
        &port.to_string(),
        "--listen-host",
        "127.0.0.1",
        "--listen-timeout",
        "20000",
    ]);
    let old = online_pids(&env, "late", 1)[0];
    wait_answer(port, &[old]);
    fs::write(&slow, "").unwrap();
    let load = Load::start(&[port]);
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
    let load = Load::start(&[port]);
    load.wait_requests(20);
    let (ok, stdout, stderr) = env.output(&["reload", "fragile"]);
    assert!(!ok, "the reload fails:\nstdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("did not become ready"), "{stderr}");
    load.wait_requests(20);
    let stats = load.finish();
    assert_no_failures(&stats, "a failed reload");
    assert_eq!(stats.pids, set(&old), "the old process served throughout");
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
    assert!(
        started.elapsed() < Duration::from_secs(2),
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
    let port = free_port();
    let broken = env.path("broken");
    env.file(
        "activated.py",
        &format!(
            "import os, sys\nif os.path.exists({broken:?}):\n    sys.exit('bad release')\n{PY_ACTIVATED}",
            broken = broken.display().to_string()
        ),
    );
    env.ok(&[
        "start",
        "activated.py",
        "--port",
        &port.to_string(),
        "--listen-host",
        "127.0.0.1",
        "--socket-activation",
        "--min-uptime",
        "500",
    ]);
    let old = online_pids(&env, "activated", 1);
    wait_answer(port, &old);
    fs::write(&broken, "").unwrap();
    let load = Load::start(&[port]);
    load.wait_requests(20);
    let (ok, stdout, stderr) = env.output(&["reload", "activated"]);
    assert!(!ok, "the reload fails:\nstdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("did not become ready"), "{stderr}");
    load.wait_requests(20);
    let stats = load.finish();
    assert_no_failures(&stats, "a failed reload");
    assert_eq!(stats.pids, set(&old), "the old process served throughout");
}

#[test]
fn after_a_daemon_crash_the_app_keeps_its_socket_and_gets_it_back_from_the_new_daemon() {
    let env = TestEnv::new();
    let port = free_port();
    env.file("activated.py", PY_ACTIVATED);
    env.ok(&[
        "start",
        "activated.py",
        "--port",
        &port.to_string(),
        "--listen-host",
        "127.0.0.1",
        "--socket-activation",
        "--min-uptime",
        "300",
    ]);
    let old = online_pids(&env, "activated", 1);
    wait_answer(port, &old);
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
    env.file("activated.py", PY_ACTIVATED);
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
