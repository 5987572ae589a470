//! How an instance tells bm2 it is ready: the Node IPC channel (`process.send('ready')`, as
//! under PM2), systemd's `NOTIFY_SOCKET` (`READY=1`, any language), or its port accepting
//! connections. The IPC channel also carries PM2's `shutdown` message.

use std::io;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::PathBuf;
use std::time::Duration;

use command_fds::{CommandFdExt, FdMapping};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixDatagram;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::mpsc;

/// What an instance said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// It is ready for traffic.
    Ready,
    /// It listens (through bm2's shim) in place of this public port.
    Listen(u16),
}

/// File descriptor number of the IPC channel in the child, as Node expects in `NODE_CHANNEL_FD`.
const CHILD_FD: i32 = 3;

/// The daemon's side of the IPC channel: messages to the app.
#[derive(Debug)]
pub struct IpcWriter(OwnedWriteHalf);

impl IpcWriter {
    /// Sends one message (JSON, as Node's `process.on('message')` receives it).
    pub async fn send(&mut self, message: &serde_json::Value) -> io::Result<()> {
        let mut line = serde_json::to_vec(message)?;
        line.push(b'\n');
        self.0.write_all(&line).await
    }
}

/// Gives the child an IPC channel on fd 3 (`NODE_CHANNEL_FD`); its messages arrive on `events`.
pub fn ipc(
    cmd: &mut tokio::process::Command,
    events: mpsc::UnboundedSender<Event>,
) -> io::Result<IpcWriter> {
    let (ours, theirs) = StdUnixStream::pair()?;
    cmd.as_std_mut()
        .fd_mappings(vec![FdMapping {
            parent_fd: theirs.into(),
            child_fd: CHILD_FD,
        }])
        .map_err(|e| io::Error::other(e.to_string()))?;
    cmd.env("NODE_CHANNEL_FD", CHILD_FD.to_string())
        .env("NODE_CHANNEL_SERIALIZATION_MODE", "json");
    ours.set_nonblocking(true)?;
    let stream = tokio::net::UnixStream::from_std(ours)?;
    let (read, write) = stream.into_split();
    tokio::spawn(async move {
        let mut lines = BufReader::new(read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(event) = parse_message(&line)
                && events.send(event).is_err()
            {
                return;
            }
        }
    });
    Ok(IpcWriter(write))
}

/// Reads a message of the IPC channel: `"ready"`, or the shim's `{type: "bm2:listen", port}`.
pub fn parse_message(line: &str) -> Option<Event> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if value.as_str() == Some("ready") {
        return Some(Event::Ready);
    }
    if value["type"] == "bm2:listen" {
        return value["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .map(Event::Listen);
    }
    None
}

/// Binds a `NOTIFY_SOCKET` at `path` for the child; `READY=1` arrives on `events`. The socket
/// file is removed when the child is gone (when `events` is closed).
pub fn notify_socket(
    cmd: &mut tokio::process::Command,
    path: PathBuf,
    events: mpsc::UnboundedSender<Event>,
) -> io::Result<()> {
    let _ = std::fs::remove_file(&path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let socket = UnixDatagram::bind(&path)?;
    cmd.env("NOTIFY_SOCKET", &path);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            tokio::select! {
                r = socket.recv(&mut buf) => {
                    let Ok(n) = r else { break };
                    let text = String::from_utf8_lossy(&buf[..n]);
                    if text.lines().any(|l| l.trim() == "READY=1") && events.send(Event::Ready).is_err() {
                        break;
                    }
                }
                () = events.closed() => break,
            }
        }
        let _ = std::fs::remove_file(&path);
    });
    Ok(())
}

/// Sends `Ready` once 127.0.0.1:`port` accepts a connection (checked every 20 ms).
pub fn probe_port(port: u16, events: mpsc::UnboundedSender<Event>) {
    tokio::spawn(async move {
        loop {
            if events.is_closed() {
                return;
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                let _ = events.send(Event::Ready);
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipc_messages_are_read() {
        assert_eq!(parse_message("\"ready\""), Some(Event::Ready));
        assert_eq!(
            parse_message(r#"{"type":"bm2:listen","port":3000}"#),
            Some(Event::Listen(3000))
        );
        assert_eq!(parse_message(r#"{"type":"other"}"#), None);
        assert_eq!(parse_message("garbage"), None);
    }
}
