//! Env store routes: `bm2 env set|get|delete`. Each answers with the app's stored variables.

use axum::Json;
use axum::extract::State;
use bm2_types::{EnvKeyRequest, EnvSetRequest, EnvStoreResponse};

use super::{ApiResult, AppState, Body};

fn stored(s: &AppState, app: String) -> ApiResult<EnvStoreResponse> {
    Ok(Json(EnvStoreResponse {
        vars: s.manager.env_get(&app)?,
        app,
    }))
}

/// Sets a variable of an app, applied at its next start.
pub async fn set(
    State(s): State<AppState>,
    Body(req): Body<EnvSetRequest>,
) -> ApiResult<EnvStoreResponse> {
    s.manager.env_set(&req.app, &req.key, &req.value)?;
    stored(&s, req.app)
}

/// An app's stored variables.
pub async fn get(
    State(s): State<AppState>,
    Body(req): Body<EnvKeyRequest>,
) -> ApiResult<EnvStoreResponse> {
    stored(&s, req.app)
}

/// Deletes one or all of an app's stored variables.
pub async fn delete(
    State(s): State<AppState>,
    Body(req): Body<EnvKeyRequest>,
) -> ApiResult<EnvStoreResponse> {
    s.manager.env_delete(&req.app, req.key.as_deref())?;
    stored(&s, req.app)
}
