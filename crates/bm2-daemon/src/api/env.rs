//! Env store routes: `bm2 env set|get|delete`.

use axum::Json;
use axum::extract::State;
use bm2_types::{EnvKeyRequest, EnvSetRequest, EnvStoreResponse};

use super::{ApiResult, AppState, Body};

/// Sets a variable of an app, applied at its next start.
pub async fn set(
    State(s): State<AppState>,
    Body(req): Body<EnvSetRequest>,
) -> ApiResult<EnvStoreResponse> {
    s.manager.env_set(&req.app, &req.key, &req.value)?;
    Ok(Json(EnvStoreResponse {
        vars: s.manager.env_get(&req.app)?,
        app: req.app,
    }))
}

/// An app's stored variables.
pub async fn get(
    State(s): State<AppState>,
    Body(req): Body<EnvKeyRequest>,
) -> ApiResult<EnvStoreResponse> {
    Ok(Json(EnvStoreResponse {
        vars: s.manager.env_get(&req.app)?,
        app: req.app,
    }))
}

/// Deletes one or all of an app's stored variables.
pub async fn delete(
    State(s): State<AppState>,
    Body(req): Body<EnvKeyRequest>,
) -> ApiResult<EnvStoreResponse> {
    s.manager.env_delete(&req.app, req.key.as_deref())?;
    Ok(Json(EnvStoreResponse {
        vars: s.manager.env_get(&req.app)?,
        app: req.app,
    }))
}
