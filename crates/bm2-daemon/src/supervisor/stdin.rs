//! The write end of each process's stdin, kept by the daemon for `send` (PM2's `pm2 send`).
//!
//! Every process gets a pipe as its stdin, as under PM2. The instance's [`StdinSlot`] holds the
//! write end of its current process; the process's [`StdinGuard`] (kept with the running
//! process) empties the slot when that process ends, so the pipe is closed with it. Writes run
//! in their own task with a deadline: a client that goes away does not cut the line short, and a
//! process that does not read its stdin costs the writer an error, never the daemon a thread.
//! At the deadline the write is given up, so a line reported as not sent is not delivered later
//! either (a line of up to 4 KiB, `PIPE_BUF`, goes whole or not at all; a longer one may have
//! been partly written when the process stopped reading).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;

/// How long a write may wait for a process that does not read its stdin.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

type Pipe = Arc<tokio::sync::Mutex<ChildStdin>>;

/// The stdin pipe of an instance's current process.
#[derive(Debug, Default)]
pub struct StdinSlot {
    current: Mutex<Option<(u32, Pipe)>>,
}

/// Why a line could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No process of the instance runs with this pid (it exited or was replaced).
    #[error("the process is not running")]
    NotRunning,
    /// The process closed its stdin, or exited while being written to.
    #[error("the process closed its stdin ({0})")]
    Closed(std::io::Error),
    /// The pipe stayed full: the process does not read its stdin.
    #[error(
        "the process did not read its stdin within {} s (the pipe is full)",
        WRITE_TIMEOUT.as_secs()
    )]
    Full,
}

impl StdinSlot {
    /// Keeps `pipe`, the stdin of the new process `pid`; the guard empties the slot when the
    /// process ends.
    pub fn set(self: &Arc<Self>, pid: u32, pipe: ChildStdin) -> StdinGuard {
        *self.lock() = Some((pid, Arc::new(tokio::sync::Mutex::new(pipe))));
        StdinGuard {
            slot: self.clone(),
            pid,
        }
    }

    /// A descriptor of process `pid`'s stdin pipe (for a handover), when it is the current one.
    pub fn dup(&self, pid: u32) -> Option<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        match &*self.lock() {
            Some((p, pipe)) if *p == pid => {
                let pipe = pipe.try_lock().ok()?;
                pipe.as_fd().try_clone_to_owned().ok()
            }
            _ => None,
        }
    }

    /// Keeps `fd` as the stdin of process `pid`, taken over in a handover.
    pub fn set_fd(self: &Arc<Self>, pid: u32, fd: std::os::fd::OwnedFd) -> Option<StdinGuard> {
        let pipe = ChildStdin::from_std(std::process::ChildStdin::from(fd)).ok()?;
        Some(self.set(pid, pipe))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(u32, Pipe)>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `bytes` to the stdin of process `pid` (whole, in order with other writes).
    pub async fn write(&self, pid: u32, bytes: Vec<u8>) -> Result<(), SendError> {
        let pipe = match &*self.lock() {
            Some((p, pipe)) if *p == pid => pipe.clone(),
            _ => return Err(SendError::NotRunning),
        };
        // The deadline is inside the task: it ends the write even when the client is gone.
        let write = tokio::spawn(tokio::time::timeout(WRITE_TIMEOUT, async move {
            let mut pipe = pipe.lock().await;
            pipe.write_all(&bytes).await?;
            pipe.flush().await
        }));
        match write.await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(SendError::Closed(e)),
            Ok(Err(_elapsed)) => Err(SendError::Full),
            Err(join) => Err(SendError::Closed(std::io::Error::other(join.to_string()))),
        }
    }
}

/// Empties its slot when the process it was made for ends (unless another process took the
/// slot meanwhile).
#[derive(Debug)]
pub struct StdinGuard {
    slot: Arc<StdinSlot>,
    pid: u32,
}

impl Drop for StdinGuard {
    fn drop(&mut self) {
        let mut current = self.slot.lock();
        if current.as_ref().is_some_and(|(p, _)| *p == self.pid) {
            *current = None;
        }
    }
}
