"""Draining the outbox into Telegram: prompts out, outcomes edited in, nothing lost.

The core writes the rows (server/outbox.py) in the same transaction that files, decides,
escalates or reminds about a request, so whatever process did that, the bot-lease holder
finds them here; this module delivers them and reports back. Kinds:
``prompt`` (a new request; gathered into the chat's digest when the chat already has more
than ``digest_threshold`` pending prompts), ``show`` (a prompt someone asked for: /pending,
"Review each"), ``outcome`` and ``progress`` (edit the prompts), ``reminder`` (a reply to
the prompt), ``escalated`` (a note to earlier approvers), ``grant_used`` (edit a grant's
notice with its count) and ``digest`` (send or edit the chat's digest).

Each row is retried until Telegram takes it: 429 waits ``retry_after``; network errors, 5xx
and chats that cannot be reached yet back off. Every call to one chat is paced to one a
second (groups: one per three seconds) and ``AIORateLimiter`` keeps the overall and group
limits, so a burst of requests cannot break Telegram's limits. Prompts and reminders of
non-urgent routes wait for the end of the approver's quiet hours (what they ask for with
/pending or "Review each" does not).
"""

from __future__ import annotations

import datetime as dtm
import logging
import time

from telegram import Bot, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from signoff.server.channels import ChannelService
from signoff.server.models import ApprovalRequest, Status
from signoff.server.outbox import PROMPTS, Delivery, Kind

from .buttons import ButtonSigner
from .digest import Digests
from .edits import edit_message
from .questions import escalated_text_for, keyboard_for, prompt_text_for, reminder_text_for
from .render import grant_notice, revoke_keyboard

log = logging.getLogger("signoff.telegram")

PRIVATE_GAP = 1.0  # seconds between calls to one private chat
GROUP_GAP = 3.0  # 20 a minute in a group
MAX_BACKOFF = 60.0
UNREACHABLE_BACKOFF = 300.0
NEW_MESSAGES = (Kind.PROMPT, Kind.REMINDER)  # what quiet hours hold ("show" was asked for: never held)


def _seconds(value: int | float | dtm.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


class Outbox:
    """Delivers due outbox rows through ``bot``; one instance per lease holder.

    The clock of ``core`` is the service's (what deadlines and quiet hours are measured
    against); the pacing between calls is real time.
    """

    def __init__(self, core: ChannelService, bot: Bot, signer: ButtonSigner) -> None:
        self.core = core
        self.rows = core.outbox
        self.bot = bot
        self.signer = signer
        self.clock = core.clock
        self.digests = Digests(core.digests, core.outbox, bot, signer)
        self._chat_free_at: dict[int, float] = {}  # after any call to the chat (what edits and notes wait for)
        self._prompt_free_at: dict[int, float] = {}  # after a prompt or a 429 (what prompts wait for)
        self._warned: set[int] = set()

    async def drain(self) -> float:
        """Deliver what is due now; return how long until something may be due again."""
        wait = 0.25
        for row in await self.rows.due():
            chat_id = int(row.address)
            try:
                if row.kind == Kind.PROMPT and await self.core.digests.gather(row):
                    continue  # into the digest: no call of its own
            except Exception:  # never let one row stop the others; it is then sent as a prompt of its own
                log.exception("telegram: gathering outbox row %d into a digest failed", row.id)
            prompt = row.kind in PROMPTS
            free_at = (self._prompt_free_at if prompt else self._chat_free_at).get(chat_id, 0.0)
            if free_at > time.monotonic():
                wait = min(wait, free_at - time.monotonic())
                continue  # this chat is paced; others go on
            if await self._deliver(row):
                free_at = max(self._chat_free_at.get(chat_id, 0.0),
                              time.monotonic() + (PRIVATE_GAP if chat_id > 0 else GROUP_GAP))  # fmt: skip
                self._chat_free_at[chat_id] = free_at
                if prompt:
                    self._prompt_free_at[chat_id] = free_at
        return max(0.0, wait)

    async def _deliver(self, row: Delivery) -> bool:
        """Deliver one row; return whether Telegram was called (and the chat's pace used)."""
        chat_id, attempts, kind = int(row.address), row.attempts, row.kind
        req = await self.core.get(row.request_id)
        if req is None:  # pragma: no cover - rows reference requests by foreign key
            await self.rows.done(row.id)
            return False
        try:
            if kind in NEW_MESSAGES and req.status is Status.PENDING:
                held = self.core.held_until(req, row.approver)
                if held is not None:
                    await self.rows.hold(row.id, held)
                    return False
            called = await self._send(row, req, chat_id)
            await self.rows.done(row.id)
            if kind in PROMPTS:
                self._warned.discard(chat_id)
            return called
        except RetryAfter as exc:
            delay = _seconds(exc.retry_after)
            self._chat_free_at[chat_id] = self._prompt_free_at[chat_id] = time.monotonic() + delay
            await self._retry(row.id, delay, f"429: retry after {delay:.0f} s", count=False)
        except Forbidden as exc:
            self._warn_unreachable(chat_id, row.approver, str(exc))
            await self._retry(row.id, min(UNREACHABLE_BACKOFF, 2.0 ** (attempts + 2)), str(exc))
        except (NetworkError, BadRequest, TelegramError) as exc:  # NetworkError covers timeouts and 5xx
            await self._retry(row.id, min(MAX_BACKOFF, 2.0**attempts), f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug with one row must never hold up every other prompt
            log.exception("telegram: delivering outbox row %d (%s) failed; backing it off", row.id, kind)
            await self._retry(row.id, min(UNREACHABLE_BACKOFF, 2.0 ** (attempts + 2)),
                              f"internal error: {type(exc).__name__}")  # fmt: skip
        return True

    async def _send(self, row: Delivery, req: ApprovalRequest, chat_id: int) -> bool:
        kind = row.kind
        if kind in PROMPTS:
            return await self._send_prompt(row.id, req, chat_id, kind)
        if kind in (Kind.OUTCOME, Kind.PROGRESS):
            return await self._edit_prompts(req, chat_id)
        if kind == Kind.REMINDER:
            return await self._remind(req, chat_id, row.approver)
        if kind == Kind.ESCALATED:
            if req.status is not Status.PENDING:
                return False
            # One call per slot: the prompt's own header catches up at its next edit.
            await self.bot.send_message(chat_id, escalated_text_for(req), parse_mode=ParseMode.HTML,
                                        disable_notification=True)  # fmt: skip
            return True
        if kind in (Kind.GRANT_USED, Kind.GRANT_NOTICE):
            return await self._grant_count(req, chat_id, kind, row.id)
        if kind == Kind.DIGEST:
            return await self.digests.refresh(chat_id, row.id)
        log.warning("telegram: unknown outbox kind %r; skipped", kind)
        return False

    async def _send_prompt(self, outbox_id: int, req: ApprovalRequest, chat_id: int, kind: str = Kind.PROMPT) -> bool:
        if req.status is not Status.PENDING:
            return False  # decided before it was delivered: nothing to ask
        if kind == Kind.PROMPT and await self.rows.prompts(req.id, str(chat_id)):
            return False  # the chat has it already (asked for with /pending while this one was held)
        votes = await self.core.votes(req.id)
        message = await self.bot.send_message(chat_id, prompt_text_for(req, self.clock(), votes),
                                              parse_mode=ParseMode.HTML, reply_markup=keyboard_for(req, self.signer))  # fmt: skip
        await self.rows.sent(outbox_id, req.id, str(chat_id), str(message.message_id))
        # Changed while we were sending? Then what it queued may have missed this chat.
        current = await self.core.get(req.id)
        if current is not None and current.status is not Status.PENDING:
            await self.queue(req.id, Kind.OUTCOME, chat_id)
        elif current is not None and current.level != req.level:
            await self.queue(req.id, Kind.ESCALATED, chat_id)
        elif len(await self.core.votes(req.id)) != len(votes):
            await self.queue(req.id, Kind.PROGRESS, chat_id)
        return True

    async def _prompt_ids(self, request_id: str, chat_id: int) -> list[int]:
        return sorted(int(m) for m in await self.rows.prompts(request_id, str(chat_id)))

    async def _edit_prompts(self, req: ApprovalRequest, chat_id: int) -> bool:
        """Show the request as it is now on each of its prompts in the chat (buttons while pending)."""
        ids = await self._prompt_ids(req.id, chat_id)
        if not ids:
            return False
        text = prompt_text_for(req, self.clock(), await self.core.votes(req.id))
        markup = keyboard_for(req, self.signer) if req.status is Status.PENDING else None
        for message_id in ids:
            await edit_message(self.bot, chat_id, message_id, text, markup)
        return True

    async def _remind(self, req: ApprovalRequest, chat_id: int, approver: str) -> bool:
        if req.status is not Status.PENDING:
            return False
        if any(v.approver == approver for v in await self.core.votes(req.id)):
            return False  # voted since the reminder was queued
        ids = await self._prompt_ids(req.id, chat_id)
        reply = ReplyParameters(message_id=ids[-1], allow_sending_without_reply=True) if ids else None
        await self.bot.send_message(chat_id, reminder_text_for(req, self.clock()), parse_mode=ParseMode.HTML,
                                    reply_parameters=reply)  # fmt: skip
        return True

    async def _grant_count(self, req: ApprovalRequest, chat_id: int, kind: str, outbox_id: int) -> bool:
        """Send a grant's notice (queued as ``grant_notice`` when the grant is made), or edit it: its
        count after a use (``grant_used``, for the request the grant approved), its end (``grant_notice``)."""
        if kind == Kind.GRANT_NOTICE:
            grant = await self.core.grant_from(req.id)
        elif (req.decided_by or "").startswith("grant:"):
            grant = await self.core.grant((req.decided_by or "").removeprefix("grant:"))
        else:
            return False
        if grant is None or grant.notice_channel != "telegram" or grant.notice_address != str(chat_id):
            return False
        await self.rows.done_grant_uses(str(chat_id), grant.id)  # this one message shows them all …
        try:
            grant = await self.core.grant(grant.id) or grant  # … counted from here on
            markup = revoke_keyboard(grant, self.signer) if grant.live(self.clock()) else None
            if grant.notice_message is None:  # the grant was just made: its notice, sent once
                sent = await self.bot.send_message(chat_id, grant_notice(grant, self.clock()), parse_mode=ParseMode.HTML,
                                                   reply_markup=markup)  # fmt: skip
                await self.core.grant_notice_sent(grant, str(sent.message_id))
            else:
                await edit_message(self.bot, chat_id, int(grant.notice_message), grant_notice(grant, self.clock()),
                                   markup)  # fmt: skip
        except Exception:
            await self.rows.undone(outbox_id)  # marked done with the uses above: due again, for its retry
            raise
        return True

    async def queue(self, request_id: str, kind: Kind, chat_id: int, approver: str = "") -> None:
        """Deliver (again) a prompt, an outcome, … to one chat, through the outbox's pacing and retries."""
        await self.rows.queue(request_id, kind, str(chat_id), approver)

    async def track(self, request_id: str, chat_id: int, message_id: int) -> None:
        """Remember a message with buttons for a request, so its outcome is shown there too."""
        await self.rows.track(request_id, str(chat_id), str(message_id))

    async def _retry(self, outbox_id: int, delay: float, error: str, *, count: bool = True) -> None:
        await self.rows.retry(outbox_id, delay, error, count=count)
        log.info("telegram: will retry delivery %d in %.0f s (%s)", outbox_id, delay, error)

    def _warn_unreachable(self, chat_id: int, approver: str, error: str) -> None:
        if chat_id not in self._warned:
            self._warned.add(chat_id)
            who = f"approver {approver!r}" if approver else "this chat"
            log.warning("telegram: cannot reach chat %d (%s): %s. Ask them to open the bot and send /start; "
                        "delivery is retried until it works.", chat_id, who, error)  # fmt: skip

    async def retry_chat_now(self, chat_id: int) -> None:
        """A user just talked to the bot: what waited for their chat goes out now (quiet hours aside)."""
        await self.rows.retry_now(str(chat_id))
