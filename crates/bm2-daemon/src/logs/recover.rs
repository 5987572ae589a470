//! Finishing rotations that a killed daemon or a full disk cut short, when the log file is
//! opened again: a compression is completed (or its finished result kept), parked files are
//! placed as rotated files, and partial `.gz.tmp` files are removed. A completed rotated file
//! (`.N`, `.N.gz`) is never removed here; one whose compressed copy is complete is.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::rotate::{self, Placement};

/// Finishes what earlier daemons left of the rotations of `p.path`, oldest first. Files parked
/// by this daemon are its worker's to place and are left alone.
pub fn recover(p: &Placement) -> io::Result<()> {
    let interrupted = finish_compression(&p.path);
    let parked = parked_files(&p.path)?;
    if !parked.is_empty() {
        tracing::info!(file = %p.path.display(), count = parked.len(), "placing rotated log files an earlier daemon left");
    }
    for file in parked {
        rotate::place(&file, p)?;
    }
    interrupted
}

/// Completes a compression cut short: the partial `.1.gz.tmp` is removed (a complete one is
/// always renamed before its source goes), then `.1.compressing` is compressed again, or removed
/// when its `.1.gz` was already complete.
fn finish_compression(path: &Path) -> io::Result<()> {
    match fs::remove_file(rotate::partial_gz_name(path)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let source = rotate::compressing_name(path);
    let Ok(meta) = fs::metadata(&source) else {
        return Ok(());
    };
    let gz = rotate::rotated_name(path, 1, true);
    if !gz.exists() {
        tracing::info!(file = %source.display(), "finishing an interrupted log compression");
        return rotate::compress(path);
    }
    // Killed between renaming the finished `.1.gz` and removing its source.
    if gzip_size(&gz)? == meta.len() as u32 {
        fs::remove_file(&source)
    } else {
        Err(io::Error::other(format!(
            "{} and {} both exist and differ; both are kept",
            source.display(),
            gz.display()
        )))
    }
}

/// The size (modulo 2^32) a gzip file says its content has, from its trailer.
fn gzip_size(path: &Path) -> io::Result<u32> {
    let mut f = fs::File::open(path)?;
    if f.metadata()?.len() < 18 {
        return Err(io::Error::other(format!("{} is truncated", path.display())));
    }
    f.seek(SeekFrom::End(-4))?;
    let mut trailer = [0; 4];
    f.read_exact(&mut trailer)?;
    Ok(u32::from_le_bytes(trailer))
}

/// Files parked by earlier daemons (`<path>.rotating-<run>-<seq>`, or `<path>.rotating-<seq>`
/// from older versions), oldest first.
fn parked_files(path: &Path) -> io::Result<Vec<PathBuf>> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{}.rotating-", name.to_string_lossy());
    let mut found: Vec<((u64, u64), PathBuf)> = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let Some(order) = parse_parked(rest) else {
            continue;
        };
        if order.0 != *rotate::RUN && entry.file_type().is_ok_and(|t| t.is_file()) {
            found.push((order, entry.path()));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// `<run>-<seq>` or `<seq>` (run 0).
fn parse_parked(rest: &str) -> Option<(u64, u64)> {
    match rest.split_once('-') {
        Some((run, seq)) => Some((run.parse().ok()?, seq.parse().ok()?)),
        None => Some((0, rest.parse().ok()?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::rotate::{compressing_name, parked_name, partial_gz_name, rotated_name};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn gunzip(path: &Path) -> String {
        let mut text = String::new();
        flate2::read::GzDecoder::new(fs::File::open(path).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    fn gzip_of(text: &str) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn parked_files_are_placed_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        fs::write(rotated_name(&path, 1, false), "placed\n").unwrap();
        fs::write(with(&path, ".rotating-2"), "older version\n").unwrap();
        fs::write(parked_name(&path, 5, 10), "run 5, second\n").unwrap();
        fs::write(parked_name(&path, 5, 9), "run 5, first\n").unwrap();
        fs::write(with(&path, ".rotating-junk"), "not ours\n").unwrap();
        // Parked by this daemon: its worker's to place.
        let mine = parked_name(&path, *rotate::RUN, 1);
        fs::write(&mine, "mine\n").unwrap();
        let p = Placement {
            path: path.clone(),
            retain: 10,
            compress: false,
        };
        recover(&p).unwrap();
        let read = |n| fs::read_to_string(rotated_name(&path, n, false)).unwrap();
        assert_eq!(read(1), "run 5, second\n");
        assert_eq!(read(2), "run 5, first\n");
        assert_eq!(read(3), "older version\n");
        assert_eq!(read(4), "placed\n");
        assert!(mine.exists());
        assert!(with(&path, ".rotating-junk").exists());
    }

    fn with(path: &Path, suffix: &str) -> PathBuf {
        rotate::with_suffix(path, suffix)
    }

    #[test]
    fn a_compression_cut_short_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let p = Placement {
            path: path.clone(),
            retain: 5,
            compress: true,
        };
        fs::write(rotated_name(&path, 2, true), gzip_of("older\n")).unwrap();
        fs::write(compressing_name(&path), "newest\n").unwrap();
        fs::set_permissions(compressing_name(&path), fs::Permissions::from_mode(0o640)).unwrap();
        fs::write(partial_gz_name(&path), b"\x1f\x8b partial").unwrap();
        recover(&p).unwrap();
        assert_eq!(gunzip(&rotated_name(&path, 1, true)), "newest\n");
        assert_eq!(gunzip(&rotated_name(&path, 2, true)), "older\n");
        assert_eq!(names(dir.path()), ["a.log.1.gz", "a.log.2.gz"]);
        let mode = fs::metadata(rotated_name(&path, 1, true)).unwrap().mode();
        assert_eq!(mode & 0o777, 0o640);
    }

    #[test]
    fn a_finished_compression_loses_its_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let p = Placement {
            path: path.clone(),
            retain: 5,
            compress: true,
        };
        fs::write(rotated_name(&path, 1, true), gzip_of("done\n")).unwrap();
        fs::write(compressing_name(&path), "done\n").unwrap();
        recover(&p).unwrap();
        assert_eq!(names(dir.path()), ["a.log.1.gz"]);
        assert_eq!(gunzip(&rotated_name(&path, 1, true)), "done\n");

        // A source that does not match its `.1.gz` is kept.
        fs::write(compressing_name(&path), "something else\n").unwrap();
        assert!(recover(&p).is_err());
        assert_eq!(names(dir.path()), ["a.log.1.compressing", "a.log.1.gz"]);
    }

    #[test]
    fn nothing_to_do_leaves_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        fs::write(&path, "live\n").unwrap();
        fs::write(rotated_name(&path, 1, false), "one\n").unwrap();
        fs::write(rotated_name(&path, 2, true), gzip_of("two\n")).unwrap();
        let p = Placement {
            path: path.clone(),
            retain: 5,
            compress: true,
        };
        recover(&p).unwrap();
        assert_eq!(names(dir.path()), ["a.log", "a.log.1", "a.log.2.gz"]);
    }
}
