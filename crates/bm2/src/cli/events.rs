//! `bm2 events`: the daemon's event stream, for shell users: lifecycle events, app messages
//! and, with `--logs`, log lines, as readable lines or JSON.

use std::fmt::Write as _;
use std::process::ExitCode;

use bm2_client::Client;
use bm2_types::{BusEvent, EventsRequest, ProcRef};
use clap::Args;

use super::api_error;
use crate::render;

/// Options of `bm2 events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only these processes (ids, names, namespaces, `all`); default: every one
    targets: Vec<String>,
    /// Also every log line
    #[arg(long)]
    logs: bool,
    /// One JSON object per line, as the API sends them
    #[arg(long)]
    json: bool,
}

/// Follows the stream until the daemon ends it or the command is interrupted.
pub async fn run(client: &Client, args: EventsArgs) -> anyhow::Result<ExitCode> {
    let req = EventsRequest {
        logs: args.logs,
        targets: args.targets,
    };
    let mut stream = client.events(&req).await.map_err(api_error)?;
    while let Some(event) = stream.next().await {
        let event = event.map_err(api_error)?;
        if args.json {
            println!("{}", serde_json::to_string(&event)?);
            continue;
        }
        if let Some(line) = describe(&event) {
            println!("{}", render::escape::message(&line));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn who(p: &ProcRef) -> String {
    format!("{}[{}]", p.name, p.id)
}

fn time(at_ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(i64::try_from(at_ms).unwrap_or(0))
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%H:%M:%S%.3f")
                .to_string()
        })
        .unwrap_or_default()
}

/// A readable line for `event`; none for the subscription marker.
fn describe(event: &BusEvent) -> Option<String> {
    Some(match event {
        BusEvent::Subscribed => return None,
        BusEvent::Process {
            event,
            at_ms,
            process,
            code,
            signal,
            reason,
        } => {
            let mut line = format!(
                "{} {} {}",
                time(*at_ms),
                who(process),
                serde_json::to_value(event)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            );
            if let Some(pid) = process.pid {
                let _ = write!(line, " pid={pid}");
            }
            if let Some(c) = code {
                let _ = write!(line, " code={c}");
            }
            if let Some(s) = signal {
                let _ = write!(line, " signal={s}");
            }
            if let Some(r) = reason {
                let _ = write!(line, " reason={r}");
            }
            line
        }
        BusEvent::LogOut {
            at_ms,
            process,
            data,
        } => format!("{} {} out| {data}", time(*at_ms), who(process)),
        BusEvent::LogErr {
            at_ms,
            process,
            data,
        } => format!("{} {} err| {data}", time(*at_ms), who(process)),
        BusEvent::Message {
            at_ms,
            process,
            data,
            topic,
        } => format!(
            "{} {} msg{} {data}",
            time(*at_ms),
            who(process),
            topic
                .as_deref()
                .map(|t| format!(" [{t}]"))
                .unwrap_or_default()
        ),
        BusEvent::Lagged { missed } => {
            format!("[bm2] this terminal fell behind: {missed} events were skipped")
        }
    })
}
