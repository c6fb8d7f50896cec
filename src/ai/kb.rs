//! The knowledge base on the AI service: articles in, chunks embedded and
//! indexed, passages out.
//!
//! `POST /v1/kb/articles` (upsert by id), `DELETE /v1/kb/articles/{id}`,
//! `GET /v1/kb/search?q=…&k=…&mode=dense|bm25|hybrid`, `POST /v1/kb/suggest`.
//!
//! Ingestion is idempotent: an article whose content hash is unchanged is not
//! re-embedded. It is also safe to repeat after a crash: the article's
//! manifest entry is written only after its chunks are in the index, so an
//! interrupted import is redone the next time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::embed::embed_texts;
use super::tenant::Tenant;
use super::AiState;
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::kb::{self, ChunkConfig, Format};
use crate::vector::{ChunkPayload, Hit, IndexPoint, SearchFilter, Source, VectorIndex, Visibility};

pub fn router() -> Router<AiState> {
    Router::new()
        .route("/v1/kb/articles", post(upsert_article))
        .route("/v1/kb/articles/{id}", delete(delete_article))
        .route("/v1/kb/search", get(search))
        .route("/v1/kb/suggest", post(suggest))
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Article {
    pub id: String,
    pub title: String,
    pub body: String,
    #[serde(default = "markdown")]
    pub format: Format,
    #[serde(default = "public")]
    pub visibility: Visibility,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default = "english")]
    pub language: String,
}

fn markdown() -> Format {
    Format::Markdown
}
fn public() -> Visibility {
    Visibility::Public
}
fn english() -> String {
    "en".into()
}

/// What the service remembers of an indexed article.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ArticleRecord {
    pub hash: String,
    pub title: String,
    pub chunks: usize,
    pub updated_at: i64,
}

pub struct KbService {
    pub index: Arc<dyn VectorIndex>,
    dir: PathBuf,
    manifests: Mutex<BTreeMap<String, BTreeMap<String, ArticleRecord>>>,
    pub chunking: ChunkConfig,
    /// Set by every write; the optimizer thread builds the index when set.
    dirty: Arc<std::sync::atomic::AtomicBool>,
}

const MAX_ID: usize = 200;
const MAX_BODY_CHARS: usize = 1_000_000;

impl KbService {
    pub fn new(index: Arc<dyn VectorIndex>, dir: &Path) -> Self {
        Self {
            index,
            dir: dir.to_path_buf(),
            manifests: Mutex::default(),
            chunking: ChunkConfig::default(),
            dirty: Arc::default(),
        }
    }

    /// Starts a thread that, every `every`, builds the index's search
    /// structures (HNSW) when something was written since the last time.
    /// It holds only a weak reference: it ends when the service is dropped.
    pub fn spawn_optimizer(self: &Arc<Self>, every: std::time::Duration) {
        let weak = Arc::downgrade(self);
        let _ = std::thread::Builder::new()
            .name("kb-optimizer".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                let Some(kb) = weak.upgrade() else { return };
                if kb.dirty.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    let t = std::time::Instant::now();
                    match kb.index.optimize() {
                        Ok(did) => tracing::debug!(
                            did,
                            seconds = t.elapsed().as_secs_f32(),
                            "index optimized"
                        ),
                        Err(e) => tracing::warn!(error = %e, "optimizing the index failed"),
                    }
                }
            });
    }

    fn manifest_path(&self, tenant: &str) -> PathBuf {
        self.dir.join(format!("{tenant}.json"))
    }

    /// The tenant's article records (loaded from disk once).
    pub fn records(&self, tenant: &str) -> std::io::Result<BTreeMap<String, ArticleRecord>> {
        let mut all = self.manifests.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = all.get(tenant) {
            return Ok(m.clone());
        }
        let m: BTreeMap<String, ArticleRecord> = match std::fs::read(self.manifest_path(tenant)) {
            Ok(b) => serde_json::from_slice(&b).map_err(std::io::Error::other)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        all.insert(tenant.to_string(), m.clone());
        Ok(m)
    }

    fn set_record(
        &self,
        tenant: &str,
        id: &str,
        record: Option<ArticleRecord>,
    ) -> std::io::Result<()> {
        let mut m = self.records(tenant)?;
        match record {
            Some(r) => m.insert(id.to_string(), r),
            None => m.remove(id),
        };
        std::fs::create_dir_all(&self.dir)?;
        let path = self.manifest_path(tenant);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(&m).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(tmp, &path)?;
        self.manifests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.to_string(), m);
        Ok(())
    }
}

/// The chunks of an article (`count` gives a text's token count).
pub fn article_chunks(
    a: &Article,
    cfg: ChunkConfig,
    count: &dyn Fn(&str) -> usize,
) -> Vec<kb::Chunk> {
    kb::chunk(&a.title, &kb::sections(&a.body, a.format), cfg, count)
}

/// Index points for an article's chunks and their vectors.
fn article_points(
    tenant: &str,
    a: &Article,
    chunks: &[kb::Chunk],
    vectors: Vec<Vec<f32>>,
    updated_at: i64,
) -> Vec<IndexPoint> {
    chunks
        .iter()
        .zip(vectors)
        .map(|(c, v)| IndexPoint {
            vector: v,
            payload: ChunkPayload {
                tenant: tenant.to_string(),
                source: Source::Kb,
                doc_id: a.id.clone(),
                chunk: c.index as u32,
                title: a.title.clone(),
                text: c.text.clone(),
                language: a.language.clone(),
                visibility: a.visibility,
                tags: a.tags.clone(),
                updated_at,
                hash: c.hash.clone(),
                ticket: None,
            },
        })
        .collect()
}

impl KbService {
    /// Replaces the article's chunks in the index, then records it: the record
    /// is written last, so an interrupted import is redone the next time.
    /// Returns whether the article is new to the tenant.
    pub fn commit(
        &self,
        tenant: &str,
        a: &Article,
        points: &[IndexPoint],
        record: ArticleRecord,
    ) -> anyhow::Result<bool> {
        let created = !self.records(tenant)?.contains_key(&a.id);
        self.index.delete_doc(tenant, Source::Kb, &a.id)?;
        self.index.upsert(points)?;
        self.set_record(tenant, &a.id, Some(record))?;
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(created)
    }

    /// Whether the article is indexed with this exact content (its chunk count).
    pub fn unchanged(&self, tenant: &str, a: &Article) -> anyhow::Result<Option<usize>> {
        let hash = article_hash(a);
        Ok(self
            .records(tenant)?
            .get(&a.id)
            .filter(|r| r.hash == hash)
            .map(|r| r.chunks))
    }

    /// Indexes one article in this thread (the CLI's import): `embed` turns
    /// texts into unit vectors. Returns `indexed` or `unchanged` and the chunks.
    pub fn ingest(
        &self,
        tenant: &str,
        a: &Article,
        embed: &dyn Fn(&[&str]) -> anyhow::Result<crate::inference::encoder::Rows>,
        count: &dyn Fn(&str) -> usize,
    ) -> anyhow::Result<(&'static str, usize)> {
        if let Some(n) = self.unchanged(tenant, a)? {
            return Ok(("unchanged", n));
        }
        let chunks = article_chunks(a, self.chunking, count);
        anyhow::ensure!(!chunks.is_empty(), "{}: no text after cleaning", a.id);
        let mut vectors = Vec::with_capacity(chunks.len());
        for batch in chunks.chunks(64) {
            let texts: Vec<&str> = batch.iter().map(|c| c.embed_text.as_str()).collect();
            vectors.extend(embed(&texts)?);
        }
        let updated_at = now();
        let points = article_points(tenant, a, &chunks, vectors, updated_at);
        let record = ArticleRecord {
            hash: article_hash(a),
            title: a.title.clone(),
            chunks: chunks.len(),
            updated_at,
        };
        self.commit(tenant, a, &points, record)?;
        Ok(("indexed", chunks.len()))
    }
}

pub fn article_hash(a: &Article) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(a).unwrap_or_default());
    hex::encode(h.finalize())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub fn validate(a: &Article) -> Result<(), ApiError> {
    let id_ok = !a.id.is_empty()
        && a.id.len() <= MAX_ID
        && a.id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if !id_ok {
        return Err(ApiError::validation(format!(
            "article id must be 1-{MAX_ID} letters, digits, '-', '_', '.' or ':'"
        )));
    }
    if a.title.trim().is_empty() {
        return Err(ApiError::validation("the title is empty"));
    }
    if a.body.trim().is_empty() {
        return Err(ApiError::validation("the body is empty"));
    }
    if a.body.chars().count() > MAX_BODY_CHARS {
        return Err(ApiError::TooLarge(format!(
            "the body has more than {MAX_BODY_CHARS} characters"
        )));
    }
    if a.tags.len() > 50 || a.tags.iter().any(|t| t.is_empty() || t.len() > 64) {
        return Err(ApiError::validation("up to 50 tags of 1-64 characters"));
    }
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct UpsertResponse {
    pub id: String,
    /// `indexed` or `unchanged`.
    pub status: &'static str,
    pub chunks: usize,
}

async fn upsert_article(
    State(state): State<AiState>,
    tenant: Tenant,
    ApiJson(article): ApiJson<Article>,
) -> Result<(StatusCode, ApiJson<UpsertResponse>), ApiError> {
    let (created, r) = upsert(&state, &tenant.0, article).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, ApiJson(r)))
}

/// Indexes (or re-indexes) an article of `tenant`; true when it is new.
pub async fn upsert(
    state: &AiState,
    tenant: &str,
    article: Article,
) -> Result<(bool, UpsertResponse), ApiError> {
    validate(&article)?;
    let kb = state.kb()?.clone();
    let known = kb.unchanged(tenant, &article).map_err(ApiError::Internal)?;
    if let Some(chunks) = known {
        return Ok((
            false,
            UpsertResponse {
                id: article.id,
                status: "unchanged",
                chunks,
            },
        ));
    }
    let tokenizer = state.encoder()?.tokenizer.clone();
    let (a, cfg) = (article.clone(), kb.chunking);
    let chunks = tokio::task::spawn_blocking(move || {
        let count = |t: &str| {
            tokenizer
                .tokenize(&[t], true)
                .map(|v| v[0].untruncated_len.saturating_sub(2))
                .unwrap_or(t.len() / 4)
        };
        article_chunks(&a, cfg, &count)
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?;
    if chunks.is_empty() {
        return Err(ApiError::validation("the body has no text after cleaning"));
    }
    let mut vectors = Vec::with_capacity(chunks.len());
    let max = state.settings.server.max_inputs.max(1);
    for batch in chunks.chunks(max) {
        let texts = batch.iter().map(|c| c.embed_text.clone()).collect();
        vectors.extend(embed_texts(state, texts, true, true).await?.0);
    }
    let updated_at = now();
    let points = article_points(tenant, &article, &chunks, vectors, updated_at);
    let record = ArticleRecord {
        hash: article_hash(&article),
        title: article.title.clone(),
        chunks: chunks.len(),
        updated_at,
    };
    let n = chunks.len();
    let (t, a) = (tenant.to_string(), article.clone());
    let created = tokio::task::spawn_blocking(move || kb.commit(&t, &a, &points, record))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(ApiError::Internal)?;
    Ok((
        created,
        UpsertResponse {
            id: article.id,
            status: "indexed",
            chunks: n,
        },
    ))
}

async fn delete_article(
    State(state): State<AiState>,
    tenant: Tenant,
    UrlPath(id): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    remove(&state, &tenant.0, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes an article of `tenant` and its passages (404 when unknown).
pub async fn remove(state: &AiState, tenant: &str, id: &str) -> Result<(), ApiError> {
    let kb = state.kb()?;
    let records = kb
        .records(tenant)
        .map_err(|e| ApiError::Internal(e.into()))?;
    if !records.contains_key(id) {
        return Err(ApiError::NotFound(format!("no article {id}")));
    }
    let index = kb.index.clone();
    let (t, i) = (tenant.to_string(), id.to_string());
    tokio::task::spawn_blocking(move || index.delete_doc(&t, Source::Kb, &i))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Internal(e.into()))?;
    kb.set_record(tenant, id, None)
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    pub q: String,
    #[serde(default = "ten")]
    pub k: usize,
    #[serde(default)]
    pub mode: Option<String>,
    /// `public` for what a customer may see; default: everything.
    #[serde(default)]
    pub visibility: Option<Visibility>,
    /// Comma-separated: at least one of them.
    #[serde(default)]
    pub tags: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
}

fn ten() -> usize {
    10
}

#[derive(Debug, Serialize)]
pub struct SearchResult {
    pub article_id: String,
    pub title: String,
    pub chunk: u32,
    pub passage: String,
    /// The passage around the query's words, matches in `**bold**`.
    pub snippet: String,
    pub score: f32,
    pub visibility: Visibility,
    pub tags: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct SearchResponse {
    pub mode: &'static str,
    pub results: Vec<SearchResult>,
}

/// Up to ~40 words around the first query word found, with every query word
/// of 3+ letters marked.
pub fn snippet(passage: &str, query: &str) -> String {
    let terms: Vec<String> = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3)
        .map(str::to_lowercase)
        .collect();
    let words: Vec<&str> = passage.split_whitespace().collect();
    let norm = |w: &str| {
        w.trim_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase()
    };
    let is_match = |w: &str| {
        let n = norm(w);
        !n.is_empty()
            && terms
                .iter()
                .any(|t| n.starts_with(t.as_str()) || t.starts_with(n.as_str()) && n.len() >= 3)
    };
    let first = words.iter().position(|w| is_match(w)).unwrap_or(0);
    let start = first.saturating_sub(10);
    let end = (start + 40).min(words.len());
    let mut out: Vec<String> = words[start..end]
        .iter()
        .map(|w| {
            if is_match(w) {
                format!("**{w}**")
            } else {
                (*w).to_string()
            }
        })
        .collect();
    if start > 0 {
        out.insert(0, "…".into());
    }
    if end < words.len() {
        out.push("…".into());
    }
    out.join(" ")
}

fn result(h: Hit, q: &str) -> SearchResult {
    SearchResult {
        snippet: snippet(&h.payload.text, q),
        article_id: h.payload.doc_id,
        title: h.payload.title,
        chunk: h.payload.chunk,
        passage: h.payload.text,
        score: h.score,
        visibility: h.payload.visibility,
        tags: h.payload.tags,
    }
}

/// Dense (or, with `hybrid`, dense and BM25 fused) search for `query`.
async fn vector_search(
    state: &AiState,
    query: &str,
    filter: SearchFilter,
    k: usize,
    hybrid: bool,
) -> Result<Vec<Hit>, ApiError> {
    let kb = state.kb()?;
    let (mut v, _) = embed_texts(state, vec![query.to_string()], true, true).await?;
    let vector = v.pop().unwrap_or_default();
    let index = kb.index.clone();
    let q = query.to_string();
    tokio::task::spawn_blocking(move || {
        if hybrid {
            index.hybrid(&vector, &q, &filter, k)
        } else {
            index.search(&vector, &filter, k)
        }
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
    .map_err(|e| ApiError::Internal(e.into()))
}

async fn text_search(
    state: &AiState,
    query: &str,
    filter: SearchFilter,
    k: usize,
) -> Result<Vec<Hit>, ApiError> {
    let index = state.kb()?.index.clone();
    let q = query.to_string();
    tokio::task::spawn_blocking(move || index.search_text(&q, &filter, k))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Internal(e.into()))
}

async fn search(
    State(state): State<AiState>,
    tenant: Tenant,
    ApiQuery(p): ApiQuery<SearchParams>,
) -> Result<ApiJson<SearchResponse>, ApiError> {
    if p.q.trim().is_empty() {
        return Err(ApiError::validation("q is empty"));
    }
    if !(1..=100).contains(&p.k) {
        return Err(ApiError::validation("k must be within 1 and 100"));
    }
    let mode: &'static str = match p.mode.as_deref() {
        None | Some("dense") => "dense",
        Some("bm25") => "bm25",
        Some("hybrid") => "hybrid",
        Some(m) => {
            return Err(ApiError::validation(format!(
                "unknown mode {m:?}: use dense, bm25 or hybrid"
            )))
        }
    };
    let filter = SearchFilter {
        source: Some(Source::Kb),
        visibility: p.visibility.into_iter().collect(),
        tags_any: p
            .tags
            .iter()
            .flat_map(|t| t.split(','))
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect(),
        language: p.language.clone(),
        ..SearchFilter::tenant(&tenant.0)
    };
    let hits = match mode {
        "dense" => vector_search(&state, &p.q, filter, p.k, false).await?,
        "bm25" => text_search(&state, &p.q, filter, p.k).await?,
        _ => vector_search(&state, &p.q, filter, p.k, true).await?,
    };
    Ok(ApiJson(SearchResponse {
        mode,
        results: hits.into_iter().map(|h| result(h, &p.q)).collect(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuggestRequest {
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub body: String,
    #[serde(default = "three")]
    pub k: usize,
    /// Only articles a customer may see.
    #[serde(default)]
    pub public_only: bool,
}

fn three() -> usize {
    3
}

/// The best passage of each of the top `k` articles for a ticket, above the
/// tenant's threshold.
async fn suggest(
    State(state): State<AiState>,
    tenant: Tenant,
    ApiJson(req): ApiJson<SuggestRequest>,
) -> Result<ApiJson<SearchResponse>, ApiError> {
    let text = format!("{}\n{}", req.subject.trim(), req.body.trim());
    if text.trim().is_empty() {
        return Err(ApiError::validation("subject and body are empty"));
    }
    if !(1..=20).contains(&req.k) {
        return Err(ApiError::validation("k must be within 1 and 20"));
    }
    let threshold = state.tenant_settings(&tenant.0)?.suggest_threshold;
    let filter = SearchFilter {
        source: Some(Source::Kb),
        visibility: if req.public_only {
            vec![Visibility::Public]
        } else {
            Vec::new()
        },
        ..SearchFilter::tenant(&tenant.0)
    };
    let hits = vector_search(&state, text.trim(), filter, req.k * 5, false).await?;
    let mut seen = std::collections::HashSet::new();
    let results = hits
        .into_iter()
        .filter(|h| h.score >= threshold && seen.insert(h.payload.doc_id.clone()))
        .take(req.k)
        .map(|h| result(h, &text))
        .collect();
    Ok(ApiJson(SearchResponse {
        mode: "dense",
        results,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_mark_query_words_around_the_first_match() {
        let passage = (0..60)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ")
            + " reset your Password now";
        let s = snippet(&passage, "password reset");
        assert!(s.contains("**reset**") && s.contains("**Password**"), "{s}");
        assert!(s.starts_with("…"));
        assert_eq!(snippet("short text", "zzz"), "short text");
    }

    #[test]
    fn article_validation() {
        let ok = Article {
            id: "kb-1".into(),
            title: "VPN".into(),
            body: "text".into(),
            format: Format::Markdown,
            visibility: Visibility::Public,
            tags: vec![],
            language: "en".into(),
        };
        assert!(validate(&ok).is_ok());
        for bad in [
            Article {
                id: "../x".into(),
                ..ok.clone()
            },
            Article {
                id: String::new(),
                ..ok.clone()
            },
            Article {
                title: " ".into(),
                ..ok.clone()
            },
            Article {
                body: String::new(),
                ..ok.clone()
            },
            Article {
                tags: vec![String::new()],
                ..ok.clone()
            },
        ] {
            assert!(validate(&bad).is_err(), "{bad:?}");
        }
        assert_ne!(
            article_hash(&ok),
            article_hash(&Article {
                body: "text2".into(),
                ..ok.clone()
            })
        );
    }
}
