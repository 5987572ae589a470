//! `bm2 logs --lines N` on large log files: answered from the end of the file in bounded
//! memory, off the daemon's request path, and capped.

mod common;

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::TestEnv;

/// Lines appended to the app's log: 100 bytes each, 50 MB in all.
const LINES: u64 = 500_000;

/// Most lines `bm2 logs` serves per stream and instance (see the README's logs section).
const CAP: u64 = 100_000;

/// Line `i` of the large log: its number, then padding to 100 bytes.
fn line(i: u64) -> String {
    format!("{i:09} {}", "x".repeat(89))
}

/// Starts an app that prints one line and idles, then appends [`LINES`] lines to its stdout log.
fn app_with_a_large_log(env: &TestEnv) -> PathBuf {
    env.script("quiet.sh", "echo started\nexec sleep 1000\n");
    env.ok(&["start", "quiet.sh"]);
    env.wait_out("quiet", "started\n");
    let out = PathBuf::from(env.describe("quiet")["out_log"].as_str().unwrap());
    let mut body = String::with_capacity(LINES as usize * 100);
    for i in 0..LINES {
        body.push_str(&line(i));
        body.push('\n');
    }
    let mut f = OpenOptions::new().append(true).open(&out).unwrap();
    f.write_all(body.as_bytes()).unwrap();
    out
}

/// The daemon's peak resident memory (`VmHWM`), in kB.
fn peak_kb(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

/// Runs `bm2 ls`, asserting that it answers within a second; returns how long it took.
fn timed_ls(env: &TestEnv) -> Duration {
    let start = Instant::now();
    env.ok(&["ls"]);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "`bm2 ls` took {took:?} while logs were being read"
    );
    took
}

#[test]
fn a_few_lines_of_a_large_log_come_back_at_once() {
    let env = TestEnv::new();
    app_with_a_large_log(&env);
    let start = Instant::now();
    let out = env.ok(&[
        "logs",
        "quiet",
        "--lines",
        "5",
        "--nostream",
        "--raw",
        "--out",
    ]);
    let took = start.elapsed();
    let expected: Vec<String> = (LINES - 5..LINES).map(line).collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), expected);
    assert!(took < Duration::from_secs(2), "5 lines took {took:?}");
}

#[test]
fn large_requests_keep_the_daemon_responsive_and_its_memory_bounded() {
    let env = TestEnv::new();
    app_with_a_large_log(&env);
    let daemon = env.daemon_pid().expect("daemon pid");
    let before = peak_kb(daemon);

    let lines = CAP.to_string();
    let args = [
        "logs",
        "quiet",
        "--lines",
        &lines,
        "--nostream",
        "--raw",
        "--out",
    ];
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let mut child = env
                .command(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn bm2 logs");
            let stdout = child.stdout.take().unwrap();
            let counter = std::thread::spawn(move || {
                let mut count = 0u64;
                let mut first = None;
                let mut last = None;
                for l in BufReader::new(stdout).lines() {
                    let l = l.unwrap();
                    count += 1;
                    if first.is_none() {
                        first = Some(l.clone());
                    }
                    last = Some(l);
                }
                (count, first, last)
            });
            (child, counter)
        })
        .collect();

    // The list answers while both requests are being served.
    let mut checks = 0;
    while checks == 0 || readers.iter().any(|(c, _)| common::alive(c.id())) && checks < 50 {
        timed_ls(&env);
        checks += 1;
    }

    for (mut child, counter) in readers {
        let status = child.wait().unwrap();
        assert!(status.success(), "bm2 logs failed: {status}");
        let (count, first, last) = counter.join().unwrap();
        assert_eq!(count, CAP, "lines printed");
        assert_eq!(first, Some(line(LINES - CAP)));
        assert_eq!(last, Some(line(LINES - 1)));
    }
    let grown_mb = peak_kb(daemon).saturating_sub(before) / 1024;
    assert!(
        grown_mb < 100,
        "the daemon's peak memory grew by {grown_mb} MB serving two tails of {CAP} lines"
    );
}

#[test]
fn more_lines_than_the_cap_are_refused_at_once_with_a_clear_message() {
    let env = TestEnv::new();
    app_with_a_large_log(&env);
    let args = ["logs", "quiet", "--lines", "1000000", "--nostream", "--out"];
    let requests: Vec<_> = (0..2)
        .map(|_| {
            env.command(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn bm2 logs")
        })
        .collect();
    timed_ls(&env);
    for child in requests {
        let start = Instant::now();
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success(), "1000000 lines were not refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("100000") && err.contains("1000000"),
            "unclear message: {err}"
        );
        assert!(start.elapsed() < Duration::from_secs(2));
    }
    timed_ls(&env);
}
