-- Migration 0008_edits. Never edit one that has shipped: add a new file.
-- "Edit before approving": the arguments an approver approved instead of the agent's, as
-- canonical JSON (NULL when unchanged), and their action digest (SHA-256 of the canonical
-- JSON of action, edited details and metadata, like action_digest for the original).
ALTER TABLE requests ADD COLUMN edited_details TEXT;
ALTER TABLE requests ADD COLUMN edited_digest TEXT;

-- The decision's audit event records both digests when the approver changed the arguments:
-- the event's action_digest is the original's, data.approved_action_digest the edit's. It
-- is written by the statement that decides, like every decision's event.
DROP TRIGGER audit_request_decided;
CREATE TRIGGER audit_request_decided AFTER UPDATE OF status ON requests
    WHEN OLD.status = 'pending' AND NEW.status <> 'pending' BEGIN
    INSERT INTO audit (at, event, request_id, actor_kind, actor, channel, route_snapshot, content_hash,
                       action_digest, data)
    VALUES (NEW.decided_at, NEW.status, NEW.id, NEW.decided_kind, NEW.decided_by, NEW.decided_via,
            NEW.route_snapshot, NEW.content_hash, NEW.action_digest,
            CASE WHEN NEW.decided_via = 'scheduler' THEN json_object('on_timeout', NEW.on_timeout)
                 WHEN NEW.edited_digest IS NOT NULL THEN json_object('reason', NEW.reason, 'edited', json('true'),
                      'action_digest', NEW.action_digest, 'approved_action_digest', NEW.edited_digest)
                 WHEN NEW.reason IS NOT NULL THEN json_object('reason', NEW.reason) END);
END;
