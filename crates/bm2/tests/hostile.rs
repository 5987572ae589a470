//! Hostile clients and apps: malformed, truncated and oversized requests on the socket, a body
//! nested 100,000 deep, owner-only files, an app writing as fast as it can, and an app with 500
//! children. The daemon answers or drops each request, never with a server error, and lives on.

mod common;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs;
use std::io::{BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::unix_http::{self, Response};
use common::{TestEnv, alive};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

/// Starts the daemon of `env` (with one app, so that actions have a target); returns its pid.
fn daemon_with_an_app(env: &TestEnv) -> u32 {
    env.start_sleeper("victim");
    env.daemon_pid().expect("daemon.pid")
}

/// The daemon `pid` is still running and answers `ping`.
fn assert_daemon_lives(env: &TestEnv, pid: u32, after: &str) {
    assert!(alive(pid), "the daemon ({pid}) died after {after}");
    let r = unix_http::request(env.home_path(), "GET", "/v1/ping", &[], b"")
        .unwrap_or_else(|e| panic!("ping after {after}: {e}"));
    assert_eq!(r.status, 200, "ping after {after}: {r:?}");
    let ping: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(ping["pid"], pid, "another daemon answers after {after}");
}

/// A 4xx response whose body is the API's error object.
fn assert_json_client_error(r: &Response, what: &str) {
    assert!((400..500).contains(&r.status), "{what}: {r:?}");
    let v: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {:?}", r.text()));
    assert!(
        v["code"].is_string() && v["message"].is_string(),
        "{what}: {v}"
    );
}

// ---------------------------------------------------------------------------------------------
// Requests cut short
// ---------------------------------------------------------------------------------------------

/// A client that sends the headers and half of the body, then closes: the daemon must not die of
/// SIGPIPE when it writes its answer to the closed socket.
#[test]
fn a_client_closing_in_the_middle_of_the_body_does_not_kill_the_daemon() {
    let env = TestEnv::new();
    let pid = daemon_with_an_app(&env);
    let body = br#"{"apps":[{"name":"half","script":"sleep","args":["1000"]}]}"#;
    for route in [
        "/v1/start",
        "/v1/stop",
        "/v1/describe",
        "/v1/logs",
        "/v1/nowhere",
    ] {
        for _ in 0..4 {
            let mut s =
                unix_http::connect(env.home_path(), Duration::from_secs(5)).unwrap_or_else(|e| {
                    panic!("the daemon is gone after clients closed mid-body ({e})")
                });
            let head = format!(
                "POST {route} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            );
            // The daemon may answer (a 404) and close before the body: the write then fails,
            // which is the client's problem, not the daemon's.
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body[..body.len() / 2]);
            drop(s);
        }
    }
    // The daemon sees each closed connection at once: it must still be there half a second on.
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(500) {
        assert!(alive(pid), "the daemon died after clients closed mid-body");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_daemon_lives(&env, pid, "clients closed in the middle of their bodies");
    assert_eq!(env.proc("victim")["status"], "online");
}

// ---------------------------------------------------------------------------------------------
// Fuzzed raw requests
// ---------------------------------------------------------------------------------------------

const ROUTES: &[&str] = &[
    "/v1/ping",
    "/v1/processes",
    "/v1/processes/details",
    "/v1/describe",
    "/v1/stop",
    "/v1/restart",
    "/v1/reset",
    "/v1/signal",
    "/v1/scale",
    "/v1/reload",
    "/v1/logs",
    "/v1/flush",
    "/v1/reload-logs",
    "/v1/env/get",
    "/v1/env/set",
    "/v1/metrics",
    "/v1/metrics/history",
    "/v1/prometheus",
    "/v1/dashboard",
    "/",
    "*",
    "/v1/",
    "/v1/ping?x=%zz&&=",
    "/v1/processes/../ping",
    "//v1//ping",
    "/v1/ping#frag",
    "http://localhost/v1/ping",
    "/%00",
    "/v1/env/%2e%2e",
];

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(&["GET", "POST"][..]).prop_map(str::to_string),
        2 => select(&["PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE", "BREW", "get"][..])
            .prop_map(str::to_string),
        1 => "[A-Z]{1,12}",
        1 => "[ -~]{0,8}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => select(ROUTES).prop_map(str::to_string),
        2 => "/v1/[a-z/._-]{0,24}",
        1 => "/[!-~]{0,40}",
        1 => (1usize..20_000).prop_map(|n| format!("/{}", "a".repeat(n))),
    ]
}

/// Header lines (without CRLF); some say things about the body that are not true.
fn headers() -> impl Strategy<Value = Vec<String>> {
    let header = prop_oneof![
        select(
            &[
                "Content-Type: application/json",
                "Content-Type: text/plain",
                "Content-Type: application/json; charset=latin1",
                "Content-Type:",
                "Transfer-Encoding: chunked",
                "Transfer-Encoding: gzip, chunked",
                "Transfer-Encoding: identity",
                "Content-Length: -1",
                "Content-Length: abc",
                "Content-Length: 99999999999999999999999",
                "Content-Length: 0",
                "Content-Length: 5",
                "Content-Length: 5, 6",
                "Expect: 100-continue",
                "Expect: something",
                "Connection: keep-alive",
                "Connection: upgrade",
                "Upgrade: websocket",
                "Content-Encoding: gzip",
                "Host:",
                "Host: a\tb",
                " folded: header",
                "no colon",
                ": empty name",
                "Authorization: Bearer x",
            ][..]
        )
        .prop_map(str::to_string),
        ("[A-Za-z-]{1,16}", "[ -~]{0,32}").prop_map(|(k, v)| format!("{k}: {v}")),
        "[\\PC]{0,24}",
    ];
    prop::collection::vec(header, 0..6)
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => select(
            &[
                "",
                "{}",
                "[]",
                "null",
                "{\"targets\":[\"victim\"]}",
                "{\"targets\":[\"all\"],\"signal\":\"SIGCONT\"}",
                "{\"app\":\"victim\",\"instances\":\"1\"}",
                "{\"targets\":[\"nobody\"],\"lines\":3}",
                "{\"apps\":[]}",
                "{\"targets\":",
                "0\r\n\r\n",
                "5\r\nhello\r\n0\r\n\r\n",
                "zz\r\nxx\r\n",
            ][..]
        )
        .prop_map(|s| s.as_bytes().to_vec()),
        2 => prop::collection::vec(any::<u8>(), 0..512),
        1 => "[ -~]{0,200}".prop_map(String::into_bytes),
    ]
}

/// How a fuzzed client behaves.
#[derive(Clone)]
enum Client {
    /// A well-formed request with `Connection: close`: it gets a response.
    WellFormed(Vec<u8>),
    /// Any request line, headers and body; the client then stops writing and reads what comes.
    FreeForm(Vec<u8>),
    /// Random bytes, then the end of a header block.
    Garbage(Vec<u8>),
    /// The first bytes of a well-formed request, then the connection is closed unread.
    Truncated(Vec<u8>),
    /// Two well-formed requests in one write: two responses.
    Pipelined(Vec<u8>),
}

impl Client {
    fn bytes(&self) -> &[u8] {
        match self {
            Client::WellFormed(b)
            | Client::FreeForm(b)
            | Client::Garbage(b)
            | Client::Truncated(b)
            | Client::Pipelined(b) => b,
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Client::WellFormed(_) => "WellFormed",
            Client::FreeForm(_) => "FreeForm",
            Client::Garbage(_) => "Garbage",
            Client::Truncated(_) => "Truncated",
            Client::Pipelined(_) => "Pipelined",
        };
        let text = String::from_utf8_lossy(self.bytes());
        write!(f, "{kind}(\"{}\")", text.escape_debug())
    }
}

fn client() -> impl Strategy<Value = Client> {
    let parts = (method(), select(ROUTES), body())
        .prop_map(|(m, p, b)| {
            let plain = m.bytes().all(|c| c.is_ascii_uppercase()) && !m.is_empty() && m != "HEAD";
            (if plain { m } else { "POST".to_string() }, p, b)
        })
        .boxed();
    let well_formed = parts
        .clone()
        .prop_map(|(m, p, b)| {
            unix_http::request_bytes(&m, p, &[("Content-Type", "application/json")], &b)
        })
        .boxed();
    let free_form = (
        method(),
        path(),
        select(
            &[
                "HTTP/1.1",
                "HTTP/1.0",
                "HTTP/2.0",
                "HTTP/9.9",
                "",
                "HTTPS/1.1",
                "HTTP/1.1 x",
            ][..],
        ),
        headers(),
        body(),
    )
        .prop_map(|(m, p, v, h, b)| {
            let mut out = format!("{m} {p} {v}\r\n").into_bytes();
            for line in h {
                out.extend_from_slice(line.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&b);
            out
        });
    prop_oneof![
        3 => well_formed.clone().prop_map(Client::WellFormed),
        4 => free_form.prop_map(Client::FreeForm),
        2 => prop::collection::vec(any::<u8>(), 0..2048).prop_map(|mut b| {
            b.extend_from_slice(b"\r\n\r\n");
            Client::Garbage(b)
        }),
        2 => (well_formed.clone(), any::<prop::sample::Index>())
            .prop_map(|(b, cut)| Client::Truncated(b[..cut.index(b.len())].to_vec())),
        1 => (parts, well_formed).prop_map(|((m, p, b), second)| {
            // The first one keeps the connection open for the second.
            let mut out = format!(
                "{m} {p} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n",
                b.len()
            )
            .into_bytes();
            out.extend_from_slice(&b);
            out.extend_from_slice(&second);
            Client::Pipelined(out)
        }),
    ]
}

/// What went wrong with one client, if anything.
fn play(env: &TestEnv, client: &Client) -> Result<(), String> {
    let home = env.home_path();
    let mut s = unix_http::connect(home, Duration::from_secs(20)).map_err(|e| e.to_string())?;
    let bytes = client.bytes();
    // The daemon may answer and close before reading everything: a failed write is no error.
    let _ = s.write_all(bytes);
    let mut r = BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
    let no_server_error = |resp: &Option<Response>| match resp {
        Some(resp) if resp.status >= 500 => Err(format!("server error: {resp:?}")),
        _ => Ok(()),
    };
    match client {
        Client::Truncated(_) => Ok(()),
        Client::WellFormed(_) => {
            let resp = read_final(&mut r).map_err(|e| format!("no response: {e}"))?;
            if resp.is_none() {
                return Err("closed without a response".into());
            }
            no_server_error(&resp)
        }
        Client::Pipelined(_) => {
            for i in 0..2 {
                let resp = read_final(&mut r).map_err(|e| format!("response {i}: {e}"))?;
                if resp.is_none() {
                    return Err(format!("closed before response {i}"));
                }
                no_server_error(&resp)?;
            }
            Ok(())
        }
        Client::FreeForm(_) | Client::Garbage(_) => {
            let _ = s.shutdown(std::net::Shutdown::Write);
            // Whatever comes back (a response, or the connection closed), no 5xx.
            match read_final(&mut r) {
                Ok(resp) => no_server_error(&resp),
                Err(_) => Ok(()),
            }
        }
    }
}

/// Reads a response, skipping `100 Continue`.
fn read_final(r: &mut BufReader<UnixStream>) -> std::io::Result<Option<Response>> {
    loop {
        let resp = unix_http::read_response(r)?;
        if resp.as_ref().is_some_and(|x| x.status == 100) {
            continue;
        }
        return Ok(resp);
    }
}

#[test]
fn fifteen_hundred_fuzzed_raw_requests_get_no_server_error_and_the_daemon_lives() {
    let env = TestEnv::new();
    let pid = daemon_with_an_app(&env);
    let recent: RefCell<VecDeque<String>> = RefCell::default();
    let mut runner = TestRunner::new(Config {
        cases: 1500,
        // Once the daemon is gone every case fails: report the first, as it was.
        max_shrink_iters: 0,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&client(), |c| {
        let shown = format!("{c:?}");
        {
            let mut recent = recent.borrow_mut();
            recent.push_back(shown.chars().take(400).collect());
            if recent.len() > 3 {
                recent.pop_front();
            }
        }
        let played = play(&env, &c);
        if !alive(pid) {
            return Err(TestCaseError::fail(format!(
                "the daemon died; last requests:\n{}",
                recent
                    .borrow()
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n")
            )));
        }
        played.map_err(|e| TestCaseError::fail(format!("{e}\nrequest: {shown:.600}")))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert_daemon_lives(&env, pid, "1500 fuzzed requests");
}

// ---------------------------------------------------------------------------------------------
// Oversized and deep bodies
// ---------------------------------------------------------------------------------------------

const HUNDRED_MB: usize = 100 << 20;

/// Sends `head` then up to 100 MB of body from another thread; returns the response and how long
/// it took to come.
fn send_huge(env: &TestEnv, head: &str, chunked: bool) -> (Response, Duration) {
    let mut s = unix_http::connect(env.home_path(), Duration::from_secs(5)).unwrap();
    let mut writer = s.try_clone().unwrap();
    let t = Instant::now();
    s.write_all(head.as_bytes()).unwrap();
    let feeder = std::thread::spawn(move || {
        let mb = vec![b' '; 1 << 20];
        let mut sent = 0;
        while sent < HUNDRED_MB {
            let ok = if chunked {
                writer
                    .write_all(format!("{:x}\r\n", mb.len()).as_bytes())
                    .and_then(|()| writer.write_all(&mb))
                    .and_then(|()| writer.write_all(b"\r\n"))
            } else {
                writer.write_all(&mb)
            };
            if ok.is_err() {
                break;
            }
            sent += mb.len();
        }
        sent
    });
    let resp = unix_http::read_head(&mut BufReader::new(&mut s))
        .unwrap()
        .expect("a response");
    let took = t.elapsed();
    let _ = s.shutdown(std::net::Shutdown::Both);
    let sent = feeder.join().unwrap();
    assert!(
        sent < HUNDRED_MB,
        "the daemon read the whole 100 MB before answering"
    );
    (resp, took)
}

#[test]
fn a_100_mb_body_is_refused_at_once() {
    let env = TestEnv::new();
    let pid = daemon_with_an_app(&env);
    let head = format!(
        "POST /v1/start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {HUNDRED_MB}\r\n\r\n"
    );
    let (resp, took) = send_huge(&env, &head, false);
    assert!((400..500).contains(&resp.status), "{resp:?}");
    assert!(took < Duration::from_secs(1), "answered after {took:?}");
    assert_daemon_lives(&env, pid, "a 100 MB body");

    let head = "POST /v1/stop HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Transfer-Encoding: chunked\r\n\r\n";
    let (resp, took) = send_huge(&env, head, true);
    assert!((400..500).contains(&resp.status), "{resp:?}");
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    assert_daemon_lives(&env, pid, "a 100 MB chunked body");
    assert_eq!(env.proc("victim")["status"], "online");
}

#[test]
fn a_body_nested_100000_deep_is_refused_with_a_json_error() {
    const DEPTH: usize = 100_000;
    let env = TestEnv::new();
    let pid = daemon_with_an_app(&env);
    let bodies = [
        "[".repeat(DEPTH) + &"]".repeat(DEPTH),
        format!(
            "{{\"apps\":[{{\"name\":\"deep\",\"script\":\"sleep\",\"env\":{}1{}}}]}}",
            "{\"a\":".repeat(DEPTH),
            "}".repeat(DEPTH)
        ),
        format!("{{\"targets\":{}{}}}", "[".repeat(DEPTH), "]".repeat(DEPTH)),
    ];
    for (route, body) in ["/v1/start", "/v1/start", "/v1/stop"].iter().zip(&bodies) {
        let t = Instant::now();
        let r = unix_http::post_json(env.home_path(), route, body.as_bytes()).unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "took {:?}",
            t.elapsed()
        );
        assert_json_client_error(&r, route);
        // A precise error: where in the body it stopped.
        assert!(r.text().contains("at line 1 column"), "{}", r.text());
    }
    assert_daemon_lives(&env, pid, "bodies nested 100,000 deep");
    assert!(env.list().iter().all(|p| p["name"] != "deep"));
}

// ---------------------------------------------------------------------------------------------
// Owner-only files
// ---------------------------------------------------------------------------------------------

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn the_home_is_0700_and_the_socket_state_and_dump_0600() {
    let env = TestEnv::new();
    let home = env.home_path();
    // A home made by someone else with an open mode is closed by the daemon.
    fs::set_permissions(home, fs::Permissions::from_mode(0o755)).unwrap();
    env.start_sleeper("private");
    env.ok(&["save"]);
    env.wait_for("state.json", || {
        home.join("state.json").exists().then_some(())
    });
    assert_eq!(mode(home), 0o700, "home");
    for dir in ["logs", "pids"] {
        assert_eq!(mode(&home.join(dir)), 0o700, "{dir}/");
    }
    for file in ["daemon.sock", "state.json", "dump.json"] {
        assert_eq!(mode(&home.join(file)), 0o600, "{file}");
    }
    // Still so after the daemon rewrote them (a restart of the app, a second save).
    env.ok(&["restart", "private"]);
    env.ok(&["save"]);
    for file in ["state.json", "dump.json"] {
        assert_eq!(mode(&home.join(file)), 0o600, "{file} after a rewrite");
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile apps
// ---------------------------------------------------------------------------------------------

/// Numbered lines as fast as Python writes them, until stopped.
const FLOOD: &str =
    "import sys\nw = sys.stdout.write\ni = 0\nwhile True:\n    w('%d\\n' % i)\n    i += 1\n";

#[test]
fn an_app_writing_at_full_speed_loses_no_line() {
    let env = TestEnv::new();
    env.file("flood.py", FLOOD);
    env.ok(&["start", "flood.py", "--log-max-size", "1G"]);
    let out = env.logs_dir().join("flood-out.log");
    let t = Instant::now();
    env.wait_for("3 seconds of output", || {
        (t.elapsed() >= Duration::from_secs(3)).then_some(())
    });
    env.ok(&["stop", "flood"]);
    env.wait_status("flood", "stopped");
    let text = fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 100_000, "only {} lines", lines.len());
    let last = lines.len() - 1;
    for (i, line) in lines.iter().enumerate() {
        let expected = i.to_string();
        // The stop may cut the last line short.
        let ok = *line == expected || (i == last && expected.starts_with(line));
        assert!(ok, "line {i} of {} is {line:?}", lines.len());
    }
}

/// Forks 500 children (every other one in a session of its own), writes `ready`, waits.
const FORKER: &str = r#"import os, time
for i in range(500):
    if os.fork() == 0:
        if i % 2:
            os.setsid()
        while True:
            time.sleep(1000)
with open("ready.tmp", "w") as f:
    f.write("500\n")
os.rename("ready.tmp", "ready")
while True:
    time.sleep(1000)
"#;

#[test]
fn an_app_with_500_children_is_stopped_with_all_of_them() {
    let env = TestEnv::new();
    env.file("forker.py", FORKER);
    env.ok(&["start", "forker.py", "--kill-timeout", "3000"]);
    env.wait_marker("ready");
    let pids = env.wait_for("501 processes of the app", || {
        let pids = env.app_pids();
        (pids.len() >= 501).then_some(pids)
    });
    assert_eq!(pids.len(), 501, "{pids:?}");
    env.ok(&["stop", "forker"]);
    let left = env.wait_for("every process of the app to be gone", || {
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        left.is_empty().then_some(left)
    });
    assert!(left.is_empty());
    assert_eq!(env.proc("forker")["status"], "stopped");
}
