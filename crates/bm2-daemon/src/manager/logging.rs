//! `logs`, `flush`, `reloadLogs`.

use std::sync::Arc;

use bm2_types::{ApiError, LogsRequest, ProcId};

use super::ProcessManager;
use crate::logs;

/// Recent log lines and the feed of new ones, for `bm2 logs`.
pub struct LogSnapshot {
    /// Lines already in the files, read on demand.
    pub history: crate::logs::history::History,
    /// New lines, when following.
    pub live: Option<tokio::sync::broadcast::Receiver<Arc<bm2_types::LogEvent>>>,
    /// The instances to follow; `None` for every app.
    pub ids: Option<std::collections::HashSet<ProcId>>,
}

impl ProcessManager {
    /// Recent lines of the instances named by `req`, and (when following) a feed of new lines,
    /// taken together so that no line is missed or sent twice. Also returns the ids to follow
    /// (`None`: every app, including apps started later).
    pub fn logs(&self, req: &LogsRequest) -> Result<LogSnapshot, ApiError> {
        let everything = req.targets.is_empty() || req.targets.iter().any(|t| t == "all");
        let handles = if everything {
            self.registry.all()
        } else {
            self.registry.resolve(&req.targets)?
        };
        let instances: Vec<_> = handles.iter().map(|h| h.inst.logs.clone()).collect();
        let (history, live) = logs::history::take(&self.shared.logs, &instances, req)?;
        Ok(LogSnapshot {
            history,
            live,
            ids: (!everything).then(|| handles.iter().map(|h| h.inst.id).collect()),
        })
    }

    /// Empties the log files of the instances named by `targets` (all when empty).
    pub fn flush_logs(&self, targets: &[String]) -> Result<usize, ApiError> {
        let handles = if targets.is_empty() {
            self.registry.all()
        } else {
            self.registry.resolve(targets)?
        };
        for h in &handles {
            logs::lock(&h.inst.logs).flush();
        }
        Ok(handles.len())
    }

    /// Reopens every log file; returns how many.
    pub fn reopen_logs(&self) -> usize {
        self.shared.logs.reopen_all()
    }
}
