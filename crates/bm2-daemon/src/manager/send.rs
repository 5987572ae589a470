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
