//! The web dashboard's server, driven over TCP: every REST route (answer, missing token,
//! unknown target, malformed body), the CLI's `/v1` routes on the dashboard port, the session
//! cookie and the Origin checks, `--public-read`, the read-only Prometheus port, the token file,
//! `[dashboard]` in config.toml, `bm2 dashboard status|stop`, and the WebSocket protocol.
//!
//! REST goes over plain HTTP/1.1 on a `std::net::TcpStream` (one request per connection); the
//! WebSocket uses the synchronous `tungstenite` client with a short read timeout, so that every
//! wait has a deadline.
//!
//! Tests marked `SERVER BUG` in their doc comment fail on purpose until the server is fixed.

mod common;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{DEADLINE, TestEnv, free_port, wait_for};
use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::{HeaderName, HeaderValue};
use tungstenite::{HandshakeError, Message, WebSocket};

// ---------------------------------------------------------------------------------------------
// HTTP over a TcpStream
// ---------------------------------------------------------------------------------------------

/// An HTTP response: status, headers (names lower-cased) and body.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    /// The first header named `name` (case-insensitive).
    fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the body when it is not.
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }

    /// Asserts the status and a JSON body; returns the body.
    fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected status: {self:?}");
        self.json()
    }

    /// Asserts an error answer: `status`, a JSON body with `code` and a non-empty `message`;
    /// returns the body.
    fn expect_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "unexpected status: {self:?}");
        let v = json_error_problem(self).map_or_else(|| self.json(), |p| panic!("{p}: {self:?}"));
        assert_eq!(v["code"], code, "unexpected error code: {self:?}");
        v
    }
}

/// What is wrong with an error response, if anything: it must be JSON with a string `code` and
/// a non-empty string `message`, and show no trace of a panic or of the source.
fn json_error_problem(r: &Resp) -> Option<String> {
    let ct = r.header("content-type").unwrap_or("");
    if !ct.starts_with("application/json") {
        return Some(format!("content-type is {ct:?}, not application/json"));
    }
    let Ok(v) = serde_json::from_str::<Value>(&r.body) else {
        return Some("body is not JSON".into());
    };
    if v["code"].as_str().is_none_or(str::is_empty) {
        return Some("no string \"code\"".into());
    }
    if v["message"].as_str().is_none_or(str::is_empty) {
        return Some("no non-empty string \"message\"".into());
    }
    let lower = r.body.to_ascii_lowercase();
    for trace in ["panicked", "backtrace", ".rs:", "stack"] {
        if lower.contains(trace) {
            return Some(format!("body shows {trace:?}"));
        }
    }
    None
}

/// Sends one request to 127.0.0.1:`port` and reads the whole answer, giving up after `timeout`
/// of silence.
fn try_http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    timeout: Duration,
) -> io::Result<Resp> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    let has_host = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host"));
    if !has_host {
        let _ = write!(req, "Host: 127.0.0.1:{port}\r\n");
    }
    req.push_str("Connection: close\r\n");
    for (k, v) in headers {
        let _ = write!(req, "{k}: {v}\r\n");
    }
    if let Some(b) = body {
        let _ = write!(req, "Content-Length: {}\r\n", b.len());
    } else if method == "POST" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// Sends one request; panics when the server does not answer within 30 s.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
    try_http(port, method, path, headers, body, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{method} {path} on port {port}: {e}"))
}

fn parse_response(raw: &[u8]) -> io::Result<Resp> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let split = find(raw, b"\r\n\r\n").ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("headers not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Ok(Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(raw, b"\r\n") {
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_hex, 16) else {
            break;
        };
        raw = &raw[eol + 2..];
        if size == 0 || raw.len() < size {
            break;
        }
        out.extend_from_slice(&raw[..size]);
        raw = raw.get(size + 2..).unwrap_or_default();
    }
    out
}

/// Waits until nothing listens on 127.0.0.1:`port` any more.
fn wait_refused(port: u16) {
    wait_for(
        &format!("port {port} to refuse connections"),
        DEADLINE,
        || {
            TcpStream::connect(("127.0.0.1", port))
                .is_err()
                .then_some(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// The dashboard of a test environment
// ---------------------------------------------------------------------------------------------

/// A dashboard started by `bm2 dashboard`: its ports, token and what the command printed.
struct Dash {
    port: u16,
    metrics_port: u16,
    token: String,
    stdout: String,
    stderr: String,
}

/// The token in `Dashboard:  http://…/?token=…` of `bm2 dashboard` (or its status).
fn token_in(stdout: &str) -> Option<String> {
    let line = stdout.lines().find(|l| l.starts_with("Dashboard:"))?;
    Some(line.split_once("?token=")?.1.trim().to_string())
}

/// Two distinct free ports.
fn two_ports() -> (u16, u16) {
    let port = free_port();
    loop {
        let other = free_port();
        if other != port {
            return (port, other);
        }
    }
}

/// Runs `bm2 dashboard --port P --metrics-port M <extra>` on free ports (choosing others when
/// one was taken meanwhile); asserts it worked.
fn start_dashboard(env: &TestEnv, extra: &[&str]) -> Dash {
    for _ in 0..5 {
        let (port, metrics_port) = two_ports();
        let (p, m) = (port.to_string(), metrics_port.to_string());
        let mut args = vec!["dashboard", "--port", &p, "--metrics-port", &m];
        args.extend_from_slice(extra);
        let (ok, stdout, stderr) = env.output(&args);
        if ok {
            let token = token_in(&stdout)
                .unwrap_or_else(|| panic!("no tokened URL in bm2 dashboard's output: {stdout}"));
            assert!(
                stdout.contains(&format!("http://127.0.0.1:{port}/?token=")),
                "dashboard URL: {stdout}"
            );
            assert!(
                stdout.contains(&format!("http://127.0.0.1:{metrics_port}/metrics")),
                "metrics URL: {stdout}"
            );
            return Dash {
                port,
                metrics_port,
                token,
                stdout,
                stderr,
            };
        }
        assert!(
            stderr.contains("cannot listen"),
            "bm2 {args:?} failed:\nstdout: {stdout}\nstderr: {stderr}"
        );
    }
    panic!("no free ports for the dashboard after 5 tries");
}

impl Dash {
    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// The dashboard's own origin, as a browser on its page sends it.
    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A request to the dashboard port.
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Resp {
        http(self.port, method, path, headers, body)
    }

    /// GET with the token.
    fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[("Authorization", &self.bearer())], None)
    }

    /// GET without the token.
    fn get_anon(&self, path: &str) -> Resp {
        self.request("GET", path, &[], None)
    }

    /// POST of a JSON body with the token.
    fn post(&self, path: &str, body: &str) -> Resp {
        self.request(
            "POST",
            path,
            &[
                ("Authorization", &self.bearer()),
                ("Content-Type", "application/json"),
            ],
            Some(body),
        )
    }

    /// POST of a JSON body without the token.
    fn post_anon(&self, path: &str, body: &str) -> Resp {
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            Some(body),
        )
    }

    /// Logs in like a browser (`/?token=`); returns the `Cookie` header value to send.
    fn login(&self) -> String {
        let r = self.get_anon(&format!("/?token={}", self.token));
        assert_eq!(r.status, 303, "{r:?}");
        let set = r.header("set-cookie").expect("a session cookie");
        set.split(';').next().unwrap().trim().to_string()
    }

    /// `GET /api/processes` with the token.
    fn processes(&self) -> Vec<Value> {
        self.get("/api/processes")
            .expect(200)
            .as_array()
            .expect("an array of processes")
            .clone()
    }

    /// The row of the instance `name` in `GET /api/processes`.
    fn row(&self, name: &str) -> Option<Value> {
        self.processes()
            .into_iter()
            .find(|p| p["instance_name"] == name)
    }
}

/// Greets on both streams, then prints `tick-<n>` every 200 ms.
const TICKER: &str = "echo \"ticker says hello\"\necho \"ticker complains\" >&2\ni=0\nwhile :; do \
                      i=$((i+1)); echo \"tick-$i\"; sleep 0.2; done\n";

/// Prints `chatter-<n>` every 100 ms.
const CHATTER: &str = "i=0\nwhile :; do i=$((i+1)); echo \"chatter-$i\"; sleep 0.1; done\n";

/// Starts the ticker (app `ticker`) and waits for its greeting in its log.
fn start_ticker(env: &TestEnv) {
    env.script("ticker.sh", TICKER);
    env.ok(&["start", "ticker.sh"]);
    env.wait_status("ticker", "online");
    env.wait_out("ticker", "ticker says hello");
}

/// The six action routes.
const ACTIONS: [&str; 6] = ["restart", "stop", "reload", "delete", "scale", "flush"];

/// A body for `action` on `target` (with a count for scale).
fn action_body(action: &str, target: &str) -> String {
    if action == "scale" {
        json!({ "target": target, "count": 2 }).to_string()
    } else {
        json!({ "target": target }).to_string()
    }
}

/// The read-only routes of the dashboard port.
fn read_routes() -> Vec<&'static str> {
    let mut all = public_read_routes();
    all.extend(private_routes());
    all
}

/// The read-only routes `--public-read` opens.
fn public_read_routes() -> Vec<&'static str> {
    vec![
        "/api/processes",
        "/api/metrics",
        "/api/metrics/history?seconds=2",
        "/api/prometheus",
        "/metrics",
    ]
}

/// Read-only routes that may show secrets (environments, log lines): the token always.
fn private_routes() -> Vec<&'static str> {
    vec!["/api/processes/alpha", "/api/logs?target=alpha"]
}

/// A token of the right shape that is not the token.
fn wrong_token(token: &str) -> String {
    let last = if token.ends_with('0') { "1" } else { "0" };
    format!("{}{last}", &token[..token.len() - 1])
}

/// Asserts that `content_type` is a Prometheus text exposition format.
fn assert_prometheus_text(r: &Resp) {
    assert_eq!(r.status, 200, "{r:?}");
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("text/plain") || ct.starts_with("application/openmetrics-text"),
        "content type of the Prometheus text: {ct:?}"
    );
    let lines = r.body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text parses");
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric.starts_with("bm2_process_") && s.labels.get("name") == Some("alpha")),
        "no bm2_process_* sample of alpha in:\n{}",
        r.body
    );
}

/// Runs bm2 with a deadline; `None` (the command killed by its pid) when it did not finish.
fn run_with_deadline(env: &TestEnv, args: &[&str], timeout: Duration) -> Option<Output> {
    let mut child = env
        .command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bm2");
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().expect("wait for bm2").is_some() {
            return Some(child.wait_with_output().expect("bm2's output"));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// WebSocket
// ---------------------------------------------------------------------------------------------

/// A message awaited on the WebSocket: its description and a predicate.
type Wanted<'a> = (&'a str, &'a dyn Fn(&Value) -> bool);

/// A WebSocket to the dashboard, read with deadlines.
struct Socket {
    ws: WebSocket<TcpStream>,
    /// Types of the messages read so far (for failure messages).
    seen: Vec<String>,
}

/// Opens `/ws` on `port` with `headers`; `Err((status, body))` when the handshake is refused.
fn ws_connect(port: u16, path: &str, headers: &[(&str, &str)]) -> Result<Socket, (u16, String)> {
    let mut req = format!("ws://127.0.0.1:{port}{path}")
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the dashboard");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    match tungstenite::client::client(req, stream) {
        Ok((ws, _)) => {
            ws.get_ref()
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            Ok(Socket {
                ws,
                seen: Vec::new(),
            })
        }
        Err(HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((resp.status().as_u16(), body))
        }
        Err(e) => panic!("WebSocket handshake failed: {e}"),
    }
}

/// Opens `/ws` with the token in a header; panics when refused.
fn ws_open(d: &Dash) -> Socket {
    ws_connect(d.port, "/ws", &[("Authorization", &d.bearer())])
        .unwrap_or_else(|(s, b)| panic!("WebSocket refused with {s}: {b}"))
}

/// What a read brought.
enum Got {
    Message(Value),
    Timeout,
    Closed(String),
}

impl Socket {
    fn send(&mut self, v: &Value) {
        self.send_text(&v.to_string());
    }

    fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text.to_string()))
            .expect("send on the WebSocket");
    }

    /// One read attempt (at most the socket's 100 ms read timeout).
    fn read_once(&mut self) -> Got {
        match self.ws.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str())
                    .unwrap_or_else(|e| panic!("WebSocket message is not JSON ({e}): {t}"));
                self.seen
                    .push(v["type"].as_str().unwrap_or("?").to_string());
                Got::Message(v)
            }
            Ok(Message::Close(frame)) => Got::Closed(format!("close frame {frame:?}")),
            Ok(_) => Got::Timeout,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Got::Timeout
            }
            Err(e) => Got::Closed(e.to_string()),
        }
    }

    /// The next message before `deadline` (`None` on timeout); panics when the socket closes.
    fn next_before(&mut self, deadline: Instant) -> Option<Value> {
        while Instant::now() < deadline {
            match self.read_once() {
                Got::Message(v) => return Some(v),
                Got::Timeout => {}
                Got::Closed(why) => panic!("WebSocket closed ({why}); read: {:?}", self.seen),
            }
        }
        None
    }

    /// Reads messages until one satisfies `pred`; returns it. Panics after `DEADLINE`.
    fn wait(&mut self, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let Some(v) = self.next_before(deadline) else {
                panic!(
                    "timed out after {DEADLINE:?} waiting for {what}; message types read: {:?}",
                    self.seen
                );
            };
            if pred(&v) {
                return v;
            }
        }
    }

    /// Reads messages until each of `wanted` (a description and a predicate) has matched one, in
    /// any order; returns the first match of each. Panics after `DEADLINE`.
    fn wait_each(&mut self, wanted: &[Wanted<'_>]) -> Vec<Value> {
        let deadline = Instant::now() + DEADLINE;
        let mut found: Vec<Option<Value>> = vec![None; wanted.len()];
        while found.iter().any(Option::is_none) {
            let Some(v) = self.next_before(deadline) else {
                let missing: Vec<&str> = wanted
                    .iter()
                    .zip(&found)
                    .filter(|(_, f)| f.is_none())
                    .map(|((what, _), _)| *what)
                    .collect();
                panic!(
                    "timed out after {DEADLINE:?} waiting for {missing:?}; message types read: {:?}",
                    self.seen
                );
            };
            for ((_, pred), slot) in wanted.iter().zip(found.iter_mut()) {
                if slot.is_none() && pred(&v) {
                    *slot = Some(v.clone());
                }
            }
        }
        found.into_iter().flatten().collect()
    }

    /// Waits for a message of type `kind`.
    fn wait_type(&mut self, kind: &str) -> Value {
        self.wait(&format!("a {kind:?} message"), |v| v["type"] == kind)
    }

    /// True when the server closes the socket before `deadline`.
    fn closed_before(&mut self, deadline: Instant) -> bool {
        while Instant::now() < deadline {
            if let Got::Closed(_) = self.read_once() {
                return true;
            }
        }
        false
    }
}

/// The process of `name` in a list of process rows.
fn named<'a>(rows: &'a Value, name: &str) -> Option<&'a Value> {
    rows.as_array()?.iter().find(|p| p["instance_name"] == name)
}

// ---------------------------------------------------------------------------------------------
// REST: reading
// ---------------------------------------------------------------------------------------------

#[test]
fn read_routes_answer_with_the_token() {
    let env = TestEnv::new();
    let alpha_pid = env.start_sleeper("alpha");
    env.start_sleeper("beta");
    let d = start_dashboard(&env, &[]);

    let r = d.get("/api/processes");
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(r.header("x-bm2-version").is_some(), "{r:?}");
    let list = r.expect(200);
    let names: BTreeSet<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["instance_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["alpha", "beta"]));
    let alpha = named(&list, "alpha").unwrap();
    assert_eq!(alpha["status"], "online");
    assert_eq!(alpha["pid"].as_u64(), Some(alpha_pid));
    assert!(
        alpha["id"].is_u64() && alpha["restarts"].is_u64(),
        "{alpha}"
    );

    let detail = d.get("/api/processes/alpha").expect(200);
    let detail = detail.as_array().expect("an array of details");
    assert_eq!(detail.len(), 1, "{detail:?}");
    assert_eq!(detail[0]["instance_name"], "alpha");
    assert!(detail[0]["spec"].is_object(), "{}", detail[0]);

    let metrics = env.wait_for("a metrics sample of alpha", || {
        let m = d.get("/api/metrics").expect(200);
        let memory = m["processes"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == "alpha")?["memory"]
            .as_u64()?;
        (memory > 0).then_some(m)
    });
    assert!(metrics["timestamp"].as_u64().unwrap() > 1_600_000_000_000);
    assert!(
        metrics["system"]["cpuCount"].as_u64().unwrap() >= 1,
        "{metrics}"
    );

    // Samples every 200 ms (BM2_SAMPLE_INTERVAL_MS): 2 s hold about 10 points.
    let history = env.wait_for("5 points in 2 s of history", || {
        let h = d.get("/api/metrics/history?seconds=2").expect(200);
        (h["timestamps"].as_array()?.len() >= 5).then_some(h)
    });
    assert_eq!(history["interval_ms"], 200);
    let times: Vec<u64> = history["timestamps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert!(times.len() <= 12, "2 s at 200 ms: {} points", times.len());
    assert!(
        times.last().unwrap() - times.first().unwrap() <= 2_200,
        "{times:?}"
    );
    let series = history["processes"].as_array().unwrap();
    assert_eq!(series.len(), 2, "{history}");
    for s in series {
        assert_eq!(s["cpu"].as_array().unwrap().len(), times.len(), "{s}");
        assert_eq!(s["memory"].as_array().unwrap().len(), times.len(), "{s}");
    }
    let longer = d.get("/api/metrics/history?seconds=60").expect(200);
    assert!(longer["timestamps"].as_array().unwrap().len() >= times.len());

    assert_prometheus_text(&d.get("/api/prometheus"));
    assert_prometheus_text(&d.get("/metrics"));
}

#[test]
fn read_routes_refuse_requests_without_the_token() {
    let env = TestEnv::new();
    env.start_sleeper("alpha");
    let d = start_dashboard(&env, &[]);
    let wrong = format!("Bearer {}", wrong_token(&d.token));
    let foreign_cookie = format!("bm2_session_{}={}", d.metrics_port, d.token);
    let wrong_cookie = format!("bm2_session_{}={}", d.port, wrong_token(&d.token));
    for route in read_routes() {
        let e = d.get_anon(route).expect_error(401, "unauthorized");
        assert!(e["hint"].as_str().unwrap().contains("Authorization"), "{e}");
        d.request("GET", route, &[("Authorization", &wrong)], None)
            .expect_error(401, "unauthorized");
        d.request("GET", route, &[("Authorization", &d.token)], None)
            .expect_error(401, "unauthorized");
        d.request("GET", route, &[("Cookie", &wrong_cookie)], None)
            .expect_error(401, "unauthorized");
        d.request("GET", route, &[("Cookie", &foreign_cookie)], None)
            .expect_error(401, "unauthorized");
        // The token is taken from the query by the page only.
        let sep = if route.contains('?') { '&' } else { '?' };
        d.get_anon(&format!("{route}{sep}token={}", d.token))
            .expect_error(401, "unauthorized");
    }
}

// ---------------------------------------------------------------------------------------------
// REST: actions
// ---------------------------------------------------------------------------------------------

#[test]
fn actions_act_and_answer_with_the_processes() {
    let env = TestEnv::new();
    let alpha_pid = env.start_sleeper("alpha");
    env.start_sleeper("beta");
    start_ticker(&env);
    let d = start_dashboard(&env, &[]);

    let r = d.post("/api/restart", r#"{"target": "alpha"}"#).expect(200);
    assert_eq!(r["processes"][0]["instance_name"], "alpha", "{r}");
    assert_eq!(r["errors"], json!([]), "{r}");
    let pid = env.wait_new_pid("alpha", alpha_pid);
    assert!(d.row("alpha").unwrap()["restarts"].as_u64().unwrap() >= 1);

    let beta_id = d.row("beta").unwrap()["id"].as_u64().unwrap();
    let r = d
        .post("/api/stop", &json!({ "target": beta_id }).to_string())
        .expect(200);
    assert_eq!(r["processes"][0]["instance_name"], "beta", "{r}");
    env.wait_status("beta", "stopped");

    let r = d.post("/api/reload", r#"{"target": "alpha"}"#).expect(200);
    assert_eq!(r["processes"][0]["instance_name"], "alpha", "{r}");
    env.wait_new_pid("alpha", pid);

    let r = d
        .post("/api/scale", r#"{"target": "alpha", "count": 3}"#)
        .expect(200);
    assert!(r["processes"].is_array(), "{r}");
    let count = |d: &Dash| {
        d.processes()
            .iter()
            .filter(|p| p["name"] == "alpha")
            .count()
    };
    env.wait_for("3 instances of alpha", || (count(&d) == 3).then_some(()));
    d.post("/api/scale", r#"{"target": "alpha", "count": "-2"}"#)
        .expect(200);
    env.wait_for("1 instance of alpha", || (count(&d) == 1).then_some(()));
    d.post("/api/scale", r#"{"target": "alpha", "count": "+1"}"#)
        .expect(200);
    env.wait_for("2 instances of alpha", || (count(&d) == 2).then_some(()));

    let r = d.post("/api/flush", r#"{"target": "ticker"}"#).expect(200);
    assert_eq!(r["processes"][0]["instance_name"], "ticker", "{r}");
    assert!(
        !env.out_log("ticker").contains("ticker says hello"),
        "the greeting is still in the flushed log"
    );
    // Without a target, flush empties every app's logs (as `bm2 flush` does).
    let r = d.post("/api/flush", "{}").expect(200);
    assert_eq!(
        r["processes"].as_array().unwrap().len(),
        d.processes().len(),
        "{r}"
    );

    let r = d.post("/api/delete", r#"{"target": "beta"}"#).expect(200);
    assert_eq!(r["processes"][0]["instance_name"], "beta", "{r}");
    env.wait_for("beta to be gone", || d.row("beta").is_none().then_some(()));
}

#[test]
fn actions_refuse_requests_without_the_token() {
    let env = TestEnv::new();
    let pid = env.start_sleeper("alpha");
    let d = start_dashboard(&env, &[]);
    let wrong = format!("Bearer {}", wrong_token(&d.token));
    for action in ACTIONS {
        let path = format!("/api/{action}");
        let body = action_body(action, "alpha");
        d.post_anon(&path, &body).expect_error(401, "unauthorized");
        d.request(
            "POST",
            &path,
            &[
                ("Authorization", &wrong),
                ("Content-Type", "application/json"),
            ],
            Some(&body),
        )
        .expect_error(401, "unauthorized");
    }
    let row = d.row("alpha").expect("alpha was not deleted");
    assert_eq!(row["pid"].as_u64(), Some(pid), "alpha was acted on: {row}");
    assert_eq!(
        d.processes().len(),
        1,
        "alpha was scaled: {:?}",
        d.processes()
    );
}

#[test]
fn unknown_targets_are_404_with_the_managed_names() {
    let env = TestEnv::new();
    let pid = env.start_sleeper("alpha");
    env.start_sleeper("beta");
    let d = start_dashboard(&env, &[]);
    let check = |r: &Resp, target: &str| {
        let e = r.expect_error(404, "unknown_target");
        let msg = e["message"].as_str().unwrap();
        assert!(
            msg.contains(target) && msg.contains("alpha") && msg.contains("beta"),
            "the message names the target and every managed app: {e}"
        );
    };
    for action in ACTIONS {
        for target in ["nope", "99"] {
            let r = d.post(&format!("/api/{action}"), &action_body(action, target));
            check(&r, target);
        }
    }
    check(&d.get("/api/processes/nope"), "nope");
    check(&d.get("/api/logs?target=nope"), "nope");
    assert_eq!(d.row("alpha").unwrap()["pid"].as_u64(), Some(pid));
    assert_eq!(d.processes().len(), 2);
}

#[test]
fn malformed_action_bodies_are_400() {
    let env = TestEnv::new();
    let pid = env.start_sleeper("alpha");
    let d = start_dashboard(&env, &[]);
    let always_bad = [
        r#"{"target": []}"#,
        r#"{"target": {}}"#,
        r#"{"target": ""}"#,
        r#"{"target": "  "}"#,
        r#"{"target": true}"#,
        r#"{"target": "alpha", "bogus": 1}"#,
        r#"{"target": "alpha""#,
        "not json",
        "[]",
        "null",
        "",
    ];
    for action in ACTIONS {
        let path = format!("/api/{action}");
        let mut bad = always_bad.to_vec();
        // Flush without a target flushes everything, as `bm2 flush` does.
        if action != "flush" {
            bad.extend([r"{}", r#"{"target": null}"#]);
        }
        for body in bad {
            let r = d.post(&path, body);
            assert_eq!(r.status, 400, "POST {path} {body}: {r:?}");
            let e = r.expect_error(400, "bad_request");
            assert!(!e["message"].as_str().unwrap().is_empty());
        }
        // A JSON body needs its content type.
        d.request(
            "POST",
            &path,
            &[("Authorization", &d.bearer())],
            Some(&action_body(action, "alpha")),
        )
        .expect_error(400, "bad_request");
        if action != "scale" {
            let e = d
                .post(&path, r#"{"target": "alpha", "count": 2}"#)
                .expect_error(400, "bad_request");
            assert!(e["message"].as_str().unwrap().contains("count"), "{e}");
        }
    }
    let e = d
        .post("/api/scale", r#"{"target": "alpha"}"#)
        .expect_error(400, "bad_request");
    assert!(e["message"].as_str().unwrap().contains("count"), "{e}");
    for count in [r#""many""#, "[]", "true", r#""""#, r#""+""#] {
        let r = d.post(
            "/api/scale",
            &format!(r#"{{"target": "alpha", "count": {count}}}"#),
        );
        assert_eq!(r.status, 400, "count {count}: {r:?}");
        assert!(json_error_problem(&r).is_none(), "{r:?}");
    }
    let row = d.row("alpha").unwrap();
    assert_eq!(row["pid"].as_u64(), Some(pid), "alpha was acted on: {row}");
    assert_eq!(d.processes().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// REST: logs
// ---------------------------------------------------------------------------------------------

#[test]
fn logs_serve_the_lines_of_managed_apps_only() {
    let env = TestEnv::new();
    start_ticker(&env);
    env.start_sleeper("alpha");
    let d = start_dashboard(&env, &[]);

    let r = d.get("/api/logs?target=ticker").expect(200);
    let lines = r["lines"].as_array().expect("lines");
    assert!(
        lines
            .iter()
            .any(|l| l["stream"] == "out"
                && l["line"].as_str().unwrap().contains("ticker says hello")),
        "{r}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["stream"] == "err"
                && l["line"].as_str().unwrap().contains("ticker complains")),
        "{r}"
    );
    assert!(lines.iter().all(|l| l["name"] == "ticker"), "{r}");

    let r = d.get("/api/logs?target=ticker&lines=1").expect(200);
    let per_stream = |s: &str| {
        r["lines"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["stream"] == s)
            .count()
    };
    assert!(per_stream("out") == 1 && per_stream("err") == 1, "{r}");

    let all = d.get("/api/logs").expect(200);
    assert!(
        all["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["name"] == "ticker"),
        "{all}"
    );

    // Paths are targets to match, never files to open.
    let log_path = env.describe("ticker")["out_log"]
        .as_str()
        .unwrap()
        .to_string();
    for target in [
        "/etc/passwd".to_string(),
        "%2Fetc%2Fpasswd".to_string(),
        "../../../../../../etc/passwd".to_string(),
        log_path,
    ] {
        let r = d.get(&format!("/api/logs?target={target}"));
        let e = r.expect_error(404, "unknown_target");
        assert!(!r.body.contains("root:"), "{r:?}");
        assert!(e["message"].as_str().unwrap().contains("ticker"), "{e}");
    }
    d.get("/api/logs?target=ticker&path=/etc/passwd")
        .expect_error(400, "bad_request");
    d.get("/api/logs?lines=many")
        .expect_error(400, "bad_request");
}

// ---------------------------------------------------------------------------------------------
// The CLI's /v1 routes on the dashboard port
// ---------------------------------------------------------------------------------------------

#[test]
fn v1_routes_answer_on_the_dashboard_port_with_the_token() {
    let env = TestEnv::new();
    env.start_sleeper("alpha");
    let d = start_dashboard(&env, &[]);

    let ping = d.get("/v1/ping").expect(200);
    assert_eq!(
        ping["pid"].as_u64(),
        env.daemon_pid().map(u64::from),
        "{ping}"
    );
    let list = d.get("/v1/processes").expect(200);
    assert!(named(&list, "alpha").is_some(), "{list}");
    let described = d
        .post("/v1/describe", r#"{"targets": ["alpha"]}"#)
        .expect(200);
    assert_eq!(
        described["processes"][0]["instance_name"], "alpha",
        "{described}"
    );
    let status = env.ok(&["dashboard", "status"]);
    assert!(status.contains(&format!(":{}/", d.port)), "{status}");

    d.get_anon("/v1/ping").expect_error(401, "unauthorized");
    d.get_anon("/v1/processes")
        .expect_error(401, "unauthorized");
    d.post_anon("/v1/stop", r#"{"targets": ["alpha"]}"#)
        .expect_error(401, "unauthorized");
    d.post_anon("/v1/kill", "{}")
        .expect_error(401, "unauthorized");
    assert_eq!(d.row("alpha").unwrap()["status"], "online");

    let r = d.post("/v1/stop", r#"{"targets": ["alpha"]}"#).expect(200);
    assert_eq!(r["processes"][0]["instance_name"], "alpha", "{r}");
    env.wait_status("alpha", "stopped");
}

#[test]
fn v1_kill_through_the_dashboard_stops_the_daemon() {
    let env = TestEnv::new();
    env.start_sleeper("alpha");
    let d = start_dashboard(&env, &[]);
    let daemon = env.daemon_pid().expect("the daemon's pid");
    let r = try_http(
        d.port,
        "POST",
        "/v1/kill",
        &[("Authorization", &d.bearer())],
        None,
        DEADLINE,
    )
    .expect("POST /v1/kill answers");
    assert_eq!(r.expect(200)["pid"].as_u64(), Some(u64::from(daemon)));
    env.wait_for("the daemon to exit", || {
        (!common::alive(daemon)).then_some(())
    });
    assert!(env.app_pids().is_empty(), "apps left: {:?}", env.app_pids());
    wait_refused(d.port);
    wait_refused(d.metrics_port);
}

/// The routes that control the dashboard are the CLI's (over the Unix socket): the dashboard
/// does not serve them, so it cannot be stopped or moved from a browser session.
#[test]
fn the_dashboard_does_not_serve_its_own_control_routes() {
    let env = TestEnv::new();
    let d = start_dashboard(&env, &[]);
    for (method, path) in [
        ("GET", "/v1/dashboard"),
        ("POST", "/v1/dashboard/stop"),
        ("POST", "/v1/dashboard/start"),
    ] {
        d.request(method, path, &[("Authorization", &d.bearer())], None)
            .expect_error(404, "not_found");
    }
    d.get("/api/processes").expect(200);
}

#[test]
fn cookie_actions_need_the_dashboards_own_origin() {
    let env = TestEnv::new();
    let pid = env.start_sleeper("alpha");
    let d = start_dashboard(&env, &[]);
    let cookie = d.login();
    let body = r#"{"target": "alpha"}"#;
    let post = |headers: &[(&str, &str)]| {
        let mut h = vec![("Content-Type", "application/json")];
        h.extend_from_slice(headers);
        d.request("POST", "/api/restart", &h, Some(body))
    };
    let other_port = format!("http://127.0.0.1:{}", d.metrics_port);
    for origin in [
        None,
        Some("http://evil.example"),
        Some(other_port.as_str()),
        Some("null"),
        Some("https://evil.example:443"),
    ] {
        let mut headers = vec![("Cookie", cookie.as_str())];
        if let Some(o) = origin {
            headers.push(("Origin", o));
        }
        let e = post(&headers).expect_error(403, "forbidden");
        assert!(e["message"].as_str().unwrap().contains("origin"), "{e}");
    }
    // The token in a header does not make a foreign page's request acceptable either.
    post(&[
        ("Authorization", &d.bearer()),
        ("Origin", "http://evil.example"),
    ])
    .expect_error(403, "forbidden");
    assert_eq!(
        d.row("alpha").unwrap()["pid"].as_u64(),
        Some(pid),
        "a refused request restarted alpha"
    );

    let origin = d.origin();
    let r = post(&[("Cookie", &cookie), ("Origin", &origin)]).expect(200);
    assert_eq!(r["processes"][0]["instance_name"], "alpha", "{r}");
    let pid = env.wait_new_pid("alpha", pid);
    // A tool with the token in a header sends no Origin.
    post(&[("Authorization", &d.bearer())]).expect(200);
    env.wait_new_pid("alpha", pid);
}

#[test]
fn public_read_serves_reads_without_the_token_but_not_actions() {
    let env = TestEnv::new();
    let pid = env.start_sleeper("alpha");
    let d = start_dashboard(&env, &["--public-read"]);
    assert!(d.stdout.contains("public"), "{}", d.stdout);
    let status = env.ok(&["dashboard", "status"]);
    assert!(status.contains("public"), "{status}");

    for route in public_read_routes() {
        let r = d.get_anon(route);
        assert_eq!(r.status, 200, "GET {route} without the token: {r:?}");
    }
    for route in private_routes() {
        d.get_anon(route).expect_error(401, "unauthorized");
        d.get(route).expect(200);
    }
    let list = d.get_anon("/api/processes").expect(200);
    assert!(named(&list, "alpha").is_some(), "{list}");

    for action in ACTIONS {
        d.post_anon(&format!("/api/{action}"), &action_body(action, "alpha"))
            .expect_error(401, "unauthorized");
    }
    d.get_anon("/v1/ping").expect_error(401, "unauthorized");
    d.post_anon("/v1/stop", r#"{"targets": ["alpha"]}"#)
        .expect_error(401, "unauthorized");
    match ws_connect(d.port, "/ws", &[]) {
        Err((status, _)) => assert_eq!(status, 401),
        Ok(_) => panic!("the WebSocket opened without the token under --public-read"),
    }
    assert_eq!(d.row("alpha").unwrap()["pid"].as_u64(), Some(pid));
    // With the token, acting still works.
    d.post("/api/restart", r#"{"target": "alpha"}"#).expect(200);
    env.wait_new_pid("alpha", pid);
}

#[test]
fn metrics_port_serves_prometheus_only() {
    let env = TestEnv::new();
    let pid = env.start_sleeper("alpha");
    let d = start_dashboard(&env, &[]);
    let m = d.metrics_port;
    let text = env.wait_for("alpha in the Prometheus text", || {
        let r = http(m, "GET", "/metrics", &[], None);
        r.body.contains("alpha").then_some(r)
    });
    assert_prometheus_text(&text);

    http(m, "POST", "/metrics", &[], Some("{}")).expect_error(405, "method_not_allowed");
    let bearer = d.bearer();
    for (method, path, body) in [
        ("GET", "/", None),
        ("GET", "/api/processes", None),
        ("GET", "/api/metrics", None),
        ("GET", "/api/prometheus", None),
        ("GET", "/v1/ping", None),
        ("GET", "/ws", None),
        ("POST", "/api/restart", Some(r#"{"target": "alpha"}"#)),
        ("POST", "/v1/stop", Some(r#"{"targets": ["alpha"]}"#)),
        ("POST", "/v1/kill", Some("{}")),
    ] {
        for auth in [None, Some(bearer.as_str())] {
            let mut headers = vec![("Content-Type", "application/json")];
            if let Some(a) = auth {
                headers.push(("Authorization", a));
            }
            let r = http(m, method, path, &headers, body);
            assert!(
                r.status == 404 || r.status == 405,
                "{method} {path} on the metrics port: {r:?}"
            );
            assert!(json_error_problem(&r).is_none(), "{r:?}");
        }
    }
    assert_eq!(d.row("alpha").unwrap()["pid"].as_u64(), Some(pid));
}

// ---------------------------------------------------------------------------------------------
// The token, config.toml, the host, status and stop
// ---------------------------------------------------------------------------------------------

#[test]
fn token_file_is_private_and_kept_across_restarts() {
    let env = TestEnv::new();
    let d = start_dashboard(&env, &[]);
    let path = env.home_path().join("dashboard.token");
    let meta = std::fs::metadata(&path).expect("the token file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let stored = std::fs::read_to_string(&path).unwrap();
    assert_eq!(stored.trim(), d.token);
    assert!(
        d.token.len() >= 32 && d.token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{}",
        d.token
    );

    env.ok(&["dashboard", "stop"]);
    let again = start_dashboard(&env, &[]);
    assert_eq!(
        again.token, d.token,
        "a new token after dashboard stop + start"
    );
    again.get("/api/processes").expect(200);

    // A daemon restart keeps it too, and puts its mode back to 0600.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    env.ok(&["kill"]);
    env.ok(&["list"]);
    let after_kill = start_dashboard(&env, &[]);
    assert_eq!(
        after_kill.token, d.token,
        "a new token after a daemon restart"
    );
    after_kill.get("/api/processes").expect(200);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn config_toml_brings_the_dashboard_up_with_the_daemon() {
    let env = TestEnv::new();
    let (port, metrics_port) = two_ports();
    std::fs::write(
        env.home_path().join("config.toml"),
        format!("[dashboard]\nenabled = true\nport = {port}\nmetrics_port = {metrics_port}\n"),
    )
    .unwrap();
    env.ok(&["list"]);
    let token_path = env.home_path().join("dashboard.token");
    let token = env.wait_for("the token file", || {
        std::fs::read_to_string(&token_path)
            .ok()
            .filter(|t| t.trim().len() >= 32)
    });
    let bearer = format!("Bearer {}", token.trim());
    let r = env.wait_for("the dashboard of config.toml to answer", || {
        try_http(
            port,
            "GET",
            "/api/processes",
            &[("Authorization", &bearer)],
            None,
            Duration::from_secs(5),
        )
        .ok()
    });
    assert_eq!(r.expect(200), json!([]));
    let status = env.ok(&["dashboard", "status"]);
    assert!(
        status.contains(&format!("http://127.0.0.1:{port}/?token={}", token.trim())),
        "{status}"
    );
    assert!(
        status.contains(&format!("http://127.0.0.1:{metrics_port}/metrics")),
        "{status}"
    );
    let metrics = http(metrics_port, "GET", "/metrics", &[], None);
    assert_eq!(metrics.status, 200, "{metrics:?}");
    // Anonymous requests are refused: config.toml does not ask for --public-read.
    http(port, "GET", "/api/processes", &[], None).expect_error(401, "unauthorized");
}

#[test]
fn non_loopback_host_prints_a_warning() {
    let env = TestEnv::new();
    let local = start_dashboard(&env, &[]);
    assert!(
        !local.stderr.contains("warning"),
        "a warning for 127.0.0.1: {}",
        local.stderr
    );

    let d = start_dashboard(&env, &["--host", "0.0.0.0"]);
    assert!(
        d.stderr.contains("warning") && d.stderr.contains("0.0.0.0"),
        "no warning on stderr for --host 0.0.0.0: {:?}",
        d.stderr
    );
    // The printed URL is one that works from this machine.
    d.get("/api/processes").expect(200);
    let (_, _, status_err) = env.output(&["dashboard", "status"]);
    assert!(status_err.contains("warning"), "{status_err}");

    let err = env.fail(&[
        "dashboard",
        "--host",
        "localhost.example",
        "--port",
        "0",
        "--metrics-port",
        "0",
    ]);
    assert!(err.contains("--host"), "{err}");
}

#[test]
fn dashboard_status_and_stop() {
    let env = TestEnv::new();
    let out = env.ok(&["dashboard", "status"]);
    assert!(out.contains("not running"), "{out}");

    let first = start_dashboard(&env, &[]);
    let status = env.ok(&["dashboard", "status"]);
    assert_eq!(token_in(&status).as_deref(), Some(first.token.as_str()));
    assert!(
        status.contains(&format!("127.0.0.1:{}/?token=", first.port)),
        "{status}"
    );
    assert!(status.contains("Prometheus:"), "{status}");

    // Starting again moves it: the old ports close.
    let d = start_dashboard(&env, &[]);
    wait_refused(first.port);
    wait_refused(first.metrics_port);
    d.get("/api/processes").expect(200);

    let out = env.ok(&["dashboard", "stop"]);
    assert!(out.contains("Dashboard stopped"), "{out}");
    wait_refused(d.port);
    wait_refused(d.metrics_port);
    let out = env.ok(&["dashboard", "status"]);
    assert!(out.contains("not running"), "{out}");
    let out = env.ok(&["dashboard", "stop"]);
    assert!(out.contains("was not running"), "{out}");
}

#[test]
fn a_busy_port_is_reported() {
    let env = TestEnv::new();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port().to_string();
    let free = free_port().to_string();
    for args in [
        ["dashboard", "--port", &busy_port, "--metrics-port", &free],
        ["dashboard", "--port", &free, "--metrics-port", &busy_port],
    ] {
        let err = env.fail(&args);
        assert!(
            err.contains("cannot listen") && err.contains(&busy_port),
            "{args:?}: {err}"
        );
    }
    let out = env.ok(&["dashboard", "status"]);
    assert!(out.contains("not running"), "{out}");
}

/// SERVER BUG: `bm2 dashboard` with a port that is taken stops the dashboard that was running
/// (the old one is shut down before the new listeners are bound, and not brought back when
/// binding fails).
#[test]
fn a_failed_restart_keeps_the_running_dashboard() {
    let env = TestEnv::new();
    let d = start_dashboard(&env, &[]);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port().to_string();
    let free = free_port().to_string();
    env.fail(&["dashboard", "--port", &free, "--metrics-port", &busy_port]);
    let status = env.ok(&["dashboard", "status"]);
    assert_eq!(
        token_in(&status).as_deref(),
        Some(d.token.as_str()),
        "SERVER BUG: after a failed `bm2 dashboard` (port taken), the running dashboard is \
         gone; status says: {status}"
    );
    d.get("/api/processes").expect(200);
}

/// SERVER BUG: a client that sends half a request line and then waits keeps
/// `bm2 dashboard stop` (and so `bm2 kill`, which stops the dashboard before exiting) from
/// finishing for as long as it holds the connection: the graceful shutdown waits for it without
/// a time limit.
#[test]
fn dashboard_stop_does_not_wait_for_a_stalled_client() {
    let env = TestEnv::new();
    let d = start_dashboard(&env, &[]);
    let mut stalled = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    stalled
        .write_all(b"GET /api/processes HTTP/1.1\r\n")
        .unwrap();
    let idle = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    // A request answered after the partial one was sent: the server has accepted it by now.
    assert_eq!(d.get_anon("/").status, 200);
    let out = run_with_deadline(&env, &["dashboard", "stop"], Duration::from_secs(10));
    drop(stalled);
    drop(idle);
    let out = out.expect(
        "SERVER BUG: `bm2 dashboard stop` did not finish within 10 s while a client held a \
         half-sent request open",
    );
    assert!(out.status.success(), "{out:?}");
    wait_refused(d.port);
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[test]
fn every_error_is_json_with_a_code_and_a_message() {
    let env = TestEnv::new();
    env.start_sleeper("alpha");
    let d = start_dashboard(&env, &[]);
    let bearer = d.bearer();
    let auth = [("Authorization", bearer.as_str())];
    let json_auth = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let cookie = d.login();
    let big = format!(r#"{{"target": "{}"}}"#, "a".repeat(3 << 20));
    let cases: Vec<(u16, Resp)> = vec![
        (404, d.get_anon("/nope")),
        (404, d.get("/api/nope")),
        (404, d.get("/v1/nope")),
        (405, d.get("/api/restart")),
        (
            405,
            d.request("POST", "/api/processes", &json_auth, Some("{}")),
        ),
        (405, d.request("DELETE", "/api/processes", &auth, None)),
        (
            405,
            d.request("PUT", "/api/restart", &json_auth, Some("{}")),
        ),
        (401, d.get_anon("/api/processes")),
        (401, d.post_anon("/api/restart", r#"{"target": "alpha"}"#)),
        (
            403,
            d.request(
                "POST",
                "/api/stop",
                &[("Cookie", &cookie), ("Content-Type", "application/json")],
                Some(r#"{"target": "alpha"}"#),
            ),
        ),
        (404, d.post("/api/stop", r#"{"target": "nope"}"#)),
        (404, d.get("/api/processes/nope")),
        (400, d.post("/api/stop", "{")),
        (413, d.post("/api/stop", &big)),
        (400, d.post("/api/scale", r#"{"target": "alpha"}"#)),
        (400, d.get("/api/metrics/history?seconds=abc")),
        (400, d.get("/api/logs?lines=-1")),
        (400, d.get("/ws")),
        (400, d.post("/v1/stop", r#"{"targets": "alpha"}"#)),
        (
            404,
            http(d.metrics_port, "GET", "/api/processes", &[], None),
        ),
        (405, http(d.metrics_port, "DELETE", "/metrics", &[], None)),
    ];
    let mut problems = Vec::new();
    for (status, r) in &cases {
        if r.status != *status {
            problems.push(format!("expected {status}, got {r:?}"));
        } else if let Some(p) = json_error_problem(r) {
            problems.push(format!("{p}: {r:?}"));
        }
    }
    assert!(problems.is_empty(), "bad error responses:\n{problems:#?}");
}

/// SERVER BUG: query strings and paths that axum's extractors reject are answered with a
/// plain-text body (`Failed to deserialize query string: duplicate field ...`,
/// `Invalid URL: Invalid UTF-8 ...`), not the JSON error every other failure has.
#[test]
fn malformed_urls_get_json_errors_too() {
    let env = TestEnv::new();
    env.start_sleeper("alpha");
    let d = start_dashboard(&env, &[]);
    let cases = [d.get_anon("/?token=a&token=b"), d.get("/api/processes/%FF")];
    let problems: Vec<String> = cases
        .iter()
        .filter_map(|r| {
            if r.status != 400 {
                return Some(format!("expected 400: {r:?}"));
            }
            json_error_problem(r).map(|p| format!("{p}: {r:?}"))
        })
        .collect();
    assert!(
        problems.is_empty(),
        "SERVER BUG: non-JSON error responses:\n{problems:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// OpenAPI
// ---------------------------------------------------------------------------------------------

#[test]
fn openapi_description_is_served_as_json() {
    let env = TestEnv::new();
    let d = start_dashboard(&env, &[]);
    let r = d.get_anon("/api/openapi.json");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json"),
        "{r:?}"
    );
    assert!(r.json().is_object(), "{r:?}");
}

/// The `/api/...` routes of the dashboard's router, with their methods, read from its source
/// (`.route("/api/…", get(…))` / `post(…)`), so that a new route needs a description too.
fn api_routes_of_the_router() -> Vec<(String, &'static str)> {
    const ROUTER: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../bm2-daemon/src/web/mod.rs"
    ));
    let mut routes = Vec::new();
    for part in ROUTER.split(".route(\"").skip(1) {
        let Some((path, rest)) = part.split_once('"') else {
            continue;
        };
        if !path.starts_with("/api/") || path == "/api/openapi.json" {
            continue;
        }
        let rest = rest.trim_start_matches([',', ' ', '\n']);
        let method = if rest.starts_with("post(") {
            "post"
        } else {
            "get"
        };
        routes.push((path.to_string(), method));
    }
    assert!(
        routes.len() >= 12,
        "routes read from web/mod.rs: {routes:?}"
    );
    routes
}

/// Fails until `assets/openapi.json` is filled in (it is `{}` while being written).
#[test]
fn openapi_describes_every_api_route() {
    let env = TestEnv::new();
    let d = start_dashboard(&env, &[]);
    let doc = d.get_anon("/api/openapi.json").expect(200);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')),
        "openapi.json is not an OpenAPI 3 description yet: {doc}"
    );
    let paths = doc["paths"].as_object().expect("openapi.json has paths");
    let missing: Vec<String> = api_routes_of_the_router()
        .into_iter()
        .filter(|(path, method)| paths.get(path).is_none_or(|p| p.get(*method).is_none()))
        .map(|(path, method)| format!("{} {path}", method.to_uppercase()))
        .collect();
    assert!(
        missing.is_empty(),
        "routes missing from openapi.json: {missing:?}"
    );
    let routes: BTreeSet<String> = api_routes_of_the_router()
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    let stale: Vec<&String> = paths
        .keys()
        .filter(|p| p.starts_with("/api/") && *p != "/api/openapi.json" && !routes.contains(*p))
        .collect();
    assert!(
        stale.is_empty(),
        "openapi.json describes routes the router does not have: {stale:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// WebSocket
// ---------------------------------------------------------------------------------------------

#[test]
fn websocket_needs_the_token() {
    let env = TestEnv::new();
    let d = start_dashboard(&env, &[]);
    let wrong = format!("Bearer {}", wrong_token(&d.token));
    let origin = d.origin();
    let query = format!("/ws?token={}", d.token);
    let cases: [(&str, Vec<(&str, &str)>); 4] = [
        ("/ws", vec![]),
        ("/ws", vec![("Authorization", wrong.as_str())]),
        ("/ws", vec![("Origin", origin.as_str())]),
        (query.as_str(), vec![]),
    ];
    for (path, headers) in &cases {
        match ws_connect(d.port, path, headers) {
            Err((status, body)) => {
                assert_eq!(status, 401, "{path} {headers:?}: {body}");
                let v: Value = serde_json::from_str(&body).expect("a JSON error");
                assert_eq!(v["code"], "unauthorized", "{body}");
            }
            Ok(_) => panic!("the WebSocket opened without the token: {path} {headers:?}"),
        }
    }
}

#[test]
fn websocket_checks_the_origin() {
    let env = TestEnv::new();
    env.start_sleeper("alpha");
    let d = start_dashboard(&env, &[]);
    let cookie = d.login();
    let bearer = d.bearer();
    let origin = d.origin();
    let refused: [Vec<(&str, &str)>; 4] = [
        vec![
            ("Authorization", &bearer),
            ("Origin", "http://evil.example"),
        ],
        vec![("Cookie", &cookie), ("Origin", "http://evil.example")],
        vec![("Cookie", &cookie)],
        vec![("Cookie", &cookie), ("Origin", "http://127.0.0.1:1")],
    ];
    for headers in &refused {
        match ws_connect(d.port, "/ws", headers) {
            Err((status, body)) => {
                assert_eq!(status, 403, "{headers:?}: {body}");
                let v: Value = serde_json::from_str(&body).expect("a JSON error");
                assert_eq!(v["code"], "forbidden", "{body}");
            }
            Ok(_) => panic!("the WebSocket opened from another origin: {headers:?}"),
        }
    }
    let accepted: [Vec<(&str, &str)>; 3] = [
        vec![("Cookie", &cookie), ("Origin", &origin)],
        vec![("Authorization", &bearer), ("Origin", &origin)],
        vec![("Authorization", &bearer)],
    ];
    for headers in &accepted {
        let mut s = ws_connect(d.port, "/ws", headers)
            .unwrap_or_else(|(st, b)| panic!("{headers:?} refused with {st}: {b}"));
        let first = s.wait(&format!("the state for {headers:?}"), |_| true);
        assert_eq!(first["type"], "state", "{first}");
    }
}

#[test]
fn websocket_sends_the_state_then_each_change() {
    let env = TestEnv::new();
    let alpha_pid = env.start_sleeper("alpha");
    env.start_sleeper("beta");
    let d = start_dashboard(&env, &[]);
    let mut s = ws_open(&d);

    let first = s.wait("the first message", |_| true);
    assert_eq!(first["type"], "state", "the first message: {first}");
    let rows = &first["data"]["processes"];
    let alpha = named(rows, "alpha").expect("alpha in the state");
    assert!(named(rows, "beta").is_some(), "{first}");
    assert_eq!(alpha["status"], "online");
    assert_eq!(alpha["pid"].as_u64(), Some(alpha_pid));
    let restarts = alpha["restarts"].as_u64().unwrap();
    let metrics = &first["data"]["metrics"];
    assert!(metrics["processes"].is_array(), "{first}");
    assert!(metrics["system"].is_object(), "{first}");

    s.send(&json!({ "type": "getState" }));
    let again = s.wait_type("state");
    assert!(
        named(&again["data"]["processes"], "alpha").is_some(),
        "{again}"
    );

    s.send(&json!({ "type": "restart", "id": "r-1", "data": { "target": "alpha" } }));
    // The result and the change events come in no fixed order.
    let got = s.wait_each(&[
        ("the result of r-1", &|v| {
            v["type"] == "result" && v["id"] == "r-1"
        }),
        ("a process event of alpha with more restarts", &|v| {
            v["type"] == "process"
                && v["data"]["instance_name"] == "alpha"
                && v["data"]["restarts"].as_u64() > Some(restarts)
        }),
    ]);
    assert_eq!(
        got[0]["data"]["processes"][0]["instance_name"], "alpha",
        "{}",
        got[0]
    );
    assert_ne!(
        got[1]["data"]["pid"].as_u64(),
        Some(alpha_pid),
        "{}",
        got[1]
    );

    let beta_id = d.row("beta").unwrap()["id"].as_u64().unwrap();
    s.send(&json!({ "type": "stop", "id": 7, "data": { "target": "beta" } }));
    let got = s.wait_each(&[
        ("the result of 7", &|v| {
            v["type"] == "result" && v["id"] == 7
        }),
        ("a process event of beta, stopped", &|v| {
            v["type"] == "process"
                && v["data"]["instance_name"] == "beta"
                && v["data"]["status"] == "stopped"
        }),
    ]);
    assert_eq!(got[0]["data"]["processes"][0]["instance_name"], "beta");

    s.send(&json!({ "type": "delete", "id": "d", "data": { "target": "beta" } }));
    let got = s.wait_each(&[
        ("a removed event", &|v| v["type"] == "removed"),
        ("the result of d", &|v| {
            v["type"] == "result" && v["id"] == "d"
        }),
    ]);
    assert_eq!(got[0]["data"]["id"].as_u64(), Some(beta_id), "{}", got[0]);

    // Errors: an unknown type, a message that is not JSON, a bad body, an unknown target.
    s.send(&json!({ "type": "dance", "id": 1 }));
    let e = s.wait_type("error");
    assert_eq!(e["id"], 1, "{e}");
    assert_eq!(e["data"]["code"], "bad_request", "{e}");
    assert!(
        e["data"]["message"].as_str().unwrap().contains("dance"),
        "{e}"
    );

    s.send_text("this is not JSON");
    let e = s.wait_type("error");
    assert_eq!(e["data"]["code"], "bad_request", "{e}");

    s.send(&json!({ "type": "restart", "id": 2, "data": { "target": [] } }));
    let e = s.wait("the error of 2", |v| v["type"] == "error" && v["id"] == 2);
    assert_eq!(e["data"]["code"], "bad_request", "{e}");

    s.send(&json!({ "type": "restart", "id": 3, "data": { "target": "nope" } }));
    let e = s.wait("the error of 3", |v| v["type"] == "error" && v["id"] == 3);
    assert_eq!(e["data"]["code"], "unknown_target", "{e}");
    assert!(
        e["data"]["message"].as_str().unwrap().contains("alpha"),
        "{e}"
    );

    s.send(&json!({ "type": "scale", "id": 4, "data": { "target": "alpha" } }));
    let e = s.wait("the error of 4", |v| v["type"] == "error" && v["id"] == 4);
    assert!(
        e["data"]["message"].as_str().unwrap().contains("count"),
        "{e}"
    );

    // The session is still alive after the errors.
    s.send(&json!({ "type": "getState" }));
    let state = s.wait_type("state");
    assert!(
        named(&state["data"]["processes"], "beta").is_none(),
        "{state}"
    );
}

#[test]
fn websocket_scale_and_reload_answer_with_results() {
    let env = TestEnv::new();
    let pid = env.start_sleeper("alpha");
    let d = start_dashboard(&env, &[]);
    let mut s = ws_open(&d);
    assert_eq!(s.wait_type("state")["type"], "state");

    s.send(&json!({ "type": "scale", "id": "s", "data": { "target": "alpha", "count": 2 } }));
    let got = s.wait_each(&[
        ("the result of s", &|v| {
            v["type"] == "result" && v["id"] == "s"
        }),
        ("a process event of a second alpha, online", &|v| {
            v["type"] == "process"
                && v["data"]["name"] == "alpha"
                && v["data"]["instance"] == 1
                && v["data"]["status"] == "online"
        }),
    ]);
    assert_eq!(got[1]["data"]["status"], "online", "{}", got[1]);

    s.send(&json!({ "type": "reload", "id": "r", "data": { "target": "alpha" } }));
    let r = s.wait("the result of r", |v| {
        v["type"] == "result" && v["id"] == "r"
    });
    assert_eq!(r["data"]["processes"].as_array().unwrap().len(), 2, "{r}");
    env.wait_new_pid("alpha", pid);

    s.send(&json!({ "type": "flush", "id": "f", "data": { "target": "alpha" } }));
    s.wait("the result of f", |v| {
        v["type"] == "result" && v["id"] == "f"
    });
}

#[test]
fn websocket_carries_the_event_stream_once_subscribed() {
    let env = TestEnv::new();
    let d = start_dashboard(&env, &[]);
    let mut s = ws_open(&d);
    s.wait_type("state");
    s.send(&json!({ "type": "subscribeEvents", "id": "e" }));
    s.wait("the subscription", |v| {
        v["type"] == "result" && v["id"] == "e"
    });
    env.start_sleeper("ev");
    let online = s.wait("the online event of ev", |v| {
        v["type"] == "event" && v["data"]["event"] == "online"
    });
    assert_eq!(online["data"]["type"], "process:event", "{online}");
    assert_eq!(online["data"]["process"]["name"], "ev", "{online}");
    env.ok(&["stop", "ev"]);
    s.wait("the stop event", |v| {
        v["type"] == "event" && v["data"]["event"] == "stop"
    });
}

#[test]
fn websocket_streams_the_logs_of_the_chosen_app() {
    let env = TestEnv::new();
    start_ticker(&env);
    env.script("chatter.sh", CHATTER);
    env.ok(&["start", "chatter.sh"]);
    env.wait_out("chatter", "chatter-2");
    let d = start_dashboard(&env, &[]);
    let mut s = ws_open(&d);
    s.wait_type("state");

    s.send(&json!({ "type": "getLogs", "data": { "target": "ticker", "lines": 5 } }));
    let logs = s.wait_type("logs");
    assert_eq!(logs["target"], "ticker", "{logs}");
    let entries = logs["data"].as_array().expect("one entry per instance");
    assert_eq!(entries.len(), 1, "{logs}");
    let entry = &entries[0];
    assert_eq!(entry["name"], "ticker", "{logs}");
    let out: Vec<&str> = entry["out"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(!out.is_empty() && out.len() <= 5, "{logs}");
    assert!(
        entry["err"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("ticker complains")),
        "{logs}"
    );
    let tick = |line: &str| -> Option<u64> {
        line.rsplit("tick-")
            .next()
            .filter(|_| line.contains("tick-"))?
            .trim()
            .parse()
            .ok()
    };
    let last = out.iter().filter_map(|l| tick(l)).max().unwrap_or(0);

    // Live lines the ticker prints afterwards, and none of the chatter's.
    let mut lines = Vec::new();
    s.wait("3 live lines of the ticker", |v| {
        if v["type"] == "log" {
            lines.push(v["data"].clone());
        }
        lines.iter().filter(|l| l["name"] == "ticker").count() >= 3
    });
    assert!(
        lines.iter().all(|l| l["name"] == "ticker"),
        "lines of another app: {lines:?}"
    );
    let live: Vec<u64> = lines
        .iter()
        .filter_map(|l| tick(l["line"].as_str()?))
        .collect();
    assert!(
        live.len() >= 3 && live.iter().all(|n| *n > last),
        "live ticks {live:?} after the last one sent, {last}"
    );
    assert_eq!(lines[0]["stream"], "out", "{lines:?}");

    // getLogs of another app switches the stream.
    s.send(&json!({ "type": "getLogs", "data": { "target": "chatter" } }));
    let logs = s.wait_type("logs");
    assert_eq!(logs["data"][0]["name"], "chatter", "{logs}");
    s.wait("a live line of the chatter", |v| {
        v["type"] == "log" && v["data"]["name"] == "chatter"
    });
    let window = Instant::now() + Duration::from_millis(1500);
    while let Some(v) = s.next_before(window) {
        if v["type"] == "log" {
            assert_eq!(v["data"]["name"], "chatter", "after switching: {v}");
        }
    }

    s.send(&json!({ "type": "getLogs", "id": 5, "data": { "target": "/etc/passwd" } }));
    let e = s.wait("the error of 5", |v| v["type"] == "error" && v["id"] == 5);
    assert_eq!(e["data"]["code"], "unknown_target", "{e}");
    s.send(&json!({ "type": "getLogs", "id": 6 }));
    let e = s.wait("the error of 6", |v| v["type"] == "error" && v["id"] == 6);
    assert_eq!(e["data"]["code"], "bad_request", "{e}");
}

#[test]
fn websocket_pushes_metrics_every_two_seconds() {
    let env = TestEnv::new();
    env.start_sleeper("alpha");
    let d = start_dashboard(&env, &[]);
    let mut s = ws_open(&d);
    s.wait_type("state");
    let first = s.wait_type("metrics");
    let at = Instant::now();
    assert!(
        first["data"]["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "alpha"),
        "{first}"
    );
    assert!(first["data"]["system"].is_object(), "{first}");
    let second = s.wait_type("metrics");
    let gap = at.elapsed();
    assert!(
        gap >= Duration::from_millis(1500) && gap <= Duration::from_secs(6),
        "metrics {gap:?} apart"
    );
    assert!(
        second["data"]["timestamp"].as_u64() > first["data"]["timestamp"].as_u64(),
        "{first} then {second}"
    );
}

#[test]
fn websocket_closes_when_the_dashboard_stops() {
    let env = TestEnv::new();
    let d = start_dashboard(&env, &[]);
    let mut s = ws_open(&d);
    s.wait_type("state");
    let out = run_with_deadline(&env, &["dashboard", "stop"], DEADLINE)
        .expect("`bm2 dashboard stop` finished while a WebSocket was open");
    assert!(out.status.success(), "{out:?}");
    assert!(
        s.closed_before(Instant::now() + DEADLINE),
        "the WebSocket stayed open after the dashboard stopped"
    );
    wait_refused(d.port);
}

#[test]
fn a_loopback_dashboard_answers_only_loopback_names() {
    // A page whose name is made to resolve to 127.0.0.1 (DNS rebinding) sends its own name.
    let env = TestEnv::new();
    env.start_sleeper("alpha");
    let d = start_dashboard(&env, &["--public-read"]);
    let foreign = format!("evil.example:{}", d.port);
    d.request("GET", "/api/processes", &[("Host", &foreign)], None)
        .expect_error(403, "forbidden");
    for host in [
        format!("localhost:{}", d.port),
        format!("127.0.0.1:{}", d.port),
    ] {
        d.request("GET", "/api/processes", &[("Host", &host)], None)
            .expect(200);
    }
}

/// `/ws` on the dashboard, with the token; the status and body when refused.
fn ws_try(d: &Dash) -> Result<Socket, (u16, String)> {
    ws_connect(d.port, "/ws", &[("Authorization", &d.bearer())])
}

#[test]
fn websocket_sessions_are_capped_and_a_closed_one_frees_its_slot() {
    let env = TestEnv::new();
    let d = start_dashboard(&env, &["--max-sessions", "3"]);
    let mut open: Vec<Socket> = (0..3).map(|_| ws_open(&d)).collect();
    for s in &mut open {
        s.wait_type("state");
    }
    match ws_try(&d) {
        Ok(_) => panic!("a fourth WebSocket opened past --max-sessions 3"),
        Err((status, body)) => {
            assert_eq!(status, 503, "{body}");
            let v: Value = serde_json::from_str(&body).expect("a JSON error");
            assert_eq!(v["code"], "too_many_sessions", "{body}");
            let message = v["message"].as_str().unwrap();
            assert!(message.contains("3 live WebSocket sessions"), "{body}");
            assert!(
                v["hint"].as_str().unwrap().contains("max_sessions"),
                "{body}"
            );
        }
    }
    // The open sessions still work, and REST is not limited.
    open[1].send(&json!({ "type": "getState" }));
    open[1].wait_type("state");
    d.get("/api/processes").expect(200);
    // A client closing its socket frees its slot.
    let mut first = open.remove(0);
    first.ws.close(None).expect("close the WebSocket");
    assert!(first.closed_before(Instant::now() + DEADLINE));
    let mut again = wait_for("a session slot to be free", DEADLINE, || ws_try(&d).ok());
    again.wait_type("state");
    assert!(ws_try(&d).is_err(), "the cap holds after a slot was reused");
    // A client that vanishes without a close frame frees its slot too.
    drop(open.remove(0));
    let mut third = wait_for("the vanished client's slot", DEADLINE, || ws_try(&d).ok());
    third.wait_type("state");
}

#[test]
fn max_sessions_is_read_from_config_toml() {
    let env = TestEnv::new();
    let (port, metrics_port) = two_ports();
    std::fs::write(
        env.home_path().join("config.toml"),
        format!(
            "[dashboard]\nenabled = true\nport = {port}\nmetrics_port = {metrics_port}\nmax_sessions = 1\n"
        ),
    )
    .unwrap();
    env.ok(&["list"]);
    let (status, token) = env.wait_for("the dashboard of config.toml", || {
        let status = env.ok(&["dashboard", "status"]);
        token_in(&status).map(|t| (status, t))
    });
    let d = Dash {
        port,
        metrics_port,
        token,
        stdout: status,
        stderr: String::new(),
    };
    let mut one = wait_for("the dashboard's WebSocket", DEADLINE, || ws_try(&d).ok());
    one.wait_type("state");
    let (status, body) = ws_try(&d)
        .err()
        .expect("a second session past max_sessions = 1");
    assert_eq!(status, 503, "{body}");
}
