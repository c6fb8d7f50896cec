//! The one HTTP error type. Its status is decided in exactly one match; 5xx
//! bodies are opaque and their cause is logged.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::inference::InferenceError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not valid JSON (400).
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed but wrong: missing fields, wrong types, bad values (422).
    #[error("{0}")]
    Validation(String),
    /// No or bad credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but the role may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// Body or input list too large (413).
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Too many requests in flight (429).
    #[error("the service is overloaded; retry later")]
    Overloaded,
    /// A client over its request rate (429 with `Retry-After`).
    #[error("rate limit exceeded: retry in {0} s")]
    RateLimited(u64),
    /// The model is still loading or failed to load (503).
    #[error("{0}")]
    NotReady(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: String,
    code: &'a str,
    /// TEI's field, so TEI clients recognise the error.
    error_type: &'a str,
}

impl ApiError {
    pub fn validation(msg: impl Into<String>) -> Self {
        Self::Validation(msg.into())
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request", "Validation"),
            Self::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation", "Validation"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", "Validation"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Validation"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", "Validation"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Validation"),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", "Validation"),
            Self::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Validation",
            ),
            Self::Overloaded => (StatusCode::TOO_MANY_REQUESTS, "overloaded", "Overloaded"),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Overloaded"),
            Self::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready", "Unhealthy"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Backend"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, error_type) = self.parts();
        let error = match &self {
            Self::Internal(cause) => {
                tracing::error!(error = ?cause, "request failed");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error,
                code,
                error_type,
            }),
        )
            .into_response();
        if let Self::RateLimited(s) = &self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(*s),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<InferenceError> for ApiError {
    fn from(e: InferenceError) -> Self {
        match e {
            InferenceError::TooLong { .. } => Self::Validation(e.to_string()),
            InferenceError::Overloaded => Self::Overloaded,
            InferenceError::Stopped => Self::NotReady(e.to_string()),
            other => Self::Internal(other.into()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let msg = r.body_text();
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::TooLarge(msg);
        }
        match r {
            JsonRejection::JsonDataError(_) => Self::Validation(msg),
            JsonRejection::JsonSyntaxError(_) => Self::BadRequest(msg),
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType(msg),
            _ => Self::BadRequest(msg),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::BadRequest(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::Validation(r.body_text())
    }
}

/// `Json<T>` whose rejections are JSON errors like every other error.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `Query<T>` whose rejections are JSON errors (422) like every other error.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `Path<T>` whose rejections (e.g. a word where an id goes) are JSON 400s.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// A raw body (`Bytes`) whose rejections — over the body limit above all —
/// are JSON errors like every other.
#[derive(Debug, Clone, Default)]
pub struct ApiBytes(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        axum::body::Bytes::from_request(req, state)
            .await
            .map(Self)
            .map_err(|r| {
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge("the body is over the limit".into())
                } else {
                    ApiError::BadRequest(r.body_text())
                }
            })
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}
