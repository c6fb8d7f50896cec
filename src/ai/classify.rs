//! Label heads over HTTP: classify, sentiment, urgency, and the versions of
//! a tenant's tasks (list, train as a job, promote, roll back).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};

use super::embed::{embed_for_heads, embed_texts, Inputs};
use super::tenant::Tenant;
use super::urgency::{self, UrgencyAssessment};
use super::AiState;
use crate::error::{ApiError, ApiJson};
use crate::inference::heads::Prediction;
use crate::ml::dataset::Example;
use crate::ml::model::Sentiment;
use crate::ml::pipeline::{PromotePolicy, TrainOptions};
use crate::ml::store::{check_name, StoreError};
use crate::ml::{HeadKind, ModelCard};

pub fn router() -> Router<AiState> {
    Router::new()
        .route("/v1/classify", post(classify))
        .route("/v1/sentiment", post(sentiment))
        .route("/v1/urgency", post(urgency))
        .route("/v1/models", get(list_tasks))
        .route("/v1/models/{task}", get(task_versions))
        .route("/v1/models/{task}/train", post(train))
        .route("/v1/models/{task}/promote", post(promote))
        .route("/v1/models/{task}/rollback", post(rollback))
        .route("/v1/jobs/{id}", get(job))
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Name { .. } | StoreError::Modality { .. } => {
                Self::Validation(e.to_string())
            }
            StoreError::NoModel { .. } | StoreError::NoVersion { .. } => {
                Self::NotFound(e.to_string())
            }
            StoreError::NothingToRollBack(_) => Self::Conflict(e.to_string()),
            other => Self::Internal(other.into()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyRequest {
    pub inputs: Inputs,
    /// One task or several: the text is encoded once for all of them.
    #[serde(default)]
    pub task: Option<String>,
    #[serde(default)]
    pub tasks: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct TaskPrediction {
    pub version: u32,
    #[serde(flatten)]
    pub prediction: Prediction,
}

#[derive(Debug, Serialize)]
pub struct ClassifyResponse {
    /// One entry per input, in order: task → prediction.
    pub results: Vec<BTreeMap<String, TaskPrediction>>,
}

async fn classify(
    State(state): State<AiState>,
    tenant: Tenant,
    ApiJson(req): ApiJson<ClassifyRequest>,
) -> Result<ApiJson<ClassifyResponse>, ApiError> {
    let mut tasks = req.tasks;
    tasks.extend(req.task);
    tasks.sort();
    tasks.dedup();
    if tasks.is_empty() {
        return Err(ApiError::validation("name a `task` or `tasks`"));
    }
    // Every head first: an unknown task fails before any encoding.
    let mut heads = Vec::new();
    for t in &tasks {
        check_name("task", t).map_err(|e| ApiError::validation(e.to_string()))?;
        heads.push((t.clone(), state.heads.active_text(&tenant.0, t)?));
    }
    let texts = req.inputs.into_vec();
    let inputs = embed_for_heads(&state, texts.clone(), heads.iter().map(|(_, h)| &**h)).await?;
    let results = texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            heads
                .iter()
                .map(|(task, head)| {
                    (
                        task.clone(),
                        TaskPrediction {
                            version: head.card.version,
                            prediction: head.predict(inputs.for_head(i, head), text),
                        },
                    )
                })
                .collect()
        })
        .collect();
    Ok(ApiJson(ClassifyResponse { results }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentimentRequest {
    pub inputs: Inputs,
}

#[derive(Debug, Serialize)]
pub struct SentimentResponse {
    pub version: u32,
    pub results: Vec<Sentiment>,
}

/// The `sentiment` task of the tenant (the shipped head unless it trained its own).
async fn sentiments(
    state: &AiState,
    tenant: &str,
    texts: Vec<String>,
) -> Result<SentimentResponse, ApiError> {
    let head = state.heads.active_text(tenant, "sentiment")?;
    let inputs = embed_for_heads(state, texts.clone(), [&*head]).await?;
    let results = texts
        .iter()
        .enumerate()
        .map(|(i, t)| head.three_way(&head.predict(inputs.for_head(i, &head), t)))
        .collect();
    Ok(SentimentResponse {
        version: head.card.version,
        results,
    })
}

async fn sentiment(
    State(state): State<AiState>,
    tenant: Tenant,
    ApiJson(req): ApiJson<SentimentRequest>,
) -> Result<ApiJson<SentimentResponse>, ApiError> {
    Ok(ApiJson(
        sentiments(&state, &tenant.0, req.inputs.into_vec()).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrgencyRequest {
    pub text: String,
    #[serde(default)]
    pub vip_requester: bool,
    #[serde(default)]
    pub previous_contacts: u32,
}

#[derive(Debug, Serialize)]
pub struct UrgencyResponse {
    #[serde(flatten)]
    pub urgency: UrgencyAssessment,
    pub sentiment: Sentiment,
}

/// Urgency from the text's signals and its sentiment (one encoder pass).
async fn urgency(
    State(state): State<AiState>,
    tenant: Tenant,
    ApiJson(req): ApiJson<UrgencyRequest>,
) -> Result<ApiJson<UrgencyResponse>, ApiError> {
    let mut s = sentiments(&state, &tenant.0, vec![req.text.clone()]).await?;
    let sentiment = s.results.remove(0);
    let negative = sentiment
        .scores
        .iter()
        .find(|x| x.label == "negative")
        .map(|x| x.probability);
    let assessment = urgency::assess(
        &req.text,
        urgency::Context {
            vip_requester: req.vip_requester,
            previous_contacts: req.previous_contacts,
            negative_sentiment: negative,
        },
    );
    Ok(ApiJson(UrgencyResponse {
        urgency: assessment,
        sentiment,
    }))
}

async fn list_tasks(
    State(state): State<AiState>,
    tenant: Tenant,
) -> Result<ApiJson<serde_json::Value>, ApiError> {
    let mut tasks = Vec::new();
    for t in state.heads.store.tasks(&tenant.0)? {
        let active = state.heads.store.active(&tenant.0, &t)?;
        tasks.push(serde_json::json!({ "task": t, "active": active }));
    }
    Ok(ApiJson(
        serde_json::json!({ "tenant": tenant.0, "tasks": tasks }),
    ))
}

#[derive(Debug, Serialize)]
pub struct TaskVersions {
    pub task: String,
    pub tenant: String,
    pub active: Option<u32>,
    pub versions: Vec<ModelCard>,
}

fn versions(state: &AiState, tenant: &str, task: &str) -> Result<TaskVersions, ApiError> {
    let store = &state.heads.store;
    let list = store.versions(tenant, task)?;
    if list.is_empty() {
        return Err(StoreError::NoModel {
            tenant: tenant.into(),
            task: task.into(),
        }
        .into());
    }
    Ok(TaskVersions {
        task: task.into(),
        tenant: tenant.into(),
        active: store.active(tenant, task)?,
        versions: list
            .into_iter()
            .map(|v| store.card(tenant, task, v))
            .collect::<Result<_, _>>()?,
    })
}

async fn task_versions(
    State(state): State<AiState>,
    tenant: Tenant,
    Path(task): Path<String>,
) -> Result<ApiJson<TaskVersions>, ApiError> {
    Ok(ApiJson(versions(&state, &tenant.0, &task)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    pub version: u32,
}

async fn promote(
    State(state): State<AiState>,
    tenant: Tenant,
    Path(task): Path<String>,
    ApiJson(req): ApiJson<PromoteRequest>,
) -> Result<ApiJson<TaskVersions>, ApiError> {
    state.heads.store.promote(&tenant.0, &task, req.version)?;
    Ok(ApiJson(versions(&state, &tenant.0, &task)?))
}

async fn rollback(
    State(state): State<AiState>,
    tenant: Tenant,
    Path(task): Path<String>,
) -> Result<ApiJson<TaskVersions>, ApiError> {
    state.heads.store.rollback(&tenant.0, &task)?;
    Ok(ApiJson(versions(&state, &tenant.0, &task)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainRequest {
    #[serde(default)]
    pub examples: Vec<Example>,
    /// A zero-shot head from label → description instead of examples.
    #[serde(default)]
    pub descriptions: Option<BTreeMap<String, String>>,
    /// Evaluate on these instead of holding out part of `examples`.
    #[serde(default)]
    pub heldout: Option<Vec<Example>>,
    #[serde(default)]
    pub kind: Option<HeadKind>,
    #[serde(default)]
    pub limit_per_class: Option<usize>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub target_precision: Option<f32>,
    #[serde(default)]
    pub neutral_label: Option<String>,
    #[serde(default)]
    pub promote: Option<PromotePolicy>,
    /// The head reads layer features (every layer's mean token state, from
    /// the same one pass) instead of the base vector alone.
    #[serde(default)]
    pub layer_features: bool,
    /// Hidden units of an `mlp` head (1–4096, default 256).
    #[serde(default)]
    pub hidden_units: Option<usize>,
    /// Texts without labels (e.g. past tickets): labels are propagated to
    /// them and they train the head beside `examples`.
    #[serde(default)]
    pub unlabelled: Vec<String>,
    /// Loss weight of a propagated label, in (0, 1] (default 0.5).
    #[serde(default)]
    pub unlabelled_weight: Option<f32>,
}

const MAX_TRAIN_EXAMPLES: usize = 100_000;

async fn train(
    State(state): State<AiState>,
    tenant: Tenant,
    Path(task): Path<String>,
    ApiJson(req): ApiJson<TrainRequest>,
) -> Result<(StatusCode, ApiJson<serde_json::Value>), ApiError> {
    check_name("task", &task).map_err(|e| ApiError::validation(e.to_string()))?;
    let n = req.examples.len() + req.heldout.as_ref().map_or(0, Vec::len) + req.unlabelled.len();
    if n > MAX_TRAIN_EXAMPLES {
        return Err(ApiError::TooLarge(format!(
            "{n} examples and unlabelled texts; the limit per request is {MAX_TRAIN_EXAMPLES}"
        )));
    }
    check_unlabelled(&req)?;
    if let (Some(d), true) = (&req.descriptions, req.examples.is_empty()) {
        return zero_shot(&state, &tenant.0, &task, d, &req).await;
    }
    let all = req.examples.iter().chain(req.heldout.iter().flatten());
    if let Some(bad) = all
        .clone()
        .position(|e| e.text.trim().is_empty() || e.label.trim().is_empty())
    {
        return Err(ApiError::validation(format!(
            "example {bad} has an empty text or label"
        )));
    }
    let mut labels: Vec<&str> = req.examples.iter().map(|e| e.label.as_str()).collect();
    labels.sort_unstable();
    labels.dedup();
    if labels.len() < 2 {
        return Err(ApiError::validation(format!(
            "training needs examples of at least two labels, got {}",
            labels.len()
        )));
    }
    if req.kind == Some(HeadKind::ZeroShot) {
        return Err(ApiError::validation(
            "zero-shot heads are not trained from examples",
        ));
    }
    if let Some(h) = req.hidden_units {
        if req.kind != Some(HeadKind::Mlp) {
            return Err(ApiError::validation(
                "hidden_units is for heads of kind \"mlp\"",
            ));
        }
        if !(1..=4096).contains(&h) {
            return Err(ApiError::validation(
                "hidden_units must be within 1 and 4096",
            ));
        }
    }
    if let Some(p) = req.target_precision {
        if !(0.0..=1.0).contains(&p) {
            return Err(ApiError::validation(
                "target_precision must be within 0 and 1",
            ));
        }
    }
    let encoder = state.encoder()?.clone();
    let mut opts = TrainOptions::new(&task, &tenant.0);
    opts.kind = req.kind;
    opts.hidden_units = req.hidden_units.unwrap_or(opts.hidden_units);
    opts.limit_per_class = req.limit_per_class;
    opts.seed = req.seed.unwrap_or(opts.seed);
    opts.target_precision = req.target_precision.unwrap_or(opts.target_precision);
    opts.neutral_label = req.neutral_label;
    opts.promote = req.promote.unwrap_or(PromotePolicy::Gate);
    opts.descriptions = req.descriptions;
    opts.layer_features = req.layer_features;
    opts.unlabelled = req.unlabelled;
    opts.unlabelled_weight = req.unlabelled_weight.unwrap_or(opts.unlabelled_weight);
    let job = state
        .heads
        .start_training(encoder, req.examples, req.heldout, opts)
        .map_err(|e| ApiError::Internal(e.into()))?
        .ok_or(ApiError::Overloaded)?;
    Ok((
        StatusCode::ACCEPTED,
        ApiJson(serde_json::json!({
            "job_id": job.id,
            "status": job.status,
            "status_url": format!("/v1/jobs/{}", job.id),
        })),
    ))
}

/// `unlabelled` and `unlabelled_weight` make sense together, with examples,
/// for a head that trains.
fn check_unlabelled(req: &TrainRequest) -> Result<(), ApiError> {
    if let Some(w) = req.unlabelled_weight {
        if req.unlabelled.is_empty() {
            return Err(ApiError::validation(
                "unlabelled_weight is for training with unlabelled texts",
            ));
        }
        if !(w > 0.0 && w <= 1.0) {
            return Err(ApiError::validation(
                "unlabelled_weight must be above 0 and at most 1",
            ));
        }
    }
    if req.unlabelled.is_empty() {
        return Ok(());
    }
    if let Some(bad) = req.unlabelled.iter().position(|t| t.trim().is_empty()) {
        return Err(ApiError::validation(format!(
            "unlabelled text {bad} is empty"
        )));
    }
    if req.examples.is_empty() {
        return Err(ApiError::validation(
            "unlabelled texts need labelled examples to learn from",
        ));
    }
    if matches!(req.kind, Some(HeadKind::Knn | HeadKind::ZeroShot)) {
        return Err(ApiError::validation(
            "only softmax and mlp heads learn from unlabelled texts",
        ));
    }
    Ok(())
}

/// A zero-shot version: a few embeddings, so it is made within the request (201).
async fn zero_shot(
    state: &AiState,
    tenant: &str,
    task: &str,
    descriptions: &BTreeMap<String, String>,
    req: &TrainRequest,
) -> Result<(StatusCode, ApiJson<serde_json::Value>), ApiError> {
    if descriptions.len() < 2 {
        return Err(ApiError::validation(
            "give descriptions of at least two labels",
        ));
    }
    if req.layer_features {
        return Err(ApiError::validation(
            "layer_features is for heads trained on examples; a zero-shot head reads the base vectors",
        ));
    }
    if descriptions
        .iter()
        .any(|(l, d)| l.trim().is_empty() || d.trim().is_empty())
    {
        return Err(ApiError::validation("a label or its description is empty"));
    }
    let heldout = req.heldout.clone().unwrap_or_default();
    let mut texts: Vec<String> = descriptions.values().cloned().collect();
    texts.extend(heldout.iter().map(|e| e.text.clone()));
    // embed_texts refuses more than server.max_inputs texts (413).
    let (vectors, _) = embed_texts(state, texts.clone(), true, true).await?;
    let encoder = state.encoder()?;
    let pre = PrecomputedEmbedder {
        id: crate::ml::cache::encoder_id(&encoder.info.model),
        dims: encoder.info.dims,
        vectors: texts.into_iter().zip(vectors).collect(),
    };
    let mut opts = TrainOptions::new(task, tenant);
    opts.promote = req.promote.unwrap_or(PromotePolicy::Gate);
    opts.neutral_label = req.neutral_label.clone();
    let store = state.heads.store.clone();
    let descriptions = descriptions.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut cache = crate::ml::EmbeddingCache::in_memory(pre.dims);
        crate::ml::pipeline::zero_shot(
            &store,
            &pre,
            &mut cache,
            &descriptions,
            &heldout,
            &opts,
            &mut |_, _, _| {},
        )
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
    .map_err(ApiError::Internal)?;
    let body = serde_json::to_value(outcome).map_err(|e| ApiError::Internal(e.into()))?;
    Ok((StatusCode::CREATED, ApiJson(body)))
}

/// Vectors the request already computed, looked up by text.
struct PrecomputedEmbedder {
    id: String,
    dims: usize,
    vectors: std::collections::HashMap<String, Vec<f32>>,
}

impl crate::ml::Embedder for PrecomputedEmbedder {
    fn id(&self) -> String {
        self.id.clone()
    }
    fn dims(&self) -> usize {
        self.dims
    }
    fn embed(&self, texts: &[&str]) -> anyhow::Result<Vec<Vec<f32>>> {
        texts
            .iter()
            .map(|t| {
                self.vectors
                    .get(*t)
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("no vector for a text"))
            })
            .collect()
    }
}

async fn job(
    State(state): State<AiState>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<ApiJson<super::heads::Job>, ApiError> {
    let not_found = || ApiError::NotFound(format!("no job {id}"));
    let n: u64 = id.parse().map_err(|_| not_found())?;
    state
        .heads
        .job(&tenant.0, n)
        .map(ApiJson)
        .ok_or_else(not_found)
}
