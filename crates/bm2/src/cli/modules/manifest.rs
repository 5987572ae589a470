//! What a module runs: its `package.json` (`bm2` or `pm2` field, `apps`, `bin`, `main`, and
//! `config` for default settings) or its `bm2-module.toml` (any language).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use bm2_config::RawApp;
use serde_json::{Map, Value};

/// The TOML manifest's file name.
pub const TOML_MANIFEST: &str = "bm2-module.toml";

/// A module's manifest, read from its directory.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The module's name (package.json `name`, the TOML's `name`).
    pub name: Option<String>,
    pub version: Option<String>,
    /// Default settings (package.json `config`, the TOML's `[config]` table).
    pub defaults: Map<String, Value>,
    /// What runs.
    pub run: Run,
}

/// How a module runs.
#[derive(Debug, Clone)]
pub enum Run {
    /// As a process of its own, with these app options (script relative to the module's
    /// directory): PM2-style modules and any-language modules.
    Process(Box<RawApp>),
    /// In bm2's module host, which imports `entry` and calls its default export's
    /// `init(pm, config)` (and `destroy()` on stop); an entry without `init` just runs.
    Host { entry: PathBuf },
}

/// Reads the manifest of the module in `dir`.
pub fn read(dir: &Path) -> anyhow::Result<Manifest> {
    let toml_path = dir.join(TOML_MANIFEST);
    if toml_path.is_file() {
        return from_toml(dir, &toml_path);
    }
    let pkg_path = dir.join("package.json");
    if pkg_path.is_file() {
        return from_package(dir, &pkg_path);
    }
    bail!(
        "{} has neither package.json nor {TOML_MANIFEST}: nothing says what the module runs",
        dir.display()
    )
}

/// True when the module's package.json lists dependencies to install.
pub fn has_dependencies(dir: &Path) -> bool {
    std::fs::read(dir.join("package.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.get("dependencies").and_then(Value::as_object).cloned())
        .is_some_and(|d| !d.is_empty())
}

fn from_toml(dir: &Path, path: &Path) -> anyhow::Result<Manifest> {
    let text = std::fs::read_to_string(path)?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    let value = serde_json::to_value(&table)?;
    let str_of = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_string);
    let defaults = value
        .get("config")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let Some(script) = str_of("script") else {
        bail!("{}: `script` is missing", path.display());
    };
    let run = match str_of("type").as_deref() {
        Some("module") => Run::Host {
            entry: dir.join(script),
        },
        None | Some("process") => Run::Process(Box::new(raw_app(&value, path)?)),
        Some(other) => bail!(
            "{}: type = {other:?}: `module` (init/destroy in bm2's host) or `process`",
            path.display()
        ),
    };
    Ok(Manifest {
        name: str_of("name"),
        version: str_of("version"),
        defaults,
        run,
    })
}

fn from_package(dir: &Path, path: &Path) -> anyhow::Result<Manifest> {
    let bytes = std::fs::read(path)?;
    let pkg: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let str_of = |k: &str| pkg.get(k).and_then(Value::as_str).map(str::to_string);
    let defaults = pkg
        .get("config")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let main = str_of("main");
    let bm2 = pkg.get("bm2").filter(|v| v.is_object());
    let kind = bm2
        .and_then(|b| b.get("type"))
        .and_then(Value::as_str)
        .map(str::to_string);
    // The app options: `bm2`, then PM2's `pm2`, then an `apps` entry (PM2 starts package.json
    // as a process file when it has `apps`).
    let options = bm2
        .or_else(|| pkg.get("pm2"))
        .or_else(|| match pkg.get("apps") {
            Some(Value::Array(a)) => a.first(),
            other => other.filter(|v| v.is_object()),
        });
    let script_of = |o: Option<&Value>| {
        o.and_then(|o| {
            ["script", "exec", "cmd", "command"]
                .iter()
                .find_map(|k| o.get(*k).and_then(Value::as_str))
                .map(str::to_string)
        })
    };
    // PM2's order when no options name a script: the first `bin`, then `main`.
    let bin = match pkg.get("bin") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Object(m)) => m.values().find_map(Value::as_str).map(str::to_string),
        _ => None,
    };
    let run = match kind.as_deref() {
        Some("module") => {
            let entry = script_of(options)
                .or(main)
                .unwrap_or_else(|| "index.js".into());
            Run::Host {
                entry: dir.join(entry),
            }
        }
        Some("process") | None => {
            let explicit = options.is_some() || bin.is_some() || kind.is_some();
            let script = script_of(options).or(bin).or(main.clone());
            match script {
                // Only `main`: bm2's host runs it, a BM2 module when its default export has
                // `init`, else as a plain script (spec: a package with a default export).
                Some(s) if !explicit => Run::Host { entry: dir.join(s) },
                Some(s) => {
                    let mut raw = match options {
                        Some(o) => raw_app(o, path)?,
                        None => RawApp::default(),
                    };
                    raw.script = Some(s);
                    Run::Process(Box::new(raw))
                }
                None if dir.join("index.js").is_file() => Run::Host {
                    entry: dir.join("index.js"),
                },
                None => bail!(
                    "{}: no script to run (give `main`, `bin`, or `bm2`/`pm2` with `script`)",
                    path.display()
                ),
            }
        }
        Some(other) => bail!(
            "{}: bm2.type = {other:?}: `module` (init/destroy in bm2's host) or `process`",
            path.display()
        ),
    };
    Ok(Manifest {
        name: str_of("name"),
        version: str_of("version"),
        defaults,
        run,
    })
}

/// The app options of a manifest (keys as in an ecosystem file; `type` and `config` are the
/// manifest's own).
fn raw_app(value: &Value, path: &Path) -> anyhow::Result<RawApp> {
    let mut v = value.clone();
    if let Value::Object(m) = &mut v {
        for k in ["type", "config", "name", "version", "namespace", "cwd"] {
            m.remove(k);
        }
    }
    serde_json::from_value(v).with_context(|| format!("{}: bad app options", path.display()))
}

/// True for files Node or Bun run as TypeScript.
pub fn is_typescript(entry: &Path) -> bool {
    matches!(
        entry.extension().and_then(|e| e.to_str()),
        Some("ts" | "tsx" | "mts" | "cts")
    )
}
