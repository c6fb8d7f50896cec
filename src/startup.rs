//! `Application`: builds the router, binds (port 0 in tests), loads the model
//! beside the listener, and serves until stopped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tokio::net::TcpListener;

use crate::ai::{self, AiState};
use crate::config::{Role, Settings};
use crate::error::ApiError;
use crate::inference::{self, EncoderHandle};
use crate::metrics::Metrics;
use crate::ticketing::jobs::QueuePolicy;
use crate::ticketing::CoreState;
use crate::triage::worker::Worker;
use crate::triage::{AiClient, HttpClient};

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AiState,
    /// Tells the triage workers to stop when the server does.
    stop_workers: tokio::sync::watch::Sender<bool>,
}

impl Application {
    /// Binds the listener and starts what the role runs (`server.role`):
    /// the AI service loads its model on its own thread (`/ready` turns 200
    /// when it is loaded and warm); the core serves `/api/v1`; the worker
    /// claims triage jobs. Every role opens the core's database: the core
    /// serves it, the AI service checks credentials in it, the worker
    /// claims its jobs from it.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        let role = settings.server.role;
        let runs_ai = matches!(role, Role::All | Role::Ai);
        let metrics = Arc::new(Metrics::default());
        let state = AiState::new(settings.clone(), metrics.clone());
        if runs_ai {
            // The KB's vector index: a qdrant-edge shard under the data
            // directory, or a Qdrant server (`vector.engine`).
            let dims = inference::Registry::builtin()
                .get(&settings.model.name)
                .map(|s| s.dims)
                .context("the configured model")?;
            let index =
                crate::vector::open_index(&settings, dims).context("open the vector index")?;
            tracing::info!(engine = index.engine(), "vector index open");
            let kb = Arc::new(ai::kb::KbService::new(index, &settings.data_dir.join("kb")));
            kb.spawn_optimizer(std::time::Duration::from_secs(10));
            state.set_kb(kb);
        }
        let core = core_state(&settings).await?;
        state.set_core(core.clone());
        let cluster = &settings.cluster;
        let service_key = cluster.service_key.clone().unwrap_or_default();
        match (role, &cluster.core_url) {
            (Role::All, _) => state.set_core_client(Arc::new(core.clone())),
            (Role::Ai, Some(url)) => state.set_core_client(Arc::new(HttpClient::new(
                url,
                &service_key,
                Duration::from_secs(30),
            ))),
            _ => {}
        }
        let listener = TcpListener::bind(settings.server.bind)
            .await
            .with_context(|| format!("bind {}", settings.server.bind))?;
        if runs_ai {
            spawn_model_loader(state.clone());
        }
        let ai_client: Option<Arc<dyn AiClient>> = match role {
            Role::All if settings.worker.enabled => Some(Arc::new(state.clone())),
            Role::Worker => Some(Arc::new(HttpClient::new(
                cluster.ai_url.as_deref().unwrap_or_default(),
                &service_key,
                Duration::from_secs(120),
            ))),
            _ => None,
        };
        let (stop_workers, stopped) = tokio::sync::watch::channel(false);
        if let Some(ai) = ai_client {
            let w = &settings.worker;
            let worker = Worker {
                db: core.db.clone(),
                ai,
                policy: QueuePolicy {
                    lease_s: w.lease_s,
                    max_attempts: w.max_attempts,
                    backoff_s: w.backoff_s,
                    ..QueuePolicy::default()
                },
                idle: Duration::from_millis(w.idle_ms),
                // In one process the core wakes it when it commits jobs.
                wake: (role == Role::All).then(|| core.jobs_signal.clone()),
                files: core.files.clone(),
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .context("the webhook client")?,
            };
            worker.spawn(w.concurrency, stopped);
            tracing::info!(tasks = w.concurrency, "triage worker running");
        }
        let router = router(state.clone(), core);
        Ok(Self {
            listener,
            router,
            state,
            stop_workers,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> &AiState {
        &self.state
    }

    /// Serves until Ctrl-C or SIGTERM, then finishes the requests in flight.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, "listening");
        let service = self
            .router
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let served = axum::serve(self.listener, service)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("server error");
        let _ = self.stop_workers.send(true);
        served
    }
}

/// The core's database (migrated) and token signer.
pub async fn core_state(settings: &Settings) -> anyhow::Result<CoreState> {
    let url =
        crate::ticketing::db::database_url(settings.database.url.as_deref(), &settings.data_dir);
    let db = crate::ticketing::Db::connect(&url)
        .await
        .context("open the database")?;
    tracing::info!(dialect = ?db.dialect, "database open");
    let tokens = match &settings.auth.jwt_secret {
        Some(secret) => crate::ticketing::auth::TokenSigner::new(
            secret.clone().into_bytes(),
            settings.auth.token_ttl_s,
        ),
        None => crate::ticketing::auth::TokenSigner::from_file(
            &settings.data_dir.join("jwt-secret"),
            settings.auth.token_ttl_s,
        )
        .context("the login-token secret")?,
    };
    let events = match crate::ticketing::events::redis_url(&settings.events) {
        Some(url) => {
            crate::ticketing::events::EventBus::redis(&url, &settings.events.redis_channel)
                .await
                .with_context(|| format!("connect to Redis at {url} for live events"))?
        }
        None => crate::ticketing::events::EventBus::local(),
    };
    let jobs_signal = Arc::new(tokio::sync::Notify::new());
    let writer = crate::ticketing::writer::TicketWriter::spawn(
        db.clone(),
        events.clone(),
        jobs_signal.clone(),
    );
    let files = settings
        .attachments
        .open(&settings.data_dir)
        .context("open the attachment store")?;
    Ok(CoreState {
        db,
        tokens,
        events,
        writer,
        jobs_signal,
        files,
        max_attachment_bytes: settings.attachments.max_bytes,
        pipelines: std::sync::Arc::new(
            crate::triage::pipeline::TriagePipelines::load(settings.triage.pipelines.as_deref())
                .map_err(anyhow::Error::msg)
                .context("triage.pipelines")?,
        ),
    })
}

/// The routes of the role: the AI service's (`/v1`, `/embed`, …), the
/// core's (`/api/v1`), both, or — for the worker — the operational ones.
pub fn router(state: AiState, core: CoreState) -> Router {
    let limit = state.settings.server.max_body_bytes;
    let routes = match state.settings.server.role {
        Role::All => ai::router(state.clone()).merge(crate::ticketing::router(core)),
        Role::Ai => ai::router(state.clone()),
        Role::Core => ai::ops::router()
            .with_state(state.clone())
            .merge(crate::ticketing::router(core)),
        Role::Worker => ai::ops::router().with_state(state.clone()),
    };
    routes
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::BadRequest("method not allowed on this route".into())
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(
            crate::security::Guard::new(state.settings.security.clone()),
            crate::security::guard,
        ))
        .layer(middleware::from_fn_with_state(state, observe))
}

/// Records every request's route, status and latency.
async fn observe(State(state): State<AiState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let start = Instant::now();
    let response = next.run(req).await;
    let secs = start.elapsed().as_secs_f64();
    state
        .metrics
        .record_request(&route, response.status().as_u16(), secs);
    tracing::debug!(
        route,
        status = response.status().as_u16(),
        ms = secs * 1e3,
        "request"
    );
    response
}

fn spawn_model_loader(state: AiState) {
    std::thread::Builder::new()
        .name("model-loader".into())
        .spawn(move || {
            // A panic while loading must still turn into a clear 503, not a
            // service that says "still loading" forever.
            let guard = state.clone();
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load_model(&state)));
            if outcome.is_err() {
                guard.set_load_error("the model loader panicked (see the log)".into());
            }
        })
        .expect("spawning the model loader");
}

fn load_model(state: &AiState) {
    let start = Instant::now();
    let s = &state.settings;
    let loaded = inference::load_text_encoder(
        &s.model.name,
        &s.models_dir,
        s.model.device,
        s.model.allow_download,
    )
    .and_then(|enc| {
        // One pass now so the first request does not pay for page
        // faults on the weights and the allocator's first growth.
        enc.embed(&["warm-up"], true, true)?;
        Ok(enc)
    });
    match loaded {
        Ok(enc) => {
            let handle = EncoderHandle::spawn(enc, s.batch_limits(), state.metrics.clone());
            state.set_encoder(handle);
            tracing::info!(ms = start.elapsed().as_millis() as u64, "model ready");
        }
        Err(e) => {
            tracing::error!(error = %e, "model failed to load");
            state.set_load_error(e.to_string());
        }
    }
    // The attachment checks' image classifier and OCR engine: loaded now so
    // the first image does not wait; without them the checks still run and
    // report those steps unavailable.
    let start = Instant::now();
    match state.vision.prepare(s.model.allow_download) {
        Ok(()) => tracing::info!(
            ms = start.elapsed().as_millis() as u64,
            "image classifier ready"
        ),
        Err(e) => tracing::warn!(error = %e, "image classifier unavailable: attachment kinds off"),
    }
    if let Err(e) = crate::vision::ocr::english() {
        tracing::warn!(error = %e, "OCR unavailable: attachment text off");
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
