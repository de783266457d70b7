"""Red team: the Slack channel, its HTTP endpoint, and the channel seam it shares with Telegram.

The real slack_sdk (Socket Mode and the Web API) against the fake Slack, real SQLite, signoff's
own code unmocked. One test per attack: a passing test is a promise that held, a failing one
names a hole (its docstring says how the attack gets through).

The attacker is anyone in a Slack channel or DM with the app (a *bystander*: a member who is not
an approver of the request), or an approver going beyond their request; Slack vouches for who
pressed (``user.id``), everything else in a payload — button values, the message it claims to be
on, modal metadata — is treated as forged. Some attacks go further and use the button key itself
(``slack_button_key``, read from the database: a "leaked key") to show that the checks after the
MAC hold on their own.
"""

from __future__ import annotations

import json
import logging
import re
import textwrap
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn

from signoff.adapters.slack.buttons import NOTE_MODAL, REASON_MODAL, SlackSigner
from signoff.adapters.slack.render import digest, escalated, grant_notice, grants_list, reminder
from signoff.server.app import App, open_app
from signoff.server.channels import ChannelService
from signoff.server.config import load_config
from signoff.server.digests import DigestBook
from signoff.server.http import build_http_app
from signoff.server.intake import NewRequest
from signoff.server.listen import bind
from signoff.server.logs import setup as setup_logs
from signoff.server.models import Actor, Status

from ..fake_slack import (
    APP_TOKEN,
    BOT_TOKEN,
    C_TEAM,
    SIGNING_SECRET,
    U_ALICE,
    U_BOB,
    U_MALLORY,
    FakeSlack,
    Message,
    dm_id,
    slack_signature,
)
from ..policies import Clock
from ..slack_support import AGENT, PREFIX, prompt_in, slack_for_signoff, text_of

pytestmark = pytest.mark.anyio

HTTP_TOKEN = "redteam-bearer-token-0123456789abcdef"
SECRETS = (BOT_TOKEN, APP_TOKEN, SIGNING_SECRET, HTTP_TOKEN)
SLACK_PATH = "/slack/events"
TG_ALICE, TG_BOB = 111, 222
NOT_VALID = "This button is not valid."
NOT_HERE = "not on a prompt of its request"
OUT_OF_DATE = "This digest is out of date; use the newest one."
NOT_AN_APPROVER = "You are not an approver of this request."

CONFIG = """
    [store]
    path = "signoff.db"
    [server]
    port = 0
    [defaults]
    digest_threshold = 1
    [slack]
    api_base_url = "{api}"
    lease_ttl = "3s"
    {slack}
    [approvers.alice]
    slack_user_id = "{alice}"
    telegram_user_id = {tg_alice}
    identities = ["alice-laptop*"]
    [approvers.bob]
    slack_user_id = "{bob}"
    slack_channel = "{team}"
    telegram_user_id = {tg_bob}
    {extra}
    [[routes]]
    name = "bob-only"
    match = {{ action = "bob_*" }}
    approvers = ["bob"]
    [[routes]]
    name = "bulk"
    match = {{ action = "bulk_*" }}
    approvers = ["alice"]
    allow_bulk = true
    [[routes]]
    name = "team-bulk"
    match = {{ action = "teambulk_*" }}
    approvers = ["bob"]
    allow_bulk = true
    [[routes]]
    name = "tests"
    match = {{ action = "Bash" }}
    approvers = ["bob"]
    grant_options = ["30m"]
    grant_scope = {{ argument = "command", patterns = ["npm test", "npm test **"] }}
    [[routes]]
    name = "escalating"
    match = {{ action = "esc_*" }}
    approvers = ["alice"]
    escalation = [{{ after = "10m", approvers = ["bob"] }}]
    [[routes]]
    name = "default"
    approvers = ["alice", "bob"]
"""

# Agent-controlled text meant to become markup: every piece carries PWN, which must only ever be
# shown inside a code span or block.
HOSTILE = (
    "PWN *bold PWN* _it PWN_ ~strike PWN~ `tick PWN` ```fence PWN``` <!channel> <!here|PWN> <@U0BOB> "
    "<https://evil.example/PWN|click PWN> https://evil.example/PWN &lt;!everyone&gt; :skull: PWN"
)
HOSTILE_LINES = HOSTILE + "\n> quote PWN\n```\nPWN block\n```\n*PWN*\n• PWN"


def config_text(fake: FakeSlack, *, slack: str = "", extra: str = "", bob: str = U_BOB) -> str:
    return textwrap.dedent(CONFIG).format(api=fake.api_url, slack=slack, extra=textwrap.dedent(extra), alice=U_ALICE,
                                          bob=bob, team=C_TEAM, tg_alice=TG_ALICE, tg_bob=TG_BOB)  # fmt: skip


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeSlack]:
    """The fake Slack; mallory (no approver) is in the team channel with alice and bob."""
    async with slack_for_signoff(monkeypatch, paced=False, members={C_TEAM: {U_ALICE, U_BOB, U_MALLORY}}) as f:
        yield f


@pytest.fixture
def config_path(fake: FakeSlack, write_config: Callable[..., Path]) -> Path:
    return write_config(config_text(fake))


@pytest.fixture
async def app(config_path: Path, fake: FakeSlack) -> AsyncIterator[App]:
    """Socket Mode, connected."""
    async with open_app(load_config(config_path)) as opened:
        await fake.wait_for(lambda: fake.live_connections >= 1)
        yield opened


@pytest.fixture
async def http_app(
    fake: FakeSlack, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[App]:
    """HTTP mode, with a bearer token on the rest of ``signoff serve``."""
    monkeypatch.delenv("SIGNOFF_SLACK_APP_TOKEN")
    monkeypatch.setenv("SIGNOFF_SLACK_SIGNING_SECRET", SIGNING_SECRET)
    config = load_config(write_config(config_text(fake, slack='mode = "http"')))
    async with open_app(config) as opened:
        yield opened


# --- helpers ----------------------------------------------------------------------------------------


async def file(app: App, action: str = "deploy", summary: str = "Ship v2", *, requester: Actor = AGENT,
               client_name: str | None = None, **kw: Any) -> str:  # fmt: skip
    new = NewRequest(action, summary, **kw)
    return (await app.service.request_approval(new, requester, client_name=client_name)).id


async def status(app: App, request_id: str) -> Status:
    return (await app.service.get(request_id)).status


async def events(app: App, request_id: str) -> list[tuple[str, str]]:
    return [(e.event, e.actor) for e in await app.store.audit(request_id=request_id)]


async def refusals(app: App, request_id: str) -> list[dict[str, Any]]:
    return [{"actor": e.actor, **(e.data or {})} for e in await app.store.audit(request_id=request_id)
            if e.event == "refused"]  # fmt: skip


async def leaked_signer(app: App) -> SlackSigner:
    """The signer with the real button key, as a thief of the database would have it."""
    return SlackSigner(await app.store.setting("slack_button_key", _no_key))


def _no_key() -> str:
    raise AssertionError("the Slack channel has not made its button key yet")


async def note(fake: FakeSlack, user: str, after: int) -> Message:
    """The next ephemeral message to ``user`` (the answer to a press), after ``after`` earlier ones."""
    notes = await fake.wait_for(lambda: (lambda n: n if len(n) > after else None)(fake.ephemerals_for(user)))
    return notes[after]


def forged_press(fake: FakeSlack, user: str, on: Message, action: str, *, value: str | None = None,
                 message: Message | None = None) -> dict[str, Any]:  # fmt: skip
    """``user`` presses ``action`` on ``on``, with the value (and the message Slack hands back)
    replaced by ``value`` (and ``message``'s blocks)."""
    payload = fake.block_actions_payload(user, on, action)
    if value is not None:
        payload["actions"][0]["value"] = value
    if message is not None:
        payload["message"]["blocks"] = message.blocks
    return payload


async def slack_refused(fake: FakeSlack, *expected: tuple[str, str]) -> None:
    """Wait for the calls Slack refuses that an attack makes signoff make (an answer to a user
    id that is no member, say), and take them off the fake's list of errors."""
    await fake.wait_for(lambda: len(fake.errors) >= len(expected))
    assert [e[:2] for e in fake.errors] == list(expected), fake.errors
    fake.errors.clear()


async def press_and_answer(fake: FakeSlack, user: str, payload: dict[str, Any]) -> Message:
    """Deliver a press over Socket Mode; the ephemeral answer it got."""
    before = len(fake.ephemerals_for(user))
    await fake.deliver("interactive", payload)
    return await note(fake, user, before)


def digest_message(fake: FakeSlack, channel: str, count: int) -> Message | None:
    return next((m for m in fake.channel(channel) if f"{count} pending" in text_of(m)
                 and any(b["action_id"] == PREFIX + "review_each" for b in m.buttons())), None)  # fmt: skip


# mrkdwn as Slack reads it: what is outside code blocks and code spans is markup.
def markup_of(text: str) -> str:
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def texts(node: Any) -> Iterator[tuple[str, str]]:
    """Every text object in Block Kit (``(type, text)``): mrkdwn, plain_text."""
    if isinstance(node, dict):
        if node.get("type") in ("mrkdwn", "plain_text") and isinstance(node.get("text"), str):
            yield node["type"], node["text"]
        for value in node.values():
            yield from texts(value)
    elif isinstance(node, list):
        for value in node:
            yield from texts(value)


def injection_problems(where: str, fallback: str | None, blocks: Any) -> list[str]:
    """Where agent text (PWN) is markup, or a ``<`` Slack would parse as a mention or a link."""
    found = []
    pieces = [("mrkdwn", fallback)] if fallback is not None else []
    for kind, text in [*pieces, *texts(blocks)]:
        if "<" in text or ">" in text.replace("&gt;", ""):
            found.append(f"{where}: raw < or > in {kind}: {text[:200]!r}")
        if kind == "mrkdwn" and "PWN" in markup_of(text):
            found.append(f"{where}: agent text outside code in {kind}: {markup_of(text)[:300]!r}")
    return found


# --- ASGI, as a server hands a request over (the path exactly as given) ----------------------------


class Response:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self.read = 0  # bytes of the request body the application read
        self.raised: Exception | None = None  # raised by a background task, after the response

    def json(self) -> Any:
        return json.loads(self.body)


async def asgi(app: Any, method: str, path: str, body: bytes | Iterable[bytes] = b"",
               headers: dict[str, str] | None = None) -> Response:  # fmt: skip
    """One request to the ASGI ``app``, awaited to the end (background tasks included)."""
    out = Response()
    chunks = iter([body] if isinstance(body, bytes) else body)
    pending: list[bytes] = []
    more = True

    async def receive() -> dict[str, Any]:
        nonlocal more
        if not more:
            return {"type": "http.disconnect"}
        chunk = pending.pop() if pending else next(chunks, None)
        if chunk is None:
            more = False
            return {"type": "http.request", "body": b"", "more_body": False}
        out.read += len(chunk)
        following = next(chunks, None)
        if following is None:
            more = False
        else:
            pending.append(following)
        return {"type": "http.request", "body": chunk, "more_body": more}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out.status = message["status"]
            out.headers = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            out.body += message.get("body", b"")

    raw = [("host", "127.0.0.1:8000"), *((headers or {}).items())]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": urllib.parse.unquote(path), "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in raw],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {}}  # fmt: skip
    try:
        await app(scope, receive, send)
    except Exception as exc:  # after the response: what uvicorn would log as "Exception in ASGI application"
        if not out.status:
            raise
        out.raised = exc
    return out


@asynccontextmanager
async def served(app: App, token: str | None) -> AsyncIterator[str]:
    """``signoff serve``'s ASGI app on uvicorn, in this process (its lifespan runs: MCP answers)."""
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(build_http_app(app, token, port=port), log_level="warning",
                                           log_config=None, lifespan="on", timeout_graceful_shutdown=1))  # fmt: skip
    with sock:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                server.should_exit = server.force_exit = True


def form(fields: Iterable[tuple[str, str]]) -> bytes:
    return urllib.parse.urlencode(list(fields)).encode()


def signed(body: bytes, secret: str = SIGNING_SECRET, timestamp: int | str | None = None) -> dict[str, str]:
    return {"content-type": "application/x-www-form-urlencoded", **slack_signature(body, secret, timestamp)}


async def post_payload(server: Any, payload: Any, **sign: Any) -> Response:
    body = form([("payload", json.dumps(payload))])
    return await asgi(server, "POST", SLACK_PATH, body, signed(body, **sign))


# === presses ===========================================================================================


async def test_an_approver_pressing_another_approvers_channel_prompt_decides_as_themself(
    fake: FakeSlack, app: App
) -> None:
    """The rule: the presser is an approver of the request and the button is on one of its
    prompts. Alice (DM prompts) is also in bob's team channel; her press on bob's prompt there is
    her own decision — she is an approver and the message shows exactly that request — recorded
    as alice, never as bob."""
    rid = await file(app)
    bobs = await prompt_in(fake, C_TEAM, rid)
    await fake.press(U_ALICE, bobs, PREFIX + "approve")
    req = await app.service.wait(rid, 10)
    assert (req.status, req.decided_by, req.decided_via) == (Status.APPROVED, "alice", "slack")
    assert ("approved", "alice") in await events(app, rid)


async def test_a_bystander_in_the_channel_can_neither_decide_nor_look_nor_open_the_reason_form(
    fake: FakeSlack, app: App
) -> None:
    """Mallory, in bob's team channel, presses every button of a bob-only prompt, and alice
    (an approver of other requests) presses Approve: each is refused, audited, and no modal opens."""
    rid = await file(app, "bob_deploy", details={"secret_plan": "x" * 12_000})  # long: a Details button
    prompt = await prompt_in(fake, C_TEAM, rid)
    for action in ("approve", "reject", "reason", "details"):
        answer = await press_and_answer(fake, U_MALLORY, forged_press(fake, U_MALLORY, prompt, PREFIX + action))
        assert answer.text == NOT_AN_APPROVER
    answer = await press_and_answer(fake, U_ALICE, forged_press(fake, U_ALICE, prompt, PREFIX + "approve"))
    assert answer.text == NOT_AN_APPROVER
    assert await status(app, rid) is Status.PENDING
    assert not fake.views and not fake.sent("views.open")
    refused = await refusals(app, rid)
    assert [(r["actor"], r["action"]) for r in refused] == [
        (f"slack:{U_MALLORY}", "approve"), (f"slack:{U_MALLORY}", "reject"), (f"slack:{U_MALLORY}", "reason"),
        (f"slack:{U_MALLORY}", "details"), (f"slack:{U_ALICE}", "approve"),
    ]  # fmt: skip


async def test_request_a_value_on_request_bs_prompt_is_refused_and_audited(fake: FakeSlack, app: App) -> None:
    """Alice replays A's Approve (a genuine value) on B's prompt: nothing is decided, and the
    refusal is on A's record."""
    a, b = await file(app, "bob_a", "A"), await file(app, summary="B")
    pa, pb = await prompt_in(fake, C_TEAM, a), await prompt_in(fake, dm_id(U_ALICE), b)
    payload = forged_press(fake, U_ALICE, pb, PREFIX + "approve", value=pa.find(PREFIX + "approve")["value"])
    answer = await press_and_answer(fake, U_ALICE, payload)
    assert NOT_HERE in answer.text
    assert (await status(app, a), await status(app, b)) == (Status.PENDING, Status.PENDING)
    assert [r["why"] for r in await refusals(app, a)] == ["the button is not on a prompt of this request"]


async def test_a_value_signed_for_other_content_or_another_kind_decides_nothing(fake: FakeSlack, app: App) -> None:
    """With the key itself: a request value signed for another action digest, a grant/digest/modal
    value under a request's action id, an action_id that disagrees with the value — nothing."""
    rid = await file(app)
    prompt = await prompt_in(fake, dm_id(U_ALICE), rid)
    signer = await leaked_signer(app)
    req = await app.service.get(rid)
    other = await app.service.get(await file(app, details={"other": "content"}))
    assert other.action_digest != req.action_digest
    forged = [
        signer.request("approve", rid, other.action_digest),  # the right request, other content
        signer.request("approve", rid, None),  # no digest at all
        signer.grant("grt_0123456789ab"),
        signer.digest("approve_all", 1, U_ALICE),
        signer.modal(rid, req.action_digest, U_ALICE, f"{prompt.channel}:{prompt.ts}"),
        "q:approve:" + rid + ":" + "A" * 43,
        "q:approve:" + rid.upper() + ":" + signer.request("approve", rid, req.action_digest).rsplit(":", 1)[1],
    ]
    for i, value in enumerate(forged):
        payload = forged_press(fake, U_ALICE, prompt, PREFIX + "approve", value=value)
        answer = await press_and_answer(fake, U_ALICE, payload)
        assert answer.text in (NOT_VALID, OUT_OF_DATE), (i, answer.text)
    # A reject value under the Approve button's action_id does what the value says: reject.
    payload = forged_press(fake, U_ALICE, prompt, PREFIX + "approve", value=prompt.find(PREFIX + "reject")["value"])
    await fake.deliver("interactive", payload)
    assert (await app.service.wait(rid, 10)).status is Status.REJECTED


async def test_a_press_on_a_message_that_does_not_show_the_request_is_refused(fake: FakeSlack, app: App) -> None:
    """A genuine value, but the press claims a message that is no prompt of the request (an
    unknown message; one whose blocks show only the request id; the press's own message id in
    another channel): refused and audited."""
    rid = await file(app, "bob_x")
    prompt = await prompt_in(fake, C_TEAM, rid)
    value = prompt.find(PREFIX + "approve")["value"]
    for channel, ts, blocks in [
        (C_TEAM, "1699999999.000001", [{"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}]),
        (C_TEAM, "1699999999.000002", [{"type": "section", "text": {"type": "mrkdwn", "text": f"`{rid}`"}}]),
        (dm_id(U_BOB), prompt.ts, [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]),  # prompt's ts
    ]:
        payload = forged_press(fake, U_BOB, prompt, PREFIX + "approve", value=value)
        payload["container"].update(channel_id=channel, message_ts=ts)
        payload["channel"]["id"] = channel
        payload["message"]["ts"], payload["message"]["blocks"] = ts, blocks
        answer = await press_and_answer(fake, U_BOB, payload)
        assert NOT_HERE in answer.text
    assert await status(app, rid) is Status.PENDING
    assert len(await refusals(app, rid)) == 3


async def test_a_bystanders_refused_press_does_not_make_another_message_a_prompt(fake: FakeSlack, app: App) -> None:
    """HOLE (low; needs a payload whose ``message`` is not what the message shows). Mallory, in
    the team channel, copies a genuine Approve value of a bob-only prompt and presses it "on"
    another message of that channel, handing back blocks that show the request's ID and digest.
    She is refused — but ``Interactions._on_prompt`` (adapters/slack/interactions.py) records
    the message as a prompt of the request *before* ``check_approver`` runs, so from then on
    the outbox edits that message (a digest, a grant notice, anything the bot posted there)
    into this request's prompt or outcome. Telegram records an untracked prompt only after the
    approver and pending checks (adapters/telegram/updates.py ``_request_press``)."""
    rid = await file(app, "bob_x")
    prompt = await prompt_in(fake, C_TEAM, rid)
    other = Message(C_TEAM, "1700009999.000001", "the team's digest", [])
    fake.messages[C_TEAM].append(other)
    payload = fake.block_actions_payload(U_MALLORY, prompt, PREFIX + "approve")
    payload["container"]["message_ts"] = payload["message"]["ts"] = other.ts
    answer = await press_and_answer(fake, U_MALLORY, payload)
    assert answer.text == NOT_AN_APPROVER and await status(app, rid) is Status.PENDING
    core = ChannelService(app.service, "slack")
    assert await core.outbox.request_on(f"{C_TEAM}:{other.ts}") is None, "a bystander's refused press recorded a prompt"


async def test_a_press_on_an_ephemeral_copy_or_with_no_message_is_refused(fake: FakeSlack, app: App) -> None:
    """``container.is_ephemeral`` (a ``/signoff show`` copy, say) and a press with no container
    or message at all are not on a prompt: refused, audited."""
    rid = await file(app, "bob_x")
    prompt = await prompt_in(fake, C_TEAM, rid)
    ephemeral = fake.block_actions_payload(U_BOB, prompt, PREFIX + "approve")
    ephemeral["container"]["is_ephemeral"] = True
    nowhere = fake.block_actions_payload(U_BOB, prompt, PREFIX + "approve")
    for key in ("container", "channel", "message"):
        del nowhere[key]
    for payload in (ephemeral, nowhere):
        answer = await press_and_answer(fake, U_BOB, payload)
        assert NOT_HERE in answer.text
    assert await status(app, rid) is Status.PENDING
    assert len(await refusals(app, rid)) == 2


async def test_a_slack_member_id_that_is_an_approvers_telegram_id_is_nobody(fake: FakeSlack, app: App) -> None:
    """A press whose Slack ``user.id`` is alice's (or bob's) Telegram user id is a bystander's, and
    the seam's Telegram side does not know alice's Slack member id either."""
    rid = await file(app)
    prompt = await prompt_in(fake, dm_id(U_ALICE), rid)
    for forged_user in (str(TG_ALICE), str(TG_BOB)):
        payload = fake.block_actions_payload(U_ALICE, prompt, PREFIX + "approve")
        payload["user"]["id"] = forged_user
        await fake.deliver("interactive", payload)
    await slack_refused(fake, ("chat.postEphemeral", "user_not_found"), ("chat.postEphemeral", "user_not_found"))
    assert await status(app, rid) is Status.PENDING
    assert sorted(r["actor"] for r in await refusals(app, rid)) == [f"slack:{TG_ALICE}", f"slack:{TG_BOB}"]
    req = await app.service.get(rid)
    slack, telegram = ChannelService(app.service, "slack"), ChannelService(app.service, "telegram")
    assert slack.approver_of(req, str(TG_ALICE)) is None and slack.configured(str(TG_BOB)) is None
    assert telegram.approver_of(req, U_ALICE) is None and telegram.configured(U_BOB) is None
    assert slack.approver_of(req, U_ALICE) == "alice" and telegram.approver_of(req, str(TG_ALICE)) == "alice"


async def test_a_grant_button_for_an_option_the_route_does_not_offer_grants_nothing(fake: FakeSlack, app: App) -> None:
    """With the key: ``grant1``/``grant2`` on a route with one grant option, ``grant0`` on a route
    with none — no decision, no grant."""
    bash = await file(app, "Bash", "run tests", details={"command": "npm test"})
    plain = await file(app, "bob_plain")
    pb, pp = await prompt_in(fake, C_TEAM, bash), await prompt_in(fake, C_TEAM, plain)
    signer = await leaked_signer(app)
    for rid, prompt, action in ((bash, pb, "grant1"), (bash, pb, "grant2"), (plain, pp, "grant0")):
        value = signer.request(action, rid, (await app.service.get(rid)).action_digest)
        payload = forged_press(fake, U_BOB, prompt, PREFIX + "approve", value=value)
        payload["actions"][0]["action_id"] = PREFIX + action
        answer = await press_and_answer(fake, U_BOB, payload)
        assert answer.text == NOT_VALID
    assert (await status(app, bash), await status(app, plain)) == (Status.PENDING, Status.PENDING)
    assert await app.service.list_grants() == []


# === the reason modal =================================================================================


async def test_reason_modal_metadata_forged_moved_or_altered_rejects_nothing(fake: FakeSlack, app: App) -> None:
    """Alice opens the reject-with-reason form on request A. Submitted by bob; with its metadata
    moved to request B, to another message, or one character changed; under another callback_id
    — nothing is rejected. With the key, metadata made for B but bound to A's prompt message is
    refused (not on B's prompt, audited), and metadata made for mallory is refused (bystander)."""
    a, b = await file(app, summary="A"), await file(app, summary="B", details={"b": "other content"})
    pa, pb = await prompt_in(fake, dm_id(U_ALICE), a), await prompt_in(fake, dm_id(U_ALICE), b)
    await fake.press(U_ALICE, pa, PREFIX + "reason")
    view = await fake.wait_for(lambda: next(iter(fake.views.values()), None))
    meta = view.private_metadata
    assert meta.startswith(f"m:{a}:")
    signer = await leaked_signer(app)
    req_a, req_b = await app.service.get(a), await app.service.get(b)
    where_a = f"{pa.channel}:{pa.ts}"

    def altered(i: int) -> str:
        return meta[:i] + ("0" if meta[i] != "0" else "1") + meta[i + 1 :]

    attempts: list[tuple[str, str]] = [
        (U_BOB, meta),
        (U_ALICE, meta.replace(a, b)),
        (U_ALICE, meta.replace(f"{pa.channel}:{pa.ts}", f"{pb.channel}:{pb.ts}")),
        (U_ALICE, altered(len(f"m:{a}:") + 2)),  # the message part
        (U_ALICE, altered(len(meta) - 1)),  # the content MAC
        (U_ALICE, altered(len(meta) - 45)),  # the user MAC
        (U_ALICE, signer.modal(b, req_b.action_digest, U_ALICE, where_a)),  # B, on A's prompt
        (U_ALICE, signer.modal(a, req_b.action_digest, U_ALICE, where_a)),  # A, B's content
        (U_MALLORY, signer.modal(a, req_a.action_digest, U_MALLORY, where_a)),  # a bystander's own
    ]
    for user, metadata in attempts:
        payload = fake.view_submission_payload(user, view.id, {"reason": "PWN no"})
        payload["view"]["private_metadata"] = metadata
        ack = await fake._ack_of(await fake.deliver("interactive", payload), 3)
        assert ack.get("payload", {}).get("response_action") == "errors", (attempts.index((user, metadata)), ack)
    genuine = fake.view_submission_payload(U_ALICE, view.id, {"reason": "not today"})
    other_callback = fake.view_submission_payload(U_ALICE, view.id, {"reason": "no"})
    other_callback["view"]["callback_id"] = "something:else"
    await fake._ack_of(await fake.deliver("interactive", other_callback), 3)
    assert (await status(app, a), await status(app, b)) == (Status.PENDING, Status.PENDING)
    assert [r["why"] for r in await refusals(app, b)] == ["the modal is not from a prompt of this request"]
    assert [(r["actor"], r["why"]) for r in await refusals(app, a)] == [
        (f"slack:{U_MALLORY}", "not an approver of this request")
    ]
    # The genuine submission still works, and rejects A alone.
    ack = await fake._ack_of(await fake.deliver("interactive", genuine), 3)
    assert "payload" not in ack
    assert (await app.service.wait(a, 10)).status is Status.REJECTED and await status(app, b) is Status.PENDING


async def test_note_modal_metadata_for_a_bystander_or_the_wrong_kind_approves_nothing(
    fake: FakeSlack, app: App
) -> None:
    """With the key: note metadata made for mallory (a bystander) is refused and audited; reason
    metadata signed under the note modal's callback approves nothing. The genuine note modal then
    approves, and its hostile note is shown only inside code, in the outcome of every prompt."""
    rid = await file(app)
    pa, pb = await prompt_in(fake, dm_id(U_ALICE), rid), await prompt_in(fake, C_TEAM, rid)
    await fake.press(U_ALICE, pa, PREFIX + "note")
    view = await fake.wait_for(lambda: next(iter(fake.views.values()), None))
    signer = await leaked_signer(app)
    req = await app.service.get(rid)
    where = f"{pa.channel}:{pa.ts}"
    for user, metadata in (
        (U_MALLORY, signer.modal(rid, req.action_digest, U_MALLORY, where, NOTE_MODAL)),
        (U_ALICE, signer.modal(rid, req.action_digest, U_ALICE, where, REASON_MODAL)),
    ):
        payload = fake.view_submission_payload(user, view.id, {"note": "PWN yes"})
        payload["view"]["private_metadata"] = metadata
        ack = await fake._ack_of(await fake.deliver("interactive", payload), 3)
        assert ack["payload"]["response_action"] == "errors"
    assert await status(app, rid) is Status.PENDING
    assert [(r["actor"], r["why"], r["action"]) for r in await refusals(app, rid)] == [
        (f"slack:{U_MALLORY}", "not an approver of this request", "note")
    ]
    ack = await fake.submit_view(U_ALICE, view.id, {"note": HOSTILE_LINES})
    assert "payload" not in ack
    assert (await app.service.wait(rid, 10)).status is Status.APPROVED
    await fake.wait_for(lambda: not pa.buttons() and not pb.buttons())
    problems = []
    for where_shown, message in (("DM outcome", pa), ("channel outcome", pb)):
        problems += injection_problems(where_shown, message.text, message.blocks)
    assert not problems, problems


# === slash commands ==================================================================================


async def test_show_reveals_nothing_to_a_bystander_or_to_an_approver_of_other_requests(
    fake: FakeSlack, app: App
) -> None:
    """``/signoff show req_…`` for a bob-only request, asked by mallory and by alice: the same
    answer as for an id that does not exist (no probing), and none of the request's content."""
    rid = await file(
        app, "bob_secret_op", "SUMMARY-SECRET", details={"k": "DETAILS-SECRET"}, metadata={"m": "META-SECRET"}
    )
    answers = []
    for user, asked in ((U_MALLORY, rid), (U_ALICE, rid), (U_MALLORY, "req_000000000000"), (U_ALICE, " " + rid + " x")):
        ack = await fake.slash(user, C_TEAM, "/signoff", f"show {asked}")
        answers.append(ack["payload"])
    assert all(a == answers[0] for a in answers), answers
    shown = json.dumps(answers)
    assert "SECRET" not in shown and "bob_secret_op" not in shown
    assert not fake.sent("views.open") and not fake.views  # no details modal for them either
    mine = await fake.slash(U_BOB, C_TEAM, "/signoff", f"show {rid}")
    assert "SUMMARY-SECRET" in json.dumps(mine["payload"]) and not any(
        b.get("type") == "actions" for b in mine["payload"]["blocks"]
    )


async def test_pending_and_grants_by_a_bystander_send_nothing(fake: FakeSlack, app: App) -> None:
    """``/signoff pending`` by mallory (in the team channel) sends nothing anywhere; by alice it
    sends only her requests, and to her DM — never into the channel it was typed in."""
    theirs, mine = await file(app, "bob_only"), await file(app, "bulk_one")
    await prompt_in(fake, C_TEAM, theirs)
    await prompt_in(fake, dm_id(U_ALICE), mine)
    ack = await fake.slash(U_MALLORY, C_TEAM, "/signoff", "pending")
    assert ack["payload"]["text"] == "Nothing is waiting for you."
    ack = await fake.slash(U_MALLORY, C_TEAM, "/signoff", "grants")
    assert "not an approver" in ack["payload"]["text"]
    in_channel = len(fake.channel(C_TEAM))
    ack = await fake.slash(U_ALICE, C_TEAM, "/signoff", "pending")
    assert "1 request(s)" in ack["payload"]["text"]
    await fake.wait_for(lambda: len([m for m in fake.dm(U_ALICE) if mine in text_of(m) and m.buttons()]) >= 2)
    assert len(fake.channel(C_TEAM)) == in_channel and not fake.dm(U_MALLORY)
    assert not [m for m in fake.dm(U_ALICE) if theirs in text_of(m)]


# === digests =========================================================================================


async def a_digest(fake: FakeSlack, app: App, action: str, channel: str) -> tuple[list[str], Message]:
    """Three requests to one place (threshold 1: two prompts, then a digest of all three)."""
    ids = [await file(app, f"{action}_{i}", f"item {i}") for i in range(3)]
    found = await fake.wait_for(lambda: digest_message(fake, channel, 3))
    return ids, found


async def test_digest_buttons_replayed_on_another_place_render_or_channel_decide_nothing(
    fake: FakeSlack, app: App
) -> None:
    """Alice's DM digest and bob's team-channel digest. Alice's Approve all replayed on bob's
    digest (by bob); with the key: a value for alice's render but bob's address, a value naming
    a Telegram render id (render ids are shared across channels in ``digest_renders``), bob's
    own value once a refresh superseded its render, a Reject all value under Approve all —
    none decides anything; the newest render's value does."""
    alices, dm_digest = await a_digest(fake, app, "bulk", dm_id(U_ALICE))
    bobs, team_digest = await a_digest(fake, app, "teambulk", C_TEAM)
    signer = await leaked_signer(app)
    core = ChannelService(app.service, "slack")
    alice_render = int(dm_digest.find(PREFIX + "approve_all")["value"].split(":")[2])
    team_render = int(team_digest.find(PREFIX + "approve_all")["value"].split(":")[2])
    assert await core.digests.address_of(alice_render) == U_ALICE
    old = team_digest.find(PREFIX + "approve_all")["value"]
    newer = await core.digests.new_render(C_TEAM, f"{C_TEAM}:{team_digest.ts}", bobs)  # a refresh, as the outbox makes
    telegram = DigestBook(app.store, "telegram", app.config, app.service.clock)
    tg_render = await telegram.new_render(str(TG_BOB), "77", alices + bobs)
    await telegram.rendered(str(TG_BOB), tg_render, "77", pending=True)

    attempts = [
        dm_digest.find(PREFIX + "approve_all")["value"],  # alice's, as is
        signer.digest("approve_all", alice_render, C_TEAM),  # alice's render, bob's place
        signer.digest("approve_all", tg_render, C_TEAM),  # a Telegram render, bob's place
        signer.digest("approve_all", tg_render, str(TG_BOB)),  # a Telegram render, its own place
        old,  # bob's own, but the render before the newest
        signer.digest("approve_all", team_render, U_BOB),  # bob's render, bob's DM as the place
        team_digest.find(PREFIX + "reject_all")["value"],  # the right message, another button's value
    ]
    for value in attempts:
        answer = await press_and_answer(fake, U_BOB, forged_press(fake, U_BOB, team_digest, PREFIX + "approve_all",
                                                                  value=value))  # fmt: skip
        assert answer.text in (NOT_VALID, OUT_OF_DATE), answer.text
    assert [await status(app, r) for r in alices + bobs] == [Status.PENDING] * 6
    # The newest render's value, on its own message, still works (bob approves his three).
    value = signer.digest("approve_all", newer, C_TEAM)
    await fake.deliver("interactive", forged_press(fake, U_BOB, team_digest, PREFIX + "approve_all", value=value))
    for rid in bobs:
        assert (await app.service.wait(rid, 10)).status is Status.APPROVED
    assert [await status(app, r) for r in alices] == [Status.PENDING] * 3


async def test_a_bystander_cannot_bulk_decide_or_take_items_out_of_a_channel_digest(fake: FakeSlack, app: App) -> None:
    """Mallory and alice (an approver, but not of these) press Approve all, Reject all and
    Review each on bob's team-channel digest: nothing is decided or taken out; each bulk
    refusal is audited on every listed request."""
    ids, found = await a_digest(fake, app, "teambulk", C_TEAM)
    for user in (U_MALLORY, U_ALICE):
        for action in ("approve_all", "reject_all"):
            answer = await press_and_answer(fake, user, forged_press(fake, user, found, PREFIX + action))
            assert answer.text == "You are not an approver of every request in this digest."
        answer = await press_and_answer(fake, user, forged_press(fake, user, found, PREFIX + "review_each"))
        assert answer.text == "None of these requests is yours to decide."
    assert [await status(app, r) for r in ids] == [Status.PENDING] * 3
    core = ChannelService(app.service, "slack")
    assert len(await core.digests.items(C_TEAM)) == 3
    for rid in ids:
        assert sorted((r["actor"], r["action"]) for r in await refusals(app, rid)) == sorted(
            [(f"slack:{u}", a) for u in (U_MALLORY, U_ALICE) for a in ("approve_all", "reject_all")]
        )


async def test_approve_all_forged_for_routes_without_bulk_approval_is_refused(fake: FakeSlack, app: App) -> None:
    """The digest of default-route requests shows no Approve all; with the key, the value is
    made anyway: refused as a whole and audited on each."""
    ids, found = await a_digest(fake, app, "plain", dm_id(U_ALICE))
    assert not any(b["action_id"] == PREFIX + "approve_all" for b in found.buttons())
    render = int(found.find(PREFIX + "reject_all")["value"].split(":")[2])
    value = (await leaked_signer(app)).digest("approve_all", render, U_ALICE)
    payload = forged_press(fake, U_ALICE, found, PREFIX + "reject_all", value=value)
    payload["actions"][0]["action_id"] = PREFIX + "approve_all"
    answer = await press_and_answer(fake, U_ALICE, payload)
    assert "do not allow approving in bulk" in answer.text
    assert [await status(app, r) for r in ids] == [Status.PENDING] * 3
    for rid in ids:
        assert [r["action"] for r in await refusals(app, rid)] == ["approve_all"]


# === grants ==========================================================================================


async def test_revoke_by_a_bystander_or_an_approver_of_another_route_is_refused_and_audited(
    fake: FakeSlack, app: App
) -> None:
    """HOLE (audit). Bob approves ``npm test`` for 30 minutes in the team channel; the grant's
    notice, with its Revoke button, is there for everyone in the channel. Mallory (no approver)
    and alice (an approver, not of the tests route) press Revoke: the grant stays live — but
    neither refusal is audited. ``ChannelService.revoke`` (server/channels.py) raises
    NotAllowedError without ``refuse``-ing, although its module promises that every refusal is
    a ``refused`` audit event (Telegram's revoke goes through the same method)."""
    rid = await file(app, "Bash", "run the tests", details={"command": "npm test"})
    prompt = await prompt_in(fake, C_TEAM, rid)
    await fake.press(U_BOB, prompt, PREFIX + "grant0")
    notice = await fake.wait_for(
        lambda: next((m for m in fake.channel(C_TEAM) if "Grant" in m.text and m.buttons()), None)
    )
    [grant] = await app.service.list_grants()
    for user in (U_MALLORY, U_ALICE):
        answer = await press_and_answer(fake, user, forged_press(fake, user, notice, PREFIX + "revoke"))
        assert answer.text == "Only the approver who made it or an approver of its route can revoke it."
    assert [g.id for g in await app.service.list_grants()] == [grant.id]
    refused = [r for r in await refusals(app, rid) if r.get("action") == "revoke"]
    assert {r["actor"] for r in refused} in (
        {"alice", f"slack:{U_MALLORY}"},
        {f"slack:{U_ALICE}", f"slack:{U_MALLORY}"},
    ), "a refused revoke left no trace in the audit"


# === who is an approver, over time ===================================================================


async def test_an_approver_removed_or_reassigned_in_the_config_cannot_decide_old_requests(
    fake: FakeSlack, write_config: Callable[..., Path]
) -> None:
    """Filed while U0BOB was bob; then the config gives bob's Slack member id to someone else
    ("robert"). U0BOB's press on bob's old prompt, and ``/signoff show``, are refused: the route
    snapshot *and* the current config must agree."""
    first = load_config(write_config(config_text(fake)))
    async with open_app(first) as app:
        await fake.wait_for(lambda: fake.live_connections >= 1)
        rid = await file(app, "bob_deploy")
        prompt = await prompt_in(fake, C_TEAM, rid)
    await fake.wait_for(lambda: fake.live_connections == 0)
    moved = config_text(fake, bob="U0BOBNEW", extra=f'[approvers.robert]\nslack_user_id = "{U_BOB}"\n')
    async with open_app(load_config(write_config(moved))) as app:
        await fake.wait_for(lambda: fake.live_connections >= 1)
        answer = await press_and_answer(fake, U_BOB, forged_press(fake, U_BOB, prompt, PREFIX + "approve"))
        assert answer.text == NOT_AN_APPROVER
        ack = await fake.slash(U_BOB, C_TEAM, "/signoff", f"show {rid}")
        assert "No such request" in ack["payload"]["text"]
        assert await status(app, rid) is Status.PENDING
        assert [r["actor"] for r in await refusals(app, rid)] == [f"slack:{U_BOB}"]  # not bob, not robert


async def test_an_escalation_approver_decides_only_once_the_request_has_escalated(
    fake: FakeSlack, write_config: Callable[..., Path]
) -> None:
    """Bob joins the escalating route after 10 minutes. Before that his press (on alice's prompt)
    is a bystander's and ``/signoff show`` shows him nothing; after, he decides."""
    clock = Clock()
    async with open_app(load_config(write_config(config_text(fake))), clock=clock) as app:
        await fake.wait_for(lambda: fake.live_connections >= 1)
        rid = await file(app, "esc_deploy")
        alices = await prompt_in(fake, dm_id(U_ALICE), rid)
        await fake.deliver("interactive", forged_press(fake, U_BOB, alices, PREFIX + "approve"))
        await slack_refused(fake, ("chat.postEphemeral", "user_not_in_channel"))  # his answer: he is not in her DM
        assert [(r["actor"], r["why"]) for r in await refusals(app, rid)] == [
            (f"slack:{U_BOB}", "not an approver of this request")
        ]
        assert "No such request" in (await fake.slash(U_BOB, C_TEAM, "/signoff", f"show {rid}"))["payload"]["text"]
        clock.advance(10 * 60 + 1)
        await app.service.sweep()
        bobs = await prompt_in(fake, C_TEAM, rid)
        assert rid in json.dumps((await fake.slash(U_BOB, C_TEAM, "/signoff", f"show {rid}"))["payload"])
        await fake.press(U_BOB, bobs, PREFIX + "approve")
        req = await app.service.wait(rid, 10)
        assert (req.status, req.decided_by) == (Status.APPROVED, "bob")


# === HTTP mode =======================================================================================


async def test_http_requests_that_slack_did_not_sign_just_now_are_refused_before_parsing(
    fake: FakeSlack, http_app: App
) -> None:
    """Unsigned; signed with another secret; 5 min 1 s old or ahead; a timestamp that is no
    number; the body changed after signing; the signature of another body; a v1 signature;
    signature headers doubled — 401, nothing done."""
    server = build_http_app(http_app, HTTP_TOKEN)
    rid = await file(http_app)
    prompt = await prompt_in(fake, dm_id(U_ALICE), rid)
    body = form([("payload", json.dumps(fake.block_actions_payload(U_ALICE, prompt, PREFIX + "approve")))])
    now = int(time.time())
    good = signed(body)
    other_body = form([("payload", json.dumps({"type": "block_actions"}))])
    cases: list[tuple[bytes, dict[str, str]]] = [
        (body, {"content-type": "application/x-www-form-urlencoded"}),
        (body, signed(body, "wrong-secret")),
        (body, signed(body, timestamp=now - 301)),
        (body, signed(body, timestamp=now + 301)),
        (body, signed(body, timestamp="1e9")),
        (body, signed(body, timestamp=f"{now}.0")),
        (body, signed(body, timestamp="")),
        (body + b"&x=1", good),
        (body.replace(b"approve", b"reject"), good),
        (body, signed(other_body)),
        (body, {**good, "X-Slack-Signature": good["X-Slack-Signature"].replace("v0=", "v1=")}),
        (body, {**good, "X-Slack-Signature": good["X-Slack-Signature"].upper()}),
        (body, {"content-type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": str(now)}),
    ]
    for i, (raw, headers) in enumerate(cases):
        answer = await asgi(server, "POST", SLACK_PATH, raw, headers)
        assert answer.status == 401, (i, answer.status, answer.body)
        assert "www-authenticate" not in answer.headers  # the signature's refusal, not the bearer token's
    assert await status(http_app, rid) is Status.PENDING
    assert not fake.sent("chat.postEphemeral")


async def test_signed_but_malformed_http_bodies_do_nothing_and_break_nothing(fake: FakeSlack, http_app: App) -> None:
    """Validly signed: a payload that is not JSON, JSON that is not an object, junk shapes
    (no user, a user that is a string, actions that are not a list, a container that is text,
    a value that is a number or 1 MB), two ``payload`` fields at once, a JSON body — nothing is
    decided, at most one of two doubled payloads counts, and a good press still works after."""
    server = build_http_app(http_app, HTTP_TOKEN)
    a, b = await file(http_app, summary="A"), await file(http_app, summary="B")
    pa, pb = await prompt_in(fake, dm_id(U_ALICE), a), await prompt_in(fake, dm_id(U_ALICE), b)
    good = fake.block_actions_payload(U_ALICE, pa, PREFIX + "approve")

    def variant(**changes: Any) -> dict[str, Any]:
        payload = json.loads(json.dumps(good))
        for key, value in changes.items():
            if value is None:
                payload.pop(key, None)
            else:
                payload[key] = value
        return payload

    value = good["actions"][0]
    junk: list[Any] = [
        [good], "a string", 42, None,
        variant(user=None), variant(user=U_ALICE), variant(user={"id": 7}), variant(user={"id": ""}),
        variant(actions="approve"), variant(actions=[{**value, "value": 12}]), variant(actions=[{**value, "value": "x" * 1_000_000}]),
        variant(actions=[{**value, "action_id": "approve"}]), variant(container="C0TEAM:1.2"), variant(type="view_submission"),
        variant(type="block_actions ", user={"id": U_ALICE}),
    ]  # fmt: skip
    for payload in junk:
        answer = await post_payload(server, payload)
        assert answer.status in (200, 400), answer.status
    await slack_refused(fake, ("chat.postEphemeral", "user_not_found"))  # the answer to user "7"
    not_json = form([("payload", "{not json")])
    assert (await asgi(server, "POST", SLACK_PATH, not_json, signed(not_json))).status == 400
    as_json = json.dumps(good).encode()
    assert (await asgi(server, "POST", SLACK_PATH, as_json, signed(as_json))).status == 400
    assert (await status(http_app, a), await status(http_app, b)) == (Status.PENDING, Status.PENDING)
    doubled = form([("payload", json.dumps(fake.block_actions_payload(U_ALICE, pb, PREFIX + "reject"))),
                    ("payload", json.dumps(good))])  # fmt: skip
    assert (await asgi(server, "POST", SLACK_PATH, doubled, signed(doubled))).status == 200
    decided = [s for s in (await status(http_app, a), await status(http_app, b)) if s is not Status.PENDING]
    assert len(decided) == 1
    still = fake.block_actions_payload(U_ALICE, pa if decided == [Status.REJECTED] else pb, PREFIX + "approve")
    assert (await post_payload(server, still)).status == 200
    assert Status.APPROVED in (await status(http_app, a), await status(http_app, b))


async def test_the_bearer_token_exemption_covers_the_slack_path_alone(fake: FakeSlack, http_app: App) -> None:
    """Without the bearer token: ``/slack/events/../mcp``, ``/slack/events/``, ``/slack/eventsX``,
    ``//slack/events``, an upper-case or encoded variant — each is the bearer token's 401. The
    Slack path itself answers other methods with no handler and nothing of MCP."""
    server = build_http_app(http_app, HTTP_TOKEN)
    hello = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
    mcp_headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    for path in ("/mcp", "/slack/events/../mcp", "/slack/events/", "/slack/eventsX", "/slack/events/x",
                 "//slack/events", "/SLACK/EVENTS", "/slack/events%2F..%2Fmcp", "/slack/events/%2e%2e/mcp",
                 "/slack/./events", "/metrics"):  # fmt: skip
        answer = await asgi(server, "POST", path, hello, mcp_headers)
        assert answer.status == 401 and "www-authenticate" in answer.headers, (path, answer.status)
        answer = await asgi(server, "GET", path, b"", {})
        assert answer.status == 401, (path, answer.status)
    for method in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS"):
        answer = await asgi(server, method, SLACK_PATH, hello, mcp_headers)
        assert answer.status in (401, 404, 405), (method, answer.status)  # never MCP's or /metrics' content
        assert b"jsonrpc" not in answer.body and b"tools" not in answer.body
    assert (await asgi(server, "POST", SLACK_PATH, hello, mcp_headers)).status == 401  # unsigned


async def test_a_huge_unsigned_body_is_refused_without_being_read(fake: FakeSlack, http_app: App) -> None:
    """HOLE (DoS). The Slack path is the one path the bearer token does not guard, and its
    endpoint (adapters/slack/channel.py ``http_endpoint``: ``body = await request.body()``)
    reads the whole body into memory before it looks at the signature, with no limit: anyone
    who can reach ``signoff serve`` (HTTP mode needs it public) can make it buffer gigabytes.
    Here 32 MiB, unsigned, with an honest Content-Length: it should be refused (413) having
    read at most what a Slack payload can be (the MCP side's own cap is 4 MiB)."""
    server = build_http_app(http_app, HTTP_TOKEN)
    total, chunk = 32 * 1024 * 1024, b"payload=" + b"A" * (64 * 1024 - 8)
    chunks = (chunk for _ in range(total // len(chunk)))
    headers = {"content-type": "application/x-www-form-urlencoded", "content-length": str(total),
               "X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=" + "0" * 64}  # fmt: skip
    answer = await asgi(server, "POST", SLACK_PATH, chunks, headers)
    assert 400 <= answer.status < 500
    assert answer.read <= 4 * 1024 * 1024 + len(chunk), f"read {answer.read / 2**20:.0f} MiB of an unsigned body"


@pytest.mark.parametrize("path", ["/metrics", "/mcp"])
async def test_a_slack_path_on_one_of_signoffs_own_paths_does_not_open_it(
    fake: FakeSlack, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """HOLE (low; a configuration the config accepts). ``[slack] path`` may be any path, and
    ``BearerAuth`` exempts it for *every* method (server/http.py ``build_http_app``:
    ``open_paths={path for path, _ in app.routes}``), while the Slack route answers only POST: a
    GET or DELETE falls through to the route that is really there. With ``path = "/metrics"``
    the metrics are served without the token; with ``path = "/mcp"`` GET and DELETE reach the MCP
    transport without it. Either the config refuses such a path, or only the Slack POST skips
    the bearer token."""
    from signoff.server.errors import ConfigError

    monkeypatch.delenv("SIGNOFF_SLACK_APP_TOKEN")
    monkeypatch.setenv("SIGNOFF_SLACK_SIGNING_SECRET", SIGNING_SECRET)
    try:
        config = load_config(write_config(config_text(fake, slack=f'mode = "http"\npath = "{path}"')))
    except ConfigError:
        return  # refused: fine
    answers = {}
    async with open_app(config) as app, served(app, HTTP_TOKEN) as base, httpx.AsyncClient(trust_env=False) as http:
        for method in ("GET", "HEAD", "DELETE"):
            answer = await http.request(method, base + path, headers={"accept": "application/json, text/event-stream"})
            answers[method] = (answer.status_code, answer.text[:80])
    opened = {method: answer for method, answer in answers.items() if answer[0] != 401}
    assert not opened, f"{path} without the bearer token: {opened}"


async def test_http_mode_without_a_signing_secret_refuses_everything(
    fake: FakeSlack, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No signing secret set: every POST to the Slack path is refused (signed with anything, or
    with the empty secret), nothing is parsed, nothing decided."""
    monkeypatch.delenv("SIGNOFF_SLACK_APP_TOKEN")
    monkeypatch.delenv("SIGNOFF_SLACK_SIGNING_SECRET", raising=False)
    async with open_app(load_config(write_config(config_text(fake, slack='mode = "http"')))) as app:
        server = build_http_app(app, HTTP_TOKEN)
        rid = await file(app)
        prompt = await prompt_in(fake, dm_id(U_ALICE), rid)
        payload = fake.block_actions_payload(U_ALICE, prompt, PREFIX + "approve")
        for secret in ("", SIGNING_SECRET, "anything"):
            assert (await post_payload(server, payload, secret=secret)).status in (401, 503)
        command = form(fake.slash_payload(U_ALICE, dm_id(U_ALICE), "/signoff", "pending").items())
        assert (await asgi(server, "POST", SLACK_PATH, command, signed(command, ""))).status in (401, 503)
        assert await status(app, rid) is Status.PENDING
        assert not fake.sent("chat.postEphemeral")


# === secrets in logs =================================================================================


@contextmanager
def everything_logged() -> Iterator[list[str]]:
    """signoff's own log setup at DEBUG (text and JSON formatters), slack_sdk's loggers at DEBUG."""
    import io

    root = logging.getLogger()
    saved = (root.level, list(root.handlers), {n: logging.getLogger(n).level for n in ("slack_sdk", "aiohttp")})
    text, js = io.StringIO(), io.StringIO()
    setup_logs(logging.DEBUG, stream=js, fmt="json")
    json_handler = root.handlers[-1]
    json_handler._signoff = False  # type: ignore[attr-defined]  # kept when setup runs again
    setup_logs(logging.DEBUG, stream=text, fmt="text")
    out: list[str] = []
    try:
        yield out
    finally:
        out += [text.getvalue(), js.getvalue()]
        for handler in list(root.handlers):
            if handler not in saved[1]:
                root.removeHandler(handler)
        for handler in saved[1]:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(saved[0])
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)


async def test_no_token_or_secret_reaches_a_log_even_at_debug_with_errors(
    fake: FakeSlack, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """DEBUG everywhere (slack_sdk's and aiohttp's loggers too, set after the channel started),
    signoff's own text and JSON log formats, and Slack answering errors: a 500 on an edit, a
    token_revoked on an answer, a payload that makes the handler raise (logged with its
    traceback), a forged HTTP request, a dropped socket. No bot token, app token, signing secret
    or bearer token in any line, traceback included."""
    monkeypatch.setenv("SIGNOFF_SLACK_SIGNING_SECRET", SIGNING_SECRET)
    monkeypatch.setenv("SIGNOFF_HTTP_TOKEN", HTTP_TOKEN)
    config = load_config(write_config(config_text(fake)))
    with everything_logged() as logs:
        async with open_app(config) as app:
            await fake.wait_for(lambda: fake.live_connections >= 1)
            logging.getLogger("slack_sdk").setLevel(logging.DEBUG)
            logging.getLogger("aiohttp").setLevel(logging.DEBUG)
            rid = await file(app, "bob_deploy")
            prompt = await prompt_in(fake, C_TEAM, rid)
            fake.fail("chat.update", 500)  # the outcome's edit: retried
            fake.fail("chat.postEphemeral", 200, "token_revoked")
            await fake.deliver("interactive", forged_press(fake, U_MALLORY, prompt, PREFIX + "approve"))
            junk = fake.block_actions_payload(U_BOB, prompt, PREFIX + "approve")
            junk["user"] = U_BOB  # not an object: the handler raises, and the error is logged
            await fake.deliver("interactive", junk)
            await fake.press(U_BOB, prompt, PREFIX + "approve")
            assert (await app.service.wait(rid, 10)).status is Status.APPROVED
            await fake.wait_for(lambda: not prompt.buttons())
            server = build_http_app(app, HTTP_TOKEN)
            assert (await post_payload(server, {"type": "block_actions"}, secret="wrong")).status == 401
            await fake.drop()
            await fake.wait_for(lambda: fake.live_connections >= 1)
    fake.errors.clear()  # the failures injected above
    text = "\n".join(logs)
    assert "DEBUG" in text and "Traceback" in text and "token_revoked" in text  # all of it was logged
    for secret in SECRETS:
        assert secret not in text


# === agent text in Slack =============================================================================


async def test_agent_text_never_becomes_a_mention_link_or_markup_in_any_slack_message(
    fake: FakeSlack, app: App
) -> None:
    """Every agent-controlled field (action, summary, details, metadata keys and values, the
    requester and the name it claims, the client name, the working directory) and a reason an
    approver typed, full of mentions, links and markup: in the prompts (DM and channel), the
    Details and Reason modals, the outcome, ``/signoff show``, the digest, reminders, escalation
    notes and grant notices, it is shown only inside code, with no raw ``<`` or ``>``."""
    requester = Actor("agent", "PWN-agent *PWN* <!channel> https://evil.example/PWN", "mcp")
    one_line = HOSTILE[:190]
    rid = await file(
        app, one_line, HOSTILE_LINES, requester=requester, client_name="client PWN *x* <!here>",
        details={HOSTILE: HOSTILE_LINES * 40, "nested PWN": [HOSTILE, {"<!channel> PWN": "*PWN*"}]},
        metadata={"PWN *k* <!channel>": HOSTILE[:150], "n": 3}, claimed_requester="claims PWN *x* <@U0BOB>",
        cwd="/home/PWN/*x*/<!channel>/https://evil.example/PWN",
    )  # fmt: skip
    pa, pb = await prompt_in(fake, dm_id(U_ALICE), rid), await prompt_in(fake, C_TEAM, rid)
    problems = []
    for where, message in (("DM prompt", pa), ("channel prompt", pb)):
        problems += injection_problems(where, message.text, message.blocks)
    await fake.press(U_ALICE, pa, PREFIX + "details")
    await fake.press(U_ALICE, pa, PREFIX + "reason")
    views = await fake.wait_for(lambda: list(fake.views.values()) if len(fake.views) == 2 else None)
    shown = (await fake.slash(U_ALICE, dm_id(U_ALICE), "/signoff", f"show {rid}"))["payload"]
    problems += injection_problems("/signoff show", shown["text"], shown["blocks"])
    reason_view = next(v for v in views if v.callback_id)
    await fake.submit_view(U_ALICE, reason_view.id, {"reason": HOSTILE_LINES})
    req = await app.service.wait(rid, 10)
    assert req.status is Status.REJECTED
    await fake.wait_for(lambda: not pa.buttons() and not pb.buttons())
    for where, message in (("DM outcome", pa), ("channel outcome", pb)):
        problems += injection_problems(where, message.text, message.blocks)
    for message in fake.ephemerals:
        problems += injection_problems("ephemeral", message.text, message.blocks)
    for view in fake.views.values():  # Details, Reason, and /signoff show's modal
        problems += injection_problems(f"modal {view.callback_id or 'details'}", None, view.view)
    assert len(fake.views) >= 3

    # The rest, rendered from the same request (and a grant made for a hostile command).
    now = time.time()
    signer = await leaked_signer(app)
    pending = await app.service.get(await file(app, one_line, HOSTILE_LINES, requester=requester, cwd="/PWN/<!here>"))
    text, blocks, _ = digest([pending, pending], 1, now, 5, U_ALICE, signer)
    problems += injection_problems("digest", text, blocks)
    problems += injection_problems("reminder", reminder(pending, now), [])
    problems += injection_problems("escalated", escalated(pending), [])
    bash = await app.service.get(await file(app, "Bash", HOSTILE_LINES, requester=requester, cwd="/PWN/*x*/<!here>",
                                            details={"command": "npm test PWN-x"}))  # fmt: skip
    _, grant = await app.service.approve_and_grant(bash.id, "30m", Actor("human", "bob", "console"))
    assert grant is not None
    problems += injection_problems("grant notice", *grant_notice(grant, now, signer))
    problems += injection_problems("grants list", *grants_list([grant], now, signer))
    assert not problems, "\n".join(problems)


async def test_a_self_approval_refusal_does_not_hand_agent_markup_to_the_approver(fake: FakeSlack, app: App) -> None:
    """HOLE (low). The requester's name is the MCP client's own name (``clientInfo.name``,
    agent-controlled unless the operator pins an identity). When it matches an approver's
    ``identities``, their Approve is refused with ApprovalService.decide's message, which quotes
    ``requested_by`` (server/service.py ``decide``); Slack's ``Interactions._tell``
    (adapters/slack/interactions.py) escapes only ``& < >`` and posts it as mrkdwn, so
    ``*bold*``, ``_italic_``, ``~strike~``, ``:emoji:`` and bare URLs (auto-linked) in it
    render as markup and links in the approver's Slack."""
    requester = Actor("agent", "alice-laptop *URGENT PWN* _PWN_ approve at https://evil.example/PWN :rotating_light:",
                      "mcp")  # fmt: skip
    rid = await file(app, requester=requester)
    prompt = await prompt_in(fake, dm_id(U_ALICE), rid)
    answer = await press_and_answer(fake, U_ALICE, forged_press(fake, U_ALICE, prompt, PREFIX + "approve"))
    assert "cannot approve it" in answer.text
    assert await status(app, rid) is Status.PENDING
    assert [r["action"] for r in await refusals(app, rid)] == ["approve"]
    assert not injection_problems("self-approval refusal", answer.text, answer.blocks)
