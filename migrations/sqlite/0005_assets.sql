-- Assets and work orders, SQLite dialect (mirrors ../postgres/0005_assets.sql).
CREATE TABLE assets (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    tag         TEXT NOT NULL,
    serial      TEXT,
    kind        TEXT NOT NULL,
    owner_id    TEXT REFERENCES users(id),
    location    TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (tenant_id, tag)
);

CREATE TABLE work_orders (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    ticket_id     BIGINT NOT NULL REFERENCES tickets(id),
    asset_id      BIGINT REFERENCES assets(id),
    status        TEXT NOT NULL,
    scheduled_at  BIGINT,
    assignee_id   TEXT REFERENCES users(id),
    notes         TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX work_orders_by_tenant ON work_orders (tenant_id, status, scheduled_at);
