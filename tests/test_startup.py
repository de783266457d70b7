"""Start-up cost: the hook's fast path and the compiled-config cache behind it.

Times are for ``make bench`` (figures h and i); these tests check what makes them possible —
what the fast path imports, that it files exactly what the full path files, and that the cache
never serves a config other than the file's current one.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from signoff.server import config_cache
from signoff.server.app import open_app
from signoff.server.intake import NewRequest
from signoff.server.models import Actor
from signoff.server.queries import REQUEST_COLUMNS
from signoff.server.quick import file_at_once

from .conftest import subprocess_env

CONFIG = """
[store]
path = "signoff.db"

[approvers.alice]
telegram_user_id = 111

[[routes]]
name = "reads"
match = { action = ["Read", "Glob"], metadata = { tool = { ne = "Bash" } } }
auto = "{reads}"

[[routes]]
name = "default"
approvers = ["alice"]
"""
HEAVY = {"telegram", "mcp", "httpx", "pydantic", "aiosqlite", "asyncio", "uvicorn", "starlette", "anyio"}
# Runs the real command line in-process and reports which heavy packages it imported.
PROBE = textwrap.dedent(f"""
    import json, sys
    from signoff.server.cli import main
    code = main(sys.argv[1:])
    print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set({sorted(HEAVY)!r}))), file=sys.stderr)
    sys.exit(code)
""")


def write(path: Path, reads: str = "approve") -> Path:
    path.write_text(CONFIG.replace("{reads}", reads), encoding="utf-8")
    return path


def hook(config: Path, tool: str, use_id: str) -> tuple[dict[str, Any], list[str]]:
    """Run ``signoff hook`` on one tool call: (its answer, the heavy packages it imported)."""
    event = {"hook_event_name": "PreToolUse", "tool_name": tool, "tool_input": {"file_path": "x"},
             "tool_use_id": use_id, "session_id": "s", "cwd": "/tmp"}  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", PROBE, "hook", "--config", str(config), "--timeout", "1",
                           "--fallback", "deny"], input=json.dumps(event), capture_output=True, text=True,
                          env=subprocess_env(), timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["hookSpecificOutput"], json.loads(proc.stderr.strip().splitlines()[-1])


def test_a_call_decided_at_once_imports_nothing_heavy(tmp_path: Path) -> None:
    config = write(tmp_path / "signoff.toml")
    first, imported = hook(config, "Read", "t1")  # validates in full and caches the compiled config
    assert first["permissionDecision"] == "allow" and "pydantic" in imported
    second, imported = hook(config, "Read", "t2")
    assert second["permissionDecision"] == "allow" and second["permissionDecisionReason"] == first[
        "permissionDecisionReason"]  # fmt: skip
    assert imported == [], f"the fast path imported {imported}"


def test_editing_the_config_is_seen_at_once(tmp_path: Path) -> None:
    config = write(tmp_path / "signoff.toml")
    assert hook(config, "Read", "t1")[0]["permissionDecision"] == "allow"
    assert hook(config, "Read", "t2")[0]["permissionDecision"] == "allow"  # from the cache
    before = config.stat()
    # Same size and the same mtime: only the content tells the new file from the old one.
    config.write_text(CONFIG.replace("{reads}", "reject") + " ", encoding="utf-8")
    os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (config.stat().st_size, config.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    answer, imported = hook(config, "Read", "t3")
    assert answer["permissionDecision"] == "deny" and "pydantic" in imported  # validated anew
    assert hook(config, "Read", "t4") == (answer, [])  # and from the cache again


def _cached(config: Path) -> Path:
    load = config_cache.load_and_save(config)
    assert load.routes[0].auto == "approve"
    path = config_cache.cache_file(config)
    assert path.is_file() and path.stat().st_mode & 0o777 == 0o600
    assert config_cache.lookup(config) is not None
    return path


def test_a_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    config = write(tmp_path / "signoff.toml")
    path = _cached(config)
    for garbage in (b"", b"{", b"[]", b"\xff\xfe", b'{"format": "signoff-config-cache-1"}', b"9" * 100_000):
        path.write_bytes(garbage)
        assert config_cache.lookup(config) is None


def test_a_tampered_cache_is_ignored(tmp_path: Path) -> None:
    config = write(tmp_path / "signoff.toml", reads="reject")
    config_cache.load_and_save(config)
    path = config_cache.cache_file(config)
    outer = json.loads(path.read_bytes())
    # Flip the route to approve at once, keeping the key: the checksum no longer fits.
    outer["config"] = outer["config"].replace('"auto": "reject"', '"auto": "approve"')
    path.write_text(json.dumps(outer))
    os.chmod(path, 0o600)
    assert config_cache.lookup(config) is None
    # A well-formed payload of the wrong types is refused too.
    payload = json.loads(json.loads(path.read_text())["config"])
    payload["routes"][0]["match"]["action"] = 5
    outer["config"] = json.dumps(payload)
    outer["checksum"] = config_cache._checksum(outer["config"])
    path.write_text(json.dumps(outer))
    assert config_cache.lookup(config) is None


def test_a_cache_others_could_write_is_ignored(tmp_path: Path) -> None:
    config = write(tmp_path / "signoff.toml")
    path = _cached(config)
    os.chmod(path, 0o644)
    assert config_cache.lookup(config) is None
    os.chmod(path, 0o600)
    assert config_cache.lookup(config) is not None
    os.chmod(path.parent, 0o777)
    assert config_cache.lookup(config) is None
    os.chmod(path.parent, 0o700)
    target = tmp_path / "elsewhere.json"
    target.write_bytes(path.read_bytes())
    os.chmod(target, 0o600)
    path.unlink()
    path.symlink_to(target)
    assert config_cache.lookup(config) is None


def test_another_file_or_state_folder_is_a_miss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path / "signoff.toml")
    _cached(config)
    other = write(tmp_path / "other.toml")
    assert config_cache.lookup(other) is None
    monkeypatch.setenv("SIGNOFF_STATE_DIR", str(tmp_path / "another-state"))
    assert config_cache.lookup(config) is None


def _row(db: Path, request_id: str) -> dict[str, Any]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        row = dict(conn.execute(f"SELECT {REQUEST_COLUMNS} FROM requests WHERE id = ?", (request_id,)).fetchone())
        events = [dict(e) for e in conn.execute(
            "SELECT event, actor_kind, actor, channel, route_snapshot, content_hash, action_digest, data "
            "FROM audit WHERE request_id = ? ORDER BY seq", (request_id,))]  # fmt: skip
    finally:
        conn.close()
    for key in ("id", "created_at", "expires_at", "decided_at", "idempotency_key"):
        row.pop(key)
    return {"row": row, "events": events}


@pytest.mark.anyio
@pytest.mark.parametrize("outcome", ["approve", "reject"])
async def test_the_fast_path_files_what_the_service_files(tmp_path: Path, outcome: str) -> None:
    config_path = write(tmp_path / "signoff.toml", reads=outcome)
    config = config_cache.load_and_save(config_path)
    requester = Actor("agent", "claude-code", "hook")

    def new(key: str) -> NewRequest:
        return NewRequest("Read", "Read x", details={"file_path": "x"}, metadata={"tool": "Read"},
                          idempotency_key=key, cwd="/tmp")  # fmt: skip

    async with open_app(config, background=False) as app:  # creates and migrates the database
        slow = await app.service.request_approval(new("tool_use:a"), requester, session="cc_s")
    fast = file_at_once(str(config_path), new("tool_use:b"), None, "claude-code", "cc_s")
    assert fast is not None and fast.status is slow.status
    assert _row(config.db_path, fast.id) == _row(config.db_path, slow.id)
    assert file_at_once(str(config_path), new("tool_use:b"), None, "claude-code", "cc_s") is None  # a retry
    # A call the first matching route leaves to a human is never filed here.
    asks = NewRequest("Bash", "Run ls", details={"command": "ls"}, metadata={"tool": "Bash"}, cwd="/tmp")
    assert file_at_once(str(config_path), asks, None, "claude-code", None) is None
