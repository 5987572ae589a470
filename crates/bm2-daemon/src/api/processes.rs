//! Process routes: list, describe, start, stop, restart, delete, reset, signal.

use axum::Json;
use axum::extract::State;
use bm2_types::{
    ActionResponse, DeleteRequest, DescribeResponse, ProcDetail, ProcSummary, ReloadRequest,
    RestartRequest, ScaleRequest, SendRequest, SignalRequest, StartRequest, StopRequest,
    TargetRequest,
};

use super::{ApiResult, AppState, Body};
use crate::Action;

pub async fn list(State(s): State<AppState>) -> Json<Vec<ProcSummary>> {
    Json(s.manager.list())
}

pub async fn details(State(s): State<AppState>) -> ApiResult<Vec<ProcDetail>> {
    Ok(Json(s.manager.details(None)?))
}

pub async fn describe(
    State(s): State<AppState>,
    Body(req): Body<TargetRequest>,
) -> ApiResult<DescribeResponse> {
    Ok(Json(DescribeResponse {
        processes: s.manager.details(Some(&req.targets))?,
    }))
}

pub async fn start(
    State(s): State<AppState>,
    Body(req): Body<StartRequest>,
) -> ApiResult<ActionResponse> {
    Ok(Json(s.manager.start(req).await?))
}

async fn act(s: &AppState, action: Action, req: &TargetRequest) -> ApiResult<ActionResponse> {
    Ok(Json(s.manager.act(action, &req.targets).await?))
}

pub async fn stop(
    State(s): State<AppState>,
    Body(req): Body<StopRequest>,
) -> ApiResult<ActionResponse> {
    Ok(Json(s.manager.stop(&req.targets, req.stop_watching).await?))
}

pub async fn restart(
    State(s): State<AppState>,
    Body(req): Body<RestartRequest>,
) -> ApiResult<ActionResponse> {
    Ok(Json(
        s.manager
            .restart_toggling(&req.targets, req.update_env.as_ref(), req.toggle_watch)
            .await?,
    ))
}

pub async fn delete(
    State(s): State<AppState>,
    Body(req): Body<DeleteRequest>,
) -> ApiResult<ActionResponse> {
    let action = Action::Delete {
        keep_logs: req.keep_logs,
    };
    Ok(Json(s.manager.act(action, &req.targets).await?))
}

pub async fn reset(
    State(s): State<AppState>,
    Body(req): Body<TargetRequest>,
) -> ApiResult<ActionResponse> {
    act(&s, Action::Reset, &req).await
}

/// Writes a line to the stdin of processes.
pub async fn send(
    State(s): State<AppState>,
    Body(req): Body<SendRequest>,
) -> ApiResult<ActionResponse> {
    Ok(Json(s.manager.send_line(&req.targets, &req.line).await?))
}

pub async fn signal(
    State(s): State<AppState>,
    Body(req): Body<SignalRequest>,
) -> ApiResult<ActionResponse> {
    Ok(Json(s.manager.signal(&req.targets, req.signal).await?))
}

/// Reloads processes without downtime.
pub async fn reload(
    State(s): State<AppState>,
    Body(req): Body<ReloadRequest>,
) -> ApiResult<ActionResponse> {
    Ok(Json(
        s.manager
            .reload(
                &req.targets,
                req.parallel.unwrap_or(1),
                req.update_env.as_ref(),
            )
            .await?,
    ))
}

/// Changes the number of instances of an app.
pub async fn scale(
    State(s): State<AppState>,
    Body(req): Body<ScaleRequest>,
) -> ApiResult<ActionResponse> {
    Ok(Json(s.manager.scale(&req.app, &req.instances).await?))
}
