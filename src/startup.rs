//! `Application`: builds the router, binds (port 0 in tests), loads the model
//! beside the listener, and serves until stopped.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tokio::net::TcpListener;

use crate::ai::{self, AiState};
use crate::config::Settings;
use crate::error::ApiError;
use crate::inference::{self, EncoderHandle};
use crate::metrics::Metrics;
use crate::ticketing::CoreState;

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AiState,
}

impl Application {
    /// Binds the listener and starts loading the model on its own thread;
    /// `/ready` turns 200 when it is loaded and warm.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        let metrics = Arc::new(Metrics::default());
        let state = AiState::new(settings.clone(), metrics.clone());
        // The KB's vector index: a qdrant-edge shard under the data
        // directory, or a Qdrant server (`vector.engine`).
        let dims = inference::Registry::builtin()
            .get(&settings.model.name)
            .map(|s| s.dims)
            .context("the configured model")?;
        let index = crate::vector::open_index(&settings, dims).context("open the vector index")?;
        tracing::info!(engine = index.engine(), "vector index open");
        let kb = Arc::new(ai::kb::KbService::new(index, &settings.data_dir.join("kb")));
        kb.spawn_optimizer(std::time::Duration::from_secs(10));
        state.set_kb(kb);
        let core = core_state(&settings).await?;
        state.set_core(core.clone());
        let listener = TcpListener::bind(settings.server.bind)
            .await
            .with_context(|| format!("bind {}", settings.server.bind))?;
        spawn_model_loader(state.clone());
        let router = router(state.clone(), core);
        Ok(Self {
            listener,
            router,
            state,
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
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("server error")
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
    Ok(CoreState { db, tokens })
}

pub fn router(state: AiState, core: CoreState) -> Router {
    let limit = state.settings.server.max_body_bytes;
    ai::router(state.clone())
        .merge(crate::ticketing::router(core))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::BadRequest("method not allowed on this route".into())
        })
        .layer(DefaultBodyLimit::max(limit))
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
