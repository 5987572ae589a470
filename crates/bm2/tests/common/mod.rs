//! Test harness: a real `bm2` binary and daemon in a temporary `BM2_HOME` per test.
#![allow(dead_code)]

pub mod bun;
pub mod load;
pub mod sshd;
pub mod tmux;
pub mod tools;
pub mod unix_http;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Python main that double-forks a daemonized grandchild (setsid, parent gone, so it is
/// reparented away from the app's tree), writes its pid to `grandchild.pid`, and keeps running.
pub const DOUBLE_FORK: &str = r#"import os, time
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    with open("grandchild.pid.tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename("grandchild.pid.tmp", "grandchild.pid")
    while True:
        time.sleep(1)
os.waitpid(pid, 0)
while True:
    time.sleep(0.2)
"#;

/// Default deadline for conditions to become true.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// One isolated bm2 installation: its home, a work directory for scripts, and its daemon.
pub struct TestEnv {
    pub home: tempfile::TempDir,
    pub dir: tempfile::TempDir,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        TestEnv {
            home: tempfile::Builder::new()
                .prefix("bm2-home-")
                .tempdir()
                .unwrap(),
            dir: tempfile::Builder::new()
                .prefix("bm2-work-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn home_path(&self) -> &Path {
        self.home.path()
    }

    /// A `bm2` command in this environment (cwd = the work directory, no colours).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bm2"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("BM2_HOME", self.home.path())
            .env("NO_COLOR", "1")
            .env("BM2_SAMPLE_INTERVAL_MS", "200");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run bm2")
    }

    /// Runs bm2, asserting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "bm2 {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs bm2, asserting failure; returns stderr.
    pub fn fail(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "bm2 {args:?} should have failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Writes an executable file in the work directory.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::write(&path, body).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// A path inside the work directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `bm2 list --json`.
    pub fn list(&self) -> Vec<Value> {
        serde_json::from_str(&self.ok(&["list", "--json"])).unwrap()
    }

    /// `bm2 jlist`.
    pub fn jlist(&self) -> Vec<Value> {
        serde_json::from_str(&self.ok(&["jlist"])).unwrap()
    }

    /// The list row of the instance named `name`.
    pub fn proc(&self, name: &str) -> Value {
        self.list()
            .into_iter()
            .find(|p| p["instance_name"] == name)
            .unwrap_or_else(|| panic!("no process {name} in {:?}", self.list()))
    }

    /// The list rows of the app `app` (all its instances), by instance index.
    pub fn app_rows(&self, app: &str) -> Vec<Value> {
        let mut rows: Vec<Value> = self
            .list()
            .into_iter()
            .filter(|p| p["name"] == app)
            .collect();
        rows.sort_by_key(|p| p["instance"].as_u64());
        rows
    }

    /// `bm2 describe <target> --json`, first match.
    pub fn describe(&self, target: &str) -> Value {
        let v: Vec<Value> =
            serde_json::from_str(&self.ok(&["describe", target, "--json"])).unwrap();
        v.into_iter().next().unwrap()
    }

    /// Polls until `f` returns Some, or panics after `DEADLINE` describing `what`.
    #[allow(clippy::unused_self)]
    pub fn wait_for<T>(&self, what: &str, f: impl FnMut() -> Option<T>) -> T {
        wait_for(what, DEADLINE, f)
    }

    /// Waits until the instance `name` has `status`; returns its row.
    pub fn wait_status(&self, name: &str, status: &str) -> Value {
        self.wait_for(&format!("{name} to be {status}"), || {
            let p = self.proc(name);
            (p["status"] == status).then_some(p)
        })
    }

    /// Starts `sleep 1000` as the app `name` and waits until it is online; returns its pid.
    pub fn start_sleeper(&self, name: &str) -> u64 {
        self.ok(&sleeper_args(name));
        self.wait_status(name, "online")["pid"].as_u64().unwrap()
    }

    /// Waits until `name` is online with a pid other than `old`; returns the new pid.
    pub fn wait_new_pid(&self, name: &str, old: u64) -> u64 {
        self.wait_for(&format!("{name} to run with a new pid"), || {
            let p = self.proc(name);
            let pid = p["pid"].as_u64()?;
            (p["status"] == "online" && pid != old).then_some(pid)
        })
    }

    pub fn daemon_pid(&self) -> Option<u32> {
        fs::read_to_string(self.home.path().join("daemon.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Live processes whose environment names this home: the daemon, the apps and their trees.
    pub fn marked_pids(&self) -> Vec<u32> {
        let entry = format!("BM2_HOME={}", self.home.path().display());
        let me = std::process::id();
        let mut out = Vec::new();
        for e in fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me || !alive(pid) {
                continue;
            }
            if let Ok(env) = fs::read(format!("/proc/{pid}/environ"))
                && env.split(|b| *b == 0).any(|kv| kv == entry.as_bytes())
                && !is_bm2_cli(pid)
            {
                out.push(pid);
            }
        }
        out
    }

    /// Live app processes (marked with an instance id) of this home.
    pub fn app_pids(&self) -> Vec<u32> {
        self.marked_pids()
            .into_iter()
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv.starts_with(b"BM2_ID=")))
            })
            .collect()
    }
}

/// Helpers added for the option, command, spawn-error and concurrency tests.
impl TestEnv {
    /// Runs bm2; returns (success, stdout, stderr).
    pub fn output(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.run(args);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Writes a file that is not executable in the work directory.
    pub fn file(&self, name: &str, body: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::write(&path, body).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        path
    }

    /// What the app `target` wrote to stdout so far (its describe `out_log`).
    pub fn out_log(&self, target: &str) -> String {
        let d = self.describe(target);
        fs::read_to_string(d["out_log"].as_str().expect("out_log is a path")).unwrap_or_default()
    }

    /// Waits until the stdout log of `target` contains `needle`; returns the whole log.
    pub fn wait_out(&self, target: &str, needle: &str) -> String {
        let path = self.describe(target)["out_log"]
            .as_str()
            .expect("out_log is a path")
            .to_string();
        self.wait_for(
            &format!("{needle:?} in the stdout log of {target} ({path})"),
            || {
                let log = fs::read_to_string(&path).unwrap_or_default();
                log.contains(needle).then_some(log)
            },
        )
    }

    /// Waits until the file `name` of the work directory holds a complete line; returns its text.
    pub fn wait_marker(&self, name: &str) -> String {
        let path = self.path(name);
        self.wait_for(&format!("file {}", path.display()), || {
            fs::read_to_string(&path).ok().filter(|s| s.ends_with('\n'))
        })
    }

    /// Live `bm2 daemon` processes of this home.
    pub fn daemon_pids(&self) -> Vec<u32> {
        self.marked_pids()
            .into_iter()
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                    args.first().is_some_and(|a| a.ends_with(b"bm2"))
                        && args.get(1).is_some_and(|a| *a == b"daemon")
                })
            })
            .collect()
    }
}

/// The arguments of `bm2 start` for `sleep 1000` as the app `name`.
pub fn sleeper_args(name: &str) -> [&str; 8] {
    [
        "start",
        "sleep",
        "--name",
        name,
        "--interpreter",
        "none",
        "--",
        "1000",
    ]
}

fn is_bm2_cli(pid: u32) -> bool {
    // A bm2 CLI run by the test itself (not the daemon) is not a leftover.
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
        args.first().is_some_and(|a| a.ends_with(b"bm2"))
            && args.get(1).is_some_and(|a| *a != b"daemon")
    })
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// True when the process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    // A killed multi-threaded process shows its leader as a zombie while its other threads are
    // still exiting, and its files (a listening socket) stay open until the last one is gone.
    let running = |stat: &str| {
        fs::read_to_string(stat).is_ok_and(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 2..].chars().next())
                .is_some_and(|state| state != 'Z' && state != 'X')
        })
    };
    if running(&format!("/proc/{pid}/stat")) {
        return true;
    }
    fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|tasks| {
        tasks
            .flatten()
            .any(|t| running(&format!("{}/stat", t.path().display())))
    })
}

pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn kill_pid(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status();
}

/// A TCP port that is free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port P such that P and P + 1 are both free right now (fork instances use P + i).
pub fn free_port_pair() -> u16 {
    wait_for("two consecutive free ports", DEADLINE, || {
        let port = free_port();
        let next = port.checked_add(1)?;
        std::net::TcpListener::bind(("127.0.0.1", next))
            .ok()
            .map(|_| port)
    })
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let _ = self.command(&["kill"]).output();
        let gone = (0..500).any(|_| {
            if self.marked_pids().is_empty() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
            false
        });
        if !gone {
            let left = self.marked_pids();
            for pid in &left {
                kill_pid(*pid, "KILL");
            }
            assert!(
                std::thread::panicking(),
                "processes left behind after `bm2 kill`: {left:?}"
            );
        }
    }
}

impl TestEnv {
    /// Waits until the work-directory file `name` holds a pid (written by a script) of a live
    /// process; returns it.
    pub fn wait_pid_file(&self, name: &str) -> u32 {
        let path = self.path(name);
        self.wait_for(&format!("a live pid in {name}"), || {
            let pid = read_pid(&path)?;
            alive(pid).then_some(pid)
        })
    }

    /// Waits until the work-directory file `name` exists.
    pub fn wait_exists(&self, name: &str) {
        let path = self.path(name);
        self.wait_for(&format!("{name} to exist"), || path.exists().then_some(()));
    }
}

/// The pid in a file, when it holds one.
pub fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The process group of a live process.
pub fn pgid(pid: u32) -> Option<u32> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 2..].split(' ').nth(2)?.parse().ok()
}

/// The session of a live process.
pub fn session(pid: u32) -> Option<u32> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 2..].split(' ').nth(3)?.parse().ok()
}

/// Helpers added for the logging tests.
impl TestEnv {
    /// `$BM2_HOME/logs`.
    pub fn logs_dir(&self) -> PathBuf {
        self.home.path().join("logs")
    }

    /// Names of the files in `$BM2_HOME/logs`, sorted (empty when the directory is missing).
    pub fn log_file_names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.logs_dir())
            .map(|dir| {
                dir.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Starts `bm2 <args>` (e.g. `logs app --raw`) with its stdout read line by line.
    pub fn follow(&self, args: &[&str]) -> Follower {
        let mut child = self
            .command(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn bm2");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Follower { child, lines }
    }
}

/// A running `bm2` command whose stdout is read line by line; killed (by its pid) and reaped
/// when dropped.
pub struct Follower {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Follower {
    /// The next line printed before `deadline`.
    pub fn next_line(&self, deadline: Instant) -> Option<String> {
        let left = deadline.checked_duration_since(Instant::now())?;
        self.lines.recv_timeout(left).ok()
    }

    /// Reads lines until one satisfies `done`; returns every line read, that one included.
    /// Panics after `DEADLINE`, describing `what`.
    pub fn read_until(&self, what: &str, mut done: impl FnMut(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        loop {
            let Some(line) = self.next_line(deadline) else {
                panic!("timed out after {DEADLINE:?} waiting for {what}; lines read: {seen:?}");
            };
            let stop = done(&line);
            seen.push(line);
            if stop {
                return seen;
            }
        }
    }

    /// Every line printed during `window` from now.
    pub fn lines_for(&self, window: Duration) -> Vec<String> {
        let deadline = Instant::now() + window;
        std::iter::from_fn(|| self.next_line(deadline)).collect()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
