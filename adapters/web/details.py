"""The request page's view of a request, as plain values its templates escape: the details
rendered for reading (a command, a diff, a file, JSON folded by level, syntax-coloured by
``colour``), the change an edit made, the policy in words, the audit trail. Every string an
agent wrote passes ``visible()`` (control and bidi characters shown as escapes) here; the
templates' autoescaping does the rest (a coloured piece is text in a ``<span>`` too).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from signoff.server.details_text import details_text, edit_diff
from signoff.server.durations import format_duration
from signoff.server.models import ApprovalRequest, AuditEvent, Status, Vote
from signoff.server.sanitize import json_visible, visible

from .colour import Piece, colour, language, map_text, split_lines

TREE_DEPTH = 12  # deeper JSON is shown as text at that level
TREE_NODES = 3_000  # more than this and the rest of a level is shown as text
OPEN_LEVELS = 2  # levels of a JSON tree shown unfolded


def when(ts: float | None) -> str:
    """A moment for people, in UTC: ``2024-05-01 14:03:07 UTC``."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def already(req: ApprovalRequest) -> str:
    """What a stale tab is told when it decides a request that is no longer pending."""
    who = f" by {visible(req.decided_by[:100], one_line=True)}" if req.decided_by else ""
    at = f" at {when(req.decided_at)}" if req.decided_at else ""
    return f"Already {req.status.value}{who}{at}."


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a diff or a listing; ``kind``: add, del, hunk, file, warn or ctx. ``pieces``:
    the same text, coloured (empty when it is not)."""

    kind: str
    text: str
    pieces: tuple[Piece, ...] = ()


@dataclass(slots=True)
class Node:
    """One value of a JSON tree: an object or array (``children``), or a leaf (``leaf``: its JSON)."""

    key: str | None
    kind: str  # "object", "array" or "leaf"
    leaf: str = ""
    pieces: list[Piece] = field(default_factory=list)  # the leaf, coloured as JSON
    children: list[Node] = field(default_factory=list)
    open: bool = False


@dataclass(frozen=True, slots=True)
class DetailsView:
    """How the details read: ``kind`` is command, diff, file, url, text, json or none."""

    kind: str
    lines: list[Line]
    tree: Node | None


def _coloured(prefix: str, code: str, lang: str | None) -> tuple[Piece, ...]:
    """``prefix`` (plain) and ``code`` coloured as ``lang``, made visible piece by piece."""
    if lang is None:
        return ()
    return tuple(map_text(([("", prefix)] if prefix else []) + colour(code, lang), visible))


def diff_lines(text: str, *, headers: int = 0, lang: str | None = None) -> list[Line]:
    """Classify a unified diff's lines for colouring (the first ``headers`` lines name files);
    with ``lang``, the code within added, removed and context lines is coloured as that."""
    lines: list[Line] = []
    for n, raw in enumerate(text.splitlines()):
        line = visible(raw)
        if n < headers or (not lines and raw.startswith("--- ")):
            kind = "file"
        elif raw.startswith("⚠"):
            kind = "warn"
        elif raw.startswith("@@"):
            kind = "hunk"
        elif raw.startswith("+"):
            kind = "add"
        elif raw.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        pieces: tuple[Piece, ...] = ()
        if kind in ("add", "del", "ctx"):
            sign = raw[:1] if raw[:1] in ("+", "-", " ") else ""
            pieces = _coloured(sign, raw[len(sign) :], lang)
        lines.append(Line(kind, line, pieces))
    return lines


def _listing(text: str, tail: str, lang: str | None) -> list[Line]:
    """``text`` line by line, its ending ``tail`` (a command, a file's content) coloured as
    ``lang`` across lines; only the lines before the tail can be a warning."""
    if not (tail and text.endswith(tail)):
        head, tail = text, ""
    else:
        head = text[: len(text) - len(tail)]
    start: list[Piece] = [("", head[:-2]), ("tok-prompt", "$ ")] if head.endswith("$ ") else [("", head)]
    lines = []
    for n, raw in enumerate(split_lines(start + colour(tail, lang))):
        pieces = map_text(raw, visible)
        shown = "".join(part for _, part in pieces)
        kind = "warn" if n < head.count("\n") and shown.startswith("⚠") else "ctx"
        lines.append(Line(kind, shown, tuple(pieces)))
    return lines


def _leaf(value: Any) -> str:
    try:
        return json_visible(value)
    except (RecursionError, ValueError, TypeError):
        return "(too deeply nested to show)"


def json_tree(value: Any, key: str | None = None, level: int = 0, budget: list[int] | None = None) -> Node:
    """``value`` as a tree of foldable nodes (the first ``OPEN_LEVELS`` unfolded)."""
    budget = [TREE_NODES] if budget is None else budget
    budget[0] -= 1
    shown_key = None if key is None else visible(key, one_line=True)
    if not isinstance(value, dict | list) or level >= TREE_DEPTH or budget[0] <= 0:
        leaf = _leaf(value)
        return Node(shown_key, "leaf", leaf=leaf, pieces=colour(leaf, "json"))
    items = list(value.items()) if isinstance(value, dict) else [(str(i), v) for i, v in enumerate(value)]
    node = Node(shown_key, "object" if isinstance(value, dict) else "array", open=level < OPEN_LEVELS)
    for k, v in items:
        node.children.append(json_tree(v, k, level + 1, budget))
    return node


def details_view(req: ApprovalRequest) -> DetailsView:
    d = req.details
    if d is None:
        return DetailsView("none", [], None)
    if isinstance(d, str):
        return DetailsView("text", [Line("ctx", visible(d))], None)
    tree = json_tree(d)
    text = details_text(req)
    if not isinstance(d, dict) or text == json.dumps(d, indent=2, ensure_ascii=False):
        return DetailsView("json", [], tree)
    if req.action in ("Edit", "MultiEdit"):
        return DetailsView("diff", diff_lines(text, lang=language(d.get("file_path"))), tree)
    kind = {"Bash": "command", "Write": "file", "WebFetch": "url"}.get(req.action, "text")
    if kind == "command":
        return DetailsView(kind, _listing(text, str(d.get("command", "")), "shell"), tree)
    if kind == "file":
        return DetailsView(kind, _listing(text, str(d.get("content", "")), language(d.get("file_path"))), tree)
    return DetailsView(kind, [Line("warn" if t.startswith("⚠") else "ctx", visible(t)) for t in text.split("\n")], tree)


def edited_view(req: ApprovalRequest) -> list[Line] | None:
    """How the approver changed the arguments before approving (None when nobody did)."""
    if req.edited_details is None:
        return None
    return diff_lines(edit_diff(req.details, req.edited_details), headers=2)


def edit_preview(req: ApprovalRequest, edited: Any) -> list[Line]:
    return diff_lines(edit_diff(req.details, edited), headers=2)


@dataclass(frozen=True, slots=True)
class Step:
    """One escalation level: when it fires, whom it adds, whether it has."""

    after: str
    at: float
    approvers: list[str]
    fired: bool


@dataclass(frozen=True, slots=True)
class Policy:
    approvals: list[str]
    rejections: list[str]
    quorum: int
    reject_quorum: int
    eligible: list[str]
    everyone: list[str]
    steps: list[Step]
    reminder: str | None
    on_timeout: str


def policy_view(req: ApprovalRequest, votes: list[Vote]) -> Policy:
    snap = req.route_snapshot
    steps = [
        Step(format_duration(float(s.get("after", 0))), req.created_at + float(s.get("after", 0)),
             list(s.get("approvers", [])), n < req.level)
        for n, s in enumerate(snap.get("escalation", []))
    ]  # fmt: skip
    reminder = snap.get("reminder")
    return Policy(
        approvals=[v.approver for v in votes if v.vote == "approve"],
        rejections=[v.approver for v in votes if v.vote == "reject"],
        quorum=req.quorum,
        reject_quorum=req.reject_quorum,
        eligible=req.eligible(),
        everyone=req.everyone(),
        steps=steps,
        reminder=format_duration(float(reminder)) if reminder else None,
        on_timeout="expire" if req.is_question else req.on_timeout,
    )


@dataclass(frozen=True, slots=True)
class TrailRow:
    at: float
    event: str
    actor: str
    actor_kind: str
    channel: str
    data: list[tuple[str, str]]


def metadata(req: ApprovalRequest) -> list[tuple[str, str]]:
    """The metadata as ``key: value`` text (a string as it is, anything else as JSON)."""
    return [(visible(str(k), one_line=True), visible(v) if isinstance(v, str) else _leaf(v))
            for k, v in req.metadata.items()]  # fmt: skip


def trail(events: list[AuditEvent]) -> list[TrailRow]:
    """The audit events of a request, for reading (their data as ``key: value`` text)."""
    rows = []
    for e in events:
        data = [(visible(str(k), one_line=True), visible(v) if isinstance(v, str) else _leaf(v))
                for k, v in (e.data or {}).items()]  # fmt: skip
        rows.append(TrailRow(e.at, e.event, visible(e.actor, one_line=True), e.actor_kind, e.channel, data))
    return rows


DONE = {
    "approved": "Approved ✅",
    "rejected": "Rejected ❌",
    "answered": "Answered 💬",
    "granted": "Approved ✅ and granted.",
    "voted": "Your vote counts. Waiting for the others.",
    "already_voted": "You already voted on this request; waiting for the others.",
}
_DONE_STATUS = {"approved": Status.APPROVED, "rejected": Status.REJECTED, "answered": Status.ANSWERED,
                "granted": Status.APPROVED}  # fmt: skip


def flash(done: str, req: ApprovalRequest) -> str | None:
    """The message for ``?done=…`` (from a fixed list, never the query's own text), shown only
    where the request's state agrees with it; "already" says who decided, and when."""
    if done == "already":
        return already(req) if req.status.final else None
    if done not in DONE or (done in _DONE_STATUS and req.status is not _DONE_STATUS[done]):
        return None
    return DONE[done]
