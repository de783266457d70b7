-- Migration 0006_channels. Never edit one that has shipped: add a new file.
-- Every place a message goes is (channel, address): 'telegram' and a chat id, 'slack' and a
-- user or channel id, 'callback' and '' for decision callbacks. A sent message is named by
-- `message`, opaque to the core (Telegram: the message id; Slack: "<channel id>:<ts>").
-- Tables keyed by a Telegram chat id are rebuilt with those columns; their rows carry over.
DROP TRIGGER outbox_prompts;
DROP TRIGGER outbox_outcomes;
DROP TRIGGER outbox_digest_decided;
DROP TRIGGER outbox_callback_decided;
DROP TRIGGER outbox_callback_at_once;

CREATE TABLE outbox_new (
    id              INTEGER PRIMARY KEY,
    request_id      TEXT NOT NULL REFERENCES requests (id),
    kind            TEXT NOT NULL,   -- server/outbox.py Kind; no CHECK, so later kinds need no table rebuild
    channel         TEXT NOT NULL,   -- 'telegram', 'slack', 'callback'
    address         TEXT NOT NULL,   -- the chat (Telegram), user or channel (Slack), '' (callback)
    approver        TEXT NOT NULL DEFAULT '',   -- for prompts and reminders: whose they are
    created_at      REAL NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    done_at         REAL,
    last_error      TEXT,
    UNIQUE (request_id, kind, channel, address)
) STRICT;
INSERT INTO outbox_new (id, request_id, kind, channel, address, approver, created_at, attempts, next_attempt_at,
                        done_at, last_error)
SELECT id, request_id, kind, CASE kind WHEN 'callback' THEN 'callback' ELSE 'telegram' END,
       CASE kind WHEN 'callback' THEN '' ELSE CAST(chat_id AS TEXT) END,
       approver, created_at, attempts, next_attempt_at, done_at, last_error FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (channel, next_attempt_at) WHERE done_at IS NULL;
CREATE INDEX outbox_undelivered ON outbox (kind, created_at) WHERE done_at IS NULL;
CREATE INDEX outbox_failed ON outbox (kind, done_at) WHERE last_error IS NOT NULL;

-- Every message with buttons sent for a request, so any process can edit it later.
CREATE TABLE prompts_new (
    request_id TEXT NOT NULL REFERENCES requests (id),
    channel    TEXT NOT NULL,
    address    TEXT NOT NULL,
    message    TEXT NOT NULL,
    sent_at    REAL NOT NULL,
    PRIMARY KEY (channel, address, message)
) STRICT;
INSERT INTO prompts_new SELECT request_id, 'telegram', CAST(chat_id AS TEXT), CAST(message_id AS TEXT), sent_at
FROM prompts;
DROP TABLE prompts;
ALTER TABLE prompts_new RENAME TO prompts;
CREATE INDEX prompts_by_request ON prompts (request_id);

-- "Reject with reason" asked in a chat: the message an approver answers with the reason.
CREATE TABLE reason_prompts_new (
    channel    TEXT NOT NULL,
    address    TEXT NOT NULL,
    message    TEXT NOT NULL,
    request_id TEXT NOT NULL REFERENCES requests (id),
    user_id    TEXT NOT NULL,   -- the channel's id of the approver asked
    created_at REAL NOT NULL,
    PRIMARY KEY (channel, address, message)
) STRICT;
INSERT INTO reason_prompts_new SELECT 'telegram', CAST(chat_id AS TEXT), CAST(message_id AS TEXT), request_id,
       CAST(user_id AS TEXT), created_at FROM reason_prompts;
DROP TABLE reason_prompts;
ALTER TABLE reason_prompts_new RENAME TO reason_prompts;

CREATE TABLE digest_items_new (
    seq        INTEGER PRIMARY KEY,
    channel    TEXT NOT NULL,
    address    TEXT NOT NULL,
    request_id TEXT NOT NULL REFERENCES requests (id),
    approver   TEXT NOT NULL,
    UNIQUE (channel, address, request_id)
) STRICT;
INSERT INTO digest_items_new SELECT seq, 'telegram', CAST(chat_id AS TEXT), request_id, approver FROM digest_items;
DROP TABLE digest_items;
ALTER TABLE digest_items_new RENAME TO digest_items;

CREATE TABLE digests_new (
    channel    TEXT NOT NULL,
    address    TEXT NOT NULL,
    message    TEXT,
    shown_upto INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (channel, address)
) STRICT;
INSERT INTO digests_new SELECT 'telegram', CAST(chat_id AS TEXT), CAST(message_id AS TEXT), shown_upto FROM digests;
DROP TABLE digests;
ALTER TABLE digests_new RENAME TO digests;

-- digest_renders keeps its AUTOINCREMENT sequence (render ids are never reused): altered, not rebuilt.
DROP INDEX digest_renders_by_chat;
ALTER TABLE digest_renders ADD COLUMN channel TEXT NOT NULL DEFAULT 'telegram';
ALTER TABLE digest_renders ADD COLUMN address TEXT NOT NULL DEFAULT '';
ALTER TABLE digest_renders ADD COLUMN message TEXT;
UPDATE digest_renders SET address = CAST(chat_id AS TEXT), message = CAST(message_id AS TEXT);
ALTER TABLE digest_renders DROP COLUMN chat_id;
ALTER TABLE digest_renders DROP COLUMN message_id;
CREATE INDEX digest_renders_by_address ON digest_renders (channel, address, id);

-- A grant's notice (the message that counts its uses and offers Revoke).
ALTER TABLE grants ADD COLUMN notice_channel TEXT;
ALTER TABLE grants ADD COLUMN notice_address TEXT;
ALTER TABLE grants ADD COLUMN notice_message TEXT;
UPDATE grants SET notice_channel = 'telegram', notice_address = CAST(chat_id AS TEXT),
                  notice_message = CAST(message_id AS TEXT) WHERE chat_id IS NOT NULL;
ALTER TABLE grants DROP COLUMN chat_id;
ALTER TABLE grants DROP COLUMN message_id;

-- A new request's prompts go to every approver's places on every channel (the route snapshot's
-- "telegram" and "slack" lists, as the routes were when it was filed).
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
