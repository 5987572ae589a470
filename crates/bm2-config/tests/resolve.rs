//! Ecosystem files read from fixtures (`tests/fixtures/`): every format, both key styles, the
//! value forms, the environment, `--only`, paths, and the errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bm2_config::{ConfigError, LoadOptions, Loaded, load_file, load_json};
use bm2_types::{AppSpec, ByteSize, ExecMode, FilterEnv, Instances};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// The fixture directory `rel`, canonical (as resolved paths are).
fn fixture_dir(rel: &str) -> PathBuf {
    std::fs::canonicalize(fixture(rel)).unwrap()
}

/// `opts` for loading fixture `rel` from its own directory (as a user runs `bm2 start` in the
/// project's directory), unless they name another.
fn from_its_dir(rel: &str, opts: &LoadOptions) -> LoadOptions {
    let mut opts = opts.clone();
    if opts.cwd.is_none() {
        opts.cwd = fixture(rel).parent().map(Path::to_path_buf);
    }
    opts
}

fn load_with(rel: &str, opts: &LoadOptions) -> Loaded {
    load_file(&fixture(rel), &from_its_dir(rel, opts))
        .unwrap_or_else(|e| panic!("{rel} should load: {e}"))
}

fn load(rel: &str) -> Loaded {
    load_with(rel, &LoadOptions::default())
}

fn error_with(rel: &str, opts: &LoadOptions) -> ConfigError {
    match load_file(&fixture(rel), &from_its_dir(rel, opts)) {
        Ok(l) => panic!("{rel} should not load, got {:?}", l.apps),
        Err(e) => e,
    }
}

fn error(rel: &str) -> ConfigError {
    error_with(rel, &LoadOptions::default())
}

fn shown(rel: &str) -> String {
    fixture(rel).display().to_string()
}

fn names(loaded: &Loaded) -> Vec<&str> {
    loaded.apps.iter().map(|a| a.name.as_str()).collect()
}

fn app<'a>(loaded: &'a Loaded, name: &str) -> &'a AppSpec {
    loaded
        .apps
        .iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("no app {name} in {:?}", names(loaded)))
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(ToString::to_string).collect()
}

fn production() -> LoadOptions {
    LoadOptions {
        env_name: Some("production".into()),
        ..LoadOptions::default()
    }
}

/// The 1-based line of the first line of fixture `rel` containing `needle`.
fn line_of(rel: &str, needle: &str) -> usize {
    std::fs::read_to_string(fixture(rel))
        .unwrap()
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in {rel}"))
        + 1
}

// ---------------------------------------------------------------------------------------------
// Formats
// ---------------------------------------------------------------------------------------------

/// Every data and JavaScript format (TypeScript has its own test, below).
const SAME_APPS: &[&str] = &[
    "formats/processes.json",
    "formats/apps.yaml",
    "formats/apps.yml",
    "formats/apps.toml",
    "formats/ecosystem.config.js",
    "formats/ecosystem.config.cjs",
    "formats/ecosystem.config.mjs",
];

#[test]
fn json_apps_file_resolves_every_field() {
    let dir = fixture_dir("formats");
    let loaded = load("formats/apps.json");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(names(&loaded), ["api", "worker"]);

    let api = app(&loaded, "api");
    assert_eq!(api.script, dir.join("server.js").display().to_string());
    assert_eq!(api.cwd.as_deref(), Some(dir.as_path()));
    assert_eq!(api.args, words(&["--port", "80", "--name", "a b"]));
    assert_eq!(api.instances, Instances::Count(2));
    assert_eq!(api.max_memory_restart, Some(ByteSize(200 << 20)));
    assert_eq!(
        api.env,
        vars(&[("PORT", "3000"), ("DEBUG", "true"), ("MODE", "dev")])
    );

    let worker = app(&loaded, "worker");
    assert_eq!(worker.cwd.as_deref(), Some(dir.join("jobs").as_path()));
    assert_eq!(worker.script, dir.join("jobs/run.sh").display().to_string());
    assert_eq!(worker.restart_delay, 2000);
    assert_eq!(worker.stop_exit_codes, [0, 3]);
    // Everything not written keeps PM2's defaults.
    let d = AppSpec::default();
    assert_eq!(
        (worker.instances, worker.kill_timeout, worker.autorestart),
        (d.instances, d.kill_timeout, d.autorestart)
    );

    let prod = load_with("formats/apps.json", &production());
    assert_eq!(app(&prod, "api").env["MODE"], "prod");
    assert_eq!(app(&prod, "api").env["PORT"], "3000");
}

#[test]
fn every_format_gives_the_same_apps() {
    for opts in [LoadOptions::default(), production()] {
        let expected = load_with("formats/apps.json", &opts).apps;
        for rel in SAME_APPS {
            let loaded = load_with(rel, &opts);
            assert!(loaded.warnings.is_empty(), "{rel}: {:?}", loaded.warnings);
            assert_eq!(
                loaded.apps, expected,
                "{rel} (env {:?}) differs from formats/apps.json",
                opts.env_name
            );
        }
    }
}

#[test]
fn js_configs_run_with_the_file_directory_as_cwd() {
    // ecosystem.config.js builds its script path with require("node:path"): it is CommonJS.
    let dir = fixture_dir("formats");
    for rel in [
        "formats/ecosystem.config.js",
        "formats/ecosystem.config.cjs",
        "formats/ecosystem.config.mjs",
    ] {
        let loaded = load(rel);
        assert_eq!(
            app(&loaded, "api").script,
            dir.join("server.js").display().to_string(),
            "{rel}"
        );
    }
}

/// The bun installer shared with the binary's tests (and the test-tools installer it uses).
#[path = "../../bm2/tests/common/bun.rs"]
#[allow(dead_code)]
mod bun;
#[path = "../../bm2/tests/common/tools.rs"]
#[allow(dead_code)]
mod tools;
use bun::bun_bin_dir;

/// `.ts` configs need bun (or node 22.6+) on PATH. PATH cannot be changed safely inside this
/// multi-threaded process, so this runs `typescript_child` in a copy of the test binary with bun
/// on PATH.
#[test]
fn typescript_config_gives_the_same_apps() {
    let bun = bun_bin_dir();
    let path = format!(
        "{}:{}",
        bun.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "typescript_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PATH", path)
        .env("BM2_TEST_TS_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "typescript_child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "run by typescript_config_gives_the_same_apps, with bun on PATH"]
fn typescript_child() {
    assert!(
        std::env::var_os("BM2_TEST_TS_CHILD").is_some(),
        "run through typescript_config_gives_the_same_apps"
    );
    for opts in [LoadOptions::default(), production()] {
        let expected = load_with("formats/apps.json", &opts).apps;
        let loaded = load_with("formats/ecosystem.config.ts", &opts);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(loaded.apps, expected);
    }
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

#[test]
fn snake_and_camel_keys_give_identical_apps() {
    let snake = load("keys/snake.json");
    let camel = load("keys/camel.json");
    assert!(snake.warnings.is_empty(), "{:?}", snake.warnings);
    assert!(camel.warnings.is_empty(), "{:?}", camel.warnings);
    assert_eq!(snake.apps, camel.apps);
    let staging = LoadOptions {
        env_name: Some("staging".into()),
        ..LoadOptions::default()
    };
    assert_eq!(
        load_with("keys/snake.json", &staging).apps,
        load_with("keys/camel.json", &staging).apps
    );
}

#[test]
fn every_key_of_the_full_fixture_takes_effect() {
    let dir = fixture_dir("keys");
    let loaded = load("keys/snake.json");
    let a = &loaded.apps[0];
    let d = AppSpec::default();
    assert_eq!(a.name, "full");
    assert_eq!(a.script, dir.join("app.js").display().to_string());
    assert_eq!(a.args, words(&["--port", "80", "--name", "a b"]));
    assert_eq!(a.cwd.as_deref(), Some(dir.as_path()));
    // env_file < env
    assert_eq!(
        a.env,
        vars(&[("A", "1"), ("FROM", "env"), ("FILE_ONLY", "yes")])
    );
    assert_eq!(a.interpreter.as_deref(), Some("node"));
    assert_eq!(a.interpreter_args, ["--harmony"]);
    assert_eq!(
        a.node_args,
        ["--max-old-space-size=128", "--trace-warnings"]
    );
    assert_eq!(a.namespace, "backend");
    assert_eq!(a.instances, Instances::Count(3));
    assert_eq!(a.exec_mode, ExecMode::Cluster);
    assert!(!a.autorestart);
    assert_eq!(a.max_restarts, 7);
    assert_eq!(a.min_uptime, 3000);
    assert_eq!(a.restart_delay, 250);
    assert_eq!(a.exp_backoff_restart_delay, Some(150));
    assert_eq!(a.kill_timeout, 4000);
    assert_eq!(a.kill_signal, bm2_types::Signal::TERM);
    assert_eq!(a.stop_exit_codes, [0, 2]);
    assert_eq!(a.max_memory_restart, Some(ByteSize(300 << 20)));
    assert!(!a.autostart);
    assert_eq!(a.uid.as_deref(), Some("nobody"));
    assert_eq!(a.gid.as_deref(), Some("65534"));
    assert_eq!(
        a.filter_env,
        FilterEnv::Prefixes(words(&["SECRET_", "AWS_"]))
    );
    assert_eq!(a.instance_var, "INSTANCE_ID");
    assert_eq!(a.increment_var.as_deref(), Some("PORT"));
    assert!(!a.treekill);
    assert_eq!(a.kill_retry_time, 200);
    assert!(a.source_map_support);
    assert_eq!(a.port, Some(8080));
    assert_eq!(a.listen_host.as_deref(), Some("127.0.0.1"));
    assert_eq!(a.lb, bm2_types::LoadBalancing::LeastConn);
    assert!(a.wait_ready);
    assert_eq!(a.listen_timeout, 8000);
    assert!(a.shutdown_with_message);
    assert!(a.socket_activation);
    assert_eq!(a.watch, ["srv", "lib"]);
    // watch_options.ignored adds to ignore_watch.
    assert_eq!(a.ignore_watch, ["node_modules", "*.log", "tmp"]);
    assert_eq!(a.watch_delay, 2000);
    assert_eq!(a.cron_restart.as_deref(), Some("0 3 * * *"));
    assert_eq!(
        a.health_check_url.as_deref(),
        Some("http://127.0.0.1:8080/health")
    );
    assert_eq!(a.health_check_tcp.as_deref(), Some("127.0.0.1:5432"));
    assert_eq!(a.health_check_cmd.as_deref(), Some("test -e ready"));
    assert_eq!(a.health_check_interval, 15_000);
    assert_eq!(a.health_check_timeout, 2500);
    assert_eq!(a.health_check_max_fails, 4);
    assert_eq!(
        a.out_file.as_deref(),
        Some(dir.join("logs/out.log").to_str().unwrap())
    );
    assert_eq!(a.error_file.as_deref(), Some("/var/log/full-err.log"));
    assert_eq!(
        a.pid_file.as_deref(),
        Some(dir.join("run/app.pid").to_str().unwrap())
    );
    assert_eq!(
        a.log_file.as_deref(),
        Some(dir.join("logs/all.log").to_str().unwrap())
    );
    assert!(a.merge_logs && a.time && a.disable_logs);
    assert_eq!(a.log_date_format.as_deref(), Some("YYYY-MM-DD HH:mm:ss Z"));
    assert_eq!(a.log_type.as_deref(), Some("json"));
    assert_eq!(a.log_max_size, Some(ByteSize(20 << 20)));
    assert_eq!(a.log_retain, Some(9));
    assert_eq!(a.log_compress, Some(true));
    assert_eq!(a.log_rotate_interval.as_deref(), Some("0 0 * * *"));
    assert_eq!(
        a.depends_on
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        [("db", "ready"), ("migrate", "completed")]
    );
    assert_eq!(a.depends_timeout, Some(90_000));
    assert!(a.restart_dependents);
    // Every option differs from its default, so each key was read.
    assert_ne!(a.instances, d.instances);

    let staging = LoadOptions {
        env_name: Some("staging".into()),
        ..LoadOptions::default()
    };
    let s = &load_with("keys/snake.json", &staging).apps[0];
    assert_eq!(s.name, "full-staging");
    assert_eq!(s.env["FROM"], "staging");
}

#[test]
fn the_key_fixtures_use_every_key() {
    let text = |rel: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(fixture(rel)).unwrap()).unwrap()
    };
    let snake = text("keys/snake.json");
    let camel = text("keys/camel.json");
    for (canonical, aliases) in bm2_config::raw::KEYS {
        assert!(
            snake["apps"][0].get(*canonical).is_some(),
            "keys/snake.json lacks {canonical}"
        );
        // In camel.json every key is written in camelCase (one-word keys as they are).
        let camel_spellings: Vec<&str> = std::iter::once(*canonical)
            .filter(|k| !k.contains('_'))
            .chain(
                aliases
                    .iter()
                    .copied()
                    .filter(|a| a.chars().any(|c| c.is_ascii_uppercase())),
            )
            .collect();
        assert!(
            camel_spellings
                .iter()
                .any(|k| camel["apps"][0].get(*k).is_some()),
            "keys/camel.json lacks {canonical} (as one of {camel_spellings:?})"
        );
    }
    for key in camel["apps"][0].as_object().unwrap().keys() {
        assert!(
            !key.contains('_') || key.starts_with("env_"),
            "keys/camel.json has the snake_case key {key}"
        );
    }
}

#[test]
fn every_alias_reads_like_its_pm2_key() {
    let snake: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("keys/snake.json")).unwrap())
            .unwrap();
    let base = fixture_dir("keys");
    for (canonical, aliases) in bm2_config::raw::KEYS {
        let value = &snake["apps"][0][*canonical];
        let one = |key: &str| {
            let mut app = serde_json::json!({ "name": "k" });
            if *canonical != "script" {
                app["script"] = "app.js".into();
            }
            app[key] = value.clone();
            let json = serde_json::json!({ "apps": [app] }).to_string();
            load_json(&json, "<test>", base.clone(), &LoadOptions::default())
                .unwrap_or_else(|e| panic!("{key}: {e}"))
        };
        let expected = one(canonical);
        for alias in *aliases {
            let got = one(alias);
            assert!(got.warnings.is_empty(), "{alias}: {:?}", got.warnings);
            assert_eq!(got.apps, expected.apps, "{alias} differs from {canonical}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Value forms
// ---------------------------------------------------------------------------------------------

#[test]
#[allow(clippy::many_single_char_names)] // the apps of forms.json are named a to e
fn value_forms_are_read_into_one_shape() {
    let dir = fixture_dir("forms");
    let loaded = load("forms/forms.json");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let (a, b, c, d, e) = (
        app(&loaded, "a"),
        app(&loaded, "b"),
        app(&loaded, "c"),
        app(&loaded, "d"),
        app(&loaded, "e"),
    );

    // instances: "max", -1, "4", 0, 2
    assert_eq!(a.instances, Instances::CpusMinus(0));
    assert_eq!(b.instances, Instances::CpusMinus(1));
    assert_eq!(c.instances, Instances::Count(4));
    assert_eq!(d.instances, Instances::CpusMinus(0));
    assert_eq!(e.instances, Instances::Count(2));

    // max_memory_restart: "200M", bytes, "1G", "512K"
    assert_eq!(a.max_memory_restart, Some(ByteSize(200 * 1024 * 1024)));
    assert_eq!(b.max_memory_restart, Some(ByteSize(1_048_576)));
    assert_eq!(c.max_memory_restart, Some(ByteSize(1 << 30)));
    assert_eq!(d.max_memory_restart, Some(ByteSize(512 * 1024)));
    assert_eq!(e.max_memory_restart, None);

    // args: a string split like a shell, or an array (numbers become strings)
    assert_eq!(a.args, words(&["--port", "80", "--name", "a b", "c d"]));
    assert_eq!(b.args, words(&["--port", "80", "--name", "a b"]));
    assert!(c.args.is_empty());

    // durations: numbers are milliseconds, strings take a unit
    assert_eq!((a.min_uptime, a.kill_timeout), (10_000, 1500));
    assert_eq!((b.min_uptime, b.kill_timeout), (10_000, 1500));
    assert_eq!((c.min_uptime, c.kill_timeout), (500, 120_000));
    assert_eq!(c.restart_delay, 3_600_000);

    // watch: true (the app's directory), a path, paths, false
    assert_eq!(a.watch, ["."]);
    assert_eq!(b.watch, ["src"]);
    assert_eq!(c.watch, ["src", "lib"]);
    assert!(d.watch.is_empty() && e.watch.is_empty());
    // ignore_watch: bm2's default list unless given
    assert_eq!(a.ignore_watch, ["node_modules", ".git", ".bm2", "logs"]);

    // stop_exit_codes: one number or an array
    assert_eq!(a.stop_exit_codes, [3]);
    assert_eq!(b.stop_exit_codes, [0, 3]);
    assert!(c.stop_exit_codes.is_empty());

    // env values: numbers and booleans become strings
    assert_eq!(
        a.env,
        vars(&[
            ("INT", "42"),
            ("FLOAT", "1.5"),
            ("YES", "true"),
            ("NO", "false"),
            ("TEXT", "x y")
        ])
    );

    // exec_mode: fork_mode/cluster_mode as well as fork/cluster
    assert_eq!(a.exec_mode, ExecMode::Fork);
    assert_eq!(b.exec_mode, ExecMode::Cluster);
    assert_eq!(c.exec_mode, ExecMode::Cluster);
    assert_eq!(d.exec_mode, ExecMode::Fork);
    assert_eq!(e.exec_mode, ExecMode::Fork);

    // log_file: true is the default combined file (""), a path is taken from cwd, false is none
    assert_eq!(a.log_file.as_deref(), Some(""));
    assert_eq!(
        b.log_file.as_deref(),
        Some(dir.join("logs/all.log").to_str().unwrap())
    );
    assert_eq!(c.log_file, None);

    // filter_env: true, prefixes, false, one prefix
    assert_eq!(a.filter_env, FilterEnv::All);
    assert_eq!(
        b.filter_env,
        FilterEnv::Prefixes(words(&["SECRET_", "AWS_"]))
    );
    assert_eq!(c.filter_env, FilterEnv::None);
    assert_eq!(d.filter_env, FilterEnv::Prefixes(words(&["SECRET_"])));
    assert_eq!(e.filter_env, FilterEnv::None);

    // numbers as numeric strings
    assert_eq!(d.port, Some(3000));
    assert_eq!(d.max_restarts, 5);
}

// ---------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------

#[test]
fn env_file_is_below_env() {
    let loaded = load("env/ecosystem.json");
    let api = app(&loaded, "api");
    assert_eq!(api.env["ONLY_FILE"], "file");
    assert_eq!(api.env["IN_FILE_AND_ENV"], "env");
    assert_eq!(api.env["IN_ENV_AND_BLOCK"], "env");
    assert_eq!(api.env["IN_ALL"], "env");
    assert!(!api.env.contains_key("IN_BLOCK_AND_CLI"));
    assert_eq!(app(&loaded, "plain").env, vars(&[("ROLE", "plain")]));
    // Without --env, names stay as written.
    assert_eq!(names(&loaded), ["api", "worker", "plain"]);
}

#[test]
fn env_block_is_above_env() {
    let loaded = load_with("env/ecosystem.json", &production());
    let api = app(&loaded, "api-production");
    assert_eq!(api.env["ONLY_FILE"], "file");
    assert_eq!(api.env["IN_FILE_AND_ENV"], "env");
    assert_eq!(api.env["IN_ENV_AND_BLOCK"], "production");
    assert_eq!(api.env["IN_BLOCK_AND_CLI"], "production");
    assert_eq!(api.env["IN_ALL"], "production");
    assert_eq!(
        app(&loaded, "worker-production").env,
        vars(&[("ROLE", "worker")])
    );
    assert_eq!(
        app(&loaded, "plain").env,
        vars(&[("ROLE", "plain-production")])
    );

    let staging = LoadOptions {
        env_name: Some("staging".into()),
        ..LoadOptions::default()
    };
    let loaded = load_with("env/ecosystem.json", &staging);
    let api = app(&loaded, "api-staging");
    assert_eq!(api.env["IN_ALL"], "staging");
    assert_eq!(api.env["IN_ENV_AND_BLOCK"], "env");
}

#[test]
fn cli_vars_are_above_everything() {
    let opts = LoadOptions {
        cli_vars: vars(&[
            ("IN_BLOCK_AND_CLI", "cli"),
            ("IN_ALL", "cli"),
            ("ONLY_FILE", "cli"),
            ("NEW", "cli"),
        ]),
        ..production()
    };
    let loaded = load_with("env/ecosystem.json", &opts);
    let api = app(&loaded, "api-production");
    assert_eq!(api.env["IN_BLOCK_AND_CLI"], "cli");
    assert_eq!(api.env["IN_ALL"], "cli");
    assert_eq!(api.env["ONLY_FILE"], "cli");
    assert_eq!(api.env["IN_ENV_AND_BLOCK"], "production");
    for a in &loaded.apps {
        assert_eq!(a.env["NEW"], "cli", "{}", a.name);
    }
}

#[test]
fn env_file_option_is_above_the_apps_env_file_and_below_env() {
    let opts = LoadOptions {
        env_file: Some(fixture("env/cli.env")),
        ..LoadOptions::default()
    };
    let loaded = load_with("env/ecosystem.json", &opts);
    let api = app(&loaded, "api");
    assert_eq!(api.env["IN_FILE_AND_CLI_FILE"], "cli-file");
    assert_eq!(api.env["IN_FILE_AND_ENV"], "env");
    assert_eq!(api.env["CLI_FILE_ONLY"], "yes");
    assert_eq!(api.env["ONLY_FILE"], "file");
    // It applies to every app of the file.
    assert_eq!(app(&loaded, "plain").env["CLI_FILE_ONLY"], "yes");
    assert_eq!(app(&loaded, "plain").env["ROLE"], "plain");
}

#[test]
fn env_files_interpolate_variables() {
    let api = load("env/ecosystem.json").apps.remove(0);
    assert_eq!(api.env["BM2_FIXTURE_BASE"], "/srv/app");
    assert_eq!(api.env["BM2_FIXTURE_DATA"], "/srv/app/data");
    assert_eq!(api.env["QUOTED"], "a b  c");
    // ${VAR} also reads the caller's environment.
    if let Ok(home) = std::env::var("HOME") {
        assert_eq!(api.env["BM2_FIXTURE_HOME"], format!("{home}/cache"));
    }
}

#[test]
fn missing_env_file_is_a_warning_at_its_key() {
    let loaded = load("env/missing_env_file.json");
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    let w = &loaded.warnings[0];
    assert_eq!(w.key.as_deref(), Some("apps[0].env_file"));
    assert!(
        w.message.contains("does not exist") && w.message.contains("nope.env"),
        "{w}"
    );
    // The --env-file option names a file the user gave on the command line: still an error.
    let opts = LoadOptions {
        env_file: Some(fixture("env/absent.env")),
        ..LoadOptions::default()
    };
    let e = error_with("formats/apps.json", &opts);
    assert!(e.to_string().contains("absent.env"), "{e}");
}

#[test]
fn append_env_to_name_needs_an_env_name() {
    let names_for = |env_name: Option<&str>| {
        let opts = LoadOptions {
            env_name: env_name.map(String::from),
            ..LoadOptions::default()
        };
        names(&load_with("env/ecosystem.json", &opts))
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(names_for(None), ["api", "worker", "plain"]);
    assert_eq!(
        names_for(Some("production")),
        ["api-production", "worker-production", "plain"]
    );
    // An env name without a block still names the apps (as in PM2).
    assert_eq!(names_for(Some("qa")), ["api-qa", "worker-qa", "plain"]);
}

// ---------------------------------------------------------------------------------------------
// --only
// ---------------------------------------------------------------------------------------------

#[test]
fn only_keeps_the_named_apps_in_file_order() {
    let only = |o: &[&str], env_name: Option<&str>, rel: &str| {
        let opts = LoadOptions {
            only: words(o),
            env_name: env_name.map(String::from),
            ..LoadOptions::default()
        };
        names(&load_with(rel, &opts))
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(only(&["worker"], None, "formats/apps.json"), ["worker"]);
    assert_eq!(
        only(&["worker", "api"], None, "formats/apps.json"),
        ["api", "worker"]
    );
    assert_eq!(
        only(&["worker", "api"], None, "formats/ecosystem.config.js"),
        ["api", "worker"]
    );
    // With append_env_to_name, either name selects the app.
    assert_eq!(
        only(&["api"], Some("production"), "env/ecosystem.json"),
        ["api-production"]
    );
    assert_eq!(
        only(
            &["worker-production"],
            Some("production"),
            "env/ecosystem.json"
        ),
        ["worker-production"]
    );
}

#[test]
fn only_matching_nothing_is_an_error() {
    let opts = LoadOptions {
        only: words(&["nope", "nada"]),
        ..LoadOptions::default()
    };
    let e = error_with("formats/apps.json", &opts);
    assert_eq!(
        e.to_string(),
        format!(
            "{}: --only nope,nada: no such app in this file",
            shown("formats/apps.json")
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

#[test]
fn cwd_and_script_are_relative_to_the_command_directory() {
    let dir = fixture_dir("paths");
    let loaded = load("paths/ecosystem.json");
    assert_eq!(
        names(&loaded),
        ["here", "jobs", "up", "main", "onpath", "abs"]
    );

    let here = app(&loaded, "here");
    assert_eq!(here.cwd.as_deref(), Some(dir.as_path()));
    assert_eq!(here.script, dir.join("main.js").display().to_string());
    assert_eq!(
        here.out_file.as_deref(),
        Some(dir.join("logs/out.log").to_str().unwrap())
    );
    assert_eq!(here.error_file.as_deref(), Some("/dev/null"));

    let jobs = app(&loaded, "jobs");
    assert_eq!(jobs.cwd.as_deref(), Some(dir.join("jobs").as_path()));
    assert_eq!(jobs.script, dir.join("jobs/run.sh").display().to_string());
    // env_file is relative to cwd; log paths too.
    assert_eq!(jobs.env, vars(&[("JOB_VAR", "from-jobs-dir")]));
    assert_eq!(
        jobs.log_file.as_deref(),
        Some(dir.join("jobs/all.log").to_str().unwrap())
    );

    let up = app(&loaded, "up");
    assert_eq!(up.script, dir.join("main.js").display().to_string());

    // No name: the script's file stem.
    assert_eq!(app(&loaded, "main").script, here.script);

    // Not a file under cwd: a program on PATH, kept as written.
    let onpath = app(&loaded, "onpath");
    assert_eq!(onpath.script, "python3");
    assert_eq!(onpath.args, words(&["-m", "http.server"]));

    // An absolute cwd is kept; the script is looked up there, not beside the file.
    let abs = app(&loaded, "abs");
    assert_eq!(abs.cwd.as_deref(), Some(Path::new("/")));
    assert_eq!(abs.script, "main.js");
}

#[test]
fn a_relative_file_path_resolves_like_an_absolute_one() {
    // Tests run in the package directory.
    let rel = Path::new("tests/fixtures/paths/ecosystem.json");
    assert!(rel.is_file(), "tests do not run in the package directory");
    let in_its_dir = LoadOptions {
        cwd: Some(fixture_dir("paths")),
        ..LoadOptions::default()
    };
    let loaded = load_file(rel, &in_its_dir).unwrap();
    assert_eq!(loaded.apps, load("paths/ecosystem.json").apps);
    // Errors name the file as it was given.
    let opts = LoadOptions {
        only: words(&["nope"]),
        ..LoadOptions::default()
    };
    let e = load_file(rel, &opts).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("tests/fixtures/paths/ecosystem.json: "),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// Errors and warnings
// ---------------------------------------------------------------------------------------------

#[test]
fn json_syntax_error_has_line_and_column() {
    let e = error("errors/syntax.json");
    let line = line_of("errors/syntax.json", "\"b\"");
    assert_eq!(e.line, Some(line), "{e}");
    assert_eq!(e.column, Some(5), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("{}:{line}:5: ", shown("errors/syntax.json"))),
        "{e}"
    );
    assert!(e.message.contains("expected `,` or `]`"), "{e}");
}

#[test]
fn yaml_syntax_error_has_line_and_column() {
    let e = error("errors/syntax.yaml");
    let line = e.line.unwrap_or_else(|| panic!("no line in {e}"));
    let col = e.column.unwrap_or_else(|| panic!("no column in {e}"));
    // The unclosed flow sequence opens on line 4 and is found broken on line 5.
    assert!((4..=5).contains(&line), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("{}:{line}:{col}: ", shown("errors/syntax.yaml"))),
        "{e}"
    );
}

#[test]
fn toml_syntax_error_has_line_and_column() {
    let e = error("errors/syntax.toml");
    let line = line_of("errors/syntax.toml", "unterminated");
    assert_eq!(e.line, Some(line), "{e}");
    let col = e.column.unwrap_or_else(|| panic!("no column in {e}"));
    assert!(
        e.to_string().starts_with(&format!(
            "{}:{}:{col}: ",
            shown("errors/syntax.toml"),
            e.line.unwrap()
        )),
        "{e}"
    );
}

/// The wrong value is the last key of its app, so the line of the key is not the line of the
/// closing brace that a parser reaches next.
fn check_wrong_type(rel: &str) {
    let e = error(rel);
    let line = line_of(rel, "four");
    assert_eq!(e.key.as_deref(), Some("apps[1].instances"), "{e}");
    assert_eq!(
        e.message, "expected a number or \"max\", got \"four\"",
        "{e}"
    );
    let text = e.to_string();
    assert!(
        text.ends_with(": apps[1].instances: expected a number or \"max\", got \"four\""),
        "{text}"
    );
    assert_eq!(
        e.line,
        Some(line),
        "the error should point at line {line}: {e}"
    );
    assert!(
        text.starts_with(&format!("{}:{line}:", shown(rel))),
        "{text}"
    );
}

#[test]
fn wrong_type_in_json_names_the_key_and_its_line() {
    check_wrong_type("errors/wrong_type.json");
}

#[test]
fn wrong_type_in_yaml_names_the_key_and_its_line() {
    check_wrong_type("errors/wrong_type.yaml");
}

#[test]
fn wrong_type_in_toml_names_the_key_and_its_line() {
    check_wrong_type("errors/wrong_type.toml");
}

#[test]
fn wrong_type_in_a_js_config_names_the_key_without_a_line() {
    let e = error("errors/bad_value.config.js");
    assert_eq!(e.key.as_deref(), Some("apps[0].instances"), "{e}");
    assert_eq!(e.line, None, "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "{}: apps[0].instances: expected a number or \"max\", got \"four\"",
            shown("errors/bad_value.config.js")
        )
    );
}

#[test]
fn unknown_key_is_a_warning_with_a_suggestion() {
    let loaded = load("errors/unknown_key.json");
    assert_eq!(names(&loaded), ["a"]);
    let unknown: Vec<&ConfigError> = loaded
        .warnings
        .iter()
        .filter(|w| w.message.contains("unknown key"))
        .collect();
    assert_eq!(unknown.len(), 1, "{:?}", loaded.warnings);
    let w = unknown[0];
    assert_eq!(w.key.as_deref(), Some("apps[0].instnces"));
    assert_eq!(w.message, "unknown key; did you mean instances?");
    assert_eq!(w.line, Some(line_of("errors/unknown_key.json", "instnces")));
    assert_eq!(
        w.to_string(),
        format!(
            "{}:{}: apps[0].instnces: unknown key; did you mean instances?",
            shown("errors/unknown_key.json"),
            w.line.unwrap()
        )
    );
    // A PM2-only key is accepted with a note; env_<name> blocks and `deploy` pass silently.
    let noted: Vec<&ConfigError> = loaded
        .warnings
        .iter()
        .filter(|w| w.message.contains("no effect"))
        .collect();
    assert_eq!(noted.len(), 1, "{:?}", loaded.warnings);
    assert_eq!(noted[0].key.as_deref(), Some("apps[0].vizion"));
    assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);

    // camelCase typos get the canonical key suggested.
    let loaded = load("errors/unknown_key.yaml");
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    let w = &loaded.warnings[0];
    assert_eq!(w.key.as_deref(), Some("apps[0].maxMemoryRestar"));
    assert_eq!(w.message, "unknown key; did you mean max_memory_restart?");
    assert_eq!(
        w.line,
        Some(line_of("errors/unknown_key.yaml", "maxMemoryRestar"))
    );
}

#[test]
fn strict_mode_makes_unknown_keys_errors() {
    let strict = LoadOptions {
        strict: true,
        ..LoadOptions::default()
    };
    let e = error_with("errors/unknown_key.json", &strict);
    assert_eq!(
        e.to_string(),
        format!(
            "{}:{}: apps[0].instnces: unknown key; did you mean instances?",
            shown("errors/unknown_key.json"),
            line_of("errors/unknown_key.json", "instnces")
        )
    );
    // Files without unknown keys still load.
    assert!(
        load_file(
            &fixture("formats/apps.json"),
            &from_its_dir("formats/apps.json", &strict)
        )
        .is_ok()
    );
    assert!(
        load_file(
            &fixture("keys/camel.json"),
            &from_its_dir("keys/camel.json", &strict)
        )
        .is_ok()
    );
}

#[test]
fn missing_script_is_an_error() {
    let e = error("errors/missing_script.json");
    assert_eq!(
        e.to_string(),
        format!(
            "{}: apps[1].script: missing: every app needs a script",
            shown("errors/missing_script.json")
        )
    );
}

#[test]
fn a_throwing_js_config_shows_the_node_error() {
    let e = error("errors/throws.config.js");
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("{}: ", shown("errors/throws.config.js"))),
        "{text}"
    );
    assert!(text.contains("failed to evaluate it"), "{text}");
    assert!(
        text.contains("Error: boom: DATABASE_URL is not set"),
        "node's error text is missing: {text}"
    );
}

#[test]
fn a_file_without_apps_is_an_error() {
    for (rel, message) in [
        (
            "errors/no_apps.json",
            "no apps: expected an object with an `apps` array, or an array of apps",
        ),
        ("errors/empty_apps.json", "the file declares no apps"),
        ("errors/empty_apps.yaml", "the file declares no apps"),
        (
            "errors/empty.config.js",
            "no apps: expected an object with an `apps` array, or an array of apps",
        ),
    ] {
        assert_eq!(
            error(rel).to_string(),
            format!("{}: {message}", shown(rel)),
            "{rel}"
        );
    }
}

#[test]
fn other_extensions_are_not_ecosystem_files() {
    let e = error("errors/notes.txt");
    assert!(e.message.starts_with("not an ecosystem file"), "{e}");
}

/// Loads one app given as JSON keys; the error when it does not load.
fn json_app_error(keys: &str) -> ConfigError {
    let json = format!(r#"{{"apps": [{{"script": "app.js", {keys}}}]}}"#);
    match load_json(&json, "<test>", PathBuf::from("/"), &LoadOptions::default()) {
        Ok(l) => panic!("{keys} should not load, got {:?}", l.apps),
        Err(e) => e,
    }
}

#[test]
fn names_too_long_for_log_file_names_are_refused_at_the_name_key() {
    let e = json_app_error(&format!(r#""name": "{}""#, "n".repeat(241)));
    assert_eq!(e.key.as_deref(), Some("apps[0].name"), "{e}");
    assert!(
        e.message.contains("241 bytes") && e.message.contains("at most 180 bytes"),
        "{e}"
    );
    // append_env_to_name can push a name over the limit too.
    let json = format!(
        r#"{{"apps": [{{"script": "app.js", "name": "{}", "append_env_to_name": true}}]}}"#,
        "n".repeat(195)
    );
    let opts = LoadOptions {
        env_name: Some("production".into()),
        ..LoadOptions::default()
    };
    let e = load_json(&json, "<test>", PathBuf::from("/"), &opts).unwrap_err();
    assert!(e.message.contains("at most 180 bytes"), "{e}");
}

#[test]
fn control_characters_in_names_are_refused_at_the_name_key() {
    let e = json_app_error(r#""name": "evil\u001b[2Jname""#);
    assert_eq!(e.key.as_deref(), Some("apps[0].name"), "{e}");
    assert!(e.message.contains("control character U+001B"), "{e}");
    assert!(!e.to_string().contains('\u{1b}'), "{e}");
}

#[test]
fn durations_longer_than_an_hour_are_refused_at_their_key() {
    for (keys, key) in [
        (r#""kill_timeout": 3600001"#, "apps[0].kill_timeout"),
        (r#""kill_timeout": "2h""#, "apps[0].kill_timeout"),
        (r#""listen_timeout": 99999999999"#, "apps[0].listen_timeout"),
        (r#""restart_delay": "25h""#, "apps[0].restart_delay"),
        (r#""min_uptime": "5h""#, "apps[0].min_uptime"),
    ] {
        let e = json_app_error(keys);
        assert_eq!(e.key.as_deref(), Some(key), "{keys}: {e}");
        assert!(e.message.contains("at most 3600000 ms (1 hour)"), "{e}");
    }
    let json = r#"{"apps": [{"script": "app.js", "kill_timeout": "1h", "min_uptime": "1h"}]}"#;
    assert!(load_json(json, "<test>", PathBuf::from("/"), &LoadOptions::default()).is_ok());
}

#[test]
fn unknown_kill_signal_names_the_key_and_its_line() {
    let rel = "errors/bad_signal.json";
    let e = error(rel);
    assert_eq!(e.key.as_deref(), Some("apps[0].kill_signal"), "{e}");
    assert!(e.message.contains("unknown signal"), "{e}");
    assert_eq!(e.line, Some(line_of(rel, "SIGNOPE")), "{e}");
}

#[test]
fn source_maps_are_on_unless_disabled_as_in_pm2() {
    let cases = [
        (r#"{"script": "a.js"}"#, true),
        (r#"{"script": "a.js", "source_map_support": false}"#, false),
        (
            r#"{"script": "a.js", "disable_source_map_support": true}"#,
            false,
        ),
        (
            r#"{"script": "a.js", "source_map_support": true, "disable_source_map_support": true}"#,
            false,
        ),
        (
            r#"{"script": "a.js", "disable_source_map_support": false}"#,
            true,
        ),
    ];
    for (json, on) in cases {
        let loaded = load_json(
            json,
            "t.json",
            std::env::temp_dir(),
            &LoadOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(loaded.apps[0].source_map_support, on, "{json}");
    }
}

#[test]
fn several_aliases_of_one_key_keep_the_one_pm2_prefers() {
    let load = |json: &str| {
        load_json(
            json,
            "t.json",
            PathBuf::from("/srv"),
            &LoadOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{json}: {e}"))
    };
    let l = load(r#"{"script": "a.js", "error": "e1.log", "err": "e2.log", "err_log": "e3.log"}"#);
    assert_eq!(l.apps[0].error_file.as_deref(), Some("/srv/e3.log"));
    assert_eq!(l.warnings.len(), 2, "{:?}", l.warnings);
    let l = load(r#"{"script": "a.js", "out": "o1.log", "output": "o2.log"}"#);
    assert_eq!(l.apps[0].out_file.as_deref(), Some("/srv/o2.log"));
    let l = load(r#"{"script": "a.js", "error_file": "e0.log", "err_log": "e3.log"}"#);
    assert_eq!(l.apps[0].error_file.as_deref(), Some("/srv/e0.log"));
}

#[test]
fn a_pid_file_of_null_keeps_the_default_one() {
    for given in ["NULL", "/dev/null", ""] {
        let json = format!(r#"{{"script": "a.js", "pid_file": "{given}"}}"#);
        let loaded = load_json(
            &json,
            "t.json",
            PathBuf::from("/srv"),
            &LoadOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(loaded.apps[0].pid_file, None, "{given}");
    }
}

#[test]
fn depends_on_forms_and_cycles() {
    let load = |apps: serde_json::Value| {
        let json = serde_json::json!({ "apps": apps }).to_string();
        load_json(
            &json,
            "eco.json",
            fixture_dir("keys"),
            &LoadOptions::default(),
        )
    };
    let app = |name: &str, deps: serde_json::Value| serde_json::json!({ "name": name, "script": "app.js", "depends_on": deps });
    let cond = |s: &str| s.parse::<bm2_types::DependCondition>().unwrap();
    let got = load(serde_json::json!([
        app("a", serde_json::json!(["b", "c"])),
        app("b", serde_json::json!("c, d:completed")),
        app("c", serde_json::json!({ "d": "process_healthy" })),
        app("d", serde_json::json!([])),
    ]))
    .unwrap();
    assert_eq!(got.apps[0].depends_on["b"], cond("started"));
    assert_eq!(got.apps[1].depends_on["d"], cond("completed"));
    assert_eq!(got.apps[2].depends_on["d"], cond("ready"));
    let err = load(serde_json::json!([
        app("a", serde_json::json!({ "b": "soon" })),
        app("b", serde_json::json!([]))
    ]))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("expected started, ready or completed"),
        "{err}"
    );
    let err = load(serde_json::json!([
        app("api", serde_json::json!(["worker"])),
        app("worker", serde_json::json!(["api"])),
    ]))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("depends_on cycle: api -> worker -> api"),
        "{err}"
    );
    // A cycle through an app left out by --only is refused too: the whole file is checked.
    let json = serde_json::json!({ "apps": [
        app("api", serde_json::json!(["worker"])),
        app("worker", serde_json::json!(["api"])),
    ]})
    .to_string();
    let only = LoadOptions {
        only: vec!["api".into()],
        ..LoadOptions::default()
    };
    assert!(load_json(&json, "eco.json", fixture_dir("keys"), &only).is_err());
}
