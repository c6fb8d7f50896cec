//! `POST /v1/attachments/analyze`: the image checks of issue 6 done so far
//! (decode within limits, EXIF privacy report, quality, perceptual hash)
//! on the raw bytes of an upload, as one JSON report with each step's time.
//! Bad or hostile files are a 422 (a 413 over the size limit), never a
//! crash; decoding runs off the async threads.

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::routing::post;
use axum::Router;

use super::tenant::Tenant;
use super::AiState;
use crate::error::{ApiBytes, ApiError, ApiJson};
use crate::vision::{self, DecodeLimits, Report, VisionError};

pub fn router() -> Router<AiState> {
    let limits = DecodeLimits::default();
    Router::new().route(
        "/v1/attachments/analyze",
        post(analyze.layer(DefaultBodyLimit::max(limits.max_bytes))),
    )
}

async fn analyze(_tenant: Tenant, ApiBytes(body): ApiBytes) -> Result<ApiJson<Report>, ApiError> {
    let report =
        tokio::task::spawn_blocking(move || vision::analyze(&body, DecodeLimits::default()))
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
    report.map(ApiJson).map_err(|e| match e {
        VisionError::TooLarge(..) => ApiError::TooLarge(e.to_string()),
        other => ApiError::validation(other.to_string()),
    })
}
