"""``signoff doctor``'s Telegram checks: the token, and whether each approver's chat is reachable."""

from __future__ import annotations

from telegram import Bot
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, TelegramError

from signoff.server.config import Config


async def check(config: Config, token: str) -> list[tuple[bool, str]]:
    """One (ok, line) per check, each line saying what to do when it is not ok."""
    results: list[tuple[bool, str]] = []
    bot = Bot(token, base_url=config.telegram.api_base_url)
    try:
        async with bot:  # getMe
            results.append((True, f"bot @{bot.username} answers (getMe)"))
            for name, approver in config.approvers.items():
                if approver.telegram_user_id is None:
                    continue
                chat_id = approver.telegram_chat_id or approver.telegram_user_id
                try:
                    await bot.get_chat(chat_id)
                    results.append((True, f"approver {name}: chat {chat_id} is reachable"))
                except (BadRequest, Forbidden) as exc:
                    fix = (f"ask {name} to open @{bot.username} in Telegram and send /start" if chat_id > 0 else
                           f"add @{bot.username} to the group {chat_id}")  # fmt: skip
                    results.append((False, f"approver {name}: chat {chat_id} is not reachable ({exc}); {fix}"))
    except InvalidToken:
        results.append(
            (False, f"the token in ${config.telegram.token_env} was refused; get one from @BotFather and export it")
        )
    except NetworkError as exc:
        results.append(
            (False, f"cannot reach {config.telegram.api_base_url} ({exc}); check the network or api_base_url")
        )
    except TelegramError as exc:
        results.append((False, f"Telegram answered an error: {exc}"))
    except Exception as exc:  # a malformed answer from a self-hosted or fake API, say
        results.append((False, f"unexpected answer from {config.telegram.api_base_url}: {type(exc).__name__}: {exc}"))
    return results
