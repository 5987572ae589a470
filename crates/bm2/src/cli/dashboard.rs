//! `dashboard`: start, stop or show the web dashboard and the Prometheus endpoint.

use std::process::ExitCode;

use bm2_client::Client;
use bm2_types::{DashboardInfo, DashboardOptions};
use clap::{Args, Subcommand};

use super::api_error;

/// Options of `bm2 dashboard`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DashboardArgs {
    /// Stop it, or show where it runs
    #[command(subcommand)]
    pub action: Option<DashboardAction>,
    /// Port of the dashboard, its REST API and WebSocket (0: any free port)
    #[arg(long, default_value_t = 9615)]
    pub port: u16,
    /// Port of the read-only Prometheus endpoint (0: any free port)
    #[arg(long, default_value_t = 9616)]
    pub metrics_port: u16,
    /// Address to listen on; anything but a loopback address exposes it to the network
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Serve the process list and metrics without the token (details and logs still need it)
    #[arg(long)]
    pub public_read: bool,
    /// Most WebSocket sessions (dashboard pages and clients) open at once; more are refused
    #[arg(long, value_name = "N", default_value_t = bm2_types::DEFAULT_MAX_SESSIONS)]
    pub max_sessions: u32,
}

/// What to do with a running dashboard.
#[derive(Debug, Subcommand)]
pub enum DashboardAction {
    /// Stop the dashboard and the Prometheus endpoint
    Stop,
    /// Show where the dashboard runs
    Status,
}

pub async fn run(client: &Client, args: DashboardArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        Some(DashboardAction::Stop) => {
            if client.dashboard_stop().await.map_err(api_error)? {
                println!("Dashboard stopped");
            } else {
                println!("The dashboard was not running");
            }
        }
        Some(DashboardAction::Status) => match client.dashboard().await.map_err(api_error)? {
            Some(info) => print_info(&info),
            None => println!("The dashboard is not running (start it with `bm2 dashboard`)"),
        },
        None => {
            let opts = DashboardOptions {
                enabled: true,
                port: args.port,
                metrics_port: args.metrics_port,
                host: args.host,
                public_read: args.public_read,
                max_sessions: args.max_sessions,
            };
            let info = client.dashboard_start(&opts).await.map_err(api_error)?;
            print_info(&info);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_info(info: &DashboardInfo) {
    println!("Dashboard:  {}", info.url);
    println!("Prometheus: {}", info.metrics_url);
    if info.options.public_read {
        println!("Read-only JSON is public (--public-read); acting needs the token.");
    }
    if let Some(w) = &info.warning {
        eprintln!("warning: {w}");
    }
}
