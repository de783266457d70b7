"""Who is asking: an agent sees and withdraws only its own requests, and the operator can pin
the requester a stdio client is filed as (the client's own name is then only a label)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import Implementation

from signoff.server.app import App, open_app
from signoff.server.config import load_config
from signoff.server.mcp_tools import build_mcp
from signoff.server.models import Actor, Status

from ..conftest import BASIC_CONFIG, SIGNOFF, subprocess_env
from ..procs import stdio_client

pytestmark = pytest.mark.anyio


def named(app: App, name: str, **kw: Any) -> Client:
    return Client(build_mcp(app.service, transport="memory", **kw), client_info=Implementation(name=name, version="1"))


async def error_text(client: Client, tool: str, args: dict[str, Any]) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error
    return str(result.content[0].text)  # type: ignore[union-attr]


async def test_another_client_can_neither_read_nor_withdraw_a_request(app: App) -> None:
    async with named(app, "claude-code") as owner, named(app, "intruder") as other:
        filed = (await owner.call_tool("request_approval", {"action": "deploy", "summary": "s"})).structured_content
        assert filed is not None
        rid = filed["request_id"]
        unknown = await error_text(other, "check_decision", {"request_id": rid})
        assert unknown.startswith(f"Error executing tool check_decision: unknown request_id '{rid}'") or (
            f"unknown request_id '{rid}'" in unknown
        )
        # Same answer as for an id that does not exist: nothing to probe.
        ghost = await error_text(other, "check_decision", {"request_id": "req_000000000000"})
        assert unknown.replace(rid, "ID") == ghost.replace("req_000000000000", "ID")
        assert f"unknown request_id '{rid}'" in await error_text(other, "cancel_request", {"request_id": rid})
        assert (await app.service.get(rid)).status is Status.PENDING
        # The owner, reconnected (a new session, the same identity), still collects its decision.
    async with named(app, "claude-code") as again:
        await app.service.decide(rid, True, Actor("human", "alice", "console"))
        seen = (await again.call_tool("check_decision", {"request_id": rid})).structured_content
        assert seen is not None and seen["status"] == "approved"


async def test_a_pinned_identity_is_the_requester_and_the_client_name_a_label(app: App) -> None:
    async with named(app, "claude-code", identity="ci-runner@box") as pinned, named(app, "claude-code") as plain:
        out = (await pinned.call_tool("request_approval", {"action": "deploy", "summary": "s"})).structured_content
        assert out is not None
        req = await app.service.get(out["request_id"])
        assert (req.requested_by, req.client_name) == ("ci-runner@box", "claude-code")
        # A client that merely *calls* itself claude-code is another requester: no sharing of requests.
        assert "unknown request_id" in await error_text(plain, "check_decision", {"request_id": req.id})


async def test_a_client_name_with_control_characters_is_refused(app: App) -> None:
    async with named(app, "claude\x1b[2Jcode") as client:
        text = await error_text(client, "request_approval", {"action": "deploy", "summary": "s"})
        assert "clientInfo.name" in text and "\x1b" not in text
        denied = (await client.call_tool("permission_prompt", {"tool_name": "Bash", "input": {}})).content[0]
        assert '"behavior": "deny"' in denied.text  # type: ignore[union-attr]


async def test_signoff_mcp_identity_pins_the_requester_over_stdio(tmp_path: Path) -> None:
    config = tmp_path / "signoff.toml"
    config.write_text(BASIC_CONFIG, encoding="utf-8")
    async with stdio_client(config, "--identity", "alice-laptop", name="claude-code") as client:
        out = (await client.call_tool("request_approval", {"action": "deploy", "summary": "s"})).structured_content
    assert out is not None
    async with open_app(load_config(config), background=False) as app:
        req = await app.service.get(out["request_id"])
    assert (req.requested_by, req.client_name) == ("alice-laptop", "claude-code")


async def test_stdio_identity_in_the_config_pins_mcp_and_hook(tmp_path: Path) -> None:
    config = tmp_path / "signoff.toml"
    config.write_text(BASIC_CONFIG.replace("[server]\n", '[server]\nstdio_identity = "agent-box"\n'), encoding="utf-8")
    async with stdio_client(config, name="alice-laptop") as client:  # claims to be alice's laptop
        out = (await client.call_tool("request_approval", {"action": "read_x", "summary": "s"})).structured_content
    assert out is not None
    hook = subprocess.run([SIGNOFF, "hook", "--config", str(config), "--identity", "hook-box"],
                          input='{"tool_name": "read_file", "tool_input": {}}', capture_output=True, text=True,
                          env=subprocess_env(), timeout=60)  # fmt: skip
    assert hook.returncode == 0 and '"allow"' in hook.stdout  # the "reads" route approves read_* at once
    async with open_app(load_config(config), background=False) as app:
        assert (await app.service.get(out["request_id"])).requested_by == "agent-box"
        [event] = [e for e in await app.store.audit() if e.event == "created" and e.channel == "hook"]
        assert event.actor == "hook-box"


def test_check_config_warns_when_rules_trust_names_clients_choose(tmp_path: Path) -> None:
    config = tmp_path / "signoff.toml"
    text = BASIC_CONFIG.replace("[approvers.alice]\ntelegram_user_id = 111\n",
                                '[approvers.alice]\ntelegram_user_id = 111\nidentities = ["alice-laptop"]\n')  # fmt: skip
    text += '\n[[routes]]\nname = "ci"\nmatch = { requested_by = "ci-*" }\nauto = "approve"\n'
    config.write_text(text, encoding="utf-8")
    out = subprocess.run([SIGNOFF, "check-config", "--config", str(config)], capture_output=True, text=True,
                         env=subprocess_env(), timeout=60).stdout  # fmt: skip
    assert "warning: routes[5].match.requested_by = 'ci-*'" in out and "stdio_identity" in out
    assert "warning: approvers.alice.identities" in out
    config.write_text(text.replace("[server]\n", '[server]\nstdio_identity = "me"\n'), encoding="utf-8")
    out = subprocess.run([SIGNOFF, "check-config", "--config", str(config)], capture_output=True, text=True,
                         env=subprocess_env(), timeout=60).stdout  # fmt: skip
    assert "match.requested_by" not in out and "identities" not in out  # a pinned identity: names are not chosen
    assert "routes[5] ('ci') comes after routes[4] ('default')" in out  # (appended below the catch-all)
