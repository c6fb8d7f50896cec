//! The ticketing core: tenants, users, teams, tickets and comments under
//! `/api/v1`, on SQLite or PostgreSQL (`db`), authenticated by API keys and
//! login tokens (`auth`). Creating a ticket writes its triage job to the
//! outbox in the same transaction.

pub mod analytics;
pub mod assets;
pub mod attachments;
pub mod auth;
pub mod db;
pub mod directory;
pub mod events;
pub mod jobs;
pub mod kb;
pub mod records;
pub mod tickets;
pub mod triage;
pub mod webhooks;
pub mod writer;

use axum::handler::Handler;
use axum::routing::{get, post, put};
use axum::Router;

pub use auth::{Principal, Role};
pub use db::Db;

#[derive(Clone)]
pub struct CoreState {
    pub db: Db,
    pub tokens: auth::TokenSigner,
    pub events: events::EventBus,
    /// Ticket creation (group commit).
    pub writer: writer::TicketWriter,
    /// Signalled when new jobs are committed, so an in-process worker
    /// need not wait for its next poll.
    pub jobs_signal: std::sync::Arc<tokio::sync::Notify>,
    /// Attachment bytes (a local folder or an S3 bucket).
    pub files: std::sync::Arc<dyn object_store::ObjectStore>,
    pub max_attachment_bytes: usize,
    /// The triage pipelines a tenant may choose from.
    pub pipelines: std::sync::Arc<crate::triage::pipeline::TriagePipelines>,
}

/// Every core route, ready to be merged into the application router.
pub fn router(state: CoreState) -> Router {
    let attachment_limit = axum::extract::DefaultBodyLimit::max(state.max_attachment_bytes);
    Router::new()
        .route(
            "/api/v1/tickets/{id}/attachments",
            get(attachments::list).post(attachments::upload.layer(attachment_limit)),
        )
        .route("/api/v1/attachments/{id}", get(attachments::download))
        .route("/api/v1/kb/articles", get(kb::list).post(kb::upsert))
        .route("/api/v1/kb/articles/{id}", get(kb::read).delete(kb::delete))
        .route(
            "/api/v1/assets",
            get(assets::list_assets).post(assets::create_asset),
        )
        .route(
            "/api/v1/assets/{id}",
            get(assets::read_asset).patch(assets::update_asset),
        )
        .route(
            "/api/v1/work-orders",
            get(assets::list_work_orders).post(assets::create_work_order),
        )
        .route(
            "/api/v1/work-orders/{id}",
            get(assets::read_work_order).patch(assets::update_work_order),
        )
        .route("/api/v1/auth/login", post(auth::login))
        .route("/api/v1/me", get(directory::me))
        .route(
            "/api/v1/users",
            get(directory::list_users).post(directory::create_user),
        )
        .route(
            "/api/v1/teams",
            get(directory::list_teams).post(directory::create_team),
        )
        .route("/api/v1/api-keys", post(directory::create_key))
        .route("/api/v1/tickets", get(tickets::list).post(tickets::create))
        .route(
            "/api/v1/tickets/{id}",
            get(tickets::read).patch(tickets::update),
        )
        .route("/api/v1/tickets/{id}/triage", post(triage::callback))
        .route("/api/v1/events", get(events::stream))
        .route("/api/v1/audit", get(records::audit))
        .route("/api/v1/labels", get(records::labels))
        .route("/api/v1/analytics/volume", get(analytics::volume))
        .route("/api/v1/analytics/sentiment", get(analytics::sentiment))
        .route("/api/v1/analytics/sla", get(analytics::sla))
        .route("/api/v1/analytics/triage", get(analytics::triage))
        .route(
            "/api/v1/webhooks",
            get(webhooks::list).post(webhooks::create),
        )
        .route(
            "/api/v1/webhooks/{id}",
            axum::routing::delete(webhooks::delete),
        )
        .route(
            "/api/v1/tenant/settings",
            get(triage::get_settings).merge(put(triage::put_settings)),
        )
        .route(
            "/api/v1/tickets/{id}/comments",
            get(tickets::list_comments).post(tickets::add_comment),
        )
        .with_state(state)
}

/// A new random id (UUID v4 text).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `text` trimmed, when it has 1 to `max` characters; a 422 naming `what`
/// otherwise.
pub fn bounded<'a>(
    what: &str,
    text: &'a str,
    max: usize,
) -> Result<&'a str, crate::error::ApiError> {
    let t = text.trim();
    if t.is_empty() || t.chars().count() > max {
        return Err(crate::error::ApiError::validation(format!(
            "{what} must be 1-{max} characters"
        )));
    }
    Ok(t)
}
