//! The service's view of the label heads: the active version of each
//! (tenant, task), reloaded when `state.json` names another one (a promote or
//! rollback by this service, by the CLI or by another process), and the
//! training jobs started over HTTP.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::inference::batcher::Output;
use crate::inference::EncoderHandle;
use crate::ml::pipeline::{self, Phase, TrainOptions, TrainOutcome};
use crate::ml::store::StoreError;
use crate::ml::{cache, dataset::Example, Classifier, Embedder, EmbeddingCache, ModelStore};

/// Training jobs queued or running at once; more are refused (429).
pub const MAX_PENDING_JOBS: usize = 8;
/// Finished jobs remembered for `GET /v1/jobs/{id}`.
const MAX_JOBS_KEPT: usize = 1000;

/// (tenant, task) → the loaded active version and its number.
type Loaded = HashMap<(String, String), (u32, Arc<Classifier>)>;

pub struct Heads {
    pub store: ModelStore,
    loaded: Mutex<Loaded>,
    jobs: Mutex<HashMap<u64, Job>>,
    next_job: std::sync::atomic::AtomicU64,
    /// One training at a time: the encoder is shared with live traffic.
    training: Arc<Mutex<()>>,
    cache_dir: std::path::PathBuf,
    /// One embedding cache per embedder id (base vectors, layer features).
    cache: Arc<Mutex<HashMap<String, EmbeddingCache>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: u64,
    #[serde(skip)]
    pub tenant: String,
    pub task: String,
    pub status: JobStatus,
    pub phase: Option<Phase>,
    pub done: usize,
    pub total: usize,
    pub created_at: String,
    pub finished_at: Option<String>,
    pub result: Option<TrainOutcome>,
    pub error: Option<String>,
}

/// The encoder behind the batcher, called from a training thread: it waits
/// for a free queue slot instead of failing, so training yields to traffic.
struct QueuedEmbedder {
    handle: EncoderHandle,
    runtime: tokio::runtime::Handle,
    /// Layer features instead of base vectors.
    layers: bool,
}

impl Embedder for QueuedEmbedder {
    fn id(&self) -> String {
        let id = cache::encoder_id(&self.handle.info.model);
        if self.layers {
            id + cache::LAYERS_SUFFIX
        } else {
            id
        }
    }

    fn dims(&self) -> usize {
        let info = &self.handle.info;
        if self.layers {
            info.dims * info.layers
        } else {
            info.dims
        }
    }

    fn embed(&self, texts: &[&str]) -> anyhow::Result<Vec<Vec<f32>>> {
        let ids: Vec<Vec<u32>> = self
            .handle
            .tokenizer
            .tokenize(texts, true)?
            .into_iter()
            .map(|t| t.ids)
            .collect();
        let permit = loop {
            match self.handle.try_reserve() {
                Ok(p) => break p,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        };
        let output = if self.layers {
            Output::Layers
        } else {
            Output::Unit
        };
        Ok(self
            .runtime
            .block_on(self.handle.embed_as(permit, ids, output))?)
    }

    fn sibling(&self, id: &str) -> Option<Box<dyn Embedder + '_>> {
        let other = QueuedEmbedder {
            handle: self.handle.clone(),
            runtime: self.runtime.clone(),
            layers: !self.layers,
        };
        (other.id() == id).then(|| Box::new(other) as Box<dyn Embedder>)
    }
}

impl Heads {
    pub fn new(store: ModelStore, cache_dir: std::path::PathBuf) -> Self {
        Self {
            store,
            loaded: Mutex::default(),
            jobs: Mutex::default(),
            next_job: 1.into(),
            training: Arc::default(),
            cache_dir,
            cache: Arc::default(),
        }
    }

    /// The active version of `task` for `tenant`, loaded once per version.
    pub fn active(&self, tenant: &str, task: &str) -> Result<Arc<Classifier>, StoreError> {
        let version = self
            .store
            .active(tenant, task)?
            .ok_or_else(|| StoreError::NoModel {
                tenant: tenant.into(),
                task: task.into(),
            })?;
        let key = (tenant.to_string(), task.to_string());
        if let Some((v, m)) = self.lock_loaded().get(&key) {
            if *v == version {
                return Ok(m.clone());
            }
        }
        let model = Arc::new(self.store.load(tenant, task, version)?);
        tracing::info!(tenant, task, version, "loaded label head");
        self.lock_loaded().insert(key, (version, model.clone()));
        Ok(model)
    }

    /// The active head of a task that reads text (the encoder's vectors).
    pub fn active_text(&self, tenant: &str, task: &str) -> Result<Arc<Classifier>, StoreError> {
        self.active_reading(tenant, task, false)
    }

    /// The active head of a task that reads image embeddings.
    pub fn active_image(&self, tenant: &str, task: &str) -> Result<Arc<Classifier>, StoreError> {
        self.active_reading(tenant, task, true)
    }

    fn active_reading(
        &self,
        tenant: &str,
        task: &str,
        images: bool,
    ) -> Result<Arc<Classifier>, StoreError> {
        let head = self.active(tenant, task)?;
        let name = |i: bool| if i { "images" } else { "text" };
        if head.card.reads_images() != images {
            return Err(StoreError::Modality {
                task: task.into(),
                reads: name(!images),
                asked: name(images),
            });
        }
        Ok(head)
    }

    fn lock_loaded(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_jobs(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Job>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A job of `tenant` (another tenant's job is `None`).
    pub fn job(&self, tenant: &str, id: u64) -> Option<Job> {
        self.lock_jobs()
            .get(&id)
            .filter(|j| j.tenant == tenant)
            .cloned()
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut Job)) {
        if let Some(j) = self.lock_jobs().get_mut(&id) {
            f(j);
        }
    }

    /// Starts training on a thread of its own; returns the job at once, or
    /// `None` when `MAX_PENDING_JOBS` are already queued or running.
    pub fn start_training(
        self: &Arc<Self>,
        encoder: EncoderHandle,
        examples: Vec<Example>,
        heldout: Option<Vec<Example>>,
        opts: TrainOptions,
    ) -> std::io::Result<Option<Job>> {
        {
            let mut jobs = self.lock_jobs();
            let pending = jobs
                .values()
                .filter(|j| matches!(j.status, JobStatus::Queued | JobStatus::Running))
                .count();
            if pending >= MAX_PENDING_JOBS {
                return Ok(None);
            }
            // Keep the most recent finished jobs only.
            if jobs.len() >= MAX_JOBS_KEPT {
                let mut done: Vec<u64> = jobs
                    .values()
                    .filter(|j| j.finished_at.is_some())
                    .map(|j| j.id)
                    .collect();
                done.sort_unstable();
                for id in done.iter().take(jobs.len() + 1 - MAX_JOBS_KEPT) {
                    jobs.remove(id);
                }
            }
        }
        let id = self
            .next_job
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let job = Job {
            id,
            tenant: opts.tenant.clone(),
            task: opts.task.clone(),
            status: JobStatus::Queued,
            phase: None,
            done: 0,
            total: 0,
            created_at: crate::ml::model::now_utc(),
            finished_at: None,
            result: None,
            error: None,
        };
        self.lock_jobs().insert(id, job.clone());
        let me = self.clone();
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name(format!("train-{id}"))
            .spawn(move || {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    me.run_training(id, encoder, runtime, examples, heldout, &opts)
                }));
                let finished = Some(crate::ml::model::now_utc());
                match outcome {
                    Ok(Ok(result)) => {
                        tracing::info!(
                            job = id,
                            version = result.version,
                            promoted = result.promoted,
                            "training finished"
                        );
                        me.update(id, |j| {
                            j.status = JobStatus::Succeeded;
                            j.result = Some(result);
                            j.finished_at = finished;
                        });
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(job = id, error = %e, "training failed");
                        me.update(id, |j| {
                            j.status = JobStatus::Failed;
                            j.error = Some(format!("{e:#}"));
                            j.finished_at = finished;
                        });
                    }
                    Err(_) => me.update(id, |j| {
                        j.status = JobStatus::Failed;
                        j.error = Some("training crashed (see the service log)".into());
                        j.finished_at = finished;
                    }),
                }
            })?;
        Ok(Some(job))
    }

    fn run_training(
        &self,
        id: u64,
        handle: EncoderHandle,
        runtime: tokio::runtime::Handle,
        examples: Vec<Example>,
        heldout: Option<Vec<Example>>,
        opts: &TrainOptions,
    ) -> anyhow::Result<TrainOutcome> {
        let training = self.training.clone();
        let _one_at_a_time = training.lock().unwrap_or_else(|p| p.into_inner());
        self.update(id, |j| j.status = JobStatus::Running);
        let embedder = QueuedEmbedder {
            handle,
            runtime,
            layers: opts.layer_features,
        };
        let caches = self.cache.clone();
        let mut caches = caches.lock().unwrap_or_else(|p| p.into_inner());
        let cache = match caches.entry(embedder.id()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(EmbeddingCache::open(
                &self.cache_dir,
                &embedder.id(),
                embedder.dims(),
            )?),
        };
        let mut progress = |phase: Phase, done: usize, total: usize| {
            self.update(id, |j| {
                j.phase = Some(phase);
                j.done = done;
                j.total = total;
            });
        };
        pipeline::train(
            &self.store,
            &embedder,
            cache,
            examples,
            heldout,
            opts,
            &mut progress,
        )
    }
}
