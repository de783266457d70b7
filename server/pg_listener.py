"""PostgreSQL's wake-up across instances: ``LISTEN`` on the store's channel.

The triggers of ``pg_migrations/0012_baseline.sql`` notify ``signoff:<schema>`` when a request is
filed or decided and when an outbox row is queued; each instance listens on a connection of its
own (a pooled one would lose the ``LISTEN``), and its waiters look again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .errors import StoreError
from .pg import RECONNECT_DELAY, open_raw, quote_ident, reason_of

log = logging.getLogger("signoff.store")


class Listener:
    """``LISTEN`` on the store's channel over a connection of its own.

    ``version`` changes on every notification (a request filed or decided, an outbox row
    queued, by any instance) and ``changed`` is set; while the connection is lost the
    listener reconnects, and ``healthy`` is False so callers poll instead.
    """

    def __init__(self, url: str, channel: str) -> None:
        self.url = url
        self.channel = channel
        self.version = 0
        self.healthy = False
        self.changed = asyncio.Event()
        self.ready = asyncio.Event()

    async def run(self) -> None:
        import psycopg

        while True:
            try:
                raw = await open_raw(self.url)
                try:
                    await raw.execute(f"LISTEN {quote_ident(self.channel)}")
                    self.healthy = True
                    self._bump()  # something may have committed while nobody listened
                    self.ready.set()
                    async for _ in raw.notifies():
                        self._bump()
                finally:
                    self.healthy = False
                    with contextlib.suppress(Exception):
                        await raw.close()
            except (StoreError, psycopg.Error, OSError) as exc:
                self.healthy = False
                log.warning("PostgreSQL listener lost its connection (%s); polling until it is back", reason_of(exc))
            self.ready.set()
            await asyncio.sleep(RECONNECT_DELAY)

    def _bump(self) -> None:
        self.version += 1
        self.changed.set()
