//! The state file (rewritten on every change) and the dump file (`save`/`resurrect`):
//! one versioned format, written atomically (temp file, fsync, rename).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bm2_types::{AppSpec, ProcId};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Version written by this bm2.
pub const STATE_VERSION: u32 = 1;

/// The process list as stored on disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    /// Format version.
    pub version: u32,
    /// Next id to give out.
    #[serde(default)]
    pub next_id: ProcId,
    /// Every managed instance.
    #[serde(default)]
    pub instances: Vec<SavedInstance>,
}

/// One instance as stored on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedInstance {
    /// Its id.
    pub id: ProcId,
    /// Its index within the app.
    #[serde(default)]
    pub index: u32,
    /// The app's instance count.
    #[serde(default = "one")]
    pub count: u32,
    /// The app's options (shared with the running instance, not copied, when the state is taken).
    pub spec: Arc<AppSpec>,
    /// The environment its processes receive (without bm2's own variables); shared likewise.
    #[serde(default)]
    pub env: Arc<BTreeMap<String, String>>,
    /// Whether it should be running.
    #[serde(default)]
    pub running: bool,
    /// Main pid of the process when this was written.
    #[serde(default)]
    pub pid: Option<u32>,
    /// Start time of that pid, in clock ticks after boot.
    #[serde(default)]
    pub pid_start_time: Option<u64>,
    /// Restart count.
    #[serde(default)]
    pub restarts: u32,
    /// When it was registered, ms since the epoch.
    #[serde(default)]
    pub created_at_ms: u64,
    /// Restarts by reason.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub restart_reasons: BTreeMap<String, u64>,
    /// Why file watching is off although `watch` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_off: Option<String>,
    /// Stopped on request (or never started): cron and watch leave it stopped. Files written
    /// before this field existed read as held.
    #[serde(default = "yes")]
    pub held: bool,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

/// A state or dump file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The contents are not a bm2 state file.
    #[error("{path}: not a valid bm2 state file: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The error.
        source: serde_json::Error,
    },
    /// Written by a newer bm2.
    #[error(
        "{path}: written by a newer bm2 (format {found}, this bm2 reads up to {STATE_VERSION})"
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
}

/// Reads a state or dump file; a missing file is an empty list.
pub fn load(path: &Path) -> Result<StateFile, PersistError> {
    let text = match fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(StateFile {
                version: STATE_VERSION,
                ..StateFile::default()
            });
        }
        Err(source) => {
            return Err(PersistError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let state: StateFile = serde_json::from_slice(&text).map_err(|source| PersistError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    if state.version > STATE_VERSION {
        return Err(PersistError::TooNew {
            path: path.to_path_buf(),
            found: state.version,
        });
    }
    Ok(state)
}

/// Writes `state` to `path` atomically.
pub fn store(path: &Path, state: &StateFile) -> Result<(), PersistError> {
    let io_err = |source| PersistError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| io_err(io::Error::other(e)))?;
    write_atomic(path, &bytes).map_err(io_err)
}

/// Writes `state` to `path` atomically, after copying the file there to `backup` (PM2's
/// `dump.pm2.bak`) when one is wanted; a backup that cannot be written is an error, and the
/// dump is then left as it was.
pub fn store_with_backup(
    path: &Path,
    backup: Option<PathBuf>,
    state: &StateFile,
) -> Result<(), PersistError> {
    if let Some(backup) = backup {
        match fs::read(path) {
            Ok(previous) => {
                write_atomic(&backup, &previous).map_err(|source| PersistError::Io {
                    path: backup.clone(),
                    source,
                })?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(PersistError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
    store(path, state)
}

/// Replaces the file at `path` with `bytes` atomically: temp file, fsync, rename, fsync of the
/// directory. Readers see the old or the new contents, never a mix, even after a crash.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let (tmp, mut file) = tempfile_in(dir, path)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        // A full disk must not also be left a half-written temporary file.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn tempfile_in(dir: &Path, path: &Path) -> io::Result<(PathBuf, fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    // Unique per write, so two writers of one file (or of two files of the same name) never
    // share a temporary file.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(
        "{TMP_PREFIX}{name}.{}.{seq}.tmp",
        std::process::id()
    ));
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    Ok((tmp, file))
}

/// Temporary files of [`write_atomic`] start with this.
const TMP_PREFIX: &str = ".";

/// Removes the temporary files that writers of `path` left when they were killed, or failed
/// (disk full), before renaming them into place. Call it only while no writer of `path` runs.
pub fn remove_stale_temps(path: &Path) -> usize {
    let dir = path.parent().unwrap_or(Path::new("."));
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return 0;
    };
    let prefix = format!("{TMP_PREFIX}{name}.");
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .is_some_and(|rest| rest.rsplit_once('.').is_some_and(|(_, ext)| ext == "tmp"))
        })
        .filter(|e| fs::remove_file(e.path()).is_ok())
        .count()
}

/// Coalescing writer of the state file: changes are announced with [`Persister::touch`], and
/// [`Persister::flush`] waits until a write that includes them has reached the disk. It is the
/// only writer of the file: the last write at shutdown goes through [`Persister::finish`], after
/// which announced changes are no longer written.
#[derive(Debug)]
pub struct Persister {
    requested: watch::Sender<u64>,
    /// The generation last handled, and why its write failed, if it did.
    written: watch::Sender<(u64, Option<Arc<str>>)>,
    /// Held while a write is under way.
    writing: tokio::sync::Mutex<()>,
    /// Set by [`Persister::finish`]: nothing but the final state is written any more.
    finished: std::sync::atomic::AtomicBool,
}

impl Default for Persister {
    fn default() -> Self {
        Persister {
            requested: watch::channel(0).0,
            written: watch::channel((0, None)).0,
            writing: tokio::sync::Mutex::new(()),
            finished: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl Persister {
    /// Announces a change.
    pub fn touch(&self) {
        self.requested.send_modify(|g| *g += 1);
    }

    /// Announces a change and waits until it is on disk; the error says why it is not.
    pub async fn flush(&self) -> Result<(), Arc<str>> {
        self.touch();
        let target = *self.requested.borrow();
        let mut written = self.written.subscribe();
        match written.wait_for(|(w, _)| *w >= target).await {
            Ok(w) => w.1.clone().map_or(Ok(()), Err),
            Err(_) => Err("the state file writer has stopped".into()),
        }
    }

    /// Writes `state` as the last state of this daemon: waits for a write under way, then
    /// writes `state`, and from then on ignores announced changes (stopping the apps at
    /// shutdown must not record them as stopped).
    pub async fn finish(&self, path: PathBuf, state: StateFile) -> Result<(), PersistError> {
        self.finished
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _writing = self.writing.lock().await;
        let shown = path.clone();
        tokio::task::spawn_blocking(move || store(&path, &state))
            .await
            .unwrap_or_else(|e| {
                Err(PersistError::Io {
                    path: shown,
                    source: io::Error::other(e),
                })
            })
    }

    /// Runs the writer: whenever changes are pending, writes the snapshot `build` returns.
    pub async fn run(&self, path: PathBuf, build: impl Fn() -> StateFile) {
        let mut requested = self.requested.subscribe();
        loop {
            let target = *requested.borrow_and_update();
            if target > self.written.borrow().0 {
                let failure = self.write_once(&path, &build).await;
                self.written.send_replace((target, failure));
                continue;
            }
            if requested.changed().await.is_err() {
                return;
            }
        }
    }

    async fn write_once(&self, path: &Path, build: &impl Fn() -> StateFile) -> Option<Arc<str>> {
        let _writing = self.writing.lock().await;
        if self.finished.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        // The write (with its fsync) runs off the daemon's thread, which stays free to
        // restart processes and answer commands.
        let (state, path) = (build(), path.to_path_buf());
        let result = match tokio::task::spawn_blocking(move || store(&path, &state)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("state file writer failed: {e}")),
        };
        result.err().map(|e| {
            tracing::error!(error = %e, "cannot write state file");
            Arc::from(format!("the process list was not saved: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a directory: the rename fails after the temporary file was written.
        let path = dir.path().join("state.json");
        fs::create_dir(&path).unwrap();
        assert!(write_atomic(&path, b"{}").is_err());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn store_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(load(&path).unwrap().instances.len(), 0);
        let state = StateFile {
            version: STATE_VERSION,
            next_id: 3,
            instances: vec![SavedInstance {
                id: 2,
                index: 0,
                count: 1,
                spec: Arc::new(AppSpec {
                    name: "api".into(),
                    script: "/srv/api.js".into(),
                    ..AppSpec::default()
                }),
                env: Arc::default(),
                running: true,
                pid: Some(42),
                pid_start_time: Some(7),
                restarts: 1,
                created_at_ms: 5,
                restart_reasons: BTreeMap::from([("watch".to_string(), 1)]),
                watch_off: Some("turned off".into()),
                held: false,
            }],
        };
        store(&path, &state).unwrap();
        assert_eq!(load(&path).unwrap(), state);
    }

    #[test]
    fn instances_written_before_triggers_existed_are_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(
            &path,
            r#"{"version": 1, "instances": [{"id": 0, "spec": {"name": "a", "script": "a.sh"}}]}"#,
        )
        .unwrap();
        let s = &load(&path).unwrap().instances[0];
        assert!(s.held && s.restart_reasons.is_empty() && s.watch_off.is_none());
    }

    #[test]
    fn newer_and_broken_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dump.json");
        fs::write(&path, r#"{"version": 99, "instances": []}"#).unwrap();
        assert!(matches!(
            load(&path),
            Err(PersistError::TooNew { found: 99, .. })
        ));
        fs::write(&path, "{oops").unwrap();
        assert!(matches!(load(&path), Err(PersistError::Parse { .. })));
    }

    #[test]
    fn version_1_fixture_still_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dump-v1.json");
        let state = load(&path).unwrap();
        assert_eq!(state.version, 1);
        assert_eq!(state.instances.len(), 2);
        assert_eq!(state.instances[0].spec.name, "api");
        assert_eq!(
            state.instances[1].spec.max_memory_restart.map(|b| b.0),
            Some(200 << 20)
        );
    }
}
