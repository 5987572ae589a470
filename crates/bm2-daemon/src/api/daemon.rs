//! Daemon routes: ping, save, resurrect, kill.

use axum::Json;
use axum::extract::State;
use bm2_types::{
    ActionResponse, ApiError, ErrorCode, PingResponse, ResurrectRequest, SaveResponse,
    UpdateRequest, UpdateResponse,
};

use super::{ApiResult, AppState, Body};

pub async fn ping(State(s): State<AppState>) -> Json<PingResponse> {
    Json(s.manager.ping())
}

pub async fn save(State(s): State<AppState>) -> ApiResult<SaveResponse> {
    Ok(Json(s.manager.save().await?))
}

pub async fn resurrect(
    State(s): State<AppState>,
    Body(req): Body<ResurrectRequest>,
) -> ApiResult<ActionResponse> {
    Ok(Json(s.manager.resurrect(req.update_env.as_ref()).await?))
}

/// Stops every app, forgets them, and asks the daemon to exit once this response is sent.
pub async fn kill(State(s): State<AppState>) -> Json<PingResponse> {
    let ping = s.manager.ping();
    s.manager.shutdown(true).await;
    s.exit.notify_one();
    Json(ping)
}

/// Hands the daemon over to another binary in place (`bm2 update`). The answer comes from the
/// new daemon, on this connection; an error from this one when the handover did not happen.
pub async fn update(
    State(s): State<AppState>,
    axum::extract::ConnectInfo(conn): axum::extract::ConnectInfo<crate::handover::ConnFd>,
    Body(req): Body<UpdateRequest>,
) -> ApiResult<UpdateResponse> {
    let Some(tx) = &s.update else {
        return Err(ApiError::new(
            ErrorCode::UpdateFailed,
            "this daemon is a container's main process (bm2-runtime): update the image and restart the container instead",
        )
        .into());
    };
    s.manager.begin_update(&req.exe).await?;
    let client = crate::handover::fd::dup_raw(conn.0).map_err(|e| {
        s.manager.abandon_update();
        ApiError::new(
            ErrorCode::UpdateFailed,
            format!("cannot keep the connection: {e}"),
        )
    })?;
    let (done, failed) = tokio::sync::oneshot::channel();
    let request = crate::handover::Request {
        exe: req.exe,
        client,
        done,
    };
    if tx.send(request).await.is_err() {
        s.manager.abandon_update();
        return Err(ApiError::new(ErrorCode::ShuttingDown, "the daemon is shutting down").into());
    }
    Err(failed
        .await
        .unwrap_or_else(|_| {
            ApiError::new(ErrorCode::Internal, "the handover ended without an answer")
        })
        .into())
}
