//! Health checks: an HTTP, TCP or command check that fails `--health-check-max-fails` times in a
//! row restarts the app (only the failing instance of a cluster app); `describe` shows the
//! state and the last error; bad options are refused before anything starts; deleting an app
//! ends its checks.

mod common;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{TestEnv, free_port};
use serde_json::Value;

/// HTTP server on `$PORT` (127.0.0.1): 200, or 500 while the file `sick` or `sick-<instance>`
/// exists in its directory.
const HTTP_APP: &str = "\
import http.server, os

inst = os.environ.get('NODE_APP_INSTANCE', '0')

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        sick = os.path.exists('sick') or os.path.exists('sick-' + inst)
        self.send_response(500 if sick else 200)
        self.send_header('Content-Length', '2')
        self.end_headers()
        self.wfile.write(b'ok')

    def log_message(self, *args):
        pass

http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()
";

/// Accepts TCP connections on `$PORT` until the file `closed` exists, then stops listening
/// (and does not listen at all when started while it exists).
const TCP_APP: &str = "\
import os, socket, time

if not os.path.exists('closed'):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('127.0.0.1', int(os.environ['PORT'])))
    s.listen(16)
    s.settimeout(0.05)
    while not os.path.exists('closed'):
        try:
            c, _ = s.accept()
            c.close()
        except socket.timeout:
            pass
    s.close()
while True:
    time.sleep(1)
";

fn reason_count(d: &Value, reason: &str) -> u64 {
    d["restart_reasons"][reason].as_u64().unwrap_or(0)
}

/// Waits until the health state of `target` is `state`; returns its describe.
fn wait_health(env: &TestEnv, target: &str, state: &str) -> Value {
    env.wait_for(&format!("{target} to be {state}"), || {
        let d = env.describe(target);
        (d["health"]["state"] == state).then_some(d)
    })
}

/// Waits until `target` has been restarted for failed health checks at least `n` times and
/// runs again; returns its describe.
fn wait_health_restarts(env: &TestEnv, target: &str, n: u64) -> Value {
    env.wait_for(&format!("{n} health restarts of {target}"), || {
        let d = env.describe(target);
        (reason_count(&d, "health") >= n && d["status"] == "online").then_some(d)
    })
}

#[test]
fn an_app_whose_http_endpoint_fails_is_restarted_after_max_fails() {
    let env = TestEnv::new();
    env.file("srv.py", HTTP_APP);
    let port = free_port().to_string();
    let url = format!("http://127.0.0.1:{port}/health");
    env.ok(&[
        "start",
        "srv.py",
        "--port",
        &port,
        "--health-check-url",
        &url,
        "--health-check-interval",
        "200",
        "--health-check-max-fails",
        "3",
    ]);
    let d = wait_health(&env, "srv", "healthy");
    assert_eq!(d["health"]["check"], format!("GET {url}"));
    assert_eq!(d["health"]["max_fails"], 3);
    let first = d["pid"].as_u64().unwrap();
    assert_eq!(reason_count(&d, "health"), 0, "{d}");

    env.file("sick", "");
    let d = wait_health_restarts(&env, "srv", 1);
    assert_ne!(d["pid"].as_u64(), Some(first), "{d}");
    // The new process answers 500 too: unhealthy, with the last error.
    let d = wait_health(&env, "srv", "unhealthy");
    let h = &d["health"];
    assert!(
        h["last_error"].as_str().unwrap().contains("HTTP 500"),
        "{h}"
    );
    assert!(h["consecutive_fails"].as_u64().unwrap() >= 1, "{h}");
    let reason = d["status_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("health check") && reason.contains("3 times in a row"),
        "{reason}"
    );
    assert_eq!(d["last_restart"]["reason"], "health", "{d}");
    // The table says it too (between probes: a restarted process is `unknown` until probed).
    env.wait_for("describe to show unhealthy and the error", || {
        let table = env.ok(&["describe", "srv"]);
        (table.contains("(unhealthy") && table.contains("last error: HTTP 500")).then_some(())
    });
    let log = std::fs::read_to_string(env.home_path().join("daemon.log")).unwrap();
    assert!(log.contains("reason=\"health\""), "{log}");
    // The metrics say it too: restarts by reason and the health state.
    let metrics: Value = serde_json::from_str(&env.ok(&["metrics"])).unwrap();
    let p = &metrics["processes"][0];
    assert!(p["restart_reasons"]["health"].as_u64() >= Some(1), "{p}");
    let text = env.ok(&["prometheus"]);
    assert!(
        text.lines().any(|l| l.starts_with(
            r#"bm2_process_restarts_by_reason_total{name="srv",id="0",reason="health"}"#
        )),
        "{text}"
    );
    assert!(
        text.contains(r#"bm2_process_health{name="srv",id="0",state="#),
        "{text}"
    );

    // Fixed: healthy again, and no more restarts.
    std::fs::remove_file(env.path("sick")).unwrap();
    let d = wait_health(&env, "srv", "healthy");
    assert_eq!(d["health"]["consecutive_fails"], 0);
    let table = env.ok(&["describe", "srv"]);
    assert!(table.contains("(healthy)"), "{table}");
}

#[test]
fn a_tcp_check_restarts_an_app_that_stops_listening() {
    let env = TestEnv::new();
    env.file("tcp.py", TCP_APP);
    let port = free_port().to_string();
    let addr = format!("127.0.0.1:{port}");
    env.ok(&[
        "start",
        "tcp.py",
        "--env",
        &format!("PORT={port}"),
        "--health-check-tcp",
        &addr,
        "--health-check-interval",
        "200",
        "--health-check-max-fails",
        "2",
    ]);
    let d = wait_health(&env, "tcp", "healthy");
    assert_eq!(d["health"]["check"], format!("tcp {addr}"));

    env.file("closed", "");
    wait_health_restarts(&env, "tcp", 1);
    let d = wait_health(&env, "tcp", "unhealthy");
    let e = d["health"]["last_error"].as_str().unwrap().to_string();
    assert!(e.contains(&addr), "{e}");

    // Once it may listen again, a restart brings it back healthy.
    std::fs::remove_file(env.path("closed")).unwrap();
    wait_health(&env, "tcp", "healthy");
}

#[test]
fn a_command_check_runs_in_the_app_directory_and_environment() {
    let env = TestEnv::new();
    env.script("app.sh", "exec sleep 1000\n");
    env.ok(&[
        "start",
        "app.sh",
        "--env",
        "MARK=yes",
        "--health-check-cmd",
        "test \"$MARK\" = yes && test ! -e sick",
        "--health-check-interval",
        "200",
        "--health-check-max-fails",
        "3",
    ]);
    let d = wait_health(&env, "app", "healthy");
    assert!(
        d["health"]["check"].as_str().unwrap().starts_with("cmd "),
        "{d}"
    );
    let first = d["pid"].as_u64().unwrap();
    env.file("sick", "");
    let d = wait_health_restarts(&env, "app", 1);
    assert_ne!(d["pid"].as_u64(), Some(first));
    let d = wait_health(&env, "app", "unhealthy");
    assert_eq!(
        d["health"]["last_error"], "command exited with code 1",
        "{d}"
    );
    std::fs::remove_file(env.path("sick")).unwrap();
    wait_health(&env, "app", "healthy");
}

#[test]
fn a_command_check_that_hangs_times_out_and_leaves_nothing_behind() {
    let env = TestEnv::new();
    env.script("app.sh", "exec sleep 1000\n");
    env.ok(&[
        "start",
        "app.sh",
        "--health-check-cmd",
        "sleep 30 & sleep 30",
        "--health-check-interval",
        "200",
        "--health-check-timeout",
        "300",
        "--health-check-max-fails",
        "2",
    ]);
    let d = env.wait_for("a timed-out check", || {
        let d = env.describe("app");
        d["health"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("did not finish within 300 ms"))
            .then_some(d)
    });
    assert_eq!(d["health"]["state"], "unhealthy");
    wait_health_restarts(&env, "app", 1);
    // The check's process group (both sleeps) is killed: `TestEnv`'s drop checks that no
    // process of this home is left once the app is deleted.
    env.ok(&["delete", "app"]);
    env.wait_for("no process left", || {
        env.app_pids().is_empty().then_some(())
    });
}

#[test]
fn only_the_failing_instance_of_a_cluster_app_is_restarted() {
    let env = TestEnv::new();
    env.file("srv.py", HTTP_APP);
    let port = free_port().to_string();
    env.ok(&[
        "start",
        "srv.py",
        "-i",
        "2",
        "--exec-mode",
        "cluster",
        "--port",
        &port,
        "--health-check-url",
        &format!("http://127.0.0.1:{port}/health"),
        "--health-check-interval",
        "200",
        "--health-check-max-fails",
        "2",
    ]);
    let healthy0 = wait_health(&env, "srv-0", "healthy");
    wait_health(&env, "srv-1", "healthy");
    let pid0 = healthy0["pid"].as_u64().unwrap();
    let before0 = reason_count(&healthy0, "health");

    // The check of the public port goes to each instance's private port: only instance 1 fails.
    env.file("sick-1", "");
    let d1 = wait_health_restarts(&env, "srv-1", 1);
    assert_eq!(d1["last_restart"]["reason"], "health");
    let d0 = env.describe("srv-0");
    assert_eq!(d0["pid"].as_u64(), Some(pid0), "{d0}");
    assert_eq!(reason_count(&d0, "health"), before0, "{d0}");
    assert_eq!(d0["health"]["state"], "healthy", "{d0}");
}

#[test]
fn bad_health_options_are_refused_before_anything_starts() {
    let env = TestEnv::new();
    env.script("app.sh", "exec sleep 1000\n");
    let cases: [(&[&str], &str); 6] = [
        (
            &["--health-check-url", "https://127.0.0.1/health"],
            "--health-check-url",
        ),
        (&["--health-check-url", "127.0.0.1:80"], "http://"),
        (&["--health-check-tcp", "localhost"], "--health-check-tcp"),
        (&["--health-check-tcp", "localhost:http"], "host:port"),
        (
            &[
                "--health-check-tcp",
                "127.0.0.1:80",
                "--health-check-cmd",
                "true",
            ],
            "alternatives",
        ),
        (
            &[
                "--health-check-cmd",
                "true",
                "--health-check-max-fails",
                "0",
            ],
            "--health-check-max-fails",
        ),
    ];
    for (flags, needle) in cases {
        let mut args = vec!["start", "app.sh"];
        args.extend_from_slice(flags);
        let err = env.fail(&args);
        assert!(err.contains(needle), "{flags:?}: {err}");
    }
    assert!(
        env.daemon_pid().is_none(),
        "the CLI refused before starting the daemon"
    );
    // Through an ecosystem file, the key is named too.
    env.file(
        "eco.json",
        r#"{"apps": [{"name": "e", "script": "app.sh", "health_check_url": "https://x/"}]}"#,
    );
    let err = env.fail(&["start", "eco.json"]);
    assert!(err.contains("health_check_url"), "{err}");
    assert!(env.list().is_empty());
}

#[test]
fn deleting_an_app_ends_its_health_checks() {
    let env = TestEnv::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let probes = Arc::new(AtomicU64::new(0));
    let counter = probes.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if conn.is_err() {
                break;
            }
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    env.script("app.sh", "exec sleep 1000\n");
    env.ok(&[
        "start",
        "app.sh",
        "--health-check-tcp",
        &format!("127.0.0.1:{port}"),
        "--health-check-interval",
        "100",
    ]);
    env.wait_for("a few probes", || {
        (probes.load(Ordering::SeqCst) >= 3).then_some(())
    });
    env.ok(&["delete", "app"]);
    let after = probes.load(Ordering::SeqCst);
    // Ten intervals with no probe (one may have been under way during the delete).
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        probes.load(Ordering::SeqCst) <= after + 1,
        "probes went on after delete: {after} then {}",
        probes.load(Ordering::SeqCst)
    );
}
