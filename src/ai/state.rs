use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::config::Settings;
use crate::error::ApiError;
use crate::inference::EncoderHandle;
use crate::metrics::Metrics;
use crate::ml::ModelStore;

use super::heads::Heads;

/// Shared by every AI-service handler. The encoder arrives after start-up
/// (loading runs beside the listener), so it sits in a `OnceLock`.
#[derive(Clone)]
pub struct AiState {
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
    encoder: Arc<OnceLock<EncoderHandle>>,
    load_error: Arc<OnceLock<String>>,
    pub started: Instant,
    pub heads: Arc<Heads>,
    kb: Arc<OnceLock<Arc<super::kb::KbService>>>,
    /// The ticketing core, whose credentials name a request's tenant.
    core: Arc<OnceLock<crate::ticketing::CoreState>>,
    /// Where triage results go (`POST /v1/triage` with `callback`): the core
    /// in-process, or over HTTP (`cluster.core_url`).
    core_client: Arc<OnceLock<Arc<dyn crate::triage::CoreClient>>>,
    /// Each tenant's thresholds (suggestions, duplicates, incidents).
    pub tenant_settings: Arc<super::tenant_settings::SettingsStore>,
    /// The attachment checks: pipeline and image models.
    pub vision: Arc<crate::vision::Vision>,
    /// The triage pipelines, by name.
    pub pipelines: Arc<crate::triage::pipeline::TriagePipelines>,
}

impl AiState {
    pub fn new(settings: Arc<Settings>, metrics: Arc<Metrics>) -> Self {
        Self {
            settings: settings.clone(),
            metrics,
            encoder: Arc::default(),
            load_error: Arc::default(),
            started: Instant::now(),
            heads: Arc::new(Heads::new(
                ModelStore::new(&settings.data_dir, &settings.models_dir),
                crate::ml::cache_dir(&settings.data_dir),
            )),
            kb: Arc::default(),
            core: Arc::default(),
            core_client: Arc::default(),
            tenant_settings: Arc::new(super::tenant_settings::SettingsStore::new(
                &settings.data_dir,
            )),
            // Validated with the settings: a bad file stops start-up there.
            vision: Arc::new(crate::vision::Vision::new(
                &settings.models_dir,
                crate::vision::pipeline::Pipeline::load(settings.vision.pipeline.as_deref())
                    .unwrap_or_else(|_| crate::vision::pipeline::Pipeline::builtin()),
            )),
            pipelines: Arc::new(
                crate::triage::pipeline::TriagePipelines::load(
                    settings.triage.pipelines.as_deref(),
                )
                .unwrap_or_else(|_| crate::triage::pipeline::TriagePipelines::builtin()),
            ),
        }
    }

    pub fn set_encoder(&self, handle: EncoderHandle) {
        let _ = self.encoder.set(handle);
    }

    pub fn set_kb(&self, kb: Arc<super::kb::KbService>) {
        let _ = self.kb.set(kb);
    }

    pub fn set_core(&self, core: crate::ticketing::CoreState) {
        let _ = self.core.set(core);
    }

    pub fn core(&self) -> Option<&crate::ticketing::CoreState> {
        self.core.get()
    }

    pub fn set_core_client(&self, client: Arc<dyn crate::triage::CoreClient>) {
        let _ = self.core_client.set(client);
    }

    pub fn core_client(&self) -> Option<&Arc<dyn crate::triage::CoreClient>> {
        self.core_client.get()
    }

    /// The knowledge base, or 503 when its index could not be opened.
    pub fn kb(&self) -> Result<&Arc<super::kb::KbService>, ApiError> {
        self.kb
            .get()
            .ok_or_else(|| ApiError::NotReady("the knowledge-base index is not open".into()))
    }

    pub fn set_load_error(&self, error: String) {
        let _ = self.load_error.set(error);
    }

    pub fn load_error(&self) -> Option<&str> {
        self.load_error.get().map(String::as_str)
    }

    /// The tenant's thresholds.
    pub fn tenant_settings(
        &self,
        tenant: &str,
    ) -> Result<super::tenant_settings::TenantSettings, ApiError> {
        self.tenant_settings
            .get(tenant)
            .map_err(|e| ApiError::Internal(e.into()))
    }

    /// The encoder, or 503 while it loads (or after it failed to).
    pub fn encoder(&self) -> Result<&EncoderHandle, ApiError> {
        self.encoder.get().ok_or_else(|| {
            ApiError::NotReady(match self.load_error() {
                Some(e) => format!("the model failed to load: {e}"),
                None => "the model is still loading".into(),
            })
        })
    }
}
