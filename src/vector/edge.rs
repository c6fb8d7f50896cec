//! qdrant-edge: Qdrant's engine in-process, one shard in a folder under the
//! data directory, surviving restarts (its write-ahead log replays on load).
//!
//! The shard's `flush` takes its own locks with `try_lock` and panics when
//! they are held, so every call goes through one `RwLock`: reads and writes
//! share it, `flush` (and drop) take it alone.

use std::mem::ManuallyDrop;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use ordered_float::OrderedFloat;
use qdrant_edge::{
    Condition, CountRequest, Distance, EdgeConfigBuilder, EdgeShard, EdgeVectorParamsBuilder,
    FieldCondition, Filter, Match, MatchValue, NamedQuery, PointId, PointInsertOperations,
    PointOperations, PointStruct, QueryEnum, Range, ScrollRequest, SearchRequest, UpdateOperation,
    ValueVariants, WithPayloadInterface, WithVector,
};

use qdrant_edge::bm25_embed::{EdgeBm25, EdgeBm25Config};
use qdrant_edge::{
    CreateIndex, EdgeSparseVectorParams, FieldIndexOperations, HnswIndexConfig, Modifier,
    PayloadFieldSchema, PayloadSchemaType, QuantizationSearchParams, SearchParams, Vector,
    VectorInternal,
};

use super::scan::DenseScan;
use super::{ChunkPayload, Hit, IndexError, IndexPoint, SearchFilter, Source, VectorIndex};

const VECTOR: &str = "dense";
/// The HNSW search beam: 512 keeps recall@10 above 0.95 on random 384-d
/// vectors at 10k points at about 1.5 ms; Qdrant's default (100) gave 0.60.
pub const DEFAULT_HNSW_EF: usize = 512;
/// Up to this many points pass a search's filter (one tenant's chunks, as a
/// rule), the engine scans their int8 copies and rescores the best with the
/// originals instead of walking the HNSW graph: exact up to int8 rounding
/// (recall@10 1.0 where the graph gave 0.96 at 10k random vectors) at about
/// 75 ns a point, so about 1.5 ms here; above it the graph is faster (at
/// 100k the scan took 1.3x the graph's time, BENCHMARKS.md).
pub const DEFAULT_EXACT_SCAN_MAX_POINTS: usize = 20_000;
/// Candidates taken from the int8 scores per result, rescored with the originals.
const OVERSAMPLING: f64 = 4.0;
/// BM25 term weights as a sparse vector; the engine applies the IDF.
const SPARSE: &str = "bm25";

/// How a shard is built and searched.
#[derive(Debug, Clone)]
pub struct EdgeOptions {
    /// BM25's expected document length in words (KB chunks: about 150).
    pub bm25_avg_len: f64,
    /// The HNSW search beam.
    pub hnsw_ef: usize,
    /// Filtered searches over at most this many points scan instead of
    /// walking the graph. Fixed when the shard is created.
    pub exact_scan_max_points: usize,
    /// Keep int8 and 2-bit copies of every vector in memory and answer
    /// searches filtered by tenant (and source) with a scan of them
    /// (`scan.rs`).
    pub dense_scan: bool,
}

impl Default for EdgeOptions {
    fn default() -> Self {
        Self {
            bm25_avg_len: 150.0,
            hnsw_ef: DEFAULT_HNSW_EF,
            exact_scan_max_points: DEFAULT_EXACT_SCAN_MAX_POINTS,
            dense_scan: true,
        }
    }
}

pub struct EdgeIndex {
    path: PathBuf,
    dims: usize,
    bm25: EdgeBm25,
    /// The HNSW search beam: recall against latency (see BENCHMARKS.md).
    hnsw_ef: usize,
    /// Held (locked) while the index is open.
    _lock: std::fs::File,
    /// Dropped by hand (see `Drop`): the shard's own drop flushes and panics
    /// when that fails.
    shard: RwLock<ManuallyDrop<EdgeShard>>,
    /// The in-memory int8 and 2-bit copies for scans, when enabled.
    scan: Option<DenseScan>,
}

/// Candidates the scan (ranked by int8) hands to rescoring per result.
const SCAN_OVERSAMPLING: usize = 4;

fn source_code(s: Source) -> u8 {
    match s {
        Source::Kb => 0,
        Source::Ticket => 1,
    }
}

/// The document key of the scan's rows.
fn doc_key(tenant: &str, source: Source, doc_id: &str) -> u64 {
    super::point_id(tenant, source, doc_id, u32::MAX)
}

impl Drop for EdgeIndex {
    fn drop(&mut self) {
        let shard = self.shard.get_mut().unwrap_or_else(|p| p.into_inner());
        // Safety: the shard is dropped exactly once, here, and never used again.
        let dropped =
            std::panic::catch_unwind(AssertUnwindSafe(|| unsafe { ManuallyDrop::drop(shard) }));
        if dropped.is_err() {
            tracing::error!(path = %self.path.display(),
                "flushing the vector index failed; its write-ahead log replays on the next start");
        }
    }
}

fn engine(e: impl std::fmt::Display) -> IndexError {
    IndexError::Engine(e.to_string())
}

fn key(name: &str) -> Result<qdrant_edge::JsonPath, IndexError> {
    name.parse()
        .map_err(|_| IndexError::Engine(format!("bad payload key {name}")))
}

fn equals(name: &str, value: &str) -> Result<Condition, IndexError> {
    Ok(Condition::Field(FieldCondition::new_match(
        key(name)?,
        Match::Value(MatchValue {
            value: ValueVariants::String(value.to_string()),
        }),
    )))
}

fn any_of(name: &str, values: &[String]) -> Result<Condition, IndexError> {
    let should = values
        .iter()
        .map(|v| equals(name, v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Condition::Filter(Filter {
        should: Some(should),
        min_should: None,
        must: None,
        must_not: None,
    }))
}

/// The engine's filter for a `SearchFilter`: same semantics as `matches`.
fn filter(f: &SearchFilter) -> Result<Filter, IndexError> {
    let mut must = vec![equals("tenant", &f.tenant)?];
    if let Some(s) = f.source {
        must.push(equals("source", s.as_str())?);
    }
    if !f.visibility.is_empty() {
        let v: Vec<String> = f
            .visibility
            .iter()
            .map(|v| {
                serde_json::to_value(v)
                    .ok()
                    .and_then(|x| x.as_str().map(String::from))
                    .unwrap_or_default()
            })
            .collect();
        must.push(any_of("visibility", &v)?);
    }
    if !f.tags_any.is_empty() {
        must.push(any_of("tags", &f.tags_any)?);
    }
    if let Some(l) = &f.language {
        must.push(equals("language", l)?);
    }
    if let Some(t) = f.updated_since {
        must.push(Condition::Field(FieldCondition::new_range(
            key("updated_at")?,
            Range {
                lt: None,
                gt: None,
                gte: Some(OrderedFloat(t as f64)),
                lte: None,
            },
        )));
    }
    let must_not = match &f.exclude_doc {
        Some(d) => Some(vec![equals("doc_id", d)?]),
        None => None,
    };
    Ok(Filter {
        should: None,
        min_should: None,
        must: Some(must),
        must_not,
    })
}

impl EdgeIndex {
    /// Opens the shard in `path`, creating it (cosine, `dims`, BM25) when
    /// absent, with the default options.
    pub fn open(path: &Path, dims: usize) -> Result<Self, IndexError> {
        Self::open_with(path, dims, &EdgeOptions::default())
    }

    /// As `open`, with `options` (those fixed at creation apply to a new shard).
    pub fn open_with(path: &Path, dims: usize, options: &EdgeOptions) -> Result<Self, IndexError> {
        std::fs::create_dir_all(path)?;
        // One process per shard: qdrant-edge does not guard against two.
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join(".lock"))?;
        lock.try_lock().map_err(|_| {
            IndexError::Engine(format!(
                "the index in {} is open in another process (a running `helpdesk serve`?)",
                path.display()
            ))
        })?;
        let sparse = EdgeSparseVectorParams {
            modifier: Some(Modifier::Idf),
            ..Default::default()
        };
        let config = EdgeConfigBuilder::new()
            .on_disk_payload(true)
            .vector(
                VECTOR,
                EdgeVectorParamsBuilder::new(dims, Distance::Cosine).build(),
            )
            .sparse_vector(SPARSE, sparse)
            .hnsw_config(HnswIndexConfig {
                m: 16,
                ef_construct: 100,
                // Qdrant counts this in KiB of vectors (f32 originals).
                full_scan_threshold: options.exact_scan_max_points.saturating_mul(dims * 4) / 1024,
                max_indexing_threads: 0,
                on_disk: None,
                payload_m: None,
                inline_storage: None,
            })
            // int8 copies of the vectors in RAM: half the HNSW build time and
            // search latency at the same recall (BENCHMARKS.md); originals rescore.
            .quantization_config(
                serde_json::from_value::<qdrant_edge::QuantizationConfig>(serde_json::json!(
                    { "scalar": { "type": "int8", "quantile": 0.99, "always_ram": true } }
                ))
                .map_err(engine)?,
            )
            .build();
        let bm25 = EdgeBm25::new(EdgeBm25Config {
            avg_len: ordered_float::NotNan::new(options.bm25_avg_len.max(1.0)).map_err(engine)?,
            ..Default::default()
        })
        .map_err(engine)?;
        let existing = path.join("edge_config.json").is_file();
        let shard = if existing {
            let shard = EdgeShard::load(path, None).map_err(engine)?;
            let have = shard.config().vectors.get(VECTOR).map(|v| v.size);
            let has_bm25 = shard.config().sparse_vectors.contains_key(SPARSE);
            if have != Some(dims) || !has_bm25 {
                return Err(IndexError::Engine(format!(
                    "the index in {} holds {have:?}-dimensional vectors (BM25: {has_bm25}), the \
                     encoder makes {dims}: move it aside to rebuild",
                    path.display()
                )));
            }
            shard
        } else {
            let shard = EdgeShard::new(path, config).map_err(engine)?;
            // Payload indexes: the tenant first (every search filters by it),
            // then the other filter fields.
            let fields = [
                ("tenant", PayloadSchemaType::Keyword),
                ("source", PayloadSchemaType::Keyword),
                ("doc_id", PayloadSchemaType::Keyword),
                ("visibility", PayloadSchemaType::Keyword),
                ("tags", PayloadSchemaType::Keyword),
                ("language", PayloadSchemaType::Keyword),
                ("updated_at", PayloadSchemaType::Integer),
            ];
            for (name, kind) in fields {
                shard
                    .update(UpdateOperation::FieldIndexOperation(
                        FieldIndexOperations::CreateIndex(CreateIndex {
                            field_name: key(name)?,
                            field_schema: Some(PayloadFieldSchema::FieldType(kind)),
                        }),
                    ))
                    .map_err(engine)?;
            }
            shard
        };
        let index = Self {
            path: path.to_path_buf(),
            dims,
            bm25,
            hnsw_ef: options.hnsw_ef.max(1),
            _lock: lock,
            shard: RwLock::new(ManuallyDrop::new(shard)),
            scan: options.dense_scan.then(|| DenseScan::new(dims)),
        };
        index.load_scan()?;
        Ok(index)
    }

    /// Fills the int8 copy from the shard (every point's dense vector).
    fn load_scan(&self) -> Result<(), IndexError> {
        let Some(scan) = &self.scan else {
            return Ok(());
        };
        let shard = self.read();
        let mut offset = None;
        loop {
            let (records, next) = shard
                .scroll(ScrollRequest {
                    offset,
                    limit: Some(4096),
                    filter: None,
                    with_payload: Some(WithPayloadInterface::Fields(vec![
                        key("tenant")?,
                        key("source")?,
                        key("doc_id")?,
                    ])),
                    with_vector: WithVector::Selector(vec![VECTOR.into()]),
                    order_by: None,
                })
                .map_err(engine)?;
            for r in records {
                let PointId::NumId(id) = r.id else { continue };
                let field = |name: &str| {
                    r.payload
                        .as_ref()
                        .and_then(|p| p.0.get(name))
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                };
                let (Some(tenant), Some(source), Some(doc)) =
                    (field("tenant"), field("source"), field("doc_id"))
                else {
                    continue;
                };
                let source = if source == "ticket" {
                    Source::Ticket
                } else {
                    Source::Kb
                };
                if let Some(qdrant_edge::VectorStructInternal::Named(named)) = &r.vector {
                    if let Some(VectorInternal::Dense(v)) = named.get(VECTOR) {
                        scan.upsert(
                            id,
                            &tenant,
                            source_code(source),
                            doc_key(&tenant, source, &doc),
                            v,
                        );
                    }
                }
            }
            match next {
                Some(n) => offset = Some(n),
                None => return Ok(()),
            }
        }
    }

    /// Search through the in-memory copies: candidates by the 2-bit codes,
    /// ranked by the int8 ones, the best rescored with the shard's original
    /// vectors. `None` when the filter
    /// asks for more than tenant, source and an excluded document.
    fn scan_search(
        &self,
        vector: &[f32],
        f: &SearchFilter,
        k: usize,
    ) -> Result<Option<Vec<Hit>>, IndexError> {
        let Some(scan) = &self.scan else {
            return Ok(None);
        };
        let simple = f.visibility.is_empty()
            && f.tags_any.is_empty()
            && f.language.is_none()
            && f.updated_since.is_none()
            && (f.exclude_doc.is_none() || f.source.is_some());
        if !simple {
            return Ok(None);
        }
        let exclude = match (&f.exclude_doc, f.source) {
            (Some(d), Some(s)) => Some(doc_key(&f.tenant, s, d)),
            _ => None,
        };
        let filter = super::scan::RowFilter {
            tenant: &f.tenant,
            source: f.source.map(source_code),
            exclude_doc: exclude,
        };
        let candidates = scan.candidates(vector, &filter, (k * SCAN_OVERSAMPLING).max(40));
        if candidates.is_empty() {
            return Ok(Some(Vec::new()));
        }
        // Rescore with the originals (vectors only), then read the payloads
        // of the k best alone: parsing payloads costs more than scoring.
        let ids: Vec<PointId> = candidates
            .iter()
            .map(|(id, _)| PointId::NumId(*id))
            .collect();
        let shard = self.read();
        let records = shard
            .retrieve(
                &ids,
                Some(WithPayloadInterface::Bool(false)),
                Some(WithVector::Selector(vec![VECTOR.into()])),
            )
            .map_err(engine)?;
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        let mut scored: Vec<(f32, u64)> = records
            .iter()
            .filter_map(|r| {
                let PointId::NumId(id) = r.id else {
                    return None;
                };
                let Some(qdrant_edge::VectorStructInternal::Named(named)) = &r.vector else {
                    return None;
                };
                let Some(VectorInternal::Dense(v)) = named.get(VECTOR) else {
                    return None;
                };
                // Stored cosine vectors are unit length.
                Some((
                    v.iter().zip(vector).map(|(a, b)| a * b).sum::<f32>() / norm,
                    id,
                ))
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.truncate(k);
        let ids: Vec<PointId> = scored.iter().map(|(_, id)| PointId::NumId(*id)).collect();
        let records = shard
            .retrieve(&ids, Some(WithPayloadInterface::Bool(true)), None)
            .map_err(engine)?;
        drop(shard);
        let mut payloads = std::collections::HashMap::new();
        for r in records {
            let PointId::NumId(id) = r.id else { continue };
            let payload = r
                .payload
                .ok_or_else(|| IndexError::Engine("a point without payload".into()))?;
            let payload: ChunkPayload =
                serde_json::from_value(serde_json::Value::Object(payload.0)).map_err(engine)?;
            payloads.insert(id, payload);
        }
        let hits: Vec<Hit> = scored
            .into_iter()
            .filter_map(|(score, id)| {
                let payload = payloads.remove(&id)?;
                f.matches(&payload).then_some(Hit { id, score, payload })
            })
            .collect();
        Ok(Some(hits))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check(&self, v: &[f32]) -> Result<(), IndexError> {
        super::check_vector(v, self.dims)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, ManuallyDrop<EdgeShard>> {
        self.shard.read().unwrap_or_else(|p| p.into_inner())
    }

    fn nearest(
        &self,
        query: VectorInternal,
        using: &str,
        f: &SearchFilter,
        k: usize,
    ) -> Result<Vec<Hit>, IndexError> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let points = self
            .read()
            .search(SearchRequest {
                query: QueryEnum::Nearest(NamedQuery {
                    query,
                    using: Some(using.into()),
                }),
                filter: Some(filter(f)?),
                // A wider beam than the default: recall over speed.
                params: Some(SearchParams {
                    hnsw_ef: Some(self.hnsw_ef.max(k)),
                    quantization: Some(QuantizationSearchParams {
                        ignore: false,
                        rescore: Some(true),
                        oversampling: Some(OVERSAMPLING),
                    }),
                    ..Default::default()
                }),
                limit: k,
                offset: 0,
                with_payload: Some(WithPayloadInterface::Bool(true)),
                with_vector: Some(WithVector::Bool(false)),
                score_threshold: None,
            })
            .map_err(engine)?;
        points
            .into_iter()
            .map(|p| {
                let id = match p.id {
                    PointId::NumId(n) => n,
                    other => {
                        return Err(IndexError::Engine(format!("unexpected point id {other:?}")))
                    }
                };
                let payload = p
                    .payload
                    .ok_or_else(|| IndexError::Engine("a point without payload".into()))?;
                let payload: ChunkPayload =
                    serde_json::from_value(serde_json::Value::Object(payload.0)).map_err(engine)?;
                Ok(Hit {
                    id,
                    score: p.score,
                    payload,
                })
            })
            .collect()
    }
}

impl VectorIndex for EdgeIndex {
    fn engine(&self) -> &'static str {
        "edge"
    }

    fn dims(&self) -> usize {
        self.dims
    }

    fn upsert(&self, points: &[IndexPoint]) -> Result<(), IndexError> {
        points.iter().try_for_each(|p| self.check(&p.vector))?;
        if points.is_empty() {
            return Ok(());
        }
        let list = points
            .iter()
            .map(|p| {
                let payload = serde_json::to_value(&p.payload).map_err(engine)?;
                let words = self
                    .bm25
                    .embed_document(&format!("{} {}", p.payload.title, p.payload.text));
                let vectors = qdrant_edge::Vectors::new_named([
                    (VECTOR, Vector::new_dense(p.vector.clone())),
                    (SPARSE, Vector(VectorInternal::Sparse(words))),
                ]);
                Ok(PointStruct::new(p.id(), vectors, payload).into())
            })
            .collect::<Result<Vec<_>, IndexError>>()?;
        self.read()
            .update(UpdateOperation::PointOperation(
                PointOperations::UpsertPoints(PointInsertOperations::PointsList(list)),
            ))
            .map_err(engine)?;
        if let Some(scan) = &self.scan {
            for p in points {
                let t = &p.payload.tenant;
                let key = doc_key(t, p.payload.source, &p.payload.doc_id);
                scan.upsert(p.id(), t, source_code(p.payload.source), key, &p.vector);
            }
        }
        Ok(())
    }

    fn delete_doc(&self, tenant: &str, source: Source, doc_id: &str) -> Result<(), IndexError> {
        let f = Filter {
            should: None,
            min_should: None,
            must: Some(vec![
                equals("tenant", tenant)?,
                equals("source", source.as_str())?,
                equals("doc_id", doc_id)?,
            ]),
            must_not: None,
        };
        self.read()
            .update(UpdateOperation::PointOperation(
                PointOperations::DeletePointsByFilter(f),
            ))
            .map_err(engine)?;
        if let Some(scan) = &self.scan {
            scan.delete_doc(doc_key(tenant, source, doc_id));
        }
        Ok(())
    }

    fn search(&self, vector: &[f32], f: &SearchFilter, k: usize) -> Result<Vec<Hit>, IndexError> {
        self.check(vector)?;
        if k == 0 {
            return Ok(Vec::new());
        }
        if let Some(hits) = self.scan_search(vector, f, k)? {
            return Ok(hits);
        }
        self.nearest(vector.to_vec().into(), VECTOR, f, k)
    }

    fn search_text(&self, query: &str, f: &SearchFilter, k: usize) -> Result<Vec<Hit>, IndexError> {
        let q = self.bm25.embed_query(query);
        if q.indices.is_empty() {
            return Ok(Vec::new());
        }
        self.nearest(VectorInternal::Sparse(q), SPARSE, f, k)
    }

    fn vectors(&self, tenant: &str, ids: &[u64]) -> Result<Vec<(u64, Vec<f32>)>, IndexError> {
        let point_ids: Vec<PointId> = ids.iter().map(|&i| PointId::NumId(i)).collect();
        let records = self
            .read()
            .retrieve(
                &point_ids,
                Some(WithPayloadInterface::Fields(vec![key("tenant")?])),
                Some(WithVector::Selector(vec![VECTOR.into()])),
            )
            .map_err(engine)?;
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            let PointId::NumId(id) = r.id else { continue };
            let owner = r
                .payload
                .as_ref()
                .and_then(|p| p.0.get("tenant"))
                .and_then(|t| t.as_str());
            if owner != Some(tenant) {
                continue;
            }
            if let Some(qdrant_edge::VectorStructInternal::Named(mut named)) = r.vector {
                if let Some(VectorInternal::Dense(v)) = named.remove(VECTOR) {
                    out.push((id, v));
                }
            }
        }
        Ok(out)
    }

    fn count(&self, f: &SearchFilter) -> Result<usize, IndexError> {
        self.read()
            .count(CountRequest {
                filter: Some(filter(f)?),
                exact: true,
            })
            .map_err(engine)
    }

    fn optimize(&self) -> Result<bool, IndexError> {
        // The shard's optimizer takes its own locks: searches go on meanwhile.
        self.read().optimize().map_err(engine)
    }

    fn flush(&self) -> Result<(), IndexError> {
        let shard = self.shard.write().unwrap_or_else(|p| p.into_inner());
        flush_shard(&shard)
    }

    /// Flushes, then copies the shard's folder to `dest` (which must not
    /// exist) while holding the index alone: no write or optimization runs
    /// during the copy (searches wait for it). `EdgeIndex::open(dest)` opens it.
    fn snapshot(&self, dest: &Path) -> Result<String, IndexError> {
        if dest.exists() {
            return Err(IndexError::Engine(format!(
                "{} exists: a snapshot goes to a new folder",
                dest.display()
            )));
        }
        let shard = self.shard.write().unwrap_or_else(|p| p.into_inner());
        flush_shard(&shard)?;
        let partial = dest.with_extension("partial");
        let _ = std::fs::remove_dir_all(&partial);
        copy_tree(&self.path, &partial)?;
        drop(shard);
        std::fs::rename(&partial, dest)?;
        Ok(dest.display().to_string())
    }
}

fn flush_shard(shard: &EdgeShard) -> Result<(), IndexError> {
    // The shard panics when flushing fails (e.g. a full disk): an error here.
    std::panic::catch_unwind(AssertUnwindSafe(|| shard.flush()))
        .map_err(|_| IndexError::Engine("flushing the vector index failed".into()))
}

/// Copies the files under `from` to `to`, leaving out the open index's lock.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() && entry.file_name() != ".lock" {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_the_engine_suite_without_the_int8_scan_too() {
        let dir = tempfile::tempdir().unwrap();
        let options = EdgeOptions {
            dense_scan: false,
            ..EdgeOptions::default()
        };
        let index = EdgeIndex::open_with(&dir.path().join("shard"), 3, &options).unwrap();
        super::super::conformance::run(&index);
    }

    /// The int8 scan, loaded from the shard on open, gives the same hits as
    /// the engine's own exact search.
    #[test]
    fn the_int8_scan_agrees_with_the_engines_exact_search_after_a_restart() {
        use crate::inference::training::SplitMix;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shard");
        let mut rng = SplitMix::new(3);
        let mut random = || -> Vec<f32> {
            (0..32)
                .map(|_| (rng.next_u64() % 2001) as f32 / 1000.0 - 1.0)
                .collect()
        };
        let points: Vec<IndexPoint> = (0..600)
            .map(|i| IndexPoint {
                vector: random(),
                payload: super::super::conformance::payload(
                    if i % 2 == 0 { "acme" } else { "globex" },
                    &format!("d{}", i / 3),
                    i % 3,
                ),
            })
            .collect();
        let queries: Vec<Vec<f32>> = (0..10).map(|_| random()).collect();
        EdgeIndex::open(&path, 32).unwrap().upsert(&points).unwrap();
        let index = EdgeIndex::open(&path, 32).unwrap();
        assert_eq!(index.scan.as_ref().unwrap().len(), 600);
        let acme = SearchFilter::tenant("acme");
        for q in &queries {
            let scanned = index.search(q, &acme, 10).unwrap();
            let exact = index.nearest(q.clone().into(), VECTOR, &acme, 10).unwrap();
            let ids = |h: &[Hit]| h.iter().map(|x| x.id).collect::<Vec<_>>();
            assert_eq!(ids(&scanned), ids(&exact));
            assert!((scanned[0].score - exact[0].score).abs() < 1e-4);
        }
        index.delete_doc("acme", Source::Kb, "d0").unwrap();
        let left = index.search(&queries[0], &acme, 400).unwrap();
        assert_eq!(left.len(), 298);
        assert!(left.iter().all(|h| h.payload.doc_id != "d0"));
    }

    #[test]
    fn passes_the_engine_suite_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shard");
        {
            let index = EdgeIndex::open(&path, 3).unwrap();
            super::super::conformance::run(&index);
        }
        // Reopened: what was left after the suite (one acme chunk, one globex) is there.
        let index = EdgeIndex::open(&path, 3).unwrap();
        assert_eq!(index.count(&SearchFilter::tenant("acme")).unwrap(), 1);
        assert_eq!(index.count(&SearchFilter::tenant("globex")).unwrap(), 1);

        // A snapshot taken while open opens as an index with the same points,
        // and later writes to the original do not reach it.
        let snap = dir.path().join("snap");
        index.snapshot(&snap).unwrap();
        assert!(
            index.snapshot(&snap).is_err(),
            "never over an existing folder"
        );
        index.delete_doc("acme", Source::Kb, "vpn").unwrap();
        assert_eq!(index.count(&SearchFilter::tenant("acme")).unwrap(), 0);
        {
            let copy = EdgeIndex::open(&snap, 3).unwrap();
            assert_eq!(copy.count(&SearchFilter::tenant("acme")).unwrap(), 1);
            let hits = copy
                .search(&[0.0, 1.0, 0.0], &SearchFilter::tenant("acme"), 5)
                .unwrap();
            assert_eq!(hits[0].payload.doc_id, "vpn");
        }
        drop(index);
        assert!(matches!(
            EdgeIndex::open(&path, 4),
            Err(IndexError::Engine(_))
        ));
    }
}
