//! The main process of an instance as the daemon waits for it: a child it spawned (tokio owns
//! it), or one it took over in a handover (`bm2 update`), which it is still the parent of after
//! re-executing itself and reaps by pid when SIGCHLD says a child changed.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// A main process being waited for.
#[derive(Debug)]
pub enum Child {
    /// Spawned by this daemon.
    Spawned(tokio::process::Child),
    /// Taken over from the daemon before a handover.
    Adopted(Adopted),
}

impl From<tokio::process::Child> for Child {
    fn from(child: tokio::process::Child) -> Self {
        Child::Spawned(child)
    }
}

impl Child {
    /// Waits for the process to exit (cancel-safe) and returns how it ended.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        match self {
            Child::Spawned(c) => c.wait().await,
            Child::Adopted(a) => a.wait().await,
        }
    }

    /// How it ended, if it has, without waiting.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        match self {
            Child::Spawned(c) => c.try_wait(),
            Child::Adopted(a) => a.try_wait(),
        }
    }

    /// Stops waiting for the process without touching it: it goes on running (or stays a
    /// zombie) for whoever takes it over next.
    pub fn release(self) {
        match self {
            // Dropping tokio's child would queue it for reaping by the runtime.
            Child::Spawned(c) => std::mem::forget(c),
            Child::Adopted(_) => {}
        }
    }
}

/// A child taken over in a handover.
#[derive(Debug)]
pub struct Adopted {
    pid: Pid,
    sigchld: Option<Signal>,
    status: Option<ExitStatus>,
}

/// How often an adopted child is checked even without SIGCHLD (when the signal cannot be
/// listened for).
const POLL: std::time::Duration = std::time::Duration::from_millis(200);

impl Adopted {
    /// Takes over the daemon's child `pid`. Must be called within a tokio runtime.
    pub fn new(pid: u32) -> Adopted {
        Adopted {
            pid: Pid::from_raw(pid.cast_signed()),
            // Listening before the first check: an exit in between still wakes the waiter.
            sigchld: signal(SignalKind::child()).ok(),
            status: None,
        }
    }

    fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            loop {
                match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(_, code)) => {
                        self.status = Some(ExitStatus::from_raw((code & 0xff) << 8));
                    }
                    Ok(WaitStatus::Signaled(_, sig, core)) => {
                        self.status = Some(ExitStatus::from_raw(
                            sig as i32 | if core { 0x80 } else { 0 },
                        ));
                    }
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    // Not (or no longer) a child of this process: nothing says how it ended.
                    Err(e) => return Err(io::Error::from(e)),
                }
                break;
            }
        }
        Ok(self.status)
    }

    async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            match self.sigchld.as_mut() {
                Some(s) => {
                    tokio::select! {
                        _ = s.recv() => {}
                        () = tokio::time::sleep(POLL * 25) => {}
                    }
                }
                None => tokio::time::sleep(POLL).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_adopted_child_is_reaped_with_its_status() {
        let child = std::process::Command::new("sh")
            .args(["-c", "sleep 0.2; exit 7"])
            .spawn()
            .unwrap();
        let mut adopted = Child::Adopted(Adopted::new(child.id()));
        std::mem::forget(child);
        let status = tokio::time::timeout(std::time::Duration::from_secs(10), adopted.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.code(), Some(7));
    }

    #[tokio::test]
    async fn an_adopted_child_killed_by_a_signal_says_so() {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut adopted = Child::Adopted(Adopted::new(pid));
        std::mem::forget(child);
        nix::sys::signal::kill(
            Pid::from_raw(pid.cast_signed()),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let status = tokio::time::timeout(std::time::Duration::from_secs(10), adopted.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.signal(), Some(9));
    }
}
