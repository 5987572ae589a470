//! From the keys of a file to [`AppSpec`]: defaults, paths, names and the environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bm2_types::AppSpec;

use crate::error::ConfigError;
use crate::raw::RawApp;

/// Variables as name to value.
pub type Vars = BTreeMap<String, String>;

/// What resolution needs besides the app's keys.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Directory relative paths are taken from (the file's directory).
    pub base_dir: PathBuf,
    /// `--env <name>`: the `env_<name>` block to apply.
    pub env_name: Option<String>,
    /// `--env KEY=VAL` variables, applied last.
    pub cli_vars: Vars,
    /// `--env-file`, applied after the app's own `env_file`.
    pub env_file: Option<PathBuf>,
}

/// Resolves app `index` of a file. `blocks` are its `env_<name>` blocks, by name.
pub fn resolve(
    raw: RawApp,
    blocks: &BTreeMap<String, Vars>,
    ctx: &Context,
    index: usize,
    file: &str,
) -> Result<AppSpec, ConfigError> {
    let at = |key: &str| format!("apps[{index}].{key}");
    let d = AppSpec::default();
    let script = raw.script.filter(|s| !s.trim().is_empty()).ok_or_else(|| {
        ConfigError::file(file, "missing: every app needs a script").at_key(at("script"))
    })?;
    let cwd = match &raw.cwd {
        Some(c) => ctx.base_dir.join(c),
        None => ctx.base_dir.clone(),
    };
    let cwd = std::fs::canonicalize(&cwd).unwrap_or(cwd);
    let script = resolve_script(&script, &cwd);
    let mut name = raw
        .name
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| default_name(&script));

    let mut env = Vars::new();
    if let Some(f) = &raw.env_file {
        env.extend(read_env_file(&cwd.join(f), file).map_err(|e| e.at_key(at("env_file")))?);
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
    let spec = AppSpec {
        name,
        script,
        args: raw.args.map(|w| w.0).unwrap_or_default(),
        cwd: Some(cwd.clone()),
        env,
        interpreter: raw.interpreter,
        interpreter_args: raw.interpreter_args.map(|w| w.0).unwrap_or_default(),
        node_args: raw.node_args.map(|w| w.0).unwrap_or_default(),
        namespace: raw.namespace.unwrap_or(d.namespace),
        instances: raw.instances.unwrap_or(d.instances),
        exec_mode: raw.exec_mode.map_or(d.exec_mode, |m| m.0),
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
        source_map_support: raw.source_map_support.unwrap_or(d.source_map_support),
        port,
        listen_host: raw.listen_host,
        lb: raw.lb.map_or(d.lb, |b| b.0),
        wait_ready: raw.wait_ready.unwrap_or(d.wait_ready),
        listen_timeout: ms(raw.listen_timeout, d.listen_timeout),
        shutdown_with_message: raw.shutdown_with_message.unwrap_or(d.shutdown_with_message),
        socket_activation: raw.socket_activation.unwrap_or(d.socket_activation),
        watch: raw.watch.map(|w| w.0).unwrap_or_default(),
        ignore_watch: raw.ignore_watch.map_or(d.ignore_watch, |l| l.0),
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
    };
    check_limits(&spec).map_err(|e| ConfigError::file(file, e.message).at_key(at(e.key)))?;
    Ok(spec)
}

/// Checks what bm2 bounds in every app, however it is given (a file, CLI flags, the API): the
/// length and characters of its name, and its stop, readiness and restart durations.
pub fn check_limits(spec: &AppSpec) -> Result<(), bm2_types::limits::LimitError> {
    bm2_types::limits::check(spec)
}

/// A script that exists under `cwd` becomes an absolute path; anything else (a program on PATH)
/// is kept as written.
pub fn resolve_script(script: &str, cwd: &Path) -> String {
    let candidate = cwd.join(script);
    if candidate.is_file() {
        return std::fs::canonicalize(&candidate)
            .unwrap_or(candidate)
            .display()
            .to_string();
    }
    script.to_string()
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

/// A log path relative to `cwd` made absolute; `""`, `NULL` and absolute paths stay as given.
pub fn log_path(cwd: &Path, p: String) -> String {
    if p.is_empty() || p == "NULL" || p.starts_with('/') {
        p
    } else {
        cwd.join(p).display().to_string()
    }
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
            item.map_err(|e| ConfigError::file(&path.display().to_string(), e.to_string()))?;
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
