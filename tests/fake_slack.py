"""A fake Slack (Web API, Socket Mode, response URLs), driven by the real slack_sdk.

One aiohttp server on 127.0.0.1 (aiohttp, not Starlette/uvicorn: uvicorn needs ``websockets`` or
``wsproto`` for WebSockets, and neither is installed, while aiohttp is already a dependency):

* ``/api/<method>``: the Web API. JSON bodies, form bodies and query strings; ``Bearer`` tokens
  (the bot token everywhere, the app token only for ``apps.connections.open``); ``{"ok": …}`` answers
  with Slack's error names, and an ``x-oauth-scopes`` header like real Slack.
* ``/link/?ticket=…``: Socket Mode. ``hello`` on connect; the test pushes envelopes (``press``,
  ``submit_view``, ``slash``), each to ONE live connection, and awaits the ack (bounded, 3 s as Slack);
  ``disconnect`` frames, clean closes and abrupt drops.
* ``/actions/<id>``: the ``response_url`` handed out in payloads (``replace_original``, ``delete_original``).

It refuses what Slack refuses, with Slack's error shapes: unknown tokens (``invalid_auth``), swapped
token kinds (``not_allowed_token_type``), missing scopes, user ids where ``chat.update`` needs the
``D…`` id, messages without ``text`` and ``blocks``, Block Kit limits (50 blocks a message, 100 a modal,
section 3000, header 150, button text 75 / value 2000, ids 255, 25 actions, 10 context elements,
duplicate ``block_id``s), modal limits (title/submit/close 24, ``private_metadata`` 3000,
``callback_id`` 255), text over 40,000, trigger ids reused or older than 3 s. Every refused call is in
``errors``; tokens are never recorded. Tests can inject 5xx/429 answers (``fail``) and read the
per-channel pacing of ``chat.postMessage`` (``rate_violations``; refused with 429 when ``enforce_rate``).

Not faked: Events API envelopes, threads' reply lists, attachments, files, MPIMs, edit windows.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import os
import secrets
import socket
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
from aiohttp import WSMsgType, web

BOT_TOKEN = "xoxb-test-0000000000-fake-bot-token"
APP_TOKEN = "xapp-1-A0TEST-0000000000-fake-app-token"
SIGNING_SECRET = "fake-signing-secret-0123456789abcdef"
TEAM_ID, TEAM_DOMAIN, APP_ID, BOT_ID, BOT_USER_ID = "T0TEST", "signoff-test", "A0TEST", "B0BOT", "U0BOT"
U_ALICE, U_BOB, U_MALLORY = "U0ALICE", "U0BOB", "U0MALLORY"
C_TEAM = "C0TEAM"
USERS: dict[str, dict[str, Any]] = {
    U_ALICE: {"name": "alice", "real_name": "Alice Approver", "tz": "Europe/Berlin", "tz_offset": 3600},
    U_BOB: {"name": "bob", "real_name": "Bob Builder", "tz": "America/New_York", "tz_offset": -18000},
    U_MALLORY: {"name": "mallory", "real_name": "Mallory Intruder", "tz": "UTC", "tz_offset": 0},
}
DEFAULT_SCOPES = ("chat:write", "im:write", "users:read", "commands")
SCOPE_NEEDED = {"chat.postMessage": "chat:write", "chat.update": "chat:write", "chat.delete": "chat:write",
                "chat.postEphemeral": "chat:write", "conversations.open": "im:write", "users.info": "users:read"}  # fmt: skip
ACK_DEADLINE = TRIGGER_TTL = 3.0  # seconds Slack gives to ack an envelope / to use a trigger_id
BURST = 3  # chat.postMessage: more than this many to one channel within 1 s is a rate violation
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")


class SlackError(Exception):
    """A refused call: ``{"ok": false, "error": error, **extra}`` with an HTTP status and headers."""

    def __init__(self, error: str, detail: str = "", *, status: int = 200, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:  # fmt: skip
        super().__init__(f"{error}: {detail}" if detail else error)
        self.error, self.detail, self.status, self.headers, self.extra = error, detail, status, headers or {}, extra


def _blocks_error(message: str) -> SlackError:
    return SlackError(
        "invalid_blocks", message, errors=[message], response_metadata={"messages": [f"[ERROR] {message}"]}
    )


def _args_error(message: str) -> SlackError:
    return SlackError("invalid_arguments", message, response_metadata={"messages": [f"[ERROR] {message}"]})


# --- state a test reads ----------------------------------------------------------------------------


@dataclass
class Message:
    """A message as Slack keeps it (blocks with the block_ids/action_ids Slack fills in)."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    thread_ts: str | None = None
    ephemeral_to: str | None = None  # set for chat.postEphemeral: the only user who sees it
    edits: int = 0
    deleted: bool = False
    sent_at: float = field(default_factory=time.monotonic)

    def buttons(self) -> list[dict[str, Any]]:
        """The button elements of the actions blocks, each with its block's ``block_id`` added."""
        return [{**e, "block_id": b["block_id"]} for b in self.blocks if b.get("type") == "actions"
                for e in b.get("elements", []) if e.get("type") == "button"]  # fmt: skip

    def button(self, label_part: str) -> dict[str, Any]:
        """The button whose label contains ``label_part`` (case-insensitive)."""
        for b in self.buttons():
            if label_part.lower() in b["text"]["text"].lower():
                return b
        raise KeyError(f"no button {label_part!r} on message {self.ts}: {self.buttons()}")

    def find(self, action: str) -> dict[str, Any]:
        """A button by exact ``action_id``, else by label."""
        return next((b for b in self.buttons() if b.get("action_id") == action), None) or self.button(action)

    def payload(self) -> dict[str, Any]:
        msg = {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "app_id": APP_ID, "team": TEAM_ID,
               "ts": self.ts, "text": self.text, "blocks": self.blocks}  # fmt: skip
        return msg | ({"thread_ts": self.thread_ts} if self.thread_ts else {})


@dataclass
class View:
    """A modal opened with views.open (``closed`` once a submission was acked without errors)."""

    id: str
    user: str
    view: dict[str, Any]
    hash: str
    closed: bool = False
    errors: dict[str, str] | None = None  # the last ``response_action: errors`` shown in it
    updates: int = 0

    @property
    def callback_id(self) -> str:
        return str(self.view.get("callback_id") or "")

    @property
    def private_metadata(self) -> str:
        return str(self.view.get("private_metadata") or "")

    def payload(self) -> dict[str, Any]:
        v = self.view
        return {"id": self.id, "team_id": TEAM_ID, "type": v.get("type", "modal"), "blocks": v.get("blocks", []),
                "private_metadata": self.private_metadata, "callback_id": self.callback_id, "state": {"values": {}},
                "hash": self.hash, "title": v.get("title"), "close": v.get("close"), "submit": v.get("submit"),
                "clear_on_close": False, "notify_on_close": False, "external_id": v.get("external_id", ""),
                "previous_view_id": None, "root_view_id": self.id, "app_id": APP_ID, "bot_id": BOT_ID}  # fmt: skip


@dataclass
class Envelope:
    id: str
    type: str  # "interactive" | "slash_commands"
    payload: dict[str, Any]
    connection: int
    sent_at: float = field(default_factory=time.monotonic)
    ack: dict[str, Any] | None = None
    acked_at: float | None = None
    acked: asyncio.Event = field(default_factory=asyncio.Event, repr=False)


@dataclass
class Connection:
    id: int
    ws: web.WebSocketResponse = field(repr=False)
    transport: asyncio.Transport | None = field(repr=False)
    draining: bool = False  # sent a ``disconnect``: no more envelopes go to it

    @property
    def live(self) -> bool:
        return not self.ws.closed


@dataclass
class Failure:
    method: str
    status: int
    error: str
    retry_after: int | None
    times: int


@dataclass
class FakeSlack:
    url: str = ""
    scopes: list[str] = field(default_factory=lambda: list(DEFAULT_SCOPES))
    users: dict[str, dict[str, Any]] = field(default_factory=lambda: {k: dict(v) for k, v in USERS.items()})
    members: dict[str, set[str]] = field(default_factory=lambda: {C_TEAM: {U_ALICE, U_BOB}})  # channels the bot is in
    names: dict[str, str] = field(default_factory=lambda: {C_TEAM: "approvals"})  # channel names
    messages: dict[str, list[Message]] = field(default_factory=dict)  # channel id -> messages, oldest first
    ephemerals: list[Message] = field(default_factory=list)
    views: dict[str, View] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # every Web API call, without tokens
    timed: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (method, error, detail) of refused calls
    failures: list[Failure] = field(default_factory=list)
    envelopes: list[Envelope] = field(default_factory=list)
    acks: list[dict[str, Any]] = field(default_factory=list)
    hook_posts: list[dict[str, Any]] = field(default_factory=list)  # bodies POSTed to response_urls
    enforce_rate: bool = False

    def __post_init__(self) -> None:
        self._seq = itertools.count(1)
        self._conn_ids = itertools.count(1)
        self._connections: dict[int, Connection] = {}
        self._tickets: set[str] = set()
        self._triggers: dict[str, list[Any]] = {}  # id -> [issued at, user, used]
        self._hooks: dict[str, tuple[str, str, str | None]] = {}  # id -> (user, channel, message ts)
        self._opened_dms: set[str] = set()
        self._post_times: dict[str, list[float]] = {}
        self._violations = 0
        self._round_robin = itertools.count()
        self._changed = asyncio.Condition()

    # --- reading state -------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def channel(self, channel_id: str) -> list[Message]:
        return [m for m in self.messages.get(channel_id, []) if not m.deleted]

    def dm(self, user_id: str) -> list[Message]:
        """The messages in the bot's DM with ``user_id``."""
        return self.channel(dm_id(user_id))

    def message(self, channel_id: str, ts: str) -> Message | None:
        return next((m for m in self.messages.get(channel_id, []) if m.ts == ts and not m.deleted), None)

    def ephemerals_for(self, user_id: str) -> list[Message]:
        return [m for m in self.ephemerals if m.ephemeral_to == user_id]

    def sent(self, method: str) -> list[dict[str, Any]]:
        return [p for m, p in self.calls if m == method]

    @property
    def connection_opens(self) -> int:
        """How many times ``apps.connections.open`` was answered (one per connect and reconnect)."""
        return sum(1 for m, p in self.calls if m == "apps.connections.open")

    @property
    def live_connections(self) -> int:
        return sum(1 for c in self._connections.values() if c.live)

    @property
    def unacked(self) -> list[Envelope]:
        """Envelopes not acked within 3 s of delivery (or not yet acked at all)."""
        return [e for e in self.envelopes if e.acked_at is None or e.acked_at - e.sent_at > ACK_DEADLINE]

    def rate_violations(self) -> int:
        """chat.postMessage calls that were the (BURST+1)-th or later to one channel within 1 s."""
        return self._violations

    async def wait_for(self, predicate: Callable[[], Any], within: float = 15) -> Any:
        """Wait (bounded) until ``predicate()`` is truthy; re-checked whenever the fake's state changes."""
        with anyio.fail_after(within):
            async with self._changed:
                while not (result := predicate()):
                    await self._changed.wait()
                return result

    # --- steering ------------------------------------------------------------------------------

    def fail(self, method: str, status: int = 500, error: str = "", *, retry_after: int | None = None,
             times: int = 1) -> None:  # fmt: skip
        """The next ``times`` calls of ``method`` answer ``status``: 5xx ``internal_error``, 429
        ``ratelimited`` with ``Retry-After`` (default 1 s), or 200 with ``error`` (e.g. token_revoked)."""
        if status == 429:
            error, retry_after = error or "ratelimited", 1 if retry_after is None else retry_after
        self.failures.append(Failure(method, status, error or "internal_error", retry_after, times))

    def new_trigger(self, user_id: str) -> str:
        """A fresh trigger_id, usable once by views.open within 3 s."""
        trigger = f"{next(self._seq)}.{TEAM_ID[1:]}.{secrets.token_hex(8)}"
        self._triggers[trigger] = [time.monotonic(), user_id, False]
        return trigger

    def expire_triggers(self) -> None:
        """Age every trigger_id past its 3 s (no sleeping in tests)."""
        for t in self._triggers.values():
            t[0] -= TRIGGER_TTL + 1

    async def disconnect(self, reason: str = "refresh_requested", connection: int | None = None) -> None:
        """Send Slack's ``disconnect`` frame to one or all live connections (they get no more envelopes)."""
        for c in self._live(connection):
            c.draining = True
            await c.ws.send_json({"type": "disconnect", "reason": reason, "debug_info": {"host": "fake-slack"}})
        await self._notify()

    async def drop(self, connection: int | None = None, *, abrupt: bool = True) -> None:
        """End one or all live connections: a TCP abort with no close frame, or a clean close (1001)."""
        for c in self._live(connection):
            if abrupt and c.transport is not None:
                c.transport.abort()
            else:
                await c.ws.close(code=1001, message=b"going away")
        await self._notify()

    # --- a user acting in Slack ------------------------------------------------------------------

    def block_actions_payload(self, user_id: str, message: Message, action: str) -> dict[str, Any]:
        """What Slack sends when ``user_id`` presses the button ``action`` (action_id or label)."""
        b = message.find(action)
        act = {"type": "button", "action_id": b["action_id"], "block_id": b["block_id"], "text": b["text"],
               "action_ts": f"{time.time():.6f}"} | {k: b[k] for k in ("value", "style", "url") if k in b}  # fmt: skip
        payload = {
            "type": "block_actions", "user": self._user_ref(user_id), "api_app_id": APP_ID,
            "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN}, "enterprise": None, "is_enterprise_install": False,
            "trigger_id": self.new_trigger(user_id),
            "container": {"type": "message", "message_ts": message.ts, "channel_id": message.channel,
                          "is_ephemeral": message.ephemeral_to is not None},
            "channel": {"id": message.channel, "name": self._channel_name(message.channel)},
            "state": {"values": {}}, "response_url": self._hook(user_id, message.channel, message.ts),
            "actions": [act],
        }  # fmt: skip
        if message.ephemeral_to is None:
            payload["message"] = message.payload()
        return payload

    def view_submission_payload(self, user_id: str, view_id: str, values: dict[str, Any]) -> dict[str, Any]:
        """``values``: ``{block_id or action_id: "text" | {action_id: state}}`` for the view's input blocks."""
        view = self.views[view_id]
        if view.closed:
            raise ValueError(f"view {view_id} is closed")
        state = _state_values(view.view, values)
        return {"type": "view_submission", "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
                "user": self._user_ref(user_id), "api_app_id": APP_ID, "trigger_id": self.new_trigger(user_id),
                "view": view.payload() | {"state": {"values": state}}, "response_urls": [],
                "enterprise": None, "is_enterprise_install": False}  # fmt: skip

    def slash_payload(self, user_id: str, channel_id: str, command: str, text: str = "") -> dict[str, Any]:
        return {"team_id": TEAM_ID, "team_domain": TEAM_DOMAIN, "channel_id": channel_id,
                "channel_name": self._channel_name(channel_id), "user_id": user_id,
                "user_name": self.users.get(user_id, {}).get("name", "someone"), "command": command, "text": text,
                "api_app_id": APP_ID, "is_enterprise_install": "false",
                "response_url": self._hook(user_id, channel_id, None), "trigger_id": self.new_trigger(user_id)}  # fmt: skip

    async def press(
        self, user_id: str, message: Message, action: str, *, within: float = ACK_DEADLINE
    ) -> dict[str, Any]:
        """``user_id`` presses a button over Socket Mode; returns the ack (TimeoutError when none came)."""
        payload = self.block_actions_payload(user_id, message, action)
        return await self._ack_of(await self.deliver("interactive", payload, within=within), within)

    async def submit_view(self, user_id: str, view_id: str, values: dict[str, Any], *,
                          within: float = ACK_DEADLINE) -> dict[str, Any]:  # fmt: skip
        """``user_id`` submits the modal; the ack's ``response_action`` is applied to ``views``."""
        payload = self.view_submission_payload(user_id, view_id, values)
        return await self._ack_of(await self.deliver("interactive", payload, within=within), within)

    async def slash(self, user_id: str, channel_id: str, command: str, text: str = "", *,
                    within: float = ACK_DEADLINE) -> dict[str, Any]:  # fmt: skip
        payload = self.slash_payload(user_id, channel_id, command, text)
        return await self._ack_of(await self.deliver("slash_commands", payload, within=within), within)

    async def deliver(self, kind: str, payload: dict[str, Any], *, connection: int | None = None,
                      within: float = ACK_DEADLINE) -> Envelope:  # fmt: skip
        """Send an envelope to ONE live connection (round robin; waits up to ``within`` for one)."""
        await self.wait_for(lambda: self._live(connection, deliverable=True), within=within)
        live = self._live(connection, deliverable=True)
        conn = live[next(self._round_robin) % len(live)]
        env = Envelope(secrets.token_hex(16), kind, payload, conn.id)
        self.envelopes.append(env)
        accepts = kind == "slash_commands" or payload.get("type") == "view_submission"
        await conn.ws.send_json({"envelope_id": env.id, "type": kind, "accepts_response_payload": accepts,
                                 "payload": payload})  # fmt: skip
        await self._notify()
        return env

    @staticmethod
    async def _ack_of(env: Envelope, within: float) -> dict[str, Any]:
        try:
            with anyio.fail_after(within):
                await env.acked.wait()
        except TimeoutError:
            raise TimeoutError(f"no ack for {env.payload.get('type', env.type)} envelope within {within} s") from None
        assert env.ack is not None
        return env.ack

    # --- HTTP mode -------------------------------------------------------------------------------

    @staticmethod
    async def post_interaction(url: str, payload: dict[str, Any], signing_secret: str = SIGNING_SECRET, *,
                               timestamp: int | str | None = None) -> httpx.Response:  # fmt: skip
        """POST ``payload=<json>`` form-encoded and signed, as Slack does in HTTP mode."""
        return await post_signed(url, {"payload": json.dumps(payload)}, signing_secret, timestamp=timestamp)

    @staticmethod
    async def post_command(url: str, payload: dict[str, Any], signing_secret: str = SIGNING_SECRET, *,
                           timestamp: int | str | None = None) -> httpx.Response:  # fmt: skip
        """POST a slash command's fields form-encoded and signed, as Slack does in HTTP mode."""
        return await post_signed(url, payload, signing_secret, timestamp=timestamp)

    # --- helpers ---------------------------------------------------------------------------------

    def _live(self, connection: int | None = None, *, deliverable: bool = False) -> list[Connection]:
        return [c for i, c in sorted(self._connections.items()) if c.live and connection in (None, i)
                and not (deliverable and c.draining)]  # fmt: skip

    def _user_ref(self, user_id: str) -> dict[str, Any]:
        name = self.users.get(user_id, {}).get("name", "someone")
        return {"id": user_id, "username": name, "name": name, "team_id": TEAM_ID}

    def _channel_name(self, channel_id: str) -> str:
        return "directmessage" if channel_id.startswith("D") else self.names.get(channel_id, channel_id.lower())

    def _hook(self, user_id: str, channel: str, ts: str | None) -> str:
        hook = f"{next(self._seq)}{secrets.token_hex(6)}"
        self._hooks[hook] = (user_id, channel, ts)
        return f"{self.url}/actions/{TEAM_ID}/{hook}"

    def _next_ts(self) -> str:
        n = next(self._seq)
        return f"{1700000000 + n}.{n % 1000000:06d}"

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _resolve(self, channel: Any, *, allow_user: bool) -> str:
        """A channel argument as the conversation id it names."""
        channel = str(channel or "")
        if allow_user and channel.startswith(("U", "W")) and channel in self.users:
            return dm_id(channel)
        if channel.startswith("D") and channel in {dm_id(u) for u in self.users}:
            return channel
        if channel in self.members:
            return channel
        raise SlackError("channel_not_found", f"no conversation {channel!r}")

    def _store_blocks(self, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Blocks as Slack keeps them: every block gets a block_id, every element an action_id."""
        out = json.loads(json.dumps(blocks))
        for b in out:
            b.setdefault("block_id", secrets.token_urlsafe(3))
            for e in [*b.get("elements", []), b.get("accessory") or {}, b.get("element") or {}]:
                if e.get("type") in ("button", "plain_text_input", "static_select", "checkboxes", "radio_buttons"):
                    e.setdefault("action_id", secrets.token_urlsafe(3))
        return out

    # --- the Web API ---------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        token = None
        try:
            params = await _params(request)
            token = _token(request, params)  # removed from params before they are recorded
        except SlackError as e:
            params, failure = {}, e
        else:
            failure = None
        self.calls.append((method, params))
        self.timed.append((time.monotonic(), method, params))
        headers = {"x-oauth-scopes": ",".join(self.scopes)} if token == BOT_TOKEN else {}
        try:
            if failure is not None:
                raise failure
            self._check_token(method, token)
            for f in self.failures:
                if f.method == method and f.times > 0:
                    f.times -= 1
                    extra = {"Retry-After": str(f.retry_after)} if f.retry_after is not None else {}
                    return web.json_response({"ok": False, "error": f.error}, status=f.status, headers=headers | extra)
            handler = getattr(self, "_m_" + method.replace(".", "_"), None)
            if handler is None:
                raise SlackError("unknown_method", method)
            needed = SCOPE_NEEDED.get(method)
            if needed and needed not in self.scopes:
                raise SlackError("missing_scope", needed=needed, provided=",".join(self.scopes))
            return web.json_response({"ok": True, **handler(params)}, headers=headers)
        except SlackError as e:
            self.errors.append((method, e.error, e.detail))
            body = {"ok": False, "error": e.error, **e.extra}
            return web.json_response(body, status=e.status, headers=headers | e.headers)
        finally:
            await self._notify()

    def _check_token(self, method: str, token: str | None) -> None:
        if not token:
            raise SlackError("not_authed")
        wanted = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
        if token != wanted:
            raise SlackError("not_allowed_token_type" if token in (BOT_TOKEN, APP_TOKEN) else "invalid_auth")

    def _m_auth_test(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"url": f"https://{TEAM_DOMAIN}.slack.com/", "team": "signoff test", "user": "signoff",
                "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID, "is_enterprise_install": False}  # fmt: skip

    def _m_users_info(self, p: dict[str, Any]) -> dict[str, Any]:
        user_id = str(p.get("user") or "")
        if user_id not in self.users:
            raise SlackError("user_not_found", user_id)
        u = self.users[user_id]
        return {"user": {"id": user_id, "team_id": TEAM_ID, "deleted": False, "is_bot": False, **u,
                         "profile": {"real_name": u["real_name"], "display_name": u["name"]}}}  # fmt: skip

    def _m_conversations_open(self, p: dict[str, Any]) -> dict[str, Any]:
        users = p.get("users") or ""
        users = users.split(",") if isinstance(users, str) else list(users)
        if p.get("channel"):
            channel = self._resolve(p["channel"], allow_user=False)
        elif len(users) != 1:
            raise SlackError("users_list_not_supplied" if not users else "not_supported_in_fake", "one user only")
        elif users[0] not in self.users:
            raise SlackError("user_not_found", users[0])
        else:
            channel = dm_id(users[0])
        again = channel in self._opened_dms
        self._opened_dms.add(channel)
        return {"channel": {"id": channel}} | ({"no_op": True, "already_open": True} if again else {})

    def _m_chat_postMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve(p.get("channel"), allow_user=True)
        _check_message(p, required=True)
        now = time.monotonic()
        recent = [t for t in self._post_times.get(channel, []) if now - t < 1.0]
        if len(recent) >= BURST:
            self._violations += 1
            if self.enforce_rate:
                raise SlackError("ratelimited", f"{channel}: over {BURST}/s", status=429, headers={"Retry-After": "1"})
        self._post_times[channel] = [*recent, now]
        msg = Message(channel, self._next_ts(), str(p.get("text") or p.get("markdown_text") or ""),
                      self._store_blocks(p.get("blocks") or []), p.get("thread_ts") or None)  # fmt: skip
        self.messages.setdefault(channel, []).append(msg)
        return {"channel": channel, "ts": msg.ts, "message": msg.payload()}

    def _m_chat_update(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve(p.get("channel"), allow_user=False)
        msg = self.message(channel, str(p.get("ts") or ""))
        if msg is None:
            raise SlackError("message_not_found", f"{channel} {p.get('ts')}")
        _check_message(p, required=False)
        if "text" in p:
            msg.text = str(p["text"] or "")
        if "blocks" in p:  # left out: the blocks stay; [] removes them (Slack's rule)
            msg.blocks = self._store_blocks(p["blocks"] or [])
        msg.edits += 1
        return {"channel": channel, "ts": msg.ts, "text": msg.text, "message": msg.payload()}

    def _m_chat_delete(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve(p.get("channel"), allow_user=False)
        msg = self.message(channel, str(p.get("ts") or ""))
        if msg is None:
            raise SlackError("message_not_found", f"{channel} {p.get('ts')}")
        msg.deleted = True
        return {"channel": channel, "ts": msg.ts}

    def _m_chat_postEphemeral(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve(p.get("channel"), allow_user=True)
        user = str(p.get("user") or "")
        if user not in self.users:
            raise SlackError("user_not_found", user)
        if channel != dm_id(user) and user not in self.members.get(channel, set()):
            raise SlackError("user_not_in_channel", f"{user} in {channel}")
        _check_message(p, required=True)
        msg = Message(channel, self._next_ts(), str(p.get("text") or ""), self._store_blocks(p.get("blocks") or []),
                      p.get("thread_ts") or None, ephemeral_to=user)  # fmt: skip
        self.ephemerals.append(msg)
        return {"message_ts": msg.ts}

    def _m_views_open(self, p: dict[str, Any]) -> dict[str, Any]:
        trigger = self._triggers.get(str(p.get("trigger_id") or ""))
        if trigger is None:
            raise SlackError("invalid_trigger_id", str(p.get("trigger_id")))
        if trigger[2]:
            raise SlackError("exchanged_trigger_id")
        if time.monotonic() - trigger[0] > TRIGGER_TTL:
            raise SlackError("expired_trigger_id")
        view = _check_view(p.get("view"))
        trigger[2] = True
        v = View(f"V{next(self._seq):08d}", trigger[1], view | {"blocks": self._store_blocks(view.get("blocks", []))},
                 secrets.token_hex(8))  # fmt: skip
        self.views[v.id] = v
        return {"view": v.payload()}

    def _m_views_update(self, p: dict[str, Any]) -> dict[str, Any]:
        ext = p.get("external_id")
        v = self.views.get(str(p.get("view_id") or "")) or next(
            (v for v in self.views.values() if ext and v.view.get("external_id") == ext), None
        )
        if v is None or v.closed:
            raise SlackError("not_found", str(p.get("view_id") or ext))
        if p.get("hash") and p["hash"] != v.hash:
            raise SlackError("hash_conflict")
        self._replace_view(v, _check_view(p.get("view")))
        return {"view": v.payload()}

    def _replace_view(self, v: View, view: dict[str, Any]) -> None:
        v.view, v.hash, v.updates = (
            view | {"blocks": self._store_blocks(view["blocks"])},
            secrets.token_hex(8),
            v.updates + 1,
        )

    def _m_apps_connections_open(self, p: dict[str, Any]) -> dict[str, Any]:
        ticket = secrets.token_hex(12)
        self._tickets.add(ticket)
        return {"url": f"{self.url.replace('http', 'ws', 1)}/link/?ticket={ticket}&app_id={APP_ID}"}

    # --- Socket Mode and response URLs -----------------------------------------------------------

    async def _link(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            self.errors.append(("socket", "invalid_ticket", ticket))
            return web.Response(status=401, text="invalid ticket")
        self._tickets.discard(ticket)  # single-use
        ws = web.WebSocketResponse(timeout=2)
        await ws.prepare(request)
        conn = Connection(next(self._conn_ids), ws, request.transport)
        self._connections[conn.id] = conn
        await ws.send_json({"type": "hello", "num_connections": self.live_connections,
                            "debug_info": {"host": "fake-slack", "build_number": 1, "approximate_connection_time": 3600},
                            "connection_info": {"app_id": APP_ID}})  # fmt: skip
        await self._notify()
        try:
            async for frame in ws:
                if frame.type == WSMsgType.TEXT:
                    await self._on_frame(frame.data)
        finally:
            await self._notify()
        return ws

    async def _on_frame(self, data: str) -> None:
        try:
            ack = json.loads(data)
            env = next(e for e in self.envelopes if e.id == ack["envelope_id"])
        except (ValueError, KeyError, TypeError, StopIteration):
            self.errors.append(("socket", "unexpected_frame", data[:200]))
            return
        self.acks.append(ack)
        if env.ack is not None:
            self.errors.append(("socket", "duplicate_ack", env.id))
            return
        env.ack, env.acked_at = ack, time.monotonic()
        if env.payload.get("type") == "view_submission":
            self._apply_response_action(env.payload, ack.get("payload") or {})
        env.acked.set()
        await self._notify()

    def _apply_response_action(self, payload: dict[str, Any], response: dict[str, Any]) -> None:
        view = self.views[payload["view"]["id"]]
        action = response.get("response_action")
        try:
            if action is None or action == "clear":
                for v in self.views.values() if action == "clear" else [view]:
                    v.closed = True
            elif action == "errors":
                if not response.get("errors") or not isinstance(response["errors"], dict):
                    raise SlackError("invalid_arguments", "response_action errors needs an errors object")
                view.errors = response["errors"]
            elif action == "update":
                self._replace_view(view, _check_view(response.get("view")))
            else:
                raise SlackError("invalid_arguments", f"response_action {action!r} is not supported by the fake")
        except SlackError as e:
            self.errors.append(("view_submission ack", e.error, e.detail))

    async def _response_url(self, request: web.Request) -> web.Response:
        hook = self._hooks.get(request.match_info["hook"])
        if hook is None:
            return web.Response(status=404, text="no_such_hook")
        body = await request.json()
        self.hook_posts.append(body)
        user, channel, ts = hook
        text, blocks = str(body.get("text") or ""), self._store_blocks(body.get("blocks") or [])
        original = (self.message(channel, ts) or next((m for m in self.ephemerals if m.ts == ts), None)) if ts else None
        if body.get("delete_original") and original is not None:
            original.deleted = True
        elif body.get("replace_original") and original is not None:
            original.text, original.blocks, original.edits = text, blocks, original.edits + 1
        elif body.get("response_type") == "in_channel":
            self.messages.setdefault(channel, []).append(Message(channel, self._next_ts(), text, blocks))
        else:
            self.ephemerals.append(Message(channel, self._next_ts(), text, blocks, ephemeral_to=user))
        await self._notify()
        return web.json_response({"ok": True})


# --- argument checks (Slack's limits) ----------------------------------------------------------------


def _check_message(p: dict[str, Any], *, required: bool) -> None:
    text, blocks = p.get("text") or p.get("markdown_text"), p.get("blocks")
    if required and not text and not blocks:
        raise SlackError("no_text")
    if text and len(str(text)) > 40_000:
        raise SlackError("msg_too_long", f"{len(str(text))} characters")
    if blocks is not None:
        _check_blocks(blocks, 50, "/blocks")


def _check_blocks(blocks: Any, limit: int, where: str) -> None:
    if not isinstance(blocks, list):
        raise SlackError("invalid_blocks_format", f"{where} must be an array")
    if len(blocks) > limit:
        raise _blocks_error(f"no more than {limit} items allowed [json-pointer:{where}]")
    seen: set[str] = set()
    for i, b in enumerate(blocks):
        at = f"{where}/{i}"
        if not isinstance(b, dict) or not b.get("type"):
            raise _blocks_error(f"missing required field: type [json-pointer:{at}]")
        if "block_id" in b:
            _max(b["block_id"], 255, f"{at}/block_id")
            if b["block_id"] in seen:
                raise _blocks_error(f"duplicate block_id [json-pointer:{at}/block_id]")
            seen.add(b["block_id"])
        kind = b["type"]
        if kind == "section":
            if not b.get("text") and not b.get("fields"):
                raise _blocks_error(f"must provide text or fields [json-pointer:{at}]")
            if b.get("text"):
                _text(b["text"], 3000, f"{at}/text")
            fields = b.get("fields") or []
            _count(fields, 10, f"{at}/fields")
            for j, f in enumerate(fields):
                _text(f, 2000, f"{at}/fields/{j}")
            if b.get("accessory"):
                _element(b["accessory"], f"{at}/accessory")
        elif kind == "header":
            _text(b.get("text"), 150, f"{at}/text", plain=True)
        elif kind in ("actions", "context"):
            elements = b.get("elements") or []
            if not elements:
                raise _blocks_error(f"must have at least 1 item [json-pointer:{at}/elements]")
            _count(elements, 25 if kind == "actions" else 10, f"{at}/elements")
            ids = [e.get("action_id") for e in elements if isinstance(e, dict) and e.get("action_id")]
            if len(ids) != len(set(ids)):
                raise _blocks_error(f"duplicate action_id [json-pointer:{at}/elements]")
            for j, e in enumerate(elements):
                _element(e, f"{at}/elements/{j}") if kind == "actions" else _context_element(e, f"{at}/elements/{j}")
        elif kind == "input":
            _text(b.get("label"), 2000, f"{at}/label", plain=True)
            _element(b.get("element"), f"{at}/element")
            if b.get("hint"):
                _text(b["hint"], 2000, f"{at}/hint", plain=True)
        elif kind == "markdown":
            _max(b.get("text") or "x", 12_000, f"{at}/text")


def _element(e: Any, at: str) -> None:
    if not isinstance(e, dict) or not e.get("type"):
        raise _blocks_error(f"missing required field: type [json-pointer:{at}]")
    if "action_id" in e:
        _max(e["action_id"], 255, f"{at}/action_id")
    if e["type"] == "button":
        _text(e.get("text"), 75, f"{at}/text", plain=True)
        if "value" in e:
            _max(e["value"], 2000, f"{at}/value")
        if "url" in e:
            _max(e["url"], 3000, f"{at}/url")
        if e.get("style") not in (None, "primary", "danger"):
            raise _blocks_error(f"must be one of primary, danger [json-pointer:{at}/style]")
        if "confirm" in e:
            c = e["confirm"]
            for key, limit in (("title", 100), ("text", 300), ("confirm", 30), ("deny", 30)):
                _text(c.get(key), limit, f"{at}/confirm/{key}", plain=key != "text")


def _context_element(e: Any, at: str) -> None:
    if isinstance(e, dict) and e.get("type") in ("plain_text", "mrkdwn"):
        _text(e, 3000, at)
    elif not isinstance(e, dict) or e.get("type") != "image":
        raise _blocks_error(f"must be text or image [json-pointer:{at}]")


def _text(t: Any, limit: int, at: str, *, plain: bool = False) -> None:
    if not isinstance(t, dict) or t.get("type") not in (("plain_text",) if plain else ("plain_text", "mrkdwn")):
        raise _blocks_error(f"must be a {'plain_text' if plain else 'text'} object [json-pointer:{at}]")
    _max(t.get("text"), limit, f"{at}/text", minimum=1)


def _max(value: Any, limit: int, at: str, *, minimum: int = 0) -> None:
    if not isinstance(value, str) or not minimum <= len(value) <= limit:
        raise _blocks_error(f"must be a string of {minimum} to {limit} characters [json-pointer:{at}]")


def _count(items: Any, limit: int, at: str) -> None:
    if not isinstance(items, list) or len(items) > limit:
        raise _blocks_error(f"no more than {limit} items allowed [json-pointer:{at}]")


def _check_view(view: Any) -> dict[str, Any]:
    if isinstance(view, str):
        try:
            view = json.loads(view)
        except ValueError:
            raise _args_error("invalid JSON [json-pointer:/view]") from None
    if not isinstance(view, dict) or view.get("type") != "modal":
        raise _args_error("must be a modal view [json-pointer:/view/type]")
    if len(json.dumps(view)) > 250_000:
        raise SlackError("view_too_large")
    for key, required in (("title", True), ("submit", False), ("close", False)):
        t = view.get(key)
        if (t is not None or required) and not (isinstance(t, dict) and t.get("type") == "plain_text"
                                                and 1 <= len(str(t.get("text") or "")) <= 24):  # fmt: skip
            raise _args_error(f"must be plain_text of 1 to 24 characters [json-pointer:/view/{key}/text]")
    for key, limit in (("private_metadata", 3000), ("callback_id", 255), ("external_id", 255)):
        if len(str(view.get(key) or "")) > limit:
            raise _args_error(f"must be less than {limit + 1} characters [json-pointer:/view/{key}]")
    blocks = view.get("blocks")
    if blocks is None:
        raise _args_error("missing required field: blocks [json-pointer:/view]")
    _check_blocks(blocks, 100, "/view/blocks")
    if any(b.get("type") == "input" for b in blocks) and not view.get("submit"):
        raise _args_error("submit is required when using input blocks [json-pointer:/view/submit]")
    return json.loads(json.dumps(view))


def _state_values(view: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """``view.state.values`` for a submission: every input block, filled from ``values``."""
    inputs = [b for b in view.get("blocks", []) if b.get("type") == "input"]
    state = {b["block_id"]: {b["element"]["action_id"]: {"type": b["element"]["type"], "value": None}} for b in inputs}
    for key, value in values.items():
        block = next((b for b in inputs if key in (b["block_id"], b["element"]["action_id"])), None)
        if block is None:
            raise KeyError(f"no input block or action {key!r} in the view")
        action_id = block["element"]["action_id"]
        if isinstance(value, dict):
            state[block["block_id"]] = value
        else:
            state[block["block_id"]][action_id]["value"] = value
    return state


# --- requests ------------------------------------------------------------------------------------------


async def _params(request: web.Request) -> dict[str, Any]:
    """Query string, then the JSON or form body; JSON-string ``blocks``/``view`` decoded."""
    params: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            raise SlackError("invalid_json") from None
        if not isinstance(body, dict):
            raise SlackError("invalid_json")
        params.update(body)
    elif request.can_read_body:
        params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    if isinstance(params.get("blocks"), str):  # form bodies carry blocks as JSON (views: see _check_view)
        try:
            params["blocks"] = json.loads(params["blocks"])
        except ValueError:
            raise SlackError("invalid_blocks_format", "blocks is not JSON") from None
    return params


def _token(request: web.Request, params: dict[str, Any]) -> str | None:
    form_token = params.pop("token", None)
    header = request.headers.get("Authorization", "")
    return header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else form_token


def dm_id(user_id: str) -> str:
    """The stable id of the bot's DM with ``user_id``."""
    return "D" + user_id[1:]


def slack_signature(
    body: bytes | str, signing_secret: str = SIGNING_SECRET, timestamp: int | str | None = None
) -> dict[str, str]:
    """The headers Slack signs a request with: ``v0=`` hex HMAC-SHA256 of ``v0:<ts>:<body>``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    raw = body.encode() if isinstance(body, str) else body
    mac = hmac.new(signing_secret.encode(), b"v0:" + ts.encode() + b":" + raw, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={mac}"}


async def post_signed(url: str, fields: dict[str, Any], signing_secret: str = SIGNING_SECRET, *,
                      timestamp: int | str | None = None) -> httpx.Response:  # fmt: skip
    body = urllib.parse.urlencode(fields).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", **slack_signature(body, signing_secret, timestamp)}
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        return await client.post(url, content=body, headers=headers)


@contextlib.contextmanager
def _without_proxy_env() -> Iterator[None]:
    """slack_sdk honours HTTP(S)_PROXY and ignores NO_PROXY: hide them while the fake runs."""
    saved = {k: os.environ.pop(k) for k in _PROXY_VARS if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


@asynccontextmanager
async def fake_slack(**options: Any) -> AsyncIterator[FakeSlack]:
    """Serve a ``FakeSlack`` (``options`` are its fields) on a free loopback port for the block."""
    fake = FakeSlack(**options)
    app = web.Application()
    app.router.add_route("*", "/api/{method}", fake._api)
    app.router.add_get("/link/", fake._link)
    app.router.add_post("/actions/{team}/{hook}", fake._response_url)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with _without_proxy_env():
        await runner.setup()
        await web.SockSite(runner, sock).start()
        try:
            yield fake
        finally:
            for c in fake._live():
                if c.transport is not None:
                    c.transport.abort()
            await runner.cleanup()
            sock.close()
