//! The vector index behind KB search and similar tickets: one trait, one
//! payload shape, several engines.
//!
//! - `edge`: qdrant-edge, Qdrant's engine in-process, stored under the data
//!   directory (the embedded default).
//! - `qdrant`: a Qdrant server or cluster through qdrant-client (`QDRANT_URL`),
//!   one collection with a tenant-keyed payload index.
//! - `exact`: brute force over every point, in memory: the reference that the
//!   other engines' recall is measured against, and a fake for tests of
//!   code above the index.
//!
//! Every search is filtered by tenant: the trait takes a `SearchFilter`,
//! whose tenant is not optional.

pub mod edge;
pub mod exact;
pub mod qdrant;
pub mod scan;

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Kb,
    Ticket,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kb => "kb",
            Self::Ticket => "ticket",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Public,
    Internal,
}

/// What every indexed chunk carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkPayload {
    pub tenant: String,
    pub source: Source,
    /// The article's or ticket's id.
    pub doc_id: String,
    /// The chunk's position in its document.
    pub chunk: u32,
    pub title: String,
    pub text: String,
    pub language: String,
    pub visibility: Visibility,
    pub tags: Vec<String>,
    /// Unix seconds.
    pub updated_at: i64,
    /// sha256 of what was embedded: re-indexing skips unchanged chunks.
    pub hash: String,
    /// For tickets: their status and, once solved, the resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<TicketInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketInfo {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IndexPoint {
    pub vector: Vec<f32>,
    pub payload: ChunkPayload,
}

impl IndexPoint {
    /// A stable id from (tenant, source, document, chunk): upserting the same
    /// chunk again replaces it.
    pub fn id(&self) -> u64 {
        point_id(
            &self.payload.tenant,
            self.payload.source,
            &self.payload.doc_id,
            self.payload.chunk,
        )
    }
}

pub fn point_id(tenant: &str, source: Source, doc_id: &str, chunk: u32) -> u64 {
    let mut h = Sha256::new();
    for part in [tenant, source.as_str(), doc_id] {
        h.update(part.as_bytes());
        h.update([0x1f]);
    }
    h.update(chunk.to_le_bytes());
    let d = h.finalize();
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// Which points a search may see. The tenant is always applied.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchFilter {
    pub tenant: String,
    pub source: Option<Source>,
    /// Only these visibilities (empty: any).
    pub visibility: Vec<Visibility>,
    /// At least one of these tags (empty: any).
    pub tags_any: Vec<String>,
    pub language: Option<String>,
    /// Only points updated at or after this Unix time.
    pub updated_since: Option<i64>,
    /// Leave out one document (a ticket looking for others like it).
    pub exclude_doc: Option<String>,
}

impl SearchFilter {
    pub fn tenant(tenant: &str) -> Self {
        Self {
            tenant: tenant.into(),
            ..Self::default()
        }
    }

    /// Whether `p` passes: the reference semantics every engine must match.
    pub fn matches(&self, p: &ChunkPayload) -> bool {
        p.tenant == self.tenant
            && self.source.is_none_or(|s| s == p.source)
            && (self.visibility.is_empty() || self.visibility.contains(&p.visibility))
            && (self.tags_any.is_empty() || self.tags_any.iter().any(|t| p.tags.contains(t)))
            && self.language.as_ref().is_none_or(|l| *l == p.language)
            && self.updated_since.is_none_or(|t| p.updated_at >= t)
            && self.exclude_doc.as_ref().is_none_or(|d| *d != p.doc_id)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub id: u64,
    pub score: f32,
    pub payload: ChunkPayload,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("vector of {got} dimensions; the index holds {want}")]
    Dims { got: usize, want: usize },
    #[error("vector index: {0}")]
    Engine(String),
    #[error("vector index storage: {0}")]
    Io(#[from] std::io::Error),
}

pub trait VectorIndex: Send + Sync {
    /// The engine's name (`edge`, `exact`, `qdrant`).
    fn engine(&self) -> &'static str;
    fn dims(&self) -> usize;
    /// Inserts or replaces points (by their id).
    fn upsert(&self, points: &[IndexPoint]) -> Result<(), IndexError>;
    /// Removes every chunk of one document.
    fn delete_doc(&self, tenant: &str, source: Source, doc_id: &str) -> Result<(), IndexError>;
    /// The `k` points most similar to `vector` (cosine) that pass `filter`.
    fn search(
        &self,
        vector: &[f32],
        filter: &SearchFilter,
        k: usize,
    ) -> Result<Vec<Hit>, IndexError>;
    /// The `k` points that best match `query` by BM25 over title and text.
    fn search_text(
        &self,
        query: &str,
        filter: &SearchFilter,
        k: usize,
    ) -> Result<Vec<Hit>, IndexError>;
    /// The stored vectors (unit length) of these points; ids that do not
    /// exist or belong to another tenant are left out.
    fn vectors(&self, tenant: &str, ids: &[u64]) -> Result<Vec<(u64, Vec<f32>)>, IndexError>;
    /// Points that pass `filter`.
    fn count(&self, filter: &SearchFilter) -> Result<usize, IndexError>;
    /// Makes everything written so far durable.
    fn flush(&self) -> Result<(), IndexError>;
    /// Builds or merges the engine's search structures (HNSW) now, blocking;
    /// true when there was anything to do. Engines without any: a no-op.
    fn optimize(&self) -> Result<bool, IndexError> {
        Ok(false)
    }
    /// Dense and BM25 together: reciprocal rank fusion of the two lists,
    /// each `hybrid_depth(k)` deep.
    fn hybrid(
        &self,
        vector: &[f32],
        query: &str,
        filter: &SearchFilter,
        k: usize,
    ) -> Result<Vec<Hit>, IndexError> {
        let depth = hybrid_depth(k);
        let dense = self.search(vector, filter, depth)?;
        let words = self.search_text(query, filter, depth)?;
        Ok(reciprocal_rank_fusion(&[dense, words], RRF_K, k))
    }
    /// A consistent copy of the whole index, taken while it serves: for the
    /// embedded engine a folder at `dest` that opens as an index; for a
    /// server, a snapshot kept by the server (`dest` unused). Returns where
    /// or what it is.
    fn snapshot(&self, dest: &Path) -> Result<String, IndexError>;
}

/// `v` has the index's dimensions and only finite values.
pub fn check_vector(v: &[f32], dims: usize) -> Result<(), IndexError> {
    if v.len() == dims && v.iter().all(|x| x.is_finite()) {
        Ok(())
    } else {
        Err(IndexError::Dims {
            got: v.len(),
            want: dims,
        })
    }
}

/// The configured index: the embedded shard under `<data_dir>/vectors/edge`,
/// or a Qdrant server's collection.
pub fn open_index(
    settings: &crate::config::Settings,
    dims: usize,
) -> Result<std::sync::Arc<dyn VectorIndex>, IndexError> {
    let v = &settings.vector;
    Ok(match v.engine {
        crate::config::VectorEngine::Edge => {
            let options = edge::EdgeOptions {
                hnsw_ef: v.hnsw_ef,
                exact_scan_max_points: v.exact_scan_max_points,
                ..Default::default()
            };
            let path = settings.data_dir.join("vectors").join("edge");
            std::sync::Arc::new(edge::EdgeIndex::open_with(&path, dims, &options)?)
        }
        crate::config::VectorEngine::Qdrant => {
            let url = v
                .qdrant_url
                .clone()
                .or_else(|| std::env::var("QDRANT_URL").ok())
                .ok_or_else(|| {
                    IndexError::Engine(
                        "vector.engine is qdrant but neither vector.qdrant_url nor QDRANT_URL is set"
                            .into(),
                    )
                })?;
            let mut options = qdrant::QdrantOptions::new(&url, &v.qdrant_collection);
            options.api_key = v
                .qdrant_api_key
                .clone()
                .or_else(|| std::env::var("QDRANT_API_KEY").ok());
            options.hnsw_ef = v.hnsw_ef as u64;
            std::sync::Arc::new(qdrant::QdrantIndex::open(&options, dims)?)
        }
    })
}

/// The usual constant of reciprocal rank fusion.
pub const RRF_K: f32 = 60.0;

/// How deep each list goes before fusion: hits far down one list can still
/// win on agreement.
pub fn hybrid_depth(k: usize) -> usize {
    (k * 5).max(50)
}

/// Reciprocal rank fusion of ranked lists: each hit scores Σ 1 / (k + rank),
/// rank from 1; the usual k is 60. Ties keep the first list's order.
pub fn reciprocal_rank_fusion(lists: &[Vec<Hit>], k: f32, limit: usize) -> Vec<Hit> {
    let mut fused: Vec<(f32, usize, Hit)> = Vec::new();
    let mut order = 0;
    for list in lists {
        for (rank, hit) in list.iter().enumerate() {
            let add = 1.0 / (k + rank as f32 + 1.0);
            match fused.iter_mut().find(|(_, _, h)| h.id == hit.id) {
                Some(entry) => entry.0 += add,
                None => {
                    fused.push((add, order, hit.clone()));
                    order += 1;
                }
            }
        }
    }
    fused.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    fused
        .into_iter()
        .take(limit)
        .map(|(s, _, mut h)| {
            h.score = s;
            h
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod conformance {
    //! The suite every engine passes.

    use super::*;

    pub fn payload(tenant: &str, doc: &str, chunk: u32) -> ChunkPayload {
        ChunkPayload {
            tenant: tenant.into(),
            source: Source::Kb,
            doc_id: doc.into(),
            chunk,
            title: format!("title {doc}"),
            text: format!("text {doc} {chunk}"),
            language: "en".into(),
            visibility: Visibility::Public,
            tags: vec![],
            updated_at: 1_700_000_000,
            hash: String::new(),
            ticket: None,
        }
    }

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    pub fn run(index: &dyn VectorIndex) {
        assert_eq!(index.dims(), 3);
        let mut internal = payload("acme", "vpn", 0);
        internal.visibility = Visibility::Internal;
        internal.tags = vec!["network".into()];
        let points = vec![
            IndexPoint {
                vector: unit(&[1.0, 0.0, 0.0]),
                payload: payload("acme", "printer", 0),
            },
            IndexPoint {
                vector: unit(&[0.9, 0.1, 0.0]),
                payload: payload("acme", "printer", 1),
            },
            IndexPoint {
                vector: unit(&[0.0, 1.0, 0.0]),
                payload: internal,
            },
            IndexPoint {
                vector: unit(&[1.0, 0.05, 0.0]),
                payload: payload("globex", "secret", 0),
            },
        ];
        index.upsert(&points).unwrap();
        let acme = SearchFilter::tenant("acme");
        assert_eq!(index.count(&acme).unwrap(), 3);
        assert_eq!(index.count(&SearchFilter::tenant("globex")).unwrap(), 1);

        // Nearest first, scores are cosines, and never another tenant's point.
        let hits = index.search(&unit(&[1.0, 0.0, 0.0]), &acme, 10).unwrap();
        assert_eq!(hits.len(), 3);
        assert_eq!(hits[0].payload.doc_id, "printer");
        assert_eq!(hits[0].payload.chunk, 0);
        assert!((hits[0].score - 1.0).abs() < 1e-4, "{}", hits[0].score);
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        assert!(hits.iter().all(|h| h.payload.tenant == "acme"));
        assert_eq!(hits[0].payload, points[0].payload, "payload round-trips");

        // Filters: visibility, tags, exclusion, k.
        let public = SearchFilter {
            visibility: vec![Visibility::Public],
            ..acme.clone()
        };
        assert!(index
            .search(&unit(&[0.0, 1.0, 0.0]), &public, 10)
            .unwrap()
            .iter()
            .all(|h| h.payload.doc_id == "printer"));
        let tagged = SearchFilter {
            tags_any: vec!["network".into()],
            ..acme.clone()
        };
        let t = index.search(&unit(&[1.0, 0.0, 0.0]), &tagged, 10).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].payload.doc_id, "vpn");
        let others = SearchFilter {
            exclude_doc: Some("printer".into()),
            ..acme.clone()
        };
        assert_eq!(index.count(&others).unwrap(), 1);
        assert_eq!(
            index
                .search(&unit(&[1.0, 0.0, 0.0]), &acme, 1)
                .unwrap()
                .len(),
            1
        );

        // Stored vectors, by id, only the tenant's own.
        let ids: Vec<u64> = points.iter().map(IndexPoint::id).collect();
        let got = index.vectors("acme", &ids).unwrap();
        assert_eq!(got.len(), 3, "the globex point is left out");
        for (id, v) in &got {
            let p = points.iter().find(|p| p.id() == *id).unwrap();
            let cos: f32 = v.iter().zip(&p.vector).map(|(a, b)| a * b).sum();
            assert!((cos - 1.0).abs() < 1e-4, "{cos}");
        }
        assert!(index.vectors("acme", &[12345]).unwrap().is_empty());

        // Hybrid: the dense list favours the printer, the word "vpn" only the
        // vpn chunk; fused, the chunk both lists hold wins.
        let h = index
            .hybrid(&unit(&[1.0, 0.0, 0.0]), "vpn", &acme, 10)
            .unwrap();
        assert_eq!(h.len(), 3, "{h:?}");
        assert_eq!(h[0].payload.doc_id, "vpn");
        assert!(h.iter().all(|x| x.payload.tenant == "acme"));

        // Upserting the same chunk replaces it; deleting a document removes its chunks only.
        let mut moved = points[0].clone();
        moved.vector = unit(&[0.0, 0.0, 1.0]);
        index.upsert(&[moved]).unwrap();
        assert_eq!(index.count(&acme).unwrap(), 3);
        let top = index.search(&unit(&[0.0, 0.0, 1.0]), &acme, 1).unwrap();
        assert_eq!(
            (top[0].payload.doc_id.as_str(), top[0].payload.chunk),
            ("printer", 0)
        );
        index.delete_doc("acme", Source::Kb, "printer").unwrap();
        assert_eq!(index.count(&acme).unwrap(), 1);
        assert_eq!(
            index.count(&SearchFilter::tenant("globex")).unwrap(),
            1,
            "other tenant untouched"
        );

        // BM25: the word decides, not the vector.
        let t = index.search_text("vpn", &acme, 10).unwrap();
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!(t[0].payload.doc_id, "vpn");
        assert!(t[0].score > 0.0);
        assert!(index
            .search_text("vpn", &SearchFilter::tenant("globex"), 10)
            .unwrap()
            .is_empty());
        assert!(index.search_text("zzzz", &acme, 10).unwrap().is_empty());

        // Wrong dimensions are an error, not a panic.
        assert!(matches!(
            index.upsert(&[IndexPoint {
                vector: vec![1.0, 0.0],
                payload: payload("acme", "x", 0)
            }]),
            Err(IndexError::Dims { got: 2, want: 3 })
        ));
        assert!(index.search(&[1.0], &acme, 3).is_err());
        index.flush().unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: u64) -> Hit {
        Hit {
            id,
            score: 0.0,
            payload: conformance::payload("t", &id.to_string(), 0),
        }
    }

    #[test]
    fn rrf_rewards_agreement_between_lists() {
        let dense = vec![hit(1), hit(2), hit(3)];
        let bm25 = vec![hit(3), hit(4), hit(1)];
        let fused = reciprocal_rank_fusion(&[dense, bm25], 60.0, 10);
        let ids: Vec<u64> = fused.iter().map(|h| h.id).collect();
        assert_eq!(ids, vec![1, 3, 2, 4]);
        assert!((fused[0].score - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-6);
        assert_eq!(reciprocal_rank_fusion(&[], 60.0, 5).len(), 0);
    }

    #[test]
    fn point_ids_are_stable_and_distinct() {
        assert_eq!(
            point_id("a", Source::Kb, "d", 0),
            point_id("a", Source::Kb, "d", 0)
        );
        assert_ne!(
            point_id("a", Source::Kb, "d", 0),
            point_id("b", Source::Kb, "d", 0)
        );
        assert_ne!(
            point_id("a", Source::Kb, "d", 0),
            point_id("a", Source::Ticket, "d", 0)
        );
        assert_ne!(
            point_id("a", Source::Kb, "d", 0),
            point_id("a", Source::Kb, "d", 1)
        );
    }
}
