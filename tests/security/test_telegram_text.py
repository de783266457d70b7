"""Issue 9, item 4 (Telegram): what an agent writes cannot take over an approver's screen.

Every agent-supplied string reaches Telegram with its control and bidi characters shown as
visible escapes (then HTML-escaped), and a prompt always shows the action, the requester and
the ID above its buttons, however much the agent sent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from signoff.adapters.telegram.render import (
    DIGEST_LISTED,
    MAX_TEXT,
    already,
    digest_view,
    escalated_text,
    length,
    prompt_text,
    reminder_text,
    show_text,
)
from signoff.server.app import open_app
from signoff.server.config import Config, parse_config
from signoff.server.models import Actor, ApprovalRequest, Status
from signoff.server.service import NewRequest
from tests.fake_telegram import FakeTelegram, Message
from tests.policies import ALICE, answer_to, prompt_for

pytestmark = pytest.mark.anyio

CLEAR = "\x1b[2J\x1b[H"  # an ANSI sequence that clears a terminal
CSI = "\x9b31m"  # the same, as a C1 control
RLO = "\u202e"  # right-to-left override: "exe.gnp" reads as "png.exe"
NEL = "\x85"  # C1 next line
RAW = (CLEAR[0], CSI[0], RLO, NEL)
SHOWN = ("\\x1b[2J", "\\x9b31m", "\\u{202e}", "\\x85")

HOSTILE = {
    "action": f"deploy{CLEAR}",
    "summary": f"Ship {RLO}exe.gnp{CSI} now{NEL}",
    "details": json.dumps(f"raw{CLEAR}details{RLO}"),  # a JSON string: shown as it is
    "metadata": json.dumps({f"key{CLEAR}": f"value{RLO}", "other": f"x{NEL}{CSI}"}),
    "requested_by": f"agent{CSI}",
    "claimed_requester": f"claims{RLO}",
    "client_name": f"client{CLEAR}",
    "cwd": f"/srv/proj{NEL}",
}


def config_for(fake: FakeTelegram, folder: Path) -> Config:
    text = f"""
[store]
path = "signoff.db"
[telegram]
api_base_url = "{fake.api_base_url}"
lease_ttl = "3s"
[approvers.alice]
telegram_user_id = {ALICE}
[[routes]]
name = "default"
approvers = ["alice"]
"""
    return parse_config(text, source="test", base_dir=folder)


def assert_escaped(text: str, *, shown: tuple[str, ...] = SHOWN) -> None:
    for raw in RAW:
        assert raw not in text, f"raw {raw!r} reached Telegram"
    for escaped in shown:
        assert escaped in text, f"{escaped!r} is not shown"


async def test_control_and_bidi_characters_reach_telegram_as_visible_escapes(
    fake: FakeTelegram, tmp_path: Path
) -> None:
    config = config_for(fake, tmp_path)
    # Intake refuses most of this; a row written some other way (an older version, a bug) must
    # still be harmless on the way out. So the hostile text goes straight into the database.
    async with open_app(config, background=False) as app:
        rid = (await app.service.request_approval(NewRequest("deploy", "Ship it"), Actor("agent", "a", "mcp"))).id
        cancelled = (await app.service.request_approval(NewRequest("deploy", "x"), Actor("agent", "a", "mcp"))).id
        await app.service.cancel(cancelled, Actor("agent", "a", "mcp"))
        sets = ", ".join(f"{k} = ?" for k in HOSTILE)
        await app.store.write(f"UPDATE requests SET {sets} WHERE id IN (?, ?)", (*HOSTILE.values(), rid, cancelled))
        await app.store.write("UPDATE requests SET decided_by = ?, reason = ? WHERE id = ?",
                              (f"agent{CLEAR}", f"gave up{RLO}{CSI}{NEL}", cancelled))  # fmt: skip
    async with open_app(config) as app:
        prompt = await prompt_for(fake, ALICE, rid)
        assert_escaped(prompt.text)
        assert "\\x1b[2J" in prompt.text.split("\n")[0]  # the action, in the title line

        await fake.say(ALICE, ALICE, f"/show {rid}")
        shown = await fake.wait_for(lambda: last(fake, lambda m: "Approval needed" in m.text and not m.buttons()))
        assert_escaped(shown.text)

        cq = await fake.press(ALICE, prompt, prompt.button("reason"))
        await answer_to(fake, cq)
        question = await fake.wait_for(lambda: last(fake, lambda m: "Why reject" in m.text))
        assert_escaped(question.text, shown=("\\x1b[2J",))

        # The cancelled request's prompt went away with the cancellation; an answer about it:
        await fake.say(ALICE, ALICE, f"/show {cancelled}")
        outcome = await fake.wait_for(lambda: last(fake, lambda m: "Cancelled" in m.text and cancelled in m.text))
        assert_escaped(outcome.text)


def last(fake: FakeTelegram, predicate: Callable[[Message], bool]) -> Message | None:
    return next((m for m in reversed(fake.chat(ALICE)) if predicate(m)), None)


async def test_a_huge_request_still_shows_action_requester_and_id_above_its_buttons(
    fake: FakeTelegram, tmp_path: Path
) -> None:
    async with open_app(config_for(fake, tmp_path)) as app:
        new = NewRequest(
            "deploy" + "&" * 194,
            "<&>" * 333,
            details={"diff": "<&" * 30_000},
            metadata={f"k{i:02}" + "&" * 60: '<&">' * 250 for i in range(50)},
            claimed_requester="&" * 200,
        )
        req = await app.service.request_approval(new, Actor("agent", "claude-code&" * 10, "mcp"))
        prompt = await prompt_for(fake, ALICE, req.id)
        assert len(prompt.text) <= MAX_TEXT
        assert "Approval needed: deploy&amp;&amp;" in prompt.text
        assert "Asked by <b>claude-code&amp;" in prompt.text
        assert (
            f"ID <code>{req.id}</code>" in prompt.text
            and f"digest <code>{req.action_digest[:12]}</code>" in prompt.text
        )
        assert "Route <b>default</b>" in prompt.text
        assert [b["text"] for b in prompt.buttons()] == [
            "✅ Approve",
            "❌ Reject",
            "📝 Approve with note",
            "✍️ Reject with reason",
            "✏️ Edit",
        ]
        assert "/show" in prompt.text  # where to read what was left out


# --- every other message and answer, rendered directly --------------------------------------


def hostile_request(**kw: Any) -> ApprovalRequest:
    now = time.time()
    base = ApprovalRequest(
        id="req_0123456789ab", action=f"deploy{CLEAR}", summary=f"Ship {RLO}exe.gnp{CSI} now{NEL}",
        details=f"raw{CLEAR}details{RLO}", metadata={f"key{CLEAR}": f"value{RLO}", "other": f"x{NEL}{CSI}"},
        route="default", route_snapshot={"escalation": [{"approvers": ["bob"]}]}, approvers=["alice"],
        requested_by=f"agent{CSI}", requested_via="mcp", claimed_requester=f"claims{RLO}", idempotency_key=None,
        content_hash="h", status=Status.PENDING, on_timeout="reject", created_at=now, expires_at=now + 3600,
        decided_at=None, decided_by=None, decided_kind=None, decided_via=None, reason=None, level=1,
        cwd=f"/srv/proj{NEL}", action_digest="1a2b3c4d5e6f" + "0" * 52, client_name=f"client{CLEAR}",
    )  # fmt: skip
    return replace(base, **kw)


def test_every_message_shows_agent_text_escaped() -> None:
    req, now = hostile_request(), time.time()
    head = prompt_text(req, now)
    assert_escaped(head)
    assert "digest <code>1a2b3c4d5e6f</code>" in head and "/srv/proj\\x85" in head
    assert_escaped(show_text(req, now))
    assert_escaped(reminder_text(req, now), shown=("\\x1b[2J",))
    assert_escaped(escalated_text(req), shown=("\\x1b[2J",))
    text, listed = digest_view([req, replace(req, id="req_ba9876543210")], 0, now)
    assert_escaped(text, shown=("\\x1b[2J", "\\u{202e}", "\\x9b31m"))
    assert len(listed) == 2
    cancelled = replace(req, status=Status.CANCELLED, decided_by=f"agent{CLEAR}", decided_at=now,
                        reason=f"gave up{RLO}{CSI}{NEL}", decided_via="mcp")  # fmt: skip
    assert_escaped(prompt_text(cancelled, now))
    answer = already(cancelled)  # a callback answer: plain text, at most 200 characters
    assert "\x1b" not in answer and "\\x1b[2J" in answer and len(answer) <= 200


def test_a_prompt_never_falls_back_to_a_placeholder() -> None:
    now = time.time()
    big = hostile_request(
        action="&" * 200,
        summary="<&>" * 333,
        metadata={f"k{i:02}" + RLO * 60: RLO * 1000 for i in range(50)},
        details={"x": "<" * 60_000},
        requested_by="&" * 200,
        claimed_requester=RLO * 200,
        client_name=RLO * 200,
        cwd="/" + RLO * 4000,
        reason="&" * 2000,
    )
    for req in (big, replace(big, status=Status.REJECTED, decided_by="&" * 200, decided_at=now)):
        for text in (prompt_text(req, now), show_text(req, now)):
            assert len(text.encode("utf-16-le")) // 2 == length(text) <= MAX_TEXT
            assert "Approval needed: &amp;&amp;" in text and "Asked by <b>&amp;&amp;" in text
            assert "ID <code>req_0123456789ab</code>" in text and "Route <b>default</b>" in text
            assert "Too long to show" not in text
    many = [replace(big, id=f"req_{i:012x}", summary=RLO * 1000) for i in range(DIGEST_LISTED + 5)]
    text, listed = digest_view(many, 3, now)
    assert length(text) <= MAX_TEXT and 1 <= len(listed) <= DIGEST_LISTED
    assert all(r.id in text for r in listed) and not any(r.id in text for r in many[len(listed) :])
    assert f"The buttons decide the {len(listed)} listed here" in text
