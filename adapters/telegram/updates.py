"""What the bot does with each update: button presses, reasons, and the commands.

A press counts only when its data is ours (signed), the presser's Telegram *user id* belongs
to an approver of that request's route (never the chat, never a username), and the request
is still pending. Every callback query is answered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from html import escape

from telegram import Bot, CallbackQuery, ForceReply, InputFile, Message, Update
from telegram.constants import ParseMode
from telegram.error import TelegramError

from server.config import Config
from server.errors import NotFoundError
from server.models import Actor, ApprovalRequest, Status
from server.service import ApprovalService

from .callbacks import APPROVE, REJECT_WITH_REASON, CallbackSigner
from .outbox import Outbox
from .render import already, details_file, show_text

log = logging.getLogger("signoff.telegram")
CHANNEL = "telegram"

HELP = (
    "I put approval requests from AI agents in front of their approvers.\n\n"
    "/pending — the requests waiting for you, with their buttons\n"
    "/show ID — one request in full\n"
    "/start — your user id and chat id, and whether you are an approver\n"
    "/help — this text"
)


def approver_for(config: Config, req: ApprovalRequest, user_id: int) -> str | None:
    """The approver of ``req`` whom ``user_id`` is, as the request's route snapshot *and* the
    current configuration both say; None for anyone else."""
    for entry in req.route_snapshot.get("telegram", []):
        name = entry.get("approver")
        current = config.approvers.get(name) if isinstance(name, str) else None
        if entry.get("user_id") == user_id and current is not None and current.telegram_user_id == user_id:
            return str(name)
    return None


def configured_name(config: Config, user_id: int) -> str | None:
    return next((n for n, a in config.approvers.items() if a.telegram_user_id == user_id), None)


class UpdateHandler:
    """Handles one update at a time; ``on_decided`` wakes the outbox so outcomes show at once."""

    def __init__(self, service: ApprovalService, bot: Bot, signer: CallbackSigner, outbox: Outbox,
                 on_decided: Callable[[], None]) -> None:  # fmt: skip
        self.service = service
        self.config = service.config
        self.store = service.store
        self.bot = bot
        self.signer = signer
        self.outbox = outbox
        self.on_decided = on_decided

    async def handle(self, update: Update) -> None:
        if update.callback_query is not None:
            await self._press(update.callback_query)
        elif update.message is not None and update.message.text:
            await self.outbox.retry_chat_now(update.message.chat.id)
            if update.message.text.startswith("/"):
                await self._command(update.message)
            elif update.message.reply_to_message is not None:
                await self._reason(update.message)

    # --- buttons -------------------------------------------------------------------------

    async def _press(self, query: CallbackQuery) -> None:
        press = self.signer.verify(query.data)
        if press is None:
            log.warning("telegram: refused a button press with data that is not ours (user %d)", query.from_user.id)
            await self._answer(query, "This button is not valid.")
            return
        try:
            req = await self.service.get(press.request_id)
        except NotFoundError:
            await self._answer(query, "This request no longer exists.")
            return
        user_id = query.from_user.id
        approver = approver_for(self.config, req, user_id)
        if approver is None:
            await self.store.record(req.id, "refused", Actor("human", f"telegram:{user_id}", CHANNEL),
                                    {"why": "not an approver of this request", "action": press.action})  # fmt: skip
            await self._answer(query, "You are not an approver of this request.", alert=True)
            return
        if req.status is not Status.PENDING:
            await self._answer(query, already(req))
            return
        if query.message is not None:
            # A prompt we lost track of (sent just before a crash, say) is edited with the rest.
            await self.outbox.track(req.id, query.message.chat.id, query.message.message_id)
        if press.action == REJECT_WITH_REASON:
            await self._answer(query, "Reply to my next message with the reason.")
            await self._ask_reason(query, req, user_id)
            return
        decision = await self.service.decide(req.id, press.action == APPROVE, Actor("human", approver, CHANNEL))
        if decision.changed:
            self.on_decided()
            await self._answer(query, "Approved ✅" if press.action == APPROVE else "Rejected ❌")
        else:
            await self._answer(query, already(decision.request))

    async def _answer(self, query: CallbackQuery, text: str, *, alert: bool = False) -> None:
        try:
            await query.answer(text[:200], show_alert=alert)
        except TelegramError as exc:  # too late or already answered: the decision stands regardless
            log.info("telegram: could not answer a button press: %s", exc)

    async def _ask_reason(self, query: CallbackQuery, req: ApprovalRequest, user_id: int) -> None:
        chat_id = query.message.chat.id if query.message is not None else user_id
        sent = await self.bot.send_message(
            chat_id,
            f"✍️ Why reject <code>{req.id}</code> ({escape(req.action)})? Reply to this message with the reason.",
            parse_mode=ParseMode.HTML,
            reply_markup=ForceReply(selective=True, input_field_placeholder="The reason for rejecting"),
        )
        await self.store.write(
            "INSERT OR REPLACE INTO reason_prompts (chat_id, message_id, request_id, user_id, created_at) VALUES (?, ?, ?, ?, ?)",
            (chat_id, sent.message_id, req.id, user_id, time.time()),
        )

    async def _reason(self, message: Message) -> None:
        assert message.reply_to_message is not None and message.from_user is not None
        rows = await self.store.read(
            "SELECT request_id, user_id FROM reason_prompts WHERE chat_id = ? AND message_id = ?",
            (message.chat.id, message.reply_to_message.message_id),
        )
        if not rows or int(rows[0]["user_id"]) != message.from_user.id:
            return  # not an answer to our question, or not from the approver we asked
        req = await self.service.get(rows[0]["request_id"])
        approver = approver_for(self.config, req, message.from_user.id)
        if approver is None:
            return
        decision = await self.service.decide(req.id, False, Actor("human", approver, CHANNEL), message.text or "")
        if decision.changed:
            self.on_decided()
            await self._reply(message, f"Rejected <code>{req.id}</code>.")
        else:
            await self._reply(message, escape(already(decision.request)))

    # --- commands ------------------------------------------------------------------------

    async def _command(self, message: Message) -> None:
        assert message.text is not None
        word, _, rest = message.text.partition(" ")
        command = word.split("@", 1)[0].lower()
        user = message.from_user
        if user is None:
            return
        if command == "/start":
            name = configured_name(self.config, user.id)
            role = (f"You are approver <b>{escape(name)}</b>." if name else
                    "You are not an approver. To become one, add to the config:\n"
                    f"<pre>[approvers.yourname]\ntelegram_user_id = {user.id}</pre>")  # fmt: skip
            await self._reply(message, f"Your Telegram user id is <code>{user.id}</code>; this chat's id is "
                                       f"<code>{message.chat.id}</code>.\n{role}")  # fmt: skip
        elif command == "/pending":
            await self._pending(message, user.id)
        elif command == "/show":
            await self._show(message, user.id, rest.strip())
        else:
            await self._reply(message, escape(HELP))

    async def _pending(self, message: Message, user_id: int) -> None:
        mine = [r for r in await self.service.pending() if approver_for(self.config, r, user_id)]
        if not mine:
            await self._reply(message, "Nothing is waiting for you.")
            return
        await self._reply(
            message, f"{len(mine)} request(s) waiting for you" + (" (the 10 oldest):" if len(mine) > 10 else ":")
        )
        for req in mine[:10]:
            # Through the outbox, so the per-chat pacing holds and the prompt is tracked like any other.
            await self.outbox.queue(req.id, "prompt", message.chat.id, approver_for(self.config, req, user_id) or "")
        self.on_decided()  # wake the outbox

    async def _show(self, message: Message, user_id: int, request_id: str) -> None:
        try:
            req = await self.service.get(request_id)
        except NotFoundError:
            req = None
        if req is None or approver_for(self.config, req, user_id) is None:
            await self._reply(message, "No such request among yours. /pending lists them.")
            return
        await self._reply(message, show_text(req, time.time()))
        data = details_file(req)
        if data is not None:  # one file instead of a burst of messages
            await self.bot.send_document(message.chat.id, InputFile(data, filename=f"{req.id}-details.json"),
                                         caption=f"Details of {req.id}, in full")  # fmt: skip

    async def _reply(self, message: Message, html: str) -> None:
        await self.bot.send_message(message.chat.id, html, parse_mode=ParseMode.HTML)
