//! The job queue on the outbox table: workers claim due jobs under a lease,
//! then complete them, or fail them for a retry with exponential backoff,
//! or — after `max_attempts` — dead-letter them. A worker killed mid-job
//! loses nothing: its lease runs out and another worker claims the job
//! again (a job runs at least once; its idempotency key lets the handler
//! make the effect happen once).
//!
//! A claim is one `UPDATE … WHERE id = (SELECT … LIMIT 1) RETURNING …`:
//! PostgreSQL's subquery takes `FOR UPDATE SKIP LOCKED`, so concurrent
//! workers never wait on each other or take the same row; SQLite runs the
//! statement under its single write lock (the lease of the issue), so two
//! claimers are serialised and the second sees the row taken.

use sqlx::Row;

use super::db::{now, Db, Dialect};

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: i64,
    pub tenant_id: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub idempotency_key: String,
    /// Including this one.
    pub attempts: i64,
}

#[derive(Debug, Clone)]
pub struct QueuePolicy {
    /// How long a claimed job is the claimer's alone.
    pub lease_s: i64,
    pub max_attempts: i64,
    /// First retry after this; doubled each attempt, at most `max_backoff_s`.
    pub backoff_s: i64,
    pub max_backoff_s: i64,
}

impl Default for QueuePolicy {
    fn default() -> Self {
        Self {
            lease_s: 60,
            max_attempts: 5,
            backoff_s: 2,
            max_backoff_s: 300,
        }
    }
}

/// What a failed attempt led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// Pending again, due in this many seconds.
    Retry(i64),
    Dead,
}

/// Queues a job of `kind` in the caller's transaction (so the job exists
/// exactly when the change that needs it commits). `key` is unique: the
/// idempotency key a handler can rely on.
pub async fn enqueue(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    kind: &str,
    payload: &serde_json::Value,
    key: &str,
    at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbox (tenant_id, kind, payload, idempotency_key, available_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(tenant)
    .bind(kind)
    .bind(payload.to_string())
    .bind(key)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Claims the oldest due job: pending and available, or running with its
/// lease run out (its worker died). `None` when there is none.
pub async fn claim(db: &Db, policy: &QueuePolicy, at: i64) -> Result<Option<Job>, sqlx::Error> {
    claim_of(db, policy, at, &[]).await
}

/// Claims the oldest due job of one of `kinds` (any kind when empty).
pub async fn claim_of(
    db: &Db,
    policy: &QueuePolicy,
    at: i64,
    kinds: &[&str],
) -> Result<Option<Job>, sqlx::Error> {
    // Kinds are the program's own constants, never request input.
    debug_assert!(kinds
        .iter()
        .all(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
    let only = if kinds.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = kinds.iter().map(|k| format!("'{k}'")).collect();
        format!(" AND kind IN ({})", list.join(", "))
    };
    let lock = match db.dialect {
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        Dialect::Sqlite => "",
    };
    // One statement: atomic on both (SQLite takes its write lock for the
    // whole statement; PostgreSQL skips rows another claimer holds).
    let claimed = sqlx::query(&format!(
        "UPDATE outbox SET status = 'running', attempts = attempts + 1, lease_until = $1 \
         WHERE id = (SELECT id FROM outbox WHERE ((status = 'pending' AND available_at <= $2) \
         OR (status = 'running' AND lease_until < $2)){only} ORDER BY id LIMIT 1{lock}) \
         RETURNING id, tenant_id, kind, payload, idempotency_key, attempts"
    ))
    .bind(at + policy.lease_s)
    .bind(at)
    .fetch_optional(&db.pool)
    .await?;
    claimed
        .map(|r| {
            let payload: String = r.try_get("payload")?;
            Ok(Job {
                id: r.try_get("id")?,
                tenant_id: r.try_get("tenant_id")?,
                kind: r.try_get("kind")?,
                payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
                idempotency_key: r.try_get("idempotency_key")?,
                attempts: r.try_get("attempts")?,
            })
        })
        .transpose()
}

/// Marks a claimed job done. False when the claim was lost (the lease ran
/// out and another worker has it).
pub async fn complete(db: &Db, job: &Job) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE outbox SET status = 'done', lease_until = NULL, last_error = NULL \
         WHERE id = $1 AND status = 'running' AND attempts = $2",
    )
    .bind(job.id)
    .bind(job.attempts)
    .execute(&db.pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Records a failed attempt: pending again after a backoff, or dead.
pub async fn fail(
    db: &Db,
    policy: &QueuePolicy,
    job: &Job,
    error: &str,
    at: i64,
) -> Result<Failed, sqlx::Error> {
    let outcome = if job.attempts >= policy.max_attempts {
        Failed::Dead
    } else {
        let exp = (job.attempts - 1).clamp(0, 30) as u32;
        Failed::Retry(
            policy
                .backoff_s
                .saturating_mul(1i64 << exp)
                .min(policy.max_backoff_s),
        )
    };
    let (status, due) = match outcome {
        Failed::Dead => ("dead", at),
        Failed::Retry(s) => ("pending", at + s),
    };
    let error: String = error.chars().take(2000).collect();
    sqlx::query(
        "UPDATE outbox SET status = $1, available_at = $2, lease_until = NULL, last_error = $3 \
         WHERE id = $4 AND status = 'running' AND attempts = $5",
    )
    .bind(status)
    .bind(due)
    .bind(error)
    .bind(job.id)
    .bind(job.attempts)
    .execute(&db.pool)
    .await?;
    Ok(outcome)
}

/// Dead-letters a claimed job at once (an error no retry can mend).
pub async fn bury(db: &Db, job: &Job, error: &str) -> Result<(), sqlx::Error> {
    let error: String = error.chars().take(2000).collect();
    sqlx::query(
        "UPDATE outbox SET status = 'dead', lease_until = NULL, last_error = $1 \
         WHERE id = $2 AND status = 'running' AND attempts = $3",
    )
    .bind(error)
    .bind(job.id)
    .bind(job.attempts)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Claims with the current time.
pub async fn claim_now(db: &Db, policy: &QueuePolicy) -> Result<Option<Job>, sqlx::Error> {
    claim(db, policy, now()).await
}

/// A job's status, attempts and last error (for tests and operators).
pub async fn status(
    db: &Db,
    id: i64,
) -> Result<Option<(String, i64, Option<String>)>, sqlx::Error> {
    let row = sqlx::query("SELECT status, attempts, last_error FROM outbox WHERE id = $1")
        .bind(id)
        .fetch_optional(&db.pool)
        .await?;
    row.map(|r| {
        Ok((
            r.try_get("status")?,
            r.try_get("attempts")?,
            r.try_get("last_error")?,
        ))
    })
    .transpose()
}
