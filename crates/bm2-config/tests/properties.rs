//! Property tests of the ecosystem file reader: whatever a JSON, YAML or TOML file holds (values
//! shaped like ecosystem files, or any bytes at all), loading it gives apps or a clean error that
//! names the file, and never panics.

use std::path::{Path, PathBuf};

use bm2_config::{ConfigError, LoadOptions, Loaded, load_file, load_json};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value};

/// Every key the reader knows: canonical names, their aliases and the accepted no-effect keys.
fn known_keys() -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = bm2_config::raw::KEYS
        .iter()
        .flat_map(|(canonical, aliases)| std::iter::once(*canonical).chain(aliases.iter().copied()))
        .collect();
    keys.extend(bm2_config::raw::NO_EFFECT);
    keys.extend(["apps", "deploy", "env_production", "env_file", "env_"]);
    keys
}

/// Strings that mean something to some option: counts, sizes, modes, signals, schedules, paths.
const MEANINGFUL: &[&str] = &[
    "",
    " ",
    "max",
    "0",
    "-1",
    "+3",
    "-0",
    "4294967296",
    "1e400",
    "NaN",
    "512M",
    "1G",
    "-5K",
    "1.5",
    "0x10",
    "fork",
    "cluster",
    "fork_mode",
    "cluster_mode",
    "none",
    "node",
    "python3",
    "SIGTERM",
    "SIGKILL",
    "SIGNOPE",
    "9",
    "true",
    "false",
    "null",
    "* * * * *",
    "*/5 * * * * *",
    "61 * * * *",
    "@daily",
    "http://127.0.0.1:1/",
    "ftp://x",
    "localhost:0",
    "[::1]:80",
    ":",
    "${HOME}",
    "$X",
    "${",
    "a b 'c d'",
    "\"unterminated",
    "..",
    "/",
    ".",
    "NULL",
    "/dev/null",
    "round-robin",
    "least-conn",
    "json",
    "YYYY-MM-DD HH:mm:ss Z",
    "\u{0}",
    "é",
    "💥",
    "\\",
    "sleep",
    "/bin/true",
    "./app.js",
    "app.py",
    "nobody",
    "root",
    "65534",
];

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        select(MEANINGFUL).prop_map(str::to_string),
        ".{0,24}",
        "[a-zA-Z0-9_ .:/-]{0,16}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-5i64..70_000).prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        string().prop_map(Value::String),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => select(known_keys()).prop_map(str::to_string),
        1 => "env_[a-z_]{0,8}",
        1 => "[a-zA-Z_$.-]{1,12}",
        1 => ".{0,8}",
    ]
}

/// Any JSON value, a few levels deep, whose object keys are mostly ecosystem keys.
fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Values the fixtures give each key (`keys/*.json` has every key in both styles,
/// `forms/forms.json` the other accepted forms).
fn examples(key: &str) -> Vec<Value> {
    static FIXTURES: std::sync::LazyLock<Vec<Value>> = std::sync::LazyLock::new(|| {
        [
            include_str!("fixtures/keys/snake.json"),
            include_str!("fixtures/keys/camel.json"),
            include_str!("fixtures/forms/forms.json"),
        ]
        .iter()
        .map(|t| serde_json::from_str(t).unwrap())
        .collect()
    });
    FIXTURES
        .iter()
        .flat_map(|f| f["apps"].as_array().unwrap())
        .filter_map(|app| app.get(key).cloned())
        .collect()
}

/// A value the key `key` accepts (from the fixtures), one of the type it takes (read from
/// `AppSpec`'s defaults), or sometimes one of any type.
fn field(key: &str) -> BoxedStrategy<Value> {
    let canonical = bm2_config::raw::KEYS
        .iter()
        .find(|(c, aliases)| *c == key || aliases.contains(&key))
        .map_or(key, |(c, _)| *c);
    let default = serde_json::to_value(bm2_types::AppSpec::default()).unwrap()[canonical].clone();
    let typed = match default {
        Value::Bool(_) => any::<bool>().prop_map(Value::Bool).boxed(),
        Value::Number(_) => prop_oneof![(0u64..100_000).prop_map(Value::from), leaf(),].boxed(),
        Value::String(_) => string().prop_map(Value::String).boxed(),
        Value::Array(_) => prop::collection::vec(string().prop_map(Value::String), 0..4)
            .prop_map(Value::Array)
            .boxed(),
        Value::Object(_) => prop::collection::btree_map("[A-Z_]{1,6}|.{0,6}", leaf(), 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
            .boxed(),
        Value::Null => prop_oneof![string().prop_map(Value::String), leaf()].boxed(),
    };
    let examples = examples(key);
    if examples.is_empty() {
        return prop_oneof![9 => typed, 1 => value()].boxed();
    }
    prop_oneof![12 => select(examples), 3 => typed, 1 => value()].boxed()
}

/// Known and unknown keys, each with a value.
fn fields() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec(key().prop_flat_map(|k| (Just(k.clone()), field(&k))), 0..8)
        .prop_map(|pairs| pairs.into_iter().collect())
}

/// An object shaped like an app: known and unknown keys with values of any type, usually with
/// a string `script`.
fn app() -> impl Strategy<Value = Value> {
    (fields(), prop::option::weighted(0.8, string())).prop_map(|(mut map, script)| {
        if let Some(s) = script {
            map.insert("script".into(), Value::String(s));
        }
        Value::Object(map)
    })
}

/// A whole file: `{apps: [...]}`, a bare array of apps, one app, or any value at all.
fn ecosystem() -> impl Strategy<Value = Value> {
    let apps = || prop::collection::vec(app(), 1..4);
    prop_oneof![
        4 => (apps(), prop::collection::btree_map(key(), value(), 0..3)).prop_map(
            |(apps, extra)| {
                let mut map: Map<String, Value> = extra.into_iter().collect();
                map.insert("apps".into(), Value::Array(apps));
                Value::Object(map)
            }
        ),
        2 => apps().prop_map(Value::Array),
        2 => app(),
        1 => value(),
    ]
}

fn options() -> impl Strategy<Value = LoadOptions> {
    (
        prop::bool::weighted(0.2),
        prop::option::of(select(vec!["production", "dev", "", "file"])),
        prop::option::weighted(0.1, select(vec!["api", "worker", "", "x"])),
    )
        .prop_map(|(strict, env, only)| LoadOptions {
            strict,
            env_name: env.map(str::to_string),
            only: only.into_iter().map(str::to_string).collect(),
            ..LoadOptions::default()
        })
}

/// Loading gave apps, or an error naming `shown` (and its display starts with it).
fn check(result: &Result<Loaded, ConfigError>, shown: &str) -> Result<(), TestCaseError> {
    match result {
        Ok(loaded) => {
            prop_assert!(!loaded.apps.is_empty(), "Ok without apps");
            for w in &loaded.warnings {
                prop_assert_eq!(&w.file, shown);
            }
        }
        Err(e) => {
            prop_assert_eq!(&e.file, shown, "error does not name the file: {}", e);
            prop_assert!(
                e.to_string().starts_with(shown),
                "error text does not start with the file: {}",
                e
            );
            prop_assert!(!e.message.trim().is_empty(), "empty message: {:?}", e);
        }
    }
    Ok(())
}

/// Writes `text` to `name` in `dir`, loads it, checks the outcome.
fn load_text(dir: &Path, name: &str, text: &[u8], opts: &LoadOptions) -> Result<(), TestCaseError> {
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let shown = path.display().to_string();
    check(&load_file(&path, opts), &shown)
}

/// TOML has no null: drop them (and give up on values TOML cannot hold).
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|x| !x.is_null())
                .map(without_nulls)
                .collect(),
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, x)| !x.is_null())
                .map(|(k, x)| (k.clone(), without_nulls(x)))
                .collect(),
        ),
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn ecosystem_shaped_values_load_or_fail_cleanly(eco in ecosystem(), opts in options()) {
        let dir = tempfile::tempdir().unwrap();
        let json = serde_json::to_string_pretty(&eco).unwrap();
        load_text(dir.path(), "eco.json", json.as_bytes(), &opts)?;
        check(&load_json(&json, "<stdin>", dir.path().to_path_buf(), &opts), "<stdin>")?;
        let yaml = serde_norway::to_string(&eco).unwrap();
        load_text(dir.path(), "eco.yaml", yaml.as_bytes(), &opts)?;
        if let Ok(toml) = toml::to_string(&without_nulls(&eco)) {
            load_text(dir.path(), "eco.toml", toml.as_bytes(), &opts)?;
        }
    }

    #[test]
    fn any_bytes_load_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.json", "a.yaml", "a.yml", "a.toml"] {
            load_text(dir.path(), name, &bytes, &LoadOptions::default())?;
        }
    }
}

/// Pieces of JSON, YAML and TOML syntax, so that random texts get past the first byte.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "=",
    "\"",
    "'",
    "\n",
    "\n  ",
    "\n    ",
    " ",
    "\t",
    "\r\n",
    "\"apps\"",
    "apps",
    "apps:",
    "[[apps]]",
    "[apps]",
    "\"script\"",
    "script",
    "script:",
    "script = ",
    "name = ",
    "\"x\"",
    "'''",
    "\"\"\"",
    "- ",
    "-",
    "? ",
    "|",
    ">",
    "#",
    "---",
    "...",
    "%YAML 1.2\n",
    "&a ",
    "*a",
    "<<: *a",
    "!!str ",
    "!!binary ",
    "!!int ",
    "!tag ",
    "1",
    "-1",
    "0x1F",
    "1_000",
    "1e999",
    "-0",
    "null",
    "~",
    "true",
    "no",
    "inf",
    "nan",
    "1979-05-27T07:32:00Z",
    "\\u0000",
    "\\ud800",
    "\\",
    "é",
    "💥",
    "\u{feff}",
    "a.b",
    "env_x",
    "instances",
    "max",
    "512M",
    "env",
    "\"env\"",
    "{a = 1}",
    "b.c = 2",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn token_soup_loads_or_fails_cleanly(tokens in prop::collection::vec(select(TOKENS), 0..48)) {
        let text = tokens.concat();
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.json", "a.yaml", "a.toml"] {
            load_text(dir.path(), name, text.as_bytes(), &LoadOptions::default())?;
        }
        check(&load_json(&text, "-", dir.path().to_path_buf(), &LoadOptions::default()), "-")?;
    }
}
