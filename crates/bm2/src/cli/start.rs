//! `bm2 start`: flags turned into the keys an ecosystem file gives ([`RawApp`]) and resolved by
//! bm2-config like a file's, then registered and started.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use bm2_client::Client;
use bm2_config::forms::{
    Balancing, Codes, ExecMode as ModeForm, List, LogFile, Millis, Number, Scalar, Watch, Words,
};
use bm2_config::{Loaded, RawApp};
use bm2_types::{AppSpec, ByteSize, FilterEnv, IfExists, Instances, ProcStatus, StartRequest};
use clap::Args;

use super::report;

/// Options of `bm2 start`, named as in PM2.
#[allow(clippy::doc_markdown)] // doc comments are the --help text
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Scripts, binaries or commands to run (a file, or a program on PATH), ecosystem files, names
    /// or ids of managed apps, or - for a JSON config on stdin
    #[arg(required = true, num_args = 1.., value_name = "SCRIPT")]
    pub scripts: Vec<String>,
    #[command(flatten)]
    pub app: AppFlags,
    /// Variable for the app (KEY=VAL, repeatable); with an ecosystem file, a name selects its env_<name> blocks
    #[arg(long = "env", value_name = "KEY=VAL|NAME")]
    pub env: Vec<String>,
    /// Restart when files change under PATHS, relative to the app's directory (comma-separated or
    /// repeated; no value: the app's directory)
    #[arg(long, value_name = "PATHS", num_args = 0..=1, default_missing_value = ".", value_delimiter = ',', action = clap::ArgAction::Append)]
    pub watch: Vec<String>,
    #[command(flatten)]
    pub file: super::ecosystem::FileOptions,
    /// Start even if an app of this name is already managed
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Run the daemon in the foreground in this process and stream the apps' output here, as
    /// `bm2 runtime` does (PM2's --no-daemon)
    #[arg(long)]
    pub no_daemon: bool,
}

/// The options of an app, named as in PM2: given to `start`, and to `restart` and `reload` of
/// managed apps, which apply them (as PM2 does).
#[allow(clippy::doc_markdown)] // doc comments are the --help text
#[derive(Debug, Args)]
pub struct AppFlags {
    /// Process name (default: the script's file name without extension; at most 180 bytes)
    #[arg(short = 'n', long)]
    pub name: Option<String>,
    /// Working directory (default: the current directory)
    #[arg(long)]
    pub cwd: Option<PathBuf>,
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
    /// instances (Node/Bun instances get PORT = port, other programs a private PORT); in fork
    /// mode instance i gets PORT = port + i
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
    /// Start only once these apps meet their condition: `db,cache` (each `started`), or
    /// `db:ready,migrate:completed`
    #[arg(long, value_name = "APPS", value_parser = bm2_config::forms::DependsOn::parse_list)]
    pub depends_on: Option<bm2_config::forms::DependsOn>,
    /// Milliseconds to wait for the dependencies' conditions [default: 60000]
    #[arg(long, value_name = "MS")]
    pub depends_timeout: Option<u64>,
    /// After this app restarts, restart the apps that depend on it
    #[arg(long)]
    pub restart_dependents: bool,
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
    #[arg(short = 'k', long, value_name = "MS")]
    pub kill_timeout: Option<u64>,
    /// Signal sent first on stop [default: SIGINT]
    #[arg(long, value_name = "SIGNAL")]
    pub kill_signal: Option<bm2_types::Signal>,
    /// Do not restart the process when it exits
    #[arg(long)]
    pub no_autorestart: bool,
    /// Run in fork mode even with -i (PM2's execute-command)
    #[arg(short = 'x', long)]
    pub execute_command: bool,
    /// Stop signals reach the main process only, not the rest of its process tree
    #[arg(long)]
    pub no_treekill: bool,
    /// Node: source-mapped stack traces (--enable-source-maps; the default, as in PM2)
    #[arg(long, conflicts_with = "disable_source_map_support")]
    pub source_map_support: bool,
    /// Node: no source-mapped stack traces (PM2's --disable-source-map-support)
    #[arg(long)]
    pub disable_source_map_support: bool,
    /// Keep the caller's variables out of the app: all of them without a value, else those whose
    /// names start with a given prefix (repeatable)
    #[arg(long, value_name = "PREFIX", num_args = 0..=1, default_missing_value = "", action = clap::ArgAction::Append)]
    pub filter_env: Vec<String>,
    /// Variable holding the instance index [default: NODE_APP_INSTANCE]
    #[arg(long, value_name = "NAME")]
    pub instance_var: Option<String>,
    /// A numeric variable increased by the instance index in each instance (e.g. PORT)
    #[arg(long, value_name = "NAME")]
    pub increment_var: Option<String>,
    /// With --env <name> and an ecosystem file: append -<name> to each app's name
    #[arg(long)]
    pub append_env_to_name: bool,
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
    #[arg(long, visible_alias = "user")]
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
    #[arg(short = 'c', long, visible_alias = "cron-restart", value_name = "CRON")]
    pub cron: Option<String>,
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
    /// Arguments passed to the script
    #[arg(last = true)]
    pub args: Vec<String>,
}

pub async fn run(client: &Client, args: StartArgs) -> anyhow::Result<ExitCode> {
    let here = std::env::current_dir()?;
    if args.scripts.len() > 1 && args.app.name.is_some() {
        bail!("--name names one app: start the scripts one at a time to name each");
    }
    let overrides = RawApp {
        watch: (!args.watch.is_empty()).then(|| Watch(args.watch.clone())),
        ..flags(&args.app, &here)
    };
    let mut code = ExitCode::SUCCESS;
    for script in &args.scripts {
        if start_one(client, &args, script, &overrides, &here).await? != ExitCode::SUCCESS {
            code = ExitCode::FAILURE;
        }
    }
    Ok(code)
}

/// Starts one of the scripts of `bm2 start` (an ecosystem file, a managed app, or a new app).
async fn start_one(
    client: &Client,
    args: &StartArgs,
    script: &str,
    overrides: &RawApp,
    here: &Path,
) -> anyhow::Result<ExitCode> {
    let only_app = RawApp {
        name: None,
        ..overrides.clone()
    };
    if let Some(mut loaded) =
        super::ecosystem::load(script, &args.env, &args.file, only_app.clone())?
    {
        name_the_app(&mut loaded, args.app.name.as_deref(), script)?;
        if args.force {
            // --force starts another copy of each app, as in PM2.
            check_triggers(&loaded.apps)?;
            let req = StartRequest {
                apps: std::mem::take(&mut loaded.apps),
                client_env: super::ecosystem::client_env(&loaded),
                force: true,
                if_exists: IfExists::Fail,
                update_env: false,
            };
            let res = client.start(&req).await;
            return report(client, res).await;
        }
        // Apps of the file already managed are restarted with the file's environment, as PM2's
        // `start <file>` does (it restarts them with `updateEnv`).
        return super::ecosystem::start(client, loaded, IfExists::Restart, true).await;
    }
    // As in PM2, `start <name|id>` of a managed app that is not a file restarts it, with the
    // options given applied.
    if !here.join(script).is_file() {
        let list = client.list().await.map_err(super::api_error)?;
        if list
            .iter()
            .any(|p| p.name == script || p.instance_name == script || p.id.to_string() == script)
        {
            if *overrides == RawApp::default() {
                let res = client.restart(vec![script.to_string()]).await;
                return report(client, res).await;
            }
            let targets = [script.to_string()];
            return apply(
                client,
                &targets,
                overrides,
                IfExists::Restart,
                args.file.update_env,
            )
            .await;
        }
    }
    let spec = to_spec(args, script, overrides, here)?;
    // `start <script>` of a managed app of that script that is stopped starts it (PM2).
    let list = client.list().await.map_err(super::api_error)?;
    let stopped = list.iter().any(|p| {
        p.name == spec.name && matches!(p.status, ProcStatus::Stopped | ProcStatus::Errored)
    });
    let same_script = stopped
        && client
            .describe(vec![spec.name.clone()])
            .await
            .is_ok_and(|d| d.processes.iter().any(|p| p.spec.script == spec.script));
    let req = StartRequest {
        apps: vec![spec],
        client_env: std::env::vars().collect(),
        force: args.force,
        if_exists: if same_script && !args.force {
            IfExists::Restart
        } else {
            IfExists::Fail
        },
        update_env: false,
    };
    let res = client.start(&req).await;
    report(client, res).await
}

/// `--name` given with an ecosystem file names its one app.
pub fn name_the_app(loaded: &mut Loaded, name: Option<&str>, file: &str) -> anyhow::Result<()> {
    if let Some(name) = name {
        let [app] = loaded.apps.as_mut_slice() else {
            bail!("--name names one app, and {file} has {}", loaded.apps.len());
        };
        app.name = name.to_string();
    }
    Ok(())
}

/// Restarts or reloads (`how`) the managed apps named by `targets` with the options of
/// `overrides` applied to their own, as PM2 does for `restart`/`reload <name> --opts`: relative
/// paths among them are taken from the current directory.
pub async fn apply(
    client: &Client,
    targets: &[String],
    overrides: &RawApp,
    how: IfExists,
    update_env: bool,
) -> anyhow::Result<ExitCode> {
    let here = std::env::current_dir()?;
    let described = client
        .describe(targets.to_vec())
        .await
        .map_err(super::api_error)?;
    let mut renamed = Vec::new();
    let mut apps: Vec<AppSpec> = Vec::new();
    for d in described.processes {
        if apps.iter().any(|a| a.name == d.spec.name) || renamed.contains(&d.spec.name) {
            continue;
        }
        if overrides.name.is_some() && !apps.is_empty() {
            bail!("--name renames one app, and {targets:?} name several");
        }
        let old = d.spec.name.clone();
        let spec = bm2_config::resolve::apply(d.spec, overrides.clone(), &here)?;
        if spec.name != old {
            if how == IfExists::Reload {
                bail!(
                    "reload --name: a new name replaces the app's processes, which a reload cannot do without a gap; rename with `bm2 restart {old} --name {}`",
                    spec.name
                );
            }
            renamed.push(old);
        }
        apps.push(spec);
    }
    check_triggers(&apps)?;
    if !renamed.is_empty() {
        // A new name: the app is registered under it and the old one removed.
        let res = client
            .delete_with(&bm2_types::DeleteRequest {
                targets: renamed,
                keep_logs: true,
            })
            .await;
        res.map_err(super::api_error)?;
    }
    let req = StartRequest {
        apps,
        client_env: std::env::vars().collect(),
        force: false,
        if_exists: how,
        update_env,
    };
    let res = client.start(&req).await;
    report(client, res).await
}

/// The options given as flags, as the keys of an ecosystem file: only those given are set, so
/// that they override a file's values (or a managed app's) and nothing else. Paths given on the
/// command line are taken from `here`.
pub fn flags(a: &AppFlags, here: &Path) -> RawApp {
    let split = |s: &Option<String>| -> Option<Words> {
        s.as_ref()
            .map(|s| Words(s.split_whitespace().map(str::to_string).collect()))
    };
    let ms = |v: Option<u64>| v.map(Millis);
    let n = |v: Option<u32>| v.map(|v| Number(u64::from(v)));
    let on = |b: bool| b.then_some(true);
    let log = |p: &Option<String>| {
        p.as_ref()
            .map(|p| bm2_config::resolve::log_path(here, p.clone()))
    };
    let exec_mode = match a.exec_mode.as_deref() {
        Some("cluster" | "cluster_mode") => Some(ModeForm(bm2_types::ExecMode::Cluster)),
        Some(_) => Some(ModeForm(bm2_types::ExecMode::Fork)),
        None => None,
    };
    let filter_env = match a.filter_env.as_slice() {
        [] => None,
        given if given.iter().all(String::is_empty) => Some(FilterEnv::All),
        given => Some(FilterEnv::Prefixes(
            given.iter().filter(|p| !p.is_empty()).cloned().collect(),
        )),
    };
    RawApp {
        name: a.name.clone(),
        cwd: a.cwd.as_ref().map(|c| here.join(c).display().to_string()),
        interpreter: a.interpreter.clone(),
        interpreter_args: split(&a.interpreter_args),
        node_args: split(&a.node_args),
        namespace: a.namespace.clone(),
        instances: a.instances,
        exec_mode,
        execute_command: on(a.execute_command),
        port: a.port.map(|p| Number(u64::from(p))),
        listen_host: a.listen_host.clone(),
        lb: a.lb.map(Balancing),
        wait_ready: on(a.wait_ready),
        listen_timeout: ms(a.listen_timeout),
        shutdown_with_message: on(a.shutdown_with_message),
        depends_on: a.depends_on.clone(),
        depends_timeout: ms(a.depends_timeout),
        restart_dependents: on(a.restart_dependents),
        socket_activation: on(a.socket_activation),
        autorestart: a.no_autorestart.then_some(false),
        max_restarts: n(a.max_restarts),
        min_uptime: ms(a.min_uptime),
        restart_delay: ms(a.restart_delay),
        exp_backoff_restart_delay: ms(a.exp_backoff_restart_delay),
        kill_timeout: ms(a.kill_timeout),
        kill_signal: a.kill_signal,
        stop_exit_codes: (!a.stop_exit_codes.is_empty()).then(|| Codes(a.stop_exit_codes.clone())),
        max_memory_restart: a.max_memory_restart,
        autostart: a.no_autostart.then_some(false),
        uid: a.uid.clone().map(Scalar),
        gid: a.gid.clone().map(Scalar),
        filter_env,
        instance_var: a.instance_var.clone(),
        increment_var: a.increment_var.clone(),
        append_env_to_name: on(a.append_env_to_name),
        treekill: a.no_treekill.then_some(false),
        source_map_support: on(a.source_map_support),
        disable_source_map_support: on(a.disable_source_map_support),
        out_file: log(&a.output),
        error_file: log(&a.error),
        log_file: log(&a.log).map(|p| LogFile(Some(p))),
        merge_logs: on(a.merge_logs),
        time: on(a.time),
        log_date_format: a.log_date_format.clone(),
        log_type: a.log_type.clone(),
        disable_logs: on(a.disable_logs),
        log_max_size: a.log_max_size,
        log_retain: n(a.log_retain),
        log_compress: on(a.log_compress),
        log_rotate_interval: a.log_rotate_interval.clone(),
        cron_restart: a.cron.clone(),
        ignore_watch: (!a.ignore_watch.is_empty()).then(|| List(a.ignore_watch.clone())),
        watch_delay: ms(a.watch_delay),
        health_check_url: a.health_check_url.clone(),
        health_check_tcp: a.health_check_tcp.clone(),
        health_check_cmd: a.health_check_cmd.clone(),
        health_check_interval: ms(a.health_check_interval),
        health_check_timeout: ms(a.health_check_timeout),
        health_check_max_fails: n(a.health_check_max_fails),
        args: (!a.args.is_empty()).then(|| Words(a.args.clone())),
        ..RawApp::default()
    }
}

/// Builds the options of a new app started from the flags: the same resolution as an
/// ecosystem file's app (bm2-config), with relative paths taken from `here`.
pub fn to_spec(
    a: &StartArgs,
    script: &str,
    overrides: &RawApp,
    here: &Path,
) -> anyhow::Result<AppSpec> {
    let (env_name, vars) = super::ecosystem::split_env(&a.env)?;
    if let Some(name) = env_name {
        bail!(
            "--env {name}: an environment name selects the env_{name} blocks of an ecosystem file; for a variable write --env KEY=VALUE"
        );
    }
    // A script named from here (`./bin/www`, `dist/server.js`) is that file, whatever --cwd.
    let written = if here.join(script).is_file() {
        absolute(here, Path::new(script)).display().to_string()
    } else {
        script.to_string()
    };
    let raw = RawApp {
        script: Some(written),
        name: overrides
            .name
            .clone()
            .or_else(|| Some(bm2_config::resolve::default_name(script))),
        ..overrides.clone()
    };
    let ctx = bm2_config::Context {
        base_dir: here.to_path_buf(),
        cli_vars: vars,
        env_file: a.file.env_file.as_ref().map(|f| here.join(f)),
        from_flags: true,
        ..bm2_config::Context::default()
    };
    let resolved = bm2_config::resolve::resolve(raw, &BTreeMap::new(), &ctx, 0, "bm2 start")?;
    for w in &resolved.warnings {
        eprintln!(
            "[bm2] warning: {}",
            crate::render::escape::message(&w.to_string())
        );
    }
    let spec = resolved.spec;
    check_triggers(std::slice::from_ref(&spec))?;
    Ok(spec)
}

/// Checks the health check, cron and watch options of `apps` before anything is sent to the
/// daemon: a bad value is reported with the option's name and nothing starts.
pub fn check_triggers(apps: &[AppSpec]) -> anyhow::Result<()> {
    for spec in apps {
        let tz = bm2_config::triggers::app_tz(spec, std::env::var("TZ").ok());
        if let Err(e) = bm2_config::triggers::validate(spec, tz.as_deref()) {
            bail!("app {:?}: {e}", spec.name);
        }
    }
    Ok(())
}

fn absolute(here: &Path, p: &Path) -> PathBuf {
    let joined = here.join(p);
    std::fs::canonicalize(&joined).unwrap_or(joined)
}
