"""The command line's own contract: --version, and --config before or after the command."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest
from mcp import Client

from signoff.server.app import App
from signoff.server.mcp_tools import build_mcp

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
