-- The triage loop, SQLite dialect (mirrors ../postgres/0002_triage.sql).

-- pending (job queued or running), applied, abstained (left in the triage
-- queue for a human) or failed (the job was dead-lettered).
ALTER TABLE tickets ADD COLUMN triage_status TEXT NOT NULL DEFAULT 'pending';
CREATE INDEX tickets_by_triage ON tickets (tenant_id, triage_status, id);

-- One AI triage per ticket (the unique key makes a replayed callback a
-- no-op): every head's prediction with its model version, confidence and
-- evidence, sentiment, urgency, KB suggestions, similar tickets, and what
-- was applied to the ticket.
CREATE TABLE predictions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    TEXT NOT NULL,
    ticket_id    BIGINT NOT NULL REFERENCES tickets(id),
    status       TEXT NOT NULL CHECK (status IN ('applied', 'abstained')),
    result       TEXT NOT NULL,
    applied      TEXT NOT NULL,
    actor        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    UNIQUE (tenant_id, ticket_id)
);
