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
use super::AiState;
use crate::error::{ApiError, ApiJson};
use crate::vector::{ChunkPayload, IndexPoint, SearchFilter, Source, TicketInfo, Visibility};

pub fn router() -> Router<AiState> {
    Router::new()
        .route("/v1/tickets/index", post(index_ticket))
        .route("/v1/tickets/similar", post(similar))
}

/// An incident: at least `INCIDENT_MIN_TICKETS` tickets of a tenant within
/// `INCIDENT_WINDOW_S`, each at cosine ≥ `INCIDENT_SIMILARITY` to the newest
/// ("the VPN is down for everyone").
pub const INCIDENT_MIN_TICKETS: usize = 3;
pub const INCIDENT_WINDOW_S: i64 = 30 * 60;
pub const INCIDENT_SIMILARITY: f32 = 0.75;

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

/// Above this cosine, within `DUPLICATE_WINDOW_S`, an earlier ticket is
/// flagged as a probable duplicate.
pub const DUPLICATE_THRESHOLD: f32 = 0.9;
pub const DUPLICATE_WINDOW_S: i64 = 72 * 3600;

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
    let incident = tokio::task::spawn_blocking(
        move || -> Result<Option<Incident>, crate::vector::IndexError> {
            kb.index.upsert(std::slice::from_ref(&point))?;
            incident_for(kb.index.as_ref(), &tenant_id, &point, at)
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

/// The cluster the new ticket completes: the tenant's tickets of the last
/// `INCIDENT_WINDOW_S` at cosine ≥ `INCIDENT_SIMILARITY` to it. (A star
/// around the newest ticket; checking every pair is left for later.)
fn incident_for(
    index: &dyn crate::vector::VectorIndex,
    tenant: &str,
    point: &IndexPoint,
    at: i64,
) -> Result<Option<Incident>, crate::vector::IndexError> {
    let recent = SearchFilter {
        source: Some(Source::Ticket),
        updated_since: Some(at - INCIDENT_WINDOW_S),
        exclude_doc: Some(point.payload.doc_id.clone()),
        ..SearchFilter::tenant(tenant)
    };
    let mut cluster = vec![point.payload.doc_id.clone()];
    cluster.extend(
        index
            .search(&point.vector, &recent, 50)?
            .into_iter()
            .filter(|h| h.score >= INCIDENT_SIMILARITY && h.payload.updated_at <= at)
            .map(|h| h.payload.doc_id),
    );
    Ok((cluster.len() >= INCIDENT_MIN_TICKETS).then_some(Incident {
        tickets: cluster,
        window_minutes: INCIDENT_WINDOW_S / 60,
        min_similarity: INCIDENT_SIMILARITY,
    }))
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
    /// Very close (≥ `DUPLICATE_THRESHOLD`) and within the window.
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
                duplicate: h.score >= DUPLICATE_THRESHOLD
                    && (at - p.updated_at).abs() <= DUPLICATE_WINDOW_S,
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
