"""The audit log's hash chain: each event stores the previous event's hash and its own.

``hash = SHA-256(prev_hash + "\\n" + record)`` in hex, where ``record`` is the canonical JSON
(sorted keys, compact, UTF-8, no NaN) of the list ``[seq, at, event, request_id, actor_kind,
actor, channel, route_snapshot, content_hash, action_digest, data]`` with every value exactly
as stored (``at`` a float in Unix seconds, ``route_snapshot`` and ``data`` the stored JSON
*text*), and ``prev_hash`` the empty string for the first event. The database computes it
in the statement that appends the event (the ``audit_chain`` trigger calls
``signoff_audit_hash``, registered here on every connection that writes), so no event is
ever stored without its link. ``verify`` walks a chain — from the database or from an
``audit --format jsonl`` export — and names the first event that does not fit.

Whoever can write the database file can rewrite the whole chain; the chain makes a change
*evident* to anyone who kept an earlier export or its last hash (see SECURITY.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .models import AUDIT_HASHED

if TYPE_CHECKING:
    import aiosqlite

FIELDS = AUDIT_HASHED
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def event_hash(prev_hash: str | None, *values: Any) -> str:
    """The hash of one event, given the previous event's hash and the values of ``FIELDS``."""
    record = _ENCODER.encode(list(values))
    return hashlib.sha256(((prev_hash or "") + "\n" + record).encode()).hexdigest()


async def register(conn: aiosqlite.Connection) -> None:
    """Make ``signoff_audit_hash(prev, seq, at, …)`` available to the triggers on ``conn``."""
    await conn.create_function("signoff_audit_hash", 1 + len(FIELDS), event_hash, deterministic=True)


async def chain_existing(conn: aiosqlite.Connection) -> None:
    """Link the events written before the chain existed (migration 0004), oldest first."""
    prev: str | None = None
    rows = await conn.execute_fetchall(f"SELECT {', '.join(FIELDS)}, hash FROM audit ORDER BY seq")
    for row in rows:
        values = [row[i] for i in range(len(FIELDS))]
        if row[len(FIELDS)] is None:
            digest = event_hash(prev, *values)
            await conn.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, values[0]))
            prev = digest
        else:
            prev = row[len(FIELDS)]


@dataclass(frozen=True, slots=True)
class Broken:
    """The first event that does not fit the chain, and why."""

    seq: int
    why: str


def verify(events: Iterable[Mapping[str, Any]], *, from_start: bool = True) -> tuple[int, Broken | None]:
    """Check a chain of events (each a mapping with ``FIELDS``, ``prev_hash`` and ``hash``),
    oldest first. Returns (how many events were checked, the first broken one or None).
    ``from_start=False`` accepts the first event's ``prev_hash`` as given (an export of the
    newest events only); the rest must follow it without a gap."""
    prev: str | None = None
    count = 0
    last_seq: int | None = None
    for event in events:
        seq = int(event["seq"])
        if count == 0 and not from_start:
            prev = event.get("prev_hash")
        if last_seq is not None and seq <= last_seq:
            return count, Broken(seq, f"event {seq} comes after event {last_seq}: the log was reordered")
        if event.get("prev_hash") != prev:
            why = "its prev_hash does not match the hash of the event before it (an event was removed or inserted)"
            return count, Broken(seq, why)
        expected = event_hash(prev, *(event[f] for f in FIELDS))
        if event.get("hash") != expected:
            return count, Broken(seq, "its content does not match its hash (the event was changed)")
        prev = expected
        last_seq = seq
        count += 1
    return count, None


def verify_source(config_arg: str | None, export: str | None) -> tuple[bool, str]:
    """Verify the database the config names, or an ``audit --format jsonl`` export; (ok, what to print)."""
    from . import readonly

    if export is not None:
        try:
            with open(export, encoding="utf-8") as f:
                events = [json.loads(line) for line in f if line.strip()]
        except (OSError, ValueError) as exc:
            return False, f"audit verify --file {export}: cannot read it ({exc}); give an `audit --format jsonl` export"
        if any(not isinstance(e, dict) or "hash" not in e or "at_unix" not in e for e in events):
            return (
                False,
                f"audit verify --file {export}: not an `audit --format jsonl` export of this version (no hashes)",
            )
        rows = [{**e, "at": e["at_unix"], "route_snapshot": e["route_snapshot_json"], "data": e["data_json"]}
                for e in events]  # fmt: skip
        count, broken = verify(rows, from_start=bool(rows) and rows[0]["prev_hash"] is None)
        where = export
    else:
        with readonly.connect(readonly.db_path(config_arg)) as conn:
            stored = readonly.audit(conn)
        rows = [{**(e.raw or {}), "prev_hash": e.prev_hash, "hash": e.hash} for e in stored]
        count, broken = verify(rows)
        where = "the database"
    if broken is not None:
        return False, (f"audit chain BROKEN in {where} at event {broken.seq}: {broken.why} ({count} events before "
                       "it are intact)")  # fmt: skip
    last = rows[-1]["hash"] if rows else None
    return True, f"audit chain OK in {where}: {count} events" + (f", last hash {last}" if last else "")
