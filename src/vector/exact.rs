//! Brute force over every point: exact top-k by cosine. The reference the
//! approximate engines' recall is measured against; not persistent.

use std::collections::HashMap;
use std::sync::RwLock;

use super::{Hit, IndexError, IndexPoint, SearchFilter, Source, VectorIndex};

pub struct ExactIndex {
    dims: usize,
    points: RwLock<HashMap<u64, (Vec<f32>, super::ChunkPayload)>>,
}

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter().map(|x| x / n).collect()
}

impl ExactIndex {
    pub fn new(dims: usize) -> Self {
        Self {
            dims,
            points: RwLock::default(),
        }
    }

    fn check(&self, v: &[f32]) -> Result<(), IndexError> {
        if v.len() == self.dims {
            Ok(())
        } else {
            Err(IndexError::Dims {
                got: v.len(),
                want: self.dims,
            })
        }
    }
}

impl VectorIndex for ExactIndex {
    fn engine(&self) -> &'static str {
        "exact"
    }

    fn dims(&self) -> usize {
        self.dims
    }

    fn upsert(&self, points: &[IndexPoint]) -> Result<(), IndexError> {
        points.iter().try_for_each(|p| self.check(&p.vector))?;
        let mut map = self.points.write().unwrap_or_else(|p| p.into_inner());
        for p in points {
            map.insert(p.id(), (unit(&p.vector), p.payload.clone()));
        }
        Ok(())
    }

    fn delete_doc(&self, tenant: &str, source: Source, doc_id: &str) -> Result<(), IndexError> {
        let mut map = self.points.write().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (_, p)| !(p.tenant == tenant && p.source == source && p.doc_id == doc_id));
        Ok(())
    }

    fn search(
        &self,
        vector: &[f32],
        filter: &SearchFilter,
        k: usize,
    ) -> Result<Vec<Hit>, IndexError> {
        self.check(vector)?;
        let q = unit(vector);
        let map = self.points.read().unwrap_or_else(|p| p.into_inner());
        let mut hits: Vec<Hit> = map
            .iter()
            .filter(|(_, (_, p))| filter.matches(p))
            .map(|(&id, (v, p))| Hit {
                id,
                score: v.iter().zip(&q).map(|(a, b)| a * b).sum(),
                payload: p.clone(),
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
        hits.truncate(k);
        Ok(hits)
    }

    fn count(&self, filter: &SearchFilter) -> Result<usize, IndexError> {
        let map = self.points.read().unwrap_or_else(|p| p.into_inner());
        Ok(map.values().filter(|(_, p)| filter.matches(p)).count())
    }

    fn flush(&self) -> Result<(), IndexError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passes_the_engine_suite() {
        super::super::conformance::run(&super::ExactIndex::new(3));
    }
}
