"""What the end-to-end modules share: the real Claude Code from npm (``make e2e`` sets
SIGNOFF_E2E_BIN), the fake Messages API, the fake Telegram, a throwaway HOME and a config."""

from __future__ import annotations

import os
import subprocess
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from tests.conftest import subprocess_env
from tests.fake_anthropic import FakeAnthropic, fake_anthropic
from tests.fake_telegram import FakeTelegram, fake_telegram

BIN = os.environ.get("SIGNOFF_E2E_BIN")
NEEDS_NPM = pytest.mark.skipif(not BIN, reason="end-to-end: run `make e2e` (needs node and npm)")
ALICE = 111
BASH = {"command": "echo approved > e2e.txt", "description": "Write e2e.txt"}


def claude() -> str:
    return str(Path(BIN or "") / "claude")


def config_text(api_base_url: str) -> str:
    """Reads are approved at once; everything else goes to alice on the (fake) Telegram."""
    return textwrap.dedent(f"""
        [store]
        path = "signoff.db"
        [server]
        port = 0
        [telegram]
        api_base_url = "{api_base_url}"
        lease_ttl = "3s"
        [approvers.alice]
        telegram_user_id = {ALICE}
        [[routes]]
        name = "reads"
        match = {{ action = ["Read", "Glob", "Grep"] }}
        auto = "approve"
        [[routes]]
        name = "default"
        approvers = ["alice"]
    """)


@dataclass
class World:
    home: Path
    work: Path
    config: Path
    telegram: FakeTelegram
    api: FakeAnthropic

    def env(self, **extra: str) -> dict[str, str]:
        return subprocess_env(HOME=str(self.home), ANTHROPIC_BASE_URL=self.api.url, ANTHROPIC_API_KEY="sk-ant-e2e",
                              DISABLE_AUTOUPDATER="1", CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
                              MCP_TIMEOUT="120000",  # a loaded machine starts an npx server slowly
                              SIGNOFF_TELEGRAM_TOKEN=self.telegram.token, **extra)  # fmt: skip


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with fake_telegram() as tg, fake_anthropic("Bash", BASH) as api:
        config = tmp_path / "signoff.toml"
        config.write_text(config_text(tg.api_base_url))
        (tmp_path / "home").mkdir()
        (tmp_path / "work").mkdir()
        yield World(tmp_path / "home", tmp_path / "work", config, tg, api)
        assert tg.conflicts == 0


async def run_claude(w: World, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return await anyio.run_process([claude(), *args], cwd=w.work, env=env or w.env(), check=False)


async def press(w: World, button: str, reason: str | None = None) -> None:
    """Wait (bounded) for alice's prompt about BASH and press ``button`` (then give ``reason``)."""
    msg = await w.telegram.wait_for(lambda: next((m for m in w.telegram.chat(ALICE) if m.buttons()), None), 90)
    assert "Bash" in msg.text and "echo approved &gt; e2e.txt" in msg.text
    await w.telegram.press(ALICE, msg, msg.button(button))
    if reason is not None:
        question = await w.telegram.wait_for(
            lambda: next((m for m in w.telegram.chat(ALICE) if "Why reject" in m.text), None)
        )
        await w.telegram.say(ALICE, ALICE, reason, reply_to=question)
