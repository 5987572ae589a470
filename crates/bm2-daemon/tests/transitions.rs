//! Supervisor transitions driven through the embedded engine, with small real processes as the
//! children: a reload whose new process never becomes ready keeps the old one, a shutdown
//! during a restart delay keeps the intent to run, and a memory report about a pid that is no
//! longer the instance's process changes nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bm2_daemon::logs::LogDefaults;
use bm2_daemon::persist;
use bm2_daemon::{Home, ProcessManager};
use bm2_types::{AppSpec, ProcStatus, ProcSummary, StartRequest};

/// A manager in a fresh home, and the directory for its apps' scripts.
fn manager() -> (Arc<ProcessManager>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::at(dir.path().join("home"));
    home.create().unwrap();
    let m = ProcessManager::new(home, Duration::from_millis(200), LogDefaults::default());
    (m, dir)
}

fn spec(name: &str, script: &Path) -> AppSpec {
    AppSpec {
        name: name.into(),
        script: script.display().to_string(),
        interpreter: Some("python3".into()),
        cwd: script.parent().map(Path::to_path_buf),
        ..AppSpec::default()
    }
}

async fn start(m: &ProcessManager, app: AppSpec) {
    let client_env = std::env::vars().collect();
    let res = m
        .start(StartRequest {
            apps: vec![app],
            client_env,
            ..StartRequest::default()
        })
        .await
        .unwrap();
    assert!(res.errors.is_empty(), "{:?}", res.errors);
}

fn row(m: &ProcessManager, name: &str) -> ProcSummary {
    m.list()
        .into_iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no {name}"))
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Says READY=1 on systemd's notify socket unless the file `broken` exists next to it, then
/// sleeps; with `broken`, exits at once.
const READY_APP: &str = r#"import os, socket, sys, time
if os.path.exists(os.path.join(os.path.dirname(os.path.abspath(__file__)), "broken")):
    sys.exit(3)
addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(addr)
s.send(b"READY=1")
time.sleep(1000)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_whose_new_process_fails_keeps_the_old_one() {
    let (m, dir) = manager();
    let script = dir.path().join("ready.py");
    std::fs::write(&script, READY_APP).unwrap();
    let mut app = spec("keeper", &script);
    app.wait_ready = true;
    app.listen_timeout = 3000;
    start(&m, app).await;
    wait_for("keeper online", || {
        row(&m, "keeper").status == ProcStatus::Online
    })
    .await;
    let old = row(&m, "keeper").pid.unwrap();
    std::fs::write(dir.path().join("broken"), "").unwrap();
    let res = m.reload(&["keeper".to_string()], 1, None).await.unwrap();
    assert_eq!(res.errors.len(), 1, "{res:?}");
    let after = row(&m, "keeper");
    assert_eq!(after.pid, Some(old), "the old process must keep serving");
    assert_eq!(after.status, ProcStatus::Online);
    assert!(Path::new(&format!("/proc/{old}")).exists());
    m.shutdown(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_during_a_restart_delay_keeps_the_intent_to_run() {
    let (m, dir) = manager();
    let script = dir.path().join("crash.py");
    std::fs::write(&script, "import sys\nsys.exit(1)\n").unwrap();
    let mut app = spec("crashy", &script);
    app.restart_delay = 60_000;
    start(&m, app).await;
    wait_for("crashy waiting to restart", || {
        row(&m, "crashy").status == ProcStatus::WaitingRestart
    })
    .await;
    m.shutdown(false).await;
    let state = persist::load(&m.home().state_file()).unwrap();
    assert_eq!(state.instances.len(), 1);
    assert!(
        state.instances[0].running,
        "an app waiting to restart is meant to run: {:?}",
        state.instances[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_is_recorded_as_not_running_and_kill_forgets_everything() {
    let (m, dir) = manager();
    let script = dir.path().join("sleep.py");
    std::fs::write(&script, "import time\ntime.sleep(1000)\n").unwrap();
    start(&m, spec("a", &script)).await;
    start(&m, spec("b", &script)).await;
    wait_for("both online", || {
        m.list().iter().all(|p| p.status == ProcStatus::Online)
    })
    .await;
    m.stop(&["b".to_string()], false).await.unwrap();
    let state = persist::load(&m.home().state_file()).unwrap();
    let running: Vec<(&str, bool)> = state
        .instances
        .iter()
        .map(|i| (i.spec.name.as_str(), i.running))
        .collect();
    assert_eq!(running, [("a", true), ("b", false)]);
    m.shutdown(true).await;
    let state = persist::load(&m.home().state_file()).unwrap();
    assert!(state.instances.is_empty(), "{state:?}");
}
