//! Ecosystem files: PM2's and BM2's formats (`.js`, `.cjs`, `.mjs`, `.ts`, `.json`, `.yaml`,
//! `.toml`) read into [`AppSpec`]s. Errors name the file, the line and the key.

pub mod depends;
pub mod deploy;
pub mod error;
pub mod forms;
pub mod literal;
pub mod raw;
pub mod resolve;
pub mod review;
pub mod run;
pub mod runtime;
pub mod sample;
pub mod schema;
pub mod source;
pub mod triggers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bm2_types::AppSpec;
use serde::Deserialize;

pub use error::{ConfigError, Warning};
pub use raw::RawApp;
pub use resolve::{Context, Resolved, Vars};
pub use source::{Format, is_ecosystem_file};

use source::{Kind, Text};

/// How to read a file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--env <name>`: apply each app's `env_<name>` block (and `deploy.<name>.env`).
    pub env_name: Option<String>,
    /// `--only a,b`: keep these apps.
    pub only: Vec<String>,
    /// Unknown keys are errors, not warnings.
    pub strict: bool,
    /// `--env KEY=VAL` variables.
    pub cli_vars: Vars,
    /// `--env-file`.
    pub env_file: Option<PathBuf>,
    /// The directory the command is run from: relative `script` and `cwd` are taken from it,
    /// and JavaScript configs are evaluated in it, as in PM2 (default: the current directory).
    pub cwd: Option<PathBuf>,
    /// Options given as command-line flags: they override every app's own (PM2's rule).
    pub overrides: RawApp,
}

/// The apps of a file, and what looked wrong without being an error.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The apps, in file order.
    pub apps: Vec<AppSpec>,
    /// Unknown keys, keys without effect and misreadings.
    pub warnings: Vec<Warning>,
    /// Variables a JavaScript config put into `process.env`: the apps get them on top of the
    /// caller's environment, as under PM2.
    pub env: Vars,
    /// What a JavaScript config printed on stdout while it was evaluated.
    pub printed: String,
}

/// Reads the ecosystem file at `path`.
pub fn load_file(path: &Path, opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let shown = path.display().to_string();
    let here = command_dir(opts);
    let text = source::read(path, &shown, &here)?;
    load_text(&text, &shown, here, opts)
}

/// Reads a JSON (or JavaScript object literal) config given as text (`bm2 start -`), with paths
/// relative to `base_dir`.
pub fn load_json(
    json: &str,
    shown: &str,
    base_dir: PathBuf,
    opts: &LoadOptions,
) -> Result<Loaded, ConfigError> {
    let text = Text::data(json.to_string(), Kind::Json);
    load_text(&text, shown, base_dir, opts)
}

fn command_dir(opts: &LoadOptions) -> PathBuf {
    opts.cwd
        .clone()
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("/"))
}

#[derive(Deserialize)]
struct AppsFile {
    apps: Vec<RawApp>,
}

/// Keys that make an object one app (PM2 reads a file without `apps` as an app, or a list).
const SCRIPT_KEYS: &[&str] = &["script", "exec", "cmd", "command"];

fn load_text(
    text: &Text,
    shown: &str,
    base_dir: PathBuf,
    opts: &LoadOptions,
) -> Result<Loaded, ConfigError> {
    let mut value = generic_value(text, shown)?;
    // PM2 also reads the apps from a `pm2` key.
    if let serde_json::Value::Object(map) = &mut value
        && !map.contains_key("apps")
        && let Some(apps) = map.remove("pm2")
    {
        map.insert("apps".into(), apps);
    }
    let deploy_env = opts.env_name.as_ref().and_then(|n| deploy_env(&value, n));
    let (prefix, apps_at) = match &value {
        serde_json::Value::Array(_) => ("apps", AppsAt::Root),
        serde_json::Value::Object(map) if map.contains_key("apps") => ("", AppsAt::Apps),
        serde_json::Value::Object(map) if SCRIPT_KEYS.iter().any(|k| map.contains_key(*k)) => {
            ("apps", AppsAt::One)
        }
        _ => {
            return Err(ConfigError::file(
                shown,
                "no apps: expected an object with an `apps` array, or an array of apps",
            ));
        }
    };
    let mut warnings = Vec::new();
    let dropped = drop_aliases(&mut value, apps_at, shown, text, &mut warnings);
    let (raws, ignored) = match (apps_at, dropped) {
        (AppsAt::Root, false) => source::parse::<Vec<RawApp>>(text, shown)?,
        (AppsAt::Root, true) => source::parse_value::<Vec<RawApp>>(value.clone(), text, shown)?,
        (AppsAt::Apps, false) => {
            let (file, ignored) = source::parse::<AppsFile>(text, shown)?;
            (file.apps, ignored)
        }
        (AppsAt::Apps, true) => {
            let (file, ignored) = source::parse_value::<AppsFile>(value.clone(), text, shown)?;
            (file.apps, ignored)
        }
        (AppsAt::One, dropped) => {
            let (app, ignored) = if dropped {
                source::parse_value::<RawApp>(value.clone(), text, shown)?
            } else {
                source::parse::<RawApp>(text, shown)?
            };
            (
                vec![app],
                ignored.into_iter().map(|k| format!("[0].{k}")).collect(),
            )
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
    warnings.extend(check_keys(&ignored, prefix, text, shown, opts.strict)?);
    let ctx = Context {
        base_dir,
        env_name: opts.env_name.clone(),
        cli_vars: opts.cli_vars.clone(),
        env_file: opts.env_file.clone(),
        deploy_env,
        from_flags: false,
    };
    let mut apps = Vec::with_capacity(raws.len());
    let mut all = Vec::with_capacity(raws.len());
    for (i, raw) in raws.into_iter().enumerate() {
        let blocks = env_blocks(app_values.get(i).copied(), i, shown)?;
        let plain_name = raw.name.clone();
        let script = raw.script.clone();
        let raw = raw.merge(opts.overrides.clone());
        let resolved = resolve::resolve(raw, &blocks, &ctx, i, shown)?;
        let spec = resolved.spec;
        let name = plain_name.unwrap_or_else(|| spec.name.clone());
        if opts.only.is_empty() || opts.only.iter().any(|o| *o == name || *o == spec.name) {
            warnings.extend(resolved.warnings);
            if let Some(w) = misread_path(script.as_deref(), &spec, text, shown, i) {
                warnings.push(w);
            }
            apps.push(spec.clone());
        }
        all.push(spec);
    }
    // The whole file is known here: a name none of its apps has may still be a managed app,
    // which the daemon checks; a cycle is refused before anything starts.
    if let Err(e @ depends::DependsError::Cycle(_)) = depends::start_order(&all, &[]) {
        return Err(ConfigError::file(shown, e.to_string()));
    }
    if let Some(env_name) = &opts.env_name
        && ctx.deploy_env.is_none()
        && !app_values
            .iter()
            .any(|a| a.get(format!("env_{env_name}")).is_some())
    {
        warnings.push(ConfigError::file(
            shown,
            format!(
                "--env {env_name}: no app of this file has an env_{env_name} block (nor the file a deploy.{env_name}.env); the apps get their env only"
            ),
        ));
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
    Ok(Loaded {
        apps,
        warnings,
        env: text.env.clone(),
        printed: text.printed.clone(),
    })
}

/// Where the apps of a file are.
#[derive(Debug, Clone, Copy)]
enum AppsAt {
    /// The file is an array of apps.
    Root,
    /// Under `apps`.
    Apps,
    /// The file is one app.
    One,
}

/// Removes, from each app, the spellings of a key also given under another spelling: PM2 keeps
/// the canonical key (else the first alias), so a file giving both is not an error. Each removal
/// is noted. True when something was removed.
fn drop_aliases(
    value: &mut serde_json::Value,
    at: AppsAt,
    shown: &str,
    text: &Text,
    warnings: &mut Vec<Warning>,
) -> bool {
    let apps: Vec<&mut serde_json::Value> = match (at, value) {
        (AppsAt::Root, serde_json::Value::Array(a)) => a.iter_mut().collect(),
        (AppsAt::Apps, serde_json::Value::Object(m)) => match m.get_mut("apps") {
            Some(serde_json::Value::Array(a)) => a.iter_mut().collect(),
            _ => Vec::new(),
        },
        (AppsAt::One, v) => vec![v],
        _ => Vec::new(),
    };
    let mut dropped = false;
    for (i, app) in apps.into_iter().enumerate() {
        let serde_json::Value::Object(map) = app else {
            continue;
        };
        for (canonical, aliases) in raw::KEYS {
            let given: Vec<&str> = std::iter::once(*canonical)
                .chain(aliases.iter().copied())
                .filter(|k| map.contains_key(*k))
                .collect();
            for extra in given.iter().skip(1) {
                map.remove(*extra);
                dropped = true;
                let line = if text.has_lines {
                    error::line_of_key(&text.body, extra)
                } else {
                    None
                };
                warnings.push(
                    ConfigError::file(
                        shown,
                        format!(
                            "ignored: {} is also given, and is kept (as in PM2)",
                            given[0]
                        ),
                    )
                    .at_key(format!("apps[{i}].{extra}"))
                    .at(line, None),
                );
            }
        }
    }
    dropped
}

/// `deploy.<name>.env` of the file.
fn deploy_env(value: &serde_json::Value, name: &str) -> Option<Vars> {
    let env = value.get("deploy")?.get(name)?.get("env")?.as_object()?;
    Some(
        env.iter()
            .map(|(k, v)| (k.clone(), forms::env_value(v.clone())))
            .collect(),
    )
}

/// A note when a relative `script` is not found where PM2 (and bm2) look for it, the directory
/// the command is run from, but exists beside the file: started from another directory than the
/// file's, the app would not run what the file meant.
fn misread_path(
    script: Option<&str>,
    spec: &AppSpec,
    text: &Text,
    shown: &str,
    index: usize,
) -> Option<Warning> {
    let script = script?;
    if script.starts_with('/') || Path::new(&spec.script).is_absolute() || script.contains(' ') {
        return None;
    }
    let file_dir = Path::new(shown).parent()?;
    let beside = file_dir.join(script);
    if !beside.is_file() {
        return None;
    }
    let cwd = spec.cwd.as_deref().unwrap_or(Path::new("."));
    let line = if text.has_lines {
        error::line_of_key(&text.body, "script")
    } else {
        None
    };
    Some(
        ConfigError::file(
            shown,
            format!(
                "{script:?} is not in {}, the directory relative paths are taken from (the one the command is run from, as in PM2), but it is beside the file: run the command from {}, or give `cwd`",
                cwd.display(),
                file_dir.display()
            ),
        )
        .at_key(format!("apps[{index}].script"))
        .at(line, None),
    )
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
            warnings.push(warning(raw::no_effect_reason(key).into()));
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
