//! Command-line parsing and dispatch: one file per command family.

pub mod daemon;
mod dashboard;
mod deploy;
mod describe;
mod ecosystem;
mod env;
mod events;
mod import_pm2;
mod init_simple;
mod list;
mod logs;
mod mcp;
mod metrics;
mod modules;
mod monit;
mod pm2_dump;
pub mod runtime;
mod serve;
mod start;
mod startup;
mod targets;

use std::process::ExitCode;

use bm2_client::{Client, ClientError};
use bm2_types::{ActionResponse, Home};
use clap::{Parser, Subcommand};

use crate::render;

/// bm2 keeps your apps alive: a process manager for any language, compatible with PM2.
#[derive(Debug, Parser)]
#[command(
    name = "bm2",
    version,
    about,
    propagate_version = true,
    arg_required_else_help = true
)]
#[command(
    after_help = "Examples:\n  bm2 start server.js --name api -i 4\n  bm2 start app.py -- --port 8000\n  bm2 list\n  bm2 logs api\n  bm2 restart api\n\nEnvironment: BM2_HOME (default ~/.bm2), NO_COLOR."
)]
#[allow(clippy::doc_markdown)] // doc comments are the --help text
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
    /// Print without colours (as `NO_COLOR=1` does)
    #[arg(long = "no-color", global = true)]
    pub no_color: bool,
    /// Print nothing, as PM2's -s (or PM2_SILENT set): the exit code tells the outcome (jlist
    /// and prettylist still print their data)
    #[arg(short = 's', long, global = true)]
    pub silent: bool,
    /// Show the process list as PM2's minimal list (`key : value` lines) instead of a table
    #[arg(short = 'm', long = "mini-list", global = true)]
    pub mini_list: bool,
    /// After start, restart, reload or stop: follow the logs of the processes acted on, until
    /// Ctrl-C (PM2's --attach)
    #[arg(long, global = true)]
    pub attach: bool,
    /// Accepted for PM2's scripts; no effect (bm2 collects no git metadata)
    #[arg(long = "no-vizion", global = true, hide_short_help = true)]
    pub no_vizion: bool,
    /// Accepted for PM2's scripts; no effect (bm2 has no PM2 Plus automation)
    #[arg(long = "no-automation", global = true, hide_short_help = true)]
    pub no_automation: bool,
    /// Accepted for PM2's scripts; no effect (bm2 injects no pmx/@pm2/io probe)
    #[arg(long = "no-pmx", global = true, hide_short_help = true)]
    pub no_pmx: bool,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Start a script, binary or command and keep it alive
    #[command(
        after_help = "Examples:\n  bm2 start server.js --name api --max-memory-restart 512M\n  bm2 start worker.py -i 4 --env QUEUE=jobs\n  bm2 start npm --name web -- run start\n  bm2 start ./server --kill-timeout 10000 --kill-signal SIGTERM"
    )]
    Start(Box<start::StartArgs>),
    /// Stop processes (id, name, namespace, all, script path, /regex/ or ecosystem file)
    #[command(
        after_help = "Examples:\n  bm2 stop api\n  bm2 stop 0 3\n  bm2 stop all\n  bm2 stop /^worker-/\n  bm2 stop ecosystem.config.js --only api"
    )]
    Stop(targets::FileTargets),
    /// Restart processes (stop, then start); with a file, also start its apps not yet running
    #[command(
        after_help = "Examples:\n  bm2 restart api\n  bm2 restart all --update-env\n  bm2 restart ecosystem.config.js --env production"
    )]
    Restart(targets::FileTargets),
    /// Reload processes without downtime: each instance's new process takes over once ready
    #[command(
        visible_alias = "gracefulReload",
        after_help = "Examples:\n  bm2 reload api\n  bm2 reload ecosystem.config.js"
    )]
    Reload(targets::FileTargets),
    /// Start the apps of an ecosystem file, restarting those already running
    #[command(
        name = "startOrRestart",
        after_help = "Example:\n  bm2 startOrRestart ecosystem.config.js --env production"
    )]
    StartOrRestart(targets::FileTargets),
    /// Start the apps of an ecosystem file, reloading those already running
    #[command(
        name = "startOrReload",
        visible_alias = "startOrGracefulReload",
        after_help = "Example:\n  bm2 startOrReload ecosystem.config.js"
    )]
    StartOrReload(targets::FileTargets),
    /// Change the number of instances of an app: N, +N or -N
    #[command(after_help = "Examples:\n  bm2 scale api 8\n  bm2 scale api +2\n  bm2 scale api -1")]
    Scale {
        /// App name
        app: String,
        /// N, +N or -N
        #[arg(allow_hyphen_values = true)]
        instances: String,
    },
    /// Stop processes and remove them from bm2, with the log files bm2 named for them
    #[command(visible_aliases = ["del", "rm"], after_help = "Examples:\n  bm2 delete api\n  bm2 delete all\n  bm2 delete ecosystem.config.js\n  bm2 delete api --keep-logs   keep api's log files in $BM2_HOME/logs")]
    Delete(targets::FileTargets),
    /// Reset the restart counters of processes
    #[command(after_help = "Examples:\n  bm2 reset api\n  bm2 reset all")]
    Reset(targets::Targets),
    /// Send a signal to processes: `bm2 signal SIGUSR2 api` (or `bm2 signal api SIGUSR2`)
    #[command(
        visible_alias = "sendSignal",
        after_help = "Examples:\n  bm2 signal SIGUSR2 api\n  bm2 signal api HUP"
    )]
    Signal(targets::SignalArgs),
    /// Write a line to the stdin of a process (PM2's `send`), or with --data send it JSON over
    /// its IPC channel (PM2's sendDataToProcessId)
    #[command(
        after_help = "Examples:\n  bm2 send 0 \"reload-config\"\n  bm2 send worker \"pause\"\n  bm2 send api '{\"flush\":true}' --data --topic cache\n\nThe line and a newline are written to the process's stdin, a pipe bm2 keeps open.\nWith --data, a Node or Bun process receives {type: 'process:msg', topic, data, id}\nin process.on('message')."
    )]
    Send {
        /// Process id (or name, namespace, all)
        target: String,
        /// The line to write (with --data: JSON, or a plain string)
        #[arg(allow_hyphen_values = true)]
        line: String,
        /// Send it over the IPC channel as data, not to stdin
        #[arg(long)]
        data: bool,
        /// The topic of the data (with --data)
        #[arg(long, requires = "data")]
        topic: Option<String>,
    },
    /// List processes
    #[command(visible_aliases = ["ls", "l", "status", "ps"], after_help = "Examples:\n  bm2 list\n  bm2 list --sort memory:desc\n  bm2 list --json\n  bm2 list --watch")]
    List(list::ListArgs),
    /// Open the full-screen monitor: processes, CPU and memory over the last minute, logs
    #[command(after_help = "Keys: ↑/↓ (or k/j) select, r restart, s stop, q quit.")]
    Monit,
    /// Print CPU, memory and status of every process and the machine as JSON
    #[command(
        after_help = "Examples:\n  bm2 metrics\n  bm2 metrics --history 600 | jq '.processes[0].cpu'"
    )]
    Metrics(metrics::MetricsArgs),
    /// Print the metrics in Prometheus exposition format
    #[command(after_help = "Example:\n  bm2 prometheus | grep bm2_process_cpu")]
    Prometheus,
    /// Start the web dashboard (and the Prometheus endpoint) in the daemon and print its URL
    #[command(
        after_help = "Examples:\n  bm2 dashboard\n  bm2 dashboard --port 8080 --metrics-port 8081\n  bm2 dashboard status\n  bm2 dashboard stop\n\nThe URL carries the access token (kept in $BM2_HOME/dashboard.token). Enable it at\ndaemon start with a [dashboard] table in $BM2_HOME/config.toml (enabled = true)."
    )]
    Dashboard(dashboard::DashboardArgs),
    /// Print the process list as JSON, in PM2's `jlist` shape
    #[command(after_help = "Example:\n  bm2 jlist | jq '.[] | {name, pid}'")]
    Jlist,
    /// Print the process list as PM2 does (Node's util.inspect layout)
    Prettylist,
    /// Show everything about processes
    #[command(visible_aliases = ["show", "info"], after_help = "Examples:\n  bm2 describe api\n  bm2 describe 0 --json")]
    Describe(describe::DescribeArgs),
    /// Show the recent lines of apps' logs, then follow new lines
    #[command(
        after_help = "Examples:\n  bm2 logs\n  bm2 logs api --lines 100\n  bm2 logs api --err --nostream\n  bm2 logs --json | jq .line"
    )]
    Logs(logs::LogsArgs),
    /// Follow the daemon's events: starts, exits, restarts (with reasons), stops, deletes,
    /// messages apps send with process.send, and log lines with --logs
    #[command(
        after_help = "Examples:\n  bm2 events                 every process's lifecycle and messages\n  bm2 events api --logs      one app, with its log lines\n  bm2 events --json          one JSON object per line (the API's stream)"
    )]
    Events(events::EventsArgs),
    /// Empty log files (every app when no target is given)
    #[command(after_help = "Examples:\n  bm2 flush\n  bm2 flush api")]
    Flush(targets::OptionalTargets),
    /// Reopen every log file (after an external logrotate moved them)
    #[command(name = "reloadLogs", visible_alias = "reload-logs")]
    ReloadLogs,
    /// Print the pids of processes (all when no target is given)
    #[command(after_help = "Examples:\n  bm2 pid api\n  bm2 pid")]
    Pid(targets::OptionalTargets),
    /// Print the ids of the processes of an app
    #[command(after_help = "Example:\n  bm2 id api")]
    Id {
        /// App name
        name: String,
    },
    /// Check that the daemon is alive (starts it when needed)
    Ping,
    /// Stop every process, then the daemon
    Kill,
    /// Save the process list, for `bm2 resurrect`
    #[command(
        visible_alias = "dump",
        after_help = "Example:\n  bm2 save && bm2 resurrect"
    )]
    Save,
    /// Hand the daemon over to this bm2 binary without stopping any app
    #[command(
        visible_alias = "updatePM2",
        after_help = "Run it after installing a new bm2. The daemon re-executes itself from the new binary\nin place: every app keeps its pid, its output pipes and its ports (no restart, no\nrefused connection, no lost log line), with its counters and uptime. When the new\nbinary cannot take over in place (a bm2 without it), bm2 saves the list, restarts\nthe daemon and brings every app back, as PM2's update does; a binary that cannot run\nis refused and the daemon runs on untouched."
    )]
    Update {
        /// Hand over to this binary instead of the one running this command
        #[arg(long, value_name = "PATH")]
        binary: Option<std::path::PathBuf>,
    },
    /// Start the processes saved by `bm2 save`
    Resurrect {
        /// Recompute the apps' environment from this shell instead of the saved one
        #[arg(long)]
        update_env: bool,
    },
    /// Show the environment of a process, or manage variables: env set|get|delete
    #[command(
        after_help = "Examples:\n  bm2 env api               print the environment api's process received\n  bm2 env set api KEY VALUE  applied at api's next start or restart\n  bm2 env get api\n  bm2 env delete api KEY"
    )]
    Env(env::EnvArgs),
    /// Write a sample ecosystem file in the current directory
    #[command(
        visible_alias = "init",
        after_help = "Examples:\n  bm2 ecosystem\n  bm2 init simple\n  bm2 init --format yaml"
    )]
    Ecosystem {
        /// `simple`: PM2's simple template (one app with a name and a script)
        #[arg(value_enum)]
        mode: Option<InitMode>,
        /// File format
        #[arg(long, value_enum, default_value = "js")]
        format: ecosystem::InitFormat,
        /// Overwrite an existing file
        #[arg(long)]
        force: bool,
    },
    /// Check an ecosystem file without starting anything (unknown keys are errors)
    #[command(after_help = "Example:\n  bm2 validate ecosystem.config.js --env production")]
    Validate {
        /// The file
        file: String,
        /// Environment name to resolve
        #[arg(long = "env", value_name = "NAME")]
        env: Vec<String>,
    },
    /// Print the JSON Schema of ecosystem files (for editors), or the option reference
    Schema {
        /// Print the option reference in Markdown instead
        #[arg(long)]
        markdown: bool,
    },
    /// Print the shell completion script for bash, zsh or fish (also elvish, powershell)
    #[command(
        after_help = "Examples:\n  source <(bm2 completion bash)\n  bm2 completion zsh > \"${fpath[1]}/_bm2\"\n  bm2 completion fish > ~/.config/fish/completions/bm2.fish"
    )]
    Completion {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Serve a directory over HTTP, as a managed app (PM2's `serve`)
    #[command(
        visible_alias = "expose",
        after_help = "Examples:\n  bm2 serve                       the current directory on port 8080\n  bm2 serve ./dist 3000 --spa\n  bm2 serve public 8081 --basic-auth-username ops --basic-auth-password s3cret\n\nThe app is named static-page-server-<port>; `/` serves index.html, a missing file\n404.html (or \"404 Not Found\"), and with --spa every unknown path serves index.html."
    )]
    Serve(serve::ServeArgs),
    /// The static file server run by `serve` (settings from PM2's serve variables)
    #[command(name = "__serve", hide = true)]
    ServeFiles {
        /// Path, port, host (each overridden by the variable PM2 uses for it)
        args: Vec<String>,
    },
    /// Register the apps of PM2's saved process list (dump.pm2), stopped or started
    #[command(
        name = "import-pm2",
        after_help = "Examples:\n  bm2 import-pm2                         register PM2's saved apps stopped\n  pm2 kill && bm2 import-pm2 --start     take over the apps PM2 was running\n  bm2 import-pm2 --pm2-home /home/app/.pm2\n\nRun `pm2 save` first so that dump.pm2 lists the apps as they run now."
    )]
    ImportPm2(import_pm2::ImportArgs),
    /// Run as a container's main process: the daemon in the foreground, the apps of a file or
    /// script, their output on stdout/stderr (also run as `bm2-runtime`)
    Runtime(Box<runtime::RuntimeArgs>),
    /// Start the daemon and the saved apps at boot: write and enable a service (systemd)
    #[command(
        after_help = "Examples:\n  bm2 startup                      detect the init system; as root, write and enable the service\n  bm2 startup systemd -u app --hp /home/app\n  bm2 startup systemv              /etc/init.d/bm2-USER (openrc: the same with openrc-run)\n  bm2 startup launchd              ~/Library/LaunchAgents/bm2.USER.plist\n  bm2 startup print                show the unit, write nothing (also --dry-run)\n  bm2 startup uninstall            as bm2 unstartup\n\nThe service runs `bm2 daemon --resurrect`, which starts the apps of `bm2 save`.\nNot as root, it prints the one `sudo` command to run."
    )]
    Startup(startup::StartupArgs),
    /// Remove the service `bm2 startup` wrote
    Unstartup(startup::StartupArgs),
    /// Deploy over SSH from an ecosystem file's `deploy` section (setup, update, revert, ...)
    #[command(
        after_help = "Examples:\n  bm2 deploy ecosystem.config.js production setup     first time: layout and clone on each host\n  bm2 deploy ecosystem.config.js production           deploy the configured ref\n  bm2 deploy production                               the same, with ecosystem.config.js here\n  bm2 deploy ecosystem.config.js production revert 1  back to the previous release\n  bm2 deploy ecosystem.config.js production list\n  bm2 deploy ecosystem.config.js production exec \"bm2 reload all\"\n\nSee docs/deploy.md for the keys and the layout on the hosts."
    )]
    Deploy(deploy::DeployArgs),
    /// Modules: install, list, uninstall, update (npm packages, git repositories, directories)
    #[command(
        after_help = "Examples:\n  bm2 module install ./my-module\n  bm2 module install https://github.com/user/bm2-logrotate.git\n  bm2 module install pm2-logrotate\n  bm2 module list\n  bm2 module update my-module\n  bm2 module uninstall my-module\n\nA module runs as an app of the namespace `modules`; see docs/modules.md."
    )]
    Module(modules::ModuleArgs),
    /// Install a module and start it (PM2's `install`; as `bm2 module install`)
    Install {
        /// npm package name, git URL or local directory
        source: String,
    },
    /// Stop and remove a module (PM2's `uninstall`; as `bm2 module uninstall`)
    Uninstall {
        /// Module name
        name: String,
    },
    /// Set a module setting (in `module_conf.json`) and restart the module with it
    #[command(after_help = "Example:\n  bm2 set my-module:interval 30")]
    Set {
        /// <module>:<key>
        key: String,
        /// The value
        value: String,
    },
    /// Print module settings: all, one module's, or one value
    #[command(
        after_help = "Examples:\n  bm2 get\n  bm2 get my-module\n  bm2 get my-module:interval"
    )]
    Get {
        /// <module> or <module>:<key>
        key: Option<String>,
    },
    /// Remove a module setting (or all of a module's) and restart the module
    Unset {
        /// <module>:<key>, or <module>
        key: String,
    },
    /// Module settings as PM2's `conf`: `conf k v` sets, `conf k` gets, `conf` shows all
    Conf(modules::ConfArgs),
    /// Serve bm2 to AI agents over the Model Context Protocol (stdio, or HTTP with a token)
    #[command(
        after_help = "Examples:\n  claude mcp add bm2 -- bm2 mcp\n  bm2 mcp --read-only\n  bm2 mcp --transport http --port 8849\n  bm2 mcp token\n\nSee docs/mcp.md for client configuration."
    )]
    Mcp(mcp::McpArgs),
    /// Run the daemon in the foreground (started automatically by other commands, and by the
    /// service `bm2 startup` installs)
    #[command(hide = true)]
    Daemon {
        /// Also start the apps saved by `bm2 save`, as `bm2 resurrect` does (at boot)
        #[arg(long)]
        resurrect: bool,
        /// Take over from the daemon this process was (`bm2 update`): the descriptor of its
        /// handover state
        #[arg(long, hide = true, value_name = "FD")]
        handover: Option<i32>,
        /// Print the handover state formats this binary reads, one per line, and exit
        #[arg(long, hide = true)]
        handover_formats: bool,
    },
}

/// Which sample `ecosystem`/`init` writes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum InitMode {
    /// PM2's simple template: one app with a name and a script
    Simple,
}

impl From<ecosystem::InitFormat> for bm2_config::sample::SampleFormat {
    fn from(f: ecosystem::InitFormat) -> Self {
        use bm2_config::sample::SampleFormat;
        match f {
            ecosystem::InitFormat::Js => SampleFormat::Js,
            ecosystem::InitFormat::Ts => SampleFormat::Ts,
            ecosystem::InitFormat::Json => SampleFormat::Json,
            ecosystem::InitFormat::Yaml => SampleFormat::Yaml,
            ecosystem::InitFormat::Toml => SampleFormat::Toml,
        }
    }
}

/// Runs a client command.
pub async fn run(cli: Cli, layout: bm2_types::Layout) -> anyhow::Result<ExitCode> {
    if let Cmd::Completion { shell } = cli.cmd {
        return Ok(completion(shell));
    }
    if cli.no_color {
        render::disable_color();
    }
    if cli.mini_list {
        render::use_mini_list();
    }
    if cli.attach {
        let acts = matches!(
            cli.cmd,
            Cmd::Start(_)
                | Cmd::Restart(_)
                | Cmd::Reload(_)
                | Cmd::Stop(_)
                | Cmd::StartOrRestart(_)
                | Cmd::StartOrReload(_)
        );
        anyhow::ensure!(
            acts,
            "--attach follows the logs after start, restart, reload or stop (and startOrRestart, startOrReload), not this command"
        );
        ATTACH.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    // PM2 reads any non-empty PM2_SILENT as -s.
    if cli.silent || std::env::var_os("PM2_SILENT").is_some_and(|v| !v.is_empty()) {
        silence(matches!(cli.cmd, Cmd::Jlist | Cmd::Prettylist))?;
    }
    let home = Home::from_env_as(layout)?;
    let exe = std::env::current_exe()?;
    let client = Client::new(home).with_daemon_exe(exe);
    // PM2 launches the installed modules whenever a new daemon starts: when this command is
    // about to start one (none listens), the modules are started with it.
    let relaunch = launches_modules(&cli.cmd)
        && modules::no_daemon(client.home())
        && modules::any_installed(client.home());
    if relaunch && !matches!(cli.cmd, Cmd::Resurrect { .. }) {
        client.ping().await.map_err(api_error)?;
        modules::launch_on_new_daemon(&client).await?;
    }
    let code = dispatch(&client, cli.cmd).await?;
    if relaunch {
        // After `resurrect`: the saved list may hold modules already; the others start now.
        modules::launch_on_new_daemon(&client).await?;
    }
    Ok(code)
}

/// True for the commands that work with the daemon (and so start one when none runs), as
/// opposed to the ones that stop it, replace it, or need none.
fn launches_modules(cmd: &Cmd) -> bool {
    !matches!(
        cmd,
        Cmd::Kill
            | Cmd::Update { .. }
            | Cmd::Ecosystem { .. }
            | Cmd::Validate { .. }
            | Cmd::Schema { .. }
            | Cmd::Completion { .. }
            | Cmd::Startup(_)
            | Cmd::Unstartup(_)
            | Cmd::Deploy(_)
            | Cmd::ServeFiles { .. }
            | Cmd::Daemon { .. }
            | Cmd::Mcp(_)
            | Cmd::Runtime(_)
            | Cmd::Install { .. }
            | Cmd::Uninstall { .. }
            | Cmd::Get { .. }
            | Cmd::Conf(_)
            | Cmd::Module(modules::ModuleArgs {
                cmd: modules::ModuleCmd::Install { .. }
                    | modules::ModuleCmd::Uninstall { .. }
                    | modules::ModuleCmd::Update { .. }
            })
    )
}

async fn dispatch(client: &Client, cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Start(args) => start::run(client, *args).await,
        Cmd::Stop(t) => targets::action(client, targets::Verb::Stop, t).await,
        Cmd::Restart(t) | Cmd::StartOrRestart(t) => {
            targets::action(client, targets::Verb::Restart, t).await
        }
        Cmd::Reload(t) | Cmd::StartOrReload(t) => {
            targets::action(client, targets::Verb::Reload, t).await
        }
        Cmd::Scale { app, instances } => targets::scale(client, &app, &instances).await,
        Cmd::Delete(t) => targets::action(client, targets::Verb::Delete, t).await,
        Cmd::Reset(t) => targets::reset(client, t).await,
        Cmd::Signal(s) => targets::signal(client, s).await,
        Cmd::Send {
            target,
            line,
            data: false,
            ..
        } => {
            let res = client.send_line(vec![target], line).await;
            report(client, res).await
        }
        Cmd::Send {
            target,
            line,
            data: true,
            topic,
        } => {
            // JSON when it reads as JSON, else the text as a string.
            let data = serde_json::from_str(&line).unwrap_or(serde_json::Value::String(line));
            let req = bm2_types::SendDataRequest {
                targets: vec![target],
                data,
                topic,
            };
            let res = client.send_data(&req).await;
            report(client, res).await
        }
        Cmd::List(args) => list::run(client, &args).await,
        Cmd::Monit => monit::run(client).await,
        Cmd::Metrics(args) => metrics::metrics(client, &args).await,
        Cmd::Prometheus => metrics::prometheus(client).await,
        Cmd::Dashboard(args) => dashboard::run(client, args).await,
        Cmd::Jlist => list::jlist(client, false).await,
        Cmd::Prettylist => list::jlist(client, true).await,
        Cmd::Describe(args) => describe::run(client, args).await,
        Cmd::Logs(args) => logs::logs(client, args).await,
        Cmd::Events(args) => events::run(client, args).await,
        Cmd::Flush(t) => logs::flush(client, t.targets).await,
        Cmd::ReloadLogs => logs::reload(client).await,
        Cmd::Pid(t) => targets::pids(client, t).await,
        Cmd::Id { name } => targets::ids(client, name).await,
        Cmd::Ping => daemon::ping(client).await,
        Cmd::Kill => daemon::kill(client).await,
        Cmd::Mcp(args) => {
            // The server shares its client between sessions and tasks: one of its own.
            let own = Client::new(client.home().clone()).with_daemon_exe(std::env::current_exe()?);
            mcp::run(own, args).await
        }
        Cmd::Save => daemon::save(client).await,
        Cmd::Update { binary } => daemon::update(client, binary).await,
        Cmd::Resurrect { update_env } => daemon::resurrect(client, update_env).await,
        Cmd::Env(args) => env::run(client, args).await,
        Cmd::Ecosystem {
            mode: Some(InitMode::Simple),
            format,
            force,
        } => init_simple::write(format.into(), force),
        Cmd::Ecosystem {
            mode: None,
            format,
            force,
        } => ecosystem::init(format, force),
        Cmd::Validate { file, env } => ecosystem::validate(&file, &env),
        Cmd::Schema { markdown } => ecosystem::schema(markdown),
        Cmd::ImportPm2(args) => import_pm2::run(client, args).await,
        Cmd::Startup(args) => startup::startup(client.home(), &args),
        Cmd::Unstartup(args) => startup::unstartup(client.home(), &args),
        Cmd::Deploy(args) => deploy::run(&args),
        Cmd::Serve(args) => serve::run(client, args).await,
        Cmd::Module(args) => modules::run(client, args).await,
        Cmd::Install { source } => modules::install(client, &source).await,
        Cmd::Uninstall { name } => modules::uninstall(client, &name).await,
        Cmd::Set { key, value } => modules::set(client, &key, &value).await,
        Cmd::Get { key } => modules::get(client, key.as_deref()),
        Cmd::Unset { key } => modules::unset(client, &key).await,
        Cmd::Conf(args) => modules::conf(client, args).await,
        Cmd::ServeFiles { .. } | Cmd::Daemon { .. } | Cmd::Runtime(_) => {
            unreachable!("handled in main")
        }
        Cmd::Completion { .. } => unreachable!("handled above"),
    }
}

/// Prints the outcome of an action: the failures and notices, then the process list.
pub async fn report(
    client: &Client,
    res: Result<ActionResponse, ClientError>,
) -> anyhow::Result<ExitCode> {
    let res = res.map_err(api_error)?;
    for e in &res.errors {
        render::error(&render::api_error_text(e));
    }
    let quiet = QUIET_REPORT.load(std::sync::atomic::Ordering::Relaxed);
    for notice in &res.notices {
        if quiet {
            eprintln!("[bm2] {}", render::escape::message(notice));
        } else {
            render::info(notice);
        }
    }
    if !quiet {
        list::print(client).await?;
    }
    let code = if res.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if ATTACH.load(std::sync::atomic::Ordering::Relaxed) && !res.processes.is_empty() {
        let targets = res.processes.iter().map(|p| p.id.to_string()).collect();
        logs::logs(client, logs::LogsArgs::follow_new(targets)).await?;
    }
    Ok(code)
}

/// `bm2 runtime`: [`report`] keeps stdout for the apps' output (notices go to stderr, and no
/// process list is printed).
pub static QUIET_REPORT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--attach`: [`report`] follows the logs of the processes acted on.
static ATTACH: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns a daemon refusal into an error with its hint.
pub fn api_error(e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Api(api) => anyhow::anyhow!(render::api_error_text(&api)),
        other => anyhow::Error::new(other),
    }
}

/// `-s`: sends stderr, and stdout unless `keep_stdout`, to /dev/null for the rest of the run.
fn silence(keep_stdout: bool) -> anyhow::Result<()> {
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    if !keep_stdout {
        nix::unistd::dup2_stdout(&null)?;
    }
    nix::unistd::dup2_stderr(&null)?;
    Ok(())
}

/// `bm2 completion <shell>`: the completion script, generated from this command-line definition
/// (for the name the binary was invoked under, `bm2` or a `pm2` link).
fn completion(shell: clap_complete::Shell) -> ExitCode {
    use clap::CommandFactory;
    let name = std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .filter(|n| n == "pm2")
        .unwrap_or_else(|| "bm2".to_string());
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, name, &mut std::io::stdout());
    ExitCode::SUCCESS
}
