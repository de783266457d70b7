"""``signoff proxy`` as a real subprocess over stdio, with a real upstream MCP server behind it
(tests/upstream_server.py), driven by the MCP SDK's own client."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult, ElicitResult, Implementation, PromptReference

from signoff.adapters.console import console_actor
from signoff.server.app import App, open_app
from signoff.server.config import load_config, parse_config
from signoff.server.errors import ConfigError
from signoff.server.models import Status

from .conftest import ROOT, SIGNOFF, subprocess_env
from .procs import cli

pytestmark = pytest.mark.anyio

UPSTREAM = [sys.executable, str(ROOT / "tests" / "upstream_server.py")]
CONFIG = """
[store]
path = "signoff.db"
[approvers.alice]
telegram_user_id = 111
[[routes]]
name = "reads"
match = { action = ["mcp__notes__read_*", "mcp__notes__crash", "mcp__notes__slow", "mcp__notes__ask"] }
auto = "approve"
[[routes]]
name = "default"
approvers = ["alice"]
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("hello")
    return tmp_path / "notes"


@pytest.fixture
def cfg(write_config: Callable[[str], Path]) -> Path:
    return write_config(CONFIG)


def proxy_client(cfg: Path, *command: str, name: str = "notes", **kw: Any) -> Client:
    args = ["proxy", "--name", name, "--config", str(cfg), *(["--", *command] if command else [])]
    params = StdioServerParameters(command=SIGNOFF, args=args, env=subprocess_env(), cwd=cfg.parent)
    return Client(params, client_info=Implementation(name="agent-x", version="1"), **kw)


@asynccontextmanager
async def opened(cfg: Path) -> AsyncIterator[App]:
    """The same database, from the test's side (its watcher sees the proxy's commits)."""
    async with open_app(load_config(cfg)) as app:
        yield app


class Progress:
    """A progress callback that remembers the request id the proxy announces."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.filed = anyio.Event()
        self.request_id = ""

    async def __call__(self, value: float, total: float | None, message: str | None) -> None:
        self.messages.append(message or "")
        found = re.search(r"req_[0-9a-f]+", message or "")
        if found and not self.filed.is_set():
            self.request_id = found.group()
            self.filed.set()


def text(result: CallToolResult) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


async def test_everything_but_calls_passes_through_unchanged(cfg: Path, folder: Path) -> None:
    with anyio.fail_after(30):
        async with (
            Client(StdioServerParameters(command=UPSTREAM[0], args=[*UPSTREAM[1:], str(folder)])) as direct,
            proxy_client(cfg, *UPSTREAM, str(folder)) as proxied,
        ):
            for c in (direct, proxied):
                assert c.server_info is not None and c.server_info.name == "notes"
            assert proxied.instructions == direct.instructions
            tools = [t.model_dump() for t in (await proxied.list_tools()).tools]
            assert tools == [t.model_dump() for t in (await direct.list_tools()).tools]
            by_name = {t["name"]: t for t in tools}
            assert by_name["write_note"]["annotations"]["destructive_hint"] is True
            for method in ("list_resources", "list_resource_templates", "list_prompts"):
                mine, theirs = await getattr(proxied, method)(), await getattr(direct, method)()
                assert mine.model_dump(exclude={"meta"}) == theirs.model_dump(exclude={"meta"}), method
            read = await proxied.read_resource("note://a.txt")
            assert read.contents[0].text == "hello"  # type: ignore[union-attr]
            prompt = await proxied.get_prompt("review", {"topic": "cats"})
            assert "notes about cats" in prompt.messages[0].content.text  # type: ignore[union-attr]
            done = await proxied.complete(
                PromptReference(type="ref/prompt", name="review"), {"name": "topic", "value": "ap"}
            )
            assert done.completion.values == ["apples", "apricots"]


async def test_a_read_on_an_auto_route_passes_at_once(cfg: Path, folder: Path) -> None:
    with anyio.fail_after(30):
        async with proxy_client(cfg, *UPSTREAM, str(folder)) as c:
            result = await c.call_tool("read_note", {"name": "a.txt"})
    assert not result.is_error and result.structured_content == {"result": "hello"}
    async with opened(cfg) as app:
        (req,) = await app.store.list_requests()
    assert req.action == "mcp__notes__read_note" and req.details == {"name": "a.txt"}
    assert req.status is Status.APPROVED and req.decided_by == "route:reads"
    assert req.metadata == {"server": "notes", "tool": "read_note", "readOnlyHint": True, "destructiveHint": None}
    assert req.requested_by == "agent-x"


async def test_a_write_waits_for_approval_at_the_console_then_happens(cfg: Path, folder: Path) -> None:
    progress = Progress()
    results: list[CallToolResult] = []
    with anyio.fail_after(30):
        async with proxy_client(cfg, *UPSTREAM, str(folder)) as c, anyio.create_task_group() as tg:

            async def write() -> None:
                results.append(await c.call_tool("write_note", {"name": "b.txt", "text": "new"},
                                                 progress_callback=progress))  # fmt: skip

            tg.start_soon(write)
            await progress.filed.wait()
            assert not (folder / "b.txt").exists()  # not before a human says so
            approved = await anyio.to_thread.run_sync(lambda: cli("approve", progress.request_id, config=cfg))
            assert approved.returncode == 0, approved.stderr
    assert not results[0].is_error, results[0].content
    assert (folder / "b.txt").read_text() == "new"
    assert "waiting for alice" in progress.messages[0]
    async with opened(cfg) as app:
        req = await app.service.get(progress.request_id)
    assert req.metadata["destructiveHint"] is True and req.metadata["readOnlyHint"] is False


async def test_a_rejected_write_does_not_happen_and_the_client_learns_who_and_why(cfg: Path, folder: Path) -> None:
    progress = Progress()
    results: list[CallToolResult] = []
    with anyio.fail_after(30):
        async with (
            proxy_client(cfg, *UPSTREAM, str(folder)) as c,
            opened(cfg) as app,
            anyio.create_task_group() as tg,
        ):

            async def write() -> None:
                results.append(await c.call_tool("write_note", {"name": "b.txt", "text": "new"},
                                                 progress_callback=progress))  # fmt: skip

            tg.start_soon(write)
            await progress.filed.wait()
            await app.service.decide(progress.request_id, False, console_actor(), "not on a Friday")
    assert results[0].is_error
    assert f"Rejected by {console_actor().name}: not on a Friday" in text(results[0])
    assert "write_note was not made" in text(results[0])
    assert not (folder / "b.txt").exists()


async def test_a_cancelled_call_withdraws_its_request(cfg: Path, folder: Path) -> None:
    progress = Progress()
    with anyio.fail_after(30):
        async with proxy_client(cfg, *UPSTREAM, str(folder)) as c, opened(cfg) as app:
            async with anyio.create_task_group() as tg:

                async def write() -> None:
                    await c.call_tool("write_note", {"name": "b.txt", "text": "new"}, progress_callback=progress)

                tg.start_soon(write)
                await progress.filed.wait()
                tg.cancel_scope.cancel()  # the client gives up: it sends notifications/cancelled
            req = await app.service.wait(progress.request_id, 20)
    assert req.status is Status.CANCELLED and req.reason == "the tool call was cancelled"
    assert not (folder / "b.txt").exists()


async def test_progress_of_a_forwarded_call_reaches_the_client(cfg: Path, folder: Path) -> None:
    halfway = anyio.Event()

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        if message == "halfway" and (value, total) == (1, 2):
            halfway.set()

    with anyio.fail_after(30):
        async with proxy_client(cfg, *UPSTREAM, str(folder)) as c, anyio.create_task_group() as tg:
            tg.start_soon(lambda: c.call_tool("slow", {}, progress_callback=on_progress))
            await halfway.wait()
            tg.cancel_scope.cancel()
            assert (folder / "slow.started").exists()


async def test_an_upstream_that_dies_mid_call_is_a_clear_tool_error(cfg: Path, folder: Path) -> None:
    with anyio.fail_after(20):
        async with proxy_client(cfg, *UPSTREAM, str(folder)) as c:
            died = await c.call_tool("crash", {})
            after = await c.call_tool("read_note", {"name": "a.txt"})
            listed = await c.call_tool("no_such_tool", {})
    assert died.is_error and "the upstream server 'notes' exited during the call to crash" in text(died)
    assert after.is_error and "has exited; the call was not made" in text(after)
    assert listed.is_error


async def test_elicitation_from_the_upstream_reaches_the_client(cfg: Path, folder: Path) -> None:
    asked: list[str] = []

    async def answer(context: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"colour": "teal"})

    with anyio.fail_after(30):  # legacy: the connection carries server-to-client requests
        async with proxy_client(cfg, *UPSTREAM, str(folder), mode="legacy", elicitation_callback=answer) as c:
            result = await c.call_tool("ask", {})
    assert not result.is_error, result.content
    assert text(result) == "colour: teal" and asked == ["Which colour?"]


async def test_the_upstreams_config_form(write_config: Callable[[str], Path], folder: Path) -> None:
    args = ", ".join(f'"{a}"' for a in [*UPSTREAM[1:], str(folder)])
    cfg = write_config(CONFIG + f'[[upstreams]]\nname = "notes"\ncommand = "{UPSTREAM[0]}"\nargs = [{args}]\n'
                       'env = { NOTES_MODE = "test" }\n')  # fmt: skip
    with anyio.fail_after(30):
        async with proxy_client(cfg) as c:
            assert "write_note" in {t.name for t in (await c.list_tools()).tools}
            result = await c.call_tool("read_note", {"name": "a.txt"})
    assert not result.is_error


def test_upstream_config_errors_name_the_key_and_the_fix() -> None:
    base = CONFIG + '[[upstreams]]\nname = "fs"\n'
    with pytest.raises(ConfigError) as both:
        parse_config(base + 'command = "npx"\nurl = "http://x/mcp"\n', source="t.toml", base_dir=None)
    assert "upstreams[0]: set exactly one of 'command'" in str(both.value)
    with pytest.raises(ConfigError) as typo:
        parse_config(base + 'command = "npx"\nargz = ["a"]\n', source="t.toml", base_dir=None)
    assert "upstreams[0].argz: unknown key; did you mean 'args'?" in str(typo.value)
    with pytest.raises(ConfigError) as mixed:
        parse_config(base + 'command = "npx"\nheaders = { A = "b" }\n', source="t.toml", base_dir=None)
    assert "'headers' and 'headers_env' are for a 'url' upstream" in str(mixed.value)


def test_unknown_upstream_name_says_how_to_fix_it(cfg: Path) -> None:
    out = cli("proxy", "--name", "fs", config=cfg)
    assert out.returncode != 0 and "no upstream named 'fs'" in out.stderr and "[[upstreams]]" in out.stderr


async def test_the_proxy_exits_when_stdin_closes(cfg: Path, folder: Path) -> None:
    proc = await anyio.open_process([SIGNOFF, "proxy", "--name", "notes", "--config", str(cfg), "--", *UPSTREAM,
                                     str(folder)], env=subprocess_env(), stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        assert proc.stdin is not None
        await proc.stdin.aclose()
        with anyio.fail_after(20):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.aclose()


async def test_a_streamable_http_upstream(cfg: Path, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import uvicorn

    from . import upstream_server

    monkeypatch.setattr(upstream_server, "FOLDER", folder)
    app = upstream_server.mcp.streamable_http_app()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # listening before the proxy starts: no race
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: server.serve(sockets=[sock]))
            with anyio.fail_after(30):
                params = StdioServerParameters(command=SIGNOFF, env=subprocess_env(), args=[
                    "proxy", "--name", "notes", "--config", str(cfg), "--url", url, "--header", "X-Test: 1"])  # fmt: skip
                async with Client(params) as c:
                    assert "write_note" in {t.name for t in (await c.list_tools()).tools}
                    result = await c.call_tool("read_note", {"name": "a.txt"})
            server.should_exit = True
    finally:
        sock.close()
    assert not result.is_error and text(result) == "hello"
