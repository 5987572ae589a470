//! The TCP load balancer of one cluster app: the public socket is opened once and stays open
//! through reloads, scaling and crashes; each connection goes to a ready instance.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bm2_types::LoadBalancing;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::ipc::{Ipc, stopped};
use crate::handover::Fd;
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

/// The counters a backend shares with its connections.
#[derive(Debug, Default, Clone)]
struct Counters {
    draining: Arc<AtomicBool>,
    active: Arc<AtomicU64>,
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
    /// Set once, by a freeze: accepting stops and every connection parks.
    stop: watch::Sender<bool>,
    /// The accepting task, which gives back the listening socket when stopped.
    accept: Mutex<Option<JoinHandle<Option<std::net::TcpListener>>>>,
    /// The connections' tasks: each gives back its state when parked by a freeze.
    conns: Mutex<JoinSet<Option<Parked>>>,
    /// Counters of the connections resumed by a thaw, by private port: the backend added on
    /// that port takes them, so those connections count as its own.
    resumed: Mutex<HashMap<u16, Counters>>,
    /// Connections parked by a freeze whose tasks were joined when another connection started
    /// (a client accepted as the freeze began): the freeze takes them with the others.
    parked: Mutex<Vec<Parked>>,
}

/// How long a freeze waits for every connection to reach a point where the daemon holds none
/// of its bytes; past it, the connections still busy (writing to a client that does not read)
/// are closed.
pub const FREEZE_DEADLINE: Duration = Duration::from_secs(2);

/// A proxied connection stopped where no byte of it is held by the daemon.
#[derive(Debug, Serialize, Deserialize)]
pub struct FrozenConn {
    /// The client's socket.
    pub client: Fd,
    /// The socket to the process.
    pub upstream: Fd,
    /// The process's private port.
    pub port: u16,
    /// The process has answered since the client last sent.
    pub answered: bool,
    /// Whether the connection speaks HTTP/1 (unknown before the first bytes).
    pub http: Option<bool>,
    /// The client may still send.
    pub client_open: bool,
    /// The process may still send.
    pub upstream_open: bool,
}

/// A balancer stopped: what [`Balancer::freeze`] gives and [`Balancer::thaw`] takes.
#[derive(Debug, Serialize, Deserialize)]
pub struct FrozenBalancer {
    /// The public address it listens on.
    pub addr: SocketAddr,
    /// How it spreads connections.
    pub strategy: LoadBalancing,
    /// The listening socket (kept open: new clients wait in its backlog).
    pub listener: Fd,
    /// Connections proxied to a process.
    pub proxied: Vec<FrozenConn>,
    /// Clients waiting for a process.
    pub waiting: Vec<Fd>,
}

/// What a connection's task gives back when parked.
#[derive(Debug)]
enum Parked {
    Waiting(std::net::TcpStream),
    Proxied(FrozenConn),
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
        Balancer::start(listener, strategy, rt)
    }

    /// Starts accepting on `listener` (which belongs to `rt`).
    fn start(
        listener: TcpListener,
        strategy: LoadBalancing,
        rt: &tokio::runtime::Handle,
    ) -> std::io::Result<Arc<Balancer>> {
        let balancer = Arc::new(Balancer {
            addr: listener.local_addr()?,
            strategy: Mutex::new(strategy),
            backends: Mutex::default(),
            next: AtomicUsize::new(0),
            changed: Notify::new(),
            rt: rt.clone(),
            stop: watch::Sender::new(false),
            accept: Mutex::default(),
            conns: Mutex::new(JoinSet::new()),
            resumed: Mutex::default(),
            parked: Mutex::default(),
        });
        let stop = balancer.stop.subscribe();
        *lock(&balancer.accept) =
            Some(rt.spawn(accept_loop(listener, Arc::downgrade(&balancer), stop)));
        Ok(balancer)
    }

    /// Stops accepting (new clients wait in the listening socket's backlog) and tells every
    /// connection to park.
    pub fn halt(&self) {
        self.stop.send_replace(true);
    }

    /// Stops this balancer and gives its state: the listening socket (still open), the
    /// proxied connections, each stopped where no byte of it is held here (a write under way
    /// finishes first), and the clients still waiting for a process. Connections that are not
    /// parked by `deadline` are closed (and logged). Errors when already frozen.
    pub async fn freeze(&self, deadline: tokio::time::Instant) -> std::io::Result<FrozenBalancer> {
        self.halt();
        let accept = lock(&self.accept)
            .take()
            .ok_or_else(|| std::io::Error::other("the balancer is already frozen"))?;
        // Nothing is accepted after this: every connection is in `conns`.
        let listener = accept
            .await
            .map_err(std::io::Error::other)?
            .ok_or_else(|| std::io::Error::other("the listening socket is gone"))?;
        let mut conns = std::mem::take(&mut *lock(&self.conns));
        let mut parked = Vec::new();
        let mut late = false;
        loop {
            let next = if late {
                conns.join_next().await
            } else if let Ok(next) = tokio::time::timeout_at(deadline, conns.join_next()).await {
                next
            } else {
                late = true;
                tracing::warn!(
                    addr = %self.addr,
                    connections = conns.len(),
                    "closing connections that did not stop in time for a handover"
                );
                conns.abort_all();
                continue;
            };
            match next {
                None => break,
                Some(Ok(Some(p))) => parked.push(p),
                Some(other) => tracing::debug!(?other, "a connection ended while freezing"),
            }
        }
        parked.append(&mut lock(&self.parked));
        let mut proxied = Vec::new();
        let mut waiting = Vec::new();
        for p in parked {
            match p {
                Parked::Waiting(client) => waiting.push(Fd::new(client)),
                Parked::Proxied(conn) => proxied.push(conn),
            }
        }
        tracing::debug!(
            proxied = proxied.len(),
            waiting = waiting.len(),
            "balancer frozen"
        );
        Ok(FrozenBalancer {
            addr: self.addr,
            strategy: *lock(&self.strategy),
            listener: Fd::new(listener),
            proxied,
            waiting,
        })
    }

    /// A balancer from a frozen state, served on `rt`: it accepts again, the proxied
    /// connections resume where they stopped, and the waiting clients wait (up to
    /// `WAIT_FOR_BACKEND`) for a process. Its processes are added again with [`Balancer::add`];
    /// the one added on a resumed connection's private port counts it as open.
    pub fn thaw(
        frozen: FrozenBalancer,
        rt: &tokio::runtime::Handle,
    ) -> std::io::Result<Arc<Balancer>> {
        let listener = std::net::TcpListener::from(frozen.listener.into_inner());
        listener.set_nonblocking(true)?;
        let listener = {
            let _rt = rt.enter();
            TcpListener::from_std(listener)?
        };
        let balancer = Balancer::start(listener, frozen.strategy, rt)?;
        for conn in frozen.proxied {
            balancer.resume(conn);
        }
        balancer.redispatch(
            frozen
                .waiting
                .into_iter()
                .map(|fd| std::net::TcpStream::from(fd.into_inner()))
                .collect(),
        );
        Ok(balancer)
    }

    /// Resumes a proxied connection where it stopped.
    fn resume(self: &Arc<Self>, conn: FrozenConn) {
        let counters = lock(&self.resumed).entry(conn.port).or_default().clone();
        counters.active.fetch_add(1, Ordering::Relaxed);
        let link = Link {
            port: conn.port,
            ipc: None,
            draining: counters.draining,
            active: counters.active,
        };
        let b = self.clone();
        self.spawn_conn(async move {
            let open = |fd: Fd| {
                let s = std::net::TcpStream::from(fd.into_inner());
                s.set_nonblocking(true)?;
                TcpStream::from_std(s)
            };
            let (client, upstream) = match (open(conn.client), open(conn.upstream)) {
                (Ok(client), Ok(upstream)) => (client, upstream),
                (client, upstream) => {
                    tracing::warn!(?client, ?upstream, "cannot resume a proxied connection");
                    return None;
                }
            };
            tracing::debug!(
                port = conn.port,
                answered = conn.answered,
                client_open = conn.client_open,
                upstream_open = conn.upstream_open,
                "resumed a proxied connection"
            );
            proxy(
                b,
                Conn {
                    client,
                    upstream,
                    link,
                    answered: conn.answered,
                    http: conn.http,
                    client_open: conn.client_open,
                    upstream_open: conn.upstream_open,
                },
            )
            .await
        });
    }

    /// Runs a connection's task on the proxy runtime, where a freeze finds it.
    fn spawn_conn(&self, task: impl std::future::Future<Output = Option<Parked>> + Send + 'static) {
        let mut conns = lock(&self.conns);
        // Forget the finished ones, but not what a freeze parked.
        while let Some(done) = conns.try_join_next() {
            if let Ok(Some(parked)) = done {
                lock(&self.parked).push(parked);
            }
        }
        conns.spawn_on(task, &self.rt);
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
        // After a thaw, the connections resumed to this port are its own.
        let counters = lock(&self.resumed).remove(&port).unwrap_or_default();
        let mut backends = lock(&self.backends);
        backends.retain(|b| b.pid != pid);
        backends.push(Backend {
            pid,
            port,
            draining: counters.draining,
            active: counters.active,
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
            self.spawn_conn(async move {
                conn.set_nonblocking(true).ok()?;
                let client = TcpStream::from_std(conn).ok()?;
                serve(b, client).await
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
        let mut stop = self.stop.subscribe();
        loop {
            if *stop.borrow() {
                return Some(Route::Frozen);
            }
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
                () = stopped(&mut stop) => {}
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
    /// Nowhere: the balancer is frozen (the client is left where it was).
    Frozen,
}

/// Accepts connections until the balancer is gone, or until `stop` (then gives back the
/// listening socket).
async fn accept_loop(
    listener: TcpListener,
    balancer: std::sync::Weak<Balancer>,
    mut stop: watch::Receiver<bool>,
) -> Option<std::net::TcpListener> {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut stop) => return listener.into_std().ok(),
        };
        let Ok((client, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let b = balancer.upgrade()?;
        let _ = client.set_nodelay(true);
        b.spawn_conn(serve(b.clone(), client));
    }
}

/// Buffer size of each direction of a proxied connection.
const BUF: usize = 16 * 1024;

/// Serves one client connection: waits (a bounded time) for a ready process, then copies bytes
/// both ways. Gives back what a freeze parked.
async fn serve(balancer: Arc<Balancer>, client: TcpStream) -> Option<Parked> {
    let mut client = Some(client);
    let deadline = tokio::time::Instant::now() + WAIT_FOR_BACKEND;
    match balancer.connect(&mut client, deadline).await? {
        Route::Handed => None,
        Route::Frozen => Some(Parked::Waiting(client?.into_std().ok()?)),
        Route::Proxied(link, upstream) => {
            let conn = Conn {
                client: client?,
                upstream,
                link,
                answered: false,
                http: None,
                client_open: true,
                upstream_open: true,
            };
            proxy(balancer, conn).await
        }
    }
}

/// A proxied connection.
struct Conn {
    client: TcpStream,
    upstream: TcpStream,
    link: Link,
    /// Whether the process has answered since the client last sent: the next client bytes
    /// then start a new request.
    answered: bool,
    http: Option<bool>,
    client_open: bool,
    upstream_open: bool,
}

impl Conn {
    /// The connection as plain values (it is stopped where no byte of it is held here).
    fn park(self) -> Option<Parked> {
        Some(Parked::Proxied(FrozenConn {
            client: Fd::new(self.client.into_std().ok()?),
            upstream: Fd::new(self.upstream.into_std().ok()?),
            port: self.link.port,
            answered: self.answered,
            http: self.http,
            client_open: self.client_open,
            upstream_open: self.upstream_open,
        }))
    }
}

/// Copies bytes both ways until both sides have closed, or until a freeze (then parks the
/// connection when both directions wait to read). When its process drains, a keep-alive
/// HTTP/1 connection moves to another process at a request boundary (the client sends a new
/// request after the previous response), so a reload fails no request; other protocols stay
/// with their process until it stops.
async fn proxy(balancer: Arc<Balancer>, mut c: Conn) -> Option<Parked> {
    let mut stop = balancer.stop.subscribe();
    let mut from_client = vec![0u8; BUF];
    let mut from_upstream = vec![0u8; BUF];
    while c.client_open || c.upstream_open {
        tokio::select! {
            read = c.client.read(&mut from_client), if c.client_open => {
                let n = match read {
                    Ok(0) | Err(_) => {
                        tracing::debug!(port = c.link.port, ?read, answered = c.answered, "proxied client closed");
                        c.client_open = false;
                        let _ = c.upstream.shutdown().await;
                        continue;
                    }
                    Ok(n) => n,
                };
                let data = &from_client[..n];
                let is_http = *c.http.get_or_insert_with(|| looks_like_http_request(data));
                if c.answered && is_http && c.link.draining.load(Ordering::Relaxed) && looks_like_http_request(data)
                    && let Some(Route::Proxied(new_link, new_upstream)) = balancer.connect(&mut None, tokio::time::Instant::now()).await
                {
                    c.link = new_link;
                    c.upstream = new_upstream;
                    c.upstream_open = true;
                }
                c.answered = false;
                if c.upstream.write_all(data).await.is_err() {
                    return None;
                }
            }
            read = c.upstream.read(&mut from_upstream), if c.upstream_open => {
                let n = match read {
                    Ok(0) | Err(_) => {
                        tracing::debug!(port = c.link.port, ?read, answered = c.answered, "proxied process closed");
                        c.upstream_open = false;
                        let _ = c.client.shutdown().await;
                        continue;
                    }
                    Ok(n) => n,
                };
                if !c.answered && from_upstream[..n].starts_with(b"HTTP/1.1 101") {
                    // Upgraded (WebSocket): no longer request/response.
                    c.http = Some(false);
                }
                c.answered = true;
                if c.client.write_all(&from_upstream[..n]).await.is_err() {
                    return None;
                }
            }
            () = stopped(&mut stop) => return c.park(),
        }
        if !c.upstream_open && c.client_open && !c.answered {
            // The process closed while a request was in flight: nothing more will come.
            return None;
        }
    }
    None
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_parked_before_a_last_accept_is_still_carried() {
        use crate::cluster::tests::{echo, round_trip};
        let backend = echo().await;
        let hub = crate::cluster::ClusterHub::new(bm2_types::Home::at(std::env::temp_dir()));
        let b = hub
            .balancer("app", Some("127.0.0.1"), 0, LoadBalancing::RoundRobin)
            .await
            .unwrap();
        b.add(1, backend, None);
        let mut client = TcpStream::connect(b.addr()).await.unwrap();
        round_trip(&mut client, b"before").await;
        // The freeze begins; clients accepted just then start their tasks after the proxied
        // connection has parked (its task is finished, not yet joined by the freeze).
        b.halt();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while lock(&b.parked).is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the parked connection was dropped"
            );
            b.spawn_conn(async { None });
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(b);
        let frozen = hub.freeze().await;
        assert_eq!(
            frozen.balancers[0].balancer.proxied.len(),
            1,
            "the parked connection is carried"
        );
    }

    #[test]
    fn http_requests_are_recognised() {
        assert!(looks_like_http_request(b"GET / HTTP/1.1\r\n"));
        assert!(looks_like_http_request(b"POST /x HTTP/1.1\r\n"));
        assert!(!looks_like_http_request(b"\x16\x03\x01"));
        assert!(!looks_like_http_request(b"PING\r\n"));
    }
}
