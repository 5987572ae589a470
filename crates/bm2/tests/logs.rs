//! App logs: where output goes, how lines are formatted, what `bm2 logs`, `flush` and
//! `reloadLogs` do, and how odd output (huge lines, no final newline, a full disk) is kept.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::TestEnv;
use serde_json::Value;

/// Prints one line to each stream, then stays up.
const BOTH_STREAMS: &str = "echo \"to stdout\"\necho \"to stderr\" >&2\nexec sleep 1000\n";

/// Prints `out-1`..`out-10` to stdout and `err-1`..`err-10` to stderr, then stays up.
const TALKER: &str = "for i in 1 2 3 4 5 6 7 8 9 10; do echo \"out-$i\"; echo \"err-$i\" >&2; done\nexec sleep 1000\n";

/// Prints `tick-<n>` ten times a second.
const TICKER: &str = "i=0\nwhile :; do i=$((i+1)); echo \"tick-$i\"; sleep 0.1; done\n";

/// True when `text` has the shape of `pattern`: `9` stands for a digit, `±` for `+` or `-`,
/// anything else for itself.
fn has_shape(text: &str, pattern: &str) -> bool {
    text.chars().count() == pattern.chars().count()
        && text.chars().zip(pattern.chars()).all(|(c, p)| match p {
            '9' => c.is_ascii_digit(),
            '±' => c == '+' || c == '-',
            _ => c == p,
        })
}

/// Waits until the file at `path` contains `needle`; returns its text.
fn wait_file(env: &TestEnv, path: &Path, needle: &str) -> String {
    env.wait_for(&format!("{needle:?} in {}", path.display()), || {
        let text = fs::read_to_string(path).unwrap_or_default();
        text.contains(needle).then_some(text)
    })
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|e| panic!("canonicalize {}: {e}", path.display()))
}

/// The numbers of lines that each hold one number, in order.
fn numbers(text: &str) -> Vec<u64> {
    text.lines()
        .map(|l| {
            l.parse()
                .unwrap_or_else(|_| panic!("line {l:?} is not a number"))
        })
        .collect()
}

/// Asserts that `nums` counts up by one from its first number.
fn assert_consecutive(nums: &[u64]) {
    for pair in nums.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "{} follows {}: lines were lost, repeated or reordered",
            pair[1],
            pair[0]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Where output goes

#[test]
fn default_files_are_named_after_the_app_and_its_id() {
    let env = TestEnv::new();
    env.script("both.sh", BOTH_STREAMS);
    env.ok(&["start", "both.sh"]);
    env.wait_status("both", "online");
    let out = env.logs_dir().join("both-out.log");
    let err = env.logs_dir().join("both-error.log");
    assert_eq!(wait_file(&env, &out, "to stdout"), "to stdout\n");
    assert_eq!(wait_file(&env, &err, "to stderr"), "to stderr\n");
    let d = env.describe("both");
    assert_eq!(d["out_log"], out.display().to_string());
    assert_eq!(d["err_log"], err.display().to_string());
}

#[test]
fn merged_instances_share_one_file_without_id() {
    let env = TestEnv::new();
    env.script(
        "twins.sh",
        "echo \"instance $NODE_APP_INSTANCE\"\nexec sleep 1000\n",
    );
    env.ok(&["start", "twins.sh", "-i", "2", "--merge-logs"]);
    let merged = env.logs_dir().join("twins-out.log");
    let log = env.wait_for("both instances in the merged log", || {
        let log = fs::read_to_string(&merged).unwrap_or_default();
        (log.contains("instance 0\n") && log.contains("instance 1\n")).then_some(log)
    });
    assert_eq!(log.lines().count(), 2, "merged log: {log:?}");
    let names = env.log_file_names();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("twins-0") || n.starts_with("twins-1")),
        "per-instance log files exist: {names:?}"
    );
    for p in env.list() {
        let d = env.describe(&p["id"].to_string());
        assert_eq!(d["out_log"], merged.display().to_string());
    }
}

#[test]
fn output_and_error_flags_name_files_relative_to_the_work_dir() {
    let env = TestEnv::new();
    env.script("both.sh", BOTH_STREAMS);
    env.ok(&["start", "both.sh", "-o", "out.txt", "-e", "err.txt"]);
    assert_eq!(
        wait_file(&env, &env.path("out.txt"), "to stdout"),
        "to stdout\n"
    );
    assert_eq!(
        wait_file(&env, &env.path("err.txt"), "to stderr"),
        "to stderr\n"
    );
    let d = env.describe("both");
    assert_eq!(
        canonical(Path::new(d["out_log"].as_str().unwrap())),
        canonical(&env.path("out.txt"))
    );
    assert_eq!(
        canonical(Path::new(d["err_log"].as_str().unwrap())),
        canonical(&env.path("err.txt"))
    );
    let names = env.log_file_names();
    assert!(
        !names.iter().any(|n| n.starts_with("both")),
        "default log files exist too: {names:?}"
    );
}

#[test]
fn log_flag_writes_both_streams_to_one_file() {
    let env = TestEnv::new();
    env.script("both.sh", BOTH_STREAMS);
    env.ok(&["start", "both.sh", "-l", "all.txt"]);
    let all = env.wait_for("both streams in all.txt", || {
        let text = fs::read_to_string(env.path("all.txt")).unwrap_or_default();
        (text.contains("to stdout\n") && text.contains("to stderr\n")).then_some(text)
    });
    assert_eq!(all.lines().count(), 2, "all.txt: {all:?}");
    let d = env.describe("both");
    assert_eq!(
        canonical(Path::new(d["log_file"].as_str().unwrap())),
        canonical(&env.path("all.txt"))
    );
}

#[test]
fn output_to_dev_null_writes_no_stdout_file() {
    let env = TestEnv::new();
    env.script("both.sh", BOTH_STREAMS);
    env.ok(&["start", "both.sh", "-o", "/dev/null"]);
    wait_file(&env, &env.logs_dir().join("both-error.log"), "to stderr");
    let d = env.describe("both");
    assert_eq!(d["out_log"], "/dev/null");
    let names = env.log_file_names();
    assert_eq!(names, vec!["both-error.log".to_string()]);
}

#[test]
fn disable_logs_writes_no_files() {
    let env = TestEnv::new();
    env.script(
        "quiet.sh",
        "echo \"to stdout\"\necho \"to stderr\" >&2\necho printed > printed\nexec sleep 1000\n",
    );
    env.ok(&["start", "quiet.sh", "--disable-logs"]);
    env.wait_status("quiet", "online");
    env.wait_marker("printed");
    let names = env.log_file_names();
    assert!(
        !names.iter().any(|n| n.starts_with("quiet")),
        "log files written: {names:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Line formats

#[test]
fn time_flag_prefixes_each_line_with_a_timestamp() {
    let env = TestEnv::new();
    env.script("stamped.sh", "echo hello\necho world\nexec sleep 1000\n");
    env.ok(&["start", "stamped.sh", "--time"]);
    let log = env.wait_out("stamped", "world");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "log: {log:?}");
    assert!(
        has_shape(lines[0], "9999-99-99T99:99:99: hello"),
        "line: {:?}",
        lines[0]
    );
    assert!(
        has_shape(lines[1], "9999-99-99T99:99:99: world"),
        "line: {:?}",
        lines[1]
    );
}

#[test]
fn log_date_format_sets_the_timestamp_format() {
    let env = TestEnv::new();
    env.script("stamped.sh", "echo hello\nexec sleep 1000\n");
    env.ok(&[
        "start",
        "stamped.sh",
        "--log-date-format",
        "YYYY-MM-DD HH:mm:ss Z",
    ]);
    let log = env.wait_out("stamped", "hello");
    let line = log.lines().next().unwrap();
    assert!(
        has_shape(line, "9999-99-99 99:99:99 ±99:99: hello"),
        "line: {line:?}"
    );
}

#[test]
fn json_log_type_writes_one_object_per_line() {
    let env = TestEnv::new();
    env.script("both.sh", BOTH_STREAMS);
    env.ok(&["start", "both.sh", "--log-type", "json"]);
    let out = env.wait_out("both", "to stdout");
    let err = wait_file(&env, &env.logs_dir().join("both-error.log"), "to stderr");
    for (text, message, kind) in [(&out, "to stdout", "out"), (&err, "to stderr", "err")] {
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "log: {text:?}");
        let v: Value = serde_json::from_str(lines[0])
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", lines[0]));
        assert_eq!(v["message"], message);
        assert_eq!(v["type"], kind);
        assert_eq!(v["app_name"], "both");
        assert_eq!(v["process_id"], 0);
        let stamp = v["timestamp"].as_str().expect("timestamp is a string");
        assert!(
            stamp.len() >= 19 && has_shape(&stamp[..19], "9999-99-99T99:99:99"),
            "timestamp: {stamp:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// flush and reloadLogs

/// Starts apps `first` and `second`, each printing a line to both streams; waits for the lines.
fn two_printing_apps(env: &TestEnv) {
    env.script("first.sh", BOTH_STREAMS);
    env.script("second.sh", BOTH_STREAMS);
    env.ok(&["start", "first.sh"]);
    env.ok(&["start", "second.sh"]);
    for name in ["first", "second"] {
        wait_file(
            env,
            &env.logs_dir().join(format!("{name}-out.log")),
            "to stdout",
        );
        wait_file(
            env,
            &env.logs_dir().join(format!("{name}-error.log")),
            "to stderr",
        );
    }
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len()
}

#[test]
fn flush_empties_every_log_file() {
    let env = TestEnv::new();
    two_printing_apps(&env);
    env.ok(&["flush"]);
    for file in [
        "first-out.log",
        "first-error.log",
        "second-out.log",
        "second-error.log",
    ] {
        assert_eq!(
            file_len(&env.logs_dir().join(file)),
            0,
            "{file} not emptied"
        );
    }
}

#[test]
fn flush_with_a_name_empties_only_that_apps_files() {
    let env = TestEnv::new();
    two_printing_apps(&env);
    env.ok(&["flush", "first"]);
    for file in ["first-out.log", "first-error.log"] {
        assert_eq!(
            file_len(&env.logs_dir().join(file)),
            0,
            "{file} not emptied"
        );
    }
    assert_eq!(read(&env.logs_dir().join("second-out.log")), "to stdout\n");
    assert_eq!(
        read(&env.logs_dir().join("second-error.log")),
        "to stderr\n"
    );
}

#[test]
fn reload_logs_reopens_a_moved_file_without_losing_lines() {
    let env = TestEnv::new();
    env.script(
        "counter.sh",
        "i=0\nwhile :; do echo $i; i=$((i+1)); sleep 0.01; done\n",
    );
    env.ok(&["start", "counter.sh"]);
    let out = env.logs_dir().join("counter-out.log");
    wait_file(&env, &out, "\n20\n");
    let moved = env.path("moved.log");
    fs::rename(&out, &moved).unwrap();
    env.ok(&["reloadLogs"]);
    wait_file(&env, &out, "\n");
    env.wait_for("20 lines in the reopened log", || {
        (read(&out).lines().count() >= 20).then_some(())
    });
    env.ok(&["stop", "counter"]);
    env.wait_status("counter", "stopped");

    let old = numbers(&read(&moved));
    let new = numbers(&read(&out));
    assert!(old.len() > 20, "moved log: {old:?}");
    assert!(new.len() >= 20, "new log: {new:?}");
    assert_eq!(old[0], 0);
    let all: Vec<u64> = old.iter().chain(&new).copied().collect();
    assert_consecutive(&all);
}

// ---------------------------------------------------------------------------------------------
// bm2 logs

/// Starts `talker` and waits until all its lines are in its files.
fn talker(env: &TestEnv) {
    env.script("talker.sh", TALKER);
    env.ok(&["start", "talker.sh"]);
    env.wait_out("talker", "out-10\n");
    wait_file(env, &env.logs_dir().join("talker-error.log"), "err-10\n");
}

/// The lines of `bm2 logs` output that are not `[bm2]` headers.
fn shown(output: &str) -> Vec<String> {
    output
        .lines()
        .filter(|l| !l.starts_with("[bm2]"))
        .map(str::to_string)
        .collect()
}

/// Splits `<id>|<name> | <line>` into its parts.
fn prefixed(line: &str) -> (String, String, String) {
    let mut parts = line.splitn(3, '|');
    let (Some(id), Some(name), Some(text)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("line {line:?} has no <id>|<name>| prefix");
    };
    (
        id.to_string(),
        name.trim().to_string(),
        text.strip_prefix(' ').unwrap_or(text).to_string(),
    )
}

fn expected(stream: &str) -> Vec<String> {
    (6..=10).map(|i| format!("{stream}-{i}")).collect()
}

#[test]
fn logs_nostream_prints_the_last_lines_of_both_streams_with_prefixes() {
    let env = TestEnv::new();
    talker(&env);
    let output = env.ok(&["logs", "talker", "--nostream", "--lines", "5"]);
    let lines = shown(&output);
    let parts: Vec<_> = lines.iter().map(|l| prefixed(l)).collect();
    assert!(
        parts
            .iter()
            .all(|(id, name, _)| id == "0" && name == "talker"),
        "output: {output}"
    );
    let texts: Vec<String> = parts.into_iter().map(|(_, _, t)| t).collect();
    let want: Vec<String> = expected("out").into_iter().chain(expected("err")).collect();
    assert_eq!(texts, want, "output: {output}");
}

#[test]
fn logs_err_shows_only_stderr() {
    let env = TestEnv::new();
    talker(&env);
    let output = env.ok(&["logs", "talker", "--nostream", "--lines", "5", "--err"]);
    let texts: Vec<String> = shown(&output).iter().map(|l| prefixed(l).2).collect();
    assert_eq!(texts, expected("err"), "output: {output}");
}

#[test]
fn logs_out_shows_only_stdout() {
    let env = TestEnv::new();
    talker(&env);
    let output = env.ok(&["logs", "talker", "--nostream", "--lines", "5", "--out"]);
    let texts: Vec<String> = shown(&output).iter().map(|l| prefixed(l).2).collect();
    assert_eq!(texts, expected("out"), "output: {output}");
}

#[test]
fn logs_raw_prints_the_lines_alone() {
    let env = TestEnv::new();
    talker(&env);
    let output = env.ok(&["logs", "talker", "--nostream", "--lines", "5", "--raw"]);
    let lines: Vec<String> = output.lines().map(str::to_string).collect();
    let want: Vec<String> = expected("out").into_iter().chain(expected("err")).collect();
    assert_eq!(lines, want, "output: {output}");
}

#[test]
fn logs_json_prints_one_pm2_object_per_line() {
    let env = TestEnv::new();
    talker(&env);
    let output = env.ok(&["logs", "talker", "--nostream", "--lines", "5", "--json"]);
    let events: Vec<Value> = output
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    let want: Vec<(String, String)> = expected("out")
        .into_iter()
        .map(|l| ("out".to_string(), l))
        .chain(expected("err").into_iter().map(|l| ("err".to_string(), l)))
        .collect();
    let got: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default().to_string(),
                e["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(got, want, "output: {output}");
    for (e, line) in events.iter().zip(output.lines()) {
        // PM2's keys, in PM2's order.
        let keys: Vec<&String> = e.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 5, "{e}");
        assert!(line.starts_with(r#"{"message":"#), "{line}");
        assert!(
            line.ends_with(r#","process_id":0,"app_name":"talker"}"#),
            "{line}"
        );
        let ts = e["timestamp"].as_str().unwrap();
        assert!(
            ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
            "{ts}"
        );
    }
}

#[test]
fn logs_format_prints_key_value_lines() {
    let env = TestEnv::new();
    talker(&env);
    let output = env.ok(&["logs", "talker", "--nostream", "--lines", "5", "--format"]);
    let want: Vec<String> = expected("out")
        .into_iter()
        .map(|l| format!("app=talker id=0 type=out message={l}"))
        .chain(
            expected("err")
                .into_iter()
                .map(|l| format!("app=talker id=0 type=error message={l}")),
        )
        .collect();
    let got: Vec<String> = output
        .lines()
        .map(|l| {
            let (ts, rest) = l.split_once(' ').unwrap();
            assert!(
                ts.starts_with("timestamp=") && ts.len() == "timestamp=".len() + 24,
                "{l}"
            );
            rest.to_string()
        })
        .collect();
    assert_eq!(got, want, "output: {output}");
}

#[test]
fn logs_of_an_empty_stream_show_no_line() {
    let env = TestEnv::new();
    env.script("only_out.sh", "echo only-stdout\nexec sleep 1000\n");
    env.ok(&["start", "only_out.sh"]);
    env.wait_out("only_out", "only-stdout\n");
    let output = env.ok(&["logs", "only_out", "--nostream", "--raw"]);
    assert_eq!(output, "only-stdout\n");
}

#[test]
fn logs_follow_shows_new_lines_as_they_are_written() {
    let env = TestEnv::new();
    env.script("ticker.sh", TICKER);
    env.ok(&["start", "ticker.sh"]);
    env.wait_status("ticker", "online");
    let follower = env.follow(&["logs", "ticker", "--raw", "--lines", "0"]);
    let tick = |l: &str| l.strip_prefix("tick-").and_then(|n| n.parse::<u64>().ok());
    let first = follower
        .read_until("a line from bm2 logs", |_| true)
        .remove(0);
    let second = follower.read_until("a second line", |_| true).remove(0);
    // Raw lines: exactly what the app printed, in order.
    assert!(tick(&first).is_some(), "line: {first:?}");
    assert!(tick(&second) > tick(&first), "{first:?} then {second:?}");
}

#[test]
fn logs_follow_shows_blank_lines() {
    let env = TestEnv::new();
    env.script(
        "gaps.sh",
        "while :; do printf 'above\\n\\nbelow\\n'; sleep 0.1; done\n",
    );
    env.ok(&["start", "gaps.sh"]);
    // The file keeps the blank line.
    env.wait_out("gaps", "above\n\nbelow\n");
    let follower = env.follow(&["logs", "gaps", "--raw", "--lines", "0"]);
    follower.read_until("a line \"above\"", |l| l == "above");
    let next: Vec<String> = (0..2)
        .map(|_| follower.read_until("the next line", |_| true).remove(0))
        .collect();
    assert_eq!(
        next,
        ["", "below"],
        "the app printed above, a blank line, below"
    );
}

#[test]
fn logs_follow_without_target_shows_apps_started_later() {
    let env = TestEnv::new();
    env.script("early.sh", &TICKER.replace("tick-", "early-tick-"));
    env.script("late.sh", &TICKER.replace("tick-", "late-tick-"));
    env.ok(&["start", "early.sh"]);
    env.wait_status("early", "online");
    let follower = env.follow(&["logs", "--raw", "--lines", "0"]);
    // Once a line of `early` is shown, the follower is attached; `late` starts after that.
    follower.read_until("a line of early", |l| l.starts_with("early-tick-"));
    env.ok(&["start", "late.sh"]);
    follower.read_until("a line of late", |l| l.starts_with("late-tick-"));
}

#[test]
fn logs_follow_has_no_duplicates_or_gaps_between_history_and_live_lines() {
    let env = TestEnv::new();
    env.file(
        "numbers.py",
        "import itertools, time\nfor i in itertools.count():\n    print(i, flush=True)\n    time.sleep(0.005)\n",
    );
    env.ok(&["start", "numbers.py"]);
    env.wait_out("numbers", "\n100\n");
    let follower = env.follow(&["logs", "numbers", "--raw", "--lines", "1000"]);
    let lines = follower.lines_for(Duration::from_secs(2));
    drop(follower);
    let nums: Vec<u64> = lines
        .iter()
        .map(|l| {
            l.parse()
                .unwrap_or_else(|_| panic!("line {l:?} is not a number; lines: {lines:?}"))
        })
        .collect();
    assert!(nums.len() > 100, "too few lines followed: {nums:?}");
    assert_consecutive(&nums);
}

// ---------------------------------------------------------------------------------------------
// Odd output

#[test]
fn a_line_longer_than_1_mib_is_cut_into_marked_parts() {
    const MIB: usize = 1 << 20;
    let env = TestEnv::new();
    env.file(
        "long.py",
        "import sys\nsys.stdout.write('x' * (10 * 1024 * 1024))\nsys.stdout.flush()\n",
    );
    // Large enough a limit that the file does not rotate.
    env.ok(&[
        "start",
        "long.py",
        "--no-autorestart",
        "--log-max-size",
        "100M",
    ]);
    let out = env.logs_dir().join("long-out.log");
    let log = env.wait_for("the last part of the long line", || {
        let bytes = fs::read(&out).unwrap_or_default();
        bytes
            .ends_with(b"x\n")
            .then(|| String::from_utf8(bytes).unwrap())
    });
    let lines: Vec<&str> = log.lines().collect();
    let xs = |l: &str| l.bytes().take_while(|b| *b == b'x').count();
    assert_eq!(lines.iter().map(|l| xs(l)).sum::<usize>(), 10 * MIB);
    assert_eq!(
        lines.len(),
        10,
        "parts: {:?}",
        lines.iter().map(|l| xs(l)).collect::<Vec<_>>()
    );
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(xs(line), MIB, "part {i} holds {} x's", xs(line));
        let marked = line[MIB..].contains("[bm2: line longer than 1 MiB");
        if i + 1 < lines.len() {
            assert!(marked, "part {i} is not marked: {:?}", &line[MIB..]);
        } else {
            assert_eq!(line.len(), MIB, "last part: {:?}", &line[MIB..]);
        }
    }
}

#[test]
fn output_without_final_newline_is_written_as_a_line() {
    let env = TestEnv::new();
    env.script("last.sh", "printf 'last words'\n");
    env.ok(&["start", "last.sh", "--no-autorestart"]);
    let out = env.logs_dir().join("last-out.log");
    let log = wait_file(&env, &out, "last words");
    assert_eq!(log, "last words\n");
}

#[test]
fn a_full_disk_drops_log_bytes_but_the_app_keeps_running() {
    let env = TestEnv::new();
    env.script(
        "chatty.sh",
        "while :; do echo \"nowhere to go\"; sleep 0.05; done\n",
    );
    env.ok(&["start", "chatty.sh", "-o", "/dev/full"]);
    let pid = env.wait_status("chatty", "online")["pid"].as_u64().unwrap();
    let dropped = env.wait_for("log_dropped_bytes > 0", || {
        let n = env.describe("chatty")["log_dropped_bytes"]
            .as_u64()
            .unwrap();
        (n > 0).then_some(n)
    });
    assert!(dropped > 0);
    let p = env.proc("chatty");
    assert_eq!(p["status"], "online");
    assert_eq!(p["pid"], pid);
    assert_eq!(p["restarts"], 0);
    assert_eq!(env.describe("chatty")["out_log"], "/dev/full");
}
