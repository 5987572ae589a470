//! `monit`: the full-screen monitor. Refreshes once a second (list, the selected process's
//! details and its last minute of history), follows the selected process's log stream, and
//! otherwise sleeps until a key, a log line or the next refresh: there is no polling loop.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bm2_client::{Client, ClientError};
use bm2_types::{LogEvent, LogsRequest, ProcId};
use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::api_error;
use crate::render::monit::MonitState;

/// How often the list and the selected process's figures are fetched.
const REFRESH: Duration = Duration::from_secs(1);
/// Log lines are drawn at most this often.
const LOG_REDRAW: Duration = Duration::from_millis(100);
/// Seconds of history behind the sparklines.
const SPARK_SECONDS: u64 = 60;
/// Recent log lines shown when a process is selected.
const LOG_BACKLOG: usize = 100;

/// What wakes the monitor up.
enum Msg {
    Key(KeyEvent),
    Resize,
    /// A log line of the stream numbered by the first field.
    Log(u64, LogEvent),
    /// The log stream ended, with an error or not.
    LogEnded(u64, Option<String>),
    /// An action finished; the text says how.
    Done(String),
}

pub async fn run(client: &Client) -> anyhow::Result<ExitCode> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "bm2 monit needs a terminal; in scripts use `bm2 list --watch`, `bm2 metrics` or `bm2 prometheus`"
        );
    }
    // Start the daemon (if needed) before the screen is taken over.
    client.ping().await.map_err(api_error)?;
    let mut terminal = ratatui::try_init()?;
    let (tx, rx) = mpsc::unbounded_channel();
    let mut monitor = Monitor {
        client: Arc::new(Client::new(client.home().clone())),
        state: MonitState::default(),
        tx,
        rx,
        log_task: None,
        log_stream: 0,
    };
    let result = monitor.run(&mut terminal).await;
    ratatui::restore();
    if let Some(task) = monitor.log_task.take() {
        task.abort();
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

struct Monitor {
    client: Arc<Client>,
    state: MonitState,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    log_task: Option<JoinHandle<()>>,
    /// Number of the current log stream; lines of older streams are dropped.
    log_stream: u64,
}

impl Monitor {
    async fn run(&mut self, terminal: &mut DefaultTerminal) -> anyhow::Result<()> {
        read_input(self.tx.clone());
        let mut tick = tokio::time::interval(REFRESH);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut dirty = true;
        let mut logs_pending = false;
        let mut last_draw = Instant::now();
        loop {
            if dirty {
                terminal.draw(|f| self.state.draw(f))?;
                dirty = false;
                logs_pending = false;
                last_draw = Instant::now();
            }
            tokio::select! {
                _ = tick.tick() => {
                    self.refresh().await;
                    dirty = true;
                }
                () = tokio::time::sleep_until(last_draw + LOG_REDRAW), if logs_pending => {
                    dirty = true;
                }
                msg = self.rx.recv() => {
                    let Some(msg) = msg else { return Ok(()) };
                    match msg {
                        Msg::Key(key) => {
                            if self.on_key(key).await {
                                return Ok(());
                            }
                            dirty = true;
                        }
                        Msg::Resize => dirty = true,
                        Msg::Log(stream, e) => {
                            if stream == self.log_stream {
                                self.on_log(e);
                                logs_pending = true;
                            }
                        }
                        Msg::LogEnded(stream, error) => {
                            if stream == self.log_stream && let Some(error) = error {
                                self.state.message = format!("log stream ended: {error}");
                                dirty = true;
                            }
                        }
                        Msg::Done(text) => {
                            self.state.message = text;
                            self.refresh().await;
                            dirty = true;
                        }
                    }
                }
            }
        }
    }

    /// Handles a key; returns true to quit.
    async fn on_key(&mut self, key: KeyEvent) -> bool {
        let moved = match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return true,
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => return true,
            KeyCode::Up | KeyCode::Char('k') => self.state.move_selection(-1),
            KeyCode::Down | KeyCode::Char('j') => self.state.move_selection(1),
            KeyCode::PageUp => self.state.move_selection(-10),
            KeyCode::PageDown => self.state.move_selection(10),
            KeyCode::Home => self.state.move_selection(isize::MIN / 2),
            KeyCode::End => self.state.move_selection(isize::MAX / 2),
            KeyCode::Char('r') => {
                self.act("restart");
                false
            }
            KeyCode::Char('s') => {
                self.act("stop");
                false
            }
            _ => false,
        };
        if moved {
            self.selection_changed().await;
        }
        false
    }

    /// Restarts or stops the selected process in the background; the outcome comes back as
    /// [`Msg::Done`].
    fn act(&mut self, verb: &'static str) {
        let Some(p) = self.state.selected_proc() else {
            self.state.message = "no process selected".into();
            return;
        };
        let (id, name) = (p.id, p.instance_name.clone());
        self.state.message = format!("{verb}: {name}…");
        let client = self.client.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let targets = vec![id.to_string()];
            let res = if verb == "restart" {
                client.restart(targets).await
            } else {
                client.stop(targets).await
            };
            let text = match res {
                Ok(r) if r.errors.is_empty() => format!("{verb}: {name} done"),
                Ok(r) => format!("{verb}: {name}: {}", r.errors[0].message),
                Err(e) => format!("{verb}: {name}: {e}"),
            };
            let _ = tx.send(Msg::Done(text));
        });
    }

    fn on_log(&mut self, e: LogEvent) {
        if let Some(n) = e.skipped {
            self.state.push_log(
                true,
                format!("[bm2] {n} lines skipped: the monitor fell behind"),
            );
        } else {
            self.state.push_log(e.stream == "err", e.line);
        }
    }

    /// Fetches the list, then the selected process's details and history.
    async fn refresh(&mut self) {
        match self.client.list().await {
            Ok(list) => {
                if self.state.set_procs(list) {
                    self.selection_changed().await;
                    return;
                }
            }
            Err(e) => {
                self.state.message = format!("cannot reach the daemon: {e}");
                return;
            }
        }
        self.refresh_selected().await;
    }

    async fn selection_changed(&mut self) {
        self.state.clear_selection_data();
        if let Some(task) = self.log_task.take() {
            task.abort();
        }
        self.log_stream += 1;
        if let Some(id) = self.state.selected {
            self.follow_logs(id);
        }
        self.refresh_selected().await;
    }

    async fn refresh_selected(&mut self) {
        let id = self.state.selected;
        if let Some(id) = id {
            match self.client.describe(vec![id.to_string()]).await {
                Ok(mut d) if !d.processes.is_empty() => {
                    self.state.detail = Some(d.processes.swap_remove(0));
                }
                Ok(_) => {}
                Err(e) => self.report(&e),
            }
        }
        match self.client.metrics_history(SPARK_SECONDS, id).await {
            Ok(h) => {
                let cpu = h.system.cpu_usage.last().copied();
                let free = h.system.free_memory.last().copied();
                self.state.host = cpu.zip(free);
                if let Some(p) = h.processes.into_iter().find(|p| Some(p.id) == id) {
                    self.state.cpu = p.cpu.into_iter().flatten().collect();
                    self.state.memory = p.memory.into_iter().flatten().collect();
                }
            }
            Err(e) => self.report(&e),
        }
    }

    fn report(&mut self, e: &ClientError) {
        // A process deleted between two calls is not worth a message: the next list drops it.
        if !matches!(e, ClientError::Api(api) if api.code == bm2_types::ErrorCode::UnknownTarget) {
            self.state.message = e.to_string();
        }
    }

    /// Follows the log stream of `id` in a task that sends its lines as [`Msg::Log`].
    fn follow_logs(&mut self, id: ProcId) {
        let stream = self.log_stream;
        let client = self.client.clone();
        let tx = self.tx.clone();
        self.log_task = Some(tokio::spawn(async move {
            let req = LogsRequest {
                targets: vec![id.to_string()],
                lines: LOG_BACKLOG,
                follow: true,
                out: true,
                err: true,
            };
            let end = match client.logs(&req).await {
                Ok(mut lines) => loop {
                    match lines.next().await {
                        Some(Ok(e)) => {
                            if tx.send(Msg::Log(stream, e)).is_err() {
                                return;
                            }
                        }
                        Some(Err(e)) => break Some(e.to_string()),
                        None => break None,
                    }
                },
                Err(e) => Some(e.to_string()),
            };
            let _ = tx.send(Msg::LogEnded(stream, end));
        }));
    }
}

/// Reads keys and resizes on a thread of its own (the terminal read blocks), for as long as the
/// monitor listens.
fn read_input(tx: mpsc::UnboundedSender<Msg>) {
    std::thread::spawn(move || {
        loop {
            let msg = match event::read() {
                Ok(Event::Key(k)) if k.kind == KeyEventKind::Press => Msg::Key(k),
                Ok(Event::Resize(..)) => Msg::Resize,
                Ok(_) => continue,
                Err(_) => return,
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
    });
}
