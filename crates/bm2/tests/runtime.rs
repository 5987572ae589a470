//! `bm2 runtime`: bm2 as a container's PID 1 (run under `unshare --pid`, so that it really is).

mod common;

use std::fs;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{DEADLINE, TestEnv, wait_for};

/// Whether PID namespaces can be made here (root and `unshare`); prints why not.
fn pid_namespaces() -> bool {
    let ok = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: `unshare --pid --fork --mount-proc` is not available (needs root)");
    }
    ok
}

/// `bm2 runtime ARGS` as PID 1 of a new PID namespace, its stdout and stderr in files.
struct Runtime {
    unshare: Child,
    out: std::path::PathBuf,
    err: std::path::PathBuf,
}

impl Runtime {
    fn start(env: &TestEnv, args: &[&str]) -> Runtime {
        Runtime::start_as(env, "runtime", args)
    }

    /// `bm2 SUB ARGS` (`runtime`, or `start … --no-daemon`) as PID 1.
    fn start_as(env: &TestEnv, sub: &str, args: &[&str]) -> Runtime {
        let out = env.path("runtime.out");
        let err = env.path("runtime.err");
        let unshare = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
            .arg(env!("CARGO_BIN_EXE_bm2"))
            .arg(sub)
            .args(args)
            .current_dir(env.dir.path())
            .env("BM2_HOME", env.home_path())
            .env("NO_COLOR", "1")
            .env("BM2_SAMPLE_INTERVAL_MS", "200")
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        Runtime { unshare, out, err }
    }

    /// bm2's pid as seen from here (it is 1 inside its namespace).
    fn pid(&self) -> u32 {
        let id = self.unshare.id();
        wait_for("bm2 under unshare", DEADLINE, || {
            fs::read_to_string(format!("/proc/{id}/task/{id}/children"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
    }

    fn stdout(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn wait_stdout(&self, needle: &str) {
        wait_for(&format!("{needle:?} on stdout"), DEADLINE, || {
            self.stdout().contains(needle).then_some(())
        });
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.unshare.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // SIGKILL to PID 1 of the namespace ends everything in it.
        if self.unshare.try_wait().ok().flatten().is_none() {
            let id = self.unshare.id();
            if let Some(pid) = fs::read_to_string(format!("/proc/{id}/task/{id}/children"))
                .ok()
                .and_then(|c| c.split_whitespace().next()?.parse::<u32>().ok())
            {
                common::kill_pid(pid, "KILL");
            }
            let _ = self.unshare.kill();
        }
        let _ = self.unshare.wait();
    }
}

const TALKER: &str = "#!/bin/sh\necho \"line out $1\"\necho \"line err $1\" >&2\nexec sleep 60\n";

#[test]
fn app_output_reaches_stdout_and_stderr_prefixed_raw_and_as_json() {
    if !pid_namespaces() {
        return;
    }
    for mode in ["", "--raw", "--json"] {
        let env = TestEnv::new();
        env.script("talk.sh", TALKER);
        let mut args = vec!["talk.sh", "--name", "talker"];
        if !mode.is_empty() {
            args.push(mode);
        }
        args.extend(["--", "x1"]);
        let rt = Runtime::start(&env, &args);
        rt.wait_stdout("line out x1");
        wait_for("stderr line", DEADLINE, || {
            rt.stderr().contains("line err x1").then_some(())
        });
        let out = rt.stdout();
        let line = out.lines().find(|l| l.contains("line out x1")).unwrap();
        match mode {
            "" => assert!(line.contains("talker") && line.contains('|'), "{line}"),
            "--raw" => assert_eq!(line, "line out x1"),
            _ => {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(v["app_name"], "talker");
                assert_eq!(v["type"], "out");
                assert_eq!(v["message"], "line out x1");
            }
        }
        assert!(
            !out.contains("line err"),
            "stderr lines stay off stdout: {out}"
        );
    }
}

#[test]
fn as_pid_1_it_reaps_orphans_answers_list_and_stops_gracefully_on_sigterm() {
    if !pid_namespaces() {
        return;
    }
    let env = TestEnv::new();
    // Each app leaves an orphan that exits at once, then stops slowly on SIGTERM.
    env.script(
        "slow.sh",
        "#!/bin/sh\nsh -c 'sleep 0.2 & exit 0'\ntrap 'sleep 0.5; echo stopped > \"$1\"; exit 0' TERM\necho up\nwhile :; do sleep 0.05; done\n",
    );
    let (a, b) = (env.path("a.done"), env.path("b.done"));
    let rt = Runtime::start(
        &env,
        &[
            "slow.sh",
            "--name",
            "a",
            "--kill-signal",
            "SIGTERM",
            "--kill-timeout",
            "3000",
            "--",
            a.to_str().unwrap(),
        ],
    );
    let mut rt = rt;
    rt.wait_stdout("up");
    let pid = rt.pid();
    // Another bm2 command talks to it as usual.
    env.ok(&[
        "start",
        "slow.sh",
        "--name",
        "b",
        "--kill-signal",
        "SIGTERM",
        "--kill-timeout",
        "3000",
        "--",
        b.to_str().unwrap(),
    ]);
    env.wait_status("a", "online");
    env.wait_status("b", "online");
    // The orphans (sleep 0.2) were reparented to bm2 as PID 1: none is left a zombie.
    std::thread::sleep(Duration::from_millis(1200));
    let zombies: Vec<String> = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter(|c| {
            fs::read_to_string(format!("/proc/{c}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
        })
        .map(str::to_string)
        .collect();
    assert!(zombies.is_empty(), "zombie children of PID 1: {zombies:?}");
    let t = Instant::now();
    common::kill_pid(pid, "TERM");
    let status = rt
        .wait_exit(Duration::from_secs(3))
        .expect("exits within the kill timeout");
    assert!(status.success(), "{status}\n{}", rt.stderr());
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(fs::read_to_string(&a).unwrap().trim(), "stopped");
    assert_eq!(fs::read_to_string(&b).unwrap().trim(), "stopped");
}

#[test]
fn every_app_stopped_for_good_exits_non_zero_unless_no_auto_exit() {
    if !pid_namespaces() {
        return;
    }
    let env = TestEnv::new();
    env.script("brief.sh", "#!/bin/sh\necho brief\nsleep 0.3\nexit 0\n");
    let mut rt = Runtime::start(&env, &["brief.sh", "--no-autorestart"]);
    let status = rt
        .wait_exit(DEADLINE)
        .expect("exits once the app has ended");
    assert!(!status.success(), "{status}");
    assert!(rt.stderr().contains("no app is running"), "{}", rt.stderr());
    drop(rt);

    let env = TestEnv::new();
    env.script("brief.sh", "#!/bin/sh\necho brief\nsleep 0.3\nexit 0\n");
    let mut rt = Runtime::start(&env, &["brief.sh", "--no-autorestart", "--no-auto-exit"]);
    rt.wait_stdout("brief");
    env.wait_status("brief", "stopped");
    assert!(
        rt.wait_exit(Duration::from_millis(1500)).is_none(),
        "stays up"
    );
    let pid = rt.pid();
    common::kill_pid(pid, "TERM");
    let status = rt.wait_exit(DEADLINE).expect("exits on SIGTERM");
    assert!(status.success(), "{status}");
}

#[test]
fn pm2_plus_flags_are_refused_with_a_reason() {
    let env = TestEnv::new();
    let err = env.fail(&["runtime", "app.js", "--deep-monitoring"]);
    assert!(err.contains("PM2 Plus"), "{err}");
}

#[test]
fn start_no_daemon_runs_in_the_foreground_as_the_runtime_does() {
    if !pid_namespaces() {
        return;
    }
    let env = TestEnv::new();
    env.script("talk.sh", TALKER);
    let mut rt = Runtime::start_as(
        &env,
        "start",
        &["talk.sh", "--name", "talker", "--no-daemon", "--", "x1"],
    );
    rt.wait_stdout("line out x1");
    env.wait_status("talker", "online");
    common::kill_pid(rt.pid(), "TERM");
    let status = rt.wait_exit(DEADLINE).expect("exits on SIGTERM");
    assert!(status.success(), "{status}");
}

#[test]
fn what_apps_print_while_they_stop_reaches_the_container_output() {
    if !pid_namespaces() {
        return;
    }
    let env = TestEnv::new();
    env.script(
        "polite.sh",
        "#!/bin/sh\ntrap 'sleep 0.2; echo goodbye from polite; exit 0' TERM\necho up\nwhile :; do sleep 0.05; done\n",
    );
    let mut rt = Runtime::start(&env, &["polite.sh", "--kill-signal", "SIGTERM"]);
    rt.wait_stdout("up");
    env.wait_status("polite", "online");
    common::kill_pid(rt.pid(), "TERM");
    let status = rt.wait_exit(DEADLINE).expect("exits on SIGTERM");
    assert!(status.success(), "{status}");
    assert!(
        rt.stdout().contains("goodbye from polite"),
        "stdout: {}\nstderr: {}",
        rt.stdout(),
        rt.stderr()
    );
}
