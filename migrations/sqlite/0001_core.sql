-- The ticketing core, SQLite dialect (mirrors ../postgres/0001_core.sql).
-- Times are Unix seconds; ids of tenants, users and API keys are UUIDs.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    settings    TEXT NOT NULL DEFAULT '{}',
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    email          TEXT NOT NULL,
    name           TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'agent', 'customer')),
    password_hash  TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    UNIQUE (tenant_id, email)
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    user_id     TEXT NOT NULL REFERENCES users(id),
    name        TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    scopes      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE teams (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE tickets (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    subject       TEXT NOT NULL,
    body          TEXT NOT NULL,
    status        TEXT NOT NULL,
    priority      TEXT NOT NULL,
    category      TEXT,
    team_id       BIGINT REFERENCES teams(id),
    assignee_id   TEXT REFERENCES users(id),
    requester_id  TEXT NOT NULL REFERENCES users(id),
    channel       TEXT NOT NULL,
    tags          TEXT NOT NULL DEFAULT '[]',
    sla_due       BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX tickets_by_tenant ON tickets (tenant_id, id);
CREATE INDEX tickets_by_requester ON tickets (tenant_id, requester_id, id);

CREATE TABLE comments (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    ticket_id   BIGINT NOT NULL REFERENCES tickets(id),
    author_id   TEXT REFERENCES users(id),
    body        TEXT NOT NULL,
    public      BIGINT NOT NULL CHECK (public IN (0, 1)),
    created_at  BIGINT NOT NULL
);
CREATE INDEX comments_by_ticket ON comments (tenant_id, ticket_id, id);

-- An agent's correction of a ticket's routing: training data for the label heads.
CREATE TABLE labels (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   TEXT NOT NULL,
    ticket_id   BIGINT NOT NULL REFERENCES tickets(id),
    task        TEXT NOT NULL,
    label       TEXT NOT NULL,
    previous    TEXT,
    actor       TEXT NOT NULL,
    at          BIGINT NOT NULL
);
CREATE INDEX labels_by_task ON labels (tenant_id, task, id);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    object      TEXT NOT NULL,
    before      TEXT,
    after       TEXT,
    at          BIGINT NOT NULL
);
CREATE INDEX audit_by_tenant ON audit_log (tenant_id, id);

-- Written in the transaction that creates a ticket; workers claim rows.
CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id        TEXT NOT NULL,
    kind             TEXT NOT NULL,
    payload          TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL UNIQUE,
    status           TEXT NOT NULL DEFAULT 'pending',
    attempts         BIGINT NOT NULL DEFAULT 0,
    available_at     BIGINT NOT NULL,
    lease_until      BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX outbox_ready ON outbox (status, available_at);
