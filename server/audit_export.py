"""The audit log's export formats, shared by ``signoff audit --format csv|jsonl`` and the web
inbox's export: one row per event, the same columns and escaping wherever it is made.

- **JSONL** is exact: JSON escapes decode to the stored text, so ``signoff audit verify --file``
  checks the hashes of a complete export. Raw control and bidi characters are escaped as
  ``\\uXXXX`` (``sanitize.json_visible``).
- **CSV** is for people and spreadsheets: text cells escaped like the console's table (one
  line, control characters visible: lossy), ``data`` as JSON, and a cell that a spreadsheet
  would read as a formula (starting ``=``, ``+``, ``-``, ``@``, a tab or a carriage return)
  gets a leading ``'``, so it shows as text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from .models import AuditEvent, iso
from .sanitize import json_visible, visible

AUDIT_FIELDS = ("seq", "at", "event", "request_id", "actor_kind", "actor", "channel", "content_hash", "route", "data",
                "action_digest", "prev_hash", "hash")  # fmt: skip
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def audit_rows(events: Sequence[AuditEvent]) -> list[dict[str, Any]]:
    """The events for export. Besides the readable fields, each carries what its hash covers, as
    stored (``at_unix``, ``route_snapshot_json``, ``data_json``), so a copy verifies anywhere."""
    return [
        {
            "seq": e.seq,
            "at": iso(e.at),
            "event": e.event,
            "request_id": e.request_id,
            "actor_kind": e.actor_kind,
            "actor": e.actor,
            "channel": e.channel,
            "content_hash": e.content_hash,
            "route": e.route_snapshot.get("name"),
            "data": e.data,
            "action_digest": e.action_digest,
            "prev_hash": e.prev_hash,
            "hash": e.hash,
            "at_unix": e.at,
            "route_snapshot_json": (e.raw or {}).get("route_snapshot"),
            "data_json": (e.raw or {}).get("data"),
        }
        for e in events
    ]


def cell(text: str) -> str:
    """A CSV cell a spreadsheet shows as text: one starting like a formula gets a leading quote."""
    return "'" + text if text[:1] in FORMULA_START else text


def _one(text: str) -> str:
    return visible(text, one_line=True)


def csv_header() -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(AUDIT_FIELDS)
    return buf.getvalue()


def csv_lines(events: Sequence[AuditEvent]) -> str:
    """The CSV lines of ``events`` (no header), each ending in a newline."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=AUDIT_FIELDS, lineterminator="\n", extrasaction="ignore")
    for r in audit_rows(events):
        cells = {k: cell(_one(v)) if isinstance(v, str) else v for k, v in r.items()}
        writer.writerow({**cells, "data": "" if r["data"] is None else cell(json_visible(r["data"]))})
    return buf.getvalue()


def jsonl_lines(events: Sequence[AuditEvent]) -> str:
    """The JSONL lines of ``events``, each ending in a newline."""
    return "".join(json_visible(r) + "\n" for r in audit_rows(events))


def to_csv(events: Iterable[AuditEvent]) -> str:
    return (csv_header() + csv_lines(list(events))).rstrip("\n")


def to_jsonl(events: Iterable[AuditEvent]) -> str:
    return jsonl_lines(list(events)).rstrip("\n")
