//! Who is asking: every `/api/v1` request but login carries
//! `Authorization: Bearer …`, either an API key (`hd_…`, stored as its
//! sha256, scoped, revocable) or a short-lived JWT from `POST
//! /api/v1/auth/login` (HS256, the secret in the data directory). Either
//! gives a `Principal`: tenant, user, role. Every query takes its tenant
//! from the principal, never from the request.

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, PasswordHash};
use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::db::{db_error, now};
use super::CoreState;
use crate::error::{ApiError, ApiJson};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Agent,
    Customer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Agent => "agent",
            Self::Customer => "customer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "agent" => Some(Self::Agent),
            "customer" => Some(Self::Customer),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant_id: String,
    pub user_id: String,
    pub role: Role,
    /// An API key's scopes (`*` = all); empty for a login token.
    pub scopes: Vec<String>,
}

impl Principal {
    /// Agents and admins: everyone who works tickets.
    pub fn is_staff(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Agent)
    }

    pub fn require_staff(&self) -> Result<(), ApiError> {
        if self.is_staff() {
            Ok(())
        } else {
            Err(ApiError::Forbidden("agents and admins only".into()))
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden("admins only".into()))
        }
    }
}

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_string())
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A new API key: what the caller is shown once, and what is stored.
pub struct NewKey {
    pub key: String,
    pub prefix: String,
    pub hash: String,
}

pub fn new_api_key() -> NewKey {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key = format!("hd_{}", URL_SAFE_NO_PAD.encode(bytes));
    NewKey {
        prefix: key[..10].to_string(),
        hash: key_hash(&key),
        key,
    }
}

/// Keys carry 256 random bits, so a plain sha256 is as safe to store as a
/// slow password hash and lets the key be looked up by it.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

pub const PASSWORD_MIN: usize = 8;

/// What a login token says.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    tid: String,
    role: Role,
    iat: i64,
    exp: i64,
}

const JWT_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Signs and checks login tokens (HS256).
#[derive(Clone)]
pub struct TokenSigner {
    secret: Vec<u8>,
    pub ttl_s: i64,
}

impl TokenSigner {
    pub fn new(secret: Vec<u8>, ttl_s: i64) -> Self {
        Self { secret, ttl_s }
    }

    /// The secret in `path`, made (32 random bytes, owner-only) when absent.
    pub fn from_file(path: &std::path::Path, ttl_s: i64) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(s) if s.len() >= 32 => return Ok(Self::new(s, ttl_s)),
            Ok(_) => {
                return Err(std::io::Error::other(format!(
                    "{} holds fewer than 32 bytes",
                    path.display()
                )))
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            Err(_) => {}
        }
        let mut secret = vec![0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut f) => std::io::Write::write_all(&mut f, &secret)?,
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Self::from_file(path, ttl_s)
            }
            Err(e) => return Err(e),
        }
        Ok(Self::new(secret, ttl_s))
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC accepts any key length")
    }

    pub fn issue(&self, p: &Principal) -> String {
        let iat = now();
        let claims = Claims {
            sub: p.user_id.clone(),
            tid: p.tenant_id.clone(),
            role: p.role,
            iat,
            exp: iat + self.ttl_s,
        };
        let body = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(JWT_HEADER),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default())
        );
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        format!(
            "{body}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    /// The token's principal when it is ours, intact and not expired.
    fn verify(&self, token: &str) -> Option<Principal> {
        let (body, sig) = token.rsplit_once('.')?;
        let (header, claims) = body.split_once('.')?;
        if URL_SAFE_NO_PAD.decode(header).ok()? != JWT_HEADER.as_bytes() {
            return None;
        }
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(sig).ok()?).ok()?;
        let c: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        (c.exp > now()).then_some(Principal {
            tenant_id: c.tid,
            user_id: c.sub,
            role: c.role,
            scopes: Vec::new(),
        })
    }
}

fn unauthorized(msg: &str) -> ApiError {
    ApiError::Unauthorized(msg.into())
}

/// The principal of a request's `Authorization: Bearer …`; `None` when the
/// request has no Authorization header; 401 when it has a bad one.
pub async fn principal_of(
    state: &CoreState,
    headers: &axum::http::HeaderMap,
) -> Result<Option<Principal>, ApiError> {
    let Some(header) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = header
        .to_str()
        .map_err(|_| unauthorized("the Authorization header is not valid text"))?;
    let token = value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthorized("use Authorization: Bearer <token or API key>"))?;
    if token.starts_with("hd_") {
        let row = sqlx::query(
            "SELECT k.tenant_id, k.user_id, k.scopes, u.role FROM api_keys k \
             JOIN users u ON u.id = k.user_id AND u.tenant_id = k.tenant_id \
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
        )
        .bind(key_hash(token))
        .fetch_optional(&state.db.pool)
        .await
        .map_err(db_error)?
        .ok_or_else(|| unauthorized("unknown or revoked API key"))?;
        let role: String = row.try_get("role").map_err(db_error)?;
        let scopes: String = row.try_get("scopes").map_err(db_error)?;
        return Ok(Some(Principal {
            tenant_id: row.try_get("tenant_id").map_err(db_error)?,
            user_id: row.try_get("user_id").map_err(db_error)?,
            role: Role::parse(&role).ok_or_else(|| unauthorized("unknown role"))?,
            scopes: scopes.split(',').map(str::to_string).collect(),
        }));
    }
    state
        .tokens
        .verify(token)
        .map(Some)
        .ok_or_else(|| unauthorized("invalid or expired token"))
}

impl<S> FromRequestParts<S> for Principal
where
    CoreState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        principal_of(&CoreState::from_ref(state), &parts.headers)
            .await?
            .ok_or_else(|| unauthorized("Authorization: Bearer <token or API key> is required"))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The tenant's name or id.
    pub tenant: String,
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize)]
pub struct LoginResponse {
    pub token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
}

/// `POST /api/v1/auth/login`: a token for a user's email and password.
/// Every failure is the same 401, whichever part was wrong.
pub async fn login(
    State(state): State<CoreState>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<ApiJson<LoginResponse>, ApiError> {
    let row = sqlx::query(
        "SELECT u.id, u.tenant_id, u.role, u.password_hash FROM users u \
         JOIN tenants t ON t.id = u.tenant_id \
         WHERE (t.name = $1 OR t.id = $1) AND u.email = $2",
    )
    .bind(&req.tenant)
    .bind(req.email.trim().to_lowercase())
    .fetch_optional(&state.db.pool)
    .await
    .map_err(db_error)?;
    let bad = || unauthorized("wrong tenant, email or password");
    let row = row.ok_or_else(bad)?;
    let hash: String = row.try_get("password_hash").map_err(db_error)?;
    let password = req.password.clone();
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    if !ok {
        return Err(bad());
    }
    let role: String = row.try_get("role").map_err(db_error)?;
    let p = Principal {
        tenant_id: row.try_get("tenant_id").map_err(db_error)?,
        user_id: row.try_get("id").map_err(db_error)?,
        role: Role::parse(&role).ok_or_else(bad)?,
        scopes: Vec::new(),
    };
    Ok(ApiJson(LoginResponse {
        token: state.tokens.issue(&p),
        token_type: "Bearer",
        expires_in: state.tokens.ttl_s,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal() -> Principal {
        Principal {
            tenant_id: "t1".into(),
            user_id: "u1".into(),
            role: Role::Agent,
            scopes: vec![],
        }
    }

    #[test]
    fn tokens_verify_only_when_intact_ours_and_unexpired() {
        let signer = TokenSigner::new(vec![7; 32], 900);
        let t = signer.issue(&principal());
        assert_eq!(signer.verify(&t), Some(principal()));
        // Another secret, a changed claim, a changed signature: refused.
        assert_eq!(TokenSigner::new(vec![8; 32], 900).verify(&t), None);
        let parts: Vec<&str> = t.split('.').collect();
        let forged_claims = URL_SAFE_NO_PAD.encode(
            String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap())
                .unwrap()
                .replace("agent", "admin"),
        );
        assert_eq!(
            signer.verify(&format!("{}.{forged_claims}.{}", parts[0], parts[2])),
            None
        );
        assert_eq!(
            signer.verify(&format!("{}.{}.AAAA", parts[0], parts[1])),
            None
        );
        // "alg": "none" is not accepted either.
        let none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(signer.verify(&format!("{none}.{}.", parts[1])), None);
        // Expired.
        let old = TokenSigner::new(vec![7; 32], -1).issue(&principal());
        assert_eq!(signer.verify(&old), None);
    }

    #[test]
    fn passwords_and_keys_hash_one_way() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct horsf", &h));
        assert!(!verify_password("x", "not a hash"));
        let a = new_api_key();
        let b = new_api_key();
        assert_ne!(a.key, b.key);
        assert!(a.key.starts_with("hd_") && a.key.len() == 46);
        assert_eq!(a.hash, key_hash(&a.key));
        assert!(!a.hash.contains(&a.key[3..]));
    }

    #[test]
    fn the_secret_file_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwt-secret");
        let a = TokenSigner::from_file(&path, 60).unwrap();
        let b = TokenSigner::from_file(&path, 60).unwrap();
        let t = a.issue(&principal());
        assert!(b.verify(&t).is_some());
        std::fs::write(&path, b"short").unwrap();
        assert!(TokenSigner::from_file(&path, 60).is_err());
    }
}
