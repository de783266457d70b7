"""What approvers see in Telegram: HTML with every agent-supplied string escaped.

Telegram allows 4,096 characters per message after entity parsing. We keep the *HTML* under
that (always longer than the parsed text), trimming the details and saying how much is left
out and where to read it in full.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from server.durations import humanize_delta
from server.grants import Grant, offer
from server.grants import options as grant_options
from server.models import ApprovalRequest, Status
from server.policy import Vote
from server.sanitize import visible

from .callbacks import (
    APPROVE,
    APPROVE_ALL,
    REJECT,
    REJECT_ALL,
    REJECT_WITH_REASON,
    REVIEW_EACH,
    REVOKE,
    CallbackSigner,
)

MAX_TEXT = 4096
_OUTCOME = {
    Status.APPROVED: "✅ <b>Approved</b>",
    Status.REJECTED: "❌ <b>Rejected</b>",
    Status.EXPIRED: "⌛ <b>Expired</b> — nobody decided in time",
    Status.CANCELLED: "🚫 <b>Cancelled</b> by the agent",
}
_BY_POLICY = ("policy", "grant")


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
    if req.reason and (req.decided_via not in _BY_POLICY or req.status is Status.REJECTED):
        line += f"\nReason: {escape(req.reason)}"
    return line


def progress(req: ApprovalRequest, votes: Sequence[Vote]) -> str:
    """ "1 of 2 approvals — alice ✓" on a quorum route (and the rejections, where several are needed)."""
    if req.quorum <= 1 and req.reject_quorum <= 1:
        return ""
    approvals = [v.approver for v in votes if v.vote == "approve"]
    rejections = [v.approver for v in votes if v.vote == "reject"]
    line = f"🗳 {len(approvals)} of {req.quorum} approvals"
    marks = [f"{escape(a)} ✓" for a in approvals] + [f"{escape(r)} ✗" for r in rejections]
    if marks:
        line += " — " + ", ".join(marks)
    if req.reject_quorum > 1:
        line += f" · {len(rejections)} of {req.reject_quorum} rejections reject"
    return line


def prompt_text(req: ApprovalRequest, now: float, votes: Sequence[Vote] = ()) -> str:
    """The prompt (or, once decided, the same text with the outcome at the end), ≤ 4,096 characters."""
    head = _header(req, now)
    extra = [line for line in (progress(req, votes), _escalation(req)) if line]
    if extra:
        head += "\n" + "\n".join(extra)
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


def _escalation(req: ApprovalRequest) -> str:
    if req.level <= 0:
        return ""
    added = [a for step in req.route_snapshot.get("escalation", [])[: req.level] for a in step.get("approvers", [])]
    return f"⬆️ Escalated to {escape(', '.join(added))}"


def grant_label(req: ApprovalRequest, option: str) -> str:
    """The grant button says exactly what it grants: "✅ Bash `npm test` in ~/src/shop, from claude-code, 30 min"."""
    return "✅ " + visible(offer(req, option), one_line=True)


def keyboard(req: ApprovalRequest, signer: CallbackSigner) -> InlineKeyboardMarkup:
    rows = [
        [
            InlineKeyboardButton("✅ Approve", callback_data=signer.sign(APPROVE, req.id)),
            InlineKeyboardButton("❌ Reject", callback_data=signer.sign(REJECT, req.id)),
        ],
        [InlineKeyboardButton("✍️ Reject with reason", callback_data=signer.sign(REJECT_WITH_REASON, req.id))],
    ]
    offered = req.route_snapshot.get("grant_options") or []
    grant_buttons = [
        InlineKeyboardButton(grant_label(req, option), callback_data=signer.sign(f"g{offered.index(option)}", req.id))
        for option in grant_options(req)
    ]
    rows[1:1] = [[button] for button in grant_buttons]  # one a row: each says in full what it grants
    return InlineKeyboardMarkup(rows)


def reminder_text(req: ApprovalRequest, now: float) -> str:
    return (f"⏰ Still waiting for you: <b>{escape(req.action)}</b> (<code>{escape(req.id)}</code>) — "
            f"expires {humanize_delta(req.expires_at - now)}. The buttons are on the message above.")  # fmt: skip


def escalated_text(req: ApprovalRequest) -> str:
    return (f"⬆️ <b>{escape(req.action)}</b> (<code>{escape(req.id)}</code>) had no decision in time and was "
            f"escalated: {escape(', '.join(req.eligible()))} may decide it now. Your buttons still work.")  # fmt: skip


def grant_notice(grant: Grant, now: float) -> str:
    if grant.revoked_at is not None:
        state = f"revoked by {escape(grant.revoked_by or '?')} at {clock(grant.revoked_at)}"
    elif not grant.live(now):
        state = f"ended at {clock(min(grant.expires_at, now))}"
    else:
        state = f"until {clock(grant.expires_at)} ({humanize_delta(grant.expires_at - now)})"
    uses = f"{grant.uses} use{'s' if grant.uses != 1 else ''}" + (f" of {grant.max_uses}" if grant.max_uses else "")
    return (f"🔓 Grant <code>{escape(grant.id)}</code>: <b>{escape(visible(grant.scope(), one_line=True))}</b> on route "
            f"{escape(grant.route)} is approved automatically, {state}.\nUsed: {uses}. /grants to list or revoke.")  # fmt: skip


def revoke_keyboard(grant: Grant, signer: CallbackSigner) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton("🛑 Revoke", callback_data=signer.sign(REVOKE, grant.id))]])


def digest_text(items: Sequence[ApprovalRequest], decided: int, now: float) -> str:
    """The digest: "7 pending — 5 × Bash, 2 × refund", the oldest few listed."""
    if not items:
        return f"📋 Digest: nothing pending ({decided} decided)." if decided else "📋 Digest: nothing pending."
    counts = Counter(r.action for r in items)
    kinds = ", ".join(f"{n} × {escape(a)}" for a, n in counts.most_common(8))
    if len(counts) > 8:
        kinds += f", {len(counts) - 8} more kinds"
    lines = [f"📋 <b>{len(items)} pending</b> — {kinds}", ""]
    for r in items[:10]:
        lines.append(f"• <code>{escape(r.id)}</code> {escape(r.action)}: {escape(r.summary[:80])}")
    if len(items) > 10:
        lines.append(f"… and {len(items) - 10} more")
    soonest = min(r.expires_at for r in items)
    lines += ["", f"The first expires {humanize_delta(soonest - now)} ({clock(soonest)})."]
    if decided:
        lines.append(f"{decided} decided since this digest began.")
    return _fit("\n".join(lines))


def digest_keyboard(
    items: Sequence[ApprovalRequest], upto: int, chat_id: int, signer: CallbackSigner
) -> InlineKeyboardMarkup | None:
    if not items:
        return None
    row = [InlineKeyboardButton("🔎 Review each", callback_data=signer.sign_digest(REVIEW_EACH, upto, chat_id))]
    if all(r.route_snapshot.get("allow_bulk") for r in items):
        row.append(InlineKeyboardButton("✅ Approve all", callback_data=signer.sign_digest(APPROVE_ALL, upto, chat_id)))
    row.append(InlineKeyboardButton("❌ Reject all", callback_data=signer.sign_digest(REJECT_ALL, upto, chat_id)))
    return InlineKeyboardMarkup([row])


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
