//! Moving from PM2: `import-pm2` of PM2's saved list, the `pm2` drop-in (the binary invoked as
//! `pm2` uses `PM2_HOME` and PM2's file names), `send`, `update`, and PM2's no-op flags.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{DEADLINE, TestEnv, alive, read_pid, wait_for};
use serde_json::{Value, json};

/// A Node app that writes what it was started with (argv, execArgv, cwd, a few variables) to
/// `seen-<name>.json` in the work directory, then stays up.
const REPORTER: &str = r"const fs = require('fs');
const seen = {
  argv: process.argv.slice(2), execArgv: process.execArgv, cwd: process.cwd(),
  NODE_ENV: process.env.NODE_ENV, GREETING: process.env.GREETING,
  PM2_HOME: process.env.PM2_HOME, unique_id: process.env.unique_id,
};
const out = __dirname + '/seen-' + process.env.APP + '.json';
fs.writeFileSync(out + '.tmp', JSON.stringify(seen));
fs.renameSync(out + '.tmp', out);
setInterval(() => {}, 1000);
";

/// One process of a PM2 dump, as PM2 5 writes it (`pm2_env` without `pm_id` and `instances`,
/// with the environment copied to the top level and PM2's bookkeeping).
fn pm2_entry(name: &str, pm2_home: &Path, fields: &Value, env: Value) -> Value {
    let mut e = json!({
        "kill_retry_time": 100, "windowsHide": true, "username": "deploy", "treekill": true,
        "automation": true, "pmx": true, "instance_var": "NODE_APP_INSTANCE", "watch": false,
        "autorestart": true, "vizion": true, "merge_logs": true, "namespace": "default",
        "filter_env": [], "name": name, "node_args": [], "exec_mode": "fork_mode",
        "pm_out_log_path": pm2_home.join(format!("logs/{name}-out.log")),
        "pm_err_log_path": pm2_home.join(format!("logs/{name}-error.log")),
        "pm_pid_path": pm2_home.join(format!("pids/{name}-0.pid")),
        "km_link": false, "vizion_running": false, "NODE_APP_INSTANCE": 0,
        "status": "online", "pm_uptime": 1_680_643_638_520_u64,
        "axm_actions": [{"action_name": "km:heapdump", "action_type": "internal", "arity": 2}],
        "axm_monitor": {"Heap Size": {"value": "20.43", "type": "internal/v8/heap/total", "unit": "MiB", "historic": true}},
        "axm_options": {"error": true, "module_name": name, "module_version": "5.3.1"},
        "axm_dynamic": {}, "created_at": 1_680_643_638_520_u64, "restart_time": 3,
        "unstable_restarts": 0, "version": "1.0.0",
        "versioning": {"type": "git", "url": "https://example.com/app.git", "revision": "ac2eeee", "branch": "main"},
        "node_version": "20.11.0", "exit_code": 0,
    });
    let mut env = env;
    env[name] = json!({});
    env["unique_id"] = json!("55c69c96-caba-4dd7-9ee3-391c020ee867");
    env["PM2_HOME"] = json!(pm2_home);
    env["PM2_USAGE"] = json!("CLI");
    let obj = e.as_object_mut().unwrap();
    for (k, v) in env.as_object().unwrap() {
        if !v.is_object() {
            obj.insert(k.clone(), v.clone());
        }
    }
    obj.insert("env".into(), env);
    for (k, v) in fields.as_object().unwrap() {
        obj.insert(k.clone(), v.clone());
    }
    e
}

/// A PM2 home holding a dump of three apps: `web` (Node, fork, `node_args`, args, env), `worker`
/// (two fork instances of a shell script, custom `kill_timeout` and memory limit), and `nightly`
/// (a binary PM2 had stopped).
fn pm2_home_with_dump(env: &TestEnv) -> PathBuf {
    let pm2 = env.path("pm2-home");
    write_dump(env, &pm2);
    pm2
}

/// Writes the dump of [`pm2_home_with_dump`] in the PM2 home `pm2`.
fn write_dump(env: &TestEnv, pm2: &Path) {
    let pm2 = pm2.to_path_buf();
    fs::create_dir_all(pm2.join("logs")).unwrap();
    env.file("server.js", REPORTER);
    env.script("worker.sh", "exec sleep 1000\n");
    let path = std::env::var("PATH").unwrap();
    let dir = env.dir.path();
    let dump = json!([
        pm2_entry(
            "web",
            &pm2,
            &json!({
                "pm_exec_path": dir.join("server.js"), "pm_cwd": dir, "exec_interpreter": "node",
                "node_args": ["--max-old-space-size=128"], "args": ["--port", "3001"],
            }),
            json!({"PATH": path, "NODE_ENV": "production", "GREETING": "hello from pm2", "APP": "web"})
        ),
        pm2_entry(
            "worker",
            &pm2,
            &json!({
                "pm_exec_path": dir.join("worker.sh"), "pm_cwd": dir, "exec_interpreter": "bash",
                "merge_logs": false, "kill_timeout": 1600, "max_memory_restart": 209_715_200,
                "pm_out_log_path": pm2.join("logs/worker-out-1.log"),
            }),
            json!({"PATH": path, "QUEUE": "jobs"})
        ),
        pm2_entry(
            "worker",
            &pm2,
            &json!({
                "pm_exec_path": dir.join("worker.sh"), "pm_cwd": dir, "exec_interpreter": "bash",
                "merge_logs": false, "kill_timeout": 1600, "max_memory_restart": 209_715_200,
                "pm_out_log_path": pm2.join("logs/worker-out-2.log"), "NODE_APP_INSTANCE": 1,
            }),
            json!({"PATH": path, "QUEUE": "jobs"})
        ),
        pm2_entry(
            "nightly",
            &pm2,
            &json!({
                "pm_exec_path": "/usr/bin/sleep", "pm_cwd": dir, "exec_interpreter": "none",
                "args": ["1000"], "status": "stopped",
            }),
            json!({"PATH": path})
        ),
    ]);
    fs::write(
        pm2.join("dump.pm2"),
        serde_json::to_string_pretty(&dump).unwrap(),
    )
    .unwrap();
}

fn seen(env: &TestEnv, app: &str) -> Value {
    let path = env.path(&format!("seen-{app}.json"));
    let text = env.wait_for(&format!("{} to be written", path.display()), || {
        fs::read_to_string(&path).ok()
    });
    serde_json::from_str(&text).unwrap()
}

fn statuses(env: &TestEnv) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = env
        .list()
        .iter()
        .map(|p| {
            (
                p["instance_name"].as_str().unwrap().to_string(),
                p["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    rows.sort();
    rows
}

// ---- import-pm2 ----

#[test]
fn import_pm2_registers_the_saved_apps_stopped_by_default() {
    let env = TestEnv::new();
    let pm2 = pm2_home_with_dump(&env);
    let out = env.ok(&["import-pm2", "--pm2-home", pm2.to_str().unwrap()]);
    assert!(out.contains("web"), "{out}");
    assert_eq!(
        statuses(&env),
        [
            ("nightly".to_string(), "stopped".to_string()),
            ("web".into(), "stopped".into()),
            ("worker-0".into(), "stopped".into()),
            ("worker-1".into(), "stopped".into()),
        ]
    );
    let web = env.describe("web");
    assert_eq!(
        web["spec"]["script"],
        env.path("server.js").to_str().unwrap()
    );
    assert_eq!(
        web["spec"]["node_args"],
        json!(["--max-old-space-size=128"])
    );
    assert_eq!(web["spec"]["args"], json!(["--port", "3001"]));
    assert_eq!(web["spec"]["interpreter"], "node");
    let worker = env.describe("worker-0");
    assert_eq!(worker["spec"]["kill_timeout"], 1600);
    assert_eq!(worker["spec"]["instances"], 2);
    assert!(
        worker["spec"]["out_file"].is_null(),
        "PM2's default log file is left to bm2's: {}",
        worker["spec"]["out_file"]
    );
    // Nothing PM2-internal became an option or a variable of the app.
    assert!(
        web["spec"]["env"].get("unique_id").is_none(),
        "{}",
        web["spec"]["env"]
    );
    assert!(web["spec"]["env"].get("PM2_HOME").is_none());
    assert!(web["spec"]["env"].get("web").is_none());
}

#[test]
fn import_pm2_start_runs_what_pm2_ran_as_pm2_ran_it() {
    let env = TestEnv::new();
    let pm2 = pm2_home_with_dump(&env);
    env.ok(&["import-pm2", "--pm2-home", pm2.to_str().unwrap(), "--start"]);
    env.wait_status("web", "online");
    env.wait_status("worker-0", "online");
    env.wait_status("worker-1", "online");
    assert_eq!(
        env.proc("nightly")["status"],
        "stopped",
        "PM2 had it stopped"
    );
    let s = seen(&env, "web");
    assert_eq!(s["argv"], json!(["--port", "3001"]));
    assert_eq!(
        s["execArgv"],
        json!(["--enable-source-maps", "--max-old-space-size=128"])
    );
    assert_eq!(s["cwd"], env.dir.path().to_str().unwrap());
    assert_eq!(s["NODE_ENV"], "production");
    assert_eq!(s["GREETING"], "hello from pm2");
    assert!(s["PM2_HOME"].is_null() && s["unique_id"].is_null(), "{s}");
    // Importing again registers nothing twice.
    let (ok, _, err) = env.output(&["import-pm2", "--pm2-home", pm2.to_str().unwrap()]);
    assert!(!ok && err.contains("web"), "{err}");
    assert_eq!(env.list().len(), 4);
}

#[test]
fn import_pm2_names_a_missing_or_corrupt_dump() {
    let env = TestEnv::new();
    let pm2 = env.path("empty-pm2");
    fs::create_dir_all(&pm2).unwrap();
    let err = env.fail(&["import-pm2", "--pm2-home", pm2.to_str().unwrap()]);
    let dump = pm2.join("dump.pm2");
    assert!(err.contains(dump.to_str().unwrap()), "{err}");
    fs::write(&dump, "[{\"name\": \"web\", \"pm_exec_path\": ").unwrap();
    let err = env.fail(&["import-pm2", "--pm2-home", pm2.to_str().unwrap()]);
    assert!(
        err.contains(dump.to_str().unwrap()) && err.contains("not a PM2 process list"),
        "{err}"
    );
    // PM2_HOME is the default.
    let err = String::from_utf8_lossy(
        &env.command(&["import-pm2"])
            .env("PM2_HOME", &pm2)
            .output()
            .unwrap()
            .stderr,
    )
    .into_owned();
    assert!(err.contains(dump.to_str().unwrap()), "{err}");
    assert!(env.list().is_empty());
}

// ---- the pm2 drop-in ----

/// The bm2 binary invoked as `pm2` through a symlink, with `PM2_HOME` set to the environment's
/// home and `BM2_HOME` to a directory it must leave alone.
struct Pm2Env {
    env: TestEnv,
    link: PathBuf,
    vars: Vec<(&'static str, PathBuf)>,
}

impl Pm2Env {
    fn new() -> Pm2Env {
        let env = TestEnv::new();
        let bin = env.path("bin");
        fs::create_dir_all(&bin).unwrap();
        let link = bin.join("pm2");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_bm2"), &link).unwrap();
        Pm2Env {
            env,
            link,
            vars: Vec::new(),
        }
    }

    fn home(&self) -> &Path {
        self.env.home_path()
    }

    fn bm2_home(&self) -> PathBuf {
        self.env.path("bm2-home-unused")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.link);
        cmd.args(args)
            .current_dir(self.env.dir.path())
            .env("PM2_HOME", self.home())
            .env("BM2_HOME", self.bm2_home())
            .env("NO_COLOR", "1")
            .env("BM2_SAMPLE_INTERVAL_MS", "200")
            .envs(self.vars.iter().cloned());
        cmd
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "pm2 {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn list(&self) -> Vec<Value> {
        serde_json::from_str(&self.ok(&["list", "--json"])).unwrap()
    }

    fn wait_status(&self, name: &str, status: &str) -> Value {
        wait_for(&format!("{name} to be {status}"), DEADLINE, || {
            self.list()
                .into_iter()
                .find(|p| p["instance_name"] == name && p["status"] == status)
        })
    }

    fn pid_file(&self) -> PathBuf {
        self.vars
            .iter()
            .find(|(k, _)| *k == "PM2_PID_FILE_PATH")
            .map_or_else(|| self.home().join("pm2.pid"), |(_, p)| p.clone())
    }
}

impl Drop for Pm2Env {
    fn drop(&mut self) {
        let daemon = read_pid(&self.pid_file());
        let _ = self.command(&["kill"]).output();
        if let Some(pid) = daemon {
            let gone = (0..500).any(|_| {
                if !alive(pid) {
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
                false
            });
            if !gone {
                common::kill_pid(pid, "KILL");
                assert!(
                    std::thread::panicking(),
                    "the pm2 daemon {pid} outlived `pm2 kill`"
                );
            }
        }
    }
}

#[test]
fn invoked_as_pm2_it_keeps_pm2_home_with_pm2_file_names() {
    let pm2 = Pm2Env::new();
    pm2.ok(&common::sleeper_args("api"));
    let api = pm2.wait_status("api", "online");
    let home = pm2.home();
    let daemon = read_pid(&home.join("pm2.pid")).expect("pm2.pid holds the daemon's pid");
    assert!(alive(daemon));
    assert!(!home.join("daemon.pid").exists());
    assert!(home.join("pm2.log").exists(), "the daemon logs to pm2.log");
    assert!(home.join("logs/api-out.log").exists());
    assert!(home.join("logs/api-error.log").exists());
    let id = api["id"].as_u64().unwrap();
    assert_eq!(
        read_pid(&home.join(format!("pids/api-{id}.pid"))).map(u64::from),
        api["pid"].as_u64()
    );
    // Several instances: one file per instance, named as PM2 names them.
    pm2.ok(&[
        "start",
        "sleep",
        "--name",
        "w",
        "-i",
        "2",
        "--interpreter",
        "none",
        "--",
        "1000",
    ]);
    let w0 = pm2.wait_status("w-0", "online")["id"].as_u64().unwrap();
    let w1 = pm2.wait_status("w-1", "online")["id"].as_u64().unwrap();
    for id in [w0, w1] {
        assert!(
            home.join(format!("logs/w-out-{id}.log")).exists(),
            "w-out-{id}.log"
        );
    }
    // save writes dump.pm2, and keeps the previous one as dump.pm2.bak.
    pm2.ok(&["save"]);
    let first = fs::read(home.join("dump.pm2")).expect("dump.pm2");
    assert!(!home.join("dump.pm2.bak").exists());
    pm2.ok(&["delete", "w"]);
    pm2.ok(&["save"]);
    assert_eq!(fs::read(home.join("dump.pm2.bak")).unwrap(), first);
    assert!(!home.join("dump.json").exists());
    assert!(
        !pm2.bm2_home().exists(),
        "BM2_HOME is not used under the name pm2"
    );
    // `pm2 resurrect` after a broken save falls back to the backup, as PM2 does.
    pm2.ok(&["kill"]);
    fs::write(home.join("dump.pm2"), "{ broken").unwrap();
    pm2.ok(&["resurrect"]);
    pm2.wait_status("api", "online");
    pm2.wait_status("w-1", "online");
}

#[test]
fn pm2_pid_file_path_moves_the_daemon_pid_file() {
    let mut pm2 = Pm2Env::new();
    let moved = pm2.env.path("pm2-daemon.pid");
    pm2.vars.push(("PM2_PID_FILE_PATH", moved.clone()));
    pm2.ok(&["ping"]);
    let daemon = read_pid(&moved).expect("the pid file where PM2_PID_FILE_PATH says");
    assert!(alive(daemon));
    assert!(!pm2.home().join("pm2.pid").exists());
    pm2.ok(&["kill"]);
    assert!(!moved.exists(), "removed when the daemon exits");
}

#[test]
fn pm2_resurrect_brings_back_a_dump_left_by_pm2() {
    let pm2 = Pm2Env::new();
    write_dump(&pm2.env, pm2.home());
    pm2.ok(&["resurrect"]);
    pm2.wait_status("web", "online");
    pm2.wait_status("worker-1", "online");
    pm2.wait_status("nightly", "stopped");
    assert_eq!(seen(&pm2.env, "web")["GREETING"], "hello from pm2");
}

// ---- send ----

/// Starts `reader`: appends each line of its stdin to `got.txt`.
fn start_reader(env: &TestEnv) -> u64 {
    env.script(
        "reader.sh",
        "echo started > ready\nwhile IFS= read -r line; do echo \"got:$line\" >> got.txt; done\necho eof >> got.txt\nexec sleep 1000\n",
    );
    env.ok(&["start", "reader.sh", "--name", "reader"]);
    env.wait_marker("ready");
    env.wait_status("reader", "online")["id"].as_u64().unwrap()
}

fn wait_got(env: &TestEnv, needle: &str) -> String {
    let path = env.path("got.txt");
    env.wait_for(&format!("{needle:?} in got.txt"), || {
        fs::read_to_string(&path)
            .ok()
            .filter(|s| s.contains(needle))
    })
}

#[test]
fn send_writes_a_line_to_the_stdin_of_a_process() {
    let env = TestEnv::new();
    let id = start_reader(&env).to_string();
    env.ok(&["send", &id, "hello world"]);
    env.ok(&["send", "reader", "-second line"]);
    let got = wait_got(&env, "got:-second line");
    assert_eq!(got, "got:hello world\ngot:-second line\n");
    // After a restart, the new process gets the lines.
    env.ok(&["restart", "reader"]);
    env.wait_marker("ready");
    env.ok(&["send", &id, "after restart"]);
    wait_got(&env, "got:after restart");
}

#[test]
fn send_to_a_process_that_is_stopped_or_closed_its_stdin_says_so() {
    let env = TestEnv::new();
    let id = start_reader(&env).to_string();
    env.ok(&["stop", &id]);
    let err = env.fail(&["send", &id, "x"]);
    assert!(err.contains("not running"), "{err}");
    env.script(
        "closer.sh",
        "exec 0<&-\necho closed > closed\nexec sleep 1000\n",
    );
    env.ok(&["start", "closer.sh", "--name", "closer"]);
    env.wait_marker("closed");
    let err = env.fail(&["send", "closer", "x"]);
    assert!(err.contains("closed its stdin"), "{err}");
    let err = env.fail(&["send", "nosuch", "x"]);
    assert!(err.contains("nosuch"), "{err}");
    env.ok(&["ping"]);
    assert_eq!(env.proc("closer")["status"], "online");
}

#[test]
fn send_to_a_process_that_does_not_read_harms_nothing() {
    let env = TestEnv::new();
    let id = start_reader(&env).to_string();
    env.script("deaf.sh", "exec sleep 1000\n");
    env.ok(&["start", "deaf.sh", "--name", "deaf"]);
    env.wait_status("deaf", "online");
    // More than a pipe holds: the write waits; its client goes away meanwhile.
    let big = "x".repeat(100_000);
    let mut client = env.command(&["send", "deaf", &big]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = client.kill();
    let _ = client.wait();
    env.ok(&["ping"]);
    env.ok(&["send", &id, "still served"]);
    wait_got(&env, "got:still served");
    // A second writer to the full pipe gets an error in bounded time.
    let t = std::time::Instant::now();
    let err = env.fail(&["send", "deaf", "y"]);
    assert!(err.contains("did not read its stdin"), "{err}");
    assert!(t.elapsed() < std::time::Duration::from_secs(15));
    assert_eq!(env.proc("deaf")["status"], "online");
}

// ---- update ----

fn ids_and_statuses(env: &TestEnv) -> Vec<(u64, String, String)> {
    let mut rows: Vec<(u64, String, String)> = env
        .list()
        .iter()
        .map(|p| {
            (
                p["id"].as_u64().unwrap(),
                p["instance_name"].as_str().unwrap().to_string(),
                p["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn update_keeps_every_app_and_saves_the_list_as_pm2_does() {
    let env = TestEnv::new();
    let a = env.start_sleeper("a");
    env.start_sleeper("b");
    env.ok(&["stop", "b"]);
    env.ok(&[
        "start",
        "sleep",
        "--name",
        "c",
        "-i",
        "2",
        "--interpreter",
        "none",
        "--",
        "1000",
    ]);
    env.wait_status("c-1", "online");
    env.ok(&["env", "set", "a", "COLOR", "blue"]);
    let before = ids_and_statuses(&env);
    let daemon = env.daemon_pid().unwrap();
    for alias in ["update", "updatePM2"] {
        let out = env.ok(&[alias]);
        // The list printed after the update: a, b and both instances of c.
        assert!(
            out.contains(" a ") && out.contains(" b ") && out.matches(" c ").count() == 2,
            "{out}"
        );
        assert_eq!(
            env.daemon_pid(),
            Some(daemon),
            "{alias}: the same daemon, in place"
        );
        assert_eq!(
            ids_and_statuses(&env),
            before,
            "{alias}: same ids, names and states"
        );
    }
    assert_eq!(
        env.proc("a")["pid"].as_u64(),
        Some(a),
        "a was not restarted"
    );
    assert!(
        env.home_path().join("dump.json").exists(),
        "the list was saved, as PM2's update does"
    );
    assert!(env.ok(&["env", "get", "a"]).contains("blue"));
}

#[test]
fn update_without_apps_keeps_the_saved_list() {
    let env = TestEnv::new();
    env.start_sleeper("a");
    env.ok(&["save"]);
    env.ok(&["delete", "a"]);
    let saved = fs::read(env.home_path().join("dump.json")).unwrap();
    let old = env.daemon_pid().unwrap();
    env.ok(&["update"]);
    assert_eq!(env.daemon_pid(), Some(old));
    assert!(env.list().is_empty());
    assert_eq!(
        fs::read(env.home_path().join("dump.json")).unwrap(),
        saved,
        "an empty list does not overwrite the last save"
    );
}

// ---- serve ----

/// `GET path` on 127.0.0.1:port (with an Authorization header when given): status and body.
fn http_get(port: u16, path: &str, auth: Option<&str>) -> Option<(u16, String, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    let auth = auth
        .map(|a| format!("Authorization: Basic {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, head.to_ascii_lowercase(), body.to_string()))
}

fn www(env: &TestEnv) -> PathBuf {
    let dir = env.path("www");
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("index.html"), "<p>home</p>").unwrap();
    fs::write(dir.join("about.html"), "<p>about</p>").unwrap();
    fs::write(dir.join("app.js"), "console.log(1)").unwrap();
    dir
}

fn wait_serving(env: &TestEnv, port: u16) {
    env.wait_for(&format!("a server on port {port}"), || {
        http_get(port, "/", None)
    });
}

#[test]
fn serve_runs_pm2s_static_server_as_a_managed_app() {
    let env = TestEnv::new();
    let dir = www(&env);
    let port = common::free_port();
    env.ok(&["serve", dir.to_str().unwrap(), &port.to_string()]);
    let name = format!("static-page-server-{port}");
    env.wait_status(&name, "online");
    wait_serving(&env, port);
    let (status, head, body) = http_get(port, "/", None).unwrap();
    assert_eq!((status, body.as_str()), (200, "<p>home</p>"));
    assert!(head.contains("content-type: text/html"), "{head}");
    let (status, head, _) = http_get(port, "/app.js", None).unwrap();
    assert_eq!(status, 200);
    assert!(head.contains("application/javascript"), "{head}");
    assert_eq!(
        http_get(port, "/nope.html", None).unwrap().2,
        "404 Not Found"
    );
    fs::write(dir.join("404.html"), "custom missing").unwrap();
    let (status, _, body) = http_get(port, "/nope.html", None).unwrap();
    assert_eq!((status, body.as_str()), (404, "custom missing"));
    assert_eq!(
        http_get(port, "/%2e%2e/%2e%2e/etc/passwd", None).unwrap().0,
        403
    );
    // Supervised like any app: killed, it comes back.
    let pid = env.proc(&name)["pid"].as_u64().unwrap();
    common::kill_pid(u32::try_from(pid).unwrap(), "KILL");
    env.wait_new_pid(&name, pid);
    wait_serving(&env, port);
}

#[test]
fn serve_spa_and_basic_auth_as_in_pm2() {
    let env = TestEnv::new();
    let dir = www(&env);
    let spa = common::free_port();
    env.ok(&["serve", dir.to_str().unwrap(), &spa.to_string(), "--spa"]);
    wait_serving(&env, spa);
    let (status, _, body) = http_get(spa, "/deep/client/route", None).unwrap();
    assert_eq!((status, body.as_str()), (200, "<p>home</p>"));
    assert_eq!(
        http_get(spa, "/x/about.html", None).unwrap().2,
        "<p>about</p>"
    );
    let locked = common::free_port();
    env.ok(&[
        "serve",
        dir.to_str().unwrap(),
        "--port",
        &locked.to_string(),
        "--name",
        "locked",
        "--basic-auth-username",
        "ops",
        "--basic-auth-password",
        "s3cret",
    ]);
    env.wait_status("locked", "online");
    let (status, head, _) = env.wait_for("the locked server", || http_get(locked, "/", None));
    assert_eq!(status, 401);
    assert!(head.contains("www-authenticate: basic"), "{head}");
    // "ops:wrong" and "ops:s3cret" in base64.
    assert_eq!(http_get(locked, "/", Some("b3BzOndyb25n")).unwrap().0, 401);
    assert_eq!(
        http_get(locked, "/", Some("b3BzOnMzY3JldA==")).unwrap().0,
        200
    );
    // PM2's defaults: the current directory, PM2_SERVE_PORT for the port.
    let third = common::free_port();
    let out = env
        .command(&["serve"])
        .current_dir(&dir)
        .env("PM2_SERVE_PORT", third.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_serving(&env, third);
    assert_eq!(
        http_get(third, "/about.html", None).unwrap().2,
        "<p>about</p>"
    );
    env.wait_status(&format!("static-page-server-{third}"), "online");
}

// ---- PM2's flags and variables ----

#[test]
fn pm2_no_op_flags_are_accepted() {
    let env = TestEnv::new();
    env.ok(&[
        "start",
        "sleep",
        "--name",
        "quiet",
        "--interpreter",
        "none",
        "--no-vizion",
        "--no-automation",
        "--no-pmx",
        "--",
        "1000",
    ]);
    env.wait_status("quiet", "online");
    env.ok(&["restart", "quiet", "--no-vizion"]);
    env.ok(&["--no-pmx", "list"]);
    let help = env.ok(&["start", "--help"]);
    assert!(
        help.contains("--no-vizion") && help.contains("no effect"),
        "{help}"
    );
}

/// A Node app that writes `shutdown` when it gets PM2's shutdown message, `sigint` on SIGINT.
const POLITE: &str = r"const fs = require('fs');
process.on('message', (m) => {
  if (m === 'shutdown') { fs.writeFileSync(__dirname + '/shutdown', 'shutdown\n'); process.exit(0); }
});
process.on('SIGINT', () => { fs.writeFileSync(__dirname + '/sigint', 'sigint\n'); process.exit(0); });
fs.writeFileSync(__dirname + '/up', 'up\n');
setInterval(() => {}, 1000);
";

#[test]
fn pm2_kill_use_message_asks_every_app_to_shut_down_by_message() {
    let env = TestEnv::new();
    env.file("polite.js", POLITE);
    let out = env
        .command(&["start", "polite.js"])
        .env("PM2_KILL_USE_MESSAGE", "true")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.wait_status("polite", "online");
    env.wait_marker("up");
    env.ok(&["stop", "polite"]);
    assert!(!env.path("sigint").exists(), "SIGINT came first");
    assert_eq!(
        fs::read_to_string(env.path("shutdown")).ok().as_deref(),
        Some("shutdown\n")
    );
}

#[test]
fn attach_follows_the_logs_of_the_started_app_until_interrupted() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::sync::mpsc;

    let env = TestEnv::new();
    env.file(
        "ticker.sh",
        "i=0; while true; do i=$((i+1)); echo \"tick $i\"; sleep 0.1; done\n",
    );
    let mut cli = env
        .command(&["start", "ticker.sh", "--attach"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = cli.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    let ticked = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("tick ") && line.contains("ticker") => break true,
            Ok(line) => seen.push(line),
            Err(_) => break false,
        }
    };
    let still_attached = cli.try_wait().unwrap().is_none();
    let _ = cli.kill();
    let _ = cli.wait();
    assert!(
        ticked,
        "no log line of the app after start --attach: {seen:?}"
    );
    assert!(
        still_attached,
        "start --attach returned instead of following"
    );
    // Not for commands after which there is nothing to follow.
    let err = env.fail(&["delete", "ticker", "--attach"]);
    assert!(err.contains("--attach"), "{err}");
    assert_eq!(env.proc("ticker")["status"], "online", "nothing deleted");
}

#[test]
fn a_line_send_reported_as_not_sent_is_not_delivered_later() {
    let env = TestEnv::new();
    // Reads nothing for 15 s, then copies its stdin to a file.
    env.script("late.sh", "sleep 15\nexec cat > got.txt\n");
    env.ok(&["start", "late.sh", "--name", "late"]);
    env.wait_status("late", "online");
    let started = std::time::Instant::now();
    // More than the pipe holds: this one fills it and is given up at the deadline.
    let err = env.fail(&["send", "late", &"x".repeat(100_000)]);
    assert!(err.contains("did not read its stdin"), "{err}");
    let err = env.fail(&["send", "late", "marker"]);
    assert!(err.contains("did not read its stdin"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(14),
        "the sends must end before the process reads: {:?}",
        started.elapsed()
    );
    // Once it reads, it gets what was in the pipe, and nothing after it settles.
    let got = env.path("got.txt");
    let mut last = 0;
    let body = env.wait_for("got.txt to stop growing", || {
        let len = fs::metadata(&got).map_or(0, |m| m.len());
        let settled = len > 0 && len == last;
        last = len;
        std::thread::sleep(std::time::Duration::from_millis(300));
        settled.then(|| fs::read_to_string(&got).unwrap())
    });
    assert!(
        !body.contains("marker"),
        "a send reported as failed was delivered later"
    );
}
