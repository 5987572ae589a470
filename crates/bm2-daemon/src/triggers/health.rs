//! Health checks: every `health_check_interval`, an HTTP GET, a TCP connection or a command
//! judges the instance's current process; after `health_check_max_fails` failures in a row that
//! process is restarted. Only the instance that fails is restarted: a check on the app's `port`
//! goes to each instance's own port (its private port in cluster mode, `port + i` in fork mode).
//! A new process is left alone for one interval, or its `min_uptime` when longer, before its
//! first probe.

use std::time::Duration;

use bm2_types::{AppSpec, ExecMode, HealthInfo, HealthState, ProcStatus, RestartReason};
use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, MissedTickBehavior};

use bm2_config::triggers::HealthCheck;
pub use bm2_config::triggers::Probe;

use super::{Context, Outcome};
use crate::time::now_ms;

/// Longest status line read from an HTTP answer.
const MAX_STATUS_LINE: usize = 8 * 1024;

/// A health check, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// What is probed.
    pub probe: Probe,
    /// Time between probes.
    pub interval: Duration,
    /// A new process is first probed after this long: the interval, or the app's `min_uptime`
    /// when longer (a process is not judged before it counts as started).
    pub grace: Duration,
    /// Time a probe may take.
    pub timeout: Duration,
    /// Failures in a row that restart the instance.
    pub max_fails: u32,
    /// The app's port: a probe of that port goes to the instance's own port.
    pub app_port: Option<u16>,
    /// Fork or cluster.
    pub mode: ExecMode,
    /// Where commands run.
    pub cwd: Option<std::path::PathBuf>,
}

impl HealthConfig {
    /// The health check of `spec`, if it has one. Errors name the option.
    pub fn from_spec(spec: &AppSpec) -> Result<Option<HealthConfig>, String> {
        let Some(HealthCheck {
            probe,
            interval,
            timeout,
            max_fails,
        }) = HealthCheck::from_spec(spec)?
        else {
            return Ok(None);
        };
        Ok(Some(HealthConfig {
            probe,
            interval,
            grace: interval.max(Duration::from_millis(spec.min_uptime)),
            timeout,
            max_fails,
            app_port: spec.port,
            mode: spec.exec_mode,
            cwd: spec.cwd.clone(),
        }))
    }

    /// The port to probe for instance `index`, whose private port (cluster mode) is `private`.
    pub fn port_for(&self, port: u16, index: u32, private: Option<u16>) -> u16 {
        match (self.app_port, self.mode) {
            (Some(app), ExecMode::Cluster) if app == port => private.unwrap_or(port),
            (Some(app), ExecMode::Fork) if app == port => {
                u16::try_from(u32::from(port) + index).unwrap_or(port)
            }
            _ => port,
        }
    }
}

/// Probes every interval until aborted.
pub async fn run(ctx: Context, cfg: HealthConfig) {
    let mut info = HealthInfo {
        check: cfg.probe.describe(),
        state: HealthState::Unknown,
        consecutive_fails: 0,
        max_fails: cfg.max_fails,
        last_error: None,
        last_check_ms: None,
    };
    ctx.publish(|s| s.health = Some(info.clone()));
    let mut tick = tokio::time::interval_at(Instant::now() + cfg.interval, cfg.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut judged: Option<u32> = None;
    loop {
        tick.tick().await;
        let Some((pid, private)) = probe_target(&ctx, &cfg) else {
            if info.state != HealthState::Unknown || info.consecutive_fails > 0 {
                info.state = HealthState::Unknown;
                info.consecutive_fails = 0;
                ctx.publish(|s| s.health = Some(info.clone()));
            }
            judged = None;
            continue;
        };
        if judged != Some(pid) {
            judged = Some(pid);
            info.consecutive_fails = 0;
        }
        let result = probe(&ctx, &cfg, private).await;
        if ctx.view.borrow().pid != Some(pid) {
            // The process changed while it was probed: the answer is about neither.
            continue;
        }
        info.last_check_ms = Some(now_ms());
        match result {
            Ok(()) => {
                info.state = HealthState::Healthy;
                info.consecutive_fails = 0;
            }
            Err(e) => {
                info.state = HealthState::Unhealthy;
                info.consecutive_fails += 1;
                tracing::debug!(id = ctx.id, error = %e, fails = info.consecutive_fails, "health check failed");
                info.last_error = Some(e);
            }
        }
        ctx.publish(|s| s.health = Some(info.clone()));
        if info.consecutive_fails >= cfg.max_fails {
            let detail = format!(
                "health check ({}) failed {} times in a row: {}",
                info.check,
                info.consecutive_fails,
                info.last_error.as_deref().unwrap_or("?")
            );
            match ctx.ask(RestartReason::Health, detail, Some(pid)).await {
                Outcome::Restarted | Outcome::Ignored(_) => {}
                Outcome::Failed(e) => {
                    tracing::warn!(id = ctx.id, error = %e, "restart after failed health checks");
                }
            }
            judged = None;
            tick.reset();
        }
    }
}

/// The process to probe (online, and past its grace period) and its private port.
fn probe_target(ctx: &Context, cfg: &HealthConfig) -> Option<(u32, Option<u16>)> {
    let v = ctx.view.borrow();
    let pid = v.pid?;
    if v.status != ProcStatus::Online {
        return None;
    }
    let grace = cfg.grace.as_millis() as u64;
    if v.started_at_ms
        .is_some_and(|at| now_ms() < at.saturating_add(grace))
    {
        return None;
    }
    Some((pid, v.private_port))
}

/// One probe, bounded by the timeout.
async fn probe(ctx: &Context, cfg: &HealthConfig, private: Option<u16>) -> Result<(), String> {
    let ms = cfg.timeout.as_millis();
    match &cfg.probe {
        Probe::Http {
            host,
            port,
            target,
            authority,
        } => {
            let port = cfg.port_for(*port, ctx.index, private);
            tokio::time::timeout(cfg.timeout, http_get(host, port, target, authority))
                .await
                .unwrap_or_else(|_| Err(format!("no answer from {host}:{port} within {ms} ms")))
        }
        Probe::Tcp { host, port } => {
            let port = cfg.port_for(*port, ctx.index, private);
            match tokio::time::timeout(cfg.timeout, TcpStream::connect((host.as_str(), port))).await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("connect to {host}:{port}: {e}")),
                Err(_) => Err(format!(
                    "connect to {host}:{port}: no answer within {ms} ms"
                )),
            }
        }
        Probe::Cmd(cmd) => run_command(ctx, cfg, cmd).await,
    }
}

/// `GET target` over a new connection; healthy on a 2xx or 3xx status.
async fn http_get(host: &str, port: u16, target: &str, authority: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connect to {host}:{port}: {e}"))?;
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: bm2-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send request to {host}:{port}: {e}"))?;
    let mut line = Vec::with_capacity(128);
    let mut buf = [0u8; 1024];
    while !line.contains(&b'\n') && line.len() < MAX_STATUS_LINE {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("read answer from {host}:{port}: {e}"))?;
        if n == 0 {
            break;
        }
        line.extend_from_slice(&buf[..n]);
    }
    let (code, phrase) = status_line(&line)
        .ok_or_else(|| format!("{host}:{port} did not answer with an HTTP status line"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP {code} {phrase}").trim_end().to_string())
    }
}

/// The status code and reason phrase of an HTTP/1 answer's first line.
fn status_line(answer: &[u8]) -> Option<(u16, String)> {
    let end = answer.iter().position(|b| *b == b'\n')?;
    let line = String::from_utf8_lossy(&answer[..end]);
    let mut parts = line.trim_end_matches('\r').splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?.parse().ok()?;
    Some((code, parts.next().unwrap_or("").to_string()))
}

/// Runs the check command in its own process group, killed (with anything it started) when it
/// takes too long or when the check is aborted.
async fn run_command(ctx: &Context, cfg: &HealthConfig, cmd: &str) -> Result<(), String> {
    let env = {
        let v = ctx.view.borrow();
        crate::envs::with_overlay(&v.base_env, &v.env)
    };
    let mut command = tokio::process::Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(cmd)
        .env_clear()
        .envs(env.iter())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &cfg.cwd {
        command.current_dir(dir);
    }
    let mut child = ctx
        .shared
        .table
        .spawn(&mut command)
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let Some(pid) = child.id() else {
        return Err(format!("cannot run {cmd:?}: no pid"));
    };
    let _group = GroupGuard {
        pid,
        shared: ctx.shared.clone(),
    };
    match tokio::time::timeout(cfg.timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(match status.code() {
            Some(code) => format!("command exited with code {code}"),
            None => format!("command ended by a signal ({status})"),
        }),
        Ok(Err(e)) => Err(format!("command: {e}")),
        Err(_) => {
            kill_group(pid);
            let _ = child.wait().await;
            Err(format!(
                "command did not finish within {} ms",
                cfg.timeout.as_millis()
            ))
        }
    }
}

fn kill_group(pid: u32) {
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
}

/// Kills what is left of a check command's process group and forgets its pid, however the check
/// ends (finished, timed out, or aborted with its instance).
struct GroupGuard {
    pid: u32,
    shared: std::sync::Arc<crate::Shared>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        kill_group(self.pid);
        self.shared.table.forget(self.pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_is_built_from_the_parsed_options() {
        let spec = AppSpec {
            health_check_url: Some("http://127.0.0.1:3000/".into()),
            health_check_interval: 2000,
            min_uptime: 5000,
            ..AppSpec::default()
        };
        let cfg = HealthConfig::from_spec(&spec).unwrap().unwrap();
        assert_eq!(cfg.interval, Duration::from_secs(2));
        assert_eq!(cfg.grace, Duration::from_secs(5));
        assert_eq!(cfg.probe.describe(), "GET http://127.0.0.1:3000/");
        // The options' rules are bm2-config's, and so are their messages.
        let spec = AppSpec {
            health_check_tcp: Some("db".into()),
            ..AppSpec::default()
        };
        assert_eq!(
            HealthConfig::from_spec(&spec),
            Err(HealthCheck::from_spec(&spec).unwrap_err())
        );
        assert_eq!(HealthConfig::from_spec(&AppSpec::default()), Ok(None));
    }

    #[test]
    fn checks_of_the_app_port_go_to_each_instance() {
        let spec = AppSpec {
            health_check_tcp: Some("127.0.0.1:3000".into()),
            port: Some(3000),
            ..AppSpec::default()
        };
        let fork = HealthConfig::from_spec(&spec).unwrap().unwrap();
        assert_eq!(fork.port_for(3000, 2, None), 3002);
        assert_eq!(fork.port_for(4000, 2, None), 4000);
        let cluster = HealthConfig {
            mode: ExecMode::Cluster,
            ..fork
        };
        assert_eq!(cluster.port_for(3000, 2, Some(41_000)), 41_000);
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            status_line(b"HTTP/1.1 503 Service Unavailable\r\nx: y\r\n"),
            Some((503, "Service Unavailable".into()))
        );
        assert_eq!(status_line(b"HTTP/1.0 200\r\n"), Some((200, String::new())));
        assert_eq!(status_line(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_line(b"HTTP/1.1 200 OK"), None);
    }
}
