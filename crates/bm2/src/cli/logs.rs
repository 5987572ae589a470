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
    /// One JSON object per line, as PM2's `logs --json`: `message`, `timestamp`, `type` (out
    /// or err), `process_id`, `app_name`
    #[arg(long, conflicts_with = "raw")]
    pub json: bool,
    /// key=value lines, as PM2's `logs --format`:
    /// `timestamp=<local time> app=<name> id=<id> type=out|error message=<line>`
    #[arg(long, conflicts_with_all = ["raw", "json"])]
    pub format: bool,
    /// Prefix lines with the time they are shown, in FORMAT (moment.js tokens)
    #[arg(long, value_name = "FORMAT", num_args = 0..=1, default_missing_value = "YYYY-MM-DDTHH:mm:ss")]
    pub timestamp: Option<String>,
}

impl LogsArgs {
    /// New lines of `targets` as they come, without recent ones (`--attach`).
    pub fn follow_new(targets: Vec<String>) -> LogsArgs {
        LogsArgs {
            targets,
            lines: 0,
            err: false,
            out: false,
            nostream: false,
            follow: true,
            raw: false,
            json: false,
            format: false,
            timestamp: None,
        }
    }
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
        if event.history && !args.raw && !args.json && !args.format {
            let key = (event.id, event.stream.clone());
            if last_header.as_ref() != Some(&key) {
                writeln!(
                    out,
                    "[bm2] {} (id {}) {}, last {} lines:",
                    render::escape::text(&event.app),
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

/// Every app's new lines as they come, until the daemon ends the stream (`bm2 runtime`): lines
/// of standard output on stdout, of standard error on stderr. Lines are written by a thread of
/// their own, so that a slow reader of stdout holds up this stream (and the daemon skips lines
/// for it, saying so), never the daemon's runtime.
pub async fn stream_all(client: &Client, args: &LogsArgs) -> anyhow::Result<()> {
    let req = LogsRequest {
        targets: Vec::new(),
        lines: 0,
        follow: true,
        out: true,
        err: true,
    };
    let mut stream = client.logs(&req).await.map_err(api_error)?;
    let printer = Printer::new(args);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<LogEvent>(1024);
    let writer = std::thread::spawn(move || {
        while let Some(event) = rx.blocking_recv() {
            let written = if event.stream == "err" {
                let mut err = std::io::stderr().lock();
                printer.print(&mut err, &event).and_then(|()| err.flush())
            } else {
                let mut out = std::io::stdout().lock();
                printer.print(&mut out, &event).and_then(|()| out.flush())
            };
            if written.is_err() {
                return;
            }
        }
    });
    while let Some(event) = stream.next().await {
        if tx.send(event.map_err(api_error)?).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    Ok(())
}

struct Printer {
    raw: bool,
    json: bool,
    format: bool,
    color: bool,
    timestamp: Option<String>,
}

impl Printer {
    fn new(args: &LogsArgs) -> Printer {
        Printer {
            raw: args.raw,
            json: args.json,
            format: args.format,
            color: render::color(),
            timestamp: args
                .timestamp
                .as_deref()
                .map(bm2_daemon::logs::format::moment_to_strftime),
        }
    }

    fn print(&self, out: &mut impl Write, e: &LogEvent) -> std::io::Result<()> {
        if let Some(n) = e.skipped {
            let note =
                format!("[bm2] {n} lines skipped: this terminal fell behind the apps' output");
            // Keep machine-read output parseable: the note goes to stderr there.
            if self.json || self.format {
                eprintln!("{note}");
                return Ok(());
            }
            return writeln!(out, "{note}");
        }
        if self.json {
            return writeln!(out, "{}", pm2_json(e, chrono::Utc::now()));
        }
        if self.format {
            return writeln!(out, "{}", pm2_format(e, &chrono::Local::now()));
        }
        if let Some(fmt) = &self.timestamp {
            write!(out, "{} ", chrono::Local::now().format(fmt))?;
        }
        if self.raw {
            return writeln!(out, "{}", e.line);
        }
        let prefix = format!("{}|{:<12}|", e.id, render::escape::text(&e.app));
        match (self.color, e.stream == "err") {
            (true, true) => writeln!(out, "\x1b[31m{prefix}\x1b[0m {}", e.line),
            (true, false) => writeln!(out, "\x1b[32m{prefix}\x1b[0m {}", e.line),
            _ => writeln!(out, "{prefix} {}", e.line),
        }
    }
}

/// A line as PM2's `logs --json` prints it, keys in PM2's order; `timestamp` is when it is
/// shown, in UTC (dayjs's JSON form).
fn pm2_json(e: &LogEvent, now: chrono::DateTime<chrono::Utc>) -> String {
    use render::inspect::ObjBuilder;
    let mut o = ObjBuilder::default();
    o.set("message", e.line.replace(['\r', '\n'], ""))
        .set(
            "timestamp",
            now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        )
        .set("type", e.stream.as_str())
        .set("process_id", e.id)
        .set("app_name", e.app.as_str());
    serde_json::to_string(&o.build()).unwrap_or_default()
}

/// A line as PM2's `logs --format` prints it (its timestamp format `YYYY-MM-DD-HH:mm:ssZZ`).
fn pm2_format<Tz: chrono::TimeZone>(e: &LogEvent, now: &chrono::DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let kind = if e.stream == "err" { "error" } else { "out" };
    format!(
        "timestamp={} app={} id={} type={kind} message={}",
        now.format("%Y-%m-%d-%H:%M:%S%z"),
        render::escape::text(&e.app),
        e.id,
        e.line
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(stream: &str) -> LogEvent {
        LogEvent {
            id: 3,
            name: "web-1".into(),
            app: "web".into(),
            stream: stream.into(),
            line: "hello \"you\"".into(),
            history: false,
            skipped: None,
        }
    }

    #[test]
    fn json_and_format_lines_are_pm2_shaped() {
        let at = chrono::DateTime::parse_from_rfc3339("2024-05-06T07:08:09.123+02:00").unwrap();
        assert_eq!(
            pm2_json(&event("err"), at.with_timezone(&chrono::Utc)),
            r#"{"message":"hello \"you\"","timestamp":"2024-05-06T05:08:09.123Z","type":"err","process_id":3,"app_name":"web"}"#
        );
        assert_eq!(
            pm2_format(&event("err"), &at),
            r#"timestamp=2024-05-06-07:08:09+0200 app=web id=3 type=error message=hello "you""#
        );
        assert!(pm2_format(&event("out"), &at).contains(" type=out "));
    }
}
