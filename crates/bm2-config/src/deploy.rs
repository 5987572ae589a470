//! The `deploy` section of an ecosystem file (`bm2 deploy <file> <env>`): PM2's keys
//! (`user`, `host`, `port`, `ref`, `repo`, `path`, `key`, `ssh_options`, `pre-setup`,
//! `post-setup`, `pre-deploy-local`, `pre-deploy`, `post-deploy`, `env`, `fetch`) and BM2's
//! camelCase ones (`preSetup`, `postSetup`, `preDeploy` — run locally, as BM2 documents it —
//! and `postDeploy`), read into one typed [`DeployEnv`] per environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::{ConfigError, Warning, line_of_key, line_of_key_near};
use crate::forms::{EnvVars, List, Number};
use crate::source::{self, Text};

/// Releases kept on each host when the file does not say.
pub const DEFAULT_KEEP_RELEASES: u32 = 5;

/// One SSH destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The user to log in as (`user`, or `user@` in the host entry); none: ssh's default.
    pub user: Option<String>,
    /// The host name or address, as ssh takes it (an alias of `~/.ssh/config` works).
    pub host: String,
    /// The port (`port`, or `:port` in the host entry); none: ssh's default.
    pub port: Option<u16>,
}

/// The commands run around a setup or a deploy. Each is shell code, run with `sh -c`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    /// Remote, before the layout is made (`pre-setup`, `preSetup`).
    pub pre_setup: Option<String>,
    /// Remote, in the clone, after setup (`post-setup`, `postSetup`).
    pub post_setup: Option<String>,
    /// Local, in the file's directory, before anything is sent (`pre-deploy-local`, BM2's
    /// `preDeploy`).
    pub pre_deploy_local: Option<String>,
    /// Remote, in the new release, before it becomes current (`pre-deploy`).
    pub pre_deploy: Option<String>,
    /// Remote, in the new release, once it is current (`post-deploy`, `postDeploy`).
    pub post_deploy: Option<String>,
}

/// One environment of the `deploy` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployEnv {
    /// Its name (`production`).
    pub name: String,
    /// Where to deploy, in order.
    pub targets: Vec<Target>,
    /// The git repository, as the remote host reaches it.
    pub repo: String,
    /// The ref deployed by default (`origin/main`, a branch, a tag, a commit).
    pub reference: String,
    /// The directory on the hosts that holds `source`, `releases`, `current` and `shared`.
    pub path: String,
    /// `-i` key file for ssh (`~` expanded).
    pub key: Option<PathBuf>,
    /// Extra ssh options (`-o` values such as `StrictHostKeyChecking=no`, or raw arguments).
    pub ssh_options: Vec<String>,
    /// The hooks.
    pub hooks: Hooks,
    /// Variables for the hooks (local and remote).
    pub env: BTreeMap<String, String>,
    /// `fetch: "all"`: fetch every remote, not only `origin`.
    pub fetch_all: bool,
    /// Releases kept on each host (`keep_releases`, at least 1).
    pub keep_releases: u32,
    /// When `post-deploy` fails, make the previous release current again (default); with
    /// `rollback_on_failure: false`, leave the new one, as PM2 does.
    pub rollback_on_failure: bool,
}

/// The `deploy` section of a file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploySection {
    /// The environments, by name.
    pub envs: BTreeMap<String, DeployEnv>,
}

/// The keys of an environment: each canonical name and its other spellings.
pub const KEYS: &[(&str, &[&str])] = &[
    ("user", &[]),
    ("host", &[]),
    ("port", &[]),
    ("ref", &[]),
    ("repo", &[]),
    ("path", &[]),
    ("key", &[]),
    ("ssh_options", &["sshOptions"]),
    ("forward-agent", &["forward_agent", "forwardAgent"]),
    ("needs_tty", &["needsTty"]),
    ("pre-setup", &["preSetup", "pre_setup"]),
    ("post-setup", &["postSetup", "post_setup"]),
    (
        "pre-deploy-local",
        &["preDeploy", "pre_deploy_local", "preDeployLocal"],
    ),
    ("pre-deploy", &["pre_deploy"]),
    ("post-deploy", &["postDeploy", "post_deploy"]),
    ("env", &[]),
    ("fetch", &[]),
    ("keep_releases", &["keepReleases"]),
    ("rollback_on_failure", &["rollbackOnFailure"]),
];

/// The keys of the environments, required first, in the order [`KEYS`] gives.
const REQUIRED: &[&str] = &["host", "repo", "path", "ref"];

/// One environment of the `deploy` section, as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(default)]
pub struct RawDeployEnv {
    /// User to log in as (default: ssh's, from `~/.ssh/config` or the local user).
    pub user: Option<String>,
    /// Host, or hosts deployed in order: `[user@]host[:port]` each, IPv6 addresses in brackets.
    pub host: Option<List>,
    /// SSH port (default: ssh's); a `:port` in a host entry wins.
    pub port: Option<Number>,
    /// The git ref deployed (`origin/main`, a branch, a tag, a commit).
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    /// The git repository, as the hosts reach it.
    pub repo: Option<String>,
    /// Absolute directory on the hosts (or `~/dir`), holding `source`, `releases`, `current`
    /// and `shared`.
    pub path: Option<String>,
    /// Private key file for ssh (`-i`); `~/` is the home directory.
    pub key: Option<String>,
    /// Extra ssh options: each entry one `-o` value (`StrictHostKeyChecking=no`), or ssh
    /// arguments when it starts with `-` (`-A`, `-J bastion`).
    #[serde(alias = "sshOptions")]
    pub ssh_options: Option<List>,
    /// Forward the ssh agent (`ForwardAgent=yes`).
    #[serde(
        rename = "forward-agent",
        alias = "forward_agent",
        alias = "forwardAgent"
    )]
    pub forward_agent: Option<bool>,
    /// Ask the hosts for a terminal (`RequestTTY=yes`).
    #[serde(alias = "needsTty")]
    pub needs_tty: Option<bool>,
    /// Remote command run before the layout is made.
    #[serde(rename = "pre-setup", alias = "preSetup", alias = "pre_setup")]
    pub pre_setup: Option<String>,
    /// Remote command run in the clone after setup.
    #[serde(rename = "post-setup", alias = "postSetup", alias = "post_setup")]
    pub post_setup: Option<String>,
    /// Local command run in the file's directory before anything is sent.
    #[serde(
        rename = "pre-deploy-local",
        alias = "preDeploy",
        alias = "pre_deploy_local",
        alias = "preDeployLocal"
    )]
    pub pre_deploy_local: Option<String>,
    /// Remote command run in the new release before it becomes current.
    #[serde(rename = "pre-deploy", alias = "pre_deploy")]
    pub pre_deploy: Option<String>,
    /// Remote command run in the new release once it is current.
    #[serde(rename = "post-deploy", alias = "postDeploy", alias = "post_deploy")]
    pub post_deploy: Option<String>,
    /// Variables exported for the hooks (and given to the apps by `--env <name>`).
    pub env: Option<EnvVars>,
    /// `"all"`: fetch every remote, not only `origin`.
    pub fetch: Option<String>,
    /// Releases kept on each host (default 5, at least 1).
    #[serde(alias = "keepReleases")]
    pub keep_releases: Option<Number>,
    /// Make the previous release current again when `post-deploy` fails (default `true`).
    #[serde(alias = "rollbackOnFailure")]
    pub rollback_on_failure: Option<bool>,
}

#[derive(Deserialize)]
struct DeployFile {
    #[serde(default)]
    deploy: Option<BTreeMap<String, RawDeployEnv>>,
}

/// Reads the `deploy` section of the ecosystem file at `path` (any format the loader reads;
/// JavaScript is evaluated in `cwd`), with warnings for unknown keys.
pub fn load_deploy(path: &Path, cwd: &Path) -> Result<(DeploySection, Vec<Warning>), ConfigError> {
    let shown = path.display().to_string();
    let text = source::read(path, &shown, cwd)?;
    load_deploy_text(&text, &shown)
}

/// Reads the `deploy` section of a config already read.
pub fn load_deploy_text(
    text: &Text,
    shown: &str,
) -> Result<(DeploySection, Vec<Warning>), ConfigError> {
    let value = source::parse::<serde_json::Value>(text, shown)?.0;
    let Some(deploy) = value.get("deploy") else {
        return Ok((DeploySection::default(), Vec::new()));
    };
    if !deploy.is_object() && !deploy.is_null() {
        let line = lines(text).and_then(|b| line_of_key(b, "deploy"));
        return Err(ConfigError::file(
            shown,
            "expected an object of environments, such as {\"production\": {...}}",
        )
        .at_key("deploy")
        .at(line, None));
    }
    let (file, ignored) = source::parse::<DeployFile>(text, shown)?;
    let mut warnings = Vec::new();
    for path in ignored {
        // Map entries show as `?` before their key.
        let path = path.replace(".?.", ".");
        let Some(rest) = path.strip_prefix("deploy.") else {
            continue;
        };
        let key = rest.rsplit('.').next().unwrap_or(rest);
        let env = rest.split('.').next().unwrap_or(rest);
        let line =
            env_line(text, env).and_then(|l| line_of_key_near(text.body.as_str(), key, l, true));
        let hint = match crate::raw::closest_in(KEYS, key) {
            Some(k) => format!("unknown deploy key; did you mean {k}?"),
            None => "unknown deploy key".to_string(),
        };
        warnings.push(
            ConfigError::file(shown, hint)
                .at_key(path.clone())
                .at(line, None),
        );
    }
    let mut section = DeploySection::default();
    for (name, raw) in file.deploy.unwrap_or_default() {
        let env = resolve(&name, raw, text, shown, &mut warnings)?;
        section.envs.insert(name, env);
    }
    Ok((section, warnings))
}

impl DeploySection {
    /// The environment `name`; `file` is named in the error when there is none such.
    pub fn env(&self, name: &str, file: &str) -> Result<&DeployEnv, ConfigError> {
        if self.envs.is_empty() {
            return Err(ConfigError::file(
                file,
                "no deploy environments: the file has no `deploy` section (add `deploy: { <env>: { host, repo, path, ref } }`)",
            ));
        }
        self.envs.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.envs.keys().map(String::as_str).collect();
            ConfigError::file(
                file,
                format!(
                    "no deploy environment {name:?}; the file has: {}",
                    known.join(", ")
                ),
            )
        })
    }
}

/// The text, when its lines are the user's.
fn lines(text: &Text) -> Option<&str> {
    text.has_lines.then_some(text.body.as_str())
}

/// The line of environment `env` inside `deploy`.
fn env_line(text: &Text, env: &str) -> Option<usize> {
    let body = lines(text)?;
    let deploy = line_of_key(body, "deploy").unwrap_or(1);
    line_of_key_near(body, env, deploy, true)
}

/// Resolves one environment; `warnings` gets what is accepted with no effect.
fn resolve(
    name: &str,
    raw: RawDeployEnv,
    text: &Text,
    shown: &str,
    warnings: &mut Vec<Warning>,
) -> Result<DeployEnv, ConfigError> {
    let env_line = env_line(text, name);
    let fail = |key: &str, message: String| {
        let line = env_line.and_then(|l| line_of_key_near(&text.body, key, l, true));
        ConfigError::file(shown, message)
            .at_key(format!("deploy.{name}.{key}"))
            .at(line, None)
    };
    let missing = |key: &str| {
        ConfigError::file(shown, format!("required: {}", required_hint(key)))
            .at_key(format!("deploy.{name}.{key}"))
            .at(env_line, None)
    };
    let hosts = raw.host.ok_or_else(|| missing("host"))?.0;
    let repo = non_empty(raw.repo).ok_or_else(|| missing("repo"))?;
    let path = non_empty(raw.path).ok_or_else(|| missing("path"))?;
    let reference = non_empty(raw.reference).ok_or_else(|| missing("ref"))?;
    if hosts.is_empty() {
        return Err(fail(
            "host",
            "no hosts: give a host name, or an array of them".into(),
        ));
    }
    if let Some(user) = &raw.user {
        check_user(user).map_err(|m| fail("user", m))?;
    }
    let port = match raw.port {
        Some(Number(p)) => Some(port_number(p).map_err(|m| fail("port", m))?),
        None => None,
    };
    let targets = hosts
        .iter()
        .map(|h| target(h, raw.user.as_deref(), port))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|m| fail("host", m))?;
    if repo.starts_with('-') {
        return Err(fail(
            "repo",
            format!("{repo:?} would be read by git as an option"),
        ));
    }
    if reference.starts_with('-') || reference.chars().any(char::is_whitespace) {
        return Err(fail(
            "ref",
            format!("{reference:?} is not a git ref (no leading `-`, no spaces)"),
        ));
    }
    let path = remote_path(&path).map_err(|m| fail("path", m))?;
    let mut ssh_options = match raw.ssh_options {
        Some(List(entries)) => ssh_options(&entries).map_err(|m| fail("ssh_options", m))?,
        None => Vec::new(),
    };
    if raw.forward_agent == Some(true) {
        ssh_options.push("ForwardAgent=yes".into());
    }
    if raw.needs_tty == Some(true) {
        ssh_options.push("RequestTTY=yes".into());
    }
    let env = raw.env.map(|e| e.0).unwrap_or_default();
    if let Some(bad) = env.keys().find(|k| !is_identifier(k)) {
        return Err(fail(
            "env",
            format!(
                "{bad:?} is not a variable name the remote shell can export (letters, digits and `_`, not starting with a digit)"
            ),
        ));
    }
    let fetch_all = match raw.fetch.as_deref() {
        None | Some("" | "origin") => false,
        Some("all") => true,
        Some("fast") => {
            warnings.push(
                ConfigError::file(
                    shown,
                    "\"fast\" (a shallow clone in PM2) has no effect: bm2 fetches the whole history, which releases and rollbacks need",
                )
                .at_key(format!("deploy.{name}.fetch"))
                .at(env_line.and_then(|l| line_of_key_near(&text.body, "fetch", l, true)), None),
            );
            false
        }
        Some(other) => {
            return Err(fail(
                "fetch",
                format!("expected \"all\" (fetch every remote), got {other:?}"),
            ));
        }
    };
    let keep_releases = match raw.keep_releases {
        None => DEFAULT_KEEP_RELEASES,
        Some(Number(n)) => u32::try_from(n)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| fail("keep_releases", format!("expected at least 1, got {n}")))?,
    };
    Ok(DeployEnv {
        name: name.to_string(),
        targets,
        repo,
        reference,
        path,
        key: raw.key.map(|k| expand_home(&k)),
        ssh_options,
        hooks: Hooks {
            pre_setup: non_empty(raw.pre_setup),
            post_setup: non_empty(raw.post_setup),
            pre_deploy_local: non_empty(raw.pre_deploy_local),
            pre_deploy: non_empty(raw.pre_deploy),
            post_deploy: non_empty(raw.post_deploy),
        },
        env,
        fetch_all,
        keep_releases,
        rollback_on_failure: raw.rollback_on_failure.unwrap_or(true),
    })
}

fn required_hint(key: &str) -> String {
    debug_assert!(REQUIRED.contains(&key));
    match key {
        "host" => "the host (or hosts) to deploy to, such as \"web1.example.com\"".into(),
        "repo" => {
            "the git repository the hosts clone, such as \"git@github.com:org/app.git\"".into()
        }
        "path" => "the absolute directory on the hosts, such as \"/var/www/app\"".into(),
        _ => "the git ref to deploy, such as \"origin/main\"".into(),
    }
}

/// `None` for a missing, empty or blank string (PM2's deploy script skips empty hooks).
fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

fn port_number(p: u64) -> Result<u16, String> {
    u16::try_from(p)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{p} is not a port (1-65535)"))
}

/// True for a name the shell can export: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_user(user: &str) -> Result<(), String> {
    if user.is_empty()
        || user.starts_with('-')
        || user.contains('@')
        || user.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{user:?} is not a login name (no spaces, `@` or leading `-`)"
        ));
    }
    Ok(())
}

/// One host entry, `[user@]host[:port]` (`[v6]:port` for IPv6; a bare IPv6 address has no
/// port); the entry's user and port win over `user` and `port`.
fn target(entry: &str, user: Option<&str>, port: Option<u16>) -> Result<Target, String> {
    let bad = |why: &str| Err(format!("host {entry:?}: {why}"));
    if entry.trim().is_empty() {
        return bad("empty");
    }
    if entry.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("a host has no spaces (give ssh options in ssh_options, the port in port)");
    }
    let (entry_user, rest) = match entry.rsplit_once('@') {
        Some((u, rest)) => (Some(u), rest),
        None => (None, entry),
    };
    if let Some(u) = entry_user {
        check_user(u).map_err(|m| format!("host {entry:?}: {m}"))?;
    }
    let (host, entry_port) = if let Some(inner) = rest.strip_prefix('[') {
        let Some((addr, after)) = inner.split_once(']') else {
            return bad("unclosed `[`");
        };
        match after {
            "" => (addr, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (addr, Some(p)),
                None => return bad("expected `:port` after `]`"),
            },
        }
    } else {
        match rest.split_once(':') {
            Some((h, p)) if !p.contains(':') => (h, Some(p)),
            // Two colons or more: an IPv6 address, without a port.
            _ => (rest, None),
        }
    };
    if host.is_empty() {
        return bad("no host name");
    }
    if host.starts_with('-') {
        return bad("a host cannot start with `-` (ssh would read it as an option)");
    }
    let port = match entry_port {
        Some(p) => Some(
            p.parse::<u64>()
                .map_err(|_| format!("host {entry:?}: {p:?} is not a port"))
                .and_then(|p| port_number(p).map_err(|m| format!("host {entry:?}: {m}")))?,
        ),
        None => port,
    };
    Ok(Target {
        user: entry_user.or(user).map(str::to_string),
        host: host.to_string(),
        port,
    })
}

/// The deploy directory: absolute, or under the remote home (`~/app`); trailing `/` dropped.
fn remote_path(path: &str) -> Result<String, String> {
    if !(path.starts_with('/') || path == "~" || path.starts_with("~/")) {
        return Err(format!(
            "{path:?} is relative: give the absolute directory on the hosts (or ~/dir under the remote home)"
        ));
    }
    if path.chars().any(char::is_control) {
        return Err(format!("{path:?} has control characters"));
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err("`/` cannot be the deploy directory".into());
    }
    Ok(trimmed.to_string())
}

/// Options of ssh that take an argument (from its `getopt` string).
const SSH_ARG_OPTIONS: &str = "bBcDeEFiIJlLmoOpPQRSwW";

/// `ssh_options` entries as [`DeployEnv::ssh_options`] holds them: an entry not starting with
/// `-` is one `-o` value, kept whole (`StrictHostKeyChecking no` is valid for ssh); an entry
/// starting with `-` is ssh arguments, split like a shell would, `-o X` folded into the value
/// `X` and another option's argument attached to it (`-J bastion` → `-Jbastion`), so that each
/// item is either a `-o` value or one ssh argument.
fn ssh_options(entries: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        if !entry.starts_with('-') {
            out.push(entry.to_string());
            continue;
        }
        let words = shlex::split(entry).ok_or_else(|| format!("unbalanced quotes in {entry:?}"))?;
        let mut words = words.into_iter();
        while let Some(word) = words.next() {
            let Some(flags) = word.strip_prefix('-').filter(|f| !f.is_empty()) else {
                return Err(format!(
                    "{entry:?}: {word:?} is neither an option nor an option's value"
                ));
            };
            // The first flag letter taking an argument ends the cluster (as getopt reads it).
            let arg_at = flags
                .char_indices()
                .find(|(_, c)| SSH_ARG_OPTIONS.contains(*c));
            match arg_at {
                None => out.push(word),
                Some((i, c)) => {
                    let attached = &flags[i + c.len_utf8()..];
                    let value = if attached.is_empty() {
                        words
                            .next()
                            .ok_or_else(|| format!("{entry:?}: -{c} needs a value"))?
                    } else {
                        attached.to_string()
                    };
                    if i > 0 {
                        out.push(format!("-{}", &flags[..i]));
                    }
                    if c == 'o' {
                        out.push(value);
                    } else {
                        out.push(format!("-{c}{value}"));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// `~` and `~/...` under `$HOME`.
fn expand_home(path: &str) -> PathBuf {
    if let Ok(home) = std::env::var("HOME") {
        if path == "~" {
            return PathBuf::from(home);
        }
        if let Some(rest) = path.strip_prefix("~/") {
            return Path::new(&home).join(rest);
        }
    }
    PathBuf::from(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Kind;

    fn json(body: &str) -> Result<(DeploySection, Vec<Warning>), ConfigError> {
        load_deploy_text(&Text::data(body.to_string(), Kind::Json), "eco.json")
    }

    fn one(body: &str) -> DeployEnv {
        let (section, warnings) = json(body).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(section.envs.len(), 1);
        section.envs.into_values().next().unwrap()
    }

    fn err(body: &str) -> ConfigError {
        json(body).unwrap_err()
    }

    fn target(user: Option<&str>, host: &str, port: Option<u16>) -> Target {
        Target {
            user: user.map(str::to_string),
            host: host.to_string(),
            port,
        }
    }

    /// `{"deploy": {"prod": {<required keys>, <extra>}}}`.
    fn with(extra: &str) -> String {
        format!(
            r#"{{"deploy": {{"prod": {{"host": "h", "repo": "r.git", "path": "/srv/a", "ref": "origin/main"{}{extra}}}}}}}"#,
            if extra.is_empty() { "" } else { ", " }
        )
    }

    #[test]
    fn bm2_spec_example_resolves() {
        let env = one(r#"{
  "apps": [{"name": "api", "script": "server.ts"}],
  "deploy": {
    "production": {
      "user": "deploy",
      "host": ["web1.example.com", "web2.example.com"],
      "ref": "origin/main",
      "repo": "git@github.com:your-org/your-app.git",
      "path": "/var/www/app",
      "preDeploy": "bun test",
      "postDeploy": "bun install && bm2 reload ecosystem.config.json --env production"
    }
  }
}"#);
        assert_eq!(
            env,
            DeployEnv {
                name: "production".into(),
                targets: vec![
                    target(Some("deploy"), "web1.example.com", None),
                    target(Some("deploy"), "web2.example.com", None),
                ],
                repo: "git@github.com:your-org/your-app.git".into(),
                reference: "origin/main".into(),
                path: "/var/www/app".into(),
                key: None,
                ssh_options: vec![],
                hooks: Hooks {
                    pre_deploy_local: Some("bun test".into()),
                    post_deploy: Some(
                        "bun install && bm2 reload ecosystem.config.json --env production".into()
                    ),
                    ..Hooks::default()
                },
                env: BTreeMap::new(),
                fetch_all: false,
                keep_releases: DEFAULT_KEEP_RELEASES,
                rollback_on_failure: true,
            }
        );
    }

    #[test]
    fn pm2_style_environment_resolves() {
        let home = std::env::var("HOME").unwrap();
        let env = one(r"{
  deploy: {
    staging: {
      user: 'node',
      host: '10.0.0.5',
      port: '2222',
      ref: 'origin/develop',
      repo: 'git@github.com:org/app.git',
      path: '/srv/app/',
      key: '~/.ssh/deploy_key',
      ssh_options: ['StrictHostKeyChecking=no', 'PasswordAuthentication=no'],
      'pre-setup': 'apt-get install git -y',
      'post-setup': 'ls -la',
      'pre-deploy-local': 'echo local',
      'pre-deploy': 'git fetch --all',
      'post-deploy': 'npm install && pm2 startOrRestart ecosystem.json --env staging',
      env: { NODE_ENV: 'staging', WORKERS: 4, DEBUG: false },
      fetch: 'all',
      keep_releases: 3,
      rollback_on_failure: false,
    },
  },
}");
        assert_eq!(env.name, "staging");
        assert_eq!(env.targets, [target(Some("node"), "10.0.0.5", Some(2222))]);
        assert_eq!(env.reference, "origin/develop");
        assert_eq!(env.path, "/srv/app");
        assert_eq!(
            env.key,
            Some(Path::new(&home).join(".ssh/deploy_key")),
            "~/ is the home directory"
        );
        assert_eq!(
            env.ssh_options,
            ["StrictHostKeyChecking=no", "PasswordAuthentication=no"]
        );
        assert_eq!(
            env.hooks,
            Hooks {
                pre_setup: Some("apt-get install git -y".into()),
                post_setup: Some("ls -la".into()),
                pre_deploy_local: Some("echo local".into()),
                pre_deploy: Some("git fetch --all".into()),
                post_deploy: Some(
                    "npm install && pm2 startOrRestart ecosystem.json --env staging".into()
                ),
            }
        );
        let vars: Vec<(&str, &str)> = env
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            vars,
            [
                ("DEBUG", "false"),
                ("NODE_ENV", "staging"),
                ("WORKERS", "4")
            ]
        );
        assert!(env.fetch_all);
        assert_eq!(env.keep_releases, 3);
        assert!(!env.rollback_on_failure);
    }

    #[test]
    fn yaml_and_toml_files_resolve() {
        let yaml = "apps:\n  - script: a.js\ndeploy:\n  production:\n    host: [\"deploy@web1:2200\"]\n    repo: r.git\n    path: ~/app\n    ref: v1.2.0\n    post-deploy: make\n";
        let (s, w) = load_deploy_text(&Text::data(yaml.into(), Kind::Yaml), "eco.yaml").unwrap();
        assert!(w.is_empty(), "{w:?}");
        let env = s.env("production", "eco.yaml").unwrap();
        assert_eq!(env.targets, [target(Some("deploy"), "web1", Some(2200))]);
        assert_eq!(
            env.path, "~/app",
            "a path under the remote home is kept for the remote shell"
        );
        assert_eq!(env.hooks.post_deploy.as_deref(), Some("make"));

        let toml = "[[apps]]\nscript = \"a.js\"\n\n[deploy.production]\nhost = \"web1\"\nrepo = \"r.git\"\npath = \"/srv/a\"\nref = \"main\"\n\"pre-deploy-local\" = \"make test\"\n";
        let (s, _) = load_deploy_text(&Text::data(toml.into(), Kind::Toml), "eco.toml").unwrap();
        let env = s.env("production", "eco.toml").unwrap();
        assert_eq!(env.hooks.pre_deploy_local.as_deref(), Some("make test"));
    }

    #[test]
    fn javascript_file_is_evaluated() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ecosystem.config.js");
        std::fs::write(
            &file,
            "const branch = 'main';\nmodule.exports = {\n  apps: [{ script: 'a.js' }],\n  deploy: {\n    production: {\n      host: ['web1', 'web2'],\n      ref: 'origin/' + branch,\n      repo: 'git@example.com:a.git',\n      path: '/var/www/a',\n      postDeploy: 'bm2 reload ecosystem.config.js',\n    },\n  },\n};\n",
        )
        .unwrap();
        let (s, w) = load_deploy(&file, dir.path()).unwrap();
        assert!(w.is_empty(), "{w:?}");
        let env = s.env("production", "ecosystem.config.js").unwrap();
        assert_eq!(env.reference, "origin/main");
        assert_eq!(
            env.targets,
            [target(None, "web1", None), target(None, "web2", None)]
        );
    }

    #[test]
    fn missing_required_key_names_key_and_line() {
        let e = err(
            "{\n  \"apps\": [],\n  \"deploy\": {\n    \"production\": {\n      \"host\": \"h\",\n      \"path\": \"/a\",\n      \"ref\": \"main\"\n    }\n  }\n}",
        );
        assert_eq!(e.key.as_deref(), Some("deploy.production.repo"));
        assert_eq!(e.line, Some(4), "the environment's line: {e}");
        assert!(
            e.to_string()
                .starts_with("eco.json:4: deploy.production.repo: required"),
            "{e}"
        );
        for key in REQUIRED {
            let body = with("").replace(&format!("\"{key}\""), "\"x\"");
            let e = err(&body);
            assert_eq!(e.key, Some(format!("deploy.prod.{key}")), "{e}");
        }
    }

    #[test]
    fn wrong_types_name_key_and_line() {
        let e = err(
            "{\n  \"deploy\": {\n    \"production\": {\n      \"host\": \"h\",\n      \"repo\": \"r\",\n      \"path\": \"/a\",\n      \"ref\": \"main\",\n      \"port\": \"ssh\"\n    }\n  }\n}",
        );
        assert_eq!(e.key.as_deref(), Some("deploy.production.port"), "{e}");
        assert_eq!(e.line, Some(8), "{e}");
        let e = err(
            "{\n  \"deploy\": {\n    \"production\": {\n      \"keep_releases\": {\n        \"n\": 1\n      },\n      \"host\": \"h\"\n    }\n  }\n}",
        );
        assert_eq!(
            e.key.as_deref(),
            Some("deploy.production.keep_releases"),
            "{e}"
        );
        assert_eq!(e.line, Some(4), "the line of a deploy key: {e}");
        let e = err(&with(r#""rollback_on_failure": "yes""#));
        assert_eq!(
            e.key.as_deref(),
            Some("deploy.prod.rollback_on_failure"),
            "{e}"
        );
        let e = err(&with(r#""keep_releases": 0"#));
        assert_eq!(e.key.as_deref(), Some("deploy.prod.keep_releases"), "{e}");
        let e = err(r#"{"deploy": ["production"]}"#);
        assert_eq!(e.key.as_deref(), Some("deploy"), "{e}");
        let e = err(&with(r#""port": 70000"#));
        assert!(e.message.contains("not a port"), "{e}");
        let e = err(&with(r#""fetch": "everything""#));
        assert_eq!(e.key.as_deref(), Some("deploy.prod.fetch"), "{e}");
    }

    #[test]
    fn unknown_keys_warn_with_the_closest_known_one() {
        let (s, w) = json(&with(r#""post_deploi": "x", "sshOptions": "A=b""#)).unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].key.as_deref(), Some("deploy.prod.post_deploi"));
        assert!(
            w[0].message.contains("did you mean post-deploy?"),
            "{}",
            w[0]
        );
        assert_eq!(s.envs["prod"].ssh_options, ["A=b"]);
        let (_, w) = json(&with(r#""fetch": "fast""#)).unwrap();
        assert_eq!(w.len(), 1, "fast has no effect: {w:?}");
    }

    #[test]
    fn unknown_environment_lists_the_others() {
        let body = r#"{"deploy": {
            "production": {"host": "h", "repo": "r", "path": "/a", "ref": "main"},
            "dev": {"host": "h", "repo": "r", "path": "/b", "ref": "dev"}}}"#;
        let (s, _) = json(body).unwrap();
        let e = s.env("staging", "eco.json").unwrap_err();
        assert_eq!(
            e.to_string(),
            "eco.json: no deploy environment \"staging\"; the file has: dev, production"
        );
        let (s, _) = json(r#"{"apps": [{"script": "a.js"}]}"#).unwrap();
        let e = s.env("production", "eco.json").unwrap_err();
        assert!(e.message.contains("no `deploy` section"), "{e}");
        let (s, _) = json(r#"[{"script": "a.js"}]"#).unwrap();
        assert!(
            s.envs.is_empty(),
            "a bare array of apps has no deploy section"
        );
    }

    #[test]
    fn unsafe_values_are_refused() {
        let e = err(&with(r#""env": {"NODE-ENV": "x"}"#));
        assert_eq!(e.key.as_deref(), Some("deploy.prod.env"), "{e}");
        assert!(e.message.contains("\"NODE-ENV\""), "{e}");
        assert!(json(&with(r#""env": {"1X": "x"}"#)).is_err());
        assert!(json(&with(r#""env": {"_x1": "x"}"#)).is_ok());

        let relative = with("").replace("/srv/a", "srv/a");
        let e = err(&relative);
        assert_eq!(e.key.as_deref(), Some("deploy.prod.path"), "{e}");
        assert!(e.message.contains("relative"), "{e}");
        assert!(json(&with("").replace("/srv/a", "~app")).is_err());
        assert!(json(&with("").replace("/srv/a", "/")).is_err());

        for host in ["-oProxyCommand=x", "a b", "", "u@-x", "-u@h", "[::1"] {
            let body = with("").replace(r#""host": "h""#, &format!(r#""host": ["ok", {host:?}]"#));
            let e = err(&body);
            assert_eq!(e.key.as_deref(), Some("deploy.prod.host"), "{host}: {e}");
        }
        assert!(json(&with(r#""user": "-oProxyCommand=x""#)).is_err());
        assert!(json(&with("").replace("r.git", "--upload-pack=x")).is_err());
        assert!(json(&with("").replace("origin/main", "--output=x")).is_err());
    }

    #[test]
    fn host_entries_carry_user_and_port() {
        let env = one(&with(r#""user": "u", "port": 22"#).replace(
            r#""host": "h""#,
            r#""host": ["user@host:2222", "plain", "[::1]:2200", "root@[fe80::1]", "::1"]"#,
        ));
        assert_eq!(
            env.targets,
            [
                target(Some("user"), "host", Some(2222)),
                target(Some("u"), "plain", Some(22)),
                target(Some("u"), "::1", Some(2200)),
                target(Some("root"), "fe80::1", Some(22)),
                target(Some("u"), "::1", Some(22)),
            ]
        );
    }

    #[test]
    fn string_and_array_forms() {
        let a = one(&with(r#""ssh_options": "StrictHostKeyChecking=no""#));
        let b = one(&with(r#""ssh_options": ["StrictHostKeyChecking=no"]"#));
        assert_eq!(a.ssh_options, b.ssh_options);
        assert_eq!(a.ssh_options, ["StrictHostKeyChecking=no"]);
        let a = one(&with(""));
        let b = one(&with("").replace(r#""host": "h""#, r#""host": ["h"]"#));
        assert_eq!(a.targets, b.targets);
        let env = one(&with(
            r#""ssh_options": ["StrictHostKeyChecking no", "-o UserKnownHostsFile=/dev/null -A", "-J bastion", "-At -p2222"], "forward-agent": true"#,
        ));
        assert_eq!(
            env.ssh_options,
            [
                "StrictHostKeyChecking no",
                "UserKnownHostsFile=/dev/null",
                "-A",
                "-Jbastion",
                "-At",
                "-p2222",
                "ForwardAgent=yes"
            ]
        );
        assert!(json(&with(r#""ssh_options": "-o""#)).is_err());
        assert!(json(&with(r#""ssh_options": "-A stray""#)).is_err());
        let env = one(&with(r#""port": "2022", "keep_releases": "2""#));
        assert_eq!(env.targets[0].port, Some(2022));
        assert_eq!(env.keep_releases, 2);
    }

    #[test]
    fn every_listed_key_is_read_and_in_the_schema() {
        let schema = crate::schema::deploy_env_schema();
        let props = schema["properties"].as_object().unwrap();
        let mut count = 0;
        for (canonical, aliases) in KEYS {
            for key in std::iter::once(canonical).chain(aliases.iter()) {
                if !REQUIRED.contains(key) {
                    let (_, w) = json(&with(&format!("{key:?}: null"))).unwrap();
                    assert!(w.is_empty(), "{key} is not read: {w:?}");
                }
                assert!(props.contains_key(*key), "{key} missing from the schema");
                count += 1;
            }
        }
        assert_eq!(props.len(), count, "every field is listed in KEYS");
    }

    #[test]
    fn duplicate_spellings_are_refused() {
        let e = err(&with(r#""post-deploy": "a", "postDeploy": "b""#));
        assert!(e.message.contains("duplicate"), "{e}");
    }
}
