"""A stand-in for the Anthropic Messages API, enough for `claude -p` to run one tool call.

The first turn of a conversation answers with a ``tool_use`` block (the tool and input the
test chose); once the conversation carries a ``tool_result`` it answers with text. Every
request body is kept, so a test can read what the model was told (e.g. a denial's reason).
Streaming (SSE) and plain JSON answers are both served.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class FakeAnthropic:
    tool_name: str = "Bash"
    tool_input: dict[str, Any] = field(default_factory=dict)
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    # Claude Code connects MCP servers without blocking `-p`; the real API's first answer takes
    # seconds, long enough for them to start. A stand-in that answered at once would race them.
    first_answer_delay: float = 4.0

    def tool_results(self) -> list[dict[str, Any]]:
        """Every tool_result block the client sent back."""
        out = []
        for body in self.requests:
            for message in body.get("messages", []):
                content = message.get("content")
                if isinstance(content, list):
                    out += [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
        return out

    def _answer(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        tools = {t.get("name") for t in body.get("tools", []) if isinstance(t, dict)}
        last = body.get("messages", [{}])[-1]
        content = last.get("content")
        answered = isinstance(content, list) and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in content
        )
        if self.tool_name in tools and not answered:
            return [{"type": "tool_use", "id": f"toolu_e2e{len(self.requests):04d}", "name": self.tool_name,
                     "input": self.tool_input}]  # fmt: skip
        return [{"type": "text", "text": "Done."}]

    async def messages(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        if len(self.requests) == 1:
            await asyncio.sleep(self.first_answer_delay)
        blocks = self._answer(body)
        stop = "tool_use" if blocks[0]["type"] == "tool_use" else "end_turn"
        message = {"id": f"msg_{len(self.requests)}", "type": "message", "role": "assistant", "model": body.get("model", "x"),
                   "content": blocks, "stop_reason": stop, "stop_sequence": None,
                   "usage": {"input_tokens": 10, "output_tokens": 5}}  # fmt: skip
        if not body.get("stream"):
            return JSONResponse(message)
        return StreamingResponse(_events(message), media_type="text/event-stream")

    async def count_tokens(self, request: Request) -> Response:
        return JSONResponse({"input_tokens": 10})

    async def anything(self, request: Request) -> Response:
        return JSONResponse({})


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def _events(message: dict[str, Any]) -> AsyncIterator[bytes]:
    head = {**message, "content": [], "stop_reason": None, "usage": {"input_tokens": 10, "output_tokens": 1}}
    yield _sse("message_start", {"type": "message_start", "message": head})
    for i, block in enumerate(message["content"]):
        if block["type"] == "text":
            yield _sse(
                "content_block_start",
                {"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}},
            )
            yield _sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                               "delta": {"type": "text_delta", "text": block["text"]}})  # fmt: skip
        else:
            start = {**block, "input": {}}
            yield _sse("content_block_start", {"type": "content_block_start", "index": i, "content_block": start})
            yield _sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                               "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}})  # fmt: skip
        yield _sse("content_block_stop", {"type": "content_block_stop", "index": i})
    yield _sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                                 "usage": {"output_tokens": 5}})  # fmt: skip
    yield _sse("message_stop", {"type": "message_stop"})


@asynccontextmanager
async def fake_anthropic(tool_name: str, tool_input: dict[str, Any]) -> AsyncIterator[FakeAnthropic]:
    fake = FakeAnthropic(tool_name, tool_input)
    app = Starlette(routes=[
        Route("/v1/messages", fake.messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", fake.count_tokens, methods=["POST"]),
        Route("/{path:path}", fake.anything, methods=["GET", "POST"]),
    ])  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield fake
    finally:
        server.should_exit = server.force_exit = True
        await task
        sock.close()
