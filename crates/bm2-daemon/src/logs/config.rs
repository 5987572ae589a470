//! Daemon-wide log defaults, from the `[logs]` table of `$BM2_HOME/config.toml`.

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
