//! The process list in PM2's `jlist` shape, which scripts and tools parse.

use bm2_types::ProcDetail;
use serde_json::{Map, Value, json};

/// The list as PM2's `pm2 jlist` prints it.
pub fn jlist(details: &[ProcDetail]) -> Value {
    Value::Array(details.iter().map(process).collect())
}

fn process(d: &ProcDetail) -> Value {
    let s = &d.summary;
    let spec = &d.spec;
    let mut env = Map::new();
    // PM2 flattens the app's variables into pm2_env, then sets its own keys over them.
    for (k, v) in &d.env {
        env.insert(k.clone(), Value::String(v.clone()));
    }
    let own = json!({
        "name": s.instance_name,
        "pm_id": s.id,
        "namespace": s.namespace,
        "status": s.status.as_str(),
        "restart_time": s.restarts,
        "unstable_restarts": s.unstable_restarts,
        "pm_uptime": s.started_at_ms.unwrap_or(d.created_at_ms),
        "created_at": d.created_at_ms,
        "exec_mode": spec.exec_mode.pm2_name(),
        "instances": d.instances,
        "pm_exec_path": spec.script,
        "pm_cwd": spec.cwd,
        "exec_interpreter": d.interpreter.clone().unwrap_or_else(|| "none".into()),
        "node_args": spec.node_args,
        "interpreter_args": spec.interpreter_args,
        "args": spec.args,
        "pm_out_log_path": d.out_log,
        "pm_err_log_path": d.err_log,
        "pm_pid_path": d.pid_file,
        "watch": d.watch.as_ref().is_some_and(|w| w.watching),
        "ignore_watch": spec.ignore_watch,
        "watch_delay": spec.watch_delay,
        "cron_restart": spec.cron_restart,
        "autorestart": spec.autorestart,
        "max_restarts": spec.max_restarts,
        "min_uptime": spec.min_uptime,
        "restart_delay": spec.restart_delay,
        "exp_backoff_restart_delay": spec.exp_backoff_restart_delay,
        "kill_timeout": spec.kill_timeout,
        "kill_signal": spec.kill_signal,
        "stop_exit_codes": spec.stop_exit_codes,
        "max_memory_restart": spec.max_memory_restart.map(|b| b.0),
        "autostart": spec.autostart,
        "uid": spec.uid,
        "gid": spec.gid,
        "exit_code": d.last_exit.as_ref().and_then(|e| e.code),
        "env": d.env,
    });
    if let Value::Object(own) = own {
        env.extend(own);
    }
    json!({
        "pid": s.pid.unwrap_or(0),
        "name": s.instance_name,
        "pm_id": s.id,
        "monit": { "memory": s.memory, "cpu": s.cpu },
        "pm2_env": env,
    })
}
