//! One `Settings` struct, layered: compiled-in defaults → `helpdesk.toml`
//! (or `--config FILE`) → `HELPDESK__SECTION__KEY` environment variables →
//! command-line flags. Validated once at start-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::inference::{BatchLimits, DeviceKind};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the service keeps its state (SQLite file, attachments, vectors).
    pub data_dir: PathBuf,
    /// Where model files live (`models/<name>/`).
    pub models_dir: PathBuf,
    pub server: ServerSettings,
    pub model: ModelSettings,
    pub log: LogSettings,
    pub vector: VectorSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub worker: WorkerSettings,
    pub cluster: ClusterSettings,
    pub security: crate::security::SecuritySettings,
    pub events: crate::ticketing::events::EventsSettings,
    pub attachments: crate::ticketing::attachments::AttachmentSettings,
    pub vision: VisionSettings,
    pub triage: TriageSettings,
}

/// The triage loop's pipelines.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TriageSettings {
    /// The named triage pipelines a tenant chooses from; default: the
    /// shipped `pipelines/triage.toml`, compiled in.
    pub pipelines: Option<PathBuf>,
}

/// The attachment checks (issue 6).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct VisionSettings {
    /// The pipeline file (steps on/off, thresholds, per-tenant overrides);
    /// default: the shipped `pipelines/attachment-checks.toml`, compiled in.
    pub pipeline: Option<PathBuf>,
}

/// Which parts of the platform this process runs.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Core, AI service and triage worker in one process (the default).
    #[default]
    All,
    /// The ticketing core (`/api/v1`) alone.
    Core,
    /// The AI service (`/v1`, `/embed`) alone; triage results go to
    /// `cluster.core_url`.
    Ai,
    /// The triage worker alone: claims jobs, calls `cluster.ai_url`.
    Worker,
}

/// The triage worker (roles `all` and `worker`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// Run the worker in role `all` (tests of the core alone turn it off).
    pub enabled: bool,
    /// Jobs handled at once.
    pub concurrency: usize,
    /// Sleep when the queue is empty, in milliseconds.
    pub idle_ms: u64,
    /// A claimed job is the claimer's for this long.
    pub lease_s: i64,
    /// Attempts before a job is dead-lettered.
    pub max_attempts: i64,
    /// First retry after this; doubled per attempt.
    pub backoff_s: i64,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            concurrency: 2,
            idle_ms: 200,
            lease_s: 60,
            max_attempts: 5,
            backoff_s: 2,
        }
    }
}

/// How the parts find each other when they run as separate processes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// The AI service's URL (role `worker`), e.g. `http://ai:8080`.
    pub ai_url: Option<String>,
    /// The core's URL (role `ai`: where triage results are posted).
    pub core_url: Option<String>,
    /// A core API key with the `service` scope (`helpdesk key create
    /// --scopes service`), used by the worker and by the AI's callback.
    pub service_key: Option<String>,
}

/// The ticketing core's database.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://…` or `sqlite:…`; the `DATABASE_URL` variable when unset,
    /// else `<data_dir>/helpdesk.db`.
    pub url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Login tokens last this long.
    pub token_ttl_s: i64,
    /// Signs login tokens; every core process of a deployment needs the
    /// same one. When unset, `<data_dir>/jwt-secret` (made on first start).
    pub jwt_secret: Option<String>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            token_ttl_s: 900,
            jwt_secret: None,
        }
    }
}

/// The vector index behind KB search and similar tickets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct VectorSettings {
    /// `edge` (embedded, under the data directory) or `qdrant` (a server).
    pub engine: VectorEngine,
    /// The Qdrant server's gRPC address; the `QDRANT_URL` variable when unset.
    pub qdrant_url: Option<String>,
    /// The `QDRANT_API_KEY` variable when unset.
    pub qdrant_api_key: Option<String>,
    pub qdrant_collection: String,
    /// The HNSW search beam (recall against latency).
    pub hnsw_ef: usize,
    /// Embedded engine: filtered searches over at most this many points scan
    /// int8 copies instead of walking the graph (applies to a new index).
    pub exact_scan_max_points: usize,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum VectorEngine {
    Edge,
    Qdrant,
}

impl Default for VectorSettings {
    fn default() -> Self {
        Self {
            engine: VectorEngine::Edge,
            qdrant_url: None,
            qdrant_api_key: None,
            qdrant_collection: "helpdesk".into(),
            hnsw_ef: crate::vector::edge::DEFAULT_HNSW_EF,
            exact_scan_max_points: crate::vector::edge::DEFAULT_EXACT_SCAN_MAX_POINTS,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    pub bind: SocketAddr,
    /// Largest request body accepted, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Most inputs in one embedding request (422 beyond).
    pub max_inputs: usize,
    /// Requests queued or running at once (429 beyond).
    pub max_concurrent_requests: usize,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSettings {
    /// A model of models/registry.toml.
    pub name: String,
    pub device: DeviceKind,
    /// CPU threads for the encoder's kernels; 0 = one per core.
    pub threads: usize,
    /// Tokens in one forward pass.
    pub max_batch_tokens: usize,
    /// Sequences in one forward pass.
    pub max_batch_size: usize,
    /// Download from the Hugging Face Hub when the files are not local.
    pub allow_download: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` for people, `json` for log pipelines.
    pub format: LogFormat,
    /// An `EnvFilter` directive, e.g. `info,helpdesk=debug`. `RUST_LOG` wins.
    pub filter: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            models_dir: PathBuf::from("models"),
            server: ServerSettings::default(),
            model: ModelSettings::default(),
            log: LogSettings::default(),
            vector: VectorSettings::default(),
            database: DatabaseSettings::default(),
            auth: AuthSettings::default(),
            worker: WorkerSettings::default(),
            cluster: ClusterSettings::default(),
            security: crate::security::SecuritySettings::default(),
            events: crate::ticketing::events::EventsSettings::default(),
            attachments: crate::ticketing::attachments::AttachmentSettings::default(),
            vision: VisionSettings::default(),
            triage: TriageSettings::default(),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 2 * 1024 * 1024,
            max_inputs: 256,
            max_concurrent_requests: 512,
            role: Role::All,
        }
    }
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            name: "all-minilm-l6-v2".into(),
            device: DeviceKind::Cpu,
            threads: 0,
            // About 48 ticket sentences. Measured (BENCHMARKS.md): throughput
            // peaks at ~32-sentence batches and falls beyond as the FFN's
            // [tokens, 1536] activations outgrow the cache; smaller batches
            // also let a single sentence behind them wait less.
            max_batch_tokens: 2048,
            max_batch_size: 64,
            allow_download: true,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Defaults, then `file` (required when given; `helpdesk.toml` in the
    /// working directory when present otherwise), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(f) if !f.is_file() => return Err(ConfigError::MissingFile(f.to_path_buf())),
            Some(f) => fig = fig.merge(Toml::file_exact(f)),
            None if Path::new("helpdesk.toml").is_file() => {
                fig = fig.merge(Toml::file_exact("helpdesk.toml"))
            }
            None => {}
        }
        let fig = fig.merge(Env::prefixed("HELPDESK__").split("__"));
        let settings: Settings = fig.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.server.max_inputs == 0 {
            return bad("server.max_inputs must be at least 1");
        }
        if self.server.max_concurrent_requests == 0 {
            return bad("server.max_concurrent_requests must be at least 1");
        }
        if self.server.max_body_bytes < 1024 {
            return bad("server.max_body_bytes must be at least 1024");
        }
        if self.model.max_batch_tokens < 256 {
            return bad("model.max_batch_tokens must be at least 256 (one full-length input)");
        }
        if self.model.max_batch_size == 0 {
            return bad("model.max_batch_size must be at least 1");
        }
        if !(60..=86_400).contains(&self.auth.token_ttl_s) {
            return bad("auth.token_ttl_s must be within 60 and 86400");
        }
        if self.auth.jwt_secret.as_ref().is_some_and(|s| s.len() < 32) {
            return bad("auth.jwt_secret must have at least 32 characters");
        }
        self.security.validate().map_err(ConfigError::Invalid)?;
        self.attachments.validate().map_err(ConfigError::Invalid)?;
        crate::vision::pipeline::Pipeline::load(self.vision.pipeline.as_deref())
            .map_err(|e| ConfigError::Invalid(format!("vision.pipeline: {e}")))?;
        crate::triage::pipeline::TriagePipelines::load(self.triage.pipelines.as_deref())
            .map_err(|e| ConfigError::Invalid(format!("triage.pipelines: {e}")))?;
        if self.worker.concurrency == 0 || self.worker.concurrency > 64 {
            return bad("worker.concurrency must be within 1 and 64");
        }
        if self.worker.lease_s < 5 || self.worker.max_attempts < 1 || self.worker.backoff_s < 0 {
            return bad(
                "worker.lease_s must be at least 5, max_attempts at least 1, backoff_s at least 0",
            );
        }
        let needs = |what: &Option<String>, name: &str, role: &str| -> Result<(), ConfigError> {
            match what {
                Some(v) if !v.trim().is_empty() => Ok(()),
                _ => Err(ConfigError::Invalid(format!(
                    "role {role} needs cluster.{name} (HELPDESK__CLUSTER__{})",
                    name.to_uppercase()
                ))),
            }
        };
        match self.server.role {
            Role::Worker => {
                needs(&self.cluster.ai_url, "ai_url", "worker")?;
                needs(&self.cluster.service_key, "service_key", "worker")?;
            }
            Role::Ai if self.cluster.core_url.is_some() => {
                needs(&self.cluster.service_key, "service_key", "ai")?;
            }
            _ => {}
        }
        if self.vector.hnsw_ef == 0 {
            return bad("vector.hnsw_ef must be at least 1");
        }
        if self.vector.qdrant_collection.trim().is_empty() {
            return bad("vector.qdrant_collection is empty");
        }
        Ok(())
    }

    pub fn batch_limits(&self) -> BatchLimits {
        BatchLimits {
            max_batch_tokens: self.model.max_batch_tokens,
            max_batch_size: self.model.max_batch_size,
            max_concurrent_requests: self.server.max_concurrent_requests,
        }
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;

    #[test]
    fn file_then_environment_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "custom.toml",
                "[server]\nbind = \"0.0.0.0:9000\"\nmax_inputs = 64\n[model]\nmax_batch_tokens = 2048\n",
            )?;
            jail.set_env("HELPDESK__SERVER__BIND", "127.0.0.1:7000");
            let s = Settings::load(Some(Path::new("custom.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(s.server.bind, "127.0.0.1:7000".parse().unwrap());
            assert_eq!(s.server.max_inputs, 64);
            assert_eq!(s.model.max_batch_tokens, 2048);
            assert_eq!(s.model.name, "all-minilm-l6-v2");
            Ok(())
        });
    }

    #[test]
    fn helpdesk_toml_in_the_working_directory_is_read() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("helpdesk.toml", "data_dir = \"/srv/helpdesk\"\n")?;
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.data_dir, PathBuf::from("/srv/helpdesk"));
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("a.toml", "[server]\nbindd = \"x\"\n")?;
            assert!(Settings::load(Some(Path::new("a.toml"))).is_err());
            jail.create_file("b.toml", "[model]\nmax_batch_size = 0\n")?;
            let err = Settings::load(Some(Path::new("b.toml")))
                .unwrap_err()
                .to_string();
            assert!(err.contains("max_batch_size"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        assert!(matches!(
            Settings::load(Some(Path::new("/nonexistent/helpdesk.toml"))),
            Err(ConfigError::MissingFile(_))
        ));
    }
}
