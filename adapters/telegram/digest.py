"""Digests: one message per chat, updated in place, instead of a prompt for every request.

A new request's prompt joins the chat's digest when the chat already has more than
``[defaults] digest_threshold`` pending prompts, or a digest with pending items; a new
digest also counts the requests that already have a prompt, so it shows everything pending
in the chat. The digest says "7 pending — 5 × Bash, 2 × refund", lists the oldest
``DIGEST_LISTED`` (20) and offers "Review each" (the listed ones as prompts, ten at a time),
"Approve all" (only when every listed item's route sets ``allow_bulk``) and "Reject all".

A button decides only the message it is on. Every rendering (a send or an edit) is a
``digest_renders`` row, under an AUTOINCREMENT id that is never reused, holding exactly the
request ids the message lists; the buttons sign that id and the chat. A press counts only
when its render is the chat's newest and is the message pressed, and then covers only the
listed items that are still pending: a stale message, a double tap after the digest moved on,
or data replayed onto another message decides nothing. Refreshes are coalesced: however many
requests arrive or are decided, the digest is edited at most at the chat's pace.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from telegram import Bot
from telegram.constants import ParseMode

from signoff.server import queries
from signoff.server.config import Config
from signoff.server.models import ApprovalRequest
from signoff.server.quiet import held_until
from signoff.server.store import QUEUE, Store

from .callbacks import CallbackSigner
from .edits import edit_message
from .render import digest_keyboard, digest_view

_ITEMS = (
    f"SELECT d.seq, {', '.join('r.' + c.strip() for c in queries.REQUEST_COLUMNS.split(','))} "
    "FROM digest_items d JOIN requests r ON r.id = d.request_id "
    "WHERE d.chat_id = ? AND r.status = 'pending' ORDER BY d.seq"
)
_LISTED = (
    f"SELECT {', '.join('r.' + c.strip() for c in queries.REQUEST_COLUMNS.split(','))} "
    "FROM json_each(?) j JOIN requests r ON r.id = j.value WHERE r.status = 'pending' ORDER BY j.key"
)


@dataclass(frozen=True, slots=True)
class Render:
    """One rendering of a chat's digest: the message it is on and the requests it lists."""

    id: int
    chat_id: int
    message_id: int | None
    items: list[str]


class Digests:
    def __init__(self, store: Store, bot: Bot, signer: CallbackSigner, config: Config,
                 clock: Callable[[], float]) -> None:  # fmt: skip
        self.store = store
        self.bot = bot
        self.signer = signer
        self.config = config
        self.clock = clock

    async def items(self, chat_id: int) -> list[ApprovalRequest]:
        """The chat's pending digest items, oldest first."""
        return [ApprovalRequest.from_row(r) for r in await self.store.read(_ITEMS, (chat_id,))]

    async def current(self, chat_id: int, render_id: int, message_id: int) -> Render | None:
        """The render a press names, if it is this chat's newest and on the message pressed;
        None when the press is out of date (or not on its message)."""
        rows = await self.store.read(
            "SELECT id, chat_id, message_id, items FROM digest_renders WHERE id = ? AND chat_id = ? "
            "AND id = (SELECT max(id) FROM digest_renders WHERE chat_id = ?)",
            (render_id, chat_id, chat_id),
        )
        if not rows or rows[0]["message_id"] is None or int(rows[0]["message_id"]) != message_id:
            return None
        return Render(int(rows[0]["id"]), chat_id, message_id, list(json.loads(rows[0]["items"])))

    async def listed(self, render: Render) -> list[ApprovalRequest]:
        """The requests ``render`` lists that are still pending, in its order."""
        rows = await self.store.read(_LISTED, (json.dumps(render.items),))
        return [ApprovalRequest.from_row(r) for r in rows]

    async def gather(self, row: Any) -> bool:
        """Put a due prompt (and every other due prompt of its chat) into the digest, when the
        chat has too many pending prompts already; return whether it did."""
        chat_id = int(row["chat_id"])
        done = await self.store.read("SELECT done_at FROM outbox WHERE id = ?", (row["id"],))
        if done and done[0][0] is not None:
            return True  # gathered a moment ago, with the rest of its chat's due prompts
        req = await self.store.get(row["request_id"])
        if req is None or req.status.final or held_until(self.config, req, row["approver"], self.clock()):
            return False  # decided or held: the outbox deals with it
        if req.route_snapshot.get("urgent"):
            return False  # urgent requests always get a prompt of their own
        counts = await self.store.read(
            "SELECT (SELECT count(DISTINCT p.request_id) FROM prompts p JOIN requests r ON r.id = p.request_id "
            "        WHERE p.chat_id = ? AND r.status = 'pending'), "
            "       (SELECT count(*) FROM digest_items d JOIN requests r ON r.id = d.request_id "
            "        WHERE d.chat_id = ? AND r.status = 'pending')",
            (chat_id, chat_id),
        )
        prompts, gathered = int(counts[0][0]), int(counts[0][1])
        if prompts <= self.config.defaults.digest_threshold and gathered == 0:
            return False
        now = self.clock()
        async with self.store.transaction() as conn:
            if gathered == 0:  # a new digest: it counts (and bulk-decides) what already has a prompt too
                await conn.execute(
                    "INSERT OR IGNORE INTO digest_items (chat_id, request_id, approver) "
                    "SELECT p.chat_id, p.request_id, coalesce(o.approver, '') FROM prompts p "
                    "JOIN requests r ON r.id = p.request_id "
                    "LEFT JOIN outbox o ON o.request_id = p.request_id AND o.chat_id = p.chat_id AND o.kind = 'prompt' "
                    "WHERE p.chat_id = ? AND r.status = 'pending' ORDER BY p.sent_at",
                    (chat_id,),
                )
            # Every due, non-urgent prompt of the chat goes in (those already decided are just marked done).
            due = (
                "FROM outbox o JOIN requests r ON r.id = o.request_id WHERE o.kind = 'prompt' AND o.chat_id = ? "
                "AND o.done_at IS NULL AND o.next_attempt_at <= ? AND NOT coalesce(json_extract(r.route_snapshot, '$.urgent'), 0)"
            )
            await conn.execute("INSERT OR IGNORE INTO digest_items (chat_id, request_id, approver) "
                               f"SELECT o.chat_id, o.request_id, o.approver {due} AND r.status = 'pending'", (chat_id, now))  # fmt: skip
            await conn.execute(f"UPDATE outbox SET done_at = ?, last_error = 'in the digest' WHERE id IN (SELECT o.id {due})",
                               (time.time(), chat_id, now))  # fmt: skip
            await conn.execute(QUEUE, (req.id, "digest", "", chat_id, now, now))
        return True

    async def refresh(self, chat_id: int, outbox_id: int | None = None) -> bool:
        """Send or edit the chat's digest as it is now, as a new render; return whether Telegram
        was called. Should Telegram fail, the row ``outbox_id`` stays due (its retry backs off)."""
        # This one refresh covers every refresh queued for the chat so far.
        await self.store.write(
            "UPDATE outbox SET done_at = ? WHERE kind = 'digest' AND chat_id = ? AND done_at IS NULL",
            (time.time(), chat_id),
        )
        try:
            return await self._render(chat_id)
        except Exception:
            if outbox_id is not None:
                await self.store.write("UPDATE outbox SET done_at = NULL WHERE id = ?", (outbox_id,))
            raise

    async def _render(self, chat_id: int) -> bool:
        items = await self.items(chat_id)
        state = await self.store.read("SELECT message_id FROM digests WHERE chat_id = ?", (chat_id,))
        message_id = int(state[0][0]) if state and state[0][0] is not None else None
        if message_id is None and not items:
            return False
        total = await self.store.read("SELECT count(*) FROM digest_items WHERE chat_id = ?", (chat_id,))
        decided = int(total[0][0]) - len(items)
        text, listed = digest_view(items, decided, self.clock())
        # The render exists before its buttons do, and supersedes every earlier one at once: from
        # here on, a press on what the message showed so far is out of date.
        async with self.store.transaction() as conn:
            cursor = await conn.execute(
                "INSERT INTO digest_renders (chat_id, message_id, items, created_at) VALUES (?, ?, ?, ?)",
                (chat_id, message_id, json.dumps([r.id for r in listed]), time.time()),
            )
            render_id = cursor.lastrowid
            assert render_id is not None
            await conn.execute("DELETE FROM digest_renders WHERE chat_id = ? AND id < ?", (chat_id, render_id))
        markup = digest_keyboard(listed, render_id, chat_id, self.signer)
        edited = message_id is not None and await edit_message(self.bot, chat_id, message_id, text, markup)
        if not edited and listed:  # no message yet, or the approver deleted it: a new one carries this render
            sent = await self.bot.send_message(chat_id, text, parse_mode=ParseMode.HTML, reply_markup=markup)
            message_id = sent.message_id
        async with self.store.transaction() as conn:
            await conn.execute("UPDATE digest_renders SET message_id = ? WHERE id = ?", (message_id, render_id))
            if items:
                await conn.execute(
                    "INSERT INTO digests (chat_id, message_id) VALUES (?, ?) ON CONFLICT (chat_id) "
                    "DO UPDATE SET message_id = excluded.message_id",
                    (chat_id, message_id),
                )
            else:  # all decided: the next digest in this chat starts afresh, as a new message
                await conn.execute("DELETE FROM digests WHERE chat_id = ?", (chat_id,))
                await conn.execute("DELETE FROM digest_items WHERE chat_id = ?", (chat_id,))
        return True

    async def take_for_review(
        self, chat_id: int, listed: list[ApprovalRequest], *, only: set[str], limit: int = 10
    ) -> list[ApprovalRequest]:
        """The oldest ``limit`` of the ``listed`` items, among ``only``, that have no prompt in the
        chat yet, taken out of the digest to be prompted one by one."""
        rows = await self.store.read("SELECT DISTINCT request_id FROM prompts WHERE chat_id = ?", (chat_id,))
        prompted = {r[0] for r in rows}
        taken = [r for r in listed if r.id in only and r.id not in prompted][:limit]
        async with self.store.transaction() as conn:
            for req in taken:
                await conn.execute("DELETE FROM digest_items WHERE chat_id = ? AND request_id = ?", (chat_id, req.id))
        return taken
