"""Hostile input gets a short, clear answer from the MCP layer — never an echo, never silence.

- **Tool errors** — ours and the SDK's own validation of tool arguments — are at most
  ``MAX_ERROR`` characters, on one line, with every control character escaped. A validation
  error names the argument (a key the agent chose is named only when it is a plain short
  identifier) and what is wrong, never the value: pydantic's text would carry the input back
  into the agent's context. ``GuardedMCPServer.call_tool`` does this for every tool.
- **Unreadable JSON-RPC.** The SDK parses a message with pydantic-core, whose JSON parser
  refuses more than ``SDK_DEPTH`` nested arrays/objects (mcp 2.3, pydantic-core 2.x: 201
  levels, envelope included, so a ``tools/call`` argument may nest 198 levels). Over stdio
  such a line was dropped without an answer, so the agent waited for its own timeout; over
  HTTP it got a 400 under ``"id": null``. Both now get a JSON-RPC error (-32700) under the
  request's own id, read from the raw text by a scanner that does not recurse
  (``request_id``). A line without an id (a notification, or no id to be found) is still not
  answered: there is nothing to answer to.

The stdio half re-implements ``MCPServer.run_stdio_async`` around the SDK's ``stdio_server``
(five lines, and ``_lowlevel_server``: pinned to ``mcp>=2.3,<3``); the HTTP half is a pure
ASGI wrapper that only rewrites the SDK's own 400 parse errors.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.stdio import stdio_server
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from mcp.shared.message import SessionMessage
from mcp.types import INVALID_REQUEST, PARSE_ERROR, CallToolResult, ErrorData, InputRequiredResult, JSONRPCError
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .sanitize import visible

MAX_ERROR = 500  # characters in any error an agent gets back
SDK_DEPTH = 201  # nested arrays/objects pydantic-core's JSON parser reads (one more is "recursion limit exceeded")

NESTED = (
    f"Parse error: the message has arrays and objects nested more than {SDK_DEPTH} levels deep, more than the "
    "MCP library reads; flatten the arguments (or send deep data as a JSON string)"
)
NOT_JSON = "Parse error: the message is not valid JSON"
NOT_JSON_RPC = "Invalid request: the message is not a JSON-RPC 2.0 message"

RequestId = str | int


def clip(text: str, limit: int = MAX_ERROR) -> str:
    """``text`` on one line, controls escaped, at most ``limit`` characters."""
    text = visible(text, one_line=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- tool errors -------------------------------------------------------------------------

_PLAIN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_ECHOING = frozenset({"union_tag_invalid", "value_error", "assertion_error"})  # types whose msg may quote the input


def _path(loc: Sequence[int | str]) -> str:
    parts = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + (part if _PLAIN.fullmatch(part) else "<a key>"))
    return "".join(parts) or "arguments"


def validation_message(tool: str, exc: ValidationError, *, most: int = 4) -> str:
    """The argument errors of one call: each argument's path and what is wrong, no values."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    parents = Counter(tuple(e["loc"][:-1]) for e in errors)
    found: dict[str, str] = {}
    for e in errors:
        loc = tuple(e["loc"])
        if len(loc) > 1 and parents[loc[:-1]] > 1:
            # One value failed every branch of a union (loc ends in the branch's type name).
            path = _path(loc[:-1])
            what = "must be a string, number, boolean or null" if loc[0] == "metadata" else "has the wrong type"
        else:
            path = _path(loc)
            what = "is not valid" if e["type"] in _ECHOING else str(e["msg"])[:120]
        found.setdefault(path, what)
    items = [f"{path}: {what}" for path, what in found.items()]
    more = f" (and {len(items) - most} more)" if len(items) > most else ""
    return clip(f"Invalid arguments for {tool}: " + "; ".join(items[:most]) + more + ". Fix them and call again")


class GuardedMCPServer(MCPServer):
    """``MCPServer`` whose tool errors are short and never carry the input back, and whose stdio
    transport answers every request it cannot read."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        if self._tool_manager.get_tool(name) is None:  # a lookup, not a listing of every schema
            raise ToolError("Unknown tool; the tools/list request names the ones signoff has")
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError:
            raise  # the SDK's generic "Error executing tool …": the crash itself stays in the log
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                raise ToolError(validation_message(name, exc.__cause__)) from exc.__cause__
            raise ToolError(clip(str(exc))) from exc.__cause__

    async def run_stdio_async(self) -> None:
        """``MCPServer.run_stdio_async``, with every unreadable request answered."""
        async with stdio_server() as (read_stream, write_stream):
            server = self._lowlevel_server
            await server.run(AnswerUnreadable(read_stream, write_stream), write_stream,
                             server.create_initialization_options())  # fmt: skip


# --- unreadable JSON-RPC -----------------------------------------------------------------

_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+')
_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,30})")


def _scalar(token: str) -> Any:
    if token.startswith('"'):
        try:
            return json.loads(token)
        except ValueError:
            return None
    return int(token) if _INT.fullmatch(token) else None


def request_id(text: str) -> RequestId | None:
    """The ``"id"`` of the JSON-RPC object in ``text``, read token by token with a depth count
    (no recursion, whatever the nesting, and whether or not the rest is valid JSON)."""
    if not text.lstrip().startswith("{"):
        return None
    depth, key_next, key, value_next = 0, False, None, False
    found: RequestId | None = None
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in ("{", "["):
            depth += 1
            key_next = token == "{" and depth == 1
            value_next = False
        elif token in ("}", "]"):
            depth -= 1
            if depth <= 0:
                break
        elif depth != 1:
            continue
        elif token == ",":
            key_next, value_next = True, False
        elif token == ":":
            value_next = True
        elif key_next:
            key, key_next = _scalar(token), False
        elif value_next:
            value = _scalar(token)
            if key == "id" and isinstance(value, str | int) and not isinstance(value, bool):
                found = value
            value_next = False
    return found


def _answer(error: ValidationError) -> JSONRPCError | None:
    """The JSON-RPC error for a message the SDK could not read, under its id (None: no id)."""
    details = error.errors(include_url=False)
    raw = details[0].get("input") if details else None
    rid = request_id(raw) if isinstance(raw, str) else None
    if rid is None and isinstance(raw, dict):
        candidate = raw.get("id")
        rid = candidate if isinstance(candidate, str | int) and not isinstance(candidate, bool) else None
    if rid is None:
        return None
    if details[0]["type"] == "json_invalid":
        message = NESTED if "recursion limit" in str(details[0]["msg"]) else NOT_JSON
        return JSONRPCError(jsonrpc="2.0", id=rid, error=ErrorData(code=PARSE_ERROR, message=message))
    return JSONRPCError(jsonrpc="2.0", id=rid, error=ErrorData(code=INVALID_REQUEST, message=NOT_JSON_RPC))


class AnswerUnreadable:
    """The read side of a stdio connection, as the SDK's server consumes it, except that a line
    the SDK could not read (it arrives as an exception, which the SDK only logs) is answered
    at once with a JSON-RPC error under the request's id."""

    def __init__(self, inner: Any, write: Any) -> None:
        self._inner = inner
        self._write = write

    @property
    def last_context(self) -> Any:  # the sender's contextvars, which the SDK's dispatcher reads
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        while True:
            item: SessionMessage | Exception = await self._inner.receive()
            reply = _answer(item) if isinstance(item, ValidationError) else None
            if reply is None:
                return item
            await self._write.send(SessionMessage(reply))

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> AnswerUnreadable:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> AnswerUnreadable:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _http_answer(response: bytes, request: bytes) -> bytes:
    """The SDK's 400 answer to an unreadable POST, with the request's id and a clear message."""
    try:
        body = json.loads(response)
    except ValueError:
        return response
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or body.get("id") is not None or error.get("code") not in (PARSE_ERROR, -32602):
        return response
    rid = request_id(request.decode("utf-8", errors="replace"))
    if error["code"] == PARSE_ERROR:
        message = NESTED if "recursion limit" in str(error.get("message")) else NOT_JSON
    else:
        message = NOT_JSON_RPC  # the SDK's text quotes the input
    return (
        JSONRPCError(jsonrpc="2.0", id=rid, error=ErrorData(code=error["code"], message=message))
        .model_dump_json(by_alias=True)
        .encode()
    )


def _is_json(start: Message) -> bool:
    return any(k.lower() == b"content-type" and v.startswith(b"application/json") for k, v in start["headers"])


def answer_unreadable_http(app: ASGIApp) -> ASGIApp:
    """Wrap the SDK's streamable-HTTP app: a POST it cannot read gets its 400 JSON-RPC error
    under the request's own id (the SDK sends ``"id": null``) and a message that says why. It
    only keeps a copy of request bodies (up to the SDK's own limit) and holds back nothing but
    400 JSON answers: SSE streams pass straight through."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await app(scope, receive, send)
            return
        request = bytearray()
        held: list[Message] = []

        async def tee() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(request) <= DEFAULT_MAX_REQUEST_BODY_SIZE:
                request.extend(message.get("body", b""))
            return message

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 400 and _is_json(message):
                held.append(message)
                return
            if held and message["type"] == "http.response.body":
                held.append(message)
                if message.get("more_body", False):
                    return
                start, *parts = held
                body = _http_answer(b"".join(p.get("body", b"") for p in parts), bytes(request))
                headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
                headers.append((b"content-length", str(len(body)).encode()))
                held.clear()
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await app(scope, tee, answer)

    return guarded
