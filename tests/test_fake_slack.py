"""The fake Slack in fake_slack, checked against the real slack_sdk (Web API, Socket Mode, webhooks)."""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from .fake_slack import (
    APP_TOKEN,
    BOT_TOKEN,
    C_TEAM,
    SIGNING_SECRET,
    U_ALICE,
    U_BOB,
    U_MALLORY,
    FakeSlack,
    dm_id,
    fake_slack,
    slack_signature,
)

pytestmark = pytest.mark.anyio

Listener = Callable[[SocketModeClient, SocketModeRequest], Awaitable[None]]


def buttons(*labels: str) -> list[dict[str, Any]]:
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*deploy* to prod?"}},
        {"type": "actions", "block_id": "decide", "elements": [
            {"type": "button", "action_id": f"act_{i}", "text": {"type": "plain_text", "text": label},
             "value": f"req-1:{label.lower()}"} for i, label in enumerate(labels)]},
    ]  # fmt: skip


def modal(**overrides: Any) -> dict[str, Any]:
    return {
        "type": "modal", "callback_id": "reject_reason", "private_metadata": "req-1",
        "title": {"type": "plain_text", "text": "Reject"}, "submit": {"type": "plain_text", "text": "Send"},
        "blocks": [{"type": "input", "block_id": "reason", "label": {"type": "plain_text", "text": "Why?"},
                    "element": {"type": "plain_text_input", "action_id": "text"}}],
    } | overrides  # fmt: skip


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with fake_slack() as f:
        yield f


@pytest.fixture
def web_client(slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)


@pytest.fixture
async def socket_client(slack: FakeSlack) -> AsyncIterator[Callable[[Listener], Awaitable[SocketModeClient]]]:
    """Connect real aiohttp Socket Mode clients to the fake; closed before the fake stops."""
    clients: list[SocketModeClient] = []

    async def connect(listener: Listener) -> SocketModeClient:
        client = SocketModeClient(
            app_token=APP_TOKEN, web_client=AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url), ping_interval=0.5
        )
        clients.append(client)
        client.socket_mode_request_listeners.append(listener)
        with anyio.fail_after(5):
            await client.connect()
        await slack.wait_for(lambda: slack.live_connections >= len(clients), within=5)
        return client

    yield connect
    for client in clients:
        await client.close()


async def acking(client: SocketModeClient, req: SocketModeRequest) -> None:
    await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))


# --- Web API ---------------------------------------------------------------------------------------


async def test_auth_test_reports_scopes_in_a_header(slack: FakeSlack, web_client: AsyncWebClient) -> None:
    resp = await web_client.auth_test()
    assert resp["ok"] and resp["team_id"] == "T0TEST" and resp["user_id"] == "U0BOT" and resp["bot_id"] == "B0BOT"
    assert set(resp.headers["x-oauth-scopes"].split(",")) == {"chat:write", "im:write", "users:read", "commands"}

    slack.scopes.remove("chat:write")
    assert "chat:write" not in (await web_client.auth_test()).headers["x-oauth-scopes"]
    with pytest.raises(SlackApiError) as e:
        await web_client.chat_postMessage(channel=C_TEAM, text="hi")
    assert e.value.response["error"] == "missing_scope" and e.value.response["needed"] == "chat:write"


async def test_tokens_are_checked_and_never_recorded(slack: FakeSlack) -> None:
    for token, error in (("xoxb-nope", "invalid_auth"), (APP_TOKEN, "not_allowed_token_type")):
        with pytest.raises(SlackApiError) as e:
            await AsyncWebClient(token=token, base_url=slack.api_url).auth_test()
        assert e.value.response.status_code == 200 and e.value.response["error"] == error
    with pytest.raises(SlackApiError) as e:
        await AsyncWebClient(base_url=slack.api_url).auth_test()
    assert e.value.response["error"] == "not_authed"
    with pytest.raises(SlackApiError) as e:
        await AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url).apps_connections_open(app_token=BOT_TOKEN)
    assert e.value.response["error"] == "not_allowed_token_type"
    url = (await AsyncWebClient(base_url=slack.api_url).apps_connections_open(app_token=APP_TOKEN))["url"]
    assert url.startswith(slack.url.replace("http://", "ws://") + "/link/?ticket=")
    assert [err for _, err, _ in slack.errors] == ["invalid_auth", "not_allowed_token_type", "not_authed",
                                                   "not_allowed_token_type"]  # fmt: skip
    assert "xoxb-" not in repr(slack.calls) and "xapp-" not in repr(slack.calls)


async def test_dm_by_user_id_then_update_by_channel_id(slack: FakeSlack, web_client: AsyncWebClient) -> None:
    opened = await web_client.conversations_open(users=[U_ALICE])
    assert opened["channel"]["id"] == dm_id(U_ALICE) and "no_op" not in opened
    assert (await web_client.conversations_open(users=U_ALICE))["already_open"] is True
    with pytest.raises(SlackApiError, match="user_not_found"):
        await web_client.conversations_open(users=["U0NOBODY"])

    posted = await web_client.chat_postMessage(channel=U_ALICE, text="deploy?", blocks=buttons("Approve", "Reject"))
    assert posted["channel"] == dm_id(U_ALICE) and posted["message"]["text"] == "deploy?"
    second = await web_client.chat_postMessage(channel=posted["channel"], text="more", thread_ts=posted["ts"])
    assert float(second["ts"]) > float(posted["ts"]) and slack.dm(U_ALICE)[1].thread_ts == posted["ts"]
    msg = slack.dm(U_ALICE)[0]
    assert msg.button("appro")["value"] == "req-1:approve" and msg.button("Reject")["block_id"] == "decide"
    assert msg.blocks[0]["block_id"]  # Slack fills in the block_ids it was not given

    with pytest.raises(SlackApiError, match="channel_not_found"):
        await web_client.chat_update(channel=U_ALICE, ts=posted["ts"], text="approved")  # needs the D… id
    with pytest.raises(SlackApiError, match="message_not_found"):
        await web_client.chat_update(channel=posted["channel"], ts="1.000001", text="approved")
    updated = await web_client.chat_update(channel=posted["channel"], ts=posted["ts"], text="approved by alice")
    assert updated["text"] == "approved by alice" and len(msg.buttons()) == 2  # blocks left out: kept
    await web_client.chat_update(channel=posted["channel"], ts=posted["ts"], text="approved by alice", blocks=[])
    assert msg.buttons() == [] and msg.edits == 2
    assert [e for _, e, _ in slack.errors] == ["user_not_found", "channel_not_found", "message_not_found"]


async def test_channels_ephemerals_and_users(slack: FakeSlack, web_client: AsyncWebClient) -> None:
    await web_client.chat_postMessage(channel=C_TEAM, text="team request", blocks=buttons("Approve"))
    assert slack.channel(C_TEAM)[0].text == "team request"
    with pytest.raises(SlackApiError, match="channel_not_found"):
        await web_client.chat_postMessage(channel="C0ELSEWHERE", text="hi")

    eph = await web_client.chat_postEphemeral(channel=C_TEAM, user=U_BOB, text="only you can see this")
    assert slack.ephemerals_for(U_BOB)[0].ts == eph["message_ts"] and slack.ephemerals_for(U_ALICE) == []
    with pytest.raises(SlackApiError, match="user_not_in_channel"):
        await web_client.chat_postEphemeral(channel=C_TEAM, user=U_MALLORY, text="hi")

    user = (await web_client.users_info(user=U_ALICE))["user"]
    assert (user["id"], user["name"], user["tz"]) == (U_ALICE, "alice", "Europe/Berlin")
    with pytest.raises(SlackApiError, match="user_not_found"):
        await web_client.users_info(user="U0NOBODY")


async def test_form_bodies_and_query_strings_are_accepted(slack: FakeSlack) -> None:
    headers = {"Authorization": f"Bearer {BOT_TOKEN}"}
    async with httpx.AsyncClient(trust_env=False) as http:
        form = {"channel": C_TEAM, "text": "form", "blocks": json.dumps(buttons("Go"))}
        r = await http.post(f"{slack.api_url}chat.postMessage", data=form, headers=headers)
        assert r.json()["ok"] and slack.channel(C_TEAM)[0].button("Go")["action_id"] == "act_0"
        r = await http.post(f"{slack.api_url}chat.postMessage?channel={C_TEAM}&text=query", headers=headers)
        assert r.json()["ok"] and slack.channel(C_TEAM)[1].text == "query"
        r = await http.post(f"{slack.api_url}auth.test", data={"token": BOT_TOKEN})  # token as a form field
        assert r.json()["ok"] and "xoxb-" not in repr(slack.calls)
        r = await http.post(
            f"{slack.api_url}chat.postMessage", data={"channel": C_TEAM, "blocks": "[{"}, headers=headers
        )
        assert r.json()["error"] == "invalid_blocks_format"


def _section(n: int) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": "x" * n}}


def _button(**fields: Any) -> dict[str, Any]:
    return {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "ok"}} | fields]}


OVER_LIMITS = {
    "51 blocks": [_section(1)] * 51,
    "section 3001": [_section(3001)],
    "header 151": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
    "header mrkdwn": [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}],
    "button text 76": [_button(text={"type": "plain_text", "text": "b" * 76})],
    "button value 2001": [_button(value="v" * 2001)],
    "action_id 256": [_button(action_id="a" * 256)],
    "block_id 256": [_section(1) | {"block_id": "b" * 256}],
    "duplicate block_id": [_section(1) | {"block_id": "same"}, _section(1) | {"block_id": "same"}],
    "26 actions": [{"type": "actions", "elements": _button()["elements"] * 26}],
    "11 context": [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}],
    "empty section": [{"type": "section", "text": {"type": "mrkdwn", "text": ""}}],
}


@pytest.mark.parametrize("case", OVER_LIMITS)
async def test_block_kit_limits_are_refused(slack: FakeSlack, web_client: AsyncWebClient, case: str) -> None:
    with pytest.raises(SlackApiError) as e:
        await web_client.chat_postMessage(channel=C_TEAM, text="fallback", blocks=OVER_LIMITS[case])
    assert e.value.response["error"] == "invalid_blocks", e.value.response.data
    assert "json-pointer:/blocks" in e.value.response["response_metadata"]["messages"][0]
    assert slack.channel(C_TEAM) == [] and len(slack.errors) == 1


async def test_limits_are_exact_and_text_is_checked(slack: FakeSlack, web_client: AsyncWebClient) -> None:
    at_limit = [_section(3000)] * 49 + [_button(value="v" * 2000, action_id="a" * 255)]
    await web_client.chat_postMessage(channel=C_TEAM, text="t" * 40_000, blocks=at_limit)
    assert slack.errors == []
    with pytest.raises(SlackApiError, match="msg_too_long"):
        await web_client.chat_postMessage(channel=C_TEAM, text="t" * 40_001)
    with pytest.raises(SlackApiError, match="channel_not_found"):
        await web_client.chat_postMessage(channel="", text="hi")
    with pytest.warns(UserWarning, match="`text` argument is missing"), pytest.raises(SlackApiError, match="no_text"):
        await web_client.chat_postMessage(channel=C_TEAM, text="")
    assert [e for _, e, _ in slack.errors] == ["msg_too_long", "channel_not_found", "no_text"]


async def test_failures_are_injected(slack: FakeSlack, web_client: AsyncWebClient) -> None:
    slack.fail("chat.postMessage", 429, retry_after=7)
    with pytest.raises(SlackApiError) as e:
        await web_client.chat_postMessage(channel=C_TEAM, text="hi")
    assert e.value.response.status_code == 429 and e.value.response.headers["Retry-After"] == "7"
    assert e.value.response["error"] == "ratelimited"
    slack.fail("chat.postMessage", 503, times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as e:
            await web_client.chat_postMessage(channel=C_TEAM, text="hi")
        assert e.value.response.status_code == 503 and e.value.response["error"] == "internal_error"
    slack.fail("auth.test", 200, "token_revoked")
    with pytest.raises(SlackApiError, match="token_revoked"):
        await web_client.auth_test()
    await web_client.chat_postMessage(channel=C_TEAM, text="hi")
    assert len(slack.channel(C_TEAM)) == 1 and slack.errors == []  # injected failures are not the client's


async def test_rate_violations_are_counted_per_channel() -> None:
    async with fake_slack(enforce_rate=True) as slack:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
        for channel in (C_TEAM, U_ALICE, U_BOB):
            for _ in range(3):
                await client.chat_postMessage(channel=channel, text="burst")
        assert slack.rate_violations() == 0
        with pytest.raises(SlackApiError) as e:
            await client.chat_postMessage(channel=U_ALICE, text="one too many")
        assert e.value.response.status_code == 429 and e.value.response.headers["Retry-After"] == "1"
        assert slack.rate_violations() == 1 and len(slack.dm(U_ALICE)) == 3


# --- modals ----------------------------------------------------------------------------------------


async def test_trigger_ids_are_single_use_and_expire(slack: FakeSlack, web_client: AsyncWebClient) -> None:
    trigger = slack.new_trigger(U_ALICE)
    opened = (await web_client.views_open(trigger_id=trigger, view=modal()))["view"]
    view = slack.views[opened["id"]]
    assert (view.user, view.callback_id, view.private_metadata) == (U_ALICE, "reject_reason", "req-1")
    with pytest.raises(SlackApiError, match="exchanged_trigger_id"):
        await web_client.views_open(trigger_id=trigger, view=modal())
    with pytest.raises(SlackApiError, match="invalid_trigger_id"):
        await web_client.views_open(trigger_id="12.34.never-issued", view=modal())
    late = slack.new_trigger(U_ALICE)
    slack.expire_triggers()
    with pytest.raises(SlackApiError, match="expired_trigger_id"):
        await web_client.views_open(trigger_id=late, view=modal())

    with pytest.raises(SlackApiError, match="hash_conflict"):
        await web_client.views_update(view_id=view.id, hash="stale", view=modal())
    updated = await web_client.views_update(view_id=view.id, hash=opened["hash"], view=modal(private_metadata="req-2"))
    assert updated["view"]["hash"] != opened["hash"] and view.private_metadata == "req-2"


@pytest.mark.parametrize(
    ("view", "error"),
    [
        (modal(title={"type": "plain_text", "text": "t" * 25}), "invalid_arguments"),
        (modal(submit={"type": "plain_text", "text": "s" * 25}), "invalid_arguments"),
        (modal(private_metadata="m" * 3001), "invalid_arguments"),
        (modal(callback_id="c" * 256), "invalid_arguments"),
        (modal(submit=None), "invalid_arguments"),  # input blocks need a submit button
        (modal(blocks=[_section(1)] * 101), "invalid_blocks"),
    ],
)
async def test_modal_limits_are_refused(
    slack: FakeSlack, web_client: AsyncWebClient, view: dict[str, Any], error: str
) -> None:
    view = {k: v for k, v in view.items() if v is not None}
    with pytest.raises(SlackApiError) as e:
        await web_client.views_open(trigger_id=slack.new_trigger(U_ALICE), view=view)
    assert e.value.response["error"] == error and slack.views == {}


# --- Socket Mode -----------------------------------------------------------------------------------


async def test_socket_mode_press_reaches_the_listener_and_the_ack_is_recorded(
    slack: FakeSlack, web_client: AsyncWebClient, socket_client: Callable[[Listener], Awaitable[SocketModeClient]]
) -> None:
    seen: list[SocketModeRequest] = []
    opened: list[str] = []
    modal_opened = anyio.Event()

    async def listener(client: SocketModeClient, req: SocketModeRequest) -> None:
        seen.append(req)
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))  # ack first
        view = await client.web_client.views_open(trigger_id=req.payload["trigger_id"], view=modal())
        opened.append(view["view"]["id"])
        modal_opened.set()

    await socket_client(listener)
    assert slack.connection_opens == 1 and slack.live_connections == 1
    await web_client.chat_postMessage(channel=U_ALICE, text="deploy?", blocks=buttons("Approve", "Reject"))
    msg = slack.dm(U_ALICE)[0]

    ack = await slack.press(U_ALICE, msg, "Reject")
    assert ack == {"envelope_id": seen[0].envelope_id} and slack.acks == [ack] and slack.unacked == []
    req = seen[0]
    assert req.type == "interactive" and req.payload["type"] == "block_actions"
    assert req.payload["user"]["id"] == U_ALICE and req.payload["container"]["message_ts"] == msg.ts
    assert req.payload["channel"]["id"] == dm_id(U_ALICE) and req.payload["message"]["ts"] == msg.ts
    action = req.payload["actions"][0]
    assert (action["action_id"], action["block_id"], action["value"]) == ("act_1", "decide", "req-1:reject")

    with anyio.fail_after(3):
        await modal_opened.wait()
    assert opened == list(slack.views) and slack.views[opened[0]].user == U_ALICE
    with pytest.raises(SlackApiError, match="exchanged_trigger_id"):
        await web_client.views_open(trigger_id=req.payload["trigger_id"], view=modal())
    ack = await slack.press(U_ALICE, msg, "act_0")  # by action_id too
    assert seen[1].payload["actions"][0]["value"] == "req-1:approve"


async def test_view_submission_errors_keep_the_modal_open(
    slack: FakeSlack, web_client: AsyncWebClient, socket_client: Callable[[Listener], Awaitable[SocketModeClient]]
) -> None:
    async def listener(client: SocketModeClient, req: SocketModeRequest) -> None:
        reason = req.payload["view"]["state"]["values"]["reason"]["text"]["value"]
        payload = None if reason else {"response_action": "errors", "errors": {"reason": "Say why"}}
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id, payload=payload))

    await socket_client(listener)
    view_id = (await web_client.views_open(trigger_id=slack.new_trigger(U_ALICE), view=modal()))["view"]["id"]
    ack = await slack.submit_view(U_ALICE, view_id, {})
    assert ack["payload"]["response_action"] == "errors"
    assert slack.views[view_id].errors == {"reason": "Say why"} and not slack.views[view_id].closed
    ack = await slack.submit_view(U_ALICE, view_id, {"reason": "too risky"})
    assert "payload" not in ack and slack.views[view_id].closed
    assert slack.envelopes[1].payload["view"]["private_metadata"] == "req-1"


async def test_slash_commands_and_unacked_envelopes(
    slack: FakeSlack, socket_client: Callable[[Listener], Awaitable[SocketModeClient]]
) -> None:
    commands: list[dict[str, Any]] = []

    async def listener(client: SocketModeClient, req: SocketModeRequest) -> None:
        commands.append(req.payload)
        if req.payload["text"] != "ignore":
            await client.send_socket_mode_response({"envelope_id": req.envelope_id, "payload": {"text": "3 pending"}})

    await socket_client(listener)
    ack = await slack.slash(U_BOB, C_TEAM, "/signoff", "list")
    assert ack["payload"] == {"text": "3 pending"}
    assert commands[0]["command"] == "/signoff" and commands[0]["user_id"] == U_BOB and commands[0]["trigger_id"]
    assert slack.unacked == []
    with pytest.raises(TimeoutError, match="no ack"):
        await slack.slash(U_BOB, C_TEAM, "/signoff", "ignore", within=0.3)
    assert [e.payload["text"] for e in slack.unacked] == ["ignore"]


async def test_disconnect_makes_the_client_reconnect(
    slack: FakeSlack, web_client: AsyncWebClient, socket_client: Callable[[Listener], Awaitable[SocketModeClient]]
) -> None:
    await socket_client(acking)
    await web_client.chat_postMessage(channel=U_ALICE, text="deploy?", blocks=buttons("Approve"))
    await slack.disconnect("refresh_requested")
    await slack.wait_for(lambda: slack.connection_opens == 2 and slack.live_connections == 1, within=5)
    await slack.press(U_ALICE, slack.dm(U_ALICE)[0], "Approve")
    assert slack.envelopes[0].connection == 2

    await slack.drop()  # no close frame: the client notices at its next ping tick
    await slack.wait_for(lambda: slack.connection_opens == 3 and slack.live_connections == 1, within=5)
    await slack.press(U_ALICE, slack.dm(U_ALICE)[0], "Approve")
    assert slack.envelopes[1].connection == 3 and slack.unacked == [] and slack.errors == []


async def test_each_envelope_goes_to_one_connection(
    slack: FakeSlack, web_client: AsyncWebClient, socket_client: Callable[[Listener], Awaitable[SocketModeClient]]
) -> None:
    got: dict[int, list[str]] = {1: [], 2: []}

    def counting(n: int) -> Listener:
        async def listener(client: SocketModeClient, req: SocketModeRequest) -> None:
            got[n].append(req.envelope_id)
            await acking(client, req)

        return listener

    await socket_client(counting(1))
    await socket_client(counting(2))
    assert slack.live_connections == 2
    await web_client.chat_postMessage(channel=U_ALICE, text="deploy?", blocks=buttons("Approve"))
    for _ in range(4):
        await slack.press(U_ALICE, slack.dm(U_ALICE)[0], "Approve")
    assert len(got[1]) == len(got[2]) == 2 and not set(got[1]) & set(got[2]) and len(slack.acks) == 4


# --- HTTP mode, response URLs, environment --------------------------------------------------------


async def test_http_mode_posts_are_signed_like_slack(slack: FakeSlack, web_client: AsyncWebClient) -> None:
    assert slack_signature("body", "secret", 1531420618) == slack_signature(b"body", "secret", "1531420618")
    verifier = SignatureVerifier(SIGNING_SECRET)
    received: list[tuple[bool, dict[str, Any]]] = []

    async def receive(request: web.Request) -> web.Response:
        raw = await request.read()
        fields = urllib.parse.parse_qs(raw.decode())
        received.append((verifier.is_valid_request(raw, dict(request.headers)), fields))
        return web.json_response({"response_action": "clear"})

    app = web.Application()
    app.router.add_post("/slack/interactions", receive)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/interactions"
        await web_client.chat_postMessage(channel=U_ALICE, text="deploy?", blocks=buttons("Approve"))
        payload = slack.block_actions_payload(U_ALICE, slack.dm(U_ALICE)[0], "Approve")
        r = await slack.post_interaction(url, payload, SIGNING_SECRET)
        assert r.status_code == 200 and r.json() == {"response_action": "clear"}
        await slack.post_interaction(url, payload, "another-secret")
        await slack.post_interaction(url, payload, SIGNING_SECRET, timestamp=1531420618)  # too old
        await slack.post_command(url, slack.slash_payload(U_BOB, C_TEAM, "/signoff", "list"))
    finally:
        await runner.cleanup()
    assert [ok for ok, _ in received] == [True, False, False, True]
    assert json.loads(received[0][1]["payload"][0])["actions"][0]["value"] == "req-1:approve"
    assert received[3][1]["command"] == ["/signoff"]


async def test_response_urls_replace_the_original(slack: FakeSlack, web_client: AsyncWebClient) -> None:
    await web_client.chat_postMessage(channel=U_ALICE, text="deploy?", blocks=buttons("Approve"))
    msg = slack.dm(U_ALICE)[0]
    url = slack.block_actions_payload(U_ALICE, msg, "Approve")["response_url"]
    r = await AsyncWebhookClient(url).send(text="approved", blocks=[], replace_original=True)
    assert r.status_code == 200 and (msg.text, msg.buttons(), msg.edits) == ("approved", [], 1)
    await AsyncWebhookClient(url).send(text="just for you")
    assert slack.ephemerals_for(U_ALICE)[0].text == "just for you"

    await web_client.chat_postEphemeral(channel=C_TEAM, user=U_BOB, text="pick", blocks=buttons("Approve"))
    eph = slack.ephemerals_for(U_BOB)[0]
    payload = slack.block_actions_payload(U_BOB, eph, "Approve")
    assert payload["container"]["is_ephemeral"] is True and "message" not in payload
    await AsyncWebhookClient(payload["response_url"]).send(text="done", replace_original=True)
    assert (eph.text, len(eph.buttons())) == ("done", 0) and slack.errors == []


async def test_proxy_variables_are_hidden_while_the_fake_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    async with fake_slack() as slack:
        assert (await AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url).auth_test())["ok"]
    assert os.environ["HTTPS_PROXY"] == os.environ["http_proxy"] == "http://127.0.0.1:9"
