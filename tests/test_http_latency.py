"""Every listener answers at once on a kept-alive connection (TCP_NODELAY): no ~40 ms Nagle wait."""

from __future__ import annotations

import socket
import statistics
import time
from pathlib import Path

import pytest
from mcp import Client

from signoff.server.listen import bind

from .procs import http_client, serve, stdio_client

pytestmark = pytest.mark.anyio


def test_listeners_and_their_connections_do_not_delay_small_writes() -> None:
    with bind("127.0.0.1", 0) as listener:
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert listener.proto == socket.IPPROTO_TCP  # so asyncio sets it on every accepted socket too
        with socket.create_connection(listener.getsockname()) as _client:
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


async def _median_call(client: Client, rid: str, n: int = 15) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        result = await client.call_tool("check_decision", {"request_id": rid})
        times.append(time.perf_counter() - t0)
        assert not result.is_error
    return statistics.median(times)


async def test_sequential_http_calls_answer_about_as_fast_as_stdio(config_path: Path) -> None:
    """Before the fix each HTTP call waited for the client's delayed ACK: ~44 ms against ~2 ms
    over stdio. A ratio, measured side by side, never an absolute time."""
    async with serve(config_path) as server, http_client(server.url) as http, stdio_client(config_path) as local:
        filed = [(await c.call_tool("request_approval", {"action": "deploy", "summary": "s"})).structured_content
                 for c in (http, local)]  # fmt: skip
        assert filed[0] is not None and filed[1] is not None
        await _median_call(http, filed[0]["request_id"], 3)  # warm up
        await _median_call(local, filed[1]["request_id"], 3)
        over_http = await _median_call(http, filed[0]["request_id"])
        over_stdio = await _median_call(local, filed[1]["request_id"])
    assert over_http < 6 * over_stdio, (over_http, over_stdio)
