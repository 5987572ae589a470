//! Log rotation: by size (whole lines, nothing lost, retention cap), on a cron schedule, and
//! the daemon-wide defaults of `$BM2_HOME/config.toml`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::TestEnv;

const KIB: u64 = 1024;

/// A python app printing the numbers `0..count`, one per line (formatted with `fmt`), flushing
/// after each, then exiting.
fn counting_app(count: u64, fmt: &str) -> String {
    format!(
        "import sys\nfor i in range({count}):\n    sys.stdout.write('{fmt}\\n' % i)\n    sys.stdout.flush()\n"
    )
}

/// `<path>.<n>` (or `<path>.<n>.gz`).
fn rotated(path: &Path, n: u32, gz: bool) -> PathBuf {
    let suffix = if gz { ".gz" } else { "" };
    PathBuf::from(format!("{}.{n}{suffix}", path.display()))
}

/// Waits until `out` ends with `last_line` and no rotation is in progress (no parked
/// `*.rotating-*`, `*.compressing` or half-compressed `*.tmp` file in the logs directory).
fn wait_rotation_settled(env: &TestEnv, out: &Path, last_line: &str) {
    env.wait_for(
        &format!(
            "{last_line:?} at the end of {} and rotation settled",
            out.display()
        ),
        || {
            let done = fs::read_to_string(out).is_ok_and(|t| {
                t.ends_with(&format!("\n{last_line}\n")) || t == format!("{last_line}\n")
            });
            let busy = env.log_file_names().iter().any(|n| rotation_in_progress(n));
            (done && !busy).then_some(())
        },
    );
}

/// True for the names a rotation gives files until it is finished.
fn rotation_in_progress(name: &str) -> bool {
    name.contains(".rotating-") || has_extension(name, "tmp") || has_extension(name, "compressing")
}

fn has_extension(name: &str, ext: &str) -> bool {
    Path::new(name).extension().is_some_and(|e| e == ext)
}

fn gunzip(path: &Path) -> Vec<u8> {
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .output()
        .expect("run gzip");
    assert!(
        out.status.success(),
        "gzip -dc {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn size(path: &Path) -> u64 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len()
}

/// Rotated files `<path>.1`, `<path>.2`, ... that exist, in order (stops at the first gap).
fn rotated_files(path: &Path, gz: bool) -> Vec<PathBuf> {
    (1..=u32::MAX)
        .map(|n| rotated(path, n, gz))
        .take_while(|p| p.exists())
        .collect()
}

#[test]
fn size_rotation_keeps_every_line_exactly_once_in_order() {
    const LINES: u64 = 200_000;
    const MAX: u64 = 20 * KIB;
    let env = TestEnv::new();
    env.file("burst.py", &counting_app(LINES, "%d"));
    env.ok(&[
        "start",
        "burst.py",
        "--no-autorestart",
        "--log-max-size",
        "20K",
        "--log-retain",
        "1000",
        "--log-compress",
    ]);
    let out = env.logs_dir().join("burst-out.log");
    wait_rotation_settled(&env, &out, &(LINES - 1).to_string());
    env.wait_status("burst", "stopped");

    let archives = rotated_files(&out, true);
    assert!(archives.len() > 10, "only {} rotations", archives.len());
    let gz_count = env
        .log_file_names()
        .iter()
        .filter(|n| has_extension(n, "gz"))
        .count();
    assert_eq!(
        gz_count,
        archives.len(),
        "numbering has gaps: {:?}",
        env.log_file_names()
    );
    assert!(
        rotated_files(&out, false).is_empty(),
        "uncompressed rotated files left"
    );

    // Oldest first: .N.gz, ..., .1.gz, then the live file.
    let mut contents: Vec<(String, Vec<u8>)> = archives
        .iter()
        .rev()
        .map(|p| (p.display().to_string(), gunzip(p)))
        .collect();
    contents.push((out.display().to_string(), fs::read(&out).unwrap()));

    let mut next = 0u64;
    for (name, bytes) in &contents {
        assert!(
            bytes.len() as u64 <= MAX,
            "{name} holds {} bytes, more than the {MAX} limit",
            bytes.len()
        );
        assert!(
            bytes.is_empty() || bytes.ends_with(b"\n"),
            "{name} ends in the middle of a line"
        );
        for line in String::from_utf8_lossy(bytes).lines() {
            assert_eq!(
                line,
                next.to_string(),
                "in {name}: expected line {next}, found {line:?}"
            );
            next += 1;
        }
    }
    assert_eq!(next, LINES, "lines missing at the end");
}

#[test]
fn retention_caps_the_total_size_of_a_log() {
    const LINES: u64 = 100_000; // 10 bytes each: about 1 MB
    const MAX: u64 = 50 * KIB;
    const RETAIN: usize = 3;
    let env = TestEnv::new();
    env.file("flood.py", &counting_app(LINES, "%09d"));
    env.ok(&[
        "start",
        "flood.py",
        "--no-autorestart",
        "--log-max-size",
        "50K",
        "--log-retain",
        "3",
    ]);
    let out = env.logs_dir().join("flood-out.log");
    wait_rotation_settled(&env, &out, &format!("{:09}", LINES - 1));

    let kept = rotated_files(&out, false);
    assert_eq!(
        kept.len(),
        RETAIN,
        "rotated files: {:?}",
        env.log_file_names()
    );
    let flood_files: Vec<String> = env
        .log_file_names()
        .into_iter()
        .filter(|n| n.starts_with("flood-out.log"))
        .collect();
    assert_eq!(flood_files.len(), RETAIN + 1, "files: {flood_files:?}");
    let total: u64 = kept.iter().map(|p| size(p)).sum::<u64>() + size(&out);
    let line = 10;
    assert!(
        total <= MAX * (RETAIN as u64 + 1) + line,
        "the log takes {total} bytes, over {} x {MAX}",
        RETAIN + 1
    );
}

#[test]
fn a_bad_rotate_interval_is_refused_and_starts_nothing() {
    let env = TestEnv::new();
    env.script("app.sh", "exec sleep 1000\n");
    let err = env.fail(&["start", "app.sh", "--log-rotate-interval", "not cron"]);
    assert!(
        err.contains("not cron") && err.contains("cron"),
        "unclear message: {err}"
    );
    assert!(env.list().is_empty(), "started: {:?}", env.list());
    assert!(env.app_pids().is_empty());
}

#[test]
fn a_rotate_interval_rotates_on_schedule() {
    let env = TestEnv::new();
    env.script(
        "ticker.sh",
        "i=0\nwhile :; do i=$((i+1)); echo \"tick-$i\"; sleep 0.1; done\n",
    );
    // Six fields: every second.
    env.ok(&["start", "ticker.sh", "--log-rotate-interval", "* * * * * *"]);
    // Not the live file: on a loaded machine its first lines may be rotated out before a
    // test reads them.
    env.wait_status("ticker", "online");
    let out = env.logs_dir().join("ticker-out.log");
    let first = rotated(&out, 1, false);
    let text = common::wait_for(
        &format!("{} within a few seconds", first.display()),
        Duration::from_secs(10),
        || {
            fs::read_to_string(&first)
                .ok()
                .filter(|t| t.contains("tick-"))
        },
    );
    assert!(
        text.lines().all(|l| l.starts_with("tick-")),
        "rotated file: {text:?}"
    );
}

#[test]
fn config_file_sets_the_log_defaults_of_apps() {
    const LINES: u64 = 5_000; // 11 bytes each: about 55 KB
    let env = TestEnv::new();
    // Before the first command, so the daemon reads it when it starts.
    fs::write(
        env.home_path().join("config.toml"),
        "[logs]\nmax_size = \"10K\"\nretain = 2\n",
    )
    .unwrap();
    env.file("plain.py", &counting_app(LINES, "line-%05d"));
    env.ok(&["start", "plain.py", "--no-autorestart"]);
    let out = env.logs_dir().join("plain-out.log");
    wait_rotation_settled(&env, &out, &format!("line-{:05}", LINES - 1));

    let kept = rotated_files(&out, false);
    assert_eq!(kept.len(), 2, "files: {:?}", env.log_file_names());
    assert!(!rotated(&out, 3, false).exists());
    for p in kept.iter().chain([&out]) {
        assert!(
            size(p) <= 10 * KIB,
            "{} holds {} bytes",
            p.display(),
            size(p)
        );
    }
}

#[test]
fn a_bad_config_file_fails_the_first_command_naming_file_and_key() {
    let env = TestEnv::new();
    fs::write(
        env.home_path().join("config.toml"),
        "[logs]\nretain = \"many\"\n",
    )
    .unwrap();
    let err = env.fail(&["list"]);
    assert!(
        err.contains("config.toml") && err.contains("retain"),
        "message: {err}"
    );
}

/// Prints `ready`, waits for the file `go` in its work directory, then prints 300 lines of 40
/// bytes (about 12 KB) and idles.
const ON_SIGNAL: &str = "echo ready\nwhile [ ! -e go ]; do sleep 0.05; done\ni=0\nwhile [ $i -lt 300 ]; do printf 'line-%05d-xxxxxxxxxxxxxxxxxxxxxxxxxxxx\\n' $i; i=$((i+1)); done\nexec sleep 1000\n";

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Rotated files keep the mode of the live file they were: the oldest one was a live file
/// chmod-ed to 0600, the others were live files as the daemon creates them.
fn rotated_files_keep_the_live_files_mode(compress: bool) {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    env.script("signal.sh", ON_SIGNAL);
    let mut args = vec!["start", "signal.sh", "--log-max-size", "4K"];
    if compress {
        args.push("--log-compress");
    }
    env.ok(&args);
    env.wait_out("signal", "ready\n");
    let out = env.logs_dir().join("signal-out.log");
    let created = mode(&out);
    assert_eq!(
        created & 0o007,
        0,
        "live log readable by others: {created:o}"
    );
    fs::set_permissions(&out, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(env.path("go"), "").unwrap();
    wait_rotation_settled(&env, &out, "line-00299-xxxxxxxxxxxxxxxxxxxxxxxxxxxx");

    let rotated = rotated_files(&out, compress);
    assert!(rotated.len() >= 2, "files: {:?}", env.log_file_names());
    let (oldest, newer) = rotated.split_last().unwrap();
    assert_eq!(
        mode(oldest),
        0o600,
        "{} does not keep its live file's mode",
        oldest.display()
    );
    for p in newer {
        assert_eq!(
            mode(p),
            created,
            "{} does not keep its live file's mode",
            p.display()
        );
    }
    assert_eq!(mode(&out), created);
}

#[test]
fn compressed_rotated_files_keep_the_live_files_mode() {
    rotated_files_keep_the_live_files_mode(true);
}

#[test]
fn rotated_files_keep_the_live_files_mode_uncompressed() {
    rotated_files_keep_the_live_files_mode(false);
}

fn gzip(text: &str) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run gzip");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
fn what_an_interrupted_rotation_left_is_finished_when_the_log_is_opened() {
    let env = TestEnv::new();
    let dir = env.logs_dir();
    fs::create_dir_all(&dir).unwrap();
    let out = dir.join("left-out.log");
    let named = |suffix: &str| PathBuf::from(format!("{}{suffix}", out.display()));
    fs::write(&out, "live-before\n").unwrap();
    // A completed archive, a compression cut short (its source and a partial .gz), and files
    // parked by an earlier daemon (current naming, and that of older versions).
    fs::write(named(".2.gz"), gzip("archived\n")).unwrap();
    fs::write(named(".1.compressing"), "was-compressing\n").unwrap();
    fs::write(named(".1.gz.tmp"), b"\x1f\x8b\x08\x00partial").unwrap();
    fs::write(named(".rotating-2"), "parked-by-an-older-version\n").unwrap();
    fs::write(named(".rotating-1700000000000-3"), "parked-newest\n").unwrap();

    env.script("left.sh", "echo started\nexec sleep 1000\n");
    env.ok(&["start", "left.sh", "--log-compress"]);
    wait_rotation_settled(&env, &out, "started");

    let names: Vec<String> = env
        .log_file_names()
        .into_iter()
        .filter(|n| n.starts_with("left-out.log"))
        .collect();
    assert_eq!(
        names,
        [
            "left-out.log",
            "left-out.log.1.gz",
            "left-out.log.2.gz",
            "left-out.log.3.gz",
            "left-out.log.4.gz"
        ]
    );
    let text = |n| String::from_utf8(gunzip(&rotated(&out, n, true))).unwrap();
    assert_eq!(text(1), "parked-newest\n");
    assert_eq!(text(2), "parked-by-an-older-version\n");
    assert_eq!(text(3), "was-compressing\n");
    assert_eq!(text(4), "archived\n");
    assert_eq!(fs::read_to_string(&out).unwrap(), "live-before\nstarted\n");
}
