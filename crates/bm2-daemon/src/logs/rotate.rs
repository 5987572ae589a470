//! Finishing rotations off the write path: shifting `.1`, `.2`, ... (`.1.gz` when compressed),
//! compressing, and removing files past `retain`. A rotated file keeps the live file's mode.
//!
//! Every step leaves a name that says how far it got, so that what a crash or a full disk
//! interrupts can be finished later ([`super::recover`]):
//! 1. the writer parks the live file as `<file>.rotating-<run>-<seq>`;
//! 2. the worker shifts the rotated files up by one, then renames the parked file `<file>.1`,
//!    or, to be compressed, `<file>.1.compressing`;
//! 3. that is compressed into `<file>.1.gz.tmp`, synced, renamed `<file>.1.gz`, and only then is
//!    `<file>.1.compressing` removed.

use std::collections::HashMap;
use std::fs::{self, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use tokio::sync::mpsc;

use super::lock;

/// Name of the `n`th rotated file of `path` (`app.log.1`, or `app.log.1.gz`).
pub fn rotated_name(path: &Path, n: u32, compressed: bool) -> PathBuf {
    with_suffix(
        path,
        &format!(".{n}{}", if compressed { ".gz" } else { "" }),
    )
}

/// `path` with `suffix` added to its file name.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Marks the names this daemon parks files under, apart from those a previous daemon left.
pub static RUN: LazyLock<u64> = LazyLock::new(|| {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
});

/// Rotations parked by this daemon, across all files: a file opened again never reuses a name.
static SEQ: AtomicU64 = AtomicU64::new(0);

/// Name under which the writer parks a file it has just rotated, before the worker places it.
pub fn pending_name(path: &Path) -> PathBuf {
    parked_name(path, *RUN, SEQ.fetch_add(1, Ordering::Relaxed) + 1)
}

/// `<path>.rotating-<run>-<seq>`.
pub fn parked_name(path: &Path, run: u64, seq: u64) -> PathBuf {
    with_suffix(path, &format!(".rotating-{run}-{seq}"))
}

/// The rotated file being compressed: `<path>.1.compressing`.
pub fn compressing_name(path: &Path) -> PathBuf {
    with_suffix(path, ".1.compressing")
}

/// Where the compressed file is written before it is complete: `<path>.1.gz.tmp`.
pub fn partial_gz_name(path: &Path) -> PathBuf {
    with_suffix(path, ".1.gz.tmp")
}

/// What the worker of one log file needs to know.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The live log file.
    pub path: PathBuf,
    /// Rotated files to keep.
    pub retain: u32,
    /// Gzip rotated files.
    pub compress: bool,
}

/// Work for the rotation worker of one log file.
#[derive(Debug)]
pub enum Job {
    /// Finish what an earlier daemon left half done (sent first, when the file is opened).
    Recover,
    /// Place a file the writer has just parked.
    Place(PathBuf),
}

/// Starts the worker that does the jobs of one log, one after the other, in the blocking pool.
/// Returns the queue the writer sends jobs to.
pub fn spawn_worker() -> mpsc::UnboundedSender<(Job, Placement)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Job, Placement)>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            let job = tokio::task::spawn_blocking(move || run_batch(batch));
            if let Err(e) = job.await {
                tracing::error!(error = %e, "log rotation worker failed");
            }
        }
    });
    tx
}

/// Does the jobs of one file, in order. Does not wait for the worker: for callers without an
/// async runtime, and for the worker itself.
pub fn run_batch(batch: Vec<(Job, Placement)>) {
    let Some((_, last)) = batch.last() else {
        return;
    };
    let serial = path_lock(&last.path);
    let _serial = lock(&serial);
    // Parked files beyond what is retained would be removed right after placing: skip the
    // work (unless older leftovers are placed too, which must not outlive newer files).
    let places = batch
        .iter()
        .filter(|(j, _)| matches!(j, Job::Place(_)))
        .count();
    let recovering = batch.iter().any(|(j, _)| matches!(j, Job::Recover));
    let mut skip = if recovering {
        0
    } else {
        places.saturating_sub(last.retain as usize)
    };
    for (job, placement) in batch {
        let result = match job {
            Job::Recover => super::recover::recover(&placement),
            Job::Place(pending) if skip > 0 => {
                skip -= 1;
                fs::remove_file(pending)
            }
            Job::Place(pending) => place(&pending, &placement),
        };
        if let Err(e) = result {
            tracing::warn!(file = %placement.path.display(), error = %e, "cannot finish log rotation");
        }
    }
}

/// One lock per log path, so that two workers of the same path (a file closed and opened again
/// while its rotations are still being placed) never interleave.
fn path_lock(path: &Path) -> Arc<Mutex<()>> {
    static LOCKS: LazyLock<Mutex<HashMap<PathBuf, Weak<Mutex<()>>>>> =
        LazyLock::new(Mutex::default);
    let mut locks = lock(&LOCKS);
    if let Some(l) = locks.get(path).and_then(Weak::upgrade) {
        return l;
    }
    locks.retain(|_, w| w.strong_count() > 0);
    let l = Arc::new(Mutex::new(()));
    locks.insert(path.to_path_buf(), Arc::downgrade(&l));
    l
}

/// Shifts the rotated files of `p.path` up by one, dropping the oldest past `retain`, then moves
/// `pending` into place as `.1` (compressed to `.1.gz` when asked).
pub fn place(pending: &Path, p: &Placement) -> io::Result<()> {
    if p.retain == 0 {
        return fs::remove_file(pending);
    }
    for gz in [false, true] {
        let _ = fs::remove_file(rotated_name(&p.path, p.retain, gz));
    }
    for n in (1..p.retain).rev() {
        for gz in [false, true] {
            let from = rotated_name(&p.path, n, gz);
            if from.exists() {
                fs::rename(&from, rotated_name(&p.path, n + 1, gz))?;
            }
        }
    }
    if p.compress {
        let source = compressing_name(&p.path);
        fs::rename(pending, &source)?;
        compress(&p.path)
    } else {
        fs::rename(pending, rotated_name(&p.path, 1, false))
    }
}

/// Compresses `<path>.1.compressing` into `<path>.1.gz`. When that fails (a full disk), the
/// partial file is removed and the rotated file is kept uncompressed as `<path>.1`.
pub fn compress(path: &Path) -> io::Result<()> {
    let source = compressing_name(path);
    let partial = partial_gz_name(path);
    match gzip(&source, &partial) {
        Ok(()) => {
            fs::rename(&partial, rotated_name(path, 1, true))?;
            fs::remove_file(&source)
        }
        Err(e) => {
            let _ = fs::remove_file(&partial);
            fs::rename(&source, rotated_name(path, 1, false))?;
            Err(e)
        }
    }
}

/// Writes `from` gzipped to `to`, with the mode (and, when allowed, the owner) of `from`.
fn gzip(from: &Path, to: &Path) -> io::Result<()> {
    let mut input = fs::File::open(from)?;
    let meta = input.metadata()?;
    let mode = meta.mode() & 0o7777;
    let output = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(to)?;
    // The mode given at creation is narrowed by the umask: set it exactly.
    output.set_permissions(Permissions::from_mode(mode))?;
    if meta.uid() != nix::unistd::geteuid().as_raw()
        || meta.gid() != nix::unistd::getegid().as_raw()
    {
        let _ = std::os::unix::fs::fchown(&output, Some(meta.uid()), Some(meta.gid()));
    }
    let mut encoder = flate2::write::GzEncoder::new(output, flate2::Compression::fast());
    io::copy(&mut input, &mut encoder)?;
    encoder.finish()?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn names_follow_logrotate_style() {
        let p = Path::new("/l/app-0-out.log");
        assert_eq!(
            rotated_name(p, 1, false),
            PathBuf::from("/l/app-0-out.log.1")
        );
        assert_eq!(
            rotated_name(p, 3, true),
            PathBuf::from("/l/app-0-out.log.3.gz")
        );
        assert_eq!(
            parked_name(p, 17, 7),
            PathBuf::from("/l/app-0-out.log.rotating-17-7")
        );
        assert_ne!(pending_name(p), pending_name(p));
    }

    #[test]
    fn placing_shifts_and_drops_past_retain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let p = Placement {
            path: path.clone(),
            retain: 2,
            compress: false,
        };
        for generation in 1..=3 {
            let pending = pending_name(&path);
            fs::write(&pending, format!("gen{generation}\n")).unwrap();
            place(&pending, &p).unwrap();
        }
        assert_eq!(
            fs::read_to_string(rotated_name(&path, 1, false)).unwrap(),
            "gen3\n"
        );
        assert_eq!(
            fs::read_to_string(rotated_name(&path, 2, false)).unwrap(),
            "gen2\n"
        );
        assert!(!rotated_name(&path, 3, false).exists());
    }

    #[test]
    fn compressed_rotation_round_trips_and_keeps_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let p = Placement {
            path: path.clone(),
            retain: 3,
            compress: true,
        };
        for mode in [0o640, 0o600] {
            let pending = pending_name(&path);
            fs::write(&pending, "hello\n").unwrap();
            fs::set_permissions(&pending, Permissions::from_mode(mode)).unwrap();
            place(&pending, &p).unwrap();
            let gz = rotated_name(&path, 1, true);
            let mut text = String::new();
            flate2::read::GzDecoder::new(fs::File::open(&gz).unwrap())
                .read_to_string(&mut text)
                .unwrap();
            assert_eq!(text, "hello\n");
            assert_eq!(fs::metadata(&gz).unwrap().mode() & 0o777, mode);
            assert!(!pending.exists());
            assert!(!compressing_name(&path).exists());
            assert!(!partial_gz_name(&path).exists());
        }
    }

    #[test]
    fn a_failed_compression_keeps_the_file_uncompressed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        fs::write(compressing_name(&path), "kept\n").unwrap();
        // The partial file cannot be created: a directory is in the way.
        fs::create_dir(partial_gz_name(&path)).unwrap();
        assert!(compress(&path).is_err());
        assert_eq!(
            fs::read_to_string(rotated_name(&path, 1, false)).unwrap(),
            "kept\n"
        );
        assert!(!compressing_name(&path).exists());
    }
}
