//! Being the daemon: single-instance lock, Unix socket, restore, serve, shut down.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

use crate::api::{self, AppState};
use crate::handover;
use crate::{Home, ProcessManager};

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another daemon holds the lock of this home.
    #[error("another bm2 daemon is already running for {home}{pid}")]
    AlreadyRunning {
        /// The home directory.
        home: String,
        /// ` (pid N)` when known.
        pid: String,
    },
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// The state file could not be restored.
    #[error(transparent)]
    State(#[from] crate::persist::PersistError),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

/// Threads the daemon's runtime may use for blocking work (file writes with fsync, `/proc`
/// scans, compression, log history). Every such job is short, and the `/proc` scans of many
/// stops share one scan, so more threads only add memory: with tokio's default of 512, stopping
/// hundreds of apps at once grew the daemon by a thread stack and an allocator arena per thread.
pub const BLOCKING_THREADS: usize = 16;

/// Options of a daemon run.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// How often CPU and memory are sampled.
    pub sample_interval: Duration,
    /// Log settings apps inherit (from `config.toml`).
    pub log_defaults: crate::logs::LogDefaults,
    /// The dashboard settings of config.toml (started with the daemon when `enabled`).
    pub dashboard: bm2_types::DashboardOptions,
    /// Once the lock is held, point stdin/stdout at /dev/null and stderr at the daemon log, so
    /// that the daemon outlives the terminal or pipe it was started from.
    pub detach_stdio: bool,
    /// Reap every zombie child as soon as SIGCHLD arrives, not only at the next sample: for a
    /// daemon that is a container's PID 1, to which every orphan of the container is reparented.
    /// No adopted zombie is reaped (not by samples or stops either) until the value is true:
    /// until then the process may wait for children of its own (a config file evaluated by
    /// `node`) that must not be reaped from under it.
    pub reap_on_sigchld: Option<tokio::sync::watch::Receiver<bool>>,
    /// Once the previous daemon's state is restored, also bring back the saved list (the dump
    /// file), as `bm2 resurrect` does: what a daemon started at boot runs.
    pub resurrect: bool,
    /// Where to send `READY=1` once the daemon serves and its apps are started (systemd's
    /// `Type=notify`).
    pub notify: Option<crate::notify::NotifySocket>,
    /// The descriptor of the handover state left by the daemon this process was before it
    /// re-executed itself (`bm2 update`): its apps are taken over, not started.
    pub handover: Option<std::os::fd::RawFd>,
}

impl DaemonOptions {
    /// Defaults, with the sample interval taken from `BM2_SAMPLE_INTERVAL_MS` when set.
    pub fn from_env() -> DaemonOptions {
        let mut opts = DaemonOptions::default();
        if let Some(ms) = std::env::var("BM2_SAMPLE_INTERVAL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            opts.sample_interval = Duration::from_millis(ms);
        }
        opts
    }
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            sample_interval: Duration::from_secs(1),
            log_defaults: crate::logs::LogDefaults::default(),
            dashboard: bm2_types::DashboardOptions::default(),
            detach_stdio: false,
            reap_on_sigchld: None,
            resurrect: false,
            notify: None,
            handover: None,
        }
    }
}

/// Runs the daemon for `home` until `bm2 kill`, SIGTERM or SIGINT.
pub async fn run(home: Home, opts: DaemonOptions) -> Result<(), DaemonError> {
    home.create()
        .map_err(io_err(format!("create {}", home.root().display())))?;
    // Listening first: a signal held across a handover's exec is delivered once unblocked.
    let term = signal(SignalKind::terminate()).ok();
    let int = signal(SignalKind::interrupt()).ok();
    handover::release_signals();
    let taken = match opts.handover {
        Some(fd) => Some(take_handover(fd)?),
        None => None,
    };
    let lock = match &taken {
        Some((lock, _, _)) => relock(lock.try_clone().map_err(io_err("keep the lock"))?, &home)?,
        None => lock(&home)?,
    };
    tracing::info!(pid = std::process::id(), "daemon starting");
    fs::write(home.pid_file(), std::process::id().to_string())
        .map_err(io_err(format!("write {}", home.pid_file().display())))?;
    raise_fd_limit();
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(error = %e, "cannot become a child subreaper; double-forked processes may escape");
    }
    let manager = ProcessManager::new(
        home.clone(),
        opts.sample_interval,
        opts.log_defaults.clone(),
    );
    // A state file this daemon cannot use is reported before it listens, so the command that
    // started it gets the reason instead of a closed connection.
    let state = manager.load_state().inspect_err(|_| {
        let _ = fs::remove_file(home.pid_file());
    })?;
    // The socket exists as soon as the state is read: a command that finds the lock held but
    // no socket knows that the socket was removed, not that the daemon is still restoring.
    // Connections made while the apps are restored wait in the socket's backlog.
    let (listener, answer) = if let Some((_, api, mut handed)) = taken {
        let listener = api_listener(api)?;
        let kept = manager
            .take_over(state, std::mem::take(&mut handed.frozen))
            .await;
        manager.handed_over(handed.uptime_ms, handed.handovers + 1);
        tracing::info!(kept, from = %handed.from_version, "took over from the previous binary");
        (listener, Some((handed, kept)))
    } else {
        let listener = bind(&home.socket())?;
        let restored = manager.restore_state(state).await;
        if !restored.processes.is_empty() {
            tracing::info!(count = restored.processes.len(), "restored processes");
        }
        if opts.resurrect {
            resurrect_saved(&manager).await;
        }
        (listener, None)
    };
    let api_fd = {
        use std::os::fd::AsFd;
        listener
            .as_fd()
            .try_clone_to_owned()
            .map_err(io_err("keep the API socket"))?
    };
    // Until here, an error reaches the command that started the daemon on its stderr.
    if opts.detach_stdio {
        detach_stdio(&home).map_err(io_err("redirect standard streams"))?;
    }
    if let Some(gate) = opts.reap_on_sigchld.clone() {
        manager.hold_orphans();
        tokio::spawn(reap_on_sigchld(manager.clone(), gate));
    }
    let exit = Arc::new(Notify::new());
    let (update_tx, mut updates) = tokio::sync::mpsc::channel(1);
    let state = AppState {
        manager: manager.clone(),
        exit: exit.clone(),
        web: Arc::default(),
        // A container's main process streams the apps' output: it is not re-executed.
        update: opts.reap_on_sigchld.is_none().then_some(update_tx),
    };
    let dashboard = answer
        .as_ref()
        .and_then(|(handed, _)| handed.dashboard.clone())
        .or_else(|| opts.dashboard.enabled.then(|| opts.dashboard.clone()));
    if let Some(dashboard) = dashboard {
        match state.web.start(dashboard, state.clone()).await {
            Ok(info) => tracing::info!(url = %info.metrics_url, "dashboard started"),
            Err(e) => tracing::error!(error = %e, "cannot start the dashboard"),
        }
    }
    let web = state.web.clone();
    let app = api::router(state);
    tracing::info!(pid = std::process::id(), socket = %home.socket().display(), "daemon ready");
    let by_signal = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = by_signal.clone();
    let closing = manager.clone();
    let paused = tokio::sync::watch::Sender::new(false);
    let listener = api::listener::ApiListener::new(listener, paused.subscribe());
    let serve = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<handover::ConnFd>(),
    )
    .with_graceful_shutdown(async move {
        let (mut term, mut int) = (term, int);
        tokio::select! {
            () = exit.notified() => {}
            _ = recv(term.as_mut()) => flag.store(true, std::sync::atomic::Ordering::SeqCst),
            _ = recv(int.as_mut()) => flag.store(true, std::sync::atomic::Ordering::SeqCst),
        }
        if flag.load(std::sync::atomic::Ordering::SeqCst) {
            // Stopped by a signal: the apps stop while the API still serves, so that log
            // followers (a container's output) get what the apps print as they stop; new work
            // is refused meanwhile. The shutdown ends the long-lived streams once done.
            tracing::info!("signal received: stopping apps");
            closing.shutdown(false).await;
        }
        // (After `bm2 kill`, which already stopped the apps.)
        closing.end_streams();
    });
    if let Some(socket) = &opts.notify {
        // Connections made before now wait in the socket's backlog: the daemon serves them.
        match socket.send("READY=1") {
            Ok(()) => tracing::info!(socket = %socket, "readiness sent to the service manager"),
            Err(e) => {
                tracing::error!(socket = %socket, error = %e, "cannot notify the service manager");
            }
        }
    }
    if let Some((handed, kept)) = answer {
        answer_update(&manager, handed, kept);
    }
    let mut serve = std::pin::pin!(serve.into_future());
    let served = loop {
        tokio::select! {
            served = &mut serve => break served,
            Some(request) = updates.recv() => {
                let dashboard = web.options().await;
                hand_over(&manager, &lock, &api_fd, &paused, dashboard, request).await;
            }
        }
    };
    served.map_err(io_err("serve API"))?;
    web.stop().await;
    let _ = fs::remove_file(home.socket());
    let _ = fs::remove_file(home.pid_file());
    tracing::info!("daemon exited");
    Ok(())
}

/// Reads the handover state at descriptor `fd`: the home's lock, the API socket and the rest.
fn take_handover(
    fd: std::os::fd::RawFd,
) -> Result<(fs::File, std::os::fd::OwnedFd, handover::Taken), DaemonError> {
    let fd = handover::fd::take_raw(fd).map_err(io_err("take the handover state"))?;
    let state = handover::read(fd).map_err(|e| DaemonError::Io {
        what: "take over from the previous binary".into(),
        source: io::Error::other(e.to_string()),
    })?;
    let (lock, api, taken) = state.split();
    Ok((fs::File::from(lock), api, taken))
}

/// Answers the `update` request that led here, on its connection.
fn answer_update(manager: &ProcessManager, handed: handover::Taken, kept: usize) {
    let Some(client) = handed.client else { return };
    let exe = std::env::current_exe().unwrap_or_default();
    let response = bm2_types::UpdateResponse {
        pid: std::process::id(),
        from_version: handed.from_version,
        version: bm2_types::VERSION.to_string(),
        exe,
        handovers: manager.handovers(),
        kept,
        took_ms: crate::time::now_ms().saturating_sub(handed.asked_at_ms),
    };
    tokio::task::spawn_blocking(move || handover::answer(client.into_inner(), 200, &response));
}

/// Hands the daemon over to `request.exe` (see [`crate::handover`]); returns only when that
/// failed, with every app running on under this daemon and the reason sent to the client.
async fn hand_over(
    manager: &ProcessManager,
    lock: &Flock<fs::File>,
    api: &std::os::fd::OwnedFd,
    paused: &tokio::sync::watch::Sender<bool>,
    dashboard: Option<bm2_types::DashboardOptions>,
    request: handover::Request,
) {
    use std::os::fd::AsFd;
    let asked_at_ms = crate::time::now_ms();
    tracing::info!(exe = %request.exe.display(), "handing over to a new binary");
    paused.send_replace(true);
    let frozen = match manager.freeze().await {
        Ok(frozen) => frozen,
        Err((frozen, e)) => {
            manager.thaw(frozen).await;
            paused.send_replace(false);
            tracing::error!(error = %e.message, "handover abandoned");
            let _ = request.done.send(e);
            return;
        }
    };
    let dup = |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned().map(handover::Fd);
    let state = match (dup(lock.as_fd()), dup(api.as_fd())) {
        (Ok(lock), Ok(api)) => handover::State {
            format: handover::FORMAT,
            from_version: bm2_types::VERSION.to_string(),
            uptime_ms: manager.uptime_ms(),
            handovers: manager.handovers(),
            asked_at_ms,
            lock,
            api,
            client: Some(handover::Fd(request.client)),
            dashboard,
            frozen,
        },
        (Err(e), _) | (_, Err(e)) => {
            manager.thaw(frozen).await;
            paused.send_replace(false);
            let _ = request.done.send(update_failed(&request.exe, &e));
            return;
        }
    };
    let err = match handover::write(&state) {
        Ok((memfd, fds)) => match handover::fd::set_cloexec(&fds, false) {
            Ok(()) => {
                tracing::info!(exe = %request.exe.display(), descriptors = fds.len(), "re-executing");
                let e = handover::exec(&request.exe, manager.home().layout().program(), &memfd);
                let _ = handover::fd::set_cloexec(&fds, true);
                e
            }
            Err(e) => {
                let _ = handover::fd::set_cloexec(&fds, true);
                e
            }
        },
        Err(e) => e,
    };
    // Still this binary: the handover did not happen.
    tracing::error!(exe = %request.exe.display(), error = %err, "handover failed; carrying on");
    manager.thaw(state.frozen).await;
    paused.send_replace(false);
    let _ = request.done.send(update_failed(&request.exe, &err));
}

fn update_failed(exe: &Path, e: &io::Error) -> bm2_types::ApiError {
    bm2_types::ApiError::new(
        bm2_types::ErrorCode::UpdateFailed,
        format!("cannot run {}: {e}", exe.display()),
    )
    .with_hint("the daemon runs on with every app untouched")
}

/// Reaps the zombie children the daemon adopted each time SIGCHLD arrives (signals that arrive
/// together are one wake-up, and each wake-up reaps every zombie found).
async fn reap_on_sigchld(
    manager: Arc<ProcessManager>,
    mut gate: tokio::sync::watch::Receiver<bool>,
) {
    let mut child = match signal(SignalKind::child()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGCHLD; orphans are reaped at each sample only");
            return;
        }
    };
    if gate.wait_for(|open| *open).await.is_err() {
        manager.release_orphans();
        return;
    }
    manager.release_orphans();
    loop {
        let m = manager.clone();
        let _ = tokio::task::spawn_blocking(move || m.reap_adopted_zombies()).await;
        if child.recv().await.is_none() {
            return;
        }
    }
}

/// Brings back the dump file's apps not restored already; a missing dump is no error (nothing
/// was saved yet), any other failure is logged and the daemon serves what it has.
async fn resurrect_saved(manager: &ProcessManager) {
    let dump = manager.home().dump_file();
    if !dump.exists() {
        tracing::info!(dump = %dump.display(), "no saved list to resurrect");
        return;
    }
    match manager.resurrect(None).await {
        Ok(done) => {
            tracing::info!(
                count = done.processes.len(),
                dump = %dump.display(),
                "resurrected the saved list"
            );
            for e in &done.errors {
                tracing::error!(error = ?e, "an app of the saved list did not start");
            }
        }
        Err(e) => {
            tracing::error!(dump = %dump.display(), error = %e.message, "cannot resurrect the saved list");
        }
    }
}

/// What `bm2 kill` did when no daemon was running.
#[derive(Debug, Clone, Copy, Default)]
pub struct OfflineKill {
    /// Apps the state file still listed.
    pub recorded: usize,
    /// Processes of this home found running, and stopped.
    pub stopped: crate::leftovers::Stopped,
}

/// `bm2 kill` without a daemon: with the home's lock held (so no daemon starts meanwhile),
/// stops every process the state file or this home's marker says is still running, empties the
/// state, and removes a stale socket and pid file. Fails when a daemon holds the lock.
pub async fn kill_without_daemon(home: &Home) -> Result<OfflineKill, DaemonError> {
    if !home.root().exists() {
        return Ok(OfflineKill::default());
    }
    let _lock = lock(home)?;
    let path = home.state_file();
    // An unreadable state file is left as it is; the marker still finds the processes.
    let (state, readable) = match crate::persist::load(&path) {
        Ok(s) => (s, true),
        Err(_) => (crate::persist::StateFile::default(), false),
    };
    let stopped = crate::leftovers::stop(home.root(), &state).await;
    if readable && !state.instances.is_empty() {
        crate::persist::store(
            &path,
            &crate::persist::StateFile {
                version: crate::persist::STATE_VERSION,
                ..crate::persist::StateFile::default()
            },
        )?;
    }
    let _ = fs::remove_file(home.socket());
    let _ = fs::remove_file(home.pid_file());
    Ok(OfflineKill {
        recorded: state.instances.len(),
        stopped,
    })
}

async fn recv(s: Option<&mut tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Each app costs the daemon a few descriptors (two pipes, its stat file): raise the soft limit
/// towards the hard one, to at most 65536 (apps inherit it).
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    const WANTED: u64 = 65536;
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < WANTED.min(hard)
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, WANTED.min(hard), hard)
    {
        tracing::warn!(error = %e, "cannot raise the open file limit");
    }
}

fn detach_stdio(home: &Home) -> io::Result<()> {
    let null = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.daemon_log())?;
    nix::unistd::dup2_stdin(&null)?;
    nix::unistd::dup2_stdout(&null)?;
    nix::unistd::dup2_stderr(&log)?;
    Ok(())
}

/// Takes the home's lock for the life of the daemon, and writes the daemon's pid in the lock
/// file (where a command finds it even when `daemon.pid` was removed); fails when another
/// daemon holds it.
fn lock(home: &Home) -> Result<Flock<fs::File>, DaemonError> {
    use std::io::{Seek, Write};
    let path = home.lock_file();
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io_err(format!("open {}", path.display())))?;
    let mut lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| {
        DaemonError::AlreadyRunning {
            home: home.root().display().to_string(),
            pid: fs::read_to_string(&path)
                .ok()
                .filter(|p| !p.trim().is_empty())
                .or_else(|| fs::read_to_string(home.pid_file()).ok())
                .map(|p| format!(" (pid {})", p.trim()))
                .unwrap_or_default(),
        }
    })?;
    let _ = lock.set_len(0);
    let _ = lock.rewind();
    let _ = writeln!(lock, "{}", std::process::id());
    Ok(lock)
}

/// Keeps the home's lock carried over by a handover (the same open file, still locked).
fn relock(file: fs::File, home: &Home) -> Result<Flock<fs::File>, DaemonError> {
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| DaemonError::AlreadyRunning {
        home: home.root().display().to_string(),
        pid: String::new(),
    })
}

/// The API socket carried over by a handover.
fn api_listener(fd: std::os::fd::OwnedFd) -> Result<UnixListener, DaemonError> {
    let listener = std::os::unix::net::UnixListener::from(fd);
    listener
        .set_nonblocking(true)
        .map_err(io_err("take the API socket"))?;
    UnixListener::from_std(listener).map_err(io_err("take the API socket"))
}

/// Binds the socket owner-only. Called with the lock held, so an existing socket file is stale.
fn bind(path: &Path) -> Result<UnixListener, DaemonError> {
    match fs::remove_file(path) {
        Ok(()) => tracing::info!(socket = %path.display(), "replaced stale socket"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(format!("remove stale socket {}", path.display()))(e)),
    }
    let listener = UnixListener::bind(path).map_err(io_err(format!("bind {}", path.display())))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(io_err(format!("chmod {}", path.display())))?;
    Ok(listener)
}
