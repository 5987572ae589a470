//! The dashboard's REST routes: one process's details, recent log lines, and the actions
//! (`POST /api/restart|stop|reload|delete|scale|flush` with `{"target": …, "count": …}`), which
//! the WebSocket shares.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use bm2_types::ErrorCode;
use bm2_types::{ActionResponse, ApiError, LogEvent, LogsRequest, ProcDetail};
use serde::{Deserialize, Serialize};

use crate::Action;
use crate::api::{ApiResult, AppState, Body, Failure};
use crate::manager::ProcessManager;

/// The body of an action: which processes (an id, a name, a namespace or `all`), and for
/// `scale` how many instances (`N`, `"+N"` or `"-N"`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    /// The target.
    pub target: Option<serde_json::Value>,
    /// Instances, for `scale`.
    pub count: Option<serde_json::Value>,
    /// For `delete`: keep the log files bm2 named for the processes (removed by default).
    pub keep_logs: Option<bool>,
}

/// What the dashboard can do to processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Restart.
    Restart,
    /// Stop.
    Stop,
    /// Reload without downtime.
    Reload,
    /// Stop and forget.
    Delete,
    /// Change the number of instances.
    Scale,
    /// Empty the log files.
    Flush,
}

impl Verb {
    /// The verb of a WebSocket message type.
    pub fn parse(name: &str) -> Option<Verb> {
        Some(match name {
            "restart" => Verb::Restart,
            "stop" => Verb::Stop,
            "reload" => Verb::Reload,
            "delete" => Verb::Delete,
            "scale" => Verb::Scale,
            "flush" => Verb::Flush,
            _ => return None,
        })
    }
}

/// A JSON scalar as a target or count string.
fn text(v: &serde_json::Value, what: &str) -> Result<String, ApiError> {
    match v {
        serde_json::Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        _ => Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("{what} must be a number or a non-empty string, not {v}"),
        )),
    }
}

/// Does `verb` with `body`.
pub async fn perform(
    manager: &ProcessManager,
    verb: Verb,
    body: &ActionBody,
) -> Result<ActionResponse, ApiError> {
    let target = match (&body.target, verb) {
        (Some(t), _) => text(t, "target")?,
        (None, Verb::Flush) => "all".to_string(),
        (None, _) => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "the body needs a \"target\": an id, a name, a namespace or \"all\"",
            ));
        }
    };
    if verb != Verb::Scale && body.count.is_some() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "\"count\" only goes with scale",
        ));
    }
    if verb != Verb::Delete && body.keep_logs.is_some() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "\"keep_logs\" only goes with delete",
        ));
    }
    let targets = [target];
    match verb {
        Verb::Restart => manager.restart(&targets, None).await,
        Verb::Stop => manager.act(Action::Stop, &targets).await,
        Verb::Reload => manager.reload(&targets, 1, None).await,
        Verb::Delete => {
            let keep_logs = body.keep_logs.unwrap_or(false);
            manager.act(Action::Delete { keep_logs }, &targets).await
        }
        Verb::Scale => {
            let count = body.count.as_ref().ok_or_else(|| {
                ApiError::new(
                    ErrorCode::BadRequest,
                    "scale needs a \"count\": N, \"+N\" or \"-N\" instances",
                )
            })?;
            manager.scale(&targets[0], &text(count, "count")?).await
        }
        Verb::Flush => {
            manager.flush_logs(&targets)?;
            Ok(ActionResponse {
                processes: manager
                    .details(Some(&targets))?
                    .into_iter()
                    .map(|d| d.summary)
                    .collect(),
                errors: Vec::new(),
                notices: Vec::new(),
            })
        }
    }
}

async fn respond(s: &AppState, verb: Verb, body: &ActionBody) -> ApiResult<ActionResponse> {
    Ok(Json(perform(&s.manager, verb, body).await?))
}

/// `POST /api/restart`.
pub async fn restart(
    State(s): State<AppState>,
    Body(b): Body<ActionBody>,
) -> ApiResult<ActionResponse> {
    respond(&s, Verb::Restart, &b).await
}

/// `POST /api/stop`.
pub async fn stop(
    State(s): State<AppState>,
    Body(b): Body<ActionBody>,
) -> ApiResult<ActionResponse> {
    respond(&s, Verb::Stop, &b).await
}

/// `POST /api/reload`.
pub async fn reload(
    State(s): State<AppState>,
    Body(b): Body<ActionBody>,
) -> ApiResult<ActionResponse> {
    respond(&s, Verb::Reload, &b).await
}

/// `POST /api/delete`.
pub async fn delete(
    State(s): State<AppState>,
    Body(b): Body<ActionBody>,
) -> ApiResult<ActionResponse> {
    respond(&s, Verb::Delete, &b).await
}

/// `POST /api/scale`.
pub async fn scale(
    State(s): State<AppState>,
    Body(b): Body<ActionBody>,
) -> ApiResult<ActionResponse> {
    respond(&s, Verb::Scale, &b).await
}

/// `POST /api/flush`.
pub async fn flush(
    State(s): State<AppState>,
    Body(b): Body<ActionBody>,
) -> ApiResult<ActionResponse> {
    respond(&s, Verb::Flush, &b).await
}

/// `GET /api/processes/{target}`: the details of the matching instances.
pub async fn detail(
    State(s): State<AppState>,
    target: Result<Path<String>, PathRejection>,
) -> ApiResult<Vec<ProcDetail>> {
    let Path(target) =
        target.map_err(|e| Failure(ApiError::new(ErrorCode::BadRequest, e.body_text())))?;
    Ok(Json(s.manager.details(Some(&[target]))?))
}

/// Query of `GET /api/logs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// The target (default: every app).
    target: Option<String>,
    /// Recent lines per stream and instance (default 100, at most 10000).
    lines: Option<usize>,
}

/// Lines of the log files.
#[derive(Debug, Serialize)]
pub struct LogLines {
    /// The lines, oldest first per stream and instance.
    pub lines: Vec<LogEvent>,
}

/// Most lines one request may ask for, per stream and instance.
pub const MAX_LINES: usize = 10_000;

/// `GET /api/logs?target=&lines=`: recent lines of the managed apps' log files (the files are
/// those bm2 writes for the target; no path from the request is opened).
pub async fn logs(
    State(s): State<AppState>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> ApiResult<LogLines> {
    let Query(q) =
        query.map_err(|e| Failure(ApiError::new(ErrorCode::BadRequest, e.body_text())))?;
    let req = LogsRequest {
        targets: q.target.into_iter().collect(),
        lines: q.lines.unwrap_or(100).min(MAX_LINES),
        follow: false,
        out: true,
        err: true,
    };
    Ok(Json(LogLines {
        lines: s.manager.logs(&req)?.history.collect().await,
    }))
}
