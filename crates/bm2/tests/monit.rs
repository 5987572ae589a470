//! `bm2 monit` and `bm2 list --watch`, driven in a real terminal (tmux).

mod common;

use common::TestEnv;
use common::tmux::Tmux;

/// Prints a numbered line every 100 ms.
const TALKER: &str =
    "#!/usr/bin/env bash\ni=0\nwhile true; do echo \"line $i\"; i=$((i+1)); sleep 0.1; done\n";

fn restarts(env: &TestEnv, name: &str) -> u64 {
    env.jlist()
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["pm2_env"]["restart_time"].as_u64())
        .unwrap_or_else(|| panic!("no {name} in jlist"))
}

#[test]
fn monit_shows_apps_and_logs_restarts_on_r_stops_on_s_quits_on_q() {
    let env = TestEnv::new();
    env.script("talker.sh", TALKER);
    env.ok(&["start", "talker.sh", "--name", "talker"]);
    env.ok(&[
        "start",
        "sleep",
        "--name",
        "sleeper",
        "--interpreter",
        "none",
        "--",
        "1000",
    ]);
    let term = Tmux::start(&env, &["monit"], 160, 45);

    // The list, the first app's details, sparklines and live log lines.
    term.wait_screen("both apps, talker's details and its logs", |s| {
        s.contains("Processes (2)")
            && s.contains("talker")
            && s.contains("sleeper")
            && s.contains("talker (id 0)")
            && s.contains("CPU, last minute")
            && s.contains("Memory, last minute")
            && s.contains("Logs: talker")
            && s.contains("line 3")
    });

    // Down selects the sleeper; `r` restarts it.
    term.keys(&["Down"]);
    term.wait_screen("sleeper selected", |s| {
        s.contains("sleeper (id 1)") && s.contains("Logs: sleeper")
    });
    assert_eq!(restarts(&env, "sleeper"), 0);
    term.keys(&["r"]);
    env.wait_for("sleeper's restart count to go up", || {
        (restarts(&env, "sleeper") == 1).then_some(())
    });
    assert_eq!(restarts(&env, "talker"), 0);
    term.wait_screen("the restart reported", |s| {
        s.contains("restart: sleeper done")
    });

    // Up and `s` stop the talker.
    term.keys(&["Up"]);
    term.wait_screen("talker selected", |s| s.contains("talker (id 0)"));
    term.keys(&["s"]);
    env.wait_status("talker", "stopped");
    assert_eq!(env.proc("sleeper")["status"], "online");

    // `q` quits: the terminal's only command ends, and so does its session.
    term.keys(&["q"]);
    common::wait_for("monit to quit", common::DEADLINE, || {
        (!term.running()).then_some(())
    });
}

#[test]
fn monit_needs_a_terminal() {
    let env = TestEnv::new();
    let err = env.fail(&["monit"]);
    assert!(err.contains("needs a terminal"), "{err}");
}

#[test]
fn list_watch_redraws_the_table_in_place() {
    let env = TestEnv::new();
    env.ok(&[
        "start",
        "sleep",
        "--name",
        "alpha",
        "--interpreter",
        "none",
        "--",
        "1000",
    ]);
    let term = Tmux::start(&env, &["list", "--watch"], 140, 30);
    term.wait_screen("the table with alpha", |s| {
        s.contains("alpha") && s.contains("1 processes")
    });
    // A new app shows up on a later refresh, in the same place: one table on the screen.
    env.ok(&[
        "start",
        "sleep",
        "--name",
        "beta",
        "--interpreter",
        "none",
        "--",
        "1000",
    ]);
    let screen = term.wait_screen("beta in the table", |s| {
        s.contains("beta") && s.contains("2 processes")
    });
    assert_eq!(
        screen.matches("namespace").count(),
        1,
        "one table header on the screen:\n{screen}"
    );
    assert_eq!(screen.matches("refreshed every second").count(), 1);
    // The alias works too, and Ctrl-C ends the watch.
    term.keys(&["C-c"]);
    common::wait_for("list --watch to end", common::DEADLINE, || {
        (!term.running()).then_some(())
    });
    let live = Tmux::start(&env, &["ls", "--live"], 140, 30);
    live.wait_screen("the live table", |s| s.contains("beta"));
}
