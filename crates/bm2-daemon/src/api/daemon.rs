//! Daemon routes: ping, save, resurrect, kill.

use axum::Json;
use axum::extract::State;
use bm2_types::{ActionResponse, PingResponse, ResurrectRequest, SaveResponse};

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
