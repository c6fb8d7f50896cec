//! Brute force over every point: exact top-k by cosine. The reference the
//! approximate engines' recall is measured against; not persistent.

use std::collections::HashMap;
use std::path::Path;
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

/// Lower-cased alphanumeric words.
fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

impl ExactIndex {
    pub fn new(dims: usize) -> Self {
        Self {
            dims,
            points: RwLock::default(),
        }
    }

    fn check(&self, v: &[f32]) -> Result<(), IndexError> {
        super::check_vector(v, self.dims)
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

    fn search_text(
        &self,
        query: &str,
        filter: &SearchFilter,
        k: usize,
    ) -> Result<Vec<Hit>, IndexError> {
        let map = self.points.read().unwrap_or_else(|p| p.into_inner());
        let docs: Vec<(u64, &super::ChunkPayload, Vec<String>)> = map
            .iter()
            .filter(|(_, (_, p))| filter.matches(p))
            .map(|(&id, (_, p))| (id, p, words(&format!("{} {}", p.title, p.text))))
            .collect();
        let n = docs.len() as f32;
        let avg = docs.iter().map(|d| d.2.len()).sum::<usize>() as f32 / n.max(1.0);
        let terms = words(query);
        let (k1, b) = (1.2f32, 0.75f32);
        let mut hits: Vec<Hit> = docs
            .iter()
            .filter_map(|(id, p, w)| {
                let score: f32 = terms
                    .iter()
                    .map(|t| {
                        let df = docs.iter().filter(|d| d.2.contains(t)).count() as f32;
                        let tf = w.iter().filter(|x| *x == t).count() as f32;
                        if tf == 0.0 {
                            return 0.0;
                        }
                        let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                        idf * tf * (k1 + 1.0)
                            / (tf + k1 * (1.0 - b + b * w.len() as f32 / avg.max(1.0)))
                    })
                    .sum();
                (score > 0.0).then(|| Hit {
                    id: *id,
                    score,
                    payload: (*p).clone(),
                })
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
        hits.truncate(k);
        Ok(hits)
    }

    fn vectors(&self, tenant: &str, ids: &[u64]) -> Result<Vec<(u64, Vec<f32>)>, IndexError> {
        let map = self.points.read().unwrap_or_else(|p| p.into_inner());
        Ok(ids
            .iter()
            .filter_map(|id| map.get(id).map(|(v, p)| (id, v, p)))
            .filter(|(_, _, p)| p.tenant == tenant)
            .map(|(id, v, _)| (*id, v.clone()))
            .collect())
    }

    fn count(&self, filter: &SearchFilter) -> Result<usize, IndexError> {
        let map = self.points.read().unwrap_or_else(|p| p.into_inner());
        Ok(map.values().filter(|(_, p)| filter.matches(p)).count())
    }

    fn flush(&self) -> Result<(), IndexError> {
        Ok(())
    }

    /// Writes every point as one JSON line to `dest` (a new file);
    /// `ExactIndex::restore` reads it back.
    fn snapshot(&self, dest: &Path) -> Result<String, IndexError> {
        use std::io::Write;
        let map = self.points.read().unwrap_or_else(|p| p.into_inner());
        let mut out = std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dest)?,
        );
        for (v, p) in map.values() {
            serde_json::to_writer(&mut out, &(v, p)).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        Ok(dest.display().to_string())
    }
}

impl ExactIndex {
    /// An index holding the points of a snapshot file.
    pub fn restore(dims: usize, snapshot: &Path) -> Result<Self, IndexError> {
        use std::io::BufRead;
        let index = Self::new(dims);
        let file = std::io::BufReader::new(std::fs::File::open(snapshot)?);
        for line in file.lines() {
            let (vector, payload): (Vec<f32>, super::ChunkPayload) =
                serde_json::from_str(&line?).map_err(|e| IndexError::Engine(e.to_string()))?;
            index.upsert(&[IndexPoint { vector, payload }])?;
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_the_engine_suite_and_restores_a_snapshot() {
        let index = ExactIndex::new(3);
        super::super::conformance::run(&index);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("snap.jsonl");
        index.snapshot(&file).unwrap();
        assert!(
            index.snapshot(&file).is_err(),
            "never over an existing file"
        );
        let copy = ExactIndex::restore(3, &file).unwrap();
        for tenant in ["acme", "globex"] {
            let f = SearchFilter::tenant(tenant);
            assert_eq!(copy.count(&f).unwrap(), index.count(&f).unwrap());
            assert_eq!(
                copy.search(&[0.0, 1.0, 0.0], &f, 5).unwrap(),
                index.search(&[0.0, 1.0, 0.0], &f, 5).unwrap()
            );
        }
    }
}
