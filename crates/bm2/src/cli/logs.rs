//! `logs`, `flush`, `reloadLogs`.

use std::io::Write;
use std::process::ExitCode;

use bm2_client::Client;
use bm2_types::{LogEvent, LogsRequest};
use clap::Args;

use super::api_error;
use crate::render;

/// Options of `bm2 logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Ids, names, namespaces, script paths or /regex/ (default: every app, including new ones)
    pub targets: Vec<String>,
    /// Recent lines to show per stream
    #[arg(long, default_value_t = 15)]
    pub lines: usize,
    /// Only standard error
    #[arg(long)]
    pub err: bool,
    /// Only standard output
    #[arg(long)]
    pub out: bool,
    /// Print the recent lines and exit
    #[arg(long)]
    pub nostream: bool,
    /// Keep printing new lines (the default)
    #[arg(long, conflicts_with = "nostream")]
    pub follow: bool,
    /// Lines only, without the `id|name |` prefix
    #[arg(long)]
    pub raw: bool,
    /// One JSON object per line
    #[arg(long, conflicts_with = "raw")]
    pub json: bool,
    /// Prefix lines with the time they are shown, in FORMAT (moment.js tokens)
    #[arg(long, value_name = "FORMAT", num_args = 0..=1, default_missing_value = "YYYY-MM-DDTHH:mm:ss")]
    pub timestamp: Option<String>,
}

pub async fn logs(client: &Client, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let req = LogsRequest {
        targets: args.targets.clone(),
        lines: args.lines,
        follow: !args.nostream,
        out: !args.err || args.out,
        err: !args.out || args.err,
    };
    let mut stream = client.logs(&req).await.map_err(api_error)?;
    let printer = Printer::new(&args);
    let stdout = std::io::stdout();
    let mut last_header = None;
    while let Some(event) = stream.next().await {
        let event = event.map_err(api_error)?;
        let mut out = stdout.lock();
        if event.history && !args.raw && !args.json {
            let key = (event.id, event.stream.clone());
            if last_header.as_ref() != Some(&key) {
                writeln!(
                    out,
                    "[bm2] {} (id {}) {}, last {} lines:",
                    render::escape::text(&event.name),
                    event.id,
                    event.stream,
                    args.lines
                )?;
                last_header = Some(key);
            }
        } else if !event.history {
            last_header = None;
        }
        printer.print(&mut out, &event)?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

struct Printer {
    raw: bool,
    json: bool,
    color: bool,
    timestamp: Option<String>,
}

impl Printer {
    fn new(args: &LogsArgs) -> Printer {
        Printer {
            raw: args.raw,
            json: args.json,
            color: render::color(),
            timestamp: args
                .timestamp
                .as_deref()
                .map(bm2_daemon::logs::format::moment_to_strftime),
        }
    }

    fn print(&self, out: &mut impl Write, e: &LogEvent) -> std::io::Result<()> {
        if let Some(n) = e.skipped {
            return writeln!(
                out,
                "[bm2] {n} lines skipped: this terminal fell behind the apps' output"
            );
        }
        if self.json {
            return writeln!(out, "{}", serde_json::to_string(e).unwrap_or_default());
        }
        if let Some(fmt) = &self.timestamp {
            write!(out, "{} ", chrono::Local::now().format(fmt))?;
        }
        if self.raw {
            return writeln!(out, "{}", e.line);
        }
        let prefix = format!("{}|{:<12}|", e.id, render::escape::text(&e.name));
        match (self.color, e.stream == "err") {
            (true, true) => writeln!(out, "\x1b[31m{prefix}\x1b[0m {}", e.line),
            (true, false) => writeln!(out, "\x1b[32m{prefix}\x1b[0m {}", e.line),
            _ => writeln!(out, "{prefix} {}", e.line),
        }
    }
}

pub async fn flush(client: &Client, targets: Vec<String>) -> anyhow::Result<ExitCode> {
    let res = client.flush(targets).await.map_err(api_error)?;
    render::info(&format!("emptied the log files of {} processes", res.files));
    Ok(ExitCode::SUCCESS)
}

pub async fn reload(client: &Client) -> anyhow::Result<ExitCode> {
    let res = client.reload_logs().await.map_err(api_error)?;
    render::info(&format!("reopened {} log files", res.files));
    Ok(ExitCode::SUCCESS)
}
