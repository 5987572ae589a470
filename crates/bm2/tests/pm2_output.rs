//! What PM2 users and their tools read: `jlist` and `prettylist` in PM2's shape, instances
//! told apart by id (an app named like another app's instance never collides with it), PM2's
//! log file names, tables that fit the terminal, and PM2's global flags (`-s`, `-m`,
//! `--no-color`).

mod common;

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};

use common::TestEnv;
use serde_json::Value;

/// Prints its app name and instance, then sleeps.
const SAY_AND_SLEEP: &str = "echo \"I am $BM2_APP_NAME/$NODE_APP_INSTANCE\"\nexec sleep 1000\n";

/// `worker` with two instances (ids 0 and 1), then an app named `worker-1` (id 2).
fn worker_and_worker_1(env: &TestEnv) {
    env.script("say.sh", &SAY_AND_SLEEP.replace("$BM2_APP_NAME", "worker"));
    env.script(
        "say1.sh",
        &SAY_AND_SLEEP.replace("$BM2_APP_NAME", "worker-1"),
    );
    env.ok(&["start", "say.sh", "--name", "worker", "-i", "2"]);
    env.ok(&["start", "say1.sh", "--name", "worker-1"]);
    for id in ["0", "1", "2"] {
        env.wait_for(&format!("id {id} online"), || {
            let v: Vec<Value> = serde_json::from_str(&env.ok(&["describe", id, "--json"])).unwrap();
            (v[0]["status"] == "online").then_some(())
        });
    }
}

/// Runs `python3 -c code` with `input` on stdin; returns its stdout.
fn python(code: &str, input: &str) -> String {
    let mut child = Command::new("python3")
        .args(["-c", code])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python3 failed");
    String::from_utf8(out.stdout).unwrap()
}

/// A consumer written as monitoring tools written for PM2 are: group `jlist` by `name`.
const GROUP_BY_NAME: &str = r#"
import json, sys
procs = json.load(sys.stdin)
apps = {}
for p in procs:
    apps.setdefault(p["name"], []).append([p["pm_id"], p["pm2_env"]["NODE_APP_INSTANCE"]])
print(json.dumps(apps, sort_keys=True))
first = procs[0]
print(json.dumps(list(first.keys())))
keys = list(first["pm2_env"].keys())
print(json.dumps([keys.index(k) for k in ["env", "pm_exec_path", "NODE_APP_INSTANCE", "status", "pm_id", "restart_time"]]))
"#;

#[test]
fn jlist_groups_instances_under_their_app_name() {
    let env = TestEnv::new();
    worker_and_worker_1(&env);
    let out = python(GROUP_BY_NAME, &env.ok(&["jlist"]));
    let mut lines = out.lines();
    assert_eq!(
        lines.next().unwrap(),
        r#"{"worker": [[0, 0], [1, 1]], "worker-1": [[2, 0]]}"#
    );
    assert_eq!(
        lines.next().unwrap(),
        r#"["pid", "name", "pm2_env", "pm_id", "monit"]"#
    );
    let at: Vec<usize> = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "pm2_env keys out of PM2's order: {at:?}"
    );
}

#[test]
fn jlist_carries_the_fields_tools_read() {
    let env = TestEnv::new();
    env.script("app.sh", "exec sleep 1000\n");
    env.ok(&["start", "app.sh", "--name", "combined", "-l"]);
    env.start_sleeper("nap");
    env.wait_status("combined", "online");
    let j = env.jlist();
    let by = |name: &str| j.iter().find(|p| p["name"] == name).unwrap()["pm2_env"].clone();
    let c = by("combined");
    assert!(
        c["pm_log_path"]
            .as_str()
            .unwrap()
            .ends_with("/logs/combined.log"),
        "{}",
        c["pm_log_path"]
    );
    assert_eq!(c["axm_options"]["module_name"], "combined");
    assert_eq!(c["NODE_APP_INSTANCE"], 0);
    let nap = by("nap");
    assert!(
        nap.get("pm_log_path").is_none(),
        "no -l, no pm_log_path as in PM2"
    );
    // A command found in PATH has its absolute path, as PM2 resolves it.
    let exec = nap["pm_exec_path"].as_str().unwrap();
    assert!(
        exec.starts_with('/') && exec.ends_with("/sleep"),
        "pm_exec_path: {exec}"
    );
}

#[test]
fn prettylist_prints_what_node_util_inspect_prints() {
    let env = TestEnv::new();
    env.script("app.sh", "exec sleep 1000\n");
    env.ok(&[
        "start",
        "app.sh",
        "--name",
        "pretty",
        "--env",
        "QUOTE=it's \"here\"",
        "--env",
        "MULTI=line one\nline two",
        "--",
        "a",
        "b",
        "c",
        "d",
        "e",
        "f",
        "g",
        "h",
    ]);
    // Five arguments that fit in 128 columns but not in Node's 80.
    env.ok(&[
        "start",
        "app.sh",
        "--name",
        "two",
        "-i",
        "2",
        "--",
        "first-argument-x",
        "second-argument-x",
        "third-argument-x",
        "fourth-argument-x",
        "fifth-argument-x",
    ]);
    env.wait_status("pretty", "online");
    // Stopped processes do not change between the two commands.
    env.ok(&["stop", "all"]);
    env.wait_status("pretty", "stopped");
    let jlist = env.ok(&["jlist"]);
    let pretty = env.ok(&["prettylist"]);
    let mut node = Command::new("node")
        .args([
            "-e",
            "process.stdout.write(require('util').inspect(JSON.parse(require('fs').readFileSync(0, 'utf8')), false, null, false))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node");
    node.stdin
        .take()
        .unwrap()
        .write_all(jlist.as_bytes())
        .unwrap();
    let want = String::from_utf8(node.wait_with_output().unwrap().stdout).unwrap();
    assert!(pretty.contains("status: 'stopped'"), "{pretty}");
    assert!(pretty.contains("restart_time: 0"), "{pretty}");
    if pretty.trim_end() != want {
        let diff = pretty
            .lines()
            .zip(want.lines())
            .find(|(a, b)| a != b)
            .map(|(a, b)| format!("bm2:  {a}\nnode: {b}"));
        panic!("prettylist differs from util.inspect: {diff:?}\n{pretty}");
    }
}

#[test]
fn an_app_named_like_another_apps_instance_never_collides() {
    let env = TestEnv::new();
    worker_and_worker_1(&env);
    // id: the app's ids.
    assert_eq!(env.ok(&["id", "worker-1"]).trim(), "[2]");
    assert_eq!(env.ok(&["id", "worker"]).trim(), "[0,1]");
    // describe and logs of worker-1: the app only.
    let d: Vec<Value> = serde_json::from_str(&env.ok(&["describe", "worker-1", "--json"])).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["id"], 2);
    env.wait_for("worker-1's line", || {
        let logs = env.ok(&["logs", "worker-1", "--nostream", "--raw", "--out"]);
        (logs.trim() == "I am worker-1/0").then_some(())
    });
    // Log files: one per instance of worker, one for worker-1.
    let logs = env.logs_dir();
    for (file, line) in [
        ("worker-out-0.log", "I am worker/0"),
        ("worker-out-1.log", "I am worker/1"),
        ("worker-1-out.log", "I am worker-1/0"),
    ] {
        env.wait_for(&format!("{line} in {file}"), || {
            (fs::read_to_string(logs.join(file)).ok()?.trim() == line).then_some(())
        });
    }
    // The list shows each instance with its app's name.
    let table = env.ok(&["list"]);
    assert_eq!(table.matches("┆ worker-1 ").count(), 1, "{table}");
    assert_eq!(table.matches("┆ worker ").count(), 2, "{table}");
    // A regular expression matching the app name does not catch worker's instance 1.
    env.ok(&["stop", "/^worker-1$/"]);
    let statuses = || -> Vec<String> {
        env.list()
            .iter()
            .map(|p| p["status"].as_str().unwrap().to_string())
            .collect()
    };
    env.wait_for("id 2 stopped", || {
        (statuses()[2] == "stopped").then_some(())
    });
    assert_eq!(statuses(), ["online", "online", "stopped"]);
    env.ok(&["delete", "worker-1"]);
    assert_eq!(env.ok(&["id", "worker"]).trim(), "[0,1]");
    assert_eq!(env.list().len(), 2);
}

#[test]
fn default_log_files_are_named_as_pm2_names_them() {
    let env = TestEnv::new();
    env.script("app.sh", "echo hello\necho oops >&2\nexec sleep 1000\n");
    env.ok(&["start", "app.sh", "--name", "my_app v2"]);
    env.ok(&["start", "app.sh", "--name", "pool", "-i", "2"]);
    fs::create_dir(env.path("logs")).unwrap();
    env.ok(&[
        "start",
        "app.sh",
        "--name",
        "custom",
        "-o",
        "./logs/../logs/./custom.out",
    ]);
    let logs = env.logs_dir();
    for file in [
        "my-app-v2-out.log",
        "my-app-v2-error.log",
        "pool-out-1.log",
        "pool-error-1.log",
        "pool-out-2.log",
        "pool-error-2.log",
        "custom-error.log",
    ] {
        env.wait_for(&format!("{file} written"), || {
            fs::read_to_string(logs.join(file))
                .ok()
                .filter(|t| !t.is_empty())
        });
    }
    let j = env.jlist();
    let custom = j.iter().find(|p| p["name"] == "custom").unwrap();
    let want = fs::canonicalize(env.path("logs"))
        .unwrap()
        .join("custom.out");
    assert_eq!(
        custom["pm2_env"]["pm_out_log_path"],
        want.display().to_string()
    );
    env.wait_for("custom.out written", || {
        fs::read_to_string(&want).ok().filter(|t| t == "hello\n")
    });
}

#[test]
fn list_and_describe_fit_an_80_column_terminal() {
    let env = TestEnv::new();
    let long = "an-application-with-a-name-much-longer-than-usual";
    let script = format!("{long}-and-a-long-script-name-too.sh");
    env.script(&script, "exec sleep 1000\n");
    env.ok(&["start", &script, "--name", long]);
    env.wait_status(long, "online");
    env.ok(&["env", "set", long, "NEXT_KEY", "value"]);
    let run = |cols: &str, args: &[&str]| {
        let out = env.command(args).env("COLUMNS", cols).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    for args in [&["list"][..], &["describe", long]] {
        let narrow = run("80", args);
        let widest = narrow.lines().map(|l| l.chars().count()).max().unwrap();
        assert!(widest <= 80, "{args:?} is {widest} wide:\n{narrow}");
    }
    let narrow = run("80", &["list"]);
    assert!(
        !narrow.contains("namespace") && narrow.contains('…'),
        "{narrow}"
    );
    let wide = run("200", &["list"]);
    assert!(wide.contains("namespace") && wide.contains(long), "{wide}");
    // describe shows the variable set for the next start.
    let described = run("200", &["describe", long]);
    let pending = described
        .lines()
        .find(|l| l.contains("Pending Env"))
        .unwrap_or_else(|| panic!("no Pending Env row:\n{described}"));
    assert!(pending.contains("NEXT_KEY"), "{pending}");
}

#[test]
fn mini_list_prints_pm2s_minimal_list() {
    let env = TestEnv::new();
    env.start_sleeper("tiny");
    let out = env.ok(&["list", "-m"]);
    assert!(out.starts_with("+--- tiny\nnamespace : default\n"), "{out}");
    for line in [
        "pm2 id : 0",
        "status : online",
        "mode : fork",
        "watching : no",
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} not in:\n{out}");
    }
    // After an action, the list shown is the minimal one too.
    let out = env.ok(&["--mini-list", "restart", "tiny"]);
    assert!(out.contains("+--- tiny\n") && !out.contains('│'), "{out}");
}

#[test]
fn silent_prints_nothing_but_keeps_the_exit_code_and_jlist() {
    let env = TestEnv::new();
    env.script("app.sh", "exec sleep 1000\n");
    let (ok, out, err) = env.output(&["start", "app.sh", "-s"]);
    assert!(ok && out.is_empty() && err.is_empty(), "{out}{err}");
    let (ok, out, err) = env.output(&["-s", "stop", "nothing-like-this"]);
    assert!(!ok && out.is_empty() && err.is_empty(), "{out}{err}");
    let (ok, out, _) = env.output(&["jlist", "--silent"]);
    assert!(ok);
    let j: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(j[0]["name"], "app");
    // PM2_SILENT in the environment means -s, as in PM2.
    let out = env
        .command(&["stop", "app"])
        .env("PM2_SILENT", "true")
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "{out:?}"
    );
}

#[test]
fn no_color_turns_colours_off_on_a_terminal() {
    let env = TestEnv::new();
    env.start_sleeper("hue");
    // `script` gives bm2 a terminal for stdout.
    let on_tty = |extra: &str| {
        let cmd = format!("{} list {extra}", env!("CARGO_BIN_EXE_bm2"));
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .current_dir(env.dir.path())
            .env("BM2_HOME", env.home_path())
            .env_remove("NO_COLOR")
            .env("COLUMNS", "200")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = on_tty("");
    assert!(
        coloured.contains("\x1b["),
        "no colour on a terminal: {coloured:?}"
    );
    let plain = on_tty("--no-color");
    assert!(
        plain.contains("hue") && !plain.contains("\x1b["),
        "{plain:?}"
    );
}

#[test]
fn completion_scripts_complete_bm2s_commands() {
    let env = TestEnv::new();
    let bash = env.ok(&["completion", "bash"]);
    let file = env.file("bm2.bash", &bash);
    // Bash completes a partial command word from the generated function.
    let out = Command::new("bash")
        .args([
            "-c",
            "source \"$1\"; COMP_WORDS=(bm2 startOr); COMP_CWORD=1; _bm2 bm2 startOr bm2; \
             printf '%s\\n' \"${COMPREPLY[@]}\"",
            "bash",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let words = String::from_utf8(out.stdout).unwrap();
    let mut words: Vec<&str> = words.lines().collect();
    words.sort_unstable();
    assert_eq!(
        words,
        ["startOrGracefulReload", "startOrReload", "startOrRestart"]
    );
    let zsh = env.ok(&["completion", "zsh"]);
    assert!(
        zsh.starts_with("#compdef bm2") && zsh.contains("'jlist:"),
        "{zsh}"
    );
    let fish = env.ok(&["completion", "fish"]);
    assert!(
        fish.lines()
            .any(|l| l.starts_with("complete -c bm2") && l.contains("-a \"prettylist\"")),
        "{fish}"
    );
    assert!(env.fail(&["completion", "tcsh"]).contains("tcsh"));
}

#[test]
fn several_targets_with_an_unknown_one_act_on_the_known_ones() {
    let env = TestEnv::new();
    env.start_sleeper("a");
    env.start_sleeper("b");
    env.start_sleeper("c");
    let (ok, out, err) = env.output(&["stop", "a", "no-such-app", "b"]);
    assert!(
        !ok,
        "an unknown target fails the command, as in PM2:\n{out}"
    );
    assert!(err.contains("no-such-app"), "{err}");
    env.wait_status("a", "stopped");
    env.wait_status("b", "stopped");
    assert_eq!(env.proc("c")["status"], "online");
    let (ok, _, err) = env.output(&["delete", "ghost", "c"]);
    assert!(!ok && err.contains("ghost"), "{err}");
    assert_eq!(env.list().len(), 2);
    // With no known target at all, nothing is done and the error says so.
    let err = env.fail(&["restart", "ghost", "phantom"]);
    assert!(err.contains("ghost"), "{err}");
}

#[test]
fn start_or_graceful_reload_is_start_or_reload() {
    let env = TestEnv::new();
    env.script("app.sh", "exec sleep 1000\n");
    env.file(
        "ecosystem.json",
        r#"{"apps": [{"name": "eco", "script": "app.sh"}]}"#,
    );
    env.ok(&["startOrGracefulReload", "ecosystem.json"]);
    let pid = env.wait_status("eco", "online")["pid"].as_u64().unwrap();
    env.ok(&["startOrGracefulReload", "ecosystem.json"]);
    env.wait_new_pid("eco", pid);
}

#[test]
fn init_simple_writes_pm2s_simple_template() {
    let env = TestEnv::new();
    env.ok(&["init", "simple"]);
    let js = fs::read_to_string(env.path("ecosystem.config.js")).unwrap();
    assert_eq!(
        js,
        "module.exports = {\n  apps : [{\n    name   : \"app1\",\n    script : \"./app.js\"\n  }]\n}\n"
    );
    assert!(
        env.fail(&["ecosystem", "simple"])
            .contains("already exists")
    );
    env.file("app.js", "setInterval(() => {}, 1000);\n");
    env.ok(&["validate", "ecosystem.config.js"]);
    for format in ["yaml", "json", "toml", "ts"] {
        env.ok(&["ecosystem", "simple", "--format", format]);
    }
    for file in ["ecosystem.yaml", "ecosystem.json", "ecosystem.toml"] {
        env.ok(&["validate", file]);
    }
}
