//! The bm2 engine: supervises app processes and serves the HTTP API on a Unix socket.
//!
//! Use [`server::run`] to be the daemon, or [`ProcessManager`] to embed the engine.

pub mod api;
pub mod cluster;
pub mod config;
pub mod envs;
pub mod events;
pub mod handover;
pub mod leftovers;
pub mod logs;
pub mod manager;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod persist;
pub mod procfs;
pub mod registry;
pub mod server;
pub mod supervisor;
mod time;
pub mod triggers;
pub mod web;

pub use bm2_types::Home;
pub use manager::{Action, ProcessManager};

/// What every actor and background task of one daemon shares.
#[derive(Debug)]
pub struct Shared {
    /// The home directory.
    pub home: Home,
    /// Children owned (and reaped) by tokio.
    pub table: supervisor::spawn::ChildTable,
    /// The state file writer.
    pub persist: persist::Persister,
    /// Latest CPU and memory samples.
    pub metrics: metrics::Metrics,
    /// Open log files and the feed of live lines.
    pub logs: std::sync::Arc<logs::LogHub>,
    /// Variables set with `bm2 env set`.
    pub env_store: envs::EnvStore,
    /// Lifecycle events and app messages, for `/v1/events`.
    pub bus: events::Bus,
    /// Balancers of cluster apps.
    pub cluster: cluster::ClusterHub,
    /// Counts changes to the process table (a state published, an instance added or removed),
    /// for readers that follow it (the dashboard's event stream).
    pub changes: tokio::sync::watch::Sender<u64>,
    /// Messages for the user, handed out once with the next response on the Unix socket.
    notices: std::sync::Mutex<Vec<String>>,
}

impl Shared {
    /// Shared parts for a daemon in `home`, whose apps log with `log_defaults`.
    pub fn new(home: Home, log_defaults: logs::LogDefaults) -> Shared {
        Shared {
            env_store: envs::EnvStore::open(home.env_store_file()),
            bus: events::Bus::default(),
            cluster: cluster::ClusterHub::new(home.clone()),
            home,
            table: supervisor::spawn::ChildTable::default(),
            persist: persist::Persister::default(),
            metrics: metrics::Metrics::default(),
            logs: std::sync::Arc::new(logs::LogHub::new(log_defaults)),
            changes: tokio::sync::watch::Sender::new(0),
            notices: std::sync::Mutex::default(),
        }
    }

    /// Records that the process table changed.
    pub fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Keeps a message for the user, for the next command.
    pub fn notice(&self, message: String) {
        self.notices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(message);
    }

    /// The messages kept for the user, once.
    pub fn take_notices(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .notices
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}
