"""The details of a request as an approver should read them, on any channel: Claude Code's
common tools in their own terms (the command, a diff, the file, the URL), anything else as
pretty JSON. Plain text, not yet made visible or escaped: each channel does that for its markup."""

from __future__ import annotations

import difflib
import json
from typing import Any

from .errors import RequestError
from .models import ApprovalRequest
from .sanitize import json_visible


def details_text(req: ApprovalRequest) -> str:
    """The details as the approver should read them: Claude Code's common tools in their own
    terms (the command, a diff, the file, the URL), anything else as pretty JSON."""
    d = req.details
    if isinstance(d, dict):
        text = _claude_code_tool(req.action, d)
        if text is not None:
            return text
    return d if isinstance(d, str) else json.dumps(d, indent=2, ensure_ascii=False)


# The arguments each Claude Code tool's own rendering shows; any other argument is shown
# first, as JSON, so an approver always sees e.g. `dangerouslyDisableSandbox` or `replace_all`.
_SHOWN = {
    "Bash": {"command", "description"},
    "Edit": {"file_path", "old_string", "new_string"},
    "MultiEdit": {"file_path", "edits"},
    "Write": {"file_path", "content"},
    "WebFetch": {"url", "prompt"},
}
_EDIT_KEYS = {"old_string", "new_string"}
DIFF_LIMIT = (
    20_000  # characters of old + new text above which an edit is shown whole, not diffed (difflib is quadratic)
)


def _claude_code_tool(tool: str, d: dict[str, Any]) -> str | None:
    """Claude Code's common tools in their own terms; None (plain JSON instead) for anything
    else, or for input that does not have the shape the tool's rendering expects."""
    if tool not in _SHOWN:
        return None
    try:
        text = _tool_text(tool, d)
    except (TypeError, ValueError, AttributeError, KeyError):
        return None
    if text is None:
        return None
    rest = {k: v for k, v in d.items() if k not in _SHOWN[tool]}
    if rest:
        text = f"⚠ also: {json.dumps(rest, ensure_ascii=False, sort_keys=True)}\n{text}"
    return text


def _edit_lines(old: str, new: str) -> list[str]:
    if len(old) + len(new) > DIFF_LIMIT:
        return [f"-{line}" for line in old.splitlines()] + [f"+{line}" for line in new.splitlines()]
    return list(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=1))[2:]


def _tool_text(tool: str, d: dict[str, Any]) -> str | None:
    def s(key: str) -> str | None:
        value = d.get(key)
        return value if isinstance(value, str) else None

    if tool == "Bash" and (command := s("command")):
        return f"$ {command}"
    if tool in ("Edit", "MultiEdit") and (path := s("file_path")):
        edits = d.get("edits") if tool == "MultiEdit" else [{k: d.get(k) for k in _EDIT_KEYS}]
        if not isinstance(edits, list) or not all(isinstance(e, dict) for e in edits):
            return None
        lines = [f"--- {path}"]
        for i, edit in enumerate(edits):
            old, new = edit.get("old_string"), edit.get("new_string")
            if not isinstance(old, str) or not isinstance(new, str):
                return None
            extra = {k: v for k, v in edit.items() if k not in _EDIT_KEYS}
            if extra:
                lines.append(f"⚠ edit {i + 1} also: {json.dumps(extra, ensure_ascii=False, sort_keys=True)}")
            lines += _edit_lines(old, new)
        return "\n".join(lines)
    if tool == "Write" and (path := s("file_path")) and (content := s("content")) is not None:
        return f"{path}\n\n{content}"
    if tool == "WebFetch" and (url := s("url")):
        return url + (f"\n\n{prompt}" if (prompt := s("prompt")) else "")
    return None


# --- "edit before approving" in a chat --------------------------------------------------------

NOT_AN_OBJECT = "That is not a JSON object; reply again."
EMPTY_COMMAND = "The command is empty; reply again."


def editable(req: ApprovalRequest) -> bool:
    """Whether a prompt of ``req`` offers "Edit": its route allows editing (``allow_edit``, true
    when an older snapshot lacks it, as ``ApprovalService.approve_edited`` reads it) and one
    approval decides it (on a quorum route an edit is refused)."""
    return bool(req.route_snapshot.get("allow_edit", True)) and req.quorum <= 1


def edits_command(req: ApprovalRequest) -> bool:
    """Whether an approver edits ``req`` as a command in plain text: a Bash request whose details
    are ``{"command": …}``-shaped (their reply replaces only ``command``); anything else is
    edited as JSON."""
    d = req.details
    return req.action == "Bash" and isinstance(d, dict) and isinstance(d.get("command"), str)


def edit_source(req: ApprovalRequest) -> str:
    """The current arguments as an approver edits them (plain text, not yet made visible or escaped)."""
    if edits_command(req):
        assert isinstance(req.details, dict)
        return str(req.details["command"])
    return json.dumps(req.details, indent=2, ensure_ascii=False)


def parse_edit(req: ApprovalRequest, text: str) -> Any:
    """The arguments an approver's reply ``text`` stands for; ``RequestError`` (with what to say
    to them) when it is not an edit: not JSON, or not an object where the original is one."""
    if edits_command(req):
        if not text.strip():
            raise RequestError(EMPTY_COMMAND)
        assert isinstance(req.details, dict)
        return {**req.details, "command": text}
    try:
        edited = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python parses
        raise RequestError(NOT_AN_OBJECT) from None
    if isinstance(req.details, dict) and not isinstance(edited, dict):
        raise RequestError(NOT_AN_OBJECT)
    return edited


def edit_diff(original: Any, edited: Any) -> str:
    """How an approver changed a request's details: a unified diff of their JSON (escaped);
    a note when they approved it unchanged."""
    if edited is None:
        return "(the edited details are the same as the request's: approved unchanged)"
    before = json_visible(original, indent=2).splitlines()
    after = json_visible(edited, indent=2).splitlines()
    return "\n".join(difflib.unified_diff(before, after, "details", "edited details", lineterm=""))
