//! The value forms PM2 and BM2 files use, each read into one canonical shape.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// A list of words: an array of strings, or one string split like a shell would
/// (`"--port 80 --name 'a b'"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, JsonSchema)]
#[schemars(with = "StringOrList")]
pub struct Words(pub Vec<String>);

/// A list of paths or names: an array of strings, or one string (one item).
#[derive(Debug, Clone, Default, PartialEq, Eq, JsonSchema)]
#[schemars(with = "StringOrList")]
pub struct List(pub Vec<String>);

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

fn string_or_seq<'de, D: Deserializer<'de>>(d: D, split: bool) -> Result<Vec<String>, D::Error> {
    struct V(bool);
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or an array of strings")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            if !self.0 {
                return Ok(vec![s.to_string()]);
            }
            shlex::split(s).ok_or_else(|| E::custom(format!("unbalanced quotes in {s:?}")))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(Scalar(s)) = seq.next_element()? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V(split))
}

impl<'de> Deserialize<'de> for Words {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        string_or_seq(d, true).map(Words)
    }
}

impl<'de> Deserialize<'de> for List {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        string_or_seq(d, false).map(List)
    }
}

/// A string, number or boolean, read as a string (environment values, ids).
#[derive(Debug, Clone, PartialEq, Eq, JsonSchema)]
#[schemars(with = "ScalarForm")]
pub struct Scalar(pub String);

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum ScalarForm {
    S(String),
    N(f64),
    B(bool),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar, E> {
                Ok(Scalar(s.to_string()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Scalar, E> {
                Ok(Scalar(b.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Scalar, E> {
                Ok(Scalar(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Scalar, E> {
                Ok(Scalar(n.to_string()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Scalar, E> {
                Ok(Scalar(n.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// An environment value as PM2 gives it to the app: strings as they are, numbers and booleans
/// written out, objects, arrays and `null` JSON-stringified (PM2's `mergeEnvironmentVariables`).
pub fn env_value(v: serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s,
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => f.to_string(),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Environment variables: an object whose values are strings, numbers or booleans (objects and
/// arrays are JSON-stringified, as PM2 does).
#[derive(Debug, Clone, Default, PartialEq, Eq, JsonSchema)]
#[schemars(with = "BTreeMap<String, ScalarForm>")]
pub struct EnvVars(pub BTreeMap<String, String>);

impl<'de> Deserialize<'de> for EnvVars {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnvVars;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of variables, such as {\"NODE_ENV\": \"production\"}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EnvVars, A::Error> {
                let mut vars = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                    vars.insert(k, env_value(v));
                }
                Ok(EnvVars(vars))
            }
        }
        d.deserialize_map(V)
    }
}

/// Milliseconds: a number, or a string with a unit (`"500ms"`, `"10s"`, `"5m"`, `"1h"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(with = "DurationForm")]
pub struct Millis(pub u64);

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum DurationForm {
    Ms(u64),
    Text(String),
}

impl Millis {
    fn parse(s: &str) -> Option<u64> {
        let t = s.trim();
        let split = t
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num.parse().ok()?;
        let mult = match unit.trim() {
            "" | "ms" => 1.0,
            "s" => 1000.0,
            "m" | "min" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return None,
        };
        (n >= 0.0).then_some((n * mult) as u64)
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Scalar(s) = Scalar::deserialize(d)?;
        Millis::parse(&s).map(Millis).ok_or_else(|| {
            de::Error::custom(format!(
                "expected milliseconds or a duration such as \"10s\", got {s:?}"
            ))
        })
    }
}

/// A whole number, also accepted as a numeric string (`3000` or `"3000"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(with = "DurationForm")]
pub struct Number(pub u64);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Scalar(s) = Scalar::deserialize(d)?;
        s.trim()
            .parse()
            .map(Number)
            .map_err(|_| de::Error::custom(format!("expected a whole number, got {s:?}")))
    }
}

/// Exit codes: one number or an array.
#[derive(Debug, Clone, Default, PartialEq, Eq, JsonSchema)]
#[schemars(with = "CodesForm")]
pub struct Codes(pub Vec<i32>);

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum CodesForm {
    One(i32),
    Many(Vec<i32>),
}

impl<'de> Deserialize<'de> for Codes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Codes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an exit code or an array of exit codes")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Codes, E> {
                i32::try_from(n).map(|n| Codes(vec![n])).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Codes, E> {
                i32::try_from(n).map(|n| Codes(vec![n])).map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Codes, A::Error> {
                let mut out = Vec::new();
                while let Some(n) = seq.next_element::<i32>()? {
                    out.push(n);
                }
                Ok(Codes(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `watch`: `true` (the app's directory), `false`, one path, or several.
#[derive(Debug, Clone, Default, PartialEq, Eq, JsonSchema)]
#[schemars(with = "WatchForm")]
pub struct Watch(pub Vec<String>);

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum WatchForm {
    On(bool),
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for Watch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Watch;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false, a path or an array of paths")
            }
            fn visit_bool<E: de::Error>(self, on: bool) -> Result<Watch, E> {
                Ok(Watch(if on {
                    vec![".".to_string()]
                } else {
                    Vec::new()
                }))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Watch, E> {
                Ok(Watch(vec![s.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Watch, A::Error> {
                let mut out = Vec::new();
                while let Some(p) = seq.next_element::<String>()? {
                    out.push(p);
                }
                Ok(Watch(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `log_file`: a path, or `true` for the default combined file.
#[derive(Debug, Clone, PartialEq, Eq, JsonSchema)]
#[schemars(with = "LogFileForm")]
pub struct LogFile(pub Option<String>);

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum LogFileForm {
    On(bool),
    Path(String),
}

impl<'de> Deserialize<'de> for LogFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LogFile;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path, or true for the default combined log")
            }
            fn visit_bool<E: de::Error>(self, on: bool) -> Result<LogFile, E> {
                Ok(LogFile(on.then(String::new)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<LogFile, E> {
                Ok(LogFile(Some(s.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

/// `exec_mode`: `fork`/`cluster`, also PM2's `fork_mode`/`cluster_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(with = "ExecModeForm")]
pub struct ExecMode(pub bm2_types::ExecMode);

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum ExecModeForm {
    Fork,
    Cluster,
    ForkMode,
    ClusterMode,
}

impl<'de> Deserialize<'de> for ExecMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "fork" | "fork_mode" => Ok(ExecMode(bm2_types::ExecMode::Fork)),
            "cluster" | "cluster_mode" => Ok(ExecMode(bm2_types::ExecMode::Cluster)),
            _ => Err(de::Error::custom(format!(
                "expected \"fork\" or \"cluster\", got {s:?}"
            ))),
        }
    }
}

/// `lb`: `round_robin` or `least_conn` (dashes accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balancing(pub bm2_types::LoadBalancing);

impl<'de> Deserialize<'de> for Balancing {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(Balancing).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: for<'de> Deserialize<'de>>(json: &str) -> Result<T, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn words_split_like_a_shell() {
        assert_eq!(
            parse::<Words>(r#""--port 80 --name 'a b'""#).unwrap().0,
            ["--port", "80", "--name", "a b"]
        );
        assert_eq!(parse::<Words>(r#"["-x", 3]"#).unwrap().0, ["-x", "3"]);
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse::<Millis>("1500").unwrap().0, 1500);
        assert_eq!(parse::<Millis>(r#""10s""#).unwrap().0, 10_000);
        assert_eq!(parse::<Millis>(r#""250ms""#).unwrap().0, 250);
        assert!(
            parse::<Millis>(r#""soon""#)
                .unwrap_err()
                .contains("expected milliseconds")
        );
    }

    #[test]
    fn scalars_env_codes_watch_and_modes() {
        let env = parse::<EnvVars>(r#"{"A": 1, "B": true, "C": "x"}"#)
            .unwrap()
            .0;
        assert_eq!(
            (env["A"].as_str(), env["B"].as_str(), env["C"].as_str()),
            ("1", "true", "x")
        );
        assert_eq!(parse::<Codes>("3").unwrap().0, [3]);
        assert_eq!(parse::<Codes>("[0, 3]").unwrap().0, [0, 3]);
        assert_eq!(parse::<Watch>("true").unwrap().0, ["."]);
        assert!(parse::<Watch>("false").unwrap().0.is_empty());
        assert_eq!(
            parse::<Watch>(r#"["src", "lib"]"#).unwrap().0,
            ["src", "lib"]
        );
        assert_eq!(
            parse::<ExecMode>(r#""cluster_mode""#).unwrap().0,
            bm2_types::ExecMode::Cluster
        );
        assert!(parse::<ExecMode>(r#""forked""#).is_err());
        assert_eq!(parse::<LogFile>("true").unwrap().0.as_deref(), Some(""));
        assert_eq!(parse::<Number>(r#""3000""#).unwrap().0, 3000);
    }
}

/// The apps an app depends on: a list of names (each waited for until `started`), one string of
/// comma-separated names, or an object from name to condition (`started`, `ready`, `completed`).
#[derive(Debug, Clone, Default, PartialEq, Eq, JsonSchema)]
#[schemars(with = "DependsOnForm")]
pub struct DependsOn(pub BTreeMap<String, bm2_types::DependCondition>);

#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum DependsOnForm {
    Names(Vec<String>),
    Text(String),
    Conditions(BTreeMap<String, ConditionForm>),
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum ConditionForm {
    Started,
    Ready,
    Completed,
}

impl DependsOn {
    /// Reads `a,b` (each `started`); a `name:condition` item sets the condition.
    ///
    /// # Errors
    /// An empty name or an unknown condition.
    pub fn parse_list(s: &str) -> Result<DependsOn, String> {
        let mut out = BTreeMap::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, cond) = match item.split_once(':') {
                Some((n, c)) => (n.trim(), c.parse()?),
                None => (item, bm2_types::DependCondition::default()),
            };
            if name.is_empty() {
                return Err(format!("depends_on: an empty app name in {s:?}"));
            }
            out.insert(name.to_string(), cond);
        }
        Ok(DependsOn(out))
    }
}

impl<'de> Deserialize<'de> for DependsOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DependsOn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "app names (an array or \"a,b\"), or an object from app name to started, ready or completed",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                DependsOn::parse_list(s).map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(name) = seq.next_element::<String>()? {
                    if name.trim().is_empty() {
                        return Err(de::Error::custom("depends_on: an empty app name"));
                    }
                    out.insert(
                        name.trim().to_string(),
                        bm2_types::DependCondition::default(),
                    );
                }
                Ok(DependsOn(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((name, cond)) = map.next_entry::<String, String>()? {
                    let cond = cond.parse().map_err(|e: String| {
                        de::Error::custom(format!("depends_on.{name}: {e}"))
                    })?;
                    out.insert(name, cond);
                }
                Ok(DependsOn(out))
            }
        }
        d.deserialize_any(V)
    }
}
