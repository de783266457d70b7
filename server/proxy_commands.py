"""``signoff proxy``: run the approval gateway over stdio until stdin ends."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

    from .config import Config


def secret_names(config: Config) -> list[str]:
    """The variables that hold signoff's own secrets: never handed to an upstream."""
    return [config.telegram.token_env, config.callbacks.secret_env, config.slack.bot_token_env,
            config.slack.app_token_env, config.slack.signing_secret_env,
            *([config.server.auth_token_env] if config.server.auth_token_env else [])]  # fmt: skip


async def cmd_proxy(config: Config, args: argparse.Namespace) -> int:
    """Connect the upstream, then serve MCP over stdio in front of it until stdin ends."""
    import asyncio
    import logging

    from mcp.server.stdio import stdio_server

    from .app import open_app
    from .logs import mask_env
    from .mcp_guard import AnswerUnreadable
    from .proxy import Proxy
    from .proxy_upstream import choose, connect
    from .serve_commands import _setup_logging, where

    _setup_logging(args, quiet=True)
    secrets = secret_names(config)
    mask_env(*secrets)
    command = list(args.upstream_command or [])
    if command[:1] == ["--"]:
        command = command[1:]
    upstream = choose(config, args.name, command, args.url, args.header or [], args.timeout)
    identity = args.identity or config.server.stdio_identity
    log = logging.getLogger("signoff")
    interrupted = False
    async with open_app(config) as app:
        log.info("signoff proxy %s (stdio) in front of %s: %s; requests filed as %s", upstream.name,
                 upstream.describe(), where(config), identity or "the client's own name")  # fmt: skip
        proxy = Proxy(app.service, upstream.name, identity=identity, cwd=os.getcwd(), timeout=upstream.timeout)

        async def serve() -> None:
            async with connect(upstream, secrets, **proxy.callbacks()) as client:
                proxy.upstream = client
                server, notes = proxy.build()
                async with stdio_server() as (read, write):
                    await server.run(AnswerUnreadable(read, write), write,
                                     server.create_initialization_options(notes))  # fmt: skip

        task = asyncio.create_task(serve())
        try:
            await asyncio.shield(task)  # returns at the end of stdin; the upstream is stopped on the way out
        except asyncio.CancelledError:
            interrupted = True
            task.cancel()
            await asyncio.wait([task], timeout=5)
    if interrupted:
        sys.stderr.flush()
        os._exit(0)  # see cmd_mcp: the SDK's stdin reader cannot be interrupted
    return 0
