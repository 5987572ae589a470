//! Requests and responses of the daemon's HTTP API.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{AppSpec, ProcDetail, ProcSummary};

/// The stable, machine-readable kind of an [`ApiError`] (`"unknown_target"` on the wire). It
/// decides the HTTP status of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No managed process matches a target.
    UnknownTarget,
    /// No such route or resource.
    NotFound,
    /// No dump file to resurrect.
    NoDump,
    /// The token is missing or wrong.
    Unauthorized,
    /// Not allowed from there (origin, public read-only access).
    Forbidden,
    /// The route exists, with other methods.
    MethodNotAllowed,
    /// The app is managed already.
    AlreadyExists,
    /// A public port cannot be bound.
    ListenFailed,
    /// The request body is over the limit.
    TooLarge,
    /// The daemon is stopping.
    ShuttingDown,
    /// The dashboard has as many live WebSocket sessions as it takes.
    TooManySessions,
    /// An app's options are not acceptable.
    InvalidApp,
    /// A target cannot be read (a bad /regex/).
    InvalidTarget,
    /// A request's values are not acceptable.
    InvalidRequest,
    /// A request that is not well formed.
    BadRequest,
    /// The dump file cannot be read.
    BadDump,
    /// A process cannot be spawned.
    SpawnFailed,
    /// A start that failed left nothing registered.
    NotRegistered,
    /// A new process did not become ready (reload).
    NotReady,
    /// The process is not running.
    NotRunning,
    /// A signal could not be sent.
    SignalFailed,
    /// The dump file could not be written.
    SaveFailed,
    /// The state file could not be written (a full disk): the change is not saved.
    StateNotSaved,
    /// The env store could not be written.
    EnvStore,
    /// A file could not be read or written.
    IoError,
    /// `bm2 update` could not hand the daemon over: it runs on, with every app untouched.
    UpdateFailed,
    /// The new binary cannot read the handover state this daemon writes: update the old way.
    CannotTakeOver,
    /// An answer that was not a bm2 error (seen by the client).
    Http,
    /// A fault of the daemon itself.
    Internal,
    /// A code this version does not know (from a newer daemon).
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// The HTTP status of an answer with this code.
    pub fn http_status(self) -> u16 {
        use ErrorCode as C;
        match self {
            C::UnknownTarget | C::NotFound | C::NoDump => 404,
            C::Unauthorized => 401,
            C::Forbidden => 403,
            C::MethodNotAllowed => 405,
            C::AlreadyExists | C::ListenFailed => 409,
            C::TooLarge => 413,
            C::ShuttingDown | C::TooManySessions => 503,
            C::CannotTakeOver => 422,
            C::InvalidApp | C::InvalidTarget | C::InvalidRequest | C::BadRequest | C::BadDump => {
                400
            }
            C::SpawnFailed
            | C::NotRegistered
            | C::NotReady
            | C::NotRunning
            | C::SignalFailed
            | C::SaveFailed
            | C::StateNotSaved
            | C::EnvStore
            | C::IoError
            | C::UpdateFailed
            | C::Http
            | C::Internal
            | C::Other => 500,
        }
    }
}

/// An error reported by the daemon: a stable code, a sentence, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// Stable machine-readable code, e.g. `unknown_target`.
    pub code: ErrorCode,
    /// What went wrong.
    pub message: String,
    /// What the user can do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl ApiError {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            hint: None,
        }
    }

    /// The same error with a hint.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Register and start apps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StartRequest {
    /// The apps to start.
    pub apps: Vec<AppSpec>,
    /// Environment of the caller, inherited by the apps (their own `env` wins).
    #[serde(default)]
    pub client_env: BTreeMap<String, String>,
    /// Start even when an app of the same name is already managed.
    #[serde(default)]
    pub force: bool,
    /// What to do with apps that are already managed (when `force` is off).
    #[serde(default)]
    pub if_exists: IfExists,
    /// When restarting managed apps, recompute their environment from `client_env` and their
    /// new options (PM2's `--update-env`); otherwise they keep the environment they had.
    #[serde(default)]
    pub update_env: bool,
}

/// What `start` does with an app whose name is already managed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IfExists {
    /// Refuse (the CLI's `start <script>`).
    #[default]
    Fail,
    /// Apply the new options and restart it (`start <ecosystem file>`, `startOrRestart`).
    Restart,
    /// Apply the new options and reload it without downtime (`reload <file>`, `startOrReload`).
    Reload,
}

/// Restart processes, optionally with a fresh environment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RestartRequest {
    /// The targets, as typed by the user.
    pub targets: Vec<String>,
    /// The caller's environment, to recompute the processes' environment from (`--update-env`).
    #[serde(default)]
    pub update_env: Option<BTreeMap<String, String>>,
    /// Turn file watching on for processes not watching (their directory, when `watch` is
    /// unset), off for those watching, before restarting them (`--watch`, as in PM2).
    #[serde(default)]
    pub toggle_watch: bool,
}

/// Stop processes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StopRequest {
    /// The targets, as typed by the user.
    pub targets: Vec<String>,
    /// Also stop watching their files (`--watch`, as in PM2), so that a later start does not
    /// watch either.
    #[serde(default)]
    pub stop_watching: bool,
}

/// Delete processes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeleteRequest {
    /// The targets, as typed by the user.
    pub targets: Vec<String>,
    /// Keep the log files bm2 named for them in `$BM2_HOME/logs`, which are otherwise removed
    /// with them (files the user named are always kept).
    #[serde(default)]
    pub keep_logs: bool,
}

/// Restore the dump file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResurrectRequest {
    /// The caller's environment, to recompute the apps' environment from (`--update-env`).
    #[serde(default)]
    pub update_env: Option<BTreeMap<String, String>>,
}

/// Set a variable in the env store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvSetRequest {
    /// App name.
    pub app: String,
    /// Variable name.
    pub key: String,
    /// Value.
    pub value: String,
}

/// Read or delete variables in the env store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvKeyRequest {
    /// App name.
    pub app: String,
    /// One variable; all of the app's when absent.
    #[serde(default)]
    pub key: Option<String>,
}

/// Variables of the env store for one app.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EnvStoreResponse {
    /// App name.
    pub app: String,
    /// Its stored variables.
    pub vars: BTreeMap<String, String>,
}

/// Which processes an action applies to: ids, names, namespaces, `all`, scripts or `/regex/`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TargetRequest {
    /// The targets, as typed by the user.
    pub targets: Vec<String>,
}

/// Send a signal to processes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignalRequest {
    /// The targets, as typed by the user.
    pub targets: Vec<String>,
    /// The signal (`"SIGUSR2"`; `"USR2"` and numbers are read too).
    pub signal: crate::Signal,
}

/// Write a line to the stdin of processes (`send`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SendRequest {
    /// The targets, as typed by the user.
    pub targets: Vec<String>,
    /// The line; a newline is added.
    pub line: String,
}

/// Outcome of an action on one or more instances.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ActionResponse {
    /// The instances acted on, in their state after the action.
    pub processes: Vec<ProcSummary>,
    /// Failures for individual instances; the others were still acted on.
    #[serde(default)]
    pub errors: Vec<ApiError>,
    /// What the user should know about an action that succeeded, such as a reload that had to
    /// be a restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<String>,
}

/// Liveness and identity of the daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PingResponse {
    /// Daemon pid.
    pub pid: u32,
    /// Daemon version.
    pub version: String,
    /// Protocol version.
    pub protocol: u32,
    /// Milliseconds since the daemon started.
    pub uptime_ms: u64,
    /// The daemon's home directory.
    pub home: PathBuf,
    /// The bm2 binary the daemon runs (after `bm2 update`, the one it was handed over to).
    #[serde(default)]
    pub exe: Option<PathBuf>,
    /// How many times `bm2 update` handed this daemon over to a new binary in place.
    #[serde(default)]
    pub handovers: u32,
}

/// Asks the daemon to hand over to another bm2 binary in place (`bm2 update`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateRequest {
    /// The binary to run the daemon from: the one the command runs, unless told otherwise.
    pub exe: PathBuf,
}

/// Result of an update in place, sent by the daemon once it runs the new binary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateResponse {
    /// Daemon pid (the same as before).
    pub pid: u32,
    /// Version before.
    pub from_version: String,
    /// Version now.
    pub version: String,
    /// The binary it runs now.
    pub exe: PathBuf,
    /// Times it was updated in place.
    pub handovers: u32,
    /// Processes taken over, still running.
    pub kept: usize,
    /// From the request to the new daemon serving, ms.
    pub took_ms: u64,
}

/// Result of `save`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SaveResponse {
    /// Where the dump was written.
    pub path: PathBuf,
    /// How many instances it holds.
    pub count: usize,
}

/// Result of `describe`: every matching instance in detail.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DescribeResponse {
    /// The instances.
    pub processes: Vec<ProcDetail>,
}

/// Read an app's logs: recent lines, then (with `follow`) new lines as they are written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogsRequest {
    /// Targets; empty means every app, including apps started later.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Recent lines to send first, per stream and instance.
    #[serde(default = "default_lines")]
    pub lines: usize,
    /// Keep sending new lines.
    #[serde(default)]
    pub follow: bool,
    /// Include stdout.
    #[serde(default = "yes")]
    pub out: bool,
    /// Include stderr.
    #[serde(default = "yes")]
    pub err: bool,
}

fn default_lines() -> usize {
    15
}

fn yes() -> bool {
    true
}

/// One line of an app's output, as streamed by the logs API (one JSON object per line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEvent {
    /// Instance id.
    pub id: crate::ProcId,
    /// Instance name.
    pub name: String,
    /// App name.
    pub app: String,
    /// `out` or `err`.
    pub stream: String,
    /// The line, as written to the log file, without its newline.
    pub line: String,
    /// True for lines read from the files before following began.
    #[serde(default)]
    pub history: bool,
    /// Set on a notice that this many lines were skipped because the reader fell behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<u64>,
}

/// Result of `flush` and `reloadLogs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogFilesResponse {
    /// How many files were emptied or reopened.
    pub files: usize,
}

/// Reload processes without downtime.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReloadRequest {
    /// The targets, as typed by the user.
    pub targets: Vec<String>,
    /// Instances reloaded at a time (default 1).
    #[serde(default)]
    pub parallel: Option<usize>,
    /// The caller's environment, to recompute the processes' environment from (`--update-env`,
    /// as for restart).
    #[serde(default)]
    pub update_env: Option<BTreeMap<String, String>>,
}

/// Change the number of instances of an app.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleRequest {
    /// The app's name.
    pub app: String,
    /// `N`, `+N` or `-N`.
    pub instances: String,
}

/// Where and how the web dashboard and the Prometheus endpoint listen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardOptions {
    /// Start them with the daemon (read from `$BM2_HOME/config.toml`).
    pub enabled: bool,
    /// Port of the dashboard, its REST API and WebSocket (0: any free port).
    pub port: u16,
    /// Port of the read-only Prometheus endpoint (0: any free port).
    pub metrics_port: u16,
    /// Address both listen on.
    pub host: String,
    /// Serve read-only JSON without the token.
    pub public_read: bool,
    /// Most WebSocket sessions open at once; more are refused with 503.
    pub max_sessions: u32,
}

impl Default for DashboardOptions {
    fn default() -> Self {
        DashboardOptions {
            enabled: false,
            port: 9615,
            metrics_port: 9616,
            host: "127.0.0.1".into(),
            public_read: false,
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }
}

/// Most dashboard WebSocket sessions open at once, unless configured otherwise.
pub const DEFAULT_MAX_SESSIONS: u32 = 64;

/// A running dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DashboardInfo {
    /// The page's address, carrying the access token.
    pub url: String,
    /// The Prometheus endpoint's address.
    pub metrics_url: String,
    /// What it was started with (ports as bound).
    pub options: DashboardOptions,
    /// Set when it is reachable from other machines over plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_snake_case_on_the_wire_and_unknown_ones_are_kept_apart() {
        let e = ApiError::new(ErrorCode::UnknownTarget, "no such app");
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, r#"{"code":"unknown_target","message":"no such app"}"#);
        let newer: ApiError =
            serde_json::from_str(r#"{"code":"from_the_future","message":"m"}"#).unwrap();
        assert_eq!(newer.code, ErrorCode::Other);
        assert_eq!(ErrorCode::UnknownTarget.http_status(), 404);
        assert_eq!(ErrorCode::TooLarge.http_status(), 413);
        assert_eq!(ErrorCode::StateNotSaved.http_status(), 500);
    }
}
