//! `bm2 start` options: names, working directory, environment, interpreters, arguments,
//! namespaces, instances, duplicates and memory limits.

mod common;

use std::fs;
use std::process::Command;

use common::TestEnv;
use serde_json::Value;

/// A shell script that prints `line` and then stays up.
fn printing(line: &str) -> String {
    format!("echo \"{line}\"\nexec sleep 1000\n")
}

const SLEEPER: &str = "exec sleep 1000\n";

fn cpus() -> u64 {
    let out = Command::new("nproc").output().expect("run nproc");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("nproc prints a number")
}

fn statuses(env: &TestEnv) -> Vec<(String, String)> {
    env.list()
        .iter()
        .map(|p| {
            (
                p["instance_name"].as_str().unwrap().to_string(),
                p["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn default_name_is_the_script_file_stem() {
    let env = TestEnv::new();
    env.script("worker.sh", SLEEPER);
    env.ok(&["start", "worker.sh"]);
    let p = env.wait_status("worker", "online");
    assert_eq!(p["name"], "worker");
    assert_eq!(env.list().len(), 1);
}

#[test]
fn name_flag_names_the_app() {
    let env = TestEnv::new();
    env.script("worker.sh", SLEEPER);
    env.ok(&["start", "worker.sh", "--name", "api"]);
    let p = env.wait_status("api", "online");
    assert_eq!(p["name"], "api");
    assert!(env.list().iter().all(|p| p["name"] != "worker"));
}

#[test]
fn cwd_flag_sets_the_working_directory_of_the_app() {
    let env = TestEnv::new();
    fs::create_dir(env.path("sub")).unwrap();
    env.script("where.sh", "echo \"cwd=$(pwd -P)\"\nexec sleep 1000\n");
    env.ok(&["start", "where.sh", "--cwd", "sub"]);
    env.wait_status("where", "online");
    let sub = fs::canonicalize(env.path("sub")).unwrap();
    let log = env.wait_out("where", "cwd=");
    assert!(
        log.contains(&format!("cwd={}\n", sub.display())),
        "log: {log:?}, expected cwd {}",
        sub.display()
    );
    assert_eq!(
        env.describe("where")["spec"]["cwd"],
        sub.display().to_string()
    );
}

#[test]
fn env_flags_reach_the_app() {
    let env = TestEnv::new();
    env.script("vars.sh", &printing("A=$A B=$B"));
    env.ok(&["start", "vars.sh", "--env", "A=1", "--env", "B=two"]);
    env.wait_out("vars", "A=1 B=two");
    let d = env.describe("vars");
    assert_eq!(d["env"]["A"], "1");
    assert_eq!(d["env"]["B"], "two");
}

#[test]
fn app_inherits_the_environment_of_the_caller() {
    let env = TestEnv::new();
    env.script("inherit.sh", &printing("inherited=$BM2_TEST_INHERITED"));
    let out = env
        .command(&["start", "inherit.sh"])
        .env("BM2_TEST_INHERITED", "from-the-caller")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "start failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.wait_out("inherit", "inherited=from-the-caller");
}

#[test]
fn py_script_runs_with_python3() {
    let env = TestEnv::new();
    env.file(
        "snake.py",
        "import sys, time\nopen('ran-py', 'w').write('python %d\\n' % sys.version_info[0])\ntime.sleep(1000)\n",
    );
    env.ok(&["start", "snake.py"]);
    env.wait_status("snake", "online");
    assert_eq!(env.wait_marker("ran-py"), "python 3\n");
    assert_eq!(env.describe("snake")["interpreter"], "python3");
}

#[test]
fn sh_script_runs_with_bash() {
    let env = TestEnv::new();
    env.file(
        "shell.sh",
        "echo \"bash $BASH_VERSION\" > ran-sh\nexec sleep 1000\n",
    );
    env.ok(&["start", "shell.sh"]);
    env.wait_status("shell", "online");
    let marker = env.wait_marker("ran-sh");
    assert!(
        marker.starts_with("bash ") && marker.trim().len() > "bash".len(),
        "marker: {marker:?}"
    );
    assert_eq!(env.describe("shell")["interpreter"], "bash");
}

#[test]
fn js_script_runs_with_node() {
    let env = TestEnv::new();
    env.file(
        "server.js",
        "require('fs').writeFileSync('ran-js', 'node ' + process.version + '\\n');\nsetInterval(() => {}, 1000);\n",
    );
    env.ok(&["start", "server.js"]);
    env.wait_status("server", "online");
    let marker = env.wait_marker("ran-js");
    assert!(marker.starts_with("node v"), "marker: {marker:?}");
    assert_eq!(env.describe("server")["interpreter"], "node");
}

#[test]
fn interpreter_none_runs_an_executable_file_directly() {
    let env = TestEnv::new();
    // A .py name, but really a shell script: only a direct exec (shebang) can run it.
    env.script(
        "direct.py",
        "#!/bin/sh\necho direct > ran-direct\nexec sleep 1000\n",
    );
    env.ok(&["start", "direct.py", "--interpreter", "none"]);
    env.wait_status("direct", "online");
    assert_eq!(env.wait_marker("ran-direct"), "direct\n");
    let d = env.describe("direct");
    assert!(
        d["interpreter"].is_null(),
        "interpreter: {}",
        d["interpreter"]
    );
}

#[test]
fn interpreter_flag_runs_a_file_without_extension() {
    let env = TestEnv::new();
    env.file(
        "job",
        "import time\nopen('ran-job', 'w').write('job\\n')\ntime.sleep(1000)\n",
    );
    env.ok(&["start", "job", "--interpreter", "python3"]);
    env.wait_status("job", "online");
    assert_eq!(env.wait_marker("ran-job"), "job\n");
    assert_eq!(env.describe("job")["interpreter"], "python3");
}

#[test]
fn node_args_reach_the_node_runtime() {
    let env = TestEnv::new();
    env.file(
        "args.js",
        "console.log('execArgv=' + JSON.stringify(process.execArgv));\nsetInterval(() => {}, 1000);\n",
    );
    env.ok(&[
        "start",
        "args.js",
        "--node-args",
        "--max-old-space-size=100",
    ]);
    env.wait_out(
        "args",
        r#"execArgv=["--enable-source-maps","--max-old-space-size=100"]"#,
    );
    assert_eq!(
        env.describe("args")["spec"]["node_args"],
        serde_json::json!(["--max-old-space-size=100"])
    );
}

#[test]
fn interpreter_args_reach_the_interpreter() {
    let env = TestEnv::new();
    env.file(
        "xopt.py",
        "import sys, time\nprint('xopt=' + str(sys._xoptions.get('bm2test')), flush=True)\ntime.sleep(1000)\n",
    );
    env.ok(&["start", "xopt.py", "--interpreter-args", "-X bm2test=yes"]);
    env.wait_out("xopt", "xopt=yes\n");
}

#[test]
fn script_args_after_double_dash_reach_the_app() {
    let env = TestEnv::new();
    env.script(
        "argv.sh",
        "for a in \"$@\"; do echo \"arg:$a\"; done\necho done\nexec sleep 1000\n",
    );
    env.ok(&["start", "argv.sh", "--", "one", "two words", "--flag"]);
    let log = env.wait_out("argv", "done\n");
    assert_eq!(log, "arg:one\narg:two words\narg:--flag\ndone\n");
    assert_eq!(
        env.describe("argv")["spec"]["args"],
        serde_json::json!(["one", "two words", "--flag"])
    );
}

#[test]
fn program_on_path_runs() {
    let env = TestEnv::new();
    env.ok(&["start", "sleep", "--", "1000"]);
    let p = env.wait_status("sleep", "online");
    let pid = p["pid"].as_u64().unwrap();
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert!(
        argv[0].ends_with("sleep") && argv[1..] == ["1000"],
        "argv: {argv:?}"
    );
    assert!(env.describe("sleep")["interpreter"].is_null());
}

#[test]
fn stop_namespace_stops_only_that_namespace() {
    let env = TestEnv::new();
    env.script("app.sh", SLEEPER);
    env.ok(&["start", "app.sh", "--name", "a", "--namespace", "ns1"]);
    env.ok(&["start", "app.sh", "--name", "b", "--namespace", "ns1"]);
    env.ok(&["start", "app.sh", "--name", "c"]);
    assert_eq!(env.proc("a")["namespace"], "ns1");
    assert_eq!(env.proc("c")["namespace"], "default");
    env.ok(&["stop", "ns1"]);
    env.wait_status("a", "stopped");
    env.wait_status("b", "stopped");
    assert_eq!(
        env.proc("c")["status"],
        "online",
        "list: {:?}",
        statuses(&env)
    );
}

/// Starts app `w` with three instances and waits until they are online.
fn three_instances(env: &TestEnv) {
    env.script("w.sh", &printing("instance=$NODE_APP_INSTANCE"));
    env.ok(&["start", "w.sh", "-i", "3"]);
    for i in 0..3 {
        env.wait_status(&format!("w-{i}"), "online");
    }
}

#[test]
fn instances_are_named_and_numbered() {
    let env = TestEnv::new();
    three_instances(&env);
    let list = env.list();
    assert_eq!(list.len(), 3);
    for i in 0..3u64 {
        let name = format!("w-{i}");
        let p = env.proc(&name);
        assert_eq!(p["name"], "w");
        assert_eq!(p["instance"], i);
        let d = env.describe(&name);
        assert_eq!(d["env"]["NODE_APP_INSTANCE"], i.to_string());
        assert_eq!(d["instances"], 3);
        env.wait_out(&name, &format!("instance={i}\n"));
    }
}

#[test]
fn stop_by_app_name_stops_every_instance() {
    let env = TestEnv::new();
    three_instances(&env);
    env.ok(&["stop", "w"]);
    for i in 0..3 {
        env.wait_status(&format!("w-{i}"), "stopped");
    }
    assert!(env.app_pids().is_empty(), "left: {:?}", env.app_pids());
}

#[test]
fn stop_by_instance_name_stops_only_that_instance() {
    let env = TestEnv::new();
    three_instances(&env);
    env.ok(&["stop", "w-1"]);
    env.wait_status("w-1", "stopped");
    assert_eq!(
        env.proc("w-0")["status"],
        "online",
        "list: {:?}",
        statuses(&env)
    );
    assert_eq!(
        env.proc("w-2")["status"],
        "online",
        "list: {:?}",
        statuses(&env)
    );
}

#[test]
fn stop_by_id_stops_only_that_instance() {
    let env = TestEnv::new();
    three_instances(&env);
    let id = env.proc("w-2")["id"].as_u64().unwrap().to_string();
    env.ok(&["stop", &id]);
    env.wait_status("w-2", "stopped");
    assert_eq!(
        env.proc("w-0")["status"],
        "online",
        "list: {:?}",
        statuses(&env)
    );
    assert_eq!(
        env.proc("w-1")["status"],
        "online",
        "list: {:?}",
        statuses(&env)
    );
}

#[test]
fn instances_max_runs_one_per_cpu() {
    let env = TestEnv::new();
    env.script("w.sh", SLEEPER);
    env.ok(&["start", "w.sh", "-i", "max"]);
    let list = env.list();
    assert_eq!(list.len() as u64, cpus(), "list: {list:?}");
    assert!(list.iter().all(|p| p["name"] == "w"));
}

#[test]
fn instances_minus_one_runs_cpus_minus_one() {
    let env = TestEnv::new();
    env.script("w.sh", SLEEPER);
    env.ok(&["start", "w.sh", "-i", "-1"]);
    let list = env.list();
    assert_eq!(list.len() as u64, (cpus() - 1).max(1), "list: {list:?}");
    assert!(list.iter().all(|p| p["name"] == "w"));
}

#[test]
fn starting_a_managed_name_again_fails_and_starts_nothing() {
    let env = TestEnv::new();
    env.script("dup.sh", SLEEPER);
    env.ok(&["start", "dup.sh"]);
    env.wait_status("dup", "online");
    let before = env.app_pids();
    let err = env.fail(&["start", "dup.sh"]);
    assert!(err.contains("already"), "stderr: {err}");
    assert_eq!(env.list().len(), 1);
    assert_eq!(env.app_pids(), before);
}

#[test]
fn force_starts_a_second_copy() {
    let env = TestEnv::new();
    env.script("dup.sh", SLEEPER);
    env.ok(&["start", "dup.sh"]);
    env.ok(&["start", "dup.sh", "-f"]);
    let list = env.list();
    assert_eq!(list.len(), 2, "list: {list:?}");
    assert!(
        list.iter()
            .all(|p| p["name"] == "dup" && p["status"] == "online"),
        "list: {list:?}"
    );
    let pids: Vec<&Value> = list.iter().map(|p| &p["pid"]).collect();
    assert_ne!(pids[0], pids[1]);
    assert_ne!(list[0]["id"], list[1]["id"]);
}

#[test]
fn max_memory_restart_is_recorded() {
    let env = TestEnv::new();
    env.script("mem.sh", SLEEPER);
    env.ok(&["start", "mem.sh", "--max-memory-restart", "512M"]);
    assert_eq!(
        env.describe("mem")["spec"]["max_memory_restart"],
        536_870_912u64
    );
    let j = env.jlist();
    assert_eq!(j[0]["pm2_env"]["max_memory_restart"], 536_870_912u64);
}

#[test]
fn uid_and_gid_run_the_app_as_another_user() {
    let env = TestEnv::new();
    let is_root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    if !is_root {
        // Only root may switch users.
        eprintln!("skipped: switching users needs root");
        return;
    }
    // The work directory is private to root, so the app runs from /tmp.
    env.script("who.sh", &printing("uid=$(id -u) gid=$(id -g)"));
    env.ok(&[
        "start", "who.sh", "--cwd", "/tmp", "--uid", "nobody", "--gid", "nogroup",
    ]);
    let expected_uid = String::from_utf8(
        Command::new("id")
            .args(["-u", "nobody"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let expected_gid = String::from_utf8(
        Command::new("getent")
            .args(["group", "nogroup"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let gid = expected_gid.split(':').nth(2).unwrap().to_string();
    env.wait_out("who", &format!("uid={} gid={gid}", expected_uid.trim()));
}

#[test]
fn node_under_another_name_is_still_node() {
    // `nodejs` (Debian's name) gets what node gets: source maps by default.
    let env = TestEnv::new();
    let node = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| std::path::Path::new(d).join("node"))
        .find(|p| p.is_file())
        .expect("node on PATH");
    let nodejs = env.path("nodejs");
    std::os::unix::fs::symlink(&node, &nodejs).unwrap();
    env.file(
        "args.js",
        "console.log('execArgv=' + JSON.stringify(process.execArgv));\nsetInterval(() => {}, 1000);\n",
    );
    env.ok(&[
        "start",
        "args.js",
        "--interpreter",
        nodejs.to_str().unwrap(),
    ]);
    env.wait_out("args", r#"execArgv=["--enable-source-maps"]"#);
}
