"""``signoff mcp`` and ``signoff serve``: the long-running servers, over stdio and over HTTP.

The MCP SDK and uvicorn are imported inside the commands, when they start.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

    from .config import Config


def where(config: Config) -> str:
    """Which config (and why) and which database a command uses, for its first log line."""
    return f"config {config.source} ({config.origin}), database {config.database_label}"


def _setup_logging(args: argparse.Namespace, *, quiet: bool) -> None:
    """Logs to stderr (stdout belongs to the MCP protocol under stdio): WARNING and up for the
    commands an MCP client runs (``quiet``), INFO for ``serve``; see ``logs.py``."""
    import logging

    from . import logs

    logs.setup(logging.WARNING if quiet else logging.INFO, verbose=getattr(args, "verbose", 0),
               fmt=getattr(args, "log_format", "text"))  # fmt: skip


async def cmd_mcp(config: Config, args: argparse.Namespace) -> int:
    """Serve MCP over stdio until stdin ends (or SIGINT/SIGTERM cancels it)."""
    import asyncio
    import logging

    from .app import open_app
    from .logs import mask_env
    from .mcp_tools import build_mcp

    _setup_logging(args, quiet=True)
    mask_env(config.telegram.token_env, config.server.auth_token_env, config.callbacks.secret_env,
             config.slack.bot_token_env, config.slack.app_token_env, config.slack.signing_secret_env)  # fmt: skip
    interrupted = False
    async with open_app(config) as app:
        identity = args.identity or config.server.stdio_identity
        logging.getLogger("signoff").info("signoff mcp (stdio): %s; requests filed as %s", where(config),
                                          identity or "the client's own name")  # fmt: skip
        mcp = build_mcp(app.service, transport="stdio", identity=identity, cwd=os.getcwd())
        server = asyncio.create_task(mcp.run_stdio_async())
        try:
            await asyncio.shield(server)  # returns at the end of stdin
        except asyncio.CancelledError:
            interrupted = True  # SIGINT/SIGTERM: the command line's runner cancelled us
            server.cancel()
    if interrupted:
        # The database is closed. The SDK's stdin reader sits in read() in a worker thread
        # that nothing can interrupt, and waiting for it would keep the process alive.
        sys.stderr.flush()
        os._exit(0)
    return 0


async def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    """Serve MCP over streamable HTTP (with /healthz and /metrics); uvicorn handles SIGINT/SIGTERM."""
    import logging

    from .app import open_app
    from .http import http_token, serve
    from .logs import mask_env

    _setup_logging(args, quiet=False)
    mask_env(config.telegram.token_env, config.server.auth_token_env, config.callbacks.secret_env,
             config.slack.bot_token_env, config.slack.app_token_env, config.slack.signing_secret_env)  # fmt: skip
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if overrides:  # --host/--port over [server] host/port
        config = config.model_copy(update={"server": config.server.model_copy(update=overrides)})
    token = http_token(config)  # before opening anything: refuse an unprotected public address
    logging.getLogger("signoff").info("signoff serve: %s", where(config))
    async with open_app(config) as app:
        await serve(app, token)
    return 0
