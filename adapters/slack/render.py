"""What approvers see in Slack: Block Kit with every agent-supplied string made visible, escaped
and kept in code, within Slack's limits.

Every string an agent supplied (action, summary, requester and claimed name, client name,
working directory, metadata keys and values, details, reasons) — and, to be safe, every name
from the config — goes through ``visible()`` (control and bidi characters become
``\\x1b``-style escapes), then ``escape()`` (``&``, ``<``, ``>`` as entities, so no ``<!channel>``,
``<@U…>`` or ``<https://…|link>`` is ever parsed), and is shown only inside inline code or a
code block, with its backticks replaced (see ``_CODE_TICK``), so it cannot close the span and
``*bold*``, ``_italic_``, ``~strike~``, ``>`` quotes and ``:emoji:`` stay literal. mrkdwn text
objects are ``verbatim`` (no automatic links, channel names or mentions). Plain-text objects
(header, button labels) cannot carry markup; they get the same escaping. Everything is trimmed
*after* that, so its cost is known; lengths are counted in UTF-16 units, never fewer than
Slack's own count.

Slack's limits (see tests/fake_slack.py): 50 blocks a message, 100 a modal; 3,000 characters
a section, 150 a header, 75 a button label, 2,000 a button value; ≤ 10 context elements. Slack
also refuses a message whose blocks are too long *together* (``msg_blocks_too_long``,
undocumented, seen at ~11–13k characters), so a message's text stays under ``MAX_MESSAGE_TEXT``,
and a modal's JSON under ``MAX_MODAL_JSON`` (``view_too_large`` is 250 kB).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from signoff.server.details_text import details_text, editable
from signoff.server.durations import humanize_delta
from signoff.server.grant_models import Grant, offer, option_text, short_path
from signoff.server.grant_models import options as grant_options
from signoff.server.models import ApprovalRequest, Status, Vote
from signoff.server.sanitize import visible
from signoff.server.web_auth import LINK_TTL

from .buttons import (
    ACTION_PREFIX,
    APPROVE,
    APPROVE_ALL,
    APPROVE_WITH_NOTE,
    DETAILS,
    EDIT,
    REJECT,
    REJECT_ALL,
    REJECT_WITH_REASON,
    REVIEW_EACH,
    SlackSigner,
    grant_action,
)

Block = dict[str, Any]

MAX_BLOCKS = 50
MAX_MODAL_BLOCKS = 100
MAX_SECTION = 3000
MAX_HEADER = 150
MAX_BUTTON_TEXT = 75
MAX_CONTEXT = 10  # elements in a context block
MAX_TITLE = 24  # a modal's title, submit and close labels
MAX_MESSAGE_TEXT = 9000  # all the text of a message's blocks together (see the module docstring)
MAX_MODAL_JSON = 200_000  # the JSON of a modal view (Slack refuses 250 kB)
MAX_REASON = 1000
DIGEST_LISTED = 20
GRANTS_LISTED = 20
DETAILS_SECTIONS = 3  # sections of a prompt the details may take
SHORT_DIGEST = 12  # hex digits of the action digest shown in a prompt
REASON_CALLBACK = "signoff:reason"  # callback_id of the reject-with-reason modal
REASON_BLOCK = REASON_ACTION = "reason"  # block_id and action_id of its text input
NOTE_CALLBACK = "signoff:note"  # callback_id of the approve-with-note modal
NOTE_BLOCK = NOTE_ACTION = "note"  # block_id and action_id of its text input

# In code spans and blocks a backtick would end the span (and let what follows be markup), and
# Slack has no escape for it: agent text shows U+02CB MODIFIER LETTER GRAVE ACCENT instead.
_CODE_TICK = "ˋ"
_FENCE = "```"
_OUTCOME = {
    Status.APPROVED: "✅ *Approved*",
    Status.REJECTED: "❌ *Rejected*",
    Status.EXPIRED: "⌛ *Expired* — nobody decided in time",
    Status.CANCELLED: "🚫 *Cancelled* by the agent",
}
_OUTCOME_WORD = {Status.APPROVED: "Approved", Status.REJECTED: "Rejected", Status.EXPIRED: "Expired",
                 Status.CANCELLED: "Cancelled"}  # fmt: skip
_BY_POLICY = ("policy", "grant")
# Caps, in rendered characters, of the fields that are always shown: together far under
# MAX_SECTION and MAX_MESSAGE_TEXT, so the head of a prompt fits whatever the agent sent.
_ACTION, _NAME, _CWD, _ROUTE, _REASON = 300, 150, 300, 150, 600
_SUMMARY, _METADATA, _KEY, _VALUE = 1500, 1200, 80, 160
_PROGRESS, _ESCALATION, _OFFER = 800, 400, 300
_FALLBACK = 100  # characters of the action in a message's fallback text


# --- text -------------------------------------------------------------------------------------------


def escape(text: str) -> str:
    """``text`` for Slack mrkdwn (and plain_text): ``&``, ``<`` and ``>`` as entities, the only
    three characters Slack decodes, so no ``<…>`` in it is parsed as a mention or a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def length(text: str) -> int:
    """``text``'s length in UTF-16 units (an emoji outside the BMP counts twice): never less
    than Slack's count of it."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M UTC")


def _plain_safe(text: str, one_line: bool = True) -> str:
    """Agent text for a plain_text object: made visible, then escaped."""
    return escape(visible(text, one_line=one_line))


def _code_safe(text: str, one_line: bool = True) -> str:
    """Agent text for inside a code span or block: made visible, escaped, no backtick."""
    return escape(visible(text, one_line=one_line)).replace("`", _CODE_TICK)


Render = Callable[[str, bool], str]


def _fitting_prefix(text: str, budget: int, render: Render, one_line: bool) -> int:
    """The longest prefix of ``text`` whose rendering has at most ``budget`` UTF-16 units (the
    renderings map character by character, so the length only grows with the prefix)."""
    lo, hi = 0, min(len(text), max(budget, 0))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if length(render(text[:mid], one_line)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _clip(text: str, budget: int, render: Render = _code_safe, *, one_line: bool = True, keep_end: bool = False) -> str:
    """``render(text)`` in at most ``budget`` UTF-16 units, cut with "…" where it must be — at
    the end, or with ``keep_end`` at the start (for paths, whose end says most)."""
    full = render(text, one_line)
    if length(full) <= budget:
        return full
    if budget <= 1:
        return "…"[: max(budget, 0)]
    if keep_end:
        n = _fitting_prefix(text[::-1], budget - 1, lambda s, o: render(s[::-1], o), one_line)
        return "…" + render(text[len(text) - n :], one_line)
    return render(text[: _fitting_prefix(text, budget - 1, render, one_line)], one_line) + "…"


def code(text: str, budget: int = _NAME, *, keep_end: bool = False) -> str:
    """Agent text as inline code, one line, in at most ``budget`` UTF-16 units."""
    inner = _clip(text, budget - 2, keep_end=keep_end)
    return f"`{inner}`" if inner else "“”"  # an empty span is no span: show empty quotes instead


def _block(text: str, budget: int) -> tuple[str, bool]:
    """Agent text, several lines, as a code block in at most ``budget`` units; and whether it was cut."""
    inner = _clip(text, budget - 2 * len(_FENCE) - 2, one_line=False)
    if not inner.strip():
        return "“”", False
    return f"{_FENCE}\n{inner}\n{_FENCE}", inner != _code_safe(text, one_line=False)


def _names(names: Sequence[str], budget: int, mark: str = "") -> str:
    """Approver names (from the config, still treated as text), as code, within ``budget``."""
    shown: list[str] = []
    used = 0
    for i, name in enumerate(names):
        item = code(name, min(_NAME, budget)) + mark
        note = len(f", … {len(names) - i - 1} more") if i < len(names) - 1 else 0
        if used + length(item) + 2 + note > budget:
            return ", ".join(shown) + f"{', ' if shown else ''}… {len(names) - i} more"
        shown.append(item)
        used += length(item) + 2
    return ", ".join(shown)


# --- blocks -------------------------------------------------------------------------------------------


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": False}


def _section(text: str) -> Block:
    assert 0 < length(text) <= MAX_SECTION
    return {"type": "section", "text": _mrkdwn(text)}


def _context(*texts: str) -> Block:
    assert 0 < len(texts) <= MAX_CONTEXT and all(0 < length(t) <= MAX_SECTION for t in texts)
    return {"type": "context", "elements": [_mrkdwn(t) for t in texts]}


def _header(text: str) -> Block:
    assert 0 < length(text) <= MAX_HEADER
    return {"type": "header", "text": _plain(text)}


def _button(label: str, action: str, value: str, style: str | None = None, confirm: Block | None = None) -> Block:
    assert 0 < length(label) <= MAX_BUTTON_TEXT
    button: Block = {"type": "button", "text": _plain(label), "action_id": ACTION_PREFIX + action, "value": value}
    if style:
        button["style"] = style
    if confirm:
        button["confirm"] = confirm
    return button


def _confirm(title: str, text: str, yes: str) -> Block:
    return {"title": _plain(title), "text": _mrkdwn(text), "confirm": _plain(yes), "deny": _plain("Cancel")}


def text_size(blocks: Sequence[Block]) -> int:
    """The text of ``blocks`` together (every ``text`` string in them), in UTF-16 units."""

    def walk(node: Any) -> int:
        if isinstance(node, dict):
            return sum(length(v) if k == "text" and isinstance(v, str) else walk(v) for k, v in node.items())
        if isinstance(node, list):
            return sum(walk(v) for v in node)
        return 0

    return walk(list(blocks))


def _split(full: str, start: int, room: int) -> tuple[str, int]:
    """The code-block rendering of the longest piece of ``full[start:]`` that fits in ``room``
    (cut at a line break where one is near), and where the next piece starts."""
    rest = full[start : start + room]  # a character renders to at least one unit
    n = _fitting_prefix(rest, room, _code_safe, False)
    if n == 0:
        return "", start
    end = start + n
    if end < len(full):
        newline = full.rfind("\n", start, end)
        if newline > start + n // 2:
            return _code_safe(full[start:newline], False), newline + 1
    return _code_safe(full[start:end], False), end


def _fenced(inner: str) -> str:
    return f"{_FENCE}\n{inner}\n{_FENCE}" if inner.strip() else "“”"


_FENCED = 2 * len(_FENCE) + 2  # what _fenced adds


# --- a prompt -------------------------------------------------------------------------------------------


def short_digest(req: ApprovalRequest) -> str:
    return (req.action_digest or "")[:SHORT_DIGEST] or "none"


def _title(req: ApprovalRequest) -> tuple[str, bool]:
    """The header's text and whether the action had to be cut in it."""
    lead = "🔐 Approval needed: "
    action = _clip(req.action, MAX_HEADER - length(lead), _plain_safe)
    return lead + action, action != _plain_safe(req.action)


def _head(req: ApprovalRequest, now: float, *, action_cut: bool) -> str:
    """Who asks, where, on which route, until when, and the ID and digest: bounded field by field (≤ ~1,700)."""
    lines = [f"*Action* {code(req.action, _ACTION)}"] if action_cut else []
    who = code(req.requested_by, _NAME)
    if req.claimed_requester:
        who += f" (calls itself {code(req.claimed_requester, _NAME)})"
    if req.client_name and req.client_name != req.requested_by:
        who += f" · client {code(req.client_name, _NAME)}"
    lines.append(f"Asked by {who}")
    if req.cwd:
        lines.append(f"In {code(short_path(req.cwd), _CWD, keep_end=True)}")
    route = f"Route {code(req.route, _ROUTE)}"
    if req.status is Status.PENDING:
        route += f" · expires {humanize_delta(req.expires_at - now)} ({clock(req.expires_at)})"
    lines.append(route)
    lines.append(f"ID {code(req.id, 40)} · digest {code(short_digest(req), 40)}")
    return "\n".join(lines)


def _metadata(req: ApprovalRequest, budget: int) -> tuple[str, bool]:
    """```key` = `value` · …`` in at most ``budget`` units, saying how many keys are left out;
    and whether anything was."""
    shown: list[str] = []
    used, cut = 0, False
    items = list(req.metadata.items())
    for i, (k, v) in enumerate(items):
        value = json.dumps(v, ensure_ascii=False)
        pair = f"{code(k, _KEY)} = {code(value, _VALUE)}"
        left = len(items) - i - 1
        note = len(f" · … {left} more metadata keys") if left else 0
        if used + length(pair) + note > budget:
            break
        shown.append(pair)
        used += length(pair) + 3
        cut |= _clip(k, _KEY - 2) != _code_safe(k) or _clip(value, _VALUE - 2) != _code_safe(value)
    line = " · ".join(shown)
    if len(shown) < len(items):
        line += (" · " if shown else "") + f"… {len(items) - len(shown)} more metadata keys"
    return line, cut or len(shown) < len(items)


def progress(req: ApprovalRequest, votes: Sequence[Vote]) -> str:
    """ "🗳 1 of 2 approvals — `alice` ✓" on a quorum route (and the rejections, where several are needed)."""
    if req.quorum <= 1 and req.reject_quorum <= 1:
        return ""
    approvals = [v.approver for v in votes if v.vote == "approve"]
    rejections = [v.approver for v in votes if v.vote == "reject"]
    line = f"🗳 {len(approvals)} of {req.quorum} approvals"
    if req.reject_quorum > 1:
        line += f" · {len(rejections)} of {req.reject_quorum} rejections reject"
    if approvals or rejections:
        half = (_PROGRESS - length(line)) // 2
        marks = [m for m in (_names(approvals, half, " ✓") if approvals else "",
                             _names(rejections, half, " ✗") if rejections else "") if m]  # fmt: skip
        line += " — " + ", ".join(marks)
    return line


def _escalation(req: ApprovalRequest) -> str:
    if req.level <= 0:
        return ""
    added = [a for step in req.route_snapshot.get("escalation", [])[: req.level] for a in step.get("approvers", [])]
    return "⬆️ Escalated to " + (_names(added, _ESCALATION) if added else "more approvers")


def _outcome(req: ApprovalRequest) -> str:
    line = _OUTCOME.get(req.status, escape(req.status.value))
    if req.status is Status.APPROVED and req.edited_details is not None:
        line += " *with changes*"  # "Edit before approving": the agent runs the edited arguments
    if req.status in (Status.APPROVED, Status.REJECTED):
        line += f" by {code(req.decided_by or '?', _NAME)}"
    if req.decided_at is not None:
        line += f" at {clock(req.decided_at)}"
    if req.reason and (req.decided_via not in _BY_POLICY or req.status is Status.REJECTED):
        label = "Note" if req.status is Status.APPROVED else "Reason"  # an approver's "Approve with note"
        line += f"\n{label}: {code(req.reason, _REASON)}"
    return line


def grant_label(req: ApprovalRequest, option: str) -> str:
    """The grant button's label: what it grants, cut before the duration so that always shows —
    "✅ Bash `npm test` in ~/src/sh…, 30 min" (the message lists each offer in full)."""
    lead, suffix = "✅ ", ", " + option_text(option)
    head = offer(req, option).removesuffix(suffix)
    tail = _plain_safe(suffix)
    room = MAX_BUTTON_TEXT - length(lead) - length(tail)
    if room < 8:  # cannot happen with the options the config allows; never a label Slack refuses
        return _clip(lead + "Approve and allow" + suffix, MAX_BUTTON_TEXT, _plain_safe)
    return lead + _clip(head, room, _plain_safe) + tail


def _grant_offers(req: ApprovalRequest) -> str:
    offers = grant_options(req)
    if not offers:
        return ""
    lines = [f"• {code(offer(req, option), _OFFER)}" for option in offers]
    return "*Approve and allow more like it:*\n" + "\n".join(lines)


def _actions(req: ApprovalRequest, signer: SlackSigner, *, details_button: bool) -> Block:
    """The prompt's buttons, each signed for this request *and* its action digest."""

    def value(action: str) -> str:
        return signer.request(action, req.id, req.action_digest)

    buttons = [
        _button("✅ Approve", APPROVE, value(APPROVE), "primary"),
        _button("❌ Reject", REJECT, value(REJECT), "danger"),
        _button("📝 Approve with note", APPROVE_WITH_NOTE, value(APPROVE_WITH_NOTE)),
        _button("✍️ Reject with reason", REJECT_WITH_REASON, value(REJECT_WITH_REASON)),
    ]
    offered = list(req.route_snapshot.get("grant_options") or [])
    for option in grant_options(req):
        action = grant_action(offered.index(option))
        buttons.append(_button(grant_label(req, option), action, value(action)))
    if editable(req):  # "Edit before approving": where the route allows it and one approval decides
        buttons.append(_button("✏️ Edit", EDIT, value(EDIT)))
    if details_button:
        buttons.append(_button("🔎 Details", DETAILS, value(DETAILS)))
    return {"type": "actions", "block_id": "signoff_decide", "elements": buttons}


def prompt(req: ApprovalRequest, now: float, votes: Sequence[Vote], signer: SlackSigner) -> tuple[str, list[Block]]:
    """The prompt — and, once decided, the same message with the outcome instead of buttons:
    (fallback text, blocks). Within Slack's limits whatever the agent sent."""
    title, action_cut = _title(req)
    blocks: list[Block] = [_header(title), _section(_head(req, now, action_cut=action_cut))]
    summary, trimmed = _block(req.summary, _SUMMARY)
    blocks.append(_section(summary))
    if req.metadata:
        meta, cut = _metadata(req, _METADATA)
        trimmed |= cut
        blocks.append(_section(meta))
    extra = [line for line in (progress(req, votes), _escalation(req)) if line]
    if extra:
        blocks.append(_context(*extra))
    after: list[Block] = []  # what comes below the details
    offers = _grant_offers(req) if req.status is Status.PENDING else ""
    if offers:
        after.append(_section(offers))
    if req.status is not Status.PENDING:
        after.append(_section(_outcome(req)))
    details_cut = details_blocks(req, blocks, after,
                                 0 if req.status.final else text_size([_actions(req, signer, details_button=True)]))  # fmt: skip
    if trimmed:
        blocks.append(_context(f"Trimmed to fit: {code('signoff show ' + req.id, 80)} shows it all."))
    blocks += after
    if req.status is Status.PENDING:
        blocks.append(_actions(req, signer, details_button=details_cut))
    assert len(blocks) <= MAX_BLOCKS and text_size(blocks) <= MAX_MESSAGE_TEXT
    return _fallback(req), blocks


def details_blocks(req: ApprovalRequest, blocks: list[Block], after: Sequence[Block], actions_room: int) -> bool:
    """Append to ``blocks`` the details that fit beside ``after`` and the buttons; whether some did not."""
    full, pos = ("" if req.details is None else details_text(req)), 0
    # 200: the note of what was left out, and the trimmed note, below
    budget = MAX_MESSAGE_TEXT - text_size(blocks) - text_size(after) - 200 - actions_room
    for _ in range(DETAILS_SECTIONS):
        room = min(MAX_SECTION, budget) - _FENCED
        if pos >= len(full) or room < 100:
            break
        inner, nxt = _split(full, pos, room)
        if nxt == pos:
            break
        section = _fenced(inner)
        blocks.append(_section(section))
        budget -= length(section)
        pos = nxt
    if pos < len(full):
        blocks.append(_context(f"… {len(full) - pos:,} more characters of details"
                               + (" — press *Details* for all of it" if req.status is Status.PENDING else "")))  # fmt: skip
    return pos < len(full)


def _fallback(req: ApprovalRequest) -> str:
    action = code(req.action, _FALLBACK)
    if req.status is Status.PENDING:
        return f"🔐 Approval needed: {action} from {code(req.requested_by, 60)}"
    return f"{_OUTCOME_WORD.get(req.status, escape(req.status.value))}: {action}"


# --- modals -------------------------------------------------------------------------------------------


def _identity(req: ApprovalRequest) -> str:
    return f"{code(req.action, _ACTION)} from {code(req.requested_by, _NAME)} · ID {code(req.id, 40)} · digest {code(short_digest(req), 40)}"


def details_modal(req: ApprovalRequest) -> dict[str, Any]:
    """A modal with the details in full, in as many sections as it takes (within 100 blocks and
    Slack's size of a view); what even that cannot hold is counted, with where to read it."""
    blocks: list[Block] = [_section(_identity(req))]
    if req.details is None:
        blocks.append(_section("No details were sent with this request."))
    else:
        full = details_text(req)
        size = len(json.dumps(blocks))
        pos = 0
        while pos < len(full) and len(blocks) < MAX_MODAL_BLOCKS - 1:
            inner, nxt = _split(full, pos, MAX_SECTION - _FENCED)
            if nxt == pos:
                break
            block = _section(_fenced(inner))
            size += len(json.dumps(block)) + 2
            if size > MAX_MODAL_JSON:
                break
            blocks.append(block)
            pos = nxt
        if pos < len(full):
            blocks.append(_context(f"… {len(full) - pos:,} more characters not shown (too long for Slack): "
                                   f"{code('signoff show ' + req.id, 80)} shows it all."))  # fmt: skip
    return {
        "type": "modal",
        "title": _plain("Request details"),
        "close": _plain("Close"),
        "blocks": blocks,
    }


def reason_modal(req: ApprovalRequest, metadata: str) -> dict[str, Any]:
    """The reject-with-reason modal; ``metadata`` is ``SlackSigner.modal(…)``, handed back with the submission."""
    return _text_modal(req, metadata, REASON_CALLBACK, "Reject with reason", "Reject", f"Reject {_identity(req)}",
                       REASON_BLOCK, "Reason (the agent sees it)")  # fmt: skip


def note_modal(req: ApprovalRequest, metadata: str) -> dict[str, Any]:
    """The approve-with-note modal; ``metadata`` is ``SlackSigner.modal(…, kind=NOTE_MODAL)``."""
    return _text_modal(req, metadata, NOTE_CALLBACK, "Approve with note", "Approve", f"Approve {_identity(req)}",
                       NOTE_BLOCK, "Note (the agent receives it)")  # fmt: skip


def _text_modal(req: ApprovalRequest, metadata: str, callback: str, title: str, submit: str, lead: str,
                block: str, label: str) -> dict[str, Any]:  # fmt: skip
    if len(metadata) > 3000:
        raise ValueError("private_metadata is over Slack's 3,000 characters")
    return {
        "type": "modal",
        "callback_id": callback,
        "private_metadata": metadata,
        "title": _plain(title),
        "submit": _plain(submit),
        "close": _plain("Cancel"),
        "blocks": [
            _section(lead),
            {
                "type": "input",
                "block_id": block,
                "label": _plain(label),
                "element": {
                    "type": "plain_text_input",
                    "action_id": block,
                    "multiline": True,
                    "max_length": MAX_REASON,
                },
            },
        ],
    }


# --- short messages -------------------------------------------------------------------------------------------


def reminder(req: ApprovalRequest, now: float) -> str:
    """mrkdwn for a reply in the prompt's thread."""
    return (f"⏰ Still waiting for you: {code(req.action, _ACTION)} ({code(req.id, 40)}) — expires "
            f"{humanize_delta(req.expires_at - now)}. The buttons are on the message above.")  # fmt: skip


def escalated(req: ApprovalRequest) -> str:
    """mrkdwn for the earlier approvers: more approvers may decide now."""
    return (f"⬆️ {code(req.action, _ACTION)} ({code(req.id, 40)}) had no decision in time and was escalated: "
            f"{_names(req.eligible(), 1500)} may decide it now. Your buttons still work.")  # fmt: skip


def already(req: ApprovalRequest) -> str:
    """mrkdwn answer to a press on a request that is no longer pending (≤ ~200 characters)."""
    who = f" by {code(req.decided_by, 100)}" if req.decided_by else ""
    when = f" at {clock(req.decided_at)}" if req.decided_at else ""
    return f"Already {escape(req.status.value)}{who}{when}."


# --- grants -------------------------------------------------------------------------------------------


def _grant_state(grant: Grant, now: float) -> str:
    if grant.revoked_at is not None:
        return f"revoked by {code(grant.revoked_by or '?', _NAME)} at {clock(grant.revoked_at)}"
    if not grant.live(now):
        return f"ended at {clock(min(grant.expires_at, now))}"
    return f"until {clock(grant.expires_at)} ({humanize_delta(grant.expires_at - now)})"


def _uses(grant: Grant) -> str:
    return f"{grant.uses} use{'s' if grant.uses != 1 else ''}" + (f" of {grant.max_uses}" if grant.max_uses else "")


def _revoke(grant: Grant, signer: SlackSigner) -> Block:
    return _button("🛑 Revoke", "revoke", signer.grant(grant.id), "danger")


def grant_notice(grant: Grant, now: float, signer: SlackSigner) -> tuple[str, list[Block]]:
    """The notice of a grant: what it covers, its uses, when it ends; a Revoke button while it is live."""
    text = (f"🔓 Grant {code(grant.id, 40)}: {code(grant.scope(), 1000)} on route {code(grant.route, _ROUTE)} "
            f"is approved automatically, {_grant_state(grant, now)}.\nUsed: {_uses(grant)}.")  # fmt: skip
    blocks: list[Block] = [_section(text), _context("`/signoff grants` lists the grants and revokes them.")]
    if grant.live(now):
        blocks.append({"type": "actions", "elements": [_revoke(grant, signer)]})
    state = "live" if grant.live(now) else "ended"
    return f"🔓 Grant {code(grant.id, 40)} ({state}): {code(grant.scope(), _FALLBACK)}", blocks


def grants_list(grants: Sequence[Grant], now: float, signer: SlackSigner) -> tuple[str, list[Block]]:
    """The grants (for ``/signoff grants``): the first ``GRANTS_LISTED``, each with a Revoke button while live."""
    if not grants:
        return "No grants.", [_section("🔓 No grants right now.")]
    live = sum(1 for g in grants if g.live(now))
    head = f"🔓 {len(grants)} grant{'s' if len(grants) != 1 else ''}, {live} live"
    blocks: list[Block] = [_section(f"*{head}*")]
    for grant in grants[:GRANTS_LISTED]:
        text = (f"{code(grant.id, 40)} {code(grant.scope(), 250)} on route {code(grant.route, 60)} — "
                f"{_grant_state(grant, now)} · {_uses(grant)}")  # fmt: skip
        block = _section(text)
        if grant.live(now):
            block["accessory"] = _revoke(grant, signer)
        blocks.append(block)
    if len(grants) > GRANTS_LISTED:
        blocks.append(_context(f"… and {len(grants) - GRANTS_LISTED} more: `signoff grants` lists them all."))
    assert len(blocks) <= MAX_BLOCKS and text_size(blocks) <= MAX_MESSAGE_TEXT
    return head + ".", blocks


# --- a digest -------------------------------------------------------------------------------------------


def digest(
    items: Sequence[ApprovalRequest], decided: int, now: float, render_id: int, address: str, signer: SlackSigner
) -> tuple[str, list[Block], list[ApprovalRequest]]:
    """The digest — "7 pending — 5 × `Bash`, 2 × `refund`" — its buttons, signed for this render
    and ``address``, and the requests it lists: the oldest ``DIGEST_LISTED``, the only ones its
    buttons decide."""
    if not items:
        text = f"📋 Digest: nothing pending ({decided} decided)." if decided else "📋 Digest: nothing pending."
        return text, [_section(text)], []
    listed = list(items[:DIGEST_LISTED])
    counts = Counter("" if r.is_question else r.action for r in items)  # "": questions, answered one by one
    kinds = ", ".join(f"{n} × {code(a, 40) if a else '❓ question'}" for a, n in counts.most_common(8))
    if len(counts) > 8:
        kinds += f", {len(counts) - 8} more kinds"
    blocks: list[Block] = [_section(f"📋 *{len(items)} pending* — {kinds}")]
    lines = [f"• {code(r.id, 40)} {'❓ question' if r.is_question else code(r.action, 40)}: {code(r.summary, 100)}" for r in listed]  # fmt: skip
    chunk: list[str] = []
    for line in lines:  # each line ≤ ~200 units: sections of ≤ 3,000
        if chunk and length("\n".join([*chunk, line])) > MAX_SECTION:
            blocks.append(_section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    blocks.append(_section("\n".join(chunk)))
    notes = []
    if len(items) > len(listed):
        notes.append(f"… and {len(items) - len(listed)} more. The buttons decide the {len(listed)} listed here; "
                     "the rest come up next.")  # fmt: skip
    soonest = min(r.expires_at for r in items)
    notes.append(f"The first expires {humanize_delta(soonest - now)} ({clock(soonest)}).")
    if decided:
        notes.append(f"{decided} decided since this digest began.")
    if len(approvals := [r for r in listed if not r.is_question]) < len(listed):  # never decided in bulk
        notes.append("Questions (❓) are answered one by one: *Review each* sends them.")
    blocks.append(_context(*notes))

    def value(action: str) -> str:
        return signer.digest(action, render_id, address)

    n = len(approvals)
    buttons = [_button("🔎 Review each", REVIEW_EACH, value(REVIEW_EACH))]
    if approvals and all(r.route_snapshot.get("allow_bulk") for r in approvals):
        buttons.append(_button("✅ Approve all", APPROVE_ALL, value(APPROVE_ALL), "primary",
                               _confirm(f"Approve {n}?", f"Approve all {n} requests listed in the digest?", "Approve all")))  # fmt: skip
    if approvals:
        buttons.append(_button("❌ Reject all", REJECT_ALL, value(REJECT_ALL), "danger",
                               _confirm(f"Reject {n}?", f"Reject all {n} requests listed in the digest?", "Reject all")))  # fmt: skip
    blocks.append({"type": "actions", "block_id": "signoff_digest", "elements": buttons})
    assert len(blocks) <= MAX_BLOCKS and text_size(blocks) <= MAX_MESSAGE_TEXT
    return f"📋 {len(items)} pending approval{'s' if len(items) != 1 else ''}", blocks, listed


def web_link_text(url: str, *, local: bool) -> str:
    """The answer (for its caller alone) with a sign-in link to the web inbox, in mrkdwn;
    ``local``: no ``[web] public_url``, so the link is a loopback address."""
    text = (f":key: Your sign-in link to the signoff web inbox: it works once, within {int(LINK_TTL // 60)} "
            f"minutes. Do not share it.\n<{escape(url)}>")  # fmt: skip
    if local:
        text += ("\nIt works only on the machine that runs `signoff serve` (set `[web] public_url` to open "
                 "the inbox from elsewhere).")  # fmt: skip
    return text
