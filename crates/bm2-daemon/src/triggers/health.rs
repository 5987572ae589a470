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

use super::{Context, Outcome};
use crate::time::now_ms;

/// Longest status line read from an HTTP answer.
const MAX_STATUS_LINE: usize = 8 * 1024;

/// What a health check probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// `GET` of a plain `http://` URL; 2xx and 3xx answers are healthy.
    Http {
        /// Host to connect to (no brackets around IPv6 addresses).
        host: String,
        /// Port to connect to.
        port: u16,
        /// Path and query sent in the request line.
        target: String,
        /// Value of the `Host` header.
        authority: String,
    },
    /// A TCP connection must be accepted.
    Tcp {
        /// Host to connect to.
        host: String,
        /// Port to connect to.
        port: u16,
    },
    /// `sh -c <command>` in the app's directory and environment must exit 0.
    Cmd(String),
}

impl Probe {
    /// Parses `--health-check-url`.
    pub fn http(url: &str) -> Result<Probe, String> {
        let bad = |why: &str| format!("health_check_url (--health-check-url) {url:?}: {why}");
        let uri: axum::http::Uri = url
            .trim()
            .parse()
            .map_err(|e| bad(&format!("not a URL: {e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "https:// is not supported: bm2 probes plain http:// (point the check at the app's local HTTP port, or use --health-check-tcp)",
                ));
            }
            _ => {
                return Err(bad(
                    "expected an http:// URL, e.g. http://127.0.0.1:3000/health",
                ));
            }
        }
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        Ok(Probe::Http {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            target: uri
                .path_and_query()
                .map_or_else(|| "/".to_string(), ToString::to_string),
            authority: uri
                .authority()
                .map_or_else(|| host.to_string(), ToString::to_string),
        })
    }

    /// Parses `--health-check-tcp` (`host:port`, `[::1]:port`).
    pub fn tcp(addr: &str) -> Result<Probe, String> {
        let bad = || {
            format!(
                "health_check_tcp (--health-check-tcp) {addr:?}: expected host:port, e.g. 127.0.0.1:5432"
            )
        };
        let (host, port) = addr.trim().rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(bad());
        }
        if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad());
        }
        Ok(Probe::Tcp {
            host: host.to_string(),
            port,
        })
    }

    /// The probe in words, for `describe`.
    pub fn describe(&self) -> String {
        match self {
            Probe::Http {
                authority, target, ..
            } => format!("GET http://{authority}{target}"),
            Probe::Tcp { host, port } if host.contains(':') => format!("tcp [{host}]:{port}"),
            Probe::Tcp { host, port } => format!("tcp {host}:{port}"),
            Probe::Cmd(cmd) => format!("cmd {cmd}"),
        }
    }
}

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
        let given = [
            spec.health_check_url.is_some(),
            spec.health_check_tcp.is_some(),
            spec.health_check_cmd.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(
                "health_check_url, health_check_tcp and health_check_cmd (--health-check-url, --health-check-tcp, --health-check-cmd) are alternatives: give one"
                    .into(),
            );
        }
        let probe = if let Some(url) = &spec.health_check_url {
            Probe::http(url)?
        } else if let Some(addr) = &spec.health_check_tcp {
            Probe::tcp(addr)?
        } else if let Some(cmd) = &spec.health_check_cmd {
            if cmd.trim().is_empty() {
                return Err("health_check_cmd (--health-check-cmd) is empty".into());
            }
            Probe::Cmd(cmd.clone())
        } else {
            return Ok(None);
        };
        if spec.health_check_interval == 0 {
            return Err(
                "health_check_interval (--health-check-interval) must be at least 1 ms".into(),
            );
        }
        if spec.health_check_timeout == 0 {
            return Err(
                "health_check_timeout (--health-check-timeout) must be at least 1 ms".into(),
            );
        }
        super::check_ms(
            spec.health_check_interval,
            "health_check_interval (--health-check-interval)",
        )?;
        super::check_ms(
            spec.health_check_timeout,
            "health_check_timeout (--health-check-timeout)",
        )?;
        if spec.health_check_max_fails == 0 {
            return Err(
                "health_check_max_fails (--health-check-max-fails) must be at least 1".into(),
            );
        }
        Ok(Some(HealthConfig {
            probe,
            interval: Duration::from_millis(spec.health_check_interval),
            grace: Duration::from_millis(spec.health_check_interval.max(spec.min_uptime)),
            timeout: Duration::from_millis(spec.health_check_timeout),
            max_fails: spec.health_check_max_fails,
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
    fn urls_parse_and_https_is_refused() {
        let p = Probe::http("http://localhost:3000/health?deep=1").unwrap();
        assert_eq!(
            p,
            Probe::Http {
                host: "localhost".into(),
                port: 3000,
                target: "/health?deep=1".into(),
                authority: "localhost:3000".into(),
            }
        );
        assert_eq!(p.describe(), "GET http://localhost:3000/health?deep=1");
        let p = Probe::http("http://[::1]/").unwrap();
        assert!(matches!(p, Probe::Http { ref host, port: 80, .. } if host == "::1"));
        let e = Probe::http("https://example.com/health").unwrap_err();
        assert!(e.contains("health_check_url") && e.contains("https"), "{e}");
        let e = Probe::http("localhost:3000").unwrap_err();
        assert!(e.contains("--health-check-url"), "{e}");
        assert!(Probe::http("not a url").is_err());
    }

    #[test]
    fn tcp_addresses_need_a_host_and_a_port() {
        assert_eq!(
            Probe::tcp("127.0.0.1:5432").unwrap(),
            Probe::Tcp {
                host: "127.0.0.1".into(),
                port: 5432
            }
        );
        assert_eq!(Probe::tcp("[::1]:80").unwrap().describe(), "tcp [::1]:80");
        for bad in [
            "5432",
            "host:",
            ":80",
            "host:http",
            "host:0",
            "a b:1",
            "::1:80:x",
        ] {
            let e = Probe::tcp(bad).unwrap_err();
            assert!(e.contains("--health-check-tcp"), "{bad}: {e}");
        }
    }

    #[test]
    fn one_check_at_a_time_and_sane_numbers() {
        let spec = AppSpec {
            health_check_url: Some("http://127.0.0.1:1/".into()),
            health_check_cmd: Some("true".into()),
            ..AppSpec::default()
        };
        assert!(
            HealthConfig::from_spec(&spec)
                .unwrap_err()
                .contains("alternatives")
        );
        let spec = AppSpec {
            health_check_cmd: Some("true".into()),
            health_check_max_fails: 0,
            ..AppSpec::default()
        };
        assert!(
            HealthConfig::from_spec(&spec)
                .unwrap_err()
                .contains("max_fails")
        );
        for (interval, timeout, key) in [
            (u64::MAX, 5000, "health_check_interval"),
            (30_000, crate::triggers::MAX_MS + 1, "health_check_timeout"),
        ] {
            let spec = AppSpec {
                health_check_cmd: Some("true".into()),
                health_check_interval: interval,
                health_check_timeout: timeout,
                ..AppSpec::default()
            };
            let e = HealthConfig::from_spec(&spec).unwrap_err();
            assert!(e.contains(key) && e.contains("30 days"), "{e}");
        }
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
