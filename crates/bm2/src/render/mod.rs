//! Everything the CLI prints: messages, tables, PM2-shaped JSON.

pub mod describe;
pub mod escape;
pub mod inspect;
pub mod monit;
pub mod pm2;
pub mod table;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use bm2_types::ApiError;

static NO_COLOR_FLAG: AtomicBool = AtomicBool::new(false);

/// Turns colours off for the rest of the run (`--no-color`).
pub fn disable_color() {
    NO_COLOR_FLAG.store(true, Ordering::Relaxed);
}

static MINI_LIST: AtomicBool = AtomicBool::new(false);

/// Shows process lists as PM2's minimal list for the rest of the run (`-m`, `--mini-list`).
pub fn use_mini_list() {
    MINI_LIST.store(true, Ordering::Relaxed);
}

/// True when process lists are shown as PM2's minimal list.
pub fn mini_list() -> bool {
    MINI_LIST.load(Ordering::Relaxed)
}

/// True when output may be coloured: stdout is a terminal, `NO_COLOR` is unset and
/// `--no-color` was not given.
pub fn color() -> bool {
    !NO_COLOR_FLAG.load(Ordering::Relaxed)
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::io::stdout().is_terminal()
}

/// The width tables must fit in: `COLUMNS` when set, else the terminal's width when stdout is
/// a terminal; `None` (no limit) when output goes to a pipe or a file, as in PM2.
pub fn width() -> Option<usize> {
    if let Some(cols) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c > 0)
    {
        return Some(cols);
    }
    if !std::io::stdout().is_terminal() {
        return None;
    }
    ratatui::crossterm::terminal::size()
        .ok()
        .map(|(cols, _)| usize::from(cols))
        .filter(|&c| c > 0)
}

/// `text` cut to `max` characters, with `…` as its last one when it was longer.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Prints an error line to stderr (control characters escaped).
pub fn error(message: &str) {
    eprintln!("[bm2] error: {}", escape::message(message));
}

/// Prints a warning line to stderr (control characters escaped).
pub fn warn(message: &str) {
    eprintln!("[bm2] warning: {}", escape::message(message));
}

/// Prints an informational line to stdout (control characters escaped).
pub fn info(message: &str) {
    println!("[bm2] {}", escape::message(message));
}

/// An API error with its hint, as one text.
pub fn api_error_text(e: &ApiError) -> String {
    match &e.hint {
        Some(hint) => format!("{}\n  hint: {hint}", e.message),
        None => e.message.clone(),
    }
}

/// A duration in milliseconds for people: `5m 23s`, `2h 15m`, `3d 4h`.
pub fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

/// The CPU, memory and uptime columns of a process row (`-` while it does not run).
pub fn usage_columns(p: &bm2_types::ProcSummary) -> [String; 3] {
    if p.pid.is_none() {
        return ["-".into(), "-".into(), "-".into()];
    }
    [
        format!("{:.1}%", p.cpu),
        bm2_types::format_bytes(p.memory),
        uptime(since(p.started_at_ms)),
    ]
}

/// Milliseconds since `started_at_ms` (epoch ms), or 0.
pub fn since(started_at_ms: Option<u64>) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    started_at_ms.map_or(0, |t| now.saturating_sub(t))
}

/// An epoch-milliseconds time as ISO 8601.
pub fn iso_time(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// An online process row for tests: fork mode, default namespace, pid 1, nothing measured.
#[cfg(test)]
pub fn test_row(id: u32, name: &str) -> bm2_types::ProcSummary {
    bm2_types::ProcSummary {
        id,
        name: name.into(),
        instance_name: name.into(),
        instance: 0,
        namespace: "default".into(),
        exec_mode: bm2_types::ExecMode::Fork,
        status: bm2_types::ProcStatus::Online,
        pid: Some(1),
        cpu: 0.0,
        memory: 0,
        restarts: 0,
        unstable_restarts: 0,
        started_at_ms: None,
        restart_reasons: std::collections::BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptimes_read_naturally() {
        assert_eq!(uptime(12_000), "12s");
        assert_eq!(uptime(323_000), "5m 23s");
        assert_eq!(uptime(8_100_000), "2h 15m");
        assert_eq!(uptime(3 * 86_400_000 + 4 * 3_600_000), "3d 4h");
    }
}
