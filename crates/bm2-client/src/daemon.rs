//! Starting the daemon on first use.

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

/// Connects to the daemon of `home`, starting `exe daemon` first when none listens.
pub async fn connect_or_start(home: &Home, exe: &Path) -> Result<UnixStream, ClientError> {
    if let Ok(s) = UnixStream::connect(home.socket()).await {
        return Ok(s);
    }
    let mut child = Command::new(exe)
        .arg("daemon")
        .env("BM2_HOME", home.root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            ClientError::StartFailed(format!("cannot run {} daemon: {e}", exe.display()))
        })?;
    let deadline = Instant::now() + START_TIMEOUT;
    let mut pause = Duration::from_micros(500);
    let mut exited = false;
    loop {
        if let Ok(s) = UnixStream::connect(home.socket()).await {
            if !exited {
                // Reap it whenever it ends, without blocking the caller.
                std::thread::spawn(move || child.wait());
            }
            return Ok(s);
        }
        if !exited && let Ok(Some(status)) = child.try_wait() {
            exited = true;
            if status.code() != Some(EXIT_ALREADY_RUNNING) {
                let mut why = String::new();
                if let Some(mut err) = child.stderr.take() {
                    use std::io::Read;
                    let _ = err.read_to_string(&mut why);
                }
                return Err(ClientError::StartFailed(format!(
                    "the daemon exited ({status}): {}",
                    why.trim()
                )));
            }
        }
        if Instant::now() >= deadline {
            return Err(ClientError::StartFailed(format!(
                "no daemon listening on {} after {}s; see {}",
                home.socket().display(),
                START_TIMEOUT.as_secs(),
                home.daemon_log().display()
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}
