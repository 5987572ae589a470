//! The listening socket bm2 holds for a fork-mode instance with a port, and how each process of
//! the instance gets it.
//!
//! The daemon binds the instance's port once and keeps the socket across restarts and reloads;
//! every process receives it as file descriptor 3 (systemd's `SD_LISTEN_FDS_START`). Old and new
//! process then share one socket during a reload, so no connection is refused between them:
//! connections wait in its queue for whichever process accepts next.
//!
//! Two kinds of process take it:
//! - Node, through bm2's preloaded shim, which turns `listen(PORT)` into `listen({ fd: 3 })`.
//!   The daemon only binds this socket (with `SO_REUSEADDR`) and leaves the `listen()` to the
//!   shim: until a process adopts it, the port is not listening, and an app that binds the port
//!   some other way (with `SO_REUSEADDR`, as Node, Go, Rust's std, Python's `http.server` and
//!   asyncio do) still can. Whether a process adopted it is then visible on the socket itself
//!   (`SO_ACCEPTCONN`).
//! - Any program, by systemd socket activation (`socket_activation`): the socket is listening
//!   before the process starts, with `LISTEN_FDS=1`, `LISTEN_FDNAMES` and `LISTEN_PID` (the
//!   process's own pid, written in the child between fork and exec).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket::{
    self, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, setsockopt, sockopt,
};

/// Descriptor of the socket in the child (`SD_LISTEN_FDS_START`).
pub const CHILD_FD: i32 = 3;

/// How processes take the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// Node's `listen(PORT)`, redirected by the shim; bound but not listening until adopted.
    NodeShim,
    /// systemd socket activation; listening from the start.
    Activation,
}

/// The socket an instance's processes should get: where, and how they take it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Wanted {
    /// `listen_host`, or none for all interfaces (IPv6 and IPv4).
    pub host: Option<IpAddr>,
    /// The instance's port.
    pub port: u16,
    /// How it is taken.
    pub kind: Kind,
}

/// A listening socket bm2 holds for an instance.
#[derive(Debug)]
pub struct HeldSocket {
    fd: OwnedFd,
    wanted: Wanted,
    inode: u64,
}

impl HeldSocket {
    /// Binds the socket `wanted` describes (and listens on it for socket activation). The
    /// descriptor is close-on-exec in the daemon: only the processes it is mapped into get it.
    pub fn bind(wanted: &Wanted) -> io::Result<HeldSocket> {
        let fd = match wanted.host {
            Some(ip) => bind_to(SocketAddr::new(ip, wanted.port))?,
            // All interfaces, as Node's `listen(port)` and systemd's `ListenStream=port` do:
            // IPv6 and IPv4 on one socket, or IPv4 alone where the host has no IPv6.
            None => match bind_to(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                wanted.port,
            )) {
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
                    ) =>
                {
                    bind_to(SocketAddr::new(
                        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                        wanted.port,
                    ))?
                }
                other => other?,
            },
        };
        if wanted.kind == Kind::Activation {
            socket::listen(&fd, Backlog::MAXCONN).map_err(io::Error::from)?;
        }
        HeldSocket::from_fd(wanted.clone(), fd)
    }

    /// The socket `fd`, bound as `wanted` says (carried over by a handover).
    pub fn from_fd(wanted: Wanted, fd: OwnedFd) -> io::Result<HeldSocket> {
        let inode = nix::sys::stat::fstat(fd.as_fd())
            .map_err(io::Error::from)?
            .st_ino;
        Ok(HeldSocket { fd, wanted, inode })
    }

    /// What it was bound for, and the socket.
    pub fn into_parts(self) -> (Wanted, OwnedFd) {
        (self.wanted, self.fd)
    }

    /// What it was bound for.
    pub fn wanted(&self) -> &Wanted {
        &self.wanted
    }

    /// Its inode, as `/proc/<pid>/fd` links and `/proc/net/tcp` show it.
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// True once the socket listens: bound for socket activation, or adopted by a process.
    pub fn is_listening(&self) -> bool {
        socket::getsockopt(&self.fd, sockopt::AcceptConn).unwrap_or(false)
    }

    /// A descriptor of the socket to map into a child.
    pub fn dup(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    /// The variables that tell a process about the socket: systemd's for socket activation
    /// (`LISTEN_PID` is added in the child, see `listen_pid.rs`), the shim's for Node.
    pub fn env(&self, name: &str) -> Vec<(&'static str, String)> {
        let mut vars = vec![
            ("BM2_LISTEN_FD", CHILD_FD.to_string()),
            ("BM2_LISTEN_PORT", self.wanted.port.to_string()),
            (
                "BM2_LISTEN_HOST",
                self.wanted.host.map(|h| h.to_string()).unwrap_or_default(),
            ),
        ];
        if self.wanted.kind == Kind::Activation {
            vars.push(("LISTEN_FDS", "1".to_string()));
            vars.push(("LISTEN_FDNAMES", fd_name(name)));
        }
        vars
    }
}

fn bind_to(addr: SocketAddr) -> io::Result<OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .map_err(io::Error::from)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(io::Error::from)?;
    if addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        setsockopt(&fd, sockopt::Ipv6V6Only, &false).map_err(io::Error::from)?;
    }
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(io::Error::from)?;
    Ok(fd)
}

/// A `LISTEN_FDNAMES` entry: the app's name with what systemd does not allow (`:`, controls,
/// more than 255 bytes) replaced.
pub fn fd_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| if c == ':' || c.is_control() { '_' } else { c })
        .collect();
    let mut end = clean.len().min(255);
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    if clean.is_empty() {
        "bm2".to_string()
    } else {
        clean[..end].to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_names_follow_systemd_rules() {
        assert_eq!(fd_name("api"), "api");
        assert_eq!(fd_name("a:b\n"), "a_b_");
        assert_eq!(fd_name(""), "bm2");
        assert_eq!(fd_name(&"é".repeat(200)).len(), 254);
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn a_shim_socket_is_bound_but_leaves_the_port_to_apps_until_adopted() {
        let port = free_port();
        let held = HeldSocket::bind(&Wanted {
            host: None,
            port,
            kind: Kind::NodeShim,
        })
        .unwrap();
        assert!(!held.is_listening());
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "nothing listens yet"
        );
        // An app binding the port itself with SO_REUSEADDR (as std does) still can.
        let own = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        drop(own);
        // Adopted: listen() on the same socket, as the shim does in the child.
        socket::listen(&held.dup().unwrap(), Backlog::MAXCONN).unwrap();
        assert!(held.is_listening());
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_err());
    }

    #[test]
    fn an_activation_socket_listens_at_once_and_names_itself() {
        let port = free_port();
        let held = HeldSocket::bind(&Wanted {
            host: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            port,
            kind: Kind::Activation,
        })
        .unwrap();
        assert!(held.is_listening());
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        let env = held.env("my:app");
        assert!(env.contains(&("LISTEN_FDS", "1".into())));
        assert!(env.contains(&("LISTEN_FDNAMES", "my_app".into())));
        assert!(env.contains(&("BM2_LISTEN_HOST", "127.0.0.1".into())));
        let again = HeldSocket::bind(held.wanted());
        assert!(again.is_err(), "the port is taken while it is held");
    }
}
