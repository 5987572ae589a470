//! The event stream (`bm2 events`, `POST /v1/events`) and data sent over IPC
//! (`bm2 send --data`): lifecycle events in order with their reasons, app messages, log lines,
//! and a subscriber that does not read never stalls the daemon.

mod common;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{DEADLINE, TestEnv};
use serde_json::Value;

/// `bm2 events --json [args]` running, its lines coming on a channel.
struct Events {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl Events {
    fn start(env: &TestEnv, args: &[&str]) -> Events {
        let mut all = vec!["events", "--json"];
        all.extend_from_slice(args);
        let mut child = env
            .command(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let e = Events { child, lines };
        let first = e.next().expect("the stream starts");
        assert_eq!(first["type"], "subscribed", "{first}");
        e
    }

    fn next(&self) -> Option<Value> {
        self.lines.recv_timeout(DEADLINE).ok()
    }

    /// The next events until `done` says stop; panics past the deadline.
    fn until(&self, mut done: impl FnMut(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            let Ok(e) = self.lines.recv_timeout(Duration::from_millis(200)) else {
                continue;
            };
            let stop = done(&e);
            seen.push(e);
            if stop {
                return seen;
            }
        }
        panic!("the awaited event did not come; got {seen:#?}");
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lifecycle events of `seen` as "event[:detail]" strings.
fn lifecycle(seen: &[Value]) -> Vec<String> {
    seen.iter()
        .filter(|e| e["type"] == "process:event")
        .map(|e| {
            let mut s = e["event"].as_str().unwrap().to_string();
            if let Some(code) = e["code"].as_i64() {
                let _ = write!(s, ":code={code}");
            }
            if let Some(reason) = e["reason"].as_str() {
                let _ = write!(s, ":{reason}");
            }
            s
        })
        .collect()
}

/// Node: exits with code 3 the first time (a marker file says so), then runs.
const CRASH_ONCE: &str = "\
const fs = require('fs');
if (!fs.existsSync('crashed')) { fs.writeFileSync('crashed', ''); setTimeout(() => process.exit(3), 100); }
else setInterval(() => {}, 1000);
";

#[test]
fn lifecycle_events_arrive_in_order_with_their_reasons() {
    let env = TestEnv::new();
    env.file("app.js", CRASH_ONCE);
    env.ok(&["ping"]);
    let events = Events::start(&env, &[]);
    env.ok(&["start", "app.js", "--name", "a"]);
    let seen = events.until(|e| {
        e["event"] == "online" && e["process"]["pid"].is_number() && {
            // The second online: after the crash and the restart.
            false
        } || e["event"] == "restart"
    });
    let mut all = seen;
    all.extend(events.until(|e| e["event"] == "online"));
    assert_eq!(
        lifecycle(&all),
        [
            "start",
            "online",
            "exit:code=3",
            "restart:crash",
            "start",
            "online"
        ],
        "{all:#?}"
    );
    let first = &all[0];
    assert_eq!(first["process"]["name"], "a");
    assert_eq!(first["process"]["id"], 0);
    assert_eq!(first["process"]["namespace"], "default");

    env.ok(&["restart", "a"]);
    let seen = events.until(|e| e["event"] == "online");
    assert_eq!(
        lifecycle(&seen),
        ["exit", "restart:manual", "start", "online"],
        "{seen:#?}"
    );
    env.ok(&["stop", "a"]);
    let seen = events.until(|e| e["event"] == "stop");
    assert_eq!(lifecycle(&seen), ["exit", "stop"], "{seen:#?}");
    assert!(
        seen[0]["signal"].is_string() || seen[0]["code"].is_number(),
        "{seen:#?}"
    );
    env.ok(&["delete", "a"]);
    let seen = events.until(|e| e["event"] == "delete");
    assert_eq!(lifecycle(&seen), ["delete"]);
}

/// Node: sends a message for the bus, prints a line, and echoes what it receives.
const TALKER: &str = "\
process.on('message', (m) => console.log('got ' + JSON.stringify(m)));
process.send({ type: 'process:msg', topic: 'greeting', data: { hello: 'world' } });
console.log('a line');
setInterval(() => {}, 1000);
";

#[test]
fn app_messages_and_log_lines_arrive_and_data_reaches_the_app() {
    let env = TestEnv::new();
    env.file("talker.js", TALKER);
    env.ok(&["ping"]);
    // No target: every process, also those started later.
    let events = Events::start(&env, &["--logs"]);
    env.ok(&["start", "talker.js", "--name", "talker"]);
    let seen = events.until(|e| e["type"] == "process:msg");
    let msg = seen.last().unwrap();
    assert_eq!(msg["topic"], "greeting");
    assert_eq!(msg["data"]["hello"], "world");
    assert_eq!(msg["process"]["name"], "talker");
    events.until(|e| e["type"] == "log:out" && e["data"] == "a line");

    // bm2 send --data: over the IPC channel, as PM2's sendDataToProcessId.
    env.ok(&["send", "talker", r#"{"x":1}"#, "--data", "--topic", "t"]);
    let got = events.until(|e| {
        e["type"] == "log:out" && e["data"].as_str().is_some_and(|d| d.starts_with("got "))
    });
    let line = got.last().unwrap()["data"].as_str().unwrap().to_string();
    let received: Value = serde_json::from_str(line.strip_prefix("got ").unwrap()).unwrap();
    assert_eq!(received["type"], "process:msg");
    assert_eq!(received["topic"], "t");
    assert_eq!(received["data"]["x"], 1);
    assert_eq!(received["id"], 0);

    // A process without an IPC channel says so.
    env.ok(&["start", "sleep", "--name", "plain", "--", "100"]);
    let (ok, out, err) = env.output(&["send", "plain", "{}", "--data"]);
    assert!(!ok, "{out}");
    assert!(err.contains("no IPC channel"), "{err}");
}

#[test]
fn an_unknown_target_is_refused_with_the_list() {
    let env = TestEnv::new();
    env.start_sleeper("a");
    let (ok, _, err) = env.output(&["events", "nope"]);
    assert!(!ok);
    assert!(err.contains("nope") && err.contains('a'), "{err}");
}

#[test]
fn a_subscriber_that_does_not_read_gets_lagged_and_never_stalls_the_daemon() {
    let env = TestEnv::new();
    // Prints lines as fast as it can for a while.
    env.file(
        "flood.js",
        "const line = 'x'.repeat(200) + '\\n'; let n = 0; \
         function go() { for (let i = 0; i < 2000; i++) process.stdout.write(line); if (++n < 100) setImmediate(go); } go(); \
         setInterval(() => {}, 1000);\n",
    );
    env.ok(&["ping"]);
    // A raw subscriber that reads the first line, then nothing.
    let mut sock = UnixStream::connect(env.home_path().join("daemon.sock")).unwrap();
    let body = r#"{"logs":true}"#;
    write!(
        sock,
        "POST /v1/events HTTP/1.1\r\nHost: bm2\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut first = [0u8; 512];
    let n = sock.read(&mut first).unwrap();
    assert!(
        String::from_utf8_lossy(&first[..n]).contains("subscribed"),
        "{}",
        String::from_utf8_lossy(&first[..n])
    );
    env.ok(&["start", "flood.js", "--name", "flood"]);
    // While the subscriber reads nothing, the daemon answers at once.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let t = Instant::now();
        env.ok(&["ping"]);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "ping took {:?}",
            t.elapsed()
        );
    }
    // Reading again: a lagged marker says how much was missed.
    let mut reader = BufReader::new(sock);
    let mut line = String::new();
    let deadline = Instant::now() + DEADLINE;
    loop {
        assert!(Instant::now() < deadline, "no lagged marker");
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() != 0,
            "the stream ended without a lagged marker"
        );
        if line.contains("\"type\":\"lagged\"") {
            let start = line.find('{').unwrap();
            let v: Value = serde_json::from_str(line[start..].trim()).unwrap();
            assert!(v["missed"].as_u64().unwrap() > 0, "{v}");
            break;
        }
    }
}
