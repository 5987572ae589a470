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
        let name = format!(
            "bm2-test-notify-{}-{}",
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
