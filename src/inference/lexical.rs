//! Lexical features beside the sentence embedding: hashed TF-IDF of word
//! unigrams and bigrams and of character 3- to 5-grams inside words. Ticket
//! text is full of product names and error codes (`0x80070005`, `ME21N`,
//! `AADSTS50076`) where exact overlap says more than a sentence embedding.
//!
//! Features are hashed (FNV-1a) into `dims` buckets with a sign bit, so no
//! vocabulary is stored; term frequency is sublinear (1 + ln tf), IDF is
//! fitted on the training texts, and each vector is L2-normalised.

use std::borrow::Cow;

use super::heads::{HeadError, Prediction};
use super::training::{
    train_softmax_with, PseudoLabelled, SoftmaxHead, TrainConfig, TrainError, TrainReport,
};

/// A fitted hashed TF-IDF vectoriser.
#[derive(Debug, Clone)]
pub struct HashedTfidf {
    dims: usize,
    idf: Vec<f32>,
}

fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Every feature of `text` as a hash, repeated as often as it occurs.
fn features(text: &str) -> Vec<u64> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        out.push(fnv1a(w.as_bytes(), 1));
        if let Some(next) = words.get(i + 1) {
            out.push(fnv1a(format!("{w} {next}").as_bytes(), 2));
        }
        // Character n-grams of the word with boundary marks: `<me21n>`.
        let marked: Vec<char> = std::iter::once('<')
            .chain(w.chars())
            .chain(std::iter::once('>'))
            .collect();
        for n in 3..=5 {
            for gram in marked.windows(n) {
                let s: String = gram.iter().collect();
                out.push(fnv1a(s.as_bytes(), 3 + n as u64));
            }
        }
    }
    out
}

fn bucket(h: u64, dims: usize) -> (usize, f32) {
    (
        (h % dims as u64) as usize,
        if h >> 63 == 0 { 1.0 } else { -1.0 },
    )
}

impl HashedTfidf {
    /// Fits the IDF on `texts`. `dims` buckets (a power of two is usual).
    pub fn fit(texts: &[&str], dims: usize) -> Self {
        let dims = dims.max(1);
        let mut df = vec![0u32; dims];
        for t in texts {
            let mut seen: Vec<usize> = features(t).into_iter().map(|h| bucket(h, dims).0).collect();
            seen.sort_unstable();
            seen.dedup();
            seen.into_iter().for_each(|b| df[b] += 1);
        }
        let n = texts.len() as f32;
        let idf = df
            .into_iter()
            .map(|d| ((1.0 + n) / (1.0 + d as f32)).ln() + 1.0)
            .collect();
        Self { dims, idf }
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    pub fn idf(&self) -> &[f32] {
        &self.idf
    }

    /// A vectoriser from a saved IDF vector.
    pub fn from_idf(idf: Vec<f32>) -> Self {
        Self {
            dims: idf.len().max(1),
            idf: if idf.is_empty() { vec![1.0] } else { idf },
        }
    }

    /// The L2-normalised TF-IDF vector of `text` (dense, `dims` long).
    pub fn transform(&self, text: &str) -> Vec<f32> {
        let mut tf = vec![0f32; self.dims];
        let mut sign = vec![0f32; self.dims];
        for h in features(text) {
            let (b, s) = bucket(h, self.dims);
            tf[b] += 1.0;
            sign[b] += s;
        }
        let mut v: Vec<f32> = tf
            .iter()
            .zip(&sign)
            .zip(&self.idf)
            .map(|((&t, &s), &idf)| {
                if t > 0.0 {
                    (1.0 + t.ln()) * idf * s.signum()
                } else {
                    0.0
                }
            })
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}

/// `[embedding ; weight × lexical]`: the input of a head that reads both.
pub fn combine(embedding: &[f32], lexical: &[f32], weight: f32) -> Vec<f32> {
    embedding
        .iter()
        .copied()
        .chain(lexical.iter().map(|x| x * weight))
        .collect()
}

/// A softmax head on `[embedding ; weight × tf-idf]`, with the weight that
/// won on validation data (0 = the embedding alone).
#[derive(Debug, Clone)]
pub struct MixedHead {
    pub tfidf: HashedTfidf,
    pub weight: f32,
    pub head: SoftmaxHead,
}

impl MixedHead {
    pub fn predict(&self, embedding: &[f32], text: &str) -> Prediction {
        if self.weight == 0.0 {
            return self.head.predict(embedding);
        }
        self.head.predict(&combine(
            embedding,
            &self.tfidf.transform(text),
            self.weight,
        ))
    }
}

/// One candidate mix and how it did on the validation split.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MixTrial {
    pub weight: f32,
    pub val_accuracy: f32,
    pub val_loss: f32,
}

/// Trains one head per lexical weight in `weights` (same seed, so the same
/// validation split) and keeps the one with the lowest validation loss.
/// Pseudo-labelled examples, when given, train beside the labelled ones (and
/// their texts count in the TF-IDF statistics).
#[allow(clippy::too_many_arguments)]
pub fn train_mixed(
    embeddings: &[Vec<f32>],
    texts: &[&str],
    targets: &[usize],
    labels: Vec<String>,
    cfg: &TrainConfig,
    weights: &[f32],
    dims: usize,
    pseudo: Option<PseudoLabelled<'_>>,
) -> Result<(MixedHead, TrainReport, Vec<MixTrial>), TrainError> {
    if weights.is_empty() {
        return Err(HeadError::NoCandidates.into());
    }
    if let Some(p) = pseudo.filter(|p| p.texts.len() != p.vectors.len()) {
        return Err(HeadError::Mismatch(p.vectors.len(), p.texts.len()).into());
    }
    let pseudo_texts = pseudo.map(|p| p.texts).unwrap_or_default();
    let all_texts: Vec<&str> = texts.iter().chain(pseudo_texts).copied().collect();
    let tfidf = HashedTfidf::fit(&all_texts, dims);
    let transform =
        |texts: &[&str]| -> Vec<Vec<f32>> { texts.iter().map(|t| tfidf.transform(t)).collect() };
    let (lexical, pseudo_lexical) = (transform(texts), transform(pseudo_texts));
    fn mix<'a>(vectors: &'a [Vec<f32>], lexical: &[Vec<f32>], w: f32) -> Cow<'a, [Vec<f32>]> {
        // Weight 0 is the embedding alone (no columns of zeros, no copy).
        if w == 0.0 {
            return vectors.into();
        }
        vectors
            .iter()
            .zip(lexical)
            .map(|(e, l)| combine(e, l, w))
            .collect::<Vec<_>>()
            .into()
    }
    let mut best: Option<(MixedHead, TrainReport)> = None;
    let mut trials = Vec::new();
    for &w in weights {
        let x = mix(embeddings, &lexical, w);
        let pseudo_x = pseudo.map(|p| mix(p.vectors, &pseudo_lexical, w));
        let pseudo = pseudo
            .zip(pseudo_x.as_deref())
            .map(|(p, x)| PseudoLabelled { vectors: x, ..p });
        let (head, report) = train_softmax_with(&x, targets, labels.clone(), cfg, pseudo)?;
        trials.push(MixTrial {
            weight: w,
            val_accuracy: report.val_accuracy,
            val_loss: report.val_loss,
        });
        // Validation loss, not accuracy: on a few hundred examples accuracy
        // moves in steps of one example and picks noise.
        let better = best
            .as_ref()
            .is_none_or(|(_, b)| report.val_loss < b.val_loss);
        if better {
            best = Some((
                MixedHead {
                    tfidf: tfidf.clone(),
                    weight: w,
                    head,
                },
                report,
            ));
        }
    }
    let (head, report) = best.ok_or(TrainError::Head(HeadError::NoCandidates))?;
    Ok((head, report, trials))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn shared_error_codes_make_texts_similar() {
        let texts = [
            "error 0x80070005 on install",
            "printer offline",
            "0x80070005 again today",
            "reset my password",
        ];
        let v = HashedTfidf::fit(&texts, 4096);
        let a = v.transform("update fails with 0x80070005");
        assert!(cos(&a, &v.transform(texts[2])) > cos(&a, &v.transform(texts[1])) + 0.1);
        assert!((cos(&a, &a) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn character_grams_match_inside_codes_and_rare_features_weigh_more() {
        let texts = ["me21n error", "me22n error", "va01 error", "error"];
        let v = HashedTfidf::fit(&texts, 4096);
        let q = v.transform("me23n");
        // Shares `<me2`, `me2` with the ME2xN codes, nothing with VA01.
        assert!(cos(&q, &v.transform("me21n error")) > cos(&q, &v.transform("va01 error")));
        assert_eq!(v.transform("").iter().filter(|x| **x != 0.0).count(), 0);
    }

    #[test]
    fn combine_scales_the_lexical_part() {
        assert_eq!(
            combine(&[1.0, 2.0], &[0.5, -0.5], 2.0),
            vec![1.0, 2.0, 1.0, -1.0]
        );
    }
}
