//! Tenants, users, teams and API keys.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::auth::{hash_password, new_api_key, Principal, Role, PASSWORD_MIN};
use super::db::{audit, db_error, now, Db};
use super::{new_id, CoreState};
use crate::error::{ApiError, ApiJson};

/// What `helpdesk tenant create` prints.
#[derive(Debug, Serialize)]
pub struct CreatedTenant {
    pub tenant_id: String,
    pub name: String,
    pub admin_user_id: String,
    /// Shown once; only its hash is stored.
    pub api_key: String,
}

fn check_email(email: &str) -> Result<String, String> {
    let e = email.trim().to_lowercase();
    let ok = e.len() <= 254
        && e.split_once('@').is_some_and(|(user, host)| {
            !user.is_empty() && host.contains('.') && !host.starts_with('.') && !host.ends_with('.')
        })
        && !e.chars().any(char::is_whitespace);
    if ok {
        Ok(e)
    } else {
        Err(format!("{email:?} is not an e-mail address"))
    }
}

fn check_password(p: &str) -> Result<(), String> {
    if p.chars().count() < PASSWORD_MIN {
        Err(format!("passwords have at least {PASSWORD_MIN} characters"))
    } else if p.len() > 1024 {
        Err("password too long".into())
    } else {
        Ok(())
    }
}

/// A tenant with its first admin and an admin API key (all scopes).
pub async fn create_tenant(
    db: &Db,
    name: &str,
    admin_email: &str,
    admin_password: &str,
) -> anyhow::Result<CreatedTenant> {
    crate::ml::store::check_name("tenant", name)?;
    let email = check_email(admin_email).map_err(anyhow::Error::msg)?;
    check_password(admin_password).map_err(anyhow::Error::msg)?;
    let hash = hash_password(admin_password)?;
    let (tenant_id, user_id, key) = (new_id(), new_id(), new_api_key());
    let at = now();
    let mut tx = db.begin_write().await?;
    sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
        .bind(&tenant_id)
        .bind(name)
        .bind(at)
        .execute(&mut **tx)
        .await
        .map_err(|e| match e.as_database_error() {
            Some(d) if d.is_unique_violation() => anyhow::anyhow!("tenant {name:?} exists"),
            _ => e.into(),
        })?;
    insert_user(
        &mut tx,
        &tenant_id,
        &user_id,
        &email,
        "Administrator",
        Role::Admin,
        &hash,
    )
    .await?;
    insert_key(
        &mut tx,
        &new_id(),
        &tenant_id,
        &user_id,
        "admin (tenant create)",
        &key,
        "*",
    )
    .await?;
    audit(
        &mut **tx,
        &tenant_id,
        "cli",
        "tenant.create",
        &format!("tenant:{tenant_id}"),
        None,
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(CreatedTenant {
        tenant_id,
        name: name.to_string(),
        admin_user_id: user_id,
        api_key: key.key,
    })
}

/// Stores a new key's hash (never the key) for a user.
async fn insert_key(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    tenant_id: &str,
    user_id: &str,
    name: &str,
    key: &super::auth::NewKey,
    scopes: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, user_id, name, prefix, key_hash, scopes, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(tenant_id)
    .bind(user_id)
    .bind(name)
    .bind(&key.prefix)
    .bind(&key.hash)
    .bind(scopes)
    .bind(now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_user(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &str,
    id: &str,
    email: &str,
    name: &str,
    role: Role,
    hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO users (id, tenant_id, email, name, role, password_hash, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(tenant_id)
    .bind(email)
    .bind(name)
    .bind(role.as_str())
    .bind(hash)
    .bind(now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(Debug, Serialize, PartialEq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at: i64,
}

fn user(row: &sqlx::any::AnyRow) -> Result<User, sqlx::Error> {
    let role: String = row.try_get("role")?;
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        role: Role::parse(&role).unwrap_or(Role::Customer),
        created_at: row.try_get("created_at")?,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub role: Role,
    pub password: String,
}

/// Adds a user to a tenant (the CLI's `user create` and the admin API).
pub async fn add_user(
    db: &Db,
    tenant_id: &str,
    actor: &str,
    u: &NewUser,
) -> Result<User, ApiError> {
    let email = check_email(&u.email).map_err(ApiError::validation)?;
    check_password(&u.password).map_err(ApiError::validation)?;
    let name = super::bounded("name", &u.name, 200)?;
    let password = u.password.clone();
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(ApiError::Internal)?;
    let id = new_id();
    let mut tx = db.begin_write().await.map_err(db_error)?;
    insert_user(&mut tx, tenant_id, &id, &email, name, u.role, &hash)
        .await
        .map_err(|e| match db_error(e) {
            ApiError::Conflict(_) => {
                ApiError::Conflict(format!("a user with e-mail {email} exists"))
            }
            other => other,
        })?;
    let created = User {
        id: id.clone(),
        email,
        name: name.to_string(),
        role: u.role,
        created_at: now(),
    };
    let after = serde_json::json!({ "email": created.email, "role": created.role });
    audit(
        &mut **tx,
        tenant_id,
        actor,
        "user.create",
        &format!("user:{id}"),
        None,
        Some(&after),
    )
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok(created)
}

pub async fn me(State(state): State<CoreState>, p: Principal) -> Result<ApiJson<User>, ApiError> {
    let row = sqlx::query(
        "SELECT id, email, name, role, created_at FROM users WHERE tenant_id = $1 AND id = $2",
    )
    .bind(&p.tenant_id)
    .bind(&p.user_id)
    .fetch_optional(&state.db.pool)
    .await
    .map_err(db_error)?
    .ok_or_else(|| ApiError::Unauthorized("the user no longer exists".into()))?;
    Ok(ApiJson(user(&row).map_err(db_error)?))
}

pub async fn create_user(
    State(state): State<CoreState>,
    p: Principal,
    ApiJson(u): ApiJson<NewUser>,
) -> Result<(StatusCode, ApiJson<User>), ApiError> {
    p.require_admin()?;
    let created = add_user(&state.db, &p.tenant_id, &p.user_id, &u).await?;
    Ok((StatusCode::CREATED, ApiJson(created)))
}

#[derive(Debug, Serialize)]
pub struct Items<T> {
    pub items: Vec<T>,
}

pub async fn list_users(
    State(state): State<CoreState>,
    p: Principal,
) -> Result<ApiJson<Items<User>>, ApiError> {
    p.require_staff()?;
    let rows = sqlx::query(
        "SELECT id, email, name, role, created_at FROM users WHERE tenant_id = $1 ORDER BY email",
    )
    .bind(&p.tenant_id)
    .fetch_all(&state.db.pool)
    .await
    .map_err(db_error)?;
    let items = rows
        .iter()
        .map(user)
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    Ok(ApiJson(Items { items }))
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Team {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTeam {
    pub name: String,
}

pub async fn create_team(
    State(state): State<CoreState>,
    p: Principal,
    ApiJson(t): ApiJson<NewTeam>,
) -> Result<(StatusCode, ApiJson<Team>), ApiError> {
    p.require_admin()?;
    let name = super::bounded("team name", &t.name, 100)?;
    let mut tx = state.db.begin_write().await.map_err(db_error)?;
    let id: i64 = sqlx::query(
        "INSERT INTO teams (tenant_id, name, created_at) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(&p.tenant_id)
    .bind(name)
    .bind(now())
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| match db_error(e) {
        ApiError::Conflict(_) => ApiError::Conflict(format!("team {name:?} exists")),
        other => other,
    })?
    .try_get("id")
    .map_err(db_error)?;
    let after = serde_json::json!({ "name": name });
    audit(
        &mut **tx,
        &p.tenant_id,
        &p.user_id,
        "team.create",
        &format!("team:{id}"),
        None,
        Some(&after),
    )
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok((
        StatusCode::CREATED,
        ApiJson(Team {
            id,
            name: name.to_string(),
        }),
    ))
}

pub async fn list_teams(
    State(state): State<CoreState>,
    p: Principal,
) -> Result<ApiJson<Items<Team>>, ApiError> {
    p.require_staff()?;
    let rows = sqlx::query("SELECT id, name FROM teams WHERE tenant_id = $1 ORDER BY name")
        .bind(&p.tenant_id)
        .fetch_all(&state.db.pool)
        .await
        .map_err(db_error)?;
    let items = rows
        .iter()
        .map(|r| {
            Ok(Team {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(db_error)?;
    Ok(ApiJson(Items { items }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKeyRequest {
    pub name: String,
    /// Defaults to all (`*`). `ai-callback` for an AI service's key that
    /// posts this tenant's triage results; `read` for read-only use.
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct CreatedKey {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    /// Shown once; only its hash is stored.
    pub api_key: String,
}

/// Scopes an admin may give a key over the API. `service` (acting for
/// every tenant on the AI service and the triage callback) is the
/// operator's: `helpdesk key create` only.
pub const API_SCOPES: [&str; 3] = ["*", "ai-callback", "read"];
pub const ALL_SCOPES: [&str; 4] = ["*", "ai-callback", "read", "service"];

/// `POST /api/v1/api-keys` (admins): a key acting as the caller.
pub async fn create_key(
    State(state): State<CoreState>,
    p: Principal,
    ApiJson(req): ApiJson<NewKeyRequest>,
) -> Result<(StatusCode, ApiJson<CreatedKey>), ApiError> {
    p.require_admin()?;
    let key = issue_key(
        &state.db,
        &p.tenant_id,
        &p.user_id,
        &req.name,
        &req.scopes,
        &API_SCOPES,
        &p.user_id,
    )
    .await?;
    Ok((StatusCode::CREATED, ApiJson(key)))
}

/// A new key for `user` of `tenant` with `scopes` (default `*`), each one of
/// `allowed`; audited as `actor`.
pub async fn issue_key(
    db: &Db,
    tenant: &str,
    user: &str,
    name: &str,
    scopes: &[String],
    allowed: &[&str],
    actor: &str,
) -> Result<CreatedKey, ApiError> {
    let name = super::bounded("key name", name, 100)?;
    let scopes = if scopes.is_empty() {
        vec!["*".to_string()]
    } else {
        scopes.to_vec()
    };
    if let Some(bad) = scopes.iter().find(|s| !allowed.contains(&s.as_str())) {
        return Err(ApiError::validation(format!(
            "scope {bad:?} cannot be given here: use {}",
            allowed.join(", ")
        )));
    }
    let (id, key) = (new_id(), new_api_key());
    let mut tx = db.begin_write().await.map_err(db_error)?;
    insert_key(&mut tx, &id, tenant, user, name, &key, &scopes.join(","))
        .await
        .map_err(db_error)?;
    let after = serde_json::json!({ "name": name, "prefix": key.prefix, "scopes": scopes });
    audit(
        &mut **tx,
        tenant,
        actor,
        "api_key.create",
        &format!("api_key:{id}"),
        None,
        Some(&after),
    )
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok(CreatedKey {
        id,
        name: name.to_string(),
        prefix: key.prefix,
        scopes,
        api_key: key.key,
    })
}

/// The tenant's first admin (the CLI's keys act as them).
pub async fn first_admin(db: &Db, tenant: &str) -> anyhow::Result<String> {
    let row = sqlx::query(
        "SELECT id FROM users WHERE tenant_id = $1 AND role = 'admin' ORDER BY created_at, id LIMIT 1",
    )
    .bind(tenant)
    .fetch_optional(&db.pool)
    .await?
    .ok_or_else(|| anyhow::anyhow!("tenant {tenant} has no admin"))?;
    Ok(row.try_get("id")?)
}

/// The tenant's id for a name or id (the CLI takes either).
pub async fn tenant_id(db: &Db, name_or_id: &str) -> anyhow::Result<String> {
    let row = sqlx::query("SELECT id FROM tenants WHERE name = $1 OR id = $1")
        .bind(name_or_id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no tenant {name_or_id:?}"))?;
    Ok(row.try_get("id")?)
}
