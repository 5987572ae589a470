//! Finishing rotations off the write path: shifting `.1`, `.2`, ... (`.1.gz` when compressed),
//! compressing, and removing files past `retain`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

/// Name of the `n`th rotated file of `path` (`app.log.1`, or `app.log.1.gz`).
pub fn rotated_name(path: &Path, n: u32, compressed: bool) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    if compressed {
        name.push(".gz");
    }
    PathBuf::from(name)
}

/// Name under which the writer parks a file it has just rotated, before the worker places it.
pub fn pending_name(path: &Path, seq: u64) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".rotating-{seq}"));
    PathBuf::from(name)
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

/// Starts the worker that places the rotated files of one log, one after the other, in the
/// blocking pool. Returns the queue the writer sends parked files to.
pub fn spawn_worker() -> mpsc::UnboundedSender<(PathBuf, Placement)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(PathBuf, Placement)>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            let job = tokio::task::spawn_blocking(move || place_batch(batch));
            if let Err(e) = job.await {
                tracing::error!(error = %e, "log rotation worker failed");
            }
        }
    });
    tx
}

fn place_batch(mut batch: Vec<(PathBuf, Placement)>) {
    // Parked files beyond what is retained would be removed right after placing: skip the work.
    let Some(retain) = batch.last().map(|(_, p)| p.retain as usize) else {
        return;
    };
    if batch.len() > retain {
        for (pending, _) in batch.drain(..batch.len() - retain) {
            let _ = fs::remove_file(pending);
        }
    }
    for (pending, placement) in batch {
        if let Err(e) = place(&pending, &placement) {
            tracing::warn!(file = %pending.display(), error = %e, "cannot finish log rotation");
        }
    }
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
        let target = rotated_name(&p.path, 1, true);
        let tmp = PathBuf::from(format!("{}.tmp", target.display()));
        gzip(pending, &tmp)?;
        fs::rename(&tmp, &target)?;
        fs::remove_file(pending)
    } else {
        fs::rename(pending, rotated_name(&p.path, 1, false))
    }
}

fn gzip(from: &Path, to: &Path) -> io::Result<()> {
    let mut input = fs::File::open(from)?;
    let output = fs::File::create(to)?;
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
            pending_name(p, 7),
            PathBuf::from("/l/app-0-out.log.rotating-7")
        );
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
            let pending = pending_name(&path, generation);
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
    fn compressed_rotation_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let p = Placement {
            path: path.clone(),
            retain: 3,
            compress: true,
        };
        let pending = pending_name(&path, 1);
        fs::write(&pending, "hello\n").unwrap();
        place(&pending, &p).unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(fs::File::open(rotated_name(&path, 1, true)).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "hello\n");
        assert!(!pending.exists());
    }
}
