"""Editing a message we sent, tolerating the edits Telegram calls pointless."""

from __future__ import annotations

import logging
from typing import Any

from telegram import Bot
from telegram.constants import ParseMode
from telegram.error import BadRequest

log = logging.getLogger("signoff.telegram")


async def edit_message(bot: Bot, chat_id: int, message_id: int, text: str, markup: Any = None) -> bool:
    """Edit one message (no ``markup``: its buttons go away); an identical edit is fine. Return
    False when the message is gone (deleted, or too old to edit), True otherwise."""
    try:
        await bot.edit_message_text(text, chat_id=chat_id, message_id=message_id, parse_mode=ParseMode.HTML,
                                    reply_markup=markup)  # fmt: skip
    except BadRequest as exc:
        message = str(exc).lower()
        if "not modified" in message:
            return True
        if "not found" in message or "can't be edited" in message:
            log.info("telegram: message %d in chat %d is gone; not edited (%s)", message_id, chat_id, exc)
            return False
        raise
    return True
