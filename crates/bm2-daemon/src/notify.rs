//! systemd's readiness protocol (`sd_notify`): one datagram on the socket named by
//! `NOTIFY_SOCKET`, a path or an abstract name written with a leading `@`.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Where the service manager listens for state changes (the value of `NOTIFY_SOCKET`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySocket(String);

impl NotifySocket {
    /// The socket named by `value`; `None` when it is empty or not a path nor an abstract name.
    pub fn parse(value: &str) -> Option<NotifySocket> {
        (value.starts_with('/') || (value.starts_with('@') && value.len() > 1))
            .then(|| NotifySocket(value.to_string()))
    }

    fn addr(&self) -> io::Result<SocketAddr> {
        match self.0.strip_prefix('@') {
            Some(name) => abstract_addr(name.as_bytes()),
            None => SocketAddr::from_pathname(&self.0),
        }
    }

    /// Sends `state` (such as `READY=1`) in one datagram.
    pub fn send(&self, state: &str) -> io::Result<()> {
        let socket = UnixDatagram::unbound()?;
        let sent = socket.send_to_addr(state.as_bytes(), &self.addr()?)?;
        if sent == state.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the notification was truncated",
            ))
        }
    }
}

impl std::fmt::Display for NotifySocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_addr(name: &[u8]) -> io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_addr(_: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract socket names exist on Linux only",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_and_abstract_names_only() {
        assert!(NotifySocket::parse("/run/systemd/notify").is_some());
        assert!(NotifySocket::parse("@/org/freedesktop/systemd1/notify/1").is_some());
        assert!(NotifySocket::parse("").is_none());
        assert!(NotifySocket::parse("@").is_none());
        assert!(NotifySocket::parse("relative").is_none());
    }

    #[test]
    fn sends_to_a_path_and_to_an_abstract_name() {
        let dir = std::env::temp_dir().join(format!("bm2-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        NotifySocket::parse(path.to_str().unwrap())
            .unwrap()
            .send("READY=1")
            .unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        std::fs::remove_dir_all(&dir).unwrap();

        let name = format!("bm2-notify-test-{}", std::process::id());
        let listener = UnixDatagram::bind_addr(&abstract_addr(name.as_bytes()).unwrap()).unwrap();
        NotifySocket::parse(&format!("@{name}"))
            .unwrap()
            .send("READY=1")
            .unwrap();
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
