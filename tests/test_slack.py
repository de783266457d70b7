"""The Slack channel: the real slack_sdk (Web API and Socket Mode) against the fake Slack in fake_slack."""

from __future__ import annotations

import logging
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from signoff.server.app import App, open_app
from signoff.server.config import load_config
from signoff.server.models import Actor, Status

from .fake_slack import APP_TOKEN, BOT_TOKEN, C_TEAM, U_ALICE, U_BOB, U_MALLORY, FakeSlack, Message, dm_id
from .slack_support import PREFIX, file, prompt_in, slack_for_signoff, text_of

pytestmark = pytest.mark.anyio


def slack_config(api: str, extra: str = "") -> str:
    return textwrap.dedent(f"""
        [store]
        path = "signoff.db"
        [server]
        port = 0
        [slack]
        api_base_url = "{api}"
        lease_ttl = "3s"
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
        name = "bulk"
        match = {{ action = "bulk_*" }}
        approvers = ["alice"]
        allow_bulk = true
        [[routes]]
        name = "default"
        approvers = ["alice", "bob"]
    """) + textwrap.dedent(extra)


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeSlack]:
    async with slack_for_signoff(monkeypatch) as f:
        yield f


@pytest.fixture
def config_path(fake: FakeSlack, write_config: Callable[..., Path]) -> Path:
    return write_config(slack_config(fake.api_url))


@pytest.fixture
async def app(config_path: Path, fake: FakeSlack) -> AsyncIterator[App]:
    async with open_app(load_config(config_path)) as opened:
        await fake.wait_for(lambda: fake.live_connections >= 1)
        yield opened


async def decided(app: App, request_id: str) -> Any:
    with anyio.fail_after(10):
        return await app.service.wait(request_id, 10)


async def test_approve_in_slack(fake: FakeSlack, app: App) -> None:
    rid = await file(app, details={"command": "kubectl rollout restart"}, action="Bash")
    a = await prompt_in(fake, dm_id(U_ALICE), rid)
    b = await prompt_in(fake, C_TEAM, rid)
    shown = text_of(a)
    assert "Bash" in shown and "claude-code" in shown and "kubectl rollout restart" in shown
    await fake.press(U_ALICE, a, PREFIX + "approve")
    req = await decided(app, rid)
    assert req.status is Status.APPROVED and req.decided_by == "alice" and req.decided_via == "slack"
    for message in (a, b):  # both prompts show the outcome, without buttons
        await fake.wait_for(lambda m=message: not m.buttons() and "Approved" in text_of(m))
    events = await app.store.audit(request_id=rid)
    assert [(e.event, e.actor, e.channel) for e in events][-1] == ("approved", "alice", "slack")


async def test_reject_with_a_reason_from_a_modal(fake: FakeSlack, app: App) -> None:
    rid = await file(app)
    a = await prompt_in(fake, dm_id(U_ALICE), rid)
    await fake.press(U_ALICE, a, PREFIX + "reason")
    view = await fake.wait_for(lambda: next((v for v in fake.views.values() if v.user == U_ALICE), None))
    ack = await fake.submit_view(U_ALICE, view.id, {"reason": "not on a Friday"})
    assert "payload" not in ack  # an empty ack closes the modal
    req = await decided(app, rid)
    assert req.status is Status.REJECTED and req.reason == "not on a Friday" and req.decided_by == "alice"


async def test_a_modal_opened_by_one_approver_cannot_be_submitted_by_another(fake: FakeSlack, app: App) -> None:
    rid = await file(app)
    a = await prompt_in(fake, dm_id(U_ALICE), rid)
    await fake.press(U_ALICE, a, PREFIX + "reason")
    view = await fake.wait_for(lambda: next((v for v in fake.views.values() if v.user == U_ALICE), None))
    ack = await fake.submit_view(U_BOB, view.id, {"reason": "bob speaks for alice"})
    assert ack["payload"]["response_action"] == "errors"
    assert (await app.service.get(rid)).status is Status.PENDING


async def test_approve_with_a_note_from_a_modal(fake: FakeSlack, app: App) -> None:
    rid = await file(app)
    a, b = await prompt_in(fake, dm_id(U_ALICE), rid), await prompt_in(fake, C_TEAM, rid)
    await fake.press(U_ALICE, a, PREFIX + "note")
    view = await fake.wait_for(lambda: next((v for v in fake.views.values() if v.user == U_ALICE), None))
    assert view.callback_id == "signoff:note"
    ack = await fake.submit_view(U_ALICE, view.id, {"note": "  "})  # empty: the modal says so, nothing decided
    assert ack["payload"] == {
        "response_action": "errors",
        "errors": {"note": "Write the note, or press Approve instead."},
    }
    assert (await app.service.get(rid)).status is Status.PENDING
    ack = await fake.submit_view(U_ALICE, view.id, {"note": "staging first <!channel>"})
    assert "payload" not in ack  # an empty ack closes the modal
    req = await decided(app, rid)
    assert (req.status, req.decided_by, req.reason) == (Status.APPROVED, "alice", "staging first <!channel>")
    for message in (a, b):  # both prompts show the note, in code, with nothing Slack would parse
        await fake.wait_for(
            lambda m=message: not m.buttons() and "Note: `staging first &lt;!channel&gt;`" in text_of(m)
        )
    approved = (await app.store.audit(request_id=rid))[-1]
    assert (approved.event, approved.actor, approved.channel, approved.data) == (
        "approved", "alice", "slack", {"reason": "staging first <!channel>"})  # fmt: skip


async def test_a_note_modal_cannot_be_submitted_by_another_nor_a_reason_modal_approve(
    fake: FakeSlack, app: App
) -> None:
    rid = await file(app)
    a = await prompt_in(fake, dm_id(U_ALICE), rid)
    await fake.press(U_ALICE, a, PREFIX + "note")
    note = await fake.wait_for(lambda: next((v for v in fake.views.values() if v.callback_id == "signoff:note"), None))
    ack = await fake.submit_view(U_BOB, note.id, {"note": "bob approves for alice"})
    assert ack["payload"]["response_action"] == "errors"
    await fake.press(U_ALICE, a, PREFIX + "reason")
    reason = await fake.wait_for(
        lambda: next((v for v in fake.views.values() if v.callback_id == "signoff:reason"), None)
    )
    # The reason modal's metadata under the note modal's callback_id: it cannot approve.
    forged = fake.view_submission_payload(U_ALICE, note.id, {"note": "approve it"})
    forged["view"]["private_metadata"] = reason.private_metadata
    ack = await fake._ack_of(await fake.deliver("interactive", forged), 3)
    assert ack["payload"]["response_action"] == "errors"
    # The note modal's metadata under the reason modal's callback_id: it cannot reject.
    forged = fake.view_submission_payload(U_ALICE, reason.id, {"reason": "reject it"})
    forged["view"]["private_metadata"] = note.private_metadata
    ack = await fake._ack_of(await fake.deliver("interactive", forged), 3)
    assert ack["payload"]["response_action"] == "errors"
    assert (await app.service.get(rid)).status is Status.PENDING
    assert [e.event for e in await app.store.audit(request_id=rid)] == ["created"]


async def test_a_bystander_in_a_channel_is_refused_and_audited(fake: FakeSlack, app: App) -> None:
    rid = await file(app, action="bob_deploy")  # only bob decides; his prompts go to the team channel
    b = await prompt_in(fake, C_TEAM, rid)
    await fake.press(U_ALICE, b, PREFIX + "approve")
    note = await fake.wait_for(lambda: next(iter(fake.ephemerals_for(U_ALICE)), None))
    assert note.text == "You are not an approver of this request."
    assert (await app.service.get(rid)).status is Status.PENDING
    refused = [e for e in await app.store.audit(request_id=rid) if e.event == "refused"]
    assert refused and refused[0].actor == f"slack:{U_ALICE}" and refused[0].channel == "slack"


async def test_a_button_decides_only_the_message_it_is_on(fake: FakeSlack, app: App) -> None:
    first, second = await file(app, summary="first"), await file(app, summary="second")
    m1, m2 = await prompt_in(fake, dm_id(U_ALICE), first), await prompt_in(fake, dm_id(U_ALICE), second)
    # first's Approve value, replayed onto second's prompt: decides nothing.
    replay = fake.block_actions_payload(U_ALICE, m2, PREFIX + "approve")
    replay["actions"][0]["value"] = m1.find(PREFIX + "approve")["value"]
    await fake.deliver("interactive", replay)
    await fake.wait_for(lambda: fake.ephemerals_for(U_ALICE))
    # A forged value (one character changed) decides nothing either.
    forged = fake.block_actions_payload(U_ALICE, m1, PREFIX + "approve")
    value = forged["actions"][0]["value"]
    forged["actions"][0]["value"] = value[:-1] + ("A" if value[-1] != "A" else "B")
    await fake.deliver("interactive", forged)
    await fake.wait_for(lambda: len(fake.ephemerals_for(U_ALICE)) >= 2)
    assert (await app.service.get(first)).status is Status.PENDING
    assert (await app.service.get(second)).status is Status.PENDING


async def test_two_approvers_pressing_at_once_make_one_decision(fake: FakeSlack, app: App) -> None:
    rid = await file(app)
    a, b = await prompt_in(fake, dm_id(U_ALICE), rid), await prompt_in(fake, C_TEAM, rid)
    async with anyio.create_task_group() as tg:
        tg.start_soon(fake.press, U_ALICE, a, PREFIX + "approve")
        tg.start_soon(fake.press, U_BOB, b, PREFIX + "reject")
    req = await decided(app, rid)
    assert req.status in (Status.APPROVED, Status.REJECTED)
    finals = [e for e in await app.store.audit(request_id=rid) if e.event in ("approved", "rejected")]
    assert len(finals) == 1


async def test_a_console_decision_updates_the_slack_prompts(fake: FakeSlack, app: App) -> None:
    rid = await file(app)
    a = await prompt_in(fake, dm_id(U_ALICE), rid)
    await app.service.decide(rid, False, Actor("human", "bob", "console"), "from the terminal")
    await fake.wait_for(lambda: not a.buttons() and "Rejected" in text_of(a))
    assert "from the terminal" in text_of(a)


async def test_slack_5xx_then_recovery_delivers_the_prompt(fake: FakeSlack, app: App) -> None:
    from signoff.server.metrics import slack_errors

    before = slack_errors().get("internal_error", 0)
    fake.fail("chat.postMessage", 503, times=2)
    rid = await file(app, action="bulk_one")  # alice only
    await prompt_in(fake, dm_id(U_ALICE), rid)
    assert slack_errors().get("internal_error", 0) - before == 2  # both failures counted for /metrics
    assert len(fake.channel(dm_id(U_ALICE))) == 1  # then one prompt, not three


async def test_429_waits_retry_after_then_delivers(fake: FakeSlack, app: App) -> None:
    fake.fail("chat.postMessage", 429, retry_after=1)
    started = time.monotonic()
    rid = await file(app, action="bulk_one")
    await prompt_in(fake, dm_id(U_ALICE), rid)
    assert time.monotonic() - started >= 1.0  # Retry-After was honoured, not hammered


async def test_a_digest_burst_and_approve_all(fake: FakeSlack, app: App) -> None:
    ids = [await file(app, action=f"bulk_{i}", summary=f"item {i}") for i in range(12)]

    def bulk_buttons(m: Message) -> bool:
        return any(b["action_id"] == PREFIX + "approve_all" for b in m.buttons())

    digest = await fake.wait_for(lambda: next((m for m in fake.channel(dm_id(U_ALICE)) if bulk_buttons(m)), None))
    await fake.wait_for(lambda: "12 pending" in text_of(digest))
    prompts = [m for m in fake.channel(dm_id(U_ALICE)) if m is not digest]
    assert len(prompts) <= 6, "a burst becomes one digest, not a message each"
    await fake.press(U_ALICE, digest, PREFIX + "approve_all")
    for rid in ids:
        assert (await decided(app, rid)).status is Status.APPROVED


async def test_slash_command_lists_pending_and_whoami(fake: FakeSlack, app: App) -> None:
    await file(app)
    ack = await fake.slash(U_MALLORY, dm_id(U_MALLORY), "/signoff", "whoami")
    assert "not an approver" in ack["payload"]["text"]
    ack = await fake.slash(U_ALICE, dm_id(U_ALICE), "/signoff", "pending")
    assert "1 request(s) waiting for you" in ack["payload"]["text"]
    ack = await fake.slash(U_MALLORY, dm_id(U_MALLORY), "/signoff", "grants")
    assert "not an approver" in ack["payload"]["text"]


async def test_health_names_the_slack_holder(fake: FakeSlack, app: App) -> None:
    from signoff.server import health

    state = await health.collect(app.store, time.time())
    assert state.slack_live and state.as_json()["slack"]["pid"] is not None
    assert not [p for p in state.problems() if "Slack" in p]


async def test_slack_prompts_with_no_holder_are_a_problem(config_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from signoff.server import health

    monkeypatch.delenv("SIGNOFF_SLACK_BOT_TOKEN")  # nobody here can hold Slack
    async with open_app(load_config(config_path)) as app:
        await file(app)
        state = await health.collect(app.store, time.time() + 1)
    problems = state.problems()
    assert any("no signoff process has held the Slack connection yet" in p for p in problems), problems
    assert not any("Telegram" in p for p in problems), problems


def test_init_writes_a_slack_approver(tmp_path: Path) -> None:
    from .procs import cli

    path = tmp_path / "init.toml"
    done = cli("init", "--path", str(path), "--approver", "alice", "--slack-user-id", U_ALICE)
    assert done.returncode == 0, done.stderr
    config = load_config(path)
    assert config.approvers["alice"].slack_user_id == U_ALICE
    refused = cli("init", "--path", str(tmp_path / "bad.toml"), "--slack-user-id", "alice")
    assert refused.returncode == 2 and "--slack-user-id 'alice'" in refused.stderr and "U0123ABCD" in refused.stderr
    assert not (tmp_path / "bad.toml").exists()


async def test_doctor_checks_the_tokens_scopes_and_approvers(fake: FakeSlack, config_path: Path) -> None:
    from .procs import cli

    def doctor() -> tuple[int, str]:
        done = cli("doctor", config=config_path)  # a child process: the fake answers from this loop meanwhile
        return done.returncode, done.stdout

    code, out = await anyio.to_thread.run_sync(doctor)
    slack = [line for line in out.splitlines() if line.startswith("slack")]
    assert any("answers in workspace" in line for line in slack), out
    assert any("scopes: chat:write, im:write, commands" in line for line in slack), out
    assert any("approver alice: a DM with" in line for line in slack), out
    assert any("Socket Mode: the app-level token" in line and "accepted" in line for line in slack), out
    assert BOT_TOKEN not in out and APP_TOKEN not in out
    fake.scopes = [s for s in fake.scopes if s != "commands"]
    code, out = await anyio.to_thread.run_sync(doctor)
    assert code == 1 and "lacks the scopes commands" in out, out


async def test_a_refused_app_token_stops_slack_with_a_fix(
    fake: FakeSlack, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = write_config(
        slack_config(fake.api_url).replace('lease_ttl = "3s"', 'lease_ttl = "3s"\nrequest_timeout = "1s"')
    )
    monkeypatch.setenv("SIGNOFF_SLACK_APP_TOKEN", "xapp-1-not-the-right-one")
    said: list[str] = []
    stopped = anyio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "app-level token was refused" in record.getMessage():
                said.append(self.format(record))
                stopped.set()

    watch = Watch()
    logging.getLogger("signoff.slack").addHandler(watch)
    try:
        async with open_app(load_config(config_path)):
            with anyio.fail_after(10):
                await stopped.wait()
    finally:
        logging.getLogger("signoff.slack").removeHandler(watch)
    assert "$SIGNOFF_SLACK_APP_TOKEN" in said[0] and "xapp-1-not-the-right-one" not in said[0]
    assert fake.live_connections == 0
    assert fake.errors and set(fake.errors) == {("apps.connections.open", "invalid_auth", "")}  # then stopped
    fake.errors.clear()
