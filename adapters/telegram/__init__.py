"""The Telegram channel (python-telegram-bot 22): prompts with buttons, decisions from a phone."""

from .channel import TelegramChannel, start_message

__all__ = ["TelegramChannel", "start_message"]
