"""The Claude Code plugin in this repository (`.claude-plugin/marketplace.json`, `plugin/`), installed
into the real Claude Code from npm the way the README says: `claude plugin marketplace add <repo>`,
then `claude plugin install signoff@signoff --config telegram_token=…`.

Nothing gives signoff the bot token but the plugin: the environment has no SIGNOFF_TELEGRAM_TOKEN
and the config sits where signoff looks by itself ($XDG_CONFIG_HOME/signoff/signoff.toml), so a
prompt reaches the (fake) phone only if the plugin passed the saved option through.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import ROOT, SIGNOFF

from .conftest import NEEDS_NPM, World, press, run_claude

pytestmark = [pytest.mark.anyio, NEEDS_NPM]
PLUGIN = "signoff@signoff"


def plugin_env(w: World) -> dict[str, str]:
    """Claude Code's environment for these runs: `signoff` on PATH, the user's XDG config folder, no token."""
    env = w.env(PATH=f"{Path(SIGNOFF).parent}{os.pathsep}{os.environ['PATH']}", XDG_CONFIG_HOME=str(w.home / ".config"))
    del env["SIGNOFF_TELEGRAM_TOKEN"]
    env.pop("SIGNOFF_CONFIG", None)
    env.pop("CLAUDE_PLUGIN_OPTION_TELEGRAM_TOKEN", None)
    return env


async def install(w: World) -> dict[str, str]:
    env = plugin_env(w)
    user_config = w.home / ".config" / "signoff" / "signoff.toml"
    user_config.parent.mkdir(parents=True)
    user_config.write_text(w.config.read_text())
    added = await run_claude(w, "plugin", "marketplace", "add", str(ROOT), env=env)
    assert added.returncode == 0, added.stdout + added.stderr
    installed = await run_claude(w, "plugin", "install", PLUGIN, "--config", f"telegram_token={w.telegram.token}",
                                 env=env)  # fmt: skip
    out = (installed.stdout + installed.stderr).decode()
    # A bad --config still exits 0; only the output says it was not applied.
    assert installed.returncode == 0 and "Successfully installed" in out and "not applied" not in out, out
    # The token is a secret: kept in the credentials file, never in the settings.
    assert w.telegram.token not in (w.home / ".claude" / "settings.json").read_text()
    return env


def events(result: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.decode().splitlines() if line.strip()]


@pytest.mark.parametrize("root", [".", "plugin"])
async def test_the_marketplace_and_the_plugin_pass_strict_validation(world: World, root: str) -> None:
    result = await run_claude(world, "plugin", "validate", "--strict", str(ROOT / root))
    assert result.returncode == 0 and "Validation passed" in result.stdout.decode(), result.stdout + result.stderr


async def test_installed_plugin_connects_its_server_and_an_approval_on_the_phone_runs_bash(world: World) -> None:
    env = await install(world)
    listed = await run_claude(world, "mcp", "list", env=env)
    assert "plugin:signoff:signoff: signoff mcp - ✔ Connected" in listed.stdout.decode(), listed.stdout
    async with anyio.create_task_group() as tg:
        tg.start_soon(press, world, "approve")
        result = await run_claude(world, "-p", "write the file", "--output-format", "stream-json", "--verbose",
                                  env=env)  # fmt: skip
    init, *_, final = events(result)
    assert {"name": "plugin:signoff:signoff", "status": "connected"} in init["mcp_servers"], init
    assert not init.get("plugin_errors"), init
    assert "mcp__plugin_signoff_signoff__request_approval" in init["tools"]
    assert final["type"] == "result" and final["permission_denials"] == [], final
    assert (world.work / "e2e.txt").read_text().strip() == "approved"


async def test_the_plugin_hook_alone_reaches_the_phone_and_a_rejection_blocks_bash(world: World) -> None:
    # --strict-mcp-config drops the plugin's MCP server but not its hook: the prompt can only
    # reach Telegram through the token the hook got from the plugin's saved option.
    env = await install(world)
    async with anyio.create_task_group() as tg:
        tg.start_soon(press, world, "reason", "not on a Friday")
        result = await run_claude(world, "-p", "write the file", "--output-format", "stream-json", "--verbose",
                                  "--strict-mcp-config", "--mcp-config", '{"mcpServers": {}}', env=env)  # fmt: skip
    init, *_, final = events(result)
    assert init["mcp_servers"] == [], init
    assert not (world.work / "e2e.txt").exists()
    assert [d["tool_name"] for d in final["permission_denials"]] == ["Bash"], final
    assert "Rejected by alice: not on a Friday" in json.dumps(world.api.tool_results())


async def test_without_signoff_on_path_the_plugin_hook_blocks_instead_of_letting_bash_run(world: World) -> None:
    # A hook that cannot start would exit 127, which Claude Code treats as "no opinion": with
    # --allowedTools Bash the command would run. The plugin's `|| exit 2` makes that a block.
    env = await install(world)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not (Path(p) / "signoff").exists())
    result = await run_claude(world, "-p", "write the file", "--output-format", "json", "--allowedTools", "Bash",
                              "--strict-mcp-config", "--mcp-config", '{"mcpServers": {}}', env=env)  # fmt: skip
    out = json.loads(result.stdout)
    assert not (world.work / "e2e.txt").exists()
    assert [d["tool_name"] for d in out["permission_denials"]] == ["Bash"], out
    assert "signoff: not found" in json.dumps(world.api.tool_results())
