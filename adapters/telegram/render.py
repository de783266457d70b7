"""What approvers see in Telegram: HTML with every agent-supplied string escaped.

Telegram allows 4,096 characters per message after entity parsing. We keep the *HTML* under
that (always longer than the parsed text), trimming the details and saying how much is left
out and where to read it in full.
"""

from __future__ import annotations

import difflib
import json
from datetime import UTC, datetime
from html import escape
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from server.durations import humanize_delta
from server.models import ApprovalRequest, Status

from .callbacks import APPROVE, REJECT, REJECT_WITH_REASON, CallbackSigner

MAX_TEXT = 4096
_OUTCOME = {
    Status.APPROVED: "✅ <b>Approved</b>",
    Status.REJECTED: "❌ <b>Rejected</b>",
    Status.EXPIRED: "⌛ <b>Expired</b> — nobody decided in time",
    Status.CANCELLED: "🚫 <b>Cancelled</b> by the agent",
}


def clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M UTC")


def _details_text(req: ApprovalRequest) -> str:
    """The details as the approver should read them: Claude Code's common tools in their own
    terms (the command, a diff, the file, the URL), anything else as pretty JSON."""
    d = req.details
    if isinstance(d, dict):
        text = _claude_code_tool(req.action, d)
        if text is not None:
            return text
    return d if isinstance(d, str) else json.dumps(d, indent=2, ensure_ascii=False)


def _claude_code_tool(tool: str, d: dict[str, Any]) -> str | None:
    def s(key: str) -> str | None:
        value = d.get(key)
        return value if isinstance(value, str) else None

    if tool == "Bash" and (command := s("command")):
        return f"$ {command}"
    if tool in ("Edit", "MultiEdit") and (path := s("file_path")):
        edits = d.get("edits") if tool == "MultiEdit" else [d]
        lines = [f"--- {path}"]
        for edit in edits if isinstance(edits, list) else []:
            old, new = edit.get("old_string"), edit.get("new_string")
            if isinstance(old, str) and isinstance(new, str):
                lines += list(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=1))[2:]
        return "\n".join(lines)
    if tool == "Write" and (path := s("file_path")) and (content := s("content")) is not None:
        return f"{path}\n\n{content}"
    if tool == "WebFetch" and (url := s("url")):
        return url + (f"\n\n{prompt}" if (prompt := s("prompt")) else "")
    return None


def _header(req: ApprovalRequest, now: float) -> str:
    who = escape(req.requested_by)
    if req.claimed_requester:
        who += f" (calls itself “{escape(req.claimed_requester)}”)"
    lines = [
        f"🔐 <b>Approval needed: {escape(req.action)}</b>",
        f"Asked by <b>{who}</b>",
        "",
        escape(req.summary),
        "",
        f"Route <b>{escape(req.route)}</b> · expires {humanize_delta(req.expires_at - now)} ({clock(req.expires_at)})",
    ]
    if req.metadata:
        lines.append(" · ".join(f"{escape(k)}=<code>{escape(json.dumps(v))}</code>" for k, v in req.metadata.items()))
    lines.append(f"ID <code>{escape(req.id)}</code>")
    return "\n".join(lines)


def _outcome(req: ApprovalRequest) -> str:
    line = _OUTCOME.get(req.status, escape(req.status.value))
    if req.status in (Status.APPROVED, Status.REJECTED):
        line += f" by <b>{escape(req.decided_by or '?')}</b>"
    if req.decided_at is not None:
        line += f" at {clock(req.decided_at)}"
    if req.reason and req.decided_via not in ("policy",):
        line += f"\nReason: {escape(req.reason)}"
    return line


def prompt_text(req: ApprovalRequest, now: float) -> str:
    """The prompt (or, once decided, the same text with the outcome at the end), ≤ 4,096 characters."""
    head = _header(req, now)
    tail = "" if req.status is Status.PENDING else "\n\n" + _outcome(req)
    if req.details is None:
        return _fit(head + tail)
    full = _details_text(req)
    budget = MAX_TEXT - len(head) - len(tail) - len("\n\n<pre></pre>") - 120  # room for the marker
    shown = full[: _fitting_prefix(full, budget)]
    marker = ""
    if len(shown) < len(full):
        marker = f"\n… {len(full) - len(shown):,} more characters: /show {escape(req.id)}"
    return _fit(f"{head}\n\n<pre>{escape(shown)}</pre>{marker}{tail}")


def _fitting_prefix(text: str, budget: int) -> int:
    """The longest prefix of ``text`` whose HTML-escaped form has at most ``budget`` characters."""
    if len(escape(text)) <= budget:
        return len(text)
    lo, hi = 0, min(len(text), max(budget, 0))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(escape(text[:mid])) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _fit(text: str) -> str:
    # A last guard: the header alone is bounded (action 200, summary 1,000, metadata 50 keys),
    # but never send Telegram something it would refuse.
    if len(text) <= MAX_TEXT:
        return text
    return escape("(this request is too large to show here; use /show or `signoff show`)")


def keyboard(req: ApprovalRequest, signer: CallbackSigner) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("✅ Approve", callback_data=signer.sign(APPROVE, req.id)),
                InlineKeyboardButton("❌ Reject", callback_data=signer.sign(REJECT, req.id)),
            ],
            [InlineKeyboardButton("✍️ Reject with reason", callback_data=signer.sign(REJECT_WITH_REASON, req.id))],
        ]
    )


def already(req: ApprovalRequest) -> str:
    """The answer to a press on a request that is no longer pending (≤ 200 characters)."""
    who = f" by {req.decided_by}" if req.decided_by else ""
    when = f" at {clock(req.decided_at)}" if req.decided_at else ""
    return f"Already {req.status.value}{who}{when}."[:200]


def show_text(req: ApprovalRequest, now: float) -> str:
    """The /show message: the whole request but its details, which go along as a file."""
    tail = "" if req.status is Status.PENDING else "\n\n" + _outcome(req)
    return _fit(_header(req, now) + tail)


def details_file(req: ApprovalRequest) -> bytes | None:
    """The details in full, pretty-printed, for a document attached to /show."""
    if req.details is None:
        return None
    return json.dumps(req.details, indent=2, ensure_ascii=False).encode()
