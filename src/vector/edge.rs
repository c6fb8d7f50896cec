//! qdrant-edge: Qdrant's engine in-process, one shard in a folder under the
//! data directory, surviving restarts (its write-ahead log replays on load).
//!
//! The shard's `flush` takes its own locks with `try_lock` and panics when
//! they are held, so every call goes through one `RwLock`: reads and writes
//! share it, `flush` (and drop) take it alone.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use ordered_float::OrderedFloat;
use qdrant_edge::{
    Condition, CountRequest, Distance, EdgeConfigBuilder, EdgeShard, EdgeVectorParamsBuilder,
    FieldCondition, Filter, Match, MatchValue, NamedQuery, PointId, PointInsertOperations,
    PointOperations, PointStruct, QueryEnum, Range, SearchRequest, UpdateOperation, ValueVariants,
    WithPayloadInterface, WithVector,
};

use super::{ChunkPayload, Hit, IndexError, IndexPoint, SearchFilter, Source, VectorIndex};

const VECTOR: &str = "dense";

pub struct EdgeIndex {
    path: PathBuf,
    dims: usize,
    shard: RwLock<EdgeShard>,
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
    /// Opens the shard in `path`, creating it (cosine, `dims`) when absent.
    pub fn open(path: &Path, dims: usize) -> Result<Self, IndexError> {
        std::fs::create_dir_all(path)?;
        let config = EdgeConfigBuilder::new()
            .on_disk_payload(true)
            .vector(
                VECTOR,
                EdgeVectorParamsBuilder::new(dims, Distance::Cosine).build(),
            )
            .build();
        let existing = path.join("edge_config.json").is_file();
        let shard = if existing {
            let shard = EdgeShard::load(path, None).map_err(engine)?;
            let have = shard.config().vectors.get(VECTOR).map(|v| v.size);
            if have != Some(dims) {
                return Err(IndexError::Engine(format!(
                    "the index in {} holds {have:?}-dimensional vectors, the encoder makes {dims}: \
                     move it aside to rebuild",
                    path.display()
                )));
            }
            shard
        } else {
            EdgeShard::new(path, config).map_err(engine)?
        };
        Ok(Self {
            path: path.to_path_buf(),
            dims,
            shard: RwLock::new(shard),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check(&self, v: &[f32]) -> Result<(), IndexError> {
        if v.len() == self.dims && v.iter().all(|x| x.is_finite()) {
            Ok(())
        } else {
            Err(IndexError::Dims {
                got: v.len(),
                want: self.dims,
            })
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, EdgeShard> {
        self.shard.read().unwrap_or_else(|p| p.into_inner())
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
                let vectors = qdrant_edge::Vectors::new_named([(VECTOR, p.vector.clone())]);
                Ok(PointStruct::new(p.id(), vectors, payload).into())
            })
            .collect::<Result<Vec<_>, IndexError>>()?;
        self.read()
            .update(UpdateOperation::PointOperation(
                PointOperations::UpsertPoints(PointInsertOperations::PointsList(list)),
            ))
            .map_err(engine)
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
            .map_err(engine)
    }

    fn search(&self, vector: &[f32], f: &SearchFilter, k: usize) -> Result<Vec<Hit>, IndexError> {
        self.check(vector)?;
        if k == 0 {
            return Ok(Vec::new());
        }
        let points = self
            .read()
            .search(SearchRequest {
                query: QueryEnum::Nearest(NamedQuery {
                    query: vector.to_vec().into(),
                    using: Some(VECTOR.into()),
                }),
                filter: Some(filter(f)?),
                params: None,
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

    fn count(&self, f: &SearchFilter) -> Result<usize, IndexError> {
        self.read()
            .count(CountRequest {
                filter: Some(filter(f)?),
                exact: true,
            })
            .map_err(engine)
    }

    fn flush(&self) -> Result<(), IndexError> {
        let shard = self.shard.write().unwrap_or_else(|p| p.into_inner());
        shard.flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        drop(index);
        assert!(matches!(
            EdgeIndex::open(&path, 4),
            Err(IndexError::Engine(_))
        ));
    }
}
