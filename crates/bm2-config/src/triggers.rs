//! An app's automatic-restart options (health check, cron schedule, file watching) parsed into
//! the typed values the daemon runs on. The CLI parses them before anything is sent to the
//! daemon, so that a bad value is reported with the option's name and nothing starts
//! (`bm2 start`, `bm2 validate`); the daemon builds its triggers from the same values (its API
//! has other clients), so both apply one set of rules. Errors name the option (ecosystem key and
//! CLI flag).

use std::path::Path;
use std::time::Duration;

use bm2_types::AppSpec;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// Longest interval, timeout or delay a trigger option may give, in milliseconds (30 days):
/// larger values are surely mistakes, and refusing them keeps the arithmetic on deadlines and
/// delays (a debounce's cap is ten delays) far from overflow.
pub const MAX_MS: u64 = 30 * 24 * 3600 * 1000;

/// Checks the trigger options of `spec`; `tz` is the `TZ` the app will be given (`None`: the
/// local zone).
pub fn validate(spec: &AppSpec, tz: Option<&str>) -> Result<(), String> {
    HealthCheck::from_spec(spec)?;
    if let Some(expr) = &spec.cron_restart {
        Schedule::parse(expr, tz)?;
    }
    WatchOptions::from_spec(spec)?;
    Ok(())
}

/// The `TZ` an app will run with: its own, else the caller's unless `filter_env` drops it.
pub fn app_tz(spec: &AppSpec, caller: Option<String>) -> Option<String> {
    spec.env
        .get("TZ")
        .cloned()
        .or_else(|| caller.filter(|_| spec.filter_env.keeps("TZ")))
}

/// A duration option in milliseconds, refused above [`MAX_MS`]; `name` is the key and flag.
fn millis(value: u64, name: &str) -> Result<Duration, String> {
    if value > MAX_MS {
        return Err(format!(
            "{name} is {value} ms; at most {MAX_MS} ms (30 days)"
        ));
    }
    Ok(Duration::from_millis(value))
}

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

/// An app's health check options, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// What is probed.
    pub probe: Probe,
    /// Time between probes (at least 1 ms, at most [`MAX_MS`]).
    pub interval: Duration,
    /// Time a probe may take (at least 1 ms, at most [`MAX_MS`]).
    pub timeout: Duration,
    /// Failures in a row that restart the instance (at least 1).
    pub max_fails: u32,
}

impl HealthCheck {
    /// The health check of `spec`, if it has one.
    pub fn from_spec(spec: &AppSpec) -> Result<Option<HealthCheck>, String> {
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
        let interval = millis(
            spec.health_check_interval,
            "health_check_interval (--health-check-interval)",
        )?;
        let timeout = millis(
            spec.health_check_timeout,
            "health_check_timeout (--health-check-timeout)",
        )?;
        if spec.health_check_max_fails == 0 {
            return Err(
                "health_check_max_fails (--health-check-max-fails) must be at least 1".into(),
            );
        }
        Ok(Some(HealthCheck {
            probe,
            interval,
            timeout,
            max_fails: spec.health_check_max_fails,
        }))
    }
}

/// A `cron_restart` schedule, parsed, and the time zone it is read in.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The expression, as given.
    pub expression: String,
    /// The time zone's name, for `describe`.
    pub zone_name: String,
    cron: Cron,
    zone: TimeZone,
}

impl Schedule {
    /// Parses `expression` (5 fields, or 6 with seconds first, with croner's extensions: `L`,
    /// `W`, `#`, `?`, names of days and months, `@daily`...), read in the time zone `tz` (an
    /// IANA name, a POSIX `TZ` string or a tzfile path; `None` for the local zone).
    pub fn parse(expression: &str, tz: Option<&str>) -> Result<Schedule, String> {
        let cron =
            cron(expression).map_err(|e| format!("cron_restart (--cron) {expression:?}: {e}"))?;
        let (zone, zone_name) =
            time_zone(tz).map_err(|e| format!("cron_restart (--cron): the app's TZ {e}"))?;
        Ok(Schedule {
            expression: expression.to_string(),
            zone_name,
            cron,
            zone,
        })
    }

    /// The first run strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let from = after.to_zoned(self.zone.clone());
        self.cron
            .find_next_occurrence(&from, false)
            .ok()
            .map(|z| z.timestamp())
    }
}

/// Parses a cron expression of 5 fields, or 6 with seconds first.
fn cron(expression: &str) -> Result<Cron, String> {
    let fields = expression.split_whitespace().count();
    if !expression.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
        return Err(format!(
            "expected 5 fields (minute hour day month weekday) or 6 (with seconds first), got {fields}"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expression)
        .map_err(|e| format!("invalid cron expression: {e}"))
}

/// The time zone named by a `TZ` value, and its name; the local zone for `None`.
fn time_zone(tz: Option<&str>) -> Result<(TimeZone, String), String> {
    let Some(given) = tz.map(str::trim).filter(|t| !t.is_empty()) else {
        let local = TimeZone::system();
        let name = local.iana_name().unwrap_or("local").to_string();
        return Ok((local, name));
    };
    let name = given.strip_prefix(':').unwrap_or(given);
    let zone = if name.starts_with('/') {
        std::fs::read(name)
            .map_err(|e| e.to_string())
            .and_then(|data| TimeZone::tzif(name, &data).map_err(|e| e.to_string()))
    } else {
        TimeZone::get(name).or_else(|_| TimeZone::posix(name).map_err(|e| e.to_string()))
    };
    zone.map(|z| (z, name.to_string()))
        .map_err(|e| format!("{given:?} is not a time zone bm2 knows: {e}"))
}

/// An app's `ignore_watch` patterns, compiled.
///
/// A pattern without `/` (`node_modules`, `*.log`, `\.git`) matches a file or directory *name*
/// at any depth; a pattern with `/` (`client/img`, `src/**/*.tmp`) matches a path relative to the
/// app's directory (and everything under it), or an absolute path when it starts with `/`.
/// Two sets are equal when their patterns are.
#[derive(Debug, Clone)]
pub struct IgnoreWatch {
    patterns: Vec<String>,
    names: GlobSet,
    paths: GlobSet,
}

impl IgnoreWatch {
    /// Compiles `patterns` (`./` before and `/` after a pattern are dropped, empty ones skipped).
    pub fn parse(patterns: &[String]) -> Result<IgnoreWatch, String> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for raw in patterns {
            let p = raw.trim().trim_start_matches("./").trim_end_matches('/');
            if p.is_empty() {
                continue;
            }
            let glob = |text: &str| -> Result<Glob, String> {
                GlobBuilder::new(text)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .map_err(|e| {
                        format!("ignore_watch (--ignore-watch): {raw:?} is not a valid glob: {e}")
                    })
            };
            if p.contains('/') {
                // The path itself, and everything under it.
                paths.add(glob(p)?);
                paths.add(glob(&format!("{p}/**"))?);
            } else {
                names.add(glob(p)?);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build()
                .map_err(|e| format!("ignore_watch (--ignore-watch): {e}"))
        };
        Ok(IgnoreWatch {
            patterns: patterns.to_vec(),
            names: build(names)?,
            paths: build(paths)?,
        })
    }

    /// The patterns, as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// True when a pattern without `/` matches the file or directory name `name`.
    pub fn matches_name(&self, name: &Path) -> bool {
        self.names.is_match(name)
    }

    /// True when a pattern with `/` matches `path` (relative to the app's directory, or
    /// absolute when outside it).
    pub fn matches_path(&self, path: &Path) -> bool {
        self.paths.is_match(path)
    }
}

impl PartialEq for IgnoreWatch {
    fn eq(&self, other: &IgnoreWatch) -> bool {
        self.patterns == other.patterns
    }
}

impl Eq for IgnoreWatch {}

/// An app's file-watching options, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchOptions {
    /// `ignore_watch`.
    pub ignore: IgnoreWatch,
    /// `watch_delay`: quiet time after a change before the restart (at most [`MAX_MS`]).
    pub delay: Duration,
}

impl WatchOptions {
    /// The watching options of `spec`, if it watches anything.
    pub fn from_spec(spec: &AppSpec) -> Result<Option<WatchOptions>, String> {
        if spec.watch.is_empty() {
            return Ok(None);
        }
        let ignore = IgnoreWatch::parse(&spec.ignore_watch)?;
        let delay = millis(spec.watch_delay, "watch_delay (--watch-delay)")?;
        Ok(Some(WatchOptions { ignore, delay }))
    }
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
            HealthCheck::from_spec(&spec)
                .unwrap_err()
                .contains("alternatives")
        );
        let spec = AppSpec {
            health_check_cmd: Some("true".into()),
            health_check_max_fails: 0,
            ..AppSpec::default()
        };
        assert!(
            HealthCheck::from_spec(&spec)
                .unwrap_err()
                .contains("max_fails")
        );
        for (interval, timeout, key) in [
            (u64::MAX, 5000, "health_check_interval"),
            (30_000, MAX_MS + 1, "health_check_timeout"),
            (0, 5000, "health_check_interval"),
            (30_000, 0, "health_check_timeout"),
        ] {
            let spec = AppSpec {
                health_check_cmd: Some("true".into()),
                health_check_interval: interval,
                health_check_timeout: timeout,
                ..AppSpec::default()
            };
            let e = HealthCheck::from_spec(&spec).unwrap_err();
            assert!(e.contains(key), "{e}");
        }
        let spec = AppSpec {
            health_check_cmd: Some("curl -f localhost".into()),
            health_check_interval: 2000,
            health_check_timeout: 500,
            health_check_max_fails: 4,
            ..AppSpec::default()
        };
        assert_eq!(
            HealthCheck::from_spec(&spec),
            Ok(Some(HealthCheck {
                probe: Probe::Cmd("curl -f localhost".into()),
                interval: Duration::from_secs(2),
                timeout: Duration::from_millis(500),
                max_fails: 4,
            }))
        );
        assert_eq!(HealthCheck::from_spec(&AppSpec::default()), Ok(None));
    }

    #[test]
    fn schedules_are_read_in_the_given_zone() {
        let at = |s: &str| -> Timestamp { s.parse().unwrap() };
        let s = Schedule::parse("0 3 * * *", Some(":America/New_York")).unwrap();
        assert_eq!(s.zone_name, "America/New_York");
        assert_eq!(
            s.next_after(at("2026-01-10T12:00:00Z")),
            Some(at("2026-01-11T08:00:00Z"))
        );
        let e = Schedule::parse("* * * *", None).unwrap_err();
        assert!(
            e.contains("expected 5 fields") && e.contains("got 4"),
            "{e}"
        );
        let e = Schedule::parse("0 3 * * *", Some("Mars/Olympus")).unwrap_err();
        assert!(
            e.starts_with("cron_restart (--cron): the app's TZ \"Mars/Olympus\""),
            "{e}"
        );
    }

    #[test]
    fn ignore_patterns_split_into_names_and_paths() {
        let pats: Vec<String> = [
            "node_modules",
            "./dist/",
            "./client/img/",
            "src/**/*.tmp",
            " ",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        let ig = IgnoreWatch::parse(&pats).unwrap();
        assert_eq!(ig.patterns(), pats.as_slice());
        assert!(ig.matches_name(Path::new("node_modules")));
        assert!(!ig.matches_path(Path::new("node_modules")));
        assert!(ig.matches_name(Path::new("dist")));
        assert!(ig.matches_path(Path::new("client/img")));
        assert!(ig.matches_path(Path::new("client/img/a/b.png")));
        assert!(!ig.matches_path(Path::new("client/imgs")));
        assert!(!ig.matches_name(Path::new("img")));
        assert!(ig.matches_path(Path::new("src/a/x.tmp")));
        let e = IgnoreWatch::parse(&["a[".to_string()]).unwrap_err();
        assert!(e.contains("ignore_watch") && e.contains("a["), "{e}");

        let spec = AppSpec {
            watch: vec![".".into()],
            watch_delay: u64::MAX,
            ..AppSpec::default()
        };
        let e = WatchOptions::from_spec(&spec).unwrap_err();
        assert!(e.contains("--watch-delay") && e.contains("30 days"), "{e}");
        assert_eq!(WatchOptions::from_spec(&AppSpec::default()), Ok(None));
    }
}
