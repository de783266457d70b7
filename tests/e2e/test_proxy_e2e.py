"""End to end: the reference filesystem MCP server from npm behind `signoff proxy`, driven by
the real Claude Code and the MCP Inspector CLI (`make e2e`).

Claude Code allows the server's tools itself (``--allowedTools mcp__fs``): signoff is the gate.
Reads pass on an auto route; a write waits for alice's button on the fake Telegram.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import SIGNOFF
from tests.fake_anthropic import fake_anthropic
from tests.fake_telegram import fake_telegram

from .conftest import ALICE, BIN, NEEDS_NPM, World, run_claude

pytestmark = [pytest.mark.anyio, NEEDS_NPM]

FS_SERVER = Path(BIN or ".").parent / "@modelcontextprotocol" / "server-filesystem" / "dist" / "index.js"


def proxy_config(api_base_url: str, work: Path) -> str:
    return textwrap.dedent(f"""
        [store]
        path = "signoff.db"
        [telegram]
        api_base_url = "{api_base_url}"
        lease_ttl = "3s"
        [approvers.alice]
        telegram_user_id = {ALICE}
        [[routes]]
        name = "fs-reads"
        match = {{ action = ["mcp__fs__read_*", "mcp__fs__list_*"] }}
        auto = "approve"
        [[routes]]
        name = "default"
        approvers = ["alice"]
        [[upstreams]]
        name = "fs"
        command = "node"
        args = ["{FS_SERVER}", "{work}"]
    """)


@pytest.fixture
def tool() -> tuple[str, dict[str, Any]]:
    return "mcp__fs__list_directory", {"path": "."}


@pytest.fixture
async def fs_world(tmp_path: Path, tool: tuple[str, dict[str, Any]]) -> AsyncIterator[World]:
    name, args = tool
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "home").mkdir()
    args = {k: str(work / v) if k == "path" else v for k, v in args.items()}
    async with fake_telegram() as tg, fake_anthropic(name, args) as api:
        config = tmp_path / "signoff.toml"
        config.write_text(proxy_config(tg.api_base_url, work))
        yield World(tmp_path / "home", work, config, tg, api)
        assert tg.conflicts == 0


async def add_proxy(w: World) -> None:
    # docs/proxy.md's line: `claude mcp add fs -- signoff proxy --name fs --config … -- node … DIR`
    add = await run_claude(w, "mcp", "add", "fs", "-e", f"SIGNOFF_TELEGRAM_TOKEN={w.telegram.token}", "--",
                           SIGNOFF, "proxy", "--name", "fs", "--config", str(w.config), "--",
                           "node", str(FS_SERVER), str(w.work))  # fmt: skip
    assert add.returncode == 0, add.stderr


async def ask_claude(w: World) -> subprocess.CompletedProcess[bytes]:
    return await run_claude(w, "-p", "do it", "--allowedTools", "mcp__fs", "--output-format", "json")


async def press(w: World, button: str, reason: str | None = None) -> None:
    """Wait (bounded) for alice's prompt about the write and press ``button`` (then give ``reason``)."""
    msg = await w.telegram.wait_for(lambda: next((m for m in w.telegram.chat(ALICE) if m.buttons()), None), 90)
    assert "mcp__fs__write_file" in msg.text and "e2e.txt" in msg.text
    await w.telegram.press(ALICE, msg, msg.button(button))
    if reason is not None:
        question = await w.telegram.wait_for(
            lambda: next((m for m in w.telegram.chat(ALICE) if "Why reject" in m.text), None)
        )
        await w.telegram.say(ALICE, ALICE, reason, reply_to=question)


async def test_a_read_passes_on_an_auto_route(fs_world: World) -> None:
    (fs_world.work / "hello.txt").write_text("hello there")
    await add_proxy(fs_world)
    result = await ask_claude(fs_world)
    assert result.returncode == 0, result.stdout
    told = json.dumps(fs_world.api.tool_results())
    assert "hello.txt" in told, told
    assert fs_world.telegram.chat(ALICE) == []  # nobody was asked


WRITE = ("mcp__fs__write_file", {"path": "e2e.txt", "content": "approved"})


@pytest.mark.parametrize("tool", [WRITE])
async def test_a_write_waits_for_the_phone_then_happens(fs_world: World) -> None:
    await add_proxy(fs_world)
    async with anyio.create_task_group() as tg:
        tg.start_soon(press, fs_world, "approve")
        result = await ask_claude(fs_world)
    assert result.returncode == 0, result.stdout
    assert (fs_world.work / "e2e.txt").read_text() == "approved"


@pytest.mark.parametrize("tool", [WRITE])
async def test_a_rejected_write_does_not_happen_and_the_model_sees_why(fs_world: World) -> None:
    await add_proxy(fs_world)
    async with anyio.create_task_group() as tg:
        tg.start_soon(press, fs_world, "reason", "not in this folder")
        await ask_claude(fs_world)
    assert not (fs_world.work / "e2e.txt").exists()
    told = json.dumps(fs_world.api.tool_results())
    assert "Rejected by alice: not in this folder" in told, told


async def test_mcp_inspector_lists_the_upstream_tools_through_the_proxy(fs_world: World) -> None:
    inspector = str(Path(BIN or "") / "mcp-inspector")
    # The [[upstreams]] form: no command to repeat. The Inspector has a --config flag of its own.
    base = [inspector, "--cli", "-e", f"SIGNOFF_CONFIG={fs_world.config}"]
    proxied = await anyio.run_process([*base, SIGNOFF, "proxy", "--name", "fs", "--method", "tools/list"],
                                      env=fs_world.env())  # fmt: skip
    direct = await anyio.run_process([*base, "node", str(FS_SERVER), str(fs_world.work), "--method", "tools/list"],
                                     env=fs_world.env())  # fmt: skip
    tools = json.loads(proxied.stdout)["tools"]
    assert tools == json.loads(direct.stdout)["tools"]
    assert {"read_text_file", "write_file", "list_directory"} <= {t["name"] for t in tools}
