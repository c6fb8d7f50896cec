//! The encoder's own thread and the queue in front of it.
//!
//! Requests put their tokenized inputs on a channel and wait on a oneshot.
//! The thread drains the channel, cuts batches by a token budget (packed
//! tokens, so the budget is real work, not padding), runs them, and answers
//! each request when its last input is done. A semaphore bounds the requests
//! in flight: past it, `submit` fails at once with `Overloaded` (HTTP 429).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Instant;

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::encoder::{l2_normalize, TextEncoder, TextTokenizer};
use super::error::{InferenceError, Result};
use crate::metrics::Metrics;

#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Tokens in one forward pass (a lone longer input still runs alone).
    pub max_batch_tokens: usize,
    /// Sequences in one forward pass.
    pub max_batch_size: usize,
    /// Requests waiting or running; more get `Overloaded`.
    pub max_concurrent_requests: usize,
}

/// What a job wants back per sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The mean-pooled vector as it is.
    Raw,
    /// The mean-pooled vector, unit length.
    Unit,
    /// Layer features (`super::encoder::layer_features`).
    Layers,
}

struct Job {
    id: u64,
    seqs: Vec<Vec<u32>>,
    output: Output,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>>>,
}

struct Pending {
    results: Vec<Option<Vec<f32>>>,
    remaining: usize,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>>>,
}

struct Item {
    job: u64,
    index: usize,
    output: Output,
    ids: Vec<u32>,
}

/// What the service says about its model (`GET /info`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct EncoderInfo {
    pub model: String,
    pub dims: usize,
    /// Transformer layers (layer features are `dims × layers` wide).
    pub layers: usize,
    pub max_input_tokens: usize,
    pub device: String,
    pub threads: usize,
}

/// Cheap to clone; every clone talks to the same thread.
#[derive(Clone)]
pub struct EncoderHandle {
    pub tokenizer: Arc<TextTokenizer>,
    pub info: Arc<EncoderInfo>,
    tx: mpsc::Sender<Job>,
    permits: Arc<Semaphore>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
    metrics: Arc<Metrics>,
}

impl EncoderHandle {
    /// Starts the model thread, which owns `encoder` from now on.
    pub fn spawn(encoder: TextEncoder, limits: BatchLimits, metrics: Arc<Metrics>) -> Self {
        let info = Arc::new(EncoderInfo {
            model: encoder.name().to_string(),
            dims: encoder.dims(),
            layers: encoder.model().num_layers(),
            max_input_tokens: encoder.max_input_tokens(),
            device: format!("{:?}", encoder.device()).to_lowercase(),
            threads: super::device::compute_threads(),
        });
        let tokenizer = encoder.tokenizer().clone();
        let (tx, rx) = mpsc::channel::<Job>();
        let thread_metrics = metrics.clone();
        std::thread::Builder::new()
            .name("encoder".into())
            .spawn(move || run(encoder, rx, limits, &thread_metrics))
            .expect("spawning the encoder thread");
        Self {
            tokenizer,
            info,
            tx,
            permits: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
            next_id: Arc::default(),
            metrics,
        }
    }

    /// Takes a slot in the queue or fails at once when it is full.
    pub fn try_reserve(&self) -> Result<OwnedSemaphorePermit> {
        self.permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| InferenceError::Overloaded)
    }

    /// Embeds tokenized sequences; the permit is held until the answer comes.
    pub async fn embed(
        &self,
        permit: OwnedSemaphorePermit,
        seqs: Vec<Vec<u32>>,
        normalize: bool,
    ) -> Result<Vec<Vec<f32>>> {
        let output = if normalize { Output::Unit } else { Output::Raw };
        self.embed_as(permit, seqs, output).await
    }

    /// Embeds tokenized sequences as `output` asks: with `Output::Layers`,
    /// layer features (`super::encoder::layer_features`) from the same one
    /// pass, from which `super::encoder::base_of_layers` gives the unit base
    /// vector back.
    pub async fn embed_as(
        &self,
        _permit: OwnedSemaphorePermit,
        seqs: Vec<Vec<u32>>,
        output: Output,
    ) -> Result<Vec<Vec<f32>>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let n = seqs.len() as i64;
        self.metrics.queue_depth.fetch_add(n, Ordering::Relaxed);
        if self
            .tx
            .send(Job {
                id,
                seqs,
                output,
                reply,
            })
            .is_err()
        {
            self.metrics.queue_depth.fetch_sub(n, Ordering::Relaxed);
            return Err(InferenceError::Stopped);
        }
        rx.await.map_err(|_| InferenceError::Stopped)?
    }
}

fn run(encoder: TextEncoder, rx: mpsc::Receiver<Job>, limits: BatchLimits, metrics: &Metrics) {
    let mut queue: VecDeque<Item> = VecDeque::new();
    let mut jobs: HashMap<u64, Pending> = HashMap::new();
    let accept = |job: Job, queue: &mut VecDeque<Item>, jobs: &mut HashMap<u64, Pending>| {
        let n = job.seqs.len();
        for (index, ids) in job.seqs.into_iter().enumerate() {
            queue.push_back(Item {
                job: job.id,
                index,
                output: job.output,
                ids,
            });
        }
        jobs.insert(
            job.id,
            Pending {
                results: vec![None; n],
                remaining: n,
                reply: job.reply,
            },
        );
    };
    loop {
        if queue.is_empty() {
            match rx.recv() {
                Ok(job) => accept(job, &mut queue, &mut jobs),
                Err(_) => return, // every handle dropped: shut down
            }
        }
        while let Ok(job) = rx.try_recv() {
            accept(job, &mut queue, &mut jobs);
        }
        let batch = next_batch(&mut queue, &limits);
        metrics
            .queue_depth
            .fetch_sub(batch.len() as i64, Ordering::Relaxed);
        // A panic inside candle must not take the thread (and the service) down.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_batch(&encoder, &batch, metrics)
        }))
        .unwrap_or_else(|_| Err(InferenceError::Forward("the encoder panicked".into())));
        deliver(&mut jobs, batch, outcome);
    }
}

/// Takes items from the front of the queue up to the limits, sorted by length
/// so the padded attention block wastes little.
fn next_batch(queue: &mut VecDeque<Item>, limits: &BatchLimits) -> Vec<Item> {
    let mut batch = Vec::new();
    let mut tokens = 0;
    while let Some(front) = queue.front() {
        let n = front.ids.len();
        if !batch.is_empty()
            && (tokens + n > limits.max_batch_tokens || batch.len() >= limits.max_batch_size)
        {
            break;
        }
        tokens += n;
        batch.extend(queue.pop_front());
    }
    batch.sort_by_key(|i| std::cmp::Reverse(i.ids.len()));
    batch
}

fn run_batch(encoder: &TextEncoder, batch: &[Item], metrics: &Metrics) -> Result<Vec<Vec<f32>>> {
    let start = Instant::now();
    let tokens: usize = batch.iter().map(|i| i.ids.len()).sum();
    let _span = tracing::debug_span!("forward", sequences = batch.len(), tokens).entered();
    // Normalisation is per request; split the batch's rows accordingly after one pass.
    let seqs: Vec<&[u32]> = batch.iter().map(|i| i.ids.as_slice()).collect();
    // One pass either way: the per-layer means only when an item wants
    // layer features; the others take the last layer's mean from them.
    let mut out = if batch.iter().any(|i| i.output == Output::Layers) {
        let dims = encoder.dims();
        encoder
            .embed_tokens_layers(&seqs)?
            .into_iter()
            .zip(batch)
            .map(|(means, item)| match item.output {
                Output::Layers => super::encoder::layer_features(&means, dims),
                _ => means[means.len().saturating_sub(dims)..].to_vec(),
            })
            .collect()
    } else {
        encoder.embed_tokens(&seqs, false)?
    };
    for (item, v) in batch.iter().zip(out.iter_mut()) {
        if item.output == Output::Unit {
            l2_normalize(v);
        }
    }
    metrics.record_batch(batch.len(), tokens, start.elapsed().as_secs_f64());
    Ok(out)
}

fn deliver(jobs: &mut HashMap<u64, Pending>, batch: Vec<Item>, outcome: Result<Vec<Vec<f32>>>) {
    match outcome {
        Ok(vectors) => {
            for (item, v) in batch.into_iter().zip(vectors) {
                let Some(p) = jobs.get_mut(&item.job) else {
                    continue;
                };
                p.results[item.index] = Some(v);
                p.remaining -= 1;
                if p.remaining == 0 {
                    if let Some(p) = jobs.remove(&item.job) {
                        let all = p
                            .results
                            .into_iter()
                            .map(Option::unwrap_or_default)
                            .collect();
                        let _ = p.reply.send(Ok(all));
                    }
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "encoder forward pass failed");
            let msg = e.to_string();
            for item in batch {
                if let Some(p) = jobs.remove(&item.job) {
                    let _ = p.reply.send(Err(InferenceError::Forward(msg.clone())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(job: u64, len: usize) -> Item {
        Item {
            job,
            index: 0,
            output: Output::Unit,
            ids: vec![1; len],
        }
    }

    #[test]
    fn batches_respect_the_token_budget_and_sort_by_length() {
        let limits = BatchLimits {
            max_batch_tokens: 100,
            max_batch_size: 8,
            max_concurrent_requests: 1,
        };
        let mut q: VecDeque<Item> = [10, 60, 20, 30, 5]
            .into_iter()
            .map(|n| item(0, n))
            .collect();
        let b = next_batch(&mut q, &limits);
        assert_eq!(
            b.iter().map(|i| i.ids.len()).collect::<Vec<_>>(),
            vec![60, 20, 10]
        );
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn an_input_longer_than_the_budget_runs_alone() {
        let limits = BatchLimits {
            max_batch_tokens: 100,
            max_batch_size: 8,
            max_concurrent_requests: 1,
        };
        let mut q: VecDeque<Item> = [256, 10].into_iter().map(|n| item(0, n)).collect();
        assert_eq!(next_batch(&mut q, &limits).len(), 1);
        assert_eq!(next_batch(&mut q, &limits).len(), 1);
    }

    #[test]
    fn batches_respect_the_sequence_limit() {
        let limits = BatchLimits {
            max_batch_tokens: 10_000,
            max_batch_size: 3,
            max_concurrent_requests: 1,
        };
        let mut q: VecDeque<Item> = (0..7).map(|_| item(0, 4)).collect();
        assert_eq!(next_batch(&mut q, &limits).len(), 3);
    }
}
