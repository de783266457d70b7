"""Always on, and visibly so: who holds the bot, the outbox backlog, pending requests — in
``signoff status``, ``signoff doctor`` and ``/healthz``, from real processes and a real database."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import anyio
import httpx
import pytest

from signoff.server import health
from signoff.server.app import open_app
from signoff.server.config import load_config
from signoff.server.models import Actor
from signoff.server.service import NewRequest

from .conftest import SIGNOFF, subprocess_env
from .fake_telegram import FakeTelegram
from .procs import cli, serve
from .test_telegram import ALICE, telegram_config

pytestmark = pytest.mark.anyio
AGENT = Actor("agent", "claude-code", "mcp")


def status(config: Path) -> tuple[int, dict[str, object]]:
    out = cli("status", "--json", config=config)
    return out.returncode, json.loads(out.stdout)


def test_a_fresh_install_is_healthy(config_path: Path) -> None:
    assert status(config_path) == (
        0,
        {"bot": None, "slack": None, "pending": 0, "outbox": {"backlog": 0, "oldest_prompt_age_s": None},
         "callbacks": {"retrying": 0, "given_up_24h": 0}, "problems": []},
    )  # fmt: skip
    text = cli("status", config=config_path)
    assert text.returncode == 0 and "no process has held the Telegram bot yet" in text.stdout


async def file_without_bot(config_path: Path) -> str:
    async with open_app(load_config(config_path), background=False) as app:
        return (await app.service.request_approval(NewRequest("deploy", "ship it"), AGENT)).id


async def test_status_names_the_holder_and_its_absence(fake: FakeTelegram, tmp_path: Path) -> None:
    config_path = tmp_path / "signoff.toml"
    config_path.write_text(telegram_config(fake.api_base_url))
    db = load_config(config_path).db_path
    async with serve(config_path, SIGNOFF_TELEGRAM_TOKEN=fake.token) as served:
        await served.wait_for_log("this process runs the bot now")
        code, state = status(config_path)
        assert code == 0, state
        bot = state["bot"]
        assert isinstance(bot, dict)
        assert (bot["host"], bot["pid"], bot["live"]) == (socket.gethostname(), served.process.pid, True)
        assert 0 < time.time() - float(bot["since"]) < 60
        base = served.url.removesuffix("/mcp")
        async with httpx.AsyncClient() as client:
            healthz = (await client.get(f"{base}/healthz")).json()
        assert healthz["status"] == "ok" and healthz["bot"]["pid"] == served.process.pid
        me = {"host": socket.gethostname(), "pid": served.process.pid, "store": "sqlite", "notifications": None,
              "holds_bot": True, "holds_slack": False}  # fmt: skip
        assert healthz["instance"] == me
        assert healthz["problems"] == [] and healthz["pending"] == 0
        rid = await file_without_bot(config_path)  # the holder delivers it
        await fake.wait_for(lambda: any(rid in m.text for m in fake.chat(ALICE)) and undelivered(db) == set())
        served.process.send_signal(signal.SIGKILL)
        await served.process.wait()
    # Dead without letting go: while the lease runs, status still trusts it; after, it says so.
    stranded = await file_without_bot(config_path)
    with sqlite3.connect(db) as conn:
        expires = conn.execute("SELECT expires_at FROM leases WHERE name = 'telegram-bot'").fetchone()[0]
        later = health.read(conn, now=expires + 90)
    assert not later.bot_live and later.pending == 2
    problems = later.problems()
    assert any(f"(pid {served.process.pid}) let it go 1 min ago" in p for p in problems), problems
    assert any("the oldest undelivered prompt was filed 1 min ago" in p for p in problems), problems
    assert later.oldest_prompt_due is not None and later.oldest_prompt_due <= time.time()
    assert undelivered(db) == {stranded}  # nobody sent it


def undelivered(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT request_id FROM outbox WHERE kind = 'prompt' AND done_at IS NULL").fetchall()
    return {r[0] for r in rows}


async def test_a_clean_stop_lets_go_and_status_says_so_at_once(fake: FakeTelegram, tmp_path: Path) -> None:
    config_path = tmp_path / "signoff.toml"
    config_path.write_text(telegram_config(fake.api_base_url))
    async with serve(config_path, SIGNOFF_TELEGRAM_TOKEN=fake.token) as served:
        await served.wait_for_log("this process runs the bot now")
        pid = served.process.pid
    code, state = status(config_path)
    bot = state["bot"]
    assert code == 1 and isinstance(bot, dict) and (bot["pid"], bot["live"]) == (pid, False)
    problems = state["problems"]
    assert isinstance(problems, list) and "no signoff process holds the Telegram bot" in problems[0]
    assert "signoff serve" in problems[0]
    # In a thread, so that the fake Bot API (on this event loop) answers doctor's calls meanwhile.
    doctor = await anyio.to_thread.run_sync(lambda: cli("doctor", config=config_path))
    assert f"NOT HELD (last: {socket.gethostname()} pid {pid}" in doctor.stdout
    assert "problem   no signoff process holds the Telegram bot" in doctor.stdout
    assert doctor.returncode == 1


def test_a_hook_says_when_no_process_holds_the_bot(tmp_path: Path) -> None:
    """Its prompt cannot reach a phone: the log says so at once, the fallback reason at the end."""
    config_path = tmp_path / "signoff.toml"
    config_path.write_text(
        '[store]\npath = "s.db"\n[approvers.alice]\ntelegram_user_id = 111\n'
        '[[routes]]\nname = "changes"\nmatch = { action = "Bash" }\napprovers = ["alice"]\n'
        '[[routes]]\nname = "console"\nmatch = { action = "Edit" }\napprovers = ["console"]\n'
        "[approvers.console]\n"
    )

    def hook(tool: str, tool_input: dict[str, str]) -> tuple[str, str]:
        event = {"session_id": "s", "hook_event_name": "PreToolUse", "tool_name": tool, "tool_input": tool_input,
                 "tool_use_id": f"t-{tool}", "cwd": str(tmp_path)}  # fmt: skip
        out = subprocess.run([SIGNOFF, "hook", "--config", str(config_path), "--timeout", "1"], input=json.dumps(event),
                             capture_output=True, text=True, env=subprocess_env(), timeout=60)  # fmt: skip
        assert out.returncode == 0, out.stderr
        reason = json.loads(out.stdout)["hookSpecificOutput"]["permissionDecisionReason"]
        return reason, out.stderr

    reason, stderr = hook("Bash", {"command": "make deploy"})
    assert "No decision within 1 s. No signoff process holds the Telegram bot" in reason
    assert "run `signoff serve`" in reason
    assert "WARNING" in stderr and "No signoff process holds the Telegram bot" in stderr
    # The withdrawn request's prompt is still queued, but nobody has to see it: not "stuck".
    with sqlite3.connect(load_config(config_path).db_path) as conn:
        later = health.read(conn, now=time.time() + 600)
    assert later.outbox_backlog >= 1 and later.oldest_prompt_due is None and later.pending == 0
    reason, stderr = hook("Edit", {"file_path": "x", "old_string": "a", "new_string": "b"})
    assert "Telegram" not in reason + stderr  # console-only approvers: no phone was ever involved
