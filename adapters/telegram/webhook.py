"""Webhook mode: Telegram POSTs each update to ``[telegram] webhook_url``; the lease holder
listens on ``webhook_listen`` (behind your HTTPS reverse proxy).

Every request must carry the secret we registered with ``setWebhook`` in the
``X-Telegram-Bot-Api-Secret-Token`` header (403 otherwise). The answer is 200 only once the
update is handled, so Telegram redelivers anything we did not finish; ``max_connections=1``
keeps updates in order.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from telegram import Bot, Update

from signoff.server.config import TelegramConfig
from signoff.server.listen import bind

log = logging.getLogger("signoff.telegram")
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the process's own handlers stay in charge of SIGINT/SIGTERM


async def serve_webhook(
    bot: Bot,
    settings: TelegramConfig,
    secret: str,
    process: Callable[[Update], Awaitable[None]],
    retrying: Callable[[Callable[[], Awaitable[Any]]], Awaitable[None]],
) -> None:
    """Listen, register the webhook, and hand each authentic update to ``process``; until cancelled."""
    assert settings.webhook_url is not None  # the config requires it in webhook mode
    path = urlparse(settings.webhook_url).path or "/"

    async def receive(request: Request) -> Response:
        if not hmac.compare_digest(request.headers.get(SECRET_HEADER, "").encode(), secret.encode()):
            log.warning("telegram: refused a webhook request without the right secret token")
            return Response(status_code=403)
        try:
            update = Update.de_json(await request.json(), bot)
        except Exception:
            return Response(status_code=400)
        await process(update)
        return Response(status_code=200)

    host, _, port = settings.webhook_listen.rpartition(":")
    sock = bind(host.strip("[]"), int(port))
    app = Starlette(routes=[Route(path, receive, methods=["POST"])])
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1))
    with sock:
        await retrying(lambda: bot.set_webhook(settings.webhook_url or "", secret_token=secret, max_connections=1,
                                               allowed_updates=["message", "callback_query"]))  # fmt: skip
        log.info("telegram: webhook %s, listening on %s", settings.webhook_url, settings.webhook_listen)
        await server.serve(sockets=[sock])
