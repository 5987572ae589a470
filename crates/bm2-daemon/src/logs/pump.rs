//! Reading a child's pipe into whole lines: a line that arrives in several reads is joined, a
//! line longer than [`MAX_LINE`] is cut into marked parts, and what is left without a final
//! newline is written as a line of its own once the pipe has been quiet for [`PARTIAL_QUIET`]
//! (a prompt, a progress dot, an error printed without a newline reach the log while the app
//! runs) or when it closes.

use std::cell::RefCell;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};

use tokio::net::unix::pipe;

use super::{InstanceLogs, Stream, lock};

/// Longest line kept whole; longer ones are cut into parts of this size.
pub const MAX_LINE: usize = 1 << 20;

/// Appended to each part of a cut line but the last.
pub const CUT_MARKER: &[u8] = b" [bm2: line longer than 1 MiB, continued on the next line]\n";

/// Pipe buffer asked of the kernel, so that a fast app rarely waits for the daemon.
const PIPE_SIZE: i32 = 1 << 20;

/// Buffer pipes are read with: one per thread, shared by every pipe.
const READ_CHUNK: usize = 256 * 1024;

/// How long output without a final newline waits for the rest of its line before it is
/// written as it is.
pub const PARTIAL_QUIET: std::time::Duration = std::time::Duration::from_millis(100);

/// Reads done for one pipe before letting other tasks run.
const READS_PER_TURN: usize = 8;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// Starts copying the pipe `fd` of `stream` into the instance's logs, until the pipe closes.
pub fn attach(logs: Arc<Mutex<InstanceLogs>>, stream: Stream, fd: OwnedFd) {
    let _ = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
    match pipe::Receiver::from_owned_fd(fd) {
        Ok(rx) => {
            tokio::spawn(pump(rx, stream, logs));
        }
        Err(e) => tracing::warn!(error = %e, "cannot read app output"),
    }
}

async fn pump(rx: pipe::Receiver, stream: Stream, logs: Arc<Mutex<InstanceLogs>>) {
    let mut lines = LineAssembler::default();
    let emit = |bytes: &[u8]| lock(&logs).write(stream, bytes);
    loop {
        let readable = if lines.is_empty() {
            rx.readable().await
        } else {
            tokio::select! {
                r = rx.readable() => r,
                () = tokio::time::sleep(PARTIAL_QUIET) => {
                    lines.finish(&emit);
                    continue;
                }
            }
        };
        if readable.is_err() {
            break;
        }
        let closed = SCRATCH.with_borrow_mut(|buf| {
            for _ in 0..READS_PER_TURN {
                match rx.try_read(buf) {
                    Ok(0) => return true,
                    Ok(n) => lines.push(&buf[..n], &emit),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return true,
                }
            }
            false
        });
        if closed {
            break;
        }
        tokio::task::yield_now().await;
    }
    lines.finish(&emit);
}

/// Joins reads into whole lines.
#[derive(Debug, Default)]
pub struct LineAssembler {
    partial: Vec<u8>,
}

impl LineAssembler {
    /// Adds bytes read from the pipe; whole lines are passed to `emit` (several at a time).
    pub fn push(&mut self, mut data: &[u8], emit: &dyn Fn(&[u8])) {
        if !self.partial.is_empty() {
            let Some(i) = memchr::memchr(b'\n', data) else {
                self.partial.extend_from_slice(data);
                self.cut_long(emit);
                return;
            };
            self.partial.extend_from_slice(&data[..=i]);
            emit(&self.partial);
            self.clear();
            data = &data[i + 1..];
        }
        match memchr::memrchr(b'\n', data) {
            Some(i) => {
                emit(&data[..=i]);
                self.partial.extend_from_slice(&data[i + 1..]);
            }
            None => self.partial.extend_from_slice(data),
        }
        self.cut_long(emit);
    }

    /// True when no part of a line is waiting for its end.
    pub fn is_empty(&self) -> bool {
        self.partial.is_empty()
    }

    /// Writes what is left (output without a final newline) as a line of its own.
    pub fn finish(&mut self, emit: &dyn Fn(&[u8])) {
        if !self.partial.is_empty() {
            self.partial.push(b'\n');
            emit(&self.partial);
            self.clear();
        }
    }

    fn cut_long(&mut self, emit: &dyn Fn(&[u8])) {
        while self.partial.len() > MAX_LINE {
            let mut part = Vec::with_capacity(MAX_LINE + CUT_MARKER.len());
            part.extend_from_slice(&self.partial[..MAX_LINE]);
            part.extend_from_slice(CUT_MARKER);
            emit(&part);
            self.partial.drain(..MAX_LINE);
        }
    }

    fn clear(&mut self) {
        self.partial.clear();
        if self.partial.capacity() > 64 * 1024 {
            self.partial = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn run(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let out = RefCell::new(Vec::new());
        let emit = |b: &[u8]| out.borrow_mut().push(b.to_vec());
        let mut a = LineAssembler::default();
        for c in chunks {
            a.push(c, &emit);
        }
        a.finish(&emit);
        out.into_inner()
    }

    #[test]
    fn joins_lines_split_across_reads() {
        let out = run(&[b"hel", b"lo\nwor", b"ld\n"]);
        assert_eq!(out.concat(), b"hello\nworld\n");
        assert!(out.iter().all(|c| c.ends_with(b"\n")));
    }

    #[test]
    fn flushes_output_without_final_newline() {
        assert_eq!(run(&[b"a\nno newline"]).concat(), b"a\nno newline\n");
    }

    #[test]
    fn cuts_very_long_lines_into_marked_parts() {
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let out = run(&[&long]);
        assert_eq!(out.len(), 3);
        assert!(out[0].ends_with(CUT_MARKER));
        assert_eq!(out[0].len(), MAX_LINE + CUT_MARKER.len());
        assert_eq!(out[2].len(), 11);
    }
}
