"""Wiring: open the store once, start the background work, and hand out the service.

This is the one place that puts the application together from the configuration, so it is
where ``server`` imports a channel adapter (Telegram and Slack, when their tokens are set).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import Config
from .service import ApprovalService
from .store import Store

if TYPE_CHECKING:
    from signoff.adapters.slack import SlackChannel
    from signoff.adapters.telegram import TelegramChannel

log = logging.getLogger("signoff")


@dataclass(frozen=True, slots=True)
class App:
    config: Config
    store: Store
    service: ApprovalService
    # HTTP endpoints of channels, served by `signoff serve` outside its bearer token (each checks
    # its own signature): (path, endpoint). Slack's in HTTP mode.
    routes: list[tuple[str, Any]] = field(default_factory=list)

    @asynccontextmanager
    async def background(self) -> AsyncIterator[None]:
        """Sweep timers, watch for other processes' decisions, run the Telegram bot (when a token
        is configured) and deliver decision callbacks until the block ends."""
        service, config = self.service, self.config
        tasks = [
            asyncio.create_task(_keep_running("watcher", service.watch)),
            asyncio.create_task(_keep_running("sweeper", service.sweep_forever)),
        ]
        token = _telegram_token(service)
        if token is not None:
            tasks.append(asyncio.create_task(_run_bot(service, token)))
        slack = slack_tokens(config)
        if slack is not None:
            tasks.append(asyncio.create_task(_run_slack(service, *slack)))
        secret = os.environ.get(config.callbacks.secret_env, "").strip()
        if secret:
            from .decision_callbacks import CallbackDeliverer

            tasks.append(asyncio.create_task(_keep_running("callbacks", CallbackDeliverer(service, secret).run)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            # Bounded: a process must exit promptly even if some task misbehaves.
            done, stuck = await asyncio.wait(tasks, timeout=2)
            for task in stuck:
                log.error("background task %s did not stop when asked; leaving it", task.get_coro())
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("background task failed", exc_info=task.exception())


@asynccontextmanager
async def open_app(
    config: Config, *, background: bool = True, clock: Callable[[], float] = time.time
) -> AsyncIterator[App]:
    """Open the database, apply deadlines (and escalations) that passed while nothing ran, and
    (with ``background``, or later with ``App.background()``) run the background work until
    closed. ``clock`` is for tests."""
    async with Store.open(config.database, pool_size=config.store.pool_size) as store:
        service = ApprovalService(config, store, clock=clock)
        expired = await service.sweep()
        if expired:
            log.info("applied %d deadline(s) that passed while signoff was not running", len(expired))
        app = App(config, store, service)
        slack = slack_tokens(config)
        if slack is not None and config.slack.mode == "http":
            from signoff.adapters.slack import http_endpoint

            from .channels import ChannelService

            app.routes.append((config.slack.path, http_endpoint(ChannelService(service, "slack"), slack[0], slack[2])))
        async with app.background() if background else contextlib.nullcontext():
            yield app


def web_app(app: App) -> Any:
    """The web inbox's ASGI apps: the pages, to mount at ``/web``, and the answer to ``/web``
    itself (None when ``[web] enabled = false``).
    Built only by ``signoff serve``: other commands never import the web adapter."""
    if not app.config.web.enabled:
        return None
    from signoff.adapters.web import build_web

    return build_web(app.service)


async def _keep_running(name: str, work: Callable[[], Awaitable[None]]) -> None:
    """Run background ``work`` for the life of the process, restarting it after an error.

    Nothing is lost meanwhile: waiters re-read the database every few seconds by themselves,
    and deadlines stay in the database until a sweep applies them.
    """
    while True:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background %s failed; restarting it in 1 s", name)
            await asyncio.sleep(1)


def _telegram_token(service: ApprovalService) -> str | None:
    """The bot token when one is configured (in the variable named by token_env)."""
    settings = service.config.telegram
    token = os.environ.get(settings.token_env, "").strip() or None
    if token is None:  # as adapters.telegram.start_message says it, without importing Telegram for it
        log.info("telegram: $%s is not set; running on the console channel alone", settings.token_env)
    return token


async def _run_bot(service: ApprovalService, token: str) -> None:
    """Run the Telegram channel. python-telegram-bot and httpx are imported here, in a worker
    thread, so a process that just started (``signoff mcp`` answering ``initialize``) is not held
    up by them, and one that never runs the bot never imports them."""
    import importlib

    module = await asyncio.to_thread(importlib.import_module, "signoff.adapters.telegram")
    log.info(module.start_message(service.config.telegram.token_env, token))
    from .channels import ChannelService

    core = ChannelService(service, "telegram")
    channel: TelegramChannel = module.TelegramChannel(core, token, lease_ttl=service.config.telegram.lease_ttl)
    await channel.run()


def slack_tokens(config: Config) -> tuple[str, str | None, str | None] | None:
    """(bot token, app-level token, signing secret) when a Slack bot token is set; None otherwise."""
    settings = config.slack
    bot = os.environ.get(settings.bot_token_env, "").strip()
    if not bot:
        return None
    app_token = os.environ.get(settings.app_token_env, "").strip() or None
    secret = os.environ.get(settings.signing_secret_env, "").strip() or None
    return bot, app_token, secret


async def _run_slack(service: ApprovalService, bot: str, app_token: str | None, secret: str | None) -> None:
    """Run the Slack channel; slack_sdk and aiohttp are imported in a worker thread (see ``_run_bot``)."""
    import importlib

    from .channels import ChannelService

    module = await asyncio.to_thread(importlib.import_module, "signoff.adapters.slack")
    settings = service.config.slack
    log.info(module.start_message(settings, app_token, secret))
    channel: SlackChannel = module.SlackChannel(ChannelService(service, "slack"), bot, app_token,
                                                lease_ttl=settings.lease_ttl)  # fmt: skip
    await channel.run()
