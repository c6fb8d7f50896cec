//! The core's records, read back: the audit log (`GET /api/v1/audit`,
//! admins) and agents' corrections as training labels (`GET
//! /api/v1/labels`, staff), newest first, a page at a time (keyset on id).
//! `?format=csv` on labels gives what `helpdesk train --data` reads: one
//! `text,label` row per ticket (its latest correction for the task), the
//! text being the ticket's subject and body — so a tenant's corrections
//! become its next model version.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::auth::Principal;
use super::db::db_error;
use super::CoreState;
use crate::error::{ApiError, ApiJson, ApiQuery};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    /// e.g. `ticket:42`.
    pub object: Option<String>,
    #[serde(default = "fifty")]
    pub limit: i64,
    /// Entries with ids below this (the previous page's `next_before`).
    pub before: Option<i64>,
}

/// The default page size of the core's listings.
pub(super) fn fifty() -> i64 {
    50
}

#[derive(Debug, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub actor: String,
    pub action: String,
    pub object: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub at: i64,
}

/// A page of a listing, newest first (tickets, audit entries, labels).
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `before` for the next page; absent on the last.
    pub next_before: Option<i64>,
}

/// The conditions of a listing (each with its `$n`: the tenant is `$1`)
/// and their text values, and the keyset on `id` (a column name of this
/// file, qualified where a join needs it).
struct Filter {
    conditions: Vec<String>,
    binds: Vec<String>,
    before: Option<i64>,
    id: &'static str,
}

impl Filter {
    fn new(
        tenant_column: &'static str,
        tenant: &str,
        id: &'static str,
        before: Option<i64>,
    ) -> Self {
        Self {
            conditions: vec![format!("{tenant_column} = $1")],
            binds: vec![tenant.into()],
            before,
            id,
        }
    }

    /// `column = value` (the column from this file, never from a request).
    fn eq(&mut self, column: &'static str, value: Option<&String>) -> Result<(), ApiError> {
        if let Some(v) = value {
            super::bounded(column, v, 200)?;
            self.binds.push(v.clone());
            self.conditions
                .push(format!("{column} = ${}", self.binds.len()));
        }
        Ok(())
    }

    /// Newest first; `limit` + 1 rows (the extra one says there is more),
    /// or every row without a limit.
    fn sql(&self, columns: &str, table: &str, limit: Option<i64>) -> String {
        let mut conditions = self.conditions.clone();
        if self.before.is_some() {
            conditions.push(format!("{} < ${}", self.id, self.binds.len() + 1));
        }
        let limit = limit
            .map(|l| format!(" LIMIT {}", l + 1))
            .unwrap_or_default();
        format!(
            "SELECT {columns} FROM {table} WHERE {} ORDER BY {} DESC{limit}",
            conditions.join(" AND "),
            self.id
        )
    }

    async fn fetch(&self, db: &super::Db, sql: &str) -> Result<Vec<sqlx::any::AnyRow>, ApiError> {
        let mut q = sqlx::query(sql);
        for b in &self.binds {
            q = q.bind(b.clone());
        }
        if let Some(b) = self.before {
            q = q.bind(b);
        }
        q.fetch_all(&db.pool).await.map_err(db_error)
    }
}

fn check_limit(limit: i64) -> Result<(), ApiError> {
    if (1..=200).contains(&limit) {
        Ok(())
    } else {
        Err(ApiError::validation("limit must be within 1 and 200"))
    }
}

/// The page of `items` (one more than `limit` was fetched).
fn page<T>(mut items: Vec<T>, limit: i64, id: impl Fn(&T) -> i64) -> Page<T> {
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next_before = if more { items.last().map(&id) } else { None };
    Page { items, next_before }
}

/// `GET /api/v1/audit` (admins): who changed what, when, before and after.
pub async fn audit(
    State(state): State<CoreState>,
    p: Principal,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<ApiJson<Page<AuditEntry>>, ApiError> {
    p.require_admin()?;
    check_limit(q.limit)?;
    let mut f = Filter::new("tenant_id", &p.tenant_id, "id", q.before);
    f.eq("actor", q.actor.as_ref())?;
    f.eq("action", q.action.as_ref())?;
    f.eq("object", q.object.as_ref())?;
    let sql = f.sql(
        "id, actor, action, object, before, after, at",
        "audit_log",
        Some(q.limit),
    );
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    let items = f
        .fetch(&state.db, &sql)
        .await?
        .iter()
        .map(|r| {
            Ok(AuditEntry {
                id: r.try_get("id")?,
                actor: r.try_get("actor")?,
                action: r.try_get("action")?,
                object: r.try_get("object")?,
                before: json(r.try_get("before")?),
                after: json(r.try_get("after")?),
                at: r.try_get("at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(db_error)?;
    Ok(ApiJson(page(items, q.limit, |e| e.id)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelQuery {
    /// category, team or priority.
    pub task: Option<String>,
    /// `json` (default, paged) or `csv` (training data: every ticket once).
    pub format: Option<String>,
    #[serde(default = "fifty")]
    pub limit: i64,
    pub before: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct Label {
    pub id: i64,
    pub ticket_id: i64,
    pub task: String,
    pub label: String,
    /// What the ticket had before the correction (the AI's or a person's).
    pub previous: Option<String>,
    pub actor: String,
    pub at: i64,
    /// The ticket's subject and body: what a head reads.
    pub text: String,
}

const LABEL_COLUMNS: &str = "l.id AS id, l.ticket_id AS ticket_id, l.task AS task, \
    l.label AS label, l.previous AS previous, l.actor AS actor, l.at AS at, \
    t.subject AS subject, t.body AS body";

fn label(r: &sqlx::any::AnyRow) -> Result<Label, sqlx::Error> {
    let subject: String = r.try_get("subject")?;
    let body: String = r.try_get("body")?;
    Ok(Label {
        id: r.try_get("id")?,
        ticket_id: r.try_get("ticket_id")?,
        task: r.try_get("task")?,
        label: r.try_get("label")?,
        previous: r.try_get("previous")?,
        actor: r.try_get("actor")?,
        at: r.try_get("at")?,
        text: format!("{}\n{}", subject.trim(), body.trim())
            .trim()
            .to_string(),
    })
}

/// `GET /api/v1/labels[?task=&format=csv]` (staff).
pub async fn labels(
    State(state): State<CoreState>,
    p: Principal,
    ApiQuery(q): ApiQuery<LabelQuery>,
) -> Result<Response, ApiError> {
    p.require_staff()?;
    check_limit(q.limit)?;
    if let Some(t) = &q.task {
        if !crate::triage::pipeline::ROUTING_TASKS.contains(&t.as_str()) {
            return Err(ApiError::validation(
                "task must be one of category, team, priority",
            ));
        }
    }
    let table = "labels l JOIN tickets t ON t.id = l.ticket_id AND t.tenant_id = l.tenant_id";
    // Qualified columns: both tables have a tenant and an id.
    let mut f = Filter::new("l.tenant_id", &p.tenant_id, "l.id", q.before);
    f.eq("l.task", q.task.as_ref())?;
    match q.format.as_deref().unwrap_or("json") {
        "json" => {
            let sql = f.sql(LABEL_COLUMNS, table, Some(q.limit));
            let items = f
                .fetch(&state.db, &sql)
                .await?
                .iter()
                .map(label)
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(db_error)?;
            Ok(ApiJson(page(items, q.limit, |l| l.id)).into_response())
        }
        "csv" => {
            let Some(task) = &q.task else {
                return Err(ApiError::validation("format=csv needs a task"));
            };
            if q.before.is_some() {
                return Err(ApiError::validation("format=csv is not paged"));
            }
            // Every label of the task, newest first: each ticket's latest wins.
            let sql = f.sql(LABEL_COLUMNS, table, None);
            let rows = f.fetch(&state.db, &sql).await?;
            let mut seen = std::collections::HashSet::new();
            let mut out = csv::Writer::from_writer(Vec::new());
            let fail = |e: csv::Error| ApiError::Internal(e.into());
            out.write_record(["text", "label"]).map_err(fail)?;
            for r in &rows {
                let l = label(r).map_err(db_error)?;
                if l.text.is_empty() || !seen.insert(l.ticket_id) {
                    continue;
                }
                out.write_record([l.text.as_str(), l.label.as_str()])
                    .map_err(fail)?;
            }
            let body = out
                .into_inner()
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("{e}")))?;
            Ok((
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"labels-{task}.csv\""),
                    ),
                ],
                body,
            )
                .into_response())
        }
        _ => Err(ApiError::validation("format must be json or csv")),
    }
}
