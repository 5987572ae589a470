//! How log lines are written: raw, prefixed with a timestamp, or as JSON objects.

use std::fmt::Write as _;

use chrono::{DateTime, Local};

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Stream {
    /// Standard output.
    Out,
    /// Standard error.
    Err,
}

impl Stream {
    /// `out` or `err`, as in PM2's JSON logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Out => "out",
            Stream::Err => "err",
        }
    }
}

/// PM2's default timestamp format for `--time`.
pub const DEFAULT_DATE_FORMAT: &str = "YYYY-MM-DDTHH:mm:ss";

/// The shape of the lines written to log files.
#[derive(Debug, Clone)]
pub enum LineFormat {
    /// Lines as the app printed them.
    Raw,
    /// `<timestamp>: <line>`; the strftime pattern of the timestamp.
    Time(String),
    /// One JSON object per line, as PM2's `log_type: json`.
    Json {
        /// App name.
        app: String,
        /// Instance id.
        id: u32,
        /// strftime pattern of the timestamp; RFC 3339 when `None`.
        date: Option<String>,
    },
}

impl LineFormat {
    /// The format for an app's log options.
    pub fn new(
        time: bool,
        date_format: Option<&str>,
        log_type: Option<&str>,
        app: &str,
        id: u32,
    ) -> LineFormat {
        let date = date_format.map(moment_to_strftime);
        if log_type.is_some_and(|t| t.eq_ignore_ascii_case("json")) {
            return LineFormat::Json {
                app: app.to_string(),
                id,
                date,
            };
        }
        match (time, date) {
            (_, Some(date)) => LineFormat::Time(date),
            (true, None) => LineFormat::Time(moment_to_strftime(DEFAULT_DATE_FORMAT)),
            (false, None) => LineFormat::Raw,
        }
    }

    /// True when lines are written unchanged.
    pub fn is_raw(&self) -> bool {
        matches!(self, LineFormat::Raw)
    }

    /// Appends `lines` (whole lines, each ending in `\n`) to `out`, formatted, stamped with `now`.
    pub fn format(&self, stream: Stream, lines: &[u8], now: DateTime<Local>, out: &mut Vec<u8>) {
        match self {
            LineFormat::Raw => out.extend_from_slice(lines),
            LineFormat::Time(pattern) => {
                let mut stamp = String::new();
                let _ = write!(stamp, "{}: ", now.format(pattern));
                for line in lines.split_inclusive(|b| *b == b'\n') {
                    out.extend_from_slice(stamp.as_bytes());
                    out.extend_from_slice(line);
                }
            }
            LineFormat::Json { app, id, date } => {
                let stamp = match date {
                    Some(p) => now.format(p).to_string(),
                    None => now.to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
                };
                for line in lines.split_inclusive(|b| *b == b'\n') {
                    let text = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(line));
                    let value = serde_json::json!({
                        "message": text,
                        "timestamp": stamp,
                        "type": stream.as_str(),
                        "process_id": id,
                        "app_name": app,
                    });
                    let _ = serde_json::to_writer(&mut *out, &value);
                    out.push(b'\n');
                }
            }
        }
    }
}

/// Translates a moment.js date format (PM2's `log_date_format`) into a strftime pattern.
/// Text in `[brackets]` is literal, as in moment.
pub fn moment_to_strftime(moment: &str) -> String {
    const TOKENS: [(&str, &str); 28] = [
        ("YYYY", "%Y"),
        ("YY", "%y"),
        ("MMMM", "%B"),
        ("MMM", "%b"),
        ("MM", "%m"),
        ("M", "%-m"),
        ("DDDD", "%j"),
        ("DD", "%d"),
        ("Do", "%-d"),
        ("D", "%-d"),
        ("dddd", "%A"),
        ("ddd", "%a"),
        ("d", "%w"),
        ("HH", "%H"),
        ("H", "%-H"),
        ("hh", "%I"),
        ("h", "%-I"),
        ("mm", "%M"),
        ("m", "%-M"),
        ("ss", "%S"),
        ("s", "%-S"),
        ("SSS", "%3f"),
        ("A", "%p"),
        ("a", "%P"),
        ("ZZ", "%z"),
        ("Z", "%:z"),
        ("X", "%s"),
        ("x", "%s%3f"),
    ];
    let mut out = String::with_capacity(moment.len() * 2);
    let mut rest = moment;
    'outer: while let Some(c) = rest.chars().next() {
        if c == '[' {
            let end = rest.find(']').unwrap_or(rest.len());
            out.push_str(&rest[1..end].replace('%', "%%"));
            rest = rest.get(end + 1..).unwrap_or("");
            continue;
        }
        for (token, fmt) in TOKENS {
            if let Some(after) = rest.strip_prefix(token) {
                out.push_str(fmt);
                rest = after;
                continue 'outer;
            }
        }
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at() -> DateTime<Local> {
        Local.with_ymd_and_hms(2025, 2, 11, 10, 30, 5).unwrap()
    }

    #[test]
    fn moment_tokens_become_strftime() {
        assert_eq!(
            moment_to_strftime("YYYY-MM-DD HH:mm:ss Z"),
            "%Y-%m-%d %H:%M:%S %:z"
        );
        assert_eq!(
            moment_to_strftime("YYYY-MM-DDTHH:mm:ss.SSS"),
            "%Y-%m-%dT%H:%M:%S.%3f"
        );
        assert_eq!(moment_to_strftime("[at] HH:mm 100%"), "at %H:%M 100%%");
        assert_eq!(
            at().format(&moment_to_strftime("DD/MM/YYYY hh:mm A"))
                .to_string(),
            "11/02/2025 10:30 AM"
        );
    }

    #[test]
    fn time_prefix_on_every_line() {
        let f = LineFormat::new(true, None, None, "api", 0);
        let mut out = Vec::new();
        f.format(Stream::Out, b"a\nb\n", at(), &mut out);
        assert_eq!(out, b"2025-02-11T10:30:05: a\n2025-02-11T10:30:05: b\n");
        let f = LineFormat::new(false, Some("HH:mm"), None, "api", 0);
        out.clear();
        f.format(Stream::Err, b"x\n", at(), &mut out);
        assert_eq!(out, b"10:30: x\n");
    }

    #[test]
    fn json_lines_carry_stream_app_and_id() {
        let f = LineFormat::new(false, None, Some("json"), "api", 3);
        let mut out = Vec::new();
        f.format(Stream::Err, b"boom \"x\"\n", at(), &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["message"], "boom \"x\"");
        assert_eq!(v["type"], "err");
        assert_eq!(v["app_name"], "api");
        assert_eq!(v["process_id"], 3);
        assert!(
            v["timestamp"]
                .as_str()
                .unwrap()
                .starts_with("2025-02-11T10:30:05")
        );
        assert!(LineFormat::new(false, None, None, "a", 0).is_raw());
    }
}
