//! `bm2 import-pm2`: registers the apps of PM2's saved process list (`~/.pm2/dump.pm2`) with
//! their names, options and environment, stopped or started.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bm2_client::Client;
use bm2_types::{Home, IfExists, Layout, StartRequest};
use clap::Args;

use super::pm2_dump::{self, DumpedApp};
use crate::render;

/// Options of `bm2 import-pm2`.
#[allow(clippy::doc_markdown)] // doc comments are the --help text
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// PM2's home directory, holding dump.pm2 [default: $PM2_HOME, else ~/.pm2]
    #[arg(long, value_name = "DIR")]
    pub pm2_home: Option<PathBuf>,
    /// Start the apps PM2 was running (stop PM2 first, e.g. `pm2 kill`, or both compete for
    /// the same ports) [default: register every app stopped]
    #[arg(long)]
    pub start: bool,
}

pub async fn run(client: &Client, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let pm2 = match args.pm2_home {
        Some(dir) => Home::pm2_at(dir),
        None => Home::from_env_as(Layout::Pm2)?,
    };
    import(client, &pm2.dump_file(), &pm2.logs_dir(), args.start).await
}

/// Registers the apps of the PM2 dump at `dump` (PM2's default log files are in `pm2_logs`),
/// starting those PM2 was running when `start` is set.
pub async fn import(
    client: &Client,
    dump: &Path,
    pm2_logs: &Path,
    start: bool,
) -> anyhow::Result<ExitCode> {
    let apps = pm2_dump::read(dump, pm2_logs)?;
    if apps.is_empty() {
        render::info(&format!(
            "{} lists no apps: nothing to import",
            dump.display()
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let shell: BTreeMap<String, String> = std::env::vars().collect();
    let mut ok = true;
    for app in apps {
        let name = app.name.clone();
        match import_app(client, dump, app, &shell, start).await {
            Ok(errors) if errors.is_empty() => {}
            Ok(errors) => {
                ok = false;
                for e in errors {
                    render::error(&format!("{name}: {e}"));
                }
            }
            Err(e) => {
                ok = false;
                render::error(&format!("{name}: {e:#}"));
            }
        }
    }
    let list = client.list().await.map_err(super::api_error)?;
    render::table::print(&list);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Registers one app; returns the daemon's errors.
async fn import_app(
    client: &Client,
    dump: &Path,
    app: DumpedApp,
    shell: &BTreeMap<String, String>,
    start: bool,
) -> anyhow::Result<Vec<String>> {
    let DumpedApp {
        name,
        instances,
        was_running,
        mut keys,
        env,
    } = app;
    // The processes get exactly the environment they had under PM2: what equals this shell's
    // is inherited from it (and follows it on `--update-env`), the rest is the app's own.
    let (inherited, own): (BTreeMap<_, _>, BTreeMap<_, _>) = env
        .into_iter()
        .partition(|(k, v)| shell.get(k).is_some_and(|s| s == v));
    keys.insert("env".into(), serde_json::to_value(&own)?);
    let run = start && was_running;
    keys.insert("autostart".into(), serde_json::Value::Bool(run));
    let text = serde_json::json!({ "apps": [keys] }).to_string();
    let shown = format!("{} (app {name})", dump.display());
    let loaded = bm2_config::load_json(
        &text,
        &shown,
        PathBuf::from("/"),
        &bm2_config::LoadOptions::default(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in &loaded.warnings {
        render::info(&w.to_string());
    }
    let req = StartRequest {
        apps: loaded.apps,
        client_env: inherited,
        force: false,
        if_exists: IfExists::Fail,
        update_env: false,
    };
    let res = client.start(&req).await.map_err(super::api_error)?;
    if res.errors.is_empty() {
        let plural = if instances == 1 { "" } else { "s" };
        let state = if run { "started" } else { "registered stopped" };
        render::info(&format!(
            "imported {name} ({instances} instance{plural}), {state}"
        ));
    }
    Ok(res.errors.iter().map(render::api_error_text).collect())
}
