"""Questions (``ask_human``) in Slack: the real MCP client and service, the real slack_sdk against
the fake Slack, a real SQLite file. A question's prompt offers its answers as buttons and "✍️ Answer…"
(a modal for the approver's own words); it is never approved or rejected, and the first answer wins.
The renderings are also checked as pure functions, with the same hostile text as every prompt."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import Implementation

from signoff.adapters.slack import questions, render
from signoff.adapters.slack.buttons import ANSWER_MODAL, NOTE_MODAL, SlackSigner
from signoff.server.app import App, open_app
from signoff.server.config import load_config
from signoff.server.mcp_tools import build_mcp
from signoff.server.models import ApprovalRequest, Status

from .fake_slack import C_TEAM, U_ALICE, U_BOB, FakeSlack, Message, View, dm_id
from .policies import Clock
from .procs import cli
from .slack_support import PREFIX, file, prompt_in, slack_for_signoff, text_of
from .test_slack_render import HOSTILE, NOW, SIGNER, all_text, assert_message, assert_safe_mrkdwn, assert_view, final
from .test_slack_render import request as approval

pytestmark = pytest.mark.anyio

ANSWER_VIEW, NOTE_VIEW = "signoff:answer", "signoff:note"
NOT_VALID = "This button is not valid."
EMPTY = "Write your answer, or press one of the offered answers on the message."
INERT = "ZQX <!channel> *bold* <http://x|y> `tick`"  # what an agent might try to make Slack parse


def config_text(api: str, extra: str = "") -> str:
    return extra + textwrap.dedent(f"""
        [store]
        path = "signoff.db"
        [server]
        port = 0
        [slack]
        api_base_url = "{api}"
        lease_ttl = "3s"
        [approvers.alice]
        slack_user_id = "{U_ALICE}"
        [approvers.bob]
        slack_user_id = "{U_BOB}"
        slack_channel = "{C_TEAM}"
        [[routes]]
        name = "team-questions"
        match = {{ action = "ask_human.team" }}
        approvers = ["bob"]
        [[routes]]
        name = "shared-questions"
        match = {{ action = "ask_human.shared" }}
        approvers = ["alice", "bob"]
        [[routes]]
        name = "questions"
        match = {{ action = "ask_human*" }}
        approvers = ["alice"]
        timeout = "1h"
        reminder = "15m"
        escalation = [{{ after = "10m", approvers = ["bob"] }}]
        [[routes]]
        name = "bulk"
        match = {{ action = "bulk_*" }}
        approvers = ["alice"]
        allow_bulk = true
        [[routes]]
        name = "default"
        approvers = ["alice", "bob"]
    """)


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeSlack]:
    async with slack_for_signoff(monkeypatch) as f:
        yield f


@pytest.fixture
def config_path(fake: FakeSlack, write_config: Callable[..., Path]) -> Path:
    return write_config(config_text(fake.api_url))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def app(config_path: Path, fake: FakeSlack, clock: Clock) -> AsyncIterator[App]:
    async with open_app(load_config(config_path), clock=clock) as opened:
        await fake.wait_for(lambda: fake.live_connections >= 1)
        yield opened


@pytest.fixture
async def agent(app: App) -> AsyncIterator[Client]:
    async with Client(build_mcp(app.service, transport="memory"),
                      client_info=Implementation(name="claude-code", version="2")) as client:  # fmt: skip
        yield client


async def ask(agent: Client, **args: Any) -> str:
    """The agent asks (``ask_human``, not waiting); the question's request id."""
    result = await agent.call_tool("ask_human", {"wait_seconds": 0} | args)
    assert not result.is_error and result.structured_content is not None, result.content
    assert result.structured_content["status"] == "pending"
    return str(result.structured_content["request_id"])


async def check(agent: Client, rid: str) -> dict[str, Any]:
    result = await agent.call_tool("check_decision", {"request_id": rid})
    assert not result.is_error and result.structured_content is not None, result.content
    return result.structured_content


async def ended(app: App, rid: str) -> ApprovalRequest:
    with anyio.fail_after(10):
        return await app.service.wait(rid, 10)


def actions(message: Message) -> list[str]:
    return [b["action_id"].removeprefix(PREFIX) for b in message.buttons()]


async def opened(fake: FakeSlack, user: str, callback: str = ANSWER_VIEW, seen: int = 0) -> View:
    """The (``seen``+1)-th modal ``user`` has with ``callback``, once Slack has it."""
    return await fake.wait_for(
        lambda: next(
            iter([v for v in fake.views.values() if v.user == user and v.callback_id == callback][seen:]), None
        )
    )


async def told(fake: FakeSlack, user: str, seen: int = 0) -> Message:
    """The (``seen``+1)-th ephemeral message ``user`` got."""
    return await fake.wait_for(lambda: next(iter(fake.ephemerals_for(user)[seen:]), None))


async def submit_as(fake: FakeSlack, user: str, view: View, callback: str, metadata: str, text: str) -> Any:
    """A submission by ``user`` of ``view``, claiming ``callback`` and ``metadata``: the ack's payload."""
    box = next(b for b in view.view["blocks"] if b["type"] == "input")
    payload = fake.view_submission_payload(user, view.id, {box["block_id"]: text})
    payload["view"] |= {"callback_id": callback, "private_metadata": metadata}
    state = payload["view"]["state"]["values"]
    state[callback.removeprefix("signoff:")] = next(iter(state.values()))  # the input under the claimed kind's block
    ack = await fake._ack_of(await fake.deliver("interactive", payload), 3)
    return ack.get("payload")


async def events(app: App, rid: str) -> list[str]:
    return [e.event for e in await app.store.audit(request_id=rid)]


def view_text(view: View) -> str:
    return "\n".join(str((b.get("text") or {}).get("text") or "") for b in view.view["blocks"])


# --- through the fake Slack ---------------------------------------------------------------------------


async def test_an_offered_answer_answers_and_the_agent_reads_it(fake: FakeSlack, app: App, agent: Client) -> None:
    rid = await ask(agent, question="Which region should the new bucket live in?", options=["eu-west-1", "us-east-1"],
                    details={"bucket": "logs-2024"}, agent_name="infra-bot")  # fmt: skip
    a = await prompt_in(fake, dm_id(U_ALICE), rid)
    shown = text_of(a)
    assert a.blocks[0]["text"]["text"] == "❓ Question from claude-code"
    assert "Which region should the new bucket live in?" in shown and "logs-2024" in shown  # the question, details
    assert "calls itself `infra-bot`" in shown and "Route `questions`" in shown and "expires" in shown
    assert "1. `eu-west-1`\n2. `us-east-1`" in shown
    assert actions(a) == ["option0", "option1", "answer"]  # no Approve, Reject, grant or Edit
    assert [b["text"]["text"] for b in a.buttons()] == ["eu-west-1", "us-east-1", "✍️ Answer…"]
    assert not fake.channel(C_TEAM)  # bob is no approver of this route

    await fake.press(U_ALICE, a, PREFIX + "option1")
    req = await ended(app, rid)
    assert (req.status, req.answer, req.decided_by, req.decided_via) == (Status.ANSWERED, "us-east-1", "alice", "slack")
    out = await check(agent, rid)
    assert (out["status"], out["answer"], out["answered_by"]) == ("answered", "us-east-1", "alice")
    await fake.wait_for(lambda: not a.buttons() and "💬 *Answered* by `alice`" in text_of(a))
    assert "`us-east-1`" in text_of(a) and a.text == "Answered: `Which region should the new bucket live in?`"
    answered = (await app.store.audit(request_id=rid))[-1]
    assert (answered.event, answered.actor, answered.channel, answered.data) == (
        "answered", "alice", "slack", {"answer": "us-east-1"})  # fmt: skip
    assert not fake.ephemerals_for(U_ALICE)  # the edited prompt says it all


async def test_the_answer_modal_answers_in_free_text_and_refuses_an_empty_one(
    fake: FakeSlack, app: App, agent: Client
) -> None:
    rid = await ask(agent, question="What should the release be called?")
    a = await prompt_in(fake, dm_id(U_ALICE), rid)
    assert actions(a) == ["answer"] and "Offered answers" not in text_of(a)
    await fake.press(U_ALICE, a, PREFIX + "answer")
    view = await opened(fake, U_ALICE)
    assert "What should the release be called?" in view_text(view) and rid in view_text(view)
    [box] = [b for b in view.view["blocks"] if b["type"] == "input"]
    assert {"type": "plain_text_input", "multiline": True, "max_length": 2000}.items() <= box["element"].items()
    assert view.view["submit"]["text"] == "Answer"

    ack = await fake.submit_view(U_ALICE, view.id, {"answer": "  \n "})
    assert ack["payload"] == {"response_action": "errors", "errors": {"answer": EMPTY}}
    assert (await app.service.get(rid)).status is Status.PENDING and await events(app, rid) == ["created"]
    ack = await fake.submit_view(U_ALICE, view.id, {"answer": "x\x1b[2J"})  # what the core refuses: said in the modal
    assert ack["payload"]["response_action"] == "errors" and "control characters" in ack["payload"]["errors"]["answer"]

    ack = await fake.submit_view(U_ALICE, view.id, {"answer": " Northwind\nand tag it v3 "})
    assert "payload" not in ack and view.closed  # an empty ack closes the modal
    out = await check(agent, rid)
    assert (out["status"], out["answer"], out["answered_by"]) == ("answered", "Northwind\nand tag it v3", "alice")
    await fake.wait_for(lambda: not a.buttons() and "💬 *Answered* by `alice`" in text_of(a))
    assert "```\nNorthwind\nand tag it v3\n```" in text_of(a)  # several lines: a code block
    assert await events(app, rid) == ["created", "answered"]


async def test_a_bystander_is_refused_and_audited(fake: FakeSlack, app: App, agent: Client) -> None:
    rid = await ask(agent, question="Can the team freeze deploys on Friday?", options=["yes", "no"], topic="team")
    b = await prompt_in(fake, C_TEAM, rid)  # bob answers team questions; his prompts go to the team channel
    await fake.press(U_ALICE, b, PREFIX + "option0")
    assert (await told(fake, U_ALICE)).text == "You are not an approver of this request."
    await fake.press(U_ALICE, b, PREFIX + "answer")  # nor may she open the answer modal
    assert (await told(fake, U_ALICE, 1)).text == "You are not an approver of this request."
    assert not [v for v in fake.views.values() if v.user == U_ALICE]
    assert (await app.service.get(rid)).status is Status.PENDING
    refused = [e for e in await app.store.audit(request_id=rid) if e.event == "refused"]
    assert [(e.actor, e.channel, (e.data or {})["action"]) for e in refused] == [
        (f"slack:{U_ALICE}", "slack", "option0"), (f"slack:{U_ALICE}", "slack", "answer")]  # fmt: skip
    await fake.press(U_BOB, b, PREFIX + "option1")
    assert (await ended(app, rid)).answer == "no"


async def test_the_first_answer_wins_a_second_changes_nothing(fake: FakeSlack, app: App, agent: Client) -> None:
    rid = await ask(agent, question="Which database?", options=["postgres", "sqlite"], topic="shared")
    a, b = await prompt_in(fake, dm_id(U_ALICE), rid), await prompt_in(fake, C_TEAM, rid)
    await fake.press(U_ALICE, a, PREFIX + "answer")  # alice starts writing …
    view = await opened(fake, U_ALICE)
    late_press = fake.block_actions_payload(U_ALICE, a, PREFIX + "option0")  # … and has a button under her finger
    await fake.press(U_BOB, b, PREFIX + "option1")  # bob answers first
    assert (await ended(app, rid)).decided_by == "bob"
    for message in (a, b):
        await fake.wait_for(lambda m=message: not m.buttons() and "*Answered* by `bob`" in text_of(m))

    ack = await fake.submit_view(U_ALICE, view.id, {"answer": "postgres, obviously"})
    assert ack["payload"]["response_action"] == "update"  # the modal tells her; it decides nothing
    assert "*Answered* by `bob`" in view_text(view) and "`sqlite`" in view_text(view)
    assert "Your answer was not used." in view_text(view) and not view.view.get("submit")
    await fake.deliver("interactive", late_press)
    assert (await told(fake, U_ALICE)).text.startswith("Already answered by `bob`")
    req = await app.service.get(rid)
    assert (req.answer, req.decided_by) == ("sqlite", "bob")
    assert await events(app, rid) == ["created", "answered"]


async def test_an_answer_after_expiry_changes_nothing(fake: FakeSlack, app: App, agent: Client, clock: Clock) -> None:
    rid = await ask(agent, question="Still needed?", options=["yes", "no"])
    a = await prompt_in(fake, dm_id(U_ALICE), rid)
    await fake.press(U_ALICE, a, PREFIX + "answer")
    view = await opened(fake, U_ALICE)
    late_press = fake.block_actions_payload(U_ALICE, a, PREFIX + "option0")
    clock.advance(2 * 3600)
    await app.service.sweep()
    assert (await ended(app, rid)).status is Status.EXPIRED
    await fake.wait_for(lambda: not a.buttons() and "⌛ *Expired* — nobody answered in time" in text_of(a))

    ack = await fake.submit_view(U_ALICE, view.id, {"answer": "yes"})
    assert ack["payload"]["response_action"] == "update" and "nobody answered" in view_text(view)
    await fake.deliver("interactive", late_press)
    assert (await told(fake, U_ALICE)).text.startswith("Already expired")
    out = await check(agent, rid)
    assert (out["status"], out["answer"], out["answered_by"]) == ("expired", None, None)
    assert "answered" not in await events(app, rid)


async def test_forged_options_and_tampered_metadata_are_refused(fake: FakeSlack, app: App, agent: Client) -> None:
    rid = await ask(agent, question="Which one?", options=["left", "right"])
    a = await prompt_in(fake, dm_id(U_ALICE), rid)
    req = await app.service.get(rid)
    key = await app.store.setting("slack_button_key", lambda: pytest.fail("the key exists"))
    ours = SlackSigner(key)  # what only signoff can make: values signed with its key

    def press_with(value: str) -> dict[str, Any]:
        payload = fake.block_actions_payload(U_ALICE, a, PREFIX + "option0")
        payload["actions"][0]["value"] = value
        return payload

    value = a.find(PREFIX + "option0")["value"]
    forged = [
        value.replace(":option0:", ":option1:"),  # another index under option0's MAC
        value[:-1] + ("A" if value[-1] != "A" else "B"),  # one character of the MAC changed
        ours.request("approve", rid, req.action_digest),  # a signed Approve: a question is never approved
        ours.request("option5", rid, req.action_digest),  # a signed option the question does not offer
    ]
    for n, bad in enumerate(forged):
        await fake.deliver("interactive", press_with(bad))
        assert (await told(fake, U_ALICE, n)).text == NOT_VALID
    refused = [e for e in await app.store.audit(request_id=rid) if e.event == "refused"]
    assert [(e.data or {}).get("why") for e in refused] == ["no such option on this question"]  # the signed one

    await fake.press(U_ALICE, a, PREFIX + "answer")
    view = await opened(fake, U_ALICE)
    meta = view.private_metadata
    tampered = meta[:-1] + ("A" if meta[-1] != "A" else "B")
    assert (await submit_as(fake, U_ALICE, view, ANSWER_VIEW, tampered, "left"))["errors"] == {"answer": NOT_VALID}
    # bob submitting alice's modal; a note modal's metadata (for this very prompt) as an answer …
    assert (await submit_as(fake, U_BOB, view, ANSWER_VIEW, meta, "left"))["response_action"] == "errors"
    note = ours.modal(rid, req.action_digest, U_ALICE, f"{a.channel}:{a.ts}", NOTE_MODAL)
    assert (await submit_as(fake, U_ALICE, view, ANSWER_VIEW, note, "left"))["response_action"] == "errors"
    # … and the answer modal's metadata under the note modal's callback: it can approve nothing.
    assert (await submit_as(fake, U_ALICE, view, NOTE_VIEW, meta, "left"))["response_action"] == "errors"
    assert ours.verify_modal(meta, U_ALICE, ANSWER_MODAL) == (rid, f"{a.channel}:{a.ts}")
    assert (await app.service.get(rid)).status is Status.PENDING
    assert "answered" not in await events(app, rid) and "approved" not in await events(app, rid)


async def test_hostile_question_and_options_render_inert(fake: FakeSlack, app: App, agent: Client) -> None:
    rid = await ask(agent, question=INERT, options=["<!channel>", "*bold* ZQX", "<http://x|y>"],
                    details={"note": INERT}, agent_name="<@U123> ZQX")  # fmt: skip
    a = await prompt_in(fake, dm_id(U_ALICE), rid)
    assert_message(a.text, a.blocks)  # Slack accepts it; nothing of the agent's outside code or escaped
    labels = [b["text"]["text"] for b in a.buttons()]
    assert labels[:3] == ["&lt;!channel&gt;", "*bold* ZQX", "&lt;http://x|y&gt;"]  # plain text: nothing parsed
    assert "<!channel>" not in text_of(a) and "&lt;!channel&gt;" in text_of(a)
    await fake.press(U_ALICE, a, PREFIX + "option2")
    assert (await ended(app, rid)).answer == "<http://x|y>"  # the stored option, as the agent offered it
    await fake.wait_for(lambda: not a.buttons() and "`&lt;http://x|y&gt;`" in text_of(a))
    assert_message(a.text, a.blocks)


async def test_a_console_answer_updates_the_slack_prompt(
    fake: FakeSlack, app: App, agent: Client, config_path: Path
) -> None:
    rid = await ask(agent, question="Which branch?", options=["main", "next"])
    a = await prompt_in(fake, dm_id(U_ALICE), rid)
    done = await anyio.to_thread.run_sync(partial(cli, "answer", rid, "next, then rebase", "--as", "alice",
                                                  config=config_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    await fake.wait_for(lambda: not a.buttons() and "*Answered* by `alice`" in text_of(a))
    assert "`next, then rebase`" in text_of(a)


async def test_reminders_escalation_and_pending_speak_of_the_question(
    fake: FakeSlack, app: App, agent: Client, clock: Clock
) -> None:
    rid = await ask(agent, question="Rotate the keys tonight?", options=["yes", "no"])
    a = await prompt_in(fake, dm_id(U_ALICE), rid)
    clock.advance(10 * 60 + 1)  # escalated: bob gets the question, alice a note in her prompt's thread
    await app.service.sweep()
    b = await prompt_in(fake, C_TEAM, rid)
    assert "Escalated to `bob`" in text_of(b) and actions(b) == ["option0", "option1", "answer"]
    [note] = await fake.wait_for(lambda: [m for m in fake.channel(a.channel) if m.thread_ts == a.ts])
    assert note.text.startswith("⬆️ The question `Rotate the keys tonight?`") and "may answer it now" in note.text
    clock.advance(5 * 60)  # 15 min: a reminder in reply to each prompt
    await app.service.sweep()
    for prompt in (a, b):
        reminder = await fake.wait_for(
            lambda p=prompt: next((m for m in fake.channel(p.channel) if m.thread_ts == p.ts and "⏰" in m.text), None)
        )
        assert reminder.text.startswith("⏰ Still waiting for your answer: `Rotate the keys tonight?`")
        assert_safe_mrkdwn(reminder.text)

    ack = await fake.slash(U_BOB, C_TEAM, "/signoff", "pending")
    assert "1 request(s) waiting for you, 1 of them question(s) to answer" in ack["payload"]["text"]
    sent = await fake.wait_for(lambda: [m for m in fake.dm(U_BOB) if rid in text_of(m) and m.buttons()])
    assert actions(sent[0]) == ["option0", "option1", "answer"]
    await fake.press(U_BOB, sent[0], PREFIX + "option0")
    assert (await ended(app, rid)).answer == "yes"
    ack = await fake.slash(U_ALICE, dm_id(U_ALICE), "/signoff", "show " + rid)
    assert "💬 *Answered* by `bob`" in str(ack["payload"]["blocks"])


async def test_a_digest_never_bulk_decides_a_question(fake: FakeSlack, write_config: Callable[..., Path]) -> None:
    config = load_config(write_config(config_text(fake.api_url, "[defaults]\ndigest_threshold = 2\n")))
    async with open_app(config) as app, Client(build_mcp(app.service, transport="memory")) as agent:
        await fake.wait_for(lambda: fake.live_connections >= 1)
        await digest_of_questions(fake, app, agent)


async def digest_of_questions(fake: FakeSlack, app: App, agent: Client) -> None:
    asked = [await ask(agent, question=f"Question {i}?") for i in range(4)]
    filed = [await file(app, action=f"bulk_{i}", summary=f"item {i}") for i in range(4)]

    def digest() -> Message | None:
        return next((m for m in fake.channel(dm_id(U_ALICE)) if "Review each" in str(m.buttons())), None)

    shown = await fake.wait_for(lambda: (d := digest()) and "8 pending" in text_of(d) and d)
    assert "4 × ❓ question" in text_of(shown) and "answered one by one" in text_of(shown)
    approve_all = shown.find(PREFIX + "approve_all")
    assert "Approve all 4 requests" in approve_all["confirm"]["text"]["text"]  # the approvals, not the questions
    await fake.press(U_ALICE, shown, PREFIX + "approve_all")
    for rid in filed:
        assert (await ended(app, rid)).status is Status.APPROVED
    assert (await told(fake, U_ALICE)).text == "Approved 4 of 4."
    for rid in asked:
        assert (await app.service.get(rid)).status is Status.PENDING
    # Only questions left: no bulk buttons at all; "Review each" sends them to answer.
    await fake.wait_for(lambda: "4 pending" in text_of(shown) and actions(shown) == ["review_each"])
    await fake.press(U_ALICE, shown, PREFIX + "review_each")
    sent = await fake.wait_for(
        lambda: [m for m in fake.channel(dm_id(U_ALICE)) if asked[0] in text_of(m) and "answer" in actions(m)]
    )
    await fake.press(U_ALICE, sent[0], PREFIX + "answer")
    view = await opened(fake, U_ALICE)
    assert "payload" not in await fake.submit_view(U_ALICE, view.id, {"answer": "yes"})
    assert (await ended(app, asked[0])).answer == "yes"


# --- the renderings, as pure functions ------------------------------------------------------------------


def question(text: str = "Which?", **kw: Any) -> ApprovalRequest:
    return approval(**({"action": "ask_human", "kind": "question", "summary": text, "options": ["a", "b"]} | kw))


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_in_every_question_rendering_is_inert(text: str) -> None:
    req = question(text, details={"note": text}, requested_by=text, claimed_requester=text, client_name=text + "c",
                   cwd="/srv/" + text, route=text, metadata={text: text}, options=[text[:60], "b" + text[:60]],
                   action="ask_human.t", level=1, route_snapshot={"escalation": [{"after": 60, "approvers": [text]}]})  # fmt: skip
    fallback, blocks = questions.question_prompt(req, NOW, SIGNER)
    assert_message(fallback, blocks)
    assert [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]] == [
        PREFIX + "option0", PREFIX + "option1", PREFIX + "answer"]  # fmt: skip
    for status in (Status.ANSWERED, Status.EXPIRED, Status.CANCELLED):
        done = final(req, status, decided_by=text, answer=text if status is Status.ANSWERED else None, reason=text)
        fallback, blocks = questions.question_prompt(done, NOW, SIGNER)
        assert_message(fallback, blocks)
        assert not [b for b in blocks if b["type"] == "actions"]
        assert_view(questions.late_view(done))
    assert_view(
        questions.answer_modal(req, SIGNER.modal(req.id, req.action_digest, U_ALICE, "C0TEAM:1.2", ANSWER_MODAL))
    )
    for short in (questions.reminder_for(req, NOW), questions.escalated_for(req)):
        assert_safe_mrkdwn(short)


def test_long_answers_options_and_questions_stay_within_slacks_limits() -> None:
    req = question("&<>" * 333 + "?", details={"x": "y" * 20_000}, options=[f"{i}" + "&" * 74 for i in range(10)])
    fallback, blocks = questions.question_prompt(req, NOW, SIGNER)
    assert_message(fallback, blocks)
    labels = [e["text"]["text"] for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert len(labels) == 12 and labels[-1] == "🔎 Details" and all(len(label) <= 75 for label in labels)
    done = final(req, Status.ANSWERED, answer="<&>" * 666)  # 2,000 characters that escape to 9,000
    fallback, blocks = questions.question_prompt(done, NOW, SIGNER)
    assert_message(fallback, blocks)
    assert "(cut: `signoff show req_0123456789ab` shows it all)" in all_text(blocks)
    assert_view(questions.late_view(done))


def test_a_digest_of_questions_offers_no_bulk_decision() -> None:
    qs = [replace(question(f"q{i}"), id=f"req_00000000000{i}") for i in range(3)]
    bulk = approval("bulk_x", route_snapshot={"allow_bulk": True})
    _, blocks, listed = render.digest(qs, 0, NOW, 1, "C0TEAM", SIGNER)
    assert_message("d", blocks)
    assert [e["action_id"] for e in blocks[-1]["elements"]] == [PREFIX + "review_each"] and len(listed) == 3
    _, blocks, _ = render.digest([*qs, bulk], 0, NOW, 2, "C0TEAM", SIGNER)
    assert [e["action_id"].removeprefix(PREFIX) for e in blocks[-1]["elements"]] == [
        "review_each", "approve_all", "reject_all"]  # fmt: skip
    assert "Approve all 1 requests" in blocks[-1]["elements"][1]["confirm"]["text"]["text"]
