"""`signoff migrate-store` copies a SQLite store into PostgreSQL as it is, and `signoff migrate`
applies a store's migrations: the real command line on a store the real service filled, compared
table by table with the copy, whose audit chain `signoff audit verify` then checks and which the
service then goes on using."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from signoff.server.app import open_app
from signoff.server.config import load_config
from signoff.server.digests import DigestBook
from signoff.server.intake import NewRequest
from signoff.server.lease import Lease
from signoff.server.models import Actor, Status
from signoff.server.outbox import Outbox
from signoff.server.schema import MIGRATIONS
from signoff.server.store import Store
from signoff.server.web_auth import WebAuth

from . import pg_cluster
from .policies import Clock
from .procs import cli

CONFIG = """
[store]
path = "signoff.db"

[defaults]
digest_threshold = 1

[callbacks]
allowed_urls = ["http://127.0.0.1:9/"]

[approvers.alice]
telegram_user_id = 111
slack_user_id = "U0ALICE01"

[approvers.bob]
telegram_user_id = 222

[[routes]]
name = "reads"
match = { action = "read_*" }
auto = "approve"

[[routes]]
name = "blocked"
match = { action = "drop_*" }
auto = "reject"

[[routes]]
name = "tests"
match = { action = "Bash" }
approvers = ["alice"]
grant_options = ["30m", "session"]
grant_scope = { argument = "command", patterns = ["npm test", "pytest *"] }

[[routes]]
name = "two-keys"
match = { action = "deploy" }
approvers = ["alice", "bob"]
quorum = 2

[[routes]]
name = "questions"
match = { action = "ask_human*" }
approvers = ["bob"]

[[routes]]
name = "default"
approvers = ["alice", "bob"]
reminder = "1h"
"""

AGENT = Actor("agent", "claude-code", "mcp")
ALICE, BOB = Actor("human", "alice", "console"), Actor("human", "bob", "console")
ALICE_CHAT = "111"
BUTTON_KEY = "telegram_callback_key"  # the Telegram adapter signs its buttons with this setting
PASSWORD = "hunter2-not-for-logs"


@pytest.fixture
def server() -> str:
    url = pg_cluster.server_url()
    if url is None:
        pytest.skip(f"no PostgreSQL for the tests: {pg_cluster.why_not()}")
    return url


@pytest.fixture
def target(server: str) -> Iterator[str]:
    """An empty schema of the test server: the URL to copy into."""
    url = pg_cluster.fresh_schema_url(server)
    yield url
    pg_cluster.drop_schema_of(url)


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIGNOFF_DATABASE_URL", raising=False)  # the config's SQLite file, unless a test says
    monkeypatch.setenv("SIGNOFF_CALLBACK_SECRET", "callback-key")


@dataclass
class Source:
    config: Path
    db: Path
    ids: dict[str, str]  # what each request is → its id
    live_grant: str
    revoked_grant: str


async def build_source(folder: Path) -> Source:
    """A SQLite store with requests in every state, votes, grants (live and revoked), a chained
    audit log, settings, web sign-ins, a lease, prompts, a digest and an outbox with deliveries
    still to make (a decision callback among them): made by the service and the channels' own
    store code, as signoff itself makes them."""
    config_path = folder / "signoff.toml"
    config_path.write_text(CONFIG, encoding="utf-8")
    config = load_config(config_path)
    clock = Clock()
    ids: dict[str, str] = {}
    async with open_app(config, background=False, clock=clock) as app:
        s = app.service

        async def file(name: str, action: str, **kw: Any) -> str:
            ids[name] = (await s.request_approval(NewRequest(action, f"{name} ({action})", **kw), AGENT)).id
            return ids[name]

        await file("pending", "email", details={"to": "a@example.com", "ratio": 0.1, "n": 3})
        await file("pending 2", "email")
        await file("pending 3", "email")
        await s.decide(await file("approved", "email"), True, ALICE, "fine")
        await s.decide(await file("rejected", "email"), False, BOB, "not today")
        await file("expired", "email", timeout_seconds=60)
        await s.cancel(await file("cancelled", "email"), AGENT, "never mind")
        await s.answer(await file("answered", "ask_human", kind="question", options=["eu", "us"]), "eu", BOB)
        edited = await file("edited", "email", details={"to": "typo@example.con"})
        await s.approve_edited(edited, {"to": "right@example.com"}, ALICE, "fixed the address")
        await file("auto-approved", "read_file")
        await file("auto-rejected", "drop_table")
        await s.decide(await file("one vote of two", "deploy"), True, ALICE)
        npm = {"command": "npm test"}
        granted = await file("granted", "Bash", details=npm)
        _, live = await s.approve_and_grant(granted, "30m", ALICE, notice=("telegram", ALICE_CHAT))
        pytest_a = {"command": "pytest a.py"}
        _, revoked = await s.approve_and_grant(await file("granted, revoked", "Bash", details=pytest_a), "30m", ALICE)
        assert live is not None and revoked is not None
        assert await s.revoke_grant(revoked.id, ALICE)
        covered = await s.get(await file("covered by the grant", "Bash", details=npm))
        assert covered.decided_by == f"grant:{live.id}"
        await s.decide(await file("callback due", "email", callback_url="http://127.0.0.1:9/hook"), False, ALICE, "no")
        await file("pending with callback", "email", callback_url="http://127.0.0.1:9/hook")
        clock.advance(120)
        assert [r.id for r in await s.sweep()] == [ids["expired"]]

        # What the channels write as they work: prompts sent (and one that failed), a digest,
        # reply and edit prompts, a proposed edit, web sign-ins, a lease, settings.
        store = app.store
        telegram = Outbox(store, "telegram", clock)
        alice = {d.request_id: d for d in await telegram.due() if d.address == ALICE_CHAT and d.kind == "prompt"}
        first, second, third = (alice[ids[name]] for name in ("pending", "pending 2", "pending 3"))
        await telegram.sent(first.id, first.request_id, ALICE_CHAT, "1001")
        await telegram.sent(second.id, second.request_id, ALICE_CHAT, "1002")
        book = DigestBook(store, "telegram", config, clock)
        assert await book.gather(third)  # two prompts in the chat already: the third goes into a digest
        render = await book.new_render(ALICE_CHAT, None, [ids["pending 3"]])
        await book.rendered(ALICE_CHAT, render, "1003", pending=True)
        bob = next(d for d in await telegram.due() if d.address == "222")
        await telegram.retry(bob.id, 30, "HTTP 429: Too Many Requests")
        await telegram.ask_reason(ALICE_CHAT, "1004", ids["pending"], ALICE_CHAT)
        await telegram.ask_edit(ALICE_CHAT, "1005", ids["pending 2"], ALICE_CHAT)
        await telegram.propose_edit(ALICE_CHAT, ids["pending 2"], ALICE_CHAT, '{"to":"b@example.com"}')
        web = WebAuth(store, config, clock)
        assert await web.redeem(await web.issue_link("alice", "console"), "127.0.0.1 pytest") is not None
        await web.issue_link("bob", "telegram")
        lease = Lease(store, "telegram-bot", 15, clock=clock)
        assert await lease.claim()
        await lease.release()  # as a stopped instance leaves it
        await store.setting(BUTTON_KEY, lambda: "bXkgYnV0dG9uIGtleQ")
        await store.save_setting("telegram_last_update_id", "4242")
        await store.record(ids["pending"], "refused", Actor("human", "mallory", "telegram"), {"why": "not an approver"})
    return Source(config_path, config.db_path, ids, live.id, revoked.id)


# --- reading both stores, independently of signoff's own code ---------------------------------------

Rows = dict[str, list[list[tuple[str, str, Any]]]]
# signoff's tables; not the migrations each store records for itself, nor SQLite's own bookkeeping
# and full-text index (requests_text*: PostgreSQL searches with a trigram index instead).
SQLITE_TABLES = (
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT IN ('migrations', 'sqlite_sequence') "
    "AND name NOT LIKE 'requests_text%'"
)
PG_TABLES = (
    "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
    "AND table_type = 'BASE TABLE' AND table_name <> 'migrations'"
)


def _typed(names: list[str], values: Any) -> list[tuple[str, str, Any]]:
    # The type is part of the value: an int where a float was, or text where a number was, differs.
    return sorted((n, type(v).__name__, v) for n, v in zip(names, values, strict=True))


def sqlite_rows(db: Path) -> Rows:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute(SQLITE_TABLES)]
        out: Rows = {}
        for table in tables:
            cur = conn.execute(f"SELECT * FROM {table}")
            names = [d[0] for d in cur.description]
            out[table] = sorted((_typed(names, r) for r in cur), key=repr)
        return out
    finally:
        conn.close()


def pg_rows(url: str) -> Rows:
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(PG_TABLES)]
        out: Rows = {}
        for table in tables:
            cur = conn.execute(f"SELECT * FROM {table}")
            names = [d.name for d in cur.description or []]
            out[table] = sorted((_typed(names, r) for r in cur), key=repr)
        return out


def assert_same(source: Rows, copied: Rows) -> None:
    assert sorted(copied) == sorted(source)
    for table in source:
        assert copied[table] == source[table], f"table {table} differs"


def count(url: str, sql: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def verified(config: Path, monkeypatch: pytest.MonkeyPatch, url: str | None = None) -> tuple[int, str]:
    """`signoff audit verify` on the config's SQLite file, or on PostgreSQL at ``url``: (events, last hash)."""
    with monkeypatch.context() as m:
        if url is not None:
            m.setenv("SIGNOFF_DATABASE_URL", url)
        done = cli("audit", "verify", config=config)
    assert done.returncode == 0, done.stdout + done.stderr
    line = done.stdout.strip()
    assert line.startswith("audit chain OK in the database: "), line
    events, last = line.removeprefix("audit chain OK in the database: ").split(" events, last hash ")
    return int(events), last


def ids_of(rows: list[Any]) -> list[str]:
    return [r.request_id for r in rows]


def migrate_store(*args: str) -> subprocess.CompletedProcess[str]:
    done = cli("migrate-store", *args)
    assert "Traceback" not in done.stderr, done.stderr
    return done


# --- the tests --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_sqlite_store_moves_to_postgresql_as_it_is_and_goes_on_there(
    tmp_path: Path, target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = await build_source(tmp_path)
    source = sqlite_rows(src.db)
    assert [t for t, rows in source.items() if not rows] == []  # every table has something to copy
    statuses = {value for row in source["requests"] for name, _, value in row if name == "status"}
    assert statuses == {s.value for s in Status}
    events, last_hash = verified(src.config, monkeypatch)

    # A listener on the target's channel: the copy must wake no instance (its triggers stand aside).
    channel = f"signoff:{pg_cluster.schema_of(target)}"
    with psycopg.connect(target, autocommit=True) as listener:
        listener.execute(f'LISTEN "{channel}"')
        done = migrate_store("--from", str(src.db), "--to", target)
        assert done.returncode == 0, done.stderr
        listener.execute("SELECT pg_notify(%s, 'sentinel')", (channel,))
        heard = [n.payload for n in listener.notifies(timeout=10, stop_after=1)]
    assert heard == ["sentinel"]  # the first notification on the channel is ours: the copy sent none
    assert f"audit chain OK on the target: {events} events" in done.stdout
    assert f"copied {sum(len(rows) for rows in source.values())} rows" in done.stdout

    # Every row, every column, the same (floats exactly, types too): no trigger added an audit
    # event, an outbox row or a request_approvers row, and none renumbered the chain.
    copied = pg_rows(target)
    assert_same(source, copied)
    assert count(target, "SELECT count(*) FROM audit") == events
    assert copied["settings"] == source["settings"] and any(BUTTON_KEY in repr(r) for r in copied["settings"])

    # The chain checks on the target as on the file: the same events, the same last hash.
    assert verified(src.config, monkeypatch, target) == (events, last_hash)

    # The target in use: the same config, the store chosen by $SIGNOFF_DATABASE_URL.
    monkeypatch.setenv("SIGNOFF_DATABASE_URL", target)
    config = load_config(src.config)
    assert config.database == target
    async with open_app(config, background=False) as app:
        s = app.service
        callbacks = await Outbox(app.store, "callback").due()
        assert ids_of(callbacks) == [src.ids["callback due"]]  # the undelivered callback is still due
        prompts = await Outbox(app.store, "telegram").due()
        assert src.ids["pending with callback"] in ids_of(prompts)
        assert (await app.store.setting(BUTTON_KEY, lambda: "a new key")) == "bXkgYnV0dG9uIGtleQ"

        decision = await s.decide(src.ids["pending"], True, BOB, "approved after the move")
        assert decision.changed and decision.request.status is Status.APPROVED
        await s.decide(src.ids["pending with callback"], True, ALICE)
        new = await s.request_approval(NewRequest("email", "filed after the move"), AGENT)
        assert new.status is Status.PENDING
        covered = await s.request_approval(NewRequest("Bash", "npm test", details={"command": "npm test"}), AGENT)
        assert (covered.status, covered.decided_by) == (Status.APPROVED, f"grant:{src.live_grant}")
        not_covered = await s.request_approval(NewRequest("Bash", "pytest", details={"command": "pytest a.py"}), AGENT)
        assert not_covered.status is Status.PENDING  # its grant was revoked before the move
        [grant] = await s.list_grants()
        assert (grant.id, grant.uses) == (src.live_grant, 2)
        callbacks = await Outbox(app.store, "callback").due()
        assert ids_of(callbacks) == [src.ids["callback due"], src.ids["pending with callback"]]
        assert [e.event for e in await app.store.audit(request_id=src.ids["pending"])] == [
            "created",
            "refused",
            "approved",
        ]
    # pending → approved (1), pending with callback → approved (1), filed (1), covered (2), not covered (1)
    grown, _ = verified(src.config, monkeypatch, target)
    assert grown == events + 6

    # A second copy into the now non-empty target is refused and changes nothing.
    before = pg_rows(target)
    again = migrate_store("--from", str(src.db), "--to", target)
    assert again.returncode != 0
    assert "already holds a store" in again.stderr and "nothing was copied" in again.stderr
    assert "--replace" in again.stderr
    assert pg_rows(target) == before


@pytest.mark.anyio
async def test_replace_empties_a_used_target_and_copies_again(
    tmp_path: Path, target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = await build_source(tmp_path)
    assert migrate_store("--from", str(src.db), "--to", target).returncode == 0
    monkeypatch.setenv("SIGNOFF_DATABASE_URL", target)
    async with open_app(load_config(src.config), background=False) as app:  # the target moves on
        await app.service.decide(src.ids["pending"], False, BOB, "changed my mind")
        await app.service.request_approval(NewRequest("email", "only on the target"), AGENT)
    monkeypatch.delenv("SIGNOFF_DATABASE_URL")

    done = migrate_store("--from", str(src.db), "--to", target, "--replace")
    assert done.returncode == 0, done.stderr
    assert_same(sqlite_rows(src.db), pg_rows(target))
    assert verified(src.config, monkeypatch, target) == verified(src.config, monkeypatch)


async def _new_store(path: Path) -> None:
    async with Store.open(path):
        pass


def test_migrate_store_names_what_is_wrong_with_its_arguments(tmp_path: Path, server: str) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()  # SQLite, but no signoff store
    db = tmp_path / "signoff.db"
    asyncio.run(_new_store(db))  # a store: only the arguments are wrong

    def fails(*args: str) -> str:
        done = migrate_store(*args)
        assert done.returncode != 0, done.stdout
        assert PASSWORD not in done.stdout + done.stderr
        return done.stderr

    assert "--to 'signoff.db': give a PostgreSQL URL" in fails("--from", str(db), "--to", "signoff.db")
    missing = tmp_path / "nowhere.db"
    assert f"--from {missing}: no such SQLite file" in fails("--from", str(missing), "--to", server)
    closed = f"postgresql://signoff:{PASSWORD}@127.0.0.1:9/signoff"  # port 9 (discard): nothing listens
    said = fails("--from", str(db), "--to", closed)
    assert "cannot connect to PostgreSQL at signoff@127.0.0.1:9/signoff" in said and "refused" in said
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("not a database\n" * 100, encoding="utf-8")
    assert "file is not a database" in fails("--from", str(not_sqlite), "--to", server)
    assert "not a signoff store (it has no migrations table)" in fails("--from", str(empty), "--to", server)
    assert "required: --to" in fails("--from", str(db))


def test_migrate_applies_the_migrations_and_then_says_up_to_date(
    tmp_path: Path, target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [name for name, _ in MIGRATIONS]
    config = tmp_path / "signoff.toml"
    config.write_text(CONFIG.replace('path = "signoff.db"', 'path = "fresh.db"'), encoding="utf-8")

    def migrate() -> str:
        done = cli("migrate", config=config)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert migrate() == f"database {tmp_path / 'fresh.db'}: applied {', '.join(names)}"
    assert migrate() == f"database {tmp_path / 'fresh.db'}: up to date"

    monkeypatch.setenv("SIGNOFF_DATABASE_URL", target)
    label = load_config(config).database_label
    assert label.startswith("PostgreSQL ") and "@" in label
    assert migrate() == f"database {label}: applied {', '.join(names)}"
    assert count(target, "SELECT count(*) FROM migrations") == len(names)
    assert migrate() == f"database {label}: up to date"

    # A store a newer signoff migrated is refused, not misread.
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("INSERT INTO migrations (name, applied_at) VALUES ('9999_from_the_future', 0)")
    done = cli("migrate", config=config)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "upgraded by a newer signoff (migration 9999_from_the_future" in done.stderr
