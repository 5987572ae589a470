//! Ecosystem files and the environment of apps, through the real binary: formats, `--env
//! <name>`, `--only`, file targets, `--update-env`, the env store, `--env-file`, stdin configs,
//! errors, `validate`, `ecosystem`/`init`, `schema`, and the instance variables.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};

use common::TestEnv;
use serde_json::Value;

/// A shell script that prints the variables named in `vars` on one line, then stays up.
fn show(vars: &[&str]) -> String {
    let line: Vec<String> = vars.iter().map(|v| format!("{v}=${v}")).collect();
    format!("echo \"{}\"\nexec sleep 1000\n", line.join(" "))
}

/// The environment of a live process, from `/proc/<pid>/environ`.
fn environ(pid: u64) -> BTreeMap<String, String> {
    let bytes = fs::read(format!("/proc/{pid}/environ")).expect("read environ");
    bytes
        .split(|b| *b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// The pid of the online instance `name`.
fn online_pid(env: &TestEnv, name: &str) -> u64 {
    env.wait_status(name, "online")["pid"]
        .as_u64()
        .expect("an online process has a pid")
}

/// The environment of the online instance `name`.
fn env_of(env: &TestEnv, name: &str) -> BTreeMap<String, String> {
    environ(online_pid(env, name))
}

fn instance_names(env: &TestEnv) -> Vec<String> {
    let mut names: Vec<String> = env
        .list()
        .iter()
        .map(|p| p["instance_name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// Runs a prepared bm2 command, asserting success; returns (stdout, stderr).
fn ok_cmd(mut cmd: Command) -> (String, String) {
    let out = cmd.output().expect("run bm2");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    (stdout, stderr)
}

const PM2_STYLE: &str = r#"// A PM2 ecosystem file, as PM2 users write them.
module.exports = {
  apps: [
    {
      name: "api",
      script: "./show.sh",
      env: { NODE_ENV: "development", PORT: 3000, ROLE: "api" },
      env_production: { NODE_ENV: "production", PORT: 80 },
    },
    {
      name: "worker",
      script: "show.sh",
      env: { NODE_ENV: "development", ROLE: "worker" },
      env_production: { NODE_ENV: "production" },
    },
    {
      name: "mailer",
      script: "show.sh",
      instances: 1,
      env: { NODE_ENV: "development", ROLE: "mailer" },
      env_production: { NODE_ENV: "production" },
    },
  ],
};
"#;

#[test]
fn pm2_style_js_config_with_env_production() {
    let env = TestEnv::new();
    env.script("show.sh", &show(&["ROLE", "NODE_ENV", "PORT"]));
    env.file("ecosystem.config.js", PM2_STYLE);
    env.ok(&["start", "ecosystem.config.js", "--env", "production"]);
    assert_eq!(instance_names(&env), ["api", "mailer", "worker"]);
    env.wait_out("api", "ROLE=api NODE_ENV=production PORT=80\n");
    env.wait_out("worker", "ROLE=worker NODE_ENV=production PORT=\n");
    env.wait_out("mailer", "ROLE=mailer NODE_ENV=production PORT=\n");
    let shown = env.ok(&["env", "api"]);
    assert!(
        shown.lines().any(|l| l == "NODE_ENV=production") && shown.lines().any(|l| l == "PORT=80"),
        "bm2 env api:\n{shown}"
    );
    assert_eq!(env_of(&env, "worker")["NODE_ENV"], "production");
}

#[test]
fn js_config_without_env_name_uses_env() {
    let env = TestEnv::new();
    env.script("show.sh", &show(&["ROLE", "NODE_ENV", "PORT"]));
    env.file("ecosystem.config.js", PM2_STYLE);
    env.ok(&["start", "ecosystem.config.js"]);
    env.wait_out("api", "ROLE=api NODE_ENV=development PORT=3000\n");
    env.wait_out("mailer", "ROLE=mailer NODE_ENV=development PORT=\n");
}

#[test]
fn esm_mjs_config_starts_its_apps() {
    let env = TestEnv::new();
    env.script("show.sh", &show(&["ROLE", "FORMAT"]));
    env.file(
        "ecosystem.config.mjs",
        r#"const common = { script: "show.sh", env: { FORMAT: "esm" } };
export default {
  apps: [
    { ...common, name: "one", env: { ...common.env, ROLE: "one" } },
    { ...common, name: "two", env: { ...common.env, ROLE: "two" } },
  ],
};
"#,
    );
    env.ok(&["start", "ecosystem.config.mjs"]);
    env.wait_out("one", "ROLE=one FORMAT=esm\n");
    env.wait_out("two", "ROLE=two FORMAT=esm\n");
}

#[test]
fn typescript_config_with_types_starts_with_bun() {
    let env = TestEnv::new();
    env.script("show.sh", &show(&["ROLE", "PORT"]));
    env.file(
        "ecosystem.config.ts",
        r#"interface App {
  name: string;
  script: string;
  instances?: number | "max";
  env?: Record<string, string | number>;
}

const port: number = 5000;

const apps: App[] = [
  { name: "typed", script: "show.sh", env: { ROLE: "typed", PORT: port } },
];

export default { apps };
"#,
    );
    let mut cmd = env.command(&["start", "ecosystem.config.ts"]);
    cmd.env("PATH", common::bun::path_with_bun());
    ok_cmd(cmd);
    env.wait_out("typed", "ROLE=typed PORT=5000\n");
}

#[test]
fn only_starts_the_named_apps() {
    let env = TestEnv::new();
    env.script("show.sh", &show(&["ROLE"]));
    env.file("ecosystem.config.js", PM2_STYLE);
    env.ok(&["start", "ecosystem.config.js", "--only", "api,mailer"]);
    env.wait_status("api", "online");
    env.wait_status("mailer", "online");
    assert_eq!(instance_names(&env), ["api", "mailer"]);

    let err = env.fail(&["start", "ecosystem.config.js", "--only", "nope"]);
    assert!(
        err.contains("--only nope: no such app in this file"),
        "stderr: {err}"
    );
    assert_eq!(instance_names(&env), ["api", "mailer"]);
}

const TWO_APPS: &str = r#"{
  "apps": [
    { "name": "a", "script": "show.sh", "env": { "ROLE": "a" } },
    { "name": "b", "script": "show.sh", "env": { "ROLE": "b" } }
  ]
}
"#;

#[test]
fn starting_a_file_again_restarts_its_apps() {
    let env = TestEnv::new();
    env.script("show.sh", &show(&["ROLE"]));
    env.file("apps.json", TWO_APPS);
    env.ok(&["start", "apps.json"]);
    let a = env.wait_status("a", "online");
    let b = env.wait_status("b", "online");
    env.ok(&["start", "apps.json"]);
    let a_pid = env.wait_new_pid("a", a["pid"].as_u64().unwrap());
    let b_pid = env.wait_new_pid("b", b["pid"].as_u64().unwrap());
    assert_ne!(Some(a_pid), a["pid"].as_u64());
    assert_eq!(env.proc("a")["id"], a["id"]);
    assert_eq!(env.proc("b")["id"], b["id"]);
    assert_eq!(instance_names(&env), ["a", "b"]);
    assert_eq!(
        env.app_pids().len(),
        2,
        "pids {:?}, expected {a_pid} and {b_pid}",
        env.app_pids()
    );
}

#[test]
fn stop_restart_delete_of_a_file_act_on_its_apps() {
    let env = TestEnv::new();
    env.script("show.sh", &show(&["ROLE"]));
    env.file("apps.json", TWO_APPS);
    env.ok(&["start", "apps.json"]);
    env.ok(&["start", "show.sh", "--name", "other"]);
    let other = online_pid(&env, "other");
    env.wait_status("a", "online");
    env.wait_status("b", "online");

    env.ok(&["stop", "apps.json"]);
    env.wait_status("a", "stopped");
    env.wait_status("b", "stopped");
    assert_eq!(online_pid(&env, "other"), other);

    env.ok(&["restart", "apps.json"]);
    env.wait_status("a", "online");
    env.wait_status("b", "online");
    assert_eq!(online_pid(&env, "other"), other);

    let b = online_pid(&env, "b");
    env.ok(&["restart", "apps.json"]);
    env.wait_new_pid("b", b);
    assert_eq!(online_pid(&env, "other"), other);

    env.ok(&["delete", "apps.json"]);
    assert_eq!(instance_names(&env), ["other"]);
    assert_eq!(online_pid(&env, "other"), other);
}

#[test]
fn restart_update_env_drops_a_variable_removed_from_the_caller() {
    let env = TestEnv::new();
    env.script("show.sh", &show(&["BM2_TEST_CALLER"]));
    let mut cmd = env.command(&["start", "show.sh"]);
    cmd.env("BM2_TEST_CALLER", "here");
    ok_cmd(cmd);
    let pid = online_pid(&env, "show");
    assert_eq!(environ(pid)["BM2_TEST_CALLER"], "here");

    // The test process does not have BM2_TEST_CALLER: this caller has removed it.
    assert!(std::env::var_os("BM2_TEST_CALLER").is_none());
    env.ok(&["restart", "show"]);
    let pid = env.wait_new_pid("show", pid);
    assert_eq!(
        environ(pid).get("BM2_TEST_CALLER").map(String::as_str),
        Some("here"),
        "without --update-env the app keeps the environment it started with"
    );

    env.ok(&["restart", "show", "--update-env"]);
    let pid = env.wait_new_pid("show", pid);
    let vars = environ(pid);
    assert!(
        !vars.contains_key("BM2_TEST_CALLER"),
        "with --update-env the removed variable is gone: {vars:?}"
    );
    assert!(
        !env.describe("show")["env"]
            .as_object()
            .unwrap()
            .contains_key("BM2_TEST_CALLER")
    );
}

#[test]
fn restart_file_update_env_removes_a_variable_dropped_from_env() {
    let env = TestEnv::new();
    env.script("show.sh", &show(&["KEEP", "DROP"]));
    env.file(
        "apps.json",
        r#"{ "apps": [{ "name": "app", "script": "show.sh", "env": { "KEEP": "1", "DROP": "1" } }] }"#,
    );
    env.ok(&["start", "apps.json"]);
    let pid = online_pid(&env, "app");
    assert_eq!(environ(pid)["DROP"], "1");

    env.file(
        "apps.json",
        r#"{ "apps": [{ "name": "app", "script": "show.sh", "env": { "KEEP": "2" } }] }"#,
    );
    env.ok(&["restart", "apps.json", "--update-env"]);
    let pid = env.wait_new_pid("app", pid);
    let vars = environ(pid);
    assert_eq!(vars.get("KEEP").map(String::as_str), Some("2"), "{vars:?}");
    assert!(!vars.contains_key("DROP"), "DROP is still set: {vars:?}");
    let described = env.describe("app");
    assert!(
        !described["env"].as_object().unwrap().contains_key("DROP"),
        "describe env: {}",
        described["env"]
    );
    assert!(
        !described["spec"]["env"]
            .as_object()
            .unwrap()
            .contains_key("DROP")
    );
}

#[test]
fn env_set_is_pending_until_restart_then_get_and_delete() {
    let env = TestEnv::new();
    env.script("show.sh", &show(&["GREETING"]));
    env.ok(&["start", "show.sh"]);
    let pid = online_pid(&env, "show");

    env.ok(&["env", "set", "show", "GREETING", "hello world"]);
    let d = env.describe("show");
    assert_eq!(d["pending_env"], serde_json::json!(["GREETING"]));
    assert!(!environ(pid).contains_key("GREETING"));
    assert_eq!(env.ok(&["env", "get", "show"]), "GREETING=hello world\n");
    let (ok, _, stderr) = env.output(&["env", "show"]);
    assert!(
        ok && stderr.contains("pending until the next restart: GREETING"),
        "stderr: {stderr}"
    );

    env.ok(&["restart", "show"]);
    let pid = env.wait_new_pid("show", pid);
    assert_eq!(environ(pid)["GREETING"], "hello world");
    env.wait_out("show", "GREETING=hello world\n");
    let d = env.describe("show");
    assert_eq!(d["pending_env"], serde_json::json!([]));
    assert_eq!(d["env"]["GREETING"], "hello world");
    assert!(
        env.ok(&["env", "show"])
            .lines()
            .any(|l| l == "GREETING=hello world")
    );

    env.ok(&["env", "delete", "show", "GREETING"]);
    assert_eq!(env.ok(&["env", "get", "show"]), "");
    assert_eq!(
        env.describe("show")["pending_env"],
        serde_json::json!(["GREETING"])
    );
    assert_eq!(environ(pid)["GREETING"], "hello world");
    env.ok(&["restart", "show"]);
    let pid = env.wait_new_pid("show", pid);
    assert!(!environ(pid).contains_key("GREETING"));
    assert_eq!(env.describe("show")["pending_env"], serde_json::json!([]));

    // The store is kept per app name: an id or another target is refused, not stored unread.
    let err = env.fail(&["env", "set", "0", "GREETING", "x"]);
    assert!(err.contains("not an app name"), "{err}");
    assert_eq!(env.ok(&["env", "get", "show"]), "");
}

#[test]
fn env_file_flag_on_a_script() {
    let env = TestEnv::new();
    env.script("show.sh", &show(&["FROM_FILE", "DERIVED", "OVERRIDDEN"]));
    env.file(
        "test.env",
        "FROM_FILE=yes\nDERIVED=${FROM_FILE}-derived\nOVERRIDDEN=file\n",
    );
    env.ok(&[
        "start",
        "show.sh",
        "--env-file",
        "test.env",
        "--env",
        "OVERRIDDEN=cli",
    ]);
    env.wait_out("show", "FROM_FILE=yes DERIVED=yes-derived OVERRIDDEN=cli\n");
}

#[test]
fn env_file_flag_on_an_ecosystem_file() {
    let env = TestEnv::new();
    env.script("show.sh", &show(&["FROM_FILE", "ROLE"]));
    env.file("test.env", "FROM_FILE=yes\nROLE=from-env-file\n");
    env.file("apps.json", TWO_APPS);
    env.ok(&["start", "apps.json", "--env-file", "test.env"]);
    // The file's `env` is above --env-file.
    env.wait_out("a", "FROM_FILE=yes ROLE=a\n");
    env.wait_out("b", "FROM_FILE=yes ROLE=b\n");
}

#[test]
fn start_dash_reads_a_json_config_from_stdin() {
    let env = TestEnv::new();
    env.script("show.sh", &show(&["ROLE"]));
    let mut child = env
        .command(&["start", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            br#"{"apps": [{"name": "piped", "script": "show.sh", "env": {"ROLE": "stdin"}}]}"#,
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "bm2 start - failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.wait_out("piped", "ROLE=stdin\n");
    let script = env.describe("piped")["spec"]["script"].clone();
    assert_eq!(
        script,
        fs::canonicalize(env.path("show.sh"))
            .unwrap()
            .display()
            .to_string()
    );
}

#[test]
fn invalid_file_starts_nothing_and_names_file_key_and_line() {
    let env = TestEnv::new();
    env.script("show.sh", &show(&["ROLE"]));
    env.file(
        "apps.json",
        r#"{
  "apps": [
    { "name": "good", "script": "show.sh" },
    {
      "name": "bad",
      "instances": "four",
      "script": "show.sh"
    }
  ]
}
"#,
    );
    // (The bad value is not the last key of its object: that case is pinned by
    // bm2-config's wrong_type_in_json_names_the_key_and_its_line.)
    let err = env.fail(&["start", "apps.json"]);
    assert!(err.contains("apps.json:6:"), "stderr: {err}");
    assert!(
        err.contains("apps[1].instances: expected a number or \"max\", got \"four\""),
        "stderr: {err}"
    );
    assert!(env.list().is_empty(), "started: {:?}", env.list());
}

#[test]
fn validate_accepts_a_good_file_and_rejects_unknown_keys() {
    let env = TestEnv::new();
    env.file("apps.json", TWO_APPS);
    let out = env.ok(&["validate", "apps.json"]);
    assert!(out.contains("is valid: 2 apps (a, b)"), "stdout: {out}");

    env.file(
        "typo.json",
        "{\n  \"apps\": [\n    {\n      \"name\": \"a\",\n      \"script\": \"show.sh\",\n      \"instnces\": 2\n    }\n  ]\n}\n",
    );
    let err = env.fail(&["validate", "typo.json"]);
    assert!(
        err.contains("typo.json:6: apps[0].instnces: unknown key; did you mean instances?"),
        "stderr: {err}"
    );
    // `start` only warns about it, unless --strict.
    env.script("show.sh", &show(&["ROLE"]));
    let (ok, _, stderr) = env.output(&["start", "typo.json"]);
    assert!(ok, "start failed: {stderr}");
    assert!(
        stderr.contains("warning:") && stderr.contains("did you mean instances?"),
        "stderr: {stderr}"
    );
    env.wait_status("a", "online");
    env.ok(&["delete", "all"]);
    let err = env.fail(&["start", "typo.json", "--strict"]);
    assert!(err.contains("did you mean instances?"), "stderr: {err}");
    assert!(env.list().is_empty());

    // Bad values are errors in validate too.
    env.file(
        "bad.yaml",
        "apps:\n  - name: a\n    script: x\n    instances: four\n",
    );
    let err = env.fail(&["validate", "bad.yaml"]);
    assert!(
        err.contains("bad.yaml:4:") && err.contains("apps[0].instances"),
        "stderr: {err}"
    );
}

#[test]
fn ecosystem_and_init_write_samples_that_validate() {
    let env = TestEnv::new();
    env.ok(&["ecosystem"]);
    assert!(env.path("ecosystem.config.js").is_file());
    env.ok(&["validate", "ecosystem.config.js"]);
    let err = env.fail(&["ecosystem"]);
    assert!(err.contains("already exists"), "stderr: {err}");
    env.ok(&["ecosystem", "--force"]);

    for (format, file) in [
        ("yaml", "ecosystem.yaml"),
        ("json", "ecosystem.json"),
        ("toml", "ecosystem.toml"),
        ("js", "ecosystem.config.js"),
    ] {
        env.ok(&["init", "--format", format, "--force"]);
        assert!(env.path(file).is_file(), "{file}");
        let out = env.ok(&["validate", file]);
        assert!(out.contains("is valid"), "{file}: {out}");
    }

    env.ok(&["init", "--format", "ts"]);
    let mut cmd = env.command(&["validate", "ecosystem.config.ts"]);
    cmd.env("PATH", common::bun::path_with_bun());
    let (out, _) = ok_cmd(cmd);
    assert!(out.contains("is valid"), "{out}");
}

#[test]
fn schema_lists_both_key_styles() {
    let env = TestEnv::new();
    let schema: Value = serde_json::from_str(&env.ok(&["schema"])).unwrap();
    let props = schema["$defs"]["App"]["properties"]
        .as_object()
        .expect("$defs.App.properties");
    for key in [
        "max_memory_restart",
        "maxMemoryRestart",
        "env_file",
        "envFile",
        "script",
    ] {
        assert!(props.contains_key(key), "{key} missing from the schema");
    }
    let markdown = env.ok(&["schema", "--markdown"]);
    assert!(markdown.contains("| `max_memory_restart` | `maxMemoryRestart` |"));
}

#[test]
fn increment_var_gives_each_instance_its_own_port() {
    let env = TestEnv::new();
    env.script("show.sh", &show(&["PORT", "NODE_APP_INSTANCE"]));
    env.file(
        "apps.json",
        r#"{ "apps": [{ "name": "web", "script": "show.sh", "instances": 2, "increment_var": "PORT", "env": { "PORT": 4000 } }] }"#,
    );
    env.ok(&["start", "apps.json"]);
    assert_eq!(instance_names(&env), ["web-0", "web-1"]);
    let web0 = env_of(&env, "web-0");
    let web1 = env_of(&env, "web-1");
    assert_eq!(
        (web0["PORT"].as_str(), web0["NODE_APP_INSTANCE"].as_str()),
        ("4000", "0")
    );
    assert_eq!(
        (web1["PORT"].as_str(), web1["NODE_APP_INSTANCE"].as_str()),
        ("4001", "1")
    );
    env.wait_out("web-1", "PORT=4001 NODE_APP_INSTANCE=1\n");
}

#[test]
fn instance_var_names_the_index_variable() {
    let env = TestEnv::new();
    env.script("show.sh", &show(&["INSTANCE_ID"]));
    env.file(
        "apps.yaml",
        "apps:\n  - name: w\n    script: show.sh\n    instances: 2\n    instanceVar: INSTANCE_ID\n",
    );
    env.ok(&["start", "apps.yaml"]);
    for (name, index) in [("w-0", "0"), ("w-1", "1")] {
        let vars = env_of(&env, name);
        assert_eq!(vars["INSTANCE_ID"], index, "{name}");
        assert!(!vars.contains_key("NODE_APP_INSTANCE"), "{name}: {vars:?}");
    }
}

#[test]
fn filter_env_keeps_caller_variables_out() {
    let env = TestEnv::new();
    env.script(
        "show.sh",
        &show(&["BM2_TEST_SECRET_TOKEN", "BM2_TEST_PUBLIC"]),
    );
    env.file(
        "apps.json",
        r#"{ "apps": [
  { "name": "prefixed", "script": "show.sh", "filter_env": ["BM2_TEST_SECRET_"] },
  { "name": "everything", "script": "show.sh", "filterEnv": true, "env": { "PATH": "/usr/bin:/bin", "OWN": "1" } },
  { "name": "none", "script": "show.sh" }
] }"#,
    );
    let mut cmd = env.command(&["start", "apps.json"]);
    cmd.env("BM2_TEST_SECRET_TOKEN", "s3cret")
        .env("BM2_TEST_PUBLIC", "visible");
    ok_cmd(cmd);

    let prefixed = env_of(&env, "prefixed");
    assert!(
        !prefixed.contains_key("BM2_TEST_SECRET_TOKEN"),
        "{prefixed:?}"
    );
    assert_eq!(prefixed["BM2_TEST_PUBLIC"], "visible");
    env.wait_out(
        "prefixed",
        "BM2_TEST_SECRET_TOKEN= BM2_TEST_PUBLIC=visible\n",
    );

    let all = env_of(&env, "everything");
    assert!(
        !all.contains_key("BM2_TEST_SECRET_TOKEN") && !all.contains_key("BM2_TEST_PUBLIC"),
        "{all:?}"
    );
    assert_eq!(all["OWN"], "1");
    assert!(all.contains_key("BM2_ID"));

    let none = env_of(&env, "none");
    assert_eq!(none["BM2_TEST_SECRET_TOKEN"], "s3cret");
}

#[test]
fn start_of_a_file_whose_apps_run_restarts_them_with_its_new_env() {
    // PM2's `start <file>` restarts the apps already running with the file's environment.
    let env = TestEnv::new();
    env.script("show.sh", &show(&["LEVEL"]));
    env.file(
        "apps.json",
        r#"{ "apps": [{ "name": "app", "script": "show.sh", "env": { "LEVEL": "1" } }] }"#,
    );
    env.ok(&["start", "apps.json"]);
    let pid = online_pid(&env, "app");
    assert_eq!(environ(pid)["LEVEL"], "1");
    env.file(
        "apps.json",
        r#"{ "apps": [{ "name": "app", "script": "show.sh", "env": { "LEVEL": "2" } }] }"#,
    );
    env.ok(&["start", "apps.json"]);
    let pid = env.wait_new_pid("app", pid);
    assert_eq!(environ(pid)["LEVEL"], "2");
}
