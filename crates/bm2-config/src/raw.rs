//! The keys of an app in an ecosystem file, as written: PM2's `snake_case` names and BM2's
//! `camelCase` names, every one optional, in PM2's value forms.

use bm2_types::{ByteSize, FilterEnv, Instances};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::forms::{Codes, EnvVars, ExecMode, List, LogFile, Millis, Number, Scalar, Watch, Words};

/// One app of an ecosystem file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(default)]
pub struct RawApp {
    /// Name of the app (default: the script's file name without extension); at most 180 bytes,
    /// no control characters.
    pub name: Option<String>,
    /// Script, binary or command to run, relative to `cwd` (or a program on PATH); a directory
    /// runs its `package.json` `main` or `index.js`; a command with spaces (`"npm run start"`)
    /// runs through `bash -c`.
    #[serde(alias = "exec", alias = "cmd", alias = "command")]
    pub script: Option<String>,
    /// Arguments for the script: an array, or one string split like a shell would.
    pub args: Option<Words>,
    /// Working directory, relative to the directory the command is run from (default: that
    /// directory), as in PM2.
    pub cwd: Option<String>,
    /// Environment variables of the app.
    pub env: Option<EnvVars>,
    /// A dotenv file loaded before `env` (relative to `cwd`; `${VAR}` is interpolated).
    #[serde(alias = "envFile")]
    pub env_file: Option<String>,
    /// Interpreter (default: by the script's extension; `none` runs the script directly).
    #[serde(alias = "exec_interpreter", alias = "execInterpreter")]
    pub interpreter: Option<String>,
    /// Arguments for the interpreter, before the script.
    #[serde(alias = "interpreterArgs")]
    pub interpreter_args: Option<Words>,
    /// Arguments for the Node/Bun runtime, before the script.
    #[serde(alias = "nodeArgs")]
    pub node_args: Option<Words>,
    /// Namespace grouping apps; usable as a target.
    pub namespace: Option<String>,
    /// Number of instances: a number, `"max"` (one per CPU), `0` (same), `-N` (CPUs minus N).
    #[schemars(with = "Option<InstancesForm>")]
    pub instances: Option<Instances>,
    /// `fork` or `cluster`.
    #[serde(alias = "execMode")]
    pub exec_mode: Option<ExecMode>,
    /// Restart the app when it exits.
    pub autorestart: Option<bool>,
    /// Consecutive unstable restarts before the app is `errored`.
    #[serde(alias = "maxRestarts")]
    pub max_restarts: Option<Number>,
    /// How long a process must run for its start to count as stable (ms, or `"10s"`; at most 1 hour).
    #[serde(alias = "minUptime")]
    pub min_uptime: Option<Millis>,
    /// Wait before restarting a crashed process (ms, or `"2s"`; at most 1 hour).
    #[serde(alias = "restartDelay")]
    pub restart_delay: Option<Millis>,
    /// Exponential backoff between unstable restarts, starting at this delay (ms; at most 1 hour).
    #[serde(alias = "expBackoffRestartDelay")]
    pub exp_backoff_restart_delay: Option<Millis>,
    /// Time between the stop signal and SIGKILL (ms, or `"5s"`; at most 1 hour).
    #[serde(alias = "killTimeout")]
    pub kill_timeout: Option<Millis>,
    /// First signal sent on stop.
    #[serde(alias = "killSignal")]
    #[schemars(with = "Option<String>")]
    pub kill_signal: Option<bm2_types::Signal>,
    /// Exit codes after which the app is not restarted.
    #[serde(alias = "stopExitCodes")]
    pub stop_exit_codes: Option<Codes>,
    /// Restart when the app's process tree uses more memory than this (`"512M"`, `"1G"`, bytes).
    #[serde(alias = "maxMemoryRestart")]
    #[schemars(with = "Option<SizeForm>")]
    pub max_memory_restart: Option<ByteSize>,
    /// Start the app when the file is started (`false`: register it stopped).
    pub autostart: Option<bool>,
    /// User to run the app as (the daemon must run as root).
    #[serde(alias = "user")]
    pub uid: Option<Scalar>,
    /// Group to run the app as (the daemon must run as root).
    pub gid: Option<Scalar>,
    /// Keep the caller's variables out: `true` for all, or name prefixes.
    #[serde(alias = "filterEnv")]
    #[schemars(with = "Option<FilterEnvForm>")]
    pub filter_env: Option<FilterEnv>,
    /// Variable holding the instance index (default `NODE_APP_INSTANCE`).
    #[serde(alias = "instanceVar")]
    pub instance_var: Option<String>,
    /// A numeric variable increased by the instance index in each instance (e.g. `PORT`).
    #[serde(alias = "incrementVar")]
    pub increment_var: Option<String>,
    /// Append `-<env name>` to the app's name when started with `--env <name>`.
    #[serde(alias = "appendEnvToName")]
    pub append_env_to_name: Option<bool>,
    /// Stop signals reach the whole process tree (`false`: the main process only).
    pub treekill: Option<bool>,
    /// Interval between checks that a stopping app has exited (ms).
    #[serde(alias = "killRetryTime")]
    pub kill_retry_time: Option<Millis>,
    /// Node: source-mapped stack traces (on by default, as in PM2; `false` turns them off).
    #[serde(alias = "sourceMapSupport")]
    pub source_map_support: Option<bool>,
    /// Node: no source-mapped stack traces (`true` turns them off, whatever `source_map_support` says, as in PM2).
    #[serde(alias = "disableSourceMapSupport")]
    pub disable_source_map_support: Option<bool>,
    /// PM2's `-x`: run in fork mode even with `instances` (no cluster mode inferred).
    #[serde(alias = "executeCommand")]
    pub execute_command: Option<bool>,
    /// Port of the app: cluster mode balances it; in fork mode instance i gets `PORT = port + i`.
    pub port: Option<Number>,
    /// Address the cluster balancer listens on (default: all interfaces).
    #[serde(alias = "listenHost")]
    pub listen_host: Option<String>,
    /// How the cluster balancer picks an instance: `round_robin` (default) or `least_conn`.
    #[serde(alias = "loadBalancing", alias = "load_balancing")]
    #[schemars(with = "Option<String>")]
    pub lb: Option<crate::forms::Balancing>,
    /// Wait for the app to say it is ready (`process.send('ready')` or `READY=1`).
    #[serde(alias = "waitReady")]
    pub wait_ready: Option<bool>,
    /// How long to wait for readiness (ms; at most 1 hour).
    #[serde(alias = "listenTimeout")]
    pub listen_timeout: Option<Millis>,
    /// Ask the app to stop with a `shutdown` message before signals.
    #[serde(alias = "shutdownWithMessage")]
    pub shutdown_with_message: Option<bool>,
    /// Fork mode with a port: hand each process the port's listening socket by systemd socket
    /// activation (`LISTEN_FDS`, fd 3), for reloads without a gap.
    #[serde(alias = "socketActivation")]
    pub socket_activation: Option<bool>,
    /// Restart when files change: `true` (the app's directory), a path, or paths (relative to
    /// `cwd`).
    pub watch: Option<Watch>,
    /// Globs never watched: without `/` a name at any depth (`node_modules`, `*.log`), with `/` a
    /// path from `cwd` (`client/img`). Replaces the default list.
    #[serde(alias = "ignoreWatch")]
    pub ignore_watch: Option<List>,
    /// PM2's chokidar options: `ignored` adds to `ignore_watch`; bm2 watches with inotify, so
    /// `usePolling`, `interval` and the other chokidar options have no effect (noted on load).
    #[serde(alias = "watchOptions")]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub watch_options: Option<serde_json::Value>,
    /// Quiet time after a change before the restart (ms).
    #[serde(alias = "watchDelay")]
    pub watch_delay: Option<Millis>,
    /// Cron schedule of restarts: 5 fields, or 6 with seconds first, in the app's `TZ` or local
    /// time. A stopped app is not started by it.
    #[serde(alias = "cron", alias = "cronRestart")]
    pub cron_restart: Option<String>,
    /// HTTP URL probed to check the app's health (`http://` only; 2xx and 3xx are healthy).
    #[serde(alias = "healthCheckUrl")]
    pub health_check_url: Option<String>,
    /// `host:port` that must accept TCP connections for the app to be healthy.
    #[serde(alias = "healthCheckTcp")]
    pub health_check_tcp: Option<String>,
    /// Shell command run in the app's directory and environment; healthy when it exits 0.
    #[serde(alias = "healthCheckCmd")]
    pub health_check_cmd: Option<String>,
    /// Time between health probes (ms).
    #[serde(alias = "healthCheckInterval")]
    pub health_check_interval: Option<Millis>,
    /// Time before a health probe fails (ms).
    #[serde(alias = "healthCheckTimeout")]
    pub health_check_timeout: Option<Millis>,
    /// Failed probes in a row before a restart.
    #[serde(alias = "healthCheckMaxFails")]
    pub health_check_max_fails: Option<Number>,
    /// Stdout log file (`/dev/null` for none).
    #[serde(alias = "outFile", alias = "output", alias = "out", alias = "out_log")]
    pub out_file: Option<String>,
    /// Pid file of each instance, relative to `cwd`; `-<id>` is added before `.pid`, as PM2
    /// does (default `$BM2_HOME/pids/<name>-<id>.pid`).
    #[serde(alias = "pidFile", alias = "pid")]
    pub pid_file: Option<String>,
    /// Stderr log file (`/dev/null` for none).
    #[serde(
        alias = "errorFile",
        alias = "err_file",
        alias = "errFile",
        alias = "error",
        alias = "err",
        alias = "err_log"
    )]
    pub error_file: Option<String>,
    /// A file receiving both streams (`true` for the default path).
    #[serde(alias = "logFile", alias = "log")]
    pub log_file: Option<LogFile>,
    /// Instances share one set of log files.
    #[serde(alias = "mergeLogs", alias = "combine_logs", alias = "combineLogs")]
    pub merge_logs: Option<bool>,
    /// Prefix log lines with a timestamp.
    pub time: Option<bool>,
    /// Timestamp format of log lines (moment.js tokens, e.g. `YYYY-MM-DD HH:mm:ss Z`).
    #[serde(alias = "logDateFormat")]
    pub log_date_format: Option<String>,
    /// `json` for one JSON object per log line.
    #[serde(alias = "logType")]
    pub log_type: Option<String>,
    /// Write no log files.
    #[serde(alias = "disableLogs")]
    pub disable_logs: Option<bool>,
    /// Rotate log files before they grow past this size (`"10M"`).
    #[serde(alias = "logMaxSize")]
    #[schemars(with = "Option<SizeForm>")]
    pub log_max_size: Option<ByteSize>,
    /// Rotated log files to keep.
    #[serde(alias = "logRetain")]
    pub log_retain: Option<Number>,
    /// Gzip rotated log files.
    #[serde(alias = "logCompress")]
    pub log_compress: Option<bool>,
    /// Also rotate logs on a cron schedule.
    #[serde(alias = "logRotateInterval")]
    pub log_rotate_interval: Option<String>,
    /// Apps started before this one, each waited for until its condition: `["db", "cache"]`
    /// (`started`), or `{ "db": "ready", "migrate": "completed" }`. Names are apps of the same
    /// file or apps already managed.
    #[serde(alias = "dependsOn")]
    pub depends_on: Option<crate::forms::DependsOn>,
    /// How long to wait for the dependencies' conditions (ms, or `"90s"`; default 60 s).
    #[serde(alias = "dependsTimeout")]
    pub depends_timeout: Option<Millis>,
    /// After this app restarts (for any reason), restart the apps that depend on it once it
    /// meets their condition again.
    #[serde(alias = "restartDependents")]
    pub restart_dependents: Option<bool>,
}

impl RawApp {
    /// This app with every key `over` gives replaced: how command-line flags override a file's
    /// values (PM2's rule), in one merge.
    #[must_use]
    pub fn merge(self, over: RawApp) -> RawApp {
        RawApp {
            name: over.name.or(self.name),
            script: over.script.or(self.script),
            args: over.args.or(self.args),
            cwd: over.cwd.or(self.cwd),
            env: over.env.or(self.env),
            env_file: over.env_file.or(self.env_file),
            interpreter: over.interpreter.or(self.interpreter),
            interpreter_args: over.interpreter_args.or(self.interpreter_args),
            node_args: over.node_args.or(self.node_args),
            namespace: over.namespace.or(self.namespace),
            instances: over.instances.or(self.instances),
            exec_mode: over.exec_mode.or(self.exec_mode),
            autorestart: over.autorestart.or(self.autorestart),
            max_restarts: over.max_restarts.or(self.max_restarts),
            min_uptime: over.min_uptime.or(self.min_uptime),
            restart_delay: over.restart_delay.or(self.restart_delay),
            exp_backoff_restart_delay: over
                .exp_backoff_restart_delay
                .or(self.exp_backoff_restart_delay),
            kill_timeout: over.kill_timeout.or(self.kill_timeout),
            kill_signal: over.kill_signal.or(self.kill_signal),
            stop_exit_codes: over.stop_exit_codes.or(self.stop_exit_codes),
            max_memory_restart: over.max_memory_restart.or(self.max_memory_restart),
            autostart: over.autostart.or(self.autostart),
            uid: over.uid.or(self.uid),
            gid: over.gid.or(self.gid),
            filter_env: over.filter_env.or(self.filter_env),
            instance_var: over.instance_var.or(self.instance_var),
            increment_var: over.increment_var.or(self.increment_var),
            append_env_to_name: over.append_env_to_name.or(self.append_env_to_name),
            treekill: over.treekill.or(self.treekill),
            kill_retry_time: over.kill_retry_time.or(self.kill_retry_time),
            source_map_support: over.source_map_support.or(self.source_map_support),
            disable_source_map_support: over
                .disable_source_map_support
                .or(self.disable_source_map_support),
            execute_command: over.execute_command.or(self.execute_command),
            port: over.port.or(self.port),
            listen_host: over.listen_host.or(self.listen_host),
            lb: over.lb.or(self.lb),
            wait_ready: over.wait_ready.or(self.wait_ready),
            listen_timeout: over.listen_timeout.or(self.listen_timeout),
            shutdown_with_message: over.shutdown_with_message.or(self.shutdown_with_message),
            socket_activation: over.socket_activation.or(self.socket_activation),
            watch: over.watch.or(self.watch),
            ignore_watch: over.ignore_watch.or(self.ignore_watch),
            watch_options: over.watch_options.or(self.watch_options),
            watch_delay: over.watch_delay.or(self.watch_delay),
            cron_restart: over.cron_restart.or(self.cron_restart),
            health_check_url: over.health_check_url.or(self.health_check_url),
            health_check_tcp: over.health_check_tcp.or(self.health_check_tcp),
            health_check_cmd: over.health_check_cmd.or(self.health_check_cmd),
            health_check_interval: over.health_check_interval.or(self.health_check_interval),
            health_check_timeout: over.health_check_timeout.or(self.health_check_timeout),
            health_check_max_fails: over.health_check_max_fails.or(self.health_check_max_fails),
            out_file: over.out_file.or(self.out_file),
            pid_file: over.pid_file.or(self.pid_file),
            error_file: over.error_file.or(self.error_file),
            log_file: over.log_file.or(self.log_file),
            merge_logs: over.merge_logs.or(self.merge_logs),
            time: over.time.or(self.time),
            log_date_format: over.log_date_format.or(self.log_date_format),
            log_type: over.log_type.or(self.log_type),
            disable_logs: over.disable_logs.or(self.disable_logs),
            log_max_size: over.log_max_size.or(self.log_max_size),
            log_retain: over.log_retain.or(self.log_retain),
            log_compress: over.log_compress.or(self.log_compress),
            log_rotate_interval: over.log_rotate_interval.or(self.log_rotate_interval),
            depends_on: over.depends_on.or(self.depends_on),
            depends_timeout: over.depends_timeout.or(self.depends_timeout),
            restart_dependents: over.restart_dependents.or(self.restart_dependents),
        }
    }
}

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum InstancesForm {
    Count(i64),
    Text(String),
}

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum SizeForm {
    Bytes(u64),
    Text(String),
}

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum FilterEnvForm {
    All(bool),
    Prefix(String),
    Prefixes(Vec<String>),
}

/// Every accepted key: the canonical (PM2) name and its other spellings, in the order PM2 prefers
/// them when several are given without the canonical name (`lib/tools/Config.js`).
pub const KEYS: &[(&str, &[&str])] = &[
    ("name", &[]),
    ("script", &["exec", "cmd", "command"]),
    ("args", &[]),
    ("cwd", &[]),
    ("env", &[]),
    ("env_file", &["envFile"]),
    ("interpreter", &["exec_interpreter", "execInterpreter"]),
    ("interpreter_args", &["interpreterArgs"]),
    ("node_args", &["nodeArgs"]),
    ("namespace", &[]),
    ("instances", &[]),
    ("exec_mode", &["execMode"]),
    ("autorestart", &[]),
    ("max_restarts", &["maxRestarts"]),
    ("min_uptime", &["minUptime"]),
    ("restart_delay", &["restartDelay"]),
    ("exp_backoff_restart_delay", &["expBackoffRestartDelay"]),
    ("kill_timeout", &["killTimeout"]),
    ("kill_signal", &["killSignal"]),
    ("stop_exit_codes", &["stopExitCodes"]),
    ("max_memory_restart", &["maxMemoryRestart"]),
    ("autostart", &[]),
    ("uid", &["user"]),
    ("gid", &[]),
    ("filter_env", &["filterEnv"]),
    ("instance_var", &["instanceVar"]),
    ("increment_var", &["incrementVar"]),
    ("append_env_to_name", &["appendEnvToName"]),
    ("treekill", &[]),
    ("kill_retry_time", &["killRetryTime"]),
    ("source_map_support", &["sourceMapSupport"]),
    ("disable_source_map_support", &["disableSourceMapSupport"]),
    ("execute_command", &["executeCommand"]),
    ("port", &[]),
    ("listen_host", &["listenHost"]),
    ("lb", &["loadBalancing", "load_balancing"]),
    ("wait_ready", &["waitReady"]),
    ("listen_timeout", &["listenTimeout"]),
    ("shutdown_with_message", &["shutdownWithMessage"]),
    ("socket_activation", &["socketActivation"]),
    ("watch", &[]),
    ("ignore_watch", &["ignoreWatch"]),
    ("watch_options", &["watchOptions"]),
    ("watch_delay", &["watchDelay"]),
    ("cron_restart", &["cron", "cronRestart"]),
    ("health_check_url", &["healthCheckUrl"]),
    ("health_check_tcp", &["healthCheckTcp"]),
    ("health_check_cmd", &["healthCheckCmd"]),
    ("health_check_interval", &["healthCheckInterval"]),
    ("health_check_timeout", &["healthCheckTimeout"]),
    ("health_check_max_fails", &["healthCheckMaxFails"]),
    ("out_file", &["out_log", "output", "out", "outFile"]),
    ("pid_file", &["pid", "pidFile"]),
    (
        "error_file",
        &[
            "err_log",
            "err_file",
            "errFile",
            "err",
            "error",
            "errorFile",
        ],
    ),
    ("log_file", &["log", "logFile"]),
    ("merge_logs", &["combine_logs", "combineLogs", "mergeLogs"]),
    ("time", &[]),
    ("log_date_format", &["logDateFormat"]),
    ("log_type", &["logType"]),
    ("disable_logs", &["disableLogs"]),
    ("log_max_size", &["logMaxSize"]),
    ("log_retain", &["logRetain"]),
    ("log_compress", &["logCompress"]),
    ("log_rotate_interval", &["logRotateInterval"]),
    ("depends_on", &["dependsOn"]),
    ("depends_timeout", &["dependsTimeout"]),
    ("restart_dependents", &["restartDependents"]),
];

/// PM2 keys about Node internals or PM2's own services: accepted, with no effect in bm2.
pub const NO_EFFECT: &[&str] = &[
    "vizion",
    "pmx",
    "automation",
    "trace",
    "disable_trace",
    "force",
    "post_update",
    "deep_monitoring",
    "windowsHide",
    "instance_id_env",
    "exec_interpreter_args",
    "name_prefix",
    "install_url",
    "username",
    "v8",
    "event_loop_inspector",
    "write",
    "io",
];

/// Why a key of [`NO_EFFECT`] does nothing in bm2, for the note shown on load.
pub fn no_effect_reason(key: &str) -> &'static str {
    match key {
        "name_prefix" => "PM2 applies it to module apps only, not to ecosystem files",
        "username" => "PM2 sets it itself; to run as a user, give `user` or `uid`",
        _ => "a PM2 option for Node internals or PM2 services; it has no effect in bm2",
    }
}

/// The known key closest to `key`, when one is close enough to be a likely typo.
pub fn closest_key(key: &str) -> Option<&'static str> {
    closest_in(KEYS, key)
}

/// The key of `table` (canonical names and their aliases) closest to `key`, when one is close
/// enough to be a likely typo; the canonical name is returned.
pub fn closest_in(table: &[(&'static str, &[&'static str])], key: &str) -> Option<&'static str> {
    let lower = key.to_ascii_lowercase();
    table
        .iter()
        .flat_map(|(canonical, aliases)| {
            std::iter::once(canonical)
                .chain(aliases.iter())
                .map(move |k| (*canonical, *k))
        })
        .map(|(canonical, k)| {
            (
                canonical,
                strsim::damerau_levenshtein(&lower, &k.to_ascii_lowercase()),
            )
        })
        .filter(|(_, d)| *d <= 3.max(key.len() / 4))
        .min_by_key(|(_, d)| *d)
        .map(|(canonical, _)| canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignored(json: &str) -> Vec<String> {
        let mut ignored = Vec::new();
        let mut de = serde_json::Deserializer::from_str(json);
        let _: RawApp =
            serde_ignored::deserialize(&mut de, |p| ignored.push(p.to_string())).unwrap();
        ignored
    }

    #[test]
    fn every_listed_key_is_accepted() {
        for (canonical, aliases) in KEYS {
            for key in std::iter::once(canonical).chain(aliases.iter()) {
                assert!(
                    ignored(&format!("{{\"{key}\": null}}")).is_empty(),
                    "{key} is not accepted"
                );
            }
        }
        assert_eq!(ignored(r#"{"instnces": 2}"#), ["instnces"]);
    }

    #[test]
    fn every_field_is_listed() {
        let schema = serde_json::to_value(schemars::schema_for!(RawApp)).unwrap();
        let props = schema["properties"].as_object().unwrap();
        for field in props.keys() {
            assert!(
                KEYS.iter().any(|(k, _)| k == field),
                "{field} missing from KEYS"
            );
        }
        assert_eq!(props.len(), KEYS.len());
    }

    #[test]
    fn typos_get_suggestions() {
        assert_eq!(closest_key("max_memory_restat"), Some("max_memory_restart"));
        assert_eq!(closest_key("instnaces"), Some("instances"));
        assert_eq!(closest_key("maxMemoryRestar"), Some("max_memory_restart"));
        assert_eq!(closest_key("completely_unrelated_thing"), None);
    }
}
