"""The views of "Edit before approving" in Slack: the modal an approver edits the arguments in,
the diff they confirm ("Approve edited"; closing it is "Discard"), and the short notes that
replace it when there is nothing to confirm. The same escaping and limits as ``render``.

Slack's ``plain_text_input`` holds at most 3,000 characters, so arguments longer than that are
not offered for editing here (the console can: ``signoff approve ID --edit FILE``). A diff is
shown whole or not at all: a confirmation never approves a change the approver could not read.
"""

from __future__ import annotations

import json
from typing import Any

from signoff.server.details_text import edit_diff, edit_source, edits_command
from signoff.server.models import ApprovalRequest

from .render import (
    _FENCED,
    MAX_MODAL_BLOCKS,
    MAX_MODAL_JSON,
    MAX_SECTION,
    Block,
    _fenced,
    _identity,
    _plain,
    _section,
    _split,
    code,
    escape,
    length,
)

EDIT_CALLBACK = "signoff:edit"  # callback_id of the modal the arguments are edited in
EDIT_BLOCK = EDIT_ACTION = "edit"  # block_id and action_id of its text input
CONFIRM_CALLBACK = "signoff:edit_confirm"  # callback_id of the view that shows the diff to confirm
MAX_INPUT = 3000  # Slack's most characters in a plain_text_input (its max_length and initial_value)
_TITLE = "Edit before approving"


def console_hint(req: ApprovalRequest) -> str:
    return f"`signoff approve {escape(req.id)} --edit FILE`"


def too_long(req: ApprovalRequest) -> str:
    """mrkdwn: the arguments do not fit Slack's text box."""
    return (f"The arguments of {code(req.id, 40)} are too long to edit in Slack (over {MAX_INPUT:,} characters): "
            f"{console_hint(req)} edits them at a terminal.")  # fmt: skip


def diff_too_long(req: ApprovalRequest) -> str:
    """mrkdwn: the change does not fit in a view whole, so it cannot be confirmed in Slack."""
    return (f"The change to {code(req.id, 40)} is too long to show here in full, so it cannot be confirmed in "
            f"Slack; nothing was decided. {console_hint(req)} edits it at a terminal.")  # fmt: skip


def edit_modal(req: ApprovalRequest, metadata: str) -> dict[str, Any] | None:
    """The modal with the current arguments in a text box (a Bash command as plain text, anything
    else as JSON); ``metadata`` is ``SlackSigner.modal(…, kind=EDIT_MODAL)``. None when the
    arguments are too long for Slack's text box."""
    current = edit_source(req)
    if length(current) > MAX_INPUT:
        return None
    what = "the command" if edits_command(req) else "the arguments, a JSON object"
    element: Block = {"type": "plain_text_input", "action_id": EDIT_ACTION, "multiline": True, "max_length": MAX_INPUT}
    if current:
        element["initial_value"] = current  # plain text: Slack shows it as it is, parses nothing in it
    return {
        "type": "modal",
        "callback_id": EDIT_CALLBACK,
        "private_metadata": metadata,
        "title": _plain(_TITLE),
        "submit": _plain("Review the change"),
        "close": _plain("Cancel"),
        "blocks": [
            _section(f"✏️ Edit {_identity(req)}\nChange {what}; you see the change before anything is decided."),
            {"type": "input", "block_id": EDIT_BLOCK, "label": _plain(f"New {what.removeprefix('the ')}"),
             "element": element},
        ],
    }  # fmt: skip


def confirm_view(req: ApprovalRequest, edited: Any, metadata: str) -> dict[str, Any] | None:
    """The change as a diff with "Approve edited" (closing the view is "Discard"); ``metadata``
    is ``SlackSigner.edit_confirm(…)``. None when the diff does not fit in a view whole."""
    diff = edit_diff(req.details, edited)  # made visible already; escaped here, in code blocks
    blocks: list[Block] = [_section(f"✏️ Your edit of {_identity(req)}:")]
    size, pos = len(json.dumps(blocks)), 0
    while pos < len(diff):
        inner, nxt = _split(diff, pos, MAX_SECTION - _FENCED)
        block = _section(_fenced(inner))
        size += len(json.dumps(block)) + 2
        if nxt == pos or len(blocks) >= MAX_MODAL_BLOCKS - 2 or size > MAX_MODAL_JSON:
            return None
        blocks.append(block)
        pos = nxt
    blocks.append(_section("Nothing is decided until you press *Approve edited*; *Discard* drops the edit."))
    return {
        "type": "modal",
        "callback_id": CONFIRM_CALLBACK,
        "private_metadata": metadata,
        "notify_on_close": True,  # Discard: the proposed edit is closed, it can approve nothing later
        "title": _plain("Confirm the edit"),
        "submit": _plain("Approve edited"),
        "close": _plain("Discard"),
        "blocks": blocks,
    }


def note_view(text: str) -> dict[str, Any]:
    """A view with nothing to submit that says what became of the edit (``text``: mrkdwn, ≤ ~2,900)."""
    return {"type": "modal", "title": _plain(_TITLE), "close": _plain("Close"), "blocks": [_section(text)]}


def plain_note(text: str) -> dict[str, Any]:
    """``note_view`` for text of ours or the core's, shown as plain text (nothing in it is parsed)."""
    safe = escape(text)[:2900]
    return {"type": "modal", "title": _plain(_TITLE), "close": _plain("Close"),
            "blocks": [{"type": "section", "text": _plain(safe)}]}  # fmt: skip
