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
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::balancer::Balancer;
use super::channels::{Event, Served};
use crate::handover::Fd;
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
    /// Set once to stop the reader and the flusher (a freeze).
    stop: watch::Sender<bool>,
    /// The reader (which gives back the bytes of an unfinished message, or nothing when the
    /// channel closed) and the flusher, until a freeze takes them.
    tasks: Mutex<Option<Tasks>>,
    /// Frozen: the channel's state was taken, this takes and sends nothing more.
    frozen: AtomicBool,
}

/// The reader (which gives back the bytes of an unfinished message, or nothing when the channel
/// closed) and the flusher of a channel.
type Tasks = (JoinHandle<Option<Vec<u8>>>, JoinHandle<()>);

impl Drop for Ipc {
    fn drop(&mut self) {
        self.flush.notify_one();
    }
}

#[derive(Debug)]
struct Outbox {
    /// None once frozen: the channel then belongs to the frozen state.
    stream: Option<StdUnixStream>,
    unacked: VecDeque<std::net::TcpStream>,
    /// Bytes the channel could not take at once, written by the flusher task as it drains:
    /// a sender never waits for the process to read.
    backlog: Vec<u8>,
}

/// Most bytes kept for a process that does not read its channel; past that, the channel is
/// treated as dead.
const MAX_BACKLOG: usize = 1 << 20;

/// An IPC channel with its tasks stopped, as plain values that own its descriptors: what
/// [`Ipc::freeze`] gives and [`thaw`] takes (also across the daemon's re-exec).
#[derive(Debug, Serialize, Deserialize)]
pub struct FrozenIpc {
    /// The daemon's end of the channel.
    pub channel: Fd,
    /// Bytes read from the process that are not a whole message yet.
    pub partial: Vec<u8>,
    /// Bytes to the process not written yet, in order.
    pub backlog: Vec<u8>,
    /// Connections handed to the process and not acknowledged yet, oldest first.
    pub unacked: Vec<Fd>,
    /// The shim serves handed connections.
    pub handoff: bool,
    /// The shim listens on the socket bm2 holds for the app's port.
    pub listening: bool,
    /// The shim stopped accepting on that socket and its connections have closed.
    pub drained: bool,
    /// Connections the process has acknowledged.
    pub handed: u64,
    /// Handed connections the process reports closed.
    pub closed: u64,
}

impl FrozenIpc {
    /// The state of a new channel whose daemon end is `channel`.
    fn fresh(channel: Fd) -> FrozenIpc {
        FrozenIpc {
            channel,
            partial: Vec::new(),
            backlog: Vec::new(),
            unacked: Vec::new(),
            handoff: false,
            listening: false,
            drained: false,
            handed: 0,
            closed: 0,
        }
    }
}

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
    let ipc = thaw(FrozenIpc::fresh(Fd::new(ours)), events)?;
    Ok((ipc, mapping))
}

/// A working channel from a frozen state: bytes of an unfinished message start the next one,
/// the backlog is written before anything sent later, and unacknowledged connections stay
/// so (they go back to the balancer if the process dies). Must be called inside a tokio
/// runtime.
pub fn thaw(frozen: FrozenIpc, events: mpsc::UnboundedSender<Event>) -> io::Result<Arc<Ipc>> {
    let ours = StdUnixStream::from(frozen.channel.into_inner());
    ours.set_nonblocking(true)?;
    let reader = tokio::net::UnixStream::from_std(ours.try_clone()?)?;
    let writer = tokio::net::UnixStream::from_std(ours.try_clone()?)?;
    let unacked = frozen
        .unacked
        .into_iter()
        .map(|fd| std::net::TcpStream::from(fd.into_inner()))
        .collect();
    let has_backlog = !frozen.backlog.is_empty();
    let ipc = Arc::new(Ipc {
        out: Mutex::new(Outbox {
            stream: Some(ours),
            unacked,
            backlog: frozen.backlog,
        }),
        handoff: AtomicBool::new(frozen.handoff),
        listening: AtomicBool::new(frozen.listening),
        drained: AtomicBool::new(frozen.drained),
        alive: AtomicBool::new(true),
        handed: AtomicU64::new(frozen.handed),
        closed: AtomicU64::new(frozen.closed),
        balancer: Mutex::new(Weak::new()),
        flush: Arc::default(),
        stop: watch::Sender::new(false),
        tasks: Mutex::new(None),
        frozen: AtomicBool::new(false),
    });
    let read = tokio::spawn(read_loop(
        reader,
        frozen.partial,
        ipc.clone(),
        events,
        ipc.stop.subscribe(),
    ));
    let flush = tokio::spawn(flush_loop(
        writer,
        Arc::downgrade(&ipc),
        ipc.flush.clone(),
        ipc.stop.subscribe(),
    ));
    *lock(&ipc.tasks) = Some((read, flush));
    if has_backlog {
        ipc.flush.notify_one();
    }
    Ok(ipc)
}

/// Returns once `stop` is set (or its sender is gone).
pub(super) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Most bytes read from the channel at once.
const READ_CHUNK: usize = 64 * 1024;

/// Reads the process's messages until the channel closes (then gives nothing back), or until
/// `stop` (then gives back the bytes of the unfinished message: every whole one was handled).
async fn read_loop(
    mut reader: tokio::net::UnixStream,
    mut buf: Vec<u8>,
    ipc: Arc<Ipc>,
    events: mpsc::UnboundedSender<Event>,
    mut stop: watch::Receiver<bool>,
) -> Option<Vec<u8>> {
    loop {
        // Every whole message is handled before waiting again: a stop finds only a part.
        let mut start = 0;
        while let Some(end) = buf[start..].iter().position(|b| *b == b'\n') {
            let line = &buf[start..start + end];
            start += end + 1;
            if let Ok(line) = std::str::from_utf8(line) {
                ipc.handle(parse_message(line).as_ref(), &events);
            }
        }
        buf.drain(..start);
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        tokio::select! {
            read = reader.read_buf(&mut buf) => {
                if matches!(read, Ok(0) | Err(_)) {
                    break;
                }
            }
            () = stopped(&mut stop) => return Some(buf),
        }
    }
    ipc.alive.store(false, Ordering::SeqCst);
    ipc.orphaned();
    None
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
    // An app's own message for the event bus: `{type: 'process:msg', data, topic}`, or, as
    // PM2 takes it, an object without a type.
    let custom = |data: serde_json::Value| {
        Some(Message::Event(Event::Message {
            topic: value["topic"].as_str().map(str::to_string),
            data,
        }))
    };
    if value.is_object() && value.get("type").is_none() && value.get("cmd").is_none() {
        return custom(value.clone());
    }
    match value["type"].as_str()? {
        "process:msg" => custom(value.get("data").cloned().unwrap_or_default()),
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
    /// Acts on one message of the process.
    fn handle(&self, message: Option<&Message>, events: &mpsc::UnboundedSender<Event>) {
        match message {
            Some(Message::Event(event)) => {
                // The supervisor may have stopped listening; acknowledgements still matter.
                let _ = events.send(event.clone());
            }
            Some(Message::Ack) => self.acked(),
            Some(Message::Handoff) => self.handoff.store(true, Ordering::Relaxed),
            Some(Message::Listening) => {
                self.listening.store(true, Ordering::Relaxed);
                let _ = events.send(Event::Listening);
            }
            Some(Message::Drained) => self.drained.store(true, Ordering::Relaxed),
            Some(Message::Closed(n)) => {
                self.closed.fetch_max(*n, Ordering::Relaxed);
            }
            None => {}
        }
    }

    /// The channel closed: connections the process never took go back to its balancer (now,
    /// or when it joins one).
    fn orphaned(&self) {
        let Some(balancer) = lock(&self.balancer).upgrade() else {
            return;
        };
        let orphans: Vec<_> = lock(&self.out).unacked.drain(..).collect();
        if !orphans.is_empty() {
            balancer.redispatch(orphans);
        }
    }

    /// Stops the reader (at a message boundary) and the flusher, waits until they have
    /// stopped, and gives the channel's state; this then takes, hands and sends nothing, and
    /// the descriptors belong to the returned state. None when the channel is closed (the
    /// process is gone): its unacknowledged connections then went back to its balancer.
    pub async fn freeze(&self) -> Option<FrozenIpc> {
        let (read, flush) = lock(&self.tasks).take()?;
        self.frozen.store(true, Ordering::SeqCst);
        self.stop.send_replace(true);
        let partial = read.await.ok().flatten();
        let _ = flush.await;
        let mut out = lock(&self.out);
        let stream = out.stream.take();
        let (Some(partial), Some(stream), true) =
            (partial, stream, self.alive.load(Ordering::SeqCst))
        else {
            drop(out);
            self.alive.store(false, Ordering::SeqCst);
            self.orphaned();
            return None;
        };
        Some(FrozenIpc {
            channel: Fd::new(stream),
            partial,
            backlog: std::mem::take(&mut out.backlog),
            unacked: out.unacked.drain(..).map(Fd::new).collect(),
            handoff: self.handoff.load(Ordering::Relaxed),
            listening: self.listening.load(Ordering::Relaxed),
            drained: self.drained.load(Ordering::Relaxed),
            handed: self.handed.load(Ordering::Relaxed),
            closed: self.closed.load(Ordering::Relaxed),
        })
    }

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
        let Some(stream) = out.stream.as_mut() else {
            return Err(io::Error::other("the IPC channel was handed over"));
        };
        if out.backlog.is_empty() {
            loop {
                match stream.write(data) {
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
        // The process may have died before this (just after a thaw).
        if !self.alive.load(Ordering::SeqCst) && !self.frozen.load(Ordering::SeqCst) {
            self.orphaned();
        }
    }

    /// True when a connection can be handed to the process now.
    pub fn can_take(&self) -> bool {
        self.handoff.load(Ordering::Relaxed)
            && self.alive.load(Ordering::Relaxed)
            && !self.frozen.load(Ordering::Relaxed)
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
        let Some(stream) = out.stream.as_ref() else {
            return Err(conn);
        };
        let fds = [conn.as_raw_fd()];
        let message = connection_message(port);
        let sent = sendmsg::<()>(
            stream.as_fd().as_raw_fd(),
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
/// its owner is gone, or until `stop` (a write is never cut: each happens under the lock).
async fn flush_loop(
    stream: tokio::net::UnixStream,
    ipc: Weak<Ipc>,
    wake: Arc<tokio::sync::Notify>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = wake.notified() => {}
            () = stopped(&mut stop) => return,
        }
        loop {
            tokio::select! {
                writable = stream.writable() => if writable.is_err() { return },
                () = stopped(&mut stop) => return,
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_frozen_channel_keeps_its_partial_message_backlog_and_unacked_connections() {
        use std::io::Read;
        use std::time::Duration;

        use crate::cluster::tests::{echo, round_trip};
        use crate::cluster::{ClusterHub, LoadBalancing};
        use crate::handover::fd;

        let mut cmd = tokio::process::Command::new("true");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (ipc, mapping) = attach(&mut cmd, tx, 3).unwrap();
        let mut theirs = StdUnixStream::from(mapping.parent_fd);
        theirs
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        theirs.write_all(b"{\"type\":\"bm2:handoff\"}\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !ipc.can_take() {
            assert!(std::time::Instant::now() < deadline, "no handoff");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A connection handed and not acknowledged: the process never takes it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (served, _) = listener.accept().unwrap();
        ipc.hand(served, 80).unwrap();
        // More than the channel holds, while the process reads nothing: a backlog.
        let messages: Vec<serde_json::Value> = (0..16)
            .map(|i| serde_json::json!({ "n": i, "pad": "x".repeat(64 * 1024) }))
            .collect();
        for m in &messages {
            ipc.send(m).unwrap();
        }
        // A whole message, and the start of the next.
        theirs.write_all(b"\"ready\"\n{\"type\":\"bm2:lis").unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(got.unwrap(), Some(Event::Ready));

        let frozen = ipc.freeze().await.expect("the channel is open");
        assert!(!ipc.can_take());
        assert!(ipc.send(&serde_json::json!("x")).is_err());
        assert_eq!(frozen.partial, b"{\"type\":\"bm2:lis");
        assert!(!frozen.backlog.is_empty());
        assert_eq!(frozen.unacked.len(), 1);
        assert!(frozen.handoff);
        assert!(ipc.freeze().await.is_none(), "frozen twice");

        let (json, fds) = fd::serialize(&frozen).unwrap();
        assert_eq!(fds.len(), 2);
        std::mem::forget(frozen);
        drop(ipc);
        let back: FrozenIpc = fd::deserialize(&json).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let ipc = thaw(back, tx).unwrap();
        assert_eq!(ipc.open(), 1);

        // The message started before the freeze ends after it.
        theirs.write_all(b"tening\"}\n").unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(got.unwrap(), Some(Event::Listening));
        assert!(ipc.listening());

        // The process reads everything: the handle message, then every message in order.
        let count = messages.len() + 1;
        let (got, theirs) = tokio::task::spawn_blocking(move || {
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 65536];
            let mut newlines = 0;
            while newlines < count {
                let n = theirs.read(&mut chunk).expect("the backlog did not come");
                assert!(n > 0, "the channel closed");
                for &byte in &chunk[..n] {
                    newlines += usize::from(byte == b'\n');
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            (buf, theirs)
        })
        .await
        .unwrap();
        let lines: Vec<serde_json::Value> = got
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines[0]["cmd"], "NODE_HANDLE");
        assert_eq!(
            lines[1..],
            messages[..],
            "every message, whole and in order"
        );

        // The process dies without taking the connection: the balancer serves it.
        let hub = ClusterHub::new(bm2_types::Home::at(std::env::temp_dir()));
        let b = hub
            .balancer("app", Some("127.0.0.1"), 0, LoadBalancing::RoundRobin)
            .await
            .unwrap();
        b.add(1, echo().await, None);
        ipc.join(Arc::downgrade(&b));
        drop(theirs);
        client.set_nonblocking(true).unwrap();
        let mut client = tokio::net::TcpStream::from_std(client).unwrap();
        round_trip(&mut client, b"still here").await;
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
