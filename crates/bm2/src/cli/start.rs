//! `bm2 start`: flags to an [`AppSpec`], then register and start.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use bm2_client::Client;
use bm2_types::{AppSpec, ByteSize, ExecMode, IfExists, Instances, StartRequest};
use clap::Args;

use super::report;

/// Options of `bm2 start`, named as in PM2.
#[allow(clippy::doc_markdown)] // doc comments are the --help text
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Script, binary or command to run (a file, or a program on PATH), an ecosystem file, or - for a JSON config on stdin
    pub script: String,
    /// Process name (default: the script's file name without extension; at most 180 bytes)
    #[arg(short = 'n', long)]
    pub name: Option<String>,
    /// Working directory (default: the current directory)
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Variable for the app (KEY=VAL, repeatable); with an ecosystem file, a name selects its env_<name> blocks
    #[arg(long = "env", value_name = "KEY=VAL|NAME")]
    pub env: Vec<String>,
    /// Interpreter to run the script with (`none` runs it directly; default: by extension)
    #[arg(long)]
    pub interpreter: Option<String>,
    /// Arguments for the interpreter, space-separated
    #[arg(long, allow_hyphen_values = true, value_name = "ARGS")]
    pub interpreter_args: Option<String>,
    /// Arguments for the Node/Bun runtime, space-separated
    #[arg(long, allow_hyphen_values = true, value_name = "ARGS")]
    pub node_args: Option<String>,
    /// Namespace for grouping processes
    #[arg(long)]
    pub namespace: Option<String>,
    /// Number of instances: N, `max` (one per CPU), 0 (same), -N (CPUs minus N)
    #[arg(short = 'i', long, allow_hyphen_values = true)]
    pub instances: Option<Instances>,
    /// fork or cluster [default: cluster for Node/Bun scripts given -i, else fork]
    #[arg(long, value_name = "MODE", value_parser = ["fork", "cluster", "fork_mode", "cluster_mode"])]
    pub exec_mode: Option<String>,
    /// Port of the app: in cluster mode bm2 listens on it and balances connections across the
    /// instances (each gets a private PORT); in fork mode instance i gets PORT = port + i
    #[arg(long)]
    pub port: Option<u16>,
    /// Address the cluster balancer listens on [default: all interfaces]
    #[arg(long, value_name = "HOST")]
    pub listen_host: Option<String>,
    /// How the cluster balancer picks an instance: round-robin or least-conn
    #[arg(long, value_name = "STRATEGY")]
    pub lb: Option<bm2_types::LoadBalancing>,
    /// An instance is ready when it says so: process.send('ready') (Node/Bun) or READY=1 on $NOTIFY_SOCKET
    #[arg(long)]
    pub wait_ready: bool,
    /// Milliseconds to wait for an instance to be ready, at most 1 hour [default: 3000]
    #[arg(long, value_name = "MS")]
    pub listen_timeout: Option<u64>,
    /// Stop the app with a `shutdown` message on its IPC channel (Node/Bun) before SIGKILL
    #[arg(long)]
    pub shutdown_with_message: bool,
    /// Fork mode with --port: bm2 holds each instance's listening socket and hands it to the app
    /// by systemd socket activation (LISTEN_FDS=1, fd 3), so that reload has no gap
    #[arg(long)]
    pub socket_activation: bool,
    /// Consecutive unstable restarts before giving up [default: 16]
    #[arg(long)]
    pub max_restarts: Option<u32>,
    /// Milliseconds a process must run for its start to count as stable, at most 1 hour [default: 1000]
    #[arg(long, value_name = "MS")]
    pub min_uptime: Option<u64>,
    /// Milliseconds to wait before restarting a crashed process, at most 1 hour [default: 0]
    #[arg(long, value_name = "MS")]
    pub restart_delay: Option<u64>,
    /// Exponential backoff between unstable restarts, starting at MS (x1.5 each time, up to 15 s)
    #[arg(long, value_name = "MS", num_args = 0..=1, default_missing_value = "100")]
    pub exp_backoff_restart_delay: Option<u64>,
    /// Milliseconds between the stop signal and SIGKILL, at most 1 hour [default: 5000]
    #[arg(long, value_name = "MS")]
    pub kill_timeout: Option<u64>,
    /// Signal sent first on stop [default: SIGINT]
    #[arg(long, value_name = "SIGNAL")]
    pub kill_signal: Option<bm2_types::Signal>,
    /// Do not restart the process when it exits
    #[arg(long)]
    pub no_autorestart: bool,
    /// Exit codes that mean "done, do not restart" (e.g. --stop-exit-codes 0 3)
    #[arg(long, num_args = 1.., value_delimiter = ',', allow_hyphen_values = true)]
    pub stop_exit_codes: Vec<i32>,
    /// Restart when the process tree uses more memory than this (e.g. 512M, 1G)
    #[arg(long, value_name = "SIZE")]
    pub max_memory_restart: Option<ByteSize>,
    /// Register the app without starting it
    #[arg(long)]
    pub no_autostart: bool,
    /// Run as this user (name or uid; the daemon must run as root)
    #[arg(long)]
    pub uid: Option<String>,
    /// Run as this group (name or gid; the daemon must run as root)
    #[arg(long)]
    pub gid: Option<String>,
    /// Stdout log file (`/dev/null` for none) [default: $BM2_HOME/logs/<name>-out.log]
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<String>,
    /// Stderr log file (`/dev/null` for none) [default: $BM2_HOME/logs/<name>-error.log]
    #[arg(short = 'e', long = "error", value_name = "FILE")]
    pub error: Option<String>,
    /// Also write both streams to one file [default FILE: $BM2_HOME/logs/<name>.log]
    #[arg(short = 'l', long = "log", value_name = "FILE", num_args = 0..=1, default_missing_value = "")]
    pub log: Option<String>,
    /// Instances share one set of log files
    #[arg(long)]
    pub merge_logs: bool,
    /// Prefix each log line with a timestamp
    #[arg(long)]
    pub time: bool,
    /// Timestamp format of log lines, with moment.js tokens (e.g. "YYYY-MM-DD HH:mm:ss Z")
    #[arg(long, value_name = "FORMAT")]
    pub log_date_format: Option<String>,
    /// `json`: one JSON object per log line (timestamp, stream, app, id)
    #[arg(long, value_name = "TYPE", value_parser = ["json", "raw"])]
    pub log_type: Option<String>,
    /// Write no log files
    #[arg(long)]
    pub disable_logs: bool,
    /// Rotate a log file before it grows past this size [default: 10M]
    #[arg(long, value_name = "SIZE")]
    pub log_max_size: Option<ByteSize>,
    /// Rotated log files to keep [default: 5]
    #[arg(long, value_name = "N")]
    pub log_retain: Option<u32>,
    /// Gzip rotated log files
    #[arg(long)]
    pub log_compress: bool,
    /// Also rotate logs on a cron schedule (e.g. "0 0 * * *" for daily at midnight)
    #[arg(long, value_name = "CRON")]
    pub log_rotate_interval: Option<String>,
    /// Restart on a cron schedule: 5 fields, or 6 with seconds first (e.g. "0 3 * * *"), in the
    /// app's TZ or local time; a stopped app is not started by it
    #[arg(long, visible_alias = "cron-restart", value_name = "CRON")]
    pub cron: Option<String>,
    /// Restart when files change under PATHS, relative to the app's directory (comma-separated or
    /// repeated; no value: the app's directory)
    #[arg(long, value_name = "PATHS", num_args = 0..=1, default_missing_value = ".", value_delimiter = ',', action = clap::ArgAction::Append)]
    pub watch: Vec<String>,
    /// Globs never watched: a name at any depth (node_modules, *.log) or a path from the app's
    /// directory (client/img); comma-separated or repeated [default: node_modules,.git,.bm2,logs]
    #[arg(long, value_name = "GLOBS", value_delimiter = ',', action = clap::ArgAction::Append)]
    pub ignore_watch: Vec<String>,
    /// Milliseconds without further changes before a change restarts the app [default: 1000]
    #[arg(long, value_name = "MS")]
    pub watch_delay: Option<u64>,
    /// Probe this http:// URL; 2xx and 3xx answers are healthy, failures in a row restart the app
    #[arg(long, value_name = "URL")]
    pub health_check_url: Option<String>,
    /// Probe that HOST:PORT accepts TCP connections (for apps without HTTP)
    #[arg(long, value_name = "HOST:PORT")]
    pub health_check_tcp: Option<String>,
    /// Run this shell command in the app's directory and environment; healthy when it exits 0
    #[arg(long, value_name = "COMMAND", allow_hyphen_values = true)]
    pub health_check_cmd: Option<String>,
    /// Milliseconds between health probes; a new process is first probed after this, or after
    /// --min-uptime when longer [default: 30000]
    #[arg(long, value_name = "MS")]
    pub health_check_interval: Option<u64>,
    /// Milliseconds a health probe may take [default: 5000]
    #[arg(long, value_name = "MS")]
    pub health_check_timeout: Option<u64>,
    /// Failed health probes in a row that restart the app [default: 3]
    #[arg(long, value_name = "N")]
    pub health_check_max_fails: Option<u32>,
    #[command(flatten)]
    pub file: super::ecosystem::FileOptions,
    /// Start even if an app of this name is already managed
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Arguments passed to the script
    #[arg(last = true)]
    pub args: Vec<String>,
}

pub async fn run(client: &Client, args: StartArgs) -> anyhow::Result<ExitCode> {
    let here = std::env::current_dir()?;
    if let Some(loaded) = super::ecosystem::load(&args.script, &args.env, &args.file)? {
        let if_exists = if args.force {
            IfExists::Fail
        } else {
            IfExists::Restart
        };
        let mut loaded = loaded;
        if args.force {
            // --force starts another copy of each app, as in PM2.
            check_triggers(&loaded.apps)?;
            let req = StartRequest {
                apps: std::mem::take(&mut loaded.apps),
                client_env: std::env::vars().collect(),
                force: true,
                if_exists,
                update_env: false,
            };
            let res = client.start(&req).await;
            return report(client, res).await;
        }
        return super::ecosystem::start(client, loaded, if_exists, args.file.update_env).await;
    }
    // As in PM2, `start <name|id>` of a managed app that is not a file restarts it.
    if !here.join(&args.script).is_file() {
        let list = client.list().await.map_err(super::api_error)?;
        let t = args.script.as_str();
        if list
            .iter()
            .any(|p| p.name == t || p.instance_name == t || p.id.to_string() == t)
        {
            let res = client.restart(vec![args.script.clone()]).await;
            return report(client, res).await;
        }
    }
    let (spec, force) = to_spec(args, &here)?;
    let req = StartRequest {
        apps: vec![spec],
        client_env: std::env::vars().collect(),
        force,
        if_exists: IfExists::Fail,
        update_env: false,
    };
    let res = client.start(&req).await;
    report(client, res).await
}

/// Builds the app's options from the flags; relative paths are taken from `here`.
pub fn to_spec(a: StartArgs, here: &Path) -> anyhow::Result<(AppSpec, bool)> {
    let defaults = AppSpec::default();
    let cwd = match a.cwd {
        Some(dir) => absolute(here, &dir),
        None => here.to_path_buf(),
    };
    let script = resolve_script(&a.script, here, &cwd);
    let name = a
        .name
        .unwrap_or_else(|| bm2_config::resolve::default_name(&a.script));
    let (env_name, vars) = super::ecosystem::split_env(&a.env)?;
    if let Some(name) = env_name {
        bail!(
            "--env {name}: an environment name selects the env_{name} blocks of an ecosystem file; for a variable write --env KEY=VALUE"
        );
    }
    let mut env = match &a.file.env_file {
        Some(f) => bm2_config::resolve::read_env_file(&here.join(f), &f.display().to_string())?,
        None => std::collections::BTreeMap::new(),
    };
    env.extend(vars);
    let split = |s: Option<String>| -> Vec<String> {
        s.map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    };
    let mode = exec_mode(
        a.exec_mode.as_deref(),
        a.instances.is_some(),
        &a.script,
        a.interpreter.as_deref(),
    );
    let spec = AppSpec {
        name,
        script,
        args: a.args,
        cwd: Some(cwd),
        env,
        interpreter: a.interpreter,
        interpreter_args: split(a.interpreter_args),
        node_args: split(a.node_args),
        namespace: a.namespace.unwrap_or(defaults.namespace),
        instances: a.instances.unwrap_or(defaults.instances),
        exec_mode: mode,
        port: a.port,
        listen_host: a.listen_host,
        lb: a.lb.unwrap_or_default(),
        wait_ready: a.wait_ready,
        listen_timeout: a.listen_timeout.unwrap_or(defaults.listen_timeout),
        shutdown_with_message: a.shutdown_with_message,
        socket_activation: a.socket_activation,
        autorestart: !a.no_autorestart,
        max_restarts: a.max_restarts.unwrap_or(defaults.max_restarts),
        min_uptime: a.min_uptime.unwrap_or(defaults.min_uptime),
        restart_delay: a.restart_delay.unwrap_or(defaults.restart_delay),
        exp_backoff_restart_delay: a.exp_backoff_restart_delay,
        kill_timeout: a.kill_timeout.unwrap_or(defaults.kill_timeout),
        kill_signal: a.kill_signal.unwrap_or(defaults.kill_signal),
        stop_exit_codes: a.stop_exit_codes,
        max_memory_restart: a.max_memory_restart,
        autostart: !a.no_autostart,
        uid: a.uid,
        gid: a.gid,
        out_file: a.output.map(|p| bm2_config::resolve::log_path(here, p)),
        error_file: a.error.map(|p| bm2_config::resolve::log_path(here, p)),
        log_file: a.log.map(|p| bm2_config::resolve::log_path(here, p)),
        merge_logs: a.merge_logs,
        time: a.time,
        log_date_format: a.log_date_format,
        log_type: a.log_type,
        disable_logs: a.disable_logs,
        log_max_size: a.log_max_size,
        log_retain: a.log_retain,
        log_compress: a.log_compress.then_some(true),
        log_rotate_interval: a.log_rotate_interval,
        cron_restart: a.cron,
        watch: a.watch,
        ignore_watch: if a.ignore_watch.is_empty() {
            defaults.ignore_watch.clone()
        } else {
            a.ignore_watch
        },
        watch_delay: a.watch_delay.unwrap_or(defaults.watch_delay),
        health_check_url: a.health_check_url,
        health_check_tcp: a.health_check_tcp,
        health_check_cmd: a.health_check_cmd,
        health_check_interval: a
            .health_check_interval
            .unwrap_or(defaults.health_check_interval),
        health_check_timeout: a
            .health_check_timeout
            .unwrap_or(defaults.health_check_timeout),
        health_check_max_fails: a
            .health_check_max_fails
            .unwrap_or(defaults.health_check_max_fails),
        ..defaults
    };
    bm2_config::resolve::check_limits(&spec)?;
    check_triggers(std::slice::from_ref(&spec))?;
    Ok((spec, a.force))
}

/// Checks the health check, cron and watch options of `apps` before anything is sent to the
/// daemon: a bad value is reported with the option's name and nothing starts.
pub fn check_triggers(apps: &[AppSpec]) -> anyhow::Result<()> {
    for spec in apps {
        let tz = spec.env.get("TZ").cloned().or_else(|| {
            std::env::var("TZ")
                .ok()
                .filter(|_| spec.filter_env.keeps("TZ"))
        });
        if let Err(e) = bm2_daemon::triggers::validate(spec, tz.as_deref()) {
            bail!("app {:?}: {e}", spec.name);
        }
    }
    Ok(())
}

/// The exec mode: as given, else cluster for Node/Bun scripts started with `-i` (as PM2 does),
/// else fork.
fn exec_mode(
    given: Option<&str>,
    instances: bool,
    script: &str,
    interpreter: Option<&str>,
) -> ExecMode {
    match given {
        Some("cluster" | "cluster_mode") => ExecMode::Cluster,
        Some(_) => ExecMode::Fork,
        None => {
            let js_ext = matches!(
                Path::new(script).extension().and_then(|e| e.to_str()),
                Some("js" | "cjs" | "mjs" | "ts" | "mts" | "cts" | "tsx")
            );
            let js = match interpreter {
                Some(i) => matches!(i.rsplit('/').next(), Some("node" | "bun")),
                None => js_ext,
            };
            if instances && js {
                ExecMode::Cluster
            } else {
                ExecMode::Fork
            }
        }
    }
}

fn absolute(here: &Path, p: &Path) -> PathBuf {
    let joined = here.join(p);
    std::fs::canonicalize(&joined).unwrap_or(joined)
}

/// A script that exists as a file relative to the current directory becomes an absolute path;
/// otherwise it is resolved against `cwd` as in ecosystem files (kept as given when it is not a
/// file there either: a program looked up on PATH by the daemon).
fn resolve_script(script: &str, here: &Path, cwd: &Path) -> String {
    if here.join(script).is_file() {
        return absolute(here, Path::new(script)).display().to_string();
    }
    bm2_config::resolve::resolve_script(script, cwd)
}
