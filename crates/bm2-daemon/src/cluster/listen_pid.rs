//! systemd's `LISTEN_PID`: the pid of the process that is to take the inherited sockets, known
//! only in the child after fork, while Rust's `Command` fixes the environment before fork. The
//! child therefore executes the program itself, with an environment prepared in the parent in
//! which it only writes its pid: no allocation happens between fork and exec. This is the one
//! place of the daemon with `unsafe` code (a `pre_exec` hook and `execve`).
#![allow(unsafe_code)]

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;

/// Makes the child execute `cmd`'s program itself, with `LISTEN_PID=<its own pid>` added to
/// the environment: the pid is only known after fork, and Rust's `Command` fixes the
/// environment before. Everything the child needs is prepared here, so that the child only
/// writes digits into a buffer and calls `execve` (no allocation after fork). Must be the last
/// `pre_exec` step of `cmd`, after its environment is complete; the command's environment must
/// have been cleared (`env_clear`), so that the variables it sets are the whole environment.
pub fn exec_with_listen_pid(cmd: &mut tokio::process::Command) -> io::Result<()> {
    let std = cmd.as_std();
    let program = cstring(std.get_program())?;
    let mut argv = vec![program.clone()];
    for arg in std.get_args() {
        argv.push(cstring(arg)?);
    }
    let mut envp = Vec::new();
    for (key, value) in std.get_envs() {
        if let Some(value) = value
            && key != "LISTEN_PID"
        {
            let mut entry = key.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            envp.push(CString::new(entry).map_err(io::Error::other)?);
        }
    }
    let mut exec = Exec::new(program, argv, envp);
    // SAFETY: the closure only writes into memory prepared above and calls async-signal-safe
    // functions (getpid, sigprocmask, signal, execve).
    unsafe {
        cmd.pre_exec(move || Err(exec.run()));
    }
    Ok(())
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(io::Error::other)
}

const LISTEN_PID: &[u8] = b"LISTEN_PID=";
/// `LISTEN_PID=`, up to 10 digits, NUL.
const PID_ENTRY_LEN: usize = 32;

/// An `execve` prepared before fork.
struct Exec {
    program: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    /// The `LISTEN_PID=` entry, written in the child; owned (a leaked box, freed on drop).
    pid_entry: *mut u8,
    envp_ptrs: Vec<*const libc::c_char>,
}

// SAFETY: the raw pointers point into buffers that `Exec` owns and never moves (the heap data
// of `CString`s and of the leaked box); `Exec` is only used by one thread at a time (the child's).
unsafe impl Send for Exec {}
// SAFETY: as above; shared references never write.
unsafe impl Sync for Exec {}

impl Exec {
    fn new(program: CString, argv: Vec<CString>, envp: Vec<CString>) -> Exec {
        let pid_entry = Box::into_raw(Box::new([0u8; PID_ENTRY_LEN])).cast::<u8>();
        let argv_ptrs = argv
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let envp_ptrs = envp
            .iter()
            .map(|e| e.as_ptr())
            .chain([pid_entry.cast_const().cast(), std::ptr::null()])
            .collect();
        Exec {
            program,
            _argv: argv,
            argv_ptrs,
            _envp: envp,
            pid_entry,
            envp_ptrs,
        }
    }

    /// In the child: writes the pid, executes the program; returns only on failure.
    fn run(&mut self) -> io::Error {
        // SAFETY: getpid cannot fail; pid_entry points to PID_ENTRY_LEN writable bytes that
        // only this child uses; every pointer array ends with null.
        unsafe {
            let pid = libc::getpid().unsigned_abs();
            let entry = std::slice::from_raw_parts_mut(self.pid_entry, PID_ENTRY_LEN);
            write_entry(entry, pid);
            // As Rust's own spawn does: the child starts with no blocked signal and default
            // SIGPIPE handling (the daemon ignores SIGPIPE).
            let mut set = std::mem::zeroed::<libc::sigset_t>();
            libc::sigemptyset(&raw mut set);
            libc::pthread_sigmask(libc::SIG_SETMASK, &raw const set, std::ptr::null_mut());
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::execve(
                self.program.as_ptr(),
                self.argv_ptrs.as_ptr(),
                self.envp_ptrs.as_ptr(),
            );
        }
        io::Error::last_os_error()
    }
}

impl Drop for Exec {
    fn drop(&mut self) {
        // SAFETY: made by Box::into_raw in `new`, freed once.
        unsafe { drop(Box::from_raw(self.pid_entry.cast::<[u8; PID_ENTRY_LEN]>())) };
    }
}

/// Writes `LISTEN_PID=<pid>` and a NUL into `buf` without allocating; the length written.
fn write_entry(buf: &mut [u8], pid: u32) -> usize {
    buf[..LISTEN_PID.len()].copy_from_slice(LISTEN_PID);
    let mut digits = [0u8; 10];
    let (mut n, mut count) = (pid, 0);
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut at = LISTEN_PID.len();
    for d in digits[..count].iter().rev() {
        buf[at] = *d;
        at += 1;
    }
    buf[at] = 0;
    at + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_entry_is_written_in_place() {
        let mut buf = [b'x'; PID_ENTRY_LEN];
        let n = write_entry(&mut buf, 4_294_967_295);
        assert_eq!(&buf[..n], b"LISTEN_PID=4294967295\0");
        let n = write_entry(&mut buf, 7);
        assert_eq!(&buf[..n], b"LISTEN_PID=7\0");
    }

    #[tokio::test]
    async fn the_child_sees_its_own_pid_and_the_environment() {
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.args(["-c", "echo \"$LISTEN_PID $$ $A $0 $1\"", "zero", "one"])
            .env_clear()
            .env("A", "b c")
            .env("LISTEN_PID", "stale")
            .stdout(std::process::Stdio::piped());
        exec_with_listen_pid(&mut cmd).unwrap();
        let child = cmd.spawn().unwrap();
        let pid = child.id().unwrap();
        let out = child.wait_with_output().await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{pid} {pid} b c zero one\n")
        );
    }

    #[tokio::test]
    async fn a_program_that_cannot_run_fails_the_spawn() {
        let mut cmd = tokio::process::Command::new("/nonexistent/program");
        cmd.env_clear();
        exec_with_listen_pid(&mut cmd).unwrap();
        let err = cmd.spawn().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
