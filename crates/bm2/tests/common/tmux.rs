//! A terminal for tests of full-screen commands: a private tmux server per test (its own socket,
//! in the test's work directory), driven with `send-keys` and read with `capture-pane`, killed on
//! drop.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use std::time::{Duration, Instant};

use super::{DEADLINE, TestEnv};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// One tmux server running one `bm2` command in a session named `main`.
pub struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Runs `bm2 <args>` of `env` in a detached `width`×`height` terminal.
    pub fn start(env: &TestEnv, args: &[&str], width: u16, height: u16) -> Tmux {
        require_tmux();
        let socket = env.dir.path().join(format!(
            "tmux-{}.sock",
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let tmux = Tmux { socket };
        let mut command = vec![
            "env".to_string(),
            format!("BM2_HOME={}", env.home_path().display()),
            "NO_COLOR=1".into(),
            "BM2_SAMPLE_INTERVAL_MS=200".into(),
            env!("CARGO_BIN_EXE_bm2").into(),
        ];
        command.extend(args.iter().map(|a| (*a).to_string()));
        let quoted: Vec<String> = command.iter().map(|a| format!("'{a}'")).collect();
        let out = tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "main",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "-c",
            &env.dir.path().display().to_string(),
            &quoted.join(" "),
        ]);
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// The text on the screen now.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "main"]).stdout)
            .into_owned()
    }

    /// Types keys (tmux key names: `Down`, `C-c`, `q`).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "main"];
        args.extend_from_slice(keys);
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "tmux send-keys {keys:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Waits until the screen satisfies `f`; returns it. Panics with the last screen after the
    /// deadline.
    pub fn wait_screen(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let screen = self.screen();
            if f(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {DEADLINE:?} waiting for {what}; the screen was:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// True while the command runs (its session closes when it exits).
    pub fn running(&self) -> bool {
        self.run(&["has-session", "-t", "main"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn require_tmux() {
    let ok = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "tmux is not installed: the monit and list --watch tests drive a terminal with it \
         (`apt-get install tmux`; .ci/run installs it)"
    );
}
