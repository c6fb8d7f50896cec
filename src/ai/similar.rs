//! Similar tickets: tickets are indexed beside the KB (source `ticket`), so
//! a new ticket gets its nearest earlier tickets — with their resolution
//! when solved — and a duplicate flag when one is very close and recent.
//!
//! `POST /v1/tickets/index` (upsert by id), `POST /v1/tickets/similar`.
//! Until the ticketing core exists, its callers send the tickets.

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};

use super::embed::embed_texts;
use super::tenant::Tenant;
use super::tenant_settings::TenantSettings;
use super::AiState;
use crate::error::{ApiError, ApiJson};
use crate::vector::{ChunkPayload, IndexPoint, SearchFilter, Source, TicketInfo, Visibility};

pub fn router() -> Router<AiState> {
    Router::new()
        .route("/v1/tickets/index", post(index_ticket))
        .route("/v1/tickets/similar", post(similar))
}

#[derive(Debug, Serialize)]
pub struct Incident {
    /// The tickets of the cluster, the new one first.
    pub tickets: Vec<String>,
    pub window_minutes: i64,
    pub min_similarity: f32,
}

#[derive(Debug, Serialize)]
pub struct IndexResponse {
    pub id: String,
    /// Set when this ticket completes a cluster of near-identical recent tickets.
    pub incident: Option<Incident>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketDoc {
    pub id: String,
    pub subject: String,
    #[serde(default)]
    pub body: String,
    #[serde(default = "open")]
    pub status: String,
    #[serde(default)]
    pub resolution: Option<String>,
    /// Unix seconds; default: now.
    #[serde(default)]
    pub created_at: Option<i64>,
    #[serde(default = "english")]
    pub language: String,
}

fn open() -> String {
    "open".into()
}
fn english() -> String {
    "en".into()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn text(subject: &str, body: &str) -> String {
    format!("{}\n{}", subject.trim(), body.trim())
        .trim()
        .to_string()
}

async fn index_ticket(
    State(state): State<AiState>,
    tenant: Tenant,
    ApiJson(t): ApiJson<TicketDoc>,
) -> Result<ApiJson<IndexResponse>, ApiError> {
    let id_ok = !t.id.is_empty()
        && t.id.len() <= 200
        && t.id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if !id_ok {
        return Err(ApiError::validation(
            "ticket id must be 1-200 letters, digits, '-', '_', '.' or ':'",
        ));
    }
    let content = text(&t.subject, &t.body);
    if content.is_empty() {
        return Err(ApiError::validation("subject and body are empty"));
    }
    let kb = state.kb()?.clone();
    let (mut v, _) = embed_texts(&state, vec![content.clone()], true, true).await?;
    let point = IndexPoint {
        vector: v.pop().unwrap_or_default(),
        payload: ChunkPayload {
            tenant: tenant.0.clone(),
            source: Source::Ticket,
            doc_id: t.id.clone(),
            chunk: 0,
            title: t.subject.trim().to_string(),
            text: content,
            language: t.language,
            visibility: Visibility::Internal,
            tags: Vec::new(),
            updated_at: t.created_at.unwrap_or_else(now),
            hash: String::new(),
            ticket: Some(TicketInfo {
                status: t.status,
                resolution: t.resolution.filter(|r| !r.trim().is_empty()),
            }),
        },
    };
    let (id, at) = (t.id.clone(), point.payload.updated_at);
    let tenant_id = tenant.0.clone();
    let settings = state.tenant_settings(&tenant.0)?;
    let incident = tokio::task::spawn_blocking(
        move || -> Result<Option<Incident>, crate::vector::IndexError> {
            kb.index.upsert(std::slice::from_ref(&point))?;
            incident_for(kb.index.as_ref(), &tenant_id, &point, at, &settings)
        },
    )
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
    .map_err(|e| ApiError::Internal(e.into()))?;
    if let Some(i) = &incident {
        tracing::warn!(tenant = %tenant.0, tickets = ?i.tickets, "incident: near-identical tickets");
    }
    Ok(ApiJson(IndexResponse { id, incident }))
}

/// The incident the new ticket completes, under the tenant's settings: at
/// least `incident_min_tickets` tickets of the last `incident_window_minutes`
/// (the new one among them) that are mutual near-neighbours, every pair at
/// cosine ≥ `incident_similarity`. The candidates are the recent tickets
/// close to the new one, nearest first; each joins the cluster when it is
/// close to every member already in (a greedy clique: a ticket that is near
/// the new one but far from the others does not make an incident).
pub(crate) fn incident_for(
    index: &dyn crate::vector::VectorIndex,
    tenant: &str,
    point: &IndexPoint,
    at: i64,
    settings: &TenantSettings,
) -> Result<Option<Incident>, crate::vector::IndexError> {
    let window_s = settings.incident_window_minutes * 60;
    let sim = settings.incident_similarity;
    let recent = SearchFilter {
        source: Some(Source::Ticket),
        updated_since: Some(at - window_s),
        exclude_doc: Some(point.payload.doc_id.clone()),
        ..SearchFilter::tenant(tenant)
    };
    let candidates: Vec<_> = index
        .search(&point.vector, &recent, 50)?
        .into_iter()
        .filter(|h| h.score >= sim && h.payload.updated_at <= at)
        .collect();
    if candidates.len() + 1 < settings.incident_min_tickets {
        return Ok(None);
    }
    let ids: Vec<u64> = candidates.iter().map(|h| h.id).collect();
    let stored: std::collections::HashMap<u64, Vec<f32>> =
        index.vectors(tenant, &ids)?.into_iter().collect();
    let cos = |a: &[f32], b: &[f32]| -> f32 { a.iter().zip(b).map(|(x, y)| x * y).sum() };
    let mut members: Vec<&[f32]> = Vec::new();
    let mut tickets = vec![point.payload.doc_id.clone()];
    for h in &candidates {
        let Some(v) = stored.get(&h.id) else { continue };
        if members.iter().all(|m| cos(m, v) >= sim) {
            members.push(v);
            tickets.push(h.payload.doc_id.clone());
        }
    }
    Ok(
        (tickets.len() >= settings.incident_min_tickets).then_some(Incident {
            tickets,
            window_minutes: settings.incident_window_minutes,
            min_similarity: sim,
        }),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimilarRequest {
    pub subject: String,
    #[serde(default)]
    pub body: String,
    /// The asking ticket itself, when it is already indexed.
    #[serde(default)]
    pub exclude_id: Option<String>,
    #[serde(default = "five")]
    pub k: usize,
    /// Unix seconds of the asking ticket (default: now), for the duplicate window.
    #[serde(default)]
    pub created_at: Option<i64>,
}

fn five() -> usize {
    5
}

#[derive(Debug, Serialize)]
pub struct SimilarTicket {
    pub id: String,
    pub subject: String,
    pub score: f32,
    pub status: Option<String>,
    pub resolution: Option<String>,
    pub created_at: i64,
    /// Very close (≥ the tenant's `duplicate_threshold`) and within its window.
    pub duplicate: bool,
}

#[derive(Debug, Serialize)]
pub struct SimilarResponse {
    pub results: Vec<SimilarTicket>,
    /// The most likely duplicate, if any.
    pub duplicate_of: Option<String>,
}

async fn similar(
    State(state): State<AiState>,
    tenant: Tenant,
    ApiJson(req): ApiJson<SimilarRequest>,
) -> Result<ApiJson<SimilarResponse>, ApiError> {
    let content = text(&req.subject, &req.body);
    if content.is_empty() {
        return Err(ApiError::validation("subject and body are empty"));
    }
    if !(1..=50).contains(&req.k) {
        return Err(ApiError::validation("k must be within 1 and 50"));
    }
    let kb = state.kb()?.clone();
    let settings = state.tenant_settings(&tenant.0)?;
    let (mut v, _) = embed_texts(&state, vec![content], true, true).await?;
    let vector = v.pop().unwrap_or_default();
    let filter = SearchFilter {
        source: Some(Source::Ticket),
        exclude_doc: req.exclude_id.clone(),
        ..SearchFilter::tenant(&tenant.0)
    };
    let k = req.k;
    let hits = tokio::task::spawn_blocking(move || kb.index.search(&vector, &filter, k))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Internal(e.into()))?;
    let at = req.created_at.unwrap_or_else(now);
    let results: Vec<SimilarTicket> = hits
        .into_iter()
        .map(|h| {
            let p = h.payload;
            SimilarTicket {
                duplicate: h.score >= settings.duplicate_threshold
                    && (at - p.updated_at).abs() <= settings.duplicate_window_hours * 3600,
                id: p.doc_id,
                subject: p.title,
                score: h.score,
                status: p.ticket.as_ref().map(|t| t.status.clone()),
                resolution: p.ticket.and_then(|t| t.resolution),
                created_at: p.updated_at,
            }
        })
        .collect();
    let duplicate_of = results.iter().find(|r| r.duplicate).map(|r| r.id.clone());
    Ok(ApiJson(SimilarResponse {
        results,
        duplicate_of,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::exact::ExactIndex;
    use crate::vector::VectorIndex;

    fn ticket(tenant: &str, id: &str, degrees: f32, at: i64) -> IndexPoint {
        let r = degrees.to_radians();
        IndexPoint {
            vector: vec![r.cos(), r.sin(), 0.0],
            payload: ChunkPayload {
                tenant: tenant.into(),
                source: Source::Ticket,
                doc_id: id.into(),
                chunk: 0,
                title: id.into(),
                text: id.into(),
                language: "en".into(),
                visibility: Visibility::Internal,
                tags: vec![],
                updated_at: at,
                hash: String::new(),
                ticket: None,
            },
        }
    }

    /// `new` is indexed last at time 1000; the others before it.
    fn incident(
        others: &[IndexPoint],
        new: &IndexPoint,
        s: &TenantSettings,
    ) -> Option<Vec<String>> {
        let index = ExactIndex::new(3);
        index.upsert(others).unwrap();
        index.upsert(std::slice::from_ref(new)).unwrap();
        incident_for(&index, "acme", new, 1000, s)
            .unwrap()
            .map(|i| i.tickets)
    }

    #[test]
    fn an_incident_needs_mutual_near_neighbours_within_the_window() {
        let s = TenantSettings::default(); // 3 tickets, 30 minutes, cosine 0.75
        let new = ticket("acme", "N", 0.0, 1000);
        // Both 20° from the new one and 40° apart (cosine 0.77): mutual.
        let mutual = [
            ticket("acme", "A", 20.0, 900),
            ticket("acme", "B", -20.0, 950),
        ];
        let got = incident(&mutual, &new, &s).expect("an incident");
        assert_eq!(got[0], "N");
        assert_eq!(got.len(), 3);

        // Both 40° from the new one (cosine 0.77) but 80° apart: a star, not a cluster.
        let star = [
            ticket("acme", "A", 40.0, 900),
            ticket("acme", "B", -40.0, 950),
        ];
        assert_eq!(incident(&star, &new, &s), None);

        // One of them older than the window, or another tenant's: no incident.
        let old = [
            ticket("acme", "A", 20.0, 1000 - 31 * 60),
            ticket("acme", "B", -20.0, 950),
        ];
        assert_eq!(incident(&old, &new, &s), None);
        let foreign = [
            ticket("globex", "A", 20.0, 900),
            ticket("acme", "B", -20.0, 950),
        ];
        assert_eq!(incident(&foreign, &new, &s), None);

        // The tenant's settings decide: two tickets suffice when it says so.
        let two = TenantSettings {
            incident_min_tickets: 2,
            ..TenantSettings::default()
        };
        assert_eq!(incident(&star[..1], &new, &two).map(|t| t.len()), Some(2));
    }
}
