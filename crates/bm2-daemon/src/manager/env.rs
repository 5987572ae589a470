//! `env set|get|delete`: the env store, kept per app.

use bm2_types::ApiError;

use super::ProcessManager;
use crate::envs::Vars;

impl ProcessManager {
    /// Sets a variable of `app` in the env store (applied at its next start).
    pub fn env_set(&self, app: &str, key: &str, value: &str) -> Result<(), ApiError> {
        self.require_app(app)?;
        self.shared
            .env_store
            .set(app, key, value)
            .map_err(|e| ApiError::new("env_store", format!("cannot write the env store: {e}")))
    }

    /// The stored variables of `app`.
    pub fn env_get(&self, app: &str) -> Result<Vars, ApiError> {
        self.require_app(app)?;
        Ok(self.shared.env_store.get(app))
    }

    /// Removes one stored variable of `app`, or all.
    pub fn env_delete(&self, app: &str, key: Option<&str>) -> Result<usize, ApiError> {
        self.require_app(app)?;
        self.shared
            .env_store
            .delete(app, key)
            .map_err(|e| ApiError::new("env_store", format!("cannot write the env store: {e}")))
    }

    /// Ok when `app` names an app; an id, an instance name or any other target is refused (the
    /// env store is kept per app, and would never be read under another key).
    fn require_app(&self, app: &str) -> Result<(), ApiError> {
        if self.registry.all().iter().any(|h| h.inst.app == app) {
            return Ok(());
        }
        // Unknown targets get the usual error with the managed names.
        self.registry.resolve(&[app.to_string()])?;
        Err(ApiError::new(
            "unknown_target",
            format!("{app:?} is not an app name; the env store is kept per app, by name"),
        ))
    }
}
