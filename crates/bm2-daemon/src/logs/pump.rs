//! Reading a child's pipe into whole lines: a line that arrives in several reads is joined, a
//! line longer than [`MAX_LINE`] is cut into marked parts, and what is left without a final
//! newline is written as a line of its own once the pipe has been quiet for [`PARTIAL_QUIET`]
//! (a prompt, a progress dot, an error printed without a newline reach the log while the app
//! runs) or when it closes.
//!
//! For `bm2 update` the pumps stop between reads ([`Pumps::freeze`]): each gives back its pipe
//! and the start of a line it holds, and the next daemon goes on from there
//! ([`Pumps::resume`]), so a line is neither lost nor written twice.

use std::cell::RefCell;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bm2_types::ProcId;
use serde::{Deserialize, Serialize};
use tokio::net::unix::pipe;
use tokio::sync::watch;

use super::{InstanceLogs, Stream, lock};
use crate::handover::Fd;

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

/// The output pipes being read, stopped together for a handover.
#[derive(Debug)]
pub struct Pumps {
    freeze: watch::Sender<bool>,
    /// Pumps running now.
    live: watch::Sender<usize>,
    frozen: Mutex<Vec<FrozenPump>>,
}

impl Default for Pumps {
    fn default() -> Self {
        Pumps {
            freeze: watch::Sender::new(false),
            live: watch::Sender::new(0),
            frozen: Mutex::default(),
        }
    }
}

/// A pipe whose reading stopped for a handover, with the start of a line read from it.
#[derive(Debug, Serialize, Deserialize)]
pub struct FrozenPump {
    /// The instance it belongs to.
    pub id: ProcId,
    /// Which stream.
    pub stream: Stream,
    /// The pipe's read end.
    pub pipe: Fd,
    /// Bytes of a line whose end has not been read yet.
    pub partial: Vec<u8>,
}

impl Pumps {
    /// Starts copying the pipe `fd` of instance `id`'s `stream` into its logs, until the pipe
    /// closes.
    pub fn attach(
        self: &Arc<Self>,
        id: ProcId,
        logs: Arc<Mutex<InstanceLogs>>,
        stream: Stream,
        fd: OwnedFd,
    ) {
        self.resume_one(id, logs, stream, fd, Vec::new());
    }

    fn resume_one(
        self: &Arc<Self>,
        id: ProcId,
        logs: Arc<Mutex<InstanceLogs>>,
        stream: Stream,
        fd: OwnedFd,
        partial: Vec<u8>,
    ) {
        let _ = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
        match pipe::Receiver::from_owned_fd(fd) {
            Ok(rx) => {
                self.live.send_modify(|n| *n += 1);
                let pump = Pump {
                    id,
                    stream,
                    logs,
                    pumps: self.clone(),
                };
                tokio::spawn(pump.run(rx, LineAssembler { partial }));
            }
            Err(e) => tracing::warn!(error = %e, "cannot read app output"),
        }
    }

    /// Stops every pump between two reads and returns their pipes; fails when some pump has
    /// not stopped within `grace` (those stopped are then still returned by the error).
    pub async fn freeze(&self, grace: Duration) -> Result<Vec<FrozenPump>, Vec<FrozenPump>> {
        self.freeze.send_replace(true);
        let mut live = self.live.subscribe();
        let stopped = tokio::time::timeout(grace, live.wait_for(|n| *n == 0))
            .await
            .is_ok_and(|r| r.is_ok());
        let frozen = std::mem::take(&mut *lock(&self.frozen));
        if stopped { Ok(frozen) } else { Err(frozen) }
    }

    /// Reads again: the pipes given back by [`Pumps::freeze`] (or carried over by a handover),
    /// each into the logs `logs_of` finds for its instance (a pipe whose instance is gone is
    /// closed).
    pub fn resume(
        self: &Arc<Self>,
        frozen: Vec<FrozenPump>,
        logs_of: impl Fn(ProcId) -> Option<Arc<Mutex<InstanceLogs>>>,
    ) {
        self.freeze.send_replace(false);
        for p in frozen {
            if let Some(logs) = logs_of(p.id) {
                self.resume_one(p.id, logs, p.stream, p.pipe.into_inner(), p.partial);
            }
        }
    }
}

/// One pipe being read.
struct Pump {
    id: ProcId,
    stream: Stream,
    logs: Arc<Mutex<InstanceLogs>>,
    pumps: Arc<Pumps>,
}

impl Pump {
    async fn run(self, rx: pipe::Receiver, mut lines: LineAssembler) {
        let mut freeze = self.pumps.freeze.subscribe();
        let logs = self.logs.clone();
        let stream = self.stream;
        let emit = |bytes: &[u8]| lock(&logs).write(stream, bytes);
        let frozen = loop {
            let readable = tokio::select! {
                biased;
                _ = freeze.wait_for(|f| *f) => break true,
                r = rx.readable() => r,
                () = quiet(&lines) => {
                    lines.finish(&emit);
                    continue;
                }
            };
            if readable.is_err() {
                break false;
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
                break false;
            }
            tokio::task::yield_now().await;
        };
        if frozen {
            match rx.into_nonblocking_fd() {
                Ok(fd) => lock(&self.pumps.frozen).push(FrozenPump {
                    id: self.id,
                    stream,
                    pipe: Fd(fd),
                    partial: std::mem::take(&mut lines.partial),
                }),
                Err(e) => tracing::warn!(error = %e, "cannot keep an app's output pipe"),
            }
        } else {
            lines.finish(&emit);
        }
        self.pumps.live.send_modify(|n| *n -= 1);
    }
}

/// Resolves once output without a final newline has waited [`PARTIAL_QUIET`] for the rest of
/// its line; never when there is none.
async fn quiet(lines: &LineAssembler) {
    if lines.is_empty() {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(PARTIAL_QUIET).await;
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
