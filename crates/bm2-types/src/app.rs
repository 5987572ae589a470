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
    /// `fork` or `cluster`, as bm2 shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecMode::Fork => "fork",
            ExecMode::Cluster => "cluster",
        }
    }

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
    pub kill_signal: crate::Signal,
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
    /// Caller variables the app does not inherit (PM2's `filter_env`).
    pub filter_env: FilterEnv,
    /// Variable holding the instance index (PM2's `instance_var`).
    pub instance_var: String,
    /// Numeric variable increased by the instance index in each instance (PM2's `increment_var`).
    pub increment_var: Option<String>,
    /// Stop signals go to the whole process tree; `false` signals the main process only.
    pub treekill: bool,
    /// Milliseconds between checks that a stopping process has exited.
    pub kill_retry_time: u64,
    /// Node: source-mapped stack traces (`--enable-source-maps`); on unless turned off, as in PM2.
    pub source_map_support: bool,
    /// Port of the app (cluster mode balances it; fork instances get `PORT = port + i`).
    pub port: Option<u16>,
    /// Address the cluster balancer listens on (default: all interfaces).
    pub listen_host: Option<String>,
    /// How the cluster balancer picks an instance.
    pub lb: LoadBalancing,
    /// Count an instance as started only when it says it is ready.
    pub wait_ready: bool,
    /// Milliseconds to wait for readiness.
    pub listen_timeout: u64,
    /// Ask the app to stop with PM2's `shutdown` message before signals.
    pub shutdown_with_message: bool,
    /// Fork mode with a port: bm2 holds the listening socket of each instance's port and hands
    /// it to every process by systemd socket activation (`LISTEN_FDS`, fd 3), so that a reload
    /// overlaps the old and new processes on one socket.
    pub socket_activation: bool,
    /// Paths whose changes restart the app, relative to `cwd` (empty: not watched; `.`: `cwd`).
    pub watch: Vec<String>,
    /// Globs of paths never watched: a pattern without `/` matches a file or directory name at
    /// any depth, one with `/` a path relative to `cwd`. Replaces the default list when given.
    pub ignore_watch: Vec<String>,
    /// Milliseconds without further changes before a change restarts the app.
    pub watch_delay: u64,
    /// Cron schedule of restarts (5 fields, or 6 with seconds), in the app's `TZ` or local time.
    pub cron_restart: Option<String>,
    /// HTTP URL probed to check the app's health (`http://` only; 2xx and 3xx are healthy).
    pub health_check_url: Option<String>,
    /// `host:port` that must accept TCP connections for the app to be healthy.
    pub health_check_tcp: Option<String>,
    /// Shell command run in the app's directory and environment; healthy when it exits 0.
    pub health_check_cmd: Option<String>,
    /// Milliseconds between health probes.
    pub health_check_interval: u64,
    /// Milliseconds before a health probe fails.
    pub health_check_timeout: u64,
    /// Failed probes in a row before a restart.
    pub health_check_max_fails: u32,
    // Log options. Unset ones take the daemon's defaults (`$BM2_HOME/config.toml`, else 10M,
    // retain 5, no compression).
    /// Stdout log file (default `$BM2_HOME/logs/<name>-out.log`, `<name>-out-<id>.log` for each of several instances); `/dev/null` or `NULL` for none.
    pub out_file: Option<String>,
    /// Stderr log file (default `$BM2_HOME/logs/<name>-error.log`, `<name>-error-<id>.log` for each of several instances); `/dev/null` or `NULL` for none.
    pub error_file: Option<String>,
    /// A file receiving both streams, in addition to the two above.
    pub log_file: Option<String>,
    /// Pid file of each instance, with `-<id>` before `.pid` as PM2 names it (default
    /// `$BM2_HOME/pids/<name>-<id>.pid`).
    pub pid_file: Option<String>,
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
    /// Apps this app waits for when started, each with the condition it waits for.
    pub depends_on: BTreeMap<String, DependCondition>,
    /// Milliseconds to wait for the dependencies' conditions before giving up (default 60 s).
    pub depends_timeout: Option<u64>,
    /// Restart this app's dependents after this app restarts, once it meets their condition again.
    pub restart_dependents: bool,
}

/// Default of [`AppSpec::depends_timeout`], in milliseconds.
pub const DEFAULT_DEPENDS_TIMEOUT_MS: u64 = 60_000;

/// What an app waits for of one of its dependencies (process-compose's conditions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DependCondition {
    /// Its process is running.
    #[default]
    Started,
    /// It is online and ready: said so with `wait_ready`, receives traffic (cluster mode), and
    /// passes its health check when it has one.
    Ready,
    /// It exited with code 0 (a one-shot job).
    Completed,
}

impl DependCondition {
    /// `started`, `ready` or `completed`.
    pub fn as_str(self) -> &'static str {
        match self {
            DependCondition::Started => "started",
            DependCondition::Ready => "ready",
            DependCondition::Completed => "completed",
        }
    }
}

impl std::str::FromStr for DependCondition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "started" | "process_started" | "service_started" => Ok(DependCondition::Started),
            "ready" | "healthy" | "process_healthy" | "service_healthy" => {
                Ok(DependCondition::Ready)
            }
            "completed" | "process_completed_successfully" | "service_completed_successfully" => {
                Ok(DependCondition::Completed)
            }
            _ => Err(format!("expected started, ready or completed, got {s:?}")),
        }
    }
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
            kill_signal: crate::Signal::INT,
            stop_exit_codes: Vec::new(),
            max_memory_restart: None,
            autostart: true,
            uid: None,
            gid: None,
            filter_env: FilterEnv::None,
            instance_var: "NODE_APP_INSTANCE".to_string(),
            increment_var: None,
            treekill: true,
            kill_retry_time: 100,
            source_map_support: true,
            port: None,
            listen_host: None,
            lb: LoadBalancing::RoundRobin,
            wait_ready: false,
            listen_timeout: 3000,
            shutdown_with_message: false,
            socket_activation: false,
            watch: Vec::new(),
            ignore_watch: DEFAULT_IGNORE_WATCH
                .iter()
                .map(ToString::to_string)
                .collect(),
            watch_delay: 1000,
            cron_restart: None,
            health_check_url: None,
            health_check_tcp: None,
            health_check_cmd: None,
            health_check_interval: 30_000,
            health_check_timeout: 5000,
            health_check_max_fails: 3,
            out_file: None,
            pid_file: None,
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
            depends_on: BTreeMap::new(),
            depends_timeout: None,
            restart_dependents: false,
        }
    }
}

/// How the cluster balancer spreads connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancing {
    /// Each instance in turn.
    #[default]
    RoundRobin,
    /// The instance with the fewest open connections.
    LeastConn,
}

impl std::str::FromStr for LoadBalancing {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.replace('-', "_").as_str() {
            "round_robin" | "rr" => Ok(LoadBalancing::RoundRobin),
            "least_conn" | "least_connections" => Ok(LoadBalancing::LeastConn),
            _ => Err(format!("expected round-robin or least-conn, got {s:?}")),
        }
    }
}

/// Which of the caller's environment variables an app does not inherit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FilterEnv {
    /// Inherit everything (`false`).
    #[default]
    None,
    /// Inherit nothing (`true`).
    All,
    /// Drop the variables whose names start with one of these.
    Prefixes(Vec<String>),
}

impl FilterEnv {
    /// True when the caller's variable `name` is kept.
    pub fn keeps(&self, name: &str) -> bool {
        match self {
            FilterEnv::None => true,
            FilterEnv::All => false,
            FilterEnv::Prefixes(p) => !p.iter().any(|prefix| name.starts_with(prefix.as_str())),
        }
    }
}

impl Serialize for FilterEnv {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FilterEnv::None => s.serialize_bool(false),
            FilterEnv::All => s.serialize_bool(true),
            FilterEnv::Prefixes(p) => p.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for FilterEnv {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Bool(bool),
            One(String),
            Many(Vec<String>),
        }
        Ok(match Form::deserialize(d)? {
            Form::Bool(false) => FilterEnv::None,
            Form::Bool(true) => FilterEnv::All,
            Form::One(p) => FilterEnv::Prefixes(vec![p]),
            Form::Many(p) => FilterEnv::Prefixes(p),
        })
    }
}

/// Paths not watched unless `ignore_watch` says otherwise.
pub const DEFAULT_IGNORE_WATCH: [&str; 4] = ["node_modules", ".git", ".bm2", "logs"];

/// Namespace of apps started without one.
pub const DEFAULT_NAMESPACE: &str = "default";
