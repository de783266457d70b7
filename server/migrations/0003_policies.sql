-- Migration 0003_policies. Never edit one that has shipped: add a new file.
-- level: escalation levels fired so far; the timers of a pending request; the requester's
-- MCP session (for session grants); the URL POSTed to once the request is final.
ALTER TABLE requests ADD COLUMN level INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN next_escalation_at REAL;
ALTER TABLE requests ADD COLUMN next_reminder_at REAL;
ALTER TABLE requests ADD COLUMN session TEXT;
ALTER TABLE requests ADD COLUMN callback_url TEXT;
CREATE INDEX requests_escalation_due ON requests (next_escalation_at)
    WHERE status = 'pending' AND next_escalation_at IS NOT NULL;
CREATE INDEX requests_reminder_due ON requests (next_reminder_at)
    WHERE status = 'pending' AND next_reminder_at IS NOT NULL;

-- One vote per approver per request; the request's status changes when the votes reach
-- its route's quorum (or can no longer reach it).
CREATE TABLE votes (
    request_id TEXT NOT NULL REFERENCES requests (id),
    approver   TEXT NOT NULL,
    vote       TEXT NOT NULL CHECK (vote IN ('approve', 'reject')),
    at         REAL NOT NULL,
    via        TEXT NOT NULL,
    reason     TEXT,
    PRIMARY KEY (request_id, approver)
) STRICT;

-- Grants: "approve requests like this one for 30 minutes".
CREATE TABLE grants (
    id           TEXT PRIMARY KEY,
    route        TEXT NOT NULL,
    action       TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    session      TEXT,              -- set: only this MCP session
    argument     TEXT,              -- set: details[argument] must match pattern
    pattern      TEXT,
    from_request TEXT NOT NULL REFERENCES requests (id),
    created_at   REAL NOT NULL,
    created_by   TEXT NOT NULL,
    expires_at   REAL NOT NULL,
    max_uses     INTEGER,
    uses         INTEGER NOT NULL DEFAULT 0,
    revoked_at   REAL,
    revoked_by   TEXT,
    chat_id      INTEGER,           -- the message that shows how often it was used
    message_id   INTEGER
) STRICT;
CREATE INDEX grants_live ON grants (route, action, requested_by) WHERE revoked_at IS NULL;

-- Digests: requests gathered into one message per chat instead of a prompt each.
CREATE TABLE digest_items (
    seq        INTEGER PRIMARY KEY,
    chat_id    INTEGER NOT NULL,
    request_id TEXT NOT NULL REFERENCES requests (id),
    approver   TEXT NOT NULL,
    UNIQUE (chat_id, request_id)
) STRICT;
CREATE TABLE digests (
    chat_id    INTEGER PRIMARY KEY,
    message_id INTEGER,
    shown_upto INTEGER NOT NULL DEFAULT 0   -- the last item the message showed
) STRICT;

-- A digest shows a decision on one of its requests (whoever made it) at its next refresh.
CREATE TRIGGER outbox_digest_decided AFTER UPDATE OF status ON requests
    WHEN OLD.status = 'pending' AND NEW.status <> 'pending' BEGIN
    INSERT INTO outbox (request_id, kind, chat_id, created_at, next_attempt_at)
    SELECT NEW.id, 'digest', chat_id, NEW.decided_at, NEW.decided_at FROM digest_items WHERE request_id = NEW.id
    ON CONFLICT (request_id, kind, chat_id) DO UPDATE SET done_at = NULL, next_attempt_at = excluded.next_attempt_at;
END;

-- Decision callbacks go through the outbox too (kind 'callback', chat_id 0).
CREATE TRIGGER outbox_callback_decided AFTER UPDATE OF status ON requests
    WHEN OLD.status = 'pending' AND NEW.status <> 'pending' AND NEW.callback_url IS NOT NULL BEGIN
    INSERT OR IGNORE INTO outbox (request_id, kind, chat_id, created_at, next_attempt_at)
    VALUES (NEW.id, 'callback', 0, NEW.decided_at, NEW.decided_at);
END;
CREATE TRIGGER outbox_callback_at_once AFTER INSERT ON requests
    WHEN NEW.status <> 'pending' AND NEW.callback_url IS NOT NULL BEGIN
    INSERT OR IGNORE INTO outbox (request_id, kind, chat_id, created_at, next_attempt_at)
    VALUES (NEW.id, 'callback', 0, NEW.created_at, NEW.created_at);
END;
