"""How a digest looks in Telegram, and sending or editing it (the state is the core's: server/digests.py).

The digest says "7 pending — 5 × Bash, 2 × refund", lists the oldest ``DIGEST_LISTED`` (20)
and offers "Review each" (the listed ones as prompts, ten at a time), "Approve all" (only
when every listed item's route sets ``allow_bulk``) and "Reject all". Its buttons sign the
render's id and the chat, so a press decides only what that very message listed. Refreshes
are coalesced: however many requests arrive or are decided, the digest is edited at most at
the chat's pace.
"""

from __future__ import annotations

from telegram import Bot
from telegram.constants import ParseMode

from signoff.server.digests import DigestBook
from signoff.server.outbox import Outbox

from .buttons import ButtonSigner
from .edits import edit_message
from .render import digest_keyboard, digest_view


class Digests:
    def __init__(self, book: DigestBook, outbox: Outbox, bot: Bot, signer: ButtonSigner) -> None:
        self.book = book
        self.outbox = outbox
        self.bot = bot
        self.signer = signer

    async def refresh(self, chat_id: int, outbox_id: int | None = None) -> bool:
        """Send or edit the chat's digest as it is now, as a new render; return whether Telegram
        was called. Should Telegram fail, the row ``outbox_id`` stays due (its retry backs off)."""
        draft = await self.book.start_refresh(str(chat_id))
        try:
            return await self._render(chat_id, draft.items, draft.decided, draft.message)
        except Exception:
            if outbox_id is not None:
                await self.outbox.undone(outbox_id)
            raise

    async def _render(self, chat_id: int, items: list, decided: int, message: str | None) -> bool:  # type: ignore[type-arg]
        if message is None and not items:
            return False
        text, listed = digest_view(items, decided, self.book.clock())
        render_id = await self.book.new_render(str(chat_id), message, [r.id for r in listed])
        markup = digest_keyboard(listed, render_id, chat_id, self.signer)
        edited = message is not None and await edit_message(self.bot, chat_id, int(message), text, markup)
        if not edited and listed:  # no message yet, or the approver deleted it: a new one carries this render
            sent = await self.bot.send_message(chat_id, text, parse_mode=ParseMode.HTML, reply_markup=markup)
            message = str(sent.message_id)
        await self.book.rendered(str(chat_id), render_id, message, pending=bool(items))
        return True
