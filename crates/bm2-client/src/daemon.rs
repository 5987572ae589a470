//! Starting the daemon on first use.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bm2_types::Home;
use tokio::net::UnixStream;

use crate::ClientError;

/// Exit code of a daemon that found another one running.
pub const EXIT_ALREADY_RUNNING: i32 = 3;

/// How long to wait for a new daemon to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a daemon that holds the home's lock may leave its socket missing before the
/// command gives up: a daemon binds its socket right after taking the lock.
const HELD_WAIT: Duration = Duration::from_secs(2);

/// Connects to the daemon of `home`, starting `exe daemon` first when none listens.
pub async fn connect_or_start(home: &Home, exe: &Path) -> Result<UnixStream, ClientError> {
    if let Ok(s) = UnixStream::connect(home.socket()).await {
        return Ok(s);
    }
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match start_once(home, exe, deadline).await? {
            Started::Listening(s) => return Ok(s),
            Started::Held => {
                if let Some(s) = wait_for_holder(home).await? {
                    return Ok(s);
                }
                // The daemon that held the lock has exited: start one again.
            }
        }
        if Instant::now() >= deadline {
            return Err(not_listening(home));
        }
    }
}

enum Started {
    /// A daemon listens.
    Listening(UnixStream),
    /// Another daemon holds the lock of this home.
    Held,
}

/// Starts a daemon and waits until one listens or it exits.
async fn start_once(home: &Home, exe: &Path, deadline: Instant) -> Result<Started, ClientError> {
    // The daemon is started under the program name of the home's layout (`pm2` for PM2's
    // names) and told the same home through the same variables.
    let mut child = Command::new(exe)
        .arg0(home.layout().program())
        .arg("daemon")
        .envs(home.daemon_env())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            ClientError::StartFailed(format!("cannot run {} daemon: {e}", exe.display()))
        })?;
    let mut pause = Duration::from_micros(500);
    loop {
        if let Ok(s) = UnixStream::connect(home.socket()).await {
            // Reap it whenever it ends, without blocking the caller.
            std::thread::spawn(move || child.wait());
            return Ok(Started::Listening(s));
        }
        if let Ok(Some(status)) = child.try_wait() {
            if status.code() == Some(EXIT_ALREADY_RUNNING) {
                return Ok(Started::Held);
            }
            let mut why = String::new();
            if let Some(mut err) = child.stderr.take() {
                use std::io::Read;
                let _ = err.read_to_string(&mut why);
            }
            let why = why.trim();
            return Err(ClientError::StartFailed(if why.is_empty() {
                format!(
                    "the daemon exited ({status}); see {}",
                    home.daemon_log().display()
                )
            } else {
                format!("the daemon exited ({status}): {why}")
            }));
        }
        if Instant::now() >= deadline {
            return Err(not_listening(home));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Another daemon holds the home's lock: waits (briefly) for its socket. `None` when that
/// daemon has exited meanwhile; an error naming it when it lives on without a socket.
async fn wait_for_holder(home: &Home) -> Result<Option<UnixStream>, ClientError> {
    let until = Instant::now() + HELD_WAIT;
    let holder = lock_holder(home);
    loop {
        if let Ok(s) = UnixStream::connect(home.socket()).await {
            return Ok(Some(s));
        }
        if holder.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            return Ok(None);
        }
        if Instant::now() >= until {
            let who = holder.map_or_else(
                || "another bm2 daemon".to_string(),
                |pid| format!("the bm2 daemon with pid {pid}"),
            );
            let stop = holder.map_or_else(
                || "stop that daemon".to_string(),
                |pid| format!("run `kill {pid}` (its apps are stopped, and started again by the next daemon)"),
            );
            return Err(ClientError::StartFailed(format!(
                "{who} holds the lock of {} but does not answer on {} (was the socket file removed?); {stop}, then run the command again",
                home.root().display(),
                home.socket().display(),
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pid of the daemon holding the lock of `home`, as it wrote it in the lock file (or, from
/// older daemons, in the pid file).
pub fn lock_holder(home: &Home) -> Option<u32> {
    [home.lock_file(), home.pid_file()]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok()?.trim().parse().ok())
}

fn not_listening(home: &Home) -> ClientError {
    ClientError::StartFailed(format!(
        "no daemon listening on {} after {}s; see {}",
        home.socket().display(),
        START_TIMEOUT.as_secs(),
        home.daemon_log().display()
    ))
}
