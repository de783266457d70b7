"""Claude Code's contracts: the permission-prompt tool, the hook command and `signoff init`."""

from __future__ import annotations

import getpass
import json
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import Implementation

from signoff.server.app import App
from signoff.server.config import load_config
from signoff.server.mcp_tools import build_mcp
from signoff.server.models import Actor, Status

from .conftest import BASIC_CONFIG, SIGNOFF, subprocess_env

pytestmark = pytest.mark.anyio
ALICE = Actor("human", "alice", "console")
CC_ROUTES = """
[[routes]]
name = "cc-reads"
match = { action = ["Read", "Glob", "Grep"] }
auto = "approve"
[[routes]]
name = "cc-quick"
match = { action = "QuickTool" }
approvers = ["alice"]
timeout = "1s"
"""


@pytest.fixture
def config_path(write_config: Callable[..., Path]) -> Path:
    return write_config(BASIC_CONFIG.replace('[[routes]]\nname = "reads"', CC_ROUTES + '[[routes]]\nname = "reads"', 1))


@pytest.fixture
async def client(app: App) -> AsyncIterator[Client]:
    async with Client(
        build_mcp(app.service, transport="memory"), client_info=Implementation(name="claude-code", version="2")
    ) as c:
        yield c


async def prompt(client: Client, **args: Any) -> tuple[dict[str, Any], Any]:
    result = await client.call_tool("permission_prompt", args)
    assert not result.is_error and result.structured_content is None and len(result.content) == 1
    return json.loads(result.content[0].text), result  # type: ignore[union-attr]


async def decide_when_filed(app: App, approve: bool, reason: str | None = None) -> None:
    with anyio.fail_after(10):
        while not (pending := await app.store.list_requests(status=Status.PENDING)):
            await anyio.wait_all_tasks_blocked()
    await app.service.decide(pending[0].id, approve, ALICE, reason)


async def test_permission_prompt_allows_what_a_human_approves(app: App, client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert tools["permission_prompt"].output_schema is None  # Claude Code refuses structured content here
    bash = {"command": "rm -rf build/", "description": "Clean the build"}
    async with anyio.create_task_group() as tg:
        tg.start_soon(decide_when_filed, app, True)
        answer, _ = await prompt(client, tool_name="Bash", input=bash, tool_use_id="toolu_1")
    assert answer == {"behavior": "allow", "updatedInput": bash}
    req = (await app.store.list_requests())[0]
    assert req.action == "Bash" and req.summary == "Clean the build" and req.requested_by == "claude-code"


async def test_permission_prompt_denies_with_the_humans_reason(app: App, client: Client) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(decide_when_filed, app, False, "not on Friday")
        answer, _ = await prompt(client, tool_name="Bash", input={"command": "deploy"}, tool_use_id="toolu_2")
    assert answer == {"behavior": "deny", "message": "Rejected by alice: not on Friday"}


async def test_permission_prompt_carries_the_approvers_note(app: App, client: Client) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(decide_when_filed, app, True, "staging only")
        answer, _ = await prompt(client, tool_name="Bash", input={"command": "deploy"}, tool_use_id="toolu_n")
    assert answer == {
        "behavior": "allow",
        "updatedInput": {"command": "deploy"},
        "message": "Approved by alice: staging only",
    }


async def test_permission_prompt_auto_routes_retries_and_no_route(app: App, client: Client) -> None:
    answer, _ = await prompt(client, tool_name="Read", input={"file_path": "/etc/hosts"})
    assert answer["behavior"] == "allow"
    async with anyio.create_task_group() as tg:
        tg.start_soon(decide_when_filed, app, True)
        await prompt(client, tool_name="Bash", input={"command": "ls"}, tool_use_id="toolu_3")
    again, _ = await prompt(client, tool_name="Bash", input={"command": "ls"}, tool_use_id="toolu_3")
    assert again["behavior"] == "allow"  # the same tool call is not asked twice
    assert len([r for r in await app.store.list_requests() if r.action == "Bash"]) == 1


async def test_permission_prompt_deadline_is_a_deny(app: App, client: Client) -> None:
    with anyio.fail_after(20):
        answer, _ = await prompt(client, tool_name="QuickTool", input={})
    assert answer["behavior"] == "deny" and "expired" in answer["message"]


async def test_permission_prompt_reports_progress(app: App, client: Client) -> None:
    app.service.progress_interval = 0.05
    seen: list[float] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        seen.append(p)
        if len(seen) == 3:
            await app.service.decide((await app.store.list_requests())[0].id, True, ALICE)

    result = await client.call_tool("permission_prompt", {"tool_name": "Bash", "input": {"command": "x"}},
                                    progress_callback=on_progress)  # fmt: skip
    assert json.loads(result.content[0].text)["behavior"] == "allow"  # type: ignore[union-attr]
    assert len(seen) >= 3


async def test_a_cancelled_permission_prompt_cancels_the_request(app: App, client: Client) -> None:
    with pytest.raises(Exception):  # noqa: B017 - the client's own timeout error
        await client.call_tool("permission_prompt", {"tool_name": "Bash", "input": {"command": "x"}},
                               read_timeout_seconds=0.5)  # fmt: skip
    with anyio.fail_after(10):
        while (await app.store.list_requests())[0].status is Status.PENDING:
            await anyio.wait_all_tasks_blocked()
    assert (await app.store.list_requests())[0].status is Status.CANCELLED


# --- signoff hook --------------------------------------------------------------------------


def run_hook(config: Path, event: dict[str, Any], *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([SIGNOFF, "hook", "--config", str(config), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())  # fmt: skip
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(event))
    proc.stdin.close()
    proc.stdin = None  # written and closed; communicate() must not touch it
    return proc


def finish(proc: subprocess.Popen[str]) -> Any:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out) if out.strip() else None


def event(name: str, tool: str, tool_input: dict[str, Any], use_id: str) -> dict[str, Any]:
    return {"session_id": "s", "hook_event_name": name, "tool_name": tool, "tool_input": tool_input,
            "tool_use_id": use_id, "cwd": "/tmp", "permission_mode": "default"}  # fmt: skip


async def approve_pending_from_cli(config: Path, approve: bool = True, note: str | None = None) -> None:
    with anyio.fail_after(30):
        while True:
            rows = json.loads((await anyio.run_process([SIGNOFF, "pending", "--json", "--config", str(config)])).stdout)
            if rows:
                break
            await anyio.wait_all_tasks_blocked()
    verb = ["approve", rows[0]["request_id"]] if approve else ["reject", rows[0]["request_id"], "--reason", "no way"]
    verb += ["--reason", note] if note is not None else []
    await anyio.run_process([SIGNOFF, *verb, "--config", str(config)], env=subprocess_env())


async def test_hook_pre_tool_use(config_path: Path) -> None:
    assert finish(run_hook(config_path, event("PreToolUse", "Read", {"file_path": "x"}, "t1"))) == {
        "hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "allow",
                               "permissionDecisionReason": "Approved by route:cc-reads via signoff"}}  # fmt: skip
    proc = run_hook(config_path, event("PreToolUse", "Bash", {"command": "make deploy"}, "t2"))
    await approve_pending_from_cli(config_path)
    out = finish(proc)["hookSpecificOutput"]
    assert out["permissionDecision"] == "allow"
    audit = (await anyio.run_process([SIGNOFF, "audit", "--format", "jsonl", "--config", str(config_path)])).stdout
    rid = json.loads(audit.decode().splitlines()[-1])["request_id"]
    shown = json.loads((await anyio.run_process([SIGNOFF, "show", rid, "--json", "--config", str(config_path)])).stdout)
    assert shown["session"] == "cc_s"  # Claude Code's session_id: "session" grants follow it
    proc = run_hook(config_path, event("PreToolUse", "Bash", {"command": "rm -rf /"}, "t3"))
    await approve_pending_from_cli(config_path, approve=False)
    out = finish(proc)["hookSpecificOutput"]
    assert out["permissionDecision"] == "deny" and "no way" in out["permissionDecisionReason"]


async def test_the_hook_hands_an_approvers_note_to_claude_code(config_path: Path) -> None:
    """Approved with a note: ``permissionDecisionReason`` says who approved and the note, and
    ``additionalContext`` puts it before the model (an allow's reason is shown to the user only)."""
    proc = run_hook(config_path, event("PreToolUse", "Bash", {"command": "make deploy"}, "t9"))
    await approve_pending_from_cli(config_path, note="staging only, not prod")
    said = f"Approved by {getpass.getuser()}: staging only, not prod"
    assert finish(proc) == {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "allow",
                                                   "permissionDecisionReason": said,
                                                   "additionalContext": f"signoff: {said}"}}  # fmt: skip


async def test_hook_timeout_falls_back_and_withdraws_the_request(config_path: Path) -> None:
    out = finish(run_hook(config_path, event("PreToolUse", "Bash", {"command": "a"}, "t4"), "--timeout", "1"))
    assert out["hookSpecificOutput"]["permissionDecision"] == "ask"
    out = finish(
        run_hook(
            config_path, event("PreToolUse", "Bash", {"command": "b"}, "t5"), "--timeout", "1", "--fallback", "deny"
        )
    )
    assert out["hookSpecificOutput"]["permissionDecision"] == "deny"
    assert (
        finish(run_hook(config_path, event("PermissionRequest", "Bash", {"command": "c"}, "t6"), "--timeout", "1"))
        is None
    )
    audit = (await anyio.run_process([SIGNOFF, "audit", "--format", "jsonl", "--config", str(config_path)])).stdout
    assert [json.loads(line)["event"] for line in audit.decode().splitlines()].count("cancelled") == 3


async def test_hook_permission_request(config_path: Path) -> None:
    proc = run_hook(config_path, event("PermissionRequest", "Bash", {"command": "ls"}, "t7"))
    await approve_pending_from_cli(config_path)
    assert finish(proc) == {
        "hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": {"behavior": "allow"}}
    }


async def test_hook_bad_input(config_path: Path) -> None:
    proc = subprocess.run([SIGNOFF, "hook", "--config", str(config_path)], input="not json", capture_output=True,
                          text=True, env=subprocess_env(), timeout=60)  # fmt: skip
    # Bad input is the fallback decision, never a silent exit 1 (which Claude Code would ignore).
    assert proc.returncode == 0 and "stdin is not JSON" in proc.stderr
    assert json.loads(proc.stdout)["hookSpecificOutput"]["permissionDecision"] == "ask"


# --- signoff init --------------------------------------------------------------------------


def test_init_writes_a_config_that_loads(tmp_path: Path) -> None:
    path = tmp_path / "signoff.toml"
    res = subprocess.run([SIGNOFF, "init", "--path", str(path), "--telegram-user-id", "4242"], capture_output=True,
                         text=True, env=subprocess_env(), timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stderr
    config = load_config(path)
    assert config.approvers["me"].telegram_user_id == 4242
    assert [r.name for r in config.routes] == ["claude-code-reads", "claude-code-changes", "default"]
    again = subprocess.run(
        [SIGNOFF, "init", "--path", str(path)], capture_output=True, text=True, env=subprocess_env(), timeout=60
    )
    assert again.returncode == 1 and "--force" in again.stderr
