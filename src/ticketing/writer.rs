//! Ticket creation with group commit: one task takes the creates queued
//! while the last transaction ran and writes them in one transaction (each
//! ticket with its triage job, audit entry and webhook deliveries), then
//! answers each request. A request is answered only after its ticket is
//! committed, so an acknowledged ticket survives a crash; under load many
//! tickets share one commit instead of queueing for SQLite's single write
//! lock one by one. If a batch fails, its tickets are retried one per
//! transaction, so one bad row cannot fail the others.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Notify};

use super::db::{db_error, now, Db};
use super::events::{Event, EventBus};
use super::tickets::{insert_ticket, Ticket};
use crate::error::ApiError;

/// Tickets in one transaction at most.
const MAX_BATCH: usize = 128;

/// A validated ticket to insert.
#[derive(Debug, Clone)]
pub struct NewRow {
    pub tenant_id: String,
    /// Who created it (the audit log's actor).
    pub actor: String,
    pub subject: String,
    pub body: String,
    pub priority: String,
    pub category: Option<String>,
    pub team_id: Option<i64>,
    pub assignee_id: Option<String>,
    pub requester_id: String,
    pub channel: String,
    /// JSON array.
    pub tags: String,
}

type Reply = oneshot::Sender<Result<Ticket, ApiError>>;

#[derive(Clone)]
pub struct TicketWriter {
    queue: mpsc::Sender<(NewRow, Reply)>,
}

impl TicketWriter {
    /// One writer on SQLite (it has one write lock); several on PostgreSQL,
    /// whose round trips would otherwise leave it idle between statements.
    pub fn spawn(db: Db, events: EventBus, jobs_signal: Arc<Notify>) -> Self {
        let (queue, rx) = mpsc::channel(4096);
        let writers = match db.dialect {
            super::db::Dialect::Sqlite => 1,
            super::db::Dialect::Postgres => 8,
        };
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..writers {
            tokio::spawn(run(
                db.clone(),
                events.clone(),
                rx.clone(),
                jobs_signal.clone(),
            ));
        }
        Self { queue }
    }

    /// Inserts the ticket; returns it once committed.
    pub async fn create(&self, row: NewRow) -> Result<Ticket, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send((row, tx))
            .await
            .map_err(|_| ApiError::NotReady("the ticket writer has stopped".into()))?;
        rx.await
            .map_err(|_| ApiError::NotReady("the ticket writer has stopped".into()))?
    }
}

type Queue = Arc<tokio::sync::Mutex<mpsc::Receiver<(NewRow, Reply)>>>;

async fn run(db: Db, events: EventBus, rx: Queue, jobs_signal: Arc<Notify>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Whoever holds the queue takes what is waiting; the others write.
    while rx.lock().await.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let rows: Vec<&NewRow> = batch.iter().map(|(r, _)| r).collect();
        match write(&db, &rows).await {
            Ok(done) => {
                jobs_signal.notify_one();
                for ((_, reply), (ticket, event)) in batch.drain(..).zip(done) {
                    events.publish(event).await;
                    let _ = reply.send(Ok(ticket));
                }
            }
            Err(e) => {
                if batch.len() > 1 {
                    tracing::warn!(error = %e, n = batch.len(), "ticket batch failed; one by one");
                }
                for (row, reply) in batch.drain(..) {
                    match write(&db, &[&row]).await {
                        Ok(mut done) => {
                            jobs_signal.notify_one();
                            let (ticket, event) = done.remove(0);
                            events.publish(event).await;
                            let _ = reply.send(Ok(ticket));
                        }
                        Err(e) => {
                            let _ = reply.send(Err(db_error(e)));
                        }
                    }
                }
            }
        }
    }
}

async fn write(db: &Db, rows: &[&NewRow]) -> Result<Vec<(Ticket, Event)>, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let at = now();
    let mut done = Vec::with_capacity(rows.len());
    for r in rows {
        done.push(insert_ticket(&mut tx, r, at).await?);
    }
    tx.commit().await?;
    Ok(done)
}
