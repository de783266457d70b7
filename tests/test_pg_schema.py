"""PostgreSQL's baseline (server/pg_migrations/0012_baseline.sql) against SQLite's twelve migrations.

Against a real server (tests/pg_cluster.py), each test in a schema of its own: the baseline
applies on an empty schema and makes the same tables, columns, keys, indexes and triggers as
SQLite's migrations (the differences are listed below, on purpose); its audit chain hashes
exactly as ``audit_chain.event_hash`` does, also under concurrent writers; the audit log is
append-only; filing and deciding a request writes the same audit events, outbox rows and
request_approvers rows on both stores, byte for byte; and the NOTIFY wake-ups arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import re
import secrets
import sqlite3
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signoff.server import db as dbmod
from signoff.server import queries
from signoff.server import store as storemod
from signoff.server.audit_chain import FIELDS, event_hash, verify
from signoff.server.models import ApprovalRequest, Status
from signoff.server.rows import INSERT, dumps, request_row
from signoff.server.store import DECIDE

from . import pg_cluster

if os.environ.get("SIGNOFF_REQUIRE_POSTGRES") == "1":
    import psycopg
else:
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'psycopg[binary]')")
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

BASELINE = resources.files("signoff.server").joinpath("pg_migrations/0012_baseline.sql").read_text(encoding="utf-8")

# What the baseline leaves out or adds, on purpose (see its header).
SQLITE_ONLY_TABLES = {"sqlite_sequence", "migrations"}  # migrations: created by the runner, not the baseline
SQLITE_ONLY_TRIGGERS = {"requests_text_filed", "requests_text_changed", "requests_text_deleted"}  # FTS5
PG_ONLY_TRIGGERS = {
    "audit_chain_lock_first",  # on requests, per statement: the chain's lock before any row lock
    "audit_is_append_only_truncate",
    "notify_request_filed",
    "notify_request_decided",
    "notify_outbox",
}
PG_ONLY_INDEXES = {"requests_text_trgm"}  # only where pg_trgm can be created
AUDIT_CHAIN_TIMING = ("AFTER", "BEFORE")  # SQLite updates the new row after it; PostgreSQL sets it before


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_url() -> str:
    url = pg_cluster.server_url()
    if url is None:
        pytest.skip(f"no PostgreSQL server for the tests: {pg_cluster.why_not()} (or set SIGNOFF_TEST_POSTGRES_URL)")
    return url


def new_store(pg_url: str) -> str:
    """A fresh schema with the baseline applied as the runner applies it: one script, one transaction."""
    url = pg_cluster.fresh_schema_url(pg_url)
    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute(BASELINE)
    return url


@pytest.fixture
def store_url(pg_url: str) -> Iterator[str]:
    url = new_store(pg_url)
    yield url
    pg_cluster.drop_schema_of(url)


@pytest.fixture(scope="module")
def module_store_url(pg_url: str) -> Iterator[str]:
    """One store for the Hypothesis tests (their examples run in one test call)."""
    url = new_store(pg_url)
    yield url
    pg_cluster.drop_schema_of(url)


@pytest.fixture
def pg(store_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(store_url, autocommit=True) as conn:
        yield conn


def sqlite_store(path: Path) -> sqlite3.Connection:
    """A real SQLite store (signoff's own migrations), then opened as quick.py opens it."""

    async def migrate() -> None:
        async with dbmod.connect(path):
            pass

    asyncio.run(migrate())
    conn = sqlite3.connect(path, isolation_level=None)
    conn.create_function("signoff_audit_hash", 1 + len(FIELDS), event_hash, deterministic=True)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite_store(tmp_path / "signoff.db")
    yield conn
    conn.close()


def pg_sql(sql: str) -> str:
    """SQLite's ``?`` placeholders as psycopg's ``%s`` (the statements here have no other ? or %)."""
    assert "%" not in sql
    return sql.replace("?", "%s")


# --- the cluster helper itself -------------------------------------------------------------


def test_the_cluster_gives_each_test_a_schema_of_its_own(pg_url: str) -> None:
    first = pg_cluster.fresh_schema_url(pg_url)
    assert first.startswith(pg_url + ("&" if "?" in pg_url else "?") + "options=-csearch_path%3Dt_")
    host = re.search(r"host=([^&]+)", pg_url)
    port = re.search(r"port=(\d+)", pg_url)
    if host and port:  # the socket folder in the host part: no "?" yet
        plain = f"postgresql://postgres@{host.group(1).replace('/', '%2F')}:{port.group(1)}/postgres"
        second = pg_cluster.fresh_schema_url(plain)
        assert second.startswith(plain + "?options=-csearch_path%3Dt_")
    else:
        second = pg_cluster.fresh_schema_url(pg_url)
    try:
        schemas = []
        for url in (first, second):
            with psycopg.connect(url, autocommit=True) as conn:
                schemas.append(conn.execute("SELECT current_schema()").fetchone()[0])  # type: ignore[index]
                conn.execute("CREATE TABLE mine (x bigint)")
        assert schemas == [pg_cluster.schema_of(first), pg_cluster.schema_of(second)]
        assert schemas[0] != schemas[1]
    finally:
        pg_cluster.drop_schema_of(first)
        pg_cluster.drop_schema_of(second)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        left = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = ANY(%s)", (schemas,)).fetchone()
    assert left == (0,)
    assert pg_cluster.server_url() == pg_url  # started once per process


# --- 1. the same schema --------------------------------------------------------------------

SQLITE_TYPES = {"INTEGER": "bigint", "REAL": "double precision", "TEXT": "text", "BLOB": "bytea"}
FK_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


def norm_condition(text: str | None) -> str | None:
    """A WHEN or WHERE condition in a form both engines' spellings reduce to."""
    if text is None:
        return None
    text = text.lower().replace("is distinct from", "is not").replace("::text", "")
    return " ".join(text.replace("(", " ").replace(")", " ").split())


def norm_default(text: str | None) -> str | None:
    return None if text is None else re.sub(r"::[a-z ]+$", "", text)


def sqlite_shape(conn: sqlite3.Connection) -> dict[str, Any]:
    shape: dict[str, Any] = {"columns": {}, "pk": {}, "unique": {}, "fk": {}, "indexes": {}, "triggers": {}}
    tables = [
        r[0]
        for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        if r[0] not in SQLITE_ONLY_TABLES and not r[0].startswith("requests_text")
    ]
    for t in tables:
        info = conn.execute(f"PRAGMA table_info({t})").fetchall()  # cid, name, type, notnull, dflt, pk
        shape["columns"][t] = [(c[1], SQLITE_TYPES[c[2]], bool(c[3] or c[5]), norm_default(c[4])) for c in info]
        shape["pk"][t] = [c[1] for c in sorted((c for c in info if c[5]), key=lambda c: c[5])]
        uniques = []
        for idx in conn.execute(f"PRAGMA index_list({t})").fetchall():  # seq, name, unique, origin, partial
            if idx[3] == "u":
                uniques.append(tuple(r[2] for r in conn.execute(f"PRAGMA index_info({idx[1]})")))
        shape["unique"][t] = sorted(uniques)
        fks: dict[int, list[Any]] = {}
        for fk in conn.execute(f"PRAGMA foreign_key_list({t})"):  # id, seq, table, from, to, on_update, on_delete
            fks.setdefault(fk[0], []).append(fk)
        shape["fk"][t] = sorted(
            (tuple(f[3] for f in g), g[0][2], tuple(f[4] for f in g), g[0][6], g[0][5]) for g in fks.values()
        )
    for name, table, sql in conn.execute(
        "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    ):
        cols = tuple(r[2] for r in conn.execute(f"PRAGMA index_info({name})"))
        where = re.search(r"\bWHERE\b(.*)$", sql, re.S | re.I)
        shape["indexes"][name] = (table, cols, norm_condition(where.group(1) if where else None))
    for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"):
        if name in SQLITE_ONLY_TRIGGERS:
            continue
        m = re.match(
            r"CREATE TRIGGER (\w+)\s+(BEFORE|AFTER)\s+(INSERT|DELETE|UPDATE(?: OF [\w, ]+?)?)\s+ON (\w+)\s*"
            r"(?:WHEN (.*?))?\s*BEGIN\b",
            sql,
            re.S,
        )
        assert m, sql
        shape["triggers"][name] = (m[4], m[2], " ".join(m[3].split()), norm_condition(m[5]))
    return shape


def pg_shape(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    shape: dict[str, Any] = {"columns": {}, "pk": {}, "unique": {}, "fk": {}, "indexes": {}, "triggers": {}}
    in_schema = "relnamespace = current_schema()::regnamespace"
    tables = [r[0] for r in conn.execute(f"SELECT relname FROM pg_class WHERE {in_schema} AND relkind = 'r'")]
    for t in sorted(tables):
        rows = conn.execute(
            "SELECT column_name, data_type, is_nullable = 'NO', column_default FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
            (t,),
        ).fetchall()
        shape["columns"][t] = [(r[0], r[1], r[2], norm_default(r[3])) for r in rows]
        shape["unique"][t] = []
        shape["fk"][t] = []
        shape["pk"][t] = []
        for kind, cols, ref, ref_cols, on_delete, on_update in conn.execute(
            "SELECT c.contype, "
            "  array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k (n, o) "
            "        JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o), "
            "  c.confrelid::regclass::text, "
            "  array(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY AS k (n, o) "
            "        JOIN pg_attribute AS a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o), "
            "  c.confdeltype, c.confupdtype "
            "FROM pg_constraint AS c WHERE c.conrelid = %s::regclass",
            (t,),
        ):
            if kind == "p":
                shape["pk"][t] = list(cols)
            elif kind == "u":
                shape["unique"][t].append(tuple(cols))
            elif kind == "f":
                shape["fk"][t].append((tuple(cols), ref, tuple(ref_cols), FK_ACTIONS[on_delete], FK_ACTIONS[on_update]))
        shape["unique"][t].sort()
        shape["fk"][t].sort()
    for name, table, ncols, pred, oid in conn.execute(
        "SELECT i.relname, t.relname, ix.indnatts, pg_get_expr(ix.indpred, ix.indrelid), ix.indexrelid "
        "FROM pg_index AS ix JOIN pg_class AS i ON i.oid = ix.indexrelid JOIN pg_class AS t ON t.oid = ix.indrelid "
        "WHERE t.relnamespace = current_schema()::regnamespace "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conindid = ix.indexrelid)"
    ).fetchall():
        cols = tuple(
            conn.execute("SELECT pg_get_indexdef(%s, %s, true)", (oid, k)).fetchone()[0]  # type: ignore[index]
            for k in range(1, ncols + 1)
        )
        shape["indexes"][name] = (table, cols, norm_condition(pred))
    for name, table, definition in conn.execute(
        "SELECT tg.tgname, c.relname, pg_get_triggerdef(tg.oid) FROM pg_trigger AS tg "
        "JOIN pg_class AS c ON c.oid = tg.tgrelid WHERE c.relnamespace = current_schema()::regnamespace "
        "AND NOT tg.tgisinternal"
    ):
        m = re.match(
            r"CREATE TRIGGER (\w+) (BEFORE|AFTER) ((?:INSERT|DELETE|TRUNCATE|UPDATE(?: OF [\w, ]+?)?)(?: OR \w+(?: OF [\w, ]+?)?)*) "
            r"ON \S+ "
            r"FOR EACH (?:ROW|STATEMENT) (?:WHEN \((.*)\) )?EXECUTE FUNCTION",
            definition,
        )
        assert m, definition
        shape["triggers"][name] = (table, m[2], m[3], norm_condition(m[4]))
    return shape


def test_the_baseline_makes_sqlites_schema(lite: sqlite3.Connection, pg: psycopg.Connection[Any]) -> None:
    want = sqlite_shape(lite)
    got = pg_shape(pg)
    assert list(got["columns"]) == list(want["columns"])  # the same tables, no more
    for table, columns in want["columns"].items():  # names, order, types, NOT NULL, defaults
        assert got["columns"][table] == columns, table
    for part in ("pk", "unique", "fk"):
        assert got[part] == want[part], part
    assert sum(len(v) for v in want["fk"].values()) == 10
    indexes = {k: v for k, v in got["indexes"].items() if k not in PG_ONLY_INDEXES}
    assert indexes == want["indexes"]
    assert len(indexes) == 13
    assert set(got["indexes"]) - set(indexes) <= PG_ONLY_INDEXES
    triggers = {k: v for k, v in got["triggers"].items() if k not in PG_ONLY_TRIGGERS}
    table, timing, event, when = triggers.pop("audit_chain")
    assert (table, (want["triggers"].pop("audit_chain")[1], timing), event, when) == (
        "audit",
        AUDIT_CHAIN_TIMING,
        "INSERT",
        None,
    )
    assert triggers == want["triggers"]  # tables, timing, events (UPDATE OF ...) and WHEN conditions
    assert len(triggers) == 10
    assert set(got["triggers"]) - set(triggers) - {"audit_chain"} == PG_ONLY_TRIGGERS


def test_stores_in_one_database_keep_to_their_own_schema(pg_url: str, store_url: str) -> None:
    """Nothing names a schema, and every function pins the search_path it was made with: a
    session whose search_path is elsewhere still has the triggers write to the store's tables."""
    other = new_store(pg_url)
    try:
        schema = pg_cluster.schema_of(store_url)
        with psycopg.connect(pg_url, autocommit=True) as conn:  # search_path: "$user", public
            conn.execute(f'LISTEN "signoff:{schema}"')
            conn.execute(pg_sql(INSERT).replace("INTO requests", f"INTO {schema}.requests"), insert_values(a_request()))
            counts = conn.execute(
                f"SELECT (SELECT count(*) FROM {schema}.audit), (SELECT count(*) FROM {schema}.outbox), "
                f"(SELECT count(*) FROM {schema}.request_approvers)"
            ).fetchone()
            assert counts == (1, 4, 4)  # "created"; 2 Telegram chats and 2 Slack places; 4 approvers
            assert "request:r-1" in {n.payload for n in conn.notifies(timeout=5.0, stop_after=1)}
            objects = conn.execute(
                "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'i') "
                "UNION ALL SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace "
                "AND proname LIKE ANY (ARRAY['signoff%%', 'audit%%', 'outbox%%', 'notify%%', 'request%%'])"
            ).fetchall()
            assert objects == [(0,), (0,)]  # public holds pg_trgm's functions at most
        with psycopg.connect(other, autocommit=True) as conn:  # the other store saw nothing, and chains on its own
            assert conn.execute("SELECT count(*) FROM audit").fetchone() == (0,)
            conn.execute(pg_sql(INSERT), insert_values(a_request()))
            assert conn.execute("SELECT seq, prev_hash FROM audit").fetchall() == [(1, None)]
    finally:
        pg_cluster.drop_schema_of(other)


def test_the_baseline_applies_for_a_role_that_owns_only_its_schema(pg_url: str) -> None:
    """No superuser, no right to create extensions: everything but the trigram index is made."""
    suffix = secrets.token_hex(4)
    role, database = f"signoff_plain_{suffix}", f"signoff_db_{suffix}"
    with psycopg.connect(pg_url, autocommit=True) as admin:
        if not admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]:  # type: ignore[index]
            pytest.skip("needs a superuser to make a role and a database")
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"CREATE DATABASE {database}")
        try:
            with psycopg.connect(pg_url, dbname=database, autocommit=True) as conn:
                conn.execute(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC; CREATE SCHEMA signoff AUTHORIZATION {role}")
            url = make_conninfo(pg_url, dbname=database, user=role, options="-csearch_path=signoff")
            with psycopg.connect(url) as conn, conn.transaction():
                conn.execute(BASELINE)
            with psycopg.connect(url, autocommit=True) as conn:
                assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'").fetchone() == (0,)
                indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'signoff'")}
                assert "requests_text_trgm" not in indexes and "outbox_due" in indexes
                conn.execute(pg_sql(INSERT), insert_values(a_request()))
                with conn.transaction():
                    conn.execute("SET LOCAL signoff.copying = 'on'")  # any role may set it
                    conn.execute(pg_sql(INSERT), insert_values(a_request(id="r-2")))
                assert verify(read_chain(conn)) == (1, None)
        finally:
            admin.execute(f"DROP DATABASE {database} WITH (FORCE)")
            admin.execute(f"DROP ROLE {role}")


def test_integer_primary_keys_are_identities_by_default(pg: psycopg.Connection[Any]) -> None:
    rows = pg.execute(
        "SELECT table_name, column_name, identity_generation FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND is_identity = 'YES' ORDER BY 1"
    ).fetchall()
    # audit.seq is not one: audit_chain numbers the events itself.
    assert rows == [
        ("digest_items", "seq", "BY DEFAULT"),
        ("digest_renders", "id", "BY DEFAULT"),
        ("outbox", "id", "BY DEFAULT"),
        ("proposed_edits", "id", "BY DEFAULT"),
    ]


def a_request(**changes: Any) -> ApprovalRequest:
    snapshot = {
        "name": "default",
        "approvers": ["alice", "bob"],
        "telegram": [
            {"approver": "bob", "chat_id": 222, "user_id": 2},
            {"approver": "alice", "chat_id": -1001234567890, "user_id": 1},
            {"approver": "carol", "chat_id": -1001234567890, "user_id": 3},  # a chat shared: one prompt
            {"approver": "dave", "user_id": 4},  # no chat: skipped (INSERT OR IGNORE and NOT NULL)
        ],
        "slack": [
            {"approver": "alice", "address": "C9", "user_id": "U1"},
            {"approver": "alice", "address": "A1", "user_id": "U1"},
            {"address": "Z0", "user_id": "U9"},  # no approver: skipped
        ],
        "escalation": [
            {"after": 60, "approvers": ["zed", "alice"], "telegram": [], "slack": []},
            {"after": 120, "approvers": ["émile 🚀"]},
        ],
    }
    base = ApprovalRequest(
        id="r-1",
        action="refund",
        summary='Refund "42" € to O\'Brien\n\tnow\\',
        details={"amount": 4200, "note": "x\u2028y"},
        metadata={"amount": 4200},
        route="default",
        route_snapshot=snapshot,  # type: ignore[typeddict-item]
        approvers=["alice", "bob"],
        requested_by="claude-code",
        requested_via="mcp",
        claimed_requester="agent \x01",
        idempotency_key=None,
        content_hash="c" * 64,
        status=Status.PENDING,
        on_timeout="reject",
        created_at=1733235123.0,
        expires_at=1733238723.5,
        decided_at=None,
        decided_by=None,
        decided_kind=None,
        decided_via=None,
        reason=None,
        callback_url="https://example.test/hook",
        action_digest="d" * 64,
    )
    return replace(base, **changes)


def insert_values(req: ApprovalRequest) -> tuple[Any, ...]:
    return request_row(
        req, None if req.details is None else dumps(req.details), dumps(req.metadata), dumps(req.route_snapshot)
    )


REQUEST_COLUMNS = [c.strip() for c in queries.REQUEST_COLUMNS.split(",")]
BAD_ROWS: list[tuple[str, dict[str, Any]]] = [  # values of the INSERT, by column
    ("status", {"status": "bogus"}),
    ("on_timeout", {"on_timeout": "maybe"}),
    ("decided_kind", {"decided_kind": "robot"}),
    ("kind", {"kind": "poll"}),
    ("a question is never approved", {"kind": "question", "status": "approved", "decided_at": 1.0}),
    ("only questions offer options", {"options": '["yes","no"]'}),
    ("answered needs an answer", {"kind": "question", "status": "answered", "decided_at": 1.0}),
    ("only answered has an answer", {"kind": "question", "answer": "yes"}),
    ("NOT NULL", {"summary": None}),
]


@pytest.mark.parametrize(("why", "changes"), BAD_ROWS, ids=[b[0] for b in BAD_ROWS])
def test_both_stores_refuse_the_same_rows(
    lite: sqlite3.Connection, pg: psycopg.Connection[Any], why: str, changes: dict[str, Any]
) -> None:
    good = insert_values(a_request())
    row = [changes.get(column, value) for column, value in zip(REQUEST_COLUMNS, good, strict=True)]
    with pytest.raises(sqlite3.IntegrityError):
        lite.execute(INSERT, row)
    with pytest.raises(psycopg.IntegrityError):
        pg.execute(pg_sql(INSERT), row)
    for run in (lite.execute, lambda sql, args: pg.execute(pg_sql(sql), args)):  # the good row goes in
        run(INSERT, good)


def test_both_stores_refuse_bad_audit_votes_and_prompts(lite: sqlite3.Connection, pg: psycopg.Connection[Any]) -> None:
    row = insert_values(a_request())
    lite.execute(INSERT, row)
    pg.execute(pg_sql(INSERT), row)
    bad = [
        "INSERT INTO audit (at, event, request_id, actor_kind, actor, channel, route_snapshot, content_hash) "
        "VALUES (1.0, 'x', 'r-1', 'alien', 'a', 'c', '{}', 'h')",
        "INSERT INTO audit (at, event, request_id, actor_kind, actor, channel, route_snapshot, content_hash) "
        "VALUES (1.0, 'x', 'no-such-request', 'human', 'a', 'c', '{}', 'h')",
        "INSERT INTO votes VALUES ('r-1', 'alice', 'maybe', 1.0, 'telegram', NULL)",
        "INSERT INTO reason_prompts VALUES ('telegram', '1', '2', 'r-1', '3', 1.0, 'other')",
        "INSERT INTO outbox (request_id, kind, channel, address, created_at, next_attempt_at) "
        "VALUES ('r-1', 'prompt', 'telegram', '222', 1.0, 1.0)",  # the unique (request, kind, channel, address)
    ]
    for sql in bad:
        with pytest.raises(sqlite3.IntegrityError):
            lite.execute(sql)
        with pytest.raises(psycopg.IntegrityError):
            pg.execute(sql)


# --- 2. the hash chain ---------------------------------------------------------------------

AWKWARD_TEXTS = [
    "",
    'say "hi"',
    "back\\slash \\u0041 \\n",
    "".join(chr(c) for c in range(1, 0x20)) + "\x7f",
    "Grüße, 日本語, ÿ",
    "rocket 🚀 and 👩‍👩‍👧",
    "line\u2028separator\u2029paragraph",
    "\ufeffbom \ufffd",
    '{"already": "json", "n": [1, 2.5, null]}',
]
AWKWARD_TIMES = [1733235123.0, 1733235123.123456, 0.1, 1e-7, 1e-5, 1e-4, 1e15, 1e16, 1.5e16, 123.456, 5e-324, 0.0]


@pytest.fixture(scope="module")
def hash_conn(module_store_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(module_store_url, autocommit=True) as conn:
        yield conn


def pg_hash(conn: psycopg.Connection[Any], prev: str | None, values: list[Any]) -> str:
    row = conn.execute(
        "SELECT signoff_audit_hash(%s, %s, %s::float8, %s, %s, %s, %s, %s, %s, %s, %s, %s)", [prev, *values]
    ).fetchone()
    assert row is not None
    return str(row[0])


def test_strings_are_escaped_as_python_and_sqlite_escape_them(
    hash_conn: psycopg.Connection[Any], lite: sqlite3.Connection
) -> None:
    texts = [*AWKWARD_TEXTS, *(chr(c) for c in range(1, 0x80)), "\u0080\u00a0\u07ff\u0800\uffff\U00010000\U0010ffff"]
    got = [r[0] for r in hash_conn.execute("SELECT signoff_json(t) FROM unnest(%s::text[]) AS t", (texts,))]
    assert got == [json.dumps(t, ensure_ascii=False) for t in texts]
    assert got == [lite.execute("SELECT json_quote(?)", (t,)).fetchone()[0] for t in texts]
    assert hash_conn.execute("SELECT signoff_json(NULL)").fetchone() == ("null",)


def test_floats_are_written_as_python_repr_writes_them(hash_conn: psycopg.Connection[Any]) -> None:
    values = [
        *AWKWARD_TIMES,
        2.133439722065705e16,
        -0.0,
        -1e-300,
        1.7976931348623157e308,
        2.2250738585072014e-308,
        9007199254740993.0,
    ]
    values += [10.0**e for e in range(-30, 30)] + [1.5 * 10.0**e for e in range(-30, 30)]
    rnd = random.Random(20241203)  # and any bit pattern that is a finite double
    doubles = (struct.unpack("<d", rnd.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(30_000))
    values += [d for d in doubles if math.isfinite(d)]
    got = [r[0] for r in hash_conn.execute("SELECT signoff_py_float(x) FROM unnest(%s::float8[]) AS x", (values,))]
    assert got == [repr(v) for v in values]
    for bad in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(psycopg.errors.NumericValueOutOfRange):
            hash_conn.execute("SELECT signoff_py_float(%s::float8)", (bad,))


texts = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=40)
optional_texts = st.none() | texts


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prev=st.none() | st.text("0123456789abcdef", min_size=64, max_size=64),
    seq=st.integers(1, 2**63 - 1),
    at=st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(AWKWARD_TIMES),
    strings=st.tuples(texts, texts, texts, texts, texts, texts, texts),
    action_digest=optional_texts,
    data=optional_texts,
)
def test_postgresql_hashes_as_python_does(
    hash_conn: psycopg.Connection[Any],
    prev: str | None,
    seq: int,
    at: float,
    strings: tuple[str, ...],
    action_digest: str | None,
    data: str | None,
) -> None:
    values = [seq, at, *strings, action_digest, data]
    assert len(values) == len(FIELDS)
    assert pg_hash(hash_conn, prev, values) == event_hash(prev, *values)


def read_chain(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {', '.join(FIELDS)}, prev_hash, hash FROM audit ORDER BY seq").fetchall()


APPEND = (
    "INSERT INTO audit (at, event, request_id, actor_kind, actor, channel, route_snapshot, content_hash, "
    "action_digest, data) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING seq, prev_hash, hash"
)


def test_awkward_events_chain_as_python_verifies(pg: psycopg.Connection[Any]) -> None:
    for n, text in enumerate(AWKWARD_TEXTS):
        pg.execute(pg_sql(INSERT), insert_values(a_request(id=f"r{n} {text}", requested_by=text)))
    written = []
    for n, (text, at) in enumerate(zip(AWKWARD_TEXTS * 2, AWKWARD_TIMES * 2, strict=False)):
        values = [
            at,
            text or "e",
            f"r{n % len(AWKWARD_TEXTS)} {AWKWARD_TEXTS[n % len(AWKWARD_TEXTS)]}",
            ("agent", "human", "system")[n % 3],
            text,
            text[::-1],
            json.dumps({"t": text}, ensure_ascii=False),
            text,
            None if n % 2 else text,  # action_digest
            None if n % 3 == 0 else json.dumps([text, at], ensure_ascii=False),  # data
        ]
        written.append(pg.execute(APPEND, values).fetchone())
    chain = read_chain(pg)
    assert [e["seq"] for e in chain] == list(range(1, len(chain) + 1))
    assert chain[0]["prev_hash"] is None
    assert verify(chain) == (len(chain), None)
    assert len(chain) == len(AWKWARD_TEXTS) + len(written)  # each request's "created", then the events written
    # RETURNING shows what the trigger set.
    assert [tuple(w) for w in written] == [(e["seq"], e["prev_hash"], e["hash"]) for e in chain[-len(written) :]]


def test_a_copy_keeps_the_chain_it_is_given_and_appending_continues_it(pg: psycopg.Connection[Any]) -> None:
    req = a_request()
    big = 2**62
    values = [big, 1733235123.5, "created", req.id, "agent", "a", "mcp", "{}", "h", None, None]
    given_hash = event_hash("f" * 64, *values)
    with pg.transaction():
        pg.execute("SET LOCAL signoff.copying = 'on'")
        pg.execute(pg_sql(INSERT), insert_values(req))  # no audit, outbox or approvers rows while copying
        derived = "SELECT (SELECT count(*) FROM audit) + (SELECT count(*) FROM outbox) + (SELECT count(*) FROM request_approvers)"
        assert pg.execute(derived).fetchone() == (0,)
        pg.execute(
            "INSERT INTO audit (seq, at, event, request_id, actor_kind, actor, channel, route_snapshot, "
            "content_hash, action_digest, data, prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
            "%s, %s, %s)",
            [*values, "f" * 64, given_hash],
        )
    assert pg.execute("SELECT current_setting('signoff.copying', true)").fetchone() in (("",), (None,))
    seq, prev, digest = pg.execute(APPEND, [2.0, "note", req.id, "human", "b", "web", "{}", "h", None, None]).fetchone()  # type: ignore[misc]
    assert (seq, prev) == (big + 1, given_hash)
    chain = read_chain(pg)
    assert chain[-1]["hash"] == digest
    assert verify(chain, from_start=False) == (2, None)


def test_concurrent_appenders_leave_one_unbroken_dense_chain(store_url: str, pg: psycopg.Connection[Any]) -> None:
    threads, per_thread = 8, 100
    for t in range(threads):
        pg.execute(pg_sql(INSERT), insert_values(a_request(id=f"r-{t}")))
    committed = [0] * threads
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        try:
            with psycopg.connect(store_url, autocommit=True) as conn:
                start.wait()
                for i in range(per_thread):
                    values = [1733235123.0 + i / 7, "note", f"r-{t}", "system", f"w{t}", "test", "{}", "h", None, None]
                    if i % 10 == 9:  # rolled back: must leave no gap
                        with contextlib.suppress(ZeroDivisionError), conn.transaction():
                            conn.execute(APPEND, values)
                            raise ZeroDivisionError
                        continue
                    with conn.transaction():
                        conn.execute(APPEND, values)
                        if i % 4 == 0:  # two events in one transaction
                            conn.execute(APPEND, values)
                            committed[t] += 1
                    committed[t] += 1
        except BaseException as exc:  # reported below, with the thread's error
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=90)
    assert not errors, errors
    chain = read_chain(pg)
    assert len(chain) == threads + sum(committed)  # each request's "created", then the workers' events
    assert sum(committed) == threads * (per_thread - 10 + 25)
    assert [e["seq"] for e in chain] == list(range(1, len(chain) + 1))
    assert verify(chain) == (len(chain), None)


def test_a_decision_waits_for_the_chain_before_it_locks_the_request(
    store_url: str, pg: psycopg.Connection[Any]
) -> None:
    """A transaction that appended an event and then updates a request, against a decision on
    that request: the decision waits for the chain's lock before it locks the row, so both
    finish (taking the row first would deadlock, and PostgreSQL would abort one)."""
    pg.execute(pg_sql(INSERT), insert_values(a_request()))
    decided: list[Any] = []
    with psycopg.connect(store_url) as first:
        first.execute(APPEND, [1.0, "note", "r-1", "system", "x", "test", "{}", "h", None, None])

        def decide() -> None:
            with psycopg.connect(store_url, autocommit=True) as second:
                args = ("approved", 5.0, "alice", "human", "web", None, None, None, "r-1")
                try:
                    decided.extend(second.execute(pg_sql(DECIDE), args).fetchall())
                except psycopg.Error as exc:
                    decided.append(exc)

        thread = threading.Thread(target=decide)
        thread.start()
        thread.join(timeout=0.5)
        assert thread.is_alive()  # waiting for the chain
        first.execute("UPDATE requests SET level = 1 WHERE id = 'r-1'")
        first.commit()
        thread.join(timeout=10)
    assert len(decided) == 1 and not isinstance(decided[0], Exception), decided
    assert verify(read_chain(pg)) == (3, None)


def test_appending_outside_read_committed_is_refused(store_url: str, pg: psycopg.Connection[Any]) -> None:
    pg.execute(pg_sql(INSERT), insert_values(a_request()))
    with psycopg.connect(store_url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="READ COMMITTED"):
            conn.execute(APPEND, [1.0, "note", "r-1", "system", "x", "test", "{}", "h", None, None])


def test_a_long_schema_name_is_cut_as_listen_cuts_it(pg_url: str) -> None:
    schema = "t_" + "é" * 40  # 82 bytes: "signoff:" and the name are cut to 63 bytes, between two characters
    url = f"{pg_url}{'&' if '?' in pg_url else '?'}options=-csearch_path%3D{schema}"
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        with psycopg.connect(url) as conn, conn.transaction():
            conn.execute(BASELINE)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'LISTEN "signoff:{schema}"')  # the server cuts it, with a NOTICE
            (channel,) = conn.execute("SELECT pg_listening_channels()").fetchone()  # type: ignore[misc]
            assert len(channel.encode()) == 62 and f"signoff:{schema}".startswith(channel)
            conn.execute(pg_sql(INSERT), insert_values(a_request()))
            heard = {(n.channel, n.payload) for n in conn.notifies(timeout=5.0, stop_after=1)}
            assert (channel, "request:r-1") in heard
    finally:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_a_float_python_cannot_write_as_json_is_refused(pg: psycopg.Connection[Any]) -> None:
    pg.execute(pg_sql(INSERT), insert_values(a_request()))
    for bad in ("NaN", "Infinity"):  # SQLite cannot store NaN; Python's encoder refuses both
        with pytest.raises(psycopg.errors.NumericValueOutOfRange):
            pg.execute(APPEND, [float(bad), "note", "r-1", "system", "x", "test", "{}", "h", None, None])


# --- 3. append-only ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit SET actor = 'mallory'",
        "UPDATE audit SET hash = NULL",
        "UPDATE audit SET prev_hash = prev_hash",  # any update of a chained event
        "DELETE FROM audit",
        "DELETE FROM audit WHERE seq = 1",
        "TRUNCATE audit",
    ],
)
def test_the_audit_log_is_append_only(pg: psycopg.Connection[Any], sql: str) -> None:
    pg.execute(pg_sql(INSERT), insert_values(a_request()))
    before = read_chain(pg)
    assert len(before) == 1
    with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="the audit log is append-only"):
        pg.execute(sql)
    assert read_chain(pg) == before


# --- 4. the request triggers, side by side with SQLite --------------------------------------

Step = Callable[[Callable[[str, Any], int]], None]


def decide(status: str, by: str, kind: str, via: str, reason: str | None, edit: Any = None) -> Step:
    edited = None if edit is None else dumps(edit)
    digest = None if edit is None else "e" * 64

    def step(run: Callable[[str, Any], int]) -> None:
        assert run(DECIDE, (status, 1733235999.25, by, kind, via, reason, edited, digest, "r-1")) == 1

    return step


def answer(text: str) -> Step:
    def step(run: Callable[[str, Any], int]) -> None:
        assert run(storemod._ANSWER, (text, 1733235999.25, "alice", "human", "slack", "r-1")) == 1

    return step


def side_rows(run: Callable[[str, Any], int]) -> None:
    """What a channel adds after the prompts went out: sent messages and a digest entry."""
    run("INSERT INTO prompts VALUES ('r-1', 'slack', 'B0', 'm1', 2.0)", ())
    run("INSERT INTO prompts VALUES ('r-1', 'telegram', '-1001234567890', 'm2', 2.0)", ())
    run("INSERT INTO digest_items (channel, address, request_id, approver) VALUES ('telegram', '5', 'r-1', 'bob')", ())
    run("INSERT INTO outbox (request_id, kind, channel, address, created_at, next_attempt_at, done_at) "
        "VALUES ('r-1', 'digest', 'telegram', '5', 1.0, 1.0, 1.5)", ())  # fmt: skip


def file_again(run: Callable[[str, Any], int]) -> None:
    """The same requester and idempotency key: nothing is written, no trigger fires."""
    assert run(INSERT, insert_values(a_request(id="r-2", idempotency_key="k-1", created_at=9.0))) == 0


REASON = 'it\'s "fine"\n\t\\ ✓ \u2028 \x01 🚀'
SCENARIOS: dict[str, tuple[ApprovalRequest, list[Step]]] = {
    "approved with a reason": (a_request(), [side_rows, decide("approved", "alice", "human", "telegram", REASON)]),
    "rejected without a reason": (a_request(callback_url=None), [decide("rejected", "bob", "human", "slack", None)]),
    "approved with an edit": (
        a_request(),
        [decide("approved", "alice", "human", "web", None, edit={"amount": 100, "note": REASON})],
    ),
    "approved with an edit and a note": (
        a_request(),
        [decide("approved", "alice", "human", "web", REASON, edit={"amount": 1})],
    ),
    "expired by the scheduler": (a_request(), [decide("expired", "timeout", "system", "scheduler", None)]),
    "cancelled by the agent": (a_request(), [decide("cancelled", "claude-code", "agent", "mcp", "no longer needed")]),
    "filed approved (auto)": (
        a_request(
            status=Status.APPROVED,
            decided_at=1733235123.0,
            decided_by="route:reads",
            decided_kind="system",
            decided_via="policy",
        ),
        [],
    ),
    "filed rejected with a reason": (
        a_request(
            status=Status.REJECTED,
            decided_at=1733235123.0,
            decided_by="route:blocked",
            decided_kind="system",
            decided_via="policy",
            reason=REASON,
            callback_url=None,
        ),
        [],
    ),
    "a question answered": (
        a_request(kind="question", options=["yes", "no ✓"], action="ask_human"),
        [side_rows, answer('yes, "really"\n')],
    ),
    "filed twice under one idempotency key": (a_request(idempotency_key="k-1"), [file_again]),
}


def snapshot_of(fetch: Callable[[str], list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    outbox = fetch("SELECT * FROM outbox ORDER BY id")
    # An upsert (ON CONFLICT) uses up an identity value on PostgreSQL: compare the ids' order, not their values.
    assert [row[0] for row in outbox] == sorted({row[0] for row in outbox})
    return {
        "requests": fetch("SELECT * FROM requests ORDER BY id"),
        "audit": fetch("SELECT * FROM audit ORDER BY seq"),
        "outbox": [(n, *row[1:]) for n, row in enumerate(outbox, 1)],
        "request_approvers": fetch("SELECT * FROM request_approvers ORDER BY approver, created_at, request_id"),
    }


def runner(conn: sqlite3.Connection | psycopg.Connection[Any]) -> Callable[[str, Any], int]:
    """Run one of signoff's SQLite statements on either store; its row count."""

    def run(sql: str, args: Any) -> int:
        if isinstance(conn, sqlite3.Connection):
            cur = conn.execute(sql, args)
            cur.fetchall()  # RETURNING: the count is known once the rows are read
            return cur.rowcount
        pg_cur = conn.execute(pg_sql(sql), args)
        if pg_cur.description is not None:
            pg_cur.fetchall()
        return pg_cur.rowcount

    return run


def assert_same_rows(lite: sqlite3.Connection, pg: psycopg.Connection[Any], stage: str) -> int:
    """requests, audit, outbox and request_approvers equal field by field; the number of audit events."""
    want = snapshot_of(lambda sql: [tuple(r) for r in lite.execute(sql)])
    got = snapshot_of(lambda sql: [tuple(r) for r in pg.execute(sql)])
    for table in want:
        assert len(got[table]) == len(want[table]), (stage, table)
        for w, g in zip(want[table], got[table], strict=True):
            assert g == w, (stage, table)  # ids, seq, hashes, JSON text byte for byte
    with pg.cursor(row_factory=dict_row) as cur:
        chain = cur.execute("SELECT * FROM audit ORDER BY seq").fetchall()
    assert verify(chain) == (len(chain), None)
    for event in chain:
        assert event["data"] is None or isinstance(json.loads(event["data"]), dict)
    return len(chain)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_filing_and_deciding_write_the_same_rows_on_both_stores(
    lite: sqlite3.Connection, pg: psycopg.Connection[Any], scenario: str
) -> None:
    req, steps = SCENARIOS[scenario]
    for conn in (lite, pg):
        assert runner(conn)(INSERT, insert_values(req)) == 1
    assert assert_same_rows(lite, pg, "filed") >= 1
    for n, step in enumerate(steps):
        step(runner(lite))
        step(runner(pg))
        assert_same_rows(lite, pg, f"step {n}")


def test_an_expiry_of_several_requests_writes_the_same_rows(
    lite: sqlite3.Connection, pg: psycopg.Connection[Any]
) -> None:
    """One UPDATE, many rows: SQLite runs each row's triggers after that row, PostgreSQL all of them
    at the end of the statement, row by row in the same order (here the deadlines' order is the
    rows' order; neither engine promises an order otherwise)."""
    for conn in (lite, pg):
        run = runner(conn)
        for n in range(4):
            run(
                INSERT,
                insert_values(a_request(id=f"r-{n}", expires_at=100.0 + n, on_timeout=("approve", "reject")[n % 2])),
            )
        run("INSERT INTO prompts VALUES ('r-2', 'slack', 'B0', 'm1', 2.0)", ())
        assert run(storemod._EXPIRE, (200.0, 200.0)) == 4
        assert run(storemod._EXPIRE, (300.0, 300.0)) == 0
    assert assert_same_rows(lite, pg, "expired") == 8


def test_a_decisions_data_is_what_sqlite_writes(lite: sqlite3.Connection, pg: psycopg.Connection[Any]) -> None:
    """The data JSON of each kind of decision, spelled out (the side-by-side test compares the rest)."""
    auto = a_request(
        id="r-2", status=Status.APPROVED, decided_at=5.0, decided_by="x", decided_kind="system", decided_via="policy"
    )
    steps = [
        (INSERT, insert_values(a_request())),
        (INSERT, insert_values(auto)),
        (INSERT, insert_values(a_request(id="r-3", kind="question", options=["a"]))),
        (DECIDE, ("approved", 6.0, "alice", "human", "web", None, dumps({"a": 1}), "e" * 64, "r-1")),
        (storemod._ANSWER, ('"a"', 7.0, "bob", "human", "slack", "r-3")),
    ]
    for sql, args in steps:
        lite.execute(sql, args).fetchall()
        pg.execute(pg_sql(sql), args)
    want = [
        None,  # r-1 created
        None,  # r-2 created
        '{"reason":null}',  # r-2 filed approved: the reason, even when there is none
        None,  # r-3 created
        '{"reason":null,"edited":true,"action_digest":"' + "d" * 64 + '","approved_action_digest":"' + "e" * 64 + '"}',
        '{"answer":"\\"a\\""}',
    ]
    assert [r[0] for r in lite.execute("SELECT data FROM audit ORDER BY seq")] == want
    assert [r[0] for r in pg.execute("SELECT data FROM audit ORDER BY seq")] == want


# --- 5. wake-ups ---------------------------------------------------------------------------


def test_filing_and_deciding_notify_the_other_instances(store_url: str, pg: psycopg.Connection[Any]) -> None:
    schema = pg_cluster.schema_of(store_url)
    with psycopg.connect(store_url, autocommit=True) as listener:
        listener.execute(f'LISTEN "signoff:{schema}"')

        def heard(want: set[str]) -> set[str]:
            got: set[str] = set()
            for note in listener.notifies(timeout=5.0):
                assert note.channel == f"signoff:{schema}"
                got.add(note.payload)
                if want <= got:
                    break
            return got

        with pytest.raises(ZeroDivisionError), pg.transaction():  # rolled back: nobody hears of it
            pg.execute(pg_sql(INSERT), insert_values(a_request(id="r-0")))
            raise ZeroDivisionError
        pg.execute(pg_sql(INSERT), insert_values(a_request()))
        assert heard({"request:r-1", "outbox:telegram", "outbox:slack"}) == {
            "request:r-1",
            "outbox:telegram",
            "outbox:slack",
        }
        pg.execute(pg_sql(DECIDE), ("approved", 5.0, "alice", "human", "web", None, None, None, "r-1"))
        want = {"request:r-1", "outbox:telegram", "outbox:slack", "outbox:callback"}
        assert heard(want) == want
        pg.execute("UPDATE requests SET level = 1 WHERE id = 'r-1'")  # no change of status: no wake-up
        assert list(listener.notifies(timeout=0.3)) == []
