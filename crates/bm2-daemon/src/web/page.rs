//! The dashboard page and its assets, embedded in the binary, and the `OpenAPI` description.

use axum::Extension;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bm2_types::ErrorCode;
use serde::Deserialize;

use bm2_types::ApiError;

use super::Guard;
use crate::api::Failure;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");
/// The `OpenAPI` 3 description of the REST API.
pub const OPENAPI: &str = include_str!("assets/openapi.json");

/// Scripts, styles and connections only from the dashboard itself.
const CSP: &str = "default-src 'self'; img-src 'self' data:; connect-src 'self'; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Query of the page: `?token=` when opened from the URL `bm2 dashboard` printed.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    token: Option<String>,
}

/// The page. Opened with the right token, it sets the session cookie and sends the browser to
/// `/`, so that the token leaves the address bar and the history.
pub async fn index(
    Extension(guard): Extension<Guard>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => {
            return Failure(ApiError::new(ErrorCode::BadRequest, e.body_text())).into_response();
        }
    };
    if let Some(token) = q.token
        && guard.is_token(&token)
    {
        let mut res = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
        if let Ok(v) = HeaderValue::from_str(&guard.session_cookie()) {
            res.headers_mut().insert(header::SET_COOKIE, v);
        }
        return res;
    }
    asset(INDEX, "text/html; charset=utf-8")
}

/// The page's script.
pub async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// The page's styles.
pub async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

/// The `OpenAPI` description.
pub async fn openapi() -> Response {
    asset(OPENAPI, "application/json")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
