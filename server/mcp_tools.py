"""The MCP tools: thin, typed wrappers around ``ApprovalService``.

No tool can approve or answer anything: ``request_approval`` and ``ask_human`` file,
``check_decision`` reads and waits, ``cancel_request`` withdraws. Errors an agent can fix become tool errors whose text
says how.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field, WithJsonSchema

from . import claude_code
from . import intake as limits
from .errors import RequestError
from .intake import NewRequest
from .mcp_guard import GuardedMCPServer, clip
from .models import Actor
from .paths import package_version
from .sanitize import has_control
from .service import ApprovalService
from .views import RequestView

Transport = Literal["stdio", "http", "memory"]

INSTRUCTIONS = """\
signoff asks a human before you act. Call request_approval with what you intend to do, then
call check_decision with the returned request_id and wait_seconds=50, again and again, until
the status is no longer 'pending'. Only 'approved' means go ahead; 'rejected', 'expired' and
'cancelled' all mean do not. Never act on a pending request. When an approved request has
edited_details (not null), the human changed your arguments: act on edited_details instead."""

REQUEST_DESCRIPTION = f"""\
Ask a human to approve an action before you take it.

Returns request_id and status. If status is 'pending', call check_decision(request_id,
wait_seconds=50) in a loop until it is final. Only status 'approved' means go ahead.
If edited_details is not null, the human approved changed arguments: act on those, not yours.
Send the same idempotency_key when you retry, so the human is asked only once.
Limits: action ≤ {limits.MAX_ACTION} characters, summary ≤ {limits.MAX_SUMMARY}, details ≤ {limits.MAX_DETAILS_BYTES // 1024} KiB as JSON,
metadata ≤ {limits.MAX_METADATA_KEYS} keys of scalar values."""

CHECK_DESCRIPTION = """\
Get the state of an approval request, optionally waiting for the human's decision.

With wait_seconds > 0 this returns as soon as the request is decided, or after wait_seconds
(capped by the server, 50 s by default) with status still 'pending' — then call it again.
Only status 'approved' means go ahead. If edited_details is not null, the human approved
changed arguments: act on edited_details, not on the details you sent."""

CANCEL_DESCRIPTION = """\
Withdraw an approval request you no longer need. A pending request becomes 'cancelled';
a decided one is returned unchanged."""

ASK_DESCRIPTION = f"""\
Ask a human a question and get their answer: when you need a choice, a fact or a judgement
from a person rather than a permission. Give options for a quick pick (they become buttons);
the human can always write their own answer instead.

Returns request_id and status. If status is 'pending', call check_decision(request_id,
wait_seconds=50) in a loop until it is final: 'answered' (read answer and answered_by),
'expired' (nobody answered in time) or 'cancelled'. An answer is information, never a
permission: ask for approval with request_approval before acting on it.
Limits: question ≤ {limits.MAX_SUMMARY} characters, ≤ {limits.MAX_OPTIONS} options of ≤ {limits.MAX_OPTION} characters, details ≤ {limits.MAX_DETAILS_BYTES // 1024} KiB as JSON."""

PERMISSION_DESCRIPTION = """\
For Claude Code's --permission-prompt-tool (mcp__signoff__permission_prompt): asks a human to
approve one tool call and answers {"behavior": "allow", "updatedInput": …} or
{"behavior": "deny", "message": …}. It blocks until the human decides (with progress
notifications), or the route's deadline passes (deny). Not for calling directly."""


@dataclass(frozen=True, slots=True)
class Requester:
    """Who is asking: ``name`` is recorded as ``requested_by`` (what routes, grants, self-approval
    and the ownership of requests go by); ``client`` is what the MCP client calls itself, a label."""

    name: str
    client: str | None


Identify = Callable[[Context[Any, Any] | None], Requester]


def requester_name(transport: Transport, http_identity: str | None, pinned: str | None = None) -> Identify:
    """How ``requested_by`` is read from the transport — never from the agent's arguments: the
    token's identity over HTTP, the operator's pinned identity (``signoff mcp --identity``,
    ``[server] stdio_identity``) over stdio, else the name the client gives itself."""

    def identify(ctx: Context[Any, Any] | None) -> Requester:
        client = None
        if ctx is not None:
            params = ctx.session.client_params
            if params is not None and params.client_info is not None:
                client = params.client_info.name
        if client is not None:
            if has_control(client) is not None:
                raise RequestError("the MCP client's name (clientInfo.name) contains control characters; "
                                   "signoff refuses such a client: fix its name")  # fmt: skip
            client = client[:100]
        if transport == "http" and http_identity is not None:
            return Requester(http_identity, client)  # the identity bound to the bearer token the request carried
        if transport != "http" and pinned is not None:
            return Requester(pinned, client)
        name = client or "unknown-client"
        return Requester(f"http:{name}" if transport == "http" else name, client)

    return identify


_PROCESS_SESSION = "mcp_" + secrets.token_hex(8)


def session_of(transport: Transport, ctx: Context[Any, Any] | None) -> str | None:
    """An id for the MCP session a call came through, for "session" grants: the process under
    stdio (MCP clients start one server per session), the ``Mcp-Session-Id`` over HTTP. None
    when there is none (a stateless client): no session grant is offered or applies then."""
    if transport == "stdio":
        return _PROCESS_SESSION
    connection = getattr(ctx.session, "_connection", None) if ctx is not None else None  # the SDK's per-client state
    session_id = getattr(connection, "session_id", None)
    return "http_" + hashlib.sha256(str(session_id).encode()).hexdigest()[:16] if session_id else None


@contextmanager
def _tool_errors() -> Iterator[None]:
    """A caller's mistake becomes a tool error whose text says how to fix the call: one line, at
    most ``MAX_ERROR`` characters (``GuardedMCPServer`` bounds every other tool error too)."""
    try:
        yield
    except RequestError as exc:
        raise ToolError(clip(str(exc))) from None


def _progress(ctx: Context[Any, Any] | None) -> Callable[[float, float, str], Awaitable[None]] | None:
    if ctx is None:
        return None

    async def report(elapsed: float, total: float, message: str) -> None:
        await ctx.report_progress(round(elapsed, 1), total, message)

    return report


def build_mcp(
    service: ApprovalService,
    *,
    transport: Transport,
    http_identity: str | None = None,
    identity: str | None = None,
    cwd: str | None = None,
) -> MCPServer:
    """The signoff MCP server, bound to an open ``service``. ``identity``: the requester every
    stdio (or in-memory) call is filed as, pinned by the operator; ``cwd``: the folder the agent
    works in, as the transport knows it (the stdio server's working directory)."""
    # GuardedMCPServer: short errors; unreadable requests answered.
    mcp: MCPServer = GuardedMCPServer("signoff", instructions=INSTRUCTIONS, version=package_version())
    identify = requester_name(transport, http_identity, identity)

    def agent(ctx: Context[Any, Any] | None) -> Actor:
        return Actor("agent", identify(ctx).name, "mcp")

    async def request_approval(
        action: Annotated[
            str,
            Field(
                description="What you want to do, as a short identifier, e.g. 'refund' or 'deploy_prod'.",
                max_length=limits.MAX_ACTION,
            ),
        ],
        summary: Annotated[
            str,
            Field(
                description="One or two sentences for the human: what, why, what could go wrong.",
                max_length=limits.MAX_SUMMARY,
            ),
        ],
        details: Annotated[
            Any, Field(description="Any JSON value shown to the approver: the command, the diff, the amounts.")
        ] = None,
        metadata: Annotated[
            dict[str, str | int | float | bool | None] | None,
            Field(
                description='Flat map of scalar facts the operator\'s routes match on, e.g. {"amount": 120, "env": "prod"}.'
            ),
        ] = None,
        route: Annotated[
            str | None,
            Field(
                description="Optional: a stricter route to use. Omit it unless told; the matching route is chosen for you."
            ),
        ] = None,
        idempotency_key: Annotated[
            str | None,
            Field(
                description="Optional: the same key on a retry returns the same request instead of asking twice.",
                max_length=limits.MAX_KEY,
            ),
        ] = None,
        timeout_seconds: Annotated[
            float | None,
            Field(
                description="Optional: ask for a shorter deadline than the route's (never a longer wait for silence to approve).",
                ge=limits.MIN_TIMEOUT,
                le=limits.MAX_TIMEOUT,
            ),
        ] = None,
        wait_seconds: Annotated[
            float,
            Field(
                description="Wait up to this long for the decision before returning (capped by the server, 50 s by default).",
                ge=0,
                le=3600,
            ),
        ] = 0,
        agent_name: Annotated[
            str | None,
            Field(
                description="Optional: your own name, shown to the approver. Recorded, never used to decide anything.",
                max_length=limits.MAX_ACTION,
            ),
        ] = None,
        callback_url: Annotated[
            str | None,
            Field(
                description="Optional: an http(s) URL that gets a signed POST when the request is final. It must be "
                "under one of the operator's [callbacks] allowed_urls.",
                max_length=2000,
            ),
        ] = None,
        ctx: Context[Any, Any] | None = None,
    ) -> RequestView:
        new = NewRequest(
            action=action, summary=summary, details=details, metadata=metadata or {}, route=route,
            idempotency_key=idempotency_key, timeout_seconds=timeout_seconds, claimed_requester=agent_name,
            callback_url=callback_url, cwd=cwd,
        )  # fmt: skip
        return await file(new, wait_seconds, ctx)

    async def file(new: NewRequest, wait_seconds: float, ctx: Context[Any, Any] | None) -> RequestView:
        """File ``new`` as the transport's requester and wait up to ``wait_seconds`` for it."""
        with _tool_errors():
            who = identify(ctx)
            req = await service.request_approval(new, Actor("agent", who.name, "mcp"), session=session_of(transport, ctx),
                                                 client_name=who.client)  # fmt: skip
            if wait_seconds > 0 and not req.status.final:
                req = await service.wait(req.id, wait_seconds, _progress(ctx))
        return RequestView.of(req, await service.note(req))

    async def ask_human(
        question: Annotated[
            str,
            Field(
                description="The question, for a person: what you need to know and why.", max_length=limits.MAX_SUMMARY
            ),
        ],
        options: Annotated[
            list[str] | None,
            Field(
                description='Optional: up to 10 short answers to choose from, e.g. ["staging", "production"]. '
                "The human may also write their own.",
                max_length=limits.MAX_OPTIONS,
            ),
        ] = None,
        details: Annotated[
            Any, Field(description="Optional: any JSON value shown with the question (context, data, a diff).")
        ] = None,
        topic: Annotated[
            str | None,
            Field(
                description="Optional: a topic the operator routes on (the action becomes ask_human.<topic>), "
                "e.g. 'billing'.",
                max_length=limits.MAX_TOPIC,
            ),
        ] = None,
        wait_seconds: Annotated[
            float,
            Field(
                description="Wait up to this long for the answer before returning (capped by the server, 50 s by default).",
                ge=0,
                le=3600,
            ),
        ] = 0,
        idempotency_key: Annotated[
            str | None,
            Field(
                description="Optional: the same key on a retry returns the same question instead of asking twice.",
                max_length=limits.MAX_KEY,
            ),
        ] = None,
        agent_name: Annotated[
            str | None,
            Field(
                description="Optional: your own name, shown to the human. Recorded, never used to decide anything.",
                max_length=limits.MAX_ACTION,
            ),
        ] = None,
        ctx: Context[Any, Any] | None = None,
    ) -> RequestView:
        with _tool_errors():
            action = limits.question_action(topic)
        new = NewRequest(action=action, summary=question, details=details, idempotency_key=idempotency_key,
                         claimed_requester=agent_name, cwd=cwd, kind="question", options=options)  # fmt: skip
        return await file(new, wait_seconds, ctx)

    async def check_decision(
        request_id: Annotated[str, Field(description="The request_id that request_approval returned.", max_length=100)],
        wait_seconds: Annotated[
            float,
            Field(
                description="Wait up to this long for a decision (capped by the server, 50 s by default). 0 returns at once.",
                ge=0,
                le=3600,
            ),
        ] = 0,
        ctx: Context[Any, Any] | None = None,
    ) -> RequestView:
        with _tool_errors():
            req = await service.wait(request_id, wait_seconds, _progress(ctx), requester=agent(ctx).name)
        return RequestView.of(req, await service.note(req))

    async def cancel_request(
        request_id: Annotated[str, Field(description="The request_id to withdraw.", max_length=100)],
        reason: Annotated[
            str | None, Field(description="Optional: why it is no longer needed.", max_length=limits.MAX_REASON)
        ] = None,
        ctx: Context[Any, Any] | None = None,
    ) -> RequestView:
        with _tool_errors():
            req = await service.cancel(request_id, agent(ctx), reason)
        return RequestView.of(req, await service.note(req))

    # The arguments are typed in the schema but checked by the tool itself: a malformed call must be
    # answered with a deny (what Claude Code expects), never with an argument-validation error.
    async def permission_prompt(
        tool_name: Annotated[
            Any,
            WithJsonSchema(
                {
                    "type": "string",
                    "maxLength": limits.MAX_ACTION,
                    "description": "The tool Claude Code wants to run, e.g. 'Bash'.",
                }
            ),
        ] = None,
        input: Annotated[
            Any,
            WithJsonSchema({"type": "object", "description": "The tool's input, exactly as Claude Code would run it."}),
        ] = None,
        tool_use_id: Annotated[
            Any,
            WithJsonSchema(
                {
                    "type": "string",
                    "maxLength": limits.MAX_KEY,
                    "description": "Claude Code's id for this tool call; a retried call asks only once.",
                }
            ),
        ] = None,
        ctx: Context[Any, Any] | None = None,
    ) -> str:
        try:
            who = identify(ctx)
        except RequestError as exc:
            return claude_code.deny(f"signoff refused to file the request: {exc}")
        return await claude_code.permission_prompt(service, Actor("agent", who.name, "mcp"), tool_name, input,
                                                   tool_use_id, _progress(ctx), session_of(transport, ctx),
                                                   cwd=cwd, client_name=who.client)  # fmt: skip

    mcp.add_tool(request_approval, description=REQUEST_DESCRIPTION,
                 annotations=ToolAnnotations(title="Ask a human for approval", read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False))  # fmt: skip
    mcp.add_tool(ask_human, description=ASK_DESCRIPTION,
                 annotations=ToolAnnotations(title="Ask a human a question", read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False))  # fmt: skip
    mcp.add_tool(check_decision, description=CHECK_DESCRIPTION,
                 annotations=ToolAnnotations(title="Check an approval decision", read_only_hint=True, open_world_hint=False))  # fmt: skip
    mcp.add_tool(cancel_request, description=CANCEL_DESCRIPTION,
                 annotations=ToolAnnotations(title="Withdraw an approval request", read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False))  # fmt: skip
    mcp.add_tool(permission_prompt, description=PERMISSION_DESCRIPTION, structured_output=False,
                 annotations=ToolAnnotations(title="Claude Code permission prompt", read_only_hint=False, open_world_hint=False))  # fmt: skip
    return mcp
