"""Waking calls that wait for a decision: in this process at once, from other processes within
``WATCH_INTERVAL``. Nothing here matters for correctness — a waiter re-reads the database when
woken, and every few seconds regardless; the database stays the only truth."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from .store import Store

WATCH_INTERVAL = 0.05  # how often a waiting process looks for commits by other processes


class Waiters:
    """The events of the calls waiting in this process, by request id."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._events: dict[str, set[asyncio.Event]] = {}
        self._watching = asyncio.Event()
        self.closing = False

    @contextmanager
    def registered(self, request_id: str) -> Iterator[asyncio.Event]:
        """An event set when ``request_id`` may have been decided (or signoff is shutting down)."""
        event = asyncio.Event()
        self._events.setdefault(request_id, set()).add(event)
        self._watching.set()
        try:
            yield event
        finally:
            events = self._events.get(request_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._events[request_id]

    @property
    def count(self) -> int:
        return sum(len(events) for events in self._events.values())

    def release(self) -> None:
        """Shutting down: every waiting call returns now."""
        self.closing = True
        for events in self._events.values():
            for event in events:
                event.set()

    def wake(self, request_ids: Iterable[str]) -> None:
        for rid in request_ids:
            for event in self._events.get(rid, ()):
                event.set()

    async def watch(self) -> None:
        """Wake local waiters when another process decides their request (polls ``data_version``)."""
        version: int | None = None
        while True:
            if not self._events:
                self._watching.clear()
                await self._watching.wait()
                version = None  # check at once: a commit may have landed before the waiter came
            current = await self.store.data_version()
            if current != version:
                version = current
                statuses = await self.store.statuses(list(self._events))
                self.wake(rid for rid, status in statuses.items() if status.final)
            await self.store.changed(version, WATCH_INTERVAL)
