//! `metrics` and `prometheus`.

use std::process::ExitCode;

use bm2_client::Client;
use bm2_types::HISTORY_MAX_SECONDS;
use clap::Args;

use super::api_error;

/// Options of `bm2 metrics`.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Print the samples of the last SECONDS (1 to 3600) instead of the current figures, as
    /// one line of JSON
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=HISTORY_MAX_SECONDS))]
    pub history: Option<u64>,
}

pub async fn metrics(client: &Client, args: &MetricsArgs) -> anyhow::Result<ExitCode> {
    if let Some(seconds) = args.history {
        let history = client
            .metrics_history(seconds, None)
            .await
            .map_err(api_error)?;
        println!("{}", serde_json::to_string(&history)?);
    } else {
        let snapshot = client.metrics().await.map_err(api_error)?;
        println!("{}", serde_json::to_string_pretty(&snapshot)?);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn prometheus(client: &Client) -> anyhow::Result<ExitCode> {
    let text = client.prometheus().await.map_err(api_error)?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
