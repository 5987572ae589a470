//! `bm2 deploy`: PM2's SSH deploy, from an ecosystem file's `deploy` section, with BM2's
//! release layout (`source`, `releases/<time>`, `current`, `shared`) on each host.

mod ssh;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use bm2_config::deploy::DeployEnv;

use crate::render;

/// `bm2 deploy` arguments.
#[derive(Debug, clap::Args)]
#[allow(clippy::doc_markdown)]
pub struct DeployArgs {
    /// The ecosystem file (when left out: ecosystem.config.js or another of PM2's default
    /// names in this directory), then the environment of its `deploy` section, then the
    /// command: setup, update (the default), revert [N], curr[ent], prev[ious], list,
    /// exec|run "<cmd>", or a ref to deploy
    #[arg(value_name = "[FILE] ENV [COMMAND]", required = true)]
    words: Vec<String>,
    /// Deploy even with uncommitted or unpushed local changes
    #[arg(long, short = 'f')]
    force: bool,
    /// Deploy to every host at once (default: one after the other, stopping at a failure)
    #[arg(long)]
    parallel: bool,
}

/// What to do on the hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Setup,
    Deploy(Option<String>),
    Revert(u32),
    Current,
    Previous,
    List,
    Exec(String),
}

/// The default file names looked for when the first word is not a file, in PM2's order.
const DEFAULT_FILES: &[&str] = &[
    "ecosystem.config.js",
    "ecosystem.config.cjs",
    "ecosystem.config.mjs",
    "ecosystem.config.ts",
    "ecosystem.config.json",
    "ecosystem.config.yaml",
    "ecosystem.config.yml",
    "ecosystem.config.toml",
    "ecosystem.json",
    "ecosystem.json5",
    "ecosystem.yaml",
    "ecosystem.yml",
];

fn parse_action(words: &[String]) -> anyhow::Result<Action> {
    let rest = |n: usize| words.get(n..).unwrap_or_default();
    let action = match words.first().map(String::as_str) {
        None | Some("update") => Action::Deploy(None),
        Some("setup") => Action::Setup,
        Some("revert") => Action::Revert(match words.get(1) {
            None => 1,
            Some(n) => n.parse().ok().filter(|n| *n >= 1).with_context(|| {
                format!("revert takes a number of releases (1 or more), not `{n}`")
            })?,
        }),
        Some("curr" | "current") => Action::Current,
        Some("prev" | "previous") => Action::Previous,
        Some("list") => Action::List,
        Some("exec" | "run") => {
            if rest(1).is_empty() {
                bail!("exec needs a command: bm2 deploy <file> <env> exec \"<cmd>\"");
            }
            return Ok(Action::Exec(rest(1).join(" ")));
        }
        Some("ref") => Action::Deploy(Some(
            words.get(1).cloned().context("ref needs a ref to deploy")?,
        )),
        Some(r) => Action::Deploy(Some(r.to_string())),
    };
    let used = match &action {
        Action::Deploy(Some(_)) if words[0] == "ref" => 2,
        Action::Revert(_) if words.len() > 1 => 2,
        _ => usize::from(!words.is_empty()),
    };
    if let Some(extra) = words.get(used) {
        bail!(
            "unexpected argument `{extra}` after `{}`",
            words[..used].join(" ")
        );
    }
    Ok(action)
}

/// Splits the words into the file, the environment and the command.
fn split_words(words: &[String], dir: &Path) -> anyhow::Result<(PathBuf, String, Vec<String>)> {
    let first = &words[0];
    let as_file = Path::new(first);
    if bm2_config::source::Format::of(as_file).is_some() || as_file.is_file() {
        let env = words.get(1).with_context(|| {
            format!("which environment of {first}? bm2 deploy {first} <env> [command]")
        })?;
        return Ok((as_file.to_path_buf(), env.clone(), words[2..].to_vec()));
    }
    let file = DEFAULT_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{first} is not a file, and no default ecosystem file is here (looked for {})",
                DEFAULT_FILES.join(", ")
            )
        })?;
    let shown = file.file_name().map(PathBuf::from).unwrap_or(file);
    Ok((shown, first.clone(), words[1..].to_vec()))
}

/// `bm2 deploy [file] <env> [command]`.
pub fn run(args: &DeployArgs) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir().context("the current directory")?;
    if args.words.first().map(String::as_str) == Some("help") {
        println!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    let (file, env_name, command) = split_words(&args.words, &cwd)?;
    let action = parse_action(&command)?;
    let shown = file.display().to_string();
    let (section, warnings) = bm2_config::deploy::load_deploy(&file, &cwd)?;
    for w in &warnings {
        render::warn(&w.to_string());
    }
    let mut env = section.env(&env_name, &shown)?.clone();
    // As PM2: without a post-deploy hook, the file's apps are started or restarted, from the
    // file as the release holds it (a path given relative to here, else its name).
    if env.hooks.post_deploy.is_none() {
        let in_release = if file.is_absolute() {
            file.file_name()
                .map_or_else(|| shown.clone(), |n| n.to_string_lossy().into_owned())
        } else {
            shown.clone()
        };
        env.hooks.post_deploy = Some(format!(
            "bm2 startOrRestart {} --env {}",
            ssh::quote(&in_release),
            ssh::quote(&env_name)
        ));
    }
    let file_dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| cwd.clone(), |p| cwd.join(p));
    if let Action::Deploy(_) = action {
        if !args.force {
            check_local_changes(&file_dir)?;
        }
        if let Some(hook) = &env.hooks.pre_deploy_local {
            run_local_hook(hook, &file_dir, &env)?;
        }
    }
    let outcomes = on_every_host(&env, &action, args.parallel);
    report(&env, &action, &outcomes)
}

/// The arguments of the remote side for `action`.
fn remote_args(env: &DeployEnv, action: &Action) -> Vec<String> {
    let (name, reference, arg) = match action {
        Action::Setup => ("setup", env.reference.clone(), String::new()),
        Action::Deploy(r) => (
            "deploy",
            r.clone().unwrap_or_else(|| env.reference.clone()),
            String::new(),
        ),
        Action::Revert(n) => ("revert", env.reference.clone(), n.to_string()),
        Action::Current => ("current", env.reference.clone(), String::new()),
        Action::Previous => ("previous", env.reference.clone(), String::new()),
        Action::List => ("list", env.reference.clone(), String::new()),
        Action::Exec(cmd) => ("exec", env.reference.clone(), cmd.clone()),
    };
    let hook = |h: &Option<String>| h.clone().unwrap_or_default();
    let mut args = vec![
        name.to_string(),
        env.path.clone(),
        env.repo.clone(),
        reference,
        env.keep_releases.to_string(),
        u8::from(env.fetch_all).to_string(),
        u8::from(env.rollback_on_failure).to_string(),
        hook(&env.hooks.pre_setup),
        hook(&env.hooks.post_setup),
        hook(&env.hooks.pre_deploy),
        hook(&env.hooks.post_deploy),
        arg,
    ];
    args.extend(env.env.iter().map(|(k, v)| format!("{k}={v}")));
    args
}

/// Runs `action` on each host: one after the other, stopping at the first failure, or all at
/// once with `parallel`. A host not tried is left out of the outcomes.
fn on_every_host(env: &DeployEnv, action: &Action, parallel: bool) -> Vec<ssh::Outcome> {
    let args = remote_args(env, action);
    if parallel && env.targets.len() > 1 {
        return std::thread::scope(|s| {
            let handles: Vec<_> = env
                .targets
                .iter()
                .map(|t| s.spawn(|| ssh::run(env, t, &args)))
                .collect();
            handles
                .into_iter()
                .zip(&env.targets)
                .map(|(h, t)| {
                    h.join().unwrap_or_else(|_| ssh::Outcome {
                        label: ssh::label(t),
                        result: Err("the deploy thread failed".into()),
                        stdout: Vec::new(),
                    })
                })
                .collect()
        });
    }
    let mut outcomes = Vec::new();
    for target in &env.targets {
        let outcome = ssh::run(env, target, &args);
        let failed = outcome.result.is_err();
        outcomes.push(outcome);
        // Read-only commands go on to every host; a change stops at the first failure.
        if failed
            && matches!(
                action,
                Action::Setup | Action::Deploy(_) | Action::Revert(_)
            )
        {
            break;
        }
    }
    outcomes
}

/// Prints the summary; fails when any host failed or was not reached.
fn report(env: &DeployEnv, action: &Action, outcomes: &[ssh::Outcome]) -> anyhow::Result<ExitCode> {
    let failed: Vec<&ssh::Outcome> = outcomes.iter().filter(|o| o.result.is_err()).collect();
    let skipped: Vec<String> = env
        .targets
        .iter()
        .skip(outcomes.len())
        .map(ssh::label)
        .collect();
    let changes = matches!(
        action,
        Action::Setup | Action::Deploy(_) | Action::Revert(_)
    );
    if changes && (env.targets.len() > 1 || !failed.is_empty()) {
        // Which host is on which release now.
        let now = on_every_host(env, &Action::Current, true);
        render::info("hosts now:");
        for o in &now {
            let release = match &o.result {
                Ok(()) => o.stdout.last().cloned().unwrap_or_else(|| "-".into()),
                Err(_) => "unknown (cannot read it)".into(),
            };
            println!("  {}: {release}", o.label);
        }
        for s in &skipped {
            println!("  {s}: not tried (an earlier host failed)");
        }
    }
    if failed.is_empty() && skipped.is_empty() {
        if changes {
            render::info("--> Success");
        }
        return Ok(ExitCode::SUCCESS);
    }
    for o in &failed {
        if let Err(e) = &o.result {
            render::error(e);
        }
    }
    bail!(
        "deploy to {} failed on {} of {} host{}",
        env.name,
        failed.len() + skipped.len(),
        env.targets.len(),
        if env.targets.len() == 1 { "" } else { "s" }
    )
}

/// As PM2: uncommitted, staged or unpushed changes in the local repository stop a deploy
/// (the remote side deploys what is pushed, not what is here), unless `--force`. Outside a git
/// work tree there is nothing to compare.
fn check_local_changes(dir: &Path) -> anyhow::Result<()> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
    };
    let inside = git(&["rev-parse", "--is-inside-work-tree"])
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"true"));
    if !inside {
        return Ok(());
    }
    if !git(&["diff", "--quiet"]).is_ok_and(|o| o.status.success()) {
        bail!("commit or stash your changes before deploying (or deploy anyway with --force)");
    }
    if !git(&["diff", "--cached", "--quiet"]).is_ok_and(|o| o.status.success()) {
        bail!("commit your staged changes before deploying (or deploy anyway with --force)");
    }
    if let Ok(o) = git(&["rev-list", "@{upstream}..", "-n", "1"])
        && o.status.success()
        && !o.stdout.is_empty()
    {
        bail!("push your changes before deploying (or deploy anyway with --force)");
    }
    Ok(())
}

/// Runs `pre-deploy-local` (BM2's `preDeploy`) here, with the environment's variables; a
/// failure deploys nothing.
fn run_local_hook(hook: &str, dir: &Path, env: &DeployEnv) -> anyhow::Result<()> {
    println!("--> pre-deploy-local: {hook}");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(hook)
        .current_dir(dir)
        .envs(&env.env)
        .status()
        .with_context(|| format!("cannot run pre-deploy-local `{hook}`"))?;
    if !status.success() {
        bail!(
            "pre-deploy-local failed ({}): nothing was deployed",
            status
                .code()
                .map_or_else(|| "killed".to_string(), |c| format!("exit {c}"))
        );
    }
    Ok(())
}

const HELP: &str = "\
Deploy over SSH from an ecosystem file's `deploy` section

  bm2 deploy <file> <env> setup        create the layout on each host, clone the repo
  bm2 deploy <file> <env> [update]     deploy the configured ref as a new release
  bm2 deploy <file> <env> <ref>        deploy that branch, tag or commit
  bm2 deploy <file> <env> revert [n]   make the n-th previous release current (default 1)
  bm2 deploy <file> <env> curr[ent]    the current release's commit
  bm2 deploy <file> <env> prev[ious]   the previous release's commit
  bm2 deploy <file> <env> list         the releases, newest first (* = current)
  bm2 deploy <file> <env> exec \"<cmd>\" run <cmd> in the current release on every host

The file may be left out when ecosystem.config.js (or another default name) is here.
See docs/deploy.md.";

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &[&str]) -> Vec<String> {
        s.iter().map(|w| (*w).to_string()).collect()
    }

    #[test]
    fn commands_read_as_pm2_reads_them() {
        assert_eq!(parse_action(&[]).unwrap(), Action::Deploy(None));
        assert_eq!(
            parse_action(&words(&["update"])).unwrap(),
            Action::Deploy(None)
        );
        assert_eq!(parse_action(&words(&["setup"])).unwrap(), Action::Setup);
        assert_eq!(
            parse_action(&words(&["revert"])).unwrap(),
            Action::Revert(1)
        );
        assert_eq!(
            parse_action(&words(&["revert", "3"])).unwrap(),
            Action::Revert(3)
        );
        assert!(parse_action(&words(&["revert", "0"])).is_err());
        assert!(parse_action(&words(&["revert", "x"])).is_err());
        assert_eq!(parse_action(&words(&["curr"])).unwrap(), Action::Current);
        assert_eq!(
            parse_action(&words(&["previous"])).unwrap(),
            Action::Previous
        );
        assert_eq!(parse_action(&words(&["list"])).unwrap(), Action::List);
        assert_eq!(
            parse_action(&words(&["exec", "ls", "-la"])).unwrap(),
            Action::Exec("ls -la".into())
        );
        assert_eq!(
            parse_action(&words(&["run", "bm2 reload all"])).unwrap(),
            Action::Exec("bm2 reload all".into())
        );
        assert_eq!(
            parse_action(&words(&["v1.2.0"])).unwrap(),
            Action::Deploy(Some("v1.2.0".into()))
        );
        assert_eq!(
            parse_action(&words(&["ref", "origin/dev"])).unwrap(),
            Action::Deploy(Some("origin/dev".into()))
        );
        assert!(parse_action(&words(&["list", "extra"])).is_err());
        assert!(parse_action(&words(&["exec"])).is_err());
    }
}
