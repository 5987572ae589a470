//! An app's options: the one definition used by CLI flags, ecosystem files, the API and dump files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{ByteSize, Instances};

/// How the instances of an app are run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecMode {
    /// Each instance is an independent process.
    #[default]
    Fork,
    /// Instances share a port through the daemon's load balancer.
    Cluster,
}

impl ExecMode {
    /// The PM2 name of the mode, as shown in `list` and `jlist`.
    pub fn pm2_name(self) -> &'static str {
        match self {
            ExecMode::Fork => "fork_mode",
            ExecMode::Cluster => "cluster_mode",
        }
    }
}

/// Everything that describes how to run one app. Defaults follow PM2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppSpec {
    /// Name of the app; instances are shown as `<name>-<i>` when there are several.
    pub name: String,
    /// Script, binary or command to run: an absolute path, or a program looked up on `PATH`.
    pub script: String,
    /// Arguments passed to the script.
    pub args: Vec<String>,
    /// Working directory of the process (absolute).
    pub cwd: Option<PathBuf>,
    /// Variables set for the process on top of the environment it inherits.
    pub env: BTreeMap<String, String>,
    /// Interpreter to run the script with; `None` picks one by file extension, `"none"` runs it directly.
    pub interpreter: Option<String>,
    /// Arguments for the interpreter, before the script.
    pub interpreter_args: Vec<String>,
    /// Arguments for the Node/Bun runtime, before the script (PM2's `node_args`).
    pub node_args: Vec<String>,
    /// Namespace used to group apps; targets can name it.
    pub namespace: String,
    /// How many instances to run.
    pub instances: Instances,
    /// Fork or cluster mode.
    pub exec_mode: ExecMode,
    /// Restart the process when it exits.
    pub autorestart: bool,
    /// Consecutive unstable restarts (exits within `min_uptime`) allowed before the app is `errored`.
    pub max_restarts: u32,
    /// Milliseconds a process must run to count as started successfully.
    pub min_uptime: u64,
    /// Milliseconds to wait before restarting a crashed process.
    pub restart_delay: u64,
    /// Initial delay in milliseconds of PM2's exponential backoff between unstable restarts.
    pub exp_backoff_restart_delay: Option<u64>,
    /// Milliseconds between the stop signal and SIGKILL.
    pub kill_timeout: u64,
    /// Signal sent first to stop the process (PM2's `kill_signal`).
    pub kill_signal: String,
    /// Exit codes after which the process is not restarted.
    pub stop_exit_codes: Vec<i32>,
    /// Restart the process when its whole process tree uses more memory than this.
    pub max_memory_restart: Option<ByteSize>,
    /// Start the app when it is registered; `false` registers it stopped.
    pub autostart: bool,
    /// User to run the process as (name or uid); only when the daemon runs as root.
    pub uid: Option<String>,
    /// Group to run the process as (name or gid); only when the daemon runs as root.
    pub gid: Option<String>,
    // Log options. Unset ones take the daemon's defaults (`$BM2_HOME/config.toml`, else 10M,
    // retain 5, no compression).
    /// Stdout log file (default `$BM2_HOME/logs/<name>-<id>-out.log`); `/dev/null` or `NULL` for none.
    pub out_file: Option<String>,
    /// Stderr log file (default `$BM2_HOME/logs/<name>-<id>-error.log`); `/dev/null` or `NULL` for none.
    pub error_file: Option<String>,
    /// A file receiving both streams, in addition to the two above.
    pub log_file: Option<String>,
    /// Instances of the app share one set of files (no `-<id>` in the default names).
    pub merge_logs: bool,
    /// Prefix each line with a timestamp.
    pub time: bool,
    /// Timestamp format, with PM2's (moment.js) tokens, e.g. `YYYY-MM-DD HH:mm:ss Z`; implies `time`.
    pub log_date_format: Option<String>,
    /// `json` writes one JSON object per line; anything else writes the raw lines.
    pub log_type: Option<String>,
    /// Write no log files at all.
    pub disable_logs: bool,
    /// Rotate a file when it would grow past this size.
    pub log_max_size: Option<ByteSize>,
    /// How many rotated files to keep.
    pub log_retain: Option<u32>,
    /// Gzip rotated files.
    pub log_compress: Option<bool>,
    /// Also rotate on this cron schedule (e.g. `0 0 * * *` for daily at midnight).
    pub log_rotate_interval: Option<String>,
}

impl Default for AppSpec {
    fn default() -> Self {
        AppSpec {
            name: String::new(),
            script: String::new(),
            args: Vec::new(),
            cwd: None,
            env: BTreeMap::new(),
            interpreter: None,
            interpreter_args: Vec::new(),
            node_args: Vec::new(),
            namespace: DEFAULT_NAMESPACE.to_string(),
            instances: Instances::default(),
            exec_mode: ExecMode::Fork,
            autorestart: true,
            max_restarts: 16,
            min_uptime: 1000,
            restart_delay: 0,
            exp_backoff_restart_delay: None,
            kill_timeout: 5000,
            kill_signal: "SIGINT".to_string(),
            stop_exit_codes: Vec::new(),
            max_memory_restart: None,
            autostart: true,
            uid: None,
            gid: None,
            out_file: None,
            error_file: None,
            log_file: None,
            merge_logs: false,
            time: false,
            log_date_format: None,
            log_type: None,
            disable_logs: false,
            log_max_size: None,
            log_retain: None,
            log_compress: None,
            log_rotate_interval: None,
        }
    }
}

/// Namespace of apps started without one.
pub const DEFAULT_NAMESPACE: &str = "default";
