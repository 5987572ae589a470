//! `bm2 env`: a process's environment, and the env store (`env set|get|delete`).

use std::process::ExitCode;

use anyhow::bail;
use bm2_client::Client;
use clap::Args;

use super::api_error;
use crate::render;

/// `env <target>`, `env set <app> KEY VALUE`, `env get <app>`, `env delete <app> [KEY]`.
#[derive(Debug, Args)]
pub struct EnvArgs {
    /// A target, or set|get|delete followed by the app and the variable
    #[arg(required = true, num_args = 1..=4)]
    pub words: Vec<String>,
}

pub async fn run(client: &Client, args: EnvArgs) -> anyhow::Result<ExitCode> {
    let w: Vec<&str> = args.words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["set", app, key, value] => {
            client.env_set(app, key, value).await.map_err(api_error)?;
            render::info(&format!(
                "{key} set for {app}; it applies from the next start or restart"
            ));
        }
        ["set", ..] => bail!("usage: bm2 env set <app> <KEY> <VALUE>"),
        ["get", app] => {
            for (k, v) in client.env_get(app).await.map_err(api_error)?.vars {
                println!("{k}={v}");
            }
        }
        ["delete" | "del" | "unset", app, rest @ ..] if rest.len() <= 1 => {
            let key = rest.first().copied();
            client.env_delete(app, key).await.map_err(api_error)?;
            render::info(&format!(
                "{} removed from {app}'s stored variables; it applies from the next start or restart",
                key.unwrap_or("every variable")
            ));
        }
        [target] => {
            let res = client
                .describe(vec![(*target).to_string()])
                .await
                .map_err(api_error)?;
            let many = res.processes.len() > 1;
            for d in res.processes {
                if many {
                    println!(
                        "# {} (id {})",
                        render::escape::text(&d.summary.instance_name),
                        d.summary.id
                    );
                }
                for (k, v) in &d.env {
                    println!("{k}={v}");
                }
                if !d.pending_env.is_empty() {
                    eprintln!(
                        "[bm2] pending until the next restart: {}",
                        d.pending_env.join(", ")
                    );
                }
            }
        }
        _ => bail!(
            "usage: bm2 env <target> | env set <app> KEY VALUE | env get <app> | env delete <app> [KEY]"
        ),
    }
    Ok(ExitCode::SUCCESS)
}
