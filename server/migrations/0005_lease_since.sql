-- Migration 0005_lease_since. Never edit one that has shipped: add a new file.
-- Since when the current owner has held a lease without a gap (`signoff status`, /healthz).
ALTER TABLE leases ADD COLUMN since REAL NOT NULL DEFAULT 0;
-- Undelivered outbox rows by kind, for the backlog that status and /metrics report.
CREATE INDEX outbox_undelivered ON outbox (kind, created_at) WHERE done_at IS NULL;
CREATE INDEX outbox_failed ON outbox (kind, done_at) WHERE last_error IS NOT NULL;
