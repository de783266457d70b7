"""What the bot does with each update: button presses, reasons and notes, and the commands.

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

A question (``ask_human``) is answered, never approved: its option buttons answer with the
stored option their index names, and "✍️ Answer…" sends the presser a reply prompt whose reply
(theirs alone) is the answer. Request buttons on a question, or question buttons on an
approval request, are not valid; a digest's "Approve all" and "Reject all" skip questions.
"""

from __future__ import annotations

import json
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
    LinkPreviewOptions,
    Message,
    Update,
)
from telegram.constants import ChatType, ParseMode
from telegram.error import BadRequest, Forbidden, TelegramError

from signoff.server.channels import NOT_AN_APPROVER, ChannelService, EmptyNoteError
from signoff.server.details_text import parse_edit
from signoff.server.durations import humanize_delta
from signoff.server.errors import NotAllowedError, NotFoundError, RequestError
from signoff.server.grant_models import Grant
from signoff.server.models import ApprovalRequest, Decision, Status
from signoff.server.outbox import ANSWER, NOTE, REASON, Asked, Kind
from signoff.server.sanitize import visible

from .buttons import ANSWER as ANSWER_BUTTON
from .buttons import (
    APPROVE,
    APPROVE_ALL,
    APPROVE_EDITED,
    APPROVE_WITH_NOTE,
    DIGEST_ACTIONS,
    EDIT,
    EDIT_ACTIONS,
    QUESTION_ACTIONS,
    REJECT,
    REJECT_WITH_REASON,
    REQUEST_ACTIONS,
    REVIEW_EACH,
    REVOKE,
    ButtonSigner,
    Press,
)
from .edits import edit_message
from .outbox import Outbox
from .questions import answer_prompt, show_text_for
from .render import (
    already,
    clip,
    details_file,
    edit_confirm_text,
    edit_keyboard,
    edit_prompt_text,
    edit_too_long_text,
    safe,
    short_digest,
    web_link_text,
)

log = logging.getLogger("signoff.telegram")
CHANNEL = "telegram"
NOT_VALID = "This button is not valid."
NOT_HERE = "This button is not valid here: it is not on a prompt of its request. /pending sends a fresh one."
OUT_OF_DATE = "This digest is out of date; use the newest one."
NOT_YOUR_EDIT = "Only the approver who made this edit can confirm or discard it."
EDIT_CLOSED = "This edit was already approved or discarded."
NO_CHANGE = "That changes nothing; reply again with the edit, or press Approve on the prompt."

HELP = (
    "I put approval requests from AI agents in front of their approvers.\n\n"
    "/pending — the requests waiting for you, with their buttons\n"
    "/show ID — one request in full\n"
    "/grants — the live grants, with a button to revoke each\n"
    "/web — a sign-in link to the web inbox, sent to you privately\n"
    "/start — your user id and chat id, and whether you are an approver\n"
    "/help — this text"
)


class UpdateHandler:
    """Handles one update at a time; ``on_decided`` wakes the outbox so outcomes show at once."""

    def __init__(self, core: ChannelService, bot: Bot, signer: ButtonSigner, outbox: Outbox,
                 on_decided: Callable[[], None]) -> None:  # fmt: skip
        self.core = core
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
        if claimed is not None and claimed.action in EDIT_ACTIONS:
            await self._edit_press(query, claimed.edit_id)
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
        req = await self.core.get(request_id)
        press = None if req is None else self.signer.verify_request(query.data, req.action_digest)
        if req is None or press is None or req.is_question != (press.action in QUESTION_ACTIONS):
            log.warning("telegram: refused a button press with data that is not ours, or made for other content "
                        "(user %d)", query.from_user.id)  # fmt: skip
            await self._answer(query, NOT_VALID)
            return
        user_id = query.from_user.id
        user = str(user_id)
        place = await self._where(query, req)
        if place is None:
            await self.core.refuse(req, user, "the button is not on a prompt of this request", press.action)
            await self._answer(query, NOT_HERE, alert=True)
            return
        try:
            await self.core.check_approver(req, user, press.action)
        except NotAllowedError as exc:
            await self._answer(query, str(exc), alert=True)
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
        if req.is_question:
            await self._question_press(query, req, press)
            return
        if press.action in (REJECT_WITH_REASON, APPROVE_WITH_NOTE):
            kind = REASON if press.action == REJECT_WITH_REASON else NOTE
            await self._answer(query, f"Reply to my next message with the {kind}.")
            chat_id = query.message.chat.id if query.message is not None else user_id
            await self._ask(chat_id, req, user_id, kind)
            return
        if press.action == EDIT:
            await self._ask_edit(query, req, user_id)
            return
        grant: Grant | None = None
        if press.grant_option is not None and press.grant_option >= len(req.route_snapshot.get("grant_options") or []):
            await self._answer(query, NOT_VALID)
            return
        try:
            if press.grant_option is not None:
                decision, grant = await self.core.approve_and_grant(req, press.grant_option, user, press.action,
                                                                     str(chat_id))  # fmt: skip
            else:
                decision = await self.core.decide(req, press.action == APPROVE, user, press.action)
        except NotAllowedError as exc:
            await self._answer(query, str(exc), alert=True)
            return
        await self._answer(query, await self._result(decision, press.action != REJECT))
        if grant is not None:  # its notice goes out through the outbox: paced, and retried after a 429
            await self.outbox.queue(req.id, Kind.GRANT_NOTICE, chat_id)
            self.on_decided()

    async def _question_press(self, query: CallbackQuery, req: ApprovalRequest, press: Press) -> None:
        """An option answers the question with that option (the stored text, never the data's);
        "✍️ Answer…" asks the presser for their own words in a reply prompt."""
        user_id = query.from_user.id
        if press.option is None:  # "✍️ Answer…"
            await self._answer(query, "Reply to my next message with your answer.")
            await self._ask(query.message.chat.id if query.message is not None else user_id, req, user_id, ANSWER)
            return
        try:
            decision = await self.core.answer_option(req, press.option, str(user_id), press.action)
        except RequestError as exc:  # refused (audited by the core): not this approver's, or no such option
            await self._answer(query, str(exc), alert=True)
            return
        await self._answer(query, await self._result(decision, True))

    async def _where(self, query: CallbackQuery, req: ApprovalRequest) -> tuple[int, int | None] | None:
        """Whether the pressed message shows ``req``: ``(chat, None)`` for one of its known prompts,
        ``(chat, message)`` for a message we lost track of whose text (as Telegram holds it) shows
        the request's ID and action digest; None for anything else — another request's prompt, a
        digest, a notice, or no message at all."""
        message = query.message
        if message is None:
            return None
        chat_id, message_id = message.chat.id, message.message_id
        shown = await self.core.outbox.request_on(str(message_id), str(chat_id))
        if shown is not None:
            return (chat_id, None) if shown == req.id else None
        text = message.text if isinstance(message, Message) else None
        if text and req.id in text and req.action_digest and short_digest(req) in text:
            return chat_id, message_id
        return None

    async def _result(self, decision: Decision, approve: bool) -> str:
        """What the presser is told about their decision or vote."""
        if decision.changed or decision.voted:
            self.on_decided()  # the prompts show the outcome, or the progress
        return await self.core.told(decision, approve) or already(decision.request)

    async def _digest_press(self, query: CallbackQuery, press: Press, chat_id: int) -> None:
        book = self.core.digests
        assert query.message is not None  # digest data only verifies with its chat
        render = await book.current(str(chat_id), press.render_id, str(query.message.message_id))
        if render is None:  # an older render, another message, or a digest since ended
            await self._answer(query, OUT_OF_DATE)
            return
        items = await book.listed(render)  # what this very message lists, still pending
        if not items:
            await self._answer(query, "Nothing in this digest is pending any more.")
            return
        user = str(query.from_user.id)
        if press.action == REVIEW_EACH:
            names = {r.id: self.core.approver_of(r, user) for r in items}
            mine = {rid for rid, name in names.items() if name}
            if not mine:
                await self._answer(query, "None of these requests is yours to decide.", alert=True)
                return
            taken = await book.take_for_review(str(chat_id), items, only=mine,
                                               prompted=await self.core.outbox.prompted(str(chat_id)))  # fmt: skip
            for req in taken:
                await self.outbox.queue(req.id, Kind.SHOW, chat_id, names[req.id] or "")
            await book.queue_refresh(items[0].id, str(chat_id))
            self.on_decided()
            await self._answer(query, f"Sending the {len(taken)} oldest one by one.")
            return
        approve = press.action == APPROVE_ALL
        items = [r for r in items if not r.is_question]  # answered one by one, never in bulk
        if not items:
            await self._answer(query, "Questions are answered one by one: press “Review each”.")
            return
        try:
            bulk = await self.core.decide_bulk(items, approve, user, press.action)
        except NotAllowedError as exc:
            await self._answer(query, str(exc), alert=True)
            return
        self.on_decided()
        verb = "Approved" if approve else "Rejected"
        text = f"{verb} {bulk.done} of {len(items)}."
        if bulk.skipped:
            text += f" {bulk.skipped} skipped (your own requests, already decided, or already voted)."
        await self._answer(query, text, alert=bool(bulk.skipped))

    async def _revoke(self, query: CallbackQuery, grant_id: str) -> None:
        grant = await self.core.grant(grant_id)
        if grant is None:
            await self._answer(query, "This grant no longer exists.")
            return
        try:
            revoked = await self.core.revoke(grant, str(query.from_user.id))
        except NotAllowedError as exc:
            await self._answer(query, str(exc), alert=True)
            return
        notice_chat = int(grant.notice_address) if grant.notice_channel == CHANNEL and grant.notice_address else None
        await self.outbox.queue(grant.from_request, Kind.GRANT_NOTICE, notice_chat or query.from_user.id)
        self.on_decided()
        await self._answer(query, f"Revoked {grant_id}." if revoked else f"{grant_id} had already ended.")

    async def _answer(self, query: CallbackQuery, text: str, *, alert: bool = False) -> None:
        try:
            await query.answer(visible(text)[:200], show_alert=alert)  # plain text: no HTML to escape
        except TelegramError as exc:  # too late or already answered: the decision stands regardless
            log.info("telegram: could not answer a button press: %s", exc)

    async def _ask(self, chat_id: int, req: ApprovalRequest, user_id: int, kind: str, again: str = "") -> None:
        """Ask ``user_id``, in a reply prompt, why they reject ``req`` (``kind`` "reason") or what
        note goes with their approval ("note"); only their reply to it counts."""
        if kind == NOTE:
            question = f"📝 What note goes with approving <code>{req.id}</code> ({clip(req.action, 300)})?"
            placeholder = "The note the agent receives"
        elif kind == ANSWER:
            question, placeholder = answer_prompt(req), "Your answer, for the agent"
        else:
            question = f"✍️ Why reject <code>{req.id}</code> ({clip(req.action, 300)})?"
            placeholder = "The reason for rejecting"
        sent = await self.bot.send_message(
            chat_id,
            f"{again}{question} Reply to this message with the {kind}.",
            parse_mode=ParseMode.HTML,
            reply_markup=ForceReply(selective=True, input_field_placeholder=placeholder),
        )
        await self.core.outbox.ask_reason(str(chat_id), str(sent.message_id), req.id, str(user_id), kind)

    async def _reason(self, message: Message) -> None:
        """A reply to a reply prompt: from the approver who was asked, it rejects with the reason
        or approves with the note; anyone else's reply decides nothing (it is audited as refused),
        and a reply to anything else is ignored."""
        assert message.reply_to_message is not None and message.from_user is not None
        asked = await self.core.outbox.reason_asked(str(message.chat.id), str(message.reply_to_message.message_id))
        user = str(message.from_user.id)
        if asked is None:
            edit = await self.core.outbox.edit_asked(str(message.chat.id), str(message.reply_to_message.message_id))
            if edit is not None:
                await self._edit_reply(message, edit)
            return  # otherwise not an answer to our question
        req = await self.core.get(asked.request_id)
        if asked.kind == ANSWER:
            await self._answer_reply(message, asked, req)
            return
        note = asked.kind == NOTE
        action = APPROVE_WITH_NOTE if note else REJECT_WITH_REASON
        if req is not None and asked.user_id != user:  # someone else answered: it counts for nothing
            await self.core.refuse(req, user, f"a reply to a {asked.kind} prompt that asked another approver", action)
            return
        if req is None or self.core.approver_of(req, user) is None:
            return
        text = message.text or ""
        try:
            if note:
                decision = await self.core.approve_with_note(req, user, action, text)
            else:
                decision = await self.core.decide(req, False, user, action, text)
        except NotAllowedError as exc:
            await self._reply(message, safe(str(exc), one_line=False))
            return
        except RequestError as exc:  # an empty note, or one (or a reason) too long or with control characters
            if req.status is Status.PENDING:
                why = "That note is empty." if isinstance(exc, EmptyNoteError) else safe(str(exc), one_line=False)
                await self._ask(message.chat.id, req, message.from_user.id, asked.kind, f"{why}\n")
            return
        verb = "Approved" if note else "Rejected"
        if decision.changed:
            self.on_decided()
            await self._reply(message, f"{verb} <code>{req.id}</code>.")
        else:
            await self._reply(message, escape(await self._result(decision, note)))

    async def _answer_reply(self, message: Message, asked: Asked, req: ApprovalRequest | None) -> None:
        """A reply to an answer prompt: from the approver who was asked, it answers the question in
        their words (an empty reply is asked again); anyone else's reply answers nothing (audited)."""
        assert message.from_user is not None
        user = str(message.from_user.id)
        if req is not None and asked.user_id != user:  # someone else answered: it counts for nothing
            await self.core.refuse(req, user, "a reply to an answer prompt that asked another approver", ANSWER_BUTTON)
            return
        if req is None or self.core.approver_of(req, user) is None:
            return
        try:
            decision = await self.core.answer(req, user, ANSWER_BUTTON, message.text or "")
        except NotAllowedError as exc:
            await self._reply(message, safe(str(exc), one_line=False))
            return
        except RequestError as exc:  # empty, too long, or with control characters: nothing is answered
            if req.status is Status.PENDING:
                why = "That answer is empty." if not (message.text or "").strip() else safe(str(exc), one_line=False)
                await self._ask(message.chat.id, req, message.from_user.id, ANSWER, f"{why}\n")
            return
        if decision.changed:
            self.on_decided()
            await self._reply(message, f"Answered <code>{req.id}</code>.")
        else:
            await self._reply(message, escape(await self._result(decision, True)))

    # --- "edit before approving" ---------------------------------------------------------

    async def _ask_edit(self, query: CallbackQuery, req: ApprovalRequest, user_id: int, again: str = "") -> None:
        """Send ``user_id`` the current arguments of ``req`` in a reply prompt; only their reply counts."""
        chat_id = query.message.chat.id if query.message is not None else user_id
        text = edit_prompt_text(req)
        if text is None:
            await self._answer(query, "Too long to edit here.")
            await self.bot.send_message(chat_id, edit_too_long_text(req), parse_mode=ParseMode.HTML)
            return
        await self._answer(query, "Reply to my next message with the edit.")
        await self._send_edit_prompt(chat_id, req, user_id, text)

    async def _send_edit_prompt(self, chat_id: int, req: ApprovalRequest, user_id: int, text: str) -> None:
        sent = await self.bot.send_message(
            chat_id, text, parse_mode=ParseMode.HTML,
            reply_markup=ForceReply(selective=True, input_field_placeholder="The edited arguments"),
        )  # fmt: skip
        await self.core.outbox.ask_edit(str(chat_id), str(sent.message_id), req.id, str(user_id))

    async def _edit_reply(self, message: Message, asked: Asked) -> None:
        """A reply to an edit prompt: from the approver who was asked, it is checked and shown as a
        diff to confirm; anything else decides nothing (a reply by anyone else is audited)."""
        assert message.from_user is not None
        user = str(message.from_user.id)
        req = await self.core.get(asked.request_id)
        if req is None:
            return
        if asked.user_id != user:  # someone else answered: it counts for nothing
            await self.core.refuse(req, user, "a reply to an edit prompt that asked another approver", EDIT)
            return
        if self.core.approver_of(req, user) is None:
            return
        if req.status is not Status.PENDING:
            await self._reply(message, escape(already(req)))
            return
        chat_id = message.chat.id
        try:
            details = parse_edit(req, message.text or "")
            edited = await self.core.check_edit(req, user, EDIT, details)
        except NotAllowedError as exc:
            await self._reply(message, safe(str(exc), one_line=False))
            return
        except RequestError as exc:  # not JSON, not an object, too long…: asked again, nothing decided
            again = edit_prompt_text(req)
            if again is not None:
                await self._send_edit_prompt(chat_id, req, message.from_user.id,
                                             f"{safe(str(exc), one_line=False)}\n{again}")  # fmt: skip
            return
        if edited is None:
            again = edit_prompt_text(req)
            if again is not None:
                await self._send_edit_prompt(chat_id, req, message.from_user.id, f"{escape(NO_CHANGE)}\n{again}")
            return
        edit_id = await self.core.outbox.propose_edit(str(chat_id), req.id, user, edited)
        await self.bot.send_message(chat_id, edit_confirm_text(req, json.loads(edited)), parse_mode=ParseMode.HTML,
                                    reply_markup=edit_keyboard(req, edit_id, self.signer))  # fmt: skip

    async def _edit_press(self, query: CallbackQuery, edit_id: int) -> None:
        """ "Approve edited" or "Discard" on a proposed edit: it counts only when its data was signed
        for this very edit, its request and that request's content, in the edit's chat, and only
        for the approver who proposed it."""
        edit = await self.core.outbox.proposed_edit(edit_id)
        req = None if edit is None else await self.core.get(edit.request_id)
        press = None if edit is None or req is None else self.signer.verify_edit(
            query.data, edit.id, req.id, req.action_digest)  # fmt: skip
        if edit is None or req is None or press is None:
            log.warning("telegram: refused an edit press with data that is not ours, or made for another edit "
                        "(user %d)", query.from_user.id)  # fmt: skip
            await self._answer(query, NOT_VALID)
            return
        user = str(query.from_user.id)
        message = query.message
        if message is None or str(message.chat.id) != edit.address:
            await self.core.refuse(req, user, "the button is not in the chat of its edit", press.action)
            await self._answer(query, NOT_HERE, alert=True)
            return
        if user != edit.user_id:
            approver = self.core.approver_of(req, user)
            why = NOT_AN_APPROVER if approver is None else NOT_YOUR_EDIT
            await self.core.refuse(req, user, why, press.action)
            await self._answer(query, why, alert=True)
            return
        if req.status is not Status.PENDING:
            await self._answer(query, already(req))
            await self._close_edit_message(message.chat.id, message.message_id, req, "not used")
            return
        if not await self.core.outbox.close_edit(edit.id):
            await self._answer(query, EDIT_CLOSED)
            return
        if press.action != APPROVE_EDITED:
            await self._answer(query, "Discarded; nothing was decided.")
            await self._close_edit_message(message.chat.id, message.message_id, req, "discarded")
            return
        try:
            decision = await self.core.approve_edited(req, user, press.action, json.loads(edit.details))
        except (NotAllowedError, RequestError) as exc:
            await self._answer(query, str(exc), alert=True)
            await self._close_edit_message(message.chat.id, message.message_id, req, "not used")
            return
        await self._answer(query, await self._result(decision, True))
        await self._close_edit_message(message.chat.id, message.message_id, req,
                                       "approved" if decision.changed else "not used")  # fmt: skip

    async def _close_edit_message(self, chat_id: int, message_id: int, req: ApprovalRequest, outcome: str) -> None:
        """The edit's message loses its buttons and says what became of it."""
        text = f"✏️ Your edit of <code>{escape(req.id)}</code> ({clip(req.action, 300)}): {outcome}."
        try:
            await edit_message(self.bot, chat_id, message_id, text)
        except TelegramError as exc:  # the outcome stands; only the note is lost
            log.info("telegram: could not update an edit's message: %s", exc)

    # --- commands ------------------------------------------------------------------------

    async def _command(self, message: Message) -> None:
        assert message.text is not None
        word, _, rest = message.text.partition(" ")
        command = word.split("@", 1)[0].lower()
        user = message.from_user
        if user is None:
            return
        if command == "/start":
            name = self.core.configured(str(user.id))
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
        elif command == "/web":
            await self._web(message, user.id)
        else:
            await self._reply(message, escape(HELP))

    async def _pending(self, message: Message, user_id: int) -> None:
        mine = await self.core.pending_for(str(user_id))
        if not mine:
            await self._reply(message, "Nothing is waiting for you.")
            return
        asks = sum(1 for req, _ in mine if req.is_question)
        what = f"{len(mine)} request(s) waiting for you" + (f", {asks} of them question(s)" if asks else "")
        await self._reply(message, what + (" (the 10 oldest):" if len(mine) > 10 else ":"))
        for req, approver in mine[:10]:
            # Through the outbox, so the per-chat pacing holds and the prompt is tracked like any other.
            await self.outbox.queue(req.id, Kind.SHOW, message.chat.id, approver)
        self.on_decided()  # wake the outbox

    async def _grants(self, message: Message, user_id: int) -> None:
        try:
            live = await self.core.grants_for(str(user_id))
        except NotAllowedError as exc:
            await self._reply(message, escape(str(exc)))
            return
        if not live:
            await self._reply(message, "No grants are live. Approve a request with “Approve for …” to make one.")
            return
        now = self.core.clock()
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
            req = await self.core.show(request_id, str(user_id))
        except NotFoundError:
            await self._reply(message, "No such request among yours. /pending lists them.")
            return
        await self._reply(message, show_text_for(req, time.time()))
        data = details_file(req)
        if data is not None:  # one file instead of a burst of messages
            await self.bot.send_document(message.chat.id, InputFile(data, filename=f"{req.id}-details.json"),
                                         caption=f"Details of {req.id}, in full")  # fmt: skip

    async def _web(self, message: Message, user_id: int) -> None:
        """A sign-in link to the web inbox, for the approver alone: in a private chat it is the
        answer; from a group it goes to their private chat with the bot (their user id), and the
        group hears only where it went — or, when the bot may not write to them (they never
        started it, or blocked it), how to ask for it privately. Never a link in a group."""
        user = str(user_id)
        if self.core.configured(user) is None:
            await self._reply(message, "Sorry, only approvers can sign in to the web inbox. /start shows your "
                                       "user id and how to become one.")  # fmt: skip
            return
        url = await self.core.web_link(user)
        if url is None:
            await self._reply(
                message, "The web inbox is off (<code>[web] enabled = false</code> in the configuration)."
            )
            return
        text = web_link_text(url, local=not self.core.config.web.public_url)
        private = message.chat.type == ChatType.PRIVATE and message.chat.id == user_id
        try:
            await self.bot.send_message(user_id, text, parse_mode=ParseMode.HTML,
                                        link_preview_options=LinkPreviewOptions(is_disabled=True))  # fmt: skip
        except (Forbidden, BadRequest) as exc:  # no private chat with them: they never started the bot
            log.info("telegram: could not send user %d their web link privately: %s", user_id, exc)
            if not private:  # (in their private chat, where they just wrote, this cannot happen)
                await self._reply(message, f"I cannot write to you privately yet: open a private chat with "
                                           f"{self._me()}, press Start and send /web there.")  # fmt: skip
            return
        if not private:
            try:  # the link went out: a failed note here must not send another one (the update's retry)
                await self._reply(message, "I sent you a sign-in link in our private chat.")
            except TelegramError as exc:
                log.info("telegram: could not say in chat %d where the web link went: %s", message.chat.id, exc)

    def _me(self) -> str:
        try:
            return escape(f"@{self.bot.username}")
        except RuntimeError:  # not initialized (it always is while it handles updates)
            return "the bot"

    async def _reply(self, message: Message, html: str) -> None:
        await self.bot.send_message(message.chat.id, html, parse_mode=ParseMode.HTML)
