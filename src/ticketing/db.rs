//! The core's database: SQLite (a file under the data directory, WAL) by
//! default, PostgreSQL when the URL says `postgres://`. One code path for
//! both through sqlx's `Any` driver: queries are written in the SQL both
//! understand (`$N` placeholders, `RETURNING`, integers and text only —
//! times are Unix seconds, flags 0/1), and each dialect has its own
//! migrations folder for the DDL that differs (identity columns).

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor};

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub dialect: Dialect,
    /// SQLite has one writer at a time: write transactions queue here, in
    /// order, instead of polling SQLite's lock with its busy-handler sleeps.
    write_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// A write transaction; on SQLite it holds the process's write turn until
/// it commits or is dropped (rolled back).
pub struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::Transaction<'static, sqlx::Any>;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

impl WriteTx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

/// (version, description, SQLite DDL, PostgreSQL DDL).
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "core",
        include_str!("../../migrations/sqlite/0001_core.sql"),
        include_str!("../../migrations/postgres/0001_core.sql"),
    ),
    (
        2,
        "triage",
        include_str!("../../migrations/sqlite/0002_triage.sql"),
        include_str!("../../migrations/postgres/0002_triage.sql"),
    ),
    (
        3,
        "webhooks",
        include_str!("../../migrations/sqlite/0003_webhooks.sql"),
        include_str!("../../migrations/postgres/0003_webhooks.sql"),
    ),
    (
        4,
        "attachments",
        include_str!("../../migrations/sqlite/0004_attachments.sql"),
        include_str!("../../migrations/postgres/0004_attachments.sql"),
    ),
    (
        5,
        "assets",
        include_str!("../../migrations/sqlite/0005_assets.sql"),
        include_str!("../../migrations/postgres/0005_assets.sql"),
    ),
    (
        6,
        "kb",
        include_str!("../../migrations/sqlite/0006_kb.sql"),
        include_str!("../../migrations/postgres/0006_kb.sql"),
    ),
    (
        7,
        "attachment_checks",
        include_str!("../../migrations/sqlite/0007_attachment_checks.sql"),
        include_str!("../../migrations/postgres/0007_attachment_checks.sql"),
    ),
    (
        8,
        "attachment_links",
        include_str!("../../migrations/sqlite/0008_attachment_links.sql"),
        include_str!("../../migrations/postgres/0008_attachment_links.sql"),
    ),
    (
        9,
        "sla",
        include_str!("../../migrations/sqlite/0009_sla.sql"),
        include_str!("../../migrations/postgres/0009_sla.sql"),
    ),
];

/// The database URL: `url` when set, else `DATABASE_URL`, else a SQLite file
/// under the data directory.
pub fn database_url(url: Option<&str>, data_dir: &Path) -> String {
    url.map(str::to_string)
        .or_else(|| std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("helpdesk.db").display()
            )
        })
}

impl Db {
    /// Connects (creating a SQLite file when absent) and brings the schema
    /// up to date.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Dialect::Postgres
        } else if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else {
            anyhow::bail!("database URL must start with sqlite: or postgres://");
        };
        if dialect == Dialect::Sqlite {
            if let Some(dir) = sqlite_path(url).and_then(|p| p.parent().map(Path::to_path_buf)) {
                std::fs::create_dir_all(dir)?;
            }
        }
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        options = match dialect {
            // One writer at a time is SQLite's rule; WAL lets readers go on
            // beside it, and the busy timeout queues writers instead of failing.
            Dialect::Sqlite => options.max_connections(8).after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
                        .await?;
                    Ok(())
                })
            }),
            Dialect::Postgres => options.max_connections(16),
        };
        let pool = options.connect(url).await?;
        let db = Self {
            pool,
            dialect,
            write_lock: Default::default(),
        };
        db.migrate().await?;
        Ok(db)
    }

    /// Begins a transaction that writes (see `WriteTx`).
    pub async fn begin_write(&self) -> Result<WriteTx, sqlx::Error> {
        let turn = match self.dialect {
            Dialect::Sqlite => Some(self.write_lock.clone().lock_owned().await),
            Dialect::Postgres => None,
        };
        // On SQLite the transaction takes the database's write lock at
        // BEGIN (IMMEDIATE), waiting on the busy timeout: a deferred one that
        // reads first holds a snapshot, and when another connection (a
        // worker's job update, another process) commits before its first
        // write, SQLite refuses the upgrade at once (SQLITE_BUSY_SNAPSHOT),
        // which no busy timeout retries.
        let tx = match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.pool.begin().await?,
        };
        Ok(WriteTx { tx, _turn: turn })
    }

    /// Applies the migrations not yet applied (idempotent).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrations: Vec<Migration> = MIGRATIONS
            .iter()
            .map(|&(version, name, sqlite, postgres)| {
                let sql = match self.dialect {
                    Dialect::Sqlite => sqlite,
                    Dialect::Postgres => postgres,
                };
                Migration::new(
                    version,
                    Cow::Borrowed(name),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    false,
                )
            })
            .collect();
        let migrator = Migrator {
            migrations: Cow::Owned(migrations),
            ..Migrator::DEFAULT
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }
}

fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.into())
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A database error as an HTTP error: a unique-key clash is a 409, a broken
/// reference a 422, anything else a 500 (logged, opaque to the caller).
pub fn db_error(e: sqlx::Error) -> ApiError {
    if let Some(d) = e.as_database_error() {
        if d.is_unique_violation() {
            return ApiError::Conflict("already exists".into());
        }
        if d.is_foreign_key_violation() {
            return ApiError::validation("refers to something that does not exist");
        }
    }
    ApiError::Internal(e.into())
}

/// Records who did what to which object, with its state before and after
/// (JSON), in the caller's transaction.
pub async fn audit<'e, E>(
    executor: E,
    tenant_id: &str,
    actor: &str,
    action: &str,
    object: &str,
    before: Option<&serde_json::Value>,
    after: Option<&serde_json::Value>,
) -> Result<(), sqlx::Error>
where
    E: Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO audit_log (tenant_id, actor, action, object, before, after, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(tenant_id)
    .bind(actor)
    .bind(action)
    .bind(object)
    .bind(before.map(|v| v.to_string()))
    .bind(after.map(|v| v.to_string()))
    .bind(now())
    .execute(executor)
    .await?;
    Ok(())
}

/// Audits `action` on `object` by the principal, with its state before and
/// after as JSON, and commits the transaction.
pub async fn audit_and_commit<T: serde::Serialize>(
    mut tx: WriteTx,
    p: &super::Principal,
    action: &str,
    object: &str,
    before: Option<&T>,
    after: &T,
) -> Result<(), ApiError> {
    let json = |v: &T| serde_json::to_value(v).map_err(|e| ApiError::Internal(e.into()));
    let before = before.map(json).transpose()?;
    let after = json(after)?;
    audit(
        &mut **tx,
        &p.tenant_id,
        &p.user_id,
        action,
        object,
        before.as_ref(),
        Some(&after),
    )
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write transaction that reads first and writes after another
    /// connection committed (the worker's job updates do this) must not fail:
    /// with a deferred BEGIN, SQLite refused the upgrade (SQLITE_BUSY_SNAPSHOT).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_transaction_that_reads_first_survives_a_concurrent_commit() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("core.db").display());
        let db = Db::connect(&url).await.unwrap();
        let insert = |id: &'static str| {
            sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $1, 0)").bind(id)
        };
        insert("a").execute(&db.pool).await.unwrap();

        let mut tx = db.begin_write().await.unwrap();
        let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tenants")
            .fetch_one(&mut **tx)
            .await
            .unwrap();
        assert_eq!(before, 1);
        // Another connection writes (outside this process's write turn, as
        // another process would) while the transaction is open.
        let pool = db.pool.clone();
        let other = tokio::spawn(async move {
            sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ('b', 'b', 0)")
                .execute(&pool)
                .await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        sqlx::query("UPDATE tenants SET settings = '{\"x\":1}' WHERE id = 'a'")
            .execute(&mut **tx)
            .await
            .expect("the transaction's write after its read");
        tx.commit().await.unwrap();
        other
            .await
            .unwrap()
            .expect("the other connection's write, after it");
        let names: Vec<String> = sqlx::query_scalar("SELECT id FROM tenants ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
        assert_eq!(names, ["a", "b"]);
        let settings: String = sqlx::query_scalar("SELECT settings FROM tenants WHERE id = 'a'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(settings, "{\"x\":1}");
    }
}
