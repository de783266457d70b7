"""Issue 9, item 3: a button decides only the message it is on.

Through the fake Bot API and the real python-telegram-bot: a digest's buttons name the very
render they are on (an id that is never reused), so a stale press, a double tap or a press on
another message decides nothing new, and "Approve all" covers only the items the message
lists. A prompt's buttons are bound to their request's action digest and to that request's
messages.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from signoff.adapters.telegram.buttons import APPROVE, APPROVE_WITH_NOTE, ButtonSigner
from signoff.adapters.telegram.render import DIGEST_LISTED
from signoff.server.app import App, open_app
from signoff.server.models import Actor, Status
from tests.fake_telegram import FakeTelegram, Message
from tests.policies import ALICE, Clock, answer_to, example_config, file, prompt_for

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("unpaced_telegram")]  # what is sent, not when

OUT_OF_DATE = "This digest is out of date; use the newest one."
THRESHOLD_1 = {"digest_threshold = 5": "digest_threshold = 1"}


def listed(message: Message) -> list[str]:
    return re.findall(r"req_[0-9a-f]{12}", message.text)


async def statuses(app: App, ids: list[str]) -> list[Status]:
    return [r.status for r in [await app.service.get(rid) for rid in ids] if r is not None]


async def a_digest(
    app: App, fake: FakeTelegram, count: int, *, not_on: frozenset[int] = frozenset()
) -> tuple[list[str], Message]:
    """``count`` refunds in alice's chat (threshold 1: two prompts, then a digest of all of them);
    the digest message, a new one when ``not_on`` names the earlier ones."""
    ids = [await file(app, "refund", "Refund order 1"), await file(app, "refund", "Refund order 2")]
    for rid in ids:
        await prompt_for(fake, ALICE, rid)
    ids += [await file(app, "refund", f"Refund order {i}") for i in range(3, count + 1)]
    digest = await fake.wait_for(lambda: next((m for m in fake.chat(ALICE) if f"<b>{count} pending</b>" in m.text
                                               and m.buttons() and m.message_id not in not_on), None))  # fmt: skip
    return ids, digest


async def test_an_old_digests_approve_all_approves_nothing_in_the_next_digest(
    fake: FakeTelegram, tmp_path: Path
) -> None:
    async with open_app(example_config("digests", fake, tmp_path, edit=THRESHOLD_1), clock=Clock()) as app:
        first, old = await a_digest(app, fake, 3)
        stale = old.button("Approve all")
        for rid in first:  # decided one by one, elsewhere: the digest ends
            await app.service.decide(rid, False, Actor("human", "alice", "console"))
        await fake.wait_for(lambda: "nothing pending" in old.text and not old.buttons())

        second, new = await a_digest(app, fake, 3, not_on=frozenset({old.message_id}))
        cq = await fake.press(ALICE, old, stale)  # the old message's own data, pressed late
        assert await answer_to(fake, cq) == OUT_OF_DATE
        assert await statuses(app, second) == [Status.PENDING] * 3
        cq = await fake.press(ALICE, new, stale)  # the same data on the new message
        assert await answer_to(fake, cq) == OUT_OF_DATE
        assert await statuses(app, second) == [Status.PENDING] * 3
        assert await statuses(app, first) == [Status.REJECTED] * 3


async def test_a_double_tap_approves_only_what_the_first_render_listed(fake: FakeTelegram, tmp_path: Path) -> None:
    async with open_app(example_config("digests", fake, tmp_path, edit=THRESHOLD_1), clock=Clock()) as app:
        first, digest = await a_digest(app, fake, 3)
        data = digest.button("Approve all")
        cq = await fake.press(ALICE, digest, data)
        assert await answer_to(fake, cq) == "Approved 3 of 3."
        await fake.wait_for(lambda: "nothing pending" in digest.text)
        second, new = await a_digest(app, fake, 3, not_on=frozenset({digest.message_id}))  # arriving between the taps
        again = await fake.press(ALICE, digest, data)  # the second tap, delivered late
        assert await answer_to(fake, again) == OUT_OF_DATE
        assert await statuses(app, first) == [Status.APPROVED] * 3
        assert await statuses(app, second) == [Status.PENDING] * 3
        # The new digest's own button decides exactly what it lists.
        cq = await fake.press(ALICE, new, new.button("Approve all"))
        assert await answer_to(fake, cq) == "Approved 3 of 3."
        assert await statuses(app, second) == [Status.APPROVED] * 3


async def test_approve_all_covers_only_the_items_the_message_lists(fake: FakeTelegram, tmp_path: Path) -> None:
    count = DIGEST_LISTED + 5
    async with open_app(example_config("digests", fake, tmp_path, edit=THRESHOLD_1), clock=Clock()) as app:
        ids, digest = await a_digest(app, fake, count)
        shown = listed(digest)
        assert len(shown) == DIGEST_LISTED and set(shown) < set(ids)
        assert f"The buttons decide the {DIGEST_LISTED} listed here" in digest.text
        cq = await fake.press(ALICE, digest, digest.button("Approve all"))
        assert await answer_to(fake, cq) == f"Approved {DIGEST_LISTED} of {DIGEST_LISTED}."
        for rid in ids:
            assert (await app.service.get(rid)).status is (Status.APPROVED if rid in shown else Status.PENDING)
        # The rest come up in the next render of the same message, and its button decides them.
        rest = await fake.wait_for(lambda: "<b>5 pending</b>" in digest.text and digest.buttons() and listed(digest))
        assert set(rest) == set(ids) - set(shown)
        cq = await fake.press(ALICE, digest, digest.button("Reject all"))
        assert await answer_to(fake, cq) == "Rejected 5 of 5."
        assert await statuses(app, ids) == [Status.APPROVED if rid in shown else Status.REJECTED for rid in ids]


async def test_prompt_data_decides_only_its_own_request_with_its_own_content(
    fake: FakeTelegram, tmp_path: Path
) -> None:
    async with open_app(example_config("digests", fake, tmp_path), clock=Clock()) as app:
        x, y = await file(app, "deploy", "Ship x"), await file(app, "deploy", "Ship y")
        px, py = await prompt_for(fake, ALICE, x), await prompt_for(fake, ALICE, y)
        approve_x = px.button("Approve")

        # X's genuine data on Y's prompt, and on a message of the bot that is nobody's prompt.
        cq = await fake.press(ALICE, py, approve_x)
        assert "not valid here" in await answer_to(fake, cq)
        await fake.say(ALICE, ALICE, "/help")
        help_message = await fake.wait_for(lambda: next((m for m in fake.chat(ALICE) if "/pending" in m.text), None))
        cq = await fake.press(ALICE, help_message, approve_x)
        assert "not valid here" in await answer_to(fake, cq)
        assert await statuses(app, [x, y]) == [Status.PENDING] * 2

        # Data signed (with the right key) for other content than X's.
        signer = ButtonSigner(await app.store.setting("telegram_callback_key", lambda: "unused"))
        forged = signer.sign(APPROVE, x, digest="0" * 64)
        assert len(forged.encode()) <= 64
        cq = await fake.press(ALICE, px, forged)
        assert await answer_to(fake, cq) == "This button is not valid."
        # X's content changed under its prompt (say, by hand in the database): its buttons die.
        req = await app.service.get(x)
        await app.store.write("UPDATE requests SET action_digest = ? WHERE id = ?", ("f" * 64, x))
        cq = await fake.press(ALICE, px, approve_x)
        assert await answer_to(fake, cq) == "This button is not valid."
        assert await statuses(app, [x, y]) == [Status.PENDING] * 2
        await app.store.write("UPDATE requests SET action_digest = ? WHERE id = ?", (req.action_digest, x))

        # Recovery kept: a prompt we lost track of (sent just before a crash) still works, because
        # the message Telegram hands back shows X's id and digest.
        await app.store.write("DELETE FROM prompts WHERE request_id = ?", (x,))
        cq = await fake.press(ALICE, px, approve_x)
        assert await answer_to(fake, cq) == "Approved ✅"
        assert await statuses(app, [x, y]) == [Status.APPROVED, Status.PENDING]
        await fake.wait_for(lambda: "Approved" in px.text and not px.buttons())  # tracked again: edited


async def test_approve_with_note_data_is_signed_bound_and_worthless_once_decided(
    fake: FakeTelegram, tmp_path: Path
) -> None:
    """The "Approve with note" button's data (action ``n``): forged, made for other content,
    moved to another request's prompt, or a reject's data relabelled ``n`` asks nothing; pressed
    once the request is decided (a replay), it says so and asks nothing either."""
    async with open_app(example_config("digests", fake, tmp_path), clock=Clock()) as app:
        x, y = await file(app, "deploy", "Ship x"), await file(app, "deploy", "Ship y")
        px, py = await prompt_for(fake, ALICE, x), await prompt_for(fake, ALICE, y)
        note_x = px.button("with note")
        assert note_x.startswith(f"{APPROVE_WITH_NOTE}:") and len(note_x.encode()) <= 64
        signer = ButtonSigner(await app.store.setting("telegram_callback_key", lambda: "unused"))
        _, hexid, mac = px.button("❌ Reject").split(":")
        forged = [
            f"{APPROVE_WITH_NOTE}:{hexid}:{mac}",  # a reject's MAC under the note action
            note_x[:-1] + ("A" if note_x[-1] != "A" else "B"),
            signer.sign(APPROVE_WITH_NOTE, x, digest="0" * 64),  # other content
            ButtonSigner("11" * 32).sign(APPROVE_WITH_NOTE, x, digest=(await app.service.get(x)).action_digest),
        ]
        for data in forged:
            assert await answer_to(fake, await fake.press(ALICE, px, data)) == "This button is not valid."
        assert "not valid here" in await answer_to(fake, await fake.press(ALICE, py, note_x))  # on Y's prompt
        assert not [m for m in fake.chat(ALICE) if "What note" in m.text]
        assert await statuses(app, [x, y]) == [Status.PENDING] * 2
        await answer_to(fake, await fake.press(ALICE, px, px.button("Approve")))
        replay = await answer_to(fake, await fake.press(ALICE, px, note_x))
        assert replay.startswith("Already approved by alice")
        assert not [m for m in fake.chat(ALICE) if "What note" in m.text]
        assert await statuses(app, [x, y]) == [Status.APPROVED, Status.PENDING]
