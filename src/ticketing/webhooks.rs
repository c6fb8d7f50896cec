//! Outgoing webhooks: an admin registers a URL and the events it wants;
//! every matching event becomes an outbox job in the transaction of the
//! change that caused it (no event is lost to a crash between the commit
//! and the delivery), and the worker POSTs it, retried with backoff until
//! the receiver answers 2xx or the job is dead-lettered.
//!
//! Each delivery is signed: `X-Helpdesk-Signature: sha256=<hex>` is the
//! HMAC-SHA256, keyed by the webhook's secret (shown once, at creation), of
//! `<X-Helpdesk-Timestamp>.<body>`; `X-Helpdesk-Delivery` is unique per
//! event and webhook (receivers de-duplicate retries on it).

use axum::extract::State;
use axum::http::StatusCode;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sqlx::Row;

use super::auth::Principal;
use super::db::{audit, db_error, now};
use super::directory::Items;
use super::events::{Event, KINDS};
use super::CoreState;
use crate::error::{ApiError, ApiJson, ApiPath};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    pub url: String,
    /// Event kinds (default: all).
    #[serde(default)]
    pub events: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Webhook {
    pub id: i64,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: i64,
    /// Shown once, at creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

fn check_url(url: &str) -> Result<(), ApiError> {
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2000
        && !url.chars().any(char::is_whitespace)
        && url.split("://").nth(1).is_some_and(|rest| !rest.is_empty());
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(
            "url must be an http:// or https:// URL of at most 2000 characters",
        ))
    }
}

/// `POST /api/v1/webhooks` (admins).
pub async fn create(
    State(state): State<CoreState>,
    p: Principal,
    ApiJson(w): ApiJson<NewWebhook>,
) -> Result<(StatusCode, ApiJson<Webhook>), ApiError> {
    p.require_admin()?;
    check_url(&w.url)?;
    let mut events = if w.events.is_empty() {
        KINDS.iter().map(|k| k.to_string()).collect()
    } else {
        w.events.clone()
    };
    events.sort();
    events.dedup();
    if let Some(bad) = events.iter().find(|e| !KINDS.contains(&e.as_str())) {
        return Err(ApiError::validation(format!(
            "unknown event {bad:?}: use {}",
            KINDS.join(", ")
        )));
    }
    let mut raw = [0u8; 24];
    rand::rng().fill_bytes(&mut raw);
    let secret = format!("whsec_{}", hex::encode(raw));
    let at = now();
    let mut tx = state.db.begin_write().await.map_err(db_error)?;
    let id: i64 = sqlx::query(
        "INSERT INTO webhooks (tenant_id, url, secret, events, created_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(&p.tenant_id)
    .bind(&w.url)
    .bind(&secret)
    .bind(events.join(","))
    .bind(at)
    .fetch_one(&mut **tx)
    .await
    .map_err(db_error)?
    .try_get("id")
    .map_err(db_error)?;
    let after = serde_json::json!({ "url": w.url, "events": events });
    audit(
        &mut **tx,
        &p.tenant_id,
        &p.user_id,
        "webhook.create",
        &format!("webhook:{id}"),
        None,
        Some(&after),
    )
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok((
        StatusCode::CREATED,
        ApiJson(Webhook {
            id,
            url: w.url,
            events,
            created_at: at,
            secret: Some(secret),
        }),
    ))
}

/// `GET /api/v1/webhooks` (admins): without secrets.
pub async fn list(
    State(state): State<CoreState>,
    p: Principal,
) -> Result<ApiJson<Items<Webhook>>, ApiError> {
    p.require_admin()?;
    let rows = sqlx::query(
        "SELECT id, url, events, created_at FROM webhooks WHERE tenant_id = $1 ORDER BY id",
    )
    .bind(&p.tenant_id)
    .fetch_all(&state.db.pool)
    .await
    .map_err(db_error)?;
    let items = rows
        .iter()
        .map(|r| {
            let events: String = r.try_get("events")?;
            Ok(Webhook {
                id: r.try_get("id")?,
                url: r.try_get("url")?,
                events: events.split(',').map(str::to_string).collect(),
                created_at: r.try_get("created_at")?,
                secret: None,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(db_error)?;
    Ok(ApiJson(Items { items }))
}

/// `DELETE /api/v1/webhooks/{id}` (admins). Deliveries already queued are
/// dropped by the worker.
pub async fn delete(
    State(state): State<CoreState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    p.require_admin()?;
    let mut tx = state.db.begin_write().await.map_err(db_error)?;
    let gone = sqlx::query("DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2")
        .bind(&p.tenant_id)
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    if gone.rows_affected() == 0 {
        return Err(ApiError::NotFound(format!("no webhook {id}")));
    }
    audit(
        &mut **tx,
        &p.tenant_id,
        &p.user_id,
        "webhook.delete",
        &format!("webhook:{id}"),
        None,
        None,
    )
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Queues the event for every webhook of its tenant that wants it, in the
/// caller's transaction; returns the event for the live bus.
pub async fn enqueue(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    event: Event,
) -> Result<Event, sqlx::Error> {
    let hooks = sqlx::query("SELECT id, events FROM webhooks WHERE tenant_id = $1")
        .bind(&event.tenant_id)
        .fetch_all(&mut **tx)
        .await?;
    for h in hooks {
        let events: String = h.try_get("events")?;
        if !events.split(',').any(|e| e == event.kind) {
            continue;
        }
        let id: i64 = h.try_get("id")?;
        let payload = serde_json::json!({ "webhook_id": id, "event": event });
        let key = format!("webhook:{id}:{}", super::new_id());
        super::jobs::enqueue(tx, &event.tenant_id, "webhook", &payload, &key, event.at).await?;
    }
    Ok(event)
}

/// The signature header's value for `body` sent at `timestamp`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What a delivery needs from the database: `None` when the webhook was
/// deleted (the delivery is dropped).
pub async fn target(
    db: &super::Db,
    tenant: &str,
    id: i64,
) -> Result<Option<(String, String)>, sqlx::Error> {
    let row = sqlx::query("SELECT url, secret FROM webhooks WHERE tenant_id = $1 AND id = $2")
        .bind(tenant)
        .bind(id)
        .fetch_optional(&db.pool)
        .await?;
    row.map(|r| Ok((r.try_get("url")?, r.try_get("secret")?)))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // The signed message is "<timestamp>.<body>", nothing else.
        let got = signature("Jefe", 1700000000, b"{\"a\":1}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"1700000000.{\"a\":1}");
        assert_eq!(
            got,
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
        assert_ne!(got, signature("Jefe", 1700000001, b"{\"a\":1}"));
        assert_ne!(got, signature("other", 1700000000, b"{\"a\":1}"));
        assert!(check_url("https://hooks.example.com/x").is_ok());
        for bad in ["ftp://x", "https://", "http://a b", "javascript:alert(1)"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
