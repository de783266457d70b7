"""The Slack channel: one process at a time holds the connection and drains the outbox.

Like the Telegram bot, the Slack connection is held under a lease (``slack-connection``) by
one signoff process; when it dies another takes over within the lease's lifetime, and since
every prompt, edit and note is an outbox row, nothing is lost meanwhile. In Socket Mode (the
default: an app-level token, no public URL) the holder also keeps the WebSocket; in HTTP mode
Slack POSTs interactions to ``signoff serve`` (``http_endpoint``), which any process answers.

Interactive payloads are acknowledged at once (Slack wants it within 3 s) and then handled;
the reason modal and ``/signoff`` answer in their acknowledgement. The tokens never reach a
log: a filter on every handler replaces them, and slack_sdk's own loggers (which log request
bodies at DEBUG) are kept at WARNING.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from signoff.server.channels import ChannelService
from signoff.server.config import SlackConfig
from signoff.server.lease import SLACK_LEASE, ChannelOff, LeaseLost, hold, keep_renewed

from .buttons import SlackSigner, new_key
from .interactions import Interactions
from .outbox import SlackOutbox

log = logging.getLogger("signoff.slack")
LEASE_NAME = SLACK_LEASE
KEY_SETTING = "slack_button_key"
MAX_BODY = 1024 * 1024  # bytes: Slack's payloads are far smaller (a modal's view is at most 250 kB)


class InvalidAuth(ChannelOff):
    """Slack refused a token: nothing to retry until signoff restarts with another."""


class RedactTokens(logging.Filter):
    """Replaces the Slack tokens and the signing secret in every log record."""

    def __init__(self, *secrets: str) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(s in message for s in self.secrets):
            for s in self.secrets:
                message = message.replace(s, "<slack-secret>")
            record.msg, record.args = message, None
        return True


def quiet_sdk_logs() -> None:
    """slack_sdk logs bodies (message text, Socket Mode URLs with their ticket) at DEBUG, and a
    retry note at INFO whenever its logger's own level is unset: keep it to warnings."""
    logging.getLogger("slack_sdk").setLevel(logging.WARNING)


def web_client(settings: SlackConfig, token: str) -> AsyncWebClient:
    return AsyncWebClient(token=token, base_url=settings.api_base_url, timeout=int(settings.request_timeout))


class SlackChannel:
    def __init__(self, core: ChannelService, bot_token: str, app_token: str | None, *, lease_ttl: float) -> None:
        self.core = core
        self.settings = core.config.slack
        self.bot_token = bot_token
        self.app_token = app_token
        self.ttl = lease_ttl
        self.lease = core.lease(LEASE_NAME, lease_ttl)
        self._wake = asyncio.Event()
        self.holding = asyncio.Event()  # set while this process holds Slack (tests wait on it)
        quiet_sdk_logs()
        redact = RedactTokens(bot_token, app_token or "")
        for handler in logging.getLogger().handlers:
            handler.addFilter(redact)

    async def run(self) -> None:
        """Claim the lease whenever it is free and serve Slack while holding it; forever."""
        await hold(self.lease, self._serve, log=log, taken="slack: this process holds the Slack connection now",
                   lost="slack: the connection lease went to another process; disconnected", holding=self.holding)  # fmt: skip

    async def _serve(self) -> None:
        client = web_client(self.settings, self.bot_token)
        await self._check_auth(client)
        signer = SlackSigner(await self.core.setting(KEY_SETTING, new_key))
        outbox = SlackOutbox(self.core, client, signer)
        handler = Interactions(self.core, client, signer, self._wake.set)
        self.holding.set()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(keep_renewed(self.lease, log))
                tasks.create_task(self._drain(outbox))
                if self.settings.mode == "socket":
                    tasks.create_task(self._socket(client, handler))
        except* LeaseLost:
            raise LeaseLost() from None
        except* InvalidAuth as group:
            raise group.exceptions[0] from None

    async def _check_auth(self, client: AsyncWebClient) -> None:
        """auth.test until Slack answers; a refused token stops the channel."""
        delay = 1.0
        while True:
            try:
                await client.auth_test()
                return
            except SlackApiError as exc:
                error = exc.response.get("error")
                if error in ("invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"):
                    raise InvalidAuth(
                        f"the bot token was refused ({error}); check ${self.settings.bot_token_env}"
                    ) from None
                log.warning("slack: auth.test failed (%s); retrying in %.0f s", error, delay)
            except Exception as exc:  # network
                log.warning("slack: cannot reach Slack (%s); retrying in %.0f s", type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(30.0, delay * 2)
            if self.lease.remaining() < self.ttl / 2 and not await self.lease.claim():
                raise LeaseLost()

    async def _check_app_token(self, client: AsyncWebClient) -> None:
        assert self.app_token is not None
        try:
            await client.apps_connections_open(app_token=self.app_token)
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error in ("invalid_auth", "not_authed", "not_allowed_token_type", "token_revoked", "token_expired"):
                raise InvalidAuth(f"the app-level token was refused ({error}); check ${self.settings.app_token_env} "
                                  "(xapp-…, scope connections:write) and that Socket Mode is on") from None  # fmt: skip
            raise

    async def _drain(self, outbox: SlackOutbox) -> None:
        while True:
            try:
                wait = await outbox.drain()
            except Exception:
                log.exception("slack: delivering the outbox failed; retrying")
                wait = 1.0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wait, 0.02)):
                    await self._wake.wait()
            self._wake.clear()

    async def _socket(self, client: AsyncWebClient, handler: Interactions) -> None:
        if not self.app_token:
            raise InvalidAuth(f"Socket Mode needs the app-level token (xapp-…) in ${self.settings.app_token_env}")
        socket = SocketModeClient(app_token=self.app_token, web_client=client, logger=logging.getLogger("slack_sdk.sm"))

        async def listener(sm: SocketModeClient, req: SocketModeRequest) -> None:
            await on_envelope(handler, req.type, req.payload,
                              lambda body: sm.send_socket_mode_response(SocketModeResponse(req.envelope_id, payload=body)))  # fmt: skip

        socket.socket_mode_request_listeners.append(listener)  # type: ignore[arg-type]
        try:
            # aiohttp's connect() never returns while Slack refuses the token, so it is bounded;
            # then the token is asked about on its own: refused, the channel stops; otherwise it
            # was the network, and the holder lets go and tries again.
            try:
                async with asyncio.timeout(max(2.0, self.settings.request_timeout * 2)):
                    await socket.connect()  # type: ignore[no-untyped-call]
            except TimeoutError:
                await self._check_app_token(client)
                raise ConnectionError("Socket Mode did not connect in time") from None
            log.info("slack: connected in Socket Mode")
            await asyncio.Event().wait()  # until the lease is lost or the process stops
        finally:
            # Bounded: a process must exit within a second; closing a socket in use may linger.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(0.5):
                    await asyncio.shield(socket.close())  # type: ignore[no-untyped-call]


Ack = Callable[[dict[str, Any] | None], Awaitable[None]]


async def on_envelope(handler: Interactions, kind: str, payload: Any, ack: Ack) -> None:
    """One Socket Mode envelope (or HTTP-mode POST): acknowledge within Slack's 3 s, handle it."""
    if not isinstance(payload, dict):
        await ack(None)
        return
    try:
        if kind == "slash_commands":
            await ack(await _bounded(handler.slash(payload)))
        elif kind == "interactive" and payload.get("type") == "view_submission":
            await ack(await _bounded(handler.view_submission(payload)))
        elif kind == "interactive" and payload.get("type") == "view_closed":
            await ack(await _bounded(handler.view_closed(payload)))  # "Discard" on an edit's confirmation
        elif kind == "interactive" and payload.get("type") == "block_actions":
            await ack(None)  # first: the trigger for a modal lives 3 s, and the presser waits on it
            await handler.block_actions(payload)
        else:
            await ack(None)
    except Exception:
        log.exception("slack: handling a %s payload failed", kind)


async def _handled(handler: Interactions, payload: dict[str, Any]) -> None:
    """A press from HTTP mode, after its 200: errors are logged, never raised into the server."""
    try:
        await handler.block_actions(payload)
    except Exception:
        log.exception("slack: handling a press failed")


async def _bounded(work: Awaitable[dict[str, Any] | None]) -> dict[str, Any] | None:
    """An answer in time for the ack (2.5 s), or none: the work is done regardless (the database
    holds the truth), the answer just cannot ride on the ack."""
    task = asyncio.ensure_future(work)
    try:
        async with asyncio.timeout(2.5):
            return await asyncio.shield(task)
    except TimeoutError:
        return None


def http_endpoint(core: ChannelService, bot_token: str, signing_secret: str | None) -> Callable[[Any], Awaitable[Any]]:
    """The Starlette endpoint Slack POSTs interactivity and ``/signoff`` to, in HTTP mode. Each
    request is verified with the signing secret over its raw bytes (5-minute replay window)
    before anything is parsed; without a secret every request is refused (503), saying why."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    if not signing_secret:
        why = f"the Slack signing secret is not set (${core.config.slack.signing_secret_env}); every request is refused"

        async def refuse(_: Request) -> Response:
            log.error("slack: %s", why)
            return JSONResponse({"error": why}, status_code=503)

        return refuse
    verifier = SignatureVerifier(signing_secret)
    redact = RedactTokens(bot_token, signing_secret)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)
    state: dict[str, Interactions] = {}
    wake = asyncio.Event()  # the lease holder's outbox re-reads the database on its own

    async def interactions() -> Interactions:
        if "handler" not in state:
            client = web_client(core.config.slack, bot_token)
            signer = SlackSigner(await core.setting(KEY_SETTING, new_key))
            state["handler"] = Interactions(core, client, signer, wake.set)
        return state["handler"]

    async def endpoint(request: Request) -> Response:
        # The one public path: nothing is buffered beyond what any Slack payload needs.
        declared = request.headers.get("content-length", "")
        if declared and (not declared.isdigit() or int(declared) > MAX_BODY):
            return JSONResponse({"error": "request too large"}, status_code=413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                return JSONResponse({"error": "request too large"}, status_code=413)
            chunks.append(chunk)
        body = b"".join(chunks)
        try:
            valid = verifier.is_valid_request(body, dict(request.headers))
        except (ValueError, TypeError):  # a timestamp that is not a number
            valid = False
        if not valid:
            log.warning("slack: refused an HTTP request whose signature does not verify")
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        answer: dict[str, Any] | None = None

        async def ack(payload: dict[str, Any] | None) -> None:
            nonlocal answer
            answer = payload

        handler = await interactions()
        if "payload" in form:
            try:
                payload = json.loads(form["payload"])
            except ValueError:
                return JSONResponse({"error": "payload is not JSON"}, status_code=400)
            kind = "interactive"
        elif "command" in form:
            payload, kind = form, "slash_commands"
        else:
            return JSONResponse({"error": "neither an interaction nor a command"}, status_code=400)
        if kind == "interactive" and isinstance(payload, dict) and payload.get("type") == "block_actions":
            # Answer Slack now; handle the press after the response (a background task).
            from starlette.background import BackgroundTask

            return Response(status_code=200, background=BackgroundTask(_handled, handler, payload))
        await on_envelope(handler, kind, payload, ack)
        return JSONResponse(answer) if answer is not None else Response(status_code=200)

    return endpoint
