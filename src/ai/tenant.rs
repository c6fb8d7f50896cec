//! The tenant of an AI-service request. Until the core's API keys exist it
//! comes from the `X-Tenant-Id` header (default `default`).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::ml::store::check_name;

pub const HEADER: &str = "x-tenant-id";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let name = match parts.headers.get(HEADER) {
            None => return Ok(Self("default".into())),
            Some(v) => v
                .to_str()
                .map_err(|_| ApiError::validation("X-Tenant-Id is not valid text"))?,
        };
        check_name("tenant", name).map_err(|e| ApiError::validation(e.to_string()))?;
        Ok(Self(name.to_string()))
    }
}
