//! A Qdrant server or cluster (`QDRANT_URL`) through qdrant-client (gRPC).
//!
//! One collection holds every tenant, Qdrant's multitenancy pattern: the
//! `tenant` payload index is marked `is_tenant` (points stored by tenant)
//! and the HNSW graph is built per tenant (`payload_m` 16, global `m` 0), so
//! a tenant's search walks only its own graph. The vectors are the embedded
//! engine's: a dense cosine vector with int8 copies, and BM25 term weights as
//! a sparse vector (the same tokenizer, qdrant-edge's) whose IDF the server
//! applies. The trait is blocking; the client runs on a small runtime of its
//! own, so calls work from any thread.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use qdrant_client::qdrant::point_id::PointIdOptions;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeletePointsBuilder, Distance, FieldType, Filter, GetPointsBuilder, HnswConfigDiffBuilder,
    KeywordIndexParamsBuilder, Modifier, NamedVectors, PointStruct,
    QuantizationSearchParamsBuilder, Query, QueryPointsBuilder, Range, ScalarQuantizationBuilder,
    ScoredPoint, SearchParamsBuilder, SparseVectorParamsBuilder, SparseVectorsConfigBuilder,
    UpsertPointsBuilder, VectorInput, VectorParamsBuilder, VectorsConfigBuilder,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use qdrant_edge::bm25_embed::{EdgeBm25, EdgeBm25Config};

use super::{ChunkPayload, Hit, IndexError, IndexPoint, SearchFilter, Source, VectorIndex};

const VECTOR: &str = "dense";
const SPARSE: &str = "bm25";
/// Candidates taken from the int8 scores per result, rescored with the originals.
const OVERSAMPLING: f64 = 4.0;

/// Where the server is and how to use it.
#[derive(Debug, Clone)]
pub struct QdrantOptions {
    /// gRPC address, e.g. `http://localhost:6334`.
    pub url: String,
    pub api_key: Option<String>,
    pub collection: String,
    /// The HNSW search beam.
    pub hnsw_ef: u64,
    /// BM25's expected document length in words.
    pub bm25_avg_len: f64,
    /// Per request.
    pub timeout: Duration,
}

impl QdrantOptions {
    pub fn new(url: &str, collection: &str) -> Self {
        Self {
            url: url.into(),
            api_key: None,
            collection: collection.into(),
            hnsw_ef: super::edge::DEFAULT_HNSW_EF as u64,
            bm25_avg_len: 150.0,
            timeout: Duration::from_secs(10),
        }
    }
}

pub struct QdrantIndex {
    client: Qdrant,
    collection: String,
    dims: usize,
    hnsw_ef: u64,
    bm25: EdgeBm25,
    runtime: tokio::runtime::Runtime,
}

fn engine(e: impl std::fmt::Display) -> IndexError {
    IndexError::Engine(e.to_string())
}

/// The server's filter for a `SearchFilter`: same semantics as `matches`.
fn filter(f: &SearchFilter) -> Filter {
    let mut must = vec![Condition::matches("tenant", f.tenant.clone())];
    if let Some(s) = f.source {
        must.push(Condition::matches("source", s.as_str().to_string()));
    }
    if !f.visibility.is_empty() {
        let v: Vec<String> = f
            .visibility
            .iter()
            .map(|v| match v {
                super::Visibility::Public => "public".to_string(),
                super::Visibility::Internal => "internal".to_string(),
            })
            .collect();
        must.push(Condition::matches("visibility", v));
    }
    if !f.tags_any.is_empty() {
        must.push(Condition::matches("tags", f.tags_any.clone()));
    }
    if let Some(l) = &f.language {
        must.push(Condition::matches("language", l.clone()));
    }
    if let Some(t) = f.updated_since {
        must.push(Condition::range(
            "updated_at",
            Range {
                gte: Some(t as f64),
                ..Default::default()
            },
        ));
    }
    let must_not = match &f.exclude_doc {
        Some(d) => vec![Condition::matches("doc_id", d.clone())],
        None => vec![],
    };
    Filter {
        must,
        must_not,
        ..Default::default()
    }
}

impl QdrantIndex {
    /// Connects, and creates the collection (with its payload indexes) when
    /// it does not exist; an existing one must hold `dims`-dimensional
    /// vectors and BM25.
    pub fn open(options: &QdrantOptions, dims: usize) -> Result<Self, IndexError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("qdrant-client")
            .enable_all()
            .build()?;
        let mut builder = Qdrant::from_url(&options.url)
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .skip_compatibility_check();
        if let Some(key) = &options.api_key {
            builder = builder.api_key(key.clone());
        }
        let client = builder.build().map_err(engine)?;
        let bm25 = EdgeBm25::new(EdgeBm25Config {
            avg_len: ordered_float::NotNan::new(options.bm25_avg_len.max(1.0)).map_err(engine)?,
            ..Default::default()
        })
        .map_err(engine)?;
        let index = Self {
            client,
            collection: options.collection.clone(),
            dims,
            hnsw_ef: options.hnsw_ef.max(1),
            bm25,
            runtime,
        };
        index.ensure_collection()?;
        Ok(index)
    }

    /// Runs `fut` on the client's runtime and waits for it.
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, QdrantError>> + Send + 'static,
    ) -> Result<T, IndexError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| IndexError::Engine("the Qdrant request was dropped".into()))?
            .map_err(engine)
    }

    fn ensure_collection(&self) -> Result<(), IndexError> {
        let (client, name) = (self.client.clone(), self.collection.clone());
        let exists = self.run(async move { client.collection_exists(name).await })?;
        if exists {
            return self.check_collection();
        }
        let mut vectors = VectorsConfigBuilder::default();
        vectors.add_named_vector_params(
            VECTOR,
            VectorParamsBuilder::new(self.dims as u64, Distance::Cosine),
        );
        let mut sparse = SparseVectorsConfigBuilder::default();
        sparse.add_named_vector_params(
            SPARSE,
            SparseVectorParamsBuilder::default().modifier(Modifier::Idf),
        );
        let create = CreateCollectionBuilder::new(&self.collection)
            .vectors_config(vectors)
            .sparse_vectors_config(sparse)
            // A graph per tenant, none across tenants (Qdrant's multitenancy guide).
            .hnsw_config(HnswConfigDiffBuilder::default().m(0).payload_m(16))
            .quantization_config(
                ScalarQuantizationBuilder::default()
                    .quantile(0.99)
                    .always_ram(true),
            );
        let client = self.client.clone();
        self.run(async move { client.create_collection(create).await })?;
        let fields = [
            ("source", FieldType::Keyword),
            ("doc_id", FieldType::Keyword),
            ("visibility", FieldType::Keyword),
            ("tags", FieldType::Keyword),
            ("language", FieldType::Keyword),
            ("updated_at", FieldType::Integer),
        ];
        let tenant =
            CreateFieldIndexCollectionBuilder::new(&self.collection, "tenant", FieldType::Keyword)
                .field_index_params(KeywordIndexParamsBuilder::default().is_tenant(true))
                .wait(true);
        let client = self.client.clone();
        self.run(async move { client.create_field_index(tenant).await })?;
        for (field, kind) in fields {
            let req =
                CreateFieldIndexCollectionBuilder::new(&self.collection, field, kind).wait(true);
            let client = self.client.clone();
            self.run(async move { client.create_field_index(req).await })?;
        }
        Ok(())
    }

    fn check_collection(&self) -> Result<(), IndexError> {
        use qdrant_client::qdrant::vectors_config::Config;
        let (client, name) = (self.client.clone(), self.collection.clone());
        let info = self.run(async move { client.collection_info(name).await })?;
        let params = info.result.and_then(|r| r.config).and_then(|c| c.params);
        let size = params
            .as_ref()
            .and_then(|p| p.vectors_config.as_ref())
            .and_then(|v| match &v.config {
                Some(Config::ParamsMap(m)) => m.map.get(VECTOR).map(|p| p.size as usize),
                _ => None,
            });
        let has_bm25 = params
            .as_ref()
            .and_then(|p| p.sparse_vectors_config.as_ref())
            .is_some_and(|s| s.map.contains_key(SPARSE));
        if size != Some(self.dims) || !has_bm25 {
            return Err(IndexError::Engine(format!(
                "collection {} holds {size:?}-dimensional vectors (BM25: {has_bm25}), the encoder \
                 makes {}: use another collection",
                self.collection, self.dims
            )));
        }
        Ok(())
    }

    /// Deletes the whole collection (tests clean up with it).
    pub fn drop_collection(&self) -> Result<(), IndexError> {
        let (client, name) = (self.client.clone(), self.collection.clone());
        self.run(async move { client.delete_collection(name).await })
            .map(|_| ())
    }

    fn check(&self, v: &[f32]) -> Result<(), IndexError> {
        super::check_vector(v, self.dims)
    }

    fn query(
        &self,
        query: VectorInput,
        using: &str,
        f: &SearchFilter,
        k: usize,
    ) -> Result<Vec<Hit>, IndexError> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let req = QueryPointsBuilder::new(&self.collection)
            .query(Query::new_nearest(query))
            .using(using)
            .filter(filter(f))
            .limit(k as u64)
            .with_payload(true)
            .params(
                SearchParamsBuilder::default()
                    .hnsw_ef(self.hnsw_ef.max(k as u64))
                    .quantization(
                        QuantizationSearchParamsBuilder::default()
                            .rescore(true)
                            .oversampling(OVERSAMPLING),
                    ),
            );
        let client = self.client.clone();
        let points = self.run(async move { client.query(req).await })?.result;
        points.into_iter().map(hit).collect()
    }
}

fn hit(p: ScoredPoint) -> Result<Hit, IndexError> {
    let id = match p.id.and_then(|i| i.point_id_options) {
        Some(PointIdOptions::Num(n)) => n,
        other => return Err(IndexError::Engine(format!("unexpected point id {other:?}"))),
    };
    let json = serde_json::Value::from(Payload::from(p.payload));
    let payload: ChunkPayload = serde_json::from_value(json).map_err(engine)?;
    Ok(Hit {
        id,
        score: p.score,
        payload,
    })
}

impl VectorIndex for QdrantIndex {
    fn engine(&self) -> &'static str {
        "qdrant"
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
                let payload = Payload::try_from(serde_json::to_value(&p.payload).map_err(engine)?)
                    .map_err(engine)?;
                let words = self
                    .bm25
                    .embed_document(&format!("{} {}", p.payload.title, p.payload.text));
                let vectors = NamedVectors::default()
                    .add_vector(VECTOR, p.vector.clone())
                    .add_vector(
                        SPARSE,
                        qdrant_client::qdrant::Vector::new_sparse(words.indices, words.values),
                    );
                Ok(PointStruct::new(p.id(), vectors, payload))
            })
            .collect::<Result<Vec<_>, IndexError>>()?;
        let req = UpsertPointsBuilder::new(&self.collection, list).wait(true);
        let client = self.client.clone();
        self.run(async move { client.upsert_points(req).await })
            .map(|_| ())
    }

    fn delete_doc(&self, tenant: &str, source: Source, doc_id: &str) -> Result<(), IndexError> {
        let f = Filter::must([
            Condition::matches("tenant", tenant.to_string()),
            Condition::matches("source", source.as_str().to_string()),
            Condition::matches("doc_id", doc_id.to_string()),
        ]);
        let req = DeletePointsBuilder::new(&self.collection)
            .points(f)
            .wait(true);
        let client = self.client.clone();
        self.run(async move { client.delete_points(req).await })
            .map(|_| ())
    }

    fn search(&self, vector: &[f32], f: &SearchFilter, k: usize) -> Result<Vec<Hit>, IndexError> {
        self.check(vector)?;
        self.query(VectorInput::new_dense(vector.to_vec()), VECTOR, f, k)
    }

    fn search_text(&self, query: &str, f: &SearchFilter, k: usize) -> Result<Vec<Hit>, IndexError> {
        let q = self.bm25.embed_query(query);
        if q.indices.is_empty() {
            return Ok(Vec::new());
        }
        self.query(VectorInput::new_sparse(q.indices, q.values), SPARSE, f, k)
    }

    fn vectors(&self, tenant: &str, ids: &[u64]) -> Result<Vec<(u64, Vec<f32>)>, IndexError> {
        let point_ids: Vec<qdrant_client::qdrant::PointId> =
            ids.iter().map(|&i| i.into()).collect();
        let req = GetPointsBuilder::new(&self.collection, point_ids)
            .with_payload(true)
            .with_vectors(true);
        let client = self.client.clone();
        let points = self
            .run(async move { client.get_points(req).await })?
            .result;
        let mut out = Vec::with_capacity(points.len());
        for p in points {
            let Some(PointIdOptions::Num(id)) = p.id.and_then(|i| i.point_id_options) else {
                continue;
            };
            let owner = p.payload.get("tenant").and_then(|v| match &v.kind {
                Some(qdrant_client::qdrant::value::Kind::StringValue(s)) => Some(s.as_str()),
                _ => None,
            });
            if owner != Some(tenant) {
                continue;
            }
            use qdrant_client::qdrant::vector_output::Vector as Output;
            if let Some(Output::Dense(v)) = p.vectors.and_then(|v| v.get_vector_by_name(VECTOR)) {
                out.push((id, v.data));
            }
        }
        Ok(out)
    }

    fn count(&self, f: &SearchFilter) -> Result<usize, IndexError> {
        let req = CountPointsBuilder::new(&self.collection)
            .filter(filter(f))
            .exact(true);
        let client = self.client.clone();
        let r = self.run(async move { client.count(req).await })?;
        Ok(r.result.map_or(0, |c| c.count as usize))
    }

    /// Writes are acknowledged once applied (`wait`): nothing to do.
    fn flush(&self) -> Result<(), IndexError> {
        Ok(())
    }

    /// A snapshot of the collection, kept by the server (per node); returns
    /// its name. `dest` is unused: the server's snapshot API downloads it.
    fn snapshot(&self, _dest: &Path) -> Result<String, IndexError> {
        let (client, name) = (self.client.clone(), self.collection.clone());
        let r = self.run(async move { client.create_snapshot(name).await })?;
        r.snapshot_description
            .map(|d| d.name)
            .ok_or_else(|| IndexError::Engine("the server described no snapshot".into()))
    }
}

#[cfg(test)]
mod tests {
    //! Against a real server: run when `QDRANT_URL` is set (scripts/test.sh
    //! then includes them), reported as not run otherwise.

    use super::*;

    fn server() -> QdrantOptions {
        let url = std::env::var("QDRANT_URL")
            .expect("QDRANT_URL must name a Qdrant server (gRPC, e.g. http://localhost:6334)");
        let mut o = QdrantOptions::new(&url, &format!("helpdesk_test_{}", std::process::id()));
        o.api_key = std::env::var("QDRANT_API_KEY").ok();
        o
    }

    #[test]
    #[ignore = "needs a Qdrant server: set QDRANT_URL"]
    fn passes_the_engine_suite_on_a_server() {
        let options = server();
        let index = QdrantIndex::open(&options, 3).unwrap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            super::super::conformance::run(&index);
            // Reopened: the points are there; other dimensions are refused.
            let again = QdrantIndex::open(&options, 3).unwrap();
            assert_eq!(again.count(&SearchFilter::tenant("acme")).unwrap(), 1);
            assert!(QdrantIndex::open(&options, 4).is_err());
            let name = index.snapshot(Path::new("unused")).unwrap();
            assert!(name.contains(&options.collection), "{name}");
        }));
        index.drop_collection().unwrap();
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    }

    #[test]
    fn filters_carry_every_condition_and_always_the_tenant() {
        let f = filter(&SearchFilter {
            source: Some(Source::Kb),
            visibility: vec![super::super::Visibility::Public],
            tags_any: vec!["vpn".into()],
            language: Some("en".into()),
            updated_since: Some(5),
            exclude_doc: Some("d".into()),
            ..SearchFilter::tenant("acme")
        });
        let keys: Vec<String> = f.must.iter().map(|c| format!("{c:?}")).collect();
        assert_eq!(keys.len(), 6);
        for (i, field) in [
            "tenant",
            "source",
            "visibility",
            "tags",
            "language",
            "updated_at",
        ]
        .iter()
        .enumerate()
        {
            assert!(
                keys[i].contains(&format!("key: \"{field}\"")),
                "{}",
                keys[i]
            );
        }
        assert!(keys[0].contains("acme"));
        assert_eq!(f.must_not.len(), 1);
        assert_eq!(filter(&SearchFilter::tenant("x")).must.len(), 1);
    }
}
