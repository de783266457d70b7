"""Claude Code's contracts: the ``--permission-prompt-tool`` tool and the hooks.

Both turn a tool call (``tool_name`` + its ``input``) into an approval request, wait for a
human, and answer in Claude Code's terms. Fail closed: a timeout, an error or a cancellation
is a deny (or, for hooks, the configured fallback, "ask" by default); never an allow.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .errors import RequestError
from .intake import MAX_ACTION, MAX_SUMMARY, NewRequest
from .models import Actor, ApprovalRequest, Status

if TYPE_CHECKING:  # the hook's fast path answers without the service (and pydantic)
    from .service import ApprovalService, ProgressCallback


def summarize(tool_name: str, tool_input: dict[str, Any]) -> str:
    """One line for the approver: what the tool call would do."""

    def field(name: str) -> str:
        value = tool_input.get(name)
        return value if isinstance(value, str) else ""

    if tool_name == "Bash":
        text = field("description") or "Run a shell command"
    elif tool_name in ("Edit", "MultiEdit", "Write", "NotebookEdit"):
        text = (
            f"{'Write' if tool_name == 'Write' else 'Edit'} {field('file_path') or field('notebook_path') or 'a file'}"
        )
    elif tool_name == "WebFetch":
        text = f"Fetch {field('url') or 'a URL'}"
    elif tool_name == "WebSearch":
        text = f"Search the web for {field('query')!r}"
    else:
        text = f"Use the tool {tool_name}"
    text = " ".join(text.split()) or f"Use the tool {tool_name}"
    return text[: MAX_SUMMARY - 1] + "…" if len(text) > MAX_SUMMARY else text


def tool_request(
    tool_name: str, tool_input: dict[str, Any], tool_use_id: str | None, cwd: str | None = None
) -> NewRequest:
    """The approval request for one tool call; a retried call (same ``tool_use_id``) asks once.
    ``cwd`` is where Claude Code runs it, as Claude Code (not the model) says. A tool name too
    long to show in full is refused, never shortened: the approver must see the tool that runs."""
    if len(tool_name) > MAX_ACTION:
        raise RequestError(f"the tool name is {len(tool_name)} characters; the limit is {MAX_ACTION}")
    return NewRequest(
        action=tool_name,
        summary=summarize(tool_name, tool_input),
        details=tool_input,
        metadata={"tool": tool_name},
        idempotency_key=f"tool_use:{tool_use_id}" if tool_use_id else None,
        cwd=cwd,
    )


def deny(message: str) -> str:
    """A ``--permission-prompt-tool`` answer that denies, with ``message`` for the model (≤ 500 characters)."""
    return json.dumps({"behavior": "deny", "message": message[:500]})


async def wait_for_human(
    service: ApprovalService, req: ApprovalRequest, *, within: float | None, on_progress: ProgressCallback | None
) -> ApprovalRequest:
    """Wait until the request is final, or ``within`` seconds (None: until its own deadline)."""
    import asyncio

    loop = asyncio.get_running_loop()
    stop = None if within is None else loop.time() + within
    while not req.status.final:
        left = (
            service.config.server.max_wait if stop is None else min(service.config.server.max_wait, stop - loop.time())
        )
        if left <= 0:
            break
        req = await service.wait(req.id, left, on_progress)
    return req


def denial(req: ApprovalRequest) -> str:
    """What the model is told when it may not go ahead, so it can adapt."""
    if req.status is Status.REJECTED:
        who = req.decided_by or "the approver"
        return f"Rejected by {who}: {req.reason}" if req.reason else f"Rejected by {who}."
    if req.status is Status.EXPIRED:
        return f"Nobody approved this in time (request {req.id} expired); do not retry it unasked."
    if req.status is Status.CANCELLED:
        return f"The approval request {req.id} was cancelled."
    return f"No decision yet on request {req.id}; treat it as not approved."


def approval_note(req: ApprovalRequest) -> str | None:
    """The note a human approved with ("Approve with note"), for the model; None for a plain
    approval, or one by a route or a grant (their reasons are signoff's own words)."""
    if req.status is Status.APPROVED and req.decided_kind == "human" and req.reason:
        return f"Approved by {req.decided_by or 'the approver'}: {req.reason}"
    return None


def approved_input(req: ApprovalRequest, tool_input: dict[str, Any]) -> dict[str, Any]:
    """The input the tool runs with: the approver's edit when they changed it, else the original."""
    return req.edited_details if isinstance(req.edited_details, dict) else tool_input


def edited_input(req: ApprovalRequest) -> dict[str, Any] | None:
    """The approver's edit of an approved tool call's input; None when they approved it unchanged."""
    edited = req.edited_details
    return edited if req.status is Status.APPROVED and isinstance(edited, dict) else None


def permission_result(req: ApprovalRequest, tool_input: dict[str, Any]) -> dict[str, Any]:
    """The JSON for ``--permission-prompt-tool``: allow only when a human (or the operator's
    route) approved; an approver's note goes along as ``message``."""
    if req.status is Status.APPROVED:
        note = approval_note(req)
        return {"behavior": "allow", "updatedInput": approved_input(req, tool_input),
                **({"message": note} if note else {})}  # fmt: skip
    return {"behavior": "deny", "message": denial(req)}


async def permission_prompt(
    service: ApprovalService,
    requester: Actor,
    tool_name: str,
    tool_input: dict[str, Any],
    tool_use_id: str | None,
    on_progress: ProgressCallback | None,
    session: str | None = None,
    *,
    cwd: str | None = None,
    client_name: str | None = None,
) -> str:
    """File, wait (until the request's own deadline), answer. Never raises (but for a
    cancellation); every error is a deny with a message, never an allow."""
    import asyncio

    req: ApprovalRequest | None = None
    if not isinstance(tool_name, str) or not tool_name or not isinstance(tool_input, dict):
        return deny("signoff refused to file the request: tool_name must be a string and input an object; denied.")
    if tool_use_id is not None and not isinstance(tool_use_id, str):
        return deny("signoff refused to file the request: tool_use_id must be a string; denied.")
    try:
        req = await service.request_approval(
            tool_request(tool_name, tool_input, tool_use_id, cwd), requester, session=session, client_name=client_name
        )
        req = await wait_for_human(service, req, within=None, on_progress=on_progress)
        result = permission_result(req, tool_input)
    except RequestError as exc:
        result = {"behavior": "deny", "message": f"signoff refused to file the request: {str(exc)[:400]}"}
    except asyncio.CancelledError:
        if req is not None and not req.status.final:
            await asyncio.shield(service.cancel(req.id, requester, "the tool call was cancelled"))
        raise
    except Exception as exc:  # fail closed
        result = {"behavior": "deny", "message": f"signoff could not get a decision ({type(exc).__name__}); denied."}
    return json.dumps(result)


def hook_output(event: str, req: ApprovalRequest | None, fallback: str, note: str = "") -> dict[str, Any] | None:
    """The hook's stdout for ``PreToolUse`` / ``PermissionRequest``; None prints nothing (the
    normal permission flow goes on: Claude Code asks in the terminal)."""
    if req is not None and req.status is Status.APPROVED:
        noted = approval_note(req)
        edited = edited_input(req)
        changed = {"updatedInput": edited} if edited is not None else {}
        if event == "PermissionRequest":
            return {"hookSpecificOutput": {"hookEventName": event, "decision": {"behavior": "allow", **changed}}}
        out: dict[str, Any] = {"hookEventName": event, "permissionDecision": "allow",
                               "permissionDecisionReason": noted or f"Approved by {req.decided_by} via signoff",
                               **changed}  # fmt: skip
        if noted:  # an allow's reason is for the user; the model reads additionalContext
            out["additionalContext"] = f"signoff: {noted}"
        return {"hookSpecificOutput": out}
    final = req is not None and req.status.final
    message = denial(req) if final and req is not None else (note or "No decision in time.")
    if final or fallback == "deny":
        if event == "PermissionRequest":
            return {
                "hookSpecificOutput": {"hookEventName": event, "decision": {"behavior": "deny", "message": message}}
            }
        return {"hookSpecificOutput": {"hookEventName": event, "permissionDecision": "deny",
                                       "permissionDecisionReason": message}}  # fmt: skip
    if event == "PermissionRequest":
        return None  # no decision: Claude Code shows its own prompt
    return {"hookSpecificOutput": {"hookEventName": event, "permissionDecision": "ask",
                                   "permissionDecisionReason": f"signoff: {message} Decide in the terminal."}}  # fmt: skip
