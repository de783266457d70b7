"""``signoff serve``: the streamable-HTTP MCP endpoint at ``/mcp``, ``/healthz`` and ``/metrics``.

With a bearer token configured (``[server] auth_token_env`` names the variable that holds
it) every request but ``/healthz`` must carry ``Authorization: Bearer <token>``; without
one the server refuses to listen anywhere but loopback.
"""

from __future__ import annotations

import hmac
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from . import health
from .app import App, web_app
from .config import Config
from .errors import ConfigError
from .listen import bind, is_loopback  # re-exported: callers import both from here too
from .mcp_guard import answer_unreadable_http
from .mcp_tools import build_mcp
from .metrics import Exporter
from .paths import package_version


def http_token(config: Config) -> str | None:
    """The bearer token from the environment, or ``None``; refuses a non-loopback host without one."""
    env = config.server.auth_token_env
    token = os.environ.get(env, "").strip() if env else ""
    if not token and not is_loopback(config.server.host):
        raise ConfigError(
            config.source,
            [
                f"server.host: {config.server.host!r} is not a loopback address, and no bearer token is set; "
                f"export {env or 'SIGNOFF_HTTP_TOKEN'}=<a long random secret> (and set server.auth_token_env) "
                "or listen on 127.0.0.1"
            ],
        )
    return token or None


class BearerAuth:
    """Pure ASGI middleware (it must not buffer the MCP SSE streams). The scheme is matched
    case-insensitively (RFC 7235: ``bearer``, ``BEARER``); the token in constant time."""

    def __init__(
        self, app: ASGIApp, token: str, *, open_posts: set[str] | None = None, open_prefix: str | None = None
    ) -> None:
        self.app = app
        self.expected = token.encode()
        # The channels' endpoints verify their own signatures (Slack's): open to POST, nothing else.
        self.open_posts = open_posts or set()
        # The web inbox signs its people in itself (links and sessions): a browser has no bearer token.
        self.open_prefix = open_prefix

    def _given(self, header: bytes) -> bytes:
        scheme, _, credentials = header.partition(b" ")
        return credentials.lstrip(b" ") if scheme.lower() == b"bearer" else b""

    def _open(self, scope: Scope) -> bool:
        path = scope["path"]
        if self.open_prefix is not None and (path == self.open_prefix or path.startswith(self.open_prefix + "/")):
            return True
        return path == "/healthz" or (scope["method"] == "POST" and path in self.open_posts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._open(scope):
            given = self._given(dict(scope["headers"]).get(b"authorization", b""))
            if not hmac.compare_digest(given, self.expected):
                response = JSONResponse(
                    {"error": "unauthorized", "hint": "send 'Authorization: Bearer <token>'"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="signoff"'},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _instance(app: App, state: health.Health) -> dict[str, object]:
    """This process, among the instances that share the store: which leases it holds, how it hears commits."""
    me = (socket.gethostname(), os.getpid())
    return {
        "host": me[0],
        "pid": me[1],
        "store": app.store.dialect,
        "notifications": app.store.notifications,
        "holds_bot": state.bot is not None and state.bot_live and (state.bot.host, state.bot.pid) == me,
        "holds_slack": state.slack is not None and state.slack_live and (state.slack.host, state.slack.pid) == me,
    }


def build_http_app(app: App, token: str | None, *, port: int | None = None, mcp: MCPServer | None = None) -> ASGIApp:
    """The ASGI application for ``signoff serve`` (``port``: the one actually bound; ``mcp``: the
    MCP server to mount, by default signoff's own tools)."""
    host = app.config.server.host
    port = port or app.config.server.port
    if mcp is None:
        mcp = build_mcp(app.service, transport="http", http_identity=app.config.server.auth_identity if token else None)
    hosts = [f"{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]")] + ["127.0.0.1", "localhost"]
    if not is_loopback(host):
        hosts += [host, f"{host}:{port}"]
    security = TransportSecuritySettings(enable_dns_rebinding_protection=is_loopback(host), allowed_hosts=hosts)
    mcp_app = mcp.streamable_http_app(streamable_http_path="/mcp", transport_security=security, host=host)

    async def healthz(_: Request) -> Response:
        # The database answers (or this raises: 500). "waiting": calls here waiting for a decision.
        state = await health.collect(app.store, app.service.clock())
        body = {"status": "ok", "waiting": app.service.waiting, "instance": _instance(app, state), **state.as_json()}
        return JSONResponse(body)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with mcp.session_manager.run():  # a mounted sub-app's lifespan never runs
            yield

    exporter = Exporter(app.config.database, package_version(), clock=app.service.clock)

    async def metrics(request: Request) -> Response:
        # Prometheus text (or OpenMetrics, when asked); read from the database in a worker thread.
        body, content_type = await anyio.to_thread.run_sync(exporter.render, request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type})

    # answer_unreadable_http: a POST the SDK cannot parse (nested too deep) gets its error under the request's id.
    channels = [Route(path, endpoint, methods=["POST"]) for path, endpoint in app.routes]
    web = web_app(app)  # the web inbox: its own sign-in, so outside the bearer token
    pages = [Route("/web", web[1]), Mount("/web", app=web[0])] if web is not None else []
    routes = [Route("/healthz", healthz), Route("/metrics", metrics), *channels, *pages,
              Mount("/", app=answer_unreadable_http(mcp_app))]  # fmt: skip
    starlette = Starlette(routes=routes, lifespan=lifespan)
    if not token:
        return starlette
    return BearerAuth(
        starlette, token, open_posts={path for path, _ in app.routes}, open_prefix="/web" if web else None
    )


async def serve(app: App, token: str | None) -> None:
    """Serve until SIGINT/SIGTERM, then return so the caller closes the database."""
    import signal

    import uvicorn

    # uvicorn catches SIGINT/SIGTERM while serving, shuts down, restores the handlers it found
    # and raises the signal again. Make those handlers only take note: by then everything that
    # could be interrupted has stopped, and returning normally lets the database close cleanly.
    # A signal that comes before uvicorn has taken over (while the app is built) is kept, and
    # stops the server as soon as it has started.
    stop_early: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _: stop_early.append(signum))

    log = logging.getLogger("signoff")
    server = app.config.server
    sock = bind(server.host, server.port)
    port = sock.getsockname()[1]
    shown_host = f"[{server.host}]" if ":" in server.host else server.host
    log.info("database: %s", app.config.database_label)
    log.info("console: decide with `signoff approve ID` / `signoff reject ID --reason TEXT`")
    log.info("listening on http://%s:%d/mcp (%s)", shown_host, port,
             "bearer token required" if token else "no token: loopback only")  # fmt: skip
    if app.config.web.enabled:
        where = app.config.web.public_url or f"http://127.0.0.1:{port}"
        log.info(
            "web inbox: %s/web/ (sign in with /web to the bot, or `signoff web-link --as NAME`)", where.rstrip("/")
        )
    config = uvicorn.Config(
        build_http_app(app, token, port=port),
        log_level="warning",
        log_config=None,  # uvicorn's records go through signoff's handler (and its format: text or json)
        timeout_graceful_shutdown=1,
        lifespan="on",
    )

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if stop_early:
                self.should_exit = True

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # Long-polls answer "still pending" at once instead of holding the shutdown up.
            app.service.release_waiters()
            await super().shutdown(sockets)

    with sock:
        await Server(config).serve(sockets=[sock])
