-- Migration 0001_requests_and_audit. Never edit one that has shipped: add a new file.
CREATE TABLE requests (
    id                TEXT PRIMARY KEY,
    action            TEXT NOT NULL,
    summary           TEXT NOT NULL,
    details           TEXT,             -- JSON, or NULL
    metadata          TEXT NOT NULL,    -- JSON object of scalars
    route             TEXT NOT NULL,
    route_snapshot    TEXT NOT NULL,    -- JSON: the route as it was at creation
    approvers         TEXT NOT NULL,    -- JSON list of approver names
    requested_by      TEXT NOT NULL,    -- what the transport says
    requested_via     TEXT NOT NULL,    -- the channel it came through (mcp)
    claimed_requester TEXT,             -- what the agent says; never used by any rule
    idempotency_key   TEXT,
    content_hash      TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN
                        ('pending', 'approved', 'rejected', 'expired', 'cancelled')),
    on_timeout        TEXT NOT NULL CHECK (on_timeout IN ('approve', 'reject')),
    created_at        REAL NOT NULL,
    expires_at        REAL NOT NULL,
    decided_at        REAL,
    decided_by        TEXT,
    decided_kind      TEXT CHECK (decided_kind IN ('agent', 'human', 'system')),
    decided_via       TEXT,
    reason            TEXT,
    UNIQUE (requested_by, idempotency_key)
) STRICT;
CREATE INDEX requests_pending_by_deadline ON requests (expires_at) WHERE status = 'pending';
CREATE INDEX requests_by_created ON requests (created_at);

CREATE TABLE audit (
    seq            INTEGER PRIMARY KEY,
    at             REAL NOT NULL,
    event          TEXT NOT NULL,
    request_id     TEXT NOT NULL REFERENCES requests (id),
    actor_kind     TEXT NOT NULL CHECK (actor_kind IN ('agent', 'human', 'system')),
    actor          TEXT NOT NULL,
    channel        TEXT NOT NULL,
    route_snapshot TEXT NOT NULL,
    content_hash   TEXT NOT NULL,
    data           TEXT              -- JSON: reason and other event details
) STRICT;
CREATE INDEX audit_by_request ON audit (request_id, seq);
CREATE INDEX audit_by_time ON audit (at);
-- Every change of status writes its audit event in the same statement, so a request
-- never exists without its "created" event, nor a decision without its own.
CREATE TRIGGER audit_request_created AFTER INSERT ON requests BEGIN
    INSERT INTO audit (at, event, request_id, actor_kind, actor, channel, route_snapshot, content_hash, data)
    VALUES (NEW.created_at, 'created', NEW.id, 'agent', NEW.requested_by, NEW.requested_via,
            NEW.route_snapshot, NEW.content_hash, NULL);
    INSERT INTO audit (at, event, request_id, actor_kind, actor, channel, route_snapshot, content_hash, data)
    SELECT NEW.decided_at, NEW.status, NEW.id, NEW.decided_kind, NEW.decided_by, NEW.decided_via,
           NEW.route_snapshot, NEW.content_hash, json_object('reason', NEW.reason)
    WHERE NEW.status <> 'pending';
END;
CREATE TRIGGER audit_request_decided AFTER UPDATE OF status ON requests
    WHEN OLD.status = 'pending' AND NEW.status <> 'pending' BEGIN
    INSERT INTO audit (at, event, request_id, actor_kind, actor, channel, route_snapshot, content_hash, data)
    VALUES (NEW.decided_at, NEW.status, NEW.id, NEW.decided_kind, NEW.decided_by, NEW.decided_via,
            NEW.route_snapshot, NEW.content_hash,
            CASE WHEN NEW.decided_via = 'scheduler' THEN json_object('on_timeout', NEW.on_timeout)
                 WHEN NEW.reason IS NOT NULL THEN json_object('reason', NEW.reason) END);
END;
CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
