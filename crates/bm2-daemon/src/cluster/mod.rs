//! Cluster mode: one balancer per app on its public port, and the channels through which
//! instances say they are ready. Fork mode with a port: the listening socket bm2 holds for each
//! instance and hands to its processes (`handoff`, `listen_pid`), and which process tree listens
//! on which port (`listeners`).

pub mod balancer;
pub mod channels;
pub mod handoff;
pub mod ipc;
pub mod listen_pid;
pub mod listeners;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bm2_types::{Home, LoadBalancing};
use serde::{Deserialize, Serialize};

pub use balancer::{Balancer, FrozenBalancer};
pub use channels::{Event, Served};

use crate::logs::lock;

/// The Node/Bun preload that redirects a hard-coded `listen(port)` to the private port (cluster
/// mode), or `listen(PORT)` to the socket bm2 holds (fork mode).
const SHIM: &str = include_str!("shim.cjs");

/// The balancers of every cluster app.
#[derive(Debug)]
pub struct ClusterHub {
    /// Read without waiting (the lock is never held across an await).
    balancers: Mutex<HashMap<(String, u16), Arc<Balancer>>>,
    /// Held while a public socket is being bound, so that two starts of one app bind it once.
    binding: tokio::sync::Mutex<()>,
    shim: Mutex<Option<PathBuf>>,
    home: Home,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

/// The balancers of a hub, stopped, as plain values that own their sockets: what
/// [`ClusterHub::freeze`] gives and [`ClusterHub::thaw`] takes (also across the daemon's
/// re-exec). Processes are not part of it: they are added again with [`Balancer::add`].
#[derive(Debug, Serialize, Deserialize)]
pub struct FrozenHub {
    /// One entry per balancer.
    pub balancers: Vec<FrozenEntry>,
}

/// One balancer of a frozen hub, under its key.
#[derive(Debug, Serialize, Deserialize)]
pub struct FrozenEntry {
    /// The app it serves.
    pub app: String,
    /// The public port the app asked for (the key; 0 when the system picked it).
    pub port: u16,
    /// Its state.
    pub balancer: FrozenBalancer,
}

/// Threads that proxy cluster traffic, apart from the daemon's own thread.
const PROXY_THREADS: usize = 2;

impl ClusterHub {
    /// The hub of a daemon.
    pub fn new(home: Home) -> ClusterHub {
        ClusterHub {
            balancers: Mutex::default(),
            binding: tokio::sync::Mutex::default(),
            shim: Mutex::default(),
            home,
            runtime: Mutex::default(),
        }
    }

    /// The balancer of `app` on `port`, binding it on first use.
    pub async fn balancer(
        &self,
        app: &str,
        host: Option<&str>,
        port: u16,
        lb: LoadBalancing,
    ) -> std::io::Result<Arc<Balancer>> {
        let key = (app.to_string(), port);
        let existing = || lock(&self.balancers).get(&key).cloned();
        if let Some(b) = existing() {
            b.set_strategy(lb);
            return Ok(b);
        }
        let _binding = self.binding.lock().await;
        if let Some(b) = existing() {
            b.set_strategy(lb);
            return Ok(b);
        }
        let host = host.unwrap_or("0.0.0.0");
        let addr: SocketAddr = format!("{host}:{port}")
            .parse()
            .or_else(|_| format!("[{host}]:{port}").parse())
            .map_err(|_| std::io::Error::other(format!("bad listen address {host}:{port}")))?;
        let rt = self.proxy_runtime()?;
        let b = Balancer::bind(addr, lb, &rt).await?;
        lock(&self.balancers).insert(key, b.clone());
        Ok(b)
    }

    /// The runtime that proxies connections, started with the first cluster app: traffic uses
    /// its own threads, so it neither waits for nor delays supervision.
    fn proxy_runtime(&self) -> std::io::Result<tokio::runtime::Handle> {
        let mut rt = lock(&self.runtime);
        if let Some(rt) = rt.as_ref() {
            return Ok(rt.handle().clone());
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(PROXY_THREADS)
            .thread_name("bm2-proxy")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        *rt = Some(runtime);
        Ok(handle)
    }

    /// The balancers of `app`.
    pub fn of(&self, app: &str) -> Vec<Arc<Balancer>> {
        lock(&self.balancers)
            .iter()
            .filter(|((a, _), _)| a == app)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// Stops sending new connections and requests to process `pid` of `app`, then waits (up to
    /// `grace`) until its open connections have finished or moved away.
    pub async fn drain(&self, app: &str, pid: u32, grace: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        for b in self.of(app) {
            if b.drain(pid) {
                while b.connections(pid).is_some_and(|(open, _)| open > 0)
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// Stops every balancer and gives their state: each stops accepting (its listening socket
    /// stays open, so new clients wait in its backlog), each proxied connection stops where no
    /// byte of it is held here, and each client waiting for a process is given back. Takes at
    /// most [`balancer::FREEZE_DEADLINE`]: connections still busy then (writing to a client
    /// that does not read) are closed. The hub then has no balancer until [`ClusterHub::thaw`].
    pub async fn freeze(&self) -> FrozenHub {
        let _binding = self.binding.lock().await;
        let all: Vec<_> = lock(&self.balancers).drain().collect();
        let deadline = tokio::time::Instant::now() + balancer::FREEZE_DEADLINE;
        // All at once, so that they quiet down together within the one deadline.
        for (_, b) in &all {
            b.halt();
        }
        let mut balancers = Vec::with_capacity(all.len());
        for ((app, port), b) in all {
            match b.freeze(deadline).await {
                Ok(balancer) => balancers.push(FrozenEntry {
                    app,
                    port,
                    balancer,
                }),
                Err(e) => {
                    tracing::warn!(%app, port, error = %e, "a balancer could not be frozen");
                }
            }
        }
        FrozenHub { balancers }
    }

    /// Rebuilds the balancers of `frozen` (on the proxy runtime), each under its key: they
    /// accept again, their proxied connections resume where they stopped and their waiting
    /// clients wait for a process. Processes are then added again with [`Balancer::add`]. A
    /// balancer that cannot be rebuilt is logged, the others still are; the first error is
    /// returned.
    pub async fn thaw(&self, frozen: FrozenHub) -> std::io::Result<()> {
        let rt = self.proxy_runtime()?;
        let _binding = self.binding.lock().await;
        let mut first_error = None;
        for FrozenEntry {
            app,
            port,
            balancer,
        } in frozen.balancers
        {
            match Balancer::thaw(balancer, &rt) {
                Ok(b) => {
                    lock(&self.balancers).insert((app, port), b);
                }
                Err(e) => {
                    tracing::warn!(%app, port, error = %e, "a balancer could not be thawed");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Closes the public sockets of `app` (when it has no instance left).
    pub fn close(&self, app: &str) {
        lock(&self.balancers).retain(|(a, _), _| a != app);
    }

    /// Path of the preload shim, written on first use.
    pub fn shim(&self) -> std::io::Result<PathBuf> {
        let mut shim = lock(&self.shim);
        if let Some(p) = shim.as_ref() {
            return Ok(p.clone());
        }
        let path = self.home.root().join("cluster-shim.cjs");
        std::fs::write(&path, SHIM)?;
        *shim = Some(path.clone());
        Ok(path)
    }

    /// Where the `NOTIFY_SOCKET` of instance `id`'s `seq`th launch lives.
    pub fn notify_path(&self, id: u32, seq: u64) -> PathBuf {
        self.home
            .root()
            .join("notify")
            .join(format!("{id}-{seq}.sock"))
    }
}

impl Drop for ClusterHub {
    fn drop(&mut self) {
        if let Some(rt) = lock(&self.runtime).take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::handover::fd;

    /// A TCP echo server on 127.0.0.1; its port.
    pub(crate) async fn echo() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = conn.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        port
    }

    /// Sends `data` on `conn` and expects it back, in time.
    pub(crate) async fn round_trip(conn: &mut TcpStream, data: &[u8]) {
        conn.write_all(data).await.unwrap();
        let mut back = vec![0u8; data.len()];
        tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut back))
            .await
            .expect("no echo in time")
            .expect("the connection broke");
        assert_eq!(back, data);
    }

    fn hub() -> ClusterHub {
        ClusterHub::new(Home::at(std::env::temp_dir()))
    }

    async fn balancer(hub: &ClusterHub) -> Arc<Balancer> {
        hub.balancer("app", Some("127.0.0.1"), 0, LoadBalancing::RoundRobin)
            .await
            .unwrap()
    }

    /// As across the daemon's re-exec: the state is written, the originals are forgotten
    /// (their descriptors stay open), and the state is read back, taking the descriptors.
    fn across_exec(frozen: FrozenHub) -> FrozenHub {
        let (json, fds) = fd::serialize(&frozen).unwrap();
        assert!(!fds.is_empty());
        std::mem::forget(frozen);
        fd::deserialize(&json).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_proxied_connection_continues_byte_exact_in_a_new_hub() {
        let backend = echo().await;
        let old = hub();
        let b = balancer(&old).await;
        let addr = b.addr();
        b.add(1, backend, None);
        drop(b);
        let mut client = TcpStream::connect(addr).await.unwrap();
        round_trip(&mut client, b"before").await;
        // Bytes keep flowing both ways, in lockstep chunks, while the hub is frozen, carried
        // and thawed: none is lost, doubled or reordered.
        let done = Arc::new(AtomicBool::new(false));
        let traffic = tokio::spawn({
            let done = done.clone();
            async move {
                let mut i = 0u32;
                while !done.load(Ordering::Relaxed) || i < 50 {
                    let chunk: Vec<u8> = (0..8192u32).map(|j| (i * 31 + j) as u8).collect();
                    round_trip(&mut client, &chunk).await;
                    i += 1;
                }
                client
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let frozen = old.freeze().await;
        assert!(old.of("app").is_empty(), "the old hub kept its balancer");
        assert_eq!(frozen.balancers.len(), 1);
        assert_eq!(frozen.balancers[0].balancer.proxied.len(), 1);
        assert_eq!(frozen.balancers[0].balancer.addr, addr);
        drop(old);
        let frozen = across_exec(frozen);
        let new = hub();
        new.thaw(frozen).await.unwrap();
        let b = new.of("app").pop().expect("no balancer after the thaw");
        assert_eq!(b.addr(), addr);
        b.add(1, backend, None);
        // The resumed connection counts against its process.
        assert_eq!(b.connections(1), Some((1, 0)));
        done.store(true, Ordering::Relaxed);
        let mut client = tokio::time::timeout(Duration::from_secs(20), traffic)
            .await
            .expect("the traffic stalled")
            .unwrap();
        round_trip(&mut client, b"after").await;
        drop(client);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while b.connections(1) != Some((0, 0)) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{:?}",
                b.connections(1)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// An HTTP/1 server that answers every request with `name`; its port.
    async fn http(name: u8) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    while conn.read(&mut buf).await.is_ok_and(|n| n > 0) {
                        let reply = [
                            &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n"[..],
                            &[name],
                        ]
                        .concat();
                        if conn.write_all(&reply).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        port
    }

    /// Sends a request on `conn`; the name of the process that answered.
    async fn get(conn: &mut TcpStream) -> u8 {
        conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut reply = vec![0u8; 39];
        tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut reply))
            .await
            .expect("no answer in time")
            .unwrap();
        reply[38]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_resumed_keep_alive_connection_moves_when_its_process_drains() {
        let (a, b_port) = (http(b'A').await, http(b'B').await);
        let old = hub();
        let b = balancer(&old).await;
        b.add(1, a, None);
        let mut client = TcpStream::connect(b.addr()).await.unwrap();
        drop(b);
        assert_eq!(get(&mut client).await, b'A');
        let new = hub();
        new.thaw(across_exec(old.freeze().await)).await.unwrap();
        let b = new.of("app").pop().unwrap();
        b.add(1, a, None);
        b.add(2, b_port, None);
        assert_eq!(b.connections(1), Some((1, 0)));
        // Process 1 drains: the next request of the resumed connection goes to process 2.
        assert!(b.drain(1));
        assert_eq!(get(&mut client).await, b'B');
        assert_eq!(b.connections(1), Some((0, 0)));
        assert_eq!(b.connections(2), Some((1, 1)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clients_waiting_or_arriving_while_frozen_are_served_after_the_thaw() {
        let backend = echo().await;
        let hub = hub();
        let addr = balancer(&hub).await.addr();
        // No process yet: this client waits for one.
        let mut waiting = TcpStream::connect(addr).await.unwrap();
        waiting.write_all(b"waited").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let frozen = hub.freeze().await;
        assert_eq!(frozen.balancers[0].balancer.waiting.len(), 1);
        // Frozen: a new client is neither accepted nor refused; it waits in the backlog.
        let mut late = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
            .await
            .expect("connecting hung")
            .expect("refused while frozen");
        late.write_all(b"late").await.unwrap();
        // Thawed in the same hub, as when a handover fails before the exec.
        hub.thaw(across_exec(frozen)).await.unwrap();
        hub.of("app")[0].add(1, backend, None);
        for (conn, sent) in [(&mut waiting, &b"waited"[..]), (&mut late, &b"late"[..])] {
            let mut back = vec![0u8; sent.len()];
            tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut back))
                .await
                .expect("not served after the thaw")
                .unwrap();
            assert_eq!(back, sent);
            round_trip(conn, b"again").await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_stuck_writing_to_a_client_that_does_not_read_is_closed_at_the_deadline() {
        // A process that sends without end, to a client that reads nothing.
        let flood = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = flood.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = flood.accept().await {
                tokio::spawn(async move {
                    let chunk = vec![b'x'; 65536];
                    while conn.write_all(&chunk).await.is_ok() {}
                });
            }
        });
        let hub = hub();
        let b = balancer(&hub).await;
        b.add(1, port, None);
        let stuck = TcpStream::connect(b.addr()).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while b.connections(1) != Some((1, 1)) {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Let the buffers fill, so the proxy blocks writing to the client.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t = std::time::Instant::now();
        let frozen = hub.freeze().await;
        let took = t.elapsed();
        assert!(
            took >= balancer::FREEZE_DEADLINE && took < balancer::FREEZE_DEADLINE * 2,
            "{took:?}"
        );
        assert!(frozen.balancers[0].balancer.proxied.is_empty());
        drop(stuck);
    }
}
