"""The outbox: what must reach a person through a channel, and the messages already sent.

Rows are written in the same transaction that files, decides, escalates or reminds about a
request (the triggers of migration 0006 and the operations here are the only writers), so
whatever process did that, the process that holds a channel's connection finds them and
delivers them. A channel adapter reads due rows and reports back (``done``, ``retry``,
``hold``, ``sent``); it writes no SQL of its own.

Every place is ``(channel, address)``: ``telegram`` and a chat id, ``slack`` and a user or
channel id. A sent message is named by ``message``, which only its channel understands
(Telegram: the message id; Slack: ``<channel id>:<ts>``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from .dialect import json_true
from .store import Store


class Kind(StrEnum):
    """What an outbox row asks a channel to do."""

    PROMPT = "prompt"  # a new request: send its prompt (or gather it into the digest)
    SHOW = "show"  # a prompt someone asked for (/pending, "Review each"): never held, never gathered
    OUTCOME = "outcome"  # edit the prompts: the request is decided
    PROGRESS = "progress"  # edit the prompts: a vote counted
    REMINDER = "reminder"  # a reply to the prompt of an approver who has not voted
    ESCALATED = "escalated"  # a note to earlier approvers: more approvers were added
    GRANT_USED = "grant_used"  # edit a grant's notice: its count of uses
    GRANT_NOTICE = "grant_notice"  # edit a grant's notice: it ended
    DIGEST = "digest"  # send or edit the place's digest
    CALLBACK = "callback"  # POST the decision to the request's callback_url (server/decision_callbacks.py)


PROMPTS = (Kind.PROMPT, Kind.SHOW)
# What a human needs to decide comes before anything else due in its place (edits of earlier
# messages, notes), so a new request reaches a phone at once even in a busy chat.
_DUE = (
    "SELECT id, request_id, kind, channel, address, approver, attempts FROM outbox "
    "WHERE channel = ? AND done_at IS NULL AND next_attempt_at <= ? "
    "ORDER BY CASE WHEN kind IN ('prompt', 'show') THEN 0 ELSE 1 END, id LIMIT ?"
)
# Deliver (again) something about a request to one place, re-arming a row that was delivered:
# (request_id, kind, channel, address, approver, created_at, next_attempt_at).
QUEUE = (
    "INSERT INTO outbox (request_id, kind, channel, address, approver, created_at, next_attempt_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_id, kind, channel, address) DO UPDATE SET "
    "done_at = NULL, attempts = 0, next_attempt_at = excluded.next_attempt_at"
)
# The same, unless that row exists already (a prompt is sent once).
QUEUE_ONCE = (
    "INSERT INTO outbox (request_id, kind, channel, address, approver, created_at, next_attempt_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
QUIET_HOURS = "quiet hours"


# Digests (server/digests.py, in its transactions): every due, non-urgent prompt of a place goes
# into its digest (args: when, channel, address, now), and a refresh covers every refresh queued
# for the place so far (args: when, channel, address).
def due_prompts(dialect: str) -> str:
    return (
        "FROM outbox o JOIN requests r ON r.id = o.request_id WHERE o.kind = 'prompt' AND o.channel = ? "
        f"AND o.address = ? AND o.done_at IS NULL AND o.next_attempt_at <= ? "
        f"AND NOT {json_true(dialect, 'r.route_snapshot', 'urgent')}"
    )


def gathered_sql(dialect: str) -> str:
    return (
        f"UPDATE outbox SET done_at = ?, last_error = 'in the digest' WHERE id IN (SELECT o.id {due_prompts(dialect)})"
    )


DIGEST_REFRESHED = (
    "UPDATE outbox SET done_at = ? WHERE kind = 'digest' AND channel = ? AND address = ? AND done_at IS NULL"
)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One due outbox row."""

    id: int
    request_id: str
    kind: str  # a Kind's value; an unknown one (from a newer signoff) is skipped by the adapter
    channel: str
    address: str
    approver: str
    attempts: int


# What a reply prompt asks: why reject, the note to approve with, or a question's answer.
REASON, NOTE, ANSWER = "reason", "note", "answer"
ASKED_KINDS = (REASON, NOTE, ANSWER)


@dataclass(frozen=True, slots=True)
class Asked:
    """A reply prompt: it asked ``user_id`` for a ``kind`` ("reason", "note" or "answer") on ``request_id``."""

    request_id: str
    user_id: str
    kind: str


EDIT = "edit"  # an edit prompt (table edit_prompts): it asks an approver for new arguments


@dataclass(frozen=True, slots=True)
class ProposedEdit:
    """Arguments ``user_id`` proposed for ``request_id`` at ``address`` ("Edit before
    approving"), as canonical JSON; ``closed``: already confirmed or discarded."""

    id: int
    address: str
    request_id: str
    user_id: str
    details: str
    closed: bool


class Outbox:
    """One channel's view of the outbox. ``clock`` is the service's: deadlines and holds are
    measured against it."""

    def __init__(self, store: Store, channel: str, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.channel = channel
        self.clock = clock

    # --- rows ----------------------------------------------------------------------------

    async def due(self, limit: int = 200) -> list[Delivery]:
        """The rows due now, prompts first, then in the order they were written."""
        rows = await self.store.read(_DUE, (self.channel, self.clock(), limit))
        return [Delivery(int(r[0]), r[1], r[2], r[3], r[4], r[5], int(r[6])) for r in rows]

    async def queue(self, request_id: str, kind: Kind, address: str, approver: str = "") -> None:
        """Deliver (again) ``kind`` about a request to ``address``, through the pacing and retries."""
        now = self.clock()
        await self.store.write(QUEUE, (request_id, kind.value, self.channel, address, approver, now, now))

    async def next_due(self) -> float | None:
        """When the earliest undelivered row is due (None: nothing is waiting)."""
        rows = await self.store.read(
            "SELECT min(next_attempt_at) FROM outbox WHERE channel = ? AND done_at IS NULL", (self.channel,)
        )
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    async def finish(self, outbox_id: int, error: str | None) -> None:
        """One last attempt was made: delivered (``error`` None) or given up on (with its error)."""
        await self.store.write(
            "UPDATE outbox SET done_at = ?, attempts = attempts + 1, last_error = ? WHERE id = ?",
            (self.clock(), error, outbox_id),
        )

    async def is_done(self, outbox_id: int) -> bool:
        rows = await self.store.read("SELECT done_at FROM outbox WHERE id = ?", (outbox_id,))
        return not rows or rows[0][0] is not None

    async def done(self, outbox_id: int) -> None:
        await self.store.write(
            "UPDATE outbox SET done_at = ?, last_error = NULL WHERE id = ? AND done_at IS NULL",
            (time.time(), outbox_id),
        )

    async def undone(self, outbox_id: int) -> None:
        """A delivery that was marked done early failed: due again (its retry backs off)."""
        await self.store.write("UPDATE outbox SET done_at = NULL WHERE id = ?", (outbox_id,))

    async def hold(self, outbox_id: int, until: float) -> None:
        """Not before ``until`` (quiet hours)."""
        await self.store.write(
            "UPDATE outbox SET next_attempt_at = ?, last_error = ? WHERE id = ?", (until, QUIET_HOURS, outbox_id)
        )

    async def retry(self, outbox_id: int, delay: float, error: str, *, count: bool = True) -> None:
        """Try again in ``delay`` seconds; ``count`` adds one to the row's attempts (its backoff)."""
        await self.store.write(
            "UPDATE outbox SET attempts = attempts + ?, next_attempt_at = ?, last_error = ? WHERE id = ?",
            (1 if count else 0, self.clock() + delay, error[:500], outbox_id),
        )

    async def retry_now(self, address: str) -> None:
        """The person at ``address`` just talked to us: what failed to reach them goes out now
        (what quiet hours hold stays held)."""
        await self.store.write(
            "UPDATE outbox SET next_attempt_at = ? WHERE channel = ? AND address = ? AND done_at IS NULL "
            "AND last_error IS NOT NULL AND last_error <> ?",
            (self.clock(), self.channel, address, QUIET_HOURS),
        )

    async def done_grant_uses(self, address: str, grant_id: str) -> None:
        """Every use of a grant waiting to be shown at ``address`` is shown by the edit about to be
        made: a quiet count, not a message each."""
        await self.store.write(
            "UPDATE outbox SET done_at = ? WHERE kind = 'grant_used' AND channel = ? AND address = ? "
            "AND done_at IS NULL AND request_id IN (SELECT id FROM requests WHERE decided_by = ?)",
            (time.time(), self.channel, address, f"grant:{grant_id}"),
        )

    # --- messages sent -------------------------------------------------------------------

    async def sent(self, outbox_id: int, request_id: str, address: str, message: str) -> None:
        """A prompt went out as ``message``: remember it and close its row, in one transaction."""
        now = time.time()
        async with self.store.transaction() as conn:
            await conn.execute(
                "INSERT INTO prompts (request_id, channel, address, message, sent_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (request_id, self.channel, address, message, now),
            )
            await conn.execute("UPDATE outbox SET done_at = ?, last_error = NULL WHERE id = ?", (now, outbox_id))

    async def track(self, request_id: str, address: str, message: str) -> None:
        """Remember a message with buttons for a request, so its outcome is shown there too."""
        await self.store.write(
            "INSERT INTO prompts (request_id, channel, address, message, sent_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (request_id, self.channel, address, message, time.time()),
        )

    async def prompts(self, request_id: str, address: str) -> list[str]:
        """The messages that show ``request_id``'s prompt at ``address``, oldest first."""
        rows = await self.store.read(
            "SELECT message FROM prompts WHERE request_id = ? AND channel = ? AND address = ? "
            "ORDER BY sent_at, length(message), message",
            (request_id, self.channel, address),
        )
        return [str(r[0]) for r in rows]

    async def prompted(self, address: str) -> set[str]:
        """The requests that have a prompt at ``address``."""
        rows = await self.store.read(
            "SELECT DISTINCT request_id FROM prompts WHERE channel = ? AND address = ?", (self.channel, address)
        )
        return {str(r[0]) for r in rows}

    async def request_on(self, message: str, address: str | None = None) -> str | None:
        """The request whose prompt ``message`` is (at ``address``, when given); None if none is."""
        sql = "SELECT request_id FROM prompts WHERE channel = ? AND message = ?"
        args: tuple[str, ...] = (self.channel, message)
        if address is not None:
            sql, args = sql + " AND address = ?", (*args, address)
        rows = await self.store.read(sql, args)
        return str(rows[0][0]) if rows else None

    # --- "reject with reason" and "approve with note", asked in a chat ------------------------

    async def ask_reason(self, address: str, message: str, request_id: str, user_id: str, kind: str = "reason") -> None:
        """``message`` at ``address`` asks ``user_id`` why they reject ``request_id`` (``kind``
        "reason"), what note goes with their approval of it ("note"), or their answer to it ("answer")."""
        assert kind in ASKED_KINDS
        await self.store.write(
            "INSERT INTO reason_prompts (channel, address, message, request_id, user_id, created_at, kind) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (channel, address, message) DO UPDATE SET "
            "request_id = excluded.request_id, user_id = excluded.user_id, created_at = excluded.created_at, "
            "kind = excluded.kind",
            (self.channel, address, message, request_id, user_id, time.time(), kind),
        )

    async def reason_asked(self, address: str, message: str) -> Asked | None:
        """What ``message`` asked, of whom, about which request; None if it asked nothing."""
        rows = await self.store.read(
            "SELECT request_id, user_id, kind FROM reason_prompts WHERE channel = ? AND address = ? AND message = ?",
            (self.channel, address, message),
        )
        return Asked(str(rows[0][0]), str(rows[0][1]), str(rows[0][2])) if rows else None

    # --- "edit before approving", asked in a chat ----------------------------------------------

    async def ask_edit(self, address: str, message: str, request_id: str, user_id: str) -> None:
        """``message`` at ``address`` asks ``user_id`` for the new arguments of ``request_id``."""
        await self.store.write(
            "INSERT INTO edit_prompts (channel, address, message, request_id, user_id, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (channel, address, message) DO UPDATE SET "
            "request_id = excluded.request_id, user_id = excluded.user_id, created_at = excluded.created_at",
            (self.channel, address, message, request_id, user_id, time.time()),
        )

    async def edit_asked(self, address: str, message: str) -> Asked | None:
        """Whom ``message`` asked for an edit of which request (kind "edit"); None if it did not."""
        rows = await self.store.read(
            "SELECT request_id, user_id FROM edit_prompts WHERE channel = ? AND address = ? AND message = ?",
            (self.channel, address, message),
        )
        return Asked(str(rows[0][0]), str(rows[0][1]), EDIT) if rows else None

    async def propose_edit(self, address: str, request_id: str, user_id: str, details: str) -> int:
        """Keep ``user_id``'s checked edit (canonical JSON) of ``request_id`` until they confirm or
        discard it; its id, never reused."""
        async with self.store.transaction() as conn:
            rows = await conn.execute_fetchall(
                "INSERT INTO proposed_edits (channel, address, request_id, user_id, details, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (self.channel, address, request_id, user_id, details, time.time()),
            )
        return int(rows[0][0])

    async def proposed_edit(self, edit_id: int) -> ProposedEdit | None:
        rows = await self.store.read(
            "SELECT id, address, request_id, user_id, details, closed_at FROM proposed_edits "
            "WHERE id = ? AND channel = ?",
            (edit_id, self.channel),
        )
        if not rows:
            return None
        r = rows[0]
        return ProposedEdit(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), r[5] is not None)

    async def close_edit(self, edit_id: int) -> bool:
        """Confirm or discard a proposed edit: True for the one call that closed it, False when it
        was closed already (a double tap, or Discard then Approve edited)."""
        async with self.store.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE proposed_edits SET closed_at = ? WHERE id = ? AND channel = ? AND closed_at IS NULL",
                (time.time(), edit_id, self.channel),
            )
            return cursor.rowcount == 1
