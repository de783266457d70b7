"""Digests: one message per chat, updated in place, instead of a prompt for every request.

A new request's prompt joins the chat's digest when the chat already has more than
``[defaults] digest_threshold`` pending prompts, or a digest with pending items; a new
digest also counts the requests that already have a prompt, so it shows (and "Approve all"
covers) everything pending in the chat. The digest says "7 pending — 5 × Bash, 2 × refund" and offers "Review each" (the oldest ten as
prompts), "Approve all" (only when every item's route sets ``allow_bulk``) and "Reject
all". Its buttons carry the last item the message showed, so a press never decides a
request the approver has not seen. Refreshes are coalesced: however many requests arrive
or are decided, the digest is edited at most at the chat's pace.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from telegram import Bot
from telegram.constants import ParseMode

from server import queries
from server.config import Config
from server.models import ApprovalRequest
from server.quiet import held_until
from server.store import QUEUE, Store

from .callbacks import CallbackSigner
from .edits import edit_message
from .render import digest_keyboard, digest_text

_ITEMS = (
    f"SELECT d.seq, {', '.join('r.' + c.strip() for c in queries.REQUEST_COLUMNS.split(','))} "
    "FROM digest_items d JOIN requests r ON r.id = d.request_id "
    "WHERE d.chat_id = ? AND r.status = 'pending' ORDER BY d.seq"
)


class Digests:
    def __init__(self, store: Store, bot: Bot, signer: CallbackSigner, config: Config,
                 clock: Callable[[], float]) -> None:  # fmt: skip
        self.store = store
        self.bot = bot
        self.signer = signer
        self.config = config
        self.clock = clock

    async def items(self, chat_id: int, upto: int | None = None) -> list[tuple[int, ApprovalRequest]]:
        """The chat's pending digest items, oldest first (with ``upto``: those the message showed)."""
        rows = await self.store.read(_ITEMS, (chat_id,))
        out = [(int(r["seq"]), ApprovalRequest.from_row(r)) for r in rows]
        return out if upto is None else [(s, r) for s, r in out if s <= upto]

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

    async def refresh(self, chat_id: int) -> bool:
        """Send or edit the chat's digest as it is now; return whether Telegram was called."""
        # This one refresh covers every refresh queued for the chat so far.
        await self.store.write(
            "UPDATE outbox SET done_at = ? WHERE kind = 'digest' AND chat_id = ? AND done_at IS NULL",
            (time.time(), chat_id),
        )
        items = await self.items(chat_id)
        state = await self.store.read("SELECT message_id FROM digests WHERE chat_id = ?", (chat_id,))
        message_id = state[0][0] if state else None
        total = await self.store.read("SELECT count(*) FROM digest_items WHERE chat_id = ?", (chat_id,))
        decided = int(total[0][0]) - len(items)
        upto = items[-1][0] if items else 0
        requests = [r for _, r in items]
        text = digest_text(requests, decided, self.clock())
        markup = digest_keyboard(requests, upto, chat_id, self.signer)
        if message_id is None:
            if not items:
                return False
            sent = await self.bot.send_message(chat_id, text, parse_mode=ParseMode.HTML, reply_markup=markup)
            message_id = sent.message_id
        else:
            await edit_message(self.bot, chat_id, int(message_id), text, markup)
        async with self.store.transaction() as conn:
            if items:
                await conn.execute(
                    "INSERT INTO digests (chat_id, message_id, shown_upto) VALUES (?, ?, ?) ON CONFLICT (chat_id) "
                    "DO UPDATE SET message_id = excluded.message_id, shown_upto = excluded.shown_upto",
                    (chat_id, message_id, upto),
                )
            else:  # all decided: the next digest in this chat starts afresh, as a new message
                await conn.execute("DELETE FROM digests WHERE chat_id = ?", (chat_id,))
                await conn.execute("DELETE FROM digest_items WHERE chat_id = ?", (chat_id,))
        return True

    async def take_for_review(
        self, chat_id: int, upto: int, *, only: set[str], limit: int = 10
    ) -> list[ApprovalRequest]:
        """The oldest ``limit`` items the digest showed, among ``only``, that have no prompt in the
        chat yet, taken out of it to be prompted one by one."""
        rows = await self.store.read("SELECT DISTINCT request_id FROM prompts WHERE chat_id = ?", (chat_id,))
        prompted = {r[0] for r in rows}
        taken = [r for _, r in await self.items(chat_id, upto) if r.id in only and r.id not in prompted][:limit]
        async with self.store.transaction() as conn:
            for req in taken:
                await conn.execute("DELETE FROM digest_items WHERE chat_id = ? AND request_id = ?", (chat_id, req.id))
        return taken
