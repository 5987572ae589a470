//! Capturing app output: each child's stdout and stderr pipes are copied to log files.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncReadExt};

/// Size of the buffer each pipe is read with.
const READ_CHUNK: usize = 64 * 1024;

/// Copies everything `pipe` yields to the file at `path` (appending), until the pipe closes.
/// The pipe is always drained, even when the file cannot be written, so the app never blocks.
pub fn spawn_pump<R>(pipe: R, path: PathBuf)
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(pump(pipe, path));
}

async fn pump<R: AsyncRead + Unpin>(mut pipe: R, path: PathBuf) {
    let mut file = open_log(&path);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(f) = file.as_mut()
            && let Err(e) = f.write_all(&buf[..n])
        {
            tracing::warn!(path = %path.display(), error = %e, "log write failed");
            file = open_log(&path);
        }
    }
}

fn open_log(path: &Path) -> Option<std::fs::File> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match OpenOptions::new().create(true).append(true).mode(0o640).open(path) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot open log file");
            None
        }
    }
}
