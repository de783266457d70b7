from __future__ import annotations

import asyncio
import sqlite3
import stat
from pathlib import Path

import pytest

from signoff.server import db as dbmod
from signoff.server.app import App, open_app
from signoff.server.config import Config
from signoff.server.errors import StoreError
from signoff.server.models import Actor, Status
from signoff.server.service import NewRequest
from signoff.server.store import Store

from .stores import raw_sql

pytestmark = pytest.mark.anyio
AGENT = Actor("agent", "claude-code", "mcp")


async def test_database_is_private_and_migrated_once(tmp_path: Path) -> None:
    path = tmp_path / "state" / "deep" / "signoff.db"
    async with Store.open(path):
        pass
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    async with Store.open(path) as store:  # reopening applies nothing new
        assert await dbmod.migrate(store.conn) == []
    conn = sqlite3.connect(path)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM migrations ORDER BY name")]
        assert names == [name for name, _ in dbmod.MIGRATIONS]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        ddl = conn.execute("SELECT sql FROM sqlite_master WHERE name IN ('requests', 'audit')").fetchall()
        assert all(row[0].rstrip().endswith("STRICT") for row in ddl)
    finally:
        conn.close()


async def test_processes_migrating_at_once_agree(tmp_path: Path) -> None:
    path = tmp_path / "race.db"

    async def open_and_close() -> None:
        async with Store.open(path):
            pass

    await asyncio.gather(*(open_and_close() for _ in range(5)))
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT count(*) FROM migrations").fetchone()[0] == len(dbmod.MIGRATIONS)
    finally:
        conn.close()


async def test_audit_log_is_append_only(app: App) -> None:
    req = await app.service.request_approval(NewRequest("deploy", "x"), AGENT)
    with raw_sql(app.config) as raw:
        for sql in ("UPDATE audit SET actor = 'mallory'", "DELETE FROM audit"):
            with pytest.raises(raw.errors, match="append-only"):
                raw.execute(sql)
    assert [e.actor for e in await app.store.audit(request_id=req.id)] == ["claude-code"]


async def test_a_final_status_never_changes_and_is_audited_once(app: App) -> None:
    req = await app.service.request_approval(NewRequest("deploy", "x"), AGENT)
    human = Actor("human", "alice", "console")
    results = await asyncio.gather(*(app.service.decide(req.id, i % 2 == 0, human) for i in range(10)))
    assert sum(r.changed for r in results) == 1
    final = {r.request.status for r in results}
    assert len(final) == 1 and final <= {Status.APPROVED, Status.REJECTED}
    events = await app.store.audit(request_id=req.id)
    assert events[0].event == "created" and len(events) == 2


async def test_unopenable_database_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot open the database"):
        async with Store.open(blocker / "signoff.db"):
            pass


@pytest.mark.sqlite_only
async def test_not_a_database_is_a_clear_error(tmp_path: Path, config: Config) -> None:
    config.db_path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a database"):
        async with open_app(config):
            pass


def test_every_migration_after_the_baseline_comes_as_a_pair() -> None:
    """PostgreSQL's baseline stands for SQLite's 0001…0012; every later migration exists for both."""
    from signoff.server.schema import MIGRATIONS, PG_MIGRATIONS

    sqlite_later = [name for name, _ in MIGRATIONS if name > "0012_request_search"]
    pg_names = [name for name, _ in PG_MIGRATIONS]
    assert pg_names[0] == "0012_baseline" and "0012_request_search" in [name for name, _ in MIGRATIONS]
    assert pg_names[1:] == sqlite_later
