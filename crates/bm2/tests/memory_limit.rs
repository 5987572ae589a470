//! `--max-memory-restart`: an app whose memory grows past the limit is restarted.

mod common;

use common::{TestEnv, alive};

/// First run: grows by 10 MB every 100 ms up to 300 MB, logging "<ms since epoch> <rss bytes>"
/// after each step, then sleeps. Later runs just sleep.
const GROW: &str = r#"import os, time
if os.path.exists("grown"):
    while True:
        time.sleep(1)
open("grown", "w").close()
page = os.sysconf("SC_PAGE_SIZE")
chunks = []
while len(chunks) < 30:
    chunks.append(b"\x01" * (10 << 20))
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * page
    with open("growth.log", "a") as f:
        f.write(f"{time.time_ns() // 1_000_000} {rss}\n")
    time.sleep(0.1)
while True:
    time.sleep(1)
"#;

const LIMIT: u64 = 60 << 20;

#[test]
fn app_over_max_memory_restart_is_restarted() {
    let env = TestEnv::new();
    env.script("grow.py", GROW);
    env.ok(&[
        "start",
        "grow.py",
        "--name",
        "grow",
        "--max-memory-restart",
        "60M",
    ]);
    let first = env.wait_status("grow", "online")["pid"].as_u64().unwrap();
    let second = env.wait_new_pid("grow", first);
    assert!(alive(second as u32));

    let d = env.describe("grow");
    assert_eq!(d["restarts"], 1, "{d}");
    let reason = d["status_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("memory") && reason.contains("max_memory_restart"),
        "status_reason: {reason:?}"
    );

    // Restarted within a few seconds of crossing the limit (when the app logged the crossing
    // before being stopped; otherwise it was stopped within one growth step of it).
    let log = std::fs::read_to_string(env.path("growth.log")).unwrap();
    let steps: Vec<(u64, u64)> = log
        .lines()
        .filter_map(|l| {
            let (t, rss) = l.split_once(' ')?;
            Some((t.parse().ok()?, rss.parse().ok()?))
        })
        .collect();
    assert!(!steps.is_empty(), "the app logged no growth");
    let max_rss = steps.iter().map(|s| s.1).max().unwrap();
    assert!(
        max_rss < 300 << 20,
        "the app reached {max_rss} bytes before being restarted"
    );
    let exited_at = d["last_exit"]["at_ms"].as_u64().unwrap();
    if let Some((crossed_at, _)) = steps.iter().find(|s| s.1 > LIMIT) {
        let late = exited_at.saturating_sub(*crossed_at);
        assert!(late < 3000, "restarted {late} ms after crossing the limit");
    }
}

#[test]
fn memory_of_child_processes_counts_toward_the_limit() {
    let env = TestEnv::new();
    env.script("grow.py", GROW);
    // The main process is a small shell; the memory is in its child.
    env.script("parent.sh", "python3 grow.py\nexec sleep 1000\n");
    env.ok(&[
        "start",
        "parent.sh",
        "--name",
        "parent",
        "--max-memory-restart",
        "60M",
    ]);
    let first = env.wait_status("parent", "online")["pid"].as_u64().unwrap();
    let second = env.wait_new_pid("parent", first);
    assert!(alive(second as u32));
    let d = env.describe("parent");
    assert_eq!(d["restarts"], 1, "{d}");
    let reason = d["status_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("max_memory_restart"),
        "status_reason: {reason:?}"
    );
}
