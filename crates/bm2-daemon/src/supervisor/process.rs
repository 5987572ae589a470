//! Starting one process of an instance: its environment, command line, output pipes, the
//! listening socket bm2 holds for a fork-mode app's port and, for cluster apps, `wait_ready` and
//! reloads, the channels through which it says it is ready.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use bm2_types::{AppSpec, ExecMode};
use command_fds::{CommandFdExt, FdMapping};
use tokio::sync::mpsc;

use super::spawn::{self, Launch, SpawnError};
use crate::Shared;
use crate::cluster::channels;
use crate::cluster::handoff::{self, HeldSocket};
use crate::cluster::ipc::{self, Ipc};
use crate::cluster::{Event, Served};
use crate::envs::{self, Vars};
use crate::logs::Stream;
use crate::procfs;
use crate::registry::Instance;

/// A running process of an instance.
pub struct Running {
    /// The child.
    pub child: super::child::Child,
    /// Its pid.
    pub pid: u32,
    /// When it started.
    pub started: Instant,
    /// The private port bm2 gave it in `PORT` (cluster mode, programs other than Node and Bun).
    pub private_port: Option<u16>,
    /// The public ports it serves and where it listens for them (cluster mode): the app's
    /// `port` (or `PORT`) for a program given a private port, the ports its `listen()` calls
    /// asked for in Node and Bun.
    pub served: Vec<Served>,
    /// Whether it is ready for traffic.
    pub ready: bool,
    /// Whether only its own word (`wait_ready`) makes it ready, not listening; it is
    /// `launching` until then.
    pub wait_ready: bool,
    /// Whether it is expected to be ready within `listen_timeout` (it says so, or bm2 probes
    /// the private port it gave it); a Node or Bun cluster process that never listens is a
    /// worker, not late.
    pub expected_ready: bool,
    /// Whether listening on the socket bm2 holds makes it ready (a fork-mode Node process that
    /// replaces one serving that socket).
    pub ready_when_listening: bool,
    /// How long it must keep running once ready before it replaces another (a program that
    /// takes its socket by socket activation and does not say when it is ready).
    pub settle: Duration,
    /// The public ports whose balancer sends it connections.
    pub registered: Vec<u16>,
    /// What it says (ready, listening), while it is not ready yet.
    pub events: Option<mpsc::UnboundedReceiver<Event>>,
    /// The IPC channel, when it has one.
    pub ipc: Option<std::sync::Arc<Ipc>>,
    /// Keeps the write end of its stdin in the instance's slot while it runs (for `send`).
    pub stdin: Option<super::stdin::StdinGuard>,
}

impl super::phase::Pid for Running {
    fn pid(&self) -> u32 {
        self.pid
    }
}

impl Running {
    /// The private port shown for it: the one bm2 gave it, else the one its first server got.
    pub fn shown_private_port(&self) -> Option<u16> {
        self.private_port
            .or_else(|| self.served.first().map(|s| s.private))
    }

    /// The public port shown for it: the first it serves.
    pub fn shown_public_port(&self) -> Option<u16> {
        self.served.first().map(|s| s.public)
    }

    /// Takes in what the process said: it is ready, or listens for a public port or on the
    /// socket bm2 holds.
    pub fn note(&mut self, event: &Event) {
        match event {
            Event::Listen(served) => {
                self.served.retain(|s| s.public != served.public);
                self.served.push(*served);
                self.registered.retain(|p| *p != served.public);
                self.ready |= !self.wait_ready;
            }
            Event::Ready => self.ready = true,
            Event::Listening => self.ready |= self.ready_when_listening,
            Event::Message { .. } => {}
        }
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

/// Why a process is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// To run the instance (start, restart).
    Run,
    /// To replace the instance's running process (reload): it must prove it is ready first.
    Replace,
}

/// What a process of an instance will be started with, worked out before anything starts.
pub struct Plan {
    env: Vars,
    stored: Vars,
    launch: Launch,
    cluster: bool,
    runtime: Option<String>,
    private_port: Option<u16>,
    public_port: Option<u16>,
    /// The listening socket bm2 should hold for the process's port and hand to it.
    pub socket: Option<handoff::Wanted>,
}

/// Works out how to start a process for `inst` with `spec` and base environment `base`.
pub fn plan(
    shared: &Shared,
    inst: &Instance,
    spec: &AppSpec,
    base: &Vars,
) -> Result<Plan, SpawnError> {
    let stored = shared.env_store.get(&inst.app);
    let mut env = envs::instance_env(base, spec, shared.home.root(), inst.id, inst.index, &stored);
    let cluster = spec.exec_mode == ExecMode::Cluster;
    if cluster {
        env.insert("BM2_CLUSTER".into(), "true".into());
        env.insert("BM2_WORKER_ID".into(), inst.index.to_string());
        env.insert("BM2_INSTANCES".into(), inst.count.to_string());
    }
    let launch = spawn::plan(spec, &env, &shared.table)?;
    let runtime = launch
        .interpreter
        .as_deref()
        .and_then(bm2_config::runtime::js_runtime)
        .map(str::to_string);
    let js = runtime.is_some();
    let mut public_port = None;
    let mut private_port = None;
    if cluster && js {
        // The shim moves whatever port the app listens on to a private one and says which:
        // `PORT` stays the app's own (its `env`, `increment_var`), or the public `port` when
        // bm2 is given one.
        env.insert("BM2_CLUSTER_SHIM".into(), "1".into());
        if let Some(port) = spec.port {
            env.insert("PORT".into(), port.to_string());
        }
    } else if cluster {
        // Other programs listen on the private port given in `PORT`; the public port is the
        // app's `port`, else the `PORT` it was configured with.
        public_port = spec
            .port
            .or_else(|| env.get("PORT").and_then(|p| p.trim().parse().ok()))
            .filter(|p| *p != 0);
        let port = channels::free_port().map_err(|source| SpawnError::Os {
            program: "a private port".into(),
            source,
        })?;
        env.insert("PORT".into(), port.to_string());
        private_port = Some(port);
    }
    let socket = wanted_socket(spec, inst.index, runtime.as_deref())?;
    Ok(Plan {
        env,
        stored,
        launch,
        cluster,
        runtime,
        private_port,
        public_port,
        socket,
    })
}

/// The socket bm2 holds for a fork-mode instance with a port: by socket activation when the
/// app asks for it, else for Node processes (through the shim). Bun cannot listen on an
/// inherited descriptor, and other programs bind the port themselves.
fn wanted_socket(
    spec: &AppSpec,
    index: u32,
    runtime: Option<&str>,
) -> Result<Option<handoff::Wanted>, SpawnError> {
    let port = spec
        .port
        .and_then(|p| u16::try_from(u32::from(p) + index).ok());
    let kind = if spec.socket_activation {
        if spec.exec_mode == ExecMode::Cluster {
            return Err(SpawnError::Socket(
                "socket_activation is for fork mode: in cluster mode bm2 listens on the port itself and balances it"
                    .into(),
            ));
        }
        if port.is_none() {
            return Err(SpawnError::Socket(match spec.port {
                None => "socket_activation needs the app's port (--port or `port`)".into(),
                Some(p) => format!("socket_activation: port {p} + instance {index} is not a port"),
            }));
        }
        handoff::Kind::Activation
    } else if spec.exec_mode == ExecMode::Fork && runtime == Some("node") {
        handoff::Kind::NodeShim
    } else {
        return Ok(None);
    };
    let Some(port) = port else { return Ok(None) };
    let host = match spec.listen_host.as_deref() {
        None | Some("") => None,
        Some(h) => match h.trim_matches(['[', ']']).parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) if kind == handoff::Kind::NodeShim => return Ok(None),
            Err(_) => {
                return Err(SpawnError::Socket(format!(
                    "socket_activation: listen_host {h:?} is not an IP address"
                )));
            }
        },
    };
    Ok(Some(handoff::Wanted { host, port, kind }))
}

/// Starts the planned process; `seq` numbers launches, `socket` is the listening socket bm2
/// holds for it (as the plan asked, when it could be had).
pub fn spawn(
    shared: &Shared,
    inst: &Instance,
    spec: &AppSpec,
    plan: Plan,
    seq: u64,
    socket: Option<&HeldSocket>,
    purpose: Purpose,
) -> Result<Started, SpawnError> {
    let Plan {
        env,
        stored,
        mut launch,
        cluster,
        runtime,
        private_port,
        public_port,
        socket: _,
    } = plan;
    let js = runtime.is_some();
    let socket_kind = socket.map(|s| s.wanted().kind);
    // Node processes take the held socket through the shim, whether by activation or not.
    let node_socket = socket.is_some() && runtime.as_deref() == Some("node");
    if (cluster && js) || node_socket {
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
    // Descriptors from 3 on: the held socket first (socket activation wants it at 3), then the
    // IPC channel.
    let mut fds = Vec::new();
    if let Some(socket) = socket {
        fds.push(FdMapping {
            parent_fd: socket.dup().map_err(os_err("the app's listening socket"))?,
            child_fd: handoff::CHILD_FD,
        });
        cmd.envs(socket.env(&inst.app));
    }
    // Every Node or Bun process gets an IPC channel, as under PM2 (`process.send` for the
    // event bus and `sendDataToProcessId`, `wait_ready`, PM2's shutdown message, the cluster
    // shim); Node keeps it unreferenced until the app listens for messages.
    let ipc = if js {
        let child_fd = handoff::CHILD_FD + i32::try_from(fds.len()).unwrap_or(0);
        let (ipc, mapping) =
            ipc::attach(&mut cmd, tx.clone(), child_fd).map_err(os_err("the IPC channel"))?;
        fds.push(mapping);
        Some(ipc)
    } else {
        None
    };
    if !fds.is_empty() {
        cmd.as_std_mut()
            .fd_mappings(fds)
            .map_err(|e| os_err("the child's descriptors")(std::io::Error::other(e.to_string())))?;
    }
    if spec.wait_ready {
        let path = shared.cluster.notify_path(inst.id, seq);
        // A socket path too long for the system (a deep BM2_HOME) leaves only the IPC channel.
        if let Err(e) = channels::notify_socket(&mut cmd, path.clone(), tx.clone()) {
            tracing::warn!(id = inst.id, path = %path.display(), error = %e, "no NOTIFY_SOCKET for this process");
        }
    }
    if socket_kind == Some(handoff::Kind::Activation) {
        crate::cluster::listen_pid::exec_with_listen_pid(&mut cmd)
            .map_err(os_err("socket activation"))?;
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
    let stdin = child.stdin.take().map(|pipe| inst.stdin.set(pid, pipe));
    if let Some(fd) = child.stdout.take().and_then(|p| p.into_owned_fd().ok()) {
        shared
            .logs
            .pumps
            .attach(inst.id, inst.logs.clone(), Stream::Out, fd);
    }
    if let Some(fd) = child.stderr.take().and_then(|p| p.into_owned_fd().ok()) {
        shared
            .logs
            .pumps
            .attach(inst.id, inst.logs.clone(), Stream::Err, fd);
    }
    // As PM2, a missing directory of a pid file the app names is created.
    if let Some(dir) = inst.pid_file.parent().filter(|d| !d.exists()) {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(&inst.pid_file, pid.to_string()) {
        tracing::warn!(path = %inst.pid_file.display(), error = %e, "cannot write pid file");
    }
    let replacing = purpose == Purpose::Replace && !cluster && !spec.wait_ready;
    // A Node process replacing one that serves the held socket is ready once it listens on it
    // too; a socket-activated program that does not say when it is ready must at least keep
    // running for `min_uptime`.
    let ready_when_listening =
        replacing && node_socket && socket.is_some_and(HeldSocket::is_listening);
    let settle = if replacing && !node_socket && socket_kind == Some(handoff::Kind::Activation) {
        Duration::from_millis(spec.min_uptime)
    } else {
        Duration::ZERO
    };
    let needs_signal = cluster || spec.wait_ready || ready_when_listening;
    if let (Some(port), false) = (private_port, spec.wait_ready) {
        channels::probe_port(port, tx.clone());
    }
    drop(tx);
    Ok(Started {
        start_time: procfs::read_stat(pid).map(|s| s.start_time),
        running: Running {
            child: child.into(),
            pid,
            started: Instant::now(),
            private_port,
            served: match (public_port, private_port) {
                (Some(public), Some(private)) => vec![Served {
                    public,
                    private,
                    host: None,
                }],
                _ => Vec::new(),
            },
            ready: !needs_signal,
            wait_ready: spec.wait_ready,
            expected_ready: spec.wait_ready || private_port.is_some() || ready_when_listening,
            ready_when_listening,
            settle,
            registered: Vec::new(),
            // Kept while the process has a channel that may speak (IPC messages for the bus).
            events: (needs_signal || ipc.is_some()).then_some(rx),
            ipc,
            stdin,
        },
        env,
        stored,
        launch,
    })
}
