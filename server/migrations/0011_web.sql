-- Migration 0011_web. Never edit one that has shipped: add a new file.
-- The web inbox: sign-in links (single use, 10 minutes, stored hashed), sessions (stored
-- hashed, revocable), and who may see which request (every approver of its route and of
-- its escalation levels), kept by a trigger so the history of one approver is an index range.
CREATE TABLE web_links (
    token_hash TEXT PRIMARY KEY,   -- SHA-256 of the token in the link; the token itself is never stored
    approver   TEXT NOT NULL,
    via        TEXT NOT NULL,      -- who asked for it: 'telegram', 'slack', 'console'
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at    REAL
) STRICT;

CREATE TABLE web_sessions (
    id_hash    TEXT PRIMARY KEY,   -- SHA-256 of the cookie's secret
    approver   TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    last_seen  REAL NOT NULL,
    revoked_at REAL,
    client     TEXT NOT NULL DEFAULT ''   -- the browser's address and user agent, for `signoff web-sessions`
) STRICT;
CREATE INDEX web_sessions_by_approver ON web_sessions (approver, created_at);

CREATE TABLE request_approvers (
    approver   TEXT NOT NULL,
    created_at REAL NOT NULL,
    request_id TEXT NOT NULL REFERENCES requests (id),
    PRIMARY KEY (approver, created_at, request_id)
) STRICT, WITHOUT ROWID;

INSERT OR IGNORE INTO request_approvers (approver, created_at, request_id)
SELECT a.value, r.created_at, r.id FROM requests r, json_each(r.route_snapshot, '$.approvers') a
UNION SELECT a.value, r.created_at, r.id FROM requests r, json_each(r.route_snapshot, '$.escalation') e,
    json_each(e.value, '$.approvers') a;

CREATE TRIGGER request_approvers_filed AFTER INSERT ON requests BEGIN
    INSERT OR IGNORE INTO request_approvers (approver, created_at, request_id)
    SELECT value, NEW.created_at, NEW.id FROM json_each(NEW.route_snapshot, '$.approvers')
    UNION SELECT a.value, NEW.created_at, NEW.id FROM json_each(NEW.route_snapshot, '$.escalation') e,
        json_each(e.value, '$.approvers') a;
END;
