"""Questions (``ask_human``) in Telegram: the real MCP client and service, python-telegram-bot
against the fake Bot API. A question is answered with an option's button or in the approver's
own words (a reply prompt), never approved or rejected; its prompts show who answered and what."""

from __future__ import annotations

import textwrap
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import Implementation

from signoff.adapters.telegram.buttons import APPROVE, ButtonSigner, new_key
from signoff.adapters.telegram.questions import (
    escalated_text_for,
    prompt_text_for,
    question_keyboard,
    reminder_text_for,
    show_text_for,
)
from signoff.adapters.telegram.render import MAX_TEXT, digest_keyboard, digest_view, length
from signoff.server.app import App, open_app
from signoff.server.config import load_config
from signoff.server.mcp_tools import build_mcp
from signoff.server.models import Actor, ApprovalRequest, Status
from signoff.server.service import NewRequest

from .conftest import SIGNOFF, subprocess_env
from .fake_telegram import FakeTelegram, Message
from .policies import Clock, answer_to

pytestmark = pytest.mark.anyio

ALICE, BOB, CAROL, LEAD, MALLORY = 111, 222, 333, 444, 666
GROUP = -100555
AGENT = Actor("agent", "claude-code", "mcp")
NOT_VALID = "This button is not valid."


def questions_config(api: str) -> str:
    return textwrap.dedent(f"""
        [store]
        path = "signoff.db"
        [server]
        port = 0
        [telegram]
        api_base_url = "{api}"
        lease_ttl = "3s"
        [approvers.alice]
        telegram_user_id = {ALICE}
        [approvers.bob]
        telegram_user_id = {BOB}
        [approvers.carol]
        telegram_user_id = {CAROL}
        telegram_chat_id = {GROUP}
        [approvers.lead]
        telegram_user_id = {LEAD}
        [[routes]]
        name = "team-questions"
        match = {{ action = "ask_human.team" }}
        approvers = ["carol"]
        [[routes]]
        name = "slow-questions"
        match = {{ action = "ask_human.slow" }}
        approvers = ["alice"]
        timeout = "1h"
        reminder = "15m"
        escalation = [{{ after = "10m", approvers = ["lead"] }}]
        [[routes]]
        name = "default"
        approvers = ["alice", "bob"]
    """)


@pytest.fixture
def config_path(fake: FakeTelegram, write_config: Callable[..., Path]) -> Path:
    return write_config(questions_config(fake.api_base_url))  # conftest's `fake` sets the token


@pytest.fixture
async def client(app: App) -> AsyncIterator[Client]:
    async with Client(build_mcp(app.service, transport="memory"),
                      client_info=Implementation(name="claude-code", version="2")) as c:  # fmt: skip
        yield c


async def ask(client: Client, question: str, **kw: Any) -> str:
    filed = (await client.call_tool("ask_human", {"question": question, **kw})).structured_content
    assert filed is not None and filed["status"] == "pending", filed
    return str(filed["request_id"])


async def check(client: Client, rid: str) -> dict[str, Any]:
    checked = (await client.call_tool("check_decision", {"request_id": rid})).structured_content
    assert checked is not None
    return checked


async def question_for(app: App, question: str = "Which env?", *, topic: str | None = None, **kw: Any) -> str:
    action = "ask_human" if topic is None else f"ask_human.{topic}"
    new = NewRequest(action, question, kind="question", **kw)
    return (await app.service.request_approval(new, AGENT)).id


async def prompt_for(fake: FakeTelegram, chat_id: int, rid: str) -> Message:
    return await fake.wait_for(lambda: next((m for m in fake.chat(chat_id) if rid in m.text and m.buttons()), None))


async def reply_prompt(fake: FakeTelegram, chat_id: int, rid: str, n: int = 1) -> Message:
    """The ``n``-th reply prompt asking for an answer to ``rid`` in ``chat_id``."""

    def asked() -> list[Message]:
        return [m for m in fake.chat(chat_id) if "Your answer to" in m.text and rid in m.text]

    found: list[Message] = await fake.wait_for(lambda: len(asked()) >= n and asked())
    return found[n - 1]


async def refused(app: App, rid: str) -> list[tuple[str, str]]:
    return [(e.actor, (e.data or {})["action"]) for e in await app.store.audit(request_id=rid) if e.event == "refused"]


async def signer(app: App) -> ButtonSigner:
    return ButtonSigner(await app.store.setting("telegram_callback_key", lambda: "unused"))


async def test_an_option_answers_the_question_and_the_agent_gets_it(
    fake: FakeTelegram, app: App, client: Client
) -> None:
    rid = await ask(client, "Deploy to which environment?", options=["staging", "production"],
                    details={"sha": "abc123"})  # fmt: skip
    a, b = await prompt_for(fake, ALICE, rid), await prompt_for(fake, BOB, rid)
    assert a.text.startswith("❓ <b>Question from claude-code</b>") and "Approval needed" not in a.text
    assert "Deploy to which environment?" in a.text and "1. staging\n2. production" in a.text and "abc123" in a.text
    assert "expires in" in a.text and "Route <b>default</b>" in a.text
    assert [btn["text"] for btn in a.buttons()] == ["staging", "production", "✍️ Answer…"]  # nothing to approve
    bobs = b.button("staging")
    cq = await fake.press(ALICE, a, a.button("production"))
    assert await answer_to(fake, cq) == "Answered 💬"
    checked = await check(client, rid)
    assert (checked["status"], checked["answer"], checked["answered_by"]) == ("answered", "production", "alice")
    for msg in (a, b):  # every prompt shows the answer, and loses its buttons
        await fake.wait_for(lambda m=msg: not m.buttons() and "💬 <b>Answered by alice</b>" in m.text)
        assert m_answer(msg) == "production"
    late = await fake.press(BOB, b, bobs)  # pressed before his prompt was edited
    assert (await answer_to(fake, late)).startswith("Already answered by alice at ")
    assert (await app.service.get(rid)).answer == "production"
    events = [(e.event, e.actor, e.data) for e in await app.store.audit(request_id=rid)]
    assert events[-1] == ("answered", "alice", {"answer": "production"})
    assert [e for e in events if e[0] == "answered"] == [events[-1]]


def m_answer(msg: Message) -> str:
    """The answer as a prompt shows it (after "Answered by …: ")."""
    return msg.text.rsplit("</b>", 1)[1].split(": ", 1)[1]


async def test_a_second_press_after_the_answer_changes_nothing(fake: FakeTelegram, app: App, client: Client) -> None:
    rid = await ask(client, "Which env?", options=["staging", "production"])
    a, b = await prompt_for(fake, ALICE, rid), await prompt_for(fake, BOB, rid)
    staging, production = b.button("staging"), b.button("production")  # bob's buttons, before any answer
    assert await answer_to(fake, await fake.press(ALICE, a, a.button("staging"))) == "Answered 💬"
    for data in (production, staging, b.button("Answer")):  # bob, late, on his own prompt
        assert (await answer_to(fake, await fake.press(BOB, b, data))).startswith("Already answered by alice at ")
    checked = await check(client, rid)
    assert (checked["status"], checked["answer"], checked["answered_by"]) == ("answered", "staging", "alice")
    assert not [m for m in fake.chat(BOB) if "Your answer to" in m.text]  # no reply prompt once answered


async def test_an_answer_in_the_approvers_own_words(fake: FakeTelegram, app: App, client: Client) -> None:
    rid = await ask(client, "What should the release be called?")
    a, b = await prompt_for(fake, ALICE, rid), await prompt_for(fake, BOB, rid)
    assert [btn["text"] for btn in b.buttons()] == ["✍️ Answer…"]
    cq = await fake.press(BOB, b, b.button("Answer"))
    assert await answer_to(fake, cq) == "Reply to my next message with your answer."
    asked = await reply_prompt(fake, BOB, rid)
    assert "What should the release be called?" in asked.text and asked.reply_markup == {
        "force_reply": True, "selective": True, "input_field_placeholder": "Your answer, for the agent"}  # fmt: skip
    await fake.say(MALLORY, BOB, "mallory's name", reply_to=asked)  # a bystander
    await fake.say(ALICE, BOB, "alice speaks for bob", reply_to=asked)  # an approver, but not the one asked
    await fake.say(BOB, BOB, "  \n ", reply_to=asked)  # empty: asked again, nothing answered
    again = await reply_prompt(fake, BOB, rid, 2)
    assert again.text.startswith("That answer is empty.\n💬 Your answer to")
    assert await refused(app, rid) == [(f"telegram:{MALLORY}", "q"), ("alice", "q")]
    assert (await app.service.get(rid)).status is Status.PENDING
    await fake.say(BOB, BOB, "Call it <b>Aurora</b> & ship\non Monday", reply_to=again)
    await fake.wait_for(lambda: any(m.text == f"Answered <code>{rid}</code>." for m in fake.chat(BOB)))
    checked = await check(client, rid)
    assert (checked["status"], checked["answered_by"]) == ("answered", "bob")
    assert checked["answer"] == "Call it <b>Aurora</b> & ship\non Monday"
    for msg in (a, b):  # escaped, line break kept
        await fake.wait_for(lambda m=msg: not m.buttons() and "Answered by bob" in m.text)
        assert "Call it &lt;b&gt;Aurora&lt;/b&gt; &amp; ship\non Monday" in msg.text
    await fake.say(BOB, BOB, "another name", reply_to=asked)  # the first prompt is spent
    await fake.wait_for(lambda: any(m.text.startswith("Already answered by bob") for m in fake.chat(BOB)))
    assert (await app.service.get(rid)).answer == checked["answer"]


async def test_a_bystanders_press_is_refused_and_audited(fake: FakeTelegram, app: App, client: Client) -> None:
    rid = await ask(client, "Which env?", options=["staging", "production"], topic="team")
    g = await prompt_for(fake, GROUP, rid)  # carol's prompts go to the group
    for data in (g.button("staging"), g.button("Answer")):
        cq = await fake.press(MALLORY, g, data)
        assert await answer_to(fake, cq) == "You are not an approver of this request."
    assert not [m for m in fake.chat(GROUP) if "Your answer to" in m.text]
    assert (await app.service.get(rid)).status is Status.PENDING
    assert await refused(app, rid) == [(f"telegram:{MALLORY}", "o0"), (f"telegram:{MALLORY}", "q")]
    assert await answer_to(fake, await fake.press(CAROL, g, g.button("production"))) == "Answered 💬"
    checked = await check(client, rid)
    assert (checked["status"], checked["answer"], checked["answered_by"]) == ("answered", "production", "carol")


async def test_a_forged_option_index_is_refused(fake: FakeTelegram, app: App, client: Client) -> None:
    rid = await ask(client, "Which env?", options=["staging", "production"])
    plain = (await app.service.request_approval(NewRequest("deploy", "Ship"), AGENT)).id
    a = await prompt_for(fake, ALICE, rid)
    action, hexid, mac = a.button("staging").split(":")
    keys = await signer(app)
    digest = (await app.service.get(rid)).action_digest
    forged = [
        f"o1:{hexid}:{mac}",  # staging's MAC under production's index
        f"o9:{hexid}:{mac}",
        f"{action}:{hexid}:{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}",
        keys.sign("o0", plain, digest=(await app.service.get(plain)).action_digest),  # an option on an approval
        keys.sign(APPROVE, rid, digest=digest),  # Approve on a question
        keys.sign("o0", rid, digest="0" * 64),  # made for other content
        ButtonSigner(new_key()).sign("o0", rid, digest=digest),  # another database's key
    ]
    for data in forged:
        assert await answer_to(fake, await fake.press(ALICE, a, data)) == NOT_VALID, data
    assert not await refused(app, rid)
    # Signed with our key for an index the question does not offer: refused by the core, audited.
    assert await answer_to(fake, await fake.press(ALICE, a, keys.sign("o5", rid, digest=digest))) == NOT_VALID
    assert await refused(app, rid) == [("alice", "o5")]
    assert [(await app.service.get(r)).status for r in (rid, plain)] == [Status.PENDING] * 2
    assert (await check(client, rid))["answer"] is None


async def test_an_answer_after_the_deadline_changes_nothing(fake: FakeTelegram, config_path: Path) -> None:
    clock = Clock()
    async with open_app(load_config(config_path), clock=clock) as app:
        rid = await question_for(app, options=["staging", "production"])
        a = await prompt_for(fake, ALICE, rid)
        await answer_to(fake, await fake.press(ALICE, a, a.button("Answer")))
        asked = await reply_prompt(fake, ALICE, rid)
        option = a.button("staging")
        clock.advance(3601)
        await app.service.sweep()
        await fake.wait_for(lambda: not a.buttons() and "⌛ <b>Expired</b> — nobody answered" in a.text)
        assert (await answer_to(fake, await fake.press(ALICE, a, option))).startswith("Already expired")
        await fake.say(ALICE, ALICE, "production, please", reply_to=asked)
        await fake.wait_for(lambda: any(m.text.startswith("Already expired") for m in fake.chat(ALICE)))
        req = await app.service.get(rid)
        assert (req.status, req.answer, req.decided_by) == (Status.EXPIRED, None, "timeout")
        assert [e.event for e in await app.store.audit(request_id=rid)] == ["created", "expired"]


async def test_hostile_html_in_the_question_and_options_is_text(fake: FakeTelegram, app: App, client: Client) -> None:
    evil = '<b>bold</b><a href="http://evil">x</a> & <script>alert(1)</script> </pre>'
    rid = await ask(client, evil, options=["<i>yes</i> & </pre>", 'no <a href="x">'], details={"x": evil},
                    agent_name="<b>me</b>")  # fmt: skip
    a = await prompt_for(fake, ALICE, rid)  # the fake refuses malformed HTML: delivery proves it parsed
    assert "&lt;script&gt;" in a.text and "<script>" not in a.text and 'href="http://evil"' not in a.text
    assert "1. &lt;i&gt;yes&lt;/i&gt; &amp; &lt;/pre&gt;" in a.text and "&lt;b&gt;me&lt;/b&gt;" in a.text
    assert [btn["text"] for btn in a.buttons()][:2] == ["<i>yes</i> & </pre>", 'no <a href="x">']  # plain text
    assert await answer_to(fake, await fake.press(ALICE, a, a.button("yes"))) == "Answered 💬"
    await fake.wait_for(lambda: not a.buttons() and "Answered by alice" in a.text)
    assert m_answer(a) == "&lt;i&gt;yes&lt;/i&gt; &amp; &lt;/pre&gt;"
    assert (await check(client, rid))["answer"] == "<i>yes</i> & </pre>"


async def test_an_answer_at_the_console_or_a_cancel_edits_the_prompts(
    fake: FakeTelegram, app: App, client: Client, config_path: Path
) -> None:
    rid = await ask(client, "Which env?", options=["staging", "production"])
    a = await prompt_for(fake, ALICE, rid)
    done = await anyio.run_process([SIGNOFF, "answer", rid, "--option", "2", "--as", "bob", "--config",
                                    str(config_path)], env=subprocess_env(), check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    await fake.wait_for(lambda: not a.buttons() and "💬 <b>Answered by bob</b>" in a.text)
    assert m_answer(a) == "production"
    cancelled = await ask(client, "Still needed?")
    c = await prompt_for(fake, BOB, cancelled)
    await client.call_tool("cancel_request", {"request_id": cancelled})
    await fake.wait_for(lambda: not c.buttons() and "🚫 <b>Cancelled</b> by the agent" in c.text)


async def test_pending_show_reminders_and_escalation(fake: FakeTelegram, config_path: Path) -> None:
    clock = Clock()
    async with open_app(load_config(config_path), clock=clock) as app:
        rid = await question_for(app, "Is the <freeze> over?", topic="slow", options=["yes", "no"])
        a = await prompt_for(fake, ALICE, rid)
        assert "Topic <b>slow</b> · Route <b>slow-questions</b>" in a.text
        await fake.say(ALICE, ALICE, "/pending")
        await fake.wait_for(lambda: any("1 request(s) waiting for you, 1 of them question(s):" in m.text
                                        for m in fake.chat(ALICE)))  # fmt: skip
        again = await fake.wait_for(lambda: [m for m in fake.chat(ALICE) if rid in m.text and m.buttons()][1:])
        assert [btn["text"] for btn in again[0].buttons()] == ["yes", "no", "✍️ Answer…"]
        await fake.say(ALICE, ALICE, f"/show {rid}")
        shown = await fake.wait_for(
            lambda: next((m for m in fake.chat(ALICE) if m.text.startswith("❓") and not m.buttons()), None)
        )
        assert "Is the &lt;freeze&gt; over?" in shown.text
        clock.advance(10 * 60 + 1)
        await app.service.sweep()
        lead = await prompt_for(fake, LEAD, rid)
        assert lead.text.startswith("❓") and "Escalated to lead" in lead.text
        note = await fake.wait_for(lambda: next((m for m in fake.chat(ALICE) if m.text.startswith("⬆️")), None))
        assert "The question <b>Is the &lt;freeze&gt; over?</b>" in note.text and "may answer it now" in note.text
        clock.advance(5 * 60)
        await app.service.sweep()
        reminder = await fake.wait_for(lambda: next((m for m in fake.chat(LEAD) if m.text.startswith("⏰")), None))
        assert reminder.reply_to == lead.message_id and "Still waiting for your answer" in reminder.text
        assert await answer_to(fake, await fake.press(LEAD, lead, lead.button("no"))) == "Answered 💬"
        for msg in (a, lead):
            await fake.wait_for(lambda m=msg: not m.buttons() and "Answered by lead" in m.text)


# --- pure rendering: long answers, digests ----------------------------------------------------


def question(**kw: Any) -> ApprovalRequest:
    now = time.time()
    base = ApprovalRequest(
        id="req_0123456789ab", action="ask_human", summary="Which env?", details=None, metadata={}, route="default",
        route_snapshot={"allow_bulk": True}, approvers=["alice"], requested_by="claude-code", requested_via="mcp",
        claimed_requester=None, idempotency_key=None, content_hash="h", status=Status.PENDING, on_timeout="reject",
        created_at=now, expires_at=now + 3600, decided_at=None, decided_by=None, decided_kind=None, decided_via=None,
        reason=None, kind="question", options=["staging", "production"], action_digest="d" * 64,
    )  # fmt: skip
    return replace(base, **kw)


def test_a_long_answer_is_trimmed_within_telegrams_limit() -> None:
    now = time.time()
    answer = "&<>" * 2000 + "\n" + "😀" * 600
    req = question(summary="q" * 4000, details={"x": "y" * 10000}, status=Status.ANSWERED, answer=answer,
                   decided_by="alice", decided_at=now)  # fmt: skip
    for text in (prompt_text_for(req, now), show_text_for(req, now)):
        assert length(text) <= MAX_TEXT and "💬 <b>Answered by alice</b>" in text and text.endswith("…")
    expired = prompt_text_for(question(status=Status.EXPIRED, decided_at=now), now)
    assert expired.endswith(
        "\n\n⌛ <b>Expired</b> — nobody answered at " + time.strftime("%H:%M UTC", time.gmtime(now))
    )


def test_reminders_and_escalation_notes_of_a_question() -> None:
    now = time.time()
    req = question(summary="Ship <it>?")
    assert reminder_text_for(req, now).startswith("⏰ Still waiting for your answer: <b>Ship &lt;it&gt;?</b>")
    assert "may answer it now" in escalated_text_for(req)
    assert "Approval needed" not in prompt_text_for(req, now)
    labels = [b.text for row in question_keyboard(req, ButtonSigner(new_key())).inline_keyboard for b in row]
    assert labels == ["staging", "production", "✍️ Answer…"]
    ten = question(options=[f"option {i}" for i in range(10)])
    datas = [b.callback_data for row in question_keyboard(ten, ButtonSigner(new_key())).inline_keyboard for b in row]
    assert [str(d).split(":")[0] for d in datas] == [f"o{i}" for i in range(10)] + ["q"]
    assert all(len(str(d).encode()) <= 64 for d in datas)


def test_a_digest_says_what_is_a_question_and_offers_no_bulk_buttons_for_it() -> None:
    now = time.time()
    asks = [question(id=f"req_00000000000{i}", summary=f"<q{i}>") for i in range(2)]
    approval = question(id="req_0000000000a1", action="refund", summary="Refund", kind="approval", options=None)
    text, listed = digest_view(asks, 0, now)
    assert "2 × question" in text and "❓ question: &lt;q0&gt;" in text and "answered one by one" in text
    assert len(listed) == 2
    markup = digest_keyboard(listed, 7, ALICE, ButtonSigner(new_key()))
    assert markup is not None and [b.text for b in markup.inline_keyboard[0]] == ["🔎 Review each"]
    text, listed = digest_view([*asks, approval], 0, now)
    assert "1 × refund" in text and "skip the questions" in text
    markup = digest_keyboard(listed, 8, ALICE, ButtonSigner(new_key()))
    assert markup is not None
    assert [b.text for b in markup.inline_keyboard[0]] == ["🔎 Review each", "✅ Approve all", "❌ Reject all"]
