//! Tickets and their comments. Staff (agents, admins) see every ticket of
//! their tenant; a customer sees only the tickets they asked and their
//! public comments. Anything outside that is 404, never 403, so ids do not
//! leak. Creating a ticket writes its triage job to the outbox in the same
//! transaction; an agent's change of category, team or priority is stored
//! as a label for the training pipeline; every change goes to the audit log.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::auth::{Principal, Role};
use super::db::{audit, db_error, now};
use super::directory::Items;
use super::events::Event;
use super::records::Page;
use super::webhooks;
use super::CoreState;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};

pub const STATUSES: [&str; 5] = ["new", "open", "pending", "solved", "closed"];
pub const PRIORITIES: [&str; 4] = ["low", "normal", "high", "urgent"];
pub const TRIAGE_STATUSES: [&str; 4] = ["pending", "applied", "abstained", "failed"];
pub const CHANNELS: [&str; 5] = ["web", "email", "api", "phone", "chat"];

/// Resolution due: urgent 4 h, high 24 h, normal 72 h, low 7 days.
pub fn sla_seconds(priority: &str) -> i64 {
    match priority {
        "urgent" => 4 * 3600,
        "high" => 24 * 3600,
        "low" => 7 * 86400,
        _ => 72 * 3600,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Ticket {
    pub id: i64,
    pub subject: String,
    pub body: String,
    pub status: String,
    pub priority: String,
    pub category: Option<String>,
    pub team_id: Option<i64>,
    pub assignee_id: Option<String>,
    pub requester_id: String,
    pub channel: String,
    pub tags: Vec<String>,
    pub sla_due: Option<i64>,
    /// When it was last solved (or closed); `null` while it is open.
    pub solved_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The asset the ticket is about (an agent's choice, or a barcode on an
    /// attachment).
    pub asset_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triage: Option<Triage>,
    /// Tickets this one is linked to (the same screenshot attached to both);
    /// staff only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub links: Option<Vec<TicketLink>>,
    #[serde(skip)]
    pub triage_status: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TicketLink {
    pub ticket_id: i64,
    /// `near_duplicate_image`.
    pub reason: String,
    /// Which attachments, how close.
    pub detail: serde_json::Value,
    pub created_at: i64,
}

/// The ticket's links, both ways (this ticket to earlier ones, later ones
/// to this).
async fn links_of(db: &super::Db, tenant: &str, id: i64) -> Result<Vec<TicketLink>, ApiError> {
    let rows = sqlx::query(
        "SELECT ticket_id, linked_ticket_id, reason, detail, created_at FROM ticket_links \
         WHERE tenant_id = $1 AND (ticket_id = $2 OR linked_ticket_id = $2) ORDER BY created_at",
    )
    .bind(tenant)
    .bind(id)
    .fetch_all(&db.pool)
    .await
    .map_err(db_error)?;
    rows.iter()
        .map(|r| {
            let (a, b): (i64, i64) = (r.try_get("ticket_id")?, r.try_get("linked_ticket_id")?);
            let detail: String = r.try_get("detail")?;
            Ok(TicketLink {
                ticket_id: if a == id { b } else { a },
                reason: r.try_get("reason")?,
                detail: serde_json::from_str(&detail).unwrap_or_default(),
                created_at: r.try_get("created_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(db_error)
}

/// The AI triage of a ticket as far as it has got (staff only).
#[derive(Debug, Clone, Serialize)]
pub struct Triage {
    /// pending (queued or running), applied, abstained (in the triage queue
    /// for a human) or failed (its job was dead-lettered).
    pub status: String,
    pub attempts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Labels with confidences, sentiment, urgency, suggestions and similar
    /// tickets (empty until the AI service has answered).
    #[serde(flatten)]
    pub result: crate::triage::TriageResult,
    /// Field → value the triage set on the ticket.
    pub applied: std::collections::BTreeMap<String, serde_json::Value>,
    /// Routing tasks not applied, with why.
    pub skipped: std::collections::BTreeMap<String, String>,
}

const COLUMNS: &str = "id, subject, body, status, priority, category, team_id, assignee_id, \
                       requester_id, channel, tags, sla_due, solved_at, created_at, \
                       updated_at, triage_status, asset_id";

fn ticket(r: &AnyRow) -> Result<Ticket, sqlx::Error> {
    let tags: String = r.try_get("tags")?;
    Ok(Ticket {
        id: r.try_get("id")?,
        subject: r.try_get("subject")?,
        body: r.try_get("body")?,
        status: r.try_get("status")?,
        priority: r.try_get("priority")?,
        category: r.try_get("category")?,
        team_id: r.try_get("team_id")?,
        assignee_id: r.try_get("assignee_id")?,
        requester_id: r.try_get("requester_id")?,
        channel: r.try_get("channel")?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        sla_due: r.try_get("sla_due")?,
        solved_at: r.try_get("solved_at")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        asset_id: r.try_get("asset_id")?,
        triage: None,
        links: None,
        triage_status: r.try_get("triage_status")?,
    })
}

/// Solved or closed: no longer counting against the SLA.
pub fn is_done(status: &str) -> bool {
    matches!(status, "solved" | "closed")
}

fn one_of(what: &str, value: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "{what} must be one of {}",
            allowed.join(", ")
        )))
    }
}

fn check_tags(tags: &[String]) -> Result<(), ApiError> {
    if tags.len() > 20
        || tags
            .iter()
            .any(|t| t.trim().is_empty() || t.chars().count() > 50)
    {
        return Err(ApiError::validation(
            "at most 20 tags of 1-50 characters each",
        ));
    }
    Ok(())
}

fn check_category(c: &str) -> Result<(), ApiError> {
    super::bounded("category", c, 100).map(|_| ())
}

/// `team_id` names a team of the tenant.
async fn check_team(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &str,
    team: i64,
) -> Result<(), ApiError> {
    let found = sqlx::query("SELECT id FROM teams WHERE tenant_id = $1 AND id = $2")
        .bind(tenant)
        .bind(team)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
    found
        .map(|_| ())
        .ok_or_else(|| ApiError::validation(format!("no team {team}")))
}

/// `user` is a user of the tenant, staff when `staff`.
async fn check_user(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &str,
    user: &str,
    staff: bool,
) -> Result<(), ApiError> {
    let row = sqlx::query("SELECT role FROM users WHERE tenant_id = $1 AND id = $2")
        .bind(tenant)
        .bind(user)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?
        .ok_or_else(|| ApiError::validation(format!("no user {user}")))?;
    let role: String = row.try_get("role").map_err(db_error)?;
    if staff && Role::parse(&role) == Some(Role::Customer) {
        return Err(ApiError::validation(format!(
            "user {user} is a customer: tickets are assigned to agents"
        )));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTicket {
    pub subject: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub priority: Option<String>,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Staff only: the category, team and assignee when already known, and
    /// the customer the ticket is for (default: the caller).
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub team_id: Option<i64>,
    #[serde(default)]
    pub assignee_id: Option<String>,
    #[serde(default)]
    pub requester_id: Option<String>,
}

pub async fn create(
    State(state): State<CoreState>,
    p: Principal,
    ApiJson(t): ApiJson<NewTicket>,
) -> Result<(StatusCode, ApiJson<Ticket>), ApiError> {
    let subject = super::bounded("subject", &t.subject, 300)?;
    if t.body.chars().count() > 100_000 {
        return Err(ApiError::validation("body is over 100,000 characters"));
    }
    let priority = t.priority.as_deref().unwrap_or("normal");
    one_of("priority", priority, &PRIORITIES)?;
    let channel = t.channel.as_deref().unwrap_or("api");
    one_of("channel", channel, &CHANNELS)?;
    check_tags(&t.tags)?;
    let staff_fields = t.category.is_some()
        || t.team_id.is_some()
        || t.assignee_id.is_some()
        || t.requester_id.is_some();
    if staff_fields && !p.is_staff() {
        return Err(ApiError::Forbidden(
            "customers cannot set category, team, assignee or requester".into(),
        ));
    }
    if let Some(c) = &t.category {
        check_category(c)?;
    }
    let requester = t.requester_id.clone().unwrap_or_else(|| p.user_id.clone());
    if staff_fields {
        // References are checked before the write (teams and users are
        // never deleted; the foreign keys still guard the insert).
        let mut read = state.db.pool.begin().await.map_err(db_error)?;
        if let Some(team) = t.team_id {
            check_team(&mut read, &p.tenant_id, team).await?;
        }
        if let Some(a) = &t.assignee_id {
            check_user(&mut read, &p.tenant_id, a, true).await?;
        }
        if t.requester_id.is_some() {
            check_user(&mut read, &p.tenant_id, &requester, false).await?;
        }
    }
    let tags = serde_json::to_string(&t.tags).map_err(|e| ApiError::Internal(e.into()))?;
    let row = super::writer::NewRow {
        tenant_id: p.tenant_id.clone(),
        actor: p.user_id.clone(),
        subject: subject.to_string(),
        body: t.body,
        priority: priority.to_string(),
        category: t.category.as_deref().map(|c| c.trim().to_string()),
        team_id: t.team_id,
        assignee_id: t.assignee_id,
        requester_id: requester,
        channel: channel.to_string(),
        tags,
    };
    let created = state.writer.create(row).await?;
    Ok((StatusCode::CREATED, ApiJson(created)))
}

/// Inserts one ticket with its triage job, audit entry and webhook
/// deliveries in the caller's transaction; the event to publish after it
/// commits.
pub(super) async fn insert_ticket(
    tx: &mut super::db::WriteTx,
    r: &super::writer::NewRow,
    at: i64,
) -> Result<(Ticket, Event), sqlx::Error> {
    let row = sqlx::query(&format!(
        "INSERT INTO tickets (tenant_id, subject, body, status, priority, category, team_id, \
         assignee_id, requester_id, channel, tags, sla_due, created_at, updated_at) \
         VALUES ($1, $2, $3, 'new', $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING {COLUMNS}"
    ))
    .bind(&r.tenant_id)
    .bind(&r.subject)
    .bind(&r.body)
    .bind(&r.priority)
    .bind(r.category.as_deref())
    .bind(r.team_id)
    .bind(r.assignee_id.as_deref())
    .bind(&r.requester_id)
    .bind(&r.channel)
    .bind(&r.tags)
    .bind(at + sla_seconds(&r.priority))
    .bind(at)
    .fetch_one(&mut ***tx)
    .await?;
    let created = ticket(&row)?;
    // The triage job, in the same transaction: no ticket without its job.
    let payload = serde_json::json!({ "ticket_id": created.id });
    let key = format!("triage:{}", created.id);
    super::jobs::enqueue(tx, &r.tenant_id, "triage", &payload, &key, at).await?;
    let after = serde_json::json!({ "subject": created.subject, "priority": created.priority });
    audit(
        &mut ***tx,
        &r.tenant_id,
        &r.actor,
        "ticket.create",
        &format!("ticket:{}", created.id),
        None,
        Some(&after),
    )
    .await?;
    let data = serde_json::json!({ "subject": created.subject, "status": created.status,
        "priority": created.priority, "channel": created.channel });
    let event = Event::new(
        "ticket.created",
        &r.tenant_id,
        created.id,
        &created.requester_id,
        true,
        data,
    );
    let event = webhooks::enqueue(tx, event).await?;
    Ok((created, event))
}

/// The ticket when the principal may see it; 404 otherwise.
pub(super) async fn visible<'e, E>(executor: E, p: &Principal, id: i64) -> Result<Ticket, ApiError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM tickets WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(&p.tenant_id)
    .bind(id)
    .fetch_optional(executor)
    .await
    .map_err(db_error)?;
    let t = row
        .map(|r| ticket(&r))
        .transpose()
        .map_err(db_error)?
        .filter(|t| p.is_staff() || t.requester_id == p.user_id);
    t.ok_or_else(|| ApiError::NotFound(format!("no ticket {id}")))
}

pub async fn read(
    State(state): State<CoreState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<ApiJson<Ticket>, ApiError> {
    let mut t = visible(&state.db.pool, &p, id).await?;
    if p.is_staff() {
        t.triage = Some(triage_of(&state.db, &p.tenant_id, &t).await?);
        t.links = Some(links_of(&state.db, &p.tenant_id, id).await?);
    }
    Ok(ApiJson(t))
}

/// The ticket's triage: its status, the job's attempts and last error, and
/// the stored prediction once there is one.
async fn triage_of(db: &super::Db, tenant: &str, t: &Ticket) -> Result<Triage, ApiError> {
    let job = sqlx::query(
        "SELECT status, attempts, last_error FROM outbox WHERE tenant_id = $1 AND idempotency_key = $2",
    )
    .bind(tenant)
    .bind(format!("triage:{}", t.id))
    .fetch_optional(&db.pool)
    .await
    .map_err(db_error)?;
    let (attempts, error, dead) = match job {
        Some(j) => (
            j.try_get("attempts").map_err(db_error)?,
            j.try_get("last_error").map_err(db_error)?,
            j.try_get::<String, _>("status").map_err(db_error)? == "dead",
        ),
        None => (0, None, false),
    };
    let (result, done) = match super::triage::stored(&db.pool, tenant, t.id).await? {
        Some((r, d)) => (r, Some(d)),
        None => (crate::triage::TriageResult::default(), None),
    };
    // A job dead-lettered by anyone but the worker (which marks the ticket
    // itself) still reads as failed.
    let status = if dead && t.triage_status == "pending" {
        "failed".to_string()
    } else {
        t.triage_status.clone()
    };
    Ok(Triage {
        status,
        attempts,
        error,
        result,
        applied: done.as_ref().map(|d| d.applied.clone()).unwrap_or_default(),
        skipped: done.map(|d| d.skipped).unwrap_or_default(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub status: Option<String>,
    pub priority: Option<String>,
    pub team_id: Option<i64>,
    pub assignee_id: Option<String>,
    pub requester_id: Option<String>,
    /// Triage status (staff): `abstained` is the triage queue.
    pub triage: Option<String>,
    #[serde(default = "super::records::fifty")]
    pub limit: i64,
    /// Tickets with ids below this (the previous page's `next_before`).
    pub before: Option<i64>,
}

enum Bind {
    Text(String),
    Int(i64),
}

/// Newest first, filtered, a page at a time (keyset on id).
pub async fn list(
    State(state): State<CoreState>,
    p: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<ApiJson<Page<Ticket>>, ApiError> {
    if !(1..=100).contains(&q.limit) {
        return Err(ApiError::validation("limit must be within 1 and 100"));
    }
    let mut conditions = vec!["tenant_id = $1".to_string()];
    let mut binds = vec![Bind::Text(p.tenant_id.clone())];
    let mut add = |column: &str, b: Bind| {
        binds.push(b);
        let op = if column == "id" { "<" } else { "=" };
        conditions.push(format!("{column} {op} ${}", binds.len()));
    };
    if let Some(s) = &q.status {
        one_of("status", s, &STATUSES)?;
        add("status", Bind::Text(s.clone()));
    }
    if let Some(s) = &q.priority {
        one_of("priority", s, &PRIORITIES)?;
        add("priority", Bind::Text(s.clone()));
    }
    if let Some(s) = &q.triage {
        one_of("triage", s, &TRIAGE_STATUSES)?;
        add("triage_status", Bind::Text(s.clone()));
    }
    if let Some(t) = q.team_id {
        add("team_id", Bind::Int(t));
    }
    if let Some(a) = &q.assignee_id {
        add("assignee_id", Bind::Text(a.clone()));
    }
    if !p.is_staff() {
        add("requester_id", Bind::Text(p.user_id.clone()));
    } else if let Some(r) = &q.requester_id {
        add("requester_id", Bind::Text(r.clone()));
    }
    if let Some(b) = q.before {
        add("id", Bind::Int(b));
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM tickets WHERE {} ORDER BY id DESC LIMIT {}",
        conditions.join(" AND "),
        q.limit + 1
    );
    let mut query = sqlx::query(&sql);
    for b in binds {
        query = match b {
            Bind::Text(s) => query.bind(s),
            Bind::Int(i) => query.bind(i),
        };
    }
    let rows = query.fetch_all(&state.db.pool).await.map_err(db_error)?;
    let mut items: Vec<Ticket> = rows
        .iter()
        .map(ticket)
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    let more = items.len() as i64 > q.limit;
    items.truncate(q.limit as usize);
    let next_before = if more {
        items.last().map(|t| t.id)
    } else {
        None
    };
    Ok(ApiJson(Page { items, next_before }))
}

/// Missing: unchanged; `null`: cleared; a value: set.
pub(super) fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketPatch {
    pub status: Option<String>,
    pub priority: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub category: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub team_id: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    pub assignee_id: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    pub asset_id: Option<Option<i64>>,
}

/// `PATCH /api/v1/tickets/{id}` (staff): status, priority, category, team,
/// assignee, tags.
pub async fn update(
    State(state): State<CoreState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(patch): ApiJson<TicketPatch>,
) -> Result<ApiJson<Ticket>, ApiError> {
    let mut tx = state.db.begin_write().await.map_err(db_error)?;
    let before = visible(&mut **tx, &p, id).await?;
    p.require_staff()?;
    let mut t = before.clone();
    if let Some(s) = &patch.status {
        one_of("status", s, &STATUSES)?;
        t.status = s.clone();
    }
    if let Some(s) = &patch.priority {
        one_of("priority", s, &PRIORITIES)?;
        t.priority = s.clone();
    }
    let at = now();
    if t.priority != before.priority {
        // The resolution target follows the priority, counted from creation.
        t.sla_due = Some(t.created_at + sla_seconds(&t.priority));
    }
    // Solved (or closed) stamps the time once; reopening clears it, so the
    // SLA report counts the last resolution.
    match (is_done(&before.status), is_done(&t.status)) {
        (false, true) => t.solved_at = Some(at),
        (true, false) => t.solved_at = None,
        _ => {}
    }
    if let Some(c) = &patch.category {
        if let Some(c) = c {
            check_category(c)?;
        }
        t.category = c.as_ref().map(|c| c.trim().to_string());
    }
    if let Some(team) = patch.team_id {
        if let Some(team) = team {
            check_team(&mut tx, &p.tenant_id, team).await?;
        }
        t.team_id = team;
    }
    if let Some(a) = &patch.assignee_id {
        if let Some(a) = a {
            check_user(&mut tx, &p.tenant_id, a, true).await?;
        }
        t.assignee_id = a.clone();
    }
    if let Some(tags) = &patch.tags {
        check_tags(tags)?;
        t.tags = tags.clone();
    }
    if let Some(asset) = patch.asset_id {
        if let Some(asset) = asset {
            let found = sqlx::query("SELECT id FROM assets WHERE tenant_id = $1 AND id = $2")
                .bind(&p.tenant_id)
                .bind(asset)
                .fetch_optional(&mut **tx)
                .await
                .map_err(db_error)?;
            if found.is_none() {
                return Err(ApiError::validation(format!("no asset {asset}")));
            }
        }
        t.asset_id = asset;
    }
    t.updated_at = at;
    let tags = serde_json::to_string(&t.tags).map_err(|e| ApiError::Internal(e.into()))?;
    sqlx::query(
        "UPDATE tickets SET status = $1, priority = $2, category = $3, team_id = $4, \
         assignee_id = $5, tags = $6, updated_at = $7, asset_id = $8, sla_due = $9, \
         solved_at = $10 WHERE tenant_id = $11 AND id = $12",
    )
    .bind(&t.status)
    .bind(&t.priority)
    .bind(t.category.as_deref())
    .bind(t.team_id)
    .bind(t.assignee_id.as_deref())
    .bind(&tags)
    .bind(t.updated_at)
    .bind(t.asset_id)
    .bind(t.sla_due)
    .bind(t.solved_at)
    .bind(&p.tenant_id)
    .bind(id)
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    // Routing corrections become training labels.
    let changes = [
        ("category", before.category.clone(), t.category.clone()),
        (
            "team",
            before.team_id.map(|x| x.to_string()),
            t.team_id.map(|x| x.to_string()),
        ),
        (
            "priority",
            Some(before.priority.clone()),
            Some(t.priority.clone()),
        ),
    ];
    for (task, old, new) in changes {
        if let (Some(new), true) = (&new, old != new) {
            sqlx::query(
                "INSERT INTO labels (tenant_id, ticket_id, task, label, previous, actor, at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&p.tenant_id)
            .bind(id)
            .bind(task)
            .bind(new)
            .bind(old)
            .bind(&p.user_id)
            .bind(t.updated_at)
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        }
    }
    let snapshot = |x: &Ticket| {
        serde_json::json!({ "status": x.status, "priority": x.priority, "category": x.category,
            "team_id": x.team_id, "assignee_id": x.assignee_id, "tags": x.tags,
            "asset_id": x.asset_id, "sla_due": x.sla_due, "solved_at": x.solved_at })
    };
    audit(
        &mut **tx,
        &p.tenant_id,
        &p.user_id,
        "ticket.update",
        &format!("ticket:{id}"),
        Some(&snapshot(&before)),
        Some(&snapshot(&t)),
    )
    .await
    .map_err(db_error)?;
    let data = serde_json::json!({ "before": snapshot(&before), "after": snapshot(&t) });
    let event = Event::new(
        "ticket.updated",
        &p.tenant_id,
        id,
        &t.requester_id,
        true,
        data,
    );
    let event = webhooks::enqueue(&mut tx, event).await.map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    state.events.publish(event).await;
    Ok(ApiJson(t))
}

#[derive(Debug, Serialize)]
pub struct Comment {
    pub id: i64,
    pub ticket_id: i64,
    pub author_id: Option<String>,
    pub body: String,
    pub public: bool,
    pub created_at: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    pub body: String,
    /// Staff may write internal notes (`false`); a customer's are public.
    #[serde(default = "yes")]
    pub public: bool,
}

fn yes() -> bool {
    true
}

pub async fn add_comment(
    State(state): State<CoreState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(c): ApiJson<NewComment>,
) -> Result<(StatusCode, ApiJson<Comment>), ApiError> {
    let body = super::bounded("body", &c.body, 100_000)?;
    let mut tx = state.db.begin_write().await.map_err(db_error)?;
    let ticket = visible(&mut **tx, &p, id).await?;
    if !c.public && !p.is_staff() {
        return Err(ApiError::Forbidden(
            "customers write public comments only".into(),
        ));
    }
    let at = now();
    let new_id: i64 = sqlx::query(
        "INSERT INTO comments (tenant_id, ticket_id, author_id, body, public, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(&p.tenant_id)
    .bind(id)
    .bind(&p.user_id)
    .bind(body)
    .bind(i64::from(c.public))
    .bind(at)
    .fetch_one(&mut **tx)
    .await
    .map_err(db_error)?
    .try_get("id")
    .map_err(db_error)?;
    sqlx::query("UPDATE tickets SET updated_at = $1 WHERE tenant_id = $2 AND id = $3")
        .bind(at)
        .bind(&p.tenant_id)
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    audit(
        &mut **tx,
        &p.tenant_id,
        &p.user_id,
        "comment.add",
        &format!("ticket:{id}/comment:{new_id}"),
        None,
        None,
    )
    .await
    .map_err(db_error)?;
    let data = serde_json::json!({ "comment_id": new_id, "author_id": p.user_id,
        "public": c.public, "body": body });
    let event = Event::new(
        "comment.added",
        &p.tenant_id,
        id,
        &ticket.requester_id,
        c.public,
        data,
    );
    let event = webhooks::enqueue(&mut tx, event).await.map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    state.events.publish(event).await;
    Ok((
        StatusCode::CREATED,
        ApiJson(Comment {
            id: new_id,
            ticket_id: id,
            author_id: Some(p.user_id),
            body: body.to_string(),
            public: c.public,
            created_at: at,
        }),
    ))
}

pub async fn list_comments(
    State(state): State<CoreState>,
    p: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<ApiJson<Items<Comment>>, ApiError> {
    visible(&state.db.pool, &p, id).await?;
    let only_public = if p.is_staff() { "" } else { " AND public = 1" };
    let rows = sqlx::query(&format!(
        "SELECT id, ticket_id, author_id, body, public, created_at FROM comments \
         WHERE tenant_id = $1 AND ticket_id = $2{only_public} ORDER BY id"
    ))
    .bind(&p.tenant_id)
    .bind(id)
    .fetch_all(&state.db.pool)
    .await
    .map_err(db_error)?;
    let items = rows
        .iter()
        .map(|r| {
            Ok(Comment {
                id: r.try_get("id")?,
                ticket_id: r.try_get("ticket_id")?,
                author_id: r.try_get("author_id")?,
                body: r.try_get("body")?,
                public: r.try_get::<i64, _>("public")? != 0,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(db_error)?;
    Ok(ApiJson(Items { items }))
}
