//! `delete` removes the log files bm2 named for the deleted instances (with their rotated
//! copies), so that start/delete churn leaves nothing behind; `--keep-logs` keeps them; files
//! the user named, and files other instances still write, are never removed.

mod common;

use std::fs;

use common::TestEnv;

/// A shell app printing `n` numbered lines of 60 bytes and one line on stderr, then staying up.
fn chatty(n: u32) -> String {
    format!(
        "i=0\nwhile [ $i -lt {n} ]; do printf 'line %05d %s\\n' $i \
         0123456789012345678901234567890123456789012345; i=$((i+1)); done\n\
         echo oops >&2\nexec sleep 1000\n"
    )
}

/// The files of `$BM2_HOME/logs` whose names start with `prefix`.
fn files_of(env: &TestEnv, prefix: &str) -> Vec<String> {
    env.log_file_names()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Starts `chatty.sh` as `name` with `extra` options and waits until its stderr line is written.
fn start_chatty(env: &TestEnv, name: &str, extra: &[&str]) {
    let mut args = vec!["start", "chatty.sh", "--name", name];
    args.extend_from_slice(extra);
    env.ok(&args);
    let err = env.describe(name)["err_log"].as_str().unwrap().to_string();
    env.wait_for(&format!("the stderr line of {name} in {err}"), || {
        fs::read_to_string(&err)
            .is_ok_and(|t| t.contains("oops"))
            .then_some(())
    });
}

#[test]
fn delete_removes_the_logs_bm2_named_with_their_rotated_copies() {
    let env = TestEnv::new();
    env.script("chatty.sh", &chatty(200));
    start_chatty(
        &env,
        "churn",
        &[
            "-l",
            "--log-max-size",
            "2K",
            "--log-retain",
            "3",
            "--log-compress",
        ],
    );
    let files = env.wait_for("rotated, compressed logs of churn", || {
        let files = files_of(&env, "churn");
        let settled = !files
            .iter()
            .any(|n| n.contains(".rotating-") || n.contains(".tmp"));
        (settled && files.iter().any(|n| n == "churn-out.log.3.gz")).then_some(files)
    });
    for name in ["churn-out.log", "churn-error.log", "churn.log"] {
        assert!(files.contains(&name.to_string()), "{name} not in {files:?}");
    }
    env.start_sleeper("bystander");
    env.ok(&["delete", "churn"]);
    assert_eq!(files_of(&env, "churn"), Vec::<String>::new());
    // Another app's files are untouched.
    assert_eq!(
        files_of(&env, "bystander-"),
        ["bystander-error.log", "bystander-out.log"]
    );
}

#[test]
fn start_delete_churn_leaves_no_files_behind() {
    let env = TestEnv::new();
    env.script("chatty.sh", &chatty(5));
    for _ in 0..5 {
        start_chatty(&env, "churn", &["-i", "2"]);
        env.ok(&["delete", "churn"]);
    }
    assert_eq!(env.log_file_names(), Vec::<String>::new());
    assert!(env.list().is_empty());
}

#[test]
fn keep_logs_keeps_them() {
    let env = TestEnv::new();
    env.script("chatty.sh", &chatty(5));
    start_chatty(&env, "kept", &[]);
    env.ok(&["delete", "kept", "--keep-logs"]);
    assert!(env.list().is_empty());
    let out = fs::read_to_string(env.logs_dir().join("kept-out.log")).unwrap();
    assert!(out.contains("line 00004"), "{out}");
    let err = fs::read_to_string(env.logs_dir().join("kept-error.log")).unwrap();
    assert_eq!(err, "oops\n");
    // The flag belongs to delete only.
    env.start_sleeper("other");
    let e = env.fail(&["stop", "other", "--keep-logs"]);
    assert!(e.contains("--keep-logs applies to delete"), "{e}");
    assert_eq!(env.proc("other")["status"], "online");
}

#[test]
fn files_the_user_named_are_kept() {
    let env = TestEnv::new();
    env.script("chatty.sh", &chatty(5));
    let mine = env.path("mine-out.log");
    let combined = env.path("all.log");
    start_chatty(
        &env,
        "named",
        &["-o", "mine-out.log", "-l", combined.to_str().unwrap()],
    );
    env.wait_for("the user's stdout file", || {
        fs::read_to_string(&mine)
            .is_ok_and(|t| t.contains("line 00004"))
            .then_some(())
    });
    // A user file inside $BM2_HOME/logs is the user's too.
    env.file(
        "eco.json",
        &format!(
            r#"{{"apps": [{{"name": "eco", "script": "chatty.sh", "out_file": "{}"}}]}}"#,
            env.logs_dir().join("eco-custom.log").display()
        ),
    );
    env.ok(&["start", "eco.json"]);
    env.wait_for("eco's stdout", || {
        fs::read_to_string(env.logs_dir().join("eco-custom.log"))
            .is_ok_and(|t| t.contains("line 00004"))
            .then_some(())
    });
    env.ok(&["delete", "named"]);
    env.ok(&["delete", "eco.json"]);
    assert!(env.list().is_empty());
    assert!(mine.exists() && combined.exists());
    // Only the stderr logs, which bm2 named, are gone.
    assert_eq!(env.log_file_names(), ["eco-custom.log"]);
}

#[test]
fn merged_logs_stay_while_an_instance_writes_them() {
    let env = TestEnv::new();
    env.script("chatty.sh", &chatty(5));
    start_chatty(&env, "twins", &["-i", "3", "--merge-logs"]);
    env.ok(&["scale", "twins", "1"]);
    assert_eq!(env.list().len(), 1);
    assert_eq!(
        files_of(&env, "twins"),
        ["twins-error.log", "twins-out.log"],
        "the merged files of the remaining instance were removed"
    );
    env.ok(&["delete", "twins"]);
    assert_eq!(env.log_file_names(), Vec::<String>::new());
}

#[test]
fn scaling_down_removes_the_logs_of_removed_instances() {
    let env = TestEnv::new();
    env.script("chatty.sh", &chatty(5));
    start_chatty(&env, "pool", &["-i", "3"]);
    env.wait_for("the three instances' logs", || {
        (files_of(&env, "pool-").len() == 6).then_some(())
    });
    env.ok(&["scale", "pool", "1"]);
    assert_eq!(
        files_of(&env, "pool-"),
        ["pool-error-0.log", "pool-out-0.log"]
    );
}
