//! Knowledge-base articles as core resources: the core keeps each
//! tenant's articles (the source of truth, with who changed what in the
//! audit log) and the worker has the AI service index them — an upsert or
//! delete writes a `kb_index` job in the same transaction, so the index
//! follows every committed change (`index_status`: pending, then indexed).
//! Staff write; customers read the public articles only.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use sqlx::Row;

use super::auth::Principal;
use super::db::{audit, db_error, now, Db};
use super::directory::Items;
use super::CoreState;
use crate::ai::kb::Article;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::vector::Visibility;

#[derive(Debug, Serialize)]
pub struct KbArticle {
    #[serde(flatten)]
    pub article: Article,
    /// pending (queued for the AI service's index) or indexed.
    pub index_status: String,
    pub created_at: i64,
    pub updated_at: i64,
}

fn row_to_article(r: &sqlx::any::AnyRow) -> Result<KbArticle, ApiError> {
    let text: String = r.try_get("article").map_err(db_error)?;
    Ok(KbArticle {
        article: serde_json::from_str(&text).map_err(|e| ApiError::Internal(e.into()))?,
        index_status: r.try_get("index_status").map_err(db_error)?,
        created_at: r.try_get("created_at").map_err(db_error)?,
        updated_at: r.try_get("updated_at").map_err(db_error)?,
    })
}

async fn queue(
    tx: &mut super::db::WriteTx,
    tenant: &str,
    id: &str,
    op: &str,
    at: i64,
) -> Result<(), sqlx::Error> {
    let payload = serde_json::json!({ "article_id": id, "op": op });
    let key = format!("kb:{id}:{}", super::new_id());
    super::jobs::enqueue(tx, tenant, "kb_index", &payload, &key, at).await
}

/// `POST /api/v1/kb/articles` (staff): create or replace by `id`.
pub async fn upsert(
    State(state): State<CoreState>,
    p: Principal,
    ApiJson(a): ApiJson<Article>,
) -> Result<(StatusCode, ApiJson<KbArticle>), ApiError> {
    p.require_staff()?;
    crate::ai::kb::validate(&a)?;
    let text = serde_json::to_string(&a).map_err(|e| ApiError::Internal(e.into()))?;
    let visibility = match a.visibility {
        Visibility::Public => "public",
        Visibility::Internal => "internal",
    };
    let at = now();
    let mut tx = state.db.begin_write().await.map_err(db_error)?;
    let before = sqlx::query("SELECT article FROM kb_articles WHERE tenant_id = $1 AND id = $2")
        .bind(&p.tenant_id)
        .bind(&a.id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
    let row = sqlx::query(
        "INSERT INTO kb_articles (tenant_id, id, title, visibility, article, index_status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6) \
         ON CONFLICT (tenant_id, id) DO UPDATE SET title = excluded.title, \
         visibility = excluded.visibility, article = excluded.article, index_status = 'pending', \
         updated_at = excluded.updated_at \
         RETURNING article, index_status, created_at, updated_at",
    )
    .bind(&p.tenant_id)
    .bind(&a.id)
    .bind(&a.title)
    .bind(visibility)
    .bind(&text)
    .bind(at)
    .fetch_one(&mut **tx)
    .await
    .map_err(db_error)?;
    let saved = row_to_article(&row)?;
    queue(&mut tx, &p.tenant_id, &a.id, "upsert", at)
        .await
        .map_err(db_error)?;
    let before: Option<serde_json::Value> = before
        .map(|r| r.try_get::<String, _>("article"))
        .transpose()
        .map_err(db_error)?
        .and_then(|t| serde_json::from_str(&t).ok());
    let after = serde_json::json!({ "title": a.title, "visibility": visibility });
    audit(
        &mut **tx,
        &p.tenant_id,
        &p.user_id,
        if before.is_some() {
            "kb.update"
        } else {
            "kb.create"
        },
        &format!("kb:{}", a.id),
        before.as_ref(),
        Some(&after),
    )
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    state.jobs_signal.notify_one();
    let status = if before.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, ApiJson(saved)))
}

/// `GET /api/v1/kb/articles`: staff see all, customers the public ones.
pub async fn list(
    State(state): State<CoreState>,
    p: Principal,
) -> Result<ApiJson<Items<KbArticle>>, ApiError> {
    let only_public = if p.is_staff() {
        ""
    } else {
        " AND visibility = 'public'"
    };
    let rows = sqlx::query(&format!(
        "SELECT article, index_status, created_at, updated_at FROM kb_articles \
         WHERE tenant_id = $1{only_public} ORDER BY id LIMIT 1000"
    ))
    .bind(&p.tenant_id)
    .fetch_all(&state.db.pool)
    .await
    .map_err(db_error)?;
    let items = rows.iter().map(row_to_article).collect::<Result<_, _>>()?;
    Ok(ApiJson(Items { items }))
}

/// `GET /api/v1/kb/articles/{id}`.
pub async fn read(
    State(state): State<CoreState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<KbArticle>, ApiError> {
    let row = sqlx::query(
        "SELECT article, index_status, created_at, updated_at, visibility FROM kb_articles \
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(&p.tenant_id)
    .bind(&id)
    .fetch_optional(&state.db.pool)
    .await
    .map_err(db_error)?
    .ok_or_else(|| ApiError::NotFound(format!("no article {id}")))?;
    let visibility: String = row.try_get("visibility").map_err(db_error)?;
    if !p.is_staff() && visibility != "public" {
        return Err(ApiError::NotFound(format!("no article {id}")));
    }
    Ok(ApiJson(row_to_article(&row)?))
}

/// `DELETE /api/v1/kb/articles/{id}` (staff).
pub async fn delete(
    State(state): State<CoreState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    p.require_staff()?;
    let at = now();
    let mut tx = state.db.begin_write().await.map_err(db_error)?;
    let gone = sqlx::query("DELETE FROM kb_articles WHERE tenant_id = $1 AND id = $2")
        .bind(&p.tenant_id)
        .bind(&id)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    if gone.rows_affected() == 0 {
        return Err(ApiError::NotFound(format!("no article {id}")));
    }
    queue(&mut tx, &p.tenant_id, &id, "delete", at)
        .await
        .map_err(db_error)?;
    audit(
        &mut **tx,
        &p.tenant_id,
        &p.user_id,
        "kb.delete",
        &format!("kb:{id}"),
        None,
        None,
    )
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    state.jobs_signal.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

/// The article as it is now (`None`: deleted) and its version stamp.
pub async fn current(
    db: &Db,
    tenant: &str,
    id: &str,
) -> Result<Option<(Article, i64)>, sqlx::Error> {
    let row =
        sqlx::query("SELECT article, updated_at FROM kb_articles WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .fetch_optional(&db.pool)
            .await?;
    row.map(|r| {
        let text: String = r.try_get("article")?;
        let a = serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        Ok((a, r.try_get("updated_at")?))
    })
    .transpose()
}

/// Marks the article indexed, if it has not changed since `version`.
pub async fn mark_indexed(
    db: &Db,
    tenant: &str,
    id: &str,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE kb_articles SET index_status = 'indexed' WHERE tenant_id = $1 AND id = $2 \
         AND updated_at = $3",
    )
    .bind(tenant)
    .bind(id)
    .bind(version)
    .execute(&db.pool)
    .await?;
    Ok(())
}
