//! PM2 ecosystem files as real projects ship them (`tests/pm2_files/`), each started for real and
//! checked through the list, describe and the app's own view (argv, execArgv, cwd, env, written
//! by `tests/pm2_files/probe.js`), and the start-path behaviours PM2 users rely on.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::TestEnv;
use serde_json::Value;

/// Copies the corpus into the work directory: `<work>/probe.js`, `<work>/<case>/...`.
fn corpus(env: &TestEnv) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pm2_files");
    copy_dir(&src, env.dir.path());
    fs::create_dir_all(env.path("views")).unwrap();
    fs::canonicalize(env.dir.path()).unwrap()
}

fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for entry in fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            fs::copy(entry.path(), &to).unwrap();
        }
    }
}

/// Runs bm2 from `<work>/<sub>` with the probe's view directory set.
fn run_in(env: &TestEnv, sub: &str, args: &[&str]) -> Output {
    env.command(args)
        .current_dir(env.path(sub))
        .env("BM2_TEST_VIEWS", env.path("views"))
        .output()
        .expect("run bm2")
}

/// [`run_in`], asserting success; returns stdout and stderr together.
fn ok_in(env: &TestEnv, sub: &str, args: &[&str]) -> String {
    let out = run_in(env, sub, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "bm2 {args:?} in {sub} failed:\n{text}"
    );
    text
}

/// Every view the probes wrote so far.
fn views(env: &TestEnv) -> Vec<Value> {
    let Ok(dir) = fs::read_dir(env.path("views")) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let p = e.ok()?.path();
        if p.extension()? != "json" {
            return None;
        }
        serde_json::from_str(&fs::read_to_string(p).ok()?).ok()
    })
    .collect()
}

/// Waits for a view whose script (`argv[1]`) ends with `script`.
fn view_of(env: &TestEnv, script: &str) -> Value {
    env.wait_for(&format!("a view of {script}"), || {
        views(env)
            .into_iter()
            .find(|v| v["argv"][1].as_str().is_some_and(|a| a.ends_with(script)))
    })
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn rows(env: &TestEnv, app: &str) -> Vec<Value> {
    env.list()
        .into_iter()
        .filter(|p| p["name"] == app)
        .collect()
}

#[test]
fn a_config_kept_in_a_subdirectory_runs_from_the_project_root() {
    let env = TestEnv::new();
    let root = corpus(&env);
    let out = ok_in(
        &env,
        "config_dir",
        &["start", "config/ecosystem.config.js", "--env", "production"],
    );
    // What the config printed is shown, and did not break reading it.
    assert!(out.contains("loading the ecosystem config"), "{out}");
    // instances without exec_mode: cluster mode, for a Node script.
    let web = rows(&env, "web");
    assert_eq!(web.len(), 2, "{web:?}");
    assert!(web.iter().all(|r| r["exec_mode"] == "cluster"), "{web:?}");
    let view = view_of(&env, "config_dir/server.js");
    assert_eq!(
        view["argv"][1],
        root.join("config_dir/server.js").display().to_string()
    );
    assert_eq!(view["cwd"], root.join("config_dir").display().to_string());
    let e = &view["env"];
    // process.env of the config reaches the app; objects are JSON-stringified.
    assert_eq!(e["SECRET_FROM_DOTENV"], "s3cret");
    assert_eq!(e["FEATURES"], r#"{"search":true,"beta":false}"#);
    assert_eq!(e["HOSTS"], r#"["a.example","b.example"]"#);
    // deploy.production.env < env < env_production.
    assert_eq!(e["DEPLOYED"], "yes");
    assert_eq!(e["NODE_ENV"], "production");
}

#[test]
fn an_extensionless_node_script_runs_with_node_and_its_node_args() {
    let env = TestEnv::new();
    let root = corpus(&env);
    ok_in(&env, "bin_www", &["start", "ecosystem.config.js"]);
    let view = view_of(&env, "bin_www/bin/www");
    assert!(
        strs(&view["execArgv"]).contains(&"--max-old-space-size=96".to_string()),
        "{view}"
    );
    assert_eq!(view["cwd"], root.join("bin_www").display().to_string());
    let app = rows(&env, "express-app");
    assert_eq!(app.len(), 2, "{app:?}");
    assert!(app.iter().all(|r| r["exec_mode"] == "cluster"), "{app:?}");
}

#[test]
fn npm_start_runs_npm_with_node() {
    let env = TestEnv::new();
    let root = corpus(&env);
    ok_in(&env, "npm_start", &["start", "ecosystem.config.js"]);
    let view = view_of(&env, "server.js");
    assert_eq!(view["cwd"], root.join("npm_start").display().to_string());
    let d = env.describe("npm-app");
    assert!(
        d["interpreter"]
            .as_str()
            .is_some_and(|i| i.ends_with("node")),
        "{d}"
    );
    // npm itself runs in node (npm renames its process, so its command line says `npm start`).
    let pid = env.wait_status("npm-app", "online")["pid"]
        .as_u64()
        .unwrap();
    let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(exe.display().to_string().ends_with("node"), "{exe:?}");
    assert_eq!(d["spec"]["node_args"], serde_json::json!(["--no-warnings"]));
}

#[test]
fn a_script_with_spaces_runs_through_a_shell_in_a_cwd_from_the_command_directory() {
    let env = TestEnv::new();
    let root = corpus(&env);
    ok_in(&env, ".", &["start", "shell_cmd/ecosystem.json"]);
    let view = view_of(&env, "probe.js");
    assert!(
        strs(&view["argv"]).contains(&"--from-shell".to_string()),
        "{view}"
    );
    assert_eq!(view["cwd"], root.join("shell_cmd").display().to_string());
    assert_eq!(env.wait_status("cmd", "online")["name"], "cmd");
}

#[test]
fn a_relative_interpreter_resolves_in_the_cwd_and_home_in_log_paths_expands() {
    let env = TestEnv::new();
    let root = corpus(&env);
    let home = tempfile::tempdir().unwrap();
    let out = env
        .command(&["start", "interp/ecosystem.json"])
        .current_dir(env.dir.path())
        .env("BM2_TEST_VIEWS", env.path("views"))
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view = view_of(&env, "probe.js");
    assert_eq!(view["env"]["VIA_WRAPPER"], "yes", "{view}");
    assert_eq!(view["cwd"], root.join("interp").display().to_string());
    let d = env.describe("venv-app");
    let expected = home.path().join("pm2-logs/venv-app.out.log");
    assert_eq!(d["out_log"], expected.display().to_string(), "{d}");
    env.wait_for("the ~ log file", || expected.is_file().then_some(()));
}

#[test]
fn a_directory_as_script_runs_its_package_main() {
    let env = TestEnv::new();
    let root = corpus(&env);
    ok_in(&env, "dir_script", &["start", "ecosystem.json"]);
    let view = view_of(&env, "api/lib/main.js");
    assert_eq!(
        view["argv"][1],
        root.join("dir_script/api/lib/main.js")
            .display()
            .to_string()
    );
}

#[test]
fn json_files_are_read_as_javascript_object_literals_with_every_pm2_key() {
    let env = TestEnv::new();
    let root = corpus(&env);
    let notes = ok_in(&env, "json5", &["validate", "ecosystem.json"]);
    for said in ["usePolling", "name_prefix", "error"] {
        assert!(notes.contains(said), "{said} not noted:\n{notes}");
    }
    assert!(
        !notes.contains("pid_file"),
        "pid_file has its effect:\n{notes}"
    );
    ok_in(&env, "json5", &["start", "ecosystem.json"]);
    let view = view_of(&env, "json5/worker.js");
    assert_eq!(view["env"]["MODE"], "json5");
    let d = env.describe("worker");
    let dir = root.join("json5");
    // pid_file, with the id before .pid as PM2 names it.
    let pid_file = dir.join(format!("worker-{}.pid", d["id"]));
    let written = env.wait_for("the pid file", || fs::read_to_string(&pid_file).ok());
    assert_eq!(written, d["pid"].to_string());
    assert_eq!(
        d["out_log"],
        dir.join("worker.out.log").display().to_string()
    );
    assert_eq!(
        d["err_log"],
        dir.join("worker.err.log").display().to_string()
    );
}

#[test]
fn a_json_error_names_the_key_and_its_line() {
    let env = TestEnv::new();
    env.file(
        "bad.json",
        "{\n  // comment\n  apps: [{\n    name: 'x',\n    script: 'x.js',\n    instances: 'four',\n  }],\n}\n",
    );
    let err = env.fail(&["validate", "bad.json"]);
    assert!(err.contains("bad.json:6"), "{err}");
    assert!(err.contains("apps[0].instances"), "{err}");
}

#[test]
fn env_forms_missing_env_file_and_unknown_env_name_are_noted() {
    let env = TestEnv::new();
    corpus(&env);
    let out = ok_in(
        &env,
        "env_forms",
        &["start", "ecosystem.json", "--env", "staging"],
    );
    assert!(out.contains(".env.local"), "{out}");
    assert!(out.contains("env_staging"), "{out}");
    let view = view_of(&env, "env_forms/app.js");
    assert_eq!(view["env"]["OBJ"], r#"{"a":1}"#);
    assert_eq!(view["env"]["ARR"], r#"[1,"two"]"#);
    assert_eq!(view["env"]["NUM"], "3");
}

#[test]
fn a_missing_cwd_is_reported_before_anything_is_created() {
    let env = TestEnv::new();
    env.file(
        "eco.json",
        r#"{"apps": [{"name": "x", "script": "x.js", "cwd": "nope"}]}"#,
    );
    let err = env.fail(&["start", "eco.json"]);
    assert!(err.contains("apps[0].cwd") && err.contains("nope"), "{err}");
    assert!(env.daemon_pid().is_none(), "a daemon was started");
}

#[test]
fn flags_override_the_values_of_a_file() {
    let env = TestEnv::new();
    corpus(&env);
    ok_in(
        &env,
        "dir_script",
        &[
            "start",
            "ecosystem.json",
            "--node-args=--max-old-space-size=80",
            "--namespace",
            "flagged",
        ],
    );
    let view = view_of(&env, "api/lib/main.js");
    assert!(
        strs(&view["execArgv"]).contains(&"--max-old-space-size=80".to_string()),
        "{view}"
    );
    assert_eq!(env.proc("api")["namespace"], "flagged");
}

#[test]
fn several_scripts_start_in_one_command() {
    let env = TestEnv::new();
    corpus(&env);
    fs::write(env.path("a.js"), "require('./probe.js');\n").unwrap();
    fs::write(env.path("b.js"), "require('./probe.js');\n").unwrap();
    ok_in(&env, ".", &["start", "a.js", "b.js"]);
    env.wait_status("a", "online");
    env.wait_status("b", "online");
}

#[test]
fn start_of_a_stopped_script_starts_it_and_start_of_an_app_applies_options() {
    let env = TestEnv::new();
    corpus(&env);
    fs::write(env.path("x.js"), "require('./probe.js');\n").unwrap();
    ok_in(&env, ".", &["start", "x.js", "--name", "api"]);
    env.wait_status("api", "online");
    ok_in(&env, ".", &["stop", "api"]);
    env.wait_status("api", "stopped");
    // PM2: `start <script>` of its stopped app starts it.
    ok_in(&env, ".", &["start", "x.js", "--name", "api"]);
    let pid = env.wait_status("api", "online")["pid"].as_u64().unwrap();

    // Options given with the name of a managed app are applied to it.
    ok_in(
        &env,
        ".",
        &["start", "api", "--node-args=--max-old-space-size=72"],
    );
    let view = view_of_pid(&env, env.wait_new_pid("api", pid));
    assert!(
        strs(&view["execArgv"]).contains(&"--max-old-space-size=72".to_string()),
        "{view}"
    );
    // --name renames it.
    ok_in(&env, ".", &["start", "api", "--name", "api2"]);
    env.wait_status("api2", "online");
    assert!(rows(&env, "api").is_empty(), "{:?}", env.list());
}

#[test]
fn pm2_short_flags() {
    let env = TestEnv::new();
    corpus(&env);
    fs::write(env.path("x.js"), "require('./probe.js');\n").unwrap();
    // -x: fork mode even with -i; -c: cron restart; -k: kill timeout.
    ok_in(
        &env,
        ".",
        &[
            "start",
            "x.js",
            "-i",
            "2",
            "-x",
            "-c",
            "0 3 * * *",
            "-k",
            "1500",
        ],
    );
    let x = rows(&env, "x");
    assert_eq!(x.len(), 2, "{x:?}");
    assert!(x.iter().all(|r| r["exec_mode"] == "fork"), "{x:?}");
    let spec = &env.describe("x-0")["spec"];
    assert_eq!(spec["cron_restart"], "0 3 * * *");
    assert_eq!(spec["kill_timeout"], 1500);
}

#[test]
fn app_flags_pm2_has() {
    let env = TestEnv::new();
    corpus(&env);
    fs::write(env.path("x.js"), "require('./probe.js');\n").unwrap();
    ok_in(
        &env,
        ".",
        &[
            "start",
            "x.js",
            "--source-map-support",
            "--filter-env",
            "SECRET_",
            "--instance-var",
            "INST",
            "--no-treekill",
        ],
    );
    let spec = &env.describe("x")["spec"];
    assert_eq!(spec["source_map_support"], true);
    assert_eq!(spec["filter_env"], serde_json::json!(["SECRET_"]));
    assert_eq!(spec["instance_var"], "INST");
    assert_eq!(spec["treekill"], false);
    let view = view_of(&env, "x.js");
    assert!(
        strs(&view["execArgv"]).contains(&"--enable-source-maps".to_string()),
        "{view}"
    );
    assert_eq!(view["env"]["INST"], "0");
}

#[test]
fn pid_file_gets_each_instance_pid_with_its_id_as_in_pm2() {
    // Its directory does not exist: it is created, as PM2 creates it.
    let env = TestEnv::new();
    env.file(
        "ecosystem.config.js",
        "module.exports = { apps: [{ name: 'api', script: 'sleep', args: '1000', \
         interpreter: 'none', instances: 2, pid_file: './run/api.pid' }] };\n",
    );
    env.ok(&["start", "ecosystem.config.js"]);
    for (index, id) in [("0", 0), ("1", 1)] {
        let name = format!("api-{index}");
        env.wait_status(&name, "online");
        let pid = env.proc(&name)["pid"].as_u64().unwrap();
        let path = env.path(&format!("run/api-{id}.pid"));
        let written = env.wait_for(&format!("{}", path.display()), || {
            fs::read_to_string(&path).ok().filter(|s| !s.is_empty())
        });
        assert_eq!(written.trim(), pid.to_string(), "{}", path.display());
    }
    let validate = env.ok(&["validate", "ecosystem.config.js"]);
    assert!(
        !validate.contains("pid_file"),
        "no note for pid_file: {validate}"
    );
}

#[test]
fn validate_points_out_what_will_not_run_as_written() {
    let env = TestEnv::new();
    env.file("server.py", "print('hi')\n");
    env.file(
        "ecosystem.config.js",
        "module.exports = { apps: [\n\
         { name: 'py', script: 'server.py', instances: 2, exec_mode: 'cluster' },\n\
         { name: 'gone', script: 'missing.js' },\n\
         { name: 'fine', script: 'server.py', instances: 2, exec_mode: 'cluster', port: 8000 },\n\
         ] };\n",
    );
    let out = env.run(&["validate", "ecosystem.config.js"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("apps[0].exec_mode (py)") && stderr.contains("nothing is balanced"),
        "{stderr}"
    );
    assert!(
        stderr.contains("apps[1].script (gone)") && stderr.contains("missing.js"),
        "{stderr}"
    );
    assert!(!stderr.contains("(fine)"), "{stderr}");
}

/// Waits for the view written by the process `pid`.
fn view_of_pid(env: &TestEnv, pid: u64) -> Value {
    let file = env.path("views").join(format!("{pid}.json"));
    env.wait_for(&format!("the view of pid {pid}"), || {
        serde_json::from_str(&fs::read_to_string(&file).ok()?).ok()
    })
}

#[test]
fn restart_and_reload_of_an_app_apply_options() {
    let env = TestEnv::new();
    corpus(&env);
    fs::write(env.path("x.js"), "require('./probe.js');\n").unwrap();
    ok_in(&env, ".", &["start", "x.js", "--name", "api"]);
    let pid = env.wait_status("api", "online")["pid"].as_u64().unwrap();

    // PM2: `restart <name> --node-args=...` restarts it with the new options.
    ok_in(
        &env,
        ".",
        &["restart", "api", "--node-args=--max-old-space-size=72"],
    );
    let pid = env.wait_new_pid("api", pid);
    let view = view_of_pid(&env, pid);
    assert!(
        strs(&view["execArgv"]).contains(&"--max-old-space-size=72".to_string()),
        "{view}"
    );

    // And `reload <name>` with options reloads it with them.
    ok_in(
        &env,
        ".",
        &[
            "reload",
            "api",
            "--max-memory-restart",
            "300M",
            "--cron-restart",
            "0 3 * * *",
        ],
    );
    let pid = env.wait_new_pid("api", pid);
    let spec = &env.describe("api")["spec"];
    assert_eq!(spec["max_memory_restart"], 300 * 1024 * 1024, "{spec}");
    assert_eq!(spec["cron_restart"], "0 3 * * *", "{spec}");
    // The options given before are kept.
    let view = view_of_pid(&env, pid);
    assert!(
        strs(&view["execArgv"]).contains(&"--max-old-space-size=72".to_string()),
        "{view}"
    );

    // --name renames the app on restart.
    ok_in(&env, ".", &["restart", "api", "--name", "api2"]);
    env.wait_status("api2", "online");
    assert!(rows(&env, "api").is_empty(), "{:?}", env.list());

    // Options mean nothing to stop and delete: refused, not ignored.
    let out = run_in(&env, ".", &["stop", "api2", "--node-args=--inspect"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("start, restart and reload"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.wait_status("api2", "online");
}

#[test]
fn reload_update_env_applies_the_new_environment() {
    let env = TestEnv::new();
    corpus(&env);
    fs::write(env.path("x.js"), "require('./probe.js');\n").unwrap();
    let mut cmd = env.command(&["start", "x.js"]);
    cmd.current_dir(env.path("."))
        .env("BM2_TEST_VIEWS", env.path("views"))
        .env("BM2_TEST_GREETING", "one");
    assert!(cmd.output().unwrap().status.success());
    let pid = env.wait_status("x", "online")["pid"].as_u64().unwrap();
    assert_eq!(view_of_pid(&env, pid)["env"]["BM2_TEST_GREETING"], "one");

    // Without --update-env the app keeps the environment it started with.
    let mut cmd = env.command(&["reload", "x"]);
    cmd.env("BM2_TEST_GREETING", "two");
    assert!(cmd.output().unwrap().status.success());
    let pid = env.wait_new_pid("x", pid);
    assert_eq!(view_of_pid(&env, pid)["env"]["BM2_TEST_GREETING"], "one");

    // With it, as `restart --update-env`, the new environment is applied.
    let mut cmd = env.command(&["reload", "x", "--update-env"]);
    cmd.env("BM2_TEST_GREETING", "three")
        .env("BM2_TEST_VIEWS", env.path("views"));
    assert!(cmd.output().unwrap().status.success());
    let pid = env.wait_new_pid("x", pid);
    assert_eq!(view_of_pid(&env, pid)["env"]["BM2_TEST_GREETING"], "three");
}

#[test]
fn restart_and_reload_of_a_file_apply_its_env() {
    let env = TestEnv::new();
    corpus(&env);
    let file = |greeting: &str| {
        format!(
            "module.exports = {{ apps: [{{ name: 'greeter', script: './probe.js', \
             env: {{ GREETING: '{greeting}' }}, env_production: {{ GREETING: 'prod' }} }}] }};\n"
        )
    };
    fs::write(env.path("ecosystem.config.js"), file("one")).unwrap();
    ok_in(&env, ".", &["start", "ecosystem.config.js"]);
    let pid = env.wait_status("greeter", "online")["pid"]
        .as_u64()
        .unwrap();
    assert_eq!(view_of_pid(&env, pid)["env"]["GREETING"], "one");

    // PM2 applies the file's env when it restarts or reloads the file's apps.
    fs::write(env.path("ecosystem.config.js"), file("two")).unwrap();
    ok_in(&env, ".", &["restart", "ecosystem.config.js"]);
    let pid = env.wait_new_pid("greeter", pid);
    assert_eq!(view_of_pid(&env, pid)["env"]["GREETING"], "two");

    ok_in(
        &env,
        ".",
        &["reload", "ecosystem.config.js", "--env", "production"],
    );
    let pid = env.wait_new_pid("greeter", pid);
    assert_eq!(view_of_pid(&env, pid)["env"]["GREETING"], "prod");
}

#[test]
fn a_numeric_name_is_allowed_and_a_number_targets_an_id() {
    let env = TestEnv::new();
    corpus(&env);
    fs::write(env.path("x.js"), "require('./probe.js');\n").unwrap();
    // PM2 accepts any string as a name; a number given as a target is an id.
    ok_in(&env, ".", &["start", "x.js", "--name", "1"]);
    ok_in(&env, ".", &["start", "x.js", "--name", "other"]);
    assert_eq!(env.wait_status("1", "online")["id"], 0);
    assert_eq!(env.wait_status("other", "online")["id"], 1);
    ok_in(&env, ".", &["stop", "1"]);
    env.wait_status("other", "stopped");
    assert_eq!(env.proc("1")["status"], "online");
    // The app named 1 is reached by a regex (or its namespace, or all).
    ok_in(&env, ".", &["stop", "/^1$/"]);
    env.wait_status("1", "stopped");
}
