//! The machine's figures, read from `/proc` and `statvfs`: memory, load, CPU times, network.

use std::fs;
use std::path::Path;

use bm2_types::{DiskMetrics, NetworkMetrics};

/// Cumulative CPU times of the whole machine (first line of `/proc/stat`), in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Time spent doing anything but idling or waiting for IO.
    pub busy: u64,
    /// All time.
    pub total: u64,
}

impl CpuTimes {
    /// Busy percent of all CPUs between `earlier` and `self` (0 when no time passed).
    pub fn usage_since(&self, earlier: &CpuTimes) -> f32 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        let busy = self.busy.saturating_sub(earlier.busy);
        (busy as f64 / total as f64 * 100.0) as f32
    }
}

/// Parses the `cpu` line of `/proc/stat`.
pub fn parse_cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal; guest time is already counted in user.
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        busy: total.saturating_sub(idle),
        total,
    })
}

/// The machine's CPU times now.
pub fn cpu_times() -> Option<CpuTimes> {
    parse_cpu_times(&fs::read_to_string("/proc/stat").ok()?)
}

/// Total and available memory in bytes, from the text of `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let mut total = None;
    let mut available = None;
    let mut free = None;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let kib = || -> Option<u64> { rest.split_ascii_whitespace().next()?.parse().ok() };
        match key {
            "MemTotal" => total = kib(),
            "MemAvailable" => available = kib(),
            "MemFree" => free = kib(),
            _ => {}
        }
    }
    // Kernels before 3.14 have no MemAvailable: fall back to MemFree.
    Some((total? * 1024, available.or(free)? * 1024))
}

/// Total and available memory in bytes.
pub fn memory() -> Option<(u64, u64)> {
    parse_meminfo(&fs::read_to_string("/proc/meminfo").ok()?)
}

/// Parses `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_ascii_whitespace().map(|f| f.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// Load average over 1, 5 and 15 minutes (zeros when unreadable).
pub fn load_average() -> [f64; 3] {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| parse_loadavg(&t))
        .unwrap_or_default()
}

/// Sums the received and sent bytes of every interface but loopback in `/proc/net/dev`.
pub fn parse_net_dev(text: &str) -> NetworkMetrics {
    let mut net = NetworkMetrics::default();
    for line in text.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let fields: Vec<&str> = counters.split_ascii_whitespace().collect();
        // Receive: bytes packets errs drop fifo frame compressed multicast; then transmit.
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        net.rx_bytes += field(0);
        net.tx_bytes += field(8);
    }
    net
}

/// Network totals since boot.
pub fn network() -> NetworkMetrics {
    fs::read_to_string("/proc/net/dev")
        .map(|t| parse_net_dev(&t))
        .unwrap_or_default()
}

/// Size and free space of the filesystem holding `path`.
pub fn disk(path: &Path) -> Option<DiskMetrics> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    // The field types are aliases of u64 on Linux.
    let unit: u64 = st.fragment_size();
    Some(DiskMetrics {
        path: path.display().to_string(),
        total_bytes: st.blocks() * unit,
        free_bytes: st.blocks_available() * unit,
    })
}

/// Logical CPUs this daemon may use.
pub fn cpu_count() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_usage_from_two_readings() {
        let a = parse_cpu_times("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(a.total, 1000);
        assert_eq!(a.busy, 200);
        let b = parse_cpu_times("cpu  200 0 200 1400 200 0 0 0 0 0\n").unwrap();
        assert!((b.usage_since(&a) - 20.0).abs() < 1e-4);
        assert!(b.usage_since(&b).abs() < f32::EPSILON);
        assert!(parse_cpu_times("intr 1 2 3\n").is_none());
    }

    #[test]
    fn meminfo_prefers_available() {
        let text =
            "MemTotal:       24684096 kB\nMemFree:         1000 kB\nMemAvailable:   2000 kB\n";
        assert_eq!(parse_meminfo(text), Some((24_684_096 * 1024, 2000 * 1024)));
        let old = "MemTotal: 10 kB\nMemFree: 4 kB\n";
        assert_eq!(parse_meminfo(old), Some((10 * 1024, 4 * 1024)));
        assert_eq!(parse_meminfo("nothing"), None);
    }

    #[test]
    fn loadavg_and_network() {
        assert_eq!(
            parse_loadavg("1.23 1.45 1.67 2/345 6789\n"),
            Some([1.23, 1.45, 1.67])
        );
        assert_eq!(parse_loadavg("1.0"), None);
        let dev = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo: 5000 10 0 0 0 0 0 0 5000 10 0 0 0 0 0 0\n  eth0: 1000 5 0 0 0 0 0 0 300 3 0 0 0 0 0 0\n  eth1: 24 1 0 0 0 0 0 0 7 1 0 0 0 0 0 0\n";
        assert_eq!(
            parse_net_dev(dev),
            NetworkMetrics {
                rx_bytes: 1024,
                tx_bytes: 307
            }
        );
    }

    #[test]
    fn reads_this_machine() {
        let (total, free) = memory().unwrap();
        assert!(total > 0 && free <= total);
        assert!(cpu_times().unwrap().total > 0);
        assert!(cpu_count() >= 1);
        let d = disk(Path::new("/")).unwrap();
        assert!(d.total_bytes >= d.free_bytes);
    }
}
