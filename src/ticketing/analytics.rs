//! `GET /api/v1/analytics/…` (staff): ticket volume over time by category,
//! team, channel, priority or status; the sentiment trend; SLA breaches;
//! triage coverage (auto-routed against abstained) and accuracy (what the
//! AI predicted against the final labels after agents' corrections).
//!
//! Times are Unix seconds; buckets start at midnight UTC (day) or on the
//! Thursday epoch week (week). Windows default to the last 30 days and
//! span at most 366 days.

use std::collections::BTreeMap;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::auth::Principal;
use super::db::{db_error, now};
use super::CoreState;
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::triage::TriageResult;

const DAY: i64 = 86_400;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// day (default) or week.
    pub interval: Option<String>,
    /// volume only: category, team, channel, priority or status (default channel).
    pub by: Option<String>,
}

/// `since` and `until` (Unix seconds), checked, with their defaults: the
/// last 30 days, `until` exclusive and by default just after this second.
fn span(since: Option<i64>, until: Option<i64>) -> Result<(i64, i64), ApiError> {
    let until = until.unwrap_or_else(|| now() + 1);
    let since = since.unwrap_or(until.saturating_sub(30 * DAY));
    if since >= until || until.saturating_sub(since) > 366 * DAY {
        return Err(ApiError::validation(
            "since must be before until, at most 366 days apart",
        ));
    }
    Ok((since, until))
}

impl Window {
    fn resolve(&self) -> Result<(i64, i64, i64), ApiError> {
        let (since, until) = span(self.since, self.until)?;
        let step = match self.interval.as_deref().unwrap_or("day") {
            "day" => DAY,
            "week" => 7 * DAY,
            _ => return Err(ApiError::validation("interval must be day or week")),
        };
        Ok((since, until, step))
    }
}

#[derive(Debug, Serialize)]
pub struct Point {
    /// Start of the bucket (Unix seconds).
    pub bucket: i64,
    pub key: String,
    pub count: i64,
}

#[derive(Debug, Serialize)]
pub struct Series {
    pub since: i64,
    pub until: i64,
    pub interval_s: i64,
    pub points: Vec<Point>,
}

/// `GET /api/v1/analytics/volume?by=…`: tickets created per bucket and key.
pub async fn volume(
    State(state): State<CoreState>,
    p: Principal,
    ApiQuery(w): ApiQuery<Window>,
) -> Result<ApiJson<Series>, ApiError> {
    p.require_staff()?;
    let (since, until, step) = w.resolve()?;
    // The column comes from this fixed list, never from the request text.
    let (column, join) = match w.by.as_deref().unwrap_or("channel") {
        "category" => ("COALESCE(t.category, '(none)')", ""),
        "team" => (
            "COALESCE(m.name, '(none)')",
            " LEFT JOIN teams m ON m.id = t.team_id AND m.tenant_id = t.tenant_id",
        ),
        "channel" => ("t.channel", ""),
        "priority" => ("t.priority", ""),
        "status" => ("t.status", ""),
        _ => {
            return Err(ApiError::validation(
                "by must be category, team, channel, priority or status",
            ))
        }
    };
    let rows = sqlx::query(&format!(
        "SELECT (t.created_at / $1) * $1 AS bucket, {column} AS label, COUNT(*) AS n \
         FROM tickets t{join} WHERE t.tenant_id = $2 AND t.created_at >= $3 AND t.created_at < $4 \
         GROUP BY bucket, label ORDER BY bucket, label"
    ))
    .bind(step)
    .bind(&p.tenant_id)
    .bind(since)
    .bind(until)
    .fetch_all(&state.db.pool)
    .await
    .map_err(db_error)?;
    let points = rows
        .iter()
        .map(|r| {
            Ok(Point {
                bucket: r.try_get("bucket")?,
                key: r.try_get("label")?,
                count: r.try_get("n")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(db_error)?;
    Ok(ApiJson(Series {
        since,
        until,
        interval_s: step,
        points,
    }))
}

/// The tenant's triage results in the window, with the ticket's final
/// routing (category, team name, priority).
async fn triaged(
    state: &CoreState,
    tenant: &str,
    since: i64,
    until: i64,
) -> Result<
    Vec<(
        i64,
        String,
        TriageResult,
        BTreeMap<&'static str, Option<String>>,
    )>,
    ApiError,
> {
    let rows = sqlx::query(
        "SELECT p.created_at, p.status, p.result, t.category, t.priority, m.name AS team \
         FROM predictions p JOIN tickets t ON t.id = p.ticket_id AND t.tenant_id = p.tenant_id \
         LEFT JOIN teams m ON m.id = t.team_id AND m.tenant_id = t.tenant_id \
         WHERE p.tenant_id = $1 AND p.created_at >= $2 AND p.created_at < $3 ORDER BY p.id",
    )
    .bind(tenant)
    .bind(since)
    .bind(until)
    .fetch_all(&state.db.pool)
    .await
    .map_err(db_error)?;
    rows.iter()
        .map(|r| {
            let result: String = r.try_get("result").map_err(db_error)?;
            let result: TriageResult = serde_json::from_str(&result).unwrap_or_default();
            let finals = BTreeMap::from([
                ("category", r.try_get("category").map_err(db_error)?),
                ("team", r.try_get("team").map_err(db_error)?),
                (
                    "priority",
                    Some(r.try_get::<String, _>("priority").map_err(db_error)?),
                ),
            ]);
            Ok((
                r.try_get("created_at").map_err(db_error)?,
                r.try_get("status").map_err(db_error)?,
                result,
                finals,
            ))
        })
        .collect()
}

/// `GET /api/v1/analytics/sentiment`: triaged tickets per bucket and
/// sentiment (negative, neutral, positive).
pub async fn sentiment(
    State(state): State<CoreState>,
    p: Principal,
    ApiQuery(w): ApiQuery<Window>,
) -> Result<ApiJson<Series>, ApiError> {
    p.require_staff()?;
    let (since, until, step) = w.resolve()?;
    let mut counts: BTreeMap<(i64, String), i64> = BTreeMap::new();
    for (at, _, r, _) in triaged(&state, &p.tenant_id, since, until).await? {
        if let Some(s) = r.sentiment {
            *counts.entry(((at / step) * step, s.label)).or_default() += 1;
        }
    }
    let points = counts
        .into_iter()
        .map(|((bucket, key), count)| Point { bucket, key, count })
        .collect();
    Ok(ApiJson(Series {
        since,
        until,
        interval_s: step,
        points,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaWindow {
    /// Tickets solved from this time (default: 30 days before `until`) ...
    pub since: Option<i64>,
    /// ... until this one (exclusive; default: now).
    pub until: Option<i64>,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Solved {
    /// Solved (or closed) by their SLA due time ...
    pub on_time: i64,
    /// ... and after it.
    pub late: i64,
}

#[derive(Debug, Serialize)]
pub struct Sla {
    pub at: i64,
    /// Open tickets past their SLA due time, by priority.
    pub breached_open: BTreeMap<String, i64>,
    /// Open tickets due within the next 24 hours, by priority.
    pub due_within_24h: BTreeMap<String, i64>,
    /// The window of `solved`.
    pub since: i64,
    pub until: i64,
    /// Tickets solved within the window, on time or late, by priority (a
    /// reopened ticket counts by its last resolution).
    pub solved: BTreeMap<String, Solved>,
    /// Late over all solved in the window (`null` when none was solved).
    pub breach_rate: Option<f64>,
}

/// `GET /api/v1/analytics/sla[?since=&until=]`.
pub async fn sla(
    State(state): State<CoreState>,
    p: Principal,
    ApiQuery(w): ApiQuery<SlaWindow>,
) -> Result<ApiJson<Sla>, ApiError> {
    p.require_staff()?;
    let (since, until) = span(w.since, w.until)?;
    let at = now();
    let count = |upper: i64, lower: Option<i64>| {
        let db = state.db.clone();
        let tenant = p.tenant_id.clone();
        async move {
            let rows = sqlx::query(
                "SELECT priority, COUNT(*) AS n FROM tickets WHERE tenant_id = $1 \
                 AND status NOT IN ('solved', 'closed') AND sla_due < $2 AND sla_due >= $3 \
                 GROUP BY priority",
            )
            .bind(tenant)
            .bind(upper)
            .bind(lower.unwrap_or(i64::MIN))
            .fetch_all(&db.pool)
            .await
            .map_err(db_error)?;
            rows.iter()
                .map(|r| Ok((r.try_get("priority")?, r.try_get("n")?)))
                .collect::<Result<BTreeMap<String, i64>, sqlx::Error>>()
                .map_err(db_error)
        }
    };
    let rows = sqlx::query(
        "SELECT priority, COUNT(*) AS n, \
         SUM(CASE WHEN solved_at > sla_due THEN 1 ELSE 0 END) AS late FROM tickets \
         WHERE tenant_id = $1 AND solved_at >= $2 AND solved_at < $3 AND sla_due IS NOT NULL \
         GROUP BY priority",
    )
    .bind(&p.tenant_id)
    .bind(since)
    .bind(until)
    .fetch_all(&state.db.pool)
    .await
    .map_err(db_error)?;
    let mut solved = BTreeMap::new();
    for r in &rows {
        let n: i64 = r.try_get("n").map_err(db_error)?;
        let late: i64 = r.try_get("late").map_err(db_error)?;
        let priority: String = r.try_get("priority").map_err(db_error)?;
        solved.insert(
            priority,
            Solved {
                on_time: n - late,
                late,
            },
        );
    }
    let (all, late) = solved
        .values()
        .fold((0, 0), |(a, l), s| (a + s.on_time + s.late, l + s.late));
    Ok(ApiJson(Sla {
        at,
        breached_open: count(at, None).await?,
        due_within_24h: count(at + DAY, Some(at)).await?,
        since,
        until,
        solved,
        breach_rate: (all > 0).then(|| late as f64 / all as f64),
    }))
}

#[derive(Debug, Default, Serialize)]
pub struct TaskAccuracy {
    /// Predictions whose ticket has a final value for the task.
    pub compared: i64,
    /// …of which the final value is the predicted top label.
    pub correct: i64,
    pub accuracy: Option<f64>,
    /// The same over the predictions that were applied (confident ones).
    pub applied_compared: i64,
    pub applied_correct: i64,
}

#[derive(Debug, Serialize)]
pub struct TriageStats {
    pub since: i64,
    pub until: i64,
    /// Tickets created in the window by triage status.
    pub tickets: BTreeMap<String, i64>,
    /// Auto-routed share of the triaged tickets (applied / (applied + abstained)).
    pub coverage: Option<f64>,
    /// Per routing task: predicted top label against the ticket's final one.
    pub accuracy: BTreeMap<String, TaskAccuracy>,
}

/// `GET /api/v1/analytics/triage`.
pub async fn triage(
    State(state): State<CoreState>,
    p: Principal,
    ApiQuery(w): ApiQuery<Window>,
) -> Result<ApiJson<TriageStats>, ApiError> {
    p.require_staff()?;
    let (since, until, _) = w.resolve()?;
    let rows = sqlx::query(
        "SELECT triage_status, COUNT(*) AS n FROM tickets WHERE tenant_id = $1 \
         AND created_at >= $2 AND created_at < $3 GROUP BY triage_status",
    )
    .bind(&p.tenant_id)
    .bind(since)
    .bind(until)
    .fetch_all(&state.db.pool)
    .await
    .map_err(db_error)?;
    let tickets: BTreeMap<String, i64> = rows
        .iter()
        .map(|r| Ok((r.try_get("triage_status")?, r.try_get("n")?)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(db_error)?;
    let applied = tickets.get("applied").copied().unwrap_or(0);
    let abstained = tickets.get("abstained").copied().unwrap_or(0);
    let coverage = (applied + abstained > 0).then(|| applied as f64 / (applied + abstained) as f64);
    let mut accuracy: BTreeMap<String, TaskAccuracy> = BTreeMap::new();
    for (_, status, r, finals) in triaged(&state, &p.tenant_id, since, until).await? {
        for (task, l) in &r.labels {
            let Some(Some(final_label)) = finals.get(task.as_str()) else {
                continue;
            };
            let a = accuracy.entry(task.clone()).or_default();
            let right = i64::from(*final_label == l.top);
            a.compared += 1;
            a.correct += right;
            if status == "applied" {
                a.applied_compared += 1;
                a.applied_correct += right;
            }
        }
    }
    for a in accuracy.values_mut() {
        a.accuracy = (a.compared > 0).then(|| a.correct as f64 / a.compared as f64);
    }
    Ok(ApiJson(TriageStats {
        since,
        until,
        tickets,
        coverage,
        accuracy,
    }))
}
