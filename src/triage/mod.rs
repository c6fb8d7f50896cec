//! The triage loop between the ticketing core and the AI service.
//!
//! Creating a ticket queues a `triage` job in the outbox (same transaction).
//! A worker (`worker`) claims it, reads the ticket and asks the AI service
//! to triage it through [`AiClient`]; the AI service computes every head on
//! one encoder pass, then calls back into the core through [`CoreClient`]
//! (`POST /api/v1/tickets/{id}/triage`), which applies the routing when the
//! confidence clears the tenant's threshold and stores the prediction. The
//! worker completes the job when the callback has landed.
//!
//! Both clients have an in-process form (`helpdesk serve`: one process) and
//! an HTTP form (`--role core|ai|worker`: separate processes). The wire
//! types below are what travels between them either way.

pub mod pipeline;
pub mod worker;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the worker sends the AI service (`POST /v1/triage`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriageRequest {
    pub ticket_id: i64,
    pub subject: String,
    #[serde(default)]
    pub body: String,
    /// Unix seconds (default: now): the duplicate and incident windows.
    #[serde(default)]
    pub created_at: Option<i64>,
    /// Deliver the result to the core (`POST /api/v1/tickets/{id}/triage`)
    /// before answering.
    #[serde(default)]
    pub callback: bool,
    /// Text read from the ticket's attachments (OCR, personal data already
    /// redacted): classified and searched with the ticket, not indexed.
    #[serde(default)]
    pub attachment_text: Vec<String>,
    /// The attachments that text came from.
    #[serde(default)]
    pub attachments: Vec<i64>,
    /// Orders the triages of one ticket: 1 on creation, higher when an
    /// attachment's text arrived later (the core keeps the highest).
    #[serde(default = "first_revision")]
    pub revision: i64,
    /// The tenant's triage pipeline (`pipelines/triage.toml`; default
    /// `standard`).
    #[serde(default)]
    pub pipeline: Option<String>,
    /// The tenant's own label sets (trained tasks) to predict beside the
    /// routing heads; a confident answer becomes a `task:label` tag.
    #[serde(default)]
    pub label_sets: Vec<String>,
}

fn first_revision() -> i64 {
    1
}

/// Personal data found in a ticket's own text (positions per field; the
/// values are never stored, only masked hints).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TicketPii {
    #[serde(default)]
    pub subject: Vec<crate::vision::pii::PiiFinding>,
    #[serde(default)]
    pub body: Vec<crate::vision::pii::PiiFinding>,
}

/// One head's answer for the ticket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LabelPrediction {
    /// The head's own decision at its validated threshold; `None`: abstain.
    pub label: Option<String>,
    /// The most probable label, even when abstaining.
    pub top: String,
    /// Calibrated probability of `top`.
    pub confidence: f32,
    /// The head's threshold (for its target precision).
    pub threshold: f32,
    /// The model version that answered.
    pub version: u32,
    /// The most probable labels, best first (at most 3).
    pub alternatives: Vec<Alternative>,
    /// The nearest labelled examples (at most 3).
    pub evidence: Vec<EvidenceItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Alternative {
    pub label: String,
    pub probability: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvidenceItem {
    pub text: String,
    pub label: String,
    pub similarity: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SentimentReading {
    /// negative, neutral or positive.
    pub label: String,
    pub confidence: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UrgencyReading {
    /// low, normal, high or critical.
    pub level: String,
    pub points: u32,
    pub reasons: Vec<String>,
}

/// A KB passage that may answer the ticket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Suggestion {
    pub article_id: String,
    pub title: String,
    pub snippet: String,
    pub score: f32,
}

/// An earlier ticket close to this one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SimilarTicket {
    pub ticket_id: String,
    pub subject: String,
    pub score: f32,
    pub status: Option<String>,
    pub duplicate: bool,
}

/// The AI service's triage of one ticket: what it posts to the core.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TriageResult {
    /// Routing heads the tenant has (category, team, priority) and its own
    /// label sets: task → answer.
    #[serde(default)]
    pub labels: BTreeMap<String, LabelPrediction>,
    #[serde(default)]
    pub sentiment: Option<SentimentReading>,
    #[serde(default)]
    pub urgency: Option<UrgencyReading>,
    #[serde(default)]
    pub suggestions: Vec<Suggestion>,
    #[serde(default)]
    pub similar: Vec<SimilarTicket>,
    #[serde(default)]
    pub duplicate_of: Option<String>,
    /// Near-identical recent tickets this one completes (an incident).
    #[serde(default)]
    pub incident: Option<Vec<String>>,
    /// Personal data in the subject and body.
    #[serde(default)]
    pub pii: TicketPii,
    /// The attachments whose text this triage read.
    #[serde(default)]
    pub attachments: Vec<i64>,
    /// See `TriageRequest::revision`.
    #[serde(default = "first_revision")]
    pub revision: i64,
}

/// What the core did with a triage result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AppliedTriage {
    pub ticket_id: i64,
    /// applied (some routing was set) or abstained (left for a human).
    pub status: String,
    /// Field → value set on the ticket (category, team_id, priority).
    pub applied: BTreeMap<String, serde_json::Value>,
    /// Why each routing task was not applied.
    pub skipped: BTreeMap<String, String>,
    /// The internal note with the KB suggestions, when there were some.
    pub note_id: Option<i64>,
    /// True when this ticket had been triaged already and nothing changed.
    pub replayed: bool,
}

/// The worker's answer from `POST /v1/triage`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriageResponse {
    pub ticket_id: i64,
    pub result: TriageResult,
    /// The core's answer to the callback, when one was asked for.
    pub callback: Option<AppliedTriage>,
}

/// Why a call to the other side failed. `retry` says whether the same call
/// may succeed later (not ready, overloaded, unreachable, a 5xx).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    pub message: String,
    pub retry: bool,
}

impl ClientError {
    pub fn new(message: impl Into<String>, retry: bool) -> Self {
        Self {
            message: message.into(),
            retry,
        }
    }
}

impl From<crate::error::ApiError> for ClientError {
    fn from(e: crate::error::ApiError) -> Self {
        use crate::error::ApiError as E;
        let retry = matches!(e, E::NotReady(_) | E::Overloaded | E::Internal(_));
        Self::new(e.to_string(), retry)
    }
}

/// The worker's view of the AI service.
pub trait AiClient: Send + Sync {
    /// Triage one ticket of `tenant`.
    fn triage<'a>(
        &'a self,
        tenant: &'a str,
        req: TriageRequest,
    ) -> BoxFut<'a, Result<TriageResponse, ClientError>>;

    /// Whether the AI service can answer now (model loaded).
    fn ready(&self) -> BoxFut<'_, bool>;

    /// Indexes a KB article of `tenant` (the core's copy is the source).
    fn kb_upsert<'a>(
        &'a self,
        tenant: &'a str,
        article: crate::ai::kb::Article,
    ) -> BoxFut<'a, Result<(), ClientError>>;

    /// The image checks of an attachment's bytes (a JSON report).
    fn analyze_image<'a>(
        &'a self,
        tenant: &'a str,
        bytes: axum::body::Bytes,
    ) -> BoxFut<'a, Result<serde_json::Value, ClientError>>;

    /// Removes a KB article of `tenant` from the index (absent: done).
    fn kb_delete<'a>(&'a self, tenant: &'a str, id: &'a str)
        -> BoxFut<'a, Result<(), ClientError>>;
}

/// The AI service's view of the core: where a triage result goes.
pub trait CoreClient: Send + Sync {
    fn apply_triage<'a>(
        &'a self,
        tenant: &'a str,
        ticket_id: i64,
        result: &'a TriageResult,
    ) -> BoxFut<'a, Result<AppliedTriage, ClientError>>;
}

/// HTTP to another process: `base` is its URL (`http://host:port`), `key` a
/// core API key with the `service` scope (it names the tenant in
/// `X-Tenant-Id`).
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    base: String,
    key: String,
}

impl HttpClient {
    pub fn new(base: &str, key: &str, timeout: std::time::Duration) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .unwrap_or_default(),
            base: base.trim_end_matches('/').to_string(),
            key: key.to_string(),
        }
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        tenant: &str,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let r = self
            .client
            .post(&url)
            .bearer_auth(&self.key)
            .header(crate::ai::tenant::HEADER, tenant)
            .json(body)
            .send()
            .await
            .map_err(|e| ClientError::new(format!("{url}: {e}"), true))?;
        let status = r.status();
        if status.is_success() {
            return r
                .json()
                .await
                .map_err(|e| ClientError::new(format!("{url}: bad answer: {e}"), true));
        }
        let text = r.text().await.unwrap_or_default();
        let retry = status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408;
        Err(ClientError::new(
            format!(
                "{url}: {status}: {}",
                text.chars().take(500).collect::<String>()
            ),
            retry,
        ))
    }
}

impl AiClient for HttpClient {
    fn triage<'a>(
        &'a self,
        tenant: &'a str,
        req: TriageRequest,
    ) -> BoxFut<'a, Result<TriageResponse, ClientError>> {
        Box::pin(async move { self.post(tenant, "/v1/triage", &req).await })
    }

    fn ready(&self) -> BoxFut<'_, bool> {
        Box::pin(async move {
            let r = self.client.get(format!("{}/ready", self.base)).send().await;
            matches!(r, Ok(r) if r.status().is_success())
        })
    }

    fn kb_upsert<'a>(
        &'a self,
        tenant: &'a str,
        article: crate::ai::kb::Article,
    ) -> BoxFut<'a, Result<(), ClientError>> {
        Box::pin(async move {
            self.post::<serde_json::Value>(tenant, "/v1/kb/articles", &article)
                .await
                .map(|_| ())
        })
    }

    fn analyze_image<'a>(
        &'a self,
        tenant: &'a str,
        bytes: axum::body::Bytes,
    ) -> BoxFut<'a, Result<serde_json::Value, ClientError>> {
        Box::pin(async move {
            let url = format!("{}/v1/attachments/analyze", self.base);
            let r = self
                .client
                .post(&url)
                .bearer_auth(&self.key)
                .header(crate::ai::tenant::HEADER, tenant)
                .header("content-type", "application/octet-stream")
                .body(bytes)
                .send()
                .await
                .map_err(|e| ClientError::new(format!("{url}: {e}"), true))?;
            let status = r.status();
            let body: serde_json::Value = r
                .json()
                .await
                .map_err(|e| ClientError::new(format!("{url}: bad answer: {e}"), true))?;
            if status.is_success() {
                Ok(body)
            } else {
                Err(ClientError::new(
                    format!("{url}: {status}: {body}"),
                    status.is_server_error() || status.as_u16() == 429,
                ))
            }
        })
    }

    fn kb_delete<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
    ) -> BoxFut<'a, Result<(), ClientError>> {
        Box::pin(async move {
            let url = format!("{}/v1/kb/articles/{id}", self.base);
            let r = self
                .client
                .delete(&url)
                .bearer_auth(&self.key)
                .header(crate::ai::tenant::HEADER, tenant)
                .send()
                .await
                .map_err(|e| ClientError::new(format!("{url}: {e}"), true))?;
            let status = r.status();
            if status.is_success() || status.as_u16() == 404 {
                Ok(())
            } else {
                Err(ClientError::new(
                    format!("{url}: {status}"),
                    status.is_server_error() || status.as_u16() == 429,
                ))
            }
        })
    }
}

impl CoreClient for HttpClient {
    fn apply_triage<'a>(
        &'a self,
        tenant: &'a str,
        ticket_id: i64,
        result: &'a TriageResult,
    ) -> BoxFut<'a, Result<AppliedTriage, ClientError>> {
        Box::pin(async move {
            self.post(
                tenant,
                &format!("/api/v1/tickets/{ticket_id}/triage"),
                result,
            )
            .await
        })
    }
}
