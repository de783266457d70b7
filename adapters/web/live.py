"""Server-sent events: open pages learn that something changed, and fetch what they show again.

One poller per process watches the audit log's last sequence number (every request filed,
decided, voted on, escalated or granted writes an audit event, in any process on the file)
every ``POLL`` seconds while anyone listens, and tells every open stream. The event carries
no data about any request: each page re-reads what its own session may see.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from signoff.server.channels import ChannelService

log = logging.getLogger("signoff")
POLL = 0.05  # how often the audit log is looked at while a page listens
KEEPALIVE = 15.0  # a comment line this often keeps proxies from closing an idle stream


class Hub:
    """Fans "changed" out to the open event streams of this process."""

    def __init__(self, channels: ChannelService) -> None:
        self.channels = channels
        self.listeners: set[asyncio.Queue[int]] = set()
        self._task: asyncio.Task[None] | None = None
        self.last = 0

    async def _latest(self) -> int:
        return await self.channels.last_change()

    async def _poll(self) -> None:
        self.last = await self._latest()
        while self.listeners:
            await asyncio.sleep(POLL)
            try:
                latest = await self._latest()
            except Exception:  # a busy or failing read: open pages keep listening, and the next look may work
                log.warning("web: could not read the audit log's end; trying again", exc_info=True)
                continue
            if latest != self.last:
                self.last = latest
                for q in list(self.listeners):
                    with contextlib.suppress(asyncio.QueueFull):
                        q.put_nowait(latest)

    async def stream(self, closed: asyncio.Event | None = None) -> AsyncIterator[str]:
        """The ``text/event-stream`` body of one page: ``changed`` events and keep-alives."""
        q: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        self.listeners.add(q)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll())
        try:
            yield "retry: 2000\n\n"
            while closed is None or not closed.is_set():
                try:
                    async with asyncio.timeout(KEEPALIVE):
                        seq = await q.get()
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: changed\ndata: {seq}\n\n"
        finally:
            self.listeners.discard(q)
