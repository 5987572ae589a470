//! `bm2 serve [path] [port]` (PM2's `serve`, alias `expose`): a static file server run as a
//! managed app, supervised, logged and listed like any other. The app's process is this binary
//! (`bm2 __serve`), configured by PM2's `PM2_SERVE_*` variables.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use bm2_client::Client;
use bm2_types::{AppSpec, StartRequest};
use clap::Args;

use super::report;

/// Options of `bm2 serve`, named as in PM2.
#[allow(clippy::doc_markdown)] // doc comments are the --help text
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory to serve [default: the current directory, or $PM2_SERVE_PATH]
    pub path: Option<PathBuf>,
    /// Port to listen on [default: 8080, or $PM2_SERVE_PORT]
    #[arg(value_name = "PORT")]
    pub port_arg: Option<u16>,
    /// Port to listen on (same as the PORT argument)
    #[arg(long)]
    pub port: Option<u16>,
    /// Answer paths that name no file with index.html (single-page apps)
    #[arg(long)]
    pub spa: bool,
    /// Require this user name (with --basic-auth-password)
    #[arg(long, value_name = "USERNAME", requires = "basic_auth_password")]
    pub basic_auth_username: Option<String>,
    /// Require this password (with --basic-auth-username)
    #[arg(long, value_name = "PASSWORD", requires = "basic_auth_username")]
    pub basic_auth_password: Option<String>,
    /// App name [default: static-page-server-<port>]
    #[arg(short = 'n', long)]
    pub name: Option<String>,
}

pub async fn run(client: &Client, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    // As PM2: its variables win over the arguments.
    let port = match var("PM2_SERVE_PORT") {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| anyhow::anyhow!("PM2_SERVE_PORT={p} is not a port"))?,
        None => args.port_arg.or(args.port).unwrap_or(8080),
    };
    let here = std::env::current_dir()?;
    let path = var("PM2_SERVE_PATH")
        .map(PathBuf::from)
        .or(args.path)
        .unwrap_or_else(|| PathBuf::from("."));
    let path = std::fs::canonicalize(here.join(&path))
        .map_err(|e| anyhow::anyhow!("cannot serve {}: {e}", path.display()))?;
    if !path.is_dir() {
        anyhow::bail!("cannot serve {}: not a directory", path.display());
    }
    let mut env = BTreeMap::from([
        ("PM2_SERVE_PORT".to_string(), port.to_string()),
        ("PM2_SERVE_PATH".to_string(), path.display().to_string()),
        ("PM2_SERVE_SPA".to_string(), args.spa.to_string()),
    ]);
    if let (Some(user), Some(password)) = (args.basic_auth_username, args.basic_auth_password) {
        env.insert("PM2_SERVE_BASIC_AUTH".into(), "true".into());
        env.insert("PM2_SERVE_BASIC_AUTH_USERNAME".into(), user);
        env.insert("PM2_SERVE_BASIC_AUTH_PASSWORD".into(), password);
    }
    let spec = AppSpec {
        name: args
            .name
            .unwrap_or_else(|| format!("static-page-server-{port}")),
        script: std::env::current_exe()?.display().to_string(),
        args: vec!["__serve".into()],
        interpreter: Some("none".into()),
        cwd: Some(path.clone()),
        env,
        ..AppSpec::default()
    };
    let req = StartRequest {
        apps: vec![spec],
        client_env: std::env::vars().collect(),
        ..StartRequest::default()
    };
    let res = client.start(&req).await;
    if res.as_ref().is_ok_and(|r| r.errors.is_empty()) {
        crate::render::info(&format!("serving {} on port {port}", path.display()));
    }
    report(client, res).await
}
