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
        let mut errors = Vec::new();
        for h in &handles {
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
            if let Err(e) = result {
                let (code, message) = match e {
                    SendError::NotRunning => (
                        ErrorCode::NotRunning,
                        format!("{name} (id {id}) is not running ({status}): nothing to send to"),
                    ),
                    other => (ErrorCode::IoError, format!("{name} (id {id}): {other}")),
                };
                errors.push(ApiError::new(code, message));
            }
        }
        Ok(ActionResponse {
            processes: handles.iter().map(|h| self.summary(h)).collect(),
            errors,
            notices: Vec::new(),
        })
    }
}
