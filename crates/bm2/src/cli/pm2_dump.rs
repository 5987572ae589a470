//! PM2's saved process list (`dump.pm2`, written by `pm2 save`) read as ecosystem apps.
//!
//! The file is a JSON array with one entry per process (PM2's `pm2_env`, `lib/API/Startup.js`
//! `dump`): the instances of an app are separate entries of the same name, options are in their
//! resolved form (`pm_exec_path`, `pm_cwd`, `exec_interpreter`, `exec_mode: "cluster_mode"`,
//! `node_args` and `args` as arrays), and `env` holds the whole environment the process had (the
//! shell PM2 was started from, the app's own variables, and PM2's markers). Each app becomes the
//! PM2 ecosystem keys that mean the same, so that `bm2-config` resolves it as it resolves a file;
//! PM2's bookkeeping (`pm_id`, `status`, `axm_*`, `versioning`, ...) is left out quietly.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

/// One app of the dump.
#[derive(Debug, Clone, PartialEq)]
pub struct DumpedApp {
    /// Its name.
    pub name: String,
    /// Its instances (entries) in the dump.
    pub instances: usize,
    /// Whether PM2 was running it (any instance not `stopped`).
    pub was_running: bool,
    /// The app as ecosystem keys (no `env`, no `autostart`).
    pub keys: Map<String, Value>,
    /// The environment its processes had, without PM2's own markers.
    pub env: BTreeMap<String, String>,
}

/// PM2's ecosystem keys whose dumped value means what it means in a file.
const SAME_KEYS: &[&str] = &[
    "autorestart",
    "cron_restart",
    "disable_logs",
    "exp_backoff_restart_delay",
    "gid",
    "ignore_watch",
    "increment_var",
    "instance_var",
    "kill_retry_time",
    "kill_timeout",
    "listen_timeout",
    "log_date_format",
    "log_type",
    "max_memory_restart",
    "max_restarts",
    "merge_logs",
    "min_uptime",
    "namespace",
    "restart_delay",
    "shutdown_with_message",
    "source_map_support",
    "stop_exit_codes",
    "time",
    "treekill",
    "uid",
    "wait_ready",
    "watch",
    "watch_delay",
];

/// Variables PM2 puts in a process's environment for itself.
const PM2_MARKERS: &[&str] = &[
    "unique_id",
    "vizion_running",
    "km_link",
    "pm_id",
    "PM2_HOME",
    "PM2_USAGE",
    "PM2_JSON_PROCESSING",
    "PM2_INTERACTOR_PROCESSING",
    "PM2_PROGRAMMATIC",
    "NODE_CHANNEL_FD",
];

/// Reads the dump at `path`; `pm2_logs` is the PM2 home's log directory, whose files (PM2's
/// default names) are left to bm2's defaults.
pub fn read(path: &Path, pm2_logs: &Path) -> anyhow::Result<Vec<DumpedApp>> {
    let shown = path.display().to_string();
    let text = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read PM2's saved process list {shown}: {e}"))?;
    parse(&text, &shown, pm2_logs)
}

/// Reads a dump's text (see [`read`]).
pub fn parse(text: &[u8], shown: &str, pm2_logs: &Path) -> anyhow::Result<Vec<DumpedApp>> {
    let bad = |why: String| anyhow::anyhow!("{shown} is not a PM2 process list (dump.pm2): {why}");
    let value: Value =
        serde_json::from_slice(text).map_err(|e| bad(format!("not valid JSON ({e})")))?;
    let Value::Array(entries) = value else {
        return Err(bad("expected a JSON array of processes".into()));
    };
    let mut apps: Vec<(String, Vec<Map<String, Value>>)> = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let Value::Object(entry) = entry else {
            return Err(bad(format!("entry {i} is not an object")));
        };
        let Some(name) = entry
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return Err(bad(format!("entry {i} has no name")));
        };
        if !entry.get("pm_exec_path").is_some_and(Value::is_string) {
            return Err(bad(format!("entry {i} ({name}) has no pm_exec_path")));
        }
        // Instances of one app share name, script and directory; two apps PM2 ran under one
        // name (`start -f`) stay two, and the second is reported as a name already taken.
        let same_app = |group: &[Map<String, Value>]| {
            let (a, b) = (group[0].get("pm_cwd"), entry.get("pm_cwd"));
            group[0].get("pm_exec_path") == entry.get("pm_exec_path")
                && (a.is_none() || b.is_none() || a == b)
        };
        match apps
            .iter_mut()
            .find(|(n, group)| *n == name && same_app(group))
        {
            Some((_, group)) => group.push(entry),
            None => apps.push((name, vec![entry])),
        }
    }
    Ok(apps
        .into_iter()
        .map(|(name, group)| app(name, &group, pm2_logs))
        .collect())
}

fn app(name: String, group: &[Map<String, Value>], pm2_logs: &Path) -> DumpedApp {
    let first = &group[0];
    let text = |key: &str| first.get(key).and_then(Value::as_str);
    let mut keys = Map::new();
    keys.insert("name".into(), Value::from(name.clone()));
    keys.insert("script".into(), first["pm_exec_path"].clone());
    if let Some(cwd) = text("pm_cwd") {
        keys.insert("cwd".into(), Value::from(cwd));
    }
    for (from, to) in [
        ("exec_interpreter", "interpreter"),
        ("args", "args"),
        ("node_args", "node_args"),
    ] {
        if let Some(v) = first.get(from).filter(|v| !v.is_null()) {
            keys.insert(to.into(), v.clone());
        }
    }
    let cluster = text("exec_mode") == Some("cluster_mode");
    keys.insert(
        "exec_mode".into(),
        Value::from(if cluster { "cluster" } else { "fork" }),
    );
    keys.insert("instances".into(), Value::from(group.len()));
    for key in SAME_KEYS {
        if let Some(v) = first.get(*key).filter(|v| !v.is_null()) {
            keys.insert((*key).into(), v.clone());
        }
    }
    let merged = first.get("merge_logs").and_then(Value::as_bool) == Some(true);
    for (from, to) in [
        ("pm_out_log_path", "out_file"),
        ("pm_err_log_path", "error_file"),
        ("pm_log_path", "log_file"),
    ] {
        if let Some(path) = text(from).and_then(|p| log_file(p, pm2_logs, merged)) {
            keys.insert(to.into(), Value::from(path));
        }
    }
    let instance_var = text("instance_var").unwrap_or("NODE_APP_INSTANCE");
    let env = first
        .get("env")
        .and_then(Value::as_object)
        .map(|env| {
            env.iter()
                .filter(|(k, _)| !PM2_MARKERS.contains(&k.as_str()) && *k != instance_var)
                .filter_map(|(k, v)| Some((k.clone(), scalar(v)?)))
                .collect()
        })
        .unwrap_or_default();
    DumpedApp {
        name,
        instances: group.len(),
        was_running: group.iter().any(|e| {
            e.get("status")
                .and_then(Value::as_str)
                .is_none_or(|s| s != "stopped")
        }),
        keys,
        env,
    }
}

/// A variable's value as the process saw it: strings, numbers and booleans (PM2 passes only
/// those to the process; objects are its own records).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The log file to keep for a dumped path: none for `/dev/null`-less defaults in PM2's log
/// directory (bm2 names its own), the user's file otherwise, without the `-<pm_id>` PM2 adds
/// to each instance's file (bm2 adds its own ids).
fn log_file(path: &str, pm2_logs: &Path, merged: bool) -> Option<String> {
    let p = Path::new(path);
    if p.parent() == Some(pm2_logs) {
        return None;
    }
    if merged || path == "/dev/null" {
        return Some(path.to_string());
    }
    let stripped = path.strip_suffix(".log").and_then(|stem| {
        let (head, id) = stem.rsplit_once('-')?;
        (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| format!("{head}.log"))
    });
    Some(stripped.unwrap_or_else(|| path.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn logs() -> PathBuf {
        PathBuf::from("/root/.pm2/logs")
    }

    #[test]
    fn instances_are_counted_and_options_kept() {
        let dump = br#"[
          {"name":"api","pm_exec_path":"/srv/api/server.js","pm_cwd":"/srv/api",
           "exec_interpreter":"node","node_args":["--max-old-space-size=256"],"args":["--port","8080"],
           "exec_mode":"cluster_mode","status":"online","max_memory_restart":314572800,
           "kill_timeout":3000,"watch":false,"vizion":true,"axm_options":{},"pm_id":0,
           "merge_logs":false,
           "pm_out_log_path":"/root/.pm2/logs/api-out-0.log",
           "pm_err_log_path":"/var/log/api/err-0.log",
           "env":{"NODE_ENV":"production","PM2_HOME":"/root/.pm2","unique_id":"x","api":{},
                  "NODE_APP_INSTANCE":0,"PORT":8080}},
          {"name":"api","pm_exec_path":"/srv/api/server.js","exec_mode":"cluster_mode",
           "status":"online","env":{}},
          {"name":"worker","pm_exec_path":"/srv/w.py","exec_interpreter":"python3",
           "exec_mode":"fork_mode","status":"stopped","env":{}}
        ]"#;
        let apps = parse(dump, "dump.pm2", &logs()).unwrap();
        assert_eq!(apps.len(), 2);
        let api = &apps[0];
        assert_eq!(api.instances, 2);
        assert!(api.was_running);
        assert_eq!(api.keys["exec_mode"], "cluster");
        assert_eq!(api.keys["instances"], 2);
        assert_eq!(api.keys["interpreter"], "node");
        assert_eq!(api.keys["max_memory_restart"], 314_572_800);
        assert!(!api.keys.contains_key("out_file"), "PM2's default file");
        assert_eq!(api.keys["error_file"], "/var/log/api/err.log");
        assert!(!api.keys.contains_key("vizion"));
        assert_eq!(
            api.env,
            BTreeMap::from([
                ("NODE_ENV".to_string(), "production".to_string()),
                ("PORT".to_string(), "8080".to_string()),
            ])
        );
        assert!(!apps[1].was_running);
        assert_eq!(apps[1].keys["exec_mode"], "fork");
    }

    #[test]
    fn two_apps_pm2_ran_under_one_name_stay_two() {
        let dump = br#"[
          {"name":"x","pm_exec_path":"/srv/a.js","pm_cwd":"/srv","status":"online","env":{}},
          {"name":"x","pm_exec_path":"/srv/b.js","pm_cwd":"/srv","status":"online","env":{}},
          {"name":"x","pm_exec_path":"/srv/a.js","pm_cwd":"/srv","status":"online","env":{}}
        ]"#;
        let apps = parse(dump, "dump.pm2", &logs()).unwrap();
        assert_eq!(apps.len(), 2);
        assert_eq!((apps[0].instances, apps[1].instances), (2, 1));
        assert_eq!(apps[1].keys["script"], "/srv/b.js");
    }

    #[test]
    fn a_file_that_is_not_a_dump_is_refused_with_its_name() {
        for (text, why) in [
            (&b"{\"apps\":[]}"[..], "expected a JSON array"),
            (b"[{\"name\":\"a\"}]", "no pm_exec_path"),
            (b"[1]", "not an object"),
            (b"[{\"name\":", "not valid JSON"),
        ] {
            let e = parse(text, "/x/dump.pm2", &logs()).unwrap_err().to_string();
            assert!(e.contains("/x/dump.pm2") && e.contains(why), "{e}");
        }
        assert!(parse(b"[]", "d", &logs()).unwrap().is_empty());
    }
}
