//! The triage worker: claims `triage` jobs from the outbox and has the AI
//! service triage each ticket, which calls back into the core. A job is
//! completed only after the callback landed; on an error that may pass it
//! is retried with backoff, and dead-lettered after the queue's attempts
//! (the ticket then shows a failed triage). A worker killed mid-job loses
//! nothing: the lease runs out and a job is claimed again, and the core
//! applies a ticket's triage once however often it is delivered.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use tokio::sync::watch;

use super::{AiClient, ClientError, TriageRequest};
use crate::ticketing::db::{now, Db};
use crate::ticketing::jobs::{self, Failed, Job, QueuePolicy};

#[derive(Clone)]
pub struct Worker {
    pub db: Db,
    pub ai: Arc<dyn AiClient>,
    pub policy: QueuePolicy,
    /// How long to sleep when the queue is empty or the AI is not ready.
    pub idle: Duration,
    /// Delivers webhooks.
    pub http: reqwest::Client,
    /// Attachment bytes (the same store as the core's).
    pub files: Arc<dyn object_store::ObjectStore>,
    /// Cuts an idle sleep short (the in-process core's new jobs).
    pub wake: Option<Arc<tokio::sync::Notify>>,
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No due job (or the AI service is not ready yet: nothing claimed).
    Idle,
    Done(i64),
    Retry(i64),
    Dead(i64),
}

impl Worker {
    /// Runs `tasks` claim loops until `stop` turns true.
    pub fn spawn(
        self,
        tasks: usize,
        stop: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..tasks.max(1))
            .map(|_| {
                let (w, mut stop) = (self.clone(), stop.clone());
                tokio::spawn(async move {
                    while !*stop.borrow() {
                        let idle = match w.step().await {
                            Ok(Step::Idle) => true,
                            Ok(_) => false,
                            Err(e) => {
                                tracing::warn!(error = %e, "triage worker: database error");
                                true
                            }
                        };
                        if idle {
                            let wake = w.wake.clone();
                            let woken = async move {
                                match wake {
                                    Some(n) => n.notified().await,
                                    None => std::future::pending().await,
                                }
                            };
                            tokio::select! {
                                _ = tokio::time::sleep(w.idle) => {}
                                _ = woken => {}
                                changed = stop.changed() => {
                                    if changed.is_err() {
                                        break; // the application is gone
                                    }
                                }
                            }
                        }
                    }
                })
            })
            .collect()
    }

    /// Claims and handles at most one job.
    pub async fn step(&self) -> Result<Step, sqlx::Error> {
        // Claiming triage jobs while the AI cannot answer would only burn
        // their attempts: webhooks still go out meanwhile.
        let kinds: &[&str] = if self.ai.ready().await {
            &[]
        } else {
            &["webhook"]
        };
        let Some(job) = jobs::claim_of(&self.db, &self.policy, now(), kinds).await? else {
            return Ok(Step::Idle);
        };
        match self.handle(&job).await {
            Ok(()) => {
                if !jobs::complete(&self.db, &job).await? {
                    tracing::warn!(job = job.id, "triage job: claim lost before completion");
                }
                Ok(Step::Done(job.id))
            }
            Err(e) => {
                let outcome = if e.retry {
                    jobs::fail(&self.db, &self.policy, &job, &e.message, now()).await?
                } else {
                    // A permanent error (a 4xx): retrying cannot help.
                    jobs::bury(&self.db, &job, &e.message).await?;
                    Failed::Dead
                };
                tracing::warn!(job = job.id, error = %e.message, ?outcome, "triage job failed");
                match outcome {
                    Failed::Retry(_) => Ok(Step::Retry(job.id)),
                    Failed::Dead => {
                        if let (Some(t), "triage") = (ticket_of(&job), job.kind.as_str()) {
                            crate::ticketing::triage::mark_failed(&self.db, &job.tenant_id, t)
                                .await?;
                        }
                        Ok(Step::Dead(job.id))
                    }
                }
            }
        }
    }

    async fn handle(&self, job: &Job) -> Result<(), ClientError> {
        match job.kind.as_str() {
            "triage" => self.triage(job).await,
            "webhook" => self.deliver(job).await,
            "kb_index" => self.index_article(job).await,
            "attachment_check" => self.check_attachment(job).await,
            other => Err(ClientError::new(
                format!("unknown job kind {other:?}"),
                false,
            )),
        }
    }

    /// POSTs a webhook delivery, signed (`ticketing::webhooks`). Any answer
    /// but a 2xx is retried.
    async fn deliver(&self, job: &Job) -> Result<(), ClientError> {
        let hook = job.payload["webhook_id"]
            .as_i64()
            .ok_or_else(|| ClientError::new("webhook job without a webhook_id", false))?;
        let target = crate::ticketing::webhooks::target(&self.db, &job.tenant_id, hook)
            .await
            .map_err(|e| ClientError::new(format!("read webhook {hook}: {e}"), true))?;
        let Some((url, secret)) = target else {
            return Ok(()); // deleted since: dropped
        };
        let event = &job.payload["event"];
        let body = serde_json::to_vec(event).map_err(|e| ClientError::new(e.to_string(), false))?;
        let ts = now();
        let r = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header(
                "x-helpdesk-event",
                event["kind"].as_str().unwrap_or_default(),
            )
            .header("x-helpdesk-delivery", &job.idempotency_key)
            .header("x-helpdesk-timestamp", ts.to_string())
            .header(
                "x-helpdesk-signature",
                crate::ticketing::webhooks::signature(&secret, ts, &body),
            )
            .body(body)
            .send()
            .await
            .map_err(|e| ClientError::new(format!("webhook {hook}: {e}"), true))?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(ClientError::new(
                format!("webhook {hook}: the receiver answered {}", r.status()),
                true,
            ))
        }
    }

    /// Has the AI service check an image attachment; stores its report.
    /// A file the checks refuse (damaged, too many pixels) gets the refusal
    /// as its report instead of being retried.
    async fn check_attachment(&self, job: &Job) -> Result<(), ClientError> {
        use crate::ticketing::attachments;
        let id = job.payload["attachment_id"].as_i64().ok_or_else(|| {
            ClientError::new("attachment_check job without an attachment_id", false)
        })?;
        let bytes = attachments::stored_bytes(&self.db, self.files.as_ref(), &job.tenant_id, id)
            .await
            .map_err(|e| ClientError::new(format!("read attachment {id}: {e}"), true))?;
        let Some(bytes) = bytes else {
            return Ok(()); // gone
        };
        let report = match self.ai.analyze_image(&job.tenant_id, bytes).await {
            Ok(r) => r,
            Err(e) if !e.retry => serde_json::json!({ "error": e.message }),
            Err(e) => return Err(e),
        };
        let saved = attachments::save_analysis(&self.db, &job.tenant_id, id, &report)
            .await
            .map_err(|e| ClientError::new(e.to_string(), true))?;
        // Text in the image (an error dialog): the ticket is triaged again
        // with it. Its revision follows the attachment's id, so the later
        // of two attachments wins; a triage that read it already skips it.
        if let Some((ticket, _)) = saved.filter(|(_, r)| attachments::usable_text(r).is_some()) {
            self.queue_retriage(&job.tenant_id, ticket, id).await?;
        }
        Ok(())
    }

    /// Queues a re-triage of `ticket` for the text of `attachment`.
    async fn queue_retriage(
        &self,
        tenant: &str,
        ticket: i64,
        attachment: i64,
    ) -> Result<(), ClientError> {
        let fail = |e: sqlx::Error| ClientError::new(format!("queue a re-triage: {e}"), true);
        let mut tx = self.db.begin_write().await.map_err(fail)?;
        let payload = serde_json::json!({
            "ticket_id": ticket, "revision": 1 + attachment, "attachment_id": attachment,
        });
        let key = format!("triage:{ticket}:attachment:{attachment}");
        let queued = crate::ticketing::jobs::enqueue(
            &mut tx,
            tenant,
            "triage",
            &payload,
            &key,
            crate::ticketing::db::now(),
        )
        .await;
        match queued {
            Ok(()) => tx.commit().await.map_err(fail)?,
            // Queued already (this check ran twice): nothing to add.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Ok(()),
            Err(e) => return Err(fail(e)),
        }
        if let Some(w) = &self.wake {
            w.notify_one();
        }
        Ok(())
    }

    /// Has the AI service index (or drop) a KB article as the core has it
    /// now: a queued upsert of an article deleted since does nothing, a
    /// delete of one re-created since is skipped, and a delete that raced a
    /// re-create (its upsert indexed first) indexes the article again.
    async fn index_article(&self, job: &Job) -> Result<(), ClientError> {
        use crate::ticketing::kb;
        let id = job.payload["article_id"]
            .as_str()
            .ok_or_else(|| ClientError::new("kb_index job without an article_id", false))?;
        let now_there = kb::current(&self.db, &job.tenant_id, id)
            .await
            .map_err(|e| ClientError::new(format!("read article {id}: {e}"), true))?;
        match (job.payload["op"].as_str(), now_there) {
            (Some("upsert"), Some((article, version))) => {
                self.ai.kb_upsert(&job.tenant_id, article).await?;
                kb::mark_indexed(&self.db, &job.tenant_id, id, version)
                    .await
                    .map_err(|e| ClientError::new(e.to_string(), true))
            }
            (Some("delete"), None) => {
                self.ai.kb_delete(&job.tenant_id, id).await?;
                // Re-created while this delete ran (its upsert job may have
                // indexed it just before): index it again, or it would be
                // in the core but missing from the index.
                let again = kb::current(&self.db, &job.tenant_id, id)
                    .await
                    .map_err(|e| ClientError::new(format!("read article {id}: {e}"), true))?;
                match again {
                    Some((article, version)) => {
                        self.ai.kb_upsert(&job.tenant_id, article).await?;
                        kb::mark_indexed(&self.db, &job.tenant_id, id, version)
                            .await
                            .map_err(|e| ClientError::new(e.to_string(), true))
                    }
                    None => Ok(()),
                }
            }
            (Some("upsert"), None) | (Some("delete"), Some(_)) => Ok(()),
            (other, _) => Err(ClientError::new(
                format!("unknown kb_index op {other:?}"),
                false,
            )),
        }
    }

    async fn triage(&self, job: &Job) -> Result<(), ClientError> {
        let id = ticket_of(job)
            .ok_or_else(|| ClientError::new("triage job without a ticket_id", false))?;
        let row = sqlx::query(
            "SELECT subject, body, created_at, triage_status FROM tickets \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(&job.tenant_id)
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await
        .map_err(|e| ClientError::new(format!("read ticket {id}: {e}"), true))?;
        let Some(row) = row else {
            return Ok(()); // the ticket is gone: nothing to triage
        };
        let get = |c: &str| -> Result<String, ClientError> {
            row.try_get(c)
                .map_err(|e| ClientError::new(e.to_string(), false))
        };
        let revision = job.payload["revision"].as_i64().unwrap_or(1);
        let texts = crate::ticketing::attachments::texts_of(&self.db, &job.tenant_id, id)
            .await
            .map_err(|e| ClientError::new(format!("read ticket {id}'s attachments: {e}"), true))?;
        if revision == 1 && get("triage_status")? != "pending" {
            return Ok(()); // triaged already (an earlier attempt's callback landed)
        }
        if let Some(a) = job.payload["attachment_id"].as_i64() {
            // A re-triage for an attachment's text: not needed when the
            // stored triage read it already (it ran after the check).
            let stored = crate::ticketing::triage::stored(&self.db.pool, &job.tenant_id, id)
                .await
                .map_err(ClientError::from)?;
            if stored.is_some_and(|(r, _)| r.attachments.contains(&a) || r.revision >= revision) {
                return Ok(());
            }
        }
        // The tenant's pipeline and label sets travel with the request.
        let settings = crate::ticketing::triage::routing_settings(&self.db.pool, &job.tenant_id)
            .await
            .map_err(ClientError::from)?;
        let req = TriageRequest {
            ticket_id: id,
            subject: get("subject")?,
            body: get("body")?,
            created_at: row.try_get("created_at").ok(),
            callback: true,
            attachments: texts.iter().map(|(a, _)| *a).collect(),
            attachment_text: texts.into_iter().map(|(_, t)| t).collect(),
            revision,
            pipeline: settings.pipeline,
            label_sets: settings.label_sets,
        };
        let answer = self.ai.triage(&job.tenant_id, req).await?;
        match answer.callback {
            Some(_) => Ok(()),
            None => Err(ClientError::new(
                "the AI service did not deliver the result to the core (is cluster.core_url set on it?)",
                false,
            )),
        }
    }
}

fn ticket_of(job: &Job) -> Option<i64> {
    job.payload.get("ticket_id").and_then(|v| v.as_i64())
}
