//! The web dashboard in a real browser: headless Chromium, driven by playwright-core
//! (`tests/browser/dashboard.mjs`), against `bm2 dashboard` with apps running. The page must
//! sign in from the printed URL, show the app live, restart it from the table, stream its logs
//! (stdout and stderr tabs), reconnect by itself after the dashboard restarts, and fit a phone.
//!
//! Needs node, npm (playwright-core is installed into `target/test-tools`) and Chromium at
//! `/usr/bin/chromium` (`apt-get install chromium`; `.ci/run` installs it). The screenshots
//! land in `target/test-output/dashboard/`.

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{TestEnv, free_port};
use serde_json::Value;

/// The browser the driver launches.
const CHROMIUM: &str = "/usr/bin/chromium";

/// The Playwright library (no bundled browsers), pinned.
const PLAYWRIGHT_CORE: &str = "playwright-core@1.65.1";

/// How long the whole browser session may take.
const DRIVER_DEADLINE: Duration = Duration::from_mins(3);

/// Prints `tick <n>` every 200 ms on stdout, with `n` counting on across restarts (kept in
/// `COUNTER`), and a warning on stderr at every tenth tick.
const TICKER: &str = r#"#!/usr/bin/env bash
counter='COUNTER'
n=$(cat "$counter" 2>/dev/null || echo 0)
while :; do
  n=$((n + 1))
  echo "$n" > "$counter.tmp" && mv "$counter.tmp" "$counter"
  echo "tick $n"
  if [ $((n % 10)) -eq 0 ]; then echo "warning: tick $n is a multiple of ten" >&2; fi
  sleep 0.2
done
"#;

/// Holds some memory and uses a little CPU, so that the page has numbers to show.
const WORKER: &str = r"import time
data = bytearray(24 * 1024 * 1024)
for i in range(0, len(data), 4096):
    data[i] = 1
print('worker ready', flush=True)
while True:
    end = time.time() + 0.02
    while time.time() < end:
        pass
    time.sleep(0.2)
";

/// Checks that Chromium is installed, with the command that installs it.
fn chromium() -> &'static str {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} not found: the dashboard browser test needs Chromium. Install it with \
         `apt-get install chromium` (the CI script .ci/run installs it)."
    );
    CHROMIUM
}

/// Installs playwright-core into `target/test-tools` (once, under a file lock so that parallel
/// tests and test binaries do not race) and returns that directory.
fn playwright_tools() -> PathBuf {
    // The marker is written once npm has finished: a package directory alone may be an
    // install still in progress in another test process.
    common::tools::install_once(
        ".playwright-core-installed",
        &format!(
            "npm install --prefix . --no-audit --no-fund {PLAYWRIGHT_CORE} && node -e 'require(\"playwright-core\")' && touch .playwright-core-installed"
        ),
        PLAYWRIGHT_CORE,
        "",
    );
    fs::canonicalize(common::tools::dir()).unwrap()
}

/// The dashboard address with its token, from what `bm2 dashboard` printed.
fn dashboard_url(printed: &str) -> String {
    printed
        .lines()
        .find(|l| l.contains("Dashboard:"))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("http://")))
        .unwrap_or_else(|| panic!("no `Dashboard: http://...` line in:\n{printed}"))
        .to_string()
}

/// Reads a child's pipe to the end on a thread.
fn drain(pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = { pipe }.read_to_string(&mut s);
        s
    })
}

/// Waits for `child` until `deadline`; past it, kills its process group (the driver and its
/// browser) and panics.
fn wait_or_kill(child: &mut Child, deadline: Instant, output: impl Fn() -> String) -> ExitStatus {
    loop {
        if let Some(status) = child.try_wait().expect("wait for the driver") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!(
                "the browser driver did not finish within {DRIVER_DEADLINE:?}\n{}",
                output()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `bm2 jlist` entry of the instance `name`.
fn jlist_entry(env: &TestEnv, name: &str) -> Value {
    env.jlist()
        .into_iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in bm2 jlist"))
}

#[test]
fn dashboard_in_a_real_browser() {
    let browser = chromium();
    let tools = playwright_tools();
    let env = TestEnv::new();

    let counter = env.path("ticker.count");
    env.script(
        "ticker.sh",
        &TICKER.replace("COUNTER", &counter.display().to_string()),
    );
    env.file("worker.py", WORKER);
    env.script("report.sh", "#!/bin/sh\nexec sleep 1000\n");
    env.script(
        "mailer.sh",
        "#!/bin/sh\necho 'smtp: connection refused' >&2\nexit 1\n",
    );
    env.ok(&["start", "ticker.sh", "--name", "ticker", "--time"]);
    env.ok(&[
        "start",
        "worker.py",
        "--name",
        "worker",
        "-i",
        "2",
        "--interpreter",
        "python3",
    ]);
    env.ok(&["start", "report.sh", "--name", "nightly-report"]);
    env.ok(&[
        "start",
        "mailer.sh",
        "--name",
        "mailer",
        "--max-restarts",
        "2",
        "--restart-delay",
        "100",
    ]);
    env.wait_status("ticker", "online");
    env.wait_out("ticker", "tick 3\n");
    env.wait_status("worker-0", "online");
    env.wait_status("worker-1", "online");
    env.ok(&["stop", "nightly-report"]);
    env.wait_status("nightly-report", "stopped");
    env.wait_status("mailer", "errored");

    let metrics_port = free_port().to_string();
    let printed = env.ok(&[
        "dashboard",
        "--port",
        &free_port().to_string(),
        "--metrics-port",
        &metrics_port,
    ]);
    let url = dashboard_url(&printed);
    assert!(url.contains("/?token="), "no token in {url}");

    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-output/dashboard");
    let _ = fs::remove_dir_all(&out_dir);
    fs::create_dir_all(&out_dir).unwrap();
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.mjs");
    let mut child = Command::new("node")
        .arg(&driver)
        .arg(&url)
        .arg("ticker")
        .arg(&out_dir)
        .env("BM2_TEST_TOOLS", &tools)
        .env("CHROMIUM", browser)
        .env("BM2_BIN", env!("CARGO_BIN_EXE_bm2"))
        .env("BM2_HOME", env.home_path())
        .env("DASHBOARD_METRICS_PORT", &metrics_port)
        .env("NO_COLOR", "1")
        .current_dir(env.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("run node (the dashboard test needs node and npm)");
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = wait_or_kill(&mut child, Instant::now() + DRIVER_DEADLINE, || {
        format!("log of the daemon:\n{}", daemon_log(&env))
    });
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    println!("{stdout}");
    assert!(
        status.success(),
        "the dashboard failed in the browser ({status}):\n{stdout}\n{stderr}\n\
         screenshots and logs: {}",
        out_dir.display()
    );

    let result: Value =
        serde_json::from_str(&fs::read_to_string(out_dir.join("result.json")).unwrap()).unwrap();
    let before = result["restartsBefore"].as_u64().expect("restartsBefore");
    let restarts = jlist_entry(&env, "ticker")["pm2_env"]["restart_time"]
        .as_u64()
        .expect("restart_time in jlist");
    assert!(
        restarts > before,
        "bm2 jlist shows {restarts} restarts of ticker, the page showed {before} before clicking restart"
    );
    for name in ["dashboard.png", "dashboard-phone.png"] {
        let png = fs::read(out_dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
            "{name} is not a screenshot ({} bytes)",
            png.len()
        );
    }
}

/// The daemon's own log, for failure messages.
fn daemon_log(env: &TestEnv) -> String {
    fs::read_to_string(env.home_path().join("daemon.log")).unwrap_or_default()
}
