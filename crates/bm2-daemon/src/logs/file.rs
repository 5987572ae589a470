//! One log file: appends whole lines, rotates itself the moment a write would cross its size
//! limit, and counts what it could not write.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::rotate::{self, Job, Placement};

/// When and how a file rotates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Rotate before the file would grow past this many bytes (0: never by size).
    pub max_size: u64,
    /// Rotated files to keep.
    pub retain: u32,
    /// Gzip rotated files.
    pub compress: bool,
    /// Cron schedule of time-based rotations.
    pub interval: Option<croner::Cron>,
}

/// An open log file.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: Option<fs::File>,
    size: u64,
    policy: RotationPolicy,
    regular: bool,
    dropped: u64,
    last_warning: Option<Instant>,
    worker: Option<mpsc::UnboundedSender<(Job, Placement)>>,
}

impl LogFile {
    /// Opens (creating) the file at `path` for appending, and finishes (off the write path)
    /// what earlier daemons left of its rotations.
    pub fn open(path: PathBuf, policy: RotationPolicy) -> LogFile {
        let mut f = LogFile {
            file: None,
            size: 0,
            policy,
            regular: true,
            dropped: 0,
            last_warning: None,
            worker: None,
            path,
        };
        f.reopen();
        if f.regular && f.file.is_some() {
            f.hand_over(Job::Recover);
        }
        f
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its rotation policy.
    pub fn policy(&self) -> &RotationPolicy {
        &self.policy
    }

    /// Bytes in the current file.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes that could not be written (disk full, file not writable).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// A handle to read the file and its length now, for history; `None` for a device or pipe
    /// (reading those would take output away from them) and when it cannot be opened.
    pub fn open_for_reading(&self) -> Option<(fs::File, u64)> {
        if !self.regular || self.file.is_none() {
            return None;
        }
        let file = fs::File::open(&self.path).ok()?;
        let len = file.metadata().ok()?.len();
        Some((file, len))
    }

    /// Closes and opens the file again at its path (after an external `mv`).
    pub fn reopen(&mut self) {
        if let Some(dir) = self.path.parent() {
            let _ = fs::create_dir_all(dir);
        }
        match OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&self.path)
        {
            Ok(f) => {
                let meta = f.metadata().ok();
                self.size = meta.as_ref().map_or(0, fs::Metadata::len);
                // Devices and pipes (`/dev/stdout`, a FIFO) are written but never rotated.
                self.regular = meta.is_some_and(|m| m.is_file());
                self.file = Some(f);
            }
            Err(e) => {
                self.warn("cannot open log file", &e);
                self.file = None;
            }
        }
    }

    /// Empties the file.
    pub fn truncate(&mut self) {
        if let Some(f) = &self.file
            && let Err(e) = f.set_len(0)
        {
            self.warn("cannot empty log file", &e);
            return;
        }
        self.size = 0;
    }

    /// Appends `lines`, which holds whole lines. A file never receives part of a line: when the
    /// next lines would cross `max_size`, the lines that fit are written, the file is rotated,
    /// and the rest goes to the new file (a single line longer than `max_size` fills a file alone).
    pub fn write_lines(&mut self, lines: &[u8]) {
        let max = if self.regular {
            self.policy.max_size
        } else {
            0
        };
        let mut rest = lines;
        while !rest.is_empty() {
            if max == 0 || self.size + rest.len() as u64 <= max {
                self.append(rest);
                return;
            }
            let room = (max.saturating_sub(self.size) as usize).min(rest.len());
            let mut cut = memchr::memrchr(b'\n', &rest[..room]).map_or(0, |i| i + 1);
            if cut == 0 && self.size == 0 {
                cut = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
            }
            if cut > 0 {
                self.append(&rest[..cut]);
                rest = &rest[cut..];
            }
            if !rest.is_empty() {
                self.rotate();
            }
        }
    }

    /// Rotates now: the file is parked under a temporary name and a new one is opened; the
    /// worker then shifts the rotated files and compresses, off the write path.
    pub fn rotate(&mut self) {
        if !self.regular {
            return;
        }
        let pending = rotate::pending_name(&self.path);
        self.file = None;
        match fs::rename(&self.path, &pending) {
            Ok(()) => self.hand_over(Job::Place(pending)),
            Err(e) => self.warn("cannot rotate log file", &e),
        }
        self.reopen();
    }

    /// Gives a job to the rotation worker; without an async runtime (the daemon's own log
    /// before it starts), does it right away.
    fn hand_over(&mut self, job: Job) {
        let placement = Placement {
            path: self.path.clone(),
            retain: self.policy.retain,
            compress: self.policy.compress,
        };
        if self.worker.is_none() && tokio::runtime::Handle::try_current().is_ok() {
            self.worker = Some(rotate::spawn_worker());
        }
        match &self.worker {
            Some(worker) => {
                let _ = worker.send((job, placement));
            }
            None => rotate::run_batch(vec![(job, placement)]),
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        let result = match self.file.as_mut() {
            Some(f) => f.write_all(bytes),
            None => Err(std::io::Error::other("log file is not open")),
        };
        match result {
            Ok(()) => self.size += bytes.len() as u64,
            Err(e) => {
                self.dropped += bytes.len() as u64;
                self.warn("log write failed; bytes dropped", &e);
                if self.file.is_none() {
                    self.reopen();
                }
            }
        }
    }

    /// Logs a problem at most every 10 s per file.
    fn warn(&mut self, what: &str, e: &std::io::Error) {
        let now = Instant::now();
        if self
            .last_warning
            .is_none_or(|t| now - t > Duration::from_secs(10))
        {
            self.last_warning = Some(now);
            tracing::warn!(path = %self.path.display(), error = %e, dropped_bytes = self.dropped, "{what}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max: u64, retain: u32) -> RotationPolicy {
        RotationPolicy {
            max_size: max,
            retain,
            compress: false,
            interval: None,
        }
    }

    #[tokio::test]
    async fn rotates_at_line_boundaries_without_losing_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut f = LogFile::open(path.clone(), policy(10, 100));
        f.write_lines(b"1234\n5678\nabcd\n");
        f.write_lines(b"efgh\n");
        assert!(fs::read_to_string(&path).unwrap().len() <= 10);
        // Wait for the worker to place the parked files.
        for _ in 0..200 {
            if !fs::read_dir(dir.path())
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().contains("rotating"))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut all = String::new();
        for n in (1..=5).rev() {
            all.push_str(
                &fs::read_to_string(rotate::rotated_name(&path, n, false)).unwrap_or_default(),
            );
        }
        all.push_str(&fs::read_to_string(&path).unwrap());
        assert_eq!(all, "1234\n5678\nabcd\nefgh\n");
    }

    #[tokio::test]
    async fn a_line_longer_than_the_limit_fills_a_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut f = LogFile::open(path.clone(), policy(4, 10));
        f.write_lines(b"0123456789\n");
        assert_eq!(fs::read_to_string(&path).unwrap(), "0123456789\n");
    }

    #[tokio::test]
    async fn unwritable_bytes_are_counted() {
        let mut f = LogFile::open(PathBuf::from("/dev/full"), policy(0, 1));
        f.write_lines(b"hello\n");
        assert_eq!(f.dropped(), 6);
    }
}
