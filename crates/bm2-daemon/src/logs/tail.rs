//! Reading the last lines of a file in bounded memory: a backward scan in fixed-size blocks
//! finds where the last `n` lines start, then the lines are read forwards a chunk at a time.
//! Memory stays at one block plus one line, whatever the size of the file or of `n`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Bytes read at a time, backwards and forwards.
pub const BLOCK: usize = 64 * 1024;

/// Longest line handed over whole; the rest of a longer line is left out and the line ends with
/// [`CUT_NOTE`]. (bm2 itself never writes lines this long: its pipes cut them at 1 MiB.)
pub const MAX_LINE: usize = 2 << 20;

/// Ends a line that was longer than [`MAX_LINE`].
pub const CUT_NOTE: &[u8] = b" [bm2: rest of a line longer than 2 MiB not shown]";

/// The last lines of the first `end` bytes of a file, read forwards from where they start.
#[derive(Debug)]
pub struct Tail {
    file: File,
    pos: u64,
    end: u64,
    block: usize,
    buf: Vec<u8>,
    line: Vec<u8>,
    cut: bool,
}

impl Tail {
    /// The last `n` lines of the first `end` bytes of `file` (a file whose length was recorded
    /// earlier: bytes written since are not read). A final line without a newline counts.
    pub fn new(file: File, end: u64, n: usize) -> io::Result<Tail> {
        Tail::with_block(file, end, n, BLOCK)
    }

    fn with_block(file: File, end: u64, n: usize, block: usize) -> io::Result<Tail> {
        // The file may have been emptied (`bm2 flush`) since its length was recorded.
        let end = end.min(file.metadata()?.len());
        let mut buf = vec![0; block];
        let pos = start_of_last_lines(&file, end, n, &mut buf)?;
        Ok(Tail {
            file,
            pos,
            end,
            block,
            buf,
            line: Vec::new(),
            cut: false,
        })
    }

    /// True when every line has been handed over.
    pub fn done(&self) -> bool {
        self.pos >= self.end && self.line.is_empty()
    }

    /// Hands whole lines (without `\n` or `\r\n`) to `each`, reading about `budget` bytes at
    /// most; call again until [`Tail::done`]. A read error ends the lines (reported once).
    pub fn read_lines(&mut self, budget: usize, mut each: impl FnMut(&[u8])) -> io::Result<()> {
        let mut read = 0;
        while self.pos < self.end && read < budget.max(1) {
            let want =
                usize::try_from(self.end - self.pos).map_or(self.block, |r| r.min(self.block));
            let chunk = &mut self.buf[..want];
            let got = match self.file.read_at(chunk, self.pos) {
                Ok(0) => {
                    // Shorter than recorded (emptied meanwhile): stop here.
                    self.end = self.pos;
                    break;
                }
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.end = self.pos;
                    self.line.clear();
                    return Err(e);
                }
            };
            self.pos += got as u64;
            read += got;
            let mut rest = &self.buf[..got];
            while let Some(i) = memchr::memchr(b'\n', rest) {
                push_capped(&mut self.line, &mut self.cut, &rest[..i]);
                each(finish(&mut self.line, &mut self.cut));
                self.line.clear();
                rest = &rest[i + 1..];
            }
            push_capped(&mut self.line, &mut self.cut, rest);
        }
        if self.pos >= self.end && !self.line.is_empty() {
            each(finish(&mut self.line, &mut self.cut));
            self.line.clear();
        }
        Ok(())
    }
}

fn push_capped(line: &mut Vec<u8>, cut: &mut bool, bytes: &[u8]) {
    let room = MAX_LINE.saturating_sub(line.len());
    if bytes.len() > room {
        *cut = true;
    }
    line.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

fn finish<'a>(line: &'a mut Vec<u8>, cut: &mut bool) -> &'a [u8] {
    if std::mem::take(cut) {
        line.extend_from_slice(CUT_NOTE);
    } else if line.last() == Some(&b'\r') {
        line.pop();
    }
    line
}

/// Offset at which the last `n` lines of the first `end` bytes of `file` start, found by
/// reading blocks of `buf.len()` bytes backwards from `end` and stopping at the `n`th newline.
fn start_of_last_lines(file: &File, end: u64, n: usize, buf: &mut [u8]) -> io::Result<u64> {
    if n == 0 {
        return Ok(end);
    }
    let mut found = 0;
    let mut pos = end;
    while pos > 0 {
        let from = pos.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..usize::try_from(pos - from).unwrap_or(0)];
        file.read_exact_at(chunk, from)?;
        // The file's final newline ends its last line; it does not start another one.
        let scan = if pos == end && chunk.last() == Some(&b'\n') {
            &chunk[..chunk.len() - 1]
        } else {
            &chunk[..]
        };
        for i in memchr::memrchr_iter(b'\n', scan) {
            found += 1;
            if found == n {
                return Ok(from + i as u64 + 1);
            }
        }
        pos = from;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// The lines `Tail` hands over for `body`, read with blocks of `block` bytes and a read
    /// budget of `budget` bytes per call.
    fn tail(body: &[u8], n: usize, block: usize, budget: usize) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        fs::write(&path, body).unwrap();
        let file = File::open(&path).unwrap();
        let mut t = Tail::with_block(file, body.len() as u64, n, block).unwrap();
        let mut lines = Vec::new();
        let mut calls = 0;
        while !t.done() {
            t.read_lines(budget, |l| {
                lines.push(String::from_utf8_lossy(l).into_owned());
            })
            .unwrap();
            calls += 1;
            assert!(calls <= body.len() + 1, "read_lines makes no progress");
        }
        lines
    }

    /// What `tail` must answer: the naive split of the whole text.
    fn expected(body: &str, n: usize) -> Vec<String> {
        if body.is_empty() {
            return Vec::new();
        }
        let body = body.strip_suffix('\n').unwrap_or(body);
        let lines: Vec<String> = body
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
            .collect();
        lines[lines.len().saturating_sub(n)..].to_vec()
    }

    #[test]
    fn reads_the_last_lines_of_a_large_file() {
        let body: String = (0..50_000).fold(String::new(), |mut s, i| {
            use std::fmt::Write as _;
            let _ = writeln!(s, "line {i}");
            s
        });
        assert_eq!(
            tail(body.as_bytes(), 3, BLOCK, BLOCK),
            ["line 49997", "line 49998", "line 49999"]
        );
        let all = tail(body.as_bytes(), 1_000_000, BLOCK, 1000);
        assert_eq!(all.len(), 50_000);
        assert_eq!(all[0], "line 0");
    }

    #[test]
    fn lines_split_across_block_boundaries_are_whole() {
        let bodies = [
            "a\nbb\nccc\ndddd\neeeee\n",
            "a\nbb\nccc\ndddd\neeeee",
            "\n\nx\n\n",
            "one line no newline",
            "crlf\r\nlines\r\n\r\nend\r\n",
            "\r\n",
            "\n",
            "mixed\r\nends\nhere",
        ];
        for body in bodies {
            for block in 1..=8 {
                for n in 0..=7 {
                    for budget in [1, 3, 1000] {
                        assert_eq!(
                            tail(body.as_bytes(), n, block, budget),
                            expected(body, n),
                            "body {body:?}, n {n}, block {block}, budget {budget}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn edge_cases() {
        // Empty file.
        assert!(tail(b"", 5, 4, 4).is_empty());
        // No trailing newline: the last line still counts.
        assert_eq!(tail(b"a\nb", 1, 4, 4), ["b"]);
        assert_eq!(tail(b"a\nb", 5, 4, 4), ["a", "b"]);
        // CRLF line ends are taken off.
        assert_eq!(tail(b"a\r\nb\r\n", 1, 4, 4), ["b"]);
        // N larger than the file.
        assert_eq!(tail(b"a\n\nb\n", 100, 2, 4), ["a", "", "b"]);
        // A single line much longer than the block.
        let long = "x".repeat(10_000);
        let body = format!("first\n{long}\nlast\n");
        assert_eq!(tail(body.as_bytes(), 2, 16, 16), [long.as_str(), "last"]);
        assert_eq!(tail(long.as_bytes(), 1, 16, 16), [long.as_str()]);
    }

    #[test]
    fn only_the_recorded_length_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        fs::write(&path, "a\nb\nc\nlater\n").unwrap();
        let mut t = Tail::new(File::open(&path).unwrap(), 6, 10).unwrap();
        let mut lines = Vec::new();
        t.read_lines(BLOCK, |l| lines.push(l.to_vec())).unwrap();
        assert!(t.done());
        assert_eq!(lines, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        // Emptied after the length was recorded: nothing to read, no error.
        fs::write(&path, "").unwrap();
        let mut t = Tail::new(File::open(&path).unwrap(), 12, 10).unwrap();
        t.read_lines(BLOCK, |_| panic!("no line expected")).unwrap();
        assert!(t.done());
    }

    #[test]
    fn a_line_longer_than_the_cap_is_cut_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut body = vec![b'y'; MAX_LINE + 10];
        body.extend_from_slice(b"\nshort\n");
        fs::write(&path, &body).unwrap();
        let mut t = Tail::new(File::open(&path).unwrap(), body.len() as u64, 2).unwrap();
        let mut lines = Vec::new();
        while !t.done() {
            t.read_lines(BLOCK, |l| lines.push(l.to_vec())).unwrap();
        }
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), MAX_LINE + CUT_NOTE.len());
        assert!(lines[0].ends_with(CUT_NOTE));
        assert_eq!(lines[1], b"short");
    }
}
