//! `POST /v1/triage`: the steps of the tenant's triage pipeline
//! (`pipelines/triage.toml`) for one ticket — every routing head the tenant
//! has (category, team, priority) and its own label sets, sentiment,
//! urgency, KB suggestions and similar earlier tickets — on one encoder
//! pass; the ticket is indexed for later similarity and incident detection. With `callback` (a `service`
//! key only: the worker's), the result is delivered to the core before the
//! answer, which is what lets the worker complete its job.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;

use super::embed::embed_for_heads;
use super::tenant::Tenant;
use super::urgency;
use super::AiState;
use crate::error::{ApiError, ApiJson};
use crate::ml::store::StoreError;
use crate::triage::{
    AiClient, Alternative, BoxFut, ClientError, EvidenceItem, LabelPrediction, SentimentReading,
    SimilarTicket, Suggestion, TriageRequest, TriageResponse, TriageResult, UrgencyReading,
};
use crate::vector::{ChunkPayload, IndexPoint, SearchFilter, Source, TicketInfo, Visibility};

pub use crate::triage::pipeline::ROUTING_TASKS;
/// A tenant's own label sets read by one triage, at most.
const MAX_LABEL_SETS: usize = 10;
/// Characters of attachment text a triage reads at most (all attachments).
const MAX_ATTACHMENT_CHARS: usize = 4000;

pub fn router() -> Router<AiState> {
    Router::new().route("/v1/triage", post(triage))
}

async fn triage(
    State(state): State<AiState>,
    tenant: Tenant,
    headers: HeaderMap,
    ApiJson(req): ApiJson<TriageRequest>,
) -> Result<ApiJson<TriageResponse>, ApiError> {
    if req.callback {
        // Only the worker's service key may have the AI write into the core.
        let service = match state.core() {
            Some(core) => crate::ticketing::auth::principal_of(core, &headers)
                .await?
                .is_some_and(|p| p.scopes.iter().any(|s| s == "service")),
            None => false,
        };
        if !service {
            return Err(ApiError::Forbidden(
                "callback needs the worker's service key".into(),
            ));
        }
    }
    Ok(ApiJson(run(&state, &tenant.0, req).await?))
}

/// A head of the tenant, `None` when it has none for `task`.
fn head(
    state: &AiState,
    tenant: &str,
    task: &str,
) -> Result<Option<std::sync::Arc<crate::ml::model::Classifier>>, ApiError> {
    match state.heads.active_text(tenant, task) {
        Ok(h) => Ok(Some(h)),
        // An image head named as a label set reads attachments, not text.
        Err(StoreError::NoModel { .. } | StoreError::Modality { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A tenant's own label sets: task names, not the routing heads or
/// sentiment (read anyway), each once, a few.
pub fn check_label_sets(sets: &[String]) -> Result<(), ApiError> {
    if sets.len() > MAX_LABEL_SETS {
        return Err(ApiError::validation(format!(
            "at most {MAX_LABEL_SETS} label sets"
        )));
    }
    for (i, set) in sets.iter().enumerate() {
        crate::ml::store::check_name("label set", set)
            .map_err(|e| ApiError::validation(e.to_string()))?;
        if ROUTING_TASKS.contains(&set.as_str()) || set == "sentiment" || sets[..i].contains(set) {
            return Err(ApiError::validation(format!(
                "label set {set:?}: the routing heads and sentiment are read by the pipeline; \
                 each label set once"
            )));
        }
    }
    Ok(())
}

/// Triage one ticket of `tenant` (and deliver it to the core when asked).
pub async fn run(
    state: &AiState,
    tenant: &str,
    req: TriageRequest,
) -> Result<TriageResponse, ApiError> {
    let ticket_text = format!("{}\n{}", req.subject.trim(), req.body.trim())
        .trim()
        .to_string();
    if ticket_text.is_empty() {
        return Err(ApiError::validation("subject and body are empty"));
    }
    if req.ticket_id <= 0 {
        return Err(ApiError::validation("ticket_id must be positive"));
    }
    if req.revision < 1 {
        return Err(ApiError::validation("revision must be at least 1"));
    }
    if req.attachment_text.len() > 20 || req.attachments.len() > 20 {
        return Err(ApiError::validation("at most 20 attachments' text"));
    }
    let pipeline = state
        .pipelines
        .get(req.pipeline.as_deref())
        .ok_or_else(|| {
            ApiError::validation(format!(
                "no triage pipeline {:?}; there are {}",
                req.pipeline.as_deref().unwrap_or_default(),
                state.pipelines.names().join(", ")
            ))
        })?
        .clone();
    check_label_sets(&req.label_sets)?;
    // What the heads and the KB search read: the ticket, then its
    // attachments' text (the error dialog in a screenshot), capped so a
    // scanned manual does not drown the ticket.
    let mut text = ticket_text.clone();
    let mut budget = MAX_ATTACHMENT_CHARS;
    let read = if pipeline.attachment_text {
        &req.attachment_text[..]
    } else {
        &[]
    };
    for t in read {
        let t: String = t.trim().chars().take(budget).collect();
        budget -= t.chars().count();
        if !t.is_empty() {
            text.push('\n');
            text.push_str(&t);
        }
    }
    let pii = crate::triage::TicketPii {
        subject: crate::vision::pii::scan(&req.subject).findings,
        body: crate::vision::pii::scan(&req.body).findings,
    };
    // The pipeline's routing heads and the tenant's own label sets, where
    // the tenant has trained them.
    let mut heads = Vec::new();
    for task in pipeline.routing.iter().chain(&req.label_sets) {
        if let Some(h) = head(state, tenant, task)? {
            heads.push((task.clone(), h));
        }
    }
    let sentiment_head = head(state, tenant, "sentiment")?;
    let kb = state.kb()?.clone();
    let settings = state.tenant_settings(tenant)?;
    // The one encoder pass every answer below reads.
    let inputs = embed_for_heads(
        state,
        vec![text.clone()],
        heads
            .iter()
            .map(|(_, h)| &**h)
            .chain(sentiment_head.as_deref()),
    )
    .await?;
    let vector = inputs.base.first().cloned().unwrap_or_default();

    let labels = heads
        .iter()
        .map(|(task, h)| {
            let p = h.predict(inputs.for_head(0, h), &text);
            let l = LabelPrediction {
                label: p.label,
                top: p.top,
                confidence: p.confidence,
                threshold: h.card.threshold,
                version: h.card.version,
                alternatives: p
                    .probabilities
                    .iter()
                    .take(3)
                    .map(|s| Alternative {
                        label: s.label.clone(),
                        probability: s.probability,
                    })
                    .collect(),
                evidence: p
                    .evidence
                    .iter()
                    .take(3)
                    .map(|e| EvidenceItem {
                        text: e.text.clone(),
                        label: e.label.clone(),
                        similarity: e.similarity,
                    })
                    .collect(),
            };
            (task.clone(), l)
        })
        .collect();
    // Urgency reads the sentiment even where the pipeline does not report it.
    let sentiment = sentiment_head.map(|h| h.three_way(&h.predict(inputs.for_head(0, &h), &text)));
    let negative = sentiment.as_ref().and_then(|s| {
        s.scores
            .iter()
            .find(|x| x.label == "negative")
            .map(|x| x.probability)
    });
    let u = urgency::assess(
        &text,
        urgency::Context {
            negative_sentiment: negative,
            ..Default::default()
        },
    );
    let urgency = pipeline.urgency.then(|| UrgencyReading {
        level: serde_json::to_value(u.level)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        points: u.points,
        reasons: u.reasons,
    });

    // KB suggestions and similar tickets from the same vector; then the
    // ticket joins the index for the tickets after it.
    let at = req.created_at.unwrap_or_else(crate::ticketing::db::now);
    let doc_id = req.ticket_id.to_string();
    let point = IndexPoint {
        vector,
        payload: ChunkPayload {
            tenant: tenant.to_string(),
            source: Source::Ticket,
            doc_id: doc_id.clone(),
            chunk: 0,
            title: req.subject.trim().to_string(),
            // The ticket's own words: attachment text is read, not indexed.
            text: ticket_text.clone(),
            language: "en".into(),
            visibility: Visibility::Internal,
            tags: Vec::new(),
            updated_at: at,
            hash: String::new(),
            ticket: Some(TicketInfo {
                status: "new".into(),
                resolution: None,
            }),
        },
    };
    let tenant_id = tenant.to_string();
    let query = text.clone();
    let (n_suggestions, n_similar) = (pipeline.suggestions, pipeline.similar);
    let (suggestions, similar, incident) =
        tokio::task::spawn_blocking(move || -> Result<_, crate::vector::IndexError> {
            let index = kb.index.as_ref();
            let articles = SearchFilter {
                source: Some(Source::Kb),
                ..SearchFilter::tenant(&tenant_id)
            };
            let mut seen = std::collections::HashSet::new();
            let found = match n_suggestions {
                0 => Vec::new(),
                k => index.search(&point.vector, &articles, k * 5)?,
            };
            let suggestions: Vec<Suggestion> = found
                .into_iter()
                .filter(|h| {
                    h.score >= settings.suggest_threshold && seen.insert(h.payload.doc_id.clone())
                })
                .take(n_suggestions)
                .map(|h| Suggestion {
                    snippet: super::kb::snippet(&h.payload.text, &query),
                    article_id: h.payload.doc_id,
                    title: h.payload.title,
                    score: h.score,
                })
                .collect();
            let tickets = SearchFilter {
                source: Some(Source::Ticket),
                exclude_doc: Some(point.payload.doc_id.clone()),
                ..SearchFilter::tenant(&tenant_id)
            };
            let window = settings.duplicate_window_hours * 3600;
            let found = match n_similar {
                0 => Vec::new(),
                k => index.search(&point.vector, &tickets, k)?,
            };
            let similar: Vec<SimilarTicket> = found
                .into_iter()
                .map(|h| SimilarTicket {
                    duplicate: h.score >= settings.duplicate_threshold
                        && (at - h.payload.updated_at).abs() <= window,
                    ticket_id: h.payload.doc_id,
                    subject: h.payload.title,
                    score: h.score,
                    status: h.payload.ticket.map(|t| t.status),
                })
                .collect();
            index.upsert(std::slice::from_ref(&point))?;
            let incident = super::similar::incident_for(index, &tenant_id, &point, at, &settings)?;
            Ok((suggestions, similar, incident))
        })
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Internal(e.into()))?;

    let result = TriageResult {
        labels,
        sentiment: sentiment
            .filter(|_| pipeline.sentiment)
            .map(|s| SentimentReading {
                label: s.label,
                confidence: s.confidence,
            }),
        urgency,
        duplicate_of: similar
            .iter()
            .find(|s| s.duplicate)
            .map(|s| s.ticket_id.clone()),
        suggestions,
        similar,
        incident: incident.map(|i| i.tickets),
        pii,
        attachments: if pipeline.attachment_text {
            req.attachments.clone()
        } else {
            Vec::new()
        },
        revision: req.revision,
    };
    let callback = if req.callback {
        let core = state.core_client().ok_or_else(|| {
            ApiError::validation(
                "callback asked for, but this AI service has no core to call (cluster.core_url)",
            )
        })?;
        let done = core
            .apply_triage(tenant, req.ticket_id, &result)
            .await
            .map_err(|e| {
                if e.retry {
                    ApiError::NotReady(format!("the core did not take the result: {e}"))
                } else {
                    ApiError::validation(format!("the core refused the result: {e}"))
                }
            })?;
        Some(done)
    } else {
        None
    };
    Ok(TriageResponse {
        ticket_id: req.ticket_id,
        result,
        callback,
    })
}

/// In-process: the worker of `helpdesk serve` calls the AI directly.
impl AiClient for AiState {
    fn triage<'a>(
        &'a self,
        tenant: &'a str,
        req: TriageRequest,
    ) -> BoxFut<'a, Result<TriageResponse, ClientError>> {
        Box::pin(async move { run(self, tenant, req).await.map_err(ClientError::from) })
    }

    fn ready(&self) -> BoxFut<'_, bool> {
        let ready = self.encoder().is_ok();
        Box::pin(async move { ready })
    }

    fn kb_upsert<'a>(
        &'a self,
        tenant: &'a str,
        article: super::kb::Article,
    ) -> BoxFut<'a, Result<(), ClientError>> {
        Box::pin(async move {
            super::kb::upsert(self, tenant, article)
                .await
                .map(|_| ())
                .map_err(ClientError::from)
        })
    }

    fn analyze_image<'a>(
        &'a self,
        tenant: &'a str,
        bytes: axum::body::Bytes,
    ) -> BoxFut<'a, Result<serde_json::Value, ClientError>> {
        Box::pin(async move {
            let report = super::attachments::run(self, tenant, bytes).await?;
            serde_json::to_value(report).map_err(|e| ClientError::new(e.to_string(), false))
        })
    }

    fn kb_delete<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
    ) -> BoxFut<'a, Result<(), ClientError>> {
        Box::pin(async move {
            match super::kb::remove(self, tenant, id).await {
                Ok(()) | Err(ApiError::NotFound(_)) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
    }
}
