//! Reading an ecosystem file: JSON, YAML and TOML are parsed here; JavaScript and TypeScript are
//! evaluated with the user's runtime (node or bun), which prints the config as JSON.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bm2_types::runtime::find_program;
use std::process::Command;

use serde::de::DeserializeOwned;

use crate::error::{ConfigError, position};
use crate::run;

/// The kinds of ecosystem files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.json`
    Json,
    /// `.yaml`, `.yml`
    Yaml,
    /// `.toml`
    Toml,
    /// `.js`, `.cjs`, `.mjs`
    JavaScript,
    /// `.ts`, `.mts`, `.cts`
    TypeScript,
}

impl Format {
    /// The format of a file, by its extension.
    pub fn of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "json" | "json5" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            "toml" => Some(Format::Toml),
            "js" | "cjs" | "mjs" => Some(Format::JavaScript),
            "ts" | "mts" | "cts" => Some(Format::TypeScript),
            _ => None,
        }
    }
}

/// True when `bm2 start <path>` should read `path` as an ecosystem file rather than run it:
/// JSON, YAML and TOML files, and scripts named like `ecosystem.config.js` or `*.config.ts`.
pub fn is_ecosystem_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    match Format::of(path) {
        Some(Format::Json | Format::Yaml | Format::Toml) => true,
        Some(Format::JavaScript | Format::TypeScript) => {
            name.starts_with("ecosystem") || name.contains(".config.")
        }
        None => false,
    }
}

/// Text of a config to parse: its own text, or the JSON printed by evaluating it.
pub struct Text {
    /// The text.
    pub body: String,
    /// How to parse it.
    pub kind: Kind,
    /// False when the text was produced by evaluating a script, whose line numbers mean nothing
    /// to the user.
    pub has_lines: bool,
    /// Variables a JavaScript config put into `process.env` (e.g. `require('dotenv').config()`):
    /// under PM2 they reach the apps, whose environment starts from the CLI's.
    pub env: crate::Vars,
    /// What a JavaScript config printed on stdout while it was evaluated.
    pub printed: String,
}

impl Text {
    /// The text of a data file; JSON is read as PM2 reads it, as a JavaScript object literal.
    pub fn data(body: String, kind: Kind) -> Text {
        let body = if kind == Kind::Json {
            crate::literal::to_json(&body)
        } else {
            body
        };
        Text {
            body,
            kind,
            has_lines: true,
            env: crate::Vars::new(),
            printed: String::new(),
        }
    }
}

/// A data format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// JSON.
    Json,
    /// YAML.
    Yaml,
    /// TOML.
    Toml,
}

/// Reads (or evaluates, in `cwd`: the directory the command is run from) the file at `path`.
pub fn read(path: &Path, shown: &str, cwd: &Path) -> Result<Text, ConfigError> {
    let format = Format::of(path).ok_or_else(|| {
        ConfigError::file(
            shown,
            "not an ecosystem file: use .js, .cjs, .mjs, .ts, .json, .yaml, .yml or .toml",
        )
    })?;
    let kind = match format {
        Format::Json => Kind::Json,
        Format::Yaml => Kind::Yaml,
        Format::Toml => Kind::Toml,
        Format::JavaScript | Format::TypeScript => {
            return evaluate(path, shown, format == Format::TypeScript, cwd);
        }
    };
    let body = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::file(shown, format!("cannot read: {e}")))?;
    Ok(Text::data(body, kind))
}

/// Deepest nesting of YAML flow collections read. The YAML parser takes time that grows with the
/// square of flow nesting (a 200 KB file of `[` took most of a minute), and the deserializer
/// refuses anything deeper than this anyway.
const MAX_FLOW_DEPTH: usize = 128;

/// Where YAML flow collections (`[`, `{`) first nest deeper than [`MAX_FLOW_DEPTH`], as a line
/// and column; found by a quick scan that skips quoted scalars and comments and counts only
/// brackets that open a collection (after `:`, `-`, `?` or at the start of a line, and inside a
/// collection after `,` or another bracket), so that brackets inside plain text are not counted.
fn too_deep_flow(text: &str) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let (mut line, mut col) = (1usize, 0usize);
    let mut quote: Option<char> = None;
    let mut comment = false;
    let mut prev = '\n';
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        col += 1;
        if c == '\n' {
            (line, col, comment) = (line + 1, 0, false);
            if quote.is_none() {
                prev = c;
            }
            continue;
        }
        if comment {
            continue;
        }
        match quote {
            Some('"') if c == '\\' => {
                chars.next();
                col += 1;
                continue;
            }
            Some(q) if c == q => {
                quote = None;
                prev = c;
                continue;
            }
            Some(_) => continue,
            None => {}
        }
        match c {
            '"' | '\'' if matches!(prev, ':' | '-' | ',' | '[' | '{' | '?' | '\n' | ' ') => {
                quote = Some(c);
            }
            '#' if matches!(prev, ' ' | '\t' | '\n') => comment = true,
            '[' | '{'
                if matches!(prev, ':' | '-' | '?' | '\n')
                    || (depth > 0 && matches!(prev, ',' | '[' | '{')) =>
            {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Some((line, col));
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if !c.is_whitespace() {
            prev = c;
        } else if prev == '\n' {
            // Indentation keeps the start of the line.
        } else if matches!(prev, ':' | '-' | ',' | '[' | '{' | '?') {
            // A space after an indicator keeps it as the previous token.
        } else {
            prev = ' ';
        }
    }
    None
}

/// Parses `text` into `T`, tracking the key path of any error and the keys that `T` ignores.
pub fn parse<T: DeserializeOwned>(
    text: &Text,
    shown: &str,
) -> Result<(T, Vec<String>), ConfigError> {
    let mut ignored = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let on_ignored = |p: serde_ignored::Path| ignored.push(p.to_string());
    let result = match text.kind {
        Kind::Json => {
            let mut de = serde_json::Deserializer::from_str(&text.body);
            let de = serde_path_to_error::Deserializer::new(&mut de, &mut track);
            serde_ignored::deserialize(de, on_ignored).map_err(|e| {
                let (line, col) = (e.line(), e.column());
                let msg = e.to_string();
                let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
                (msg, (line > 0).then_some((line, col)))
            })
        }
        Kind::Yaml if let Some(pos) = too_deep_flow(&text.body) => Err((
            format!(
                "recursion limit exceeded: flow collections ([...] or {{...}}) nested more than \
                 {MAX_FLOW_DEPTH} deep"
            ),
            Some(pos),
        )),
        Kind::Yaml => {
            let de = serde_norway::Deserializer::from_str(&text.body);
            let de = serde_path_to_error::Deserializer::new(de, &mut track);
            serde_ignored::deserialize(de, on_ignored).map_err(|e| {
                let pos = e.location().map(|l| (l.line(), l.column()));
                let msg = e.to_string();
                let msg = msg.split(" at line ").next().unwrap_or(&msg);
                // The YAML parser starts its messages with the path, which is reported apart.
                let msg = match msg.split_once(": ") {
                    Some((path, rest)) if !path.contains(' ') => rest,
                    _ => msg,
                };
                (msg.to_string(), pos)
            })
        }
        Kind::Toml => match toml::de::Deserializer::parse(&text.body) {
            Ok(de) => {
                let de = serde_path_to_error::Deserializer::new(de, &mut track);
                serde_ignored::deserialize(de, on_ignored).map_err(|e| {
                    let pos = e.span().map(|s| position(&text.body, s.start));
                    (e.message().to_string(), pos)
                })
            }
            Err(e) => Err((
                e.message().to_string(),
                e.span().map(|s| position(&text.body, s.start)),
            )),
        },
    };
    match result {
        Ok(v) => Ok((
            v,
            ignored.into_iter().map(|p| bracket_indices(&p)).collect(),
        )),
        Err((message, pos)) => {
            let path = bracket_indices(&track.path().to_string());
            let mut err = ConfigError::file(shown, message);
            if text.has_lines {
                let mut pos = pos;
                // Parsers point after the value (JSON, TOML) or at the start of the mapping
                // (YAML); the line of the key itself is clearer.
                let app_key = path.rsplit('.').next().filter(|k| {
                    [crate::raw::KEYS, crate::deploy::KEYS]
                        .iter()
                        .any(|keys| keys.iter().any(|(c, a)| c == k || a.contains(k)))
                        || k.starts_with("env_")
                });
                if let (Some((line, _)), Some(key)) = (pos, app_key)
                    && let Some(key_line) = crate::error::line_of_key_near(
                        &text.body,
                        key,
                        line,
                        text.kind == Kind::Yaml,
                    )
                {
                    pos = Some((key_line, 1));
                }
                err = err.at(pos.map(|p| p.0), pos.map(|p| p.1));
            }
            if !path.is_empty() && path != "." && path != "?" {
                err = err.at_key(path);
            }
            Err(err)
        }
    }
}

/// Reads `T` from a value already parsed from `text` (and changed since), tracking the key path
/// of any error and the keys that `T` ignores; errors point at the line of their key.
pub fn parse_value<T: DeserializeOwned>(
    value: serde_json::Value,
    text: &Text,
    shown: &str,
) -> Result<(T, Vec<String>), ConfigError> {
    let mut ignored = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let on_ignored = |p: serde_ignored::Path| ignored.push(p.to_string());
    let de = serde_path_to_error::Deserializer::new(value, &mut track);
    match serde_ignored::deserialize(de, on_ignored) {
        Ok(v) => Ok((
            v,
            ignored.into_iter().map(|p| bracket_indices(&p)).collect(),
        )),
        Err(e) => {
            let path = bracket_indices(&track.path().to_string());
            let mut err = ConfigError::file(shown, e.to_string());
            if text.has_lines
                && let Some(key) = path.rsplit('.').next()
            {
                err = err.at(crate::error::line_of_key(&text.body, key), None);
            }
            if !path.is_empty() && path != "." && path != "?" {
                err = err.at_key(path);
            }
            Err(err)
        }
    }
}

/// `apps.1.instances` (or `apps[1].instances`) as `apps[1].instances`.
pub fn bracket_indices(path: &str) -> String {
    let mut out = String::new();
    for part in path.split('.') {
        if part.chars().all(|c| c.is_ascii_digit()) && !part.is_empty() {
            let _ = write!(out, "[{part}]");
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// Evaluates the config and prints, after a marker line, the config and the variables it put
/// into `process.env`, as JSON. What the config prints itself comes before the marker.
const LOADER: &str = r#"
const marker = process.env.BM2_CONFIG_MARKER;
delete process.env.BM2_CONFIG_MARKER;
const file = process.env.BM2_ECOSYSTEM_FILE;
delete process.env.BM2_ECOSYSTEM_FILE;
const before = Object.assign({}, process.env);
const { pathToFileURL } = await import("node:url");
const mod = await import(pathToFileURL(file).href);
let cfg = mod.default !== undefined ? mod.default : mod;
if (typeof cfg === "function") cfg = cfg();
cfg = await cfg;
const env = {};
for (const [k, v] of Object.entries(process.env)) if (before[k] !== v) env[k] = v;
// env values that are objects are JSON-stringified as PM2 does, here, in the config's key order.
const stringify = (app) => {
  if (!app || typeof app !== "object") return;
  for (const key of Object.keys(app)) {
    const block = app[key];
    if ((key === "env" || key.startsWith("env_")) && block && typeof block === "object")
      for (const [k, v] of Object.entries(block))
        if (v !== null && typeof v === "object") block[k] = JSON.stringify(v);
  }
};
if (Array.isArray(cfg)) cfg.forEach(stringify);
else if (cfg && Array.isArray(cfg.apps)) cfg.apps.forEach(stringify);
else if (cfg && Array.isArray(cfg.pm2)) cfg.pm2.forEach(stringify);
else stringify(cfg);
const out = JSON.stringify({ config: cfg === undefined ? null : cfg, env });
// Timers or sockets the config left open would keep the runtime up: the config is read, exit.
process.stdout.write("\n" + marker + "\n" + out, () => process.exit(0));
"#;

/// Runs the config script with node (or bun, for TypeScript) and returns the JSON it prints.
/// The run is bounded by [`run::timeout`]: past it, the runtime and what it started are killed.
fn evaluate(path: &Path, shown: &str, typescript: bool, cwd: &Path) -> Result<Text, ConfigError> {
    let path_var = std::env::var("PATH").unwrap_or_default();
    let (program, pre_args): (PathBuf, Vec<&str>) = if typescript {
        let bun = find_program("bun", &path_var);
        let node_version = match (&bun, find_program("node", &path_var)) {
            (None, Some(node)) => node_version(&node),
            _ => None,
        };
        let runner = bm2_types::runtime::ts_runner(bun.is_some(), node_version).map_err(|e| {
            ConfigError::file(shown, format!("cannot read a TypeScript config: {e}"))
        })?;
        let (name, args) = runner.command();
        let program = find_program(name, &path_var).unwrap_or_else(|| PathBuf::from(name));
        (program, args.to_vec())
    } else {
        let node = find_program("node", &path_var).ok_or_else(|| {
            ConfigError::file(shown, "cannot read a JavaScript config: node is not on PATH; install Node.js (or use a .json, .yaml or .toml file)")
        })?;
        (node, Vec::new())
    };
    let is_bun = program.file_name().is_some_and(|n| n == "bun");
    let mut cmd = Command::new(&program);
    cmd.args(&pre_args);
    if !is_bun {
        cmd.arg("--input-type=module");
    }
    let abs = std::fs::canonicalize(path)
        .map_err(|e| ConfigError::file(shown, format!("cannot read: {e}")))?;
    let limit = run::timeout().map_err(|e| ConfigError::file(shown, e))?;
    let marker = marker();
    cmd.arg("-e")
        .arg(LOADER)
        .env("BM2_ECOSYSTEM_FILE", &abs)
        .env("BM2_CONFIG_MARKER", &marker)
        .current_dir(cwd);
    let out = run::output_within(&mut cmd, limit).map_err(|e| match e {
        run::RunError::Spawn(e) => {
            ConfigError::file(shown, format!("cannot run {}: {e}", program.display()))
        }
        run::RunError::TimedOut { exited } => timed_out(shown, &program, limit, exited),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(ConfigError::file(
            shown,
            format!(
                "{} failed to evaluate it:\n{}",
                program.display(),
                stderr.trim_end()
            ),
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some((printed, result)) = stdout.rsplit_once(&format!("\n{marker}\n")) else {
        return Err(ConfigError::file(
            shown,
            format!("{} evaluated it but gave no config", program.display()),
        ));
    };
    let mut value: serde_json::Value = serde_json::from_str(result)
        .map_err(|e| ConfigError::file(shown, format!("cannot read the evaluated config: {e}")))?;
    let env = match value.get_mut("env").map(serde_json::Value::take) {
        Some(serde_json::Value::Object(m)) => m
            .into_iter()
            .map(|(k, v)| (k, crate::forms::env_value(v)))
            .collect(),
        _ => crate::Vars::new(),
    };
    let config = value
        .get_mut("config")
        .map(serde_json::Value::take)
        .unwrap_or_default();
    Ok(Text {
        body: config.to_string(),
        kind: Kind::Json,
        has_lines: false,
        env,
        printed: printed.to_string(),
    })
}

/// A line the config cannot print by chance: the output after it is bm2's.
fn marker() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("--bm2-config-{}-{nanos:x}--", std::process::id())
}

fn timed_out(shown: &str, program: &Path, limit: Duration, exited: bool) -> ConfigError {
    let ms = limit.as_millis();
    let what = if exited {
        format!(
            "{} evaluated it, but a process the config started kept its output open past the \
             time limit of {ms} ms",
            program.display()
        )
    } else {
        format!(
            "the config did not finish within the time limit of {ms} ms (run by {}): a promise \
             that never settles or an endless loop",
            program.display()
        )
    };
    ConfigError::file(
        shown,
        format!(
            "{what}; bm2 stopped it and the processes it started. Fix the config, or allow more \
             time with {}=<milliseconds>",
            run::TIMEOUT_VAR
        ),
    )
}

fn node_version(node: &Path) -> Option<(u32, u32)> {
    let out = Command::new(node).arg("--version").output().ok()?;
    bm2_types::runtime::parse_node_version(&String::from_utf8_lossy(&out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecosystem_files_are_told_from_scripts() {
        assert!(is_ecosystem_file(Path::new("ecosystem.config.js")));
        assert!(is_ecosystem_file(Path::new("/srv/pm2.config.cjs")));
        assert!(is_ecosystem_file(Path::new("apps.json")));
        assert!(is_ecosystem_file(Path::new("apps.yml")));
        assert!(is_ecosystem_file(Path::new("bm2.config.ts")));
        assert!(!is_ecosystem_file(Path::new("server.js")));
        assert!(!is_ecosystem_file(Path::new("main.ts")));
        assert!(!is_ecosystem_file(Path::new("run.sh")));
    }

    #[test]
    fn deep_yaml_flow_nesting_is_found_without_parsing() {
        let deep = format!("apps: {}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(too_deep_flow(&deep), Some((1, 6 + MAX_FLOW_DEPTH + 1)));
        let maps = format!("apps: {}1{}", "{a: ".repeat(200), "}".repeat(200));
        assert!(too_deep_flow(&maps).is_some());
        let fine =
            "apps:\n  - name: api\n    args: [\"--x\", \"[[[[\"]\n    env: {A: '[{[{', B: 2}\n";
        assert_eq!(too_deep_flow(fine), None);
        let text = format!(
            "script: |\n  echo {}\n# {}\n",
            "[".repeat(300),
            "{".repeat(300)
        );
        assert_eq!(
            too_deep_flow(&text),
            None,
            "brackets in plain text and comments"
        );
    }

    #[test]
    fn paths_use_brackets() {
        assert_eq!(bracket_indices("apps.1.instances"), "apps[1].instances");
        assert_eq!(bracket_indices("0.name"), "[0].name");
    }
}
