"""The MCP server behind ``signoff proxy``: which one (the command line or ``[[upstreams]]``),
and the MCP SDK client connected to it over stdio or streamable HTTP."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import SignoffError

if TYPE_CHECKING:
    from mcp import Client

    from .config import Config

DEFAULT_TIMEOUT = 600.0
CONNECT_TIMEOUT = 60.0  # starting the upstream and its handshake (npx may download first)


class UpstreamError(SignoffError):
    """The upstream could not be chosen or reached; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class Upstream:
    """One MCP server behind the proxy: ``command`` + ``args`` (stdio) or ``url`` (streamable HTTP)."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT

    def describe(self) -> str:
        return self.url if self.url is not None else " ".join([self.command or "", *self.args])[:200]


def parse_header(text: str) -> tuple[str, str]:
    """``"K: V"`` → (K, V); ValueError with the fix otherwise."""
    key, sep, value = text.partition(":")
    if not sep or not key.strip() or any(c.isspace() for c in key.strip()):
        raise ValueError("a header is 'Name: value', e.g. 'Authorization: Bearer …'")
    return key.strip(), value.strip()


def choose(config: Config, name: str, command: list[str], url: str | None, headers: list[str],
           timeout: float | None) -> Upstream:  # fmt: skip
    """The upstream from the command line (``-- COMMAND ARGS…`` or ``--url``), else the
    ``[[upstreams]]`` entry named ``name``."""
    if command and url:
        raise UpstreamError("give either a command after -- (a stdio server) or --url (an HTTP one), not both")
    if headers and not url and command:
        raise UpstreamError("--header is for an --url upstream")
    try:
        parsed = dict(parse_header(h) for h in headers)
    except ValueError as exc:
        raise UpstreamError(f"--header: {exc}") from None
    if command:
        return Upstream(name, command[0], tuple(command[1:]), timeout=timeout or DEFAULT_TIMEOUT)
    if url:
        return Upstream(name, url=url, headers=parsed, timeout=timeout or DEFAULT_TIMEOUT)
    entry = next((u for u in config.upstreams if u.name == name), None)
    if entry is None:
        known = ", ".join(u.name for u in config.upstreams) or "none"
        raise UpstreamError(f"no upstream named {name!r} in {config.source} (its [[upstreams]]: {known}); add "
                            f"[[upstreams]] name = {name!r} with a command or url, or give one: "
                            f"signoff proxy --name {name} -- COMMAND [ARGS…]")  # fmt: skip
    from_env = {}
    for key, var in entry.headers_env.items():
        value = os.environ.get(var, "").strip()
        if not value:
            raise UpstreamError(f"upstream {name!r}: headers_env.{key} names ${var}, which is not set")
        from_env[key] = value
    return Upstream(name, entry.command, tuple(entry.args), dict(entry.env), entry.cwd, entry.url,
                    {**entry.headers, **from_env, **parsed}, timeout or entry.timeout)  # fmt: skip


def child_env(upstream: Upstream, secrets: list[str]) -> dict[str, str]:
    """The stdio upstream's environment: the proxy's own (what the MCP client gave it) without
    signoff's secrets, plus the upstream's ``env``."""
    env = {k: v for k, v in os.environ.items() if k not in secrets}
    return {**env, **upstream.env}


@asynccontextmanager
async def connect(upstream: Upstream, secrets: list[str], **callbacks: Any) -> AsyncIterator[Client]:
    """The MCP SDK client, connected (bounded by ``CONNECT_TIMEOUT``) and initialized."""
    import anyio
    from mcp import Client, StdioServerParameters
    from mcp.shared.exceptions import MCPError

    async with AsyncExitStack() as stack:
        if upstream.url is not None:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            http = await stack.enter_async_context(httpx2.AsyncClient(headers=upstream.headers,
                                                                      timeout=upstream.timeout))  # fmt: skip
            server: Any = streamable_http_client(upstream.url, http_client=http)
        else:
            assert upstream.command is not None
            server = StdioServerParameters(command=upstream.command, args=list(upstream.args),
                                           env=child_env(upstream, secrets), cwd=upstream.cwd)  # fmt: skip
        client = Client(server, cache=None, read_timeout_seconds=upstream.timeout, **callbacks)
        timed_out = False
        async with anyio.create_task_group() as tg:
            connected = anyio.Event()

            async def watchdog() -> None:  # a cancel scope cannot wrap entering the client's own task group
                nonlocal timed_out
                with anyio.move_on_after(CONNECT_TIMEOUT):
                    await connected.wait()
                    return
                timed_out = True
                tg.cancel_scope.cancel()

            tg.start_soon(watchdog)
            try:
                await client.__aenter__()  # entered and left inside this task group's scope
            except Exception as exc:
                leaf = _leaf(exc)
                if isinstance(leaf, OSError | MCPError):
                    raise UpstreamError(f"cannot start upstream {upstream.name!r} ({upstream.describe()}): "
                                        f"{leaf}") from None  # fmt: skip
                raise
            connected.set()
            try:
                yield client
            except BaseException as exc:
                await client.__aexit__(type(exc), exc, exc.__traceback__)
                raise
            await client.__aexit__(None, None, None)
        if timed_out:
            raise UpstreamError(f"upstream {upstream.name!r} ({upstream.describe()}) did not finish the MCP "
                                f"handshake within {CONNECT_TIMEOUT:.0f} s")  # fmt: skip


def _leaf(exc: BaseException) -> BaseException:
    """The first error inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
