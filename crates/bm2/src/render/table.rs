//! The process list table.

use bm2_types::{ProcStatus, ProcSummary};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, Color, ContentArrangement, Table};

use super::{color, escape, usage_columns};

/// What is shown instead of an empty process list.
pub const EMPTY: &str = "no processes; start one with `bm2 start <script>`";

/// Prints the process list, or a note when it is empty.
pub fn print(list: &[ProcSummary]) {
    println!("{}", text(list, color()));
}

/// The process list as text, or a note when it is empty.
pub fn text(list: &[ProcSummary], colored: bool) -> String {
    if list.is_empty() {
        format!("[bm2] {EMPTY}")
    } else {
        render(list, colored).to_string()
    }
}

/// The table as text.
pub fn render(list: &[ProcSummary], colored: bool) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header([
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
        ]);
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
        table.add_row(vec![
            Cell::new(p.id),
            Cell::new(escape::text(&p.instance_name)),
            Cell::new(escape::text(&p.namespace)),
            Cell::new(mode),
            status,
            Cell::new(p.pid.map_or_else(|| "-".to_string(), |pid| pid.to_string())),
            Cell::new(cpu),
            Cell::new(memory),
            Cell::new(p.restarts),
            Cell::new(up),
        ]);
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
        let shown = text(&[row], false);
        assert!(!shown.contains('\u{1b}'), "{shown}");
        assert!(
            shown.contains("evil\\x1b[2J\\x1b[Hname") && shown.contains("ns\\nfake"),
            "{shown}"
        );
    }
}
