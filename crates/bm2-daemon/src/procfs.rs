//! Reading processes from `/proc`: stat lines, whole-system snapshots and process trees.

use std::collections::HashMap;
use std::fs;

/// What bm2 needs from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Process id.
    pub pid: u32,
    /// Parent pid.
    pub ppid: u32,
    /// Process group id.
    pub pgrp: u32,
    /// State letter (`R`, `S`, `Z`, ...).
    pub state: u8,
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Start time after boot, in clock ticks: with the pid, identifies a process.
    pub start_time: u64,
    /// Resident set size, in pages.
    pub rss_pages: u64,
}

impl ProcStat {
    /// True for a zombie waiting to be reaped.
    pub fn is_zombie(&self) -> bool {
        self.state == b'Z'
    }
}

/// Parses the contents of `/proc/<pid>/stat`.
pub fn parse_stat(pid: u32, text: &str) -> Option<ProcStat> {
    // The command name is in parentheses and may itself contain spaces and parentheses.
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    // Fields after pgrp, counted from state = field 3 of proc(5).
    let mut rest = fields.skip(8);
    let utime: u64 = rest.next()?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    let mut rest = rest.skip(6);
    let start_time = rest.next()?.parse().ok()?;
    let _vsize = rest.next()?;
    let rss_pages: i64 = rest.next()?.parse().ok()?;
    Some(ProcStat {
        pid,
        ppid,
        pgrp,
        state,
        cpu_ticks: utime + stime,
        start_time,
        rss_pages: rss_pages.max(0) as u64,
    })
}

/// Reads one process; `None` when it does not exist (any more).
pub fn read_stat(pid: u32) -> Option<ProcStat> {
    StatReader::default().read(pid)
}

/// Reads `/proc/<pid>/stat` files, reusing its buffers. Files of processes read again and again
/// can be kept open with [`StatReader::keep_open`], so that each later read is one `pread`.
#[derive(Default)]
pub struct StatReader {
    path: String,
    buf: Vec<u8>,
    open: HashMap<u32, fs::File>,
}

impl StatReader {
    /// Reads one process; `None` when it does not exist (any more).
    pub fn read(&mut self, pid: u32) -> Option<ProcStat> {
        let file = self.open_stat(pid)?;
        self.parse_from(&file, pid)
    }

    /// Like [`StatReader::read`], keeping the file open for the next read of the same pid.
    pub fn read_kept(&mut self, pid: u32) -> Option<ProcStat> {
        let file = match self.open.remove(&pid) {
            Some(f) => f,
            None => self.open_stat(pid)?,
        };
        let stat = self.parse_from(&file, pid)?;
        self.open.insert(pid, file);
        Some(stat)
    }

    fn open_stat(&mut self, pid: u32) -> Option<fs::File> {
        use std::fmt::Write as _;
        self.path.clear();
        let _ = write!(self.path, "/proc/{pid}/stat");
        fs::File::open(&self.path).ok()
    }

    fn parse_from(&mut self, file: &fs::File, pid: u32) -> Option<ProcStat> {
        if self.buf.len() < 1024 {
            self.buf.resize(1024, 0);
        }
        let len = read_all_at(file, &mut self.buf)?;
        parse_stat(pid, std::str::from_utf8(&self.buf[..len]).ok()?)
    }

    /// Keeps open only the files of `pids`, closing the others.
    pub fn keep_open(&mut self, pids: &std::collections::HashSet<u32>) {
        self.open.retain(|pid, _| pids.contains(pid));
    }
}

fn read_all_at(file: &fs::File, buf: &mut Vec<u8>) -> Option<usize> {
    use std::os::unix::fs::FileExt;
    let mut len = 0;
    loop {
        let n = file.read_at(&mut buf[len..], len as u64).ok()?;
        if n == 0 {
            return Some(len);
        }
        len += n;
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
    }
}

/// Pids of every process on the system.
pub fn pids() -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// True when `pid` is alive (not a zombie) and started at `start_time`.
pub fn is_same_process(pid: u32, start_time: u64) -> bool {
    read_stat(pid).is_some_and(|s| s.start_time == start_time && !s.is_zombie())
}

/// Every process on the system.
pub fn snapshot() -> Vec<ProcStat> {
    let mut reader = StatReader::default();
    pids()
        .into_iter()
        .filter_map(|pid| reader.read(pid))
        .collect()
}

/// Every process on the system, from a scan started no earlier than `since`: when many
/// instances stop at once (`bm2 kill`, a stop of every app), they share scans of `/proc`
/// instead of making one each.
pub fn snapshot_since(since: std::time::Instant) -> std::sync::Arc<Vec<ProcStat>> {
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::Instant;
    static LAST: Mutex<Option<(Instant, Arc<Vec<ProcStat>>)>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((at, snap)) = last.as_ref()
        && *at >= since
    {
        return snap.clone();
    }
    let started = Instant::now();
    let snap = Arc::new(snapshot());
    *last = Some((started, snap.clone()));
    snap
}

/// True when the process's environment holds every one of `entries` (`KEY=value`).
pub fn environ_contains(pid: u32, entries: &[String]) -> bool {
    let Ok(env) = fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    entries
        .iter()
        .all(|want| env.split(|b| *b == 0).any(|entry| entry == want.as_bytes()))
}

/// The instance a process belongs to, from the marker every app process carries: its
/// environment holds `home_entry` (`BM2_HOME=<home>`) and a `BM2_ID`.
pub fn marked_instance(pid: u32, home_entry: &str) -> Option<bm2_types::ProcId> {
    let env = fs::read(format!("/proc/{pid}/environ")).ok()?;
    let mut in_home = false;
    let mut id = None;
    for entry in env.split(|b| *b == 0) {
        if entry == home_entry.as_bytes() {
            in_home = true;
        } else if let Some(v) = entry.strip_prefix(b"BM2_ID=") {
            id = std::str::from_utf8(v).ok().and_then(|v| v.parse().ok());
        }
    }
    if in_home { id } else { None }
}

/// Number of open file descriptors of a process.
pub fn fd_count(pid: u32) -> Option<u32> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u32)
}

/// Clock ticks per second, the unit of CPU times in `/proc`.
pub fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100, |v| v as u64)
}

/// Bytes per memory page.
pub fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |v| v as u64)
}

/// Parent-to-children links of a snapshot, and its processes by pid.
pub struct Tree<'a> {
    children: HashMap<u32, Vec<&'a ProcStat>>,
    by_pid: HashMap<u32, &'a ProcStat>,
}

impl<'a> Tree<'a> {
    /// Builds the links of `procs`.
    pub fn new(procs: &'a [ProcStat]) -> Self {
        let mut children: HashMap<u32, Vec<&ProcStat>> = HashMap::with_capacity(procs.len());
        let mut by_pid = HashMap::with_capacity(procs.len());
        for p in procs {
            children.entry(p.ppid).or_default().push(p);
            by_pid.insert(p.pid, p);
        }
        Tree { children, by_pid }
    }

    /// The process `pid`, when the snapshot holds it.
    pub fn get(&self, pid: u32) -> Option<&'a ProcStat> {
        self.by_pid.get(&pid).copied()
    }

    /// Direct children of `pid`.
    pub fn children(&self, pid: u32) -> &[&'a ProcStat] {
        self.children.get(&pid).map_or(&[], Vec::as_slice)
    }

    /// Every descendant of `pid`, not including `pid` itself.
    pub fn descendants(&self, pid: u32) -> Vec<&'a ProcStat> {
        let mut out = Vec::new();
        let mut stack = vec![pid];
        while let Some(p) = stack.pop() {
            for child in self.children(p) {
                out.push(*child);
                stack.push(child.pid);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = "1234 (my (odd) app) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 98765 10000000 321 18446744073709551615";
        let s = parse_stat(1234, line).unwrap();
        assert_eq!(s.ppid, 1);
        assert_eq!(s.pgrp, 1234);
        assert_eq!(s.state, b'S');
        assert_eq!(s.cpu_ticks, 300);
        assert_eq!(s.start_time, 98765);
        assert_eq!(s.rss_pages, 321);
    }

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        let s = read_stat(me).unwrap();
        assert_eq!(s.pid, me);
        assert!(s.rss_pages > 0);
        assert!(is_same_process(me, s.start_time));
        assert!(!is_same_process(me, s.start_time + 1));
        assert!(snapshot().iter().any(|p| p.pid == me));
    }

    #[test]
    fn tree_finds_descendants() {
        let mk = |pid, ppid| ProcStat {
            pid,
            ppid,
            pgrp: pid,
            state: b'S',
            cpu_ticks: 0,
            start_time: 0,
            rss_pages: 0,
        };
        let procs = vec![mk(1, 0), mk(10, 1), mk(11, 10), mk(12, 11), mk(20, 1)];
        let tree = Tree::new(&procs);
        let mut d: Vec<u32> = tree.descendants(10).iter().map(|p| p.pid).collect();
        d.sort_unstable();
        assert_eq!(d, vec![11, 12]);
    }
}
