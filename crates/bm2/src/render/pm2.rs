//! The process list in PM2's `jlist` shape, which scripts and tools parse, in PM2's key order
//! (`God.getFormatedProcesses` and `getMonitorData`: `pid`, `name`, `pm2_env`, `pm_id`,
//! `monit`; in `pm2_env` the app's options, its environment flattened, then the runtime keys).
//!
//! Every instance carries its app's `name`; an instance is told apart by `pm_id` and
//! `NODE_APP_INSTANCE`, as in PM2.

use std::path::{Path, PathBuf};

use bm2_types::ProcDetail;

use super::inspect::{Js, ObjBuilder, inspect};

/// The list as PM2's `pm2 jlist` prints it (JSON).
pub fn jlist(details: &[ProcDetail]) -> String {
    serde_json::to_string(&list(details)).unwrap_or_else(|_| "[]".into())
}

/// The list as PM2's `pm2 prettylist` prints it (Node's `util.inspect` layout).
pub fn prettylist(details: &[ProcDetail]) -> String {
    inspect(&list(details))
}

fn list(details: &[ProcDetail]) -> Js {
    Js::Arr(details.iter().map(process).collect())
}

fn process(d: &ProcDetail) -> Js {
    let s = &d.summary;
    let mut p = ObjBuilder::default();
    p.set("pid", s.pid.unwrap_or(0))
        .set("name", s.name.as_str())
        .set("pm2_env", pm2_env(d))
        .set("pm_id", s.id);
    let mut monit = ObjBuilder::default();
    // PM2 rounds the CPU share to one decimal.
    monit
        .set("memory", s.memory)
        .set("cpu", Js::Float((f64::from(s.cpu) * 10.0).round() / 10.0));
    p.set("monit", monit.build());
    p.build()
}

fn strings(v: &[String]) -> Js {
    Js::from(v)
}

fn path(p: &Path) -> Js {
    Js::Str(p.display().to_string())
}

/// The keys PM2 sets last in `pm2_env`, after the app's variables.
const RUNTIME_KEYS: [&str; 13] = [
    "status",
    "pm_uptime",
    "axm_actions",
    "axm_monitor",
    "axm_options",
    "axm_dynamic",
    "created_at",
    "pm_id",
    "restart_time",
    "unstable_restarts",
    "version",
    "versioning",
    "exit_code",
];

fn pm2_env(d: &ProcDetail) -> Js {
    let s = &d.summary;
    let spec = &d.spec;
    let mut e = ObjBuilder::default();
    // The app's options, as PM2 keeps them after `prepareAppConf`.
    e.set("kill_retry_time", spec.kill_retry_time)
        .set("windowsHide", true)
        .set("username", env_var(d, "USER").unwrap_or_default())
        .set("treekill", spec.treekill)
        .set("automation", false)
        .set("pmx", false)
        .set("instance_var", spec.instance_var.as_str())
        .set("watch", d.watch.as_ref().is_some_and(|w| w.watching))
        .set("ignore_watch", strings(&spec.ignore_watch))
        .set("watch_delay", spec.watch_delay)
        .set("autorestart", spec.autorestart)
        .set("autostart", spec.autostart)
        .set("vizion", false)
        .set("merge_logs", spec.merge_logs || d.instances <= 1)
        .set("env", env_block(d))
        .set("namespace", s.namespace.as_str())
        .set("filter_env", Js::Arr(Vec::new()))
        .set("name", s.name.as_str())
        .set("node_args", strings(&spec.node_args))
        .set("interpreter_args", strings(&spec.interpreter_args))
        .set("args", strings(&spec.args))
        .set("pm_exec_path", path(&exec_path(d)))
        .set("pm_cwd", path(&cwd(d)))
        .set(
            "exec_interpreter",
            d.interpreter.clone().unwrap_or_else(|| "none".into()),
        )
        .set("exec_mode", spec.exec_mode.pm2_name())
        .set("instances", d.instances)
        .set("max_restarts", spec.max_restarts)
        .set("min_uptime", spec.min_uptime)
        .set("restart_delay", spec.restart_delay)
        .set("exp_backoff_restart_delay", spec.exp_backoff_restart_delay)
        .set("kill_timeout", spec.kill_timeout)
        .set("kill_signal", spec.kill_signal.to_string())
        .set("stop_exit_codes", Js::from(spec.stop_exit_codes.as_slice()))
        .set("max_memory_restart", spec.max_memory_restart.map(|b| b.0))
        .set("cron_restart", spec.cron_restart.clone())
        .set("wait_ready", spec.wait_ready)
        .set("listen_timeout", spec.listen_timeout)
        .set("shutdown_with_message", spec.shutdown_with_message)
        .set("uid", spec.uid.clone())
        .set("gid", spec.gid.clone())
        .set("pm_out_log_path", path(&d.out_log))
        .set("pm_err_log_path", path(&d.err_log));
    // PM2 has `pm_log_path` only when both streams also go to one file (`-l`, `log_file`).
    if let Some(log) = &d.log_file {
        e.set("pm_log_path", path(log));
    }
    e.set("pm_pid_path", path(&d.pid_file))
        .set("km_link", false)
        .set("vizion_running", false)
        .set("NODE_APP_INSTANCE", s.instance);
    // PM2 flattens the app's variables into pm2_env (its own keys win here, in their place).
    for (k, v) in &d.env {
        if !e.has(k) && !RUNTIME_KEYS.contains(&k.as_str()) {
            e.set(k, v.as_str());
        }
    }
    let mut axm = ObjBuilder::default();
    axm.set("module_name", s.name.as_str());
    e.set("status", s.status.as_str())
        .set("pm_uptime", s.started_at_ms.unwrap_or(d.created_at_ms))
        .set("axm_actions", Js::Arr(Vec::new()))
        .set("axm_monitor", Js::Obj(Vec::new()))
        .set("axm_options", axm.build())
        .set("axm_dynamic", Js::Obj(Vec::new()))
        .set("created_at", d.created_at_ms)
        .set("pm_id", s.id)
        .set("restart_time", s.restarts)
        .set("unstable_restarts", s.unstable_restarts)
        .set("version", package_version(&cwd(d)))
        .set("versioning", Js::Null)
        .set(
            "exit_code",
            d.last_exit
                .as_ref()
                .and_then(|x| x.code)
                .map_or(Js::Null, Js::from),
        );
    e.build()
}

/// `pm2_env.env`: the variables the process gets, as strings.
fn env_block(d: &ProcDetail) -> Js {
    Js::Obj(
        d.env
            .iter()
            .map(|(k, v)| (k.clone(), Js::Str(v.clone())))
            .collect(),
    )
}

fn env_var<'a>(d: &'a ProcDetail, key: &str) -> Option<&'a str> {
    d.env.get(key).map(String::as_str)
}

fn cwd(d: &ProcDetail) -> PathBuf {
    d.spec.cwd.clone().unwrap_or_else(|| PathBuf::from("/"))
}

/// The script as an absolute path, as PM2's `pm_exec_path` is: resolved against the app's
/// directory, else looked up in the app's `PATH` (a command such as `npm`).
fn exec_path(d: &ProcDetail) -> PathBuf {
    let script = Path::new(&d.spec.script);
    if script.is_absolute() {
        return script.to_path_buf();
    }
    let joined = cwd(d).join(script);
    if joined.exists() || script.components().count() > 1 {
        return joined;
    }
    let path = env_var(d, "PATH").map_or_else(
        || std::env::var_os("PATH").unwrap_or_default(),
        std::ffi::OsString::from,
    );
    std::env::split_paths(&path)
        .map(|dir| dir.join(script))
        .find(|p| p.is_file())
        .unwrap_or(joined)
}

/// The `version` of the app's `package.json`, or `N/A`, as PM2 shows it.
fn package_version(dir: &Path) -> String {
    std::fs::read(dir.join("package.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("version")?.as_str().map(str::to_string))
        .unwrap_or_else(|| "N/A".into())
}

/// PM2's minimal list (`pm2 ls -m`): a block of `key : value` lines per process.
pub fn mini_list(details: &[ProcDetail]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for d in details {
        let s = &d.summary;
        let online = s.status == bm2_types::ProcStatus::Online;
        let uptime = match s.started_at_ms {
            Some(t) if online => time_since(super::since(Some(t))),
            _ => "0".into(),
        };
        let mode = d.spec.exec_mode.pm2_name().trim_end_matches("_mode");
        let watching = if d.watch.as_ref().is_some_and(|w| w.watching) {
            "yes"
        } else {
            "no"
        };
        let _ = write!(
            out,
            "+--- {}\nnamespace : {}\nversion : {}\npid : {}\npm2 id : {}\nstatus : {}\n\
             mode : {mode}\nrestarted : {}\nuptime : {uptime}\nmemory usage : {}\n\
             error log : {}\nwatching : {watching}\nPID file : {}\n\n",
            super::escape::text(&s.name),
            super::escape::text(&s.namespace),
            package_version(&cwd(d)),
            s.pid.unwrap_or(0),
            s.id,
            s.status.as_str(),
            s.restarts,
            bytes_to_size(s.memory),
            super::escape::text(&d.err_log.display().to_string()),
            super::escape::text(&d.pid_file.display().to_string()),
        );
    }
    out
}

/// PM2's `timeSince`: the largest unit that counts more than one (`2D`, `5h`, `3m`, `40s`).
fn time_since(ms: u64) -> String {
    let s = ms / 1000;
    for (unit, label) in [
        (31_536_000, "Y"),
        (2_592_000, "M"),
        (86_400, "D"),
        (3600, "h"),
        (60, "m"),
    ] {
        if s / unit > 1 {
            return format!("{}{label}", s / unit);
        }
    }
    format!("{s}s")
}

/// PM2's `bytesToSize(bytes, 1)`: `512b `, `1.5kb `, `30.2mb ` (with its trailing space).
#[allow(clippy::cast_precision_loss)]
fn bytes_to_size(bytes: u64) -> String {
    const K: u64 = 1024;
    for (unit, label) in [
        (K * K * K * K, "tb"),
        (K * K * K, "gb"),
        (K * K, "mb"),
        (K, "kb"),
    ] {
        if bytes >= unit {
            return format!("{:.1}{label} ", bytes as f64 / unit as f64);
        }
    }
    format!("{bytes}b ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(id: u32, app: &str, instance: u32, instances: u32) -> ProcDetail {
        let mut summary = crate::render::test_row(id, app);
        summary.instance = instance;
        summary.instance_name = format!("{app}-{instance}");
        ProcDetail {
            summary,
            spec: bm2_types::AppSpec {
                name: app.into(),
                script: "server.js".into(),
                cwd: Some("/srv/app".into()),
                ..bm2_types::AppSpec::default()
            },
            instances,
            interpreter: Some("node".into()),
            env: [("PORT".to_string(), "3000".to_string())].into(),
            pending_env: Vec::new(),
            created_at_ms: 5,
            last_exit: None,
            status_reason: None,
            file_handles: None,
            out_log: "/h/logs/w-out-1.log".into(),
            err_log: "/h/logs/w-error-1.log".into(),
            log_file: None,
            log_dropped_bytes: 0,
            pid_file: "/h/pids/w-1.pid".into(),
            cluster: None,
            last_restart: None,
            health: None,
            cron: None,
            watch: None,
        }
    }

    #[test]
    fn every_instance_carries_its_app_name_and_pm2_order() {
        let text = jlist(&[detail(1, "worker", 1, 2)]);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v[0]["name"], "worker");
        assert_eq!(v[0]["pm2_env"]["name"], "worker");
        assert_eq!(v[0]["pm2_env"]["NODE_APP_INSTANCE"], 1);
        assert_eq!(v[0]["pm2_env"]["pm_exec_path"], "/srv/app/server.js");
        assert_eq!(v[0]["pm2_env"]["axm_options"]["module_name"], "worker");
        assert_eq!(v[0]["pm2_env"]["PORT"], "3000");
        let at = |k: &str| text.find(&format!("\"{k}\"")).unwrap();
        assert!(at("pid") < at("name") && at("name") < at("pm2_env"));
        // The flattened variable comes after the log paths and before the runtime keys.
        let port = text.rfind("\"PORT\"").unwrap();
        assert!(at("pm_out_log_path") < port && port < at("status"));
        assert!(
            text.ends_with(r#""pm_id":1,"monit":{"memory":0,"cpu":0}}]"#),
            "{text}"
        );
        assert!(
            !text.contains("pm_log_path"),
            "no combined log, no pm_log_path"
        );
    }

    #[test]
    fn prettylist_is_inspect_layout() {
        let text = prettylist(&[detail(0, "api", 0, 1)]);
        assert!(text.starts_with("[\n  {\n    pid: 1,\n    name: 'api',\n    pm2_env: {\n"));
        assert!(text.contains("\n      status: 'online',\n"), "{text}");
        assert!(text.contains("\n      restart_time: 0,\n"), "{text}");
        assert!(text.ends_with("    pm_id: 0,\n    monit: { memory: 0, cpu: 0 }\n  }\n]"));
    }

    #[test]
    fn mini_list_has_pm2_keys() {
        let mut d = detail(2, "api", 0, 1);
        d.summary.memory = 3 * 1024 * 1024 / 2;
        let text = mini_list(&[d]);
        assert!(text.starts_with("+--- api\nnamespace : default\nversion : N/A\npid : 1\npm2 id : 2\nstatus : online\nmode : fork\nrestarted : 0\nuptime : 0\nmemory usage : 1.5mb \n"), "{text}");
        assert!(text.ends_with("PID file : /h/pids/w-1.pid\n\n"), "{text}");
        assert_eq!(time_since(125_000), "2m");
        assert_eq!(time_since(90_000), "90s");
        assert_eq!(bytes_to_size(512), "512b ");
    }
}
