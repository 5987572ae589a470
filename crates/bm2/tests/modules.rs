//! Modules (`bm2 module install|list|uninstall|update`, PM2's `install`/`uninstall`, and the
//! settings commands `set`/`get`/`unset`/`conf`): installed from a directory, a git repository
//! or npm, run as apps of the namespace `modules`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestEnv;
use serde_json::Value;

/// A module that writes its pid, settings and PM2's per-module variable to the file its
/// `out` setting names, then keeps running.
const REPORTER: &str = r"const fs = require('fs');
const conf = JSON.parse(process.env.BM2_MODULE_CONFIG || '{}');
const report = { pid: process.pid, conf, pm2_var: process.env['mod-a'] || null, greeting_var: process.env.greeting || null, cwd: process.cwd() };
fs.writeFileSync(conf.out + '.tmp', JSON.stringify(report));
fs.renameSync(conf.out + '.tmp', conf.out);
setInterval(() => {}, 1000);
";

/// Writes a module directory `dir` (package.json with `config` defaults, index.js).
fn reporter_module(env: &TestEnv, dir: &str, out: &Path) -> PathBuf {
    let d = env.path(dir);
    fs::create_dir_all(d.join("node_modules/junk")).unwrap();
    fs::write(d.join("node_modules/junk/x.js"), "").unwrap();
    let pkg = serde_json::json!({
        "name": "mod-a",
        "version": "1.2.3",
        "main": "index.js",
        "config": { "greeting": "hello", "out": out.display().to_string() }
    });
    fs::write(d.join("package.json"), pkg.to_string()).unwrap();
    fs::write(d.join("index.js"), REPORTER).unwrap();
    d
}

/// The report the module wrote, once it exists and comes from a process other than `not_pid`.
fn report(env: &TestEnv, out: &Path, not_pid: u64) -> Value {
    env.wait_for("the module's report", || {
        let v: Value = serde_json::from_str(&fs::read_to_string(out).ok()?).ok()?;
        (v["pid"].as_u64()? != not_pid).then_some(v)
    })
}

fn module_row(env: &TestEnv, name: &str) -> Option<Value> {
    env.list()
        .into_iter()
        .find(|p| p["name"] == name && p["namespace"] == "modules")
}

#[test]
fn a_module_from_a_directory_runs_with_its_settings_until_uninstalled() {
    let env = TestEnv::new();
    let out = env.path("report.json");
    let src = reporter_module(&env, "mod-src", &out);
    env.ok(&["install", src.to_str().unwrap()]);

    let first = report(&env, &out, 0);
    assert_eq!(first["conf"]["greeting"], "hello", "{first}");
    assert_eq!(
        first["greeting_var"], "hello",
        "PM2's one variable per key: {first}"
    );
    let pm2_var: Value = serde_json::from_str(first["pm2_var"].as_str().unwrap()).unwrap();
    assert_eq!(
        pm2_var["greeting"], "hello",
        "PM2's variable named after the module"
    );
    let dir = env.home_path().join("modules/mod-a");
    assert_eq!(
        Path::new(first["cwd"].as_str().unwrap())
            .canonicalize()
            .unwrap(),
        dir.canonicalize().unwrap()
    );
    assert!(dir.join("index.js").is_file());
    assert!(
        !dir.join("node_modules").exists(),
        "node_modules is not copied"
    );
    let row = module_row(&env, "mod-a").expect("the module's app");
    assert_eq!(row["status"], "online");

    // `list` shows it under its own heading, after the apps.
    env.start_sleeper("app-1");
    let table = env.ok(&["list"]);
    let (apps, modules) = table.split_once("Modules").expect("a Modules heading");
    assert!(apps.contains("app-1") && !apps.contains("mod-a"), "{table}");
    assert!(
        modules.contains("mod-a") && !modules.contains("app-1"),
        "{table}"
    );

    let listed = env.ok(&["module", "list"]);
    assert!(
        listed.contains("mod-a") && listed.contains("1.2.3"),
        "{listed}"
    );
    let recorded: Value =
        serde_json::from_str(&fs::read_to_string(env.home_path().join("modules.json")).unwrap())
            .unwrap();
    assert_eq!(recorded["mod-a"]["kind"], "path");
    assert!(recorded["mod-a"]["installed_at"].is_string());

    // `set` restarts the module with the new value.
    let pid = first["pid"].as_u64().unwrap();
    env.ok(&["set", "mod-a:greeting", "bye"]);
    let second = report(&env, &out, pid);
    assert_eq!(second["conf"]["greeting"], "bye", "{second}");
    assert_eq!(second["greeting_var"], "bye");
    assert_eq!(env.ok(&["get", "mod-a:greeting"]).trim(), "bye");
    assert!(env.ok(&["conf"]).contains("mod-a:greeting bye"));
    assert!(env.ok(&["get", "mod-a"]).contains("mod-a:greeting bye"));
    let conf: Value = serde_json::from_str(
        &fs::read_to_string(env.home_path().join("module_conf.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(conf["mod-a"]["greeting"], "bye");

    let pid = second["pid"].as_u64().unwrap();
    env.ok(&["unset", "mod-a:greeting"]);
    let third = report(&env, &out, pid);
    assert!(third["conf"].get("greeting").is_none(), "{third}");
    env.fail(&["get", "mod-a:greeting"]);

    env.ok(&["uninstall", "mod-a"]);
    assert!(!dir.exists(), "the module's directory is removed");
    assert!(module_row(&env, "mod-a").is_none());
    assert!(
        env.proc("app-1")["status"] == "online",
        "other apps keep running"
    );
    assert!(!env.ok(&["module", "list"]).contains("mod-a"));
    let last = third["pid"].as_u64().unwrap();
    env.wait_for("the module's process to exit", || {
        (!common::alive(u32::try_from(last).unwrap())).then_some(())
    });
    assert!(
        env.fail(&["module", "uninstall", "mod-a"])
            .contains("no module")
    );
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_module_from_a_git_repository_in_any_language_comes_back_with_a_new_daemon() {
    let env = TestEnv::new();
    let repo = env.path("tick");
    fs::create_dir_all(&repo).unwrap();
    let out = env.path("tick.out");
    fs::write(
        repo.join("bm2-module.toml"),
        format!(
            "name = \"tick\"\nversion = \"0.1.0\"\nscript = \"run.sh\"\ninterpreter = \"bash\"\nargs = [\"{}\"]\n[env]\nWHO = \"tick\"\n[config]\nlevel = 3\n",
            out.display()
        ),
    )
    .unwrap();
    fs::write(
        repo.join("run.sh"),
        "echo \"$$ $WHO $BM2_MODULE_CONFIG\" > \"$1.tmp\" && mv \"$1.tmp\" \"$1\"\nexec sleep 1000\n",
    )
    .unwrap();
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    // A bare clone: a path ending in .git.
    git(
        env.dir.path(),
        &["clone", "-q", "--bare", "tick", "tick.git"],
    );

    env.ok(&["module", "install", "tick.git"]);
    let line = env.wait_for("the module's output", || fs::read_to_string(&out).ok());
    assert!(line.contains(" tick {\"level\":3}"), "{line}");
    let listed: Vec<Value> = serde_json::from_str(&env.ok(&["module", "list", "--json"])).unwrap();
    assert_eq!(listed[0]["name"], "tick");
    assert_eq!(listed[0]["kind"], "git");
    assert_eq!(listed[0]["commit"].as_str().unwrap().len(), 40);
    assert_eq!(listed[0]["status"], "online");
    assert!(!env.home_path().join("modules/tick/.git").exists());

    // PM2 launches the installed modules when a new daemon starts.
    let pid = module_row(&env, "tick").unwrap()["pid"].as_u64().unwrap();
    env.ok(&["kill"]);
    let row = env.wait_for("the module back after a new daemon", || {
        module_row(&env, "tick").filter(|r| r["status"] == "online")
    });
    assert_ne!(row["pid"].as_u64().unwrap(), pid);

    // A file:// URL installs the same way; `update` fetches the new commit.
    fs::write(repo.join("VERSION"), "2").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "second"]);
    let url = format!("file://{}", repo.display());
    env.ok(&["module", "install", &url]);
    let before: Vec<Value> = serde_json::from_str(&env.ok(&["module", "list", "--json"])).unwrap();
    assert!(env.home_path().join("modules/tick/VERSION").is_file());
    fs::write(repo.join("VERSION"), "3").unwrap();
    git(&repo, &["commit", "-q", "-am", "third"]);
    env.ok(&["module", "update", "tick"]);
    let after: Vec<Value> = serde_json::from_str(&env.ok(&["module", "list", "--json"])).unwrap();
    assert_ne!(before[0]["commit"], after[0]["commit"]);
    assert_eq!(
        fs::read_to_string(env.home_path().join("modules/tick/VERSION")).unwrap(),
        "3"
    );
    env.wait_for("the updated module online", || {
        module_row(&env, "tick").filter(|r| r["status"] == "online")
    });
}

#[test]
fn a_crashing_module_is_stopped_errored_and_the_daemon_stays_healthy() {
    let env = TestEnv::new();
    let d = env.path("crasher");
    fs::create_dir_all(&d).unwrap();
    fs::write(
        d.join("package.json"),
        r#"{"name":"crasher","bm2":{"script":"crash.js","max_restarts":2,"min_uptime":5000}}"#,
    )
    .unwrap();
    fs::write(d.join("crash.js"), "process.exit(3);\n").unwrap();
    env.ok(&["install", "crasher"]);
    env.wait_for("the module errored", || {
        module_row(&env, "crasher").filter(|r| r["status"] == "errored")
    });
    env.ok(&["ping"]);
    let table = env.ok(&["list"]);
    let modules = table.split_once("Modules").expect("a Modules heading").1;
    assert!(
        modules.contains("crasher") && modules.contains("errored"),
        "{table}"
    );
    assert!(env.ok(&["module", "list"]).contains("errored"));
}

#[test]
fn a_bad_module_is_refused_and_leaves_nothing_behind() {
    let env = TestEnv::new();
    let d = env.path("empty");
    fs::create_dir_all(&d).unwrap();
    let err = env.fail(&["install", "empty"]);
    assert!(
        err.contains("neither package.json nor bm2-module.toml"),
        "{err}"
    );
    let left: Vec<_> = fs::read_dir(env.home_path().join("modules"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(
        env.fail(&["install", "./missing-dir"])
            .contains("no such directory")
    );
    assert!(env.fail(&["set", "nokey", "1"]).contains("<module>:<key>"));
}

/// A BM2 module: the default export's `init(pm, config)` gets a `ProcessManager`; `destroy()`
/// runs when the module is uninstalled.
const BM2_MODULE: &str = r"const fs = require('fs');
const path = require('path');
let dir;
module.exports = {
  default: {
    name: 'watcher',
    async init(pm, config) {
      dir = config.dir;
      const before = await pm.list();
      await pm.start({ name: 'started-by-module', script: path.join(dir, 'sleep.js') });
      fs.writeFileSync(path.join(dir, 'init.json'), JSON.stringify({ count: before.length, config }));
    },
    destroy() {
      fs.writeFileSync(path.join(dir, 'destroyed'), 'yes');
    },
  },
};
";

/// The same module in TypeScript (run by bun), with its default export typed.
const BM2_MODULE_TS: &str = r"import { writeFileSync } from 'fs';
import { join } from 'path';
interface Pm { list(): Promise<unknown[]>; start(o: { name: string; script: string }): Promise<unknown>; }
let dir = '';
export default {
  name: 'watcher',
  async init(pm: Pm, config: { dir: string }): Promise<void> {
    dir = config.dir;
    const before = await pm.list();
    await pm.start({ name: 'started-by-module', script: join(dir, 'sleep.js') });
    writeFileSync(join(dir, 'init.json'), JSON.stringify({ count: before.length, config }));
  },
  destroy(): void {
    writeFileSync(join(dir, 'destroyed'), 'yes');
  },
};
";

/// Installs a BM2 module (`main` = `main`, with `source`), checks that its `init(pm)` listed
/// the processes and started one, and that uninstalling calls `destroy()`.
fn bm2_module_round_trip(main: &str, source: &str, path: Option<&str>) {
    let env = TestEnv::new();
    let d = env.path("watcher");
    fs::create_dir_all(&d).unwrap();
    fs::write(env.path("sleep.js"), "setInterval(() => {}, 1000);\n").unwrap();
    fs::write(
        d.join("package.json"),
        serde_json::json!({
            "name": "watcher", "main": main, "bm2": {"type": "module"},
            "config": {"dir": env.dir.path().display().to_string()}
        })
        .to_string(),
    )
    .unwrap();
    fs::write(d.join(main), source).unwrap();
    env.start_sleeper("app-1");
    let run = |args: &[&str]| {
        let mut cmd = env.command(args);
        if let Some(path) = path {
            cmd.env("PATH", path);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["install", "watcher"]);
    let init: Value = env.wait_for("init() to run", || {
        serde_json::from_str(&fs::read_to_string(env.path("init.json")).ok()?).ok()
    });
    assert!(init["count"].as_u64().unwrap() >= 1, "{init}");
    env.wait_status("started-by-module", "online");
    // The daemon's shutdown stops the module gracefully: destroy() runs.
    run(&["kill"]);
    assert_eq!(fs::read_to_string(env.path("destroyed")).unwrap(), "yes");
    fs::remove_file(env.path("destroyed")).unwrap();
    // The next daemon runs the module again; uninstalling it calls destroy() too.
    fs::remove_file(env.path("init.json")).unwrap();
    run(&["ping"]);
    env.wait_for("init() to run again", || {
        fs::read_to_string(env.path("init.json")).ok()
    });
    run(&["uninstall", "watcher"]);
    assert_eq!(fs::read_to_string(env.path("destroyed")).unwrap(), "yes");
}

#[test]
fn a_bm2_module_gets_a_process_manager_and_is_destroyed_on_uninstall() {
    bm2_module_round_trip("index.js", BM2_MODULE, None);
}

#[test]
fn a_bm2_module_in_typescript_runs_under_bun() {
    let path = common::bun::path_with_bun();
    bm2_module_round_trip("index.ts", BM2_MODULE_TS, Some(path.as_str()));
}

#[test]
fn a_module_from_npm_installs_when_the_registry_answers() {
    let reachable = Command::new("npm")
        .args([
            "view",
            "is-number@7.0.0",
            "version",
            "--fetch-timeout=5000",
            "--fetch-retries=0",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !reachable {
        eprintln!("skipped: the npm registry is not reachable");
        return;
    }
    let env = TestEnv::new();
    // is-number has `main` and no init: it runs (and ends) as a plain script; what matters here
    // is the install: npm's layout, the record, and the version.
    env.ok(&["module", "install", "is-number@7.0.0"]);
    let listed: Vec<Value> = serde_json::from_str(&env.ok(&["module", "list", "--json"])).unwrap();
    assert_eq!(listed[0]["name"], "is-number");
    assert_eq!(listed[0]["kind"], "npm");
    assert_eq!(listed[0]["version"], "7.0.0");
    assert!(
        env.home_path()
            .join("modules/is-number/node_modules/is-number/package.json")
            .is_file()
    );
    env.ok(&["module", "uninstall", "is-number"]);
    assert!(!env.home_path().join("modules/is-number").exists());
}

#[test]
fn a_typescript_module_runs_in_the_host_under_bun() {
    let env = TestEnv::new();
    let d = env.path("ts-mod");
    fs::create_dir_all(&d).unwrap();
    let out = env.path("ts.out");
    fs::write(
        d.join("package.json"),
        serde_json::json!({"name": "ts-mod", "main": "index.ts", "config": {"out": out.display().to_string()}}).to_string(),
    )
    .unwrap();
    fs::write(
        d.join("index.ts"),
        "import { writeFileSync } from 'fs';\nconst conf: { out: string } = JSON.parse(process.env.BM2_MODULE_CONFIG ?? '{}');\nwriteFileSync(conf.out, `typed ${process.versions.bun ? 'bun' : 'node'}`);\nsetInterval(() => {}, 1000);\n",
    )
    .unwrap();
    let path = common::bun::path_with_bun();
    let ok = env
        .command(&["install", "ts-mod"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let text = env.wait_for("the TypeScript module's output", || {
        fs::read_to_string(&out).ok()
    });
    assert_eq!(text, "typed bun");
    assert_eq!(module_row(&env, "ts-mod").unwrap()["status"], "online");
}

#[test]
fn a_new_daemon_runs_each_module_once_after_resurrect_and_concurrent_commands() {
    let env = TestEnv::new();
    let out = env.path("report.json");
    let src = reporter_module(&env, "mod-src", &out);
    env.ok(&["install", src.to_str().unwrap()]);
    report(&env, &out, 0);
    env.ok(&["save"]);
    env.ok(&["kill"]);
    // resurrect brings the saved module back; the launch of modules must not add another.
    env.ok(&["resurrect"]);
    let rows: Vec<Value> = env
        .list()
        .into_iter()
        .filter(|p| p["name"] == "mod-a")
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");

    env.ok(&["kill"]);
    // Several commands find no daemon at once: one daemon, the module once, no error.
    let handles: Vec<_> = (0..4)
        .map(|_| {
            env.command(&["ping"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for h in handles {
        let out = h.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rows = env.wait_for("the module back", || {
        let rows: Vec<Value> = env
            .list()
            .into_iter()
            .filter(|p| p["name"] == "mod-a")
            .collect();
        (!rows.is_empty()).then_some(rows)
    });
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(env.daemon_pids().len(), 1);
}
