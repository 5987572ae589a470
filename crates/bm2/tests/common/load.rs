//! HTTP over loopback for the tests of apps with a port: small servers that answer with their
//! pid, a minimal HTTP/1.0 client, and a load generator (threads sending requests in a loop) that
//! counts what was answered, by which process, and what failed.

use std::collections::BTreeSet;
use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::DEADLINE;

/// Node: listens on `$PORT`, answers with its pid.
pub const NODE_SERVER: &str = "\
const http = require('http');
http.createServer((q, s) => s.end(String(process.pid))).listen(process.env.PORT);
";

/// Python: the request handler class `H` of an `http.server` that answers `GET` with the pid
/// and logs nothing. The script imports `http.server` and `os` before it.
pub const PY_PID_HANDLER: &str = "\
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = str(os.getpid()).encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass
";

/// How a request failed.
#[derive(Debug)]
pub enum Failure {
    /// The connection was refused: nothing listened on the port.
    Refused,
    /// Anything else (reset, timeout, bad answer).
    Other(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Refused => f.write_str("connect: connection refused"),
            Failure::Other(e) => f.write_str(e),
        }
    }
}

/// `GET /` on 127.0.0.1:`port` with HTTP/1.0, a new connection; the body of a 200 answer.
pub fn http_get(port: u16) -> Result<String, Failure> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| {
        if e.kind() == ErrorKind::ConnectionRefused {
            Failure::Refused
        } else {
            Failure::Other(format!("connect: {e}"))
        }
    })?;
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .map_err(|e| Failure::Other(format!("write: {e}")))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(|e| Failure::Other(format!("read: {e}")))?;
    let text = String::from_utf8_lossy(&buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(Failure::Other(format!("incomplete answer: {text:?}")));
    };
    let status = head.lines().next().unwrap_or_default();
    if !(status.starts_with("HTTP/1.") && status.split(' ').nth(1) == Some("200")) {
        return Err(Failure::Other(format!("status line {status:?}")));
    }
    Ok(body.to_string())
}

/// The pid an answer's body holds.
pub fn parse_pid(body: &str) -> Result<u32, Failure> {
    body.trim()
        .parse()
        .map_err(|_| Failure::Other(format!("body is not a pid: {body:?}")))
}

/// The pid the app on 127.0.0.1:`port` answered with.
pub fn get_pid(port: u16) -> Result<u32, Failure> {
    parse_pid(&http_get(port)?)
}

/// The set of `pids`.
pub fn set(pids: &[u32]) -> BTreeSet<u32> {
    pids.iter().copied().collect()
}

/// What a load saw.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests answered.
    pub ok: u64,
    /// Requests refused (each also in `failures`).
    pub refused: u64,
    /// Every failed request: where, when, and why.
    pub failures: Vec<String>,
    /// The pids that answered.
    pub pids: BTreeSet<u32>,
}

impl Stats {
    /// Counts one request; `context` (which client, when) heads the line of a failure.
    pub fn record(&mut self, answer: Result<u32, Failure>, context: impl FnOnce() -> String) {
        match answer {
            Ok(pid) => {
                self.ok += 1;
                self.pids.insert(pid);
            }
            Err(e) => {
                if matches!(e, Failure::Refused) {
                    self.refused += 1;
                }
                self.failures.push(format!("{}: {e}", context()));
            }
        }
    }

    fn merge(&mut self, other: Stats) {
        self.ok += other.ok;
        self.refused += other.refused;
        self.failures.extend(other.failures);
        self.pids.extend(other.pids);
    }
}

/// Asserts that no request failed (refused or otherwise), and that some were answered.
pub fn assert_no_failures(stats: &Stats, during: &str) {
    assert!(
        stats.failures.is_empty(),
        "{} of {} requests failed during {during} ({} of them refused); first failures: {:#?}",
        stats.failures.len(),
        stats.ok + stats.failures.len() as u64,
        stats.refused,
        &stats.failures[..stats.failures.len().min(10)]
    );
    assert!(stats.ok > 0, "no request was answered during {during}");
}

/// Longest a load runs.
pub const LOAD_BOUND: Duration = Duration::from_secs(90);

/// Threads sending requests in a loop until [`Load::finish`] (or [`LOAD_BOUND`], or the load is
/// dropped).
pub struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    threads: Vec<JoinHandle<Stats>>,
}

impl Load {
    /// `per_port` threads for each of `ports`, a new connection per request, `pace` apart.
    pub fn start(ports: &[u16], per_port: usize, pace: Duration) -> Load {
        let clients = ports
            .iter()
            .flat_map(|&port| std::iter::repeat_n(port, per_port))
            .enumerate()
            .map(|(t, port)| (format!("thread {t} (port {port})"), move || get_pid(port)));
        Load::run(clients, pace)
    }

    /// A thread per client, named by its label, each sending its request `pace` apart.
    pub fn run<F>(clients: impl IntoIterator<Item = (String, F)>, pace: Duration) -> Load
    where
        F: FnMut() -> Result<u32, Failure> + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let threads = clients
            .into_iter()
            .map(|(label, mut request)| {
                let (stop, done) = (stop.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut stats = Stats::default();
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < LOAD_BOUND {
                        stats.record(request(), || format!("{label} at {:?}", started.elapsed()));
                        done.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(pace);
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
    pub fn wait_requests(&self, n: u64) {
        let target = self.done.load(Ordering::Relaxed) + n;
        super::wait_for(&format!("{n} more requests"), DEADLINE, || {
            (self.done.load(Ordering::Relaxed) >= target).then_some(())
        });
    }

    /// Stops the threads; what they saw, together.
    pub fn finish(mut self) -> Stats {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Stats::default();
        for t in std::mem::take(&mut self.threads) {
            all.merge(t.join().expect("load thread"));
        }
        all
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        // A test that fails before `finish` does not leave its load running.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// An HTTP/1.1 client that keeps its connection open between requests, as browsers and load
/// generators do, and opens a new one only after the server said `Connection: close`.
pub struct KeepAlive {
    port: u16,
    /// The open connection, if any.
    pub conn: Option<TcpStream>,
}

impl KeepAlive {
    /// `GET /` as [`KeepAlive::get`], read as the pid that answered.
    pub fn get_pid(&mut self) -> Result<u32, Failure> {
        let body = self
            .get()
            .map_err(|e| Failure::Other(format!("keep-alive {e}")))?;
        parse_pid(&body)
    }

    pub fn new(port: u16) -> KeepAlive {
        KeepAlive { port, conn: None }
    }

    /// `GET /` on the open connection (or a new one); the body of a 200 answer. Any error on
    /// a reused connection counts: a server must not close a connection a request is sent on
    /// without answering it.
    pub fn get(&mut self) -> Result<String, String> {
        if self.conn.is_none() {
            let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
            let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .map_err(|e| format!("connect: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            self.conn = Some(s);
        }
        let result = self.exchange();
        if !matches!(result, Ok((_, true))) {
            self.conn = None;
        }
        result.map(|(body, _)| body)
    }

    /// One request and its answer: (body, whether the connection stays open).
    fn exchange(&mut self) -> Result<(String, bool), String> {
        let s = self.conn.as_mut().expect("connected");
        s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = s.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err(format!(
                    "connection closed before the answer ({} bytes of it)",
                    buf.len()
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let status = head.lines().next().unwrap_or_default().to_string();
        if status.split(' ').nth(1) != Some("200") {
            return Err(format!("status line {status:?}"));
        }
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("no content-length in {head:?}"))?;
        while buf.len() < head_end + length {
            let n = s.read(&mut chunk).map_err(|e| format!("read body: {e}"))?;
            if n == 0 {
                return Err("connection closed in the body".into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
        // An HTTP/1.0 answer closes the connection; an HTTP/1.1 one keeps it unless it says not.
        let keep = status.starts_with("http/1.1")
            && !head.lines().any(|l| l.trim() == "connection: close");
        Ok((body, keep))
    }
}
