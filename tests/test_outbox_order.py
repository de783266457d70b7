"""A new prompt reaches its chat before the edits waiting there, and is not paced by them.

The outbox is driven directly, through the real python-telegram-bot against the fake Bot API.
Each ``Outbox`` stands for one lease holder (its pacing is its own), so "a while later" is a
new one rather than a sleep.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from telegram.ext import ExtBot

from signoff.adapters.telegram.buttons import ButtonSigner, new_key
from signoff.adapters.telegram.outbox import Outbox
from signoff.server.app import App, open_app
from signoff.server.channels import ChannelService
from signoff.server.config import load_config
from signoff.server.models import Actor
from signoff.server.service import NewRequest

from .fake_telegram import FakeTelegram, fake_telegram

pytestmark = pytest.mark.anyio

ALICE = 111
AGENT = Actor("agent", "claude-code", "mcp")
ALICE_HERSELF = Actor("human", "alice", "console")
CONFIG = """
[store]
path = "signoff.db"
[telegram]
api_base_url = "{api}"
[approvers.alice]
telegram_user_id = 111
[[routes]]
name = "default"
approvers = ["alice"]
"""


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with fake_telegram() as f:
        yield f


@pytest.fixture
async def app(fake: FakeTelegram, write_config: Callable[[str], Path]) -> AsyncIterator[App]:
    # No token in the environment: nothing drains the outbox but the Outbox objects below.
    config = load_config(write_config(CONFIG.format(api=fake.api_base_url)))
    async with open_app(config) as opened:
        yield opened


@asynccontextmanager
async def holder(app: App, fake: FakeTelegram) -> AsyncIterator[Outbox]:
    """One lease holder's outbox, on a bot of its own."""
    bot = ExtBot(fake.token, base_url=fake.api_base_url)
    await bot.initialize()
    try:
        signer = ButtonSigner(await app.store.setting("telegram_callback_key", new_key))
        yield Outbox(ChannelService(app.service, "telegram"), bot, signer)
    finally:
        await bot.shutdown()


async def file(app: App, action: str) -> str:
    return (await app.service.request_approval(NewRequest(action, f"Run {action}"), AGENT)).id


def to_alice(fake: FakeTelegram) -> list[tuple[str, str]]:
    """Every call to alice's chat, in order: (method, text)."""
    return [(m, str(p.get("text", ""))) for m, p in fake.calls if m in ("sendMessage", "editMessageText")
            and int(p["chat_id"]) == ALICE]  # fmt: skip


async def test_a_new_prompt_goes_before_the_edits_waiting_in_its_chat(app: App, fake: FakeTelegram) -> None:
    first = await file(app, "deploy")
    async with holder(app, fake) as outbox:
        await outbox.drain()
    assert [m for m, _ in to_alice(fake)] == ["sendMessage"]
    await app.service.decide(first, True, ALICE_HERSELF)  # its prompt is now due for an edit
    second = await file(app, "migrate")  # filed after the decision: its row comes later
    async with holder(app, fake) as outbox:
        await outbox.drain()
    method, text = to_alice(fake)[1]
    assert method == "sendMessage" and second in text, "the new prompt went out first"


async def test_a_prompt_right_after_an_edit_is_not_paced_by_it(app: App, fake: FakeTelegram) -> None:
    first = await file(app, "deploy")
    async with holder(app, fake) as outbox:
        await outbox.drain()
    await app.service.decide(first, True, ALICE_HERSELF)
    async with holder(app, fake) as outbox:
        await outbox.drain()  # the edit of the first prompt
        assert [m for m, _ in to_alice(fake)] == ["sendMessage", "editMessageText"]
        second = await file(app, "migrate")
        await outbox.drain()  # at once: the edit just made does not hold the prompt back
        method, text = to_alice(fake)[-1]
        assert method == "sendMessage" and second in text
