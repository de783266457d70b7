"""Helpers for tests that run real signoff processes."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.abc
import httpx2
from anyio.streams.text import TextReceiveStream
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import Implementation

from .conftest import SIGNOFF, subprocess_env


def cli(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run one ``signoff`` command to completion."""
    argv = [SIGNOFF, *args] + (["--config", str(config)] if config else [])
    return subprocess.run(
        argv, capture_output=True, text=True, env=subprocess_env(), timeout=60, stdin=subprocess.DEVNULL
    )


def stdio_client(config: Path, *extra: str, cwd: Path | None = None, name: str | None = None) -> Client:
    """The MCP SDK's stdio client on a real ``signoff mcp`` (``extra`` arguments, started in ``cwd``;
    ``name``: the clientInfo name the client gives itself)."""
    params = StdioServerParameters(command=SIGNOFF, args=["mcp", "--config", str(config), *extra],
                                   env=subprocess_env(), cwd=cwd)  # fmt: skip
    return Client(params, client_info=Implementation(name=name, version="1") if name else None)


@dataclass
class Served:
    process: anyio.abc.Process
    url: str
    stderr: list[str]
    grew: anyio.Event

    async def wait_for_log(self, text: str, within: float = 20) -> None:
        """Wait (bounded) until the server has logged ``text``."""
        with anyio.fail_after(within):
            while text not in "".join(self.stderr):
                await self.grew.wait()
                self.grew = anyio.Event()


async def _read_until(stream: TextReceiveStream, seen: list[str], pattern: str) -> re.Match[str]:
    buf = "".join(seen)
    while not (found := re.search(pattern, buf)):
        chunk = await stream.receive()
        seen.append(chunk)
        buf += chunk
    return found


@asynccontextmanager
async def serve(config: Path, **env: str) -> AsyncIterator[Served]:
    """Start ``signoff serve`` and wait (bounded) until it says where it listens."""
    proc = await anyio.open_process([SIGNOFF, "serve", "--config", str(config)],
                                    env=subprocess_env(**{"SIGNOFF_LOG_LEVEL": "INFO", **env}), stdin=subprocess.DEVNULL)  # fmt: skip
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        stream = TextReceiveStream(proc.stderr)
        with anyio.fail_after(30):
            found = await _read_until(stream, seen, r"listening on (http://\S+/mcp)")
        served = Served(proc, found.group(1), seen, anyio.Event())
        async with anyio.create_task_group() as tg:

            async def drain() -> None:
                async for chunk in stream:
                    seen.append(chunk)
                    served.grew.set()

            tg.start_soon(drain)
            yield served
            tg.cancel_scope.cancel()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(10):
                await proc.wait()
        await proc.aclose()


@asynccontextmanager
async def http_client(url: str, token: str | None = None) -> AsyncIterator[Client]:
    """The MCP SDK's streamable-HTTP client, with a bearer token when given."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


def write_lock_is_free(db: Path) -> bool:
    """Whether another process could take the database's write lock right now."""
    conn = sqlite3.connect(db, timeout=0)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()
