//! The MCP tools: each one a call (or a few) to the daemon through `bm2_client`, answering
//! with structured JSON and a text copy of it.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use bm2_client::{Client, ClientError};
use bm2_types::{
    LogsRequest, ProcDetail, ProcStatus, ProcSummary, ReloadRequest, RestartRequest,
    StartOptionsRequest,
};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, schemars, tool, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};

/// The tools that change nothing: the only ones offered with `--read-only`.
pub const READ_ONLY_TOOLS: &[&str] = &[
    "bm2_list_processes",
    "bm2_describe_process",
    "bm2_tail_logs",
    "bm2_get_metrics",
    "bm2_get_env",
    "bm2_health",
];

/// Most log lines `bm2_tail_logs` returns.
const MAX_LINES: usize = 1000;

/// The MCP server: one per session (HTTP) or for the whole run (stdio).
#[derive(Clone)]
pub struct Bm2Mcp {
    client: Arc<Client>,
    read_only: bool,
    tool_router: ToolRouter<Bm2Mcp>,
    /// The URIs this session subscribed to.
    pub(super) subscriptions: Arc<Mutex<HashSet<String>>>,
    /// Whether this session's event watcher runs.
    pub(super) watching: Arc<std::sync::atomic::AtomicBool>,
}

/// `{"process": "<id or name>"}`
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ProcessArg {
    /// Process id, name, namespace or `all`
    pub process: String,
}

/// Options of `bm2_start_process`, with PM2's key names.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct StartArgs {
    /// The script, binary or command to run (or give `file`)
    pub script: Option<String>,
    /// The app's name
    pub name: Option<String>,
    /// Arguments passed to the script
    pub args: Option<Vec<String>>,
    /// Working directory (default: the server's)
    pub cwd: Option<String>,
    /// Number of instances (0 or -1: one per CPU)
    pub instances: Option<i64>,
    /// `fork` or `cluster`
    pub exec_mode: Option<String>,
    /// The interpreter (`node`, `python3`, `none`...)
    pub interpreter: Option<String>,
    /// Environment variables
    pub env: Option<BTreeMap<String, String>>,
    /// An ecosystem file to start the apps of, instead of `script`
    pub file: Option<String>,
    /// With `file`: only these apps (comma-separated names)
    pub only: Option<String>,
    /// Apply each app's `env_<name>` (PM2's --env)
    pub env_name: Option<String>,
}

/// `{"process", "update_env"?}`
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct RestartArgs {
    /// Process id, name, namespace or `all`
    pub process: String,
    /// Recompute the environment from the server's environment (PM2's --update-env)
    #[serde(default)]
    pub update_env: bool,
}

/// A number of instances: `N`, or `"+N"` / `"-N"` to add or remove.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Instances {
    /// Exactly this many.
    Count(u32),
    /// `"N"`, `"+N"` or `"-N"`.
    Text(String),
}

/// `{"app", "instances"}`
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ScaleArgs {
    /// The app's name
    pub app: String,
    /// N, "+N" or "-N"
    pub instances: Instances,
}

/// `{"process"?}`
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct OptionalProcess {
    /// Process id, name, namespace or `all` (default: every app)
    pub process: Option<String>,
}

/// Which output of an app.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StreamChoice {
    /// Standard output.
    Out,
    /// Standard error.
    Err,
    /// Both.
    #[default]
    Both,
}

/// Options of `bm2_tail_logs`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct TailArgs {
    /// Process id, name, namespace or `all`
    pub process: String,
    /// How many lines (default 50, at most 1000)
    pub lines: Option<usize>,
    /// Keep only lines containing this text (a regular expression with `regex`)
    pub filter: Option<String>,
    /// `filter` is a regular expression
    #[serde(default)]
    pub regex: bool,
    /// out, err or both (default)
    #[serde(default)]
    pub stream: StreamChoice,
}

/// Options of `bm2_get_metrics`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct MetricsArgs {
    /// Only this process (id or name)
    pub process: Option<String>,
    /// Also the samples of the last N seconds (1 to 3600)
    pub history_seconds: Option<u64>,
}

/// Options of `bm2_get_env`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct EnvArgs {
    /// Process id or name
    pub process: String,
    /// Show the values of secret-looking variables instead of "***"
    #[serde(default)]
    pub reveal_secrets: bool,
}

#[tool_router]
impl Bm2Mcp {
    /// A server over `client`; with `read_only`, only the read-only tools exist.
    pub fn new(client: Arc<Client>, read_only: bool) -> Bm2Mcp {
        let mut tool_router = Self::tool_router();
        if read_only {
            for t in tool_router.list_all() {
                if !READ_ONLY_TOOLS.contains(&t.name.as_ref()) {
                    tool_router.remove_route(&t.name);
                }
            }
        }
        Bm2Mcp {
            client,
            read_only,
            tool_router,
            subscriptions: Arc::default(),
            watching: Arc::default(),
        }
    }

    /// A server for a new session: the same client and tools, no subscriptions.
    pub fn fresh(&self) -> Bm2Mcp {
        Bm2Mcp {
            client: self.client.clone(),
            read_only: self.read_only,
            tool_router: self.tool_router.clone(),
            subscriptions: Arc::default(),
            watching: Arc::default(),
        }
    }

    /// The daemon's client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    #[tool(
        description = "List the processes bm2 manages: id, name, namespace, status, pid, cpu (%), memory (bytes), restarts, uptime_ms",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn bm2_list_processes(&self) -> Result<CallToolResult, McpError> {
        Ok(match self.client.list().await {
            Ok(list) => CallToolResult::structured(json!({ "processes": rows(&list) })),
            Err(e) => failure(&e),
        })
    }

    #[tool(
        description = "Everything about processes: options, environment (secrets masked), log files, last exit, restarts, health check, cron, watch",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn bm2_describe_process(
        &self,
        Parameters(a): Parameters<ProcessArg>,
    ) -> Result<CallToolResult, McpError> {
        Ok(match self.client.describe(vec![a.process]).await {
            Ok(d) => CallToolResult::structured(
                json!({ "processes": d.processes.iter().map(detail).collect::<Vec<_>>() }),
            ),
            Err(e) => failure(&e),
        })
    }

    #[tool(
        description = "Start an app from a script (PM2 option names: script, name, args, cwd, instances, exec_mode, interpreter, env) or the apps of an ecosystem file (file, only, env_name)",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn bm2_start_process(
        &self,
        Parameters(a): Parameters<StartArgs>,
    ) -> Result<CallToolResult, McpError> {
        let res = match (&a.script, &a.file) {
            (Some(_), Some(_)) => return Ok(refusal("give either script or file, not both")),
            (None, None) => {
                return Ok(refusal(
                    "give script (what to run) or file (an ecosystem file)",
                ));
            }
            (None, Some(file)) => match self.start_file(file, &a).await {
                Ok(r) => r,
                Err(e) => return Ok(refusal(&format!("{e:#}"))),
            },
            (Some(_), None) => {
                let cwd = match &a.cwd {
                    Some(c) => std::path::PathBuf::from(c),
                    None => std::env::current_dir().unwrap_or_else(|_| "/".into()),
                };
                let req = StartOptionsRequest {
                    apps: vec![script_app(&a)],
                    cwd,
                    client_env: std::env::vars().collect(),
                    env_name: a.env_name.clone(),
                    force: false,
                    if_exists: bm2_types::IfExists::default(),
                };
                self.client.start_options(&req).await
            }
        };
        Ok(acted(res, true))
    }

    #[tool(
        description = "Restart processes (stop, then start); update_env recomputes their environment",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn bm2_restart_process(
        &self,
        Parameters(a): Parameters<RestartArgs>,
    ) -> Result<CallToolResult, McpError> {
        let req = RestartRequest {
            targets: vec![a.process],
            update_env: a.update_env.then(|| std::env::vars().collect()),
            toggle_watch: false,
        };
        Ok(acted(self.client.restart_with(&req).await, false))
    }

    #[tool(
        description = "Reload processes without downtime: each instance's new process takes over once ready",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn bm2_reload_process(
        &self,
        Parameters(a): Parameters<ProcessArg>,
    ) -> Result<CallToolResult, McpError> {
        let req = ReloadRequest {
            targets: vec![a.process],
            ..ReloadRequest::default()
        };
        Ok(acted(self.client.reload(&req).await, false))
    }

    #[tool(
        description = "Stop processes (they stay in the list, stopped)",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn bm2_stop_process(
        &self,
        Parameters(a): Parameters<ProcessArg>,
    ) -> Result<CallToolResult, McpError> {
        Ok(acted(self.client.stop(vec![a.process]).await, false))
    }

    #[tool(
        description = "Stop processes and remove them from bm2",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            open_world_hint = false
        )
    )]
    async fn bm2_delete_process(
        &self,
        Parameters(a): Parameters<ProcessArg>,
    ) -> Result<CallToolResult, McpError> {
        Ok(match self.client.delete(vec![a.process]).await {
            Ok(r) if r.processes.is_empty() && !r.errors.is_empty() => errors(&r.errors),
            Ok(r) => CallToolResult::structured(json!({
                "deleted": r.processes.iter().map(|p| p.id).collect::<Vec<_>>(),
            })),
            Err(e) => failure(&e),
        })
    }

    #[tool(
        description = "Set the number of instances of an app: N, \"+N\" or \"-N\"",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn bm2_scale_process(
        &self,
        Parameters(a): Parameters<ScaleArgs>,
    ) -> Result<CallToolResult, McpError> {
        let n = match a.instances {
            Instances::Count(n) => n.to_string(),
            Instances::Text(t) => t,
        };
        Ok(acted(self.client.scale(&a.app, &n).await, false))
    }

    #[tool(
        description = "Empty the log files of a process (of every app when none is given)",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn bm2_flush_logs(
        &self,
        Parameters(a): Parameters<OptionalProcess>,
    ) -> Result<CallToolResult, McpError> {
        Ok(
            match self.client.flush(a.process.into_iter().collect()).await {
                Ok(r) => CallToolResult::structured(json!({ "files": r.files })),
                Err(e) => failure(&e),
            },
        )
    }

    #[tool(
        description = "Reopen every log file (after logrotate moved them)",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn bm2_reload_logs(&self) -> Result<CallToolResult, McpError> {
        Ok(match self.client.reload_logs().await {
            Ok(r) => CallToolResult::structured(json!({ "files": r.files })),
            Err(e) => failure(&e),
        })
    }

    #[tool(
        description = "Save the process list, to be restored by `bm2 resurrect` and at boot",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn bm2_save(&self) -> Result<CallToolResult, McpError> {
        Ok(match self.client.save().await {
            Ok(r) => CallToolResult::structured(json!({ "path": r.path, "count": r.count })),
            Err(e) => failure(&e),
        })
    }

    #[tool(
        description = "The last lines of a process's logs (default 50, at most 1000), optionally filtered by a substring or a regex, from out, err or both",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn bm2_tail_logs(
        &self,
        Parameters(a): Parameters<TailArgs>,
    ) -> Result<CallToolResult, McpError> {
        Ok(match tail(&self.client, &a).await {
            Ok(lines) => CallToolResult::structured(json!({ "lines": lines })),
            Err(r) => r,
        })
    }

    #[tool(
        description = "CPU, memory and other figures of every process (or one) and of the machine; with history_seconds, also the samples of that period",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn bm2_get_metrics(
        &self,
        Parameters(a): Parameters<MetricsArgs>,
    ) -> Result<CallToolResult, McpError> {
        Ok(match metrics(&self.client, &a).await {
            Ok(v) => CallToolResult::structured(v),
            Err(r) => r,
        })
    }

    #[tool(
        description = "The environment of a process; values of secret-looking variables (SECRET, TOKEN, PASSWORD, API_KEY, PRIVATE, CREDENTIAL, AUTH...) are \"***\" unless reveal_secrets",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn bm2_get_env(
        &self,
        Parameters(a): Parameters<EnvArgs>,
    ) -> Result<CallToolResult, McpError> {
        Ok(match self.client.describe(vec![a.process]).await {
            Ok(d) => match d.processes.first() {
                Some(p) => CallToolResult::structured(json!({
                    "env": if a.reveal_secrets { p.env.clone() } else { mask_env(&p.env) },
                })),
                None => refusal("no process matches"),
            },
            Err(e) => failure(&e),
        })
    }

    #[tool(
        description = "The daemon (pid, version, uptime), how many processes are in each status, and the processes that are not healthy, with why",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn bm2_health(&self) -> Result<CallToolResult, McpError> {
        let ping = match self.client.ping().await {
            Ok(p) => p,
            Err(e) => return Ok(failure(&e)),
        };
        Ok(match self.client.details().await {
            Ok(details) => CallToolResult::structured(health(&ping, &details)),
            Err(e) => failure(&e),
        })
    }

    #[tool(
        description = "Stop every process and the bm2 daemon (the next tool call starts a new daemon, without the apps)",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            open_world_hint = false
        )
    )]
    async fn bm2_kill_daemon(&self) -> Result<CallToolResult, McpError> {
        Ok(match self.client.kill().await {
            Ok(_) => CallToolResult::structured(json!({ "killed": true })),
            Err(e) => failure(&e),
        })
    }
}

impl Bm2Mcp {
    /// Starts the apps of an ecosystem file, as `bm2 start <file>` does.
    async fn start_file(
        &self,
        file: &str,
        a: &StartArgs,
    ) -> anyhow::Result<Result<bm2_types::ActionResponse, ClientError>> {
        // "-" would read the config from stdin: the MCP channel itself in stdio mode.
        anyhow::ensure!(file != "-", "file: give the path of an ecosystem file");
        let file = file.to_string();
        let env: Vec<String> = a.env_name.iter().cloned().collect();
        let opts = super::super::ecosystem::FileOptions {
            only: a
                .only
                .iter()
                .flat_map(|o| o.split(','))
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            ..Default::default()
        };
        // A JavaScript config runs an interpreter: off the runtime's thread.
        let loaded = tokio::task::spawn_blocking(move || {
            super::super::ecosystem::load(&file, &env, &opts, bm2_config::RawApp::default())
                .and_then(|l| l.ok_or_else(|| anyhow::anyhow!("{file}: not an ecosystem file (.js, .cjs, .mjs, .ts, .json, .yaml, .yml, .toml)")))
        })
        .await??;
        let req = super::super::ecosystem::request(loaded, bm2_types::IfExists::Restart, true)?;
        Ok(self.client.start(&req).await)
    }

    /// Whether `name` is a tool this server has but refuses, being read-only.
    fn refused(&self, name: &str) -> bool {
        self.read_only && !READ_ONLY_TOOLS.contains(&name) && Self::tool_router().has_route(name)
    }

    pub(super) fn info() -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_resources_subscribe()
                .build(),
        )
        .with_server_info(Implementation::new("bm2", bm2_types::VERSION))
        .with_instructions(
            "bm2 is a process manager. Tools list, describe, start, restart, reload, stop, delete and scale the apps it manages, read their logs, metrics and environment, and report health. Resources: bm2://processes, bm2://process/{id}, bm2://logs/{id}.".to_string(),
        )
    }

    pub(super) async fn call(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if self.refused(&request.name) {
            return Err(McpError::invalid_params(
                format!(
                    "{} is not available: this bm2 MCP server is read-only (--read-only)",
                    request.name
                ),
                None,
            ));
        }
        let tcc = ToolCallContext::new(self, request, context);
        self.tool_router.call(tcc).await
    }

    pub(super) fn tools(&self) -> Vec<rmcp::model::Tool> {
        self.tool_router.list_all()
    }

    pub(super) fn tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        self.tool_router.get(name).cloned()
    }
}

/// The app options of a `script` start, with PM2's key names.
fn script_app(a: &StartArgs) -> Value {
    let mut app = serde_json::Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            app.insert(k.into(), v);
        }
    };
    put("script", a.script.clone().map(Value::from));
    put("name", a.name.clone().map(Value::from));
    put("args", a.args.clone().map(Value::from));
    put("cwd", a.cwd.clone().map(Value::from));
    put("instances", a.instances.map(Value::from));
    put("exec_mode", a.exec_mode.clone().map(Value::from));
    put("interpreter", a.interpreter.clone().map(Value::from));
    put("env", a.env.clone().map(|e| json!(e)));
    Value::Object(app)
}

/// One process, as the tools show it.
pub fn row(p: &ProcSummary) -> Value {
    let uptime_ms = match (p.status, p.started_at_ms) {
        (ProcStatus::Online, Some(at)) => now_ms().saturating_sub(at),
        _ => 0,
    };
    json!({
        "id": p.id,
        "name": p.instance_name,
        "namespace": p.namespace,
        "status": p.status.as_str(),
        "pid": p.pid,
        "cpu": p.cpu,
        "memory": p.memory,
        "restarts": p.restarts,
        "uptime_ms": uptime_ms,
    })
}

/// The process list, as the tools show it.
pub fn rows(list: &[ProcSummary]) -> Vec<Value> {
    list.iter().map(row).collect()
}

/// A process in detail, its secrets masked.
pub fn detail(p: &ProcDetail) -> Value {
    let mut p = p.clone();
    p.env = mask_env(&p.env);
    p.spec.env = mask_env(&p.spec.env);
    serde_json::to_value(&p).unwrap_or(Value::Null)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// True for a variable whose value should not be shown: its name says secret.
pub fn is_secret(key: &str) -> bool {
    const WORDS: &[&str] = &[
        "SECRET",
        "TOKEN",
        "PASSWORD",
        "PASSWD",
        "PASS",
        "APIKEY",
        "API_KEY",
        "PRIVATE",
        "CREDENTIAL",
        "AUTH",
    ];
    let key = key.to_ascii_uppercase();
    WORDS.iter().any(|w| key.contains(w))
}

/// The environment with secret values replaced by `***`.
pub fn mask_env(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    env.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                if is_secret(k) {
                    "***".to_string()
                } else {
                    v.clone()
                },
            )
        })
        .collect()
}

/// A daemon error as a tool error: its message, and its hint on a second line.
pub fn failure(e: &ClientError) -> CallToolResult {
    match e {
        ClientError::Api(e) => CallToolResult::error(vec![ContentBlock::text(api_text(e))]),
        other => CallToolResult::error(vec![ContentBlock::text(other.to_string())]),
    }
}

fn api_text(e: &bm2_types::ApiError) -> String {
    match &e.hint {
        Some(h) => format!("{}\nhint: {h}", e.message),
        None => e.message.clone(),
    }
}

fn errors(errs: &[bm2_types::ApiError]) -> CallToolResult {
    let text: Vec<String> = errs.iter().map(api_text).collect();
    CallToolResult::error(vec![ContentBlock::text(text.join("\n"))])
}

/// A request the tool cannot carry out, said in words.
fn refusal(message: &str) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.to_string())])
}

/// The answer of an action: the processes acted on (and the notices, for a start).
fn acted(res: Result<bm2_types::ActionResponse, ClientError>, notices: bool) -> CallToolResult {
    match res {
        Ok(r) if r.processes.is_empty() && !r.errors.is_empty() => errors(&r.errors),
        Ok(r) => {
            let mut out = json!({ "processes": rows(&r.processes) });
            if notices {
                out["notices"] = json!(r.notices);
            }
            if !r.errors.is_empty() {
                out["errors"] = json!(r.errors.iter().map(api_text).collect::<Vec<_>>());
            }
            CallToolResult::structured(out)
        }
        Err(e) => failure(&e),
    }
}

/// What keeps a line in `bm2_tail_logs`.
pub enum LineFilter {
    /// Every line.
    All,
    /// Lines containing this.
    Text(String),
    /// Lines matching this.
    Regex(regex::Regex),
}

impl LineFilter {
    /// The filter of a `filter`/`regex` pair.
    pub fn new(filter: Option<&str>, regex: bool) -> Result<LineFilter, String> {
        match filter {
            None | Some("") => Ok(LineFilter::All),
            Some(f) if regex => regex::Regex::new(f)
                .map(LineFilter::Regex)
                .map_err(|e| format!("filter: not a regular expression: {e}")),
            Some(f) => Ok(LineFilter::Text(f.to_string())),
        }
    }

    /// Whether `line` is kept.
    pub fn keeps(&self, line: &str) -> bool {
        match self {
            LineFilter::All => true,
            LineFilter::Text(t) => line.contains(t.as_str()),
            LineFilter::Regex(r) => r.is_match(line),
        }
    }
}

/// The last lines of a process's logs.
pub async fn tail(client: &Client, a: &TailArgs) -> Result<Vec<Value>, CallToolResult> {
    let want = a.lines.unwrap_or(50).clamp(1, MAX_LINES);
    let filter = LineFilter::new(a.filter.as_deref(), a.regex).map_err(|e| refusal(&e))?;
    let req = LogsRequest {
        targets: vec![a.process.clone()],
        // A filter looks through more lines than it returns.
        lines: if matches!(filter, LineFilter::All) {
            want
        } else {
            MAX_LINES
        },
        follow: false,
        out: a.stream != StreamChoice::Err,
        err: a.stream != StreamChoice::Out,
    };
    let mut stream = client.logs(&req).await.map_err(|e| failure(&e))?;
    let mut lines = Vec::new();
    while let Some(ev) = stream.next().await {
        let ev = ev.map_err(|e| failure(&e))?;
        if ev.skipped.is_some() || !filter.keeps(&ev.line) {
            continue;
        }
        lines.push(json!({ "process": ev.id, "stream": ev.stream, "line": ev.line }));
    }
    let extra = lines.len().saturating_sub(want);
    lines.drain(..extra);
    Ok(lines)
}

async fn metrics(client: &Client, a: &MetricsArgs) -> Result<Value, CallToolResult> {
    let ids: Option<Vec<u32>> = match &a.process {
        Some(p) => {
            let d = client
                .describe(vec![p.clone()])
                .await
                .map_err(|e| failure(&e))?;
            Some(d.processes.iter().map(|p| p.summary.id).collect())
        }
        None => None,
    };
    let mut snap = client.metrics().await.map_err(|e| failure(&e))?;
    if let Some(ids) = &ids {
        snap.processes.retain(|p| ids.contains(&p.id));
    }
    let mut out = serde_json::to_value(&snap).unwrap_or(Value::Null);
    if let Some(seconds) = a.history_seconds {
        let only = match ids.as_deref() {
            Some([one]) => Some(*one),
            _ => None,
        };
        let mut h = client
            .metrics_history(seconds, only)
            .await
            .map_err(|e| failure(&e))?;
        if let Some(ids) = &ids {
            h.processes.retain(|p| ids.contains(&p.id));
        }
        out["history"] = serde_json::to_value(&h).unwrap_or(Value::Null);
    }
    Ok(out)
}

/// The health report: the daemon, counts by status, and what is not healthy.
pub fn health(ping: &bm2_types::PingResponse, details: &[ProcDetail]) -> Value {
    let mut counts = BTreeMap::<&str, usize>::new();
    for s in [
        "online",
        "stopped",
        "errored",
        "launching",
        "stopping",
        "waiting restart",
    ] {
        counts.insert(s, 0);
    }
    let mut unhealthy = Vec::new();
    for d in details {
        let p = &d.summary;
        *counts.entry(p.status.as_str()).or_default() += 1;
        let reason = match p.status {
            ProcStatus::Errored => {
                Some(d.status_reason.clone().unwrap_or_else(|| "errored".into()))
            }
            ProcStatus::WaitingRestart => Some(format!(
                "exited ({}), waiting to restart; {} restarts",
                d.last_exit
                    .as_ref()
                    .map_or_else(|| "no exit recorded".to_string(), ToString::to_string),
                p.restarts
            )),
            ProcStatus::Online if p.unstable_restarts > 0 => Some(format!(
                "unstable: {} quick restarts in a row",
                p.unstable_restarts
            )),
            ProcStatus::Online => d
                .health
                .as_ref()
                .filter(|h| h.consecutive_fails > 0)
                .map(|h| {
                    format!(
                        "health check failing ({}/{}): {}",
                        h.consecutive_fails,
                        h.max_fails,
                        h.last_error.as_deref().unwrap_or("no detail")
                    )
                }),
            _ => None,
        };
        if let Some(reason) = reason {
            unhealthy.push(json!({ "id": p.id, "name": p.instance_name, "status": p.status.as_str(), "reason": reason }));
        }
    }
    json!({
        "daemon": { "pid": ping.pid, "version": ping.version, "uptime_ms": ping.uptime_ms },
        "counts": counts,
        "unhealthy": unhealthy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_variables_are_masked() {
        let env: BTreeMap<String, String> = [
            ("DB_PASSWORD", "hunter2"),
            ("api_key", "k"),
            ("APIKEY", "k"),
            ("GITHUB_TOKEN", "t"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("PRIVATE_KEY_PEM", "p"),
            ("Authorization", "a"),
            ("GOOGLE_CREDENTIALS", "c"),
            ("SMTP_PASS", "p"),
            ("PASSWD", "p"),
            ("PATH", "/usr/bin"),
            ("PORT", "3000"),
            ("NODE_ENV", "production"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let masked = mask_env(&env);
        for k in [
            "DB_PASSWORD",
            "api_key",
            "APIKEY",
            "GITHUB_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "PRIVATE_KEY_PEM",
            "Authorization",
            "GOOGLE_CREDENTIALS",
            "SMTP_PASS",
            "PASSWD",
        ] {
            assert_eq!(masked[k], "***", "{k}");
        }
        assert_eq!(masked["PATH"], "/usr/bin");
        assert_eq!(masked["PORT"], "3000");
        assert_eq!(masked["NODE_ENV"], "production");
    }

    #[test]
    fn read_only_servers_list_only_read_only_tools() {
        let home = bm2_types::Home::at(std::env::temp_dir().join("bm2-mcp-unit-none"));
        let client = Arc::new(Client::new(home));
        let all = Bm2Mcp::new(client.clone(), false);
        let names: Vec<String> = all.tools().iter().map(|t| t.name.to_string()).collect();
        assert_eq!(names.len(), 16, "{names:?}");
        assert!(!all.refused("bm2_stop_process"));
        let ro = Bm2Mcp::new(client, true);
        let mut names: Vec<String> = ro.tools().iter().map(|t| t.name.to_string()).collect();
        names.sort();
        let mut want: Vec<String> = READ_ONLY_TOOLS.iter().map(ToString::to_string).collect();
        want.sort();
        assert_eq!(names, want);
        assert!(ro.refused("bm2_stop_process"));
        assert!(!ro.refused("bm2_list_processes"));
        assert!(!ro.refused("no_such_tool"));
        for t in all.tools() {
            let a = t.annotations.clone().unwrap();
            let ro = READ_ONLY_TOOLS.contains(&t.name.as_ref());
            assert_eq!(a.read_only_hint, Some(ro), "{}", t.name);
            let destructive = ["bm2_stop_process", "bm2_delete_process", "bm2_kill_daemon"]
                .contains(&t.name.as_ref());
            if !ro {
                assert_eq!(a.destructive_hint, Some(destructive), "{}", t.name);
            }
        }
    }

    #[test]
    fn tool_arguments_parse() {
        let s: ScaleArgs = serde_json::from_value(json!({"app": "api", "instances": 3})).unwrap();
        assert!(matches!(s.instances, Instances::Count(3)));
        let s: ScaleArgs =
            serde_json::from_value(json!({"app": "api", "instances": "+2"})).unwrap();
        assert!(matches!(s.instances, Instances::Text(ref t) if t == "+2"));
        let t: TailArgs = serde_json::from_value(json!({"process": "api"})).unwrap();
        assert_eq!(
            (t.lines, t.stream, t.regex),
            (None, StreamChoice::Both, false)
        );
        let t: TailArgs = serde_json::from_value(
            json!({"process": "0", "stream": "err", "filter": "x", "regex": true}),
        )
        .unwrap();
        assert_eq!(t.stream, StreamChoice::Err);
        assert!(
            serde_json::from_value::<TailArgs>(json!({"process": "0", "stream": "all"})).is_err()
        );
        let a = StartArgs {
            script: Some("app.js".into()),
            name: Some("api".into()),
            instances: Some(2),
            env: Some([("A".to_string(), "1".to_string())].into()),
            ..StartArgs::default()
        };
        assert_eq!(
            script_app(&a),
            json!({"script": "app.js", "name": "api", "instances": 2, "env": {"A": "1"}})
        );
    }

    #[test]
    fn line_filters_keep_what_they_say() {
        assert!(LineFilter::new(None, false).unwrap().keeps("x"));
        let f = LineFilter::new(Some("err"), false).unwrap();
        assert!(f.keeps("an error") && !f.keeps("fine"));
        let f = LineFilter::new(Some("^GET /[a-z]+$"), true).unwrap();
        assert!(f.keeps("GET /health") && !f.keeps("POST /health"));
        // Without `regex`, the filter is plain text.
        assert!(LineFilter::new(Some("a.c"), false).unwrap().keeps("xa.cx"));
        assert!(!LineFilter::new(Some("a.c"), false).unwrap().keeps("abc"));
        assert!(LineFilter::new(Some("("), true).is_err());
    }

    #[test]
    fn api_errors_read_as_message_and_hint() {
        let e =
            bm2_types::ApiError::new(bm2_types::ErrorCode::UnknownTarget, "no process named nope")
                .with_hint("see bm2_list_processes");
        let r = failure(&ClientError::Api(e));
        assert_eq!(r.is_error, Some(true));
        let text = serde_json::to_value(&r.content).unwrap().to_string();
        assert!(
            text.contains("no process named nope\\nhint: see bm2_list_processes"),
            "{text}"
        );
    }
}
