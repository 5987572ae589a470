//! The HTTP API: the `/v1` routes the CLI uses over the Unix socket, which the web dashboard
//! also serves (behind its token) beside its own REST routes.

mod daemon;
mod env;
mod events;
pub mod listener;
mod logs;
pub(crate) mod metrics;
pub(crate) mod processes;
mod web;

use bm2_types::ErrorCode;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bm2_types::ApiError;
use tokio::sync::Notify;

use crate::ProcessManager;

/// State of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub manager: Arc<ProcessManager>,
    /// Notified when the daemon must exit (after `kill`).
    pub exit: Arc<Notify>,
    /// The web dashboard, when started.
    pub web: Arc<crate::web::Web>,
    /// Where `update` requests go (none in a container runtime, which is not updated in place).
    pub update: Option<tokio::sync::mpsc::Sender<crate::handover::Request>>,
}

/// The router of the API on the Unix socket.
pub fn router(state: AppState) -> Router {
    let manager = state.manager.clone();
    routes()
        .route("/v1/update", post(daemon::update))
        .route("/v1/dashboard", get(web::status))
        .route("/v1/dashboard/start", post(web::start))
        .route("/v1/dashboard/stop", post(web::stop))
        .fallback(not_found)
        .layer(axum::middleware::map_response(add_version))
        .layer(axum::middleware::map_response(move |res| {
            add_notices(manager.clone(), res)
        }))
        .layer(axum::extract::DefaultBodyLimit::max(
            bm2_types::MAX_REQUEST_BYTES,
        ))
        .with_state(state)
}

/// The `/v1` routes that the web dashboard serves too (all but those that control the
/// dashboard itself).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/ping", get(daemon::ping))
        .route("/v1/save", post(daemon::save))
        .route("/v1/resurrect", post(daemon::resurrect))
        .route("/v1/kill", post(daemon::kill))
        .route("/v1/processes", get(processes::list))
        .route("/v1/processes/details", get(processes::details))
        .route("/v1/describe", post(processes::describe))
        .route("/v1/start", post(processes::start))
        .route("/v1/stop", post(processes::stop))
        .route("/v1/restart", post(processes::restart))
        .route("/v1/delete", post(processes::delete))
        .route("/v1/reload", post(processes::reload))
        .route("/v1/scale", post(processes::scale))
        .route("/v1/reset", post(processes::reset))
        .route("/v1/signal", post(processes::signal))
        .route("/v1/send", post(processes::send))
        .route("/v1/send-data", post(events::send_data))
        .route("/v1/start-options", post(events::start_options))
        .route("/v1/events", post(events::events))
        .route("/v1/env/set", post(env::set))
        .route("/v1/env/get", post(env::get))
        .route("/v1/env/delete", post(env::delete))
        .route("/v1/logs", post(logs::logs))
        .route("/v1/flush", post(logs::flush))
        .route("/v1/reload-logs", post(logs::reload))
        .route("/v1/metrics", get(metrics::snapshot))
        .route("/v1/metrics/history", get(metrics::history))
        .route("/v1/prometheus", get(metrics::prometheus))
}

/// Adds the daemon's version to a response.
pub async fn add_version(mut res: Response) -> Response {
    res.headers_mut().insert(
        bm2_types::VERSION_HEADER,
        HeaderValue::from_static(bm2_types::VERSION),
    );
    res
}

/// Hands the messages the daemon keeps for the user to the next command.
#[allow(
    clippy::unused_async,
    reason = "axum's map_response takes an async function"
)]
async fn add_notices(manager: Arc<ProcessManager>, mut res: Response) -> Response {
    let notices = manager.take_notices();
    if notices.is_empty() {
        return res;
    }
    let json = serde_json::to_string(&notices).unwrap_or_default();
    // Header values are visible ASCII: everything else is escaped as JSON allows.
    let mut ascii = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii_graphic() || c == ' ' {
            ascii.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                let _ = write!(ascii, "\\u{u:04x}");
            }
        }
    }
    if let Ok(v) = HeaderValue::from_str(&ascii) {
        res.headers_mut().insert(bm2_types::NOTICE_HEADER, v);
    }
    res
}

/// The answer to an unknown route.
pub async fn not_found() -> Failure {
    Failure(ApiError::new(ErrorCode::NotFound, "no such API route"))
}

/// An API error as an HTTP response.
#[derive(Debug)]
pub struct Failure(pub ApiError);

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure(e)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0)).into_response()
    }
}

/// A JSON body whose rejection is reported as an [`ApiError`].
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = Failure;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(Failure(ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "the request body is larger than this endpoint accepts (the Unix socket takes up to {} MiB, the dashboard 2 MiB)",
                    bm2_types::MAX_REQUEST_BYTES >> 20
                ),
            ))),
            Err(e) => Err(Failure(ApiError::new(ErrorCode::BadRequest, e.body_text()))),
        }
    }
}

/// Result type of handlers.
pub type ApiResult<T> = Result<Json<T>, Failure>;
