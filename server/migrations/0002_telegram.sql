-- Migration 0002_telegram. Never edit one that has shipped: add a new file.
-- The transactional outbox: what must reach Telegram, written by the same statement
-- that files or decides a request (see the triggers), drained by the bot-lease holder.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    request_id      TEXT NOT NULL REFERENCES requests (id),
    kind            TEXT NOT NULL,   -- 'prompt', 'outcome'; no CHECK, so later kinds need no table rebuild
    approver        TEXT NOT NULL DEFAULT '',   -- for prompts: whose prompt it is
    chat_id         INTEGER NOT NULL,
    created_at      REAL NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    done_at         REAL,
    last_error      TEXT,
    UNIQUE (request_id, kind, chat_id)
) STRICT;
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE done_at IS NULL;

-- Every message with buttons that was sent for a request, so any process can edit it later.
CREATE TABLE prompts (
    request_id TEXT NOT NULL REFERENCES requests (id),
    chat_id    INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    sent_at    REAL NOT NULL,
    PRIMARY KEY (chat_id, message_id)
) STRICT;
CREATE INDEX prompts_by_request ON prompts (request_id);

-- "Reject with reason": the ForceReply message an approver answers with the reason.
CREATE TABLE reason_prompts (
    chat_id    INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    request_id TEXT NOT NULL REFERENCES requests (id),
    user_id    INTEGER NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (chat_id, message_id)
) STRICT;

-- Leases: at most one process at a time holds each (the bot lease: one Telegram poller).
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at REAL NOT NULL
) STRICT;

CREATE TRIGGER outbox_prompts AFTER INSERT ON requests WHEN NEW.status = 'pending' BEGIN
    INSERT OR IGNORE INTO outbox (request_id, kind, approver, chat_id, created_at, next_attempt_at)
    SELECT NEW.id, 'prompt', json_extract(t.value, '$.approver'), json_extract(t.value, '$.chat_id'),
           NEW.created_at, NEW.created_at
    FROM json_each(NEW.route_snapshot, '$.telegram') AS t;
END;
CREATE TRIGGER outbox_outcomes AFTER UPDATE OF status ON requests
    WHEN OLD.status = 'pending' AND NEW.status <> 'pending' BEGIN
    -- Every chat that has (or is about to get) a prompt for the request learns the outcome.
    INSERT OR IGNORE INTO outbox (request_id, kind, chat_id, created_at, next_attempt_at)
    SELECT NEW.id, 'outcome', c.chat_id, NEW.decided_at, NEW.decided_at FROM (
        SELECT json_extract(t.value, '$.chat_id') AS chat_id FROM json_each(NEW.route_snapshot, '$.telegram') AS t
        UNION SELECT chat_id FROM prompts WHERE request_id = NEW.id
    ) AS c;
END;
