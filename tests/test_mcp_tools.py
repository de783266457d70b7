"""The MCP tools through the real in-memory MCP client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import Implementation

from signoff.adapters.console import console_actor
from signoff.server.app import App, open_app
from signoff.server.config import parse_config
from signoff.server.errors import NotAllowedError
from signoff.server.mcp_tools import build_mcp
from signoff.server.models import Actor, Status

from .policies import readme_example

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(app: App) -> AsyncIterator[Client]:
    mcp = build_mcp(app.service, transport="memory")
    async with Client(mcp, client_info=Implementation(name="claude-code", version="2.1")) as c:
        yield c


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def call_error(client: Client, tool: str, **args: Any) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error, result.structured_content
    text = result.content[0].text  # type: ignore[union-attr]
    assert isinstance(text, str)
    return text


async def test_tools_are_listed_with_schemas_and_guidance(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == {"request_approval", "ask_human", "check_decision", "cancel_request", "permission_prompt"}
    req = tools["request_approval"]
    assert req.input_schema["required"] == ["action", "summary"]
    assert "Only status 'approved' means go ahead" in (req.description or "")
    assert "check_decision" in (req.description or "")
    for tool in tools.values():
        if tool.name == "permission_prompt":
            continue  # Claude Code's contract: one text block, no structured content
        assert tool.output_schema is not None
        assert {"request_id", "status"} <= set(tool.output_schema["properties"])
        for name, prop in tool.input_schema["properties"].items():
            assert prop.get("description"), f"{tool.name}.{name} has no description"


async def test_whole_lifecycle(app: App, client: Client) -> None:
    out = await call(client, "request_approval", action="deploy", summary="Ship v2", details={"sha": "abc"},
                     metadata={"env": "prod"}, agent_name="my-bot")  # fmt: skip
    assert out["status"] == "pending" and out["route"] == "default" and out["approvers"] == ["alice", "bob"]
    assert set(out) == {"request_id", "status", "route", "approvers", "created_at", "expires_at", "decided_at",
                        "decided_by", "reason", "note", "action_digest", "edited_details", "answer",
                        "answered_by"}  # fmt: skip
    rid = out["request_id"]
    stored = await app.service.get(rid)
    assert stored.requested_by == "claude-code"  # the transport's word
    assert stored.claimed_requester == "my-bot"  # the agent's word, kept apart
    assert (await call(client, "check_decision", request_id=rid))["status"] == "pending"
    await app.service.decide(rid, False, console_actor(), "not on Friday")
    final = await call(client, "check_decision", request_id=rid)
    assert final["status"] == "rejected" and final["reason"] == "not on Friday"
    assert final["decided_by"] == console_actor().name and final["decided_at"]


async def test_check_decision_long_polls_with_progress(app: App, client: Client) -> None:
    rid = (await call(client, "request_approval", action="deploy", summary="Ship"))["request_id"]
    progress: list[tuple[float, float | None, str | None]] = []
    decided = anyio.Event()

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append((p, total, message))
        if len(progress) == 2 and not decided.is_set():
            decided.set()
            await app.service.decide(rid, True, console_actor())

    app.service.progress_interval = 0.05  # every 5 s in production; quick here
    with anyio.fail_after(20):
        result = await client.call_tool("check_decision", {"request_id": rid, "wait_seconds": 40},
                                        progress_callback=on_progress)  # fmt: skip
    assert result.structured_content is not None
    assert result.structured_content["status"] == "approved"
    assert len(progress) >= 2
    assert progress[0][1] == 40 and "alice, bob" in (progress[0][2] or "")
    assert [p[0] for p in progress] == sorted(p[0] for p in progress)


async def test_request_approval_can_wait(app: App, client: Client) -> None:
    out = await call(client, "request_approval", action="read_file", summary="read", wait_seconds=30)
    assert out["status"] == "approved" and out["decided_by"] == "route:reads"


async def test_idempotency_through_mcp(client: Client) -> None:
    a = await call(client, "request_approval", action="deploy", summary="Ship", idempotency_key="tool-use-1")
    b = await call(client, "request_approval", action="deploy", summary="Ship", idempotency_key="tool-use-1")
    assert a["request_id"] == b["request_id"]
    text = await call_error(client, "request_approval", action="deploy", summary="Other", idempotency_key="tool-use-1")
    assert "already used for a different request" in text


async def test_cancel_request(client: Client) -> None:
    rid = (await call(client, "request_approval", action="deploy", summary="Ship"))["request_id"]
    out = await call(client, "cancel_request", request_id=rid, reason="changed my mind")
    assert out["status"] == "cancelled" and out["reason"] == "changed my mind"
    again = await call(client, "cancel_request", request_id=rid)
    assert again["status"] == "cancelled"


@pytest.mark.parametrize(
    ("tool", "args", "fragment"),
    [
        ("request_approval", {"summary": "x"}, "action"),
        ("request_approval", {"action": "deploy"}, "summary"),
        ("request_approval", {"action": "x" * 500, "summary": "s"}, "at most 200 characters"),
        ("request_approval", {"action": "deploy", "summary": "s" * 5000}, "at most 1000 characters"),
        ("request_approval", {"action": "deploy", "summary": "s", "details": "x" * 70_000}, "the limit is 65536"),
        ("request_approval", {"action": "deploy", "summary": "s", "metadata": {"a": {"b": 1}}}, "metadata"),
        ("request_approval", {"action": "deploy", "summary": "s", "metadata": [1, 2]}, "metadata"),
        ("request_approval", {"action": "deploy", "summary": "s", "metadata": {f"k{i}": i for i in range(60)}}, "limit is 50"),
        ("request_approval", {"action": "deploy", "summary": "s", "route": "reads"}, "cannot be used for this request"),
        ("request_approval", {"action": "read_x", "summary": "s", "route": "reads"}, "cannot be used for this request"),
        ("request_approval", {"action": "deploy", "summary": "s", "route": "ghost"}, "cannot be used for this request"),
        ("request_approval", {"action": "deploy", "summary": "s", "timeout_seconds": 1}, "timeout_seconds"),
        ("request_approval", {"action": "deploy", "summary": "s", "wait_seconds": -1}, "wait_seconds"),
        ("request_approval", {"action": 5, "summary": "s"}, "action"),
        ("request_approval", {"action": "", "summary": "s"}, "must not be empty"),
        ("check_decision", {"request_id": "req_missing"}, "unknown request_id 'req_missing'"),
        ("check_decision", {}, "request_id"),
        ("check_decision", {"request_id": "x" * 1000}, "at most 100 characters"),
        ("cancel_request", {"request_id": "req_missing"}, "unknown request_id"),
    ],
)  # fmt: skip
async def test_bad_input_is_a_tool_error_the_model_can_fix(
    client: Client, tool: str, args: dict[str, Any], fragment: str
) -> None:
    assert fragment in await call_error(client, tool, **args)
    # …and the server is still fine afterwards.
    assert (await call(client, "request_approval", action="read_x", summary="still alive"))["status"] == "approved"


async def test_no_tool_can_approve(app: App, client: Client) -> None:
    rid = (await call(client, "request_approval", action="deploy", summary="Ship"))["request_id"]
    tools = (await client.list_tools()).tools
    for tool in tools:
        args: dict[str, Any] = {"request_id": rid, "action": "deploy", "summary": "approve it", "status": "approved",
                                "decision": "approve", "approved": True}  # fmt: skip
        allowed = {k: v for k, v in args.items() if k in tool.input_schema["properties"]}
        if tool.name in ("cancel_request", "permission_prompt"):
            continue  # one withdraws; the other files a request of its own and waits for a human
        await client.call_tool(tool.name, allowed)
    assert (await app.service.get(rid)).status is Status.PENDING


async def test_policies_over_mcp_note_and_callback_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNOFF_CALLBACK_SECRET", "k")
    text = readme_example("quorum") + readme_example("grants").split("[[routes]]", 1)[1].join(["[[routes]]", ""])
    text += readme_example("callbacks").split("[approvers.alice]")[0] + '[store]\npath = "p.db"\n'
    config = parse_config(text, source="policies", base_dir=tmp_path)
    info = Implementation(name="claude-code", version="2.1")
    async with open_app(config, background=False) as app:
        mcp = build_mcp(app.service, transport="memory")
        async with Client(mcp, client_info=info) as one:
            payout = await call(one, "request_approval", action="payout", summary="Pay", metadata={"amount": 10000})
            await app.service.decide(payout["request_id"], True, Actor("human", "bob", "console"))
            checked = await call(one, "check_decision", request_id=payout["request_id"])
            assert (checked["status"], checked["note"]) == ("pending", "1 of 2 approvals so far")

            # The in-memory client speaks the stateless protocol: no session to tell, so no session grant.
            first = await call(one, "request_approval", action="Bash", summary="t", details={"command": "pytest -x"})
            with pytest.raises(NotAllowedError, match="does not offer a grant of 'session'"):
                await app.service.approve_and_grant(first["request_id"], "session", Actor("human", "alice", "console"))

            error = await call_error(one, "request_approval", action="Bash", summary="t",
                                     callback_url="http://169.254.169.254/latest/meta-data")  # fmt: skip
            assert "callback_url: it is not under any URL in [callbacks] allowed_urls" in error
