//! The environment of app processes: computed from the caller's variables and the app's options
//! at each launch, plus the variables set with `bm2 env set` (the env store).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bm2_types::{AppSpec, FilterEnv, ProcId};

/// Variables as name to value.
pub type Vars = BTreeMap<String, String>;

/// The base environment of an app: the caller's variables it keeps, then its own `env`.
pub fn base_env(client_env: &Vars, spec: &AppSpec) -> Vars {
    let mut env: Vars = match &spec.filter_env {
        FilterEnv::None => client_env.clone(),
        filter => client_env
            .iter()
            .filter(|(k, _)| filter.keeps(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// The environment of instance `index` (id `id`): the base, the instance variables (PM2's
/// `instance_var`, `increment_var`, `pm_id`), the stored overrides, and bm2's own marker.
pub fn instance_env(
    base: &Vars,
    spec: &AppSpec,
    home: &Path,
    id: ProcId,
    index: u32,
    stored: &Vars,
) -> Vars {
    let mut env = base.clone();
    if let Some(var) = &spec.increment_var
        && let Some(n) = env.get(var).and_then(|v| v.trim().parse::<i64>().ok())
    {
        env.insert(var.clone(), (n + i64::from(index)).to_string());
    }
    if let (Some(port), bm2_types::ExecMode::Fork) = (spec.port, spec.exec_mode) {
        env.insert("PORT".into(), (u32::from(port) + index).to_string());
    }
    let instance_var = if spec.instance_var.is_empty() {
        "NODE_APP_INSTANCE"
    } else {
        &spec.instance_var
    };
    env.insert(instance_var.to_string(), index.to_string());
    env.insert("pm_id".into(), id.to_string());
    env.extend(stored.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.insert("BM2_HOME".into(), home.display().to_string());
    env.insert("BM2_ID".into(), id.to_string());
    env
}

/// The variables of `env` that `base` lacks or holds with another value.
pub fn overlay(base: &Vars, env: Vars) -> Vars {
    env.into_iter()
        .filter(|(k, v)| base.get(k) != Some(v))
        .collect()
}

/// `base` with `overlay` over it: the whole environment of a process.
pub fn with_overlay(base: &Vars, overlay: &Vars) -> Vars {
    let mut env = base.clone();
    env.extend(overlay.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// One shared copy of equal environments: apps started or restored together usually have the
/// same base environment, which need not be stored once per instance.
#[derive(Debug, Default)]
pub struct Interner {
    last: Option<Arc<Vars>>,
}

impl Interner {
    /// `vars`, or the previous environment when it is equal.
    pub fn share(&mut self, vars: impl Into<Arc<Vars>>) -> Arc<Vars> {
        let vars = vars.into();
        if let Some(last) = &self.last
            && **last == *vars
        {
            return last.clone();
        }
        self.last = Some(vars.clone());
        vars
    }
}

/// Variables set per app with `bm2 env set`, kept in `env-registry.json` and applied to the
/// app's processes from their next start.
#[derive(Debug)]
pub struct EnvStore {
    path: PathBuf,
    apps: Mutex<BTreeMap<String, Vars>>,
}

impl EnvStore {
    /// The store in `path`; an unreadable file is reported and treated as empty.
    pub fn open(path: PathBuf) -> EnvStore {
        let apps = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::error!(path = %path.display(), error = %e, "env store unreadable; starting empty");
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        EnvStore {
            path,
            apps: Mutex::new(apps),
        }
    }

    /// The stored variables of `app`.
    pub fn get(&self, app: &str) -> Vars {
        crate::logs::lock(&self.apps)
            .get(app)
            .cloned()
            .unwrap_or_default()
    }

    /// Sets a variable of `app`.
    pub fn set(&self, app: &str, key: &str, value: &str) -> std::io::Result<()> {
        let mut apps = crate::logs::lock(&self.apps);
        apps.entry(app.to_string())
            .or_default()
            .insert(key.to_string(), value.to_string());
        self.write(&apps)
    }

    /// Removes one variable of `app`, or all of them; returns how many were removed.
    pub fn delete(&self, app: &str, key: Option<&str>) -> std::io::Result<usize> {
        let mut apps = crate::logs::lock(&self.apps);
        let removed = match (apps.get_mut(app), key) {
            (Some(vars), Some(key)) => usize::from(vars.remove(key).is_some()),
            (Some(vars), None) => {
                let n = vars.len();
                vars.clear();
                n
            }
            (None, _) => 0,
        };
        apps.retain(|_, vars| !vars.is_empty());
        self.write(&apps)?;
        Ok(removed)
    }

    fn write(&self, apps: &BTreeMap<String, Vars>) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(apps).map_err(std::io::Error::other)?;
        crate::persist::write_atomic(&self.path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn overlay_keeps_only_what_differs_and_rebuilds_the_whole() {
        let base = vars(&[("A", "1"), ("B", "2")]);
        let env = vars(&[("A", "1"), ("B", "3"), ("BM2_ID", "7")]);
        let over = overlay(&base, env.clone());
        assert_eq!(over, vars(&[("B", "3"), ("BM2_ID", "7")]));
        assert_eq!(with_overlay(&base, &over), env);
    }

    #[test]
    fn interner_shares_equal_neighbours() {
        let mut i = Interner::default();
        let a = i.share(vars(&[("A", "1")]));
        let b = i.share(vars(&[("A", "1")]));
        let c = i.share(vars(&[("A", "2")]));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }

    #[test]
    fn app_env_wins_over_caller_and_filters_apply() {
        let client = vars(&[("PATH", "/bin"), ("SECRET_TOKEN", "x"), ("A", "shell")]);
        let mut spec = AppSpec {
            env: vars(&[("A", "app")]),
            ..AppSpec::default()
        };
        assert_eq!(base_env(&client, &spec)["A"], "app");
        spec.filter_env = FilterEnv::Prefixes(vec!["SECRET_".into()]);
        let env = base_env(&client, &spec);
        assert!(!env.contains_key("SECRET_TOKEN") && env.contains_key("PATH"));
        spec.filter_env = FilterEnv::All;
        assert_eq!(base_env(&client, &spec), vars(&[("A", "app")]));
    }

    #[test]
    fn instance_variables_and_store_overrides() {
        let spec = AppSpec {
            increment_var: Some("PORT".into()),
            instance_var: "INSTANCE_ID".into(),
            ..AppSpec::default()
        };
        let base = vars(&[("PORT", "3000")]);
        let env = instance_env(&base, &spec, Path::new("/h"), 7, 2, &vars(&[("X", "1")]));
        assert_eq!(env["PORT"], "3002");
        assert_eq!(env["INSTANCE_ID"], "2");
        assert_eq!(env["pm_id"], "7");
        assert_eq!(env["X"], "1");
        assert_eq!(env["BM2_HOME"], "/h");
    }

    #[test]
    fn store_persists_set_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env-registry.json");
        let store = EnvStore::open(path.clone());
        store.set("api", "A", "1").unwrap();
        store.set("api", "B", "2").unwrap();
        assert_eq!(
            EnvStore::open(path.clone()).get("api"),
            vars(&[("A", "1"), ("B", "2")])
        );
        assert_eq!(store.delete("api", Some("A")).unwrap(), 1);
        assert_eq!(store.delete("api", None).unwrap(), 1);
        assert!(EnvStore::open(path).get("api").is_empty());
    }
}
