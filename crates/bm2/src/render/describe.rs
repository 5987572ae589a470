//! The detail view of one instance.

use std::fmt::Write as _;

use bm2_types::{ProcDetail, format_bytes};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};

use super::{color, escape, iso_time, since, uptime};

/// Prints the detail table of one instance.
pub fn print(d: &ProcDetail) {
    println!("{}", text(d, color(), super::width()));
}

/// The detail table of one instance, with control characters in values escaped; long values
/// wrap so that the table fits in `width` columns when given.
pub fn text(d: &ProcDetail, colored: bool, width: Option<usize>) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    if !colored {
        table.force_no_tty();
    }
    match width.and_then(|w| u16::try_from(w).ok()) {
        Some(w) => {
            table
                .set_content_arrangement(ContentArrangement::Dynamic)
                .set_width(w);
        }
        None => {
            table.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    for (key, value) in rows(d) {
        table.add_row(vec![key.to_string(), escape::text(&value).into_owned()]);
    }
    table.to_string()
}

/// The key/value rows of the detail view.
pub fn rows(d: &ProcDetail) -> Vec<(&'static str, String)> {
    let s = &d.summary;
    let spec = &d.spec;
    let dash = || "-".to_string();
    let join = |v: &[String]| if v.is_empty() { dash() } else { v.join(" ") };
    let running = s.pid.is_some();
    vec![
        ("Name", s.name.clone()),
        ("ID", s.id.to_string()),
        ("Instance", s.instance.to_string()),
        ("Status", s.status.as_str().to_string()),
        ("Reason", d.status_reason.clone().unwrap_or_else(dash)),
        ("PID", s.pid.map_or_else(dash, |p| p.to_string())),
        ("Exec Mode", spec.exec_mode.pm2_name().to_string()),
        ("Instances", d.instances.to_string()),
        ("Namespace", s.namespace.clone()),
        (
            "Uptime",
            if running {
                uptime(since(s.started_at_ms))
            } else {
                dash()
            },
        ),
        ("Restarts", s.restarts.to_string()),
        (
            "Pending Env",
            if d.pending_env.is_empty() {
                dash()
            } else {
                format!(
                    "{} (applied at the next start or restart)",
                    d.pending_env.join(", ")
                )
            },
        ),
        ("Unstable Restarts", s.unstable_restarts.to_string()),
        (
            "Last Exit",
            d.last_exit.as_ref().map_or_else(dash, |e| {
                format!("{e} at {} after {}", iso_time(e.at_ms), uptime(e.uptime_ms))
            }),
        ),
        (
            "CPU",
            if running {
                format!("{:.1}%", s.cpu)
            } else {
                dash()
            },
        ),
        (
            "Memory",
            if running {
                format_bytes(s.memory)
            } else {
                dash()
            },
        ),
        (
            "File Handles",
            d.file_handles.map_or_else(dash, |n| n.to_string()),
        ),
        ("Script", spec.script.clone()),
        ("Args", join(&spec.args)),
        (
            "CWD",
            spec.cwd
                .as_ref()
                .map_or_else(dash, |c| c.display().to_string()),
        ),
        (
            "Interpreter",
            d.interpreter.clone().unwrap_or_else(|| "none".into()),
        ),
        (
            "Interpreter Args",
            join(&[spec.node_args.clone(), spec.interpreter_args.clone()].concat()),
        ),
        ("Autorestart", spec.autorestart.to_string()),
        ("Max Restarts", spec.max_restarts.to_string()),
        ("Min Uptime", format!("{} ms", spec.min_uptime)),
        (
            "Restart Delay",
            match spec.exp_backoff_restart_delay {
                Some(ms) => format!("exponential backoff from {ms} ms"),
                None => format!("{} ms", spec.restart_delay),
            },
        ),
        (
            "Stop Exit Codes",
            if spec.stop_exit_codes.is_empty() {
                dash()
            } else {
                spec.stop_exit_codes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
        ("Kill Signal", spec.kill_signal.to_string()),
        ("Kill Timeout", format!("{} ms", spec.kill_timeout)),
        ("Watch", watch(d)),
        (
            "Max Memory Restart",
            spec.max_memory_restart
                .map_or_else(|| "disabled".into(), |b| format_bytes(b.0)),
        ),
        ("Health Check", health(d)),
        ("Cron Restart", cron(d)),
        ("Restart Reasons", restart_reasons(d)),
        (
            "Last Restart",
            d.last_restart.as_ref().map_or_else(dash, |r| {
                format!("{} at {}: {}", r.reason, iso_time(r.at_ms), r.detail)
            }),
        ),
        (
            "User",
            match (&spec.uid, &spec.gid) {
                (None, None) => dash(),
                (u, g) => format!(
                    "{}:{}",
                    u.as_deref().unwrap_or("-"),
                    g.as_deref().unwrap_or("-")
                ),
            },
        ),
        (
            "Balancer",
            d.cluster.as_ref().map_or_else(dash, |c| c.listen.clone()),
        ),
        (
            "Private Port",
            d.cluster
                .as_ref()
                .and_then(|c| c.private_port)
                .map_or_else(dash, |p| p.to_string()),
        ),
        (
            "Ready",
            d.cluster
                .as_ref()
                .map_or_else(dash, |c| c.ready.to_string()),
        ),
        (
            "Connections",
            d.cluster.as_ref().map_or_else(dash, |c| {
                format!("{} open, {} total", c.connections, c.total_connections)
            }),
        ),
        ("Created", iso_time(d.created_at_ms)),
        ("Out Log", d.out_log.display().to_string()),
        ("Error Log", d.err_log.display().to_string()),
        (
            "Combined Log",
            d.log_file
                .as_ref()
                .map_or_else(dash, |p| p.display().to_string()),
        ),
        (
            "Log Rotation",
            match spec.log_max_size {
                Some(size) => format!(
                    "{}, retain {}",
                    format_bytes(size.0),
                    spec.log_retain
                        .map_or_else(|| "default".into(), |r| r.to_string())
                ),
                None => "daemon default".to_string(),
            },
        ),
        ("Dropped Log Bytes", d.log_dropped_bytes.to_string()),
        ("Pid File", d.pid_file.display().to_string()),
    ]
}

fn watch(d: &ProcDetail) -> String {
    let Some(w) = &d.watch else {
        return "disabled".into();
    };
    let paths = w
        .paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = if w.watching {
        format!(
            "watching {paths} ({} directories; ignoring {}; delay {} ms)",
            w.directories,
            if w.ignore.is_empty() {
                "nothing".to_string()
            } else {
                w.ignore.join(", ")
            },
            w.delay_ms
        )
    } else {
        format!(
            "off: {}",
            w.off_reason
                .clone()
                .unwrap_or_else(|| format!("not watching {paths}"))
        )
    };
    if let Some(change) = &w.last_change {
        let _ = write!(text, "; last change: {change}");
    }
    if let Some(e) = &w.error {
        let _ = write!(text, "; problem: {e}");
    }
    text
}

fn health(d: &ProcDetail) -> String {
    let Some(h) = &d.health else {
        return "disabled".into();
    };
    let mut text = format!("{} ({}", h.check, h.state.as_str());
    if h.consecutive_fails > 0 {
        let _ = write!(
            text,
            ", {}/{} failed in a row",
            h.consecutive_fails, h.max_fails
        );
    }
    text.push(')');
    if let (bm2_types::HealthState::Unhealthy, Some(e)) = (h.state, &h.last_error) {
        let _ = write!(text, "; last error: {e}");
    }
    text
}

fn cron(d: &ProcDetail) -> String {
    let Some(c) = &d.cron else {
        return "disabled".into();
    };
    if let Some(e) = &c.error {
        return format!("{} (not running: {e})", c.expression);
    }
    let next = c.next_run_ms.map_or_else(|| "none".to_string(), iso_time);
    format!("{} ({}), next run {next}", c.expression, c.time_zone)
}

fn restart_reasons(d: &ProcDetail) -> String {
    if d.summary.restart_reasons.is_empty() {
        return "-".into();
    }
    d.summary
        .restart_reasons
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_values_are_escaped() {
        let name = "evil\u{1b}]0;owned\u{7}name";
        let d = ProcDetail {
            summary: crate::render::test_row(3, name),
            spec: bm2_types::AppSpec {
                name: name.into(),
                script: "/srv/app\u{1b}[31m.js".into(),
                ..bm2_types::AppSpec::default()
            },
            instances: 1,
            interpreter: None,
            env: std::collections::BTreeMap::new(),
            pending_env: Vec::new(),
            created_at_ms: 0,
            last_exit: None,
            status_reason: Some("errored:\nspawn failed".into()),
            file_handles: None,
            out_log: "/h/logs/evil\u{1b}-3-out.log".into(),
            err_log: "/dev/null".into(),
            log_file: None,
            log_dropped_bytes: 0,
            pid_file: "/h/pids/x.pid".into(),
            cluster: None,
            last_restart: None,
            health: None,
            cron: None,
            watch: None,
        };
        let shown = text(&d, false, None);
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
            "{shown}"
        );
        for needle in [
            "evil\\x1b]0;owned\\x07name",
            "/srv/app\\x1b[31m.js",
            "errored:\\nspawn failed",
            "/h/logs/evil\\x1b-3-out.log",
        ] {
            assert!(shown.contains(needle), "{needle:?} not in:\n{shown}");
        }
    }
}
