//! The TCP load balancer of one cluster app: the public socket is opened once and stays open
//! through reloads, scaling and crashes; each connection goes to a ready instance.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bm2_types::{LoadBalancing, ProcId};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::logs::lock;

/// How long a connection waits for an instance to become ready before it is closed.
const WAIT_FOR_BACKEND: Duration = Duration::from_secs(10);

/// One process behind the balancer.
#[derive(Debug)]
pub struct Backend {
    /// Instance id.
    pub id: ProcId,
    /// Pid of the process (several processes of one instance coexist during a reload).
    pub pid: u32,
    /// Its private port on 127.0.0.1.
    pub port: u16,
    /// False once it should receive no new connections.
    pub accepting: bool,
    /// Connections open to it now.
    pub active: Arc<AtomicU64>,
    /// Connections it has received.
    pub total: Arc<AtomicU64>,
}

/// A balancer listening on the app's public address.
#[derive(Debug)]
pub struct Balancer {
    addr: SocketAddr,
    strategy: Mutex<LoadBalancing>,
    backends: Mutex<Vec<Backend>>,
    next: AtomicUsize,
    changed: Notify,
}

impl Balancer {
    /// Binds `addr` and starts accepting.
    pub async fn bind(addr: SocketAddr, strategy: LoadBalancing) -> std::io::Result<Arc<Balancer>> {
        let listener = TcpListener::bind(addr).await?;
        let balancer = Arc::new(Balancer {
            addr: listener.local_addr()?,
            strategy: Mutex::new(strategy),
            backends: Mutex::default(),
            next: AtomicUsize::new(0),
            changed: Notify::new(),
        });
        tokio::spawn(accept_loop(listener, Arc::downgrade(&balancer)));
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

    /// Starts sending new connections to a ready process.
    pub fn add(&self, id: ProcId, pid: u32, port: u16) {
        let mut backends = lock(&self.backends);
        backends.retain(|b| b.pid != pid);
        backends.push(Backend {
            id,
            pid,
            port,
            accepting: true,
            active: Arc::default(),
            total: Arc::default(),
        });
        drop(backends);
        self.changed.notify_waiters();
    }

    /// Stops sending new connections to a process; returns its open connection counter.
    pub fn drain(&self, pid: u32) -> Option<Arc<AtomicU64>> {
        let mut backends = lock(&self.backends);
        let b = backends.iter_mut().find(|b| b.pid == pid)?;
        b.accepting = false;
        Some(b.active.clone())
    }

    /// Forgets a process (it stopped or crashed).
    pub fn remove(&self, pid: u32) {
        lock(&self.backends).retain(|b| b.pid != pid);
        self.changed.notify_waiters();
    }

    /// (open, total) connections of a process, when it is a backend.
    pub fn connections(&self, pid: u32) -> Option<(u64, u64)> {
        lock(&self.backends).iter().find(|b| b.pid == pid).map(|b| {
            (
                b.active.load(Ordering::Relaxed),
                b.total.load(Ordering::Relaxed),
            )
        })
    }

    /// Number of processes accepting connections.
    pub fn ready_count(&self) -> usize {
        lock(&self.backends).iter().filter(|b| b.accepting).count()
    }

    /// Picks a process for a new connection, skipping `tried` ports.
    fn pick(&self, tried: &[u16]) -> Option<(u16, Arc<AtomicU64>, Arc<AtomicU64>)> {
        let backends = lock(&self.backends);
        let candidates: Vec<&Backend> = backends
            .iter()
            .filter(|b| b.accepting && !tried.contains(&b.port))
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
                    .min_by_key(|b| b.active.load(Ordering::Relaxed))
                    .unwrap_or(candidates[0])
            }
        };
        // Counted as open from the moment it is chosen, so that a drain never misses it.
        chosen.active.fetch_add(1, Ordering::Relaxed);
        Some((chosen.port, chosen.active.clone(), chosen.total.clone()))
    }
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

/// Connects the client to a ready process, trying the others when one refuses, and waiting (a
/// bounded time) when none is ready.
async fn serve(balancer: Arc<Balancer>, mut client: TcpStream) {
    let deadline = tokio::time::Instant::now() + WAIT_FOR_BACKEND;
    let mut tried = Vec::new();
    loop {
        let changed = balancer.changed.notified();
        if let Some((port, active, total)) = balancer.pick(&tried) {
            if let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", port)).await {
                let _ = upstream.set_nodelay(true);
                total.fetch_add(1, Ordering::Relaxed);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                active.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            // Refused: that process just died or is not listening yet; try another.
            active.fetch_sub(1, Ordering::Relaxed);
            tried.push(port);
            continue;
        }
        tried.clear();
        if tokio::time::Instant::now() >= deadline {
            return;
        }
        // Wait for a change (an instance became ready) or retry shortly anyway.
        tokio::select! {
            () = changed => {}
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}
