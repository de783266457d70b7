"""What the bot does with each update: button presses, reasons, and the commands.

A press counts only when its data is ours (signed), the presser's Telegram *user id* belongs
to an approver of that request's route (never the chat, never a username), and the request
is still pending. Every callback query is answered.

A button decides only the message it is on. A prompt's data is signed for its request *and*
that request's action digest, so it is good for exactly the content the prompt shows; and it
counts only on a message that shows that request: one of its recorded prompts, or — to keep
the recovery of a prompt sent just before a crash — an unrecorded message whose text, as
Telegram hands it back, shows the request's ID and shortened digest (it is then recorded).
On another request's prompt, a digest or any other message it decides nothing. Request ids
are never reused and a request's content never changes, so a prompt is superseded only when
its request is decided (a press then gets "Already …" and decides nothing new) or when its
content no longer matches (the data no longer verifies); every prompt of a pending request
shows the same request and stays valid. A digest's data names one rendering of it (see
digest.py): it counts only on the chat's newest rendering, on the message it was sent on,
and covers only what that rendering lists.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from html import escape

from telegram import (
    Bot,
    CallbackQuery,
    ForceReply,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    Message,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import TelegramError

from signoff.server import grants, policy
from signoff.server.config import Config
from signoff.server.durations import humanize_delta
from signoff.server.errors import NotAllowedError, NotFoundError
from signoff.server.grants import Grant
from signoff.server.models import Actor, ApprovalRequest, Status
from signoff.server.routing import resolve
from signoff.server.sanitize import visible
from signoff.server.service import ApprovalService
from signoff.server.store import Decision

from .callbacks import (
    APPROVE,
    APPROVE_ALL,
    DIGEST_ACTIONS,
    REJECT,
    REJECT_WITH_REASON,
    REQUEST_ACTIONS,
    REVIEW_EACH,
    REVOKE,
    CallbackSigner,
    Press,
)
from .outbox import Outbox
from .render import already, clip, details_file, grant_notice, revoke_keyboard, safe, short_digest, show_text

log = logging.getLogger("signoff.telegram")
CHANNEL = "telegram"
NOT_VALID = "This button is not valid."
NOT_HERE = "This button is not valid here: it is not on a prompt of its request. /pending sends a fresh one."
OUT_OF_DATE = "This digest is out of date; use the newest one."

HELP = (
    "I put approval requests from AI agents in front of their approvers.\n\n"
    "/pending — the requests waiting for you, with their buttons\n"
    "/show ID — one request in full\n"
    "/grants — the live grants, with a button to revoke each\n"
    "/start — your user id and chat id, and whether you are an approver\n"
    "/help — this text"
)


def approver_for(config: Config, req: ApprovalRequest, user_id: int) -> str | None:
    """The approver of ``req`` whom ``user_id`` is, as the request's route snapshot *and* the
    current configuration both say; None for anyone else."""
    for entry in req.telegram_entries():
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
        chat_id = query.message.chat.id if query.message is not None else None
        claimed = self.signer.claimed(query.data)
        if claimed is not None and claimed.action in REQUEST_ACTIONS:
            await self._request_press(query, claimed.request_id)
            return
        press = self.signer.verify(query.data, chat_id)
        if press is None:
            log.warning("telegram: refused a button press with data that is not ours (user %d)", query.from_user.id)
            await self._answer(query, NOT_VALID)
            return
        if press.action in DIGEST_ACTIONS:
            assert chat_id is not None  # digest data only verifies with its chat
            await self._digest_press(query, press, chat_id)
            return
        await self._revoke(query, press.target)

    async def _request_press(self, query: CallbackQuery, request_id: str) -> None:
        """A button on a prompt: it counts only when its data was signed for this request's very
        content (its action digest) and it is on a message that shows this request."""
        try:
            req: ApprovalRequest | None = await self.service.get(request_id)
        except NotFoundError:
            req = None
        press = None if req is None else self.signer.verify_request(query.data, req.action_digest)
        if req is None or press is None:
            log.warning("telegram: refused a button press with data that is not ours, or made for other content "
                        "(user %d)", query.from_user.id)  # fmt: skip
            await self._answer(query, NOT_VALID)
            return
        user_id = query.from_user.id
        approver = approver_for(self.config, req, user_id)
        actor = Actor("human", approver or f"telegram:{user_id}", CHANNEL)
        place = await self._where(query, req)
        if place is None:
            await self.store.record(req.id, "refused", actor, {"why": "the button is not on a prompt of this request",
                                                                "action": press.action})  # fmt: skip
            await self._answer(query, NOT_HERE, alert=True)
            return
        if approver is None:
            await self.store.record(req.id, "refused", actor, {"why": "not an approver of this request",
                                                                "action": press.action})  # fmt: skip
            await self._answer(query, "You are not an approver of this request.", alert=True)
            return
        if req.status is not Status.PENDING:
            await self._answer(query, already(req))
            return
        chat_id, message_id = place
        if message_id is not None:
            # A prompt we lost track of (sent just before a crash, say) is edited with the rest.
            log.info("telegram: a press on an untracked prompt of %s (chat %d, message %d); tracking it",
                     req.id, chat_id, message_id)  # fmt: skip
            await self.outbox.track(req.id, chat_id, message_id)
        if press.action == REJECT_WITH_REASON:
            await self._answer(query, "Reply to my next message with the reason.")
            await self._ask_reason(query, req, user_id)
            return
        grant: Grant | None = None
        try:
            if press.grant_option is not None:
                offered = req.route_snapshot.get("grant_options") or []
                if press.grant_option >= len(offered):
                    await self._answer(query, NOT_VALID)
                    return
                decision, grant = await self.service.approve_and_grant(req.id, offered[press.grant_option], actor,
                                                                        chat_id=chat_id)  # fmt: skip
            else:
                decision = await self.service.decide(req.id, press.action == APPROVE, actor)
        except NotAllowedError as exc:
            await self.store.record(req.id, "refused", actor, {"why": str(exc), "action": press.action})
            await self._answer(query, str(exc), alert=True)
            return
        await self._answer(query, await self._result(decision, press.action != REJECT))
        if grant is not None:
            sent = await self.bot.send_message(chat_id, grant_notice(grant, self.service.clock()),
                                               parse_mode=ParseMode.HTML, reply_markup=revoke_keyboard(grant, self.signer))  # fmt: skip
            await grants.set_notice(self.store, grant.id, chat_id, sent.message_id)

    async def _where(self, query: CallbackQuery, req: ApprovalRequest) -> tuple[int, int | None] | None:
        """Whether the pressed message shows ``req``: ``(chat, None)`` for one of its known prompts,
        ``(chat, message)`` for a message we lost track of whose text (as Telegram holds it) shows
        the request's ID and action digest; None for anything else — another request's prompt, a
        digest, a notice, or no message at all."""
        message = query.message
        if message is None:
            return None
        chat_id, message_id = message.chat.id, message.message_id
        rows = await self.store.read(
            "SELECT request_id FROM prompts WHERE chat_id = ? AND message_id = ?", (chat_id, message_id)
        )
        if rows:
            return (chat_id, None) if rows[0][0] == req.id else None
        text = message.text if isinstance(message, Message) else None
        if text and req.id in text and req.action_digest and short_digest(req) in text:
            return chat_id, message_id
        return None

    async def _result(self, decision: Decision, approve: bool) -> str:
        """What the presser is told about their decision or vote."""
        if decision.changed:
            self.on_decided()
            return "Approved ✅" if decision.request.status is Status.APPROVED else "Rejected ❌"
        if decision.voted:
            self.on_decided()  # the prompts show the progress
            votes = await policy.votes(self.store, decision.request.id)
            n = sum(v.vote == ("approve" if approve else "reject") for v in votes)
            need = decision.request.quorum if approve else decision.request.reject_quorum
            return f"Your {'approval' if approve else 'rejection'} counts: {n} of {need}. Waiting for the others."
        if decision.already_voted:
            return f"You already voted to {decision.already_voted} this request; waiting for the others."
        return already(decision.request)

    async def _digest_press(self, query: CallbackQuery, press: Press, chat_id: int) -> None:
        digests = self.outbox.digests
        assert query.message is not None  # digest data only verifies with its chat
        render = await digests.current(chat_id, press.render_id, query.message.message_id)
        if render is None:  # an older render, another message, or a digest since ended
            await self._answer(query, OUT_OF_DATE)
            return
        items = await digests.listed(render)  # what this very message lists, still pending
        if not items:
            await self._answer(query, "Nothing in this digest is pending any more.")
            return
        user_id = query.from_user.id
        names = {r.id: approver_for(self.config, r, user_id) for r in items}
        if press.action == REVIEW_EACH:
            mine = {rid for rid, name in names.items() if name}
            if not mine:
                await self._answer(query, "None of these requests is yours to decide.", alert=True)
                return
            taken = await digests.take_for_review(chat_id, items, only=mine)
            for req in taken:
                await self.outbox.queue(req.id, "show", chat_id, names[req.id] or "")
            await self.outbox.queue(items[0].id, "digest", chat_id)
            self.on_decided()
            await self._answer(query, f"Sending the {len(taken)} oldest one by one.")
            return
        approve = press.action == APPROVE_ALL
        refused = [r for r in items if names[r.id] is None]
        why = None
        if refused:
            why = "You are not an approver of every request in this digest."
        elif approve and not all(r.route_snapshot.get("allow_bulk") for r in items):
            why = "Some of these routes do not allow approving in bulk; use Review each."
        if why is not None:
            for req in refused or items:
                await self.store.record(req.id, "refused", Actor("human", names[req.id] or f"telegram:{user_id}",
                                        CHANNEL), {"why": why, "action": press.action})  # fmt: skip
            await self._answer(query, why, alert=True)
            return
        done = skipped = 0
        for req in items:
            try:
                decision = await self.service.decide(req.id, approve, Actor("human", names[req.id] or "", CHANNEL))
            except NotAllowedError:
                skipped += 1
                continue
            done += decision.changed or decision.voted
            skipped += not (decision.changed or decision.voted)
        self.on_decided()
        verb = "Approved" if approve else "Rejected"
        text = f"{verb} {done} of {len(items)}."
        if skipped:
            text += f" {skipped} skipped (your own requests, already decided, or already voted)."
        await self._answer(query, text, alert=bool(skipped))

    async def _revoke(self, query: CallbackQuery, grant_id: str) -> None:
        try:
            grant = await grants.get(self.store, grant_id)
        except NotFoundError:
            await self._answer(query, "This grant no longer exists.")
            return
        name = configured_name(self.config, query.from_user.id)
        route = self.config.route(grant.route)
        may = name is not None and (
            name == grant.created_by or (route is not None and name in resolve(self.config, route).everyone)
        )
        if not may or name is None:
            await self._answer(query, "Only the approver who made it or an approver of its route can revoke it.",
                               alert=True)  # fmt: skip
            return
        revoked = await self.service.revoke_grant(grant_id, Actor("human", name, CHANNEL))
        await self.outbox.queue(grant.from_request, "grant_notice", grant.chat_id or query.from_user.id)
        self.on_decided()
        await self._answer(query, f"Revoked {grant_id}." if revoked else f"{grant_id} had already ended.")

    async def _answer(self, query: CallbackQuery, text: str, *, alert: bool = False) -> None:
        try:
            await query.answer(visible(text)[:200], show_alert=alert)  # plain text: no HTML to escape
        except TelegramError as exc:  # too late or already answered: the decision stands regardless
            log.info("telegram: could not answer a button press: %s", exc)

    async def _ask_reason(self, query: CallbackQuery, req: ApprovalRequest, user_id: int) -> None:
        chat_id = query.message.chat.id if query.message is not None else user_id
        sent = await self.bot.send_message(
            chat_id,
            f"✍️ Why reject <code>{req.id}</code> ({clip(req.action, 300)})? Reply to this message with the reason.",
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
        try:
            decision = await self.service.decide(req.id, False, Actor("human", approver, CHANNEL), message.text or "")
        except NotAllowedError as exc:
            await self._reply(message, safe(str(exc), one_line=False))
            return
        if decision.changed:
            self.on_decided()
            await self._reply(message, f"Rejected <code>{req.id}</code>.")
        else:
            await self._reply(message, escape(await self._result(decision, False)))

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
        elif command == "/grants":
            await self._grants(message, user.id)
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
            await self.outbox.queue(req.id, "show", message.chat.id, approver_for(self.config, req, user_id) or "")
        self.on_decided()  # wake the outbox

    async def _grants(self, message: Message, user_id: int) -> None:
        name = configured_name(self.config, user_id)
        if name is None:
            await self._reply(message, "You are not an approver.")
            return
        live = await self.service.list_grants()
        if not live:
            await self._reply(message, "No grants are live. Approve a request with “Approve for …” to make one.")
            return
        now = self.service.clock()
        lines = [f"{len(live)} live grant(s):"] + [
            f"• <code>{escape(g.id)}</code> {clip(g.scope(), 300)} — by {escape(g.created_by)}, "
            f"{humanize_delta(g.expires_at - now)}, used {g.uses}×" for g in live[:20]
        ]  # fmt: skip
        buttons = [[InlineKeyboardButton(f"🛑 Revoke {g.id}", callback_data=self.signer.sign(REVOKE, g.id))]
                   for g in live[:20]]  # fmt: skip
        await self.bot.send_message(message.chat.id, "\n".join(lines), parse_mode=ParseMode.HTML,
                                    reply_markup=InlineKeyboardMarkup(buttons))  # fmt: skip

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
