//! The bm2 home directory (`BM2_HOME`, default `~/.bm2`) and every path inside it.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::ProcId;

/// The home directory of one daemon. The only place where paths are built.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// The home named by `BM2_HOME`, else `~/.bm2`.
    pub fn from_env() -> io::Result<Home> {
        if let Some(dir) = std::env::var_os("BM2_HOME").filter(|v| !v.is_empty()) {
            return Ok(Home::at(PathBuf::from(dir)));
        }
        let home = std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "neither BM2_HOME nor HOME is set: cannot find the bm2 home directory",
                )
            })?;
        Ok(Home::at(PathBuf::from(home).join(".bm2")))
    }

    /// A home at `root` (made absolute against the current directory).
    pub fn at(root: PathBuf) -> Home {
        let root = if root.is_absolute() {
            root
        } else {
            std::env::current_dir().map_or(root.clone(), |cwd| cwd.join(&root))
        };
        Home { root }
    }

    /// Creates the directory tree, owner-only.
    pub fn create(&self) -> io::Result<()> {
        for dir in [&self.root, &self.logs_dir(), &self.pids_dir()] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
    }

    /// The home directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Unix socket of the daemon API.
    pub fn socket(&self) -> PathBuf {
        self.root.join("daemon.sock")
    }

    /// Daemon pid file.
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("daemon.pid")
    }

    /// Lock held by the running daemon for its whole life.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("daemon.lock")
    }

    /// The daemon's own log.
    pub fn daemon_log(&self) -> PathBuf {
        self.root.join("daemon.log")
    }

    /// Variables set per app with `bm2 env set`.
    pub fn env_store_file(&self) -> PathBuf {
        self.root.join("env-registry.json")
    }

    /// Daemon-wide settings (`[logs]` defaults, `[dashboard]`).
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// The web dashboard's access token (mode 0600).
    pub fn dashboard_token(&self) -> PathBuf {
        self.root.join("dashboard.token")
    }

    /// Live state of the process list, rewritten on every change.
    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }

    /// Dump written by `save` and read by `resurrect`.
    pub fn dump_file(&self) -> PathBuf {
        self.root.join("dump.json")
    }

    /// Directory of app log files.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Directory of app pid files.
    pub fn pids_dir(&self) -> PathBuf {
        self.root.join("pids")
    }

    /// Default stdout log of an instance.
    pub fn out_log(&self, name: &str, id: ProcId) -> PathBuf {
        self.logs_dir()
            .join(format!("{}-{id}-out.log", file_safe(name)))
    }

    /// Default stderr log of an instance.
    pub fn err_log(&self, name: &str, id: ProcId) -> PathBuf {
        self.logs_dir()
            .join(format!("{}-{id}-error.log", file_safe(name)))
    }

    /// Pid file of an instance.
    pub fn app_pid_file(&self, name: &str, id: ProcId) -> PathBuf {
        self.pids_dir()
            .join(format!("{}-{id}.pid", file_safe(name)))
    }
}

/// An app name made safe to use in a file name.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_spec_naming() {
        let home = Home::at(PathBuf::from("/h"));
        assert_eq!(
            home.out_log("api", 3),
            PathBuf::from("/h/logs/api-3-out.log")
        );
        assert_eq!(
            home.err_log("a/b", 0),
            PathBuf::from("/h/logs/a_b-0-error.log")
        );
        assert_eq!(home.socket(), PathBuf::from("/h/daemon.sock"));
    }
}
