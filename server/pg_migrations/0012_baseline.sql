-- PostgreSQL's equivalent of SQLite migrations 0001–0012 (server/migrations/0001_… to 0012_…):
-- the schema those twelve leave, made in one go on an empty schema. The runner executes this file
-- as one script in one transaction and records it under all twelve names in `migrations` (which
-- the runner creates, not this file). Later migrations come as pairs, one per store:
-- server/migrations/NNNN_x.sql and server/pg_migrations/NNNN_x.sql.
--
-- Nothing here names a schema: objects land in the current schema (the first of search_path),
-- so one database can hold several signoff stores side by side. Every function below pins the
-- search_path it was created with (SET search_path FROM CURRENT), so a trigger always writes to
-- the tables of its own store, whatever the search_path of the session that fires it.
--
-- Types: INTEGER → bigint, REAL → double precision, TEXT → text. JSON columns stay text (the app
-- writes and reads JSON text, and the audit chain hashes that exact text). An INTEGER PRIMARY KEY
-- is an identity BY DEFAULT (a copy tool inserts explicit ids, then sets the sequences), except
-- audit.seq, which the audit_chain trigger assigns itself (see there).
--
-- What differs from SQLite, on purpose:
--   - no FTS5 table requests_text (nor its three triggers): PostgreSQL searches requests with
--     ILIKE, helped by the trigram index requests_text_trgm where pg_trgm can be had;
--   - audit_chain is a BEFORE INSERT trigger that computes seq, prev_hash and hash itself
--     (SQLite's is AFTER INSERT and calls the Python function signoff_audit_hash);
--   - audit_chain_lock_first: statements on requests that append audit events take the chain's
--     lock before they lock a row (SQLite has one writer at a time and needs no such order);
--   - audit_is_append_only_truncate: TRUNCATE skips row triggers, so it is refused on its own
--     (but for a copy that replaces the whole store, in copy mode);
--   - notify_request_filed, notify_request_decided, notify_outbox: pg_notify wake-ups for the
--     other instances (SQLite's processes poll PRAGMA data_version instead);
--   - with `SET LOCAL signoff.copying = 'on'` (a copy tool bringing a store over as it is), the
--     triggers on requests and outbox write nothing and audit_chain keeps the seq, prev_hash and
--     hash it is given.
-- Needs PostgreSQL 12 or newer (shortest round-trip float8 output) and a UTF8 database.

-- ---------------------------------------------------------------------------------------------
-- Tables, in an order that lets each reference the ones before it.

CREATE TABLE requests (
    id                 text PRIMARY KEY,
    action             text NOT NULL,
    summary            text NOT NULL,
    details            text,             -- JSON, or NULL
    metadata           text NOT NULL,    -- JSON object of scalars
    route              text NOT NULL,
    route_snapshot     text NOT NULL,    -- JSON: the route as it was at creation
    approvers          text NOT NULL,    -- JSON list of approver names
    requested_by       text NOT NULL,    -- what the transport says
    requested_via      text NOT NULL,    -- the channel it came through (mcp)
    claimed_requester  text,             -- what the agent says; never used by any rule
    idempotency_key    text,
    content_hash       text NOT NULL,
    status             text NOT NULL CHECK (status IN
                         ('pending', 'approved', 'rejected', 'expired', 'cancelled', 'answered')),
    on_timeout         text NOT NULL CHECK (on_timeout IN ('approve', 'reject')),
    created_at         double precision NOT NULL,
    expires_at         double precision NOT NULL,
    decided_at         double precision,
    decided_by         text,
    decided_kind       text CHECK (decided_kind IN ('agent', 'human', 'system')),
    decided_via        text,
    reason             text,
    level              bigint NOT NULL DEFAULT 0,
    next_escalation_at double precision,
    next_reminder_at   double precision,
    session            text,
    callback_url       text,
    cwd                text,
    action_digest      text,
    client_name        text,
    edited_details     text,
    edited_digest      text,
    kind               text NOT NULL DEFAULT 'approval' CHECK (kind IN ('approval', 'question')),
    options            text,             -- questions: JSON list of the answers offered, or NULL
    answer             text,             -- an answered question's answer
    UNIQUE (requested_by, idempotency_key),
    CHECK (kind = 'approval' OR status IN ('pending', 'answered', 'expired', 'cancelled')),
    CHECK (kind = 'question' OR (status <> 'answered' AND options IS NULL)),
    CHECK ((status = 'answered') = (answer IS NOT NULL))
);
CREATE INDEX requests_pending_by_deadline ON requests (expires_at) WHERE status = 'pending';
CREATE INDEX requests_by_created ON requests (created_at);
CREATE INDEX requests_escalation_due ON requests (next_escalation_at)
    WHERE status = 'pending' AND next_escalation_at IS NOT NULL;
CREATE INDEX requests_reminder_due ON requests (next_reminder_at)
    WHERE status = 'pending' AND next_reminder_at IS NOT NULL;

-- The hash chain: seq, prev_hash and hash are set by the audit_chain trigger, never by the writer.
CREATE TABLE audit (
    seq            bigint PRIMARY KEY,   -- no identity: audit_chain numbers the events (max + 1, under a lock)
    at             double precision NOT NULL,
    event          text NOT NULL,
    request_id     text NOT NULL REFERENCES requests (id),
    actor_kind     text NOT NULL CHECK (actor_kind IN ('agent', 'human', 'system')),
    actor          text NOT NULL,
    channel        text NOT NULL,
    route_snapshot text NOT NULL,
    content_hash   text NOT NULL,
    data           text,                 -- JSON: reason and other event details
    action_digest  text,
    prev_hash      text,
    hash           text
);
CREATE INDEX audit_by_request ON audit (request_id, seq);
CREATE INDEX audit_by_time ON audit (at);

CREATE TABLE settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- Leases: at most one process at a time holds each.
CREATE TABLE leases (
    name       text PRIMARY KEY,
    owner      text NOT NULL,
    expires_at double precision NOT NULL,
    since      double precision NOT NULL DEFAULT 0
);

CREATE TABLE votes (
    request_id text NOT NULL REFERENCES requests (id),
    approver   text NOT NULL,
    vote       text NOT NULL CHECK (vote IN ('approve', 'reject')),
    at         double precision NOT NULL,
    via        text NOT NULL,
    reason     text,
    PRIMARY KEY (request_id, approver)
);

CREATE TABLE grants (
    id             text PRIMARY KEY,
    route          text NOT NULL,
    action         text NOT NULL,
    requested_by   text NOT NULL,
    session        text,              -- set: only this MCP session
    argument       text,              -- set: details[argument] must match pattern
    pattern        text,
    from_request   text NOT NULL REFERENCES requests (id),
    created_at     double precision NOT NULL,
    created_by     text NOT NULL,
    expires_at     double precision NOT NULL,
    max_uses       bigint,
    uses           bigint NOT NULL DEFAULT 0,
    revoked_at     double precision,
    revoked_by     text,
    cwd            text,
    dead_at        double precision,
    dead_reason    text,
    notice_channel text,
    notice_address text,
    notice_message text
);
CREATE INDEX grants_live ON grants (route, action, requested_by) WHERE revoked_at IS NULL;

-- Every rendering of a digest, under an id that is never reused (items: JSON list of request ids).
CREATE TABLE digest_renders (
    id         bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    items      text NOT NULL,
    created_at double precision NOT NULL,
    channel    text NOT NULL DEFAULT 'telegram',
    address    text NOT NULL DEFAULT '',
    message    text
);
CREATE INDEX digest_renders_by_address ON digest_renders (channel, address, id);

-- The transactional outbox: what must reach a channel, written by the statement that files or
-- decides a request (see the triggers), drained by the lease holder of each channel.
CREATE TABLE outbox (
    id              bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    request_id      text NOT NULL REFERENCES requests (id),
    kind            text NOT NULL,   -- server/outbox.py Kind; no CHECK, so later kinds need no table rebuild
    channel         text NOT NULL,   -- 'telegram', 'slack', 'callback'
    address         text NOT NULL,   -- the chat (Telegram), user or channel (Slack), '' (callback)
    approver        text NOT NULL DEFAULT '',   -- for prompts and reminders: whose they are
    created_at      double precision NOT NULL,
    attempts        bigint NOT NULL DEFAULT 0,
    next_attempt_at double precision NOT NULL,
    done_at         double precision,
    last_error      text,
    UNIQUE (request_id, kind, channel, address)
);
CREATE INDEX outbox_due ON outbox (channel, next_attempt_at) WHERE done_at IS NULL;
CREATE INDEX outbox_undelivered ON outbox (kind, created_at) WHERE done_at IS NULL;
CREATE INDEX outbox_failed ON outbox (kind, done_at) WHERE last_error IS NOT NULL;

-- Every message with buttons sent for a request, so any process can edit it later.
CREATE TABLE prompts (
    request_id text NOT NULL REFERENCES requests (id),
    channel    text NOT NULL,
    address    text NOT NULL,
    message    text NOT NULL,
    sent_at    double precision NOT NULL,
    PRIMARY KEY (channel, address, message)
);
CREATE INDEX prompts_by_request ON prompts (request_id);

CREATE TABLE digest_items (
    seq        bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    channel    text NOT NULL,
    address    text NOT NULL,
    request_id text NOT NULL REFERENCES requests (id),
    approver   text NOT NULL,
    UNIQUE (channel, address, request_id)
);

CREATE TABLE digests (
    channel    text NOT NULL,
    address    text NOT NULL,
    message    text,
    shown_upto bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (channel, address)
);

CREATE TABLE edit_prompts (
    channel    text NOT NULL,
    address    text NOT NULL,
    message    text NOT NULL,
    request_id text NOT NULL REFERENCES requests (id),
    user_id    text NOT NULL,   -- the channel's id of the approver asked
    created_at double precision NOT NULL,
    PRIMARY KEY (channel, address, message)
);

CREATE TABLE proposed_edits (
    id         bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    channel    text NOT NULL,
    address    text NOT NULL,
    request_id text NOT NULL REFERENCES requests (id),
    user_id    text NOT NULL,   -- the approver who proposed it: only they may confirm it
    details    text NOT NULL,   -- the edited arguments, canonical JSON
    created_at double precision NOT NULL,
    closed_at  double precision
);

CREATE TABLE reason_prompts (
    channel    text NOT NULL,
    address    text NOT NULL,
    message    text NOT NULL,
    request_id text NOT NULL REFERENCES requests (id),
    user_id    text NOT NULL,   -- the channel's id of the approver asked
    created_at double precision NOT NULL,
    kind       text NOT NULL DEFAULT 'reason' CHECK (kind IN ('reason', 'note', 'answer')),
    PRIMARY KEY (channel, address, message)
);

CREATE TABLE web_links (
    token_hash text PRIMARY KEY,   -- SHA-256 of the token in the link; the token itself is never stored
    approver   text NOT NULL,
    via        text NOT NULL,      -- who asked for it: 'telegram', 'slack', 'console'
    created_at double precision NOT NULL,
    expires_at double precision NOT NULL,
    used_at    double precision
);

CREATE TABLE web_sessions (
    id_hash    text PRIMARY KEY,   -- SHA-256 of the cookie's secret
    approver   text NOT NULL,
    created_at double precision NOT NULL,
    expires_at double precision NOT NULL,
    last_seen  double precision NOT NULL,
    revoked_at double precision,
    client     text NOT NULL DEFAULT ''   -- the browser's address and user agent, for `signoff web-sessions`
);
CREATE INDEX web_sessions_by_approver ON web_sessions (approver, created_at);

-- Who may see which request (every approver of its route and of its escalation levels).
CREATE TABLE request_approvers (
    approver   text NOT NULL,
    created_at double precision NOT NULL,
    request_id text NOT NULL REFERENCES requests (id),
    PRIMARY KEY (approver, created_at, request_id)
);

-- The web inbox's history search. SQLite has an FTS5 trigram table (requests_text); here the app
-- searches with ILIKE on (action || ' ' || requested_by || ' ' || coalesce(summary, '')), and this
-- GIN trigram index over that very expression speeds it up when the pg_trgm extension can be had.
-- Without it (no privilege to create the extension, or a concurrent creator won the race) the
-- search still works, reading every row; failing here must never fail the migration.
DO $$
DECLARE
    trgm_schema text;
BEGIN
    BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;
    EXCEPTION WHEN others THEN
        NULL;
    END;
    SELECT n.nspname INTO trgm_schema
    FROM pg_extension AS e JOIN pg_namespace AS n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm';
    IF trgm_schema IS NOT NULL THEN
        EXECUTE format(
            'CREATE INDEX requests_text_trgm ON requests USING gin '
            '((action || '' '' || requested_by || '' '' || coalesce(summary, '''')) %I.gin_trgm_ops)',
            trgm_schema);
    END IF;
EXCEPTION WHEN others THEN
    NULL;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Helpers for the triggers.

-- Whether a copy tool is bringing a store over as it is (SET LOCAL signoff.copying = 'on').
-- Only for a role that owns the store's tables (as the copy tool's does): any session can set the
-- setting, and a role that may only read and write rows must not switch the audit off with it.
CREATE FUNCTION signoff_copying() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT coalesce(current_setting('signoff.copying', true), '') = 'on'
       AND pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = 'audit'::regclass), 'MEMBER') $$;

-- A text as a JSON string, or JSON null: escaped as SQLite's json_object and Python's json module
-- (with ensure_ascii=False) escape it — \" \\ \b \f \n \r \t, other characters below U+0020 as
-- \u00xx (lowercase hex), everything else as is.
CREATE FUNCTION signoff_json(value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT coalesce(to_json(value)::text, 'null') $$;

-- A float8 as Python's repr() writes it (and so json.dumps): the shortest digits that read back
-- as the same double, fixed-point with at least one digit after the point ("1733235123.0",
-- "0.1", "0.0001") unless the decimal exponent is below -4 or above 15 ("1e-05", "1e+16",
-- "1.5e-07"). PostgreSQL (12+) prints shortest round-trip digits too, in its own layout
-- ("1733235123", "1e+15"): the digits are taken from it (see below for the one case where
-- they are a digit longer than Python's) and laid out again.
CREATE FUNCTION signoff_py_float(value double precision) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET extra_float_digits = 1
AS $$
DECLARE
    s        text := value::text;
    negative boolean := false;
    mantissa text;
    exponent integer := 0;
    digits   text;
    stripped text;
    shorter  text;
    decpt    integer;   -- value = 0.<digits> × 10^decpt
    n        integer;
    out      text;
BEGIN
    IF s IN ('NaN', 'Infinity', '-Infinity') THEN
        RAISE EXCEPTION 'Out of range float values are not JSON compliant: %', s
            USING ERRCODE = 'numeric_value_out_of_range';
    END IF;
    IF left(s, 1) = '-' THEN
        negative := true;
        s := substr(s, 2);
    END IF;
    IF strpos(s, 'e') > 0 THEN
        mantissa := split_part(s, 'e', 1);
        exponent := split_part(s, 'e', 2)::integer;
    ELSE
        mantissa := s;
    END IF;
    digits := split_part(mantissa, '.', 1) || split_part(mantissa, '.', 2);
    decpt := length(split_part(mantissa, '.', 1)) + exponent;
    stripped := ltrim(digits, '0');
    decpt := decpt - (length(digits) - length(stripped));
    digits := rtrim(stripped, '0');
    n := length(digits);
    -- PostgreSQL's shortest digits keep strictly inside the interval of decimals that read back
    -- as this double; Python's may also lie on its ends, where reading back rounds half to even
    -- towards this double. Then a string one digit shorter reads back the same (2.133439722065705e16,
    -- where PostgreSQL prints 2.1334397220657048e16), and that is the one Python prints. Any
    -- shorter string on an end is one of the two neighbours of these digits cut by one digit.
    IF n > 1 THEN
        shorter := left(digits, n - 1);
        IF ('0.' || shorter || 'e' || decpt)::double precision = abs(value) THEN
            digits := rtrim(shorter, '0');
        ELSE
            shorter := (shorter::numeric + 1)::text;
            exponent := decpt + length(shorter) - (n - 1);   -- 999 + 1 = 1000: one more digit before the point
            IF ('0.' || shorter || 'e' || exponent)::numeric <= 1.7976931348623157e308 THEN   -- else no double
                IF ('0.' || shorter || 'e' || exponent)::double precision = abs(value) THEN
                    decpt := exponent;
                    digits := rtrim(shorter, '0');
                END IF;
            END IF;
        END IF;
        n := length(digits);
    END IF;
    IF n = 0 THEN
        out := '0.0';
    ELSIF decpt <= -4 OR decpt > 16 THEN
        out := left(digits, 1) || CASE WHEN n > 1 THEN '.' || substr(digits, 2) ELSE '' END
            || 'e' || CASE WHEN decpt - 1 < 0 THEN '-' ELSE '+' END
            || CASE WHEN abs(decpt - 1) < 10 THEN '0' ELSE '' END || abs(decpt - 1)::text;
    ELSIF decpt <= 0 THEN
        out := '0.' || repeat('0', -decpt) || digits;
    ELSIF decpt >= n THEN
        out := digits || repeat('0', decpt - n) || '.0';
    ELSE
        out := left(digits, decpt) || '.' || substr(digits, decpt + 1);
    END IF;
    RETURN CASE WHEN negative THEN '-' || out ELSE out END;
END
$$;

-- The hash of one audit event, exactly as server/audit_chain.py's event_hash computes it:
-- SHA-256 in hex of prev_hash (or '') + "\n" + the compact JSON list of the hashed fields.
CREATE FUNCTION signoff_audit_hash(
    prev_hash text, seq bigint, at double precision, event text, request_id text, actor_kind text,
    actor text, channel text, route_snapshot text, content_hash text, action_digest text, data text
) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path FROM CURRENT
AS $$
    SELECT encode(sha256(convert_to(
        coalesce(prev_hash, '') || E'\n' || '['
        || coalesce(seq::text, 'null') || ','
        || coalesce(signoff_py_float(at), 'null') || ','
        || signoff_json(event) || ','
        || signoff_json(request_id) || ','
        || signoff_json(actor_kind) || ','
        || signoff_json(actor) || ','
        || signoff_json(channel) || ','
        || signoff_json(route_snapshot) || ','
        || signoff_json(content_hash) || ','
        || signoff_json(action_digest) || ','
        || signoff_json(data) || ']',
        'UTF8')), 'hex')
$$;

-- SQLite's json_each over a value: an array's elements, an object's values, or a scalar itself
-- (none for SQL NULL, i.e. a missing key), with their position.
CREATE FUNCTION signoff_json_each(doc jsonb) RETURNS TABLE (ord bigint, value jsonb)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT e.ord, e.value FROM jsonb_array_elements(CASE WHEN jsonb_typeof(doc) = 'array' THEN doc END)
        WITH ORDINALITY AS e (value, ord)
    UNION ALL
    SELECT o.ord, o.value FROM jsonb_each(CASE WHEN jsonb_typeof(doc) = 'object' THEN doc END)
        WITH ORDINALITY AS o (key, value, ord)
    UNION ALL
    SELECT 1, doc WHERE jsonb_typeof(doc) NOT IN ('array', 'object')
$$;

-- ---------------------------------------------------------------------------------------------
-- The audit log: append-only, hash-chained.

CREATE FUNCTION audit_is_append_only() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_is_append_only();
CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
    FOR EACH ROW WHEN (OLD.hash IS NOT NULL OR NEW.seq IS DISTINCT FROM OLD.seq OR NEW.at IS DISTINCT FROM OLD.at
      OR NEW.event IS DISTINCT FROM OLD.event OR NEW.request_id IS DISTINCT FROM OLD.request_id
      OR NEW.actor_kind IS DISTINCT FROM OLD.actor_kind OR NEW.actor IS DISTINCT FROM OLD.actor
      OR NEW.channel IS DISTINCT FROM OLD.channel OR NEW.route_snapshot IS DISTINCT FROM OLD.route_snapshot
      OR NEW.content_hash IS DISTINCT FROM OLD.content_hash OR NEW.action_digest IS DISTINCT FROM OLD.action_digest
      OR NEW.data IS DISTINCT FROM OLD.data)
    EXECUTE FUNCTION audit_is_append_only();
-- TRUNCATE is refused too, except by a copy replacing the whole store (signoff migrate-store --replace).
CREATE FUNCTION audit_truncate_guard() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF signoff_copying() THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER audit_is_append_only_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_truncate_guard();

-- Each event is numbered and linked as it is appended. Appenders take a transaction-level advisory
-- lock first (one per store: the key is derived from the schema, as several stores may share a
-- database), so events are numbered and chained in the order their transactions commit: the next
-- appender waits until this one commits or rolls back, then sees its event. seq is max + 1 under
-- that lock, not a sequence value (those are handed out before the lock, in another order). That
-- needs READ COMMITTED (each statement sees what committed before it): in a REPEATABLE READ or
-- SERIALIZABLE transaction the newest event may be invisible, so appending there is refused.
-- A copy tool (signoff.copying = 'on') inserts the chain as stored: seq, prev_hash and hash are kept.
CREATE FUNCTION audit_chain() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    last_seq  bigint;
    last_hash text;
BEGIN
    IF signoff_copying() THEN
        RETURN NEW;
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'audit events are appended in READ COMMITTED transactions only, not %',
            upper(current_setting('transaction_isolation')) USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext(current_schema() || ':audit_chain'));
    SELECT a.seq, a.hash INTO last_seq, last_hash FROM audit AS a ORDER BY a.seq DESC LIMIT 1;
    NEW.seq := coalesce(last_seq, 0) + 1;
    NEW.prev_hash := last_hash;
    NEW.hash := signoff_audit_hash(last_hash, NEW.seq, NEW.at, NEW.event, NEW.request_id, NEW.actor_kind,
                                   NEW.actor, NEW.channel, NEW.route_snapshot, NEW.content_hash,
                                   NEW.action_digest, NEW.data);
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_chain BEFORE INSERT ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_chain();

-- A statement that files a request or changes its status appends audit events from its row
-- triggers, after it has locked the request's row. Were the chain's lock taken only then, it
-- would come after a row lock here but before one in a transaction that appended an event and
-- then updates that row: a deadlock. So such statements take the chain's lock first, before
-- they lock any row. (A transaction of several statements that locks rows before its first
-- event must take it first itself: SELECT pg_advisory_xact_lock(hashtext(current_schema() ||
-- ':audit_chain')).)
CREATE FUNCTION audit_chain_lock_first() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF NOT signoff_copying() THEN
        PERFORM pg_advisory_xact_lock(hashtext(current_schema() || ':audit_chain'));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER audit_chain_lock_first BEFORE INSERT OR UPDATE OF status ON requests
    FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_lock_first();

-- ---------------------------------------------------------------------------------------------
-- Requests: every change of status writes its audit event in the same statement, so a request
-- never exists without its "created" event, nor a decision without its own.

CREATE FUNCTION audit_request_created() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF signoff_copying() THEN
        RETURN NULL;
    END IF;
    INSERT INTO audit (at, event, request_id, actor_kind, actor, channel, route_snapshot, content_hash,
                       action_digest, data)
    VALUES (NEW.created_at, 'created', NEW.id, 'agent', NEW.requested_by, NEW.requested_via,
            NEW.route_snapshot, NEW.content_hash, NEW.action_digest, NULL);
    IF NEW.status <> 'pending' THEN
        INSERT INTO audit (at, event, request_id, actor_kind, actor, channel, route_snapshot, content_hash,
                           action_digest, data)
        VALUES (NEW.decided_at, NEW.status, NEW.id, NEW.decided_kind, NEW.decided_by, NEW.decided_via,
                NEW.route_snapshot, NEW.content_hash, NEW.action_digest,
                '{"reason":' || signoff_json(NEW.reason) || '}');
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER audit_request_created AFTER INSERT ON requests
    FOR EACH ROW EXECUTE FUNCTION audit_request_created();

-- The decision's audit event: an edit records both digests; an answer records the answer.
-- data is compact JSON with the keys in SQLite's json_object order.
CREATE FUNCTION audit_request_decided() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF signoff_copying() THEN
        RETURN NULL;
    END IF;
    INSERT INTO audit (at, event, request_id, actor_kind, actor, channel, route_snapshot, content_hash,
                       action_digest, data)
    VALUES (NEW.decided_at, NEW.status, NEW.id, NEW.decided_kind, NEW.decided_by, NEW.decided_via,
            NEW.route_snapshot, NEW.content_hash, NEW.action_digest,
            CASE WHEN NEW.decided_via = 'scheduler' THEN '{"on_timeout":' || signoff_json(NEW.on_timeout) || '}'
                 WHEN NEW.status = 'answered' THEN '{"answer":' || signoff_json(NEW.answer) || '}'
                 WHEN NEW.edited_digest IS NOT NULL THEN
                     '{"reason":' || signoff_json(NEW.reason) || ',"edited":true'
                     || ',"action_digest":' || signoff_json(NEW.action_digest)
                     || ',"approved_action_digest":' || signoff_json(NEW.edited_digest) || '}'
                 WHEN NEW.reason IS NOT NULL THEN '{"reason":' || signoff_json(NEW.reason) || '}' END);
    RETURN NULL;
END
$$;
CREATE TRIGGER audit_request_decided AFTER UPDATE OF status ON requests
    FOR EACH ROW WHEN (OLD.status = 'pending' AND NEW.status <> 'pending')
    EXECUTE FUNCTION audit_request_decided();

-- The outbox triggers. SQLite's INSERT OR IGNORE also skips rows that would break a NOT NULL
-- constraint; ON CONFLICT DO NOTHING does not, so those rows are filtered out explicitly.
-- A row that ON CONFLICT skips or updates still uses up an identity value: outbox ids may have
-- gaps SQLite's have not (their order is the same).
-- PostgreSQL fires a table's triggers in the order of their names, SQLite in the reverse order
-- of their creation: for the three on a decision both give callback, digest, outcome, and the
-- outcomes go out sorted by (channel, address), as SQLite's UNION yields them.

-- A new request's prompts go to every approver's places on every channel (the route snapshot's
-- "telegram" and "slack" lists, as the routes were when it was filed).
CREATE FUNCTION outbox_prompts() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF signoff_copying() THEN
        RETURN NULL;
    END IF;
    -- The first entry for a place wins (a chat shared by two approvers gets one prompt). The
    -- later ones are dropped here rather than by ON CONFLICT, which would use up an id each.
    INSERT INTO outbox (request_id, kind, channel, address, approver, created_at, next_attempt_at)
    SELECT NEW.id, 'prompt', p.channel, p.address, p.approver, NEW.created_at, NEW.created_at
    FROM (
        SELECT q.*, row_number() OVER (PARTITION BY q.channel, q.address ORDER BY q.part, q.ord) AS nth
        FROM (
            SELECT 1 AS part, t.ord, 'telegram' AS channel, t.value ->> 'chat_id' AS address,
                   t.value ->> 'approver' AS approver
            FROM signoff_json_each(NEW.route_snapshot::jsonb -> 'telegram') AS t
            UNION ALL
            SELECT 2, s.ord, 'slack', s.value ->> 'address', s.value ->> 'approver'
            FROM signoff_json_each(NEW.route_snapshot::jsonb -> 'slack') AS s
        ) AS q
        WHERE q.address IS NOT NULL AND q.approver IS NOT NULL
    ) AS p
    WHERE p.nth = 1 AND NEW.created_at IS NOT NULL
    ORDER BY p.part, p.ord
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_prompts AFTER INSERT ON requests
    FOR EACH ROW WHEN (NEW.status = 'pending') EXECUTE FUNCTION outbox_prompts();

-- Every place that has (or is about to get) a prompt for the request learns the outcome.
CREATE FUNCTION outbox_outcomes() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF signoff_copying() THEN
        RETURN NULL;
    END IF;
    INSERT INTO outbox (request_id, kind, channel, address, created_at, next_attempt_at)
    SELECT NEW.id, 'outcome', c.channel, c.address, NEW.decided_at, NEW.decided_at
    FROM (
        SELECT 'telegram' AS channel, t.value ->> 'chat_id' AS address
        FROM signoff_json_each(NEW.route_snapshot::jsonb -> 'telegram') AS t
        UNION SELECT 'slack', s.value ->> 'address' FROM signoff_json_each(NEW.route_snapshot::jsonb -> 'slack') AS s
        UNION SELECT p.channel, p.address FROM prompts AS p WHERE p.request_id = NEW.id
    ) AS c
    WHERE c.address IS NOT NULL AND NEW.decided_at IS NOT NULL
    ORDER BY c.channel COLLATE "C", c.address COLLATE "C"
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_outcomes AFTER UPDATE OF status ON requests
    FOR EACH ROW WHEN (OLD.status = 'pending' AND NEW.status <> 'pending') EXECUTE FUNCTION outbox_outcomes();

-- A digest shows a decision on one of its requests (whoever made it) at its next refresh.
CREATE FUNCTION outbox_digest_decided() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF signoff_copying() THEN
        RETURN NULL;
    END IF;
    INSERT INTO outbox (request_id, kind, channel, address, created_at, next_attempt_at)
    SELECT NEW.id, 'digest', d.channel, d.address, NEW.decided_at, NEW.decided_at
    FROM digest_items AS d WHERE d.request_id = NEW.id
    ORDER BY d.seq
    ON CONFLICT (request_id, kind, channel, address) DO UPDATE SET done_at = NULL,
        next_attempt_at = excluded.next_attempt_at;
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_digest_decided AFTER UPDATE OF status ON requests
    FOR EACH ROW WHEN (OLD.status = 'pending' AND NEW.status <> 'pending')
    EXECUTE FUNCTION outbox_digest_decided();

-- Decision callbacks go through the outbox too (kind 'callback', channel 'callback', address '').
CREATE FUNCTION outbox_callback_decided() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF signoff_copying() THEN
        RETURN NULL;
    END IF;
    INSERT INTO outbox (request_id, kind, channel, address, created_at, next_attempt_at)
    SELECT NEW.id, 'callback', 'callback', '', NEW.decided_at, NEW.decided_at
    WHERE NEW.decided_at IS NOT NULL
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_callback_decided AFTER UPDATE OF status ON requests
    FOR EACH ROW WHEN (OLD.status = 'pending' AND NEW.status <> 'pending' AND NEW.callback_url IS NOT NULL)
    EXECUTE FUNCTION outbox_callback_decided();

CREATE FUNCTION outbox_callback_at_once() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF signoff_copying() THEN
        RETURN NULL;
    END IF;
    INSERT INTO outbox (request_id, kind, channel, address, created_at, next_attempt_at)
    VALUES (NEW.id, 'callback', 'callback', '', NEW.created_at, NEW.created_at)
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_callback_at_once AFTER INSERT ON requests
    FOR EACH ROW WHEN (NEW.status <> 'pending' AND NEW.callback_url IS NOT NULL)
    EXECUTE FUNCTION outbox_callback_at_once();

-- Who may see the request in the web inbox: the route's approvers and every escalation level's.
CREATE FUNCTION request_approvers_filed() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF signoff_copying() THEN
        RETURN NULL;
    END IF;
    INSERT INTO request_approvers (approver, created_at, request_id)
    SELECT x.approver, NEW.created_at, NEW.id
    FROM (
        SELECT a.value #>> '{}' AS approver
        FROM signoff_json_each(NEW.route_snapshot::jsonb -> 'approvers') AS a
        UNION
        SELECT a.value #>> '{}'
        FROM signoff_json_each(NEW.route_snapshot::jsonb -> 'escalation') AS e,
             signoff_json_each(e.value -> 'approvers') AS a
    ) AS x
    WHERE x.approver IS NOT NULL
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER request_approvers_filed AFTER INSERT ON requests
    FOR EACH ROW EXECUTE FUNCTION request_approvers_filed();

-- ---------------------------------------------------------------------------------------------
-- Wake-ups for the other instances: NOTIFY on channel "signoff:<schema>" when a request is filed,
-- when its status changes, and when an outbox row is added. PostgreSQL delivers notifications at
-- commit, and folds identical ones of one transaction into one. (A digest row re-armed by
-- outbox_digest_decided's ON CONFLICT DO UPDATE sends no outbox notification; the decision's
-- request notification goes out in the same transaction.)

-- The channel: 'signoff:' || the schema, cut to 63 bytes at a character boundary as the server cuts
-- the identifier in LISTEN "signoff:<schema>" (pg_notify refuses a longer name outright).
CREATE FUNCTION signoff_channel() RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
    channel text := 'signoff:' || current_schema();
BEGIN
    WHILE octet_length(channel) > 63 LOOP
        channel := left(channel, -1);
    END LOOP;
    RETURN channel;
END
$$;

CREATE FUNCTION notify_request() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF signoff_copying() THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify(signoff_channel(), 'request:' || NEW.id);
    RETURN NULL;
END
$$;
CREATE TRIGGER notify_request_filed AFTER INSERT ON requests
    FOR EACH ROW EXECUTE FUNCTION notify_request();
CREATE TRIGGER notify_request_decided AFTER UPDATE OF status ON requests
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION notify_request();

CREATE FUNCTION notify_outbox() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF signoff_copying() THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify(signoff_channel(), 'outbox:' || NEW.channel);
    RETURN NULL;
END
$$;
CREATE TRIGGER notify_outbox AFTER INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION notify_outbox();
