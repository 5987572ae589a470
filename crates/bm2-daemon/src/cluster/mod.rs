//! Cluster mode: one balancer per app on its public port, and the channels through which
//! instances say they are ready. Fork mode with a port: the listening socket bm2 holds for each
//! instance and hands to its processes (`handoff`, `listen_pid`), and which process tree listens
//! on which port (`listeners`).

pub mod balancer;
pub mod channels;
pub mod handoff;
pub mod ipc;
pub mod ipc_stub;
pub mod listen_pid;
pub mod listeners;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bm2_types::{Home, LoadBalancing};

pub use balancer::Balancer;
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
