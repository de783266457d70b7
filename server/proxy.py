"""``signoff proxy``: an approval gateway in front of another MCP server.

To its client the proxy is the upstream server: the same tools (names, schemas, annotations),
resources, prompts and completions, forwarded as they are. Every ``tools/call`` is filed first
as an approval request (action ``mcp__NAME__TOOL``, the arguments as details, the upstream's
annotations in metadata) and forwarded only once it is approved — with the arguments the approver
approved, edited or not; a rejection, an expiry or a
cancellation is a tool error naming who and why, and the upstream is never called. Fail
closed: an error in signoff never forwards the call. Upstream failures (it exited, timed out,
answered garbage) become tool errors too; the client is never left hanging.

Server-to-client requests (sampling, elicitation, roots) from the upstream are put to the
proxy's client when its connection can carry them; see docs/proxy.md for what cannot pass.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio
import mcp.types as t
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError

from .claude_code import approved_input, denial, wait_for_human
from .errors import RequestError
from .intake import MAX_SUMMARY, NewRequest
from .mcp_guard import clip
from .mcp_tools import requester_name, session_of
from .models import Actor, ApprovalRequest, Status

if TYPE_CHECKING:
    from mcp import Client

    from .service import ApprovalService

log = logging.getLogger("signoff.proxy")

Ctx = ServerRequestContext[Any, Any]
R = TypeVar("R")


def action_name(server: str, tool: str) -> str:
    """The action a proxied call is filed as: Claude Code's name for the same tool."""
    return f"mcp__{server}__{tool}"


def tool_error(text: str) -> t.CallToolResult:
    return t.CallToolResult(content=[t.TextContent(type="text", text=clip(text, 1000))], is_error=True)


def _hints(tool: t.Tool) -> dict[str, Any]:
    a = tool.annotations
    return {"readOnlyHint": a.read_only_hint if a else None, "destructiveHint": a.destructive_hint if a else None}


class Proxy:
    """One upstream MCP client behind one approval gate. ``build()`` makes the MCP server."""

    upstream: Client  # set once connected: the upstream's callbacks need the proxy first

    def __init__(self, service: ApprovalService, name: str, *, identity: str | None, cwd: str | None,
                 timeout: float) -> None:  # fmt: skip
        self.service = service
        self.name = name
        self.cwd = cwd
        self.timeout = timeout
        self.identify = requester_name("stdio", None, identity)
        self.tools: dict[str, t.Tool] = {}
        self.downstream: ServerSession | None = None  # the client's side, for requests the upstream sends
        self.dead: str | None = None  # why the upstream is gone, once it is

    # --- building the server ---------------------------------------------------------------

    def build(self) -> tuple[Server[Any], NotificationOptions]:
        """The low-level MCP server that mirrors the upstream's capabilities and identity."""
        caps = self.upstream.server_capabilities
        info = self.upstream.server_info
        handlers: dict[str, Any] = {}
        if caps.tools is not None:
            handlers.update(on_list_tools=self.list_tools, on_call_tool=self.call_tool)
        if caps.resources is not None:
            handlers.update(on_list_resources=self.list_resources, on_read_resource=self.read_resource,
                            on_list_resource_templates=self.list_resource_templates)  # fmt: skip
        if caps.prompts is not None:
            handlers.update(on_list_prompts=self.list_prompts, on_get_prompt=self.get_prompt)
        if caps.completions is not None:
            handlers.update(on_completion=self.complete)
        server: Server[Any] = Server(info.name if info else self.name, version=info.version if info else "",
                                     title=info.title if info else None, instructions=self.upstream.instructions,
                                     **handlers)  # fmt: skip
        notes = NotificationOptions(
            prompts_changed=bool(caps.prompts and caps.prompts.list_changed),
            resources_changed=bool(caps.resources and caps.resources.list_changed),
            tools_changed=bool(caps.tools and caps.tools.list_changed),
        )
        return server, notes

    # --- forwarding ------------------------------------------------------------------------

    async def _forward(self, ctx: Ctx, call: Callable[[], Awaitable[R]]) -> R:
        """A request the upstream answers as it is; its errors reach the client as JSON-RPC errors."""
        self.downstream = ctx.session
        if self.dead is not None:
            raise MCPError(t.INTERNAL_ERROR, self.dead)
        try:
            with anyio.fail_after(self.timeout):
                return await call()
        except MCPError as exc:
            raise MCPError(exc.code, clip(f"upstream {self.name!r}: {exc.message}"), exc.data) from None
        except TimeoutError:
            raise MCPError(
                t.INTERNAL_ERROR, f"upstream {self.name!r} did not answer within {self.timeout:.0f} s"
            ) from None
        except Exception as exc:  # garbage, a broken connection: the client gets an answer
            log.warning("upstream %s failed", self.name, exc_info=True)
            raise MCPError(
                t.INTERNAL_ERROR, clip(f"upstream {self.name!r} failed: {type(exc).__name__}: {exc}")
            ) from None

    async def list_tools(self, ctx: Ctx, params: t.PaginatedRequestParams | None) -> t.ListToolsResult:
        cursor = params.cursor if params else None
        result = await self._forward(ctx, lambda: self.upstream.list_tools(cursor=cursor, cache_mode="bypass"))
        self.tools.update((tool.name, tool) for tool in result.tools)
        return result

    async def list_resources(self, ctx: Ctx, params: t.PaginatedRequestParams | None) -> t.ListResourcesResult:
        cursor = params.cursor if params else None
        return await self._forward(ctx, lambda: self.upstream.list_resources(cursor=cursor, cache_mode="bypass"))

    async def list_resource_templates(
        self, ctx: Ctx, params: t.PaginatedRequestParams | None
    ) -> t.ListResourceTemplatesResult:
        cursor = params.cursor if params else None
        return await self._forward(ctx, lambda: self.upstream.list_resource_templates(cursor=cursor,
                                                                                      cache_mode="bypass"))  # fmt: skip

    async def read_resource(self, ctx: Ctx, params: t.ReadResourceRequestParams) -> t.ReadResourceResult:
        return await self._forward(ctx, lambda: self.upstream.read_resource(str(params.uri), cache_mode="bypass"))

    async def list_prompts(self, ctx: Ctx, params: t.PaginatedRequestParams | None) -> t.ListPromptsResult:
        cursor = params.cursor if params else None
        return await self._forward(ctx, lambda: self.upstream.list_prompts(cursor=cursor, cache_mode="bypass"))

    async def get_prompt(self, ctx: Ctx, params: t.GetPromptRequestParams) -> t.GetPromptResult:
        return await self._forward(ctx, lambda: self.upstream.get_prompt(params.name, params.arguments))

    async def complete(self, ctx: Ctx, params: t.CompleteRequestParams) -> t.CompleteResult:
        argument = {"name": params.argument.name, "value": params.argument.value}
        context = params.context.arguments if params.context else None
        return await self._forward(ctx, lambda: self.upstream.complete(params.ref, argument, context))

    # --- the gate --------------------------------------------------------------------------

    async def _tool(self, ctx: Ctx, name: str) -> t.Tool | None:
        """The upstream's listing of ``name`` (listed again, every page, when it is not known yet)."""
        if name not in self.tools:
            cursor: str | None = None
            for _ in range(100):
                page = await self.list_tools(ctx, t.PaginatedRequestParams(cursor=cursor))
                cursor = page.next_cursor
                if cursor is None or name in self.tools:
                    break
        return self.tools.get(name)

    async def call_tool(self, ctx: Ctx, params: t.CallToolRequestParams) -> t.CallToolResult:
        self.downstream = ctx.session
        if self.dead is not None:
            return tool_error(f"{self.dead}; the call was not made")
        name, arguments = params.name, params.arguments or {}
        try:
            tool = await self._tool(ctx, name)
        except MCPError as exc:
            return tool_error(f"{exc.message}; the call was not made")
        if tool is None:
            return tool_error(f"unknown tool {name[:100]!r}: the upstream server {self.name!r} does not list it")
        req = await self._decision(ctx, tool, arguments)
        if isinstance(req, t.CallToolResult):
            return req
        if req.status is not Status.APPROVED:
            return tool_error(f"{denial(req)} The call to {name} was not made.")
        # What was approved goes: the approver's edit, else the arguments as filed (the stored copy).
        filed = req.details if isinstance(req.details, dict) else arguments
        return await self._call_upstream(ctx, name, approved_input(req, filed))

    async def _decision(self, ctx: Ctx, tool: t.Tool, arguments: dict[str, Any]) -> ApprovalRequest | t.CallToolResult:
        """File the call and wait until a human (or a route) decides; fail closed on any error."""
        req: ApprovalRequest | None = None
        requester: Actor | None = None
        # A key of this call's own: a cancellation that lands after the request is stored but before
        # this coroutine hears so still finds it, and withdraws it.
        key = "proxy-" + secrets.token_hex(8)
        try:
            who = self.identify(cast(Any, ctx))
            requester = Actor("agent", who.name, "mcp")
            title = tool.annotations.title if tool.annotations and tool.annotations.title else tool.name
            summary = f"Use {title} ({tool.name}) of the MCP server {self.name}"[:MAX_SUMMARY]
            new = NewRequest(action=action_name(self.name, tool.name), summary=summary, details=arguments,
                             metadata={"server": self.name, "tool": tool.name, **_hints(tool)}, cwd=self.cwd,
                             idempotency_key=key)  # fmt: skip
            req = await self.service.request_approval(new, requester, session=session_of("stdio", cast(Any, ctx)),
                                                      client_name=who.client)  # fmt: skip

            async def progress(elapsed: float, total: float, message: str) -> None:
                await ctx.session.report_progress(round(elapsed, 1), None, message)

            if not req.status.final:  # at once, so the client can show what it waits for
                who_decides = ", ".join(req.approvers) or "a human"
                await progress(0, 0, f"waiting for {who_decides} to approve (signoff request {req.id})")
            return await wait_for_human(self.service, req, within=None, on_progress=progress)
        except RequestError as exc:
            return tool_error(f"signoff refused to file the request: {exc}; the call was not made")
        except anyio.get_cancelled_exc_class():
            if requester is not None and (req is None or not req.status.final):
                with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                    if req is None:
                        req = await self.service.store.find_by_key(requester.name, key, after_writes=True)
                    if req is not None:
                        await self.service.cancel(req.id, requester, "the tool call was cancelled")
            raise
        except Exception as exc:  # fail closed
            log.exception("proxy %s: could not get a decision", self.name)
            return tool_error(f"signoff could not get a decision ({type(exc).__name__}); the call was not made")

    async def _call_upstream(self, ctx: Ctx, name: str, arguments: dict[str, Any]) -> t.CallToolResult:
        async def progress(progress: float, total: float | None, message: str | None) -> None:
            await ctx.session.report_progress(progress, total, message)

        try:
            with anyio.fail_after(self.timeout):
                return await self.upstream.call_tool(name, arguments, read_timeout_seconds=self.timeout,
                                                     progress_callback=progress)  # fmt: skip
        except TimeoutError:
            return tool_error(f"the upstream server {self.name!r} did not answer {name} within {self.timeout:.0f} s")
        except MCPError as exc:
            if exc.message == "Connection closed":
                self.dead = f"the upstream server {self.name!r} has exited"
                return tool_error(f"the upstream server {self.name!r} exited during the call to {name}")
            return tool_error(f"the upstream server {self.name!r} answered {name} with an error: {exc.message}")
        except Exception as exc:
            log.warning("upstream %s failed on %s", self.name, name, exc_info=True)
            return tool_error(f"the upstream server {self.name!r} failed on {name}: {type(exc).__name__}: {exc}")

    # --- what the upstream sends the client --------------------------------------------------

    def _client(self) -> ServerSession | None:
        session = self.downstream
        return session if session is not None and session.can_send_request else None

    async def _ask_client(self, what: str, request: Any, result: type[Any]) -> Any:
        session = self._client()
        if session is None:
            return t.ErrorData(code=t.METHOD_NOT_FOUND,
                               message=f"the client behind signoff proxy cannot answer {what} on this connection")  # fmt: skip
        try:
            return await session.send_request(request, result)
        except MCPError as exc:
            return exc.error

    async def on_sampling(self, context: Any, params: t.CreateMessageRequestParams) -> Any:
        return await self._ask_client("sampling", t.CreateMessageRequest(params=params), t.CreateMessageResult)

    async def on_elicitation(self, context: Any, params: t.ElicitRequestParams) -> Any:
        return await self._ask_client("elicitation", t.ElicitRequest(params=params), t.ElicitResult)

    async def on_roots(self, context: Any) -> Any:
        return await self._ask_client("roots/list", t.ListRootsRequest(), t.ListRootsResult)

    async def on_log(self, params: t.LoggingMessageNotificationParams) -> None:
        if self.downstream is not None:
            await self._notify(self.downstream, t.LoggingMessageNotification(params=params))

    async def on_message(self, message: Any) -> None:
        """List changes and resource updates, passed on to the client."""
        session = self.downstream
        if session is None or isinstance(message, Exception):
            return
        if isinstance(message, t.ToolListChangedNotification):
            self.tools.clear()
        if isinstance(message, t.ToolListChangedNotification | t.ResourceListChangedNotification |
                      t.PromptListChangedNotification | t.ResourceUpdatedNotification):  # fmt: skip
            await self._notify(session, message)

    @staticmethod
    async def _notify(session: ServerSession, message: Any) -> None:
        """Pass a notification on; one the client's connection cannot carry is dropped (logged)."""
        try:
            await session.send_notification(message)
        except Exception:
            log.debug("could not pass %s on to the client", type(message).__name__, exc_info=True)

    def callbacks(self) -> dict[str, Any]:
        return {"sampling_callback": self.on_sampling, "elicitation_callback": self.on_elicitation,
                "list_roots_callback": self.on_roots, "logging_callback": self.on_log,
                "message_handler": self.on_message}  # fmt: skip
