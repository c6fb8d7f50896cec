//! The tenant of an AI-service request.
//!
//! - With `Authorization: Bearer <API key or login token>` of the ticketing
//!   core: the credential's tenant. `X-Tenant-Id` then counts only for keys
//!   with the `service` scope (one key acting for every tenant, e.g. the
//!   core's worker); for any other credential a different tenant is 403.
//! - Without credentials (local use, the AI service on its own): the
//!   `X-Tenant-Id` header, default `default`.
//!
//! A bad credential is 401, never a fall-back to the header.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::AiState;
use crate::error::ApiError;
use crate::ml::store::check_name;

pub const HEADER: &str = "x-tenant-id";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant(pub String);

impl FromRequestParts<AiState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AiState,
    ) -> Result<Self, Self::Rejection> {
        let named = match parts.headers.get(HEADER) {
            None => None,
            Some(v) => {
                let name = v
                    .to_str()
                    .map_err(|_| ApiError::validation("X-Tenant-Id is not valid text"))?;
                check_name("tenant", name).map_err(|e| ApiError::validation(e.to_string()))?;
                Some(name.to_string())
            }
        };
        let principal = match state.core() {
            Some(core) => crate::ticketing::auth::principal_of(core, &parts.headers).await?,
            None if parts
                .headers
                .contains_key(axum::http::header::AUTHORIZATION) =>
            {
                return Err(ApiError::NotReady(
                    "credentials cannot be checked: the ticketing core is not running".into(),
                ))
            }
            None => None,
        };
        Ok(Self(match (principal, named) {
            (None, named) => named.unwrap_or_else(|| "default".into()),
            (Some(p), None) => p.tenant_id,
            (Some(p), Some(n)) if n == p.tenant_id || p.scopes.iter().any(|s| s == "service") => n,
            (Some(_), Some(_)) => {
                return Err(ApiError::Forbidden(
                    "X-Tenant-Id names another tenant: only service keys may act for other tenants"
                        .into(),
                ))
            }
        }))
    }
}
