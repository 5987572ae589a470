//! Starting one process of an instance: its environment, command line, output pipes and, for
//! cluster apps and `wait_ready`, the channels through which it says it is ready.

use std::time::Instant;

use bm2_types::{AppSpec, ExecMode};
use tokio::process::Child;
use tokio::sync::mpsc;

use super::spawn::{self, Launch, SpawnError};
use crate::Shared;
use crate::cluster::Event;
use crate::cluster::channels;
use crate::cluster::ipc::{self, Ipc};
use crate::envs::{self, Vars};
use crate::logs::{self, Stream};
use crate::procfs;
use crate::registry::Instance;

/// A running process of an instance.
pub struct Running {
    /// The child.
    pub child: Child,
    /// Its pid.
    pub pid: u32,
    /// When it started.
    pub started: Instant,
    /// Its private port (cluster mode).
    pub private_port: Option<u16>,
    /// The public port it serves: the app's `port`, or the one its `listen()` asked for.
    pub public_port: Option<u16>,
    /// Whether it is ready for traffic.
    pub ready: bool,
    /// Whether the balancer sends it connections.
    pub registered: bool,
    /// What it says (ready, listening), while it is not ready yet.
    pub events: Option<mpsc::UnboundedReceiver<Event>>,
    /// The IPC channel, when it has one.
    pub ipc: Option<std::sync::Arc<Ipc>>,
}

impl Running {
    /// Takes in what the process said: it is ready, or listens for a public port.
    pub fn note(&mut self, event: Event) {
        if let Event::Listen(port) = event {
            self.public_port = Some(port);
        }
        self.ready = true;
    }
}

/// A process just started, with what it was started with.
pub struct Started {
    /// The process.
    pub running: Running,
    /// Its environment.
    pub env: Vars,
    /// The env store variables in it.
    pub stored: Vars,
    /// Its command line.
    pub launch: Launch,
    /// Its start time in clock ticks after boot.
    pub start_time: Option<u64>,
}

/// Starts a process for `inst` with `spec` and base environment `base`; `seq` numbers launches.
pub fn start(
    shared: &Shared,
    inst: &Instance,
    spec: &AppSpec,
    base: &Vars,
    seq: u64,
) -> Result<Started, SpawnError> {
    let stored = shared.env_store.get(&inst.app);
    let mut env = envs::instance_env(base, spec, shared.home.root(), inst.id, inst.index, &stored);
    let cluster = spec.exec_mode == ExecMode::Cluster;
    let private_port = if cluster {
        let port = channels::free_port().map_err(|source| SpawnError::Os {
            program: "a private port".into(),
            source,
        })?;
        env.insert("PORT".into(), port.to_string());
        env.insert("BM2_CLUSTER".into(), "true".into());
        env.insert("BM2_WORKER_ID".into(), inst.index.to_string());
        env.insert("BM2_INSTANCES".into(), inst.count.to_string());
        Some(port)
    } else {
        None
    };
    let mut launch = spawn::plan(spec, &env, &shared.table)?;
    let runtime = launch
        .interpreter
        .as_deref()
        .map(|i| i.rsplit('/').next().unwrap_or(i).to_string());
    let js = matches!(runtime.as_deref(), Some("node" | "bun"));
    if cluster && js {
        let shim = shared.cluster.shim().map_err(|source| SpawnError::Os {
            program: "the cluster shim".into(),
            source,
        })?;
        let flag = if runtime.as_deref() == Some("bun") {
            "--preload"
        } else {
            "--require"
        };
        launch
            .args
            .splice(0..0, [flag.to_string(), shim.display().to_string()]);
    }
    let mut cmd = spawn::command(&launch, spec, &env)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let os_err = |program: &str| {
        let program = program.to_string();
        move |source| SpawnError::Os { program, source }
    };
    let ipc = if js && (spec.wait_ready || spec.shutdown_with_message || cluster) {
        Some(ipc::attach(&mut cmd, tx.clone()).map_err(os_err("the IPC channel"))?)
    } else {
        None
    };
    if spec.wait_ready {
        let path = shared.cluster.notify_path(inst.id, seq);
        // A socket path too long for the system (a deep BM2_HOME) leaves only the IPC channel.
        if let Err(e) = channels::notify_socket(&mut cmd, path.clone(), tx.clone()) {
            tracing::warn!(id = inst.id, path = %path.display(), error = %e, "no NOTIFY_SOCKET for this process");
        }
    }
    let mut child = shared
        .table
        .spawn(&mut cmd)
        .map_err(|source| SpawnError::Os {
            program: launch.program.display().to_string(),
            source,
        })?;
    drop(cmd);
    let pid = child.id().unwrap_or_default();
    if let Some(fd) = child.stdout.take().and_then(|p| p.into_owned_fd().ok()) {
        logs::attach(inst.logs.clone(), Stream::Out, fd);
    }
    if let Some(fd) = child.stderr.take().and_then(|p| p.into_owned_fd().ok()) {
        logs::attach(inst.logs.clone(), Stream::Err, fd);
    }
    if let Err(e) = std::fs::write(&inst.pid_file, pid.to_string()) {
        tracing::warn!(path = %inst.pid_file.display(), error = %e, "cannot write pid file");
    }
    let needs_signal = cluster || spec.wait_ready;
    if let (Some(port), false) = (private_port, spec.wait_ready) {
        channels::probe_port(port, tx.clone());
    }
    drop(tx);
    Ok(Started {
        start_time: procfs::read_stat(pid).map(|s| s.start_time),
        running: Running {
            child,
            pid,
            started: Instant::now(),
            private_port,
            public_port: spec.port.filter(|_| cluster),
            ready: !needs_signal,
            registered: false,
            events: needs_signal.then_some(rx),
            ipc,
        },
        env,
        stored,
        launch,
    })
}
