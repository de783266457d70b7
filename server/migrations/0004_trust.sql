-- Migration 0004_trust. Never edit one that has shipped: add a new file.
-- cwd: the working directory / project the agent acts in (Claude Code sends it; grants are
-- scoped to it). action_digest: SHA-256 of the canonical JSON of action, details and
-- metadata, the exact thing a decision is for. client_name: the MCP client's own name, a
-- label only (requested_by may be pinned by the operator instead).
ALTER TABLE requests ADD COLUMN cwd TEXT;
ALTER TABLE requests ADD COLUMN action_digest TEXT;
ALTER TABLE requests ADD COLUMN client_name TEXT;
ALTER TABLE grants ADD COLUMN cwd TEXT;

-- The audit log is hash-chained: each event stores the previous event's hash and its own.
ALTER TABLE audit ADD COLUMN action_digest TEXT;
ALTER TABLE audit ADD COLUMN prev_hash TEXT;
ALTER TABLE audit ADD COLUMN hash TEXT;
DROP TRIGGER audit_request_created;
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
DROP TRIGGER audit_request_decided;
CREATE TRIGGER audit_request_decided AFTER UPDATE OF status ON requests
    WHEN OLD.status = 'pending' AND NEW.status <> 'pending' BEGIN
    INSERT INTO audit (at, event, request_id, actor_kind, actor, channel, route_snapshot, content_hash,
                       action_digest, data)
    VALUES (NEW.decided_at, NEW.status, NEW.id, NEW.decided_kind, NEW.decided_by, NEW.decided_via,
            NEW.route_snapshot, NEW.content_hash, NEW.action_digest,
            CASE WHEN NEW.decided_via = 'scheduler' THEN json_object('on_timeout', NEW.on_timeout)
                 WHEN NEW.reason IS NOT NULL THEN json_object('reason', NEW.reason) END);
END;
-- Chaining happens inside the statement that appends the event, with signoff_audit_hash()
-- (registered on every connection that writes, see audit_chain.py). Only that one update,
-- of a row whose hash is not yet set, is allowed: everything else stays append-only.
DROP TRIGGER audit_is_append_only_update;
CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
    WHEN OLD.hash IS NOT NULL OR NEW.seq IS NOT OLD.seq OR NEW.at IS NOT OLD.at OR NEW.event IS NOT OLD.event
      OR NEW.request_id IS NOT OLD.request_id OR NEW.actor_kind IS NOT OLD.actor_kind
      OR NEW.actor IS NOT OLD.actor OR NEW.channel IS NOT OLD.channel
      OR NEW.route_snapshot IS NOT OLD.route_snapshot OR NEW.content_hash IS NOT OLD.content_hash
      OR NEW.action_digest IS NOT OLD.action_digest OR NEW.data IS NOT OLD.data
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_chain AFTER INSERT ON audit BEGIN
    UPDATE audit SET
        prev_hash = (SELECT p.hash FROM audit AS p WHERE p.seq < NEW.seq ORDER BY p.seq DESC LIMIT 1),
        hash = signoff_audit_hash(
            (SELECT p.hash FROM audit AS p WHERE p.seq < NEW.seq ORDER BY p.seq DESC LIMIT 1),
            NEW.seq, NEW.at, NEW.event, NEW.request_id, NEW.actor_kind, NEW.actor, NEW.channel,
            NEW.route_snapshot, NEW.content_hash, NEW.action_digest, NEW.data)
    WHERE seq = NEW.seq;
END;

-- Every rendering of a chat's digest, under an id that is never reused: its buttons name it,
-- so a press decides only the items that very message listed (items: JSON list of request ids).
CREATE TABLE digest_renders (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_id    INTEGER NOT NULL,
    message_id INTEGER,
    items      TEXT NOT NULL,
    created_at REAL NOT NULL
) STRICT;
CREATE INDEX digest_renders_by_chat ON digest_renders (chat_id, id);

-- A grant that stopped applying (its granter or its route changed) is audited once.
ALTER TABLE grants ADD COLUMN dead_at REAL;
ALTER TABLE grants ADD COLUMN dead_reason TEXT;
