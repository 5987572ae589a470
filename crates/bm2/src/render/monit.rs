//! The `bm2 monit` screen: the process list, the selected process's metadata, CPU and memory
//! sparklines over the last minute, and its log lines. Pure drawing from [`MonitState`]; the
//! event loop lives in `cli/monit.rs`.

use std::collections::VecDeque;

use bm2_types::{ProcDetail, ProcStatus, ProcSummary, format_bytes};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Sparkline, Table, TableState, Wrap};

use super::{escape, since, uptime, usage_columns};

/// Log lines kept for the selected process.
pub const LOG_LINES: usize = 500;

/// What the monitor shows; updated by the event loop, drawn by [`MonitState::draw`].
#[derive(Debug, Default)]
pub struct MonitState {
    /// Every process, by id.
    pub procs: Vec<ProcSummary>,
    /// Id of the selected process.
    pub selected: Option<u32>,
    /// Details of the selected process.
    pub detail: Option<ProcDetail>,
    /// CPU percent of the selected process, one value per sample, oldest first.
    pub cpu: Vec<f32>,
    /// Memory bytes of the selected process, one value per sample, oldest first.
    pub memory: Vec<u64>,
    /// The machine's CPU percent and available memory, from the last sample.
    pub host: Option<(f32, u64)>,
    /// Recent log lines of the selected process.
    pub logs: VecDeque<(bool, String)>,
    /// A note for the footer (the outcome of the last action).
    pub message: String,
}

impl MonitState {
    /// Index of the selected process in the list.
    fn selected_index(&self) -> Option<usize> {
        let id = self.selected?;
        self.procs.iter().position(|p| p.id == id)
    }

    /// The selected process's row.
    pub fn selected_proc(&self) -> Option<&ProcSummary> {
        self.procs.get(self.selected_index()?)
    }

    /// Replaces the list, keeping the selection on the same id when it still exists (else the
    /// row at the same place). Returns true when the selection changed.
    pub fn set_procs(&mut self, procs: Vec<ProcSummary>) -> bool {
        let before = self.selected;
        let index = self.selected_index();
        self.procs = procs;
        if self.selected_index().is_none() {
            let i = index.unwrap_or(0).min(self.procs.len().saturating_sub(1));
            self.selected = self.procs.get(i).map(|p| p.id);
        }
        before != self.selected
    }

    /// Moves the selection by `delta` rows. Returns true when it changed.
    pub fn move_selection(&mut self, delta: isize) -> bool {
        if self.procs.is_empty() {
            return false;
        }
        let last = self.procs.len() - 1;
        let i = self.selected_index().unwrap_or(0);
        let next = i.saturating_add_signed(delta).min(last);
        let before = self.selected;
        self.selected = Some(self.procs[next].id);
        before != self.selected
    }

    /// Forgets what belongs to the previously selected process.
    pub fn clear_selection_data(&mut self) {
        self.detail = None;
        self.cpu.clear();
        self.memory.clear();
        self.logs.clear();
    }

    /// Appends a log line, dropping the oldest beyond [`LOG_LINES`].
    pub fn push_log(&mut self, err: bool, line: String) {
        if self.logs.len() == LOG_LINES {
            self.logs.pop_front();
        }
        self.logs.push_back((err, escape::screen_line(line)));
    }

    /// Draws the whole screen.
    pub fn draw(&self, frame: &mut Frame) {
        let [top, logs, footer] = Layout::vertical([
            Constraint::Percentage(55),
            Constraint::Min(4),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        let [list, right] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);
        self.draw_list(frame, list);
        self.draw_selected(frame, right);
        self.draw_logs(frame, logs);
        self.draw_footer(frame, footer);
    }

    fn draw_list(&self, frame: &mut Frame, area: Rect) {
        let title = match self.host {
            Some((cpu, free)) => format!(
                " Processes ({}) · host cpu {cpu:.1}% · free memory {} ",
                self.procs.len(),
                format_bytes(free)
            ),
            None => format!(" Processes ({}) ", self.procs.len()),
        };
        let header = Row::new(["id", "name", "status", "cpu", "memory", "↺", "uptime"])
            .style(Style::new().add_modifier(Modifier::BOLD));
        let rows = self.procs.iter().map(|p| {
            let [cpu, memory, up] = usage_columns(p);
            Row::new([
                Cell::new(p.id.to_string()),
                Cell::new(escape::text(&p.instance_name).into_owned()),
                Cell::new(p.status.as_str()).style(Style::new().fg(status_color(p.status))),
                Cell::new(cpu),
                Cell::new(memory),
                Cell::new(p.restarts.to_string()),
                Cell::new(up),
            ])
        });
        let widths = [
            Constraint::Length(4),
            Constraint::Fill(1),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(10),
            Constraint::Length(4),
            Constraint::Length(8),
        ];
        let table = Table::new(rows, widths)
            .header(header)
            .block(Block::bordered().title(title))
            .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
            .highlight_symbol("> ");
        let mut state = TableState::default().with_selected(self.selected_index());
        frame.render_stateful_widget(table, area, &mut state);
    }

    fn draw_selected(&self, frame: &mut Frame, area: Rect) {
        let [meta, cpu, mem] = Layout::vertical([
            Constraint::Min(5),
            Constraint::Length(4),
            Constraint::Length(4),
        ])
        .areas(area);
        let Some(p) = self.selected_proc() else {
            frame.render_widget(
                Paragraph::new(super::table::EMPTY).block(Block::bordered().title(" Details ")),
                area,
            );
            return;
        };
        let title = format!(" {} (id {}) ", escape::text(&p.instance_name), p.id);
        frame.render_widget(
            Paragraph::new(self.metadata(p))
                .wrap(Wrap { trim: false })
                .block(Block::bordered().title(title)),
            meta,
        );
        let width = usize::from(cpu.width.saturating_sub(2));
        let cpu_values: Vec<u64> = tail(&self.cpu, width)
            .iter()
            .map(|c| (c * 10.0).round() as u64)
            .collect();
        let cpu_max = self.cpu.iter().copied().fold(0.0_f32, f32::max);
        frame.render_widget(
            Sparkline::default()
                .data(cpu_values)
                .max(((cpu_max * 10.0).ceil() as u64).max(1000))
                .style(Style::new().fg(Color::Green))
                .block(Block::bordered().title(format!(
                    " CPU, last minute: now {:.1}% · max {cpu_max:.1}% ",
                    self.cpu.last().copied().unwrap_or(0.0)
                ))),
            cpu,
        );
        let mem_values: Vec<u64> = tail(&self.memory, width).iter().map(|m| m / 1024).collect();
        let mem_max = self.memory.iter().copied().max().unwrap_or(0);
        frame.render_widget(
            Sparkline::default()
                .data(mem_values)
                .max((mem_max / 1024).max(1))
                .style(Style::new().fg(Color::Cyan))
                .block(Block::bordered().title(format!(
                    " Memory, last minute: now {} · max {} ",
                    format_bytes(self.memory.last().copied().unwrap_or(0)),
                    format_bytes(mem_max)
                ))),
            mem,
        );
    }

    fn metadata(&self, p: &ProcSummary) -> Vec<Line<'static>> {
        let field = |k: &str, v: String| {
            Line::from(vec![
                Span::styled(format!("{k:<12}"), Style::new().fg(Color::DarkGray)),
                Span::raw(escape::text(&v).into_owned()),
            ])
        };
        let mut lines = vec![
            field("status", p.status.as_str().to_string()),
            field(
                "pid",
                p.pid.map_or_else(|| "-".to_string(), |pid| pid.to_string()),
            ),
            field(
                "uptime",
                if p.pid.is_some() {
                    uptime(since(p.started_at_ms))
                } else {
                    "-".into()
                },
            ),
            field("restarts", p.restarts.to_string()),
        ];
        if let Some(d) = &self.detail {
            lines.push(field("script", d.spec.script.clone()));
            if let Some(interp) = &d.interpreter {
                lines.push(field("interpreter", interp.clone()));
            }
            if !d.spec.args.is_empty() {
                lines.push(field("args", d.spec.args.join(" ")));
            }
            let mode = d.spec.exec_mode.as_str();
            let plural = if d.instances == 1 { "" } else { "s" };
            lines.push(field(
                "mode",
                format!("{mode}, {} instance{plural}", d.instances),
            ));
            if let Some(cwd) = &d.spec.cwd {
                lines.push(field("cwd", cwd.display().to_string()));
            }
            lines.push(field("namespace", d.spec.namespace.clone()));
            if let Some(exit) = &d.last_exit {
                lines.push(field("last exit", exit.to_string()));
            }
            if let Some(reason) = &d.status_reason {
                lines.push(field("reason", reason.clone()));
            }
            lines.push(field("out log", d.out_log.display().to_string()));
            lines.push(field("err log", d.err_log.display().to_string()));
        }
        lines
    }

    fn draw_logs(&self, frame: &mut Frame, area: Rect) {
        let name = self.selected_proc().map_or_else(String::new, |p| {
            format!(": {}", escape::text(&p.instance_name))
        });
        let visible = usize::from(area.height.saturating_sub(2));
        let skip = self.logs.len().saturating_sub(visible);
        let lines: Vec<Line> = self
            .logs
            .iter()
            .skip(skip)
            .map(|(err, line)| {
                if *err {
                    Line::styled(line.as_str(), Style::new().fg(Color::Red))
                } else {
                    Line::raw(line.as_str())
                }
            })
            .collect();
        frame.render_widget(
            Paragraph::new(lines).block(Block::bordered().title(format!(" Logs{name} "))),
            area,
        );
    }

    fn draw_footer(&self, frame: &mut Frame, area: Rect) {
        let keys = Line::from(vec![
            Span::styled(" ↑/↓", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(" select  "),
            Span::styled("r", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(" restart  "),
            Span::styled("s", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(" stop  "),
            Span::styled("q", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(" quit   "),
            Span::styled(
                escape::text(&self.message).into_owned(),
                Style::new().fg(Color::Yellow),
            ),
        ]);
        frame.render_widget(Paragraph::new(keys), area);
    }
}

/// The last `n` values of `v`.
fn tail<T>(v: &[T], n: usize) -> &[T] {
    &v[v.len().saturating_sub(n)..]
}

fn status_color(s: ProcStatus) -> Color {
    match s {
        ProcStatus::Online => Color::Green,
        ProcStatus::Launching | ProcStatus::WaitingRestart | ProcStatus::Stopping => Color::Yellow,
        ProcStatus::Stopped => Color::DarkGray,
        ProcStatus::Errored => Color::Red,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn row(id: u32, name: &str) -> ProcSummary {
        ProcSummary {
            pid: Some(100 + id),
            cpu: 1.5,
            memory: 20 * 1024 * 1024,
            restarts: id,
            started_at_ms: Some(0),
            ..crate::render::test_row(id, name)
        }
    }

    fn screen(state: &MonitState) -> String {
        let mut terminal = Terminal::new(TestBackend::new(120, 30)).unwrap();
        terminal.draw(|f| state.draw(f)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        let mut text = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    #[test]
    fn selection_follows_ids_and_stays_in_range() {
        let mut s = MonitState::default();
        assert!(s.set_procs(vec![row(0, "a"), row(1, "b"), row(2, "c")]));
        assert_eq!(s.selected, Some(0));
        assert!(s.move_selection(1));
        assert!(!s.move_selection(0));
        assert!(s.move_selection(5));
        assert_eq!(s.selected, Some(2));
        assert!(s.move_selection(-9));
        assert_eq!(s.selected, Some(0));
        s.move_selection(1);
        // The selected process is deleted: the row at its place is selected.
        assert!(s.set_procs(vec![row(0, "a"), row(2, "c")]));
        assert_eq!(s.selected, Some(2));
        assert!(!s.set_procs(vec![row(2, "c"), row(3, "d")]));
        assert!(s.set_procs(Vec::new()));
        assert_eq!(s.selected, None);
        assert!(!s.move_selection(1));
    }

    #[test]
    fn draws_list_details_sparklines_and_logs() {
        let mut s = MonitState::default();
        s.set_procs(vec![row(0, "api"), row(1, "worker")]);
        s.move_selection(1);
        s.cpu = vec![0.0, 5.0, 10.0];
        s.memory = vec![1 << 20, 2 << 20];
        s.host = Some((12.5, 1 << 30));
        s.push_log(false, "hello from worker".into());
        s.push_log(true, "oops".into());
        s.message = "restarted worker".into();
        let text = screen(&s);
        for needle in [
            "Processes (2)",
            "host cpu 12.5%",
            "api",
            "> 1",
            "worker (id 1)",
            "CPU, last minute: now 10.0%",
            "Memory, last minute",
            "Logs: worker",
            "hello from worker",
            "oops",
            "r restart",
            "restarted worker",
        ] {
            assert!(text.contains(needle), "{needle:?} not on screen:\n{text}");
        }
    }

    #[test]
    fn control_characters_never_reach_the_screen() {
        let mut s = MonitState::default();
        s.set_procs(vec![row(0, "evil\u{1b}[2Jname")]);
        s.push_log(
            false,
            "\u{1b}[32mgreen\u{1b}[0m and \u{1b}]0;title\u{7}".into(),
        );
        s.message = "restart: evil\u{1b}[2Jname…".into();
        let text = screen(&s);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text}"
        );
        for needle in ["evil\\x1b[2Jname", "green and \\x1b]0;title\\x07"] {
            assert!(text.contains(needle), "{needle:?} not on screen:\n{text}");
        }
    }

    #[test]
    fn log_buffer_is_bounded() {
        let mut s = MonitState::default();
        for i in 0..LOG_LINES + 10 {
            s.push_log(false, i.to_string());
        }
        assert_eq!(s.logs.len(), LOG_LINES);
        assert_eq!(s.logs.front().unwrap().1, "10");
    }
}
