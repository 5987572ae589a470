//! Checks of an app's automatic-restart options (health check, cron schedule, file watching)
//! before anything is sent to the daemon, so that a bad value is reported with the option's name
//! and nothing starts. The daemon applies the same rules to what it receives (its API has other
//! clients); these checks let `bm2 start` and `bm2 validate` refuse a file without a daemon.

use bm2_types::AppSpec;
use croner::parser::{CronParser, Seconds, Year};
use globset::GlobBuilder;
use jiff::tz::TimeZone;

/// Longest interval, timeout or delay a trigger option may give, in milliseconds (30 days).
pub const MAX_MS: u64 = 30 * 24 * 3600 * 1000;

/// Checks the trigger options of `spec`; `tz` is the `TZ` the app will be given (`None`: the
/// local zone). Errors name the option (ecosystem key and CLI flag).
pub fn validate(spec: &AppSpec, tz: Option<&str>) -> Result<(), String> {
    health(spec)?;
    if let Some(expr) = &spec.cron_restart {
        cron(expr, tz)?;
    }
    if !spec.watch.is_empty() {
        for raw in &spec.ignore_watch {
            let p = raw.trim().trim_start_matches("./").trim_end_matches('/');
            if p.is_empty() {
                continue;
            }
            GlobBuilder::new(p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| {
                    format!("ignore_watch (--ignore-watch): {raw:?} is not a valid glob: {e}")
                })?;
        }
        check_ms(spec.watch_delay, "watch_delay (--watch-delay)")?;
    }
    Ok(())
}

/// The `TZ` an app will run with: its own, else the caller's unless `filter_env` drops it.
pub fn app_tz(spec: &AppSpec, caller: Option<String>) -> Option<String> {
    spec.env
        .get("TZ")
        .cloned()
        .or_else(|| caller.filter(|_| spec.filter_env.keeps("TZ")))
}

fn check_ms(value: u64, name: &str) -> Result<(), String> {
    if value > MAX_MS {
        return Err(format!(
            "{name} is {value} ms; at most {MAX_MS} ms (30 days)"
        ));
    }
    Ok(())
}

fn health(spec: &AppSpec) -> Result<(), String> {
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
    if let Some(url) = &spec.health_check_url {
        http_url(url)?;
    } else if let Some(addr) = &spec.health_check_tcp {
        tcp_addr(addr)?;
    } else if let Some(cmd) = &spec.health_check_cmd {
        if cmd.trim().is_empty() {
            return Err("health_check_cmd (--health-check-cmd) is empty".into());
        }
    } else {
        return Ok(());
    }
    if spec.health_check_interval == 0 {
        return Err("health_check_interval (--health-check-interval) must be at least 1 ms".into());
    }
    if spec.health_check_timeout == 0 {
        return Err("health_check_timeout (--health-check-timeout) must be at least 1 ms".into());
    }
    check_ms(
        spec.health_check_interval,
        "health_check_interval (--health-check-interval)",
    )?;
    check_ms(
        spec.health_check_timeout,
        "health_check_timeout (--health-check-timeout)",
    )?;
    if spec.health_check_max_fails == 0 {
        return Err("health_check_max_fails (--health-check-max-fails) must be at least 1".into());
    }
    Ok(())
}

fn http_url(url: &str) -> Result<(), String> {
    let bad = |why: &str| format!("health_check_url (--health-check-url) {url:?}: {why}");
    let uri: http::Uri = url
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
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(())
}

fn tcp_addr(addr: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "health_check_tcp (--health-check-tcp) {addr:?}: expected host:port, e.g. 127.0.0.1:5432"
        )
    };
    let (host, port) = addr.trim().rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
        return Err(bad());
    }
    Ok(())
}

fn cron(expression: &str, tz: Option<&str>) -> Result<(), String> {
    let fields = expression.split_whitespace().count();
    if !expression.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
        return Err(format!(
            "cron_restart (--cron) {expression:?}: expected 5 fields (minute hour day month weekday) or 6 (with seconds first), got {fields}"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expression)
        .map_err(|e| {
            format!("cron_restart (--cron) {expression:?}: invalid cron expression: {e}")
        })?;
    let Some(given) = tz.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    let name = given.strip_prefix(':').unwrap_or(given);
    let zone = if name.starts_with('/') {
        std::fs::read(name)
            .map_err(|e| e.to_string())
            .and_then(|data| {
                TimeZone::tzif(name, &data)
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
    } else {
        TimeZone::get(name)
            .map(drop)
            .or_else(|_| TimeZone::posix(name).map(drop).map_err(|e| e.to_string()))
    };
    zone.map_err(|e| {
        format!("cron_restart (--cron): the app's TZ {given:?} is not a time zone bm2 knows: {e}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_trigger_options_are_refused_with_their_names() {
        let ok = AppSpec {
            cron_restart: Some("0 3 * * *".into()),
            health_check_url: Some("http://127.0.0.1:3000/health".into()),
            ..AppSpec::default()
        };
        validate(&ok, Some("Europe/Paris")).unwrap();
        let e = |s: AppSpec, tz: Option<&str>| validate(&s, tz).unwrap_err();
        assert!(
            e(
                AppSpec {
                    cron_restart: Some("61 * * * *".into()),
                    ..AppSpec::default()
                },
                None
            )
            .starts_with("cron_restart (--cron)")
        );
        assert!(e(ok.clone(), Some("Mars/Olympus")).contains("TZ"));
        assert!(
            e(
                AppSpec {
                    health_check_url: Some("https://x/".into()),
                    ..AppSpec::default()
                },
                None
            )
            .contains("https:// is not supported")
        );
        assert!(
            e(
                AppSpec {
                    health_check_tcp: Some("db".into()),
                    ..AppSpec::default()
                },
                None
            )
            .contains("expected host:port")
        );
        let watch = AppSpec {
            watch: vec![".".into()],
            ignore_watch: vec!["a[".into()],
            ..AppSpec::default()
        };
        assert!(e(watch, None).contains("not a valid glob"));
    }
}
