//! `bm2 runtime` (and `bm2-runtime`, `pm2-runtime`): a container's main process. The daemon
//! runs in the foreground in this process, the apps of a file or script are started, and
//! every app's output is streamed to this process's stdout and stderr. SIGTERM or SIGINT stops
//! the apps gracefully and exits 0; when every app has stopped for good, it exits 1 (unless
//! `--no-auto-exit`) so that the orchestrator restarts the container.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use bm2_client::Client;
use bm2_daemon::server::{self, DaemonError, DaemonOptions};
use bm2_types::{Home, ProcStatus, ProcSummary};
use clap::Parser;

use super::logs::LogsArgs;
use super::start::StartArgs;

/// Options of `bm2 runtime`: those of `bm2 start`, and PM2-runtime's.
#[allow(clippy::doc_markdown, clippy::struct_excessive_bools)] // doc comments are the --help text
#[derive(Debug, Parser)]
#[command(
    name = "bm2-runtime",
    version = bm2_types::VERSION,
    about = "Run bm2 as a container's main process: the daemon in the foreground, the apps of a file or script, their output on stdout/stderr",
    after_help = "Examples:\n  bm2-runtime ecosystem.config.js\n  bm2-runtime app.js -i 4 --json\n  bm2 runtime ecosystem.config.js --only api --env production"
)]
pub struct RuntimeArgs {
    #[command(flatten)]
    pub start: StartArgs,
    /// App output without the `id|name |` prefix
    #[arg(long)]
    pub raw: bool,
    /// App output as JSON lines: `message`, `timestamp`, `type` (out or err), `process_id`, `app_name`
    #[arg(long, conflicts_with = "raw")]
    pub json: bool,
    /// App output as key=value lines: `timestamp=… app=… id=… type=out|error message=…`
    #[arg(long, conflicts_with_all = ["raw", "json"])]
    pub format: bool,
    /// App output with the `id|name |` prefix (the default)
    #[arg(long, conflicts_with_all = ["raw", "json", "format"])]
    pub formatted: bool,
    /// Stay up when every app has stopped or errored (default: exit with status 1)
    #[arg(long)]
    pub no_auto_exit: bool,
    /// Seconds to wait before starting the apps
    #[arg(long, value_name = "SECONDS")]
    pub delay: Option<u64>,
    /// PM2 Plus monitoring (refused: bm2 has no PM2 Plus agent; use the metrics endpoint)
    #[arg(long, hide = true)]
    pub deep_monitoring: bool,
    /// PM2 Plus transaction tracing (refused)
    #[arg(long, hide = true)]
    pub trace: bool,
    /// PM2 Plus V8 data (refused)
    #[arg(long, hide = true)]
    pub v8: bool,
    /// PM2 Plus secret key (refused)
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "")]
    pub secret: Option<String>,
    /// PM2 Plus public key (refused)
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "")]
    pub public: Option<String>,
    /// PM2 Plus machine name (refused)
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "")]
    pub machine_name: Option<String>,
    /// PM2's web API (refused: use `bm2 dashboard` or config.toml's [dashboard])
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "")]
    pub web: Option<String>,
}

impl RuntimeArgs {
    /// `bm2 start … --no-daemon`: the runtime with its defaults.
    pub fn for_start(start: StartArgs) -> RuntimeArgs {
        RuntimeArgs {
            start,
            raw: false,
            json: false,
            format: false,
            formatted: false,
            no_auto_exit: false,
            delay: None,
            deep_monitoring: false,
            trace: false,
            v8: false,
            secret: None,
            public: None,
            machine_name: None,
            web: None,
        }
    }

    /// PM2-runtime flags bm2 has no meaning for, refused with the reason.
    fn refused(&self) -> Option<&'static str> {
        if self.deep_monitoring || self.trace || self.v8 {
            return Some(
                "--deep-monitoring, --trace and --v8 feed PM2 Plus, which bm2 does not run; bm2 exports CPU, memory and restarts on its metrics endpoint (`bm2 dashboard`, or [dashboard] in config.toml)",
            );
        }
        if self.secret.is_some() || self.public.is_some() || self.machine_name.is_some() {
            return Some(
                "--secret, --public and --machine-name connect to PM2 Plus, which bm2 does not run; scrape bm2's Prometheus endpoint instead",
            );
        }
        if self.web.is_some() {
            return Some(
                "--web is PM2's old web API; enable bm2's dashboard and metrics endpoint with [dashboard] in config.toml",
            );
        }
        None
    }

    fn log_args(&self) -> LogsArgs {
        LogsArgs {
            raw: self.raw,
            json: self.json,
            format: self.format,
            ..LogsArgs::follow_new(Vec::new())
        }
    }
}

/// How often the runtime checks whether any app is still meant to run.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// Runs the daemon and the apps of `args` in this process until a signal, or until every app
/// has stopped for good.
pub fn main(layout: bm2_types::Layout, args: RuntimeArgs) -> ExitCode {
    if let Some(why) = args.refused() {
        eprintln!("[bm2] error: {why}");
        return ExitCode::from(2);
    }
    let super::daemon::Process {
        home,
        config,
        runtime,
    } = match super::daemon::Process::prepare(layout, false) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("[bm2] error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (gate, reap) = tokio::sync::watch::channel(false);
    let opts = DaemonOptions {
        detach_stdio: false,
        log_defaults: config.logs,
        dashboard: config.dashboard,
        reap_on_sigchld: Some(reap),
        ..DaemonOptions::from_env()
    };
    match runtime.block_on(run(home, opts, gate, args)) {
        Ok(code) => code,
        Err(e) => {
            crate::render::error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

async fn run(
    home: Home,
    opts: DaemonOptions,
    gate: tokio::sync::watch::Sender<bool>,
    args: RuntimeArgs,
) -> anyhow::Result<ExitCode> {
    let mut daemon = tokio::spawn(server::run(home.clone(), opts));
    let client = Client::new(home);
    // The daemon listens once it holds the home's lock and has read its state.
    while client.ping().await.is_err() {
        if daemon.is_finished() {
            return daemon_result(daemon.await, false);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let log_args = args.log_args();
    let log_client = Client::new(client.home().clone());
    let logs = tokio::spawn(async move { super::logs::stream_all(&log_client, &log_args).await });
    if let Some(secs) = args.delay {
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
    super::QUIET_REPORT.store(true, std::sync::atomic::Ordering::Relaxed);
    let started = super::start::run(&client, args.start).await;
    // From here on, this process waits for no child of its own: every zombie may be reaped.
    let _ = gate.send(true);
    let failed = match started {
        Ok(code) => code != ExitCode::SUCCESS,
        Err(e) => {
            crate::render::error(&format!("{e:#}"));
            true
        }
    };
    if failed && daemon.is_finished() {
        let _ = logs.await;
        return daemon_result(daemon.await, true);
    }
    if failed {
        eprintln!("[bm2] the apps could not all be started: stopping");
        return stop_and_exit(&client, daemon, logs).await;
    }
    loop {
        tokio::select! {
            res = &mut daemon => {
                // Stopped by SIGTERM/SIGINT (or `bm2 kill`): the apps were stopped gracefully.
                let _ = logs.await;
                return daemon_result(res, true);
            }
            () = tokio::time::sleep(WATCH_INTERVAL), if !args.no_auto_exit => {
                if let Ok(list) = client.list().await
                    && all_stopped_for_good(&list)
                {
                    eprintln!("[bm2] no app is running or will restart: exiting (--no-auto-exit keeps bm2 up)");
                    return stop_and_exit(&client, daemon, logs).await;
                }
            }
        }
    }
}

/// Stops the daemon (and whatever still runs), then reports failure.
async fn stop_and_exit(
    client: &Client,
    daemon: tokio::task::JoinHandle<Result<(), DaemonError>>,
    logs: tokio::task::JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<ExitCode> {
    if let Err(e) = client.kill().await {
        bail!("cannot stop the daemon: {e}");
    }
    let _ = daemon.await;
    let _ = logs.await;
    Ok(ExitCode::FAILURE)
}

fn daemon_result(
    res: Result<Result<(), DaemonError>, tokio::task::JoinError>,
    requested: bool,
) -> anyhow::Result<ExitCode> {
    match res {
        Ok(Ok(())) if requested => Ok(ExitCode::SUCCESS),
        Ok(Ok(())) => bail!("the daemon exited before it listened"),
        Ok(Err(e @ DaemonError::AlreadyRunning { .. })) => {
            bail!("{e}: a container's runtime needs a BM2_HOME of its own")
        }
        Ok(Err(e)) => Err(e.into()),
        Err(e) => bail!("the daemon failed: {e}"),
    }
}

/// Every app is stopped or errored (none is running, starting or waiting to restart), or there
/// are no apps at all.
fn all_stopped_for_good(list: &[ProcSummary]) -> bool {
    list.iter()
        .all(|p| matches!(p.status, ProcStatus::Stopped | ProcStatus::Errored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_pm2_plus_flags_with_a_reason() {
        let parse = |a: &[&str]| RuntimeArgs::try_parse_from(a).unwrap();
        assert!(parse(&["bm2-runtime", "app.js"]).refused().is_none());
        assert!(
            parse(&["bm2-runtime", "app.js", "--deep-monitoring"])
                .refused()
                .unwrap()
                .contains("PM2 Plus")
        );
        assert!(
            parse(&["bm2-runtime", "app.js", "--web"])
                .refused()
                .is_some()
        );
        assert!(RuntimeArgs::try_parse_from(["bm2-runtime", "app.js", "--raw", "--json"]).is_err());
    }
}
