//! The vector index measured (issue 4), run by `scripts/bench-search.sh`:
//!
//! 1. Scale: N random unit vectors (384-d, seeded) in a qdrant-edge shard,
//!    HNSW built by `optimize`; 300 random queries, k = 10: search latency
//!    p50/p99 (without any embedding) and recall@10 against brute force.
//! 2. Quality on real text: Banking77's train queries as the corpus, its test
//!    queries as queries, relevant = same intent: MRR@10 and nDCG@10 for
//!    dense, BM25 and hybrid (reciprocal rank fusion).
//! 3. Scale on real text embeddings: SST-2's 67k train phrases, its dev
//!    sentences as queries, recall@10 against brute force.
//! 4. KB ingestion throughput and its time per stage.
//!
//! Env: `SIZES` (default `10000,100000`), `QUALITY=0` / `REAL=0` / `INGEST=0` skip parts 2 / 3 / 4,
//! `HNSW_EF` (default `DEFAULT_HNSW_EF`), `EXACT_SCAN_MAX` (default `DEFAULT_EXACT_SCAN_MAX_POINTS`; 0 =
//! always walk the HNSW graph).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use helpdesk::inference::training::SplitMix;
use helpdesk::inference::{load_text_encoder, DeviceKind};
use helpdesk::ml::dataset::{load, Example};
use helpdesk::ml::{cache_dir, Embedder, EmbeddingCache};
use helpdesk::vector::edge::{EdgeIndex, EdgeOptions};
use helpdesk::vector::{
    hybrid_depth, reciprocal_rank_fusion, ChunkPayload, Hit, IndexPoint, SearchFilter, Source,
    VectorIndex, Visibility, RRF_K,
};

fn payload(i: usize, text: &str) -> ChunkPayload {
    ChunkPayload {
        tenant: "bench".into(),
        source: Source::Ticket,
        doc_id: i.to_string(),
        chunk: 0,
        title: String::new(),
        text: text.into(),
        language: "en".into(),
        visibility: Visibility::Internal,
        tags: vec![],
        updated_at: 0,
        hash: String::new(),
        ticket: None,
    }
}

/// A seeded random unit vector (sums of uniforms: close to Gaussian).
fn random_unit(rng: &mut SplitMix, d: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..d)
        .map(|_| {
            (0..4)
                .map(|_| (rng.next_u64() % 10_000) as f32 / 10_000.0 - 0.5)
                .sum()
        })
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// Search latencies (ms, sorted) of `queries` with k = 10, and mean
/// recall@10 against brute force over `corpus` (point i has doc id i).
fn latency_and_recall(
    index: &EdgeIndex,
    corpus: &[Vec<f32>],
    queries: &[Vec<f32>],
) -> anyhow::Result<(Vec<f64>, f64)> {
    let filter = SearchFilter::tenant("bench");
    let (mut lat, mut recall) = (Vec::new(), 0.0);
    for q in queries {
        let t = Instant::now();
        let hits = index.search(q, &filter, 10)?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        let mut exact: Vec<(f32, usize)> = corpus
            .iter()
            .enumerate()
            .map(|(i, v)| (v.iter().zip(q).map(|(a, b)| a * b).sum(), i))
            .collect();
        exact.select_nth_unstable_by(9, |a, b| b.0.total_cmp(&a.0));
        let truth: Vec<String> = exact[..10].iter().map(|(_, i)| i.to_string()).collect();
        recall += hits
            .iter()
            .filter(|h| truth.contains(&h.payload.doc_id))
            .count() as f64
            / 10.0;
    }
    lat.sort_by(f64::total_cmp);
    Ok((lat, recall / queries.len().max(1) as f64))
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Upserts `vectors` as points 0..n (payload text from `texts` when given), 1,000 at a time.
fn fill(index: &EdgeIndex, vectors: &[Vec<f32>], texts: Option<&[Example]>) -> anyhow::Result<()> {
    for (b, chunk) in vectors.chunks(1000).enumerate() {
        let points: Vec<IndexPoint> = chunk
            .iter()
            .enumerate()
            .map(|(j, v)| {
                let i = b * 1000 + j;
                let text = texts.map_or("", |t| t[i].text.as_str());
                IndexPoint {
                    vector: v.clone(),
                    payload: payload(i, text),
                }
            })
            .collect();
        index.upsert(&points)?;
    }
    Ok(())
}

/// Two labelled files and their embeddings (through the bench's cache).
type Embedded = (Vec<Example>, Vec<Example>, Vec<Vec<f32>>, Vec<Vec<f32>>);

fn embedded(corpus: &str, queries: &str) -> anyhow::Result<Embedded> {
    let none = BTreeMap::new();
    let corpus = load(Path::new(corpus), &none)?;
    let queries = load(Path::new(queries), &none)?;
    let enc = load_text_encoder(
        "all-minilm-l6-v2",
        Path::new("models"),
        DeviceKind::Cpu,
        false,
    )?;
    let mut cache = EmbeddingCache::open(
        &cache_dir(Path::new("bench-results/search")),
        &enc.id(),
        enc.dims(),
    )?;
    let texts: Vec<&str> = corpus.iter().map(|e| e.text.as_str()).collect();
    let qtexts: Vec<&str> = queries.iter().map(|e| e.text.as_str()).collect();
    let vecs = cache.embed_all(&enc, &texts, 256, |_, _| {})?;
    let qvecs = cache.embed_all(&enc, &qtexts, 256, |_, _| {})?;
    Ok((corpus, queries, vecs, qvecs))
}

/// The index options, from the environment: `HNSW_EF` (search beam),
/// `EXACT_SCAN_MAX` (filtered searches over at most this many points scan;
/// 0 = always the graph).
fn options() -> EdgeOptions {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse().ok());
    let d = EdgeOptions::default();
    EdgeOptions {
        hnsw_ef: env("HNSW_EF").unwrap_or(d.hnsw_ef),
        exact_scan_max_points: env("EXACT_SCAN_MAX").unwrap_or(d.exact_scan_max_points),
        ..d
    }
}

fn scale(n: usize) -> anyhow::Result<serde_json::Value> {
    let d = 384;
    let mut rng = SplitMix::new(n as u64);
    let vectors: Vec<Vec<f32>> = (0..n).map(|_| random_unit(&mut rng, d)).collect();
    let dir = tempfile::tempdir()?;
    let index = EdgeIndex::open_with(&dir.path().join("shard"), d, &options())?;
    let t = Instant::now();
    fill(&index, &vectors, None)?;
    let upsert_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    index.optimize()?;
    let optimize_s = t.elapsed().as_secs_f64();
    let queries: Vec<Vec<f32>> = (0..300).map(|_| random_unit(&mut rng, d)).collect();
    let (lat, recall) = latency_and_recall(&index, &vectors, &queries)?;
    let r = serde_json::json!({
        "points": n, "upsert_s": upsert_s, "upsert_points_per_s": n as f64 / upsert_s,
        "optimize_s": optimize_s, "p50_ms": pct(&lat, 0.5), "p99_ms": pct(&lat, 0.99),
        "recall_at_10": recall,
    });
    println!(
        "{n:>7} points: upsert {upsert_s:.1} s ({:.0}/s), HNSW build {optimize_s:.1} s, search p50 {:.2} ms p99 {:.2} ms, recall@10 {:.4}",
        n as f64 / upsert_s,
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        recall
    );
    Ok(r)
}

/// Scale on real text embeddings: SST-2's 67,349 train phrases as the
/// corpus, its 872 dev sentences as queries (real vectors cluster; random
/// ones do not).
fn real() -> anyhow::Result<serde_json::Value> {
    let (_, _, vecs, qvecs) = embedded("bench/sst2/train.tsv", "tests/fixtures/sst2_dev.tsv")?;
    let dir = tempfile::tempdir()?;
    let index = EdgeIndex::open_with(&dir.path().join("shard"), vecs[0].len(), &options())?;
    fill(&index, &vecs, None)?;
    index.optimize()?;
    let (lat, recall) = latency_and_recall(&index, &vecs, &qvecs)?;
    println!(
        "{:>7} real text vectors (SST-2): search p50 {:.2} ms p99 {:.2} ms, recall@10 {recall:.4}",
        vecs.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
    Ok(
        serde_json::json!({ "points": vecs.len(), "queries": qvecs.len(), "p50_ms": pct(&lat, 0.5),
        "p99_ms": pct(&lat, 0.99), "recall_at_10": recall }),
    )
}

/// MRR@10 and nDCG@10 (binary relevance) of ranked intents.
fn score(
    ranked: &[Vec<&str>],
    gold: &[&str],
    relevant_total: &BTreeMap<&str, usize>,
) -> (f64, f64) {
    let (mut mrr, mut ndcg) = (0.0, 0.0);
    for (r, g) in ranked.iter().zip(gold) {
        if let Some(p) = r.iter().take(10).position(|x| x == g) {
            mrr += 1.0 / (p as f64 + 1.0);
        }
        let dcg: f64 = r
            .iter()
            .take(10)
            .enumerate()
            .filter(|(_, x)| *x == g)
            .map(|(i, _)| 1.0 / (i as f64 + 2.0).log2())
            .sum();
        let ideal: f64 = (0..relevant_total[g].min(10))
            .map(|i| 1.0 / (i as f64 + 2.0).log2())
            .sum();
        ndcg += if ideal > 0.0 { dcg / ideal } else { 0.0 };
    }
    (mrr / gold.len() as f64, ndcg / gold.len() as f64)
}

fn quality() -> anyhow::Result<serde_json::Value> {
    let (train, test, vecs, qvecs) =
        embedded("bench/banking77/train.csv", "bench/banking77/test.csv")?;
    let qtexts: Vec<&str> = test.iter().map(|e| e.text.as_str()).collect();
    let dir = tempfile::tempdir()?;
    // Banking77 queries are about 12 words: BM25's length normalisation expects that.
    let options = EdgeOptions {
        bm25_avg_len: 12.0,
        ..options()
    };
    let index = EdgeIndex::open_with(&dir.path().join("shard"), vecs[0].len(), &options)?;
    let t = Instant::now();
    fill(&index, &vecs, Some(&train))?;
    index.optimize()?;
    let index_s = t.elapsed().as_secs_f64();
    let filter = SearchFilter::tenant("bench");
    let intent = |h: &Hit| {
        train[h.payload.doc_id.parse::<usize>().unwrap_or(0)]
            .label
            .as_str()
    };
    let mut relevant: BTreeMap<&str, usize> = BTreeMap::new();
    train
        .iter()
        .for_each(|e| *relevant.entry(e.label.as_str()).or_default() += 1);
    let gold: Vec<&str> = test.iter().map(|e| e.label.as_str()).collect();
    let (mut dense, mut bm25, mut hybrid) = (Vec::new(), Vec::new(), Vec::new());
    let t = Instant::now();
    for (q, v) in qtexts.iter().zip(&qvecs) {
        // The lists `hybrid` fuses (`hybrid_depth(10)` = 50 deep), fused the same way.
        let d = index.search(v, &filter, hybrid_depth(10))?;
        let w = index.search_text(q, &filter, hybrid_depth(10))?;
        let h = reciprocal_rank_fusion(&[d.clone(), w.clone()], RRF_K, 10);
        dense.push(d.iter().take(10).map(intent).collect::<Vec<_>>());
        bm25.push(w.iter().take(10).map(intent).collect::<Vec<_>>());
        hybrid.push(h.iter().map(intent).collect::<Vec<_>>());
    }
    let query_ms = t.elapsed().as_secs_f64() * 1000.0 / qtexts.len() as f64;
    let mut out = serde_json::json!({ "corpus": train.len(), "queries": test.len(), "index_s": index_s,
        "ms_per_query_all_three": query_ms });
    for (name, ranked) in [("dense", &dense), ("bm25", &bm25), ("hybrid", &hybrid)] {
        let (mrr, ndcg) = score(ranked, &gold, &relevant);
        println!("{name:>7}: MRR@10 {mrr:.4}  nDCG@10 {ndcg:.4}");
        out[name] = serde_json::json!({ "mrr_at_10": mrr, "ndcg_at_10": ndcg });
    }
    Ok(out)
}

/// KB ingestion throughput and where its time goes: the 2,000 sentences of
/// bench/corpus.jsonl as 100 Markdown articles of 20 paragraphs under 4
/// headings, cleaned and chunked, embedded, upserted, then the HNSW build.
fn ingestion() -> anyhow::Result<serde_json::Value> {
    use helpdesk::ai::kb::{article_chunks, Article};
    use helpdesk::kb::{ChunkConfig, Format};
    let corpus = std::fs::read_to_string("bench/corpus.jsonl")?;
    let sentences: Vec<String> = corpus
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(String::from))
        .collect();
    let articles: Vec<Article> = sentences
        .chunks(20)
        .enumerate()
        .map(|(i, para)| {
            let body = para
                .chunks(5)
                .enumerate()
                .map(|(h, p)| format!("## Part {h}\n\n{}", p.join("\n\n")))
                .collect::<Vec<_>>()
                .join("\n\n");
            Article {
                id: format!("a{i}"),
                title: format!("Article {i}"),
                body: format!("# Article {i}\n\n{body}"),
                format: Format::Markdown,
                visibility: Visibility::Public,
                tags: vec![],
                language: "en".into(),
            }
        })
        .collect();
    let enc = load_text_encoder(
        "all-minilm-l6-v2",
        Path::new("models"),
        DeviceKind::Cpu,
        false,
    )?;
    let tokenizer = enc.tokenizer().clone();
    let count = |t: &str| {
        tokenizer
            .tokenize(&[t], true)
            .map(|v| v[0].untruncated_len.saturating_sub(2))
            .unwrap_or(0)
    };
    let dir = tempfile::tempdir()?;
    let index = EdgeIndex::open(&dir.path().join("shard"), enc.dims())?;
    let (mut chunk_s, mut embed_s, mut upsert_s, mut n) = (0.0, 0.0, 0.0, 0usize);
    for a in &articles {
        let t = Instant::now();
        let chunks = article_chunks(a, ChunkConfig::default(), &count);
        chunk_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let texts: Vec<&str> = chunks.iter().map(|c| c.embed_text.as_str()).collect();
        let vectors = enc.embed(&texts, true, true)?;
        embed_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let points: Vec<IndexPoint> = chunks
            .iter()
            .zip(vectors)
            .map(|(c, v)| IndexPoint {
                vector: v,
                payload: ChunkPayload {
                    chunk: c.index as u32,
                    doc_id: a.id.clone(),
                    source: Source::Kb,
                    ..payload(0, &c.text)
                },
            })
            .collect();
        index.delete_doc("bench", Source::Kb, &a.id)?;
        index.upsert(&points)?;
        upsert_s += t.elapsed().as_secs_f64();
        n += chunks.len();
    }
    let t = Instant::now();
    index.optimize()?;
    let optimize_s = t.elapsed().as_secs_f64();
    let total = chunk_s + embed_s + upsert_s;
    println!(
        "ingestion: {} articles, {n} chunks in {total:.1} s = {:.1} chunks/s; clean+chunk {:.0} %, embed {:.0} %, upsert {:.0} %; HNSW build after {optimize_s:.2} s",
        articles.len(),
        n as f64 / total,
        100.0 * chunk_s / total,
        100.0 * embed_s / total,
        100.0 * upsert_s / total,
    );
    Ok(
        serde_json::json!({ "articles": articles.len(), "chunks": n, "seconds": total,
        "chunks_per_s": n as f64 / total, "chunk_s": chunk_s, "embed_s": embed_s, "upsert_s": upsert_s,
        "optimize_s": optimize_s }),
    )
}

fn main() -> anyhow::Result<()> {
    let sizes: Vec<usize> = std::env::var("SIZES")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let scales = sizes
        .into_iter()
        .map(scale)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut report = serde_json::json!({ "scale": scales });
    if !std::env::var("INGEST").is_ok_and(|v| v == "0") {
        report["ingestion"] = ingestion()?;
    }
    if !std::env::var("REAL").is_ok_and(|v| v == "0") {
        report["real"] = real()?;
    }
    if !std::env::var("QUALITY").is_ok_and(|v| v == "0") {
        report["quality"] = quality()?;
    }
    std::fs::create_dir_all("bench-results")?;
    std::fs::write(
        "bench-results/search.json",
        serde_json::to_string_pretty(&report)?,
    )?;
    Ok(())
}
