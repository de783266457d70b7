"""Leases: at most one process at a time holds each one (the bot lease: one Telegram poller).

A lease is a row with an owner and an expiry. Claiming and renewing are one statement — an
upsert that only takes the row when it is ours or has expired — so two processes can never
both believe they hold it, and a holder that dies loses it after ``ttl`` seconds.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable

from .store import Store

BOT_LEASE = "telegram-bot"
SLACK_LEASE = "slack-connection"  # one process at a time holds the Slack connection (and drains its outbox)  # whoever holds it talks to Telegram (polling, the outbox)

_CLAIM = (
    "INSERT INTO leases (name, owner, expires_at, since) VALUES (:name, :owner, :until, :now) "
    "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at, "
    # A renewal in time keeps `since`; a take-over, or a return after a gap, starts it again.
    "since = CASE WHEN leases.owner = excluded.owner AND leases.expires_at >= :now THEN leases.since "
    "ELSE excluded.since END "
    "WHERE leases.owner = excluded.owner OR leases.expires_at < :now "
    "RETURNING owner"
)


def new_owner() -> str:
    """An owner id unique to this process: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Lease:
    """One named lease, claimed and renewed by this process."""

    def __init__(self, store: Store, name: str, ttl: float, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.name = name
        self.ttl = ttl
        self.owner = new_owner()
        self.clock = clock
        self.valid_until = 0.0  # as far as this process knows

    async def claim(self) -> bool:
        """Take or renew the lease; True while this process holds it."""
        now = self.clock()
        rows = await self.store.write(
            _CLAIM, {"name": self.name, "owner": self.owner, "until": now + self.ttl, "now": now}
        )
        held = bool(rows) and rows[0][0] == self.owner
        self.valid_until = now + self.ttl if held else 0.0
        return held

    def remaining(self) -> float:
        """Seconds this process may still act as the holder (0 when it does not hold it)."""
        return max(0.0, self.valid_until - self.clock())

    async def release(self) -> None:
        """Give the lease up at once, so another process can take over without waiting."""
        self.valid_until = 0.0
        # Expired now, not deleted: `signoff status` can still say who held it last, and since when not.
        await self.store.write(
            "UPDATE leases SET expires_at = ? WHERE name = ? AND owner = ?", (self.clock(), self.name, self.owner)
        )
