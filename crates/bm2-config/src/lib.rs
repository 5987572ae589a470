//! Ecosystem files: PM2's and BM2's formats (`.js`, `.cjs`, `.mjs`, `.ts`, `.json`, `.yaml`,
//! `.toml`) read into [`AppSpec`]s. Errors name the file, the line and the key.

pub mod error;
pub mod forms;
pub mod raw;
pub mod resolve;
pub mod run;
pub mod sample;
pub mod schema;
pub mod source;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bm2_types::AppSpec;
use serde::Deserialize;

pub use error::{ConfigError, Warning};
pub use raw::RawApp;
pub use resolve::{Context, Vars};
pub use source::{Format, is_ecosystem_file};

use source::{Kind, Text};

/// How to read a file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--env <name>`: apply each app's `env_<name>` block.
    pub env_name: Option<String>,
    /// `--only a,b`: keep these apps.
    pub only: Vec<String>,
    /// Unknown keys are errors, not warnings.
    pub strict: bool,
    /// `--env KEY=VAL` variables.
    pub cli_vars: Vars,
    /// `--env-file`.
    pub env_file: Option<PathBuf>,
}

/// The apps of a file, and what looked wrong without being an error.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The apps, in file order.
    pub apps: Vec<AppSpec>,
    /// Unknown keys and keys without effect.
    pub warnings: Vec<Warning>,
}

/// Reads the ecosystem file at `path`.
pub fn load_file(path: &Path, opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let shown = path.display().to_string();
    let text = source::read(path, &shown)?;
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let base_dir = abs
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    load_text(&text, &shown, base_dir, opts)
}

/// Reads a JSON config given as text (`bm2 start -`), with paths relative to `base_dir`.
pub fn load_json(
    json: &str,
    shown: &str,
    base_dir: PathBuf,
    opts: &LoadOptions,
) -> Result<Loaded, ConfigError> {
    let text = Text {
        body: json.to_string(),
        kind: Kind::Json,
        has_lines: true,
    };
    load_text(&text, shown, base_dir, opts)
}

#[derive(Deserialize)]
struct AppsFile {
    apps: Vec<RawApp>,
}

fn load_text(
    text: &Text,
    shown: &str,
    base_dir: PathBuf,
    opts: &LoadOptions,
) -> Result<Loaded, ConfigError> {
    let value = generic_value(text, shown)?;
    let (raws, ignored, prefix) = match &value {
        serde_json::Value::Array(_) => {
            let (apps, ignored) = source::parse::<Vec<RawApp>>(text, shown)?;
            (apps, ignored, "apps")
        }
        serde_json::Value::Object(map) if map.contains_key("apps") => {
            let (file, ignored) = source::parse::<AppsFile>(text, shown)?;
            (file.apps, ignored, "")
        }
        serde_json::Value::Object(map) if map.contains_key("script") => {
            let (app, ignored) = source::parse::<RawApp>(text, shown)?;
            (
                vec![app],
                ignored.into_iter().map(|k| format!("[0].{k}")).collect(),
                "apps",
            )
        }
        _ => {
            return Err(ConfigError::file(
                shown,
                "no apps: expected an object with an `apps` array, or an array of apps",
            ));
        }
    };
    let app_values: Vec<&serde_json::Value> = match &value {
        serde_json::Value::Array(a) => a.iter().collect(),
        serde_json::Value::Object(m) => match m.get("apps") {
            Some(serde_json::Value::Array(a)) => a.iter().collect(),
            _ => vec![&value],
        },
        _ => Vec::new(),
    };
    let warnings = check_keys(&ignored, prefix, text, shown, opts.strict)?;
    let ctx = Context {
        base_dir,
        env_name: opts.env_name.clone(),
        cli_vars: opts.cli_vars.clone(),
        env_file: opts.env_file.clone(),
    };
    let mut apps = Vec::with_capacity(raws.len());
    for (i, raw) in raws.into_iter().enumerate() {
        let blocks = env_blocks(app_values.get(i).copied(), i, shown)?;
        let plain_name = raw.name.clone();
        let spec = resolve::resolve(raw, &blocks, &ctx, i, shown)?;
        let name = plain_name.unwrap_or_else(|| spec.name.clone());
        if opts.only.is_empty() || opts.only.iter().any(|o| *o == name || *o == spec.name) {
            apps.push(spec);
        }
    }
    if apps.is_empty() && !opts.only.is_empty() {
        return Err(ConfigError::file(
            shown,
            format!("--only {}: no such app in this file", opts.only.join(",")),
        ));
    }
    if apps.is_empty() {
        return Err(ConfigError::file(shown, "the file declares no apps"));
    }
    Ok(Loaded { apps, warnings })
}

/// The file as untyped data; syntax errors are reported here with their position.
fn generic_value(text: &Text, shown: &str) -> Result<serde_json::Value, ConfigError> {
    source::parse::<serde_json::Value>(text, shown).map(|(v, _)| v)
}

/// Ignored keys become warnings (or errors when strict), except `env_<name>` blocks.
fn check_keys(
    ignored: &[String],
    prefix: &str,
    text: &Text,
    shown: &str,
    strict: bool,
) -> Result<Vec<Warning>, ConfigError> {
    let mut warnings = Vec::new();
    for path in ignored {
        let full = if prefix.is_empty() {
            path.clone()
        } else {
            format!("{prefix}{path}")
        };
        let key = full.rsplit('.').next().unwrap_or(&full);
        let top_level = !full.contains('.');
        if (key.starts_with("env_") && !top_level) || (top_level && key == "deploy") {
            continue;
        }
        let line = if text.has_lines {
            error::line_of_key(&text.body, key)
        } else {
            None
        };
        let warning = |message: String| {
            ConfigError::file(shown, message)
                .at_key(full.clone())
                .at(line, None)
        };
        if raw::NO_EFFECT.contains(&key) {
            warnings.push(warning(
                "a PM2 option for Node internals or PM2 services; it has no effect in bm2".into(),
            ));
            continue;
        }
        let hint = match raw::closest_key(key) {
            Some(k) => format!("unknown key; did you mean {k}?"),
            None => "unknown key".to_string(),
        };
        if strict {
            return Err(warning(hint));
        }
        warnings.push(warning(hint));
    }
    Ok(warnings)
}

/// The `env_<name>` blocks of app `index`.
fn env_blocks(
    app: Option<&serde_json::Value>,
    index: usize,
    shown: &str,
) -> Result<BTreeMap<String, Vars>, ConfigError> {
    let mut blocks = BTreeMap::new();
    let Some(serde_json::Value::Object(map)) = app else {
        return Ok(blocks);
    };
    for (key, value) in map {
        let Some(name) = key.strip_prefix("env_") else {
            continue;
        };
        if name == "file" {
            continue;
        }
        let vars: forms::EnvVars = serde_json::from_value(value.clone()).map_err(|e| {
            ConfigError::file(shown, e.to_string()).at_key(format!("apps[{index}].{key}"))
        })?;
        blocks.insert(name.to_string(), vars.0);
    }
    Ok(blocks)
}
