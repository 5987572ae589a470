//! Daemon control: the daemon itself, ping, kill, save, resurrect.

use std::process::ExitCode;

use bm2_client::{Client, ClientError};
use bm2_daemon::server::{self, DaemonError, DaemonOptions};
use bm2_types::{ErrorCode, Home};

use super::{api_error, report};
use crate::render;

/// What a daemon running in this process needs, set up in one order for `bm2 daemon` and the
/// container runtime: the allocator's arena cap (before any thread), the home, config.toml,
/// the daemon log and the async runtime.
pub struct Process {
    pub home: Home,
    pub config: bm2_daemon::config::DaemonConfig,
    pub runtime: tokio::runtime::Runtime,
}

impl Process {
    /// With `detach`, the process also leaves its session and working directory (a background
    /// daemon); the runtime keeps them (a container's main process).
    pub fn prepare(layout: bm2_types::Layout, detach: bool) -> Result<Process, String> {
        bm2_daemon::memory::limit_arenas();
        let home = Home::from_env_as(layout).map_err(|e| e.to_string())?;
        if detach {
            let _ = nix::unistd::setsid();
            let _ = std::env::set_current_dir("/");
        }
        let config = bm2_daemon::config::load(&home.config_file()).map_err(|e| e.to_string())?;
        bm2_daemon::logs::daemon_log::init(&home, &config.logs)
            .map_err(|e| format!("cannot open {}: {e}", home.daemon_log().display()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(server::BLOCKING_THREADS)
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        Ok(Process {
            home,
            config,
            runtime,
        })
    }
}

/// Runs the daemon in this process until it is told to exit. With `resurrect`, the saved list
/// is started after the previous daemon's state; with `NOTIFY_SOCKET` set (a systemd service of
/// `Type=notify`), `READY=1` is sent there once the daemon serves and those apps are started.
pub fn run_daemon(
    layout: bm2_types::Layout,
    resurrect: bool,
    handover: Option<std::os::fd::RawFd>,
) -> ExitCode {
    let notify = take_notify_socket();
    let Process {
        home,
        config,
        runtime,
    } = match Process::prepare(layout, true) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bm2 daemon: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::run(
        home,
        DaemonOptions {
            detach_stdio: true,
            resurrect,
            notify,
            handover,
            log_defaults: config.logs,
            dashboard: config.dashboard,
            ..DaemonOptions::from_env()
        },
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ DaemonError::AlreadyRunning { .. }) => {
            eprintln!("bm2 daemon: {e}");
            ExitCode::from(bm2_client::EXIT_ALREADY_RUNNING as u8)
        }
        Err(e) => {
            tracing::error!(error = %e, "daemon failed");
            eprintln!("bm2 daemon: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads `NOTIFY_SOCKET` and removes it from the environment, so that no app (nor a daemon
/// started by an app) notifies the service manager in the daemon's name.
#[allow(unsafe_code)]
fn take_notify_socket() -> Option<bm2_daemon::notify::NotifySocket> {
    let value = std::env::var_os("NOTIFY_SOCKET")?;
    // SAFETY: called first thing in the daemon's main thread, before any other thread exists.
    unsafe { std::env::remove_var("NOTIFY_SOCKET") };
    let parsed = value
        .to_str()
        .and_then(bm2_daemon::notify::NotifySocket::parse);
    if parsed.is_none() {
        eprintln!(
            "bm2 daemon: ignoring NOTIFY_SOCKET={}: not a path nor an abstract name (@name)",
            value.to_string_lossy()
        );
    }
    parsed
}

pub async fn ping(client: &Client) -> anyhow::Result<ExitCode> {
    let p = client.ping().await.map_err(api_error)?;
    println!(
        "bm2 daemon is alive: pid {}, version {}, up {}, home {}",
        p.pid,
        p.version,
        render::uptime(p.uptime_ms),
        p.home.display()
    );
    if let Some(exe) = &p.exe {
        let updates = match p.handovers {
            0 => String::new(),
            1 => ", updated in place once".to_string(),
            n => format!(", updated in place {n} times"),
        };
        println!("binary {}{updates}", exe.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn kill(client: &Client) -> anyhow::Result<ExitCode> {
    match client.kill().await {
        Ok(p) => {
            render::info(&format!(
                "stopped all processes and the daemon (pid {})",
                p.pid
            ));
            wait_for_exit(p.pid).await;
            Ok(ExitCode::SUCCESS)
        }
        Err(ClientError::NotRunning(_)) => kill_without_daemon(client.home()).await,
        Err(e) => Err(api_error(e)),
    }
}

/// No daemon answers: whatever a dead daemon left running is stopped here, and its list
/// emptied, as the daemon would have done.
async fn kill_without_daemon(home: &Home) -> anyhow::Result<ExitCode> {
    match server::kill_without_daemon(home).await {
        Ok(done) => {
            let s = done.stopped;
            let plural = |n: usize| if n == 1 { "" } else { "es" };
            let mut what = vec!["the daemon was not running".to_string()];
            if s.processes > 0 {
                let forced = if s.killed > 0 {
                    format!(" ({} with SIGKILL)", s.killed)
                } else {
                    String::new()
                };
                what.push(format!(
                    "stopped {} process{} it left running{forced}",
                    s.processes,
                    plural(s.processes)
                ));
            }
            if done.recorded > 0 {
                what.push(format!(
                    "cleared its list of {} process{}",
                    done.recorded,
                    plural(done.recorded)
                ));
            }
            let what = what.join("; ");
            render::info(&what);
            Ok(ExitCode::SUCCESS)
        }
        Err(DaemonError::AlreadyRunning { pid, .. }) => {
            let holder = bm2_client::lock_holder(home);
            Err(anyhow::anyhow!(
                "a bm2 daemon{pid} holds the lock of {} but does not answer on {} (was the socket file removed?); stop it with `kill {}`",
                home.root().display(),
                home.socket().display(),
                holder.map_or_else(|| "<pid>".to_string(), |p| p.to_string())
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// Waits (bounded) until the daemon process has exited, so its socket and lock are free.
async fn wait_for_exit(pid: u32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists()
        && bm2_daemon::procfs::read_stat(pid).is_some_and(|s| !s.is_zombie())
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

pub async fn save(client: &Client) -> anyhow::Result<ExitCode> {
    let s = client.save().await.map_err(api_error)?;
    render::info(&format!(
        "saved {} processes to {}",
        s.count,
        s.path.display()
    ));
    Ok(ExitCode::SUCCESS)
}

pub async fn resurrect(client: &Client, update_env: bool) -> anyhow::Result<ExitCode> {
    // As `pm2`, the dump.pm2 found may be PM2's own (a JSON array of processes, left by PM2
    // before the switch): its apps are imported, and those PM2 ran are started.
    let home = client.home();
    if home.layout() == bm2_types::Layout::Pm2 && is_pm2_dump(&home.dump_file()) {
        return super::import_pm2::import(client, &home.dump_file(), &home.logs_dir(), true).await;
    }
    let req = bm2_types::ResurrectRequest {
        update_env: update_env.then(|| std::env::vars().collect()),
    };
    let res = client.resurrect(&req).await;
    report(client, res).await
}

/// Whether the file is PM2's dump (a JSON array) rather than bm2's (an object).
fn is_pm2_dump(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 64];
    let Ok(n) = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)) else {
        return false;
    };
    head[..n]
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'[')
}

/// How long `update` waits for the old daemon to stop its apps and exit.
const UPDATE_STOP_SECS: u64 = 120;
const UPDATE_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(UPDATE_STOP_SECS);

/// `update` (PM2's `update`, `updatePM2`): saves the list, stops the daemon keeping its state
/// (as SIGTERM does: every app recorded with whether it should run), and starts a daemon from
/// this binary, which brings every app back under the same id, stopped or running as before.
pub async fn update(
    client: &Client,
    binary: Option<std::path::PathBuf>,
) -> anyhow::Result<ExitCode> {
    let exe = match binary {
        Some(path) => {
            std::path::absolute(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => std::env::current_exe()
            .map_err(|e| anyhow::anyhow!("cannot find this bm2's binary: {e}"))?,
    };
    let old = client.ping().await.map_err(api_error)?;
    // As PM2's update, the list is saved first (an empty one does not replace the last save).
    if !client.list().await.map_err(api_error)?.is_empty() {
        let s = client.save().await.map_err(api_error)?;
        render::info(&format!(
            "saved {} processes to {}",
            s.count,
            s.path.display()
        ));
    }
    match client.update(&exe).await {
        Ok(done) => {
            render::info(&format!(
                "daemon updated in place: pid {} now runs {} (version {} -> {}), {} process{} kept running, in {} ms",
                done.pid,
                done.exe.display(),
                done.from_version,
                done.version,
                done.kept,
                if done.kept == 1 { "" } else { "es" },
                done.took_ms
            ));
            let list = client.list().await.map_err(api_error)?;
            render::table::print(&list);
            Ok(ExitCode::SUCCESS)
        }
        // A daemon from before in-place updates has no such route.
        Err(ClientError::Api(e))
            if matches!(e.code, ErrorCode::CannotTakeOver | ErrorCode::NotFound) =>
        {
            render::warn(&format!(
                "{}; updating the way PM2 does instead: the list is saved, the daemon restarted from {} and every app started again",
                if e.code == ErrorCode::NotFound {
                    format!(
                        "the running daemon (version {}) cannot take over in place",
                        old.version
                    )
                } else {
                    e.message.clone()
                },
                exe.display()
            ));
            let restarted = Client::new(client.home().clone()).with_daemon_exe(exe);
            restart_daemon(&restarted, &old).await
        }
        Err(e @ ClientError::Transport { .. }) if !daemon_alive(old.pid) => Err(anyhow::anyhow!(
            "{e}: the daemon (pid {}) ended during the handover to {}; its apps run on, and the next command starts a daemon that brings them back from its state file (restarted)",
            old.pid,
            exe.display()
        )),
        Err(e) => Err(api_error(e)),
    }
}

/// PM2's update: saves the list, stops the daemon (which records what should run, as SIGTERM
/// does) and starts a new one from `client`'s binary, which brings every app back under the
/// same id, stopped or running as before, with new pids.
async fn restart_daemon(
    client: &Client,
    old: &bm2_types::PingResponse,
) -> anyhow::Result<ExitCode> {
    if !client.list().await.map_err(api_error)?.is_empty() {
        let s = client.save().await.map_err(api_error)?;
        render::info(&format!(
            "saved {} processes to {}",
            s.count,
            s.path.display()
        ));
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(old.pid)?);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
        .map_err(|e| anyhow::anyhow!("cannot stop the daemon (pid {}): {e}", old.pid))?;
    let deadline = std::time::Instant::now() + UPDATE_STOP_TIMEOUT;
    while daemon_alive(old.pid) {
        if std::time::Instant::now() >= deadline {
            anyhow::bail!(
                "the daemon (pid {}) is still stopping its apps after {} s; run `bm2 update` again once it has exited",
                old.pid,
                UPDATE_STOP_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let new = client.ping().await.map_err(api_error)?;
    render::info(&format!(
        "daemon updated: pid {} (version {}) replaced pid {} (version {})",
        new.pid, new.version, old.pid, old.version
    ));
    let list = client.list().await.map_err(api_error)?;
    render::table::print(&list);
    Ok(ExitCode::SUCCESS)
}

fn daemon_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && bm2_daemon::procfs::read_stat(pid).is_some_and(|s| !s.is_zombie())
}
