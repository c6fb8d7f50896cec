-- Ticket attachments, SQLite dialect (mirrors ../postgres/0004_attachments.sql).
-- The bytes live in the object store under storage_key.
CREATE TABLE attachments (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    ticket_id     BIGINT NOT NULL REFERENCES tickets(id),
    filename      TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    size          BIGINT NOT NULL,
    sha256        TEXT NOT NULL,
    storage_key   TEXT NOT NULL UNIQUE,
    public        BIGINT NOT NULL CHECK (public IN (0, 1)),
    uploaded_by   TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX attachments_by_ticket ON attachments (tenant_id, ticket_id, id);
