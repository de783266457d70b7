-- Migration 0010_questions. Never edit one that has shipped: add a new file.
-- ask_human: a request can be a question (kind 'question') that a human answers (status
-- 'answered', the text in `answer`) instead of approving. SQLite cannot change a CHECK in
-- place, so `requests` is rebuilt (the migration runs with foreign keys off and checks them
-- before it commits; see server/db.py) and its indexes and triggers are made again.
-- The table's CHECKs keep the two kinds apart: a question is never approved or rejected, an
-- approval request is never answered, and only an answered question has an answer.
CREATE TABLE requests_new (
    id                 TEXT PRIMARY KEY,
    action             TEXT NOT NULL,
    summary            TEXT NOT NULL,
    details            TEXT,             -- JSON, or NULL
    metadata           TEXT NOT NULL,    -- JSON object of scalars
    route              TEXT NOT NULL,
    route_snapshot     TEXT NOT NULL,    -- JSON: the route as it was at creation
    approvers          TEXT NOT NULL,    -- JSON list of approver names
    requested_by       TEXT NOT NULL,    -- what the transport says
    requested_via      TEXT NOT NULL,    -- the channel it came through (mcp)
    claimed_requester  TEXT,             -- what the agent says; never used by any rule
    idempotency_key    TEXT,
    content_hash       TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN
                         ('pending', 'approved', 'rejected', 'expired', 'cancelled', 'answered')),
    on_timeout         TEXT NOT NULL CHECK (on_timeout IN ('approve', 'reject')),
    created_at         REAL NOT NULL,
    expires_at         REAL NOT NULL,
    decided_at         REAL,
    decided_by         TEXT,
    decided_kind       TEXT CHECK (decided_kind IN ('agent', 'human', 'system')),
    decided_via        TEXT,
    reason             TEXT,
    level              INTEGER NOT NULL DEFAULT 0,
    next_escalation_at REAL,
    next_reminder_at   REAL,
    session            TEXT,
    callback_url       TEXT,
    cwd                TEXT,
    action_digest      TEXT,
    client_name        TEXT,
    edited_details     TEXT,
    edited_digest      TEXT,
    kind               TEXT NOT NULL DEFAULT 'approval' CHECK (kind IN ('approval', 'question')),
    options            TEXT,             -- questions: JSON list of the answers offered, or NULL
    answer             TEXT,             -- an answered question's answer
    UNIQUE (requested_by, idempotency_key),
    CHECK (kind = 'approval' OR status IN ('pending', 'answered', 'expired', 'cancelled')),
    CHECK (kind = 'question' OR (status <> 'answered' AND options IS NULL)),
    CHECK ((status = 'answered') = (answer IS NOT NULL))
) STRICT;
INSERT INTO requests_new (id, action, summary, details, metadata, route, route_snapshot, approvers, requested_by,
                          requested_via, claimed_requester, idempotency_key, content_hash, status, on_timeout,
                          created_at, expires_at, decided_at, decided_by, decided_kind, decided_via, reason, level,
                          next_escalation_at, next_reminder_at, session, callback_url, cwd, action_digest,
                          client_name, edited_details, edited_digest)
SELECT id, action, summary, details, metadata, route, route_snapshot, approvers, requested_by,
       requested_via, claimed_requester, idempotency_key, content_hash, status, on_timeout,
       created_at, expires_at, decided_at, decided_by, decided_kind, decided_via, reason, level,
       next_escalation_at, next_reminder_at, session, callback_url, cwd, action_digest,
       client_name, edited_details, edited_digest FROM requests;
DROP TABLE requests;
ALTER TABLE requests_new RENAME TO requests;

CREATE INDEX requests_pending_by_deadline ON requests (expires_at) WHERE status = 'pending';
CREATE INDEX requests_by_created ON requests (created_at);
CREATE INDEX requests_escalation_due ON requests (next_escalation_at)
    WHERE status = 'pending' AND next_escalation_at IS NOT NULL;
CREATE INDEX requests_reminder_due ON requests (next_reminder_at)
    WHERE status = 'pending' AND next_reminder_at IS NOT NULL;

CREATE TRIGGER audit_request_created AFTER INSERT ON requests BEGIN
    INSERT INTO audit (at, event, request_id, actor_kind, actor, channel, route_snapshot, content_hash,
                       action_digest, data)
    VALUES (NEW.created_at, 'created', NEW.id, 'agent', NEW.requested_by, NEW.requested_via,
            NEW.route_snapshot, NEW.content_hash, NEW.action_digest, NULL);
    INSERT INTO audit (at, event, request_id, actor_kind, actor, channel, route_snapshot, content_hash,
                       action_digest, data)
    SELECT NEW.decided_at, NEW.status, NEW.id, NEW.decided_kind, NEW.decided_by, NEW.decided_via,
           NEW.route_snapshot, NEW.content_hash, NEW.action_digest, json_object('reason', NEW.reason)
    WHERE NEW.status <> 'pending';
END;

-- The decision's audit event: an edit records both digests; an answer records the answer.
CREATE TRIGGER audit_request_decided AFTER UPDATE OF status ON requests
    WHEN OLD.status = 'pending' AND NEW.status <> 'pending' BEGIN
    INSERT INTO audit (at, event, request_id, actor_kind, actor, channel, route_snapshot, content_hash,
                       action_digest, data)
    VALUES (NEW.decided_at, NEW.status, NEW.id, NEW.decided_kind, NEW.decided_by, NEW.decided_via,
            NEW.route_snapshot, NEW.content_hash, NEW.action_digest,
            CASE WHEN NEW.decided_via = 'scheduler' THEN json_object('on_timeout', NEW.on_timeout)
                 WHEN NEW.status = 'answered' THEN json_object('answer', NEW.answer)
                 WHEN NEW.edited_digest IS NOT NULL THEN json_object('reason', NEW.reason, 'edited', json('true'),
                      'action_digest', NEW.action_digest, 'approved_action_digest', NEW.edited_digest)
                 WHEN NEW.reason IS NOT NULL THEN json_object('reason', NEW.reason) END);
END;

CREATE TRIGGER outbox_prompts AFTER INSERT ON requests WHEN NEW.status = 'pending' BEGIN
    INSERT OR IGNORE INTO outbox (request_id, kind, channel, address, approver, created_at, next_attempt_at)
    SELECT NEW.id, 'prompt', 'telegram', CAST(json_extract(t.value, '$.chat_id') AS TEXT),
           json_extract(t.value, '$.approver'), NEW.created_at, NEW.created_at
    FROM json_each(NEW.route_snapshot, '$.telegram') AS t
    UNION ALL
    SELECT NEW.id, 'prompt', 'slack', json_extract(s.value, '$.address'),
           json_extract(s.value, '$.approver'), NEW.created_at, NEW.created_at
    FROM json_each(NEW.route_snapshot, '$.slack') AS s;
END;

CREATE TRIGGER outbox_outcomes AFTER UPDATE OF status ON requests
    WHEN OLD.status = 'pending' AND NEW.status <> 'pending' BEGIN
    -- Every place that has (or is about to get) a prompt for the request learns the outcome.
    INSERT OR IGNORE INTO outbox (request_id, kind, channel, address, created_at, next_attempt_at)
    SELECT NEW.id, 'outcome', c.channel, c.address, NEW.decided_at, NEW.decided_at FROM (
        SELECT 'telegram' AS channel, CAST(json_extract(t.value, '$.chat_id') AS TEXT) AS address
        FROM json_each(NEW.route_snapshot, '$.telegram') AS t
        UNION SELECT 'slack', json_extract(s.value, '$.address') FROM json_each(NEW.route_snapshot, '$.slack') AS s
        UNION SELECT channel, address FROM prompts WHERE request_id = NEW.id
    ) AS c;
END;

CREATE TRIGGER outbox_digest_decided AFTER UPDATE OF status ON requests
    WHEN OLD.status = 'pending' AND NEW.status <> 'pending' BEGIN
    INSERT INTO outbox (request_id, kind, channel, address, created_at, next_attempt_at)
    SELECT NEW.id, 'digest', channel, address, NEW.decided_at, NEW.decided_at FROM digest_items
    WHERE request_id = NEW.id
    ON CONFLICT (request_id, kind, channel, address) DO UPDATE SET done_at = NULL,
        next_attempt_at = excluded.next_attempt_at;
END;

CREATE TRIGGER outbox_callback_decided AFTER UPDATE OF status ON requests
    WHEN OLD.status = 'pending' AND NEW.status <> 'pending' AND NEW.callback_url IS NOT NULL BEGIN
    INSERT OR IGNORE INTO outbox (request_id, kind, channel, address, created_at, next_attempt_at)
    VALUES (NEW.id, 'callback', 'callback', '', NEW.decided_at, NEW.decided_at);
END;

CREATE TRIGGER outbox_callback_at_once AFTER INSERT ON requests
    WHEN NEW.status <> 'pending' AND NEW.callback_url IS NOT NULL BEGIN
    INSERT OR IGNORE INTO outbox (request_id, kind, channel, address, created_at, next_attempt_at)
    VALUES (NEW.id, 'callback', 'callback', '', NEW.created_at, NEW.created_at);
END;

-- A reply prompt can also ask for an answer to a question (kind 'answer').
CREATE TABLE reason_prompts_new (
    channel    TEXT NOT NULL,
    address    TEXT NOT NULL,
    message    TEXT NOT NULL,
    request_id TEXT NOT NULL REFERENCES requests (id),
    user_id    TEXT NOT NULL,   -- the channel's id of the approver asked
    created_at REAL NOT NULL,
    kind       TEXT NOT NULL DEFAULT 'reason' CHECK (kind IN ('reason', 'note', 'answer')),
    PRIMARY KEY (channel, address, message)
) STRICT;
INSERT INTO reason_prompts_new (channel, address, message, request_id, user_id, created_at, kind)
SELECT channel, address, message, request_id, user_id, created_at, kind FROM reason_prompts;
DROP TABLE reason_prompts;
ALTER TABLE reason_prompts_new RENAME TO reason_prompts;
