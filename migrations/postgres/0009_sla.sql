-- When a ticket was solved, PostgreSQL dialect (mirrors ../sqlite/0009_sla.sql):
-- set when it moves to solved or closed, cleared when it is reopened, so
-- the SLA report can tell tickets solved in time from those solved late.
ALTER TABLE tickets ADD COLUMN solved_at BIGINT;
CREATE INDEX tickets_by_solved_at ON tickets (tenant_id, solved_at) WHERE solved_at IS NOT NULL;
