"""Draining the outbox into Telegram: prompts out, outcomes edited in, nothing lost.

Rows are written by the database triggers in the same statement that files or decides a
request, so whatever process did that, the bot-lease holder finds them here. Each row is
retried until Telegram takes it: 429 waits ``retry_after``; network errors, 5xx and chats
that cannot be reached yet back off. Sends to one chat are paced to about one a second
(groups: one per three seconds); ``AIORateLimiter`` keeps the overall and group limits.
"""

from __future__ import annotations

import datetime as dtm
import logging
import time
from typing import Any

from telegram import Bot
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from server.models import ApprovalRequest, Status
from server.store import Store

from .callbacks import CallbackSigner
from .render import keyboard, prompt_text

log = logging.getLogger("signoff.telegram")

PRIVATE_GAP = 1.0  # seconds between messages to one private chat
GROUP_GAP = 3.0  # 20 a minute in a group
MAX_BACKOFF = 60.0
UNREACHABLE_BACKOFF = 300.0

_DUE = (
    "SELECT id, request_id, kind, approver, chat_id, attempts FROM outbox "
    "WHERE done_at IS NULL AND next_attempt_at <= ? ORDER BY id LIMIT 100"
)


def _seconds(value: int | float | dtm.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


class Outbox:
    """Delivers due outbox rows through ``bot``; one instance per lease holder."""

    def __init__(self, store: Store, bot: Bot, signer: CallbackSigner) -> None:
        self.store = store
        self.bot = bot
        self.signer = signer
        self._chat_free_at: dict[int, float] = {}
        self._warned: set[int] = set()

    async def next_due(self) -> float | None:
        rows = await self.store.read("SELECT min(next_attempt_at) FROM outbox WHERE done_at IS NULL")
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    async def drain(self) -> float:
        """Deliver what is due now; return how long until something may be due again."""
        now = time.time()
        wait = 0.25
        for row in await self.store.read(_DUE, (now,)):
            chat_id = int(row["chat_id"])
            free_at = self._chat_free_at.get(chat_id, 0.0)
            if free_at > time.time():
                wait = min(wait, free_at - time.time())
                continue  # this chat is paced; others go on
            await self._deliver(row)
            self._chat_free_at[chat_id] = time.time() + (PRIVATE_GAP if chat_id > 0 else GROUP_GAP)
        return max(0.0, wait)

    async def _deliver(self, row: Any) -> None:
        outbox_id, chat_id, attempts = int(row["id"]), int(row["chat_id"]), int(row["attempts"])
        req = await self.store.get(row["request_id"])
        if req is None:  # pragma: no cover - rows reference requests by foreign key
            await self._done(outbox_id)
            return
        try:
            if row["kind"] == "prompt":
                await self._send_prompt(outbox_id, req, chat_id)
            else:
                await self._show_outcome(req, chat_id)
                await self._done(outbox_id)
        except RetryAfter as exc:
            delay = _seconds(exc.retry_after)
            self._chat_free_at[chat_id] = time.time() + delay
            await self._retry(outbox_id, attempts, delay, f"429: retry after {delay:.0f} s", count=False)
        except Forbidden as exc:
            self._warn_unreachable(chat_id, row["approver"], str(exc))
            await self._retry(outbox_id, attempts, min(UNREACHABLE_BACKOFF, 2.0 ** (attempts + 2)), str(exc))
        except (NetworkError, BadRequest, TelegramError) as exc:  # NetworkError covers timeouts and 5xx
            await self._retry(outbox_id, attempts, min(MAX_BACKOFF, 2.0**attempts), f"{type(exc).__name__}: {exc}")

    async def _send_prompt(self, outbox_id: int, req: ApprovalRequest, chat_id: int) -> None:
        if req.status is not Status.PENDING:
            await self._done(outbox_id)  # decided before it was delivered: nothing to ask
            return
        message = await self.bot.send_message(
            chat_id, prompt_text(req, time.time()), parse_mode=ParseMode.HTML, reply_markup=keyboard(req, self.signer)
        )
        async with self.store.transaction() as conn:
            await conn.execute(
                "INSERT OR IGNORE INTO prompts (request_id, chat_id, message_id, sent_at) VALUES (?, ?, ?, ?)",
                (req.id, chat_id, message.message_id, time.time()),
            )
            await conn.execute(
                "UPDATE outbox SET done_at = ?, last_error = NULL WHERE id = ?", (time.time(), outbox_id)
            )
        self._warned.discard(chat_id)
        # Decided while we were sending? Then its outcome may have been queued without this chat.
        current = await self.store.get(req.id)
        if current is not None and current.status is not Status.PENDING:
            await self.queue(req.id, "outcome", chat_id)

    async def queue(self, request_id: str, kind: str, chat_id: int, approver: str = "") -> None:
        """Deliver (again) a prompt or an outcome to one chat, through the outbox's pacing and retries."""
        now = time.time()
        await self.store.write(
            "INSERT INTO outbox (request_id, kind, approver, chat_id, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (request_id, kind, chat_id) DO UPDATE SET done_at = NULL, attempts = 0, "
            "next_attempt_at = excluded.next_attempt_at",
            (request_id, kind, approver, chat_id, now, now),
        )

    async def track(self, request_id: str, chat_id: int, message_id: int) -> None:
        """Remember a message with buttons for a request, so its outcome is shown there too."""
        await self.store.write(
            "INSERT OR IGNORE INTO prompts (request_id, chat_id, message_id, sent_at) VALUES (?, ?, ?, ?)",
            (request_id, chat_id, message_id, time.time()),
        )

    async def _show_outcome(self, req: ApprovalRequest, chat_id: int) -> None:
        rows = await self.store.read(
            "SELECT message_id FROM prompts WHERE request_id = ? AND chat_id = ? ORDER BY message_id", (req.id, chat_id)
        )
        text = prompt_text(req, time.time())
        for (message_id,) in rows:
            await edit_outcome(self.bot, chat_id, int(message_id), text)

    async def _done(self, outbox_id: int) -> None:
        await self.store.write(
            "UPDATE outbox SET done_at = ?, last_error = NULL WHERE id = ?", (time.time(), outbox_id)
        )

    async def _retry(self, outbox_id: int, attempts: int, delay: float, error: str, *, count: bool = True) -> None:
        await self.store.write(
            "UPDATE outbox SET attempts = attempts + ?, next_attempt_at = ?, last_error = ? WHERE id = ?",
            (1 if count else 0, time.time() + delay, error[:500], outbox_id),
        )
        log.info("telegram: will retry delivery %d in %.0f s (%s)", outbox_id, delay, error)

    def _warn_unreachable(self, chat_id: int, approver: str, error: str) -> None:
        if chat_id not in self._warned:
            self._warned.add(chat_id)
            who = f"approver {approver!r}" if approver else "this chat"
            log.warning("telegram: cannot reach chat %d (%s): %s. Ask them to open the bot and send /start; "
                        "delivery is retried until it works.", chat_id, who, error)  # fmt: skip

    async def retry_chat_now(self, chat_id: int) -> None:
        """A user just talked to the bot: what waited for their chat goes out now."""
        await self.store.write(
            "UPDATE outbox SET next_attempt_at = ? WHERE chat_id = ? AND done_at IS NULL", (time.time(), chat_id)
        )


async def edit_outcome(bot: Bot, chat_id: int, message_id: int, text: str) -> None:
    """Show the outcome on one prompt and take its buttons away (an identical edit is fine)."""
    try:
        await bot.edit_message_text(text, chat_id=chat_id, message_id=message_id, parse_mode=ParseMode.HTML)
    except BadRequest as exc:
        message = str(exc).lower()
        if "not modified" in message:
            return
        if "not found" in message or "can't be edited" in message:
            log.info("telegram: prompt %d in chat %d is gone; not edited (%s)", message_id, chat_id, exc)
            return
        raise
