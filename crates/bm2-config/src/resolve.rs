//! From the keys of a file to [`AppSpec`]: defaults, paths, names and the environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bm2_types::AppSpec;

use crate::error::{ConfigError, Warning};
use crate::raw::RawApp;

/// Variables as name to value.
pub type Vars = BTreeMap<String, String>;

/// What resolution needs besides the app's keys.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Directory relative `script` and `cwd` are taken from: the directory the command is run
    /// from, as in PM2 (not the file's directory).
    pub base_dir: PathBuf,
    /// `--env <name>`: the `env_<name>` block to apply.
    pub env_name: Option<String>,
    /// `--env KEY=VAL` variables, applied last.
    pub cli_vars: Vars,
    /// `--env-file`, applied after the app's own `env_file`.
    pub env_file: Option<PathBuf>,
    /// `deploy.<name>.env` of the file for `--env <name>`: below the app's `env` (PM2).
    pub deploy_env: Option<Vars>,
    /// The keys come from command-line flags: errors name the key alone, not `apps[i].key`.
    pub from_flags: bool,
}

/// An app resolved, and what looked wrong without being an error.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The app's options.
    pub spec: AppSpec,
    /// Notes for the user.
    pub warnings: Vec<Warning>,
}

/// Resolves app `index` of a file. `blocks` are its `env_<name>` blocks, by name.
pub fn resolve(
    raw: RawApp,
    blocks: &BTreeMap<String, Vars>,
    ctx: &Context,
    index: usize,
    file: &str,
) -> Result<Resolved, ConfigError> {
    let at = |key: &str| {
        if ctx.from_flags {
            key.to_string()
        } else {
            format!("apps[{index}].{key}")
        }
    };
    let mut warnings = Vec::new();
    let note = |key: &str, message: String| ConfigError::file(file, message).at_key(at(key));
    let d = AppSpec::default();
    let written = raw.script.filter(|s| !s.trim().is_empty()).ok_or_else(|| {
        ConfigError::file(file, "missing: every app needs a script").at_key(at("script"))
    })?;
    let cwd = match &raw.cwd {
        Some(c) => ctx.base_dir.join(expand_home(c)),
        None => ctx.base_dir.clone(),
    };
    match std::fs::metadata(&cwd) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(note("cwd", format!("{} is not a directory", cwd.display())));
        }
        Err(e) => {
            return Err(note(
                "cwd",
                format!("{} cannot be used: {e}", cwd.display()),
            ));
        }
    }
    let cwd = std::fs::canonicalize(&cwd).unwrap_or(cwd);
    let mut name = raw
        .name
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| default_name(&written));
    let mut args = raw.args.map(|w| w.0).unwrap_or_default();

    // A command with spaces that is not a file runs through a shell, as in PM2.
    let (script, mut interpreter) = if written.contains(' ') && !cwd.join(&written).exists() {
        let shell = shell();
        let mut shell_args = vec!["-c".to_string()];
        if args.is_empty() {
            shell_args.push(written.clone());
        } else {
            shell_args.push(format!("{written} \"$@\""));
            shell_args.push(shell.clone());
        }
        shell_args.append(&mut args);
        args = shell_args;
        (shell, None)
    } else {
        let script = resolve_script(&written, &cwd).map_err(|message| note("script", message))?;
        let interpreter = match raw.interpreter {
            Some(i) if i.contains('/') && !i.starts_with('/') => {
                Some(cwd.join(expand_home(&i)).display().to_string())
            }
            Some(i) if i.starts_with('~') => Some(expand_home(&i).display().to_string()),
            Some(i) => Some(i),
            None => None,
        };
        (script, interpreter)
    };
    if interpreter.is_none() {
        let file_path = Path::new(&script);
        let found = if file_path.is_absolute() {
            Some(file_path.to_path_buf())
        } else {
            let path_var = std::env::var("PATH").unwrap_or_default();
            bm2_types::runtime::find_program(&script, &path_var)
        };
        interpreter = found
            .as_deref()
            .and_then(crate::runtime::script_interpreter)
            .map(str::to_string);
    }
    // `npm`, `yarn`, `pnpm`: run the file found on PATH with node, as PM2 does.
    let script = match &interpreter {
        Some(_) if !Path::new(&script).is_absolute() => {
            let path_var = std::env::var("PATH").unwrap_or_default();
            bm2_types::runtime::find_program(&script, &path_var)
                .map_or(script, |p| p.display().to_string())
        }
        _ => script,
    };

    let mut env = Vars::new();
    if let Some(deploy) = &ctx.deploy_env {
        env.extend(deploy.clone());
    }
    if let Some(f) = &raw.env_file {
        let path = cwd.join(expand_home(f));
        if path.is_dir() {
            return Err(ConfigError::file(
                file,
                format!(
                    "env_file {} is a directory, not a file of variables",
                    path.display()
                ),
            )
            .at_key(at("env_file")));
        }
        if path.exists() {
            env.extend(read_env_file(&path, file).map_err(|e| e.at_key(at("env_file")))?);
        } else {
            warnings.push(note(
                "env_file",
                format!(
                    "{} does not exist; no variables read from it",
                    path.display()
                ),
            ));
        }
    }
    if let Some(f) = &ctx.env_file {
        env.extend(read_env_file(f, file)?);
    }
    env.extend(raw.env.map(|e| e.0).unwrap_or_default());
    if let Some(env_name) = &ctx.env_name {
        if let Some(block) = blocks.get(env_name) {
            env.extend(block.clone());
        }
        if raw.append_env_to_name == Some(true) {
            name = format!("{name}-{env_name}");
        }
    }
    env.extend(ctx.cli_vars.clone());

    let mut ignore_watch = raw.ignore_watch.map_or(d.ignore_watch.clone(), |l| l.0);
    if let Some(options) = &raw.watch_options {
        let (ignored, noted) = watch_options(options);
        ignore_watch.extend(ignored);
        if !noted.is_empty() {
            warnings.push(note(
                "watch_options",
                format!(
                    "{}: chokidar options with no effect in bm2, which watches with inotify (no polling: on file systems without inotify events, such as some network or container mounts, changes are not seen)",
                    noted.join(", ")
                ),
            ));
        }
    }

    let ms = |v: Option<crate::forms::Millis>, default: u64| v.map_or(default, |m| m.0);
    let num = |v: Option<crate::forms::Number>| v.map(|n| n.0);
    let to_u32 =
        |v: Option<crate::forms::Number>, key: &str, default: u32| -> Result<u32, ConfigError> {
            num(v).map_or(Ok(default), |n| {
                u32::try_from(n).map_err(|_| {
                    ConfigError::file(file, format!("{n} is too large")).at_key(at(key))
                })
            })
        };
    let port = num(raw.port)
        .map(|p| {
            u16::try_from(p).map_err(|_| {
                ConfigError::file(file, format!("{p} is not a port (1-65535)")).at_key(at("port"))
            })
        })
        .transpose()?;
    let js = crate::runtime::is_js(&script, interpreter.as_deref());
    let exec_mode = crate::runtime::exec_mode(
        raw.exec_mode.map(|m| m.0),
        raw.execute_command == Some(true),
        raw.instances,
        js,
    );
    // PM2 (`lib/ProcessContainer.js`): on unless `disable_source_map_support` is true.
    let source_map_support = raw.disable_source_map_support != Some(true)
        && raw.source_map_support.unwrap_or(d.source_map_support);
    let spec = AppSpec {
        name,
        script,
        args,
        cwd: Some(cwd.clone()),
        env,
        interpreter,
        interpreter_args: raw.interpreter_args.map(|w| w.0).unwrap_or_default(),
        node_args: raw.node_args.map(|w| w.0).unwrap_or_default(),
        namespace: raw.namespace.unwrap_or(d.namespace),
        instances: raw.instances.unwrap_or(d.instances),
        exec_mode,
        autorestart: raw.autorestart.unwrap_or(d.autorestart),
        max_restarts: to_u32(raw.max_restarts, "max_restarts", d.max_restarts)?,
        min_uptime: ms(raw.min_uptime, d.min_uptime),
        restart_delay: ms(raw.restart_delay, d.restart_delay),
        exp_backoff_restart_delay: raw.exp_backoff_restart_delay.map(|m| m.0),
        kill_timeout: ms(raw.kill_timeout, d.kill_timeout),
        kill_signal: raw.kill_signal.unwrap_or(d.kill_signal),
        stop_exit_codes: raw.stop_exit_codes.map(|c| c.0).unwrap_or_default(),
        max_memory_restart: raw.max_memory_restart,
        autostart: raw.autostart.unwrap_or(d.autostart),
        uid: raw.uid.map(|s| s.0),
        gid: raw.gid.map(|s| s.0),
        filter_env: raw.filter_env.unwrap_or(d.filter_env),
        instance_var: raw.instance_var.unwrap_or(d.instance_var),
        increment_var: raw.increment_var,
        treekill: raw.treekill.unwrap_or(d.treekill),
        kill_retry_time: ms(raw.kill_retry_time, d.kill_retry_time),
        source_map_support,
        port,
        listen_host: raw.listen_host,
        lb: raw.lb.map_or(d.lb, |b| b.0),
        wait_ready: raw.wait_ready.unwrap_or(d.wait_ready),
        listen_timeout: ms(raw.listen_timeout, d.listen_timeout),
        shutdown_with_message: raw.shutdown_with_message.unwrap_or(d.shutdown_with_message),
        socket_activation: raw.socket_activation.unwrap_or(d.socket_activation),
        watch: raw.watch.map(|w| w.0).unwrap_or_default(),
        ignore_watch,
        watch_delay: ms(raw.watch_delay, d.watch_delay),
        cron_restart: raw.cron_restart,
        health_check_url: raw.health_check_url,
        health_check_tcp: raw.health_check_tcp,
        health_check_cmd: raw.health_check_cmd,
        health_check_interval: ms(raw.health_check_interval, d.health_check_interval),
        health_check_timeout: ms(raw.health_check_timeout, d.health_check_timeout),
        health_check_max_fails: to_u32(
            raw.health_check_max_fails,
            "health_check_max_fails",
            d.health_check_max_fails,
        )?,
        out_file: raw.out_file.map(|p| log_path(&cwd, p)),
        // PM2 writes no pid file for `NULL` or `/dev/null`: the daemon's own one is kept.
        pid_file: raw
            .pid_file
            .filter(|p| !matches!(p.as_str(), "" | "NULL" | "/dev/null"))
            .map(|p| log_path(&cwd, p)),
        error_file: raw.error_file.map(|p| log_path(&cwd, p)),
        log_file: raw.log_file.and_then(|l| l.0).map(|p| log_path(&cwd, p)),
        merge_logs: raw.merge_logs.unwrap_or(d.merge_logs),
        time: raw.time.unwrap_or(d.time),
        log_date_format: raw.log_date_format,
        log_type: raw.log_type,
        disable_logs: raw.disable_logs.unwrap_or(d.disable_logs),
        log_max_size: raw.log_max_size,
        log_retain: num(raw.log_retain).map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        log_compress: raw.log_compress,
        log_rotate_interval: raw.log_rotate_interval,
        depends_on: raw.depends_on.map(|d| d.0).unwrap_or_default(),
        depends_timeout: raw.depends_timeout.map(|m| m.0),
        restart_dependents: raw.restart_dependents.unwrap_or(d.restart_dependents),
    };
    check_limits(&spec).map_err(|e| ConfigError::file(file, e.message).at_key(at(e.key)))?;
    Ok(Resolved { spec, warnings })
}

/// The options of a managed app (`spec`) with those of `over` applied, resolved again: how
/// `start`, `restart` and `reload` of an existing app take new options (`--node-args`, `--name`,
/// `--max-memory-restart`, ...). Paths in `over` are taken from `here`.
pub fn apply(spec: AppSpec, over: RawApp, here: &Path) -> Result<AppSpec, ConfigError> {
    use crate::forms::{
        Codes, EnvVars, ExecMode, List, LogFile, Millis, Number, Scalar, Watch, Words,
    };
    let n = |v: u32| Some(Number(u64::from(v)));
    let own = RawApp {
        name: Some(spec.name),
        script: Some(spec.script),
        args: Some(Words(spec.args)),
        cwd: spec.cwd.map(|c| c.display().to_string()),
        env: Some(EnvVars(spec.env)),
        interpreter: spec.interpreter,
        interpreter_args: Some(Words(spec.interpreter_args)),
        node_args: Some(Words(spec.node_args)),
        namespace: Some(spec.namespace),
        instances: Some(spec.instances),
        exec_mode: Some(ExecMode(spec.exec_mode)),
        autorestart: Some(spec.autorestart),
        max_restarts: n(spec.max_restarts),
        min_uptime: Some(Millis(spec.min_uptime)),
        restart_delay: Some(Millis(spec.restart_delay)),
        exp_backoff_restart_delay: spec.exp_backoff_restart_delay.map(Millis),
        kill_timeout: Some(Millis(spec.kill_timeout)),
        kill_signal: Some(spec.kill_signal),
        stop_exit_codes: Some(Codes(spec.stop_exit_codes)),
        max_memory_restart: spec.max_memory_restart,
        autostart: Some(spec.autostart),
        uid: spec.uid.map(Scalar),
        gid: spec.gid.map(Scalar),
        filter_env: Some(spec.filter_env),
        instance_var: Some(spec.instance_var),
        increment_var: spec.increment_var,
        treekill: Some(spec.treekill),
        kill_retry_time: Some(Millis(spec.kill_retry_time)),
        source_map_support: Some(spec.source_map_support),
        port: spec.port.map(|p| Number(u64::from(p))),
        listen_host: spec.listen_host,
        lb: Some(crate::forms::Balancing(spec.lb)),
        wait_ready: Some(spec.wait_ready),
        listen_timeout: Some(Millis(spec.listen_timeout)),
        shutdown_with_message: Some(spec.shutdown_with_message),
        socket_activation: Some(spec.socket_activation),
        watch: Some(Watch(spec.watch)),
        ignore_watch: Some(List(spec.ignore_watch)),
        watch_delay: Some(Millis(spec.watch_delay)),
        cron_restart: spec.cron_restart,
        health_check_url: spec.health_check_url,
        health_check_tcp: spec.health_check_tcp,
        health_check_cmd: spec.health_check_cmd,
        health_check_interval: Some(Millis(spec.health_check_interval)),
        health_check_timeout: Some(Millis(spec.health_check_timeout)),
        health_check_max_fails: n(spec.health_check_max_fails),
        out_file: spec.out_file,
        pid_file: spec.pid_file,
        error_file: spec.error_file,
        log_file: spec.log_file.map(|p| LogFile(Some(p))),
        merge_logs: Some(spec.merge_logs),
        time: Some(spec.time),
        log_date_format: spec.log_date_format,
        log_type: spec.log_type,
        disable_logs: Some(spec.disable_logs),
        log_max_size: spec.log_max_size,
        log_retain: spec.log_retain.map(|v| Number(u64::from(v))),
        log_compress: spec.log_compress,
        log_rotate_interval: spec.log_rotate_interval,
        depends_on: Some(crate::forms::DependsOn(spec.depends_on)),
        depends_timeout: spec.depends_timeout.map(Millis),
        restart_dependents: Some(spec.restart_dependents),
        ..RawApp::default()
    };
    // A mode inferred from `instances` is inferred again when they change.
    let mut own = own;
    if over.instances.is_some() || over.execute_command.is_some() {
        own.exec_mode = None;
    }
    if over.disable_source_map_support.is_some() {
        own.source_map_support = None;
    }
    let ctx = Context {
        base_dir: here.to_path_buf(),
        from_flags: true,
        ..Context::default()
    };
    resolve(own.merge(over), &BTreeMap::new(), &ctx, 0, "options").map(|r| r.spec)
}

/// The shell PM2 runs commands with: bash, else sh.
fn shell() -> String {
    let path_var = std::env::var("PATH").unwrap_or_default();
    if bm2_types::runtime::find_program("bash", &path_var).is_some() {
        "bash".to_string()
    } else {
        "sh".to_string()
    }
}

/// PM2's `watch_options` (chokidar's): globs of `ignored` to add to `ignore_watch`, and the
/// options given that have no effect in bm2.
fn watch_options(options: &serde_json::Value) -> (Vec<String>, Vec<String>) {
    let mut ignored = Vec::new();
    let mut noted = Vec::new();
    if let serde_json::Value::Object(map) = options {
        for (k, v) in map {
            match (k.as_str(), v) {
                ("ignored", serde_json::Value::String(s)) => ignored.push(s.clone()),
                ("ignored", serde_json::Value::Array(a)) => {
                    ignored.extend(a.iter().filter_map(|v| v.as_str().map(str::to_string)));
                }
                // What chokidar does by default under PM2, and bm2 too.
                ("persistent" | "ignoreInitial", _)
                | ("followSymlinks", serde_json::Value::Bool(true)) => {}
                _ => noted.push(k.clone()),
            }
        }
    }
    (ignored, noted)
}

/// `~` and `~/...` with the user's home directory.
pub fn expand_home(p: &str) -> PathBuf {
    let home = || std::env::var_os("HOME").map(PathBuf::from);
    match p.strip_prefix('~') {
        Some("") => home().unwrap_or_else(|| PathBuf::from(p)),
        Some(rest) if rest.starts_with('/') => home().map_or_else(
            || PathBuf::from(p),
            |h| h.join(rest.trim_start_matches('/')),
        ),
        _ => PathBuf::from(p),
    }
}

/// Checks what bm2 bounds in every app, however it is given (a file, CLI flags, the API): the
/// length and characters of its name, and its stop, readiness and restart durations.
pub fn check_limits(spec: &AppSpec) -> Result<(), bm2_types::limits::LimitError> {
    bm2_types::limits::check(spec)
}

/// A script that exists under `cwd` becomes an absolute path; a directory, its `package.json`
/// `main` or its `index.js` (what node would run); anything else (a program on PATH) is kept as
/// written.
pub fn resolve_script(script: &str, cwd: &Path) -> Result<String, String> {
    let candidate = cwd.join(expand_home(script));
    let absolute = |p: PathBuf| std::fs::canonicalize(&p).unwrap_or(p).display().to_string();
    if candidate.is_file() {
        return Ok(absolute(candidate));
    }
    if candidate.is_dir() {
        let main = std::fs::read_to_string(candidate.join("package.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("main").and_then(|m| m.as_str()).map(str::to_string));
        let mut tried = Vec::new();
        if let Some(main) = main {
            let m = candidate.join(&main);
            for c in [m.clone(), m.with_extension("js"), m.join("index.js")] {
                if c.is_file() {
                    return Ok(absolute(c));
                }
            }
            tried.push(format!("package.json main {main:?}"));
        }
        let index = candidate.join("index.js");
        if index.is_file() {
            return Ok(absolute(index));
        }
        tried.push("index.js".into());
        return Err(format!(
            "{} is a directory without {} to run",
            candidate.display(),
            tried.join(" or ")
        ));
    }
    Ok(script.to_string())
}

/// The default name of an app: its script's file name without the extension.
pub fn default_name(script: &str) -> String {
    let file = Path::new(script)
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or(script);
    match file.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem.to_string(),
        _ => file.to_string(),
    }
}

/// A log path relative to `cwd` made absolute (`.` and `..` resolved as PM2's `path.resolve`
/// does), `~` expanded; `""`, `NULL` and absolute paths stay as given.
pub fn log_path(cwd: &Path, p: String) -> String {
    if p.is_empty() || p == "NULL" || p.starts_with('/') {
        p
    } else {
        lexical(&cwd.join(expand_home(&p))).display().to_string()
    }
}

/// `path` without `.` components, and with each `..` taking off the component before it, as
/// Node's `path.resolve` does, without asking the file system (symbolic links are not followed).
pub fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Reads a dotenv file, interpolating `${VAR}` from earlier lines and the caller's environment.
pub fn read_env_file(path: &Path, file: &str) -> Result<Vars, ConfigError> {
    let iter = dotenvy::from_path_iter(path).map_err(|e| {
        ConfigError::file(
            file,
            format!("cannot read env file {}: {e}", path.display()),
        )
    })?;
    let mut vars = Vars::new();
    for item in iter {
        let (k, v) =
            item.map_err(|e| ConfigError::file(file, format!("env file {}: {e}", path.display())))?;
        vars.insert(k, v);
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_default_to_the_file_stem() {
        assert_eq!(default_name("server.js"), "server");
        assert_eq!(default_name("/srv/app/worker.py"), "worker");
        assert_eq!(default_name("npm"), "npm");
        assert_eq!(default_name(".hidden"), ".hidden");
    }
}
