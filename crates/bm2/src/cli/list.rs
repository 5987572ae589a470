//! `list`, `jlist`, `prettylist`.

use std::cmp::Ordering;
use std::process::ExitCode;

use bm2_client::Client;
use bm2_types::ProcSummary;
use clap::Args;

use super::api_error;
use crate::render;

/// Options of `bm2 list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Sort by name, id, cpu, memory, restarts or uptime; add `:desc` to reverse
    #[arg(long, value_name = "FIELD[:desc]")]
    pub sort: Option<String>,
    /// Print bm2's own JSON list instead of a table
    #[arg(long)]
    pub json: bool,
    /// Redraw the table in place every second until Ctrl-C (with --json: one list per line)
    #[arg(long, visible_alias = "live")]
    pub watch: bool,
}

pub async fn run(client: &Client, args: &ListArgs) -> anyhow::Result<ExitCode> {
    if args.watch {
        return watch(client, args).await;
    }
    if render::mini_list() && !args.json {
        print(client).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let list = fetch(client, args).await?;
    if args.json {
        println!("{}", serde_json::to_string(&list)?);
    } else {
        render::table::print(&list);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the process list: the table fitted to the terminal, or PM2's minimal list with `-m`.
pub async fn print(client: &Client) -> anyhow::Result<()> {
    if render::mini_list() {
        let details = client.details().await.map_err(api_error)?;
        print!("{}", render::pm2::mini_list(&details));
    } else {
        render::table::print(&client.list().await.map_err(api_error)?);
    }
    Ok(())
}

async fn fetch(client: &Client, args: &ListArgs) -> anyhow::Result<Vec<ProcSummary>> {
    let mut list = client.list().await.map_err(api_error)?;
    if let Some(sort) = &args.sort {
        sort_list(&mut list, sort)?;
    }
    Ok(list)
}

/// `list --watch`: fetches the list every second and redraws it over the previous one (cursor
/// home, each line cleared to its end, the rest of the screen cleared), so nothing flickers.
async fn watch(client: &Client, args: &ListArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stdout = std::io::stdout();
    let mut first = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
        let list = fetch(client, args).await?;
        let mut out = stdout.lock();
        if args.json {
            writeln!(out, "{}", serde_json::to_string(&list)?)?;
        } else {
            let text = render::table::with_modules(&list, render::color(), render::width());
            if first {
                write!(out, "\x1b[2J")?;
                first = false;
            }
            write!(out, "\x1b[H")?;
            for line in text.lines() {
                write!(out, "{line}\x1b[K\r\n")?;
            }
            write!(
                out,
                "\x1b[K\r\n[bm2] {} processes · refreshed every second · Ctrl-C to quit\x1b[K\r\n\x1b[J",
                list.len()
            )?;
        }
        out.flush()?;
    }
}

fn sort_list(list: &mut [ProcSummary], spec: &str) -> anyhow::Result<()> {
    let (field, order) = spec.split_once(':').unwrap_or((spec, "asc"));
    let desc = match order {
        "asc" => false,
        "desc" => true,
        other => anyhow::bail!("--sort {spec}: order must be asc or desc, not {other:?}"),
    };
    let cmp: fn(&ProcSummary, &ProcSummary) -> Ordering = match field {
        "name" => |a, b| a.instance_name.cmp(&b.instance_name),
        "id" => |a, b| a.id.cmp(&b.id),
        "cpu" => |a, b| a.cpu.total_cmp(&b.cpu),
        "memory" | "mem" => |a, b| a.memory.cmp(&b.memory),
        "restarts" | "restart" => |a, b| a.restarts.cmp(&b.restarts),
        // Uptime grows as the start time recedes; not running counts as no uptime.
        "uptime" => |a, b| {
            b.started_at_ms
                .unwrap_or(u64::MAX)
                .cmp(&a.started_at_ms.unwrap_or(u64::MAX))
        },
        other => anyhow::bail!(
            "--sort: unknown field {other:?}; use name, id, cpu, memory, restarts or uptime"
        ),
    };
    list.sort_by(|a, b| if desc { cmp(b, a) } else { cmp(a, b) });
    Ok(())
}

pub async fn jlist(client: &Client, pretty: bool) -> anyhow::Result<ExitCode> {
    let details = client.details().await.map_err(api_error)?;
    if pretty {
        println!("{}", render::pm2::prettylist(&details));
    } else {
        println!("{}", render::pm2::jlist(&details));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u32, name: &str, memory: u64) -> ProcSummary {
        ProcSummary {
            memory,
            started_at_ms: Some(u64::from(id)),
            ..render::test_row(id, name)
        }
    }

    #[test]
    fn sorts_by_field_and_order() {
        let mut l = vec![row(0, "b", 30), row(1, "a", 10), row(2, "c", 20)];
        sort_list(&mut l, "name").unwrap();
        assert_eq!(l.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 0, 2]);
        sort_list(&mut l, "memory:desc").unwrap();
        assert_eq!(l.iter().map(|r| r.id).collect::<Vec<_>>(), [0, 2, 1]);
        sort_list(&mut l, "uptime").unwrap();
        assert_eq!(l.iter().map(|r| r.id).collect::<Vec<_>>(), [2, 1, 0]);
        assert!(sort_list(&mut l, "size").is_err());
        assert!(sort_list(&mut l, "id:up").is_err());
    }
}
