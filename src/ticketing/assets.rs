//! Assets (tag, serial, kind, owner, location) and work orders (a ticket's
//! job on an asset: status and schedule). Staff only: a customer is 403;
//! another tenant's asset or work order is 404, and cannot be referenced
//! (422). Every change is audited.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::auth::Principal;
use super::db::{audit_and_commit, db_error, now};
use super::directory::Items;
use super::tickets::present;
use super::CoreState;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};

pub const WORK_ORDER_STATUSES: [&str; 5] =
    ["open", "scheduled", "in_progress", "done", "cancelled"];

#[derive(Debug, Clone, Serialize)]
pub struct Asset {
    pub id: i64,
    pub tag: String,
    pub serial: Option<String>,
    pub kind: String,
    pub owner_id: Option<String>,
    pub location: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const ASSET_COLUMNS: &str = "id, tag, serial, kind, owner_id, location, created_at, updated_at";

fn asset(r: &AnyRow) -> Result<Asset, sqlx::Error> {
    Ok(Asset {
        id: r.try_get("id")?,
        tag: r.try_get("tag")?,
        serial: r.try_get("serial")?,
        kind: r.try_get("kind")?,
        owner_id: r.try_get("owner_id")?,
        location: r.try_get("location")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn optional(what: &str, v: &Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    v.as_deref()
        .map(|s| super::bounded(what, s, max).map(str::to_string))
        .transpose()
}

/// `user` is a user of the tenant.
async fn check_user<'e, E>(executor: E, tenant: &str, user: &str) -> Result<(), ApiError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query("SELECT id FROM users WHERE tenant_id = $1 AND id = $2")
        .bind(tenant)
        .bind(user)
        .fetch_optional(executor)
        .await
        .map_err(db_error)?
        .map(|_| ())
        .ok_or_else(|| ApiError::validation(format!("no user {user}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAsset {
    pub tag: String,
    #[serde(default)]
    pub serial: Option<String>,
    pub kind: String,
    #[serde(default)]
    pub owner_id: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
}

/// `POST /api/v1/assets` (staff).
pub async fn create_asset(
    State(state): State<CoreState>,
    p: Principal,
    ApiJson(a): ApiJson<NewAsset>,
) -> Result<(StatusCode, ApiJson<Asset>), ApiError> {
    p.require_staff()?;
    let tag = super::bounded("tag", &a.tag, 100)?;
    let kind = super::bounded("kind", &a.kind, 100)?;
    let serial = optional("serial", &a.serial, 200)?;
    let location = optional("location", &a.location, 300)?;
    if let Some(o) = &a.owner_id {
        check_user(&state.db.pool, &p.tenant_id, o).await?;
    }
    let at = now();
    let mut tx = state.db.begin_write().await.map_err(db_error)?;
    let row = sqlx::query(&format!(
        "INSERT INTO assets (tenant_id, tag, serial, kind, owner_id, location, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {ASSET_COLUMNS}"
    ))
    .bind(&p.tenant_id)
    .bind(tag)
    .bind(serial.as_deref())
    .bind(kind)
    .bind(a.owner_id.as_deref())
    .bind(location.as_deref())
    .bind(at)
    .fetch_one(&mut **tx)
    .await
    .map_err(db_error)?;
    let created = asset(&row).map_err(db_error)?;
    let object = format!("asset:{}", created.id);
    audit_and_commit(tx, &p, "asset.create", &object, None, &created).await?;
    Ok((StatusCode::CREATED, ApiJson(created)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetQuery {
    pub kind: Option<String>,
    pub owner_id: Option<String>,
    /// Exact tag (a label photo's reading).
    pub tag: Option<String>,
}

/// `GET /api/v1/assets` (staff): filters kind, owner_id, tag.
pub async fn list_assets(
    State(state): State<CoreState>,
    p: Principal,
    ApiQuery(q): ApiQuery<AssetQuery>,
) -> Result<ApiJson<Items<Asset>>, ApiError> {
    p.require_staff()?;
    let rows = sqlx::query(&format!(
        "SELECT {ASSET_COLUMNS} FROM assets WHERE tenant_id = $1 \
         AND ($2 IS NULL OR kind = $2) AND ($3 IS NULL OR owner_id = $3) \
         AND ($4 IS NULL OR tag = $4) ORDER BY id LIMIT 1000"
    ))
    .bind(&p.tenant_id)
    .bind(q.kind.as_deref())
    .bind(q.owner_id.as_deref())
    .bind(q.tag.as_deref())
    .fetch_all(&state.db.pool)
    .await
    .map_err(db_error)?;
    let items = rows
        .iter()
        .map(asset)
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    Ok(ApiJson(Items { items }))
}

async fn asset_of<'e, E>(executor: E, tenant: &str, id: i64) -> Result<Asset, ApiError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!(
        "SELECT {ASSET_COLUMNS} FROM assets WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(executor)
    .await
    .map_err(db_error)?
    .ok_or_else(|| ApiError::NotFound(format!("no asset {id}")))?;
    asset(&row).map_err(db_error)
}

/// `GET /api/v1/assets/{id}` (staff).
pub async fn read_asset(
    State(state): State<CoreState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<ApiJson<Asset>, ApiError> {
    p.require_staff()?;
    Ok(ApiJson(asset_of(&state.db.pool, &p.tenant_id, id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetPatch {
    pub tag: Option<String>,
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub serial: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub owner_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub location: Option<Option<String>>,
}

/// `PATCH /api/v1/assets/{id}` (staff).
pub async fn update_asset(
    State(state): State<CoreState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(patch): ApiJson<AssetPatch>,
) -> Result<ApiJson<Asset>, ApiError> {
    p.require_staff()?;
    let mut tx = state.db.begin_write().await.map_err(db_error)?;
    let before = asset_of(&mut **tx, &p.tenant_id, id).await?;
    let mut a = before.clone();
    if let Some(t) = &patch.tag {
        a.tag = super::bounded("tag", t, 100)?.to_string();
    }
    if let Some(k) = &patch.kind {
        a.kind = super::bounded("kind", k, 100)?.to_string();
    }
    if let Some(s) = &patch.serial {
        a.serial = optional("serial", s, 200)?;
    }
    if let Some(l) = &patch.location {
        a.location = optional("location", l, 300)?;
    }
    if let Some(o) = &patch.owner_id {
        if let Some(o) = o {
            check_user(&mut **tx, &p.tenant_id, o).await?;
        }
        a.owner_id = o.clone();
    }
    a.updated_at = now();
    sqlx::query(
        "UPDATE assets SET tag = $1, serial = $2, kind = $3, owner_id = $4, location = $5, \
         updated_at = $6 WHERE tenant_id = $7 AND id = $8",
    )
    .bind(&a.tag)
    .bind(a.serial.as_deref())
    .bind(&a.kind)
    .bind(a.owner_id.as_deref())
    .bind(a.location.as_deref())
    .bind(a.updated_at)
    .bind(&p.tenant_id)
    .bind(id)
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    audit_and_commit(
        tx,
        &p,
        "asset.update",
        &format!("asset:{id}"),
        Some(&before),
        &a,
    )
    .await?;
    Ok(ApiJson(a))
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkOrder {
    pub id: i64,
    pub ticket_id: i64,
    pub asset_id: Option<i64>,
    pub status: String,
    pub scheduled_at: Option<i64>,
    pub assignee_id: Option<String>,
    pub notes: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const WO_COLUMNS: &str =
    "id, ticket_id, asset_id, status, scheduled_at, assignee_id, notes, created_at, updated_at";

fn work_order(r: &AnyRow) -> Result<WorkOrder, sqlx::Error> {
    Ok(WorkOrder {
        id: r.try_get("id")?,
        ticket_id: r.try_get("ticket_id")?,
        asset_id: r.try_get("asset_id")?,
        status: r.try_get("status")?,
        scheduled_at: r.try_get("scheduled_at")?,
        assignee_id: r.try_get("assignee_id")?,
        notes: r.try_get("notes")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn check_status(s: &str) -> Result<(), ApiError> {
    if WORK_ORDER_STATUSES.contains(&s) {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "status must be one of {}",
            WORK_ORDER_STATUSES.join(", ")
        )))
    }
}

/// The references a work order makes, each within the tenant (422 otherwise).
async fn check_refs(
    state: &CoreState,
    tenant: &str,
    ticket: Option<i64>,
    asset: Option<i64>,
    assignee: Option<&str>,
) -> Result<(), ApiError> {
    if let Some(t) = ticket {
        sqlx::query("SELECT id FROM tickets WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(t)
            .fetch_optional(&state.db.pool)
            .await
            .map_err(db_error)?
            .ok_or_else(|| ApiError::validation(format!("no ticket {t}")))?;
    }
    if let Some(a) = asset {
        asset_of(&state.db.pool, tenant, a)
            .await
            .map_err(|_| ApiError::validation(format!("no asset {a}")))?;
    }
    if let Some(u) = assignee {
        check_user(&state.db.pool, tenant, u).await?;
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWorkOrder {
    pub ticket_id: i64,
    #[serde(default)]
    pub asset_id: Option<i64>,
    #[serde(default)]
    pub scheduled_at: Option<i64>,
    #[serde(default)]
    pub assignee_id: Option<String>,
    #[serde(default)]
    pub notes: String,
}

/// `POST /api/v1/work-orders` (staff): `scheduled` when it has a time, else `open`.
pub async fn create_work_order(
    State(state): State<CoreState>,
    p: Principal,
    ApiJson(w): ApiJson<NewWorkOrder>,
) -> Result<(StatusCode, ApiJson<WorkOrder>), ApiError> {
    p.require_staff()?;
    if w.notes.chars().count() > 10_000 {
        return Err(ApiError::validation("notes are over 10,000 characters"));
    }
    if w.scheduled_at.is_some_and(|t| t < 0) {
        return Err(ApiError::validation("scheduled_at must be Unix seconds"));
    }
    check_refs(
        &state,
        &p.tenant_id,
        Some(w.ticket_id),
        w.asset_id,
        w.assignee_id.as_deref(),
    )
    .await?;
    let status = if w.scheduled_at.is_some() {
        "scheduled"
    } else {
        "open"
    };
    let at = now();
    let mut tx = state.db.begin_write().await.map_err(db_error)?;
    let row = sqlx::query(&format!(
        "INSERT INTO work_orders (tenant_id, ticket_id, asset_id, status, scheduled_at, assignee_id, \
         notes, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING {WO_COLUMNS}"
    ))
    .bind(&p.tenant_id)
    .bind(w.ticket_id)
    .bind(w.asset_id)
    .bind(status)
    .bind(w.scheduled_at)
    .bind(w.assignee_id.as_deref())
    .bind(&w.notes)
    .bind(at)
    .fetch_one(&mut **tx)
    .await
    .map_err(db_error)?;
    let created = work_order(&row).map_err(db_error)?;
    let object = format!("work_order:{}", created.id);
    audit_and_commit(tx, &p, "work_order.create", &object, None, &created).await?;
    Ok((StatusCode::CREATED, ApiJson(created)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkOrderQuery {
    pub ticket_id: Option<i64>,
    pub asset_id: Option<i64>,
    pub status: Option<String>,
}

/// `GET /api/v1/work-orders` (staff): filters ticket_id, asset_id, status;
/// soonest scheduled first.
pub async fn list_work_orders(
    State(state): State<CoreState>,
    p: Principal,
    ApiQuery(q): ApiQuery<WorkOrderQuery>,
) -> Result<ApiJson<Items<WorkOrder>>, ApiError> {
    p.require_staff()?;
    if let Some(s) = &q.status {
        check_status(s)?;
    }
    let rows = sqlx::query(&format!(
        "SELECT {WO_COLUMNS} FROM work_orders WHERE tenant_id = $1 \
         AND ($2 IS NULL OR ticket_id = $2) AND ($3 IS NULL OR asset_id = $3) \
         AND ($4 IS NULL OR status = $4) \
         ORDER BY CASE WHEN scheduled_at IS NULL THEN 1 ELSE 0 END, scheduled_at, id LIMIT 1000"
    ))
    .bind(&p.tenant_id)
    .bind(q.ticket_id)
    .bind(q.asset_id)
    .bind(q.status.as_deref())
    .fetch_all(&state.db.pool)
    .await
    .map_err(db_error)?;
    let items = rows
        .iter()
        .map(work_order)
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    Ok(ApiJson(Items { items }))
}

async fn work_order_of<'e, E>(executor: E, tenant: &str, id: i64) -> Result<WorkOrder, ApiError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!(
        "SELECT {WO_COLUMNS} FROM work_orders WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(executor)
    .await
    .map_err(db_error)?
    .ok_or_else(|| ApiError::NotFound(format!("no work order {id}")))?;
    work_order(&row).map_err(db_error)
}

/// `GET /api/v1/work-orders/{id}` (staff).
pub async fn read_work_order(
    State(state): State<CoreState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<ApiJson<WorkOrder>, ApiError> {
    p.require_staff()?;
    Ok(ApiJson(
        work_order_of(&state.db.pool, &p.tenant_id, id).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkOrderPatch {
    pub status: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub scheduled_at: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    pub asset_id: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    pub assignee_id: Option<Option<String>>,
    pub notes: Option<String>,
}

/// `PATCH /api/v1/work-orders/{id}` (staff).
pub async fn update_work_order(
    State(state): State<CoreState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(patch): ApiJson<WorkOrderPatch>,
) -> Result<ApiJson<WorkOrder>, ApiError> {
    p.require_staff()?;
    if let Some(s) = &patch.status {
        check_status(s)?;
    }
    if patch
        .notes
        .as_ref()
        .is_some_and(|n| n.chars().count() > 10_000)
    {
        return Err(ApiError::validation("notes are over 10,000 characters"));
    }
    let asset = patch.asset_id.flatten();
    let assignee = patch.assignee_id.clone().flatten();
    check_refs(&state, &p.tenant_id, None, asset, assignee.as_deref()).await?;
    let mut tx = state.db.begin_write().await.map_err(db_error)?;
    let before = work_order_of(&mut **tx, &p.tenant_id, id).await?;
    let mut w = before.clone();
    if let Some(s) = patch.status {
        w.status = s;
    }
    if let Some(t) = patch.scheduled_at {
        w.scheduled_at = t;
    }
    if let Some(a) = patch.asset_id {
        w.asset_id = a;
    }
    if let Some(a) = patch.assignee_id {
        w.assignee_id = a;
    }
    if let Some(n) = patch.notes {
        w.notes = n;
    }
    w.updated_at = now();
    sqlx::query(
        "UPDATE work_orders SET status = $1, scheduled_at = $2, asset_id = $3, assignee_id = $4, \
         notes = $5, updated_at = $6 WHERE tenant_id = $7 AND id = $8",
    )
    .bind(&w.status)
    .bind(w.scheduled_at)
    .bind(w.asset_id)
    .bind(w.assignee_id.as_deref())
    .bind(&w.notes)
    .bind(w.updated_at)
    .bind(&p.tenant_id)
    .bind(id)
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    let object = format!("work_order:{id}");
    audit_and_commit(tx, &p, "work_order.update", &object, Some(&before), &w).await?;
    Ok(ApiJson(w))
}
