"""Every failure of a hook is a decision, never a fall-through (Claude Code runs the tool on exit 1)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import Implementation

from signoff.server.app import open_app
from signoff.server.config import load_config
from signoff.server.mcp_tools import build_mcp

from ..conftest import BASIC_CONFIG, SIGNOFF, subprocess_env

pytestmark = pytest.mark.anyio

DEEP = '{"hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": ' + "[" * 100_000 + "]" * 100_000 + "}"
GOOD = json.dumps({"hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": {"command": "ls"},
                   "tool_use_id": "t1", "session_id": "s", "cwd": "/tmp"})  # fmt: skip


def hook(config: Path, stdin: str, *extra: str, stdout: Any = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SIGNOFF, "hook", "--config", str(config), "--fallback", "deny", "--timeout", "1", *extra],
                          input=stdin, stdout=stdout, stderr=subprocess.PIPE, text=True, env=subprocess_env(),
                          timeout=60)  # fmt: skip


def denied(proc: subprocess.CompletedProcess[str], event: str = "PreToolUse") -> str:
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)["hookSpecificOutput"]
    assert out["hookEventName"] == event
    if event == "PermissionRequest":
        assert out["decision"]["behavior"] == "deny"
        return str(out["decision"]["message"])
    assert out["permissionDecision"] == "deny"
    return str(out["permissionDecisionReason"])


@pytest.mark.parametrize(
    "stdin",
    ["[]", '"x"', "null", "", "{", "7", DEEP, '{"tool_name": "Bash"}', '{"tool_name": "Bash", "tool_input": "rm -rf /"}',
     '{"tool_name": ["Bash"], "tool_input": {}}', '{"hook_event_name": 5, "tool_name": "Bash", "tool_input": {}}',
     '{"tool_name": "Bash", "tool_input": {}, "cwd": 3}', '{"tool_name": "Bash", "tool_input": {}, "tool_use_id": {}}',
     '{"tool_name": "Bash", "tool_input": {"command": "ls\\u001b[2J"}}', '{"tool_name": "' + "B" * 5000 + '", "tool_input": {}}'],
    ids=["list", "string", "null", "empty", "truncated", "number", "deep", "no-input", "input-not-object",
         "name-not-string", "event-not-string", "cwd-not-string", "id-not-string", "control-char", "huge-name"],
)  # fmt: skip
def test_bad_input_is_the_fallback_decision(config_path: Path, stdin: str) -> None:
    proc = hook(config_path, stdin)
    denied(proc)
    assert len(proc.stdout) < 1000  # short: nothing of the input is echoed back


def test_a_permission_request_with_bad_input_is_denied_in_its_own_terms(config_path: Path) -> None:
    stdin = json.dumps({"hook_event_name": "PermissionRequest", "tool_name": "Bash", "tool_input": None})
    denied(hook(config_path, stdin), "PermissionRequest")


SQLITE_FILE = pytest.mark.sqlite_only
PROBLEMS = ["missing", "bad-toml", "invalid", "deep-toml"]


@pytest.mark.parametrize(
    "problem", [*PROBLEMS, *(pytest.param(p, marks=SQLITE_FILE) for p in ("db-is-a-folder", "db-not-sqlite"))]
)
def test_an_unusable_config_or_database_is_the_fallback_decision(tmp_path: Path, problem: str) -> None:
    config = tmp_path / "signoff.toml"
    if problem == "bad-toml":
        config.write_text("[[routes]\nname=", encoding="utf-8")
    elif problem == "invalid":
        config.write_text("[[routes]]\nnme = 'x'\n", encoding="utf-8")
    elif problem == "deep-toml":
        config.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    elif problem == "db-is-a-folder":
        (tmp_path / "db").mkdir()
        config.write_text("[store]\npath = 'db'\n[[routes]]\nname = 'default'\n", encoding="utf-8")
    elif problem == "db-not-sqlite":
        (tmp_path / "x.db").write_bytes(b"this is not a database" * 100)
        config.write_text("[store]\npath = 'x.db'\n[[routes]]\nname = 'default'\n", encoding="utf-8")
    proc = hook(config, GOOD)
    assert "signoff" in denied(proc)
    assert "Traceback" not in proc.stderr


def test_with_ask_the_fallback_hands_it_to_the_terminal(config_path: Path) -> None:
    proc = subprocess.run([SIGNOFF, "hook", "--config", str(config_path)], input="[]", capture_output=True,
                          text=True, env=subprocess_env(), timeout=60)  # fmt: skip
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["hookSpecificOutput"]["permissionDecision"] == "ask"


def test_when_even_the_answer_cannot_be_written_the_hook_blocks(tmp_path: Path) -> None:
    config = tmp_path / "signoff.toml"
    config.write_text("[[routes]\n", encoding="utf-8")  # fails fast, then the answer meets a closed pipe
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = hook(config, GOOD, stdout=write_end)
    finally:
        os.close(write_end)
    assert proc.returncode == 2  # Claude Code's blocking code
    assert "blocking the tool call" in proc.stderr


async def test_permission_prompt_denies_every_malformed_call(tmp_path: Path) -> None:
    path = tmp_path / "signoff.toml"
    path.write_text(BASIC_CONFIG, encoding="utf-8")
    async with open_app(load_config(path)) as app:
        mcp = build_mcp(app.service, transport="memory")
        async with Client(mcp, client_info=Implementation(name="claude-code", version="2")) as client:
            for args in ({"tool_name": "Bash", "input": "rm -rf /"}, {"tool_name": 5, "input": {}},
                         {"tool_name": "Bash", "input": {}, "tool_use_id": {"x": 1}}, {"input": {}},
                         {"tool_name": "B" * 100_000, "input": {}},
                         {"tool_name": "Bash", "input": {"command": "x" * 200_000}}):  # fmt: skip
                result = await client.call_tool("permission_prompt", args)
                assert not result.is_error
                text = result.content[0].text  # type: ignore[union-attr]
                answer = json.loads(text)
                assert answer["behavior"] == "deny" and len(text) <= 600, (args.keys(), text[:200])
