//! Label propagation over unlabelled texts (Zhou et al. 2004, "Learning with
//! local and global consistency"): a tenant has a few labelled tickets and
//! many more without labels. The labels spread along a k-nearest-neighbour
//! graph of all of them, so a cluster of similar tickets takes the label of
//! the labelled ones it is connected to, even where a head trained on the
//! labelled few would draw its boundary through the cluster.
//!
//! `F ← α·S·F + (1 − α)·Y`, with `S = D^-½ W D^-½` the normalised graph and
//! `Y` the one-hot labels of the labelled nodes (and, for unlabelled nodes,
//! `prior_weight` × a head's probabilities when one is given).

use candle_core::{Device, Tensor};

use super::heads::argmax;

#[derive(Debug, Clone, serde::Serialize)]
pub struct PropagationConfig {
    /// Neighbours per node (the graph is then made symmetric).
    pub k: usize,
    /// Share of a node's score that comes from its neighbours at each step.
    pub alpha: f32,
    pub steps: usize,
    /// Weight of the head's probabilities as the unlabelled nodes' own
    /// starting scores (0 = the graph alone).
    pub prior_weight: f32,
}

impl Default for PropagationConfig {
    fn default() -> Self {
        Self {
            k: 10,
            alpha: 0.9,
            steps: 20,
            prior_weight: 0.3,
        }
    }
}

/// Labels of the unlabelled nodes, in their order.
#[derive(Debug, Clone)]
pub struct Propagated {
    /// `None` for a node that no label reached (no edges and no prior).
    pub targets: Vec<Option<usize>>,
    /// The winning label's share of the node's score.
    pub confidence: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum PropagationError {
    #[error("{0} vectors have {1} dimensions, expected {2}")]
    Dims(&'static str, usize, usize),
    #[error("{0} labelled vectors but {1} labels")]
    Mismatch(usize, usize),
    #[error("label index {0} is out of range for {1} labels")]
    LabelIndex(usize, usize),
    #[error("{0} prior rows for {1} unlabelled vectors, or a row not {2} long")]
    Prior(usize, usize, usize),
    #[error("propagation: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Rows of similarities computed at once: 512 × n floats.
const CHUNK: usize = 512;

/// The `k` most similar other rows of each row of `vectors` by dot product
/// (cosine for unit vectors), as (index, similarity), most similar first.
pub fn nearest_neighbours(
    vectors: &[Vec<f32>],
    k: usize,
) -> candle_core::Result<Vec<Vec<(usize, f32)>>> {
    let n = vectors.len();
    let dims = vectors.first().map_or(0, Vec::len);
    if n == 0 || dims == 0 || k == 0 {
        return Ok(vec![Vec::new(); n]);
    }
    let flat: Vec<f32> = vectors.iter().flatten().copied().collect();
    let x = Tensor::from_vec(flat, (n, dims), &Device::Cpu)?;
    let xt = x.t()?.contiguous()?;
    let by_similarity = |a: &(usize, f32), b: &(usize, f32)| b.1.total_cmp(&a.1);
    let mut out = Vec::with_capacity(n);
    // One row's candidates at a time (n of them); each row keeps only its k.
    let mut row_buf: Vec<(usize, f32)> = Vec::with_capacity(n);
    for start in (0..n).step_by(CHUNK) {
        let len = CHUNK.min(n - start);
        let sims: Vec<Vec<f32>> = x.narrow(0, start, len)?.matmul(&xt)?.to_vec2()?;
        for (r, row) in sims.into_iter().enumerate() {
            let me = start + r;
            row_buf.clear();
            row_buf.extend(row.into_iter().enumerate().filter(|&(j, _)| j != me));
            if row_buf.len() > k {
                row_buf.select_nth_unstable_by(k - 1, by_similarity);
            }
            let mut near = row_buf[..k.min(row_buf.len())].to_vec();
            near.sort_by(by_similarity);
            out.push(near);
        }
    }
    Ok(out)
}

/// Spreads the labels `targets` of `labelled` over `unlabelled` (unit
/// vectors of the same encoder); `prior`, when given, holds a head's
/// probabilities for each unlabelled vector.
pub fn propagate(
    labelled: &[Vec<f32>],
    targets: &[usize],
    classes: usize,
    unlabelled: &[Vec<f32>],
    prior: Option<&[Vec<f32>]>,
    cfg: &PropagationConfig,
) -> Result<Propagated, PropagationError> {
    if labelled.len() != targets.len() {
        return Err(PropagationError::Mismatch(labelled.len(), targets.len()));
    }
    if let Some(&bad) = targets.iter().find(|&&t| t >= classes) {
        return Err(PropagationError::LabelIndex(bad, classes));
    }
    let dims = labelled.first().map_or(0, Vec::len);
    for (what, set) in [("labelled", labelled), ("unlabelled", unlabelled)] {
        if let Some(v) = set.iter().find(|v| v.len() != dims) {
            return Err(PropagationError::Dims(what, v.len(), dims));
        }
    }
    if let Some(p) = prior {
        if p.len() != unlabelled.len() || p.iter().any(|r| r.len() != classes) {
            return Err(PropagationError::Prior(p.len(), unlabelled.len(), classes));
        }
    }
    let m = labelled.len();
    let nodes: Vec<Vec<f32>> = labelled.iter().chain(unlabelled).cloned().collect();
    let n = nodes.len();

    // The symmetric graph: an edge where either end is among the other's k
    // nearest, weighted by the (non-negative) similarity.
    let mut edges: Vec<Vec<(usize, f32)>> = vec![Vec::new(); n];
    for (i, near) in nearest_neighbours(&nodes, cfg.k)?.into_iter().enumerate() {
        for (j, s) in near {
            let w = s.max(0.0);
            if w > 0.0 {
                edges[i].push((j, w));
                edges[j].push((i, w));
            }
        }
    }
    for e in &mut edges {
        e.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
        e.dedup_by_key(|x| x.0);
    }
    let degree: Vec<f32> = edges.iter().map(|e| e.iter().map(|x| x.1).sum()).collect();
    let norm: Vec<Vec<(usize, f32)>> = edges
        .iter()
        .enumerate()
        .map(|(i, e)| {
            e.iter()
                .map(|&(j, w)| (j, w / (degree[i] * degree[j]).sqrt()))
                .collect()
        })
        .collect();

    let mut start = vec![0f32; n * classes];
    for (i, &t) in targets.iter().enumerate() {
        start[i * classes + t] = 1.0;
    }
    if let Some(p) = prior {
        for (u, row) in p.iter().enumerate() {
            let at = (m + u) * classes;
            for (s, &q) in start[at..at + classes].iter_mut().zip(row) {
                *s = cfg.prior_weight * q;
            }
        }
    }
    let mut f = start.clone();
    let mut next = vec![0f32; n * classes];
    for _ in 0..cfg.steps {
        for (i, out) in next.chunks_mut(classes).enumerate() {
            let own = &start[i * classes..(i + 1) * classes];
            out.iter_mut()
                .zip(own)
                .for_each(|(o, y)| *o = (1.0 - cfg.alpha) * y);
            for &(j, s) in &norm[i] {
                let from = &f[j * classes..(j + 1) * classes];
                out.iter_mut()
                    .zip(from)
                    .for_each(|(o, x)| *o += cfg.alpha * s * x);
            }
        }
        std::mem::swap(&mut f, &mut next);
    }

    let (mut labels, mut confidence) = (Vec::new(), Vec::new());
    for row in f[m * classes..].chunks(classes) {
        let total: f32 = row.iter().sum();
        let best = argmax(row);
        if total > 0.0 {
            labels.push(Some(best));
            confidence.push(row[best] / total);
        } else {
            labels.push(None);
            confidence.push(0.0);
        }
    }
    Ok(Propagated {
        targets: labels,
        confidence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unit vector at `deg` degrees on the circle.
    fn at(deg: f32) -> Vec<f32> {
        let r = deg.to_radians();
        vec![r.cos(), r.sin()]
    }

    #[test]
    fn neighbours_are_the_most_similar_others() {
        let v: Vec<Vec<f32>> = [0.0, 10.0, 30.0, 180.0].map(at).to_vec();
        let nn = nearest_neighbours(&v, 2).unwrap();
        let ids = |i: usize| nn[i].iter().map(|x| x.0).collect::<Vec<_>>();
        assert_eq!(ids(0), vec![1, 2]);
        assert_eq!(ids(2), vec![1, 0]);
        assert_eq!(ids(3), vec![2, 1]);
        assert!((nn[0][0].1 - 10f32.to_radians().cos()).abs() < 1e-6);
        // More than the others there are: all of them.
        assert_eq!(nearest_neighbours(&v, 9).unwrap()[0].len(), 3);
    }

    /// Two arcs of the circle, 2° apart within an arc and 20° between them;
    /// one labelled point in each. A point 110° along the first arc is
    /// nearer to the second arc's labelled point (80° away) than to its own:
    /// the graph carries the label along the arc where nearness would not.
    #[test]
    fn labels_follow_the_chain_not_the_nearest_labelled_point() {
        let labelled = vec![at(10.0), at(200.0)];
        let arc_a: Vec<f32> = (0..=85).map(|i| i as f32 * 2.0).collect(); // 0–170°
        let arc_b: Vec<f32> = (0..=75).map(|i| 190.0 + i as f32 * 2.0).collect(); // 190–340°
        let unlabelled: Vec<Vec<f32>> = arc_a.iter().chain(&arc_b).map(|&d| at(d)).collect();
        let cfg = PropagationConfig {
            k: 4,
            steps: 200,
            prior_weight: 0.0,
            ..Default::default()
        };
        let p = propagate(&labelled, &[0, 1], 2, &unlabelled, None, &cfg).unwrap();
        let dot = |a: Vec<f32>, b: Vec<f32>| a[0] * b[0] + a[1] * b[1];
        assert!(
            dot(at(120.0), at(200.0)) > dot(at(120.0), at(10.0)),
            "the premise: 120° is nearer to the other arc's labelled point"
        );
        for (i, d) in arc_a.iter().chain(&arc_b).enumerate() {
            let want = usize::from(*d > 180.0);
            assert_eq!(p.targets[i], Some(want), "point at {d}°");
            assert!(p.confidence[i] > 0.5 && p.confidence[i] <= 1.0);
        }
    }

    #[test]
    fn a_prior_decides_where_the_graph_does_not_reach() {
        // Two far-apart pairs: the labelled point's pair, and an unlabelled
        // pair that no label reaches with k = 1.
        let labelled = vec![at(0.0), at(90.0)];
        let unlabelled = vec![at(1.0), at(200.0), at(201.0)];
        let cfg = PropagationConfig {
            k: 1,
            ..Default::default()
        };
        let none = propagate(&labelled, &[0, 1], 2, &unlabelled, None, &cfg).unwrap();
        assert_eq!(none.targets, vec![Some(0), None, None]);
        let prior = vec![vec![0.5, 0.5], vec![0.2, 0.8], vec![0.3, 0.7]];
        let with = propagate(&labelled, &[0, 1], 2, &unlabelled, Some(&prior), &cfg).unwrap();
        assert_eq!(with.targets, vec![Some(0), Some(1), Some(1)]);
        // Bad shapes are errors, not panics.
        assert!(propagate(&labelled, &[0], 2, &unlabelled, None, &cfg).is_err());
        assert!(propagate(&labelled, &[0, 2], 2, &unlabelled, None, &cfg).is_err());
        assert!(propagate(&labelled, &[0, 1], 2, &[vec![1.0]], None, &cfg).is_err());
        assert!(propagate(&labelled, &[0, 1], 2, &unlabelled, Some(&prior[..1]), &cfg).is_err());
    }
}
