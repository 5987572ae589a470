//! Daemon-wide log defaults, from the `[logs]` table of `$BM2_HOME/config.toml`.

use std::path::Path;

use bm2_types::{AppSpec, ByteSize};
use serde::Deserialize;

use super::file::RotationPolicy;

/// Log settings that apps inherit unless they set their own.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogDefaults {
    /// Rotate files before they grow past this size.
    pub max_size: ByteSize,
    /// Rotated files to keep.
    pub retain: u32,
    /// Gzip rotated files.
    pub compress: bool,
    /// Cron schedule of time-based rotation.
    pub rotate_interval: Option<String>,
}

impl Default for LogDefaults {
    fn default() -> Self {
        LogDefaults {
            max_size: ByteSize(10 << 20),
            retain: 5,
            compress: false,
            rotate_interval: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ConfigFile {
    logs: LogDefaults,
}

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// The file.
    pub path: String,
    /// What is wrong, with the key and line.
    pub message: String,
}

/// Reads the log defaults of `path`; a missing file gives the built-in defaults.
pub fn load(path: &Path) -> Result<LogDefaults, ConfigError> {
    let err = |message: String| ConfigError {
        path: path.display().to_string(),
        message,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LogDefaults::default()),
        Err(e) => return Err(err(e.to_string())),
    };
    let file: ConfigFile =
        toml::from_str(&text).map_err(|e| err(e.to_string().trim_end().to_string()))?;
    if let Some(expr) = &file.logs.rotate_interval {
        parse_cron(expr).map_err(|e| err(format!("logs.rotate_interval: {e}")))?;
    }
    Ok(file.logs)
}

/// Parses a cron expression (5 fields, or 6 with seconds).
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    expr.parse::<croner::Cron>()
        .map_err(|e| format!("invalid cron expression {expr:?}: {e}"))
}

/// The rotation policy of an app: its own options over the daemon's defaults.
pub fn policy_for(spec: &AppSpec, defaults: &LogDefaults) -> RotationPolicy {
    let interval = spec
        .log_rotate_interval
        .as_deref()
        .or(defaults.rotate_interval.as_deref())
        .and_then(|e| parse_cron(e).ok());
    RotationPolicy {
        max_size: spec.log_max_size.unwrap_or(defaults.max_size).0,
        retain: spec.log_retain.unwrap_or(defaults.retain),
        compress: spec.log_compress.unwrap_or(defaults.compress),
        interval,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        assert_eq!(load(&path).unwrap(), LogDefaults::default());
        std::fs::write(&path, "[logs]\nmax_size = \"1M\"\nretain = 2\ncompress = true\nrotate_interval = \"0 0 * * *\"\n").unwrap();
        let d = load(&path).unwrap();
        assert_eq!(d.max_size.0, 1 << 20);
        assert_eq!(d.retain, 2);
        assert!(d.compress);
    }

    #[test]
    fn bad_config_names_the_file_key_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[logs]\nretain = \"many\"\n").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(
            e.contains("config.toml") && e.contains("retain") && e.contains("line 2"),
            "{e}"
        );
        std::fs::write(&path, "[logs]\nrotate_interval = \"every day\"\n").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("rotate_interval"), "{e}");
    }

    #[test]
    fn app_options_win_over_defaults() {
        let spec = AppSpec {
            log_retain: Some(9),
            ..AppSpec::default()
        };
        let p = policy_for(&spec, &LogDefaults::default());
        assert_eq!((p.max_size, p.retain, p.compress), (10 << 20, 9, false));
    }
}

#[cfg(test)]
mod cron_tests {
    use super::parse_cron;

    #[test]
    fn five_and_six_field_expressions_parse() {
        assert!(parse_cron("0 0 * * *").is_ok());
        assert!(parse_cron("*/5 * * * * *").is_ok());
        assert!(parse_cron("not cron").is_err());
    }
}
