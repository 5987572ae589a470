//! Startup at boot: `bm2 daemon --resurrect` brings back the saved list by itself and tells a
//! service manager (systemd's `NOTIFY_SOCKET`) it is ready once the apps run; `bm2 startup`
//! writes a service file that does so.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Stdio};

use common::{TestEnv, alive};

/// A datagram socket the test listens on, as systemd does on `NOTIFY_SOCKET`.
struct Notify {
    socket: UnixDatagram,
    name: String,
}

impl Notify {
    /// An abstract socket (systemd's own form: `@name`).
    fn new() -> Notify {
        use std::os::linux::net::SocketAddrExt;
        // Tests run in parallel threads: the same millisecond needs another name.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!(
            "bm2-test-notify-{}-{}-{n}",
            std::process::id(),
            common::now_ms()
        );
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket.set_read_timeout(Some(common::DEADLINE)).unwrap();
        Notify {
            socket,
            name: format!("@{name}"),
        }
    }

    fn recv(&self) -> String {
        let mut buf = [0u8; 256];
        let n = self
            .socket
            .recv(&mut buf)
            .expect("a notification from the daemon before the deadline");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// Saves two running sleepers and stops everything (`bm2 kill` keeps the saved list).
fn saved_two_apps(env: &TestEnv) {
    env.start_sleeper("a");
    env.start_sleeper("b");
    env.ok(&["save"]);
    env.ok(&["kill"]);
    assert!(env.home_path().join("dump.json").exists());
    assert!(env.app_pids().is_empty());
}

fn online_pids(env: &TestEnv) -> Vec<u32> {
    let list = env.list();
    let mut names: Vec<&str> = list.iter().filter_map(|p| p["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["a", "b"], "{list:?}");
    list.iter()
        .map(|p| {
            assert_eq!(p["status"], "online", "{p}");
            let pid = u32::try_from(p["pid"].as_u64().unwrap()).unwrap();
            assert!(alive(pid));
            pid
        })
        .collect()
}

fn environ_has(pid: u32, var: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|e| {
        e.split(|b| *b == 0)
            .any(|kv| kv.starts_with(format!("{var}=").as_bytes()))
    })
}

/// Stops the daemon as a service's `ExecStop` would, and reaps it.
fn stop(env: &TestEnv, mut daemon: Child) {
    env.ok(&["kill"]);
    let status = daemon.wait().unwrap();
    assert!(status.success(), "daemon exited with {status}");
    assert!(env.app_pids().is_empty());
}

fn spawn_daemon(env: &TestEnv, notify: &Notify) -> Child {
    env.command(&["daemon", "--resurrect"])
        .env("NOTIFY_SOCKET", &notify.name)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn daemon_resurrect_starts_the_saved_list_then_notifies_ready() {
    let env = TestEnv::new();
    saved_two_apps(&env);
    let notify = Notify::new();
    let daemon = spawn_daemon(&env, &notify);
    assert_eq!(notify.recv(), "READY=1");
    // Ready means the saved apps already run: no waiting here.
    let pids = online_pids(&env);
    for pid in pids {
        assert!(
            !environ_has(pid, "NOTIFY_SOCKET"),
            "an app inherited NOTIFY_SOCKET"
        );
    }
    stop(&env, daemon);
    assert!(
        env.home_path().join("dump.json").exists(),
        "kill kept the saved list"
    );
}

#[test]
fn daemon_resurrect_without_a_saved_list_is_ready_with_no_apps() {
    let env = TestEnv::new();
    let notify = Notify::new();
    let daemon = spawn_daemon(&env, &notify);
    assert_eq!(notify.recv(), "READY=1");
    assert!(env.list().is_empty());
    stop(&env, daemon);
}

#[test]
fn daemon_resurrect_keeps_apps_a_previous_daemon_left_without_doubling_them() {
    // A daemon stopped by SIGTERM records its running apps; the next daemon brings those back,
    // and --resurrect adds only what the saved list has beyond them.
    let env = TestEnv::new();
    env.start_sleeper("a");
    env.ok(&["save"]);
    env.start_sleeper("b");
    let pid = env.daemon_pid().unwrap();
    common::kill_pid(pid, "TERM");
    env.wait_for("the daemon to exit", || (!alive(pid)).then_some(()));
    let notify = Notify::new();
    let daemon = spawn_daemon(&env, &notify);
    assert_eq!(notify.recv(), "READY=1");
    online_pids(&env);
    stop(&env, daemon);
}

/// The settings of a unit file, `key` → values in order.
fn unit_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
        .collect()
}

/// Undoes the unit's quoting of one value: `"…"` with `\\`, `\"`, `%%` (and `$$` in commands).
fn unquote(v: &str) -> (String, &str) {
    let Some(rest) = v.strip_prefix('"') else {
        let end = v.find(' ').unwrap_or(v.len());
        return (v[..end].to_string(), v[end..].trim_start());
    };
    let mut out = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next().unwrap().1),
            '"' => return (out, rest[i + 1..].trim_start()),
            _ => out.push(c),
        }
    }
    panic!("unterminated quote in {v}");
}

/// An `Exec…=@"program" argv0 args` line as a command (argv0 set as systemd does).
fn exec_command(line: &str, env: &[(String, String)]) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let line = line.strip_prefix('@').expect("argv0 is set with @");
    let (program, rest) = unquote(line);
    let program = program.replace("%%", "%").replace("$$", "$");
    let mut words = rest.split_whitespace();
    let mut cmd = std::process::Command::new(program);
    cmd.arg0(words.next().unwrap())
        .args(words)
        .env_clear()
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn unit_env(text: &str) -> Vec<(String, String)> {
    unit_values(text, "Environment")
        .iter()
        .map(|v| {
            let (kv, _) = unquote(v);
            let kv = kv.replace("%%", "%");
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn systemd_analyze_verify(path: &std::path::Path) {
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(path)
        .output()
        .expect("systemd-analyze (apt-get install systemd; scripts/test installs it)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn startup_writes_a_unit_systemd_accepts_with_the_user_home_and_name_given() {
    let env = TestEnv::new();
    let units = env.dir.path().join("units");
    std::fs::create_dir(&units).unwrap();
    let hp = env.dir.path().join("home of app");
    let out = env.ok(&[
        "startup",
        "systemd",
        "-u",
        "www-data",
        "--hp",
        hp.to_str().unwrap(),
        "--service-name",
        "bm2-test",
        "--unit-dir",
        units.to_str().unwrap(),
    ]);
    assert!(out.contains("bm2 save"), "{out}");
    let path = units.join("bm2-test.service");
    let text = std::fs::read_to_string(&path).unwrap();
    systemd_analyze_verify(&path);
    assert_eq!(unit_values(&text, "User"), ["www-data"]);
    assert_eq!(unit_values(&text, "Type"), ["notify"]);
    assert_eq!(unit_values(&text, "Restart"), ["on-failure"]);
    assert_eq!(unit_values(&text, "KillMode"), ["mixed"]);
    let vars = unit_env(&text);
    let home = hp.join(".bm2");
    assert!(
        vars.contains(&("BM2_HOME".into(), home.display().to_string())),
        "{vars:?}"
    );
    let start = &unit_values(&text, "ExecStart")[0];
    let (program, rest) = unquote(start.strip_prefix('@').unwrap());
    let bin = std::fs::canonicalize(env!("CARGO_BIN_EXE_bm2")).unwrap();
    assert_eq!(std::path::Path::new(&program), bin);
    assert_eq!(rest, "bm2 daemon --resurrect");
    // The same file again replaces bm2's own; print and --dry-run write nothing.
    env.ok(&[
        "startup",
        "--unit-dir",
        units.to_str().unwrap(),
        "--service-name",
        "bm2-test",
        "-u",
        "www-data",
    ]);
    let printed = env.ok(&[
        "startup",
        "print",
        "systemd",
        "--service-name",
        "other",
        "--unit-dir",
        units.to_str().unwrap(),
    ]);
    assert!(printed.contains("ExecStart=@"), "{printed}");
    // A user named without --hp: the bm2 home in that user's home directory.
    let other = env.ok(&["startup", "print", "-u", "www-data"]);
    assert!(
        other.contains("Environment=\"BM2_HOME=/var/www/.bm2\""),
        "{other}"
    );
    env.ok(&[
        "startup",
        "--dry-run",
        "--service-name",
        "other2",
        "--unit-dir",
        units.to_str().unwrap(),
    ]);
    let names: Vec<_> = std::fs::read_dir(&units)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["bm2-test.service"]);
}

#[test]
fn the_units_exec_start_resurrects_and_notifies_and_exec_stop_leaves_no_app() {
    let env = TestEnv::new();
    saved_two_apps(&env);
    let units = env.dir.path().join("units");
    std::fs::create_dir(&units).unwrap();
    env.ok(&[
        "startup",
        "--service-name",
        "t",
        "--unit-dir",
        units.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(units.join("t.service")).unwrap();
    let mut vars = unit_env(&text);
    assert!(
        vars.contains(&("BM2_HOME".into(), env.home_path().display().to_string())),
        "{vars:?}"
    );
    let notify = Notify::new();
    vars.push(("NOTIFY_SOCKET".into(), notify.name.clone()));
    let mut daemon = exec_command(&unit_values(&text, "ExecStart")[0], &vars)
        .spawn()
        .unwrap();
    assert_eq!(notify.recv(), "READY=1");
    let pids = online_pids(&env);
    let status = exec_command(&unit_values(&text, "ExecStop")[0], &vars)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(daemon.wait().unwrap().success());
    for pid in pids {
        assert!(!alive(pid), "app {pid} left running");
    }
    assert!(env.app_pids().is_empty());
    assert!(
        env.home_path().join("dump.json").exists(),
        "ExecStop kept the saved list"
    );
}

#[test]
fn startup_never_replaces_a_foreign_unit_and_unstartup_removes_only_its_own() {
    let env = TestEnv::new();
    let units = env.dir.path().join("units");
    std::fs::create_dir(&units).unwrap();
    let dir = units.to_str().unwrap();
    let foreign = units.join("web.service");
    let body = "[Service]\nExecStart=/usr/bin/true\n";
    std::fs::write(&foreign, body).unwrap();
    let err = env.fail(&["startup", "--service-name", "web", "--unit-dir", dir]);
    assert!(err.contains("not written by bm2"), "{err}");
    let err = env.fail(&["unstartup", "--service-name", "web", "--unit-dir", dir]);
    assert!(err.contains("not written by bm2"), "{err}");
    assert_eq!(std::fs::read_to_string(&foreign).unwrap(), body);
    // --force replaces it; then it is bm2's, and unstartup (or startup uninstall) removes it.
    env.ok(&[
        "startup",
        "--service-name",
        "web",
        "--unit-dir",
        dir,
        "--force",
    ]);
    assert!(
        std::fs::read_to_string(&foreign)
            .unwrap()
            .contains("daemon --resurrect")
    );
    env.ok(&[
        "startup",
        "uninstall",
        "--service-name",
        "web",
        "--unit-dir",
        dir,
    ]);
    assert!(!foreign.exists());
    env.ok(&[
        "startup",
        "install",
        "--service-name",
        "web",
        "--unit-dir",
        dir,
    ]);
    env.ok(&[
        "unstartup",
        "systemd",
        "--service-name",
        "web",
        "--unit-dir",
        dir,
    ]);
    assert!(!foreign.exists());
    assert_eq!(
        std::fs::read_dir(&units).unwrap().count(),
        0,
        "no temporary file left"
    );
}

#[test]
fn startup_without_the_init_system_says_so_and_writes_nothing() {
    let env = TestEnv::new();
    let units = env.dir.path().join("units");
    std::fs::create_dir(&units).unwrap();
    let empty = env.dir.path().join("empty-bin");
    std::fs::create_dir(&empty).unwrap();
    let out = env
        .command(&["startup", "systemd", "--unit-dir", units.to_str().unwrap()])
        .env("PATH", &empty)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("systemd is not installed"), "{err}");
    let out = env
        .command(&["startup", "--unit-dir", units.to_str().unwrap()])
        .env("PATH", &empty)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot detect the init system"));
    let out = env
        .command(&["startup", "smf", "--unit-dir", units.to_str().unwrap()])
        .env("PATH", &empty)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("smf is not installed"), "{err}");
    let out = env
        .command(&["startup", "openrc", "--unit-dir", units.to_str().unwrap()])
        .env("PATH", &empty)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("openrc is not installed"), "{err}");
    let err = env.fail(&["startup", "upstarts"]);
    assert!(err.contains("unknown init system"), "{err}");
    assert_eq!(std::fs::read_dir(&units).unwrap().count(), 0);
}

#[test]
fn startup_not_as_root_prints_the_sudo_command_and_writes_nothing() {
    let env = TestEnv::new();
    // As root, the command runs as www-data (uid 33) through setpriv.
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    let bin = std::fs::canonicalize(env!("CARGO_BIN_EXE_bm2")).unwrap();
    let mut cmd = if root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=33", "--regid=33", "--clear-groups"])
            .arg(&bin);
        c
    } else {
        std::process::Command::new(&bin)
    };
    let out = cmd
        .args(["startup", "systemd", "--service-name", "web"])
        .env("HOME", "/srv/app")
        .env("BM2_HOME", env.home_path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "sudo env PATH=$PATH {} startup systemd -u ",
            bin.display()
        )) && last.ends_with(" --hp /srv/app --service-name web"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("elevated rights"));
}

/// A PATH with stand-ins for the init system's tools first (they are not run with --unit-dir:
/// `startup` only checks that the init system is there).
fn path_with_tools(env: &TestEnv, tools: &[&str]) -> String {
    use std::os::unix::fs::PermissionsExt;
    let bin = env.dir.path().join("tools");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in tools {
        let p = bin.join(tool);
        std::fs::write(&p, "#!/bin/sh\nexit 1\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap())
}

fn ok_with_path(env: &TestEnv, args: &[&str], path: &str) -> String {
    let out = env.command(args).env("PATH", path).output().unwrap();
    assert!(
        out.status.success(),
        "bm2 {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sh_n(path: &std::path::Path) {
    let out = std::process::Command::new("sh")
        .arg("-n")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sh -n {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `sh -c SCRIPT ARGS…` (the first of ARGS is `$0`), returning its exit code and stdout.
fn sh(script: &str, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .args(args)
        .env_remove("BM2_HOME")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn the_systemv_scripts_start_status_and_stop_work_against_the_saved_list() {
    let env = TestEnv::new();
    saved_two_apps(&env);
    let units = env.dir.path().join("init.d");
    std::fs::create_dir(&units).unwrap();
    let path = path_with_tools(&env, &["update-rc.d", "chkconfig"]);
    ok_with_path(
        &env,
        &[
            "startup",
            "systemv",
            "--service-name",
            "t",
            "--unit-dir",
            units.to_str().unwrap(),
        ],
        &path,
    );
    let script = units.join("t");
    sh_n(&script);
    let text = std::fs::read_to_string(&script).unwrap();
    let bin = std::fs::canonicalize(env!("CARGO_BIN_EXE_bm2")).unwrap();
    assert!(text.contains(&format!("BM2='{}'", bin.display())), "{text}");
    let run = |action: &str| sh("exec \"$0\" \"$@\"", &[script.to_str().unwrap(), action]);
    assert_eq!(run("status").0, 3, "not running before start");
    assert!(env.daemon_pid().is_none(), "status started no daemon");
    assert_eq!(run("start").0, 0);
    let pids = online_pids(&env);
    let (code, out) = run("status");
    assert_eq!(code, 0);
    assert!(out.contains("alive"), "{out}");
    assert_eq!(run("start").0, 0, "start again: already running");
    assert_eq!(online_pids(&env), pids, "a second start doubled nothing");
    assert_eq!(run("stop").0, 0);
    assert_all_stopped_and_list_kept(&env, &pids);
    assert!(env.app_pids().is_empty());
    assert_eq!(run("status").0, 3);
    assert_eq!(run("stop").0, 0, "stop when stopped");
    assert_eq!(run("bogus").0, 2);
    assert!(env.daemon_pids().is_empty(), "stop started no daemon");
}

#[test]
fn the_openrc_scripts_functions_start_status_and_stop_under_openrc_run_stand_ins() {
    let env = TestEnv::new();
    saved_two_apps(&env);
    let units = env.dir.path().join("init.d");
    std::fs::create_dir(&units).unwrap();
    let path = path_with_tools(&env, &["rc-update"]);
    ok_with_path(
        &env,
        &[
            "startup",
            "openrc",
            "--service-name",
            "o",
            "--unit-dir",
            units.to_str().unwrap(),
        ],
        &path,
    );
    let script = units.join("o");
    sh_n(&script);
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.starts_with("#!/sbin/openrc-run\n"), "{text}");
    // openrc-run sources the script and calls its functions; ebegin/eend are its helpers.
    let openrc = "ebegin() { :; }; eend() { return \"$1\"; }; . \"$0\"; \"$1\"";
    let run = |f: &str| sh(openrc, &[script.to_str().unwrap(), f]);
    assert_eq!(run("status").0, 3);
    assert_eq!(run("start").0, 0);
    let pids = online_pids(&env);
    assert_eq!(run("status").0, 0);
    assert_eq!(run("stop").0, 0);
    assert_all_stopped_and_list_kept(&env, &pids);
}

#[test]
fn init_scripts_honour_user_home_and_name_and_never_replace_a_foreign_script() {
    let env = TestEnv::new();
    let units = env.dir.path().join("init.d");
    std::fs::create_dir(&units).unwrap();
    let dir = units.to_str().unwrap();
    let path = path_with_tools(&env, &["update-rc.d", "rc-update"]);
    let hp = env.dir.path().join("it's home");
    for system in ["systemv", "openrc"] {
        let out = ok_with_path(
            &env,
            &[
                "startup",
                "print",
                system,
                "-u",
                "www-data",
                "--hp",
                hp.to_str().unwrap(),
            ],
            &path,
        );
        assert!(out.contains("BM2_USER='www-data'"), "{out}");
        let home = hp.join(".bm2").display().to_string().replace('\'', "'\\''");
        assert!(out.contains(&format!("BM2_HOME='{home}'")), "{out}");
    }
    assert_eq!(
        std::fs::read_dir(&units).unwrap().count(),
        0,
        "print wrote nothing"
    );
    let foreign = units.join("web");
    std::fs::write(&foreign, "#!/bin/sh\necho mine\n").unwrap();
    let fail = |args: &[&str]| {
        let out = env.command(args).env("PATH", &path).output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = fail(&[
        "startup",
        "systemv",
        "--service-name",
        "web",
        "--unit-dir",
        dir,
    ]);
    assert!(err.contains("not written by bm2"), "{err}");
    let err = fail(&[
        "unstartup",
        "openrc",
        "--service-name",
        "web",
        "--unit-dir",
        dir,
    ]);
    assert!(err.contains("not written by bm2"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&foreign).unwrap(),
        "#!/bin/sh\necho mine\n"
    );
    ok_with_path(
        &env,
        &[
            "startup",
            "systemv",
            "--service-name",
            "web",
            "--unit-dir",
            dir,
            "--force",
        ],
        &path,
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = foreign.metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "the script is executable");
    }
    ok_with_path(
        &env,
        &[
            "unstartup",
            "systemv",
            "--service-name",
            "web",
            "--unit-dir",
            dir,
        ],
        &path,
    );
    assert_eq!(std::fs::read_dir(&units).unwrap().count(), 0);
}

#[test]
fn startup_launchd_writes_a_plist_with_run_at_load_keep_alive_and_the_bm2_home() {
    let env = TestEnv::new();
    let units = env.dir.path().join("LaunchAgents");
    std::fs::create_dir(&units).unwrap();
    let path = path_with_tools(&env, &["launchctl"]);
    let hp = env.dir.path().join("home & <me>");
    ok_with_path(
        &env,
        &[
            "startup",
            "launchd",
            "-u",
            "www-data",
            "--hp",
            hp.to_str().unwrap(),
            "--unit-dir",
            units.to_str().unwrap(),
        ],
        &path,
    );
    let plist = units.join("bm2.www-data.plist");
    let check = r#"
import json, plistlib, sys
with open(sys.argv[1], "rb") as f:
    print(json.dumps(plistlib.load(f)))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", check])
        .arg(&plist)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bin = std::fs::canonicalize(env!("CARGO_BIN_EXE_bm2")).unwrap();
    let bin = bin.to_str().unwrap();
    assert_eq!(p["Label"], "bm2.www-data");
    assert_eq!(p["RunAtLoad"], true);
    assert_eq!(p["KeepAlive"]["SuccessfulExit"], false);
    assert_eq!(p["Program"], bin);
    assert_eq!(
        p["ProgramArguments"],
        serde_json::json!([bin, "daemon", "--resurrect"])
    );
    assert_eq!(
        p["EnvironmentVariables"]["BM2_HOME"],
        hp.join(".bm2").to_str().unwrap()
    );
    // unstartup removes it; a foreign plist of the same name is left alone.
    let dir = units.to_str().unwrap();
    ok_with_path(
        &env,
        &["unstartup", "launchd", "-u", "www-data", "--unit-dir", dir],
        &path,
    );
    assert!(!plist.exists());
    std::fs::write(&plist, "<plist/>").unwrap();
    let out = env
        .command(&["startup", "launchd", "-u", "www-data", "--unit-dir", dir])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&plist).unwrap(), "<plist/>");
}

/// Writes `startup SYSTEM` with NAME into a fresh directory, returning the file's text.
fn write_service(env: &TestEnv, system: &str, tool: &[&str], name: &str, file: &str) -> String {
    let units = env.dir.path().join(system);
    std::fs::create_dir(&units).unwrap();
    let path = path_with_tools(env, tool);
    ok_with_path(
        env,
        &[
            "startup",
            system,
            "--service-name",
            name,
            "--unit-dir",
            units.to_str().unwrap(),
        ],
        &path,
    );
    let script = units.join(file);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = script.metadata().unwrap().permissions().mode() & 0o777;
        let want = if system == "smf" { 0o644 } else { 0o755 };
        assert_eq!(mode, want, "{system}");
    }
    if system != "smf" {
        sh_n(&script);
    }
    std::fs::read_to_string(&script).unwrap()
}

/// Runs an rc.d script's actions with stand-ins for its rc.subr (sourced at `subr`).
fn rc_actions(env: &TestEnv, text: &str, subr: &str, standin: &str) {
    assert!(text.contains(&format!("\n. {subr}\n")), "{text}");
    let script = env.dir.path().join(format!("rc-{}", common::now_ms()));
    std::fs::write(&script, text.replace(&format!(". {subr}"), standin)).unwrap();
    let run = |action: &str| sh("exec sh \"$0\" \"$@\"", &[script.to_str().unwrap(), action]);
    assert_ne!(run("status").0, 0, "not running before start");
    assert!(env.daemon_pid().is_none(), "status started no daemon");
    assert_eq!(run("start").0, 0);
    let pids = online_pids(env);
    assert_eq!(run("status").0, 0);
    assert_eq!(run("start").0, 0, "start again: already running");
    assert_eq!(online_pids(env), pids, "a second start doubled nothing");
    assert_eq!(run("stop").0, 0);
    assert_all_stopped_and_list_kept(env, &pids);
}

#[test]
fn the_freebsd_rcd_script_runs_under_rc_subr_stand_ins() {
    let env = TestEnv::new();
    saved_two_apps(&env);
    let text = write_service(&env, "rcd", &["sysrc"], "bm2_t", "bm2_t");
    assert!(
        text.contains("name='bm2_t'\nrcvar='bm2_t_enable'\n"),
        "{text}"
    );
    assert!(text.contains("su -m \"$BM2_USER\" -c"), "{text}");
    // rc.subr: load_rc_config reads rc.conf; run_rc_command runs ${ACTION}_cmd.
    let standin = "load_rc_config() { :; }; run_rc_command() { eval \"\\${${1}_cmd}\"; }";
    rc_actions(&env, &text, "/etc/rc.subr", standin);
    // rc.d names are shell variables: a name with `-` is refused, and the default is bm2_USER.
    let units = env.dir.path().join("rcd");
    let path = path_with_tools(&env, &["sysrc"]);
    let out = env
        .command(&["startup", "rcd", "--service-name", "bm2-x", "--unit-dir"])
        .arg(&units)
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an rc.d service name"));
    let printed = ok_with_path(
        &env,
        &["startup", "print", "freebsd", "-u", "www-data"],
        &path,
    );
    assert!(printed.contains("name='bm2_www_data'"), "{printed}");
    assert_eq!(std::fs::read_dir(&units).unwrap().count(), 1);
}

#[test]
fn the_openbsd_rcd_script_runs_under_rc_subr_stand_ins() {
    let env = TestEnv::new();
    saved_two_apps(&env);
    let text = write_service(&env, "rcd-openbsd", &["rcctl"], "bm2_o", "bm2_o");
    let bin = std::fs::canonicalize(env!("CARGO_BIN_EXE_bm2")).unwrap();
    assert!(text.starts_with("#!/bin/ksh\n"), "{text}");
    assert!(
        text.contains(&format!("daemon='{}'", bin.display())),
        "{text}"
    );
    // rc.subr's rc_cmd: `check` runs rc_check, the others rc_ACTION.
    let standin = "rc_cmd() { case $1 in status) rc_check ;; *) \"rc_$1\" ;; esac; }";
    rc_actions(&env, &text, "/etc/rc.d/rc.subr", standin);
}

#[test]
fn the_upstart_script_is_the_init_d_script_pm2_writes() {
    let env = TestEnv::new();
    saved_two_apps(&env);
    let text = write_service(&env, "upstart", &["update-rc.d"], "u", "u");
    assert!(text.contains("# Provides:          u\n"), "{text}");
    let script = env.dir.path().join("upstart").join("u");
    let run = |action: &str| sh("exec \"$0\" \"$@\"", &[script.to_str().unwrap(), action]);
    assert_eq!(run("start").0, 0);
    let pids = online_pids(&env);
    assert_eq!(run("stop").0, 0);
    for pid in &pids {
        assert!(!alive(*pid), "app {pid} left running");
    }
    assert!(env.daemon_pids().is_empty(), "no daemon left");
}

#[test]
fn the_smf_manifest_parses_and_its_methods_start_and_stop_the_saved_list() {
    let env = TestEnv::new();
    saved_two_apps(&env);
    let text = write_service(&env, "smf", &["svccfg", "svcadm"], "bm2-s", "bm2-s.xml");
    let xml = env.dir.path().join("smf").join("bm2-s.xml");
    let check = r#"
import json, sys, xml.etree.ElementTree as ET
svc = ET.parse(sys.argv[1]).getroot().find("service")
ctx = svc.find("method_context")
print(json.dumps({
    "name": svc.get("name"),
    "user": ctx.find("method_credential").get("user"),
    "env": {e.get("name"): e.get("value") for e in ctx.iter("envvar")},
    "exec": {m.get("name"): m.get("exec") for m in svc.findall("exec_method")},
    "duration": [p.get("value") for p in svc.iter("propval") if p.get("name") == "duration"],
}))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", check])
        .arg(&xml)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bin = std::fs::canonicalize(env!("CARGO_BIN_EXE_bm2")).unwrap();
    let quoted = format!("'{}'", bin.display());
    assert_eq!(m["name"], "application/bm2-s");
    assert_eq!(m["duration"], serde_json::json!(["contract"]));
    assert_eq!(m["env"]["BM2_HOME"], env.home_path().to_str().unwrap());
    assert_eq!(m["exec"]["stop"], format!("{quoted} kill"));
    assert_eq!(m["exec"]["refresh"], format!("{quoted} reload all"));
    // svc.startd runs each method with /bin/sh -c, `%%` being a `%`, in the method's environment.
    let run = |method: &str| {
        let exec = m["exec"][method].as_str().unwrap().replace("%%", "%");
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(&exec)
            .env_clear()
            .env("PATH", m["env"]["PATH"].as_str().unwrap())
            .env("BM2_HOME", m["env"]["BM2_HOME"].as_str().unwrap())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{method}: {exec}");
    };
    run("start");
    let pids = online_pids(&env);
    run("stop");
    assert_all_stopped_and_list_kept(&env, &pids);
}

#[test]
fn new_systems_honour_user_home_and_never_replace_a_foreign_file() {
    let env = TestEnv::new();
    let units = env.dir.path().join("units");
    std::fs::create_dir(&units).unwrap();
    let dir = units.to_str().unwrap();
    let path = path_with_tools(&env, &["update-rc.d", "sysrc", "rcctl", "svccfg", "svcadm"]);
    let hp = env.dir.path().join("it's home");
    let home = hp.join(".bm2").display().to_string();
    for system in ["upstart", "rcd", "rcd-openbsd", "smf"] {
        let out = ok_with_path(
            &env,
            &[
                "startup",
                "print",
                system,
                "-u",
                "www-data",
                "--hp",
                hp.to_str().unwrap(),
            ],
            &path,
        );
        if system == "smf" {
            assert!(out.contains(r#"user="www-data""#), "{out}");
            assert!(out.contains(&home.replace('\'', "&apos;")), "{out}");
        } else {
            assert!(out.contains("BM2_USER='www-data'"), "{out}");
            let home = home.replace('\'', "'\\''");
            assert!(out.contains(&format!("BM2_HOME='{home}'")), "{out}");
        }
        let file = if system == "smf" { "web.xml" } else { "web" };
        let foreign = units.join(file);
        std::fs::write(&foreign, "mine\n").unwrap();
        for verb in ["startup", "unstartup"] {
            let out = env
                .command(&[verb, system, "--service-name", "web", "--unit-dir", dir])
                .env("PATH", &path)
                .output()
                .unwrap();
            assert!(!out.status.success(), "{verb} {system}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("not written by bm2"), "{err}");
        }
        assert_eq!(std::fs::read_to_string(&foreign).unwrap(), "mine\n");
        let args = [
            "startup",
            system,
            "--service-name",
            "web",
            "--unit-dir",
            dir,
        ];
        ok_with_path(&env, &[&args[..], &["--force"]].concat(), &path);
        ok_with_path(
            &env,
            &[
                "unstartup",
                system,
                "--service-name",
                "web",
                "--unit-dir",
                dir,
            ],
            &path,
        );
        assert_eq!(std::fs::read_dir(&units).unwrap().count(), 0, "{system}");
    }
}

/// After a service's stop: no app of `pids` and no daemon is left, and the saved list is kept.
fn assert_all_stopped_and_list_kept(env: &TestEnv, pids: &[u32]) {
    for pid in pids {
        assert!(!alive(*pid), "app {pid} left running");
    }
    assert!(env.daemon_pids().is_empty(), "no daemon left");
    assert!(
        env.home_path().join("dump.json").exists(),
        "stop kept the saved list"
    );
}
