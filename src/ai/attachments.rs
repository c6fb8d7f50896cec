//! `POST /v1/attachments/analyze`: the image checks of issue 6 (decode
//! within limits, EXIF privacy report, quality, perceptual hash, kind, OCR,
//! barcodes, personal data) on an upload — raw bytes with their
//! Content-Type, or multipart/form-data (the `file` part) — as the tenant's
//! pipeline has them, in one JSON report with each step's time. Bad or
//! hostile files are a 422 (a 413 over the size limit), never a crash; the
//! checks run off the async threads.

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::handler::Handler;
use axum::http::{header, HeaderMap};
use axum::routing::post;
use axum::Router;

use super::tenant::Tenant;
use super::AiState;
use crate::error::{ApiBytes, ApiError, ApiJson};
use crate::vision::{DecodeLimits, Report, VisionError};

pub fn router() -> Router<AiState> {
    // The body limit is the largest any tenant's pipeline allows; each
    // tenant's own limit is checked in `decode`.
    let limits = DecodeLimits::default();
    Router::new().route(
        "/v1/attachments/analyze",
        post(analyze.layer(DefaultBodyLimit::max(limits.max_bytes))),
    )
}

async fn analyze(
    State(state): State<AiState>,
    tenant: Tenant,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Result<ApiJson<Report>, ApiError> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let body = if ctype
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        file_part(ctype, body).await?
    } else {
        body
    };
    run(&state, &tenant.0, body).await.map(ApiJson)
}

/// The file of a multipart/form-data upload: the part named `file`, else
/// the first part with a file name.
async fn file_part(ctype: &str, body: Bytes) -> Result<Bytes, ApiError> {
    let boundary = multer::parse_boundary(ctype)
        .map_err(|e| ApiError::BadRequest(format!("multipart: {e}")))?;
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let mut parts = multer::Multipart::new(stream, boundary);
    while let Some(field) = parts
        .next_field()
        .await
        .map_err(|e| ApiError::BadRequest(format!("multipart: {e}")))?
    {
        if field.name() == Some("file") || field.file_name().is_some() {
            return field
                .bytes()
                .await
                .map_err(|e| ApiError::BadRequest(format!("multipart: {e}")));
        }
    }
    Err(ApiError::validation(
        "the multipart body has no file (a part named \"file\" or with a file name)",
    ))
}

/// The checks on one upload, off the async threads, then the tenant's
/// image heads on its embedding.
pub async fn run(state: &AiState, tenant: &str, body: Bytes) -> Result<Report, ApiError> {
    let vision = state.vision.clone();
    let owned = tenant.to_string();
    let report = tokio::task::spawn_blocking(move || vision.analyze(&owned, &body))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let mut report = report.map_err(vision_error)?;
    let tasks = state.vision.pipeline.for_tenant(tenant).kind.heads.clone();
    if let Some(features) = &report.features {
        for task in tasks {
            let answer = match state.heads.active_image(tenant, &task) {
                Ok(head) => {
                    let mut v = serde_json::to_value(head.predict(features, ""))
                        .map_err(|e| ApiError::Internal(e.into()))?;
                    v["version"] = head.card.version.into();
                    v
                }
                Err(e) => {
                    report.skipped.insert("heads", format!("{task}: {e}"));
                    continue;
                }
            };
            report.heads.insert(task, answer);
        }
    }
    Ok(report)
}

/// A check's failure as the API answers it.
pub fn vision_error(e: VisionError) -> ApiError {
    match e {
        VisionError::TooLarge(..) => ApiError::TooLarge(e.to_string()),
        VisionError::Unavailable(..) => ApiError::NotReady(e.to_string()),
        other => ApiError::validation(other.to_string()),
    }
}
