"""What approvers see of a question (``ask_human``) in Telegram, and the one place that picks
between a question's message and an approval's.

A question is clearly not an approval: "❓ Question from <agent>", the question, the options
listed, details, route and deadline as on any prompt; its buttons are one per offered option
(signed like every button; the data carries only the option's index, so the answer is always
the stored option) and "✍️ Answer…", which asks the approver for their own words in a reply
prompt. It has no Approve, Reject, grant or Edit button. Once final, the message says who
answered and what ("💬 Answered by alice: …"), or that nobody did in time. The same escaping
and budget as ``render``: agent and human text is made visible, escaped, then trimmed.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from signoff.server.durations import humanize_delta
from signoff.server.models import ApprovalRequest, Status, Vote
from signoff.server.sanitize import visible

from .buttons import ANSWER, OPTION_PREFIX, ButtonSigner
from .render import (
    clip,
    clock,
    compose,
    escalated_text,
    escalation,
    header,
    keyboard,
    outcome,
    prompt_text,
    reminder_text,
    requester,
    show_text,
)

_TOPIC, _OPTION, _ANSWER, _NAME, _QUOTE = 80, 200, 1500, 150, 300
QUESTION_ACTION = "ask_human"  # a question's action: this, or "ask_human.<topic>"
MAX_OPTION_BUTTONS = 10  # o0..o9: the most options a question offers (the core's limit too)


def topic(req: ApprovalRequest) -> str | None:
    """The topic the agent filed the question under (``ask_human.<topic>``), if any."""
    return req.action.removeprefix(QUESTION_ACTION + ".") if req.action.startswith(QUESTION_ACTION + ".") else None


def question_text(req: ApprovalRequest, now: float, *, with_details: bool = True) -> str:
    """The question's message (or, once final, the same text with what became of it), ≤ 4,096."""
    first = [f"❓ <b>Question from {requester(req)}</b>"]
    subject = topic(req)
    route_note = f"Topic <b>{clip(subject, _TOPIC)}</b> · " if subject else ""
    head = header(req, now, first, route_note)
    tail = "" if req.status is Status.PENDING else "\n\n" + answered(req)
    lines = [f"{n}. {clip(option, _OPTION)}" for n, option in enumerate(req.options or [], 1)]
    extra = "\n".join(line for line in ("\n".join(lines), escalation(req)) if line)
    return compose(req, head, tail, extra, with_details=with_details)


def answered(req: ApprovalRequest) -> str:
    """What became of the question: its answer and who gave it, or that nobody did in time."""
    when = f" at {clock(req.decided_at)}" if req.decided_at is not None else ""
    if req.status is Status.ANSWERED:
        who = clip(req.decided_by or "?", _NAME)
        return f"💬 <b>Answered by {who}</b>{when}: {clip(req.answer or '', _ANSWER, one_line=False)}"
    if req.status is Status.EXPIRED:
        return f"⌛ <b>Expired</b> — nobody answered{when}"
    return outcome(req)


def question_keyboard(req: ApprovalRequest, signer: ButtonSigner) -> InlineKeyboardMarkup:
    """One button per offered option (its data: the option's index, signed for this question and
    its digest), then "✍️ Answer…"."""

    def data(action: str) -> str:
        return signer.sign(action, req.id, digest=req.action_digest)

    offered = (req.options or [])[:MAX_OPTION_BUTTONS]
    rows = [[InlineKeyboardButton(visible(option, one_line=True), callback_data=data(f"{OPTION_PREFIX}{i}"))]
            for i, option in enumerate(offered)]  # fmt: skip
    rows.append([InlineKeyboardButton("✍️ Answer…", callback_data=data(ANSWER))])
    return InlineKeyboardMarkup(rows)


def answer_prompt(req: ApprovalRequest) -> str:
    """The reply prompt that asks an approver for their answer in their own words."""
    return f"💬 Your answer to <code>{escape(req.id)}</code> ({clip(req.summary, _QUOTE)})?"


# --- a question or an approval: what the outbox and the commands send -------------------------


def prompt_text_for(req: ApprovalRequest, now: float, votes: Sequence[Vote] = ()) -> str:
    return question_text(req, now) if req.is_question else prompt_text(req, now, votes)


def keyboard_for(req: ApprovalRequest, signer: ButtonSigner) -> InlineKeyboardMarkup:
    return question_keyboard(req, signer) if req.is_question else keyboard(req, signer)


def show_text_for(req: ApprovalRequest, now: float) -> str:
    return question_text(req, now, with_details=False) if req.is_question else show_text(req, now)


def reminder_text_for(req: ApprovalRequest, now: float) -> str:
    if not req.is_question:
        return reminder_text(req, now)
    return (f"⏰ Still waiting for your answer: <b>{clip(req.summary, _QUOTE)}</b> (<code>{escape(req.id)}</code>) "
            f"— expires {humanize_delta(req.expires_at - now)}. The buttons are on the message above.")  # fmt: skip


def escalated_text_for(req: ApprovalRequest) -> str:
    if not req.is_question:
        return escalated_text(req)
    return (f"⬆️ The question <b>{clip(req.summary, _QUOTE)}</b> (<code>{escape(req.id)}</code>) had no answer in "
            f"time and was escalated: {escape(', '.join(req.eligible()))} may answer it now. "
            "Your buttons still work.")  # fmt: skip
