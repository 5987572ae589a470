//! `save`, `resurrect`, restoring a previous daemon's state, and shutting down.

use bm2_types::ErrorCode;
use std::sync::Arc;

use bm2_types::{ActionResponse, ApiError, SaveResponse};

use super::{NewInstance, ProcessManager, all, snapshot_state};
use crate::envs::{self, Vars};
use crate::leftovers;
use crate::persist::{self, STATE_VERSION, SavedInstance, StateFile};
use crate::registry::Handle;
use crate::time::now_ms;

impl ProcessManager {
    /// Writes the dump file (in the blocking pool: the write is fsynced).
    pub async fn save(&self) -> Result<SaveResponse, ApiError> {
        let state = snapshot_state(&self.registry);
        let count = state.instances.len();
        let path = self.shared.home.dump_file();
        let target = path.clone();
        let backup = self.shared.home.dump_backup_file();
        tokio::task::spawn_blocking(move || persist::store_with_backup(&target, backup, &state))
            .await
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?
            .map_err(|e| ApiError::new(ErrorCode::SaveFailed, e.to_string()))?;
        Ok(SaveResponse { path, count })
    }

    /// Restores the dump file: apps not managed yet are registered, and started if they ran.
    pub async fn resurrect(&self, update_env: Option<&Vars>) -> Result<ActionResponse, ApiError> {
        self.refuse_if_closing()?;
        let path = self.shared.home.dump_file();
        if !path.exists() {
            return Err(ApiError::new(
                ErrorCode::NoDump,
                format!("no dump file at {}", path.display()),
            )
            .with_hint("run `bm2 save` first"));
        }
        let state = match persist::load(&path) {
            Ok(state) => state,
            // PM2's layout falls back to the previous dump, as PM2's resurrect does.
            Err(e) => match self.shared.home.dump_backup_file() {
                Some(backup) if backup.exists() => {
                    let state = persist::load(&backup).map_err(|b| {
                        ApiError::new(ErrorCode::BadDump, format!("{e}; and {b}")).with_hint(
                            "the files were not changed; fix or remove them, or save again",
                        )
                    })?;
                    self.shared.notice(format!(
                        "{e}; restored the previous save from {}",
                        backup.display()
                    ));
                    state
                }
                _ => {
                    return Err(ApiError::new(ErrorCode::BadDump, e.to_string()).with_hint(
                        "the file was not changed; fix or remove it, or run `bm2 save` to write a new one",
                    ));
                }
            },
        };
        let existing: Vec<(String, u32)> = self
            .registry
            .all()
            .iter()
            .map(|h| (h.inst.app.clone(), h.inst.index))
            .collect();
        let fresh: Vec<SavedInstance> = state
            .instances
            .into_iter()
            .filter(|s| !existing.contains(&(s.spec.name.clone(), s.index)))
            .collect();
        self.restore_instances(fresh, true, update_env).await
    }

    /// Reads the state a previous daemon left (the first step of bringing it back, before
    /// [`ProcessManager::restore_state`]; quick: the daemon does it before it listens, so that a file it cannot use is reported
    /// to the command that started it). An unreadable file is moved aside and reported at the
    /// next command; a file from a newer bm2 is an error.
    pub fn load_state(&self) -> Result<StateFile, persist::PersistError> {
        let path = self.shared.home.state_file();
        let removed = persist::remove_stale_temps(&path);
        if removed > 0 {
            tracing::info!(
                count = removed,
                "removed temporary state files left by an interrupted write"
            );
        }
        let state = match persist::load(&path) {
            Ok(s) => s,
            Err(e @ persist::PersistError::Parse { .. }) => {
                let broken = path.with_extension(format!("broken-{}", now_ms()));
                tracing::error!(error = %e, moved_to = %broken.display(), "state file unreadable; starting empty");
                let _ = std::fs::rename(&path, &broken);
                self.shared.notice(format!(
                    "the process list in {} could not be read ({e}); the daemon started with no apps. The file was kept as {}; `bm2 resurrect` restores the last `bm2 save`",
                    path.display(),
                    broken.display()
                ));
                StateFile::default()
            }
            Err(e) => return Err(e),
        };
        Ok(state)
    }

    /// Brings back a previous daemon's `state`: the processes it left running (recorded, or
    /// only marked as this home's) are stopped, then its instances are registered under the
    /// same ids and started again if they were meant to run.
    pub async fn restore_state(&self, state: StateFile) -> ActionResponse {
        let stopped = leftovers::stop(self.shared.home.root(), &state).await;
        if stopped.processes > 0 {
            tracing::info!(
                processes = stopped.processes,
                unrecorded = stopped.unrecorded,
                killed = stopped.killed,
                "stopped processes left by a previous daemon"
            );
        }
        self.registry.set_next_id(state.next_id);
        let restored = self.restore_instances(state.instances, false, None).await;
        restored.unwrap_or_default()
    }

    async fn restore_instances(
        &self,
        saved: Vec<SavedInstance>,
        fresh_ids: bool,
        update_env: Option<&Vars>,
    ) -> Result<ActionResponse, ApiError> {
        let mut handles = Vec::new();
        let mut bases = envs::Interner::default();
        for s in saved {
            let id = if fresh_ids && self.registry.contains(s.id) {
                self.registry.reserve(&s.spec.name, 1, true)?.ids[0]
            } else {
                s.id
            };
            let running = s.running;
            let base_env = bases.share(match update_env {
                Some(client) => Arc::new(envs::base_env(client, &s.spec)),
                None => s.env.clone(),
            });
            let handle = self.register(NewInstance::saved(id, s, base_env));
            handles.push((handle, running));
        }
        // Recorded before anything is spawned.
        let mut errors = Vec::new();
        self.saved(&mut errors).await;
        let starting: Vec<Handle> = handles
            .iter()
            .filter(|(_, r)| *r)
            .map(|(h, _)| h.clone())
            .collect();
        errors.extend(all(&starting, Handle::start).await);
        self.saved(&mut errors).await;
        Ok(ActionResponse {
            processes: handles.iter().map(|(h, _)| self.summary(h)).collect(),
            errors,
            notices: Vec::new(),
        })
    }

    /// Refuses new work: the first step of a shutdown. Long-lived streams go on until the apps
    /// have stopped ([`ProcessManager::end_streams`]).
    pub fn begin_shutdown(&self) {
        self.closing.send_replace(true);
    }

    /// Stops every instance and writes the last state. With `forget` (`bm2 kill`) that state
    /// is empty; without (SIGTERM, SIGINT) it holds what should run, for the next daemon. The
    /// last state is written first, and nothing after it: a daemon killed while stopping its
    /// apps leaves the same state, and the next daemon stops what it left.
    pub async fn shutdown(&self, forget: bool) {
        self.begin_shutdown();
        let last = if forget {
            StateFile {
                version: STATE_VERSION,
                ..StateFile::default()
            }
        } else {
            snapshot_state(&self.registry)
        };
        if let Err(e) = self
            .shared
            .persist
            .finish(self.shared.home.state_file(), last)
            .await
        {
            tracing::error!(error = %e, "cannot write state file at shutdown");
        }
        // Starts already past their check may still register instances: stop until none is left.
        loop {
            let handles = self.registry.all();
            if handles.is_empty() {
                break;
            }
            self.forget(&handles).await;
        }
        self.registry.clear();
        self.shared.changed();
        self.end_streams();
    }
}
