"""Sign-in links to the web inbox asked for from chat: ``/web`` to the Telegram bot and
``/signoff web`` in Slack, through the fake Bot API and the fake Slack with the real libraries.

A link goes to its approver alone — their private chat with the bot, or Slack's ephemeral
answer to the command — never to a group or a channel, and never to anyone who is not an
approver. Each link signs in once, as that approver.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from signoff.server.app import App, open_app
from signoff.server.config import load_config
from signoff.server.web_auth import WebAuth

from .fake_slack import C_TEAM, U_ALICE, U_MALLORY, FakeSlack, dm_id
from .fake_telegram import FakeTelegram, Message
from .slack_support import slack_for_signoff
from .web_support import TOKEN_IN, serve_web

pytestmark = pytest.mark.anyio

ALICE, BOB, MALLORY = 111, 222, 666
GROUP = -100555
PUBLIC = "https://signoff.example.com"

TELEGRAM_CONFIG = """
[store]
path = "signoff.db"
[server]
port = 0
[telegram]
api_base_url = "{api}"
lease_ttl = "3s"
[approvers.alice]
telegram_user_id = {alice}
[approvers.bob]
telegram_user_id = {bob}
[[routes]]
name = "default"
approvers = ["alice", "bob"]
"""

SLACK_CONFIG = """
[store]
path = "signoff.db"
[server]
port = 0
[slack]
api_base_url = "{api}"
lease_ttl = "3s"
[approvers.alice]
slack_user_id = "{alice}"
[[routes]]
name = "default"
approvers = ["alice"]
"""


@pytest.fixture
async def tg(fake: FakeTelegram, write_config: Callable[..., Path]) -> AsyncIterator[App]:
    """signoff with its bot on the fake Bot API (conftest's ``fake`` sets the token)."""
    text = TELEGRAM_CONFIG.format(api=fake.api_base_url, alice=ALICE, bob=BOB)
    async with open_app(load_config(write_config(text))) as app:
        await fake.wait_for(lambda: fake.sent("getUpdates"))  # the bot is up
        yield app


@pytest.fixture
async def slack(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeSlack]:
    async with slack_for_signoff(monkeypatch) as f:
        yield f


@pytest.fixture
def slack_extra() -> str:
    """More configuration for the Slack tests (a test overrides it with ``parametrize``)."""
    return ""


@pytest.fixture
async def sl(slack: FakeSlack, write_config: Callable[..., Path], slack_extra: str) -> AsyncIterator[App]:
    """signoff with its Slack app on the fake Slack (Socket Mode)."""
    text = SLACK_CONFIG.format(api=slack.api_url, alice=U_ALICE) + slack_extra
    async with open_app(load_config(write_config(text))) as app:
        await slack.wait_for(lambda: slack.live_connections >= 1)
        yield app


def token_of(text: str) -> str | None:
    found = TOKEN_IN.search(text)
    return found.group(1) if found else None


def links_in(fake: FakeTelegram, chat: int) -> list[Message]:
    return [m for m in fake.chat(chat) if "token=" in m.text]


async def sign_in(app: App, token: str) -> httpx.Response:
    """POST the link's token to the web inbox, as its sign-in page does; the inbox, after."""
    async with serve_web(app) as served, httpx.AsyncClient() as client:
        r = await client.post(f"{served.base}/web/login", data={"token": token})
        if r.status_code != 303:
            return r
        return await client.get(served.base + r.headers["location"])  # where a browser goes next


async def issued(app: App) -> list[tuple[str, str, bool]]:
    """Every sign-in link made: (approver, how it was asked for, used)."""
    rows = await app.store.read("SELECT approver, via, used_at IS NOT NULL FROM web_links ORDER BY created_at")
    return [(str(a), str(v), bool(u)) for a, v, u in rows]


# --- Telegram ------------------------------------------------------------------------------------


async def test_web_in_the_private_chat_sends_a_link_that_signs_in_once(fake: FakeTelegram, tg: App) -> None:
    await fake.say(ALICE, ALICE, "/web")
    sent = await fake.wait_for(lambda: next(iter(links_in(fake, ALICE)), None))
    assert sent.text.count("token=") == 1 and "http://127.0.0.1:" in sent.text and "/web/login?token=" in sent.text
    assert "works once, within 10 minutes" in sent.text
    assert "only on the machine that runs <code>signoff serve</code>" in sent.text  # no [web] public_url
    call = next(p for p in fake.sent("sendMessage") if "token=" in p["text"])
    assert int(call["chat_id"]) == ALICE and call["link_preview_options"] == {"is_disabled": True}
    token = token_of(sent.text)
    assert token is not None
    inbox = await sign_in(tg, token)
    assert inbox.status_code == 200 and "alice" in inbox.text and "Waiting for you" in inbox.text
    again = await sign_in(tg, token)  # single use
    assert again.status_code == 400 and "expired or was already used" in again.text
    assert await issued(tg) == [("alice", "telegram", True)]
    # Each /web is a new link; the first one spent changes nothing about the next.
    await fake.say(ALICE, ALICE, "/web")
    second = await fake.wait_for(lambda: links_in(fake, ALICE)[1:] and links_in(fake, ALICE)[1])
    other = token_of(second.text)
    assert other is not None and other != token
    redeemed = await WebAuth(tg.store, tg.config, time.time).redeem(other, "test")
    assert redeemed is not None and redeemed[1].approver == "alice"
    assert await WebAuth(tg.store, tg.config, time.time).redeem(other, "test") is None


async def test_web_in_a_group_sends_the_link_privately_and_none_to_the_group(fake: FakeTelegram, tg: App) -> None:
    await fake.say(ALICE, GROUP, "/web")
    sent = await fake.wait_for(lambda: next(iter(links_in(fake, ALICE)), None))
    await fake.wait_for(lambda: any("sent you a sign-in link in our private chat" in m.text for m in fake.chat(GROUP)))
    call = next(p for p in fake.sent("sendMessage") if "token=" in p["text"])
    assert call["link_preview_options"] == {"is_disabled": True}
    # Bob never started the bot: the group hears how to ask privately, still without a link.
    fake.unreachable.add(BOB)
    await fake.say(BOB, GROUP, "/web")
    told = await fake.wait_for(lambda: next((m for m in fake.chat(GROUP) if "open a private chat" in m.text), None))
    assert "@signoff_test_bot" in told.text and "/web" in told.text
    token = token_of(sent.text)
    assert token is not None
    redeemed = await WebAuth(tg.store, tg.config, time.time).redeem(token, "test")
    assert redeemed is not None and redeemed[1].approver == "alice"
    assert not links_in(fake, GROUP) and not links_in(fake, BOB)
    assert [int(p["chat_id"]) for p in fake.sent("sendMessage") if "token=" in p["text"]] == [ALICE, BOB]
    assert await WebAuth(tg.store, tg.config, time.time).redeem(token, "test") is None


async def test_web_for_someone_who_is_not_an_approver_gives_no_link(fake: FakeTelegram, tg: App) -> None:
    await fake.say(MALLORY, MALLORY, "/web")
    await fake.say(MALLORY, GROUP, "/web")
    await fake.wait_for(lambda: any("only approvers can sign in" in m.text for m in fake.chat(MALLORY)))
    await fake.wait_for(lambda: any("only approvers can sign in" in m.text for m in fake.chat(GROUP)))
    assert not any("token=" in str(p.get("text")) for p in fake.sent("sendMessage"))
    assert await issued(tg) == []


async def test_web_is_in_the_help(fake: FakeTelegram, tg: App) -> None:
    await fake.say(MALLORY, MALLORY, "/help")
    shown = await fake.wait_for(lambda: next((m for m in fake.chat(MALLORY) if "/pending" in m.text), None))
    assert "/web — a sign-in link to the web inbox" in shown.text


# --- Slack ---------------------------------------------------------------------------------------


def slack_tokens(slack: FakeSlack) -> list[str]:
    """Every place a message can show up in the fake Slack, other than a command's own answer."""
    texts = [m.text for ms in slack.messages.values() for m in ms] + [m.text for m in slack.ephemerals]
    texts += [str(body) for body in slack.hook_posts]
    return [t for t in texts if "token=" in t]


async def test_signoff_web_answers_the_approver_alone(slack: FakeSlack, sl: App) -> None:
    tokens = []
    for place in (dm_id(U_ALICE), C_TEAM):  # in a DM or a channel: the same ephemeral answer
        ack = await slack.slash(U_ALICE, place, "/signoff", "web")
        payload: dict[str, Any] = ack["payload"]
        assert payload["response_type"] == "ephemeral"
        assert payload["unfurl_links"] is False and payload["unfurl_media"] is False
        text = payload["text"]
        assert "<http://127.0.0.1:" in text and "/web/login?token=" in text and "works once" in text
        assert "only on the machine that runs `signoff serve`" in text
        token = token_of(text)
        assert token is not None
        tokens.append(token)
    assert tokens[0] != tokens[1] and not slack_tokens(slack)
    first = await WebAuth(sl.store, sl.config, time.time).redeem(tokens[0], "test")
    assert first is not None and first[1].approver == "alice"
    assert await WebAuth(sl.store, sl.config, time.time).redeem(tokens[0], "test") is None
    inbox = await sign_in(sl, tokens[1])
    assert inbox.status_code == 200 and "alice" in inbox.text
    assert (await sign_in(sl, tokens[1])).status_code == 400
    assert await issued(sl) == [("alice", "slack", True), ("alice", "slack", True)]
    help_text = (await slack.slash(U_ALICE, C_TEAM, "/signoff", ""))["payload"]["text"]
    assert "`/signoff web`" in help_text


async def test_signoff_web_refuses_someone_who_is_not_an_approver(slack: FakeSlack, sl: App) -> None:
    for place in (dm_id(U_MALLORY), C_TEAM):
        ack = await slack.slash(U_MALLORY, place, "/signoff", "web")
        assert ack["payload"]["response_type"] == "ephemeral"
        assert "only approvers can sign in" in ack["payload"]["text"] and "token=" not in ack["payload"]["text"]
    assert not slack_tokens(slack) and await issued(sl) == []


@pytest.mark.parametrize("slack_extra", [f'[web]\npublic_url = "{PUBLIC}"\n'])
async def test_a_public_url_makes_the_link(slack: FakeSlack, sl: App) -> None:
    ack = await slack.slash(U_ALICE, dm_id(U_ALICE), "/signoff", "web")
    text = ack["payload"]["text"]
    assert f"<{PUBLIC}/web/login?token=" in text and "only on the machine" not in text


@pytest.mark.parametrize("slack_extra", ["[web]\nenabled = false\n"])
async def test_no_link_when_the_web_inbox_is_off(slack: FakeSlack, sl: App) -> None:
    ack = await slack.slash(U_ALICE, dm_id(U_ALICE), "/signoff", "web")
    assert "The web inbox is off" in ack["payload"]["text"] and "token=" not in ack["payload"]["text"]
    assert await issued(sl) == []
