"""Wiring: open the store once, start the background work, and hand out the service.

This is the one place that puts the application together from the configuration, so it is
where ``server`` imports a channel adapter (Telegram, when a token is configured).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config import Config
from .service import ApprovalService
from .store import Store

if TYPE_CHECKING:
    from signoff.adapters.telegram import TelegramChannel

log = logging.getLogger("signoff")


@dataclass(frozen=True, slots=True)
class App:
    config: Config
    store: Store
    service: ApprovalService


@asynccontextmanager
async def open_app(
    config: Config, *, background: bool = True, clock: Callable[[], float] = time.time
) -> AsyncIterator[App]:
    """Open the database, apply deadlines (and escalations) that passed while nothing ran, and
    (with ``background``) sweep timers, watch for other processes' decisions, run the Telegram
    bot and deliver decision callbacks until closed. ``clock`` is for tests."""
    async with Store.open(config.db_path) as store:
        service = ApprovalService(config, store, clock=clock)
        expired = await service.sweep()
        if expired:
            log.info("applied %d deadline(s) that passed while signoff was not running", len(expired))
        tasks: list[asyncio.Task[None]] = []
        if background:
            tasks = [
                asyncio.create_task(_keep_running("watcher", service.watch)),
                asyncio.create_task(_keep_running("sweeper", service.sweep_forever)),
            ]
            channel = _telegram(service)
            if channel is not None:
                tasks.append(asyncio.create_task(channel.run()))
            secret = os.environ.get(config.callbacks.secret_env, "").strip()
            if secret:
                from .callbacks import CallbackDeliverer

                tasks.append(asyncio.create_task(_keep_running("callbacks", CallbackDeliverer(service, secret).run)))
        try:
            yield App(config, store, service)
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                # Bounded: a process must exit promptly even if some task misbehaves.
                done, stuck = await asyncio.wait(tasks, timeout=2)
                for task in stuck:
                    log.error("background task %s did not stop when asked; leaving it", task.get_coro())
                for task in done:
                    if not task.cancelled() and task.exception() is not None:
                        log.error("background task failed", exc_info=task.exception())


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


def _telegram(service: ApprovalService) -> TelegramChannel | None:
    """The Telegram channel when a token is configured (the variable named by token_env)."""
    from signoff.adapters.telegram import TelegramChannel, start_message

    settings = service.config.telegram
    token = os.environ.get(settings.token_env, "").strip() or None
    log.info(start_message(settings.token_env, token))
    if token is None:
        return None
    return TelegramChannel(service, token, lease_ttl=settings.lease_ttl)
