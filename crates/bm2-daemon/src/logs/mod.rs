//! App output: pipes are read into whole lines, formatted, written to files that rotate
//! themselves, and broadcast to `bm2 logs` followers.

pub mod cleanup;
pub mod config;
pub mod daemon_log;
pub mod file;
pub mod format;
pub mod history;
mod pump;
pub mod recover;
pub mod rotate;
pub mod tail;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use bm2_config::resolve::lexical;
use bm2_types::{AppSpec, Home, LogEvent, ProcId};
use tokio::sync::broadcast;

pub use config::LogDefaults;
pub use file::{LogFile, RotationPolicy};
pub use format::{LineFormat, Stream};
pub use pump::{FrozenPump, Pumps};

/// A log file shared by every instance writing to it (`merge_logs`).
pub type SharedFile = Arc<Mutex<LogFile>>;

/// Live lines kept for followers that fall behind, before they are told lines were skipped.
const FOLLOW_BUFFER: usize = 8192;

/// Locks a mutex, ignoring poisoning (a panicking writer leaves the file usable).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The daemon's open log files and the feed of live lines.
#[derive(Debug)]
pub struct LogHub {
    defaults: LogDefaults,
    files: Mutex<HashMap<PathBuf, Weak<Mutex<LogFile>>>>,
    events: broadcast::Sender<Arc<LogEvent>>,
    /// The app output pipes being read.
    pub pumps: Arc<Pumps>,
}

impl LogHub {
    /// A hub whose apps default to `defaults`.
    pub fn new(defaults: LogDefaults) -> LogHub {
        LogHub {
            defaults,
            files: Mutex::default(),
            events: broadcast::channel(FOLLOW_BUFFER).0,
            pumps: Arc::default(),
        }
    }

    /// The daemon-wide defaults.
    pub fn defaults(&self) -> &LogDefaults {
        &self.defaults
    }

    /// The open file at `path`, opening it when no one has it open.
    pub fn file(&self, path: &Path, policy: RotationPolicy) -> SharedFile {
        let mut files = lock(&self.files);
        if let Some(f) = files.get(path).and_then(Weak::upgrade) {
            return f;
        }
        let interval = policy.interval.clone();
        let f = Arc::new(Mutex::new(LogFile::open(path.to_path_buf(), policy)));
        if let Some(cron) = interval {
            tokio::spawn(rotate_on_schedule(Arc::downgrade(&f), cron));
        }
        files.retain(|_, w| w.strong_count() > 0);
        files.insert(path.to_path_buf(), Arc::downgrade(&f));
        f
    }

    /// Reopens every open log file (after an external logrotate moved them).
    pub fn reopen_all(&self) -> usize {
        let files: Vec<SharedFile> = lock(&self.files)
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for f in &files {
            lock(f).reopen();
        }
        files.len()
    }

    /// A feed of the lines written from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogEvent>> {
        self.events.subscribe()
    }

    fn publish(&self, event: LogEvent) {
        let _ = self.events.send(Arc::new(event));
    }

    fn has_followers(&self) -> bool {
        self.events.receiver_count() > 0
    }
}

async fn rotate_on_schedule(file: Weak<Mutex<LogFile>>, cron: croner::Cron) {
    loop {
        let now = chrono::Local::now();
        let Ok(next) = cron.find_next_occurrence(&now, false) else {
            return;
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        let Some(file) = file.upgrade() else { return };
        let mut file = lock(&file);
        if file.size() > 0 {
            file.rotate();
        }
    }
}

/// Where one instance's output goes, and how it is formatted.
#[derive(Debug)]
pub struct InstanceLogs {
    id: ProcId,
    app: String,
    name: String,
    format: LineFormat,
    out: Option<SharedFile>,
    err: Option<SharedFile>,
    combined: Option<SharedFile>,
    paths: LogPaths,
    hub: Arc<LogHub>,
}

/// The paths of an instance's log files (`None` when a stream is not written).
#[derive(Debug, Clone, Default)]
pub struct LogPaths {
    /// Stdout log.
    pub out: Option<PathBuf>,
    /// Stderr log.
    pub err: Option<PathBuf>,
    /// Combined log.
    pub combined: Option<PathBuf>,
}

impl LogPaths {
    /// The paths for instance `id` (of an app started with `count` instances) of `spec`, named
    /// as PM2 names them: `<name>-out.log`, `<name>-error.log` (and `<name>.log` for `-l`
    /// without a file) in `$BM2_HOME/logs` for a single instance or merged logs, with the
    /// instance id before `.log` for several (`<name>-out-<id>.log`). The name is sanitised as
    /// PM2 does (anything but letters, digits, `.`, `-` and `\\` becomes `-`). A file given in
    /// the spec is relative to the app's directory, normalised (`a/../b` is `b`), and also gets
    /// the id for several instances.
    pub fn for_instance(home: &Home, spec: &AppSpec, id: ProcId, count: u32) -> LogPaths {
        if spec.disable_logs {
            return LogPaths::default();
        }
        // PM2 (`lib/Common.js`, `lib/God.js`): a fork-mode app without instances shares one set
        // of files; every other app's instances get their id in the name, unless merged.
        let single = count == 1 && spec.exec_mode == bm2_types::ExecMode::Fork;
        let per_instance = !single && !spec.merge_logs;
        let dir = home.logs_dir();
        let name = bm2_types::home::file_safe(&spec.name);
        let default = |stem: String| -> PathBuf {
            let file = dir.join(format!("{stem}.log"));
            if per_instance {
                with_id(&file, id)
            } else {
                file
            }
        };
        let custom = |given: &Option<String>, fallback: Option<PathBuf>| -> Option<PathBuf> {
            match given.as_deref() {
                None | Some("") => fallback,
                Some("/dev/null" | "NULL" | "null") => None,
                Some(p) => {
                    let p = lexical(&spec.cwd.as_deref().unwrap_or(Path::new("/")).join(p));
                    Some(if per_instance { with_id(&p, id) } else { p })
                }
            }
        };
        LogPaths {
            out: custom(&spec.out_file, Some(default(format!("{name}-out")))),
            err: custom(&spec.error_file, Some(default(format!("{name}-error")))),
            combined: match &spec.log_file {
                None => None,
                given => custom(given, Some(default(name.clone()))),
            },
        }
    }
}

/// `out.log` becomes `out-<id>.log`, as PM2 names the files of several instances (and every
/// pid file).
pub(crate) fn with_id(path: &Path, id: ProcId) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{id}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{id}"),
    };
    path.with_file_name(name)
}

thread_local! {
    static FORMATTED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl InstanceLogs {
    /// Opens (or shares) the files of an instance.
    pub fn open(
        hub: &Arc<LogHub>,
        spec: &AppSpec,
        paths: LogPaths,
        id: ProcId,
        name: String,
    ) -> InstanceLogs {
        let policy = config::policy_for(spec, hub.defaults());
        let open = |p: &Option<PathBuf>| p.as_ref().map(|p| hub.file(p, policy.clone()));
        InstanceLogs {
            id,
            app: spec.name.clone(),
            name,
            format: LineFormat::new(
                spec.time,
                spec.log_date_format.as_deref(),
                spec.log_type.as_deref(),
                &spec.name,
                id,
            ),
            out: open(&paths.out),
            err: open(&paths.err),
            combined: open(&paths.combined),
            paths,
            hub: hub.clone(),
        }
    }

    /// Where the instance's output goes.
    pub fn paths(&self) -> &LogPaths {
        &self.paths
    }

    /// Writes whole lines printed on `stream`.
    pub fn write(&self, stream: Stream, lines: &[u8]) {
        let target = match stream {
            Stream::Out => &self.out,
            Stream::Err => &self.err,
        };
        if self.format.is_raw() {
            self.deliver(stream, target.as_ref(), lines);
            return;
        }
        FORMATTED.with_borrow_mut(|buf| {
            buf.clear();
            self.format.format(stream, lines, chrono::Local::now(), buf);
            self.deliver(stream, target.as_ref(), buf);
            if buf.capacity() > 4 << 20 {
                *buf = Vec::new();
            }
        });
    }

    fn deliver(&self, stream: Stream, target: Option<&SharedFile>, bytes: &[u8]) {
        if let Some(f) = target {
            let mut f = lock(f);
            f.write_lines(bytes);
            self.publish(stream, bytes);
        } else {
            self.publish(stream, bytes);
        }
        if let Some(c) = &self.combined {
            lock(c).write_lines(bytes);
        }
    }

    fn publish(&self, stream: Stream, bytes: &[u8]) {
        if !self.hub.has_followers() {
            return;
        }
        // `bytes` holds whole lines: every piece before the final newline is a line (its
        // `\r\n` ending is taken off, as when the line is read back from the file).
        let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        for line in body.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            self.hub
                .publish(self.event(stream, String::from_utf8_lossy(line).into_owned(), false));
        }
    }

    /// An event of this instance.
    pub fn event(&self, stream: Stream, line: String, history: bool) -> LogEvent {
        LogEvent {
            id: self.id,
            name: self.name.clone(),
            app: self.app.clone(),
            stream: stream.as_str().to_string(),
            line,
            history,
            skipped: None,
        }
    }

    /// Empties the instance's log files.
    pub fn flush(&self) {
        for f in [&self.out, &self.err, &self.combined].into_iter().flatten() {
            lock(f).truncate();
        }
    }

    /// Bytes that could not be written to the instance's files.
    pub fn dropped(&self) -> u64 {
        [&self.out, &self.err, &self.combined]
            .into_iter()
            .flatten()
            .map(|f| lock(f).dropped())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_pm2_naming() {
        let home = Home::at(PathBuf::from("/h"));
        let mut spec = AppSpec {
            name: "api".into(),
            cwd: Some(PathBuf::from("/srv")),
            ..AppSpec::default()
        };
        let p = LogPaths::for_instance(&home, &spec, 3, 1);
        assert_eq!(p.out, Some(PathBuf::from("/h/logs/api-out.log")));
        assert_eq!(p.err, Some(PathBuf::from("/h/logs/api-error.log")));
        assert_eq!(p.combined, None);
        spec.log_file = Some(String::new());
        let p = LogPaths::for_instance(&home, &spec, 3, 4);
        assert_eq!(p.out, Some(PathBuf::from("/h/logs/api-out-3.log")));
        assert_eq!(p.err, Some(PathBuf::from("/h/logs/api-error-3.log")));
        assert_eq!(p.combined, Some(PathBuf::from("/h/logs/api-3.log")));
        spec.merge_logs = true;
        let p = LogPaths::for_instance(&home, &spec, 3, 4);
        assert_eq!(p.out, Some(PathBuf::from("/h/logs/api-out.log")));
        assert_eq!(p.combined, Some(PathBuf::from("/h/logs/api.log")));
        spec.merge_logs = false;
        spec.out_file = Some("./logs/../logs/out.log".into());
        spec.error_file = Some("/dev/null".into());
        let p = LogPaths::for_instance(&home, &spec, 2, 4);
        assert_eq!(p.out, Some(PathBuf::from("/srv/logs/out-2.log")));
        assert_eq!(p.err, None);
        spec.disable_logs = true;
        let p = LogPaths::for_instance(&home, &spec, 2, 4);
        assert!(p.out.is_none() && p.err.is_none() && p.combined.is_none());
    }

    #[test]
    fn names_are_sanitised_as_pm2_does() {
        assert_eq!(
            bm2_types::home::file_safe("my_app v2/../x"),
            "my-app-v2-..-x"
        );
        assert_eq!(bm2_types::home::file_safe("api.v1-x"), "api.v1-x");
        assert_eq!(bm2_types::home::file_safe("café"), "caf-");
        let home = Home::at(PathBuf::from("/h"));
        let spec = AppSpec {
            name: "../../etc/evil".into(),
            ..AppSpec::default()
        };
        let p = LogPaths::for_instance(&home, &spec, 0, 1);
        assert_eq!(p.out, Some(PathBuf::from("/h/logs/..-..-etc-evil-out.log")));
    }
}
