-- Knowledge-base articles in the core, PostgreSQL dialect (mirrors ../sqlite/0006_kb.sql).
-- The AI service indexes them (outbox jobs of kind 'kb_index').
CREATE TABLE kb_articles (
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    id            TEXT NOT NULL,
    title         TEXT NOT NULL,
    visibility    TEXT NOT NULL CHECK (visibility IN ('public', 'internal')),
    article       TEXT NOT NULL,
    index_status  TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
