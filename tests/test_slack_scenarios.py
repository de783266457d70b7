"""Slack scenarios end to end: the real slack_sdk against the fake Slack (and the fake Bot API),
real SQLite, real ``signoff serve`` processes; time moved with the service's clock, never slept."""

from __future__ import annotations

import itertools
import json
import logging
import signal
import sqlite3
import textwrap
import time
import zoneinfo
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn

from signoff.server.app import App, open_app
from signoff.server.config import load_config
from signoff.server.http import build_http_app, http_token
from signoff.server.listen import bind
from signoff.server.models import Actor, Status

from .fake_slack import (
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
    fake_slack,
)
from .fake_telegram import FakeTelegram, fake_telegram
from .policies import Clock
from .procs import serve
from .slack_support import PREFIX, file, prompt_in, slack_for_signoff, text_of

pytestmark = pytest.mark.anyio

TG_ALICE = 111
HTTP_TOKEN = "http-bearer-token-0123456789abcdef"
SECRETS = (BOT_TOKEN, APP_TOKEN, SIGNING_SECRET, HTTP_TOKEN)


def config_text(slack_api: str, body: str, *, slack: str = "") -> str:
    """A config on the fake Slack: ``slack`` adds keys to ``[slack]``, ``body`` the approvers and routes."""
    return (textwrap.dedent(f"""
        [store]
        path = "signoff.db"
        [server]
        port = 0
        [slack]
        api_base_url = "{slack_api}"
        lease_ttl = "3s"
    """) + textwrap.dedent(slack) + textwrap.dedent(body))  # fmt: skip


TWO_APPROVERS = f"""
    [approvers.alice]
    slack_user_id = "{U_ALICE}"
    [approvers.bob]
    slack_user_id = "{U_BOB}"
    slack_channel = "{C_TEAM}"
    [[routes]]
    name = "bob-only"
    match = {{ action = "bob_*" }}
    approvers = ["bob"]
    [[routes]]
    name = "default"
    approvers = ["alice", "bob"]
"""


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeSlack]:
    async with slack_for_signoff(monkeypatch) as f:
        yield f


async def decided(app: App, request_id: str) -> Any:
    with anyio.fail_after(10):
        return await app.service.wait(request_id, 10)


def thread_replies(fake: FakeSlack, prompt: Message, starts: str) -> list[Message]:
    """The replies in ``prompt``'s thread whose text starts with ``starts``."""
    return [m for m in fake.channel(prompt.channel) if m.thread_ts == prompt.ts and m.text.startswith(starts)]


def shows(message: Message, outcome: str) -> bool:
    """Whether ``message`` shows the request's outcome, without buttons."""
    return not message.buttons() and outcome in text_of(message)


@asynccontextmanager
async def http_server(app: App, token: str | None) -> AsyncIterator[str]:
    """``signoff serve``'s ASGI app (MCP, /healthz, the Slack endpoint) on uvicorn, in this process."""
    sock = bind("127.0.0.1", 0)  # listening before serve() runs: early clients wait in the backlog
    port = sock.getsockname()[1]
    config = uvicorn.Config(build_http_app(app, token, port=port), log_level="warning", log_config=None,
                            lifespan="on", timeout_graceful_shutdown=1)  # fmt: skip
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = server.force_exit = True
    sock.close()


# --- 1. Telegram and Slack at once ----------------------------------------------------------------


async def test_one_approver_on_telegram_and_slack_at_once(
    fake: FakeSlack, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with fake_telegram() as tg:
        monkeypatch.setenv("SIGNOFF_TELEGRAM_TOKEN", tg.token)
        body = f"""
            [telegram]
            api_base_url = "{tg.api_base_url}"
            lease_ttl = "3s"
            [approvers.alice]
            telegram_user_id = {TG_ALICE}
            slack_user_id = "{U_ALICE}"
            [[routes]]
            name = "default"
            approvers = ["alice"]
        """
        async with open_app(load_config(write_config(config_text(fake.api_url, body)))) as app:
            await fake.wait_for(lambda: fake.live_connections == 1)
            # Decided in Slack: the Telegram prompt shows the outcome, without buttons.
            rid = await file(app)
            on_slack = await prompt_in(fake, dm_id(U_ALICE), rid)
            on_tg = await tg_prompt(tg, rid)
            await fake.press(U_ALICE, on_slack, PREFIX + "approve")
            req = await decided(app, rid)
            assert (req.status, req.decided_by, req.decided_via) == (Status.APPROVED, "alice", "slack")
            await tg.wait_for(lambda: not on_tg.buttons() and "Approved" in on_tg.text)
            await fake.wait_for(lambda: not on_slack.buttons() and "Approved" in text_of(on_slack))

            # And the reverse: decided on Telegram, the Slack prompt loses its buttons.
            rid = await file(app, summary="the other way round")
            on_slack = await prompt_in(fake, dm_id(U_ALICE), rid)
            on_tg = await tg_prompt(tg, rid)
            await tg.press(TG_ALICE, on_tg, on_tg.button("reject"))
            req = await decided(app, rid)
            assert (req.status, req.decided_by, req.decided_via) == (Status.REJECTED, "alice", "telegram")
            await fake.wait_for(lambda: not on_slack.buttons() and "Rejected" in text_of(on_slack))
            await tg.wait_for(lambda: not on_tg.buttons() and "Rejected" in on_tg.text)
            # One prompt per request in each place, and no stray answer in Slack.
            for rid in [r.id for r in await app.store.list_requests()]:
                assert len([m for m in fake.dm(U_ALICE) if rid in text_of(m)]) == 1
                assert len([m for m in tg.chat(TG_ALICE) if rid in m.text]) == 1
            assert not fake.ephemerals
        assert tg.conflicts == 0


async def tg_prompt(tg: FakeTelegram, request_id: str) -> Any:
    return await tg.wait_for(lambda: next((m for m in tg.chat(TG_ALICE) if request_id in m.text and m.buttons()), None))


# --- 2. HTTP mode ---------------------------------------------------------------------------------


async def test_http_mode_signed_posts_decide_and_forged_ones_are_refused(
    fake: FakeSlack, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SIGNOFF_SLACK_APP_TOKEN")  # HTTP mode needs none
    monkeypatch.setenv("SIGNOFF_SLACK_SIGNING_SECRET", SIGNING_SECRET)
    monkeypatch.setenv("SIGNOFF_HTTP_TOKEN", HTTP_TOKEN)
    config = load_config(write_config(config_text(fake.api_url, TWO_APPROVERS, slack='mode = "http"\n')))
    async with open_app(config) as app, http_server(app, http_token(config)) as base:
        url = base + config.slack.path
        assert config.slack.path == "/slack/events"
        rid = await file(app)
        prompt = await prompt_in(fake, dm_id(U_ALICE), rid)
        assert fake.live_connections == 0 and fake.connection_opens == 0  # no Socket Mode in HTTP mode

        # Refused before anything is parsed: a wrong secret, a stale timestamp, a timestamp that is no number.
        reject = fake.block_actions_payload(U_ALICE, prompt, PREFIX + "reject")
        wrong = await fake.post_interaction(url, reject, "not-the-signing-secret")
        stale = await fake.post_interaction(url, reject, timestamp=int(time.time()) - 6 * 60)
        garbled = await fake.post_interaction(url, reject, timestamp="12:00")
        assert [r.status_code for r in (wrong, stale, garbled)] == [401, 401, 401]
        # Neither is a bearer-token refusal (the endpoint checks Slack's signature, not the token) …
        assert all("WWW-Authenticate" not in r.headers for r in (wrong, stale, garbled))

        # … and a signed press decides, without the bearer token.
        approve = fake.block_actions_payload(U_ALICE, prompt, PREFIX + "approve")
        pressed = await fake.post_interaction(url, approve)
        assert pressed.status_code == 200
        req = await decided(app, rid)
        assert (req.status, req.decided_by, req.decided_via) == (Status.APPROVED, "alice", "slack")
        events = [(e.event, e.actor) for e in await app.store.audit(request_id=rid)]
        assert events == [("created", "claude-code"), ("approved", "alice")]  # no forged press did anything
        await fake.wait_for(lambda: not prompt.buttons() and "Approved" in text_of(prompt))

        # /signoff in HTTP mode answers in the response body.
        whoami = await fake.post_command(url, fake.slash_payload(U_ALICE, dm_id(U_ALICE), "/signoff", "whoami"))
        assert whoami.status_code == 200 and whoami.headers["content-type"] == "application/json"
        answer = whoami.json()
        assert answer["response_type"] == "ephemeral" and "approver *alice*" in answer["text"]
        forged = await fake.post_command(url, fake.slash_payload(U_ALICE, dm_id(U_ALICE), "/signoff", "whoami"),
                                         "not-the-signing-secret")  # fmt: skip
        assert forged.status_code == 401

        # /mcp still wants the bearer token.
        async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=10) as h:
            hello = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
            assert (await h.post("/mcp", json=hello)).status_code == 401
            assert (await h.post("/mcp", json=hello, headers={"Authorization": "Bearer wrong"})).status_code == 401
            with_token = await h.post("/mcp", json=hello, headers={"Authorization": f"Bearer {HTTP_TOKEN}",
                                                                   "Accept": "application/json, text/event-stream"})  # fmt: skip
            assert with_token.status_code != 401


# --- 3. Grants ------------------------------------------------------------------------------------

GRANTS = f"""
    [approvers.alice]
    slack_user_id = "{U_ALICE}"
    slack_channel = "{C_TEAM}"
    [approvers.bob]
    slack_user_id = "{U_BOB}"
    [[routes]]
    name = "tests"
    match = {{ action = "Bash" }}
    approvers = ["alice"]
    grant_options = ["30m"]
    [[routes]]
    name = "default"
    approvers = ["bob"]
"""


async def test_a_grant_from_slack_counts_its_uses_and_is_revoked_there(
    fake: FakeSlack, write_config: Callable[..., Path]
) -> None:
    fake.members[C_TEAM].add(U_MALLORY)  # a bystander in the team channel
    npm = {"command": "npm test", "description": "Run the tests"}
    async with open_app(load_config(write_config(config_text(fake.api_url, GRANTS)))) as app:
        await fake.wait_for(lambda: fake.live_connections == 1)
        first = await file(app, "Bash", "run the tests", details=npm)
        prompt = await prompt_in(fake, C_TEAM, first)
        assert "30 min" in prompt.find(PREFIX + "grant0")["text"]["text"]
        fake.fail("chat.postMessage", 429, retry_after=1)  # Slack is busy as the notice goes out: it waits
        await fake.press(U_ALICE, prompt, PREFIX + "grant0")
        req = await decided(app, first)
        assert (req.status, req.decided_by) == (Status.APPROVED, "alice")
        # The grant is stored by the statement right after the approval: its notice says it exists.
        notice = await fake.wait_for(lambda: next((m for m in fake.channel(C_TEAM) if "grt_" in text_of(m)), None))
        [grant] = await app.service.list_grants()
        assert grant.id in text_of(notice)
        assert "Used: 0 uses" in text_of(notice) and notice.find(PREFIX + "revoke")
        await fake.wait_for(lambda: not prompt.buttons() and "Approved" in text_of(prompt))
        assert len([m for m in fake.channel(C_TEAM) if grant.id in text_of(m)]) == 1

        # A matching request is approved by the grant: no prompt, the notice's count is edited
        # (after a 429 too).
        posts = len(fake.sent("chat.postMessage"))
        fake.fail("chat.update", 429, retry_after=1)
        second = await file(app, "Bash", "run the tests again", details=npm)
        covered = await app.service.get(second)
        assert (covered.status, covered.decided_by) == (Status.APPROVED, f"grant:{grant.id}")
        await fake.wait_for(lambda: "Used: 1 use." in text_of(notice))
        assert notice.edits == 1 and len(fake.sent("chat.postMessage")) == posts
        assert not await app.store.read("SELECT id FROM outbox WHERE channel = 'slack' AND done_at IS NULL")

        # /signoff grants lists it, with a Revoke button.
        listing = await fake.slash(U_ALICE, C_TEAM, "/signoff", "grants")
        listed = json.dumps(listing["payload"]["blocks"])
        assert grant.id in listed and PREFIX + "revoke" in listed

        # A bystander's Revoke press is refused (ephemeral), and so is an approver's of another route.
        for who in (U_MALLORY, U_BOB):
            fake.members[C_TEAM].add(who)
            await fake.press(who, notice, PREFIX + "revoke")
            refusal = await fake.wait_for(partial(fake.ephemerals_for, who))
            assert len(refusal) == 1 and refusal[0].text.startswith(
                "Only the approver who made it or an approver of its route"
            )
        assert [g.id for g in await app.service.list_grants()] == [grant.id]

        # Alice's ends it; the notice says so and loses its button.
        await fake.press(U_ALICE, notice, PREFIX + "revoke")
        told = await fake.wait_for(lambda: next(iter(fake.ephemerals_for(U_ALICE)), None))
        assert told.text == f"Revoked {grant.id}."
        await fake.wait_for(lambda: "revoked by `alice`" in text_of(notice) and not notice.buttons())
        assert await app.service.list_grants() == []
        third = await file(app, "Bash", "and once more", details=npm)
        assert (await app.service.get(third)).status is Status.PENDING
        await prompt_in(fake, C_TEAM, third)


# --- 4. Reminders, escalation, quiet hours --------------------------------------------------------

ESCALATION = f"""
    [approvers.alice]
    slack_user_id = "{U_ALICE}"
    [approvers.bob]
    slack_user_id = "{U_BOB}"
    slack_channel = "{C_TEAM}"
    [[routes]]
    name = "deploys"
    approvers = ["alice"]
    timeout = "1h"
    reminder = "15m"
    escalation = [{{ after = "10m", approvers = ["bob"] }}]
"""


async def test_reminders_and_escalation_reply_in_the_prompts_thread(
    fake: FakeSlack, write_config: Callable[..., Path]
) -> None:
    clock = Clock()
    async with open_app(load_config(write_config(config_text(fake.api_url, ESCALATION))), clock=clock) as app:
        await fake.wait_for(lambda: fake.live_connections == 1)
        rid = await file(app)
        a = await prompt_in(fake, dm_id(U_ALICE), rid)
        assert not fake.channel(C_TEAM)

        clock.advance(10 * 60 + 1)  # the escalation: bob gets a prompt, alice a note in her prompt's thread
        await app.service.sweep()
        b = await prompt_in(fake, C_TEAM, rid)
        assert "Escalated to `bob`" in text_of(b)
        [note] = await fake.wait_for(lambda: thread_replies(fake, a, "⬆️"))
        assert rid in note.text and "`bob`" in note.text and not note.blocks
        assert a.buttons() and a.edits == 0  # alice keeps her buttons

        clock.advance(5 * 60)  # 15 min: a reminder to each, in reply to their prompt
        await app.service.sweep()
        for prompt in (a, b):
            [reminder] = await fake.wait_for(partial(thread_replies, fake, prompt, "⏰"))
            assert rid in reminder.text
        await fake.press(U_BOB, b, PREFIX + "approve")
        assert (await decided(app, rid)).decided_by == "bob"
        for prompt in (a, b):
            await fake.wait_for(partial(shows, prompt, "Approved"))
        events = [e.event for e in await app.store.audit(request_id=rid)]
        assert events == ["created", "escalated", "reminded", "approved"]
        assert len([m for m in fake.channel(C_TEAM) if m.thread_ts is None]) == 1  # one prompt for bob


def berlin(hour: int, minute: int, after: float | None = None) -> float:
    """The next ``hour:minute`` in Berlin after ``after`` (default: now)."""
    tz = zoneinfo.ZoneInfo("Europe/Berlin")
    now = datetime.now(tz) if after is None else datetime.fromtimestamp(after, tz)
    at = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return (at if at > now else at + timedelta(days=1)).timestamp()


QUIET = f"""
    [defaults]
    timeout = "12h"
    [approvers.alice]
    slack_user_id = "{U_ALICE}"
    quiet_hours = "22:00-07:00"
    timezone = "Europe/Berlin"
    [[routes]]
    name = "incidents"
    match = {{ action = "page*" }}
    approvers = ["alice"]
    urgent = true
    [[routes]]
    name = "default"
    approvers = ["alice"]
"""


async def test_quiet_hours_hold_a_slack_prompt_until_morning(
    fake: FakeSlack, write_config: Callable[..., Path]
) -> None:
    clock = Clock(at=berlin(23, 30))
    async with open_app(load_config(write_config(config_text(fake.api_url, QUIET))), clock=clock) as app:
        await fake.wait_for(lambda: fake.live_connections == 1)
        report = await file(app, "report_sales")
        page = await file(app, "page_oncall")  # urgent: out at once, after the report's row was looked at
        await prompt_in(fake, dm_id(U_ALICE), page)
        assert not any(report in text_of(m) for m in fake.dm(U_ALICE))
        morning = berlin(7, 0, after=clock())
        rows = await app.store.read("SELECT last_error, next_attempt_at FROM outbox WHERE request_id = ?", (report,))
        assert rows[0]["last_error"] == "quiet hours" and rows[0]["next_attempt_at"] == pytest.approx(morning)

        clock.advance(morning - clock() + 1)  # 07:00:01 in Berlin
        await prompt_in(fake, dm_id(U_ALICE), report)
        assert len([m for m in fake.dm(U_ALICE) if report in text_of(m)]) == 1


# --- 5. Takeover between processes ----------------------------------------------------------------

HOLDS = "slack: this process holds the Slack connection now"


async def test_the_slack_holder_killed_another_process_takes_over(
    fake: FakeSlack, write_config: Callable[..., Path]
) -> None:
    config_path = write_config(config_text(fake.api_url, TWO_APPROVERS))
    tokens = {"SIGNOFF_SLACK_BOT_TOKEN": BOT_TOKEN, "SIGNOFF_SLACK_APP_TOKEN": APP_TOKEN}
    async with serve(config_path, **tokens) as first:
        await first.wait_for_log(HOLDS)
        await fake.wait_for(lambda: fake.live_connections == 1)
        async with serve(config_path, **tokens) as second:
            before = await file_elsewhere(config_path, "before the crash")
            a = await prompt_in(fake, dm_id(U_ALICE), before)
            await prompt_in(fake, C_TEAM, before)
            assert HOLDS not in "".join(second.stderr) and fake.live_connections == 1  # one holder
            # Killed between a post and its commit, a prompt would be sent again (at least once, by
            # design): kill it once both are recorded.
            await until(lambda: len(recorded(config_path, before)) == 2)

            first.process.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            await first.process.wait()
            await second.wait_for_log(HOLDS, within=15)
            # The lease runs out at most 3 s (its ttl) after the dead holder's last renewal; the other
            # process tries every ttl/3 s.
            assert time.monotonic() - killed < 3 + 1 + 2
            await fake.wait_for(lambda: fake.live_connections == 1 and fake.connection_opens == 2)
            # A button on a prompt the dead process sent still decides.
            await fake.press(U_ALICE, a, PREFIX + "approve")
            await fake.wait_for(lambda: not a.buttons() and "Approved" in text_of(a))
            # A request filed now reaches Slack through the new holder, and a press decides it.
            after = await file_elsewhere(config_path, "after the crash")
            b = await prompt_in(fake, C_TEAM, after)
            await prompt_in(fake, dm_id(U_ALICE), after)
            await fake.press(U_BOB, b, PREFIX + "reject")
            await fake.wait_for(lambda: not b.buttons() and "Rejected" in text_of(b))
            assert fake.live_connections == 1
        statuses = request_statuses(config_path)
        assert statuses == {before: ("approved", "alice"), after: ("rejected", "bob")}
        for rid in (before, after):  # no prompt was sent twice
            for address in (U_ALICE, C_TEAM):
                posts = [p for p in fake.sent("chat.postMessage")
                         if p.get("channel") == address and not p.get("thread_ts") and rid in json.dumps(p)]  # fmt: skip
                assert len(posts) == 1, (rid, address, posts)
        assert not fake.unacked
    logs = "".join(first.stderr + second.stderr)
    assert not any(secret in logs for secret in SECRETS)


async def file_elsewhere(config_path: Path, summary: str) -> str:
    """File a request from this test process, which never runs Slack."""
    async with open_app(load_config(config_path), background=False) as app:
        return await file(app, summary=summary)


async def until(predicate: Callable[[], bool], within: float = 10) -> None:
    """Wait (bounded) for a commit by another process: SQLite signals nothing, so look again every 20 ms."""
    with anyio.fail_after(within):
        while not predicate():  # noqa: ASYNC110 - nothing to wait on: the look is the check
            await anyio.sleep(0.02)  # a poll interval, not a guess: the deadline bounds the wait


def recorded(config_path: Path, request_id: str) -> list[str]:
    """The prompts recorded for ``request_id`` (``<address> <message>``)."""
    conn = sqlite3.connect(load_config(config_path).db_path)
    try:
        rows = conn.execute("SELECT address, message FROM prompts WHERE request_id = ?", (request_id,))
        return [f"{r[0]} {r[1]}" for r in rows]
    finally:
        conn.close()


def request_statuses(config_path: Path) -> dict[str, tuple[str, str]]:
    conn = sqlite3.connect(load_config(config_path).db_path)
    try:
        return {r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, status, decided_by FROM requests")}
    finally:
        conn.close()


# --- 6. Secrets never reach a log -----------------------------------------------------------------


class Collect(logging.Handler):
    """Every record, formatted as a log file would hold it (tracebacks included)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def debug_logs() -> Iterator[Collect]:
    root = logging.getLogger()
    handler, level = Collect(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.mark.parametrize("mode", ["socket", "http"])
async def test_tokens_and_signing_secret_never_reach_a_log(
    fake: FakeSlack, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setenv("SIGNOFF_SLACK_SIGNING_SECRET", SIGNING_SECRET)
    monkeypatch.setenv("SIGNOFF_HTTP_TOKEN", HTTP_TOKEN)
    config = load_config(write_config(config_text(fake.api_url, TWO_APPROVERS, slack=f'mode = "{mode}"\n')))
    with debug_logs() as logs:
        async with open_app(config) as app, http_server(app, http_token(config)) as base:
            fake.fail("chat.postMessage", 429, retry_after=1)
            rid = await file(app, "bob_deploy")
            prompt = await prompt_in(fake, C_TEAM, rid)
            fake.fail("chat.update", 429, retry_after=1)
            if mode == "socket":
                await fake.press(U_BOB, prompt, PREFIX + "approve")
            else:
                url = base + config.slack.path
                payload = fake.block_actions_payload(U_BOB, prompt, PREFIX + "approve")
                assert (await fake.post_interaction(url, payload, "a-wrong-secret")).status_code == 401
                assert (await fake.post_interaction(url, payload)).status_code == 200
            assert (await decided(app, rid)).status is Status.APPROVED
            await fake.wait_for(lambda: not prompt.buttons())
    text = "\n".join(logs.lines)
    assert "429: retry after 1 s" in text and HOLDS in text  # the run was logged, at DEBUG
    assert any(line.startswith("DEBUG ") for line in logs.lines)
    for secret in SECRETS:
        assert secret not in text
    assert "<slack-secret>" not in text  # nothing even tried to log one


# --- 7. Rate limits -------------------------------------------------------------------------------

REMINDED = f"""
    [approvers.alice]
    slack_user_id = "{U_ALICE}"
    [[routes]]
    name = "default"
    approvers = ["alice"]
    reminder = "15m"
"""


async def test_a_burst_to_one_dm_keeps_slacks_pace_and_a_429_on_update_is_waited_out(
    write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNOFF_SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SIGNOFF_SLACK_APP_TOKEN", APP_TOKEN)
    clock = Clock()
    async with fake_slack(enforce_rate=True) as fake:  # a post over Slack's pace is answered 429
        config = load_config(write_config(config_text(fake.api_url, REMINDED)))
        async with open_app(config, clock=clock) as app:
            await fake.wait_for(lambda: fake.live_connections == 1)
            rids = [await file(app, f"step_{i}", f"step {i}") for i in range(3)]
            prompts = [await prompt_in(fake, dm_id(U_ALICE), rid) for rid in rids]
            # Right after the last prompt, a reminder for each: replies in the same DM, so paced with the prompts.
            clock.advance(15 * 60 + 1)
            await app.service.sweep()
            await fake.wait_for(lambda: thread_replies(fake, prompts[0], "⏰"))
            fake.fail("chat.update", 429, retry_after=1)
            await app.service.decide(rids[0], True, Actor("human", "alice", "console"))
            await fake.wait_for(lambda: not prompts[0].buttons() and "Approved" in text_of(prompts[0]))
            for prompt in prompts[1:]:
                await fake.wait_for(partial(thread_replies, fake, prompt, "⏰"))
            updates = [t for t, method, _ in fake.timed if method == "chat.update"]
            assert len(updates) == 2 and updates[1] - updates[0] >= 1.0  # the 429's Retry-After was waited out
        assert fake.rate_violations() == 0 and not fake.errors
        posts = [t for t, method, _ in fake.timed if method == "chat.postMessage"]
        assert len(posts) == 6 and all(b - a >= 0.9 for a, b in itertools.pairwise(posts))
