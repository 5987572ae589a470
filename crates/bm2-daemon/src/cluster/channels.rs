//! How an instance tells bm2 it is ready: the Node IPC channel (`process.send('ready')`, as
//! under PM2), systemd's `NOTIFY_SOCKET` (`READY=1`, any language), or its port accepting
//! connections (the IPC channel itself is in `ipc.rs`).

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::UnixDatagram;
use tokio::sync::mpsc;

/// What an instance said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// It is ready for traffic.
    Ready,
    /// It listens (through bm2's shim) on a private port in place of a public one.
    Listen(Served),
    /// It listens (through bm2's shim) on the socket bm2 holds for its port (fork mode).
    Listening,
    /// It sent a message for the event bus (`process.send({type: 'process:msg', data})`).
    Message {
        /// Its `data`.
        data: serde_json::Value,
        /// Its `topic`.
        topic: Option<String>,
    },
}

/// A public port a cluster process serves, and where it listens for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Served {
    /// The port the app asked for, which the balancer serves.
    pub public: u16,
    /// The port of 127.0.0.1 it listens on.
    pub private: u16,
    /// The address the app asked for; none for all interfaces.
    pub host: Option<IpAddr>,
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
