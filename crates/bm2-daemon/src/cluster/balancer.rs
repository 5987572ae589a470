//! The TCP load balancer of one cluster app: the public socket is opened once and stays open
//! through reloads, scaling and crashes; each connection goes to a ready instance.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bm2_types::LoadBalancing;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::ipc::Ipc;
use crate::logs::lock;

/// How long a connection waits for an instance to become ready before it is closed.
const WAIT_FOR_BACKEND: Duration = Duration::from_secs(10);

/// One process behind the balancer.
#[derive(Debug)]
pub struct Backend {
    /// Pid of the process (several processes of one instance coexist during a reload).
    pub pid: u32,
    /// Its private port on 127.0.0.1.
    pub port: u16,
    /// Set when it should receive no new connections or requests.
    pub draining: Arc<AtomicBool>,
    /// Connections open to it now.
    pub active: Arc<AtomicU64>,
    /// Connections it has received.
    pub total: Arc<AtomicU64>,
    /// Its IPC channel, when it takes connections handed over it (Node cluster instances).
    pub ipc: Option<Arc<Ipc>>,
}

impl Backend {
    /// Connections open to it now: proxied ones, and handed ones not reported closed.
    fn open(&self) -> u64 {
        self.active.load(Ordering::Relaxed) + self.ipc.as_ref().map_or(0, |i| i.open())
    }
}

/// A connection's tie to the process serving it.
struct Link {
    port: u16,
    ipc: Option<Arc<Ipc>>,
    draining: Arc<AtomicBool>,
    active: Arc<AtomicU64>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A balancer listening on the app's public address.
#[derive(Debug)]
pub struct Balancer {
    addr: SocketAddr,
    strategy: Mutex<LoadBalancing>,
    backends: Mutex<Vec<Backend>>,
    next: AtomicUsize,
    changed: Notify,
    rt: tokio::runtime::Handle,
}

impl Balancer {
    /// Binds `addr` and starts accepting.
    /// Connections are served on `rt`.
    pub async fn bind(
        addr: SocketAddr,
        strategy: LoadBalancing,
        rt: &tokio::runtime::Handle,
    ) -> std::io::Result<Arc<Balancer>> {
        // The socket belongs to the runtime that serves it.
        let listener = rt
            .spawn(async move { TcpListener::bind(addr).await })
            .await
            .map_err(std::io::Error::other)??;
        let balancer = Arc::new(Balancer {
            addr: listener.local_addr()?,
            strategy: Mutex::new(strategy),
            backends: Mutex::default(),
            next: AtomicUsize::new(0),
            changed: Notify::new(),
            rt: rt.clone(),
        });
        rt.spawn(accept_loop(listener, Arc::downgrade(&balancer)));
        Ok(balancer)
    }

    /// The public address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Uses `strategy` for new connections.
    pub fn set_strategy(&self, strategy: LoadBalancing) {
        *lock(&self.strategy) = strategy;
    }

    /// Starts sending new connections to a ready process; with `ipc`, they are handed to it
    /// over its IPC channel once its shim says it takes them.
    pub fn add(self: &Arc<Self>, pid: u32, port: u16, ipc: Option<Arc<Ipc>>) {
        if let Some(ipc) = &ipc {
            ipc.join(Arc::downgrade(self));
        }
        let mut backends = lock(&self.backends);
        backends.retain(|b| b.pid != pid);
        backends.push(Backend {
            pid,
            port,
            draining: Arc::default(),
            active: Arc::default(),
            total: Arc::default(),
            ipc,
        });
        drop(backends);
        self.changed.notify_waiters();
    }

    /// Stops sending new connections to a process, and moves its keep-alive HTTP connections to
    /// other processes at their next request (proxied ones here; handed ones are closed by the
    /// process after their current response); false when it is not a backend.
    pub fn drain(&self, pid: u32) -> bool {
        let backends = lock(&self.backends);
        let Some(b) = backends.iter().find(|b| b.pid == pid) else {
            return false;
        };
        b.draining.store(true, Ordering::Relaxed);
        if let Some(ipc) = &b.ipc {
            ipc.drain();
        }
        true
    }

    /// Serves connections that a process was handed but never took (it died).
    pub fn redispatch(self: &Arc<Self>, conns: Vec<std::net::TcpStream>) {
        for conn in conns {
            let b = self.clone();
            self.rt.spawn(async move {
                if let Ok(client) = TcpStream::from_std(conn) {
                    serve(b, client).await;
                }
            });
        }
    }

    /// Forgets a process (it stopped or crashed).
    pub fn remove(&self, pid: u32) {
        lock(&self.backends).retain(|b| b.pid != pid);
        self.changed.notify_waiters();
    }

    /// (open, total) connections of a process, when it is a backend.
    pub fn connections(&self, pid: u32) -> Option<(u64, u64)> {
        lock(&self.backends)
            .iter()
            .find(|b| b.pid == pid)
            .map(|b| (b.open(), b.total.load(Ordering::Relaxed)))
    }

    /// Picks a process for a new connection (or request), skipping `tried` ports. The pick
    /// counts as an open connection at once, so that a drain never misses it.
    fn pick(&self, tried: &[u16]) -> Option<Link> {
        let backends = lock(&self.backends);
        let candidates: Vec<&Backend> = backends
            .iter()
            .filter(|b| !b.draining.load(Ordering::Relaxed) && !tried.contains(&b.port))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let chosen = match *lock(&self.strategy) {
            LoadBalancing::RoundRobin => {
                candidates[self.next.fetch_add(1, Ordering::Relaxed) % candidates.len()]
            }
            LoadBalancing::LeastConn => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                let n = candidates.len();
                (0..n)
                    .map(|i| candidates[(start + i) % n])
                    .min_by_key(|b| b.open())
                    .unwrap_or(candidates[0])
            }
        };
        chosen.active.fetch_add(1, Ordering::Relaxed);
        chosen.total.fetch_add(1, Ordering::Relaxed);
        Some(Link {
            port: chosen.port,
            ipc: chosen.ipc.clone(),
            draining: chosen.draining.clone(),
            active: chosen.active.clone(),
        })
    }

    /// Routes a connection to a ready process, trying the others when one refuses: `client`
    /// is handed to the process when it takes connections over IPC (and is then taken out of
    /// `client`), otherwise a connection to the process is opened for proxying. `None` when no
    /// process answers before `deadline`.
    async fn connect(
        &self,
        client: &mut Option<TcpStream>,
        deadline: tokio::time::Instant,
    ) -> Option<Route> {
        let mut tried = Vec::new();
        loop {
            let changed = self.changed.notified();
            if let Some(link) = self.pick(&tried) {
                if let Some(ipc) = link.ipc.as_ref().filter(|i| i.can_take())
                    && let Some(conn) = client.take()
                {
                    let conn = conn.into_std().ok()?;
                    match ipc.hand(conn, self.addr.port()) {
                        Ok(()) => return Some(Route::Handed),
                        Err(conn) => *client = Some(TcpStream::from_std(conn).ok()?),
                    }
                }
                if let Ok(upstream) = TcpStream::connect(("127.0.0.1", link.port)).await {
                    let _ = upstream.set_nodelay(true);
                    return Some(Route::Proxied(link, upstream));
                }
                // Refused: that process just died or is not listening yet; try another.
                tried.push(link.port);
                continue;
            }
            tried.clear();
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            // Wait for a change (an instance became ready) or retry shortly anyway.
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    }
}

/// Where a connection went.
enum Route {
    /// To a process over its IPC channel: it serves the connection itself.
    Handed,
    /// To a process's private port, through this connection.
    Proxied(Link, TcpStream),
}

async fn accept_loop(listener: TcpListener, balancer: std::sync::Weak<Balancer>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Some(b) = balancer.upgrade() else { return };
        let _ = client.set_nodelay(true);
        tokio::spawn(async move { serve(b, client).await });
    }
}

/// Buffer size of each direction of a proxied connection.
const BUF: usize = 16 * 1024;

/// Serves one client connection: waits (a bounded time) for a ready process, then copies bytes
/// both ways. When its process drains, a keep-alive HTTP/1 connection moves to another process
/// at a request boundary (the client sends a new request after the previous response), so a
/// reload fails no request; other protocols stay with their process until it stops.
async fn serve(balancer: Arc<Balancer>, client: TcpStream) {
    let mut client = Some(client);
    let deadline = tokio::time::Instant::now() + WAIT_FOR_BACKEND;
    let Some(Route::Proxied(mut link, mut upstream)) =
        balancer.connect(&mut client, deadline).await
    else {
        return;
    };
    let Some(mut client) = client else { return };
    let mut from_client = vec![0u8; BUF];
    let mut from_upstream = vec![0u8; BUF];
    // Whether the process has answered since the client last sent: the next client bytes then
    // start a new request.
    let mut answered = false;
    let mut http = None::<bool>;
    let mut client_open = true;
    let mut upstream_open = true;
    while client_open || upstream_open {
        tokio::select! {
            read = client.read(&mut from_client), if client_open => {
                let n = match read {
                    Ok(0) | Err(_) => {
                        client_open = false;
                        let _ = upstream.shutdown().await;
                        continue;
                    }
                    Ok(n) => n,
                };
                let data = &from_client[..n];
                let is_http = *http.get_or_insert_with(|| looks_like_http_request(data));
                if answered && is_http && link.draining.load(Ordering::Relaxed) && looks_like_http_request(data)
                    && let Some(Route::Proxied(new_link, new_upstream)) = balancer.connect(&mut None, tokio::time::Instant::now()).await
                {
                    link = new_link;
                    upstream = new_upstream;
                    upstream_open = true;
                }
                answered = false;
                if upstream.write_all(data).await.is_err() {
                    return;
                }
            }
            read = upstream.read(&mut from_upstream), if upstream_open => {
                let n = match read {
                    Ok(0) | Err(_) => {
                        upstream_open = false;
                        let _ = client.shutdown().await;
                        continue;
                    }
                    Ok(n) => n,
                };
                if !answered && from_upstream[..n].starts_with(b"HTTP/1.1 101") {
                    // Upgraded (WebSocket): no longer request/response.
                    http = Some(false);
                }
                answered = true;
                if client.write_all(&from_upstream[..n]).await.is_err() {
                    return;
                }
            }
        }
        if !upstream_open && client_open && !answered {
            // The process closed while a request was in flight: nothing more will come.
            return;
        }
    }
    drop(link);
}

/// True when `data` starts like an HTTP/1 request line.
fn looks_like_http_request(data: &[u8]) -> bool {
    const METHODS: [&[u8]; 9] = [
        b"GET ",
        b"POST ",
        b"PUT ",
        b"HEAD ",
        b"DELETE ",
        b"PATCH ",
        b"OPTIONS ",
        b"TRACE ",
        b"CONNECT ",
    ];
    METHODS.iter().any(|m| data.starts_with(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_requests_are_recognised() {
        assert!(looks_like_http_request(b"GET / HTTP/1.1\r\n"));
        assert!(looks_like_http_request(b"POST /x HTTP/1.1\r\n"));
        assert!(!looks_like_http_request(b"\x16\x03\x01"));
        assert!(!looks_like_http_request(b"PING\r\n"));
    }
}
