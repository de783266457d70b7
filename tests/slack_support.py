"""What the Slack test modules share: the fake Slack with signoff's tokens set, filing a request,
and reading what a person sees in a message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from signoff.server.app import App
from signoff.server.models import Actor
from signoff.server.service import NewRequest

from .fake_slack import APP_TOKEN, BOT_TOKEN, FakeSlack, Message, fake_slack

AGENT = Actor("agent", "claude-code", "mcp")
PREFIX = "signoff:"  # every action_id signoff gives a button


@asynccontextmanager
async def slack_for_signoff(
    monkeypatch: pytest.MonkeyPatch, *, paced: bool = True, **options: Any
) -> AsyncIterator[FakeSlack]:
    """The fake Slack, with the bot and app tokens in the environment (open_app runs Slack on it).
    It ends by checking that signoff made no call Slack refuses (and, when ``paced``, kept to
    about one post a second per channel)."""
    async with fake_slack(**options) as fake:
        monkeypatch.setenv("SIGNOFF_SLACK_BOT_TOKEN", BOT_TOKEN)
        monkeypatch.setenv("SIGNOFF_SLACK_APP_TOKEN", APP_TOKEN)
        yield fake
        assert not fake.errors, f"signoff made calls Slack refuses: {fake.errors}"
        if paced:
            assert fake.rate_violations() == 0


async def file(app: App, action: str = "deploy", summary: str = "Ship v2", **kw: Any) -> str:
    return (await app.service.request_approval(NewRequest(action, summary, **kw), AGENT)).id


def text_of(message: Message) -> str:
    """Everything a person reads in the message: its blocks' texts."""
    parts = [message.text]
    for block in message.blocks:
        for item in [block.get("text"), *(block.get("elements") or []), *(block.get("fields") or [])]:
            if isinstance(item, dict) and isinstance(item.get("text"), str):
                parts.append(item["text"])
    return "\n".join(parts)


async def prompt_in(fake: FakeSlack, channel: str, request_id: str) -> Message:
    """The prompt (a message with buttons) about ``request_id`` in ``channel``, once it is there."""
    return await fake.wait_for(
        lambda: next((m for m in fake.channel(channel) if request_id in text_of(m) and m.buttons()), None)
    )
