//! The event stream (`POST /v1/events`, `bm2 events`, the JS package's `launchBus`): process
//! lifecycle events, log lines and messages apps send over their IPC channel, one JSON object
//! per line.

use serde::{Deserialize, Serialize};

use crate::ProcId;

/// What to follow.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EventsRequest {
    /// Also every log line (`log:out`, `log:err`).
    #[serde(default)]
    pub logs: bool,
    /// Only these processes (ids, names, `all`...); none: every process, also those started
    /// later.
    #[serde(default)]
    pub targets: Vec<String>,
}

/// The process an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRef {
    /// Its id (PM2's `pm_id`).
    pub id: ProcId,
    /// Its app's name.
    pub name: String,
    /// Its index among the app's instances.
    pub instance: u32,
    /// The main pid, when it runs.
    pub pid: Option<u32>,
    /// Its namespace.
    pub namespace: String,
}

/// A lifecycle event, with PM2's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    /// A process was started.
    Start,
    /// It is online.
    Online,
    /// It exited (by itself or stopped).
    Exit,
    /// It is restarted (with the reason).
    Restart,
    /// It was stopped on request.
    Stop,
    /// It was deleted.
    Delete,
}

/// One event of the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum BusEvent {
    /// The first line: the subscription is live.
    #[serde(rename = "subscribed")]
    Subscribed,
    /// A process's lifecycle.
    #[serde(rename = "process:event")]
    Process {
        /// What happened.
        event: Lifecycle,
        /// When, ms since the epoch.
        at_ms: u64,
        /// To which process.
        process: ProcRef,
        /// The exit code (`exit`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<i32>,
        /// The signal that ended it (`exit`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<String>,
        /// Why (`restart`: crash, memory, health, cron, watch, manual; `exit` and `stop`: the
        /// reason shown).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A line of standard output.
    #[serde(rename = "log:out")]
    LogOut {
        /// When it was read, ms since the epoch.
        at_ms: u64,
        /// Whose.
        process: ProcRef,
        /// The line, without its newline.
        data: String,
    },
    /// A line of standard error.
    #[serde(rename = "log:err")]
    LogErr {
        /// When it was read, ms since the epoch.
        at_ms: u64,
        /// Whose.
        process: ProcRef,
        /// The line, without its newline.
        data: String,
    },
    /// A message an app sent over its IPC channel
    /// (`process.send({type: 'process:msg', data, topic})`).
    #[serde(rename = "process:msg")]
    Message {
        /// When, ms since the epoch.
        at_ms: u64,
        /// Whose.
        process: ProcRef,
        /// What it sent as `data`.
        data: serde_json::Value,
        /// Its `topic`, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
    },
    /// This subscriber fell behind and missed this many events (the daemon never waits for
    /// a subscriber).
    #[serde(rename = "lagged")]
    Lagged {
        /// How many.
        missed: u64,
    },
}

/// Sends data to processes over their IPC channel (PM2's `sendDataToProcessId`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendDataRequest {
    /// The targets.
    pub targets: Vec<String>,
    /// The data, as JSON.
    pub data: serde_json::Value,
    /// A topic, as PM2's packets carry.
    #[serde(default)]
    pub topic: Option<String>,
}

/// Starts apps from their options as an ecosystem file writes them (PM2's or BM2's
/// spellings), resolved by the daemon: the road for clients other than the CLI.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartOptionsRequest {
    /// The apps' options.
    pub apps: Vec<serde_json::Value>,
    /// The directory relative paths are taken from.
    pub cwd: std::path::PathBuf,
    /// The caller's environment.
    #[serde(default)]
    pub client_env: std::collections::BTreeMap<String, String>,
    /// `--env <name>`: apply each app's `env_<name>`.
    #[serde(default)]
    pub env_name: Option<String>,
    /// Start even when an app of the same name is managed.
    #[serde(default)]
    pub force: bool,
    /// What to do with apps that are managed already.
    #[serde(default)]
    pub if_exists: crate::IfExists,
}
