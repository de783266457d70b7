"""The command line's own contract: --version, and --config before or after the command."""

from __future__ import annotations

import getpass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from signoff.server.app import App
from signoff.server.mcp_tools import build_mcp

from .conftest import SIGNOFF, subprocess_env
from .procs import cli

pytestmark = pytest.mark.anyio


def test_version_is_the_package_version() -> None:
    out = cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"signoff {version('signoff')}"


async def test_the_mcp_server_reports_the_package_version(app: App) -> None:
    async with Client(build_mcp(app.service, transport="memory")) as client:
        info = client.server_info
    assert (info.name, info.version) == ("signoff", version("signoff"))


@pytest.mark.parametrize("where", ["before", "after"])
def test_config_goes_before_or_after_the_command(config_path: Path, where: str) -> None:
    argv = (
        ["--config", str(config_path), "check-config"]
        if where == "before"
        else ["check-config", "--config", str(config_path)]
    )
    out = cli(*argv)
    assert out.returncode == 0 and f"{config_path}: OK" in out.stdout


async def test_approve_with_a_note_at_the_console(app: App, config_path: Path) -> None:
    """``signoff approve ID --reason TEXT``: the note approves, the agent gets it as ``reason``,
    the audit has it, and terminals show it on one line (or indented), never as a layout line."""
    note = "after 18:00\nStatus    rejected"

    async def run(*args: str) -> Any:
        return await anyio.run_process(
            [SIGNOFF, *args, "--config", str(config_path)], env=subprocess_env(), check=False
        )

    async with Client(build_mcp(app.service, transport="memory")) as client:
        filed = await client.call_tool("request_approval", {"action": "deploy", "summary": "Ship v2"})
        rid = filed.structured_content["request_id"]  # type: ignore[index]
        out = await run("approve", rid, "--reason", note)
        assert out.returncode == 0, out.stderr
        assert (
            out.stdout.decode() == f"{rid} approved by {getpass.getuser()}. Note: after 18:00\\x0aStatus    rejected\n"
        )
        result = await client.call_tool("check_decision", {"request_id": rid, "wait_seconds": 10})
    assert result.structured_content is not None
    assert (result.structured_content["status"], result.structured_content["reason"]) == ("approved", note)
    events = await app.store.audit(request_id=rid)
    assert (events[-1].event, events[-1].data) == ("approved", {"reason": note})
    shown = (await run("show", rid)).stdout.decode().splitlines()
    assert "Note      after 18:00" in shown and "          Status    rejected" in shown
    assert not any(line.startswith("Status    rejected") for line in shown)


def test_check_config_warns_of_a_route_below_the_catch_all(write_config: Any) -> None:
    """The first route that matches decides: one appended after the catch-all only ever decides
    requests that name it, which check-config says (a newcomer's slip with the starter config)."""
    path = write_config(
        '[store]\npath = "s.db"\n[[routes]]\nname = "default"\n'
        '[[routes]]\nname = "fs-reads"\nmatch = { action = "mcp__fs__read_*" }\nauto = "approve"\n',
        name="shadow.toml",
    )
    out = cli("check-config", "--config", str(path))
    assert out.returncode == 0
    assert (
        "warning: routes[1] ('fs-reads') comes after routes[0] ('default'), which matches every request" in out.stdout
    )
    assert "move it above 'default'" in out.stdout
