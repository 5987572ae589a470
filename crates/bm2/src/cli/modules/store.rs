//! The two files of modules in `$BM2_HOME`: `modules.json` (what is installed, from where) and
//! `module_conf.json` (PM2's file: each module's settings, keyed by module name).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use bm2_types::Home;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Where a module came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A package of the npm registry (`npm install --prefix`).
    Npm,
    /// A git repository (`git clone --depth 1`).
    Git,
    /// A local directory (copied).
    Path,
}

/// One installed module, as `modules.json` records it.
#[allow(clippy::struct_field_names)] // `installed_at`: the key of modules.json
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Installed {
    /// What `module install` was given (npm spec, URL or absolute path).
    pub source: String,
    pub kind: Kind,
    /// The manifest's version, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The commit installed (git).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// RFC 3339 time of the install (or last update).
    pub installed_at: String,
    /// The module's directory: its app's working directory.
    pub dir: PathBuf,
}

/// `$BM2_HOME/modules`.
pub fn modules_dir(home: &Home) -> PathBuf {
    home.root().join("modules")
}

fn registry_file(home: &Home) -> PathBuf {
    home.root().join("modules.json")
}

/// `$BM2_HOME/module_conf.json` (PM2's name).
pub fn conf_file(home: &Home) -> PathBuf {
    home.root().join("module_conf.json")
}

/// The installed modules, by name (none when the file is missing).
pub fn installed(home: &Home) -> anyhow::Result<BTreeMap<String, Installed>> {
    read_json(&registry_file(home))
}

/// Records the installed modules.
pub fn save_installed(home: &Home, all: &BTreeMap<String, Installed>) -> anyhow::Result<()> {
    write_json(&registry_file(home), all)
}

/// `module_conf.json`: a JSON object keyed by module name, each an object of settings.
pub fn conf(home: &Home) -> anyhow::Result<Map<String, Value>> {
    read_json(&conf_file(home))
}

/// Writes `module_conf.json` atomically.
pub fn save_conf(home: &Home, conf: &Map<String, Value>) -> anyhow::Result<()> {
    write_json(&conf_file(home), conf)
}

/// The settings of one module (an empty object when it has none).
pub fn module_conf(conf: &Map<String, Value>, module: &str) -> Map<String, Value> {
    match conf.get(module) {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    }
}

/// Adds the manifest's default settings of `module` that are not set yet (PM2's
/// `setSyncIfNotExist` for each key of package.json's `config`).
pub fn add_defaults(
    home: &Home,
    module: &str,
    defaults: &Map<String, Value>,
) -> anyhow::Result<()> {
    if defaults.is_empty() {
        return Ok(());
    }
    let mut all = conf(home)?;
    let entry = all
        .entry(module.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    let Value::Object(m) = entry else {
        unreachable!("made an object above")
    };
    for (k, v) in defaults {
        m.entry(k.clone()).or_insert_with(|| v.clone());
    }
    save_conf(home, &all)
}

fn read_json<T: serde::de::DeserializeOwned + Default>(path: &Path) -> anyhow::Result<T> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(T::default()),
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not valid: fix or remove it", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    bm2_daemon::persist::write_atomic(path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}
