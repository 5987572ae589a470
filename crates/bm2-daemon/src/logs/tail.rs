//! Reading the last lines of a file without reading all of it.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

const BLOCK: u64 = 64 * 1024;

/// The last `n` lines of the file at `path` (without their newlines); empty when unreadable.
pub fn last_lines(path: &Path, n: usize) -> Vec<String> {
    if n == 0 {
        return Vec::new();
    }
    let Ok(mut file) = fs::File::open(path) else {
        return Vec::new();
    };
    let Ok(len) = file.seek(SeekFrom::End(0)) else {
        return Vec::new();
    };
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    // Read backwards until the buffer holds n newlines before the final one, or the file starts.
    while start > 0 && memchr::memchr_iter(b'\n', &buf).count() <= n {
        let from = start.saturating_sub(BLOCK);
        let mut block = vec![0; (start - from) as usize];
        if file.seek(SeekFrom::Start(from)).is_err() || file.read_exact(&mut block).is_err() {
            break;
        }
        block.extend_from_slice(&buf);
        buf = block;
        start = from;
    }
    if buf.is_empty() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text
        .strip_suffix('\n')
        .unwrap_or(&text)
        .split('\n')
        .collect();
    let skip = lines.len().saturating_sub(n);
    let from_start = usize::from(start > 0 && skip == 0);
    lines[skip.max(from_start)..]
        .iter()
        .map(|l| (*l).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let body: String = (0..50_000).fold(String::new(), |mut s, i| {
            use std::fmt::Write as _;
            let _ = writeln!(s, "line {i}");
            s
        });
        fs::write(&path, body).unwrap();
        assert_eq!(
            last_lines(&path, 3),
            vec!["line 49997", "line 49998", "line 49999"]
        );
        assert_eq!(last_lines(&path, 0), Vec::<String>::new());
        fs::write(&path, "a\nb").unwrap();
        assert_eq!(last_lines(&path, 5), vec!["a", "b"]);
        assert!(last_lines(&dir.path().join("missing"), 5).is_empty());
        fs::write(&path, "").unwrap();
        assert!(last_lines(&path, 5).is_empty());
        fs::write(&path, "a\n\nb\n").unwrap();
        assert_eq!(last_lines(&path, 5), vec!["a", "", "b"]);
    }
}
