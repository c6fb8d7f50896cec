//! The core's side of the triage loop: the AI service's callback
//! (`POST /api/v1/tickets/{id}/triage`), which applies the routing when the
//! confidence clears the tenant's threshold, stores the prediction and adds
//! an internal note with the suggested KB answers, all in one transaction
//! and at most once per ticket; and the tenant's routing settings
//! (`GET|PATCH /api/v1/tenant/settings`).
//!
//! What is applied, and when:
//! - `category` and `team` (a team of the tenant, by name) when the ticket
//!   has none yet: what a person set is never overwritten;
//! - `priority` while the ticket is still `new` (nobody has worked it);
//!   without a priority head, urgency `critical` raises it to urgent and
//!   `high` to high (never lowers it).
//! - A head's answer counts when its calibrated confidence is at least the
//!   tenant's `route_threshold`; without one, the head's own threshold
//!   (chosen on validation data for its target precision) decides.
//!
//! Nothing applied: the ticket stays in the triage queue (`triage_status =
//! abstained`) for a human.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::Row;

use super::auth::Principal;
use super::db::{audit, db_error, now, Db};
use super::tickets::{sla_seconds, PRIORITIES};
use super::CoreState;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::triage::pipeline::ROUTING_TASKS;
use crate::triage::{AppliedTriage, TriageResult};

/// The triage settings of a tenant (its row's `settings` JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoutingSettings {
    /// Apply a head's top label when its confidence is at least this;
    /// `null`: the head's own validated threshold.
    #[serde(default)]
    pub route_threshold: Option<f32>,
    /// Per task (a routing head or a label set), instead of
    /// `route_threshold`.
    #[serde(default)]
    pub thresholds: BTreeMap<String, f32>,
    /// Turn the automatic routing off (predictions are still stored).
    #[serde(default)]
    pub auto_route_disabled: bool,
    /// The tenant's own label sets (tasks it trained, e.g. `product`)
    /// predicted at triage beside the routing heads; a confident answer
    /// becomes a `task:label` tag.
    #[serde(default)]
    pub label_sets: Vec<String>,
    /// The triage pipeline (`pipelines/triage.toml`); `null`: `standard`.
    #[serde(default)]
    pub pipeline: Option<String>,
}

impl RoutingSettings {
    fn check(&self, pipelines: &crate::triage::pipeline::TriagePipelines) -> Result<(), ApiError> {
        let bad = |t: f32| !(0.0..=1.0).contains(&t) || !t.is_finite();
        if self.route_threshold.is_some_and(bad) {
            return Err(ApiError::validation(
                "route_threshold must be within 0 and 1 (or null)",
            ));
        }
        crate::ai::triage::check_label_sets(&self.label_sets)?;
        for (task, t) in &self.thresholds {
            let known = ROUTING_TASKS.contains(&task.as_str()) || self.label_sets.contains(task);
            if !known || bad(*t) {
                return Err(ApiError::validation(format!(
                    "thresholds.{task}: a routing head ({}) or one of label_sets, within 0 and 1",
                    ROUTING_TASKS.join(", ")
                )));
            }
        }
        if pipelines.get(self.pipeline.as_deref()).is_none() {
            return Err(ApiError::validation(format!(
                "pipeline must be one of {}",
                pipelines.names().join(", ")
            )));
        }
        Ok(())
    }

    /// The confidence a task's answer needs (`None`: the head's own).
    fn threshold(&self, task: &str) -> Option<f32> {
        self.thresholds.get(task).copied().or(self.route_threshold)
    }
}

pub async fn routing_settings<'e, E>(executor: E, tenant: &str) -> Result<RoutingSettings, ApiError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query("SELECT settings FROM tenants WHERE id = $1")
        .bind(tenant)
        .fetch_optional(executor)
        .await
        .map_err(db_error)?
        .ok_or_else(|| ApiError::NotFound("no such tenant".into()))?;
    let text: String = row.try_get("settings").map_err(db_error)?;
    // Unknown keys from a later version must not break routing.
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(RoutingSettings {
        route_threshold: v["route_threshold"].as_f64().map(|t| t as f32),
        thresholds: v["thresholds"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, t)| t.as_f64().map(|t| (k.clone(), t as f32)))
                    .collect()
            })
            .unwrap_or_default(),
        auto_route_disabled: v["auto_route_disabled"].as_bool().unwrap_or(false),
        label_sets: strings(&v["label_sets"]),
        pipeline: v["pipeline"].as_str().map(str::to_string),
    })
}

/// `GET /api/v1/tenant/settings` (staff).
pub async fn get_settings(
    State(state): State<CoreState>,
    p: Principal,
) -> Result<ApiJson<RoutingSettings>, ApiError> {
    p.require_staff()?;
    Ok(ApiJson(
        routing_settings(&state.db.pool, &p.tenant_id).await?,
    ))
}

/// `PUT /api/v1/tenant/settings` (admins): the whole settings object.
pub async fn put_settings(
    State(state): State<CoreState>,
    p: Principal,
    ApiJson(s): ApiJson<RoutingSettings>,
) -> Result<ApiJson<RoutingSettings>, ApiError> {
    p.require_admin()?;
    s.check(&state.pipelines)?;
    let mut tx = state.db.begin_write().await.map_err(db_error)?;
    let before = routing_settings(&mut **tx, &p.tenant_id).await?;
    let after = serde_json::to_value(&s).map_err(|e| ApiError::Internal(e.into()))?;
    sqlx::query("UPDATE tenants SET settings = $1 WHERE id = $2")
        .bind(after.to_string())
        .bind(&p.tenant_id)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    let before = serde_json::to_value(&before).map_err(|e| ApiError::Internal(e.into()))?;
    audit(
        &mut **tx,
        &p.tenant_id,
        &p.user_id,
        "tenant.settings",
        &format!("tenant:{}", p.tenant_id),
        Some(&before),
        Some(&after),
    )
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok(ApiJson(s))
}

/// The callback's tenant: a `service` key acts for the tenant it names in
/// `X-Tenant-Id`; an `ai-callback` key for its own. Anyone else is 403.
fn callback_tenant(p: &Principal, headers: &HeaderMap) -> Result<String, ApiError> {
    let has = |s: &str| p.scopes.iter().any(|x| x == s);
    let named = headers
        .get(crate::ai::tenant::HEADER)
        .and_then(|v| v.to_str().ok());
    if has("service") {
        return Ok(named.unwrap_or(&p.tenant_id).to_string());
    }
    if has("ai-callback") {
        return match named {
            Some(n) if n != p.tenant_id => Err(ApiError::Forbidden(
                "X-Tenant-Id names another tenant: only service keys may act for other tenants"
                    .into(),
            )),
            _ => Ok(p.tenant_id.clone()),
        };
    }
    Err(ApiError::Forbidden(
        "triage results are posted with the AI service's key (scope ai-callback or service)".into(),
    ))
}

/// `POST /api/v1/tickets/{id}/triage`: the AI service's callback.
pub async fn callback(
    State(state): State<CoreState>,
    p: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
    ApiJson(result): ApiJson<TriageResult>,
) -> Result<ApiJson<AppliedTriage>, ApiError> {
    let tenant = callback_tenant(&p, &headers)?;
    check_result(&result)?;
    let actor = format!("ai:{}", p.user_id);
    Ok(ApiJson(apply(&state, &tenant, id, &result, &actor).await?))
}

fn check_result(r: &TriageResult) -> Result<(), ApiError> {
    let bad_p = |x: f32| !(0.0..=1.0).contains(&x) || !x.is_finite();
    if r.labels.len() > 20 || r.suggestions.len() > 20 || r.similar.len() > 50 {
        return Err(ApiError::validation(
            "at most 20 labels, 20 suggestions and 50 similar tickets",
        ));
    }
    if let Some((task, _)) = r
        .labels
        .iter()
        .find(|(_, l)| bad_p(l.confidence) || bad_p(l.threshold))
    {
        return Err(ApiError::validation(format!(
            "labels.{task}: confidence and threshold must be within 0 and 1"
        )));
    }
    Ok(())
}

/// The stored triage of a ticket, if any.
pub async fn stored<'e, E>(
    executor: E,
    tenant: &str,
    ticket: i64,
) -> Result<Option<(TriageResult, AppliedTriage)>, ApiError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(
        "SELECT status, result, applied FROM predictions WHERE tenant_id = $1 AND ticket_id = $2",
    )
    .bind(tenant)
    .bind(ticket)
    .fetch_optional(executor)
    .await
    .map_err(db_error)?;
    let Some(row) = row else { return Ok(None) };
    let result: String = row.try_get("result").map_err(db_error)?;
    let applied: String = row.try_get("applied").map_err(db_error)?;
    let result: TriageResult =
        serde_json::from_str(&result).map_err(|e| ApiError::Internal(e.into()))?;
    let mut applied: AppliedTriage =
        serde_json::from_str(&applied).map_err(|e| ApiError::Internal(e.into()))?;
    applied.status = row.try_get("status").map_err(db_error)?;
    Ok(Some((result, applied)))
}

/// Applies a triage result to a ticket of `tenant` once: a second call for
/// the same ticket changes nothing and answers what the first did, with
/// `replayed` set (a retried job, or two workers after a lease ran out).
pub async fn apply(
    core: &CoreState,
    tenant: &str,
    ticket: i64,
    result: &TriageResult,
    actor: &str,
) -> Result<AppliedTriage, ApiError> {
    let db = &core.db;
    match apply_once(db, &core.pipelines, tenant, ticket, result, actor).await {
        Ok((done, events)) => {
            for e in events {
                core.events.publish(e).await;
            }
            Ok(done)
        }
        Err(ApiError::Conflict(_)) => {
            // Another callback for this ticket committed first.
            let (_, mut done) = stored(&db.pool, tenant, ticket)
                .await?
                .ok_or_else(|| ApiError::Conflict("triage raced and vanished".into()))?;
            done.replayed = true;
            Ok(done)
        }
        Err(e) => Err(e),
    }
}

/// The triage applied, and its live events (none when replayed).
async fn apply_once(
    db: &Db,
    pipelines: &crate::triage::pipeline::TriagePipelines,
    tenant: &str,
    id: i64,
    result: &TriageResult,
    actor: &str,
) -> Result<(AppliedTriage, Vec<super::events::Event>), ApiError> {
    let mut tx = db.begin_write().await.map_err(db_error)?;
    // A triage of this revision or a later one landed already: a replay.
    // An earlier one: this re-triage (an attachment's text arrived) adds to it.
    let previous = sqlx::query(
        "SELECT revision, applied FROM predictions WHERE tenant_id = $1 AND ticket_id = $2",
    )
    .bind(tenant)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_error)?;
    let previous = match previous {
        Some(row) => {
            let revision: i64 = row.try_get("revision").map_err(db_error)?;
            if revision >= result.revision {
                let (_, mut done) = stored(&mut **tx, tenant, id)
                    .await?
                    .ok_or_else(|| ApiError::Conflict("triage vanished".into()))?;
                done.replayed = true;
                return Ok((done, Vec::new()));
            }
            let applied: String = row.try_get("applied").map_err(db_error)?;
            let applied: AppliedTriage =
                serde_json::from_str(&applied).map_err(|e| ApiError::Internal(e.into()))?;
            Some((revision, applied))
        }
        None => None,
    };
    let row = sqlx::query(
        "SELECT status, priority, category, team_id, created_at, requester_id, tags \
         FROM tickets WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_error)?
    .ok_or_else(|| ApiError::NotFound(format!("no ticket {id}")))?;
    let status: String = row.try_get("status").map_err(db_error)?;
    let priority: String = row.try_get("priority").map_err(db_error)?;
    let category: Option<String> = row.try_get("category").map_err(db_error)?;
    let team_id: Option<i64> = row.try_get("team_id").map_err(db_error)?;
    let created_at: i64 = row.try_get("created_at").map_err(db_error)?;
    let requester: String = row.try_get("requester_id").map_err(db_error)?;
    let tags: String = row.try_get("tags").map_err(db_error)?;
    let tags: Vec<String> = serde_json::from_str(&tags).unwrap_or_default();
    let settings = routing_settings(&mut **tx, tenant).await?;
    // Urgency stands in for a priority head only where the tenant's
    // pipeline routes priority (not in `assist`: people route there).
    let routes_priority = pipelines
        .get(settings.pipeline.as_deref())
        .is_none_or(|p| p.routing.iter().any(|t| t == "priority"));

    let mut applied: BTreeMap<String, Value> = BTreeMap::new();
    let mut skipped: BTreeMap<String, String> = BTreeMap::new();
    // A head's answer when it clears the threshold, with why not otherwise.
    let decide = |task: &str| -> Result<Option<String>, String> {
        let Some(l) = result.labels.get(task) else {
            return Ok(None);
        };
        if settings.auto_route_disabled {
            return Err("automatic routing is off for this tenant".into());
        }
        match settings.threshold(task) {
            Some(t) if l.confidence >= t => Ok(Some(l.top.clone())),
            Some(t) => Err(format!(
                "confidence {:.3} is below the tenant's threshold {t:.3}",
                l.confidence
            )),
            None => l.label.clone().map(Some).ok_or_else(|| {
                format!(
                    "confidence {:.3} is below the head's threshold {:.3}",
                    l.confidence, l.threshold
                )
            }),
        }
    };
    let mut new_category = category.clone();
    match decide("category") {
        Ok(Some(c)) if category.is_none() => {
            let c: String = c.trim().chars().take(100).collect();
            applied.insert("category".into(), json!(c));
            new_category = Some(c);
        }
        Ok(Some(_)) => {
            skipped.insert("category".into(), "the ticket already has one".into());
        }
        Ok(None) => {}
        Err(why) => {
            skipped.insert("category".into(), why);
        }
    }
    let mut new_team = team_id;
    match decide("team") {
        Ok(Some(name)) if team_id.is_none() => {
            let team = sqlx::query("SELECT id FROM teams WHERE tenant_id = $1 AND name = $2")
                .bind(tenant)
                .bind(&name)
                .fetch_optional(&mut **tx)
                .await
                .map_err(db_error)?;
            match team {
                Some(t) => {
                    let t: i64 = t.try_get("id").map_err(db_error)?;
                    applied.insert("team_id".into(), json!(t));
                    new_team = Some(t);
                }
                None => {
                    skipped.insert("team".into(), format!("the tenant has no team {name:?}"));
                }
            }
        }
        Ok(Some(_)) => {
            skipped.insert("team".into(), "the ticket already has one".into());
        }
        Ok(None) => {}
        Err(why) => {
            skipped.insert("team".into(), why);
        }
    }
    let mut new_priority = priority.clone();
    let rank = |p: &str| PRIORITIES.iter().position(|x| *x == p).unwrap_or(1);
    let from_head = decide("priority");
    let wanted = match (&from_head, result.labels.contains_key("priority")) {
        (Ok(Some(p)), _) if PRIORITIES.contains(&p.as_str()) => Some(p.clone()),
        (Ok(Some(p)), _) => {
            skipped.insert("priority".into(), format!("{p:?} is not a priority"));
            None
        }
        (Err(why), _) => {
            skipped.insert("priority".into(), why.clone());
            None
        }
        // No priority head: urgency may raise it.
        (Ok(None), false) if !settings.auto_route_disabled && routes_priority => {
            let by_urgency = match result.urgency.as_ref().map(|u| u.level.as_str()) {
                Some("critical") => Some("urgent"),
                Some("high") => Some("high"),
                _ => None,
            };
            by_urgency
                .filter(|u| rank(u) > rank(&priority))
                .map(str::to_string)
        }
        (Ok(None), _) => None,
    };
    if let Some(p) = wanted.filter(|p| *p != priority) {
        if previous.is_some() && rank(&p) < rank(&priority) {
            skipped.insert(
                "priority".into(),
                "a re-triage only raises the priority".into(),
            );
        } else if status == "new" {
            applied.insert("priority".into(), json!(p));
            new_priority = p;
        } else {
            skipped.insert(
                "priority".into(),
                "the ticket is being worked: priority is the agent's".into(),
            );
        }
    }

    // The tenant's own label sets: a confident answer is a `task:label` tag.
    let mut new_tags = tags.clone();
    let mut tagged = Vec::new();
    for task in result.labels.keys() {
        if ROUTING_TASKS.contains(&task.as_str()) {
            continue;
        }
        match decide(task) {
            Ok(Some(label)) => {
                let tag: String = format!("{task}:{}", label.trim())
                    .chars()
                    .take(50)
                    .collect();
                if !new_tags.contains(&tag) && new_tags.len() < 20 {
                    new_tags.push(tag.clone());
                    tagged.push(tag);
                }
            }
            Ok(None) => {}
            Err(why) => {
                skipped.insert(task.clone(), why);
            }
        }
    }
    if !tagged.is_empty() {
        applied.insert("tags".into(), json!(tagged));
    }

    let at = now();
    // A re-triage keeps what the earlier one set (it only fills fields
    // still empty), so the verdict covers both.
    let mut applied_all = previous
        .as_ref()
        .map(|(_, p)| p.applied.clone())
        .unwrap_or_default();
    let newly_applied = !applied.is_empty();
    if let (Some(Value::Array(old)), Some(Value::Array(new))) =
        (applied_all.get("tags").cloned(), applied.get_mut("tags"))
    {
        // Tags add up over re-triages.
        new.splice(0..0, old);
    }
    applied_all.extend(applied.clone());
    skipped.retain(|k, _| {
        !(applied_all.contains_key(k) || k == "team" && applied_all.contains_key("team_id"))
    });
    // Routed or not: tags from label sets do not take a ticket out of the
    // triage queue.
    let verdict = if applied_all.keys().all(|k| k == "tags") {
        "abstained"
    } else {
        "applied"
    };
    sqlx::query(
        "UPDATE tickets SET category = $1, team_id = $2, priority = $3, sla_due = $4, \
         triage_status = $5, updated_at = $6, tags = $9 WHERE tenant_id = $7 AND id = $8",
    )
    .bind(new_category.as_deref())
    .bind(new_team)
    .bind(&new_priority)
    .bind(created_at + sla_seconds(&new_priority))
    .bind(verdict)
    .bind(at)
    .bind(tenant)
    .bind(id)
    .bind(serde_json::to_string(&new_tags).map_err(|e| ApiError::Internal(e.into()))?)
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;

    let note_id = match note(result)
        .filter(|_| previous.is_none() || newly_applied || !result.suggestions.is_empty())
    {
        Some(body) => Some(
            sqlx::query(
                "INSERT INTO comments (tenant_id, ticket_id, author_id, body, public, created_at) \
                 VALUES ($1, $2, NULL, $3, 0, $4) RETURNING id",
            )
            .bind(tenant)
            .bind(id)
            .bind(body)
            .bind(at)
            .fetch_one(&mut **tx)
            .await
            .map_err(db_error)?
            .try_get::<i64, _>("id")
            .map_err(db_error)?,
        ),
        None => None,
    };
    let done = AppliedTriage {
        ticket_id: id,
        status: verdict.into(),
        applied: applied_all,
        skipped,
        note_id,
        replayed: false,
    };
    let result_json = serde_json::to_string(result).map_err(|e| ApiError::Internal(e.into()))?;
    let done_json = serde_json::to_string(&done).map_err(|e| ApiError::Internal(e.into()))?;
    // One row per ticket: the first triage inserts it, a later revision
    // replaces it; a revision that is not later changes nothing (a later
    // one landed first: the caller answers with it, as a replay).
    let stored = sqlx::query(
        "INSERT INTO predictions (tenant_id, ticket_id, status, result, applied, actor, \
         created_at, revision) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (tenant_id, ticket_id) DO UPDATE SET status = excluded.status, \
         result = excluded.result, applied = excluded.applied, actor = excluded.actor, \
         created_at = excluded.created_at, revision = excluded.revision \
         WHERE predictions.revision < excluded.revision",
    )
    .bind(tenant)
    .bind(id)
    .bind(verdict)
    .bind(result_json)
    .bind(done_json)
    .bind(actor)
    .bind(at)
    .bind(result.revision)
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    if stored.rows_affected() != 1 {
        return Err(ApiError::Conflict("a later triage landed first".into()));
    }
    let before = json!({ "category": category, "team_id": team_id, "priority": priority,
        "tags": tags });
    let after = json!({ "status": verdict, "applied": done.applied, "skipped": done.skipped });
    audit(
        &mut **tx,
        tenant,
        actor,
        "ticket.triage",
        &format!("ticket:{id}"),
        Some(&before),
        Some(&after),
    )
    .await
    .map_err(db_error)?;
    let labels: BTreeMap<&String, Value> = result
        .labels
        .iter()
        .map(|(k, v)| (k, json!({ "top": v.top, "confidence": v.confidence })))
        .collect();
    let data = json!({ "status": done.status, "applied": done.applied, "labels": labels });
    let event = |kind, data| super::events::Event::new(kind, tenant, id, &requester, false, data);
    let mut events = vec![event("ticket.triaged", data)];
    if let Some(tickets) = &result.incident {
        let data = json!({ "tickets": tickets, "size": tickets.len() });
        events.push(event("incident.detected", data));
    }
    let mut queued = Vec::new();
    for e in events {
        queued.push(
            super::webhooks::enqueue(&mut tx, e)
                .await
                .map_err(db_error)?,
        );
    }
    tx.commit().await.map_err(db_error)?;
    Ok((done, queued))
}

/// The internal note for the agent: suggested KB answers, and the likely
/// duplicate or incident, when there are any.
fn note(r: &TriageResult) -> Option<String> {
    let mut lines = Vec::new();
    if r.revision > 1 {
        let ids: Vec<String> = r.attachments.iter().map(|a| a.to_string()).collect();
        lines.push(format!(
            "Triaged again with the text read from attachment(s) {}.",
            ids.join(", ")
        ));
    }
    if !r.suggestions.is_empty() {
        lines.push("Suggested answers from the knowledge base:".to_string());
        for (i, s) in r.suggestions.iter().enumerate() {
            lines.push(format!(
                "{}. {} (article {}, score {:.2}): {}",
                i + 1,
                s.title,
                s.article_id,
                s.score,
                s.snippet
            ));
        }
    }
    if let Some(d) = &r.duplicate_of {
        lines.push(format!("Possible duplicate of ticket {d}."));
    }
    if let Some(i) = &r.incident {
        lines.push(format!(
            "Part of a possible incident: {} near-identical recent tickets ({}).",
            i.len(),
            i.join(", ")
        ));
    }
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// Marks a ticket's triage as failed (its job was dead-lettered).
pub async fn mark_failed(db: &Db, tenant: &str, ticket: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE tickets SET triage_status = 'failed' WHERE tenant_id = $1 AND id = $2 \
         AND triage_status = 'pending'",
    )
    .bind(tenant)
    .bind(ticket)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// In-process: the AI service of `helpdesk serve` applies results directly.
impl crate::triage::CoreClient for CoreState {
    fn apply_triage<'a>(
        &'a self,
        tenant: &'a str,
        ticket_id: i64,
        result: &'a TriageResult,
    ) -> crate::triage::BoxFut<'a, Result<AppliedTriage, crate::triage::ClientError>> {
        Box::pin(async move {
            check_result(result)?;
            Ok(apply(self, tenant, ticket_id, result, "ai:in-process").await?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triage::{LabelPrediction, Suggestion};

    #[test]
    fn the_note_lists_suggestions_and_duplicates_and_is_absent_without_them() {
        assert_eq!(note(&TriageResult::default()), None);
        let r = TriageResult {
            suggestions: vec![Suggestion {
                article_id: "vpn".into(),
                title: "VPN setup".into(),
                snippet: "Install **GlobalProtect**".into(),
                score: 0.61,
            }],
            duplicate_of: Some("41".into()),
            ..TriageResult::default()
        };
        let n = note(&r).unwrap();
        assert!(
            n.contains("1. VPN setup (article vpn, score 0.61): Install **GlobalProtect**"),
            "{n}"
        );
        assert!(n.contains("duplicate of ticket 41"), "{n}");
    }

    #[test]
    fn settings_reject_a_threshold_outside_zero_to_one() {
        let pipelines = crate::triage::pipeline::TriagePipelines::builtin();
        for bad in [-0.1, 1.5, f32::NAN] {
            let s = RoutingSettings {
                route_threshold: Some(bad),
                ..Default::default()
            };
            assert!(s.check(&pipelines).is_err(), "{bad}");
            let per_task = RoutingSettings {
                thresholds: [("team".to_string(), bad)].into(),
                ..Default::default()
            };
            assert!(per_task.check(&pipelines).is_err(), "{bad}");
        }
        assert!(RoutingSettings::default().check(&pipelines).is_ok());
        // A label set's threshold needs the label set; a pipeline must exist.
        let mut s = RoutingSettings {
            thresholds: [("product".to_string(), 0.5)].into(),
            ..Default::default()
        };
        assert!(s.check(&pipelines).is_err());
        s.label_sets = vec!["product".into()];
        assert!(s.check(&pipelines).is_ok());
        s.pipeline = Some("assist".into());
        assert!(s.check(&pipelines).is_ok());
        s.pipeline = Some("nope".into());
        assert!(s.check(&pipelines).is_err());
        let bad = TriageResult {
            labels: [(
                "team".to_string(),
                LabelPrediction {
                    label: None,
                    top: "x".into(),
                    confidence: 1.5,
                    threshold: 0.5,
                    version: 1,
                    alternatives: vec![],
                    evidence: vec![],
                },
            )]
            .into(),
            ..TriageResult::default()
        };
        assert!(check_result(&bad).is_err());
    }
}
