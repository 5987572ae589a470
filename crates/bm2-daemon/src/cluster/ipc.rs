//! The daemon's end of a Node or Bun process's IPC channel (`NODE_CHANNEL_FD`).
//!
//! The channel carries what the process says (`process.send('ready')`, the cluster shim's
//! reports) and what bm2 tells it (PM2's `shutdown`). For Node cluster instances it also carries
//! connections: the balancer hands an accepted socket to the worker with Node's own handle
//! protocol (a `NODE_HANDLE` message with the descriptor attached), the way Node's cluster
//! module does, and the worker serves it directly, so no byte of it passes through the daemon.
//! The daemon keeps its copy of each socket until the worker acknowledges it: when the worker
//! dies first, the connection goes to another instance and the client notices nothing.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use command_fds::FdMapping;
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use super::balancer::Balancer;
use super::channels::{Event, Served};
use crate::logs::lock;

/// Connections handed to a worker that it has not acknowledged yet, at most: a worker that
/// falls behind gets its next connections through the proxy.
const WINDOW: usize = 64;

/// The message that carries a connection for the app's server of public port `port`; the shim
/// injects it into that server.
fn connection_message(port: u16) -> Vec<u8> {
    format!(
        "{{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Socket\",\"msg\":{{\"cmd\":\"NODE_BM2_CONN\",\"port\":{port}}}}}\n"
    )
    .into_bytes()
}

/// The daemon's end of one process's IPC channel.
#[derive(Debug)]
pub struct Ipc {
    out: Mutex<Outbox>,
    /// The shim serves handed connections.
    handoff: AtomicBool,
    /// The shim listens on the socket bm2 holds for the app's port (fork mode).
    listening: AtomicBool,
    /// The shim no longer accepts on that socket and its connections have closed.
    drained: AtomicBool,
    /// The channel is open.
    alive: AtomicBool,
    /// Connections the worker has acknowledged.
    handed: AtomicU64,
    /// Handed connections the worker reports closed.
    closed: AtomicU64,
    /// Where unacknowledged connections go when the worker dies.
    balancer: Mutex<Weak<Balancer>>,
    /// Wakes the flusher when bytes are left in the backlog (and when this is dropped).
    flush: Arc<tokio::sync::Notify>,
}

impl Drop for Ipc {
    fn drop(&mut self) {
        self.flush.notify_one();
    }
}

#[derive(Debug)]
struct Outbox {
    stream: StdUnixStream,
    unacked: VecDeque<std::net::TcpStream>,
    /// Bytes the channel could not take at once, written by the flusher task as it drains:
    /// a sender never waits for the process to read.
    backlog: Vec<u8>,
}

/// Most bytes kept for a process that does not read its channel; past that, the channel is
/// treated as dead.
const MAX_BACKLOG: usize = 1 << 20;

/// Gives the child an IPC channel on descriptor `child_fd` (`NODE_CHANNEL_FD`); what it says
/// arrives on `events`. The returned mapping puts the child's end in place (see
/// `command_fds`); the caller applies it with the command's other descriptors.
pub fn attach(
    cmd: &mut tokio::process::Command,
    events: mpsc::UnboundedSender<Event>,
    child_fd: i32,
) -> io::Result<(Arc<Ipc>, FdMapping)> {
    let (ours, theirs) = StdUnixStream::pair()?;
    let mapping = FdMapping {
        parent_fd: theirs.into(),
        child_fd,
    };
    cmd.env("NODE_CHANNEL_FD", child_fd.to_string())
        .env("NODE_CHANNEL_SERIALIZATION_MODE", "json");
    ours.set_nonblocking(true)?;
    let reader = tokio::net::UnixStream::from_std(ours.try_clone()?)?;
    let ipc = Arc::new(Ipc {
        out: Mutex::new(Outbox {
            stream: ours.try_clone()?,
            unacked: VecDeque::new(),
            backlog: Vec::new(),
        }),
        handoff: AtomicBool::new(false),
        listening: AtomicBool::new(false),
        drained: AtomicBool::new(false),
        alive: AtomicBool::new(true),
        handed: AtomicU64::new(0),
        closed: AtomicU64::new(0),
        balancer: Mutex::new(Weak::new()),
        flush: Arc::default(),
    });
    tokio::spawn(read_loop(reader, ipc.clone(), events));
    tokio::spawn(flush_loop(
        tokio::net::UnixStream::from_std(ours)?,
        Arc::downgrade(&ipc),
        ipc.flush.clone(),
    ));
    Ok((ipc, mapping))
}

/// Reads the process's messages until the channel closes.
async fn read_loop(
    reader: tokio::net::UnixStream,
    ipc: Arc<Ipc>,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut lines = BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match parse_message(&line) {
            Some(Message::Event(event)) => {
                // The supervisor may have stopped listening; acknowledgements still matter.
                let _ = events.send(event);
            }
            Some(Message::Ack) => ipc.acked(),
            Some(Message::Handoff) => ipc.handoff.store(true, Ordering::Relaxed),
            Some(Message::Listening) => {
                ipc.listening.store(true, Ordering::Relaxed);
                let _ = events.send(Event::Listening);
            }
            Some(Message::Drained) => ipc.drained.store(true, Ordering::Relaxed),
            Some(Message::Closed(n)) => {
                ipc.closed.fetch_max(n, Ordering::Relaxed);
            }
            None => {}
        }
    }
    ipc.alive.store(false, Ordering::Relaxed);
    let orphans: Vec<_> = lock(&ipc.out).unacked.drain(..).collect();
    if !orphans.is_empty()
        && let Some(balancer) = lock(&ipc.balancer).upgrade()
    {
        balancer.redispatch(orphans);
    }
}

/// A message of the IPC channel.
#[derive(Debug, PartialEq, Eq)]
enum Message {
    /// Something the supervisor acts on.
    Event(Event),
    /// Node acknowledged a handed connection.
    Ack,
    /// The shim serves handed connections.
    Handoff,
    /// The shim listens on the socket bm2 holds for the app's port.
    Listening,
    /// The shim stopped accepting on that socket and its connections have closed.
    Drained,
    /// The shim has closed this many handed connections in all.
    Closed(u64),
}

/// Reads one message: `"ready"`, Node's `NODE_HANDLE_ACK`, or a shim report.
fn parse_message(line: &str) -> Option<Message> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if value.as_str() == Some("ready") {
        return Some(Message::Event(Event::Ready));
    }
    if value["cmd"] == "NODE_HANDLE_ACK" {
        return Some(Message::Ack);
    }
    match value["type"].as_str()? {
        "bm2:listen" => {
            let port = |key: &str| {
                value[key]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p != 0)
            };
            let host = match value.get("host") {
                None | Some(serde_json::Value::Null) => None,
                Some(h) => Some(h.as_str()?.parse().ok()?),
            };
            Some(Message::Event(Event::Listen(Served {
                public: port("port")?,
                private: port("private")?,
                host,
            })))
        }
        "bm2:handoff" => Some(Message::Handoff),
        "bm2:listening" => Some(Message::Listening),
        "bm2:drained" => Some(Message::Drained),
        "bm2:closed" => value["n"].as_u64().map(Message::Closed),
        _ => None,
    }
}

impl Ipc {
    /// Sends one message (JSON, as Node's `process.on('message')` receives it, or as an
    /// `internalMessage` when it has a `cmd` starting with `NODE_`).
    pub fn send(&self, message: &serde_json::Value) -> io::Result<()> {
        let mut line = serde_json::to_vec(message)?;
        line.push(b'\n');
        let mut out = lock(&self.out);
        self.write(&mut out, &line)
    }

    /// Writes what the channel takes now and keeps the rest for the flusher, in order.
    fn write(&self, out: &mut Outbox, mut data: &[u8]) -> io::Result<()> {
        if out.backlog.is_empty() {
            loop {
                match out.stream.write(data) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) if n == data.len() => return Ok(()),
                    Ok(n) => data = &data[n..],
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if out.backlog.len() + data.len() > MAX_BACKLOG {
            self.alive.store(false, Ordering::Relaxed);
            return Err(io::Error::other(
                "the process does not read its IPC channel",
            ));
        }
        out.backlog.extend_from_slice(data);
        self.flush.notify_one();
        Ok(())
    }

    /// Sends new connections here (the balancer this process belongs to takes back what the
    /// process cannot serve).
    pub fn join(&self, balancer: Weak<Balancer>) {
        *lock(&self.balancer) = balancer;
    }

    /// True when a connection can be handed to the process now.
    pub fn can_take(&self) -> bool {
        self.handoff.load(Ordering::Relaxed)
            && self.alive.load(Ordering::Relaxed)
            && lock(&self.out).unacked.len() < WINDOW
    }

    /// Hands `conn`, a connection to public port `port`, to the process; gives it back when it
    /// cannot be sent now.
    pub fn hand(&self, conn: std::net::TcpStream, port: u16) -> Result<(), std::net::TcpStream> {
        let mut out = lock(&self.out);
        // A descriptor must not overtake bytes still waiting to be written.
        if out.unacked.len() >= WINDOW
            || !self.alive.load(Ordering::Relaxed)
            || !out.backlog.is_empty()
        {
            return Err(conn);
        }
        let fds = [conn.as_raw_fd()];
        let message = connection_message(port);
        let sent = sendmsg::<()>(
            out.stream.as_fd().as_raw_fd(),
            &[IoSlice::new(&message)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            None,
        );
        match sent {
            Ok(n) => {
                // The descriptor went with the first byte; a short write (the channel nearly
                // full, which the window prevents) is finished without it.
                if n < message.len() && self.write(&mut out, &message[n..]).is_err() {
                    self.alive.store(false, Ordering::Relaxed);
                }
                out.unacked.push_back(conn);
                Ok(())
            }
            Err(_) => Err(conn),
        }
    }

    /// Node took the oldest handed connection: it owns it now.
    fn acked(&self) {
        if lock(&self.out).unacked.pop_front().is_some() {
            self.handed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Connections handed to the process and still open (as far as its last report says).
    pub fn open(&self) -> u64 {
        let unacked = lock(&self.out).unacked.len() as u64;
        let handed = self.handed.load(Ordering::Relaxed);
        unacked + handed.saturating_sub(self.closed.load(Ordering::Relaxed))
    }

    /// True when the process listens on the socket bm2 holds for its port (fork mode).
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// True once a draining process has stopped accepting and closed its connections, or has
    /// closed its channel.
    pub fn drained(&self) -> bool {
        self.drained.load(Ordering::Relaxed) || !self.alive.load(Ordering::Relaxed)
    }

    /// Tells the process to finish the requests it has and close its connections (each
    /// response then carries `Connection: close`); in fork mode it also stops accepting on the
    /// socket bm2 holds, which its replacement serves.
    pub fn drain(&self) {
        if self.handoff.load(Ordering::Relaxed) || self.listening.load(Ordering::Relaxed) {
            let _ = self.send(&serde_json::json!({ "cmd": "NODE_BM2_DRAIN" }));
        }
    }
}

/// Writes the backlog of a channel whenever the process has made room, until the channel or
/// its owner is gone.
async fn flush_loop(
    stream: tokio::net::UnixStream,
    ipc: Weak<Ipc>,
    wake: Arc<tokio::sync::Notify>,
) {
    loop {
        wake.notified().await;
        loop {
            if stream.writable().await.is_err() {
                return;
            }
            let Some(owner) = ipc.upgrade() else { return };
            let mut out = lock(&owner.out);
            match stream.try_write(&out.backlog) {
                Ok(n) => {
                    out.backlog.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    owner.alive.store(false, Ordering::Relaxed);
                    out.backlog.clear();
                    return;
                }
            }
            if out.backlog.is_empty() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_channel_never_blocks_the_sender_and_keeps_the_order() {
        use std::io::Read;
        let mut cmd = tokio::process::Command::new("true");
        let (tx, _rx) = mpsc::unbounded_channel();
        let (ipc, mapping) = attach(&mut cmd, tx, 3).unwrap();
        let mut theirs = StdUnixStream::from(mapping.parent_fd);
        // Far more than a socket buffer holds, while the process reads nothing.
        let messages: Vec<serde_json::Value> = (0..16)
            .map(|i| serde_json::json!({ "n": i, "pad": "x".repeat(64 * 1024) }))
            .collect();
        let t = std::time::Instant::now();
        for m in &messages {
            ipc.send(m).unwrap();
        }
        assert!(
            t.elapsed() < std::time::Duration::from_millis(200),
            "sending waited for the reader: {:?}",
            t.elapsed()
        );
        let count = messages.len();
        let got = tokio::task::spawn_blocking(move || {
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 65536];
            let mut newlines = 0;
            while newlines < count {
                let n = theirs.read(&mut chunk).unwrap();
                assert!(n > 0, "the channel closed");
                for &byte in &chunk[..n] {
                    newlines += usize::from(byte == b'\n');
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf
        })
        .await
        .unwrap();
        let lines: Vec<serde_json::Value> = got
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines, messages, "every message, whole and in order");
    }

    #[test]
    fn messages_are_read() {
        assert_eq!(
            parse_message("\"ready\""),
            Some(Message::Event(Event::Ready))
        );
        assert_eq!(
            parse_message(r#"{"type":"bm2:listen","port":3000,"private":41000}"#),
            Some(Message::Event(Event::Listen(Served {
                public: 3000,
                private: 41000,
                host: None
            })))
        );
        assert_eq!(
            parse_message(
                r#"{"type":"bm2:listen","port":3000,"private":41000,"host":"127.0.0.1"}"#
            ),
            Some(Message::Event(Event::Listen(Served {
                public: 3000,
                private: 41000,
                host: Some([127, 0, 0, 1].into())
            })))
        );
        assert_eq!(
            parse_message(r#"{"type":"bm2:listen","port":3000,"private":41000,"host":"::1"}"#),
            Some(Message::Event(Event::Listen(Served {
                public: 3000,
                private: 41000,
                host: Some(std::net::Ipv6Addr::LOCALHOST.into())
            })))
        );
        assert_eq!(parse_message(r#"{"type":"bm2:listen","port":3000}"#), None);
        assert_eq!(
            parse_message(r#"{"type":"bm2:listen","port":3000,"private":0}"#),
            None
        );
        assert_eq!(
            parse_message(r#"{"type":"bm2:listen","port":3000,"private":4,"host":"nowhere"}"#),
            None
        );
        assert_eq!(
            parse_message(r#"{"cmd":"NODE_HANDLE_ACK"}"#),
            Some(Message::Ack)
        );
        assert_eq!(
            parse_message(r#"{"type":"bm2:handoff"}"#),
            Some(Message::Handoff)
        );
        assert_eq!(
            parse_message(r#"{"type":"bm2:closed","n":7}"#),
            Some(Message::Closed(7))
        );
        assert_eq!(
            parse_message(r#"{"type":"bm2:listening"}"#),
            Some(Message::Listening)
        );
        assert_eq!(
            parse_message(r#"{"type":"bm2:drained"}"#),
            Some(Message::Drained)
        );
        assert_eq!(parse_message(r#"{"type":"other"}"#), None);
        assert_eq!(parse_message("garbage"), None);
    }

    #[test]
    fn the_handle_message_is_json() {
        let message = connection_message(3000);
        let v: serde_json::Value =
            serde_json::from_slice(message.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(v["cmd"], "NODE_HANDLE");
        assert_eq!(v["msg"]["cmd"], "NODE_BM2_CONN");
        assert_eq!(v["msg"]["port"], 3000);
    }
}
