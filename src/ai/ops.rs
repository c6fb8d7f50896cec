//! Operational endpoints: liveness, readiness, model info, Prometheus metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;

use super::AiState;
use crate::error::ApiError;

pub fn router() -> Router<AiState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/info", get(info))
        .route("/metrics", get(metrics))
}

/// Liveness: the process answers. Always 200 while it runs.
async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: 200 once the model is loaded and warm, 503 before (or if it failed).
async fn ready(State(state): State<AiState>) -> Result<Json<serde_json::Value>, ApiError> {
    use crate::config::Role;
    let role = state.settings.server.role;
    // The core and the worker load no model: they are ready once built
    // (their database is open).
    if matches!(role, Role::All | Role::Ai) {
        state.encoder()?;
    }
    Ok(Json(json!({ "status": "ready", "role": role })))
}

#[derive(Serialize)]
struct Info {
    model: String,
    dims: usize,
    max_input_tokens: usize,
    max_inputs: usize,
    max_batch_tokens: usize,
    device: String,
    threads: usize,
    version: &'static str,
    uptime_seconds: f64,
}

async fn info(State(state): State<AiState>) -> Result<Json<Info>, ApiError> {
    let enc = state.encoder()?;
    Ok(Json(Info {
        model: enc.info.model.clone(),
        dims: enc.info.dims,
        max_input_tokens: enc.info.max_input_tokens,
        max_inputs: state.settings.server.max_inputs,
        max_batch_tokens: state.settings.model.max_batch_tokens,
        device: enc.info.device.clone(),
        threads: enc.info.threads,
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs_f64(),
    }))
}

async fn metrics(State(state): State<AiState>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
