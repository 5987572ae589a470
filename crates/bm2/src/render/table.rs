//! The process list table.

use bm2_types::{ProcStatus, ProcSummary};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, Color, ContentArrangement, Table};

use super::{color, escape, shorten, usage_columns};

/// What is shown instead of an empty process list.
pub const EMPTY: &str = "no processes; start one with `bm2 start <script>`";

/// The namespace whose apps are modules (`bm2 module install`), listed under their own heading.
pub const MODULES_NAMESPACE: &str = "modules";

/// Prints the process list, or a note when it is empty, fitted to the terminal: the apps, then
/// the modules under a "Modules" heading (as PM2 prints modules in a table of their own).
pub fn print(list: &[ProcSummary]) {
    println!("{}", with_modules(list, color(), super::width()));
}

/// [`text`] of the apps, then of the modules under their heading.
pub fn with_modules(list: &[ProcSummary], colored: bool, width: Option<usize>) -> String {
    let (modules, apps): (Vec<ProcSummary>, Vec<ProcSummary>) = list
        .iter()
        .cloned()
        .partition(|p| p.namespace == MODULES_NAMESPACE);
    if modules.is_empty() {
        return text(&apps, colored, width);
    }
    let mut out = String::new();
    if !apps.is_empty() {
        out.push_str(&text(&apps, colored, width));
        out.push('\n');
    }
    out.push_str("Modules\n");
    out.push_str(&text(&modules, colored, width));
    out
}

/// The process list as text, or a note when it is empty; within `width` columns when given.
pub fn text(list: &[ProcSummary], colored: bool, width: Option<usize>) -> String {
    if list.is_empty() {
        return format!("[bm2] {EMPTY}");
    }
    let mut shown = String::new();
    for layout in [Layout::Full, Layout::Condensed, Layout::Mini] {
        shown = render(list, colored, layout).to_string();
        let widest = shown.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        if width.is_none_or(|w| widest <= w) {
            break;
        }
    }
    shown
}

/// Which columns the table has: PM2's list drops columns and shortens names to fit narrow
/// terminals (full, then condensed, then mini).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Every column, names in full.
    Full,
    /// id, name (18 characters at most), mode, restarts, status, cpu, memory.
    Condensed,
    /// id, name (14 characters at most), status, cpu, memory.
    Mini,
}

/// The table with the columns of `layout`. Every instance shows its app's name, as in PM2; the
/// id tells instances apart.
pub fn render(list: &[ProcSummary], colored: bool, layout: Layout) -> Table {
    let mut table = Table::new();
    let header: &[&str] = match layout {
        Layout::Full => &[
            "id",
            "name",
            "namespace",
            "mode",
            "status",
            "pid",
            "cpu",
            "memory",
            "↺",
            "uptime",
        ],
        Layout::Condensed => &["id", "name", "mode", "↺", "status", "cpu", "memory"],
        Layout::Mini => &["id", "name", "status", "cpu", "mem"],
    };
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    if !colored {
        table.force_no_tty();
    }
    for p in list {
        let status = Cell::new(p.status.as_str());
        let status = if colored {
            status.fg(status_color(p.status))
        } else {
            status
        };
        let mode = p.exec_mode.as_str();
        let [cpu, memory, up] = usage_columns(p);
        let name = escape::text(&p.name);
        let row = match layout {
            Layout::Full => vec![
                Cell::new(p.id),
                Cell::new(name),
                Cell::new(escape::text(&p.namespace)),
                Cell::new(mode),
                status,
                Cell::new(p.pid.map_or_else(|| "-".to_string(), |pid| pid.to_string())),
                Cell::new(cpu),
                Cell::new(memory),
                Cell::new(p.restarts),
                Cell::new(up),
            ],
            Layout::Condensed => vec![
                Cell::new(p.id),
                Cell::new(shorten(&name, 18)),
                Cell::new(mode),
                Cell::new(p.restarts),
                status,
                Cell::new(cpu),
                Cell::new(memory),
            ],
            Layout::Mini => vec![
                Cell::new(p.id),
                Cell::new(shorten(&name, 14)),
                status,
                Cell::new(cpu),
                Cell::new(memory),
            ],
        };
        table.add_row(row);
    }
    table
}

fn status_color(s: ProcStatus) -> Color {
    match s {
        ProcStatus::Online => Color::Green,
        ProcStatus::Launching | ProcStatus::WaitingRestart | ProcStatus::Stopping => Color::Yellow,
        ProcStatus::Stopped => Color::Grey,
        ProcStatus::Errored => Color::Red,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_names_are_escaped() {
        let mut row = crate::render::test_row(0, "evil\u{1b}[2J\u{1b}[Hname");
        row.namespace = "ns\nfake".into();
        let shown = text(&[row], false, None);
        assert!(!shown.contains('\u{1b}'), "{shown}");
        assert!(
            shown.contains("evil\\x1b[2J\\x1b[Hname") && shown.contains("ns\\nfake"),
            "{shown}"
        );
    }

    #[test]
    fn narrow_terminals_get_fewer_columns_and_short_names() {
        let row = crate::render::test_row(0, "a-rather-long-application-name-for-a-list");
        let full = text(std::slice::from_ref(&row), false, Some(300));
        assert!(
            full.contains("namespace") && full.contains(&row.name),
            "{full}"
        );
        let narrow = text(std::slice::from_ref(&row), false, Some(80));
        assert!(narrow.lines().all(|l| l.chars().count() <= 80), "{narrow}");
        assert!(!narrow.contains("namespace") && narrow.contains("a-rather-long-app…"));
        let tiny = text(&[row], false, Some(60));
        assert!(tiny.lines().all(|l| l.chars().count() <= 60), "{tiny}");
        assert!(!tiny.contains("mode"), "{tiny}");
    }
}
