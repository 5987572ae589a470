//! Log routes: recent and live lines (NDJSON stream), flush, reload.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::Body as HttpBody;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bm2_types::{LogEvent, LogFilesResponse, LogsRequest, ProcId, TargetRequest};
use futures_util::StreamExt;
use tokio::sync::broadcast::{self, error::RecvError};

use super::{ApiResult, AppState, Body, Failure};

/// Recent lines, then (with `follow`) every new line, one JSON object per line.
pub async fn logs(
    State(s): State<AppState>,
    Body(req): Body<LogsRequest>,
) -> Result<Response, Failure> {
    let snap = s.manager.logs(&req)?;
    // Read a chunk at a time in the blocking pool, as the client takes them.
    let history = snap.history.chunks().map(|events| {
        let mut bytes = Vec::new();
        for e in &events {
            bytes.extend(ndjson(e));
        }
        Ok(bytes)
    });
    let follow = Follow {
        rx: snap.live,
        ids: snap.ids,
        out: req.out,
        err: req.err,
        closing: s.manager.streams_end(),
    };
    let live = futures_util::stream::unfold(follow, |mut f| async move {
        let bytes = f.next().await?;
        Some((Ok::<_, Infallible>(bytes), f))
    });
    let body = HttpBody::from_stream(history.chain(live));
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

struct Follow {
    rx: Option<broadcast::Receiver<Arc<LogEvent>>>,
    ids: Option<HashSet<ProcId>>,
    out: bool,
    err: bool,
    closing: tokio::sync::watch::Receiver<bool>,
}

impl Follow {
    /// The next line to send; `None` ends the stream (not following, or the daemon is stopping).
    async fn next(&mut self) -> Option<Vec<u8>> {
        let rx = self.rx.as_mut()?;
        loop {
            let received = tokio::select! {
                r = rx.recv() => r,
                _ = self.closing.wait_for(|c| *c) => return None,
            };
            match received {
                Ok(e) => {
                    let wanted_stream = if e.stream == "err" {
                        self.err
                    } else {
                        self.out
                    };
                    if wanted_stream && self.ids.as_ref().is_none_or(|ids| ids.contains(&e.id)) {
                        return Some(ndjson(&e));
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    return Some(ndjson(&LogEvent {
                        id: 0,
                        name: String::new(),
                        app: String::new(),
                        stream: String::new(),
                        line: String::new(),
                        history: false,
                        skipped: Some(n),
                    }));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

fn ndjson(e: &LogEvent) -> Vec<u8> {
    let mut v = serde_json::to_vec(e).unwrap_or_default();
    v.push(b'\n');
    v
}

/// Empties log files (all apps when no target is given).
pub async fn flush(
    State(s): State<AppState>,
    Body(req): Body<TargetRequest>,
) -> ApiResult<LogFilesResponse> {
    Ok(Json(LogFilesResponse {
        files: s.manager.flush_logs(&req.targets)?,
    }))
}

/// Reopens every log file.
pub async fn reload(State(s): State<AppState>) -> Json<LogFilesResponse> {
    Json(LogFilesResponse {
        files: s.manager.reopen_logs(),
    })
}
