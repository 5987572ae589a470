//! Ecosystem files on the command line: starting and targeting their apps, `ecosystem`/`init`,
//! `validate`, `schema`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use bm2_client::Client;
use bm2_config::sample::SampleFormat;
use bm2_config::{LoadOptions, Loaded, Vars};
use bm2_types::{IfExists, StartRequest};
use clap::{Args, ValueEnum};

use super::report;
use crate::render;

/// Options for commands that accept an ecosystem file.
#[derive(Debug, Default, Args)]
pub struct FileOptions {
    /// With an ecosystem file: only these apps (comma-separated names)
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub only: Vec<String>,
    /// Load variables from a dotenv file (`${VAR}` is interpolated)
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Recompute the environment from this shell and the config, instead of keeping the one the
    /// apps started with (variables removed from the config are removed)
    #[arg(long)]
    pub update_env: bool,
    /// With an ecosystem file: unknown keys are errors
    #[arg(long)]
    pub strict: bool,
}

/// `--env` values: `KEY=VAL` variables and at most one environment name (`--env production`).
pub fn split_env(values: &[String]) -> anyhow::Result<(Option<String>, Vars)> {
    let mut name = None;
    let mut vars = Vars::new();
    for v in values {
        match v.split_once('=') {
            Some(("", _)) => bail!("--env {v:?}: the variable name is empty"),
            Some((k, val)) => {
                vars.insert(k.to_string(), val.to_string());
            }
            None if name.is_some() => bail!("--env {v:?}: only one environment name can be given"),
            None => name = Some(v.clone()),
        }
    }
    Ok((name, vars))
}

/// Reads the config named by `target` when it is `-` (JSON on stdin) or an ecosystem file;
/// `overrides` are options given as flags, over every app's own.
pub fn load(
    target: &str,
    env: &[String],
    opts: &FileOptions,
    overrides: bm2_config::RawApp,
) -> anyhow::Result<Option<Loaded>> {
    let here = std::env::current_dir()?;
    let path = here.join(target);
    let is_file = target == "-" || (bm2_config::is_ecosystem_file(&path) && path.is_file());
    if !is_file {
        return Ok(None);
    }
    let (env_name, cli_vars) = split_env(env)?;
    let options = LoadOptions {
        env_name,
        only: opts.only.clone(),
        strict: opts.strict,
        cli_vars,
        env_file: opts.env_file.as_ref().map(|f| here.join(f)),
        cwd: Some(here.clone()),
        overrides,
    };
    let loaded = if target == "-" {
        let mut json = String::new();
        std::io::stdin().read_to_string(&mut json)?;
        bm2_config::load_json(&json, "<stdin>", here, &options)?
    } else {
        bm2_config::load_file(&path, &options)?
    };
    if !loaded.printed.trim().is_empty() {
        // What the config printed, shown as PM2 shows it (bm2's own output stays clean).
        eprint!("{}", loaded.printed);
        if !loaded.printed.ends_with('\n') {
            eprintln!();
        }
    }
    for w in &loaded.warnings {
        eprintln!(
            "[bm2] warning: {}",
            crate::render::escape::message(&w.to_string())
        );
    }
    Ok(Some(loaded))
}

/// Starts the apps of a file; apps already managed get their new options and are restarted
/// or reloaded, as `if_exists` says.
pub async fn start(
    client: &Client,
    loaded: Loaded,
    if_exists: IfExists,
    update_env: bool,
) -> anyhow::Result<ExitCode> {
    let req = request(loaded, if_exists, update_env)?;
    let res = client.start(&req).await;
    report(client, res).await
}

/// The request that starts the apps of a file (also `bm2 mcp`'s).
pub fn request(
    loaded: Loaded,
    if_exists: IfExists,
    update_env: bool,
) -> anyhow::Result<StartRequest> {
    super::start::check_triggers(&loaded.apps)?;
    let client_env = client_env(&loaded);
    Ok(StartRequest {
        apps: loaded.apps,
        client_env,
        force: false,
        if_exists,
        update_env,
    })
}

/// The environment the apps of a file start from: this shell's, with the variables a JavaScript
/// config put into `process.env` (as under PM2, where the config runs in the CLI's process).
pub fn client_env(loaded: &Loaded) -> std::collections::BTreeMap<String, String> {
    let mut env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    env.extend(loaded.env.clone());
    env
}

/// The app names of a file, as targets.
pub fn names(loaded: &Loaded) -> Vec<String> {
    let mut names: Vec<String> = loaded.apps.iter().map(|a| a.name.clone()).collect();
    names.dedup();
    names
}

/// Formats `bm2 ecosystem` can write.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum InitFormat {
    Js,
    Ts,
    Json,
    Yaml,
    Toml,
}

/// Writes a sample ecosystem file in the current directory.
pub fn init(format: InitFormat, force: bool) -> anyhow::Result<ExitCode> {
    let sample = match format {
        InitFormat::Js => SampleFormat::Js,
        InitFormat::Ts => SampleFormat::Ts,
        InitFormat::Json => SampleFormat::Json,
        InitFormat::Yaml => SampleFormat::Yaml,
        InitFormat::Toml => SampleFormat::Toml,
    };
    let path = Path::new(sample.file_name());
    if path.exists() && !force {
        bail!(
            "{} already exists; use --force to overwrite it",
            path.display()
        );
    }
    std::fs::write(path, sample.text())?;
    render::info(&format!(
        "wrote {}; start it with `bm2 start {}`",
        path.display(),
        path.display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// Checks a file without starting anything: unknown keys are errors; what bm2 reads differently
/// from what the file may mean (misreadings it cannot fix silently) is reported.
pub fn validate(file: &str, env: &[String]) -> anyhow::Result<ExitCode> {
    let opts = FileOptions {
        strict: true,
        ..FileOptions::default()
    };
    let Some(loaded) = load(file, env, &opts, bm2_config::RawApp::default())? else {
        bail!("{file} is not an ecosystem file (.js, .cjs, .mjs, .ts, .json, .yaml, .yml, .toml)");
    };
    super::start::check_triggers(&loaded.apps)?;
    let names: Vec<String> = loaded.apps.iter().map(|a| a.name.clone()).collect();
    let mut count = loaded.warnings.len();
    let caller_path = std::env::var("PATH").ok();
    for (i, app) in loaded.apps.iter().enumerate() {
        let path = app.env.get("PATH").cloned().or_else(|| caller_path.clone());
        for (key, note) in bm2_config::review::notes(app, path.as_deref()) {
            count += 1;
            eprintln!(
                "[bm2] warning: {file}: apps[{i}].{key} ({}): {}",
                app.name,
                crate::render::escape::message(&note)
            );
        }
    }
    // The deploy section, as strictly as the apps: an unknown key is an error.
    let cwd = std::env::current_dir()?;
    let (deploy, deploy_warnings) =
        bm2_config::deploy::load_deploy(std::path::Path::new(file), &cwd)?;
    if !deploy_warnings.is_empty() {
        let listed: Vec<String> = deploy_warnings.iter().map(ToString::to_string).collect();
        bail!("{}", listed.join("\n"));
    }
    let notes = if count == 0 {
        String::new()
    } else {
        format!("; {count} note{} above", if count == 1 { "" } else { "s" })
    };
    let envs = if deploy.envs.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = deploy.envs.keys().map(String::as_str).collect();
        format!("; deploy environments: {}", names.join(", "))
    };
    render::info(&format!(
        "{file} is valid: {} apps ({}){envs}{notes}",
        names.len(),
        names.join(", ")
    ));
    Ok(ExitCode::SUCCESS)
}

/// Prints the JSON Schema of ecosystem files, or the option reference in Markdown.
pub fn schema(markdown: bool) -> anyhow::Result<ExitCode> {
    if markdown {
        print!("{}", bm2_config::schema::markdown());
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(&bm2_config::schema::file_schema())?
        );
    }
    Ok(ExitCode::SUCCESS)
}
