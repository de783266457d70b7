"""What approvers see in Telegram: HTML with every agent-supplied string made visible and escaped.

Every string an agent supplied (action, summary, requester and claimed name, client name,
working directory, metadata keys and values, details, reasons) goes through ``visible()``
(control and bidi characters become ``\\x1b``-style escapes) and then HTML escaping, and is
trimmed *after* that, so its cost in the message is known.

Telegram allows 4,096 characters per message after entity parsing (counted here in UTF-16
units, as Telegram does, on the HTML, which is always longer than the parsed text). A prompt
is built in budget: the header — action, requester, working directory, route and expiry, ID
and the shortened action digest — is bounded field by field and always shown; the summary,
metadata and details share what is left, each trimmed with a note of where to read the rest.
A prompt is never replaced by a placeholder under its buttons.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from signoff.server.details_text import details_text, edit_diff, edit_source, editable, edits_command
from signoff.server.durations import humanize_delta
from signoff.server.grant_models import Grant, offer, short_path
from signoff.server.grant_models import options as grant_options
from signoff.server.models import ApprovalRequest, Status, Vote
from signoff.server.sanitize import json_visible, visible
from signoff.server.web_auth import LINK_TTL

from .buttons import (
    APPROVE,
    APPROVE_ALL,
    APPROVE_EDITED,
    APPROVE_WITH_NOTE,
    DISCARD_EDIT,
    EDIT,
    REJECT,
    REJECT_ALL,
    REJECT_WITH_REASON,
    REVIEW_EACH,
    REVOKE,
    ButtonSigner,
)

MAX_TEXT = 4096
# A digest lists (and its buttons decide) at most this many requests: twenty short lines
# (≤ 40 characters of action, ≤ 100 of summary each) read fine on a phone and stay well
# under 4,096 characters; fewer are listed if the agents' text is long.
DIGEST_LISTED = 20
DIGEST_SHORT_DIGEST = 12  # hex digits of the action digest shown in a prompt
_OUTCOME = {
    Status.APPROVED: "✅ <b>Approved</b>",
    Status.REJECTED: "❌ <b>Rejected</b>",
    Status.EXPIRED: "⌛ <b>Expired</b> — nobody decided in time",
    Status.CANCELLED: "🚫 <b>Cancelled</b> by the agent",
}
_BY_POLICY = ("policy", "grant")
# Caps, in characters of escaped HTML, of the header's fields: together they stay far under
# MAX_TEXT, so the header always fits whatever the agent sent.
_ACTION, _NAME, _CWD, _ROUTE, _REASON = 300, 150, 300, 150, 600
_SUMMARY, _METADATA, _KEY, _VALUE = 1500, 1200, 80, 160


def clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M UTC")


def length(text: str) -> int:
    """Telegram's length of ``text``: UTF-16 code units (an emoji outside the BMP counts twice)."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def safe(text: str, *, one_line: bool = True) -> str:
    """Agent text for Telegram HTML: control and bidi characters shown as escapes, then escaped."""
    return escape(visible(text, one_line=one_line))


def clip(text: str, budget: int, *, one_line: bool = True, keep_end: bool = False) -> str:
    """``safe(text)`` in at most ``budget`` characters, cut (with "…") where it must be — at the
    end, or with ``keep_end`` at the start (for paths, whose end says most)."""
    full = safe(text, one_line=one_line)
    if length(full) <= budget:
        return full
    if budget <= 1:
        return "…"[: max(budget, 0)]
    if keep_end:
        n = _fitting_prefix(text[::-1], budget - 1, one_line=one_line)
        return "…" + safe(text[len(text) - n :], one_line=one_line)
    return safe(text[: _fitting_prefix(text, budget - 1, one_line=one_line)], one_line=one_line) + "…"


def _fitting_prefix(text: str, budget: int, *, one_line: bool) -> int:
    """The longest prefix of ``text`` whose ``safe()`` form has at most ``budget`` characters
    (``safe`` maps character by character, so the length only grows with the prefix)."""
    lo, hi = 0, min(len(text), max(budget, 0))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if length(safe(text[:mid], one_line=one_line)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def short_digest(req: ApprovalRequest) -> str:
    return (req.action_digest or "")[:DIGEST_SHORT_DIGEST] or "none"


def requester(req: ApprovalRequest) -> str:
    """Which agent asked: the transport's name, what the agent calls itself, its client (≤ ~500)."""
    who = clip(req.requested_by, _NAME)
    if req.claimed_requester:
        who += f" (calls itself “{clip(req.claimed_requester, _NAME)}”)"
    if req.client_name and req.client_name != req.requested_by:
        who += f" · client “{clip(req.client_name, _NAME)}”"
    return who


def header(req: ApprovalRequest, now: float, first: list[str], route_note: str = "") -> str:
    """What every prompt shows, whatever the agent sent, under its ``first`` lines: bounded field
    by field (≤ ~1,700)."""
    lines = list(first)
    if req.cwd:
        lines.append(f"In <code>{clip(short_path(req.cwd), _CWD, keep_end=True)}</code>")
    lines += [
        f"{route_note}Route <b>{clip(req.route, _ROUTE)}</b> · expires {humanize_delta(req.expires_at - now)} ({clock(req.expires_at)})",
        f"ID <code>{escape(req.id)}</code> · digest <code>{safe(short_digest(req))}</code>",
    ]
    return "\n".join(lines)


def _header(req: ApprovalRequest, now: float) -> str:
    first = [f"🔐 <b>Approval needed: {clip(req.action, _ACTION)}</b>", f"Asked by <b>{requester(req)}</b>"]
    return header(req, now, first)


def _metadata(req: ApprovalRequest, budget: int) -> tuple[str, bool]:
    """``key=<code>value</code> · …`` in at most ``budget`` characters, saying how many keys are
    left out; and whether anything was."""
    pairs = [
        f"{clip(k, _KEY)}=<code>{clip(json.dumps(v, ensure_ascii=False), _VALUE)}</code>"
        for k, v in req.metadata.items()
    ]
    shown: list[str] = []
    used = 0
    for i, pair in enumerate(pairs):
        left = len(pairs) - i - 1
        note = len(f" · … {left} more metadata keys") if left else 0
        if used + length(pair) + note > budget:
            break
        shown.append(pair)
        used += length(pair) + 3
    line = " · ".join(shown)
    if len(shown) < len(pairs):
        line += (" · " if shown else "") + f"… {len(pairs) - len(shown)} more metadata keys"
    trimmed = len(shown) < len(pairs) or any("…</code>" in p or "…=" in p for p in shown)
    return line, trimmed


def outcome(req: ApprovalRequest) -> str:
    line = _OUTCOME.get(req.status, escape(req.status.value))
    if req.status is Status.APPROVED and req.edited_details is not None:
        line += " <b>with changes</b>"  # "Edit before approving": the agent runs the edited arguments
    if req.status in (Status.APPROVED, Status.REJECTED):
        line += f" by <b>{clip(req.decided_by or '?', _NAME)}</b>"
    if req.decided_at is not None:
        line += f" at {clock(req.decided_at)}"
    if req.reason and (req.decided_via not in _BY_POLICY or req.status is Status.REJECTED):
        label = "Note" if req.status is Status.APPROVED else "Reason"  # an approver's "Approve with note"
        line += f"\n{label}: {clip(req.reason, _REASON)}"
    return line


def progress(req: ApprovalRequest, votes: Sequence[Vote]) -> str:
    """ "1 of 2 approvals — alice ✓" on a quorum route (and the rejections, where several are needed)."""
    if req.quorum <= 1 and req.reject_quorum <= 1:
        return ""
    approvals = [v.approver for v in votes if v.vote == "approve"]
    rejections = [v.approver for v in votes if v.vote == "reject"]
    line = f"🗳 {len(approvals)} of {req.quorum} approvals"
    marks = [f"{clip(a, _NAME)} ✓" for a in approvals] + [f"{clip(r, _NAME)} ✗" for r in rejections]
    if marks:
        line += " — " + ", ".join(marks)
    if req.reject_quorum > 1:
        line += f" · {len(rejections)} of {req.reject_quorum} rejections reject"
    return line


def prompt_text(req: ApprovalRequest, now: float, votes: Sequence[Vote] = ()) -> str:
    """The prompt (or, once decided, the same text with the outcome at the end), ≤ 4,096 characters."""
    return _request_text(req, now, votes, with_details=True)


def show_text(req: ApprovalRequest, now: float) -> str:
    """The /show message: the whole request but its details, which go along as a file."""
    return _request_text(req, now, (), with_details=False)


def _request_text(req: ApprovalRequest, now: float, votes: Sequence[Vote], *, with_details: bool) -> str:
    tail = "" if req.status is Status.PENDING else "\n\n" + outcome(req)
    extra = "\n".join(line for line in (progress(req, votes), escalation(req)) if line)
    return compose(req, _header(req, now), tail, extra, with_details=with_details)


def compose(req: ApprovalRequest, head: str, tail: str, extra: str, *, with_details: bool) -> str:
    """A prompt: ``head``, the summary, metadata, ``extra`` (dropped if the request's own text
    needs the room), the details if ``with_details``, and ``tail`` — in at most 4,096 characters."""
    room = MAX_TEXT - 200  # separators and the notes of what was left out
    budget = room - length(head) - length(tail) - length(extra)
    if budget < 600:
        extra = ""  # quorum marks and escalation names come from the config: never in the way of the request
        budget = room - length(head) - length(tail)
    summary = clip(req.summary, min(_SUMMARY, budget), one_line=False)
    trimmed = summary != safe(req.summary, one_line=False)
    budget -= length(summary)
    text = f"{head}\n\n{summary}"
    if req.metadata:
        meta, cut = _metadata(req, min(_METADATA, budget))
        trimmed |= cut
        budget -= length(meta)
        text += "\n" + meta
    if extra:
        text += "\n" + extra
    if with_details and req.details is not None:
        full = details_text(req)
        shown = full[: _fitting_prefix(full, budget - len("\n\n<pre></pre>"), one_line=False)]
        text += f"\n\n<pre>{safe(shown, one_line=False)}</pre>" if shown else ""
        if len(shown) < len(full):
            text += f"\n… {len(full) - len(shown):,} more characters: /show {escape(req.id)}"
    if trimmed:
        text += f"\n(Trimmed to fit: <code>signoff show {escape(req.id)}</code> shows it all.)"
    text += tail
    if length(text) > MAX_TEXT:  # cannot happen with the caps above; never send what Telegram refuses
        text = f"{head}\n\n(Too long to show here: <code>signoff show {escape(req.id)}</code>.){tail}"
    return text


def escalation(req: ApprovalRequest) -> str:
    if req.level <= 0:
        return ""
    added = [a for step in req.route_snapshot.get("escalation", [])[: req.level] for a in step.get("approvers", [])]
    return f"⬆️ Escalated to {escape(', '.join(added))}"


def grant_label(req: ApprovalRequest, option: str) -> str:
    """The grant button says exactly what it grants: "✅ Bash `npm test` in ~/src/shop, from claude-code, 30 min"."""
    return "✅ " + visible(offer(req, option), one_line=True)


def keyboard(req: ApprovalRequest, signer: ButtonSigner) -> InlineKeyboardMarkup:
    """The prompt's buttons, each signed for this request *and* its action digest."""

    def data(action: str) -> str:
        return signer.sign(action, req.id, digest=req.action_digest)

    rows = [
        [InlineKeyboardButton("✅ Approve", callback_data=data(APPROVE)),
         InlineKeyboardButton("❌ Reject", callback_data=data(REJECT))],
        [InlineKeyboardButton("📝 Approve with note", callback_data=data(APPROVE_WITH_NOTE)),
         InlineKeyboardButton("✍️ Reject with reason", callback_data=data(REJECT_WITH_REASON))],
    ]  # fmt: skip
    offered = req.route_snapshot.get("grant_options") or []
    grant_buttons = [
        InlineKeyboardButton(grant_label(req, option), callback_data=data(f"g{offered.index(option)}"))
        for option in grant_options(req)
    ]
    rows[1:1] = [[button] for button in grant_buttons]  # one a row: each says in full what it grants
    if editable(req):
        rows.append([InlineKeyboardButton("✏️ Edit", callback_data=data(EDIT))])
    return InlineKeyboardMarkup(rows)


# "Edit before approving": the reply prompt with the arguments to edit, and the diff to confirm.
_EDIT_ROOM = MAX_TEXT - 600  # for the arguments (escaped), under the question


def edit_prompt_text(req: ApprovalRequest) -> str | None:
    """The reply prompt that asks for new arguments: a Bash command as plain text, anything else
    as pretty JSON, escaped in a <pre> block. None when they are too long to edit in a message."""
    what = "the new command" if edits_command(req) else "the new arguments, as a JSON object"
    current = safe(edit_source(req), one_line=False)
    if length(current) > _EDIT_ROOM:
        return None
    return (f"✏️ Edit <code>{escape(req.id)}</code> ({clip(req.action, _ACTION)}). Reply to this message with "
            f"{what}; nothing is decided until you confirm. Now:\n<pre>{current}</pre>")  # fmt: skip


def edit_too_long_text(req: ApprovalRequest) -> str:
    return (f"The arguments of <code>{escape(req.id)}</code> are too long to edit here: "
            f"<code>signoff approve {escape(req.id)} --edit FILE</code> edits them at a terminal.")  # fmt: skip


def edit_confirm_text(req: ApprovalRequest, edited: object) -> str:
    """The change an approver proposed, as a diff (escaped and trimmed to fit)."""
    diff = clip(edit_diff(req.details, edited), _EDIT_ROOM, one_line=False)
    return (f"✏️ Your edit of <code>{escape(req.id)}</code> ({clip(req.action, _ACTION)}):\n<pre>{diff}</pre>\n"
            "Nothing is decided until you press “Approve edited”.")  # fmt: skip


def edit_keyboard(req: ApprovalRequest, edit_id: int, signer: ButtonSigner) -> InlineKeyboardMarkup:
    """ "Approve edited" and "Discard", signed for this proposed edit, its request and its content."""

    def data(action: str) -> str:
        return signer.sign_edit(action, edit_id, req.id, req.action_digest)

    return InlineKeyboardMarkup([[InlineKeyboardButton("✅ Approve edited", callback_data=data(APPROVE_EDITED)),
                                  InlineKeyboardButton("Discard", callback_data=data(DISCARD_EDIT))]])  # fmt: skip


def reminder_text(req: ApprovalRequest, now: float) -> str:
    return (f"⏰ Still waiting for you: <b>{clip(req.action, _ACTION)}</b> (<code>{escape(req.id)}</code>) — "
            f"expires {humanize_delta(req.expires_at - now)}. The buttons are on the message above.")  # fmt: skip


def escalated_text(req: ApprovalRequest) -> str:
    return (f"⬆️ <b>{clip(req.action, _ACTION)}</b> (<code>{escape(req.id)}</code>) had no decision in time and was "
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


def revoke_keyboard(grant: Grant, signer: ButtonSigner) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton("🛑 Revoke", callback_data=signer.sign(REVOKE, grant.id))]])


def digest_view(items: Sequence[ApprovalRequest], decided: int, now: float) -> tuple[str, list[ApprovalRequest]]:
    """The digest — "7 pending — 5 × Bash, 2 × refund" — and the requests it lists: the oldest
    ``DIGEST_LISTED`` (fewer if their text is long), the only ones its buttons decide."""
    if not items:
        return (f"📋 Digest: nothing pending ({decided} decided)." if decided else "📋 Digest: nothing pending."), []
    counts = Counter("question" if r.is_question else r.action for r in items)
    kinds = ", ".join(f"{n} × {clip(a, 40)}" for a, n in counts.most_common(8))
    if len(counts) > 8:
        kinds += f", {len(counts) - 8} more kinds"
    head = f"📋 <b>{len(items)} pending</b> — {kinds}\n"
    soonest = min(r.expires_at for r in items)
    foot = f"\nThe first expires {humanize_delta(soonest - now)} ({clock(soonest)})."
    if decided:
        foot += f"\n{decided} decided since this digest began."
    lines = [
        f"• <code>{escape(r.id)}</code> ❓ question: {clip(r.summary, 100)}"
        if r.is_question
        else f"• <code>{escape(r.id)}</code> {clip(r.action, 40)}: {clip(r.summary, 100)}"
        for r in items[:DIGEST_LISTED]
    ]
    while True:
        rest = len(items) - len(lines)
        more = (
            f"\n… and {rest} more. The buttons decide the {len(lines)} listed here; the rest come up next."
            if rest
            else ""
        )
        listed = items[: len(lines)]
        if any(r.is_question for r in listed):  # "Approve all" and "Reject all" never answer a question
            more += ("\nQuestions (❓) are answered one by one: “Review each” sends them."
                     if all(r.is_question for r in listed) else
                     "\nApprove all and Reject all skip the questions (❓): “Review each” sends them to answer.")  # fmt: skip
        text = head + "\n" + "\n".join(lines) + more + "\n" + foot
        if length(text) <= MAX_TEXT or len(lines) <= 1:
            return text, list(items[: len(lines)])
        lines.pop()


def digest_keyboard(
    listed: Sequence[ApprovalRequest], render_id: int, chat_id: int, signer: ButtonSigner
) -> InlineKeyboardMarkup | None:
    """The digest's buttons, signed for this very render of it (and its chat): they decide only ``listed``."""
    if not listed:
        return None
    row = [InlineKeyboardButton("🔎 Review each", callback_data=signer.sign_digest(REVIEW_EACH, render_id, chat_id))]
    approvals = [r for r in listed if not r.is_question]  # a question is never approved or rejected in bulk
    if approvals and all(r.route_snapshot.get("allow_bulk") for r in approvals):
        row.append(
            InlineKeyboardButton("✅ Approve all", callback_data=signer.sign_digest(APPROVE_ALL, render_id, chat_id))
        )
    if approvals:
        row.append(
            InlineKeyboardButton("❌ Reject all", callback_data=signer.sign_digest(REJECT_ALL, render_id, chat_id))
        )
    return InlineKeyboardMarkup([row])


def already(req: ApprovalRequest) -> str:
    """The answer to a press on a request that is no longer pending (plain text, ≤ 200 characters)."""
    who = f" by {visible(req.decided_by[:100], one_line=True)}" if req.decided_by else ""
    when = f" at {clock(req.decided_at)}" if req.decided_at else ""
    return f"Already {req.status.value}{who}{when}."[:200]


def details_file(req: ApprovalRequest) -> bytes | None:
    """The details in full, pretty-printed, for a document attached to /show (control and bidi
    characters written as JSON escapes, so any viewer shows them as such)."""
    if req.details is None:
        return None
    return json_visible(req.details, indent=2).encode()


def web_link_text(url: str, *, local: bool) -> str:
    """The message with a sign-in link to the web inbox (for the approver's private chat only);
    ``local``: no ``[web] public_url``, so the link is a loopback address."""
    text = (f"🔑 Your sign-in link to the signoff web inbox: it works once, within {int(LINK_TTL // 60)} minutes. "
            f"Do not forward it.\n{escape(url)}")  # fmt: skip
    if local:
        text += ("\n\nIt works only on the machine that runs <code>signoff serve</code> (set "
                 "<code>[web] public_url</code> to open the inbox from elsewhere).")  # fmt: skip
    return text
