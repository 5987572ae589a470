//! The JSON Schema of ecosystem files, and the option reference generated from it.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use crate::deploy::{KEYS as DEPLOY_KEYS, RawDeployEnv};
use crate::raw::{KEYS, RawApp};

/// Adds each other spelling of `keys` to the properties of `schema`, as its canonical key is.
fn add_aliases(schema: &mut Value, keys: &[(&str, &[&str])]) {
    let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    let mut extra = Map::new();
    for (canonical, aliases) in keys {
        for alias in *aliases {
            let mut p = props.get(*canonical).cloned().unwrap_or_else(|| json!({}));
            if let Some(o) = p.as_object_mut() {
                o.insert(
                    "description".into(),
                    json!(format!("Same as `{canonical}`.")),
                );
            }
            extra.insert((*alias).to_string(), p);
        }
    }
    props.extend(extra);
}

/// The JSON Schema of one app: every key under its PM2 name and its other spellings.
pub fn app_schema() -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(RawApp)).unwrap_or_default();
    add_aliases(&mut schema, KEYS);
    if let Some(o) = schema.as_object_mut() {
        o.insert(
            "patternProperties".into(),
            json!({ "^env_.+$": { "type": "object", "description": "Variables applied with `--env <name>`." } }),
        );
        o.remove("$schema");
        o.remove("title");
    }
    schema
}

/// The JSON Schema of one environment of the `deploy` section, every key under each spelling.
pub fn deploy_env_schema() -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(RawDeployEnv)).unwrap_or_default();
    add_aliases(&mut schema, DEPLOY_KEYS);
    if let Some(o) = schema.as_object_mut() {
        o.insert("required".into(), json!(["host", "repo", "path", "ref"]));
        o.remove("$schema");
        o.remove("title");
    }
    schema
}

/// The JSON Schema of an ecosystem file: `{ "apps": [...] }` or a bare array of apps.
pub fn file_schema() -> Value {
    let mut app = app_schema();
    let mut deploy = deploy_env_schema();
    let mut defs = Map::new();
    for schema in [&mut app, &mut deploy] {
        if let Some(Value::Object(d)) = schema.as_object_mut().and_then(|o| o.remove("$defs")) {
            defs.extend(d);
        }
    }
    defs.insert("App".into(), app);
    defs.insert("DeployEnv".into(), deploy);
    // Nested definitions were referenced from the app schema's own root.
    let text = serde_json::to_string(&Value::Object(defs)).unwrap_or_default();
    let defs: Value = serde_json::from_str(&text).unwrap_or_default();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "bm2 ecosystem file",
        "description": "Apps for bm2 (PM2-compatible): PM2 snake_case keys and BM2 camelCase keys are both accepted.",
        "oneOf": [
            {
                "type": "object",
                "properties": {
                    "apps": { "type": "array", "items": { "$ref": "#/$defs/App" } },
                    "deploy": {
                        "type": "object",
                        "description": "Environments for `bm2 deploy <file> <env>`.",
                        "additionalProperties": { "$ref": "#/$defs/DeployEnv" }
                    }
                },
                "required": ["apps"]
            },
            { "type": "array", "items": { "$ref": "#/$defs/App" } }
        ],
        "$defs": defs,
    })
}

/// The option reference (docs/configuration.md), generated from the schema and the defaults.
pub fn markdown() -> String {
    let schema = app_schema();
    let defaults = serde_json::to_value(bm2_types::AppSpec::default()).unwrap_or_default();
    let mut out = String::from(
        "# Configuration reference\n\n\
         Every option of an app in an ecosystem file (`ecosystem.config.js`, `.cjs`, `.mjs`, `.ts`, `.json`, `.yaml`, `.toml`).\n\
         Keys are accepted under their PM2 name and under the other names listed (BM2's camelCase names among them).\n\
         Each app may also have `env_<name>` blocks, applied with `--env <name>` (over `deploy.<name>.env`, under them `env`).\n\n\
         Files are read as PM2 reads them:\n\n\
         - Relative `script` and `cwd` are taken from the directory the command is run from (not the file's directory); \
         relative log paths, `env_file` and a relative `interpreter` from the app's `cwd`; `~` is the home directory.\n\
         - `.json` files are JavaScript object literals: comments, trailing commas, single quotes and unquoted keys are fine.\n\
         - A JavaScript config runs in the command's directory; what it prints is shown, and the variables it puts into \
         `process.env` reach the apps. `env` values that are objects or arrays are JSON-stringified.\n\
         - `instances` without `exec_mode` means cluster mode for Node/Bun scripts; a `script` with spaces runs through `bash -c`; \
         an extension-less Node script (`bin/www`) and `npm`, `yarn` or `pnpm` run with node; a directory runs its `index.js` or package `main`.\n\
         - A key given with one of its aliases keeps the key (as PM2 does); PM2 keys with no meaning in bm2 are accepted with a note.\n\
         - Command-line flags given with a file override each app's value.\n\n\
         Generated by `bm2 schema --markdown`; a test keeps it in step with the code. `bm2 schema` prints the JSON Schema.\n\n\
         | key | also accepted as | default | meaning |\n|---|---|---|---|\n",
    );
    for (canonical, aliases) in KEYS {
        let description = schema["properties"][*canonical]["description"]
            .as_str()
            .unwrap_or("")
            .replace('\n', " ")
            .replace('|', "\\|");
        let default = match defaults.get(*canonical) {
            None | Some(Value::Null) => "—".to_string(),
            Some(Value::String(s)) if s.is_empty() => "—".to_string(),
            Some(Value::Array(a)) if a.is_empty() => "—".to_string(),
            Some(Value::Object(o)) if o.is_empty() => "—".to_string(),
            Some(v) => format!("`{v}`"),
        };
        let aliases = aliases
            .iter()
            .map(|a| format!("`{a}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "| `{canonical}` | {aliases} | {default} | {description} |"
        );
    }
    out
}
