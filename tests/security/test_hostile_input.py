"""Item 4 (intake) and item 10 of the trust issue: what an agent writes is refused at intake
when it carries control characters, and hostile input gets a short, clear answer — never a
1 MB echo, an internal error, a traceback or silence.

Everything runs through the real interfaces: the MCP client in memory, ``signoff mcp`` and
``signoff serve`` as processes (raw JSON-RPC where the SDK's own client cannot send the
message), and the ``signoff`` command line.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx2
import pytest
from anyio.streams.text import TextReceiveStream
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import Implementation

from signoff.adapters.console import console_actor
from signoff.server.app import App
from signoff.server.errors import RequestError
from signoff.server.intake import NewRequest
from signoff.server.mcp_tools import build_mcp
from signoff.server.models import Actor
from signoff.server.sanitize import has_control

from ..conftest import SIGNOFF, subprocess_env
from ..procs import cli, serve

pytestmark = pytest.mark.anyio

ESC = "\x1b[2J\x1b[HApproved by alice"  # clears the screen and fakes a decision
HOSTILE = [ESC, "a\u202eevil", "c1\x9bcsi", "del\x7f", "bell\x07", "nul\x00"]
MARK = "Q7zK"  # marks the padding of oversized fields, so an echo is easy to spot
BIG = MARK * 250_000  # 1 MB
MAX_ERROR = 500


@pytest.fixture
async def client(app: App) -> AsyncIterator[Client]:
    mcp = build_mcp(app.service, transport="memory")
    async with Client(mcp, client_info=Implementation(name="claude-code", version="2.1")) as c:
        yield c


def short_and_clean(text: str, *, echo: str = MARK) -> None:
    """A tool error an agent can afford to read: short, no echo of the input, nothing raw."""
    assert len(text) <= MAX_ERROR, (len(text), text[:200])
    assert echo not in text, text[:300]
    assert has_control(text) is None, text  # the agent's own text is never sent back raw


async def tool_error(client: Client, tool: str, args: dict[str, Any]) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error, result.structured_content
    text = result.content[0].text  # type: ignore[union-attr]
    assert isinstance(text, str)
    return text


# --- item 4: control characters are refused at intake, in every agent-supplied field --------


def _request(**overrides: Any) -> dict[str, Any]:
    return {"action": "deploy", "summary": "Ship v2", **overrides}


@pytest.mark.parametrize("bad", HOSTILE)
@pytest.mark.parametrize(
    ("field", "args"),
    [
        ("metadata", lambda bad: _request(metadata={f"env{bad}": "prod"})),
        ("metadata", lambda bad: _request(metadata={"env": f"prod{bad}"})),
        ("summary", lambda bad: _request(summary=f"Ship v2 {bad}")),
        ("action", lambda bad: _request(action=f"deploy{bad}")),
        ("idempotency_key", lambda bad: _request(idempotency_key=f"k-{bad}")),
        ("agent_name", lambda bad: _request(agent_name=f"bot{bad}")),
        ("route", lambda bad: _request(route=f"default{bad}")),
        ("callback_url", lambda bad: _request(callback_url=f"https://hooks.example.com/{bad}")),
        ("details", lambda bad: _request(details={"content": f"line one\n\tline two\r\n{bad}"})),
        ("details", lambda bad: _request(details={f"key{bad}": 1})),
        ("details", lambda bad: _request(details=[[[{"deep": [f"x{bad}"]}]]])),
    ],
)  # fmt: skip
async def test_control_characters_are_refused_at_intake(
    app: App, client: Client, field: str, args: Callable[[str], dict[str, Any]], bad: str
) -> None:
    text = await tool_error(client, "request_approval", args(bad))
    assert field in text, text
    short_and_clean(text, echo=bad)
    assert await app.store.list_requests() == []


async def test_details_keep_tabs_and_line_breaks(client: Client) -> None:
    """A file's content legitimately holds tabs and CRLF line breaks: they are accepted."""
    result = await client.call_tool(
        "request_approval", _request(details={"content": "a\tb\r\nc\n"}, summary="two\nlines")
    )
    assert not result.is_error, result.content


async def test_permission_prompt_denies_a_write_carrying_an_escape(app: App, client: Client) -> None:
    """The documented choice: a tool call whose input carries ESC (or C1, bidi) is denied with a
    reason, never shown to an approver."""
    with anyio.fail_after(10):  # filed, it would wait for a human
        result = await client.call_tool(
            "permission_prompt", {"tool_name": "Write", "input": {"file_path": "/tmp/x", "content": f"hi{ESC}"}}
        )
    answer = json.loads(result.content[0].text)  # type: ignore[union-attr]
    assert answer["behavior"] == "deny" and "details" in answer["message"]
    short_and_clean(answer["message"], echo=ESC)
    assert await app.store.list_requests() == []


@pytest.mark.parametrize("bad", HOSTILE)
async def test_cancel_reason_with_control_characters_is_refused(app: App, client: Client, bad: str) -> None:
    rid = (await client.call_tool("request_approval", _request())).structured_content["request_id"]  # type: ignore[index]
    text = await tool_error(client, "cancel_request", {"request_id": rid, "reason": f"done {bad}"})
    assert "reason" in text
    short_and_clean(text, echo=bad)
    assert not (await app.service.get(rid)).status.final


@pytest.mark.parametrize("bad", HOSTILE)
async def test_reject_reason_with_control_characters_is_refused(app: App, bad: str) -> None:
    req = await app.service.request_approval(_new(), Actor("agent", "claude-code", "mcp"))
    with pytest.raises(RequestError, match="reason") as caught:
        await app.service.decide(req.id, False, console_actor(), f"no {bad}")
    assert bad not in str(caught.value)
    assert not (await app.service.get(req.id)).status.final
    # A multi-line reason from a human is fine.
    decided = await app.service.decide(req.id, False, Actor("human", "alice", "telegram"), "not today\nsee #42")
    assert decided.request.reason == "not today\nsee #42"


def _new() -> NewRequest:
    return NewRequest("deploy", "Ship v2")


async def test_reject_with_an_escape_in_the_reason_from_the_command_line(app: App, config_path: Path) -> None:
    rid = (await app.service.request_approval(_new(), Actor("agent", "claude-code", "mcp"))).id
    res = cli("reject", rid, "--reason", f"no {ESC}", config=config_path)
    assert res.returncode == 1 and "reason" in res.stderr and "Traceback" not in res.stderr
    assert has_control(res.stdout + res.stderr, allow_newlines=True) is None


# --- item 10: a tool error is at most 500 characters and never echoes the input -------------


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("request_approval", _request(summary=BIG)),  # the SDK's own argument validation
        ("request_approval", _request(action=BIG)),
        ("request_approval", _request(metadata={BIG: "prod"})),  # our intake
        ("request_approval", _request(metadata={BIG: [1, 2]})),  # the SDK's validation, the key in its path
        ("request_approval", _request(metadata={"env": BIG})),
        ("request_approval", _request(route=BIG)),
        ("request_approval", _request(details=BIG)),
        ("request_approval", _request(idempotency_key=BIG)),
        ("request_approval", _request(callback_url=BIG)),
        ("request_approval", _request(agent_name=BIG)),
        ("request_approval", _request(timeout_seconds=BIG)),
        ("check_decision", {"request_id": BIG}),
        ("check_decision", {"request_id": "req_1", "wait_seconds": BIG}),
        ("cancel_request", {"request_id": BIG}),
        ("cancel_request", {"request_id": "req_1", "reason": BIG}),
        (BIG, {}),  # an unknown tool's name
    ],
)  # fmt: skip
async def test_a_tool_error_is_short_and_never_echoes_the_input(
    client: Client, tool: str, args: dict[str, Any]
) -> None:
    with anyio.fail_after(30):
        text = await tool_error(client, tool, args)
    short_and_clean(text)


@pytest.mark.parametrize(
    "args",
    [{"tool_name": "Bash", "input": {"command": BIG}}, {"tool_name": BIG, "input": {}}, {"tool_name": "Bash", "input": BIG},
     {"tool_name": "Bash", "input": {}, "tool_use_id": BIG}],
)  # fmt: skip
async def test_a_long_permission_prompt_input_is_a_short_deny(client: Client, args: dict[str, Any]) -> None:
    """Claude Code's permission tool answers every bad call with a deny (item 5), as short."""
    with anyio.fail_after(10):
        result = await client.call_tool("permission_prompt", args)
    text = result.content[0].text  # type: ignore[union-attr]
    if not result.is_error:
        answer = json.loads(text)
        assert answer["behavior"] == "deny"
        text = answer["message"]
    short_and_clean(text)


async def test_validation_errors_name_the_field_and_the_fix(client: Client) -> None:
    text = await tool_error(client, "request_approval", _request(summary="s" * 5000))
    assert "summary" in text and "at most 1000 characters" in text
    text = await tool_error(client, "request_approval", _request(metadata={"env": [1]}))
    assert "metadata.env" in text
    text = await tool_error(client, "request_approval", _request(metadata={f"{MARK}{ESC}": [1]}))
    assert "metadata" in text
    short_and_clean(text, echo=ESC)


# --- item 10: numbers beyond float range --------------------------------------------------


@pytest.mark.parametrize("number", [10**400, -(10**400), 2**53 + 1, -(2**53) - 1, 1e300])
async def test_a_huge_metadata_number_is_a_clear_request_error(app: App, client: Client, number: Any) -> None:
    text = await tool_error(client, "request_approval", _request(metadata={"amount": number}))
    assert "metadata" in text and "amount" in text and "string" in text, text
    short_and_clean(text, echo="0" * 40)
    assert await app.store.list_requests() == []


# --- item 10: a deeply nested config is a ConfigError, not a traceback ---------------------


@pytest.mark.parametrize(
    "text",
    [
        "a = " + "[" * 5000 + "]" * 5000,
        "a = " + "{ b = " * 5000 + "1" + " }" * 5000,
        "[server]\nport = " + "[" * 600 + "]" * 600,
        '[[routes]]\nname = "x"\nmatch = { metadata = ' + "{ b = " * 100 + "1" + " }" * 100 + " }",
    ],
)
async def test_a_deeply_nested_config_gets_a_message(write_config: Callable[..., Path], text: str) -> None:
    path = write_config(text, "deep.toml")
    res = cli("check-config", config=path)
    assert res.returncode == 1, res.stdout
    assert "Traceback" not in res.stderr and "RecursionError" not in res.stderr
    assert "deep.toml" in res.stderr and "nested" in res.stderr, res.stderr
    assert len(res.stderr) < 1000


# --- item 10: JSON-RPC nested deeper than the SDK parses gets a prompt error ---------------

DEPTH = 300  # the SDK's JSON parser stops at about 200 levels


def deep_call(request_id: int, depth: int = DEPTH) -> str:
    deep = "[" * depth + "]" * depth
    return (
        '{"jsonrpc": "2.0", "id": ' + str(request_id) + ', "method": "tools/call", "params": {"name": '
        '"request_approval", "arguments": {"action": "deploy", "summary": "s", "details": ' + deep + "}}}"
    )


INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
              "capabilities": {}, "clientInfo": {"name": "raw-client", "version": "1"}}}  # fmt: skip


class RawStdio:
    """``signoff mcp`` spoken to line by line, as an MCP client does."""

    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        assert process.stdout is not None and process.stdin is not None
        self.stdout = TextReceiveStream(process.stdout)
        self.buffer = ""

    async def send(self, message: str | dict[str, Any]) -> None:
        line = message if isinstance(message, str) else json.dumps(message)
        assert self.process.stdin is not None
        await self.process.stdin.send((line + "\n").encode())

    async def receive(self) -> dict[str, Any]:
        while "\n" not in self.buffer:
            self.buffer += await self.stdout.receive()
        line, self.buffer = self.buffer.split("\n", 1)
        message = json.loads(line)
        assert isinstance(message, dict)
        return message

    async def answer_to(self, request_id: int | str) -> dict[str, Any]:
        while (message := await self.receive()).get("id") != request_id:
            pass
        return message


@asynccontextmanager
async def raw_stdio(config: Path) -> AsyncIterator[RawStdio]:
    process = await anyio.open_process([SIGNOFF, "mcp", "--config", str(config)], env=subprocess_env(),
                                       stderr=subprocess.DEVNULL)  # fmt: skip
    async with process:
        raw = RawStdio(process)
        with anyio.fail_after(30):
            await raw.send(INITIALIZE)
            assert "result" in await raw.answer_to(1)
            await raw.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        try:
            yield raw
        finally:
            assert process.stdin is not None
            await process.stdin.aclose()
            with anyio.fail_after(20):
                await process.wait()


async def test_deep_json_rpc_over_stdio_gets_a_prompt_error(config_path: Path) -> None:
    async with raw_stdio(config_path) as raw:
        for depth, rid in ((DEPTH, 7), (100_000, 8)):
            await raw.send(deep_call(rid, depth))
            with anyio.fail_after(10):  # an agent would otherwise wait for its own timeout
                answer = await raw.answer_to(rid)
            assert answer["error"]["code"] == -32700, answer
            assert "nested" in answer["error"]["message"] and len(answer["error"]["message"]) <= MAX_ERROR
        # Unreadable lines without an id are not answered (nothing to answer to), and the
        # server carries on.
        await raw.send('{"jsonrpc": "2.0", "method": "x", "params": ' + "[" * DEPTH + "]" * DEPTH + "}")
        await raw.send('{"jsonrpc": "2.0", "id": "str-id", "method": "tools/list", "params": {"x": ' + "{}" * 3)
        with anyio.fail_after(10):
            garbled = await raw.answer_to("str-id")
        assert garbled["error"]["code"] == -32700
        await raw.send({"jsonrpc": "2.0", "id": 9, "method": "tools/list"})
        with anyio.fail_after(10):
            assert "result" in await raw.answer_to(9)


async def test_a_huge_metadata_number_over_stdio_is_a_clear_tool_error(config_path: Path) -> None:
    async with raw_stdio(config_path) as raw:
        await raw.send('{"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "request_approval", '
                       '"arguments": {"action": "deploy", "summary": "s", "metadata": {"amount": 1' + "0" * 400 + "}}}}")  # fmt: skip
        with anyio.fail_after(10):
            answer = await raw.answer_to(5)
    result = answer["result"]
    assert result["isError"] is True
    text = result["content"][0]["text"]
    assert "metadata" in text and "amount" in text and "string" in text
    short_and_clean(text, echo="0" * 40)


async def test_deep_json_rpc_over_http_gets_a_prompt_error_with_its_id(config_path: Path) -> None:
    async with serve(config_path) as server:
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        async with httpx2.AsyncClient(timeout=10) as h:
            init = await h.post(server.url, headers=headers, json=INITIALIZE)
            assert init.status_code == 200
            if session := init.headers.get("mcp-session-id"):
                headers["mcp-session-id"] = session
            headers["mcp-protocol-version"] = "2025-11-25"
            for depth in (DEPTH, 100_000):
                with anyio.fail_after(10):
                    answer = await h.post(server.url, headers=headers, content=deep_call(7, depth))
                assert answer.headers["content-type"].startswith("application/json")
                body = answer.json()
                assert body["id"] == 7 and body["error"]["code"] == -32700, body
                assert "nested" in body["error"]["message"] and len(body["error"]["message"]) <= MAX_ERROR


# --- item 10: the Authorization scheme is case-insensitive (RFC 7235) ----------------------


async def test_bearer_scheme_is_case_insensitive(config_path: Path) -> None:
    token = "s3cret-token-for-tests"
    async with serve(config_path, SIGNOFF_HTTP_TOKEN=token) as server:
        for scheme in ("bearer", "BEARER", "Bearer", "bEaReR"):
            async with (
                httpx2.AsyncClient(headers={"Authorization": f"{scheme} {token}"}, timeout=30) as http,
                Client(streamable_http_client(server.url, http_client=http)) as client,  # type: ignore[arg-type]
            ):
                tools = await client.list_tools()
            assert {t.name for t in tools.tools} >= {"request_approval"}
        async with httpx2.AsyncClient(timeout=10) as h:
            for value in (f"bearer {token}x", f"bearer {token[:-1]}", "bearer", f"Basic {token}", token,
                          f"bearer  {token} extra", f"{token} bearer"):  # fmt: skip
                denied = await h.post(server.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                                      headers={"Authorization": value})  # fmt: skip
                assert denied.status_code == 401, value
