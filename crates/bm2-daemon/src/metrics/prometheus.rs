//! The Prometheus exposition text of a metrics snapshot, encoded by `prometheus-client`
//! (`OpenMetrics` text, which Prometheus scrapes natively).
//!
//! Each family is registered in [`Exporter::new`] and filled in [`Exporter::add_process`] or
//! [`Exporter::set_system`]: adding a family is a field, one `register` line and one line that
//! sets it. A counter is registered without its `_total` suffix, which the encoder adds.

use std::sync::atomic::AtomicU64;

use bm2_types::{HealthState, MetricsSnapshot, ProcStatus, ProcessMetrics, SystemMetrics};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

/// The HTTP content type of the text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The HTTP content type of Prometheus's classic text format.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition formats bm2 serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `OpenMetrics` 1.0 text (the default).
    OpenMetrics,
    /// Prometheus's classic text format 0.0.4, for scrapers and tools that ask for it.
    Text004,
}

impl Format {
    /// The format an `Accept` header prefers: the classic text format when it ranks
    /// `text/plain` above `application/openmetrics-text` (by `q`, then by order); `OpenMetrics`
    /// otherwise, and without the header.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::OpenMetrics;
        };
        let (mut text, mut open) = (None::<f32>, None::<f32>);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .and_then(|(_, v)| v.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let slot = match media.as_str() {
                "text/plain" => &mut text,
                "application/openmetrics-text" => &mut open,
                _ => continue,
            };
            *slot = Some(slot.map_or(q, |old| old.max(q)));
        }
        match (text, open) {
            (Some(t), None) if t > 0.0 => Format::Text004,
            (Some(t), Some(o)) if t > o => Format::Text004,
            _ => Format::OpenMetrics,
        }
    }

    /// The HTTP content type of the format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => CONTENT_TYPE,
            Format::Text004 => CONTENT_TYPE_TEXT,
        }
    }
}

/// `OpenMetrics` text (as [`render`] makes it) in the classic 0.0.4 format: a counter's `HELP`
/// and `TYPE` name its samples (`bm2_process_restarts_total`, typed `counter`), and the
/// `# UNIT` and `# EOF` lines, which 0.0.4 does not have, are left out.
pub fn to_text_004(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Labels of every process family: the instance name and id.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcLabels {
    name: String,
    id: u32,
}

/// Labels of `bm2_process_status`: the instance and its status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    name: String,
    id: u32,
    status: &'static str,
}

/// Labels of `bm2_process_restarts_by_reason`: the instance and a cause.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    name: String,
    id: u32,
    reason: String,
}

/// Labels of `bm2_process_health`: the instance and a health state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HealthLabels {
    name: String,
    id: u32,
    state: &'static str,
}

/// Labels of `bm2_system_load_average`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeriodLabels {
    period: &'static str,
}

type GaugeF = Gauge<f64, AtomicU64>;

/// Every family bm2 exports, registered once per rendering.
struct Exporter {
    registry: Registry,
    cpu: Family<ProcLabels, GaugeF>,
    memory: Family<ProcLabels, Gauge>,
    handles: Family<ProcLabels, Gauge>,
    restarts: Family<ProcLabels, Counter>,
    uptime: Family<ProcLabels, Gauge>,
    status: Family<StatusLabels, Gauge>,
    restart_reasons: Family<ReasonLabels, Counter>,
    health: Family<HealthLabels, Gauge>,
    memory_total: Gauge,
    memory_free: Gauge,
    load: Family<PeriodLabels, GaugeF>,
    cpu_count: Gauge,
    cpu_usage: GaugeF,
    disk_total: Gauge,
    disk_free: Gauge,
    net_rx: Counter,
    net_tx: Counter,
}

/// Registers `metric` under `name` and returns it.
fn reg<M: Metric + Clone + Default>(registry: &mut Registry, name: &str, help: &str) -> M {
    let m = M::default();
    registry.register(name, help, m.clone());
    m
}

impl Exporter {
    fn new() -> Exporter {
        let mut registry = Registry::default();
        let r = &mut registry;
        Exporter {
            cpu: reg(r, "bm2_process_cpu", "CPU usage percentage"),
            memory: reg(r, "bm2_process_memory_bytes", "Memory usage in bytes"),
            handles: reg(
                r,
                "bm2_process_handles",
                "Open file descriptors of the main process",
            ),
            restarts: reg(r, "bm2_process_restarts", "Total restart count"),
            uptime: reg(r, "bm2_process_uptime_seconds", "Process uptime in seconds"),
            status: reg(r, "bm2_process_status", "Process status (1=online)"),
            restart_reasons: reg(
                r,
                "bm2_process_restarts_by_reason",
                "Restarts by cause: crash, memory, health, cron, watch, manual",
            ),
            health: reg(
                r,
                "bm2_process_health",
                "Health check state (1 for the current state of: healthy, unhealthy, unknown)",
            ),
            memory_total: reg(r, "bm2_system_memory_total_bytes", "Total system memory"),
            memory_free: reg(r, "bm2_system_memory_free_bytes", "Free system memory"),
            load: reg(r, "bm2_system_load_average", "System load average"),
            cpu_count: reg(r, "bm2_system_cpu_count", "Logical CPUs"),
            cpu_usage: reg(
                r,
                "bm2_system_cpu_usage",
                "CPU busy percentage of all CPUs over the last sample",
            ),
            disk_total: reg(
                r,
                "bm2_system_disk_total_bytes",
                "Size of the filesystem holding the bm2 home",
            ),
            disk_free: reg(
                r,
                "bm2_system_disk_free_bytes",
                "Free space on the filesystem holding the bm2 home",
            ),
            net_rx: reg(
                r,
                "bm2_system_network_receive_bytes",
                "Bytes received by all interfaces but loopback",
            ),
            net_tx: reg(
                r,
                "bm2_system_network_transmit_bytes",
                "Bytes sent by all interfaces but loopback",
            ),
            registry,
        }
    }

    fn add_process(&self, p: &ProcessMetrics) {
        let l = ProcLabels {
            name: p.name.clone(),
            id: p.id,
        };
        self.cpu.get_or_create(&l).set(round2(p.cpu));
        self.memory.get_or_create(&l).set(i64_of(p.memory));
        if let Some(n) = p.handles {
            self.handles.get_or_create(&l).set(i64::from(n));
        }
        self.restarts
            .get_or_create(&l)
            .inc_by(u64::from(p.restarts));
        self.uptime.get_or_create(&l).set(i64_of(p.uptime / 1000));
        for (reason, n) in &p.restart_reasons {
            self.restart_reasons
                .get_or_create(&ReasonLabels {
                    name: l.name.clone(),
                    id: l.id,
                    reason: reason.clone(),
                })
                .inc_by(*n);
        }
        if let Some(state) = p.health {
            for s in [
                HealthState::Healthy,
                HealthState::Unhealthy,
                HealthState::Unknown,
            ] {
                self.health
                    .get_or_create(&HealthLabels {
                        name: l.name.clone(),
                        id: l.id,
                        state: s.as_str(),
                    })
                    .set(i64::from(s == state));
            }
        }
        let status = StatusLabels {
            name: l.name,
            id: l.id,
            status: p.status.as_str(),
        };
        self.status
            .get_or_create(&status)
            .set(i64::from(p.status == ProcStatus::Online));
    }

    fn set_system(&self, s: &SystemMetrics) {
        self.memory_total.set(i64_of(s.total_memory));
        self.memory_free.set(i64_of(s.free_memory));
        for (period, v) in ["1m", "5m", "15m"].into_iter().zip(s.load_avg) {
            self.load.get_or_create(&PeriodLabels { period }).set(v);
        }
        self.cpu_count.set(i64::from(s.cpu_count));
        self.cpu_usage.set(round2(s.cpu_usage));
        if let Some(d) = &s.disk {
            self.disk_total.set(i64_of(d.total_bytes));
            self.disk_free.set(i64_of(d.free_bytes));
        }
        self.net_rx.inc_by(s.network.rx_bytes);
        self.net_tx.inc_by(s.network.tx_bytes);
    }
}

/// A percentage as `f64`, to two decimals (`f64::from(0.3_f32)` would print 0.30000001192092896).
fn round2(v: f32) -> f64 {
    (f64::from(v) * 100.0).round() / 100.0
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The snapshot as Prometheus exposition text.
pub fn render(snapshot: &MetricsSnapshot) -> String {
    let e = Exporter::new();
    for p in &snapshot.processes {
        e.add_process(p);
    }
    e.set_system(&snapshot.system);
    let mut out = String::with_capacity(1024 + 600 * snapshot.processes.len());
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &e.registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bm2_types::{DiskMetrics, NetworkMetrics};

    fn snapshot() -> MetricsSnapshot {
        MetricsSnapshot {
            timestamp: 1,
            processes: vec![
                ProcessMetrics {
                    id: 0,
                    name: "my-api-0".into(),
                    app: "my-api".into(),
                    pid: Some(4521),
                    cpu: 0.5,
                    memory: 44_150_784,
                    handles: Some(24),
                    status: ProcStatus::Online,
                    restarts: 3,
                    uptime: 8_100_000,
                    restart_reasons: [("crash".to_string(), 2), ("health".to_string(), 1)].into(),
                    health: Some(HealthState::Unhealthy),
                },
                ProcessMetrics {
                    id: 1,
                    name: "we\"ird".into(),
                    app: "we\"ird".into(),
                    pid: None,
                    cpu: 0.0,
                    memory: 0,
                    handles: None,
                    status: ProcStatus::Stopped,
                    restarts: 0,
                    uptime: 0,
                    restart_reasons: std::collections::BTreeMap::new(),
                    health: None,
                },
            ],
            system: SystemMetrics {
                total_memory: 17_179_869_184,
                free_memory: 8_589_934_592,
                cpu_count: 8,
                load_avg: [1.23, 1.45, 1.67],
                platform: "linux".into(),
                cpu_usage: 12.5,
                disk: Some(DiskMetrics {
                    path: "/".into(),
                    total_bytes: 100,
                    free_bytes: 40,
                }),
                network: NetworkMetrics {
                    rx_bytes: 10,
                    tx_bytes: 20,
                },
            },
        }
    }

    #[test]
    fn renders_the_spec_names() {
        let text = render(&snapshot());
        for line in [
            "# TYPE bm2_process_cpu gauge",
            r#"bm2_process_cpu{name="my-api-0",id="0"} 0.5"#,
            r#"bm2_process_memory_bytes{name="my-api-0",id="0"} 44150784"#,
            "# TYPE bm2_process_restarts counter",
            r#"bm2_process_restarts_total{name="my-api-0",id="0"} 3"#,
            r#"bm2_process_uptime_seconds{name="my-api-0",id="0"} 8100"#,
            r#"bm2_process_status{name="my-api-0",id="0",status="online"} 1"#,
            r#"bm2_process_status{name="we\"ird",id="1",status="stopped"} 0"#,
            r#"bm2_process_restarts_by_reason_total{name="my-api-0",id="0",reason="crash"} 2"#,
            r#"bm2_process_restarts_by_reason_total{name="my-api-0",id="0",reason="health"} 1"#,
            r#"bm2_process_health{name="my-api-0",id="0",state="unhealthy"} 1"#,
            r#"bm2_process_health{name="my-api-0",id="0",state="healthy"} 0"#,
            "bm2_system_memory_total_bytes 17179869184",
            "bm2_system_memory_free_bytes 8589934592",
            r#"bm2_system_load_average{period="15m"} 1.67"#,
            "bm2_system_cpu_count 8",
            "bm2_system_cpu_usage 12.5",
            "bm2_system_disk_free_bytes 40",
            "bm2_system_network_transmit_bytes_total 20",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        // No health family for an app without a health check.
        assert!(!text.contains(r#"bm2_process_health{name="we"#));
        // A stopped process has no file handle count.
        assert!(!text.contains(r#"bm2_process_handles{name="we"#));
    }

    #[test]
    fn accept_header_picks_the_format() {
        use Format::{OpenMetrics, Text004};
        for (accept, want) in [
            (None, OpenMetrics),
            (Some("*/*"), OpenMetrics),
            (Some("text/plain"), Text004),
            (Some("text/plain; version=0.0.4; charset=utf-8"), Text004),
            (
                Some("application/openmetrics-text; version=1.0.0"),
                OpenMetrics,
            ),
            // What Prometheus sends by default: OpenMetrics first.
            (
                Some(
                    "application/openmetrics-text;version=1.0.0;q=0.5,\
                     application/openmetrics-text;version=0.0.1;q=0.4,\
                     text/plain;version=0.0.4;q=0.3,*/*;q=0.1",
                ),
                OpenMetrics,
            ),
            // A scraper configured for the classic format.
            (
                Some("text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5"),
                Text004,
            ),
            (Some("text/plain;q=0"), OpenMetrics),
        ] {
            assert_eq!(Format::negotiate(accept), want, "{accept:?}");
        }
    }

    #[test]
    fn classic_text_types_total_counters_as_counters() {
        let text = to_text_004(&render(&snapshot()));
        for line in [
            "# HELP bm2_process_restarts_total Total restart count.",
            "# TYPE bm2_process_restarts_total counter",
            r#"bm2_process_restarts_total{name="my-api-0",id="0"} 3"#,
            "# TYPE bm2_process_restarts_by_reason_total counter",
            "# TYPE bm2_system_network_transmit_bytes_total counter",
            "# TYPE bm2_process_cpu gauge",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        assert!(!text.contains("# EOF") && !text.contains("# TYPE bm2_process_restarts counter"));
    }
}
