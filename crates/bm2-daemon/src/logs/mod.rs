//! Capturing app output: each child's stdout and stderr pipes are copied to log files.

use std::cell::RefCell;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tokio::net::unix::pipe;

/// Size of the buffer pipes are read with. One buffer per thread, shared by every pipe, so that
/// idle apps cost no buffer memory.
const READ_CHUNK: usize = 64 * 1024;

/// Reads done for one pipe before letting other tasks run.
const READS_PER_TURN: usize = 16;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// Copies everything the pipe `fd` yields to the file at `path` (appending), until it closes.
/// The pipe is always drained, even when the file cannot be written, so the app never blocks.
pub fn spawn_pump(fd: OwnedFd, path: PathBuf) {
    match pipe::Receiver::from_owned_fd(fd) {
        Ok(rx) => {
            tokio::spawn(pump(rx, path));
        }
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot read app output"),
    }
}

async fn pump(rx: pipe::Receiver, path: PathBuf) {
    let mut file = open_log(&path);
    loop {
        if rx.readable().await.is_err() {
            return;
        }
        let done = SCRATCH.with_borrow_mut(|buf| {
            for _ in 0..READS_PER_TURN {
                match rx.try_read(buf) {
                    Ok(0) => return true,
                    Ok(n) => write(&mut file, &buf[..n], &path),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return true,
                }
            }
            false
        });
        if done {
            return;
        }
        tokio::task::yield_now().await;
    }
}

fn write(file: &mut Option<std::fs::File>, bytes: &[u8], path: &Path) {
    if let Some(f) = file.as_mut()
        && let Err(e) = f.write_all(bytes)
    {
        tracing::warn!(path = %path.display(), error = %e, "log write failed");
        *file = open_log(path);
    }
}

fn open_log(path: &Path) -> Option<std::fs::File> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
    {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot open log file");
            None
        }
    }
}
