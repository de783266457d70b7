"""Policies, part 1: groups, reminders, escalation, quorum, self-approval, quiet hours — each the
example in docs/policies.md, on the fake Bot API, with a clock the test moves (no waiting through minutes)."""

from __future__ import annotations

import asyncio
import zoneinfo
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signoff.adapters.console import decide as console_decide
from signoff.server.app import open_app
from signoff.server.config import parse_config
from signoff.server.errors import ConfigError, NotAllowedError, RequestError
from signoff.server.models import Actor, Status, iso
from signoff.server.service import NewRequest

from .fake_telegram import FakeTelegram
from .fuzzing import OneLoop
from .policies import (
    ALICE,
    BOB,
    CAROL,
    CTO,
    LEAD,
    Clock,
    answer_to,
    example_config,
    file,
    prompt_for,
    readme_example,
)

pytestmark = pytest.mark.anyio


# --- groups, reminders, escalation ---------------------------------------------------------


@pytest.mark.usefixtures("unpaced_telegram")  # about what is sent, not when
async def test_groups_reminders_and_escalation(fake: FakeTelegram, tmp_path: Path) -> None:
    clock = Clock()
    config = example_config("escalation", fake, tmp_path)
    async with open_app(config, clock=clock) as app:
        rid = await file(app, "deploy_web")
        req = await app.service.get(rid)
        assert req.approvers == ["alice", "bob"]  # the group, expanded
        a, b = await prompt_for(fake, ALICE, rid), await prompt_for(fake, BOB, rid)
        assert not fake.chat(LEAD)

        clock.advance(10 * 60 + 1)
        await app.service.sweep()
        lead = await prompt_for(fake, LEAD, rid)
        for chat in (ALICE, BOB):  # the earlier approvers are told, and keep their buttons
            await fake.wait_for(lambda c=chat: any("escalated" in m.text and rid in m.text for m in fake.chat(c)))
        assert a.buttons() and b.buttons()
        req = await app.service.get(rid)
        assert (req.level, req.approvers) == (1, ["alice", "bob", "lead"])
        assert "Escalated to lead" in lead.text

        clock.advance(5 * 60)  # 15 min: everyone with a prompt who has not voted is reminded
        await app.service.sweep()
        for chat, prompt in ((ALICE, a), (BOB, b), (LEAD, lead)):
            reminder = await fake.wait_for(
                lambda c=chat: next((m for m in fake.chat(c) if m.text.startswith("⏰")), None)
            )
            assert reminder.reply_to == prompt.message_id and rid in reminder.text

        clock.advance(15 * 60)  # 30 min: the second level
        await app.service.sweep()
        cto = await prompt_for(fake, CTO, rid)
        cq = await fake.press(CTO, cto, cto.button("approve"))
        assert await answer_to(fake, cq) == "Approved ✅"
        for prompt in (a, b, lead, cto):
            await fake.wait_for(lambda m=prompt: not m.buttons() and "Approved" in m.text)
        events = [e.event for e in await app.store.audit(request_id=rid)]
        assert events == ["created", "escalated", "reminded", "escalated", "reminded", "approved"]


async def test_an_escalation_due_during_a_restart_fires_at_start_up(fake: FakeTelegram, tmp_path: Path) -> None:
    clock = Clock()
    config = example_config("escalation", fake, tmp_path)
    async with open_app(config, clock=clock, background=False) as app:
        rid = await file(app, "deploy_api")
    clock.advance(31 * 60)  # both levels fell due while nothing ran
    async with open_app(config, clock=clock) as app:
        req = await app.service.get(rid)  # the start-up sweep has run
        assert req.status is Status.PENDING and req.level == 2
        assert req.approvers == ["alice", "bob", "lead", "cto"]
        await prompt_for(fake, LEAD, rid)
        await prompt_for(fake, CTO, rid)
        [escalated] = [e for e in await app.store.audit(request_id=rid) if e.event == "escalated"]
        assert escalated.data == {"level": 2, "added": ["lead", "cto"]}
        clock.advance(30 * 60)  # past the deadline: on_timeout still applies
        await app.service.sweep()
        assert (await app.service.get(rid)).status is Status.EXPIRED


async def test_before_escalation_the_next_level_cannot_decide(fake: FakeTelegram, tmp_path: Path) -> None:
    config = example_config("escalation", fake, tmp_path)
    async with open_app(config, clock=Clock()) as app:
        rid = await file(app, "deploy_db")
        a = await prompt_for(fake, ALICE, rid)
        cq = await fake.press(LEAD, a, a.button("approve"))  # the lead, with alice's button
        assert await answer_to(fake, cq) == "You are not an approver of this request."
        assert (await app.service.get(rid)).status is Status.PENDING


# --- quorum and separation of duties --------------------------------------------------------


async def test_quorum_needs_two_distinct_approvers(fake: FakeTelegram, tmp_path: Path) -> None:
    config = example_config("quorum", fake, tmp_path)
    async with open_app(config, clock=Clock()) as app:
        rid = await file(app, "payout", metadata={"amount": 20000})
        a, b = await prompt_for(fake, ALICE, rid), await prompt_for(fake, BOB, rid)
        c = await prompt_for(fake, CAROL, rid)
        assert "🗳 0 of 2 approvals" in a.text
        cq = await fake.press(ALICE, a, a.button("approve"))
        assert await answer_to(fake, cq) == "Your approval counts: 1 of 2. Waiting for the others."
        for prompt in (a, b, c):  # everyone sees the progress, buttons kept
            await fake.wait_for(lambda m=prompt: "1 of 2 approvals — alice ✓" in m.text and m.buttons())
        assert await app.service.note(await app.service.get(rid)) == "1 of 2 approvals so far"
        again = await fake.press(ALICE, a, a.button("approve"))
        assert await answer_to(fake, again) == "You already voted to approve this request; waiting for the others."
        assert (await app.service.get(rid)).status is Status.PENDING

        cq = await fake.press(CAROL, c, c.button("approve"))
        assert await answer_to(fake, cq) == "Approved ✅"
        req = await app.service.get(rid)
        assert (req.status, req.decided_by) == (Status.APPROVED, "alice, carol")
        for prompt in (a, b, c):
            await fake.wait_for(lambda m=prompt: not m.buttons() and "by <b>alice, carol</b>" in m.text)
        events = [(e.event, e.actor) for e in await app.store.audit(request_id=rid)]
        assert events == [("created", "claude-code"), ("voted", "alice"), ("approved", "alice, carol")]


async def test_reminders_go_only_to_approvers_who_have_not_voted(fake: FakeTelegram, tmp_path: Path) -> None:
    clock = Clock()
    config = example_config(
        "quorum", fake, tmp_path, edit={"reject_quorum = 1 ": 'reminder = "15m"\nreject_quorum = 1 '}
    )
    async with open_app(config, clock=clock) as app:
        rid = await file(app, "payout", metadata={"amount": 10000})
        a, b, c = [await prompt_for(fake, chat, rid) for chat in (ALICE, BOB, CAROL)]
        await answer_to(fake, await fake.press(ALICE, a, a.button("approve")))
        clock.advance(15 * 60 + 1)
        await app.service.sweep()
        for chat, prompt in ((BOB, b), (CAROL, c)):
            reminder = await fake.wait_for(
                lambda c=chat: next((m for m in fake.chat(c) if m.text.startswith("⏰")), None)
            )
            assert reminder.reply_to == prompt.message_id
        [reminded] = [e for e in await app.store.audit(request_id=rid) if e.event == "reminded"]
        assert reminded.data == {"approvers": ["bob", "carol"]}
        assert not any(m.text.startswith("⏰") for m in fake.chat(ALICE))


async def test_two_approvers_pressing_at_the_same_moment(fake: FakeTelegram, tmp_path: Path) -> None:
    """Two processes on one file: both votes count once, exactly one of them decides."""
    config = example_config("quorum", fake, tmp_path)
    async with open_app(config, background=False) as one, open_app(config, background=False) as two:
        for _ in range(5):
            rid = await file(one, "payout", metadata={"amount": 50000})
            first, second = await asyncio.gather(
                one.service.decide(rid, True, Actor("human", "alice", "telegram")),
                two.service.decide(rid, True, Actor("human", "bob", "telegram")),
            )
            assert [first.changed, second.changed].count(True) == 1
            assert [first.voted, second.voted].count(True) == 1
            req = await one.service.get(rid)
            assert req.status is Status.APPROVED and sorted(req.decided_by.split(", ")) == ["alice", "bob"]  # type: ignore[union-attr]
            events = [e.event for e in await one.store.audit(request_id=rid)]
            assert events == ["created", "voted", "approved"]


async def test_one_rejection_rejects_and_self_approval_is_refused(fake: FakeTelegram, tmp_path: Path) -> None:
    config = example_config("quorum", fake, tmp_path)
    async with open_app(config, clock=Clock()) as app:
        mine = await file(app, "payout", metadata={"amount": 10000}, requester=Actor("agent", "alice-laptop", "mcp"))
        a = await prompt_for(fake, ALICE, mine)
        cq = await fake.press(ALICE, a, a.button("approve"))
        assert "alice made request" in await answer_to(fake, cq) and fake.answers[cq]["show_alert"]
        assert (await app.service.get(mine)).status is Status.PENDING
        refused = [e for e in await app.store.audit(request_id=mine) if e.event == "refused"]
        assert refused[0].actor == "alice" and "cannot approve it" in (refused[0].data or {})["why"]
        with pytest.raises(NotAllowedError, match="cannot approve it"):  # nor at the console, as alice
            await console_decide(app.service, mine, True, None, "alice")

        other = await file(app, "payout", metadata={"amount": 10000})
        b = await prompt_for(fake, BOB, other)
        cq = await fake.press(BOB, b, b.button("Reject"))
        assert await answer_to(fake, cq) == "Rejected ❌"  # reject_quorum = 1
        assert (await app.service.get(other)).status is Status.REJECTED


async def test_rejected_at_once_when_approval_can_no_longer_be_reached(fake: FakeTelegram, tmp_path: Path) -> None:
    config = example_config("quorum", fake, tmp_path, edit={"reject_quorum = 1 ": "reject_quorum = 3 "})
    alice_laptop = Actor("agent", "alice-laptop", "mcp")
    async with open_app(config, background=False) as app:
        rid = await file(app, "payout", metadata={"amount": 10000}, requester=alice_laptop)
        # alice asked, so only bob and carol may approve: one rejection leaves one possible approval of two.
        decision = await app.service.decide(rid, False, Actor("human", "bob", "console"), "no")
        assert decision.changed and decision.request.status is Status.REJECTED
        assert decision.request.decided_by == "bob"


async def test_a_route_whose_approvers_made_the_request_rejects_at_filing(fake: FakeTelegram, tmp_path: Path) -> None:
    config = example_config("quorum", fake, tmp_path, edit={'"alice", "bob", "carol"]': '"alice", "bob"]'})
    async with open_app(config, background=False) as app:
        rid = await file(app, "payout", metadata={"amount": 10000}, requester=Actor("agent", "alice-laptop", "mcp"))
        req = await app.service.get(rid)
        assert req.status is Status.REJECTED and req.decided_kind == "system"
        assert "2 approvals are needed and at most 1 are possible" in (req.reason or "")


async def test_the_embedded_default_is_decided_at_the_console(tmp_path: Path) -> None:
    from signoff.server.config import DEFAULT_CONFIG_TOML

    config = parse_config(DEFAULT_CONFIG_TOML, source="<embedded default>", base_dir=tmp_path)
    async with open_app(config, background=False) as app:
        rid = (await app.service.request_approval(NewRequest("deploy", "x"), Actor("agent", "a", "mcp"))).id
        assert (await app.service.get(rid)).status is Status.PENDING
        counted, message = await console_decide(app.service, rid, True, None)
        assert counted and "approved" in message


async def test_console_votes_name_their_approver(fake: FakeTelegram, tmp_path: Path) -> None:
    config = example_config("quorum", fake, tmp_path)
    async with open_app(config, background=False) as app:
        rid = await file(app, "payout", metadata={"amount": 10000})
        with pytest.raises(NotAllowedError, match="needs 2 distinct approvers to approve; vote as one of them"):
            await console_decide(app.service, rid, True, None)
        with pytest.raises(NotAllowedError, match="no such approver"):
            await console_decide(app.service, rid, True, None, "mallory")
        counted, message = await console_decide(app.service, rid, True, None, "bob")
        assert counted and "1 of 2 approvals so far" in message
        counted, message = await console_decide(app.service, rid, True, None, "bob")
        assert not counted and "already voted to approve" in message
        counted, message = await console_decide(app.service, rid, True, None, "carol")
        assert counted and message.endswith("approved by bob, carol.")


async def test_a_named_route_cannot_lower_the_quorum(fake: FakeTelegram, tmp_path: Path) -> None:
    text = readme_example("quorum") + '\n[[routes]]\nname = "one"\napprovers = ["alice", "bob"]\n'
    config = parse_config(text + '[store]\npath = "x.db"\n', source="t", base_dir=tmp_path)
    async with open_app(config, background=False) as app:
        with pytest.raises(RequestError, match="cannot be used for this request"):
            await app.service.request_approval(NewRequest("payout", "x", metadata={"amount": 10000}, route="one"),
                                               Actor("agent", "a", "mcp"))  # fmt: skip


# --- quiet hours -------------------------------------------------------------------------


def _next(hour: int, minute: int, zone: str, after: float | None = None) -> float:
    """The next hour:minute in ``zone`` after ``after`` (default: now)."""
    tz = zoneinfo.ZoneInfo(zone)
    now = datetime.now(tz) if after is None else datetime.fromtimestamp(after, tz)
    at = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return (at if at > now else at + timedelta(days=1)).timestamp()


@pytest.mark.usefixtures("unpaced_telegram")  # about what is sent, not when
async def test_quiet_hours_hold_non_urgent_prompts_until_morning(fake: FakeTelegram, tmp_path: Path) -> None:
    clock = Clock(at=_next(23, 30, "Europe/Berlin"))
    config = example_config("quiet", fake, tmp_path)
    async with open_app(config, clock=clock) as app:
        report = await file(app, "report_sales")
        page = await file(app, "page_oncall")  # urgent: goes out at once, after the report's row was looked at
        await prompt_for(fake, ALICE, page)
        assert not any(report in m.text for m in fake.chat(ALICE))
        rows = await app.store.read("SELECT last_error, next_attempt_at FROM outbox WHERE request_id = ?", (report,))
        morning = _next(7, 0, "Europe/Berlin", after=clock())
        assert rows[0]["last_error"] == "quiet hours" and rows[0]["next_attempt_at"] == pytest.approx(morning)
        note = await app.service.note(await app.service.get(report))
        assert note == f"the approvers are in quiet hours; expect a decision after {iso(morning)}"
        assert await app.service.note(await app.service.get(page)) is None

        clock.advance(morning - clock() + 1)  # 07:00:01 in Berlin
        await prompt_for(fake, ALICE, report)

        # The next night she is awake after all and asks: what she asks for is not held, and
        # the held prompt does not come again in the morning.
        clock.advance(_next(23, 30, "Europe/Berlin", after=clock()) - clock())
        tonight = await file(app, "report_costs")
        await fake.say(ALICE, ALICE, "/pending")
        await prompt_for(fake, ALICE, tonight)
        clock.advance(_next(7, 0, "Europe/Berlin", after=clock()) - clock() + 1)
        later = await file(app, "report_stock")  # its row comes after the held one
        await prompt_for(fake, ALICE, later)
        assert len([m for m in fake.chat(ALICE) if tonight in m.text and m.buttons()]) == 1


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[groups]\nops = ["alice", "zed"]\n', ["groups.ops[1]", "unknown approver 'zed'"]),
        ('[groups]\nalice = ["alice"]\n', ["groups.alice", "also an approver's name"]),
        ('[[routes]]\nname = "r"\napprovers = ["alice"]\nquorum = 2\n', ["routes[0].quorum", "only 1 approver(s)"]),
        ('[[routes]]\nname = "r"\napprovers = ["alice"]\ntimeout = "30m"\nescalation = [{ after = "30m", approvers = ["bob"] }]\n',
         ["routes[0].escalation[0].after", "never fire"]),
        ('[[routes]]\nname = "r"\napprovers = ["alice", "bob"]\nquorum = 2\ngrant_options = ["30m"]\n',
         ["routes[0].grant_options", "cannot be granted by one person"]),
        ('[[routes]]\nname = "r"\napprovers = ["alice"]\ngrant_options = ["forever"]\n',
         ["routes[0].grant_options[0]", "neither a duration"]),
        ('[[routes]]\nname = "r"\nauto = "approve"\nreminder = "15m"\n', ["routes[0]", "remove 'reminder'"]),
        ('[approvers.carol]\nquiet_hours = "22:00-07:00"\ntimezone = "Mars/Olympus"\n',
         ["approvers.carol.timezone", "unknown time zone"]),
        ('[approvers.carol]\nquiet_hours = "10pm-7am"\n', ["approvers.carol.quiet_hours"]),
        ('[[routes]]\nname = "r"\napprovers = ["alice"]\ncallback_url = "http://10.0.0.1/x"\n',
         ["routes[0].callback_url", "not under any URL in [callbacks] allowed_urls"]),
        ('[callbacks]\nallowed_hosts = ["https://hooks.example.com"]\n', ["callbacks.allowed_hosts[0]", "no scheme"]),
        ('[[routes]]\nname = "r"\napprovers = ["oncal"]\n[groups]\noncall = ["alice"]\n',
         ["routes[0].approvers[0]", "did you mean 'oncall'?"]),
    ],
)  # fmt: skip
def test_policy_config_errors_say_what_to_fix(toml: str, expected: list[str], tmp_path: Path) -> None:
    base = "[approvers.alice]\ntelegram_user_id = 1\n[approvers.bob]\ntelegram_user_id = 2\n"
    routes = "" if "[[routes]]" in toml else '[[routes]]\nname = "default"\n'
    with pytest.raises(ConfigError) as err:
        parse_config(base + toml + routes, source="policy.toml", base_dir=tmp_path)
    for part in ["policy.toml", *expected]:
        assert part in str(err.value)


def test_every_readme_policy_example_loads(tmp_path: Path) -> None:
    for name in ("escalation", "quorum", "grants", "digests", "quiet", "callbacks"):
        parse_config(readme_example(name), source=name, base_dir=tmp_path)


# --- fuzz: votes on quorum routes, against an independent model -----------------------------

_ROUTES = "".join(
    f'[[routes]]\nname = "q{q}r{r}"\nmatch = {{ action = "q{q}r{r}" }}\napprovers = ["alice", "bob", "carol"]\n'
    f"quorum = {q}\nreject_quorum = {r}\n"
    for q in (1, 2, 3)
    for r in (1, 2, 3)
)
_QUORUM_CONFIG = (
    '[store]\npath = "fuzz.db"\n[approvers.alice]\ntelegram_user_id = 1\nidentities = ["alice-*"]\n'
    "[approvers.bob]\ntelegram_user_id = 2\n[approvers.carol]\ntelegram_user_id = 3\n" + _ROUTES
)


def _model(q: int, r: int, requester: str, votes: list[tuple[str, bool]]) -> tuple[str, set[str]]:
    """What the votes should come to, written without server.policy: (status, who decided)."""
    may_approve = {a for a in ("alice", "bob", "carol") if not (a == "alice" and requester.startswith("alice-"))}
    if len(may_approve) < q:
        return "rejected", set()
    approvals: list[str] = []
    rejections: list[str] = []
    for who, approve in votes:
        if who in approvals or who in rejections or (approve and who not in may_approve):
            continue
        (approvals if approve else rejections).append(who)
        if len(approvals) >= q:
            return "approved", set(approvals)
        if len(rejections) >= r:
            return "rejected", set(rejections)
        if len(approvals) + len(may_approve - set(approvals) - set(rejections)) < q:
            return "rejected", set(rejections)
    return "pending", set()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    q=st.integers(1, 3),
    r=st.integers(1, 3),
    requester=st.sampled_from(["alice-laptop", "claude-code"]),
    votes=st.lists(st.tuples(st.sampled_from(["alice", "bob", "carol"]), st.booleans()), max_size=6),
)
def test_fuzz_quorum_votes_match_the_model(q: int, r: int, requester: str, votes: list[tuple[str, bool]]) -> None:
    _QUORUM.run(_quorum_one(q, r, requester, votes))


async def _quorum_one(q: int, r: int, requester: str, votes: list[tuple[str, bool]]) -> None:
    app = _QUORUM.app
    assert app is not None
    req = await app.service.request_approval(NewRequest(f"q{q}r{r}", "fuzz"), Actor("agent", requester, "mcp"))
    for who, approve in votes:
        try:
            await app.service.decide(req.id, approve, Actor("human", who, "telegram"))
        except NotAllowedError:
            assert approve and who == "alice" and requester == "alice-laptop"
    final = await app.service.get(req.id)
    status, deciders = _model(q, r, requester, votes)
    assert final.status.value == status, (votes, final)
    if status == "approved":
        assert set((final.decided_by or "").split(", ")) == deciders and len(deciders) >= q
    elif deciders:
        assert set((final.decided_by or "").split(", ")) == deciders


_QUORUM = OneLoop(_QUORUM_CONFIG)


@pytest.fixture(autouse=True, scope="module")
def _close_quorum() -> Any:
    yield
    _QUORUM.close()
