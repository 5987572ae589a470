//! The dashboard's WebSocket (`/ws`): a snapshot of the processes and metrics, then each change
//! as it happens, metrics every 2 s, the selected process's log lines, and actions.
//!
//! Memory per connection is bounded: changes are read from a counter (not queued), log lines
//! from the log hub's fixed ring (a reader that falls behind is told how many lines it
//! missed), and a client that does not read stalls only its own connection.

use bm2_types::ErrorCode;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use bm2_types::{ApiError, LogEvent, LogsRequest, ProcId, ProcSummary};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Semaphore, broadcast, mpsc, watch};

use super::rest::{self, ActionBody, Verb};
use crate::api::{AppState, Failure};

/// How often metrics are pushed.
const METRICS_EVERY: Duration = Duration::from_secs(2);
/// Largest message a client may send.
const MAX_MESSAGE: usize = 64 * 1024;
/// Most recent lines `getLogs` sends per stream.
const MAX_LOG_LINES: usize = 1000;

/// The WebSocket sessions of one dashboard: at most `max` at once (`[dashboard] max_sessions`),
/// so that open connections cannot use up the daemon's memory.
#[derive(Debug, Clone)]
pub struct Sessions {
    slots: Arc<Semaphore>,
    max: usize,
}

impl Sessions {
    /// Room for `max` sessions.
    pub fn new(max: usize) -> Sessions {
        Sessions {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }
}

/// `GET /ws`: upgrades to the WebSocket when a session slot is free (503 otherwise). The slot is
/// held until the session ends.
pub async fn upgrade(
    State(state): State<AppState>,
    Extension(stopped): Extension<watch::Receiver<bool>>,
    Extension(sessions): Extension<Sessions>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            return Failure(ApiError::new(
                ErrorCode::BadRequest,
                format!("/ws takes WebSocket connections only: {}", e.body_text()),
            ))
            .into_response();
        }
    };
    let Ok(slot) = sessions.slots.clone().try_acquire_owned() else {
        return Failure(
            ApiError::new(
                ErrorCode::TooManySessions,
                format!(
                    "the dashboard already has {} live WebSocket sessions, its limit",
                    sessions.max
                ),
            )
            .with_hint(
                "close another dashboard tab or client and retry, or raise max_sessions under \
                 [dashboard] in config.toml (bm2 dashboard --max-sessions)",
            ),
        )
        .into_response();
    };
    ws.max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| async move {
            session(state, stopped, socket).await;
            drop(slot);
        })
}

/// A message from the client: `{"type": …, "id": …, "data": …}`.
#[derive(Debug, Deserialize)]
struct Incoming {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    data: Option<Value>,
}

/// The live log lines the client follows.
struct Follow {
    rx: broadcast::Receiver<Arc<LogEvent>>,
    ids: HashSet<ProcId>,
}

/// What a row is compared on to decide that a process changed.
type RowKey = (String, Option<u32>, u32, u32, Option<u64>, String);

fn row_key(p: &ProcSummary) -> RowKey {
    (
        p.status.as_str().to_string(),
        p.pid,
        p.restarts,
        p.unstable_restarts,
        p.started_at_ms,
        p.instance_name.clone(),
    )
}

async fn session(state: AppState, mut stopped: watch::Receiver<bool>, mut socket: WebSocket) {
    let mut changes = state.manager.changes();
    let mut closing = state.manager.streams_end();
    let mut known: BTreeMap<ProcId, RowKey> = BTreeMap::new();
    let mut follow: Option<Follow> = None;
    let mut bus: Option<broadcast::Receiver<Arc<bm2_types::BusEvent>>> = None;
    let (results_tx, mut results) = mpsc::channel::<Value>(16);
    let mut tick = tokio::time::interval(METRICS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick.tick().await;
    changes.borrow_and_update();
    let first = state_message(&state, &mut known).await;
    if send(&mut socket, &first).await.is_err() {
        return;
    }
    loop {
        let out: Vec<Value> = tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(text))) => {
                    on_message(&state, text.as_str(), &mut known, &mut follow, &mut bus, &results_tx).await
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => Vec::new(),
            },
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
                diff(&state, &mut known)
            }
            _ = tick.tick() => match state.manager.metrics().await {
                Ok(m) => vec![json!({ "type": "metrics", "data": m })],
                Err(_) => Vec::new(),
            },
            line = next_line(&mut follow) => line.into_iter().collect(),
            event = next_event(&mut bus) => event.into_iter().collect(),
            Some(result) = results.recv() => vec![result],
            () = until_true(&mut stopped) => break,
            () = until_true(&mut closing) => break,
        };
        for m in &out {
            if send(&mut socket, m).await.is_err() {
                return;
            }
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

/// The next event of the bus, for a session that subscribed (`subscribeEvents`); a session
/// that falls behind gets `lagged` with how many it missed.
async fn next_event(
    bus: &mut Option<broadcast::Receiver<Arc<bm2_types::BusEvent>>>,
) -> Option<Value> {
    let Some(rx) = bus.as_mut() else {
        return std::future::pending().await;
    };
    let event = match rx.recv().await {
        Ok(e) => serde_json::to_value(&*e).ok()?,
        Err(RecvError::Lagged(missed)) => {
            serde_json::to_value(bm2_types::BusEvent::Lagged { missed }).ok()?
        }
        Err(RecvError::Closed) => {
            *bus = None;
            return None;
        }
    };
    Some(json!({ "type": "event", "data": event }))
}

/// Returns once `flag` is true (or its sender is gone).
async fn until_true(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|f| *f).await;
}

async fn send(socket: &mut WebSocket, message: &Value) -> Result<(), axum::Error> {
    socket.send(Message::Text(message.to_string().into())).await
}

/// The whole state: every process and the metrics.
async fn state_message(state: &AppState, known: &mut BTreeMap<ProcId, RowKey>) -> Value {
    let processes = state.manager.list();
    *known = processes.iter().map(|p| (p.id, row_key(p))).collect();
    let metrics = state.manager.metrics().await.ok();
    json!({ "type": "state", "data": { "processes": processes, "metrics": metrics } })
}

/// Messages for the processes that changed or went away since the last look.
fn diff(state: &AppState, known: &mut BTreeMap<ProcId, RowKey>) -> Vec<Value> {
    let processes = state.manager.list();
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for p in &processes {
        seen.insert(p.id);
        let key = row_key(p);
        if known.get(&p.id) != Some(&key) {
            known.insert(p.id, key);
            out.push(json!({ "type": "process", "data": p }));
        }
    }
    let gone: Vec<ProcId> = known
        .keys()
        .filter(|id| !seen.contains(id))
        .copied()
        .collect();
    for id in gone {
        known.remove(&id);
        out.push(json!({ "type": "removed", "data": { "id": id } }));
    }
    out
}

/// The next followed log line (pending forever when nothing is followed).
async fn next_line(follow: &mut Option<Follow>) -> Option<Value> {
    let Some(f) = follow.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        match f.rx.recv().await {
            Ok(e) if f.ids.contains(&e.id) => {
                return Some(json!({ "type": "log", "data": {
                    "id": e.id, "name": e.name, "app": e.app, "stream": e.stream, "line": e.line,
                }}));
            }
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => {
                return Some(json!({ "type": "log", "data": { "skipped": n } }));
            }
            Err(RecvError::Closed) => {
                *follow = None;
                return std::future::pending().await;
            }
        }
    }
}

fn error(id: Option<&Value>, e: &ApiError) -> Value {
    json!({ "type": "error", "id": id, "data": e })
}

/// Answers one client message.
async fn on_message(
    state: &AppState,
    text: &str,
    known: &mut BTreeMap<ProcId, RowKey>,
    follow: &mut Option<Follow>,
    bus: &mut Option<broadcast::Receiver<Arc<bm2_types::BusEvent>>>,
    results: &mpsc::Sender<Value>,
) -> Vec<Value> {
    let msg: Incoming = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            return vec![error(
                None,
                &ApiError::new(
                    ErrorCode::BadRequest,
                    format!("messages are JSON objects with a \"type\": {e}"),
                ),
            )];
        }
    };
    let id = msg.id;
    match msg.kind.as_str() {
        "getState" => vec![state_message(state, known).await],
        // The event stream of `/v1/events` (lifecycle events and app messages), as
        // `{"type":"event","data":{...}}` messages until `unsubscribeEvents`.
        "subscribeEvents" => {
            *bus = Some(state.manager.subscribe_events());
            vec![json!({ "type": "result", "id": id, "data": { "subscribed": true } })]
        }
        "unsubscribeEvents" => {
            *bus = None;
            vec![json!({ "type": "result", "id": id, "data": { "subscribed": false } })]
        }
        "getLogs" => match get_logs(state, msg.data.as_ref()).await {
            Ok((reply, f)) => {
                *follow = Some(f);
                vec![reply]
            }
            Err(e) => vec![error(id.as_ref(), &e)],
        },
        kind => {
            let Some(verb) = Verb::parse(kind) else {
                return vec![error(
                    id.as_ref(),
                    &ApiError::new(
                        ErrorCode::BadRequest,
                        format!(
                            "unknown message type {kind:?}: expected getState, getLogs, restart, \
                             stop, reload, delete, scale or flush"
                        ),
                    ),
                )];
            };
            let body: ActionBody = match serde_json::from_value(msg.data.unwrap_or(json!({}))) {
                Ok(b) => b,
                Err(e) => {
                    return vec![error(
                        id.as_ref(),
                        &ApiError::new(ErrorCode::BadRequest, format!("{kind}: {e}")),
                    )];
                }
            };
            // Actions may take long (a reload): the session keeps streaming meanwhile.
            let manager = state.manager.clone();
            let results = results.clone();
            tokio::spawn(async move {
                let reply = match rest::perform(&manager, verb, &body).await {
                    Ok(r) => json!({ "type": "result", "id": id, "data": r }),
                    Err(e) => error(id.as_ref(), &e),
                };
                let _ = results.send(reply).await;
            });
            Vec::new()
        }
    }
}

/// `getLogs {target, lines}`: recent lines of the target, and the live lines to follow.
async fn get_logs(state: &AppState, data: Option<&Value>) -> Result<(Value, Follow), ApiError> {
    let target = match data.and_then(|d| d.get("target")) {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "getLogs needs data.target: an id, a name or \"all\"",
            ));
        }
    };
    let lines = data
        .and_then(|d| d.get("lines"))
        .and_then(Value::as_u64)
        .map_or(50, |n| n as usize)
        .min(MAX_LOG_LINES);
    let snap = state.manager.logs(&LogsRequest {
        targets: vec![target.clone()],
        lines,
        follow: true,
        out: true,
        err: true,
    })?;
    let names: BTreeMap<ProcId, String> = state
        .manager
        .list()
        .into_iter()
        .map(|p| (p.id, p.instance_name))
        .collect();
    let ids: HashSet<ProcId> = snap.ids.unwrap_or_else(|| names.keys().copied().collect());
    // Every followed instance is listed, with or without lines yet.
    let mut per: BTreeMap<ProcId, (Vec<String>, Vec<String>)> =
        ids.iter().map(|id| (*id, Default::default())).collect();
    for e in snap.history.collect().await {
        let (out, err) = per.entry(e.id).or_default();
        if e.stream == "err" {
            err.push(e.line);
        } else {
            out.push(e.line);
        }
    }
    let data: Vec<Value> = per
        .into_iter()
        .map(|(id, (out, err))| {
            let name = names.get(&id).map_or("", String::as_str);
            json!({ "id": id, "name": name, "out": out, "err": err })
        })
        .collect();
    let rx = snap
        .live
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "no live log feed"))?;
    Ok((
        json!({ "type": "logs", "target": target, "data": data }),
        Follow { rx, ids },
    ))
}
