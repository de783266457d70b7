"""What approvers see of a question (``ask_human``) in Slack, and the one place that picks
between a question's message and an approval's.

A question is clearly not an approval: "❓ Question from <agent>", the question, the answers it
offers, its details, route and deadline as on any prompt. Its buttons are one per offered
answer (signed like every button; the value carries only the option's index, so the answer is
always the stored option) and "✍️ Answer…", which opens a modal for the approver's own words;
never Approve, Reject, a grant or Edit. Once final, the message says who answered and what
("💬 *Answered* by `alice`: …"), or that nobody did in time. The same escaping and limits as
``render``: agent and human text is made visible, escaped, kept in code, then trimmed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from signoff.server.durations import humanize_delta
from signoff.server.models import ApprovalRequest, Status, Vote

from .buttons import ANSWER, DETAILS, OPTION, QUESTION_OPTIONS, SlackSigner
from .render import (
    MAX_BLOCKS,
    MAX_BUTTON_TEXT,
    MAX_HEADER,
    MAX_MESSAGE_TEXT,
    Block,
    _block,
    _button,
    _clip,
    _code_safe,
    _context,
    _escalation,
    _head,
    _header,
    _metadata,
    _names,
    _outcome,
    _plain,
    _plain_safe,
    _section,
    clock,
    code,
    details_blocks,
    escalated,
    length,
    prompt,
    reminder,
    short_digest,
    text_size,
)

QUESTION_ACTION = "ask_human"  # a question's action: this, or "ask_human.<topic>"
ANSWER_CALLBACK = "signoff:answer"  # callback_id of the modal an approver writes their answer in
ANSWER_BLOCK = ANSWER_ACTION = "answer"  # block_id and action_id of its text input
MAX_ANSWER = 2000  # the most characters the core takes in an answer (intake's MAX_REASON)
EMPTY_ANSWER = "Write your answer, or press one of the offered answers on the message."
_TITLE = "Answer the question"
# Caps, in rendered characters: with render's caps of the head, far under a section and a message.
_QUESTION, _OPTION, _INLINE, _ANSWER, _NAME, _QUOTE, _TOPIC = 1500, 120, 200, 2000, 150, 300, 80
_FALLBACK = 100


def topic(req: ApprovalRequest) -> str | None:
    """The topic the agent filed the question under (``ask_human.<topic>``), if any."""
    prefix = QUESTION_ACTION + "."
    return req.action.removeprefix(prefix) if req.action.startswith(prefix) else None


def answered(req: ApprovalRequest) -> str:
    """mrkdwn: what became of the question — its answer and who gave it, or that nobody did in
    time, or that the agent withdrew it (≤ ~2,400)."""
    when = f" at {clock(req.decided_at)}" if req.decided_at is not None else ""
    if req.status is Status.ANSWERED:
        line = f"💬 *Answered* by {code(req.decided_by or '?', _NAME)}{when}:"
        answer = req.answer or ""
        if "\n" not in answer and length(_code_safe(answer)) <= _INLINE - 2:
            return f"{line} {code(answer, _INLINE)}"
        shown, cut = _block(answer, _ANSWER)
        return f"{line}\n{shown}" + (f"\n(cut: {code('signoff show ' + req.id, 80)} shows it all)" if cut else "")
    if req.status is Status.EXPIRED:
        return f"⌛ *Expired* — nobody answered in time{when}"
    return _outcome(req)


def _offered(req: ApprovalRequest) -> str:
    lines = [f"{n}. {code(option, _OPTION)}" for n, option in enumerate(req.options or [], 1)]
    return "*Offered answers:*\n" + "\n".join(lines) if lines else ""


def _actions(req: ApprovalRequest, signer: SlackSigner, *, details_button: bool) -> Block:
    """One button per offered answer, then "✍️ Answer…", each signed for this question and its digest."""

    def value(action: str) -> str:
        return signer.request(action, req.id, req.action_digest)

    buttons = [
        _button(_clip(option, MAX_BUTTON_TEXT, _plain_safe), f"{OPTION}{i}", value(f"{OPTION}{i}"))
        for i, option in enumerate((req.options or [])[:QUESTION_OPTIONS])
    ]
    buttons.append(_button("✍️ Answer…", ANSWER, value(ANSWER), None if buttons else "primary"))
    if details_button:
        buttons.append(_button("🔎 Details", DETAILS, value(DETAILS)))
    return {"type": "actions", "block_id": "signoff_answer", "elements": buttons}


def question_prompt(req: ApprovalRequest, now: float, signer: SlackSigner) -> tuple[str, list[Block]]:
    """The question's message — and, once final, the same message with what became of it
    instead of buttons: (fallback text, blocks). Within Slack's limits whatever the agent sent."""
    lead = "❓ Question from "
    blocks: list[Block] = [_header(lead + _clip(req.requested_by, MAX_HEADER - length(lead), _plain_safe))]
    head = _head(req, now, action_cut=False)
    subject = topic(req)
    blocks.append(_section(f"Topic {code(subject, _TOPIC)}\n{head}" if subject else head))
    question, trimmed = _block(req.summary, _QUESTION)
    blocks.append(_section(question))
    if req.options:
        blocks.append(_section(_offered(req)))
    if req.metadata:
        meta, cut = _metadata(req, 1200)
        trimmed |= cut
        blocks.append(_section(meta))
    if escalation := _escalation(req):
        blocks.append(_context(escalation))
    after = [] if req.status is Status.PENDING else [_section(answered(req))]
    actions_room = 0 if req.status.final else text_size([_actions(req, signer, details_button=True)])
    details_cut = details_blocks(req, blocks, after, actions_room)
    if trimmed:
        blocks.append(_context(f"Trimmed to fit: {code('signoff show ' + req.id, 80)} shows it all."))
    blocks += after
    if req.status is Status.PENDING:
        blocks.append(_actions(req, signer, details_button=details_cut))
    assert len(blocks) <= MAX_BLOCKS and text_size(blocks) <= MAX_MESSAGE_TEXT
    return _fallback(req), blocks


def _fallback(req: ApprovalRequest) -> str:
    question = code(req.summary, _FALLBACK)
    if req.status is Status.PENDING:
        return f"❓ Question from {code(req.requested_by, 60)}: {question}"
    word = {Status.ANSWERED: "Answered", Status.EXPIRED: "Expired", Status.CANCELLED: "Cancelled"}
    return f"{word.get(req.status, req.status.value.capitalize())}: {question}"


# --- the answer modal ------------------------------------------------------------------------------


def answer_modal(req: ApprovalRequest, metadata: str) -> dict[str, Any]:
    """The modal an approver writes their answer in; ``metadata`` is ``SlackSigner.modal(…,
    kind=ANSWER_MODAL)``, handed back with the submission."""
    if len(metadata) > 3000:
        raise ValueError("private_metadata is over Slack's 3,000 characters")
    ident = f"❓ Question from {code(req.requested_by, _NAME)} · ID {code(req.id, 40)} · digest {code(short_digest(req), 40)}"
    blocks: list[Block] = [_section(ident), _section(_block(req.summary, _QUESTION)[0])]
    if req.options:
        blocks.append(_section(_offered(req)))
    element = {"type": "plain_text_input", "action_id": ANSWER_ACTION, "multiline": True, "max_length": MAX_ANSWER}
    blocks.append({"type": "input", "block_id": ANSWER_BLOCK, "label": _plain("Your answer (the agent receives it)"),
                   "element": element})  # fmt: skip
    return {
        "type": "modal",
        "callback_id": ANSWER_CALLBACK,
        "private_metadata": metadata,
        "title": _plain(_TITLE),
        "submit": _plain("Answer"),
        "close": _plain("Cancel"),
        "blocks": blocks,
    }


def late_view(req: ApprovalRequest) -> dict[str, Any]:
    """What replaces the answer modal when the question ended before it was submitted."""
    text = f"{answered(req)}\nYour answer was not used."
    return {"type": "modal", "title": _plain(_TITLE), "close": _plain("Close"), "blocks": [_section(text)]}


# --- a question or an approval: what the outbox and the commands send ---------------------------------


def prompt_for(req: ApprovalRequest, now: float, votes: Sequence[Vote], signer: SlackSigner) -> tuple[str, list[Block]]:
    return question_prompt(req, now, signer) if req.is_question else prompt(req, now, votes, signer)


def reminder_for(req: ApprovalRequest, now: float) -> str:
    """mrkdwn for a reply in the prompt's thread."""
    if not req.is_question:
        return reminder(req, now)
    return (f"⏰ Still waiting for your answer: {code(req.summary, _QUOTE)} ({code(req.id, 40)}) — expires "
            f"{humanize_delta(req.expires_at - now)}. The buttons are on the message above.")  # fmt: skip


def escalated_for(req: ApprovalRequest) -> str:
    """mrkdwn for the earlier approvers: more approvers may answer now."""
    if not req.is_question:
        return escalated(req)
    return (f"⬆️ The question {code(req.summary, _QUOTE)} ({code(req.id, 40)}) had no answer in time and was "
            f"escalated: {_names(req.eligible(), 1500)} may answer it now. Your buttons still work.")  # fmt: skip
