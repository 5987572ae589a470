//! The daemon's settings file, `$BM2_HOME/config.toml`: `[logs]` defaults and `[dashboard]`.

use std::path::Path;

use bm2_types::DashboardOptions;
use serde::Deserialize;

use crate::logs::{LogDefaults, config::parse_cron};

/// The settings of `$BM2_HOME/config.toml`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// Log defaults of every app (`[logs]`).
    pub logs: LogDefaults,
    /// The web dashboard and Prometheus endpoint (`[dashboard]`).
    pub dashboard: DashboardOptions,
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

/// Reads the daemon's settings from `path`; a missing file gives the built-in defaults.
pub fn load(path: &Path) -> Result<DaemonConfig, ConfigError> {
    let err = |message: String| ConfigError {
        path: path.display().to_string(),
        message,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DaemonConfig::default()),
        Err(e) => return Err(err(e.to_string())),
    };
    let file: DaemonConfig =
        toml::from_str(&text).map_err(|e| err(e.to_string().trim_end().to_string()))?;
    if let Some(expr) = &file.logs.rotate_interval {
        parse_cron(expr).map_err(|e| err(format!("logs.rotate_interval: {e}")))?;
    }
    Ok(file)
}

/// Whether the daemon was started with PM2's `PM2_KILL_USE_MESSAGE` set (to anything, as PM2
/// reads it): every app is then asked to stop with the `shutdown` message before any signal, as
/// `shutdown_with_message` asks for one app.
pub fn kill_use_message() -> bool {
    static SET: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SET.get_or_init(|| std::env::var_os("PM2_KILL_USE_MESSAGE").is_some_and(|v| !v.is_empty()))
}

/// Whether the processes of `spec` are asked to stop with PM2's `shutdown` message.
pub fn shutdown_by_message(spec: &bm2_types::AppSpec) -> bool {
    spec.shutdown_with_message || kill_use_message()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        assert_eq!(load(&path).unwrap(), DaemonConfig::default());
        std::fs::write(&path, "[logs]\nmax_size = \"1M\"\nretain = 2\ncompress = true\nrotate_interval = \"0 0 * * *\"\n").unwrap();
        let d = load(&path).unwrap().logs;
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
    fn dashboard_table_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[dashboard]\nenabled = true\nport = 8080\n").unwrap();
        let d = load(&path).unwrap().dashboard;
        assert!(d.enabled);
        assert_eq!(
            (d.port, d.metrics_port, d.host.as_str()),
            (8080, 9616, "127.0.0.1")
        );
        assert_eq!(d.max_sessions, 64);
        std::fs::write(&path, "[dashboard]\nmax_sessions = 5\n").unwrap();
        assert_eq!(load(&path).unwrap().dashboard.max_sessions, 5);
        std::fs::write(&path, "[dashboard]\nprot = 8080\n").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("prot") && e.contains("line 2"), "{e}");
    }
}
