//! `POST /embed` (TEI's shape) and `POST /v1/embeddings` (OpenAI's shape).

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::AiState;
use crate::error::{ApiError, ApiJson};
use crate::inference::batcher::Output;

pub fn router() -> Router<AiState> {
    Router::new()
        .route("/embed", post(tei_embed))
        .route("/v1/embeddings", post(openai_embeddings))
}

#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a string or an array of strings")]
pub enum Inputs {
    One(String),
    Many(Vec<String>),
}

impl Inputs {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

/// TEI's `/embed` request.
#[derive(Debug, Deserialize)]
pub struct TeiRequest {
    pub inputs: Inputs,
    #[serde(default = "yes")]
    pub normalize: bool,
    #[serde(default)]
    pub truncate: bool,
    #[serde(default)]
    pub truncation_direction: Option<String>,
    #[serde(default)]
    pub dimensions: Option<usize>,
}

fn yes() -> bool {
    true
}

/// Embeds `texts` through the shared queue; returns the vectors and the tokens used.
pub(crate) async fn embed_texts(
    state: &AiState,
    texts: Vec<String>,
    normalize: bool,
    truncate: bool,
) -> Result<(Vec<Vec<f32>>, usize), ApiError> {
    let output = if normalize { Output::Unit } else { Output::Raw };
    queue(state, texts, truncate, output).await
}

/// What label heads read of texts, from one encoder pass: the unit base
/// vectors, and the layer features where a head reads those.
pub(crate) struct HeadInputs {
    pub base: Vec<Vec<f32>>,
    layers: Option<Vec<Vec<f32>>>,
}

impl HeadInputs {
    /// Text `i`'s vector as `head` reads it.
    pub fn for_head(&self, i: usize, head: &crate::ml::Classifier) -> &[f32] {
        match (&self.layers, head.card.reads_layers()) {
            (Some(l), true) => &l[i],
            _ => &self.base[i],
        }
    }
}

/// Embeds `texts` (truncated) once for `heads`: layer features as well as
/// the base vectors when any of them reads layer features.
pub(crate) async fn embed_for_heads<'a>(
    state: &AiState,
    texts: Vec<String>,
    heads: impl IntoIterator<Item = &'a crate::ml::Classifier>,
) -> Result<HeadInputs, ApiError> {
    if heads.into_iter().any(|h| h.card.reads_layers()) {
        let dims = state.encoder()?.info.dims;
        let (layers, _) = queue(state, texts, true, Output::Layers).await?;
        let base = layers
            .iter()
            .map(|f| crate::inference::encoder::base_of_layers(f, dims))
            .collect();
        Ok(HeadInputs {
            base,
            layers: Some(layers),
        })
    } else {
        let (base, _) = queue(state, texts, true, Output::Unit).await?;
        Ok(HeadInputs { base, layers: None })
    }
}

async fn queue(
    state: &AiState,
    texts: Vec<String>,
    truncate: bool,
    output: Output,
) -> Result<(Vec<Vec<f32>>, usize), ApiError> {
    let max = state.settings.server.max_inputs;
    if texts.is_empty() {
        return Err(ApiError::validation("the input list is empty"));
    }
    if texts.len() > max {
        return Err(ApiError::TooLarge(format!(
            "{} inputs in one request; the limit is {max}",
            texts.len()
        )));
    }
    let encoder = state.encoder()?.clone();
    // Take the queue slot before any work, so overload costs nothing.
    let permit = encoder.try_reserve()?;
    let tokenizer = encoder.tokenizer.clone();
    let tokenized = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        tokenizer.tokenize(&refs, truncate)
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))??;
    let tokens = tokenized.iter().map(|t| t.ids.len()).sum();
    let ids = tokenized.into_iter().map(|t| t.ids).collect();
    let vectors = encoder.embed_as(permit, ids, output).await?;
    Ok((vectors, tokens))
}

fn check_dimensions(state: &AiState, requested: Option<usize>) -> Result<(), ApiError> {
    let dims = state.encoder()?.info.dims;
    match requested {
        Some(d) if d != dims => Err(ApiError::validation(format!(
            "dimensions={d} is not supported: this model gives {dims}-dimensional vectors"
        ))),
        _ => Ok(()),
    }
}

#[tracing::instrument(skip_all)]
async fn tei_embed(
    State(state): State<AiState>,
    ApiJson(req): ApiJson<TeiRequest>,
) -> Result<ApiJson<Vec<Vec<f32>>>, ApiError> {
    if let Some(dir) = &req.truncation_direction {
        if !dir.eq_ignore_ascii_case("right") {
            return Err(ApiError::validation(
                "only truncation_direction=Right is supported",
            ));
        }
    }
    check_dimensions(&state, req.dimensions)?;
    let (vectors, _) =
        embed_texts(&state, req.inputs.into_vec(), req.normalize, req.truncate).await?;
    Ok(ApiJson(vectors))
}

/// OpenAI's `input`: text(s), or token arrays (which this server refuses:
/// they would be ids of another tokenizer).
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a string, an array of strings, or token arrays")]
pub enum OpenAiInput {
    Text(Inputs),
    Tokens(Vec<u32>),
    TokenBatches(Vec<Vec<u32>>),
}

#[derive(Debug, Deserialize)]
pub struct OpenAiRequest {
    pub input: OpenAiInput,
    /// Accepted and echoed as this server's model: it serves one encoder.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub encoding_format: Option<EncodingFormat>,
    #[serde(default)]
    pub dimensions: Option<usize>,
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    Float,
    Base64,
}

#[derive(Debug, Serialize)]
pub struct OpenAiResponse {
    pub object: &'static str,
    pub data: Vec<OpenAiEmbedding>,
    pub model: String,
    pub usage: Usage,
}

#[derive(Debug, Serialize)]
pub struct OpenAiEmbedding {
    pub object: &'static str,
    pub index: usize,
    pub embedding: EmbeddingValue,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum EmbeddingValue {
    Float(Vec<f32>),
    /// Little-endian f32 bytes, base64: what the OpenAI SDKs ask for by default.
    Base64(String),
}

#[derive(Debug, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

#[tracing::instrument(skip_all)]
async fn openai_embeddings(
    State(state): State<AiState>,
    ApiJson(req): ApiJson<OpenAiRequest>,
) -> Result<ApiJson<OpenAiResponse>, ApiError> {
    let texts = match req.input {
        OpenAiInput::Text(t) => t.into_vec(),
        OpenAiInput::Tokens(_) | OpenAiInput::TokenBatches(_) => {
            return Err(ApiError::validation(
                "token-array input is not supported; send text (this server tokenizes itself)",
            ))
        }
    };
    check_dimensions(&state, req.dimensions)?;
    // OpenAI's vectors are unit length. Its limit is 8k tokens; ours is the
    // model's 256, so longer input is cut rather than refused.
    let (vectors, tokens) = embed_texts(&state, texts, true, true).await?;
    let base64 = req.encoding_format == Some(EncodingFormat::Base64);
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| OpenAiEmbedding {
            object: "embedding",
            index,
            embedding: if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                EmbeddingValue::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                EmbeddingValue::Float(v)
            },
        })
        .collect();
    Ok(ApiJson(OpenAiResponse {
        object: "list",
        data,
        model: state.encoder()?.info.model.clone(),
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    }))
}
