//! Running a config evaluator (node, bun) with a time limit. The evaluator leads a process group
//! of its own: when it does not finish in time (a promise that never settles, a loop), it and
//! everything it started are killed; when it exits, whatever it left running in its group is
//! killed too, so that a config can neither hold `bm2` up nor leave processes behind.

use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

/// Environment variable giving the time limit in milliseconds.
pub const TIMEOUT_VAR: &str = "BM2_CONFIG_TIMEOUT_MS";

/// Time limit of an evaluation when [`TIMEOUT_VAR`] is unset.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The time limit: [`TIMEOUT_VAR`] when set, else [`DEFAULT_TIMEOUT`].
pub fn timeout() -> Result<Duration, String> {
    match std::env::var(TIMEOUT_VAR) {
        Err(_) => Ok(DEFAULT_TIMEOUT),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
            _ => Err(format!(
                "{TIMEOUT_VAR} must be a number of milliseconds above 0, not {v:?}"
            )),
        },
    }
}

/// Why a bounded run gave no output.
#[derive(Debug)]
pub enum RunError {
    /// The program could not be started.
    Spawn(io::Error),
    /// The limit passed. `exited`: the program itself had exited, but a process it started kept
    /// its output open.
    TimedOut {
        /// The program had exited.
        exited: bool,
    },
}

enum Event {
    Out(io::Result<Vec<u8>>),
    Err(io::Result<Vec<u8>>),
    Exited,
}

/// Runs `cmd` (stdin closed, stdout and stderr collected) in a new process group; kills the
/// group when the program has not exited and closed its output within `limit`, or as soon as it
/// exits (anything it left behind).
pub fn output_within(cmd: &mut Command, limit: Duration) -> Result<Output, RunError> {
    let deadline = Instant::now() + limit;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    let group = Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        read_in_thread(out, tx.clone(), Event::Out);
    }
    if let Some(err) = child.stderr.take() {
        read_in_thread(err, tx.clone(), Event::Err);
    }
    std::thread::spawn(move || {
        // WNOWAIT leaves the program a zombie: its pid, the group's id, cannot be reused
        // before the group is killed and the program reaped below.
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
        while let Err(nix::errno::Errno::EINTR) = waitid(Id::Pid(group), flags) {}
        let _ = tx.send(Event::Exited);
    });
    let (mut stdout, mut stderr, mut exited) = (None, None, false);
    while stdout.is_none() || stderr.is_none() || !exited {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Event::Out(bytes)) => stdout = Some(bytes.unwrap_or_default()),
            Ok(Event::Err(bytes)) => stderr = Some(bytes.unwrap_or_default()),
            Ok(Event::Exited) => {
                exited = true;
                kill_group(group);
            }
            Err(_) => {
                kill_group(group);
                reap(&mut child);
                return Err(RunError::TimedOut { exited });
            }
        }
    }
    let status = child.wait().map_err(RunError::Spawn)?;
    Ok(Output {
        status,
        stdout: stdout.unwrap_or_default(),
        stderr: stderr.unwrap_or_default(),
    })
}

fn read_in_thread(
    mut pipe: impl Read + Send + 'static,
    tx: mpsc::Sender<Event>,
    wrap: fn(io::Result<Vec<u8>>) -> Event,
) {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let result = pipe.read_to_end(&mut buf).map(|_| buf);
        let _ = tx.send(wrap(result));
    });
}

/// SIGKILL to every process of the group (none left is fine).
fn kill_group(group: Pid) {
    let _ = killpg(group, Signal::SIGKILL);
}

/// Reaps the killed program (SIGKILL ends it at once).
fn reap(child: &mut Child) {
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 2..].chars().next())
                .is_some_and(|state| state != 'Z' && state != 'X')
        })
    }

    /// Waits up to 5 s for `pid` to be gone.
    fn gone(pid: u32) -> bool {
        (0..250).any(|_| {
            let dead = !alive(pid);
            if !dead {
                std::thread::sleep(Duration::from_millis(20));
            }
            dead
        })
    }

    #[test]
    fn output_is_collected_when_the_program_finishes() {
        let out = output_within(
            Command::new("sh").args(["-c", "echo out; echo err >&2"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn a_program_past_the_limit_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let script = format!("sleep 1000 & echo $$ $! > {}; wait", pids.display());
        let started = Instant::now();
        let e = output_within(
            Command::new("sh").args(["-c", &script]),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(matches!(e, RunError::TimedOut { exited: false }), "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let text = std::fs::read_to_string(&pids).unwrap();
        for pid in text.split_whitespace() {
            let pid: u32 = pid.parse().unwrap();
            assert!(gone(pid), "{pid} survived the time limit");
        }
    }

    #[test]
    fn what_an_exited_program_left_running_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        // The background sleep keeps stdout open: without the kill, the read would wait for it.
        let script = format!("sleep 1000 & echo $! > {}; echo done", pid_file.display());
        let started = Instant::now();
        let out = output_within(
            Command::new("sh").args(["-c", &script]),
            Duration::from_secs(20),
        )
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(out.stdout, b"done\n");
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(gone(pid), "{pid}, left running by the program, survived it");
    }
}
