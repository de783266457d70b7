"""End to end with the real Claude Code and MCP Inspector command-line clients (`make e2e`).

`make e2e` installs both from npm into .e2e/ and sets SIGNOFF_E2E_BIN; without it these tests
skip. Claude Code talks to a local stand-in for the Messages API (tests/fake_anthropic.py),
signoff talks to the fake Telegram (tests/fake_telegram.py), and a test presses the buttons.
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import SIGNOFF
from tests.procs import serve

from .conftest import ALICE, BASH, BIN, NEEDS_NPM, World, press, run_claude

pytestmark = [pytest.mark.anyio, NEEDS_NPM]


async def test_claude_mcp_list_reports_signoff_connected_over_stdio_and_http(world: World) -> None:
    token = secrets.token_urlsafe(24)
    add = await run_claude(world, "mcp", "add", "signoff", "--", SIGNOFF, "mcp", "--config", str(world.config))
    assert add.returncode == 0, add.stderr
    async with serve(world.config, SIGNOFF_HTTP_TOKEN=token) as server:
        add = await run_claude(world, "mcp", "add", "--transport", "http", "signoff-http", server.url,
                               "-H", f"Authorization: Bearer {token}")  # fmt: skip
        assert add.returncode == 0, add.stderr
        listed = (await run_claude(world, "mcp", "list")).stdout.decode()
    lines = {line.split(":")[0]: line for line in listed.splitlines() if ":" in line}
    assert "Connected" in lines["signoff"] and "Connected" in lines["signoff-http"], listed


async def test_permission_prompt_approved_on_the_phone_runs_the_command(world: World) -> None:
    # docs/claude-code.md's lines: `claude mcp add signoff -e SIGNOFF_TELEGRAM_TOKEN=… -- …`, then `claude -p`.
    add = await run_claude(world, "mcp", "add", "signoff", "-e", f"SIGNOFF_TELEGRAM_TOKEN={world.telegram.token}", "--",
                           SIGNOFF, "mcp", "--config", str(world.config))  # fmt: skip
    assert add.returncode == 0, add.stderr
    async with anyio.create_task_group() as tg:
        tg.start_soon(press, world, "approve")
        result = await run_claude(world, "-p", "write the file", "--permission-prompt-tool",
                                  "mcp__signoff__permission_prompt", "--output-format", "json")  # fmt: skip
    out = json.loads(result.stdout)
    assert result.returncode == 0 and out["permission_denials"] == [], result.stdout
    assert (world.work / "e2e.txt").read_text().strip() == "approved"


async def test_permission_prompt_rejected_does_not_run_and_the_model_sees_why(world: World) -> None:
    # This time signoff comes from the project's .mcp.json, as docs/claude-code.md shows it.
    (world.work / ".mcp.json").write_text(json.dumps({"mcpServers": {"signoff": {
        "type": "stdio", "command": SIGNOFF, "args": ["mcp", "--config", str(world.config)]}}}))  # fmt: skip
    async with anyio.create_task_group() as tg:
        tg.start_soon(press, world, "reason", "not on a Friday")
        result = await run_claude(world, "-p", "write the file", "--permission-prompt-tool",
                                  "mcp__signoff__permission_prompt", "--output-format", "json")  # fmt: skip
    out = json.loads(result.stdout)
    assert not (world.work / "e2e.txt").exists()
    assert len(out["permission_denials"]) == 1
    told = json.dumps(world.api.tool_results())
    assert "Rejected by alice: not on a Friday" in told


def write_hook_settings(w: World) -> None:
    """docs/claude-code.md's hooks block, in the project's .claude/settings.json."""
    (w.work / ".claude").mkdir(exist_ok=True)
    (w.work / ".claude" / "settings.json").write_text(json.dumps({"hooks": {"PreToolUse": [{
        "matcher": "Bash|Edit|MultiEdit|Write|WebFetch",
        "hooks": [{"type": "command", "timeout": 600, "command": f"{SIGNOFF} hook --config {w.config}"}]}]}}))  # fmt: skip


@pytest.mark.parametrize("approve", [True, False])
async def test_the_hook_path(world: World, approve: bool) -> None:
    write_hook_settings(world)
    async with anyio.create_task_group() as tg:
        tg.start_soon(press, world, "approve" if approve else "reason", None if approve else "use make clean")
        result = await run_claude(world, "-p", "write the file", "--output-format", "json")
    out = json.loads(result.stdout)
    if approve:
        assert (world.work / "e2e.txt").read_text().strip() == "approved", result.stdout
    else:
        assert not (world.work / "e2e.txt").exists()
        assert len(out["permission_denials"]) == 1
        assert "Rejected by alice: use make clean" in json.dumps(world.api.tool_results())


async def test_mcp_inspector_cli_lists_and_calls_the_tools(world: World) -> None:
    inspector = str(Path(BIN or "") / "mcp-inspector")
    # The Inspector has a --config flag of its own, so the config goes by environment variable.
    base = [inspector, "--cli", "-e", f"SIGNOFF_CONFIG={world.config}", SIGNOFF, "mcp"]
    listed = json.loads((await anyio.run_process([*base, "--method", "tools/list"], env=world.env())).stdout)
    assert {t["name"] for t in listed["tools"]} == {
        "request_approval",
        "ask_human",
        "check_decision",
        "cancel_request",
        "permission_prompt",
    }
    asked = await anyio.run_process([*base, "--method", "tools/call", "--tool-name", "ask_human",
                                     "--tool-arg", "question=Which region?"], env=world.env())  # fmt: skip
    question: dict[str, Any] = json.loads(asked.stdout)
    assert question["isError"] is False and question["structuredContent"]["status"] == "pending"
    assert question["structuredContent"]["answer"] is None
    called = await anyio.run_process([*base, "--method", "tools/call", "--tool-name", "request_approval",
                                      "--tool-arg", "action=deploy", "--tool-arg", "summary=from the inspector"], env=world.env())  # fmt: skip
    result: dict[str, Any] = json.loads(called.stdout)
    assert result["isError"] is False and result["structuredContent"]["status"] == "pending"


async def press_note(w: World, note: str) -> None:
    """Alice approves the Bash prompt with a note (the Telegram reply prompt)."""
    msg = await w.telegram.wait_for(lambda: next((m for m in w.telegram.chat(ALICE) if m.buttons()), None), 90)
    await w.telegram.press(ALICE, msg, msg.button("note"))
    question = await w.telegram.wait_for(
        lambda: next((m for m in w.telegram.chat(ALICE) if "What note goes" in m.text), None)
    )
    await w.telegram.say(ALICE, ALICE, note, reply_to=question)


@pytest.mark.parametrize("path", ["hook", "permission_prompt"])
async def test_an_approval_with_a_note_runs_the_command_and_the_model_reads_the_note(world: World, path: str) -> None:
    note = "fine, but only in this folder"
    if path == "hook":
        write_hook_settings(world)
        args = ["-p", "write the file", "--output-format", "json"]
    else:
        add = await run_claude(world, "mcp", "add", "signoff", "-e", f"SIGNOFF_TELEGRAM_TOKEN={world.telegram.token}",
                               "--", SIGNOFF, "mcp", "--config", str(world.config))  # fmt: skip
        assert add.returncode == 0, add.stderr
        args = ["-p", "write the file", "--permission-prompt-tool", "mcp__signoff__permission_prompt",
                "--output-format", "json"]  # fmt: skip
    async with anyio.create_task_group() as tg:
        tg.start_soon(press_note, world, note)
        result = await run_claude(world, *args)
    assert result.returncode == 0, result.stdout  # an allow that carries a note is still an allow
    assert (world.work / "e2e.txt").read_text().strip() == "approved"
    if path == "hook":  # the hook's additionalContext reaches the model's next request
        assert note in json.dumps(world.api.requests[1:]), "the model never saw the note"


async def approve_edited(w: World, command: str) -> None:
    """Alice approves the Bash prompt at the console with its command changed (`signoff approve --edit`)."""
    msg = await w.telegram.wait_for(lambda: next((m for m in w.telegram.chat(ALICE) if m.buttons()), None), 90)
    request_id = re.search(r"req_[0-9a-f]{12}", msg.text)
    assert request_id is not None
    edit = w.work.parent / "edit.json"
    edit.write_text(json.dumps({**BASH, "command": command}))
    done = await anyio.run_process([SIGNOFF, "approve", request_id.group(0), "--edit", str(edit), "--as", "alice",
                                    "--config", str(w.config)], env=w.env(), check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr


async def test_an_edited_bash_command_runs_in_its_edited_form(world: World) -> None:
    write_hook_settings(world)
    async with anyio.create_task_group() as tg:
        tg.start_soon(approve_edited, world, "echo edited > e2e.txt")
        result = await run_claude(world, "-p", "write the file", "--output-format", "json")
    assert result.returncode == 0, result.stdout
    assert (world.work / "e2e.txt").read_text().strip() == "edited", result.stdout
