"""A fake Telegram Bot API server, driven by the real python-telegram-bot library.

It speaks HTTP on 127.0.0.1 like api.telegram.org: ``POST /bot<token>/<method>`` with form
or JSON bodies, ``{"ok": …}`` answers. It keeps chats and messages, serves ``getUpdates`` as
a true long-poll that drops updates only once a later offset confirms them, refuses what
Telegram refuses (callback data over 64 bytes, malformed HTML, text over 4,096 characters,
identical edits), answers 409 to a second concurrent poller (and counts it), and lets a
test press buttons or send messages as any user and inject 429s, 5xx and slow answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import anyio
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

BOT = {"id": 999000, "is_bot": True, "first_name": "signoff", "username": "signoff_test_bot"}
ALLOWED_TAGS = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "code",
    "pre",
    "a",
    "blockquote",
    "tg-spoiler",
    "span",
}


class _Html(HTMLParser):
    """Telegram's HTML: only some tags, balanced; the text length after parsing."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.length = 0
        self.error: str | None = None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag not in ALLOWED_TAGS:
            self.error = f'Unsupported start tag "{tag}"'
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.error = f'Can\'t find end tag corresponding to start tag "{tag}"'

    def handle_data(self, data: str) -> None:
        self.length += len(data)


def parse_html(text: str) -> tuple[int, str | None]:
    p = _Html()
    p.feed(text)
    p.close()
    if p.stack and p.error is None:
        p.error = f'Can\'t find end tag corresponding to start tag "{p.stack[-1]}"'
    return p.length, p.error


@dataclass
class Message:
    chat_id: int
    message_id: int
    text: str
    reply_markup: dict[str, Any] | None
    edits: int = 0
    document: bytes | None = None
    sent_at: float = field(default_factory=time.monotonic)
    reply_to: int | None = None  # the message this one replies to

    def buttons(self) -> list[dict[str, Any]]:
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [b for row in rows for b in row]

    def button(self, label_part: str) -> str:
        for b in self.buttons():
            if label_part.lower() in b["text"].lower():
                return str(b["callback_data"])
        raise KeyError(f"no button {label_part!r} on message {self.message_id}: {self.buttons()}")


_SENDS = {"sendMessage", "editMessageText", "sendDocument"}


@dataclass
class Failure:
    method: str
    status: int
    description: str
    retry_after: int | None
    times: int


@dataclass
class FakeTelegram:
    token: str = "123456:TEST-token-never-logged"
    url: str = ""
    messages: dict[tuple[int, int], Message] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    updates: list[dict[str, Any]] = field(default_factory=list)
    unreachable: set[int] = field(default_factory=set)  # chats whose user never started the bot
    conflicts: int = 0
    down: bool = False
    failures: list[Failure] = field(default_factory=list)
    delays: dict[str, tuple[float, int]] = field(default_factory=dict)  # method -> (seconds, how many calls)
    webhook: dict[str, Any] | None = None  # what setWebhook registered
    webhook_statuses: list[int] = field(default_factory=list)  # our answers to each delivery
    timed: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)  # every call, with its time

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._update_ids = itertools.count(1000)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._changed = asyncio.Condition()
        self._polls: list[asyncio.Event] = []  # one per live getUpdates; set = terminated

    # --- test helpers --------------------------------------------------------------------

    @property
    def api_base_url(self) -> str:
        return f"{self.url}/bot"

    def chat(self, chat_id: int) -> list[Message]:
        return [m for (c, _), m in sorted(self.messages.items()) if c == chat_id]

    def sent(self, method: str) -> list[dict[str, Any]]:
        return [p for m, p in self.calls if m == method]

    def fail(
        self, method: str, status: int, description: str = "", *, retry_after: int | None = None, times: int = 1
    ) -> None:
        self.failures.append(Failure(method, status, description or f"Error {status}", retry_after, times))

    async def press(self, user_id: int, message: Message, data: str) -> str:
        """A user presses a button with ``data`` on ``message``; returns the callback query id."""
        cq_id = str(next(self._ids))
        await self._push({"callback_query": {
            "id": cq_id, "from": _user(user_id), "chat_instance": str(message.chat_id), "data": data,
            "message": {"message_id": message.message_id, "date": int(time.time()), "chat": _chat(message.chat_id),
                        "text": message.text},
        }})  # fmt: skip
        return cq_id

    async def say(self, user_id: int, chat_id: int, text: str, *, reply_to: Message | None = None) -> None:
        """A user sends ``text`` in ``chat_id`` (a command when it starts with '/')."""
        msg: dict[str, Any] = {"message_id": next(self._message_ids.setdefault(chat_id, itertools.count(1))),
                               "date": int(time.time()), "chat": _chat(chat_id), "from": _user(user_id), "text": text}  # fmt: skip
        if text.startswith("/"):
            msg["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        if reply_to is not None:
            msg["reply_to_message"] = {"message_id": reply_to.message_id, "date": 0, "chat": _chat(chat_id),
                                       "from": BOT, "text": reply_to.text}  # fmt: skip
        await self._push({"message": msg})

    async def wait_for(self, predicate: Callable[[], Any], within: float = 15) -> Any:
        """Wait (bounded) until ``predicate()`` is truthy; re-checked on every change."""
        with anyio.fail_after(within):
            async with self._changed:
                while not (result := predicate()):
                    await self._changed.wait()
                return result

    def rate_violations(self) -> int:
        """Calls that broke Telegram's limits: more than one a second to a private chat, more than
        20 a minute to a group, more than 30 a second overall (small clock slack allowed)."""
        sends = [(at, int(p["chat_id"])) for at, m, p in self.timed if m in _SENDS]
        bad = 0
        by_chat: dict[int, list[float]] = {}
        for at, chat in sends:
            by_chat.setdefault(chat, []).append(at)
        for chat, times in by_chat.items():
            for i in range(1, len(times)):
                if chat > 0 and times[i] - times[i - 1] < 0.9:
                    bad += 1
                if chat < 0 and i >= 20 and times[i] - times[i - 20] < 59:
                    bad += 1
        everything = sorted(at for at, _ in sends)
        bad += sum(1 for i in range(30, len(everything)) if everything[i] - everything[i - 30] < 0.95)
        return bad

    def pending_updates(self) -> int:
        return len(self.updates)

    # --- the server ----------------------------------------------------------------------

    async def _push(self, update: dict[str, Any]) -> None:
        update["update_id"] = next(self._update_ids)
        if self.webhook is not None:
            await self._deliver(update)
        else:
            self.updates.append(update)
        await self._notify()

    async def _deliver(self, update: dict[str, Any]) -> None:
        """Webhook mode: POST the update like Telegram, retrying a few times until it gets a 2xx."""
        assert self.webhook is not None
        headers = {"X-Telegram-Bot-Api-Secret-Token": self.webhook.get("secret_token") or ""}
        async with httpx.AsyncClient(timeout=10) as client:
            for _ in range(5):
                try:
                    status = (await client.post(self.webhook["url"], json=update, headers=headers)).status_code
                except httpx.TransportError:
                    status = 0
                self.webhook_statuses.append(status)
                if 200 <= status < 300:
                    return

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def handle(self, request: Request) -> JSONResponse:
        if request.path_params["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.path_params["method"]
        params = await _params(request)
        self.calls.append((method, params))
        self.timed.append((time.monotonic(), method, params))
        try:
            if self.down:
                return _error(502, "Bad Gateway")
            if self.delays.get(method, (0, 0))[1] > 0:
                seconds, times = self.delays[method]
                self.delays[method] = (seconds, times - 1)
                await asyncio.sleep(seconds)  # a slow Telegram: the client may give up first
            for f in self.failures:
                if f.method == method and f.times > 0:
                    f.times -= 1
                    extra = {"retry_after": f.retry_after} if f.retry_after is not None else None
                    return _error(f.status, f.description, extra)
            handler = getattr(self, f"_m_{method}", None)
            if handler is None:
                return _error(404, f"Not Found: method {method} is not in the fake")
            result = await handler(params, request)
            return result if isinstance(result, JSONResponse) else JSONResponse({"ok": True, "result": result})
        finally:
            await self._notify()

    async def _m_getMe(self, p: dict[str, Any], r: Request) -> Any:
        return BOT

    async def _m_deleteWebhook(self, p: dict[str, Any], r: Request) -> Any:
        self.webhook = None
        return True

    async def _m_setWebhook(self, p: dict[str, Any], r: Request) -> Any:
        self.webhook = p
        return True

    async def _m_getChat(self, p: dict[str, Any], r: Request) -> Any:
        chat_id = int(p["chat_id"])
        if chat_id in self.unreachable:
            return _error(400, "Bad Request: chat not found")
        return {**_chat(chat_id), "accent_color_id": 0, "max_reaction_count": 11}  # a ChatFullInfo

    async def _m_getUpdates(self, p: dict[str, Any], r: Request) -> Any:
        if self.webhook is not None:
            return _error(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
            )
        offset = int(p.get("offset") or 0)
        timeout = float(p.get("timeout") or 0)
        if offset:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]  # confirmed: gone
        live = [e for e in self._polls if not e.is_set()]
        if live:
            self.conflicts += 1  # Telegram ends the older poll with 409; so do we
            for e in live:
                e.set()
        terminated = asyncio.Event()
        self._polls.append(terminated)
        gone = asyncio.create_task(_disconnected(r))
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    async with self._changed:
                        while not self.updates and not terminated.is_set() and not gone.done():
                            await self._changed.wait()
            if terminated.is_set():
                return _error(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                )
            limit = int(p.get("limit") or 100)
            return self.updates[:limit]
        finally:
            gone.cancel()
            terminated.set()
            self._polls.remove(terminated)

    async def _m_sendMessage(self, p: dict[str, Any], r: Request) -> Any:
        chat_id = int(p["chat_id"])
        if chat_id in self.unreachable:
            return _error(403, "Forbidden: bot can't initiate conversation with a user")
        problem = _check_text(p)
        if problem:
            return problem
        message_id = next(self._message_ids.setdefault(chat_id, itertools.count(1)))
        reply = p.get("reply_parameters") or {}
        msg = Message(chat_id, message_id, p["text"], p.get("reply_markup"), reply_to=reply.get("message_id"))
        self.messages[(chat_id, message_id)] = msg
        return {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": _chat(chat_id),
            "from": BOT,
            "text": msg.text,
        }

    async def _m_sendDocument(self, p: dict[str, Any], r: Request) -> Any:
        chat_id = int(p["chat_id"])
        message_id = next(self._message_ids.setdefault(chat_id, itertools.count(1)))
        msg = Message(chat_id, message_id, p.get("caption") or "", None, document=p["document"])
        self.messages[(chat_id, message_id)] = msg
        return {"message_id": message_id, "date": int(time.time()), "chat": _chat(chat_id), "from": BOT,
                "document": {"file_id": f"f{message_id}", "file_unique_id": f"u{message_id}"}}  # fmt: skip

    async def _m_editMessageText(self, p: dict[str, Any], r: Request) -> Any:
        key = (int(p["chat_id"]), int(p["message_id"]))
        msg = self.messages.get(key)
        if msg is None:
            return _error(400, "Bad Request: message to edit not found")
        problem = _check_text(p)
        if problem:
            return problem
        markup = p.get("reply_markup")  # absent: the keyboard goes away
        if p["text"] == msg.text and markup == msg.reply_markup:
            return _error(
                400,
                "Bad Request: message is not modified: specified new message content and reply markup are exactly the same",
            )
        msg.text, msg.reply_markup, msg.edits = p["text"], markup, msg.edits + 1
        return {"message_id": msg.message_id, "date": 0, "chat": _chat(msg.chat_id), "text": msg.text}

    async def _m_answerCallbackQuery(self, p: dict[str, Any], r: Request) -> Any:
        if len(p.get("text") or "") > 200:
            return _error(400, "Bad Request: MESSAGE_TOO_LONG")
        self.answers[str(p["callback_query_id"])] = p
        return True


def _check_text(p: dict[str, Any]) -> JSONResponse | None:
    text = p.get("text") or ""
    length, problem = parse_html(text) if p.get("parse_mode") == "HTML" else (len(text), None)
    if problem:
        return _error(400, f"Bad Request: can't parse entities: {problem}")
    if not 1 <= length <= 4096:
        return _error(400, "Bad Request: message is too long" if length else "Bad Request: message text is empty")
    for row in (p.get("reply_markup") or {}).get("inline_keyboard", []):
        for button in row:
            if "callback_data" in button and not 1 <= len(button["callback_data"].encode()) <= 64:
                return _error(400, "Bad Request: BUTTON_DATA_INVALID")
    return None


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _params(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").startswith("application/json"):
        raw: dict[str, Any] = await request.json()
    else:
        async with request.form() as form:
            raw = {k: (await v.read()) if hasattr(v, "read") else v for k, v in form.items()}  # files: their bytes
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str) and key in (
            "reply_markup",
            "allowed_updates",
            "entities",
            "link_preview_options",
            "reply_parameters",
        ):
            value = json.loads(value)
        out[key] = value
    return out


def _error(status: int, description: str, parameters: dict[str, Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return JSONResponse(body, status_code=status)


def _user(user_id: int) -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"}


def _chat(chat_id: int) -> dict[str, Any]:
    return {
        "id": chat_id,
        "type": "private" if chat_id > 0 else "supergroup",
        "title": None if chat_id > 0 else "group",
    }


@asynccontextmanager
async def fake_telegram() -> AsyncIterator[FakeTelegram]:
    """Serve a ``FakeTelegram`` on a free loopback port for the duration of the block."""
    fake = FakeTelegram()
    app = Starlette(routes=[Route("/bot{token}/{method}", fake.handle, methods=["POST", "GET"])])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # listening before serve() runs: early clients wait in the backlog
    fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield fake
    finally:
        server.should_exit = True
        server.force_exit = True  # don't wait for clients' idle keep-alive connections
        for e in fake._polls:
            e.set()
        await fake._notify()
        try:
            with anyio.fail_after(10):
                await task
        except TimeoutError:
            task.cancel()
        sock.close()
