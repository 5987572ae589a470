//! Metrics routes: the JSON snapshot, the history, the Prometheus text.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bm2_types::ErrorCode;
use bm2_types::{ApiError, MetricsHistory, MetricsSnapshot, ProcId};
use serde::Deserialize;

use super::{ApiResult, AppState, Failure};
use crate::metrics::prometheus::{Format, to_text_004};

/// Seconds of history sent when the request names none.
const DEFAULT_HISTORY_SECONDS: u64 = 300;

/// Query of the history route: `?seconds=N&id=K`.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    /// How far back, in seconds (default 300).
    seconds: Option<u64>,
    /// Only this instance.
    id: Option<ProcId>,
}

/// Every instance's and the machine's figures now.
pub async fn snapshot(State(s): State<AppState>) -> ApiResult<MetricsSnapshot> {
    Ok(Json(s.manager.metrics().await?))
}

/// The samples of the last `seconds`.
pub async fn history(
    State(s): State<AppState>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> ApiResult<MetricsHistory> {
    let Query(q) = query.map_err(|e| {
        Failure(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("metrics history: {}", e.body_text()),
        ))
    })?;
    Ok(Json(s.manager.metrics_history(
        q.seconds.unwrap_or(DEFAULT_HISTORY_SECONDS),
        q.id,
    )?))
}

/// The Prometheus exposition text: `OpenMetrics`, or the classic 0.0.4 text format when the
/// `Accept` header prefers `text/plain`.
pub async fn prometheus(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let text = s.manager.prometheus().await?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let text = match format {
        Format::OpenMetrics => text,
        Format::Text004 => to_text_004(&text),
    };
    Ok(([(header::CONTENT_TYPE, format.content_type())], text).into_response())
}
