"""Leases: at most one process at a time holds each one (the bot lease: one Telegram poller;
the Slack connection; the callbacks' deliverer).

A lease is a row with an owner and an expiry. Claiming and renewing are one statement — an
upsert that only takes the row when it is ours or has expired — so two processes can never
both believe they hold it, and a holder that dies loses it after ``ttl`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable

from .dialect import POSTGRESQL
from .store import Store

BOT_LEASE = "telegram-bot"  # whoever holds it talks to Telegram (polling, the outbox)
SLACK_LEASE = "slack-connection"  # whoever holds it talks to Slack (Socket Mode, the outbox)

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

    async def _now(self) -> float:
        """The time the lease rows are compared in. On PostgreSQL the database's clock: instances on
        several hosts then agree on when a lease expired even when their own clocks drift apart."""
        if self.store.dialect == POSTGRESQL:
            rows = await self.store.read("SELECT extract(epoch FROM clock_timestamp())::float8")
            return float(rows[0][0])
        return self.clock()

    async def claim(self) -> bool:
        """Take or renew the lease; True while this process holds it."""
        local = self.clock()  # this process measures its own time left from here, on its own clock
        now = await self._now()
        rows = await self.store.write(
            _CLAIM, {"name": self.name, "owner": self.owner, "until": now + self.ttl, "now": now}
        )
        held = bool(rows) and rows[0][0] == self.owner
        self.valid_until = local + self.ttl if held else 0.0
        return held

    def remaining(self) -> float:
        """Seconds this process may still act as the holder (0 when it does not hold it)."""
        return max(0.0, self.valid_until - self.clock())

    async def release(self) -> None:
        """Give the lease up at once, so another process can take over without waiting."""
        self.valid_until = 0.0
        # Expired now, not deleted: `signoff status` can still say who held it last, and since when not.
        await self.store.write(
            "UPDATE leases SET expires_at = ? WHERE name = ? AND owner = ?", (await self._now(), self.name, self.owner)
        )


class LeaseLost(Exception):
    """Another process holds the lease now: stop acting as its holder at once."""


class ChannelOff(Exception):
    """The channel cannot run until signoff restarts (a token was refused): said once, not retried."""


async def keep_renewed(lease: Lease, log: logging.Logger) -> None:
    """Renew ``lease`` every third of its ``ttl``, for as long as this runs; raises ``LeaseLost``
    when another process has it (or when it could not be renewed in time)."""
    while True:
        await asyncio.sleep(lease.ttl / 3)
        try:
            if not await lease.claim():
                raise LeaseLost()
        except LeaseLost:
            raise
        except Exception:
            log.exception("cannot renew the %s lease", lease.name)
            if lease.remaining() <= 0:
                raise LeaseLost() from None


async def hold(lease: Lease, serve: Callable[[], Awaitable[None]], *, log: logging.Logger, taken: str, lost: str,
               holding: asyncio.Event) -> None:  # fmt: skip
    """Claim ``lease`` whenever it is free and ``serve`` while holding it; forever. ``serve`` runs
    until it raises: ``LeaseLost`` (another process took over: claim again later), ``ChannelOff``
    (stop for good, logged), anything else (logged; claim again and retry). The lease is given up
    when this ends, so another process takes over at once."""
    try:
        while True:
            try:
                held = await lease.claim()
            except Exception:
                log.exception("cannot claim the %s lease; retrying", lease.name)
                held = False
            if held:
                log.info(taken)
                try:
                    await serve()
                except ChannelOff as exc:
                    log.error("%s", exc)
                    return
                except LeaseLost:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling() > 0:
                        raise asyncio.CancelledError() from None
                    log.warning(lost)
                except Exception:
                    log.exception("the %s holder failed; trying again in %.0f s", lease.name, lease.ttl / 3)
                finally:
                    holding.clear()
            await asyncio.sleep(lease.ttl / 3)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(lease.release())
