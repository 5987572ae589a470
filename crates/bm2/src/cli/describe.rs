//! `bm2 describe`.

use std::process::ExitCode;

use bm2_client::Client;
use clap::Args;

use super::api_error;
use crate::render;

/// Options of `bm2 describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// Id, name, namespace, `all`, script path or /regex/
    #[arg(required = true, num_args = 1..)]
    pub targets: Vec<String>,
    /// Print JSON instead of tables
    #[arg(long)]
    pub json: bool,
}

pub async fn run(client: &Client, args: DescribeArgs) -> anyhow::Result<ExitCode> {
    let res = client.describe(args.targets).await.map_err(api_error)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&res.processes)?);
    } else {
        for d in &res.processes {
            render::describe::print(d);
        }
    }
    Ok(ExitCode::SUCCESS)
}
