//! `send`: a line to the stdin of processes (PM2's `pm2 send <id> <line>`).

use bm2_types::{ActionResponse, ApiError, ErrorCode};

use super::ProcessManager;
use crate::supervisor::stdin::SendError;

impl ProcessManager {
    /// Writes `line` and a newline to the stdin of each process named by `targets`. A process
    /// that is not running, has closed its stdin or does not read it is reported in `errors`;
    /// the others get the line.
    pub async fn send_line(
        &self,
        targets: &[String],
        line: &str,
    ) -> Result<ActionResponse, ApiError> {
        let handles = self.registry.resolve(targets)?;
        // Every target at once: a process that does not read delays only its own answer.
        let results =
            futures_util::future::join_all(handles.iter().map(|h| send_to(h, line))).await;
        let errors = results.into_iter().filter_map(Result::err).collect();
        Ok(ActionResponse {
            processes: handles.iter().map(|h| self.summary(h)).collect(),
            errors,
            notices: Vec::new(),
        })
    }
}

impl ProcessManager {
    /// Sends `data` (with `topic`) to the processes of `targets` over their IPC channel, as
    /// PM2's `sendDataToProcessId`: each receives `{type: 'process:msg', topic, data, id}`.
    pub async fn send_data(
        &self,
        targets: &[String],
        data: &serde_json::Value,
        topic: Option<&str>,
    ) -> Result<ActionResponse, ApiError> {
        let handles = self.registry.resolve(targets)?;
        let sends = handles.iter().map(|h| {
            h.send_data(serde_json::json!({
                "type": "process:msg",
                "topic": topic,
                "data": data,
                "id": h.inst.id,
            }))
        });
        let errors = futures_util::future::join_all(sends)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        Ok(ActionResponse {
            processes: handles.iter().map(|h| self.summary(h)).collect(),
            errors,
            notices: Vec::new(),
        })
    }

    /// The ids `targets` name now; `None` (every process, also later ones) when empty or `all`.
    pub fn target_ids(
        &self,
        targets: &[String],
    ) -> Result<Option<std::collections::HashSet<bm2_types::ProcId>>, ApiError> {
        if targets.is_empty() || targets.iter().any(|t| t == "all") {
            return Ok(None);
        }
        Ok(Some(
            self.registry
                .resolve(targets)?
                .iter()
                .map(|h| h.inst.id)
                .collect(),
        ))
    }

    /// A subscription to the event bus.
    pub fn subscribe_events(
        &self,
    ) -> tokio::sync::broadcast::Receiver<std::sync::Arc<bm2_types::BusEvent>> {
        self.shared.bus.subscribe()
    }

    /// A subscription to every log line.
    pub fn subscribe_logs(
        &self,
    ) -> tokio::sync::broadcast::Receiver<std::sync::Arc<bm2_types::LogEvent>> {
        self.shared.logs.subscribe()
    }

    /// The process `id` as events name it.
    pub fn proc_ref(&self, id: bm2_types::ProcId) -> Option<bm2_types::ProcRef> {
        let h = self.registry.get(id)?;
        let v = h.view.borrow();
        Some(h.inst.proc_ref(v.pid, &v.spec.namespace))
    }
}

/// Writes `line` and a newline to the stdin of `h`'s current process.
async fn send_to(h: &crate::supervisor::handle::Handle, line: &str) -> Result<(), ApiError> {
    let (pid, status) = {
        let v = h.view.borrow();
        (v.pid, v.status.as_str())
    };
    let name = h.inst.display_name();
    let id = h.inst.id;
    let result = match pid {
        Some(pid) => {
            h.inst
                .stdin
                .write(pid, format!("{line}\n").into_bytes())
                .await
        }
        None => Err(SendError::NotRunning),
    };
    result.map_err(|e| match e {
        SendError::NotRunning => ApiError::new(
            ErrorCode::NotRunning,
            format!("{name} (id {id}) is not running ({status}): nothing to send to"),
        ),
        other => ApiError::new(ErrorCode::IoError, format!("{name} (id {id}): {other}")),
    })
}
