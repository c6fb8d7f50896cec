//! The AI service: its state and HTTP routes. For now the embedding server
//! (TEI- and OpenAI-compatible) and the operational endpoints.

pub mod embed;
pub mod openapi;
pub mod ops;
pub mod state;
pub mod urgency;

use axum::Router;

pub use state::AiState;

/// Every AI-service route, ready to be merged into the application router.
pub fn router(state: AiState) -> Router {
    Router::new()
        .merge(embed::router())
        .merge(ops::router())
        .merge(openapi::router())
        .with_state(state)
}
