//! The home directory of a daemon and every path inside it: bm2's own (`BM2_HOME`, default
//! `~/.bm2`), or PM2's (`PM2_HOME`, default `~/.pm2`, with PM2's file names) when the binary is
//! invoked as `pm2`.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::ProcId;

/// Whose names the files of a home follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// bm2's: `BM2_HOME`, `daemon.pid`, `dump.json`, `logs/<name>-out.log`.
    Bm2,
    /// PM2's: `PM2_HOME`, `pm2.pid`, `pm2.log`, `dump.pm2` (and `.bak`),
    /// `logs/<name>-out.log`, and PM2's variables that move single files
    /// (`PM2_PID_FILE_PATH`, ...).
    Pm2,
}

impl Layout {
    /// The layout of a program invoked as `argv0`: PM2's when its file name is `pm2`.
    pub fn of_program(argv0: &OsStr) -> Layout {
        if Path::new(argv0).file_name() == Some(OsStr::new("pm2")) {
            Layout::Pm2
        } else {
            Layout::Bm2
        }
    }

    /// The program name that selects this layout (`bm2` or `pm2`).
    pub fn program(self) -> &'static str {
        match self {
            Layout::Bm2 => "bm2",
            Layout::Pm2 => "pm2",
        }
    }

    /// The variable naming the home directory.
    pub fn home_var(self) -> &'static str {
        match self {
            Layout::Bm2 => "BM2_HOME",
            Layout::Pm2 => "PM2_HOME",
        }
    }

    fn default_dir(self) -> &'static str {
        match self {
            Layout::Bm2 => ".bm2",
            Layout::Pm2 => ".pm2",
        }
    }
}

/// The files PM2 lets a variable move out of `PM2_HOME` (PM2's `paths.js`): variable, and the
/// file it names.
const PM2_FILE_VARS: [(&str, PmFile); 6] = [
    ("PM2_PID_FILE_PATH", PmFile::Pid),
    ("PM2_LOG_FILE_PATH", PmFile::DaemonLog),
    ("PM2_DUMP_FILE_PATH", PmFile::Dump),
    ("PM2_DUMP_BACKUP_FILE_PATH", PmFile::DumpBackup),
    ("PM2_DEFAULT_LOG_PATH", PmFile::Logs),
    ("PM2_DEFAULT_PID_PATH", PmFile::Pids),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PmFile {
    Pid,
    DaemonLog,
    Dump,
    DumpBackup,
    Logs,
    Pids,
}

/// The home directory of one daemon. The only place where paths are built.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
    layout: Layout,
    /// PM2 files moved by a variable, with the variable.
    moved: Vec<(&'static str, PathBuf)>,
}

impl Home {
    /// The home named by `BM2_HOME`, else `~/.bm2`.
    pub fn from_env() -> io::Result<Home> {
        Home::from_env_as(Layout::Bm2)
    }

    /// The home of `layout` named by its variable (`BM2_HOME` or `PM2_HOME`), else `~/.bm2` or
    /// `~/.pm2`; for PM2's, with the files PM2's variables move (`PM2_PID_FILE_PATH`, ...).
    pub fn from_env_as(layout: Layout) -> io::Result<Home> {
        let root = if let Some(dir) = std::env::var_os(layout.home_var()).filter(|v| !v.is_empty())
        {
            PathBuf::from(dir)
        } else {
            let home = std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!(
                            "neither {} nor HOME is set: cannot find the {} home directory",
                            layout.home_var(),
                            layout.program()
                        ),
                    )
                })?;
            PathBuf::from(home).join(layout.default_dir())
        };
        Ok(match layout {
            Layout::Bm2 => Home::at(root),
            Layout::Pm2 => {
                let mut home = Home::pm2_at(root);
                for (var, _) in PM2_FILE_VARS {
                    if let Some(p) = std::env::var_os(var).filter(|v| !v.is_empty()) {
                        home.moved.push((var, absolute(PathBuf::from(p))));
                    }
                }
                home
            }
        })
    }

    /// A bm2 home at `root` (made absolute against the current directory).
    pub fn at(root: PathBuf) -> Home {
        Home {
            root: absolute(root),
            layout: Layout::Bm2,
            moved: Vec::new(),
        }
    }

    /// A home at `root` with PM2's file names.
    pub fn pm2_at(root: PathBuf) -> Home {
        Home {
            layout: Layout::Pm2,
            ..Home::at(root)
        }
    }

    /// Whose names the files follow.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The variables that give a daemon started with `layout().program()` as its name this
    /// same home: the home variable, and the PM2 files moved by a variable.
    pub fn daemon_env(&self) -> Vec<(&'static str, PathBuf)> {
        let mut vars = vec![(self.layout.home_var(), self.root.clone())];
        vars.extend(self.moved.iter().cloned());
        vars
    }

    fn file(&self, which: PmFile, pm2: &str, bm2: &str) -> PathBuf {
        match self.layout {
            Layout::Bm2 => self.root.join(bm2),
            Layout::Pm2 => PM2_FILE_VARS
                .iter()
                .find(|(_, f)| *f == which)
                .and_then(|(var, _)| self.moved.iter().find(|(v, _)| v == var))
                .map_or_else(|| self.root.join(pm2), |(_, p)| p.clone()),
        }
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

    /// Daemon pid file (`pm2.pid` or `PM2_PID_FILE_PATH` in PM2's layout).
    pub fn pid_file(&self) -> PathBuf {
        self.file(PmFile::Pid, "pm2.pid", "daemon.pid")
    }

    /// Lock held by the running daemon for its whole life.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("daemon.lock")
    }

    /// The daemon's own log (`pm2.log` or `PM2_LOG_FILE_PATH` in PM2's layout).
    pub fn daemon_log(&self) -> PathBuf {
        self.file(PmFile::DaemonLog, "pm2.log", "daemon.log")
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

    /// Dump written by `save` and read by `resurrect` (`dump.pm2` in PM2's layout).
    pub fn dump_file(&self) -> PathBuf {
        self.file(PmFile::Dump, "dump.pm2", "dump.json")
    }

    /// The previous dump, kept by `save` before it writes a new one (PM2's `dump.pm2.bak`); none
    /// in bm2's layout, whose dump is replaced atomically.
    pub fn dump_backup_file(&self) -> Option<PathBuf> {
        match self.layout {
            Layout::Bm2 => None,
            Layout::Pm2 => Some(self.file(PmFile::DumpBackup, "dump.pm2.bak", "")),
        }
    }

    /// Directory of app log files.
    pub fn logs_dir(&self) -> PathBuf {
        self.file(PmFile::Logs, "logs", "logs")
    }

    /// Directory of app pid files.
    pub fn pids_dir(&self) -> PathBuf {
        self.file(PmFile::Pids, "pids", "pids")
    }

    /// Pid file of an instance (`<name>-<id>.pid`).
    pub fn app_pid_file(&self, name: &str, id: ProcId) -> PathBuf {
        self.pids_dir()
            .join(format!("{}-{id}.pid", file_safe(name)))
    }
}

fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        path
    } else {
        std::env::current_dir().map_or(path.clone(), |cwd| cwd.join(&path))
    }
}

/// An app name as PM2 puts it in file names (`name.replace(/[^a-zA-Z0-9\\.\\-]/g, '-')`).
pub fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '\\') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_spec_naming() {
        let home = Home::at(PathBuf::from("/h"));
        assert_eq!(home.socket(), PathBuf::from("/h/daemon.sock"));
        assert_eq!(home.pid_file(), PathBuf::from("/h/daemon.pid"));
        assert_eq!(home.dump_file(), PathBuf::from("/h/dump.json"));
        assert_eq!(home.dump_backup_file(), None);
        assert_eq!(
            home.app_pid_file("api", 2),
            PathBuf::from("/h/pids/api-2.pid")
        );
    }

    #[test]
    fn pm2_layout_uses_pm2_names() {
        let home = Home::pm2_at(PathBuf::from("/p"));
        assert_eq!(home.pid_file(), PathBuf::from("/p/pm2.pid"));
        assert_eq!(home.daemon_log(), PathBuf::from("/p/pm2.log"));
        assert_eq!(home.dump_file(), PathBuf::from("/p/dump.pm2"));
        assert_eq!(
            home.dump_backup_file(),
            Some(PathBuf::from("/p/dump.pm2.bak"))
        );
        assert_eq!(
            home.app_pid_file("a b", 7),
            PathBuf::from("/p/pids/a-b-7.pid")
        );
        assert_eq!(home.daemon_env(), vec![("PM2_HOME", PathBuf::from("/p"))]);
    }

    #[test]
    fn program_name_selects_the_layout() {
        assert_eq!(Layout::of_program(OsStr::new("/usr/bin/pm2")), Layout::Pm2);
        assert_eq!(Layout::of_program(OsStr::new("pm2")), Layout::Pm2);
        assert_eq!(Layout::of_program(OsStr::new("/usr/bin/bm2")), Layout::Bm2);
        assert_eq!(Layout::of_program(OsStr::new("pm2x")), Layout::Bm2);
    }
}
