//! The AI service: its state and HTTP routes: the embedding server (TEI- and
//! OpenAI-compatible), the label heads (classify, sentiment, urgency, model
//! versions and training jobs) and the operational endpoints.

pub mod attachments;
pub mod classify;
pub mod embed;
pub mod heads;
pub mod kb;
pub mod openapi;
pub mod ops;
pub mod similar;
pub mod state;
pub mod tenant;
pub mod tenant_settings;
pub mod triage;
pub mod urgency;

use axum::Router;

pub use state::AiState;

/// Every AI-service route, ready to be merged into the application router.
pub fn router(state: AiState) -> Router {
    Router::new()
        .merge(embed::router())
        .merge(classify::router())
        .merge(kb::router())
        .merge(similar::router())
        .merge(triage::router())
        .merge(attachments::router())
        .merge(tenant_settings::router())
        .merge(ops::router())
        .merge(openapi::router())
        .with_state(state)
}
