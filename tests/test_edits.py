"""Edit before approving: an approver changes the arguments, the agent (and Claude Code, and the
proxy's upstream) acts on the change, and the audit records both digests."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult, Implementation

from signoff.server.app import App, open_app
from signoff.server.config import load_config
from signoff.server.decision_callbacks import payload
from signoff.server.errors import NotAllowedError, RequestError
from signoff.server.intake import MAX_DETAILS_BYTES
from signoff.server.mcp_tools import build_mcp
from signoff.server.models import Actor, Status
from signoff.server.rows import dumps
from signoff.server.service import NewRequest

from .conftest import BASIC_CONFIG, SIGNOFF, subprocess_env
from .procs import cli
from .test_claude_code import event, finish, run_hook
from .test_proxy import CONFIG as PROXY_CONFIG
from .test_proxy import UPSTREAM, Progress, opened, proxy_client

pytestmark = pytest.mark.anyio

AGENT = Actor("agent", "claude-code", "mcp")
ALICE = Actor("human", "alice", "telegram")
BOB = Actor("human", "bob", "telegram")
EXTRA_ROUTES = """
[[routes]]
name = "fixed"
match = { action = "fixed_*" }
approvers = ["alice"]
allow_edit = false

[[routes]]
name = "two-keys"
match = { action = "pair_*" }
approvers = ["alice", "bob"]
quorum = 2
"""


@pytest.fixture
def config_path(write_config: Callable[..., Path]) -> Path:
    return write_config(
        BASIC_CONFIG.replace('[[routes]]\nname = "reads"', EXTRA_ROUTES + '[[routes]]\nname = "reads"', 1)
    )


@pytest.fixture
async def client(app: App) -> AsyncIterator[Client]:
    mcp = build_mcp(app.service, transport="memory")
    async with Client(mcp, client_info=Implementation(name="claude-code", version="2")) as c:
        yield c


def _digest(action: str, details: Any, metadata: dict[str, Any]) -> str:
    text = f'{{"action":{dumps(action)},"details":{dumps(details)},"metadata":{dumps(metadata)}}}'
    return hashlib.sha256(text.encode()).hexdigest()


async def _pending(app: App) -> str:
    with anyio.fail_after(10):
        while not (found := await app.store.list_requests(status=Status.PENDING)):
            await anyio.wait_all_tasks_blocked()
    return found[0].id


async def test_the_agent_receives_the_edit_and_the_audit_records_both_digests(
    app: App, client: Client, config_path: Path
) -> None:
    args = {"action": "deploy", "summary": "Ship v2", "details": {"sha": "abc", "env": "prod"},
            "metadata": {"env": "prod"}, "wait_seconds": 0}  # fmt: skip
    filed = (await client.call_tool("request_approval", args)).structured_content
    assert filed is not None and filed["status"] == "pending" and filed["edited_details"] is None
    edit = {"sha": "abc", "env": "staging"}
    decision = await app.service.approve_edited(filed["request_id"], edit, ALICE, "staging first")
    assert decision.changed and decision.request.status is Status.APPROVED
    assert decision.request.edited_details == edit and decision.request.details == args["details"]
    checked = (await client.call_tool("check_decision", {"request_id": filed["request_id"]})).structured_content
    assert checked is not None and checked["status"] == "approved" and checked["edited_details"] == edit
    assert checked["action_digest"] == _digest("deploy", args["details"], {"env": "prod"})  # the original's
    again = (await client.call_tool("request_approval", args)).structured_content
    assert again is not None and again["edited_details"] is None  # another request: nothing carried over
    events = await app.store.audit(request_id=filed["request_id"])
    assert [e.event for e in events] == ["created", "approved"]
    assert events[1].data == {"reason": "staging first", "edited": True,
                              "action_digest": _digest("deploy", args["details"], {"env": "prod"}),
                              "approved_action_digest": _digest("deploy", edit, {"env": "prod"})}  # fmt: skip
    assert events[1].action_digest == events[0].action_digest == checked["action_digest"]
    body = payload(decision.request, 1, 1)["request"]  # what a decision callback posts
    assert body["details"] == args["details"] and body["edited_details"] == edit
    verified = await anyio.to_thread.run_sync(lambda: cli("audit", "verify", config=config_path))
    assert verified.returncode == 0 and "audit chain OK" in verified.stdout, verified.stdout + verified.stderr


async def test_an_edit_the_same_as_the_original_is_no_edit(app: App) -> None:
    req = await app.service.request_approval(NewRequest("deploy", "Ship", {"b": 1, "a": [1, 2]}), AGENT)
    decision = await app.service.approve_edited(req.id, {"a": [1, 2], "b": 1}, ALICE)
    assert decision.changed and decision.request.edited_details is None and decision.request.edited_digest is None
    events = await app.store.audit(request_id=req.id)
    assert events[-1].event == "approved" and events[-1].data is None


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (None, "empty"),
        ("rm -rf /", "must be a JSON object"),
        ([1, 2], "must be a JSON object"),
        ({"x": "a\x1b[2Jb"}, "control characters"),
        ({"x": float("nan")}, "plain JSON"),
        ({"x": "y" * MAX_DETAILS_BYTES}, "the limit is"),
    ],
)
async def test_an_invalid_edit_decides_nothing(app: App, edit: Any, message: str) -> None:
    req = await app.service.request_approval(NewRequest("deploy", "Ship", {"sha": "abc"}), AGENT)
    with pytest.raises(RequestError, match=message):
        await app.service.approve_edited(req.id, edit, ALICE)
    assert (await app.service.get(req.id)).status is Status.PENDING
    assert [e.event for e in await app.store.audit(request_id=req.id)] == ["created"]


async def test_edits_are_refused_to_bystanders_agents_and_routes_that_forbid_them(app: App) -> None:
    svc = app.service
    req = await svc.request_approval(NewRequest("refund", "Refund", {"amount": 30000}, {"amount": 30000}), AGENT)
    assert req.route == "large-refunds"  # alice alone
    with pytest.raises(NotAllowedError, match="not an approver"):
        await svc.approve_edited(req.id, {"amount": 1}, BOB)
    with pytest.raises(RequestError, match="only a human"):
        await svc.approve_edited(req.id, {"amount": 1}, AGENT)
    fixed = await svc.request_approval(NewRequest("fixed_thing", "Do it", {"x": 1}), AGENT)
    with pytest.raises(NotAllowedError, match="allow_edit = false"):
        await svc.approve_edited(fixed.id, {"x": 2}, ALICE)
    pair = await svc.request_approval(NewRequest("pair_deploy", "Ship", {"x": 1}), AGENT)
    with pytest.raises(NotAllowedError, match="needs 2 approvals"):
        await svc.approve_edited(pair.id, {"x": 2}, ALICE)
    for r in (req, fixed, pair):
        assert (await svc.get(r.id)).status is Status.PENDING
    assert (await svc.decide(fixed.id, True, ALICE)).changed  # a plain approval still works there


async def test_an_edit_racing_a_plain_approval_makes_one_decision(config_path: Path) -> None:
    config = load_config(config_path)
    async with open_app(config) as one, open_app(config) as other:  # two connections, as two processes
        for _ in range(5):
            req = await one.service.request_approval(NewRequest("deploy", "Ship", {"env": "prod"}), AGENT)
            edited, plain = await asyncio.gather(
                one.service.approve_edited(req.id, {"env": "staging"}, ALICE),
                other.service.decide(req.id, True, BOB),
            )
            assert [edited.changed, plain.changed].count(True) == 1
            final = await one.service.get(req.id)
            assert final.status is Status.APPROVED
            if edited.changed:
                assert final.decided_by == "alice" and final.edited_details == {"env": "staging"}
            else:
                assert final.decided_by == "bob" and final.edited_details is None
            decided = [e for e in await one.store.audit(request_id=req.id) if e.event == "approved"]
            assert len(decided) == 1


async def test_permission_prompt_runs_the_edited_input(app: App, client: Client) -> None:
    bash = {"command": "rm -rf build/", "description": "Clean the build"}
    edit = {"command": "rm -rf build/tmp", "description": "Clean the build"}

    async def approve_with_edit() -> None:
        await app.service.approve_edited(await _pending(app), edit, Actor("human", "alice", "console"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(approve_with_edit)
        result = await client.call_tool("permission_prompt", {"tool_name": "Bash", "input": bash,
                                                              "tool_use_id": "toolu_e"})  # fmt: skip
    assert json.loads(result.content[0].text) == {"behavior": "allow", "updatedInput": edit}  # type: ignore[union-attr]


async def test_the_hook_answers_with_the_edited_input_and_the_console_shows_the_edit(config_path: Path) -> None:
    proc = run_hook(config_path, event("PreToolUse", "Bash", {"command": "make deploy"}, "t-edit"))
    with anyio.fail_after(30):
        while not (rows := json.loads(cli("pending", "--json", config=config_path).stdout)):
            await anyio.wait_all_tasks_blocked()
    rid = rows[0]["request_id"]
    bad = subprocess.run([SIGNOFF, "approve", rid, "--edit", "-", "--as", "alice", "--config", str(config_path)],
                         input="make deploy-staging", capture_output=True, text=True, env=subprocess_env(),
                         timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr and "nothing was decided" in bad.stderr
    bad = subprocess.run([SIGNOFF, "approve", rid, "--edit", "-", "--as", "alice", "--config", str(config_path)],
                         input='["make"]', capture_output=True, text=True, env=subprocess_env(), timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "must be a JSON object" in bad.stderr
    assert json.loads(cli("pending", "--json", config=config_path).stdout)[0]["request_id"] == rid  # still pending
    edit_file = config_path.parent / "edit.json"
    edit_file.write_text(json.dumps({"command": "make deploy-staging"}))
    ok = cli("approve", rid, "--edit", str(edit_file), "--as", "alice", config=config_path)
    assert ok.returncode == 0, ok.stderr
    assert '-  "command": "make deploy"' in ok.stdout and '+  "command": "make deploy-staging"' in ok.stdout
    assert f"{rid} approved with changes by alice." in ok.stdout
    out = finish(proc)["hookSpecificOutput"]
    assert out["permissionDecision"] == "allow" and out["updatedInput"] == {"command": "make deploy-staging"}
    shown = cli("show", rid, config=config_path).stdout
    assert "Edited details" in shown and "make deploy-staging" in shown
    as_json = json.loads(cli("show", rid, "--json", config=config_path).stdout)
    assert as_json["details"] == {"command": "make deploy"}
    assert as_json["edited_details"] == {"command": "make deploy-staging"}
    assert cli("audit", "verify", config=config_path).returncode == 0


async def test_the_proxy_forwards_the_edited_arguments(write_config: Callable[[str], Path], tmp_path: Path) -> None:
    cfg = write_config(PROXY_CONFIG)
    folder = tmp_path / "notes"
    folder.mkdir()
    progress = Progress()
    results: list[CallToolResult] = []
    with anyio.fail_after(30):
        async with proxy_client(cfg, *UPSTREAM, str(folder)) as c, anyio.create_task_group() as tg:

            async def write() -> None:
                results.append(await c.call_tool("write_note", {"name": "b.txt", "text": "draft"},
                                                 progress_callback=progress))  # fmt: skip

            tg.start_soon(write)
            await progress.filed.wait()
            async with opened(cfg) as app:
                decision = await app.service.approve_edited(
                    progress.request_id, {"name": "b.txt", "text": "final"}, Actor("human", "alice", "telegram")
                )
            assert decision.changed
    assert not results[0].is_error, results[0].content
    assert (folder / "b.txt").read_text() == "final"  # the approved arguments, not the agent's


async def test_an_agent_cannot_name_a_route_that_allows_edits_when_its_own_does_not(
    write_config: Callable[..., Path],
) -> None:
    from signoff.server.service import NewRequest

    path = write_config("""
        [store]
        path = "named.db"
        [approvers.alice]
        [[routes]]
        name = "no-edits"
        match = { action = "deploy" }
        approvers = ["alice"]
        allow_edit = false
        [[routes]]
        name = "edits"
        match = { action = "deploy" }
        approvers = ["alice"]
    """)
    async with open_app(load_config(path), background=False) as app:
        with pytest.raises(RequestError, match="cannot be used for this request"):
            await app.service.request_approval(NewRequest("deploy", "ship", route="edits"),
                                               Actor("agent", "claude-code", "mcp"))  # fmt: skip
