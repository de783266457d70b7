"""Digests: one message per place, updated in place, instead of a prompt for every request.

A new request's prompt joins the place's digest when the place already has more than
``[defaults] digest_threshold`` pending prompts, or a digest with pending items; a new digest
also counts the requests that already have a prompt, so it shows everything pending there.

A button decides only the message it is on. Every rendering (a send or an edit) is a
``digest_renders`` row, under an AUTOINCREMENT id that is never reused, holding exactly the
request ids the message lists; a channel's buttons sign that id and the place. A press counts
only when its render is the place's newest and is the message pressed (``current``), and then
covers only the listed items that are still pending (``listed``). This module holds the state;
how a digest looks is the channel's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import queries
from .config import Config
from .dialect import POSTGRESQL
from .models import ApprovalRequest
from .outbox import DIGEST_REFRESHED, QUEUE, Delivery, Kind, due_prompts, gathered_sql
from .quiet import held_until
from .store import Store

_R = ", ".join("r." + c.strip() for c in queries.REQUEST_COLUMNS.split(","))
_ITEMS = (
    f"SELECT {_R} FROM digest_items d JOIN requests r ON r.id = d.request_id "
    "WHERE d.channel = ? AND d.address = ? AND r.status = 'pending' ORDER BY d.seq"
)
_LISTED = f"SELECT {_R} FROM json_each(?) j JOIN requests r ON r.id = j.value WHERE r.status = 'pending' ORDER BY j.key"
_LISTED_PG = (
    f"SELECT {_R} FROM jsonb_array_elements_text(?::jsonb) WITH ORDINALITY j(value, key) "
    "JOIN requests r ON r.id = j.value WHERE r.status = 'pending' ORDER BY j.key"
)


@dataclass(frozen=True, slots=True)
class Render:
    """One rendering of a place's digest: the message it is on and the requests it lists."""

    id: int
    address: str
    message: str | None
    items: list[str]


@dataclass(frozen=True, slots=True)
class Draft:
    """What a digest is about to show: its pending items, how many were decided, its message."""

    items: list[ApprovalRequest]
    decided: int
    message: str | None


class DigestBook:
    """One channel's digests."""

    def __init__(self, store: Store, channel: str, config: Config, clock: Callable[[], float]) -> None:
        self.store = store
        self.channel = channel
        self.config = config
        self.clock = clock

    async def items(self, address: str) -> list[ApprovalRequest]:
        """The place's pending digest items, oldest first."""
        return [ApprovalRequest.from_row(r) for r in await self.store.read(_ITEMS, (self.channel, address))]

    async def current(self, address: str, render_id: int, message: str) -> Render | None:
        """The render a press names, if it is this place's newest and on the message pressed (or
        still being sent); None when the press is out of date (or not on its message)."""
        rows = await self.store.read(
            "SELECT id, message, items FROM digest_renders WHERE id = ? AND channel = ? AND address = ? "
            "AND id = (SELECT max(id) FROM digest_renders WHERE channel = ? AND address = ?)",
            (render_id, self.channel, address, self.channel, address),
        )
        if not rows or rows[0]["message"] not in (None, message):
            return None
        # No message yet: the render is being sent, and the pressed message (its buttons signed
        # for this render and place, which no other message carries) is the one.
        return Render(int(rows[0]["id"]), address, message, list(json.loads(rows[0]["items"])))

    async def listed(self, render: Render) -> list[ApprovalRequest]:
        """The requests ``render`` lists that are still pending, in its order."""
        listed = _LISTED_PG if self.store.dialect == POSTGRESQL else _LISTED
        rows = await self.store.read(listed, (json.dumps(render.items),))
        return [ApprovalRequest.from_row(r) for r in rows]

    async def gather(self, row: Delivery) -> bool:
        """Put a due prompt (and every other due prompt of its place) into the digest, when the
        place has too many pending prompts already; return whether it did."""
        done = await self.store.read("SELECT done_at FROM outbox WHERE id = ?", (row.id,))
        if done and done[0][0] is not None:
            return True  # gathered a moment ago, with the rest of its place's due prompts
        req = await self.store.get(row.request_id)
        if req is None or req.status.final or held_until(self.config, req, row.approver, self.clock()):
            return False  # decided or held: the outbox deals with it
        if req.route_snapshot.get("urgent"):
            return False  # urgent requests always get a prompt of their own
        place = (self.channel, row.address)
        counts = await self.store.read(
            "SELECT (SELECT count(DISTINCT p.request_id) FROM prompts p JOIN requests r ON r.id = p.request_id "
            "        WHERE p.channel = ? AND p.address = ? AND r.status = 'pending'), "
            "       (SELECT count(*) FROM digest_items d JOIN requests r ON r.id = d.request_id "
            "        WHERE d.channel = ? AND d.address = ? AND r.status = 'pending')",
            (*place, *place),
        )
        prompts, gathered = int(counts[0][0]), int(counts[0][1])
        if prompts <= self.config.defaults.digest_threshold and gathered == 0:
            return False
        now = self.clock()
        async with self.store.transaction() as conn:
            if gathered == 0:  # a new digest: it counts (and bulk-decides) what already has a prompt too
                await conn.execute(
                    "INSERT INTO digest_items (channel, address, request_id, approver) "
                    "SELECT p.channel, p.address, p.request_id, coalesce(o.approver, '') FROM prompts p "
                    "JOIN requests r ON r.id = p.request_id "
                    "LEFT JOIN outbox o ON o.request_id = p.request_id AND o.channel = p.channel "
                    "AND o.address = p.address AND o.kind = 'prompt' "
                    "WHERE p.channel = ? AND p.address = ? AND r.status = 'pending' ORDER BY p.sent_at "
                    "ON CONFLICT DO NOTHING",
                    place,
                )
            # Every due, non-urgent prompt of the place goes in (those already decided are just marked done).
            await conn.execute("INSERT INTO digest_items (channel, address, request_id, approver) "
                               f"SELECT o.channel, o.address, o.request_id, o.approver {due_prompts(conn.dialect)} "
                               "AND r.status = 'pending' ORDER BY o.id ON CONFLICT DO NOTHING", (*place, now))  # fmt: skip
            await conn.execute(gathered_sql(conn.dialect), (time.time(), *place, now))
            await conn.execute(QUEUE, (req.id, Kind.DIGEST, *place, "", now, now))
        return True

    async def start_refresh(self, address: str) -> Draft:
        """Begin a refresh: it covers every refresh queued for the place so far (their rows are
        closed now; should the channel fail, it reopens its own with ``Outbox.undone``)."""
        await self.store.write(DIGEST_REFRESHED, (time.time(), self.channel, address))
        items = await self.items(address)
        state = await self.store.read(
            "SELECT message FROM digests WHERE channel = ? AND address = ?", (self.channel, address)
        )
        total = await self.store.read(
            "SELECT count(*) FROM digest_items WHERE channel = ? AND address = ?", (self.channel, address)
        )
        message = str(state[0][0]) if state and state[0][0] is not None else None
        return Draft(items, int(total[0][0]) - len(items), message)

    async def new_render(self, address: str, message: str | None, listed: list[str]) -> int:
        """A new rendering listing ``listed``: it exists before its buttons do and supersedes every
        earlier one at once, so from here on a press on what the message showed so far is out of date."""
        async with self.store.transaction() as conn:
            rows = await conn.execute_fetchall(
                "INSERT INTO digest_renders (channel, address, message, items, created_at) VALUES (?, ?, ?, ?, ?) "
                "RETURNING id",
                (self.channel, address, message, json.dumps(listed), time.time()),
            )
            render_id = int(rows[0][0])
            await conn.execute(
                "DELETE FROM digest_renders WHERE channel = ? AND address = ? AND id < ?",
                (self.channel, address, render_id),
            )
        return render_id

    async def list_render(self, render_id: int, listed: list[str]) -> None:
        """Set what a render lists, for a channel that learns it only while drawing the message
        (its buttons name the render, so the render exists first)."""
        await self.store.write("UPDATE digest_renders SET items = ? WHERE id = ?", (json.dumps(listed), render_id))

    async def address_of(self, render_id: int) -> str | None:
        """Where render ``render_id`` of this channel was sent (None: no such render any more)."""
        rows = await self.store.read(
            "SELECT address FROM digest_renders WHERE id = ? AND channel = ?", (render_id, self.channel)
        )
        return str(rows[0][0]) if rows else None

    async def rendered(self, address: str, render_id: int, message: str | None, *, pending: bool) -> None:
        """The render is on ``message``. Without ``pending`` items the digest ends: the next one in
        this place starts afresh, as a new message."""
        async with self.store.transaction() as conn:
            await conn.execute("UPDATE digest_renders SET message = ? WHERE id = ?", (message, render_id))
            if pending:
                await conn.execute(
                    "INSERT INTO digests (channel, address, message) VALUES (?, ?, ?) ON CONFLICT (channel, address) "
                    "DO UPDATE SET message = excluded.message",
                    (self.channel, address, message),
                )
            else:
                await conn.execute("DELETE FROM digests WHERE channel = ? AND address = ?", (self.channel, address))
                await conn.execute(
                    "DELETE FROM digest_items WHERE channel = ? AND address = ?", (self.channel, address)
                )

    async def take_for_review(
        self, address: str, listed: list[ApprovalRequest], *, only: set[str], prompted: set[str], limit: int = 10
    ) -> list[ApprovalRequest]:
        """The oldest ``limit`` of the ``listed`` items, among ``only``, that have no prompt at the
        place yet (``prompted``), taken out of the digest to be prompted one by one."""
        taken = [r for r in listed if r.id in only and r.id not in prompted][:limit]
        async with self.store.transaction() as conn:
            for req in taken:
                await conn.execute(
                    "DELETE FROM digest_items WHERE channel = ? AND address = ? AND request_id = ?",
                    (self.channel, address, req.id),
                )
        return taken

    async def queue_refresh(self, request_id: str, address: str) -> None:
        now = self.clock()
        await self.store.write(QUEUE, (request_id, Kind.DIGEST, self.channel, address, "", now, now))
