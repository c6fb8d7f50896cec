-- What the image checks link, SQLite dialect (mirrors ../postgres/0008_attachment_links.sql).
-- phash: the attachment's perceptual hash (hex), for near-duplicates within
-- a tenant; asset_id: the asset whose tag or serial a barcode on it named.
ALTER TABLE attachments ADD COLUMN phash TEXT;
ALTER TABLE attachments ADD COLUMN asset_id BIGINT REFERENCES assets(id);
CREATE INDEX attachments_by_phash ON attachments (tenant_id, id) WHERE phash IS NOT NULL;
-- The asset a ticket is about (set by an agent, or by a barcode on one of
-- its attachments when it had none).
ALTER TABLE tickets ADD COLUMN asset_id BIGINT REFERENCES assets(id);
-- Re-triage: a ticket is triaged again when an attachment's text arrives
-- (revision orders the results; a lower or equal one is a replay).
ALTER TABLE predictions ADD COLUMN revision BIGINT NOT NULL DEFAULT 1;
-- Links between tickets, e.g. the same screenshot attached to both.
CREATE TABLE ticket_links (
    tenant_id         TEXT NOT NULL,
    ticket_id         BIGINT NOT NULL REFERENCES tickets(id),
    linked_ticket_id  BIGINT NOT NULL REFERENCES tickets(id),
    reason            TEXT NOT NULL,
    detail            TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, ticket_id, linked_ticket_id, reason)
);
