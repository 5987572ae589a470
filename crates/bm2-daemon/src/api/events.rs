//! The event stream (NDJSON: lifecycle events, app messages and, on request, log lines),
//! starting data from apps' options, and data sent to apps over IPC.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::Body as HttpBody;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bm2_types::{
    ActionResponse, BusEvent, EventsRequest, LogEvent, ProcId, SendDataRequest, StartOptionsRequest,
};
use tokio::sync::broadcast::{self, error::RecvError};

use super::{ApiResult, AppState, Body, Failure};
use crate::ProcessManager;

/// `POST /v1/events`: `{"type":"subscribed"}`, then every event until the client leaves or
/// the daemon stops.
pub async fn events(
    State(s): State<AppState>,
    Body(req): Body<EventsRequest>,
) -> Result<Response, Failure> {
    let ids = s.manager.target_ids(&req.targets)?;
    let follow = Follow {
        bus: s.manager.subscribe_events(),
        logs: req.logs.then(|| s.manager.subscribe_logs()),
        ids,
        manager: s.manager.clone(),
        closing: s.manager.streams_end(),
        started: false,
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        let bytes = f.next().await?;
        Some((Ok::<_, Infallible>(bytes), f))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        HttpBody::from_stream(stream),
    )
        .into_response())
}

struct Follow {
    bus: broadcast::Receiver<Arc<BusEvent>>,
    logs: Option<broadcast::Receiver<Arc<LogEvent>>>,
    ids: Option<HashSet<ProcId>>,
    manager: Arc<ProcessManager>,
    closing: tokio::sync::watch::Receiver<bool>,
    started: bool,
}

impl Follow {
    async fn next(&mut self) -> Option<Vec<u8>> {
        if !self.started {
            self.started = true;
            return Some(line(&BusEvent::Subscribed));
        }
        loop {
            let event = tokio::select! {
                e = self.bus.recv() => match e {
                    Ok(e) => e,
                    Err(RecvError::Lagged(missed)) => Arc::new(BusEvent::Lagged { missed }),
                    Err(RecvError::Closed) => return None,
                },
                e = recv_log(self.logs.as_mut()) => match e {
                    Ok(e) => match log_event(&self.manager, &e) {
                        Some(e) => Arc::new(e),
                        None => continue,
                    },
                    Err(RecvError::Lagged(missed)) => Arc::new(BusEvent::Lagged { missed }),
                    Err(RecvError::Closed) => return None,
                },
                _ = self.closing.wait_for(|c| *c) => return None,
            };
            if self.wanted(&event) {
                return Some(line(&event));
            }
        }
    }

    fn wanted(&self, event: &BusEvent) -> bool {
        let id = match event {
            BusEvent::Process { process, .. }
            | BusEvent::LogOut { process, .. }
            | BusEvent::LogErr { process, .. }
            | BusEvent::Message { process, .. } => process.id,
            BusEvent::Subscribed | BusEvent::Lagged { .. } => return true,
        };
        self.ids.as_ref().is_none_or(|ids| ids.contains(&id))
    }
}

/// A log line as an event; `None` for the hub's own notices.
fn log_event(manager: &ProcessManager, e: &LogEvent) -> Option<BusEvent> {
    if e.skipped.is_some() {
        return None;
    }
    let process = manager.proc_ref(e.id)?;
    let at_ms = crate::time::now_ms();
    let data = e.line.clone();
    Some(if e.stream == "err" {
        BusEvent::LogErr {
            at_ms,
            process,
            data,
        }
    } else {
        BusEvent::LogOut {
            at_ms,
            process,
            data,
        }
    })
}

async fn recv_log(
    rx: Option<&mut broadcast::Receiver<Arc<LogEvent>>>,
) -> Result<Arc<LogEvent>, RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn line(e: &BusEvent) -> Vec<u8> {
    let mut v = serde_json::to_vec(e).unwrap_or_default();
    v.push(b'\n');
    v
}

/// `POST /v1/send-data`: PM2's `sendDataToProcessId`.
pub async fn send_data(
    State(s): State<AppState>,
    Body(req): Body<SendDataRequest>,
) -> ApiResult<ActionResponse> {
    Ok(Json(
        s.manager
            .send_data(&req.targets, &req.data, req.topic.as_deref())
            .await?,
    ))
}

/// `POST /v1/start-options`: starts apps from their options, resolved by the daemon.
pub async fn start_options(
    State(s): State<AppState>,
    Body(req): Body<StartOptionsRequest>,
) -> ApiResult<ActionResponse> {
    Ok(Json(s.manager.start_options(req).await?))
}
