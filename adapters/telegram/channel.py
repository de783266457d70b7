"""The Telegram channel: one bot per token, run by whichever signoff process holds the lease.

Telegram allows one ``getUpdates`` consumer per token, and every MCP client starts its own
``signoff mcp``. So each process with a token runs ``TelegramChannel.run()``, which tries
to claim the bot lease; the holder polls for updates and drains the outbox, renewing the
lease every ``ttl / 3``; the others wait and take over within ``ttl`` when the holder dies.
The holder never starts a long-poll that could outlive its lease, so two processes never
poll at once. The update offset advances only after an update has been handled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import Update
from telegram.error import Conflict, InvalidToken, NetworkError, TelegramError, TimedOut
from telegram.ext import AIORateLimiter, ExtBot
from telegram.request import HTTPXRequest

from signoff.server.channels import ChannelService
from signoff.server.lease import BOT_LEASE, ChannelOff, LeaseLost, hold, keep_renewed
from signoff.server.metrics import count_telegram_error

from .buttons import ButtonSigner, new_key
from .outbox import Outbox
from .updates import UpdateHandler
from .webhook import serve_webhook

os.environ.setdefault("PTB_TIMEDELTA", "1")  # RetryAfter.retry_after as a timedelta, without a warning

log = logging.getLogger("signoff.telegram")
LEASE_NAME = BOT_LEASE
ALLOWED_UPDATES = ["message", "callback_query"]


class RedactToken(logging.Filter):
    """Defence in depth: the token must never reach a log line, whoever logs it."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.token in message:
            record.msg, record.args = message.replace(self.token, "<telegram-token>"), None
        return True


class CountingRequest(HTTPXRequest):
    """Every Bot API call goes through ``do_request``: count its failures for ``/metrics`` (by HTTP
    status, e.g. 409 when another poller holds the token, 429 when rate-limited; or timeout/network)."""

    async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        try:
            code, payload = await super().do_request(*args, **kwargs)
        except TimedOut:
            count_telegram_error("timeout")
            raise
        except NetworkError:
            count_telegram_error("network")
            raise
        if code >= 400:
            count_telegram_error(str(code))
        return code, payload


class TelegramChannel:
    def __init__(self, core: ChannelService, token: str, *, lease_ttl: float) -> None:
        self.core = core
        self.config = core.config
        self.token = token
        self.ttl = lease_ttl
        self.poll_timeout = max(1, int(lease_ttl / 3))
        self.lease = core.lease(LEASE_NAME, lease_ttl)
        self._wake = asyncio.Event()
        self._one_at_a_time = asyncio.Lock()
        self._last = 0  # the id of the last update handled
        self.holding = asyncio.Event()  # set while this process runs the bot (tests wait on it)
        redact = RedactToken(token)
        for handler in logging.getLogger().handlers:
            handler.addFilter(redact)

    async def run(self) -> None:
        """Claim the lease whenever it is free and run the bot while holding it; forever."""
        await hold(self.lease, self._serve, log=log, taken="telegram: this process runs the bot now",
                   lost="telegram: the bot lease went to another process; stopped polling", holding=self.holding)  # fmt: skip

    def _request(self, read_timeout: float) -> HTTPXRequest:
        return CountingRequest(connect_timeout=5, read_timeout=read_timeout, write_timeout=10, pool_timeout=5)

    async def _serve(self) -> None:
        bot = ExtBot(
            self.token,
            base_url=self.config.telegram.api_base_url,
            request=self._request(self.config.telegram.request_timeout),
            get_updates_request=self._request(self.config.telegram.request_timeout),
            rate_limiter=AIORateLimiter(max_retries=0),  # the outbox retries, after retry_after
        )
        try:
            await self._retrying(bot.initialize)  # getMe: InvalidToken stops us; network errors are retried
        except InvalidToken:
            raise self._off() from None
        try:
            signer = ButtonSigner(await self.core.setting("telegram_callback_key", new_key))
            outbox = Outbox(self.core, bot, signer)
            handler = UpdateHandler(self.core, bot, signer, outbox, self._wake.set)
            self._last = int(await self.core.setting("telegram_last_update_id", lambda: "0"))
            self.holding.set()
            try:
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(keep_renewed(self.lease, log))
                    tasks.create_task(self._drain(outbox))
                    if self.config.telegram.mode == "webhook":
                        secret = await self.core.setting("telegram_webhook_secret", lambda: secrets.token_urlsafe(32))
                        tasks.create_task(serve_webhook(bot, self.config.telegram, secret,
                                                        lambda u: self._process(handler, u), self._retrying))  # fmt: skip
                    else:
                        tasks.create_task(self._poll(bot, handler))
            except* LeaseLost:
                raise LeaseLost() from None
            except* InvalidToken:
                raise self._off() from None
        finally:
            with contextlib.suppress(Exception):
                await bot.shutdown()

    async def _retrying(self, step: Callable[[], Awaitable[Any]]) -> None:
        """Run ``step`` until Telegram answers, backing off; give up only if the lease is lost."""
        delay = 1.0
        while True:
            try:
                await step()
                return
            except NetworkError as exc:
                log.warning("telegram: %s; retrying in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)
                if self.lease.remaining() < self.ttl / 2 and not await self.lease.claim():
                    raise LeaseLost() from None

    def _off(self) -> ChannelOff:
        return ChannelOff(f"telegram: the bot token was refused (401). Check ${self.config.telegram.token_env}; "
                          "the Telegram channel is off until signoff restarts.")  # fmt: skip

    async def _poll(self, bot: ExtBot[Any], handler: UpdateHandler) -> None:
        await self._retrying(bot.delete_webhook)  # getUpdates is refused while a webhook is set
        delay = 1.0
        while True:
            # Never start a long-poll that could outlive the lease: a successor would conflict.
            if self.lease.remaining() < self.poll_timeout + 1:
                await asyncio.sleep(0.05)
                continue
            try:
                updates = await bot.get_updates(offset=self._last + 1 if self._last else None,
                                                timeout=self.poll_timeout, allowed_updates=ALLOWED_UPDATES)  # fmt: skip
                delay = 1.0
            except InvalidToken:
                raise
            except (Conflict, NetworkError) as exc:  # Conflict: someone else polls this token
                log.warning("telegram: getUpdates failed (%s); retrying in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)
                continue
            for update in updates:
                await self._process(handler, update)

    async def _process(self, handler: UpdateHandler, update: Update) -> None:
        """Handle an update once: by id, even when Telegram delivers it again after a restart."""
        async with self._one_at_a_time:
            if update.update_id <= self._last:
                return  # handled before; Telegram had not been told yet
            await self._handle(handler, update)
            self._last = update.update_id
            await self.core.save_setting("telegram_last_update_id", str(self._last))

    async def _handle(self, handler: UpdateHandler, update: Update) -> None:
        for attempt in range(3):
            try:
                await handler.handle(update)
                return
            except TelegramError as exc:
                log.warning("telegram: handling update %d: %s", update.update_id, exc)
            except Exception:
                log.exception("telegram: handling update %d failed", update.update_id)
            await asyncio.sleep(0.5 * (attempt + 1))
        log.error("telegram: gave up on update %d after 3 attempts", update.update_id)

    async def _drain(self, outbox: Outbox) -> None:
        while True:
            try:
                wait = await outbox.drain()
            except Exception:
                log.exception("telegram: delivering the outbox failed; retrying")
                wait = 1.0
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: see ApprovalService.wait
                async with asyncio.timeout(max(wait, 0.02)):
                    await self._wake.wait()
            self._wake.clear()


def start_message(token_env: str, token: str | None) -> str:
    if token:
        return f"telegram: ${token_env} is set; the bot runs in whichever signoff process holds the bot lease"
    return f"telegram: ${token_env} is not set; running on the console channel alone"
