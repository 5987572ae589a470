//! Dashboard routes of the CLI: start, stop and show the web dashboard.

use axum::Json;
use axum::extract::State;
use bm2_types::{DashboardInfo, DashboardOptions};

use super::{ApiResult, AppState, Body};

/// The running dashboard, if any.
pub async fn status(State(s): State<AppState>) -> Json<Option<DashboardInfo>> {
    Json(s.web.info().await)
}

/// Starts the dashboard (again, with these options, when it runs).
pub async fn start(
    State(s): State<AppState>,
    Body(opts): Body<DashboardOptions>,
) -> ApiResult<DashboardInfo> {
    Ok(Json(s.web.start(opts, s.clone()).await?))
}

/// Stops the dashboard; true when it was running.
pub async fn stop(State(s): State<AppState>) -> Json<bool> {
    Json(s.web.stop().await)
}
