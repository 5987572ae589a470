//! What an instance's supervisor hands over in `bm2 update`: its counters, its phase with the
//! running process and the descriptors that go with it, and what its published view shows that
//! the state file does not keep. A leaf of plain values.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bm2_types::{ExitInfo, LastRestart, ProcId};
use serde::{Deserialize, Serialize};

use crate::cluster::Served;
use crate::cluster::handoff::Wanted;
use crate::cluster::ipc::FrozenIpc;
use crate::envs::Vars;
use crate::handover::Fd;

/// An instance as its supervisor left it.
#[derive(Debug, Serialize, Deserialize)]
pub struct FrozenInstance {
    /// Its id.
    pub id: ProcId,
    /// Consecutive unstable restarts.
    pub unstable_restarts: u32,
    /// Delay of the last backoff restart, ms.
    pub last_backoff_ms: Option<u64>,
    /// Processes launched so far.
    pub launches: u64,
    /// What the restart being waited for is about.
    pub pending_restart: Option<String>,
    /// What it was doing.
    pub phase: FrozenPhase,
    /// The listening socket held for its port (fork mode).
    pub socket: Option<(Wanted, Fd)>,
    /// What it showed.
    pub view: FrozenView,
}

/// What the instance was doing.
#[derive(Debug, Serialize, Deserialize)]
pub enum FrozenPhase {
    /// Stopped.
    Stopped,
    /// Errored.
    Errored,
    /// Running this process.
    Running(FrozenRun),
    /// Its process exited; a new one starts this many ms after the handover.
    WaitingRestart {
        /// The delay left, ms.
        in_ms: u64,
    },
}

/// A running process.
#[derive(Debug, Serialize, Deserialize)]
pub struct FrozenRun {
    /// Its pid (a child of the daemon's process).
    pub pid: u32,
    /// How long it has run, ms.
    pub uptime_ms: u64,
    /// The private port bm2 gave it.
    pub private_port: Option<u16>,
    /// The public ports it serves.
    pub served: Vec<Served>,
    /// Ready for traffic.
    pub ready: bool,
    /// Only its word makes it ready.
    pub wait_ready: bool,
    /// Expected to be ready within `listen_timeout`.
    pub expected_ready: bool,
    /// Ready once it listens on the held socket.
    pub ready_when_listening: bool,
    /// How long it must run once ready before it replaces another, ms.
    pub settle_ms: u64,
    /// When not ready: how long it has left to be, ms.
    pub ready_in_ms: Option<u64>,
    /// `launching` until ready.
    pub launching: bool,
    /// Its IPC channel.
    pub ipc: Option<FrozenIpc>,
    /// The write end of its stdin.
    pub stdin: Option<Fd>,
}

/// What the instance's view shows beyond the state file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[allow(clippy::struct_excessive_bools)]
pub struct FrozenView {
    /// What the current process's environment adds to the base environment.
    pub env: Vars,
    /// Env store variables applied at the last launch.
    pub store_applied: Vars,
    /// Start time of the main pid in clock ticks after boot.
    pub pid_start_time: Option<u64>,
    /// When the process started, ms since the epoch.
    pub started_at_ms: Option<u64>,
    /// Restarts since start or reset.
    pub restarts: u32,
    /// Restarts by reason.
    pub restart_reasons: BTreeMap<String, u64>,
    /// The most recent restart.
    pub last_restart: Option<LastRestart>,
    /// How the last process ended.
    pub last_exit: Option<ExitInfo>,
    /// Times a process exited by itself.
    pub exits: u64,
    /// Why it is in its status.
    pub reason: Option<String>,
    /// Interpreter of the last launch.
    pub interpreter: Option<String>,
    /// Script of the last launch.
    pub exec_path: Option<PathBuf>,
    /// Shown private port.
    pub private_port: Option<u16>,
    /// Shown public port.
    pub public_port: Option<u16>,
    /// Ready.
    pub ready: bool,
    /// Meant to run.
    pub desired_running: bool,
    /// Held stopped.
    pub held: bool,
    /// Why watching is off.
    pub watch_off: Option<String>,
    /// What the last reload said.
    pub reload_notice: Option<String>,
}
