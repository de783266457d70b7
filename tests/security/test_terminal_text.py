"""Item 4 of the trust issue, at the terminal: what an agent wrote cannot take over the screen
of the human who reads it with ``signoff pending``, ``show``, ``audit`` or ``grants``.

Intake now refuses control characters, so the hostile text here is put into the database the
way older versions (or the transport's own names) could: requests filed through the service
under a hostile requester name, and fields of stored rows rewritten in SQL (audit events come
from the database's own triggers). Every command runs as a real ``signoff`` process.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from signoff.server.app import App
from signoff.server.intake import NewRequest
from signoff.server.models import Actor
from signoff.server.sanitize import has_control

from ..procs import cli

pytestmark = pytest.mark.anyio

# Clears the screen, homes the cursor, sets the window title, reverses the text, a C1 CSI, DEL.
EVIL = "\x1b[2J\x1b[H\x1b]0;pwned\x07Approved by alice\u202eecilA\x9b31m\x7f\u2066x\u2069"
FAKE_LINES = "ok\nStatus    approved\nDecided   now by alice via telegram"


def clean(out: str) -> None:
    assert has_control(out, allow_newlines=True) is None, repr(out)
    assert "\r" not in out


@pytest.fixture
async def hostile(app: App) -> dict[str, str]:
    """Requests, audit events and a grant whose agent-supplied text is hostile."""
    svc = app.service
    # A requester (the MCP client's name over stdio) with escapes in it, through the service.
    named = await svc.request_approval(
        NewRequest("deploy", "from a hostile client"), Actor("agent", f"cc{EVIL}", "mcp")
    )
    shown = await svc.request_approval(
        NewRequest("deploy", "x", details={"a": 1}), Actor("agent", "claude-code", "mcp")
    )
    cancelled = await svc.request_approval(NewRequest("deploy", "y"), Actor("agent", "claude-code", "mcp"))
    now = time.time()
    async with app.store.transaction() as conn:
        await conn.execute(
            "UPDATE requests SET action = ?, summary = ?, claimed_requester = ?, client_name = ?, metadata = ?, "
            "details = ?, cwd = ?, reason = NULL WHERE id = ?",
            (f"deploy{EVIL}", f"{EVIL}{FAKE_LINES}", f"bot{EVIL}", f"client{EVIL}",
             json.dumps({f"k{EVIL}": f"v{EVIL}"}), json.dumps({f"key{EVIL}": [f"val{EVIL}"]}, ensure_ascii=False),
             f"/tmp/{EVIL}", shown.id),
        )  # fmt: skip
        # An agent's cancellation with a hostile reason, under a hostile name: the triggers audit it.
        await conn.execute(
            "UPDATE requests SET status = 'cancelled', decided_at = ?, decided_by = ?, decided_kind = 'agent', "
            "decided_via = ?, reason = ? WHERE id = ?",
            (now, f"alice{EVIL}", f"mcp{EVIL}", f"{FAKE_LINES}{EVIL}", cancelled.id),
        )
        await conn.execute(
            "INSERT INTO grants (id, route, action, requested_by, session, argument, pattern, from_request, created_at, "
            "created_by, expires_at, cwd) VALUES ('grt_evil', 'default', ?, ?, NULL, 'command', ?, ?, ?, ?, ?, ?)",
            (f"Bash{EVIL}", f"cc{EVIL}", f"npm test{EVIL}", shown.id, now, f"alice{EVIL}", now + 3600, f"/src/{EVIL}"),
        )
    return {"named": named.id, "shown": shown.id, "cancelled": cancelled.id}


async def test_pending_escapes_agent_text(hostile: dict[str, str], config_path: Path) -> None:
    res = cli("pending", config=config_path)
    assert res.returncode == 0, res.stderr
    clean(res.stdout)
    assert "\\x1b[2J" in res.stdout and hostile["shown"] in res.stdout and hostile["named"] in res.stdout
    as_json = cli("pending", "--json", config=config_path)
    clean(as_json.stdout)
    rows = {r["request_id"]: r for r in json.loads(as_json.stdout)}
    assert rows[hostile["shown"]]["action"] == f"deploy{EVIL}"  # JSON escapes, and the value round-trips


async def test_show_escapes_agent_text_and_fakes_no_lines(hostile: dict[str, str], config_path: Path) -> None:
    for rid in hostile.values():
        res = cli("show", rid, config=config_path)
        assert res.returncode == 0, res.stderr
        clean(res.stdout)
        lines = res.stdout.splitlines()
        assert len([ln for ln in lines if ln.startswith("Status")]) == 1, res.stdout
        assert not [ln for ln in lines if ln.startswith("Decided   now by alice")], res.stdout
    shown = cli("show", hostile["shown"], config=config_path).stdout
    for part in ("deploy\\x1b[2J", "bot\\x1b", "k\\x1b", "v\\u001b", "key\\u001b", "\\u{202e}", "\\x9b", "\\x7f"):
        assert part in shown, (part, shown)
    cancelled = cli("show", hostile["cancelled"], config=config_path).stdout
    assert "alice\\x1b[2J" in cancelled and "Reason    ok" in cancelled


async def test_show_json_escapes_what_json_leaves_raw(hostile: dict[str, str], config_path: Path) -> None:
    """json.dumps(ensure_ascii=False) escapes C0 only: DEL, C1 and bidi must be escaped too."""
    res = cli("show", hostile["shown"], "--json", config=config_path)
    clean(res.stdout)
    assert json.loads(res.stdout)["summary"] == f"{EVIL}{FAKE_LINES}"


@pytest.mark.parametrize("fmt", ["table", "jsonl", "csv"])
async def test_audit_escapes_agent_text(hostile: dict[str, str], config_path: Path, fmt: str) -> None:
    res = cli("audit", "--format", fmt, config=config_path)
    assert res.returncode == 0, res.stderr
    clean(res.stdout)
    if fmt == "jsonl":
        events = [json.loads(line) for line in res.stdout.splitlines()]
        assert {"actor": f"cc{EVIL}"}.items() <= events[0].items()
        assert any(e["data"] == {"reason": f"{FAKE_LINES}{EVIL}"} for e in events)
    else:
        assert "cc\\x1b[2J" in res.stdout and "alice\\x1b[2J" in res.stdout


async def test_grants_escape_agent_text(hostile: dict[str, str], config_path: Path) -> None:
    res = cli("grants", "--all", config=config_path)
    assert res.returncode == 0, res.stderr
    clean(res.stdout)
    assert "grt_evil" in res.stdout and "\\x1b" in res.stdout
    as_json = cli("grants", "--all", "--json", config=config_path)
    clean(as_json.stdout)
    assert json.loads(as_json.stdout)[0]["created_by"] == f"alice{EVIL}"


async def test_decide_messages_escape_agent_text(hostile: dict[str, str], config_path: Path) -> None:
    res = cli("approve", hostile["cancelled"], config=config_path)
    assert res.returncode == 3, res.stderr
    clean(res.stdout + res.stderr)
    assert "already cancelled by alice\\x1b[2J" in res.stdout
