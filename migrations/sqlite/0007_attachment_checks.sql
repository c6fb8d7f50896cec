-- Image checks on attachments, SQLite dialect (mirrors ../postgres/0007_attachment_checks.sql).
-- privacy: the metadata removed before storing (JSON); analysis: the AI
-- service's report (JSON), written by the worker's attachment_check job.
ALTER TABLE attachments ADD COLUMN privacy TEXT;
ALTER TABLE attachments ADD COLUMN analysis TEXT;
