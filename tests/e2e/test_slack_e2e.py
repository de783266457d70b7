"""End to end in Slack with the real Claude Code (`make e2e`): docs/slack.md's steps, with the fake
Slack (tests/fake_slack.py) standing in for the workspace and tests/fake_anthropic.py for the model.

Claude Code asks for one Bash call; signoff's hook (docs/claude-code.md's block) files it; the
prompt reaches alice's DM in Slack; a test presses Approve (the command runs) or Reject with
reason (it does not, and the model reads why).
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from tests.conftest import SIGNOFF, subprocess_env
from tests.fake_anthropic import FakeAnthropic, fake_anthropic
from tests.fake_slack import APP_TOKEN, BOT_TOKEN, U_ALICE, FakeSlack, Message, fake_slack

from .conftest import BASH, NEEDS_NPM, claude

pytestmark = [pytest.mark.anyio, NEEDS_NPM]


@dataclass
class SlackWorld:
    home: Path
    work: Path
    config: Path
    slack: FakeSlack
    api: FakeAnthropic

    def env(self) -> dict[str, str]:
        return subprocess_env(HOME=str(self.home), ANTHROPIC_BASE_URL=self.api.url, ANTHROPIC_API_KEY="sk-ant-e2e",
                              DISABLE_AUTOUPDATER="1", CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
                              SIGNOFF_SLACK_BOT_TOKEN=BOT_TOKEN, SIGNOFF_SLACK_APP_TOKEN=APP_TOKEN)  # fmt: skip


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[SlackWorld]:
    async with fake_slack() as slack, fake_anthropic("Bash", BASH) as api:
        config = tmp_path / "signoff.toml"
        config.write_text(
            textwrap.dedent(f"""
            [store]
            path = "signoff.db"
            [slack]
            api_base_url = "{slack.api_url}"
            lease_ttl = "3s"
            [approvers.alice]
            slack_user_id = "{U_ALICE}"
            [[routes]]
            name = "default"
            approvers = ["alice"]
        """)
        )
        for folder in ("home", "work/.claude"):
            (tmp_path / folder).mkdir(parents=True)
        (tmp_path / "work/.claude/settings.json").write_text(json.dumps({"hooks": {"PreToolUse": [{
            "matcher": "Bash|Edit|MultiEdit|Write|WebFetch",
            "hooks": [{"type": "command", "timeout": 600, "command": f"{SIGNOFF} hook --config {config}"}]}]}}))  # fmt: skip
        yield SlackWorld(tmp_path / "home", tmp_path / "work", config, slack, api)
        assert not slack.errors, slack.errors


async def run_claude(w: SlackWorld, *args: str) -> subprocess.CompletedProcess[bytes]:
    return await anyio.run_process([claude(), *args], cwd=w.work, env=w.env(), check=False)


def shows(message: Message, text: str) -> bool:
    return text in json.dumps(message.blocks)


async def press(w: SlackWorld, action: str, reason: str | None = None) -> None:
    """Wait (bounded) for alice's prompt about BASH in her DM and press ``action``."""
    msg = await w.slack.wait_for(lambda: next((m for m in w.slack.dm(U_ALICE) if m.buttons()), None), 90)
    assert shows(msg, "Bash") and shows(msg, "echo approved &gt; e2e.txt")
    await w.slack.press(U_ALICE, msg, f"signoff:{action}")
    if reason is not None:
        view = await w.slack.wait_for(lambda: next((v for v in w.slack.views.values() if v.user == U_ALICE), None))
        await w.slack.submit_view(U_ALICE, view.id, {"reason": reason})


@pytest.mark.parametrize("approve", [True, False])
async def test_a_claude_code_request_decided_in_slack(world: SlackWorld, approve: bool) -> None:
    add = await run_claude(world, "mcp", "add", "signoff", "-e", f"SIGNOFF_SLACK_BOT_TOKEN={BOT_TOKEN}",
                           "-e", f"SIGNOFF_SLACK_APP_TOKEN={APP_TOKEN}", "--", SIGNOFF, "mcp", "--config",
                           str(world.config))  # fmt: skip
    assert add.returncode == 0, add.stderr
    async with anyio.create_task_group() as tg:
        tg.start_soon(press, world, "approve" if approve else "reason", None if approve else "not on a Friday")
        result = await run_claude(world, "-p", "write the file", "--output-format", "json")
    out = json.loads(result.stdout)
    if approve:
        assert (world.work / "e2e.txt").read_text().strip() == "approved", result.stdout
    else:
        assert not (world.work / "e2e.txt").exists()
        assert len(out["permission_denials"]) == 1
        assert "Rejected by alice: not on a Friday" in json.dumps(world.api.tool_results())
    # Slack shows the outcome on the prompt, without buttons.
    prompt = next(m for m in world.slack.dm(U_ALICE) if shows(m, "Bash"))
    await world.slack.wait_for(lambda: not prompt.buttons(), 30)
