"""ask_human: a question a human answers, never a permission — through the real MCP client,
the service, the console and a real SQLite file (its CHECKs included)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import Implementation

from signoff.server import db
from signoff.server.app import App, open_app
from signoff.server.config import load_config
from signoff.server.errors import NotAllowedError, RequestError
from signoff.server.mcp_tools import build_mcp
from signoff.server.models import Actor, Status
from signoff.server.store import Store

from .conftest import SIGNOFF, subprocess_env
from .stores import CHECK_FAILED, integrity_errors

pytestmark = pytest.mark.anyio

CONFIG = """
[store]
path = "signoff.db"

[approvers.alice]
telegram_user_id = 111

[approvers.bob]
telegram_user_id = 222

[approvers.carol]
telegram_user_id = 333

[[routes]]
name = "billing-questions"
match = { action = "ask_human.billing" }
approvers = ["carol"]

[[routes]]
name = "no-questions"
match = { action = "ask_human.auto" }
auto = "approve"

[[routes]]
name = "questions"
match = { action = "ask_human*" }
approvers = ["bob"]
timeout = "10m"
on_timeout = "approve"
grant_options = ["30m"]

[[routes]]
name = "default"
approvers = ["alice", "bob"]
"""

ALICE, BOB, CAROL = (Actor("human", n, "web") for n in ("alice", "bob", "carol"))


@pytest.fixture
async def app(write_config: Callable[[str], Path]) -> AsyncIterator[App]:
    async with open_app(load_config(write_config(CONFIG)), background=False) as app:
        yield app


@pytest.fixture
async def client(app: App) -> AsyncIterator[Client]:
    async with Client(build_mcp(app.service, transport="memory"),
                      client_info=Implementation(name="claude-code", version="2.1")) as c:  # fmt: skip
        yield c


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def error(client: Client, tool: str, **args: Any) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error, result.structured_content
    return str(result.content[0].text)  # type: ignore[union-attr]


async def test_a_question_is_answered_and_the_agent_reads_the_answer(app: App, client: Client) -> None:
    out = await call(client, "ask_human", question="Which region should the new bucket live in?",
                     options=["eu-west-1", "us-east-1"], details={"bucket": "logs"}, agent_name="infra-bot")  # fmt: skip
    assert out["status"] == "pending" and out["route"] == "questions" and out["approvers"] == ["bob"]
    assert out["answer"] is None and out["answered_by"] is None
    stored = await app.service.get(out["request_id"])
    assert stored.is_question and stored.action == "ask_human" and stored.options == ["eu-west-1", "us-east-1"]
    assert stored.on_timeout == "reject"  # the route says approve; silence never answers a question

    decision = await app.service.answer(out["request_id"], "  eu-west-1, and tag it team=infra ", BOB)
    assert decision.changed
    final = await call(client, "check_decision", request_id=out["request_id"])
    assert final["status"] == "answered"
    assert final["answer"] == "eu-west-1, and tag it team=infra" and final["answered_by"] == "bob"
    assert final["reason"] is None and final["edited_details"] is None

    events = await app.service.store.audit(request_id=out["request_id"])
    assert [e.event for e in events] == ["created", "answered"]
    assert events[-1].data == {"answer": "eu-west-1, and tag it team=infra"} and events[-1].actor == "bob"


async def test_check_decision_waits_for_the_answer(app: App, client: Client) -> None:
    rid = (await call(client, "ask_human", question="Ship on Friday?"))["request_id"]

    async def answer_soon() -> None:
        await app.service.answer(rid, "No, Monday", BOB)

    waiting = asyncio.create_task(call(client, "check_decision", request_id=rid, wait_seconds=30))
    await asyncio.sleep(0)  # let the wait register first (the answer may also land before: both are fine)
    await answer_soon()
    async with asyncio.timeout(10):
        out = await waiting
    assert out["status"] == "answered" and out["answer"] == "No, Monday"


async def test_a_topic_routes_the_question_to_other_people(app: App, client: Client) -> None:
    out = await call(client, "ask_human", question="Refund order 7 in full?", topic="billing")
    assert out["route"] == "billing-questions" and out["approvers"] == ["carol"]
    assert (await app.service.get(out["request_id"])).action == "ask_human.billing"
    with pytest.raises(NotAllowedError, match="may not answer"):
        await app.service.answer(out["request_id"], "yes", BOB)  # bob answers other questions, not these
    assert (await app.service.answer(out["request_id"], "yes", CAROL)).changed
    for bad in ("", "bad topic", ".hidden", "x" * 65, "a/b"):
        assert "topic" in await error(client, "ask_human", question="?", topic=bad)


async def test_a_question_is_never_an_approval_and_an_approval_is_never_answered(app: App, client: Client) -> None:
    q = (await call(client, "ask_human", question="Go ahead with the migration?"))["request_id"]
    with pytest.raises(NotAllowedError, match="question"):
        await app.service.decide(q, True, BOB)
    with pytest.raises(NotAllowedError, match="question"):
        await app.service.decide(q, False, BOB, "no")
    with pytest.raises(NotAllowedError, match="question"):
        await app.service.approve_edited(q, {"x": 1}, BOB)
    with pytest.raises(NotAllowedError, match="question"):
        await app.service.approve_and_grant(q, "30m", BOB)  # the route offers grants; a question never makes one
    assert (await app.service.get(q)).status is Status.PENDING
    assert await app.service.list_grants(everything=True) == []

    r = (await call(client, "request_approval", action="deploy", summary="Ship v2"))["request_id"]
    with pytest.raises(NotAllowedError, match="approval"):
        await app.service.answer(r, "yes", ALICE)
    assert (await app.service.get(r)).status is Status.PENDING

    # An agent cannot file an approval that looks like a question, nor offer options on one.
    assert "ask_human" in await error(client, "request_approval", action="ask_human", summary="Ship it?")
    assert "ask_human" in await error(client, "request_approval", action="ask_human.billing", summary="x")


async def test_the_table_refuses_to_mix_the_two_kinds(app: App, client: Client) -> None:
    """The CHECKs hold even for a statement that bypasses the service."""
    q = (await call(client, "ask_human", question="Which one?"))["request_id"]
    r = (await call(client, "request_approval", action="deploy", summary="Ship v2"))["request_id"]
    for sql, rid in (
        ("UPDATE requests SET status = 'approved', decided_at = 1, decided_by = 'x' WHERE id = ?", q),
        ("UPDATE requests SET status = 'rejected', decided_at = 1, decided_by = 'x' WHERE id = ?", q),
        ("UPDATE requests SET status = 'answered', answer = 'yes', decided_at = 1, decided_by = 'x' WHERE id = ?", r),
        (
            "UPDATE requests SET status = 'answered', decided_at = 1, decided_by = 'x' WHERE id = ?",
            q,
        ),  # an answer without its text
        ("UPDATE requests SET options = '[\"a\"]' WHERE id = ?", r),
        ("UPDATE requests SET kind = 'question', status = 'approved' WHERE id = ?", r),
    ):
        with pytest.raises(integrity_errors(), match=CHECK_FAILED):
            await app.service.store.write(sql, (rid,))
    assert (await app.service.get(q)).status is Status.PENDING
    assert (await app.service.get(r)).status is Status.PENDING


async def test_bad_questions_are_tool_errors_and_file_nothing(app: App, client: Client) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"question": " "}, "'question' must not be empty"),
        ({"question": "\u200b\u2060"}, "shows nothing"),
        ({"question": "?", "options": [" prod "]}, "spaces"),
        ({"question": "?", "options": ["Yes", "Yes\u200b"]}, "invisible"),
        ({"question": "?", "options": ["ｙｅｓ", "yes"]}, "look the same"),
        ({"question": "?", "options": ["no", "n\u043e"]}, "mixes Latin, Cyrillic"),
        ({"question": "?", "options": ["rm -rf", "rm \u2010rf"]}, "look the same"),
        ({"question": "?", "options": ["x", "x\u0301"]}, "look the same"),
        ({"question": "?", "options": []}, "'options'"),
        ({"question": "?", "options": [str(n) for n in range(11)]}, ""),
        ({"question": "?", "options": ["yes", "Yes"]}, "twice"),
        ({"question": "?", "options": ["yes", ""]}, "option 2"),
        ({"question": "?", "options": ["a\nb"]}, "option 1"),
        ({"question": "?", "options": ["\x1b[2Jyes"]}, "control characters"),
        ({"question": "?", "options": ["x" * 76]}, ""),
        ({"question": "\u202eevil"}, "control characters"),
    ]
    for args, message in cases:
        assert message in await error(client, "ask_human", **args)
    assert await app.service.store.list_requests() == []


async def test_first_answer_wins(app: App, client: Client) -> None:
    rid = (await call(client, "ask_human", question="Which one?", topic="team"))["request_id"]
    snapshot = json.loads(
        (await app.service.store.read("SELECT route_snapshot FROM requests WHERE id = ?", (rid,)))[0][0]
    )
    snapshot["approvers"] = ["alice", "bob"]
    await app.service.store.write("UPDATE requests SET route_snapshot = ?, approvers = '[\"alice\", \"bob\"]' WHERE id = ?",
                                  (json.dumps(snapshot), rid))  # fmt: skip
    decisions = await asyncio.gather(app.service.answer(rid, "A", ALICE), app.service.answer(rid, "B", BOB))
    assert sorted(d.changed for d in decisions) == [False, True]
    req = await app.service.get(rid)
    winner = next(d for d in decisions if d.changed).request
    assert req.answer == winner.answer and req.decided_by == winner.decided_by
    assert [e.event for e in await app.service.store.audit(request_id=rid)] == ["created", "answered"]


async def test_an_unanswered_question_expires_and_a_late_answer_changes_nothing(app: App, client: Client) -> None:
    rid = (await call(client, "ask_human", question="Still there?"))["request_id"]
    later = time.time() + 3600
    app.service.clock = lambda: later
    await app.service.sweep()
    out = await call(client, "check_decision", request_id=rid)
    assert out["status"] == "expired" and out["answer"] is None  # on_timeout = "approve" did not apply
    late = await app.service.answer(rid, "yes", BOB)
    assert not late.changed and late.request.status is Status.EXPIRED and late.request.answer is None


async def test_cancel_idempotency_and_auto_routes(app: App, client: Client) -> None:
    first = await call(client, "ask_human", question="Which?", options=["a", "b"], idempotency_key="k1")
    again = await call(client, "ask_human", question="Which?", options=["a", "b"], idempotency_key="k1")
    assert again["request_id"] == first["request_id"]
    assert "idempotency_key" in await error(client, "ask_human", question="Which?", options=["a", "c"],
                                            idempotency_key="k1")  # fmt: skip
    cancelled = await call(client, "cancel_request", request_id=first["request_id"], reason="found it myself")
    assert cancelled["status"] == "cancelled"
    assert not (await app.service.answer(first["request_id"], "a", BOB)).changed

    message = await error(client, "ask_human", question="Anyone?", topic="auto")
    assert "decides automatically" in message and "no-questions" in message
    with pytest.raises(RequestError, match="only a human"):
        await app.service.answer(cancelled["request_id"], "a", Actor("agent", "claude-code", "mcp"))


async def test_console_answers_by_text_or_option(app: App, client: Client, tmp_path: Path) -> None:
    rid = (await call(client, "ask_human", question="Which region?", options=["eu-west-1", "us-east-1"]))["request_id"]
    config = tmp_path / "signoff.toml"

    def signoff(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SIGNOFF, *args, "--config", str(config)], env=subprocess_env(),
                              capture_output=True, text=True, check=False, timeout=60)  # fmt: skip

    shown = signoff("show", rid)
    assert "Question" in shown.stdout and "2. us-east-1" in shown.stdout
    assert signoff("answer", rid).returncode == 2  # neither text nor --option
    assert signoff("answer", rid, "x", "--option", "1").returncode == 2
    out_of_range = signoff("answer", rid, "--option", "3", "--as", "bob")
    assert out_of_range.returncode == 2 and "offers 2 options" in out_of_range.stderr
    assert signoff("approve", rid, "--as", "bob").returncode == 1  # a question is answered, not approved
    done = signoff("answer", rid, "--option", "2", "--as", "bob", "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["status"] == "answered" and body["answer"] == "us-east-1" and body["answered_by"] == "bob"
    again = signoff("answer", rid, "eu-west-1", "--as", "bob")
    assert again.returncode == 3 and "already answered" in again.stdout
    assert "Answer    us-east-1" in signoff("show", rid).stdout
    # Whoever runs the console is trusted as any approver, for answers as for approvals.
    other = (await call(client, "ask_human", question="Ship it?", topic="billing"))["request_id"]
    mine = signoff("answer", other, "yes, after lunch")
    assert mine.returncode == 0 and "answered by" in mine.stdout, mine.stderr


@pytest.mark.sqlite_only
async def test_migrating_a_0009_store_keeps_every_row_and_reference(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """0010 rebuilds ``requests`` (and ``reason_prompts``), which other tables refer to: rows,
    references, triggers and the audit chain all survive."""
    path = tmp_path / "old.db"
    with monkeypatch.context() as m:
        m.setattr(db, "MIGRATIONS", [x for x in db.MIGRATIONS if x[0] < "0010"])
        async with Store.open(path) as store:
            now = time.time()
            for rid, status in (("req_old1", "pending"), ("req_old2", "approved")):
                await store.write(
                    "INSERT INTO requests (id, action, summary, metadata, route, route_snapshot, approvers, "
                    "requested_by, requested_via, content_hash, status, on_timeout, created_at, expires_at, "
                    "decided_at, decided_by, decided_kind, decided_via) VALUES (?, 'deploy', 's', '{}', 'default', "
                    "'{\"name\": \"default\", \"approvers\": [\"alice\"], \"telegram\": [{\"approver\": \"alice\", "
                    "\"user_id\": 111, \"chat_id\": 111}]}', '[\"alice\"]', 'agent', 'mcp', 'h', ?, 'reject', ?, ?, "
                    "?, ?, ?, ?)",
                    (rid, status, now, now + 3600, *((now, "alice", "human", "console") if status != "pending"
                                                     else (None, None, None, None))),
                )  # fmt: skip
            await store.write("INSERT INTO reason_prompts (channel, address, message, request_id, user_id, "
                              "created_at, kind) VALUES ('telegram', '111', '5', 'req_old1', '111', ?, 'note')", (now,))  # fmt: skip
    before = sqlite3.connect(path)
    counts = {t: before.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
              for t in ("requests", "audit", "outbox", "reason_prompts")}  # fmt: skip
    before.close()
    assert counts["requests"] == 2 and counts["audit"] == 3 and counts["outbox"] == 1

    async with Store.open(path) as store:  # every migration now
        after = {t: len(await store.read(f"SELECT 1 FROM {t}")) for t in counts}
        assert after == counts
        assert await store.read("PRAGMA foreign_key_check") == []
        assert (await store.conn.execute_fetchall("PRAGMA foreign_keys"))[0][0] == 1  # back on after migrating
        old = await store.get("req_old1")
        assert old is not None and old.kind == "approval" and old.options is None
        decision = await store.decide("req_old1", Status.REJECTED, ALICE, time.time(), "no")
        assert decision is not None and decision.changed
        events = await store.audit(request_id="req_old1")
        assert [e.event for e in events] == ["created", "rejected"]  # the rebuilt trigger writes it
        outcomes = await store.read("SELECT 1 FROM outbox WHERE request_id = 'req_old1' AND kind = 'outcome'")
        assert len(outcomes) == 1
    config = tmp_path / "old.toml"
    config.write_text('[store]\npath = "old.db"\n')
    verify = subprocess.run([SIGNOFF, "audit", "verify", "--config", str(config)], env=subprocess_env(),
                            capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
