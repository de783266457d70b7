"""Red team: ``ask_human``. An answer is never a permission, only an eligible human answers, the
agent receives exactly what the human chose, agent text stays inert and within the platforms'
limits, a topic cannot escape its routes, and migration 0010 keeps the data and the audit chain.

Every attack goes through the real interfaces: the in-memory MCP client, the service, the
channels' own handlers against the fake Telegram and the fake Slack, a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import Implementation

from signoff.adapters import console
from signoff.adapters.slack import questions as slack_questions
from signoff.adapters.telegram.buttons import ButtonSigner
from signoff.adapters.telegram.questions import prompt_text_for, question_keyboard
from signoff.adapters.telegram.render import MAX_TEXT, length
from signoff.server import audit_chain, db
from signoff.server.app import App, open_app
from signoff.server.channels import ChannelService
from signoff.server.config import load_config
from signoff.server.errors import NotAllowedError, RequestError, StoreError
from signoff.server.mcp_tools import build_mcp
from signoff.server.models import Actor, ApprovalRequest, Status
from signoff.server.service import NewRequest
from signoff.server.store import Store

from ..fake_slack import U_ALICE, U_BOB, FakeSlack, dm_id
from ..fake_telegram import FakeTelegram, Message
from ..policies import Clock, answer_to
from ..slack_support import PREFIX, prompt_in, slack_for_signoff
from ..stores import CHECK_FAILED, integrity_errors
from ..test_slack_render import SIGNER as SLACK_SIGNER
from ..test_slack_render import assert_message

pytestmark = pytest.mark.anyio

ALICE, BOB, CAROL, LEAD, SELFIE = (Actor("human", n, "web") for n in ("alice", "bob", "carol", "lead", "selfie"))
AGENT = Actor("agent", "claude-code", "mcp")
T_ALICE, T_BOB, T_CAROL, T_LEAD, T_SELFIE, T_MALLORY = 111, 222, 333, 444, 555, 666
GROUP = -100777
NOT_VALID = "This button is not valid."
NOT_APPROVER = "You are not an approver of this request."

ROUTES = """
[approvers.alice]
telegram_user_id = 111
slack_user_id = "U0ALICE"
[approvers.bob]
telegram_user_id = 222
slack_user_id = "U0BOB"
[approvers.carol]
telegram_user_id = 333
telegram_chat_id = -100777
[approvers.lead]
telegram_user_id = 444
[approvers.selfie]
telegram_user_id = 555
identities = ["claude-code"]

[[routes]]
name = "billing-questions"
match = { action = "ask_human.billing" }
approvers = ["carol"]

[[routes]]
name = "self-questions"
match = { action = "ask_human.self" }
approvers = ["selfie", "bob"]

[[routes]]
name = "only-self-questions"
match = { action = "ask_human.mine" }
approvers = ["selfie"]

[[routes]]
name = "shared-questions"
match = { action = "ask_human.shared" }
approvers = ["alice", "bob"]

[[routes]]
name = "slow-questions"
match = { action = "ask_human.slow" }
approvers = ["alice"]
timeout = "1h"
reminder = "5m"
escalation = [{ after = "10m", approvers = ["lead"] }]

[[routes]]
name = "lenient-questions"
match = { action = "ask_human.lenient" }
approvers = ["alice", "bob"]
quorum = 2
allow_bulk = true
on_timeout = "approve"
timeout = "10m"

[[routes]]
name = "bulk"
match = { action = "bulk_*" }
approvers = ["alice"]
allow_bulk = true

[[routes]]
name = "questions"
match = { action = "ask_human*" }
approvers = ["bob"]
timeout = "10m"
on_timeout = "approve"
grant_options = ["30m"]

[[routes]]
name = "default"
approvers = ["alice", "bob"]
"""
QUESTION_ROUTES = {"billing-questions", "self-questions", "only-self-questions", "shared-questions",
                   "slow-questions", "lenient-questions", "questions"}  # fmt: skip


@asynccontextmanager
async def core_app(write_config: Callable[[str], Path], clock: Clock) -> AsyncIterator[App]:
    path = write_config('[store]\npath = "signoff.db"\n' + ROUTES)
    async with open_app(load_config(path), background=False, clock=clock) as app:
        yield app


@asynccontextmanager
async def agent_client(app: App, name: str = "claude-code") -> AsyncIterator[Client]:
    async with Client(build_mcp(app.service, transport="memory"),
                      client_info=Implementation(name=name, version="1")) as c:  # fmt: skip
        yield c


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def core(write_config: Callable[[str], Path], clock: Clock) -> AsyncIterator[App]:
    async with core_app(write_config, clock) as app:
        yield app


@pytest.fixture
async def agent(core: App) -> AsyncIterator[Client]:
    async with agent_client(core) as c:
        yield c


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def error(client: Client, tool: str, **args: Any) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error, result.structured_content
    return str(result.content[0].text)  # type: ignore[union-attr]


async def ask(client: Client, question: str = "Which region?", **args: Any) -> str:
    filed = await call(client, "ask_human", question=question, **args)
    assert filed["status"] == "pending", filed
    return str(filed["request_id"])


async def finals(app: App, rid: str) -> list[str]:
    """The status changes its audit log records (not "created", "refused", "reminded", …)."""
    finals = {s.value for s in Status} - {"pending"}
    return [e.event for e in await app.store.audit(request_id=rid) if e.event in finals]


# --- (1) an answer is never a permission ----------------------------------------------------------


async def test_no_agent_tool_can_answer_approve_or_steal_a_question(core: App, agent: Client) -> None:
    """The asking agent, another agent and Claude Code's permission_prompt all try their tools on a
    pending question: nothing answers or approves it, and no approval is filed in its name."""
    rid = await ask(agent, "Deploy where?", options=["staging", "prod"], idempotency_key="k-q")
    # The same idempotency key through request_approval: never the question back, never a new approval.
    assert "idempotency_key" in await error(agent, "request_approval", action="deploy", summary="go",
                                            idempotency_key="k-q")  # fmt: skip
    for tool_name in ("ask_human", "ask_human.billing"):  # Claude Code asking to run a tool so named
        denied = await agent.call_tool("permission_prompt", {"tool_name": tool_name, "input": {"q": "x"},
                                                             "tool_use_id": f"tu-{tool_name}"})  # fmt: skip
        assert '"deny"' in str(denied.content[0].text), denied.content  # type: ignore[union-attr]
    async with agent_client(core, "intruder") as other:
        assert "unknown request_id" in await error(other, "cancel_request", request_id=rid)
        assert "unknown request_id" in await error(other, "check_decision", request_id=rid)
    with pytest.raises(RequestError, match="only a human"):
        await core.service.answer(rid, "prod", AGENT)
    with pytest.raises(RequestError, match="only a human"):
        await core.service.decide(rid, True, AGENT)
    out = await call(agent, "check_decision", request_id=rid)
    assert (out["status"], out["answer"]) == ("pending", None)
    assert [r.id for r in await core.store.list_requests()] == [rid]


async def test_an_idempotency_key_never_hands_an_approval_to_a_question(core: App, agent: Client) -> None:
    """An approved approval's key reused by ask_human (and an answered question's by
    request_approval) is refused: the agent never reads 'approved' from ask_human, nor an answer
    from request_approval."""
    approved = await call(agent, "request_approval", action="deploy", summary="Ship", idempotency_key="k1")
    assert (await core.service.decide(approved["request_id"], True, ALICE)).changed
    assert "idempotency_key" in await error(agent, "ask_human", question="Ship", idempotency_key="k1")
    qid = await ask(agent, "Ship?", idempotency_key="k2")
    assert (await core.service.answer(qid, "yes", BOB)).changed
    assert "idempotency_key" in await error(agent, "request_approval", action="ask", summary="Ship?",
                                            idempotency_key="k2")  # fmt: skip
    statuses = {r.id: r.status for r in await core.store.list_requests()}
    assert statuses == {approved["request_id"]: Status.APPROVED, qid: Status.ANSWERED}


async def test_no_route_setting_or_timer_makes_a_question_approved(core: App, agent: Client, clock: Clock) -> None:
    """A question on a route with quorum 2, bulk approval, on_timeout = "approve", reminders and
    escalation: every sweep passes, every approve path is tried; it ends expired or answered."""
    lenient = await ask(agent, "Quiet one?", topic="lenient")
    slow = await ask(agent, "Slow one?", topic="slow", options=["a", "b"])
    granted = await ask(agent, "Grantable?")  # route "questions": grant_options and on_timeout approve
    channel = ChannelService(core.service, "telegram")
    for rid in (lenient, slow, granted):
        req = await core.service.get(rid)
        with pytest.raises(NotAllowedError):
            await core.service.approve_and_grant(rid, "30m", BOB)
        try:
            bulk = await channel.decide_bulk([req], True, str(T_ALICE if rid != granted else T_BOB), "A")
        except NotAllowedError:
            pass  # the route does not allow bulk approval
        else:
            assert (bulk.done, bulk.skipped) == (0, 1)
        with pytest.raises(NotAllowedError):
            await console.decide(core.service, rid, True, None, "alice" if rid != granted else "bob")
    for _ in range(8):  # reminders, the escalation, then every deadline
        clock.advance(10 * 60)
        await core.service.sweep()
    for rid in (lenient, slow, granted):
        req = await core.service.get(rid)
        assert (req.status, req.answer, req.decided_by) == (Status.EXPIRED, None, "timeout"), rid
        assert await finals(core, rid) == ["expired"]
    assert await core.service.list_grants(everything=True) == []
    assert await core.store.read("SELECT * FROM votes") == []


async def test_the_store_refuses_a_cross_kind_compare_and_set(core: App, agent: Client) -> None:
    """Below the service: the store's own compare-and-set statements, pointed at the wrong kind."""
    qid = await ask(agent, "Which?")
    rid = (await call(agent, "request_approval", action="deploy", summary="Ship"))["request_id"]
    for status in (Status.APPROVED, Status.REJECTED):
        with pytest.raises(integrity_errors(), match=CHECK_FAILED):
            await core.store.decide(qid, status, BOB, time.time(), None)
    wrong = await core.store.answer(rid, "yes", ALICE, time.time())
    assert wrong is not None and not wrong.changed and wrong.request.status is Status.PENDING
    assert (await core.service.get(qid)).status is Status.PENDING
    assert await finals(core, qid) == [] and await finals(core, rid) == []


async def test_console_approves_no_question_and_answers_no_approval(core: App, agent: Client) -> None:
    qid = await ask(agent, "Which?", options=["x", "y"])
    rid = (await call(agent, "request_approval", action="deploy", summary="Ship"))["request_id"]
    for approve in (True, False):
        with pytest.raises(NotAllowedError, match="question"):
            await console.decide(core.service, qid, approve, "ok", "bob")
    with pytest.raises(NotAllowedError, match="question"):
        await console.decide(core.service, qid, True, None, "bob", ({"x": 1},))  # approve with an edit
    with pytest.raises(NotAllowedError, match="approval"):
        await console.answer(core.service, rid, "yes", "alice")
    with pytest.raises(NotAllowedError, match="no such approver"):
        await console.answer(core.service, qid, "x", "mallory")
    assert [(await core.service.get(i)).status for i in (qid, rid)] == [Status.PENDING, Status.PENDING]


# --- (2) only an eligible human answers -----------------------------------------------------------


async def test_racing_answers_a_cancel_and_a_sweep_give_one_outcome(core: App, agent: Client) -> None:
    for n in range(6):
        rid = await ask(agent, f"Race {n}?", topic="shared")
        results = await asyncio.gather(
            core.service.answer(rid, "from alice", ALICE),
            core.service.answer(rid, "from bob", BOB),
            core.service.cancel(rid, AGENT, "never mind"),
            core.service.sweep(),
            return_exceptions=True,
        )
        assert not [r for r in results if isinstance(r, BaseException)], results
        req = await core.service.get(rid)
        assert await finals(core, rid) == [req.status.value]  # exactly one final event
        if req.status is Status.ANSWERED:
            assert req.answer == f"from {req.decided_by}"
        else:
            assert (req.status, req.answer) == (Status.CANCELLED, None)
        again = await core.service.answer(rid, "late", ALICE)
        assert not again.changed and (await core.service.get(rid)).answer == req.answer


async def test_the_asker_cannot_answer_its_own_question(core: App, agent: Client) -> None:
    """``selfie`` is the requester (identities match "claude-code")."""
    rid = await ask(agent, "Mine?", topic="self")
    with pytest.raises(NotAllowedError, match="cannot answer"):
        await core.service.answer(rid, "yes, says me", SELFIE)
    assert (await core.service.get(rid)).status is Status.PENDING
    assert (await core.service.answer(rid, "yes", BOB)).changed
    alone = await call(agent, "ask_human", question="Only me?", topic="mine")  # nobody else may answer
    assert alone["status"] == "cancelled" and alone["answer"] is None
    assert not (await core.service.answer(alone["request_id"], "yes", SELFIE)).changed


async def test_only_the_current_approvers_of_its_route_answer(core: App, agent: Client, clock: Clock) -> None:
    billing = await ask(agent, "Invoice?", topic="billing")
    for who in (ALICE, BOB, LEAD, Actor("human", "mallory", "web")):
        with pytest.raises(NotAllowedError):
            await core.service.answer(billing, "paid", who)
    slow = await ask(agent, "Later?", topic="slow")
    with pytest.raises(NotAllowedError):  # lead may answer only once the escalation fires
        await core.service.answer(slow, "now", LEAD)
    clock.advance(10 * 60 + 1)
    await core.service.sweep()
    assert (await core.service.answer(slow, "now", LEAD)).changed
    assert (await core.service.answer(billing, "paid", CAROL)).changed
    assert [(await core.service.get(r)).decided_by for r in (billing, slow)] == ["carol", "lead"]


# --- (3) the agent receives exactly what the human chose ------------------------------------------


async def test_an_option_answer_is_exactly_the_stored_option(core: App, agent: Client) -> None:
    """An option the agent padded with spaces: pressing it must hand back that very option (or the
    option must be refused at intake) — never a third string that is in neither list."""
    result = await agent.call_tool("ask_human", {"question": "Which?", "options": ["  prod  ", "staging"]})
    if result.is_error:
        return  # refused at intake: nothing to misread
    assert result.structured_content is not None
    rid = result.structured_content["request_id"]
    req = await core.service.get(rid)
    decision = await ChannelService(core.service, "telegram").answer_option(req, 0, str(T_BOB), "o0")
    assert decision.changed
    out = await call(agent, "check_decision", request_id=rid)
    assert out["answer"] in req.options, (out["answer"], req.options)


async def test_options_that_look_the_same_or_show_nothing_are_refused(core: App, agent: Client) -> None:
    """Two buttons a human cannot tell apart (they differ only by an invisible format character),
    or a button that shows nothing: the human could not know which answer they gave."""
    for options in (["Yes", "Yes\u200b"], ["No", "N\u2060o"], ["ok", "o\u00adk"], ["\u200b", "\ufeff"]):
        result = await agent.call_tool("ask_human", {"question": "Proceed?", "options": options})
        assert result.is_error, options
    result = await agent.call_tool("ask_human", {"question": "\u200b\u2060"})
    assert result.is_error, "an invisible question was filed"


# --- (4) agent text stays inert and within limits ------------------------------------------------


async def test_hostile_or_malformed_options_and_topics_are_tool_errors(core: App, agent: Client) -> None:
    cases: list[dict[str, Any]] = [
        {"options": ["a\tb"]}, {"options": ["a\rb"]}, {"options": ["a\u2028b"]}, {"options": ["\u2066x\u2069"]},
        {"options": ["\x9bx"]}, {"options": ["x\x7f"]}, {"options": [" "]}, {"options": [1]},
        {"options": [["nested"]]}, {"options": ["a", " A "]}, {"options": ["😀" * 76]},
        {"details": {"k": "\x1b]8;;http://evil\x07x"}}, {"details": {"\u202ekey": 1}}, {"agent_name": "a\nb"},
        {"idempotency_key": "k\x00"},
    ]  # fmt: skip
    for topic in ("*", "bill*", "b?lling", "[bc]illing", ".billing", "-x", "bіlling", "ｂilling", "billing\n",
                  "billing ", "", "a" * 65, "billing/x", "billing:x", "billing\u200b"):  # fmt: skip
        cases.append({"topic": topic})
    for args in cases:
        result = await agent.call_tool("ask_human", {"question": "Which?", **args})
        assert result.is_error, args
        message = str(result.content[0].text)  # type: ignore[union-attr]
        assert len(message) <= 500, (args, message)
        hostile = [v for v in (args.get("topic"), args.get("agent_name"), args.get("idempotency_key")) if v]
        assert not [v for v in hostile if len(v) > 1 and v in message], (args, message)  # never echoed back
    assert await core.store.list_requests() == []


async def test_a_topic_reaches_only_the_route_the_operator_wrote(core: App, agent: Client) -> None:
    """Routes match the action case-sensitively and whole: a topic in other case, or longer, is
    not the billing topic; nothing reaches the billing approvers but 'billing'."""
    expect = {"billing": "billing-questions", "BILLING": "questions", "Billing": "questions",
              "billing.eu": "questions", "billing_": "questions", "bill": "questions"}  # fmt: skip
    for topic, route in expect.items():
        out = await call(agent, "ask_human", question="?", topic=topic)
        assert out["route"] == route, topic


async def test_approval_actions_shaped_like_questions_stay_off_question_routes(
    core: App, agent: Client, clock: Clock
) -> None:
    """The documented ``match = { action = "ask_human*" }`` also matches approval actions such as
    ``ask_human_cleanup``, which request_approval accepts (it refuses only ``ask_human`` and
    ``ask_human.*``). Such an approval lands on the question route, whose on_timeout = "approve"
    (inert for questions, as documented) then approves it by silence."""
    for action in ("ASK_HUMAN.billing", "Ask_Human"):  # case tricks: refused like the real thing
        result = await agent.call_tool("request_approval", {"action": action, "summary": "rm -rf /srv"})
        assert result.is_error, action
    filed: dict[str, dict[str, Any]] = {}
    for action in ("ask_human_cleanup", "ask_human-x", "ask_humanity"):
        result = await agent.call_tool("request_approval", {"action": action, "summary": "rm -rf /srv"})
        if not result.is_error:
            assert result.structured_content is not None
            filed[action] = result.structured_content
    clock.advance(11 * 60)
    await core.service.sweep()
    landed = {a: out["route"] for a, out in filed.items() if out["route"] in QUESTION_ROUTES}
    approved = {a for a, out in filed.items() if (await core.service.get(out["request_id"])).status is Status.APPROVED}
    assert not landed and not approved, f"approvals on question routes: {landed}; approved by silence: {approved}"


async def test_an_approval_cannot_name_a_question_route(core: App, agent: Client) -> None:
    for route in ("questions", "billing-questions", "lenient-questions", "only-self-questions"):
        result = await agent.call_tool("request_approval", {"action": "deploy", "summary": "x", "route": route})
        assert result.is_error or (result.structured_content or {}).get("route") not in QUESTION_ROUTES, route
    assert await core.store.list_requests() == []


async def test_a_question_and_an_approval_racing_on_one_idempotency_key(core: App, agent: Client) -> None:
    """Both kinds filed at once under the same key: one wins, the other is a tool error, and the
    winner's result is of its own kind (never an approval handed back by ask_human)."""
    for n in range(5):
        key = f"race-{n}"
        asked, requested = await asyncio.gather(
            agent.call_tool("ask_human", {"question": "Ship?", "idempotency_key": key}),
            agent.call_tool("request_approval", {"action": "deploy", "summary": "Ship?", "idempotency_key": key}),
        )
        assert asked.is_error != requested.is_error, (asked, requested)
        winner = requested if asked.is_error else asked
        assert winner.structured_content is not None
        filed = [r for r in await core.store.list_requests() if r.idempotency_key == key]
        assert [r.id for r in filed] == [winner.structured_content["request_id"]]
        assert filed[0].is_question == (winner is asked)


# --- Telegram ---------------------------------------------------------------------------------------


@asynccontextmanager
async def telegram_app(fake: FakeTelegram, write_config: Callable[[str], Path], extra: str = "") -> AsyncIterator[App]:
    text = extra + f'[store]\npath = "signoff.db"\n[telegram]\napi_base_url = "{fake.api_base_url}"\nlease_ttl = "3s"\n'
    async with open_app(load_config(write_config(text + ROUTES))) as app:
        yield app


@pytest.fixture
async def tg(fake: FakeTelegram, write_config: Callable[[str], Path], unpaced_telegram: None) -> AsyncIterator[App]:
    async with telegram_app(fake, write_config) as app:
        yield app


async def question(app: App, summary: str = "Which env?", **kw: Any) -> str:
    topic = kw.pop("topic", None)
    action = "ask_human" if topic is None else f"ask_human.{topic}"
    return (await app.service.request_approval(NewRequest(action, summary, kind="question", **kw), AGENT)).id


async def tg_prompt(fake: FakeTelegram, chat_id: int, rid: str) -> Message:
    return await fake.wait_for(lambda: next((m for m in fake.chat(chat_id) if rid in m.text and m.buttons()), None))


async def tg_refused(app: App, rid: str) -> list[tuple[str, str]]:
    return [(e.actor, (e.data or {})["action"]) for e in await app.store.audit(request_id=rid) if e.event == "refused"]


async def test_telegram_buttons_do_not_travel_between_questions_or_kinds(fake: FakeTelegram, tg: App) -> None:
    """Real, signed buttons pressed on the wrong message: a question's option on another question's
    prompt, an approval's Approve on a question's prompt, a question's option on an approval's."""
    q1 = await question(tg, "First?", topic="shared", options=["one", "two"])
    q2 = await question(tg, "Second?", topic="shared", options=["uno", "dos"])
    r = (await tg.service.request_approval(NewRequest("deploy", "Ship v2"), AGENT)).id
    m1, m2, mr = [await tg_prompt(fake, T_ALICE, rid) for rid in (q1, q2, r)]
    for message, data in ((m2, m1.button("two")), (m2, mr.button("Approve")), (mr, m1.button("one")),
                          (m1, mr.button("Reject"))):  # fmt: skip
        text = await answer_to(fake, await fake.press(T_ALICE, message, data))
        assert text != "Answered 💬" and not text.startswith(("Approved", "Rejected")), text
    assert [(await tg.service.get(x)).status for x in (q1, q2, r)] == [Status.PENDING] * 3
    assert await answer_to(fake, await fake.press(T_ALICE, m2, m2.button("dos"))) == "Answered 💬"
    assert (await tg.service.get(q2)).answer == "dos"


async def test_telegram_approver_of_another_route_cannot_answer_in_the_group(fake: FakeTelegram, tg: App) -> None:
    """carol's billing questions go to a group; alice (approver of other routes) and a bystander are
    in it. Neither answers by button, and neither by replying to carol's answer prompt."""
    rid = await question(tg, "Invoice paid?", topic="billing", options=["yes", "no"])
    g = await tg_prompt(fake, GROUP, rid)
    for user in (T_ALICE, T_MALLORY):
        for label in ("yes", "Answer"):
            assert await answer_to(fake, await fake.press(user, g, g.button(label))) == NOT_APPROVER
    assert await answer_to(fake, await fake.press(T_CAROL, g, g.button("Answer"))) == (
        "Reply to my next message with your answer.")  # fmt: skip
    asked = await fake.wait_for(lambda: next((m for m in fake.chat(GROUP) if "Your answer to" in m.text), None))
    await fake.say(T_ALICE, GROUP, "yes (alice)", reply_to=asked)
    await fake.say(T_MALLORY, GROUP, "yes (mallory)", reply_to=asked)
    await fake.say(T_ALICE, GROUP, "yes (alice, on the prompt)", reply_to=g)  # a reply to the prompt itself
    await fake.say(T_CAROL, GROUP, "no", reply_to=asked)
    await fake.wait_for(lambda: any(m.text == f"Answered <code>{rid}</code>." for m in fake.chat(GROUP)))
    req = await tg.service.get(rid)
    assert (req.answer, req.decided_by) == ("no", "carol")
    who = [actor for actor, _ in await tg_refused(tg, rid)]  # two presses and a reply each, audited
    assert who.count(f"telegram:{T_ALICE}") == 3 and who.count(f"telegram:{T_MALLORY}") == 3, who


async def test_telegram_digest_bulk_buttons_never_decide_a_question(
    fake: FakeTelegram, write_config: Callable[[str], Path], unpaced_telegram: None
) -> None:
    """Questions on a route that allows bulk approval, gathered into alice's digest with approvals:
    "Reject all" and "Approve all" decide the approvals only; the questions stay pending."""
    async with telegram_app(fake, write_config, "[defaults]\ndigest_threshold = 1\n") as app:
        asked = [await question(app, f"Question {i}?", topic="lenient") for i in range(2)]
        filed = [(await app.service.request_approval(NewRequest(f"bulk_{i}", f"item {i}"), AGENT)).id for i in range(2)]

        def digest() -> Message | None:
            found = [m for m in fake.chat(T_ALICE) if "Approve all" in str(m.buttons()) and "4 pending" in m.text]
            return found[-1] if found else None

        shown = await fake.wait_for(digest)
        text = await answer_to(fake, await fake.press(T_ALICE, shown, shown.button("Reject all")))
        assert text.startswith("Rejected 2 of 2"), text
        assert [(await app.service.get(r)).status for r in filed] == [Status.REJECTED] * 2
        assert [(await app.service.get(q)).status for q in asked] == [Status.PENDING] * 2
        assert [await finals(app, q) for q in asked] == [[], []]


async def test_telegram_hostile_answers_are_asked_again_never_stored(fake: FakeTelegram, tg: App) -> None:
    rid = await question(tg, "Name it?", topic="shared")
    a = await tg_prompt(fake, T_ALICE, rid)
    await answer_to(fake, await fake.press(T_ALICE, a, a.button("Answer")))
    hostile = ["Aurora\u202eevil", "\x1b[2J\x1b[HApproved by bob", "x" * 2001, "ok\x00", "\u2066iso\u2069"]
    for n, text in enumerate(hostile, 1):
        asked = await fake.wait_for(
            lambda n=n: ([m for m in fake.chat(T_ALICE) if "Your answer to" in m.text][n - 1 :] or [None])[0]
        )
        await fake.say(T_ALICE, T_ALICE, text, reply_to=asked)
        await fake.wait_for(lambda n=n: len([m for m in fake.chat(T_ALICE) if "Your answer to" in m.text]) > n)
        assert (await tg.service.get(rid)).status is Status.PENDING, text
    assert await finals(tg, rid) == []


async def test_telegram_a_question_at_every_limit_is_delivered_and_its_buttons_fit(fake: FakeTelegram, tg: App) -> None:
    options = ["&<>" * 25, "😀" * 75, "</code></b><a href='x'>" + "y" * 52] + [f"{n}" + "ü" * 74 for n in range(7)]
    rid = await question(tg, ("<b>&amp;</b>😀" * 100)[:1000], options=options,
                         details={"blob": "<&>" * 20_000}, claimed_requester="<b>x</b>" * 25)  # fmt: skip
    a = await tg_prompt(fake, T_BOB, rid)  # the fake refuses malformed HTML and texts over the limit
    req = await tg.service.get(rid)
    assert length(prompt_text_for(req, time.time())) <= MAX_TEXT
    datas = [b.callback_data for row in question_keyboard(req, ButtonSigner("00" * 32)).inline_keyboard for b in row]
    assert all(len(str(d).encode()) <= 64 for d in datas)
    assert [b["text"] for b in a.buttons()][:10] == options
    assert await answer_to(fake, await fake.press(T_BOB, a, a.buttons()[2]["callback_data"])) == "Answered 💬"
    assert (await tg.service.get(rid)).answer == options[2]
    await fake.wait_for(lambda: not a.buttons() and "Answered by bob" in a.text)


# --- Slack ------------------------------------------------------------------------------------------


@asynccontextmanager
async def slack_app(monkeypatch: pytest.MonkeyPatch, write_config: Callable[[str], Path]
                    ) -> AsyncIterator[tuple[FakeSlack, App]]:  # fmt: skip
    async with slack_for_signoff(monkeypatch) as fake:
        text = f'[store]\npath = "signoff.db"\n[slack]\napi_base_url = "{fake.api_url}"\nlease_ttl = "3s"\n'
        async with open_app(load_config(write_config(text + ROUTES))) as app:
            await fake.wait_for(lambda: fake.live_connections >= 1)
            yield fake, app


async def test_slack_buttons_do_not_travel_between_a_question_and_an_approval(
    monkeypatch: pytest.MonkeyPatch, write_config: Callable[[str], Path]
) -> None:
    async with slack_app(monkeypatch, write_config) as (fake, app):
        q = await question(app, "Which?", topic="shared", options=["left", "right"])
        r = (await app.service.request_approval(NewRequest("deploy", "Ship v2"), AGENT)).id
        mq, mr = await prompt_in(fake, dm_id(U_ALICE), q), await prompt_in(fake, dm_id(U_ALICE), r)

        async def press_with(message: Any, action: str, value: str) -> None:
            payload = fake.block_actions_payload(U_ALICE, message, PREFIX + action)
            payload["actions"][0]["value"] = value
            await fake.deliver("interactive", payload)

        await press_with(mq, "option0", mr.find(PREFIX + "approve")["value"])  # Approve, on the question
        await press_with(mr, "approve", mq.find(PREFIX + "option1")["value"])  # an answer, on the approval
        await press_with(mq, "option0", mr.find(PREFIX + "reject")["value"])
        await fake.wait_for(lambda: len(fake.ephemerals_for(U_ALICE)) >= 3)
        assert [(await app.service.get(x)).status for x in (q, r)] == [Status.PENDING, Status.PENDING]
        await fake.press(U_BOB, await prompt_in(fake, dm_id(U_BOB), q), PREFIX + "option1")  # the real one
        req = await app.service.wait(q, 10)
        assert (req.status, req.answer, req.decided_by) == (Status.ANSWERED, "right", "bob")


def test_slack_a_question_at_every_limit_renders_within_slacks_limits() -> None:
    now = time.time()
    base = ApprovalRequest(
        id="req_0123456789ab", action="ask_human." + "t" * 64, summary=("<!channel> *b* 😀" * 80)[:1000],
        details={"x": "<!here> `" * 6000}, metadata={}, route="r" * 100, route_snapshot={}, approvers=["alice"],
        requested_by="<@U1>" * 40, requested_via="mcp", claimed_requester="<!channel>" * 20, idempotency_key=None,
        content_hash="h", status=Status.PENDING, on_timeout="reject", created_at=now, expires_at=now + 60,
        decided_at=None, decided_by=None, decided_kind=None, decided_via=None, reason=None, kind="question",
        options=["😀" * 75, "&" * 75, "<!channel>" + "x" * 65] + [f"{n}<@U{n}>" + "`" * 60 for n in range(7)],
        action_digest="d" * 64,
    )  # fmt: skip
    for req in (base, replace(base, status=Status.ANSWERED, answer="<!channel> `x`\n" * 130, decided_at=now,
                              decided_by="bob")):  # fmt: skip
        fallback, blocks = slack_questions.question_prompt(req, now, SLACK_SIGNER)
        assert_message(fallback, blocks)


# --- (6) migration 0010 ---------------------------------------------------------------------------


OLD_SNAPSHOT = ('{"name": "default", "approvers": ["alice"], "telegram": [{"approver": "alice", "user_id": 111, '
                '"chat_id": 111}]}')  # fmt: skip
OLD_COLUMNS = ("id, action, summary, details, metadata, route, route_snapshot, approvers, requested_by, requested_via, "
               "claimed_requester, idempotency_key, content_hash, status, on_timeout, created_at, expires_at, "
               "decided_at, decided_by, decided_kind, decided_via, reason, level, next_escalation_at, "
               "next_reminder_at, session, callback_url, cwd, action_digest, client_name, edited_details, "
               "edited_digest")  # fmt: skip


async def _old_store(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store as 0009 left it, every column of ``requests`` used, decided through its triggers."""
    with monkeypatch.context() as m:
        m.setattr(db, "MIGRATIONS", [x for x in db.MIGRATIONS if x[0] < "0010"])
        async with Store.open(path) as store:
            now = time.time()
            for n, on_timeout in enumerate(("reject", "approve", "reject")):
                await store.write(
                    f"INSERT INTO requests ({OLD_COLUMNS}) VALUES (?, 'deploy', 's\nline', '{{\"a\": [1]}}', "
                    "'{\"env\": \"prod\"}', 'default', ?, '[\"alice\"]', 'agent', 'mcp', 'me', ?, ?, 'pending', ?, "
                    "?, ?, NULL, NULL, NULL, NULL, NULL, 1, ?, ?, 'sess', NULL, '/srv', ?, 'claude-code', NULL, NULL)",
                    (f"req_old{n}", OLD_SNAPSHOT, f"key{n}", f"hash{n}", on_timeout, now + n, now + 3600,
                     now + 60, now + 120, "d" * 64),
                )  # fmt: skip
            await store.write("UPDATE requests SET status = 'approved', decided_at = ?, decided_by = 'alice', "
                              "decided_kind = 'human', decided_via = 'telegram', reason = 'fine', edited_details = "
                              "'{\"a\": [2]}', edited_digest = ? WHERE id = 'req_old0'", (now + 5, "e" * 64))  # fmt: skip
            await store.write("INSERT INTO votes (request_id, approver, vote, at, via, reason) VALUES "
                              "('req_old1', 'alice', 'approve', ?, 'telegram', NULL)", (now,))  # fmt: skip
            await store.record("req_old1", "voted", ALICE, {"vote": "approve"})


def _rows(path: Path, sql: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


async def test_migration_keeps_every_column_and_the_audit_chain(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    path = tmp_path / "old.db"
    await _old_store(path, monkeypatch)
    before = _rows(path, f"SELECT {OLD_COLUMNS} FROM requests ORDER BY id")
    audit_before = _rows(path, "SELECT * FROM audit ORDER BY seq")
    assert len(before) == 3 and audit_chain.verify(audit_before)[1] is None
    async with Store.open(path) as store:
        assert await store.read("PRAGMA foreign_key_check") == []
        # The old rows keep their unique key, their approval kind, and their on_timeout.
        with pytest.raises(sqlite3.IntegrityError):
            await store.write(f"INSERT INTO requests ({OLD_COLUMNS}) SELECT 'req_dup', action, summary, details, "
                              "metadata, route, route_snapshot, approvers, requested_by, requested_via, "
                              "claimed_requester, idempotency_key, content_hash, 'pending', on_timeout, created_at, "
                              "expires_at, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, session, callback_url, cwd, "
                              "action_digest, client_name, NULL, NULL FROM requests WHERE id = 'req_old2'")  # fmt: skip
        done = await store.expire_due(time.time() + 7200)
        assert {r.id: r.status for r in done} == {"req_old1": Status.APPROVED, "req_old2": Status.EXPIRED}
        assert all(r.kind == "approval" for r in done)
    after = _rows(path, f"SELECT {OLD_COLUMNS} FROM requests ORDER BY id")
    for old, new in zip(before, after, strict=True):
        changed = {k for k in old if old[k] != new[k]}
        assert changed <= ({"status", "decided_at", "decided_by", "decided_kind", "decided_via"}
                           if old["status"] == "pending" else set()), (old["id"], changed)  # fmt: skip
    audit_after = _rows(path, "SELECT * FROM audit ORDER BY seq")
    assert audit_after[: len(audit_before)] == audit_before  # the old events, hashes and all, untouched
    count, broken = audit_chain.verify(audit_after)
    assert broken is None and count == len(audit_before) + 2


async def test_a_migration_that_would_break_a_reference_changes_nothing(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A 0009 store with a dangling reference: migrating must refuse as a whole and leave it as it was."""
    path = tmp_path / "old.db"
    await _old_store(path, monkeypatch)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("INSERT INTO votes (request_id, approver, vote, at, via, reason) VALUES "
                 "('req_gone', 'bob', 'approve', 1, 'console', NULL)")  # fmt: skip
    conn.commit()
    conn.close()
    schema = _rows(path, "SELECT type, name, sql FROM sqlite_master ORDER BY name")
    data = _rows(path, f"SELECT {OLD_COLUMNS} FROM requests ORDER BY id")
    with pytest.raises(StoreError, match="broken references"):
        async with Store.open(path):
            pass
    assert _rows(path, "SELECT type, name, sql FROM sqlite_master ORDER BY name") == schema
    assert _rows(path, f"SELECT {OLD_COLUMNS} FROM requests ORDER BY id") == data
    assert "0010_questions" not in {r["name"] for r in _rows(path, "SELECT name FROM migrations")}
