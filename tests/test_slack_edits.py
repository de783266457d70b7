""" "Edit before approving" in Slack: the real slack_sdk against the fake Slack, a real SQLite file.
The ✏️ Edit button opens a modal with the current arguments; the submitted edit is checked by the
core and shown as a diff to confirm; "Approve edited" approves with exactly that edit, once."""

from __future__ import annotations

import json
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import Implementation

from signoff.adapters.slack.buttons import EDIT, SlackSigner
from signoff.server.app import App, open_app
from signoff.server.config import load_config
from signoff.server.mcp_tools import build_mcp
from signoff.server.models import ApprovalRequest, Status

from .fake_slack import C_TEAM, U_ALICE, U_BOB, FakeSlack, Message, View, dm_id
from .slack_support import PREFIX, file, prompt_in, slack_for_signoff, text_of

pytestmark = pytest.mark.anyio

EDIT_VIEW, CONFIRM_VIEW = "signoff:edit", "signoff:edit_confirm"
NOT_VALID = "This button is not valid."


def config_text(api: str) -> str:
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
        name = "fixed"
        match = {{ action = "fixed_*" }}
        approvers = ["alice"]
        allow_edit = false
        [[routes]]
        name = "default"
        approvers = ["alice", "bob"]
    """)


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeSlack]:
    async with slack_for_signoff(monkeypatch) as f:
        yield f


@pytest.fixture
def config_path(fake: FakeSlack, write_config: Callable[..., Path]) -> Path:
    return write_config(config_text(fake.api_url))


@pytest.fixture
async def app(config_path: Path, fake: FakeSlack) -> AsyncIterator[App]:
    async with open_app(load_config(config_path)) as opened:
        await fake.wait_for(lambda: fake.live_connections >= 1)
        yield opened


async def decided(app: App, request_id: str) -> ApprovalRequest:
    with anyio.fail_after(10):
        return await app.service.wait(request_id, 10)


async def opened(fake: FakeSlack, user: str, callback: str = EDIT_VIEW, seen: int = 0) -> View:
    """The (``seen``+1)-th modal ``user`` has with ``callback``, once Slack has it."""
    return await fake.wait_for(
        lambda: next(
            iter([v for v in fake.views.values() if v.user == user and v.callback_id == callback][seen:]), None
        )
    )


async def told(fake: FakeSlack, user: str, seen: int = 0) -> Message:
    """The (``seen``+1)-th ephemeral message ``user`` got."""
    return await fake.wait_for(lambda: next(iter(fake.ephemerals_for(user)[seen:]), None))


async def start_edit(fake: FakeSlack, user: str, prompt: Message, new: str) -> tuple[View, dict[str, Any]]:
    """``user`` presses ✏️ Edit on ``prompt`` and submits ``new``: the view and the submission's ack."""
    before = len([v for v in fake.views.values() if v.user == user])
    await fake.press(user, prompt, PREFIX + EDIT)
    view = await fake.wait_for(lambda: next(iter([v for v in fake.views.values() if v.user == user][before:]), None))
    assert view.callback_id == EDIT_VIEW
    return view, await fake.submit_view(user, view.id, {"edit": new})


async def submit_as(fake: FakeSlack, user: str, view: View, callback: str, metadata: str) -> dict[str, Any]:
    """A view submission by ``user`` that claims ``callback`` and carries ``metadata`` (made up, or
    another view's): the ack's payload (None for an empty ack)."""
    payload = fake.view_submission_payload(user, view.id, {})
    payload["view"] |= {"callback_id": callback, "private_metadata": metadata}
    ack = await fake._ack_of(await fake.deliver("interactive", payload), 3)
    return ack.get("payload")


def view_text(view: View) -> str:
    return "\n".join(str((b.get("text") or {}).get("text") or "") for b in view.view["blocks"])


async def decisions(app: App, rid: str) -> list[str]:
    return [e.event for e in await app.store.audit(request_id=rid) if e.event in ("approved", "rejected")]


async def test_edit_a_command_see_the_diff_and_approve_it_edited(fake: FakeSlack, app: App) -> None:
    mcp = build_mcp(app.service, transport="memory")
    async with Client(mcp, client_info=Implementation(name="claude-code", version="2")) as client:
        args = {"action": "Bash", "summary": "Deploy", "details": {"command": "make deploy", "description": "ship"},
                "wait_seconds": 0}  # fmt: skip
        filed = (await client.call_tool("request_approval", args)).structured_content
        assert filed is not None and filed["status"] == "pending"
        rid = filed["request_id"]
        a, b = await prompt_in(fake, dm_id(U_ALICE), rid), await prompt_in(fake, C_TEAM, rid)
        assert a.button("✏️ Edit")["action_id"] == PREFIX + EDIT
        await fake.press(U_ALICE, a, PREFIX + EDIT)
        view = await opened(fake, U_ALICE)
        [box] = [blk for blk in view.view["blocks"] if blk["type"] == "input"]
        assert box["element"]["initial_value"] == "make deploy"  # the command as plain text, to edit in place
        assert box["element"]["type"] == "plain_text_input" and box["element"]["max_length"] == 3000
        assert rid in view_text(view) and view.view["submit"]["text"] == "Review the change"

        ack = await fake.submit_view(U_ALICE, view.id, {"edit": "make deploy-staging <&>"})
        assert ack["payload"]["response_action"] == "update"
        assert view.callback_id == CONFIRM_VIEW  # the same modal, now the diff to confirm
        shown = view_text(view)
        assert '-  "command": "make deploy",' in shown
        assert '+  "command": "make deploy-staging &lt;&amp;&gt;",' in shown  # escaped, inside a code block
        assert "```" in shown and "<&>" not in shown
        assert (view.view["submit"]["text"], view.view["close"]["text"]) == ("Approve edited", "Discard")
        assert (await app.service.get(rid)).status is Status.PENDING  # nothing decided until she confirms

        ack = await fake.submit_view(U_ALICE, view.id, {})
        assert "payload" not in ack and view.closed  # "Approve edited": an empty ack closes the modal
        req = await decided(app, rid)
        assert (req.status, req.decided_by, req.decided_via) == (Status.APPROVED, "alice", "slack")
        assert req.edited_details == {"command": "make deploy-staging <&>", "description": "ship"}
        checked = (await client.call_tool("check_decision", {"request_id": rid})).structured_content
        assert checked is not None and checked["status"] == "approved"
        assert checked["edited_details"] == {"command": "make deploy-staging <&>", "description": "ship"}
    for message in (a, b):  # every prompt says it was approved with changes, and loses its buttons
        await fake.wait_for(lambda m=message: not m.buttons() and "*with changes* by `alice`" in text_of(m))
    approved = (await app.store.audit(request_id=rid))[-1]
    assert (approved.event, approved.actor, approved.channel) == ("approved", "alice", "slack")
    assert (approved.data or {})["approved_action_digest"] == req.edited_digest
    assert await decisions(app, rid) == ["approved"]


async def test_an_invalid_edit_keeps_the_modal_open_and_discard_decides_nothing(fake: FakeSlack, app: App) -> None:
    rid = await file(app, action="mcp__db__query", details={"sql": "select 1"})
    a = await prompt_in(fake, dm_id(U_ALICE), rid)
    view, ack = await start_edit(fake, U_ALICE, a, "select 2")  # not JSON
    [box] = [blk for blk in view.view["blocks"] if blk["type"] == "input"]
    assert box["element"]["initial_value"] == '{\n  "sql": "select 1"\n}'  # anything but a command: JSON
    assert ack["payload"] == {"response_action": "errors", "errors": {"edit": "That is not a JSON object."}}
    unchanged = "That changes nothing: edit the arguments, or press Approve on the prompt."
    invalid = [("[1, 2]", "That is not a JSON object."), ('{"sql": "select 1"}', unchanged),
               ('{"sql": "a\\u001b[2J"}', "control characters")]  # fmt: skip
    for text, error in invalid:
        ack = await fake.submit_view(U_ALICE, view.id, {"edit": text})
        assert ack["payload"]["response_action"] == "errors" and error in ack["payload"]["errors"]["edit"], ack
        assert view.callback_id == EDIT_VIEW and not view.closed
    assert (await app.service.get(rid)).status is Status.PENDING
    assert [e.event for e in await app.store.audit(request_id=rid)] == ["created"]

    ack = await fake.submit_view(U_ALICE, view.id, {"edit": '{"sql": "select 2"}'})
    assert ack["payload"]["response_action"] == "update" and view.callback_id == CONFIRM_VIEW
    metadata = view.private_metadata
    # Discard: Slack tells us the view was closed; the proposed edit can approve nothing afterwards.
    closed = {"type": "view_closed", "team": {"id": "T0"}, "user": {"id": U_ALICE}, "api_app_id": "A0",
              "view": view.payload(), "is_cleared": False}  # fmt: skip
    await fake._ack_of(await fake.deliver("interactive", closed), 3)  # acked once the edit is closed
    answer = await submit_as(fake, U_ALICE, view, CONFIRM_VIEW, metadata)  # the discarded view, replayed
    assert answer is not None and "This edit was already approved or discarded." in view_text(view)
    req = await app.service.get(rid)
    assert req.status is Status.PENDING and req.edited_details is None
    assert await decisions(app, rid) == []


async def test_a_bystanders_edit_press_is_refused(fake: FakeSlack, app: App) -> None:
    rid = await file(app, action="bob_deploy")  # bob alone decides; his prompt is in the team channel
    b = await prompt_in(fake, C_TEAM, rid)
    await fake.press(U_ALICE, b, PREFIX + EDIT)
    assert (await told(fake, U_ALICE)).text == "You are not an approver of this request."
    assert not fake.views  # no modal opened
    refused = [e for e in await app.store.audit(request_id=rid) if e.event == "refused"]
    assert [(e.actor, (e.data or {}).get("action")) for e in refused] == [(f"slack:{U_ALICE}", EDIT)]
    assert (await app.service.get(rid)).status is Status.PENDING


async def test_a_route_without_edits_has_no_edit_button_and_a_forged_one_is_refused(fake: FakeSlack, app: App) -> None:
    rid = await file(app, action="fixed_thing", details={"x": 1})
    a = await prompt_in(fake, dm_id(U_ALICE), rid)
    assert PREFIX + EDIT not in [button["action_id"] for button in a.buttons()]
    assert "Edit" not in text_of(a)
    # An edit press signed with the real key (as if the button had been there): the core refuses it.
    req = await app.service.get(rid)
    signer = SlackSigner(await app.store.setting("slack_button_key", lambda: "unused"))
    forged = fake.block_actions_payload(U_ALICE, a, PREFIX + "approve")
    forged["actions"][0] |= {"action_id": PREFIX + EDIT, "value": signer.request(EDIT, rid, req.action_digest)}
    await fake.deliver("interactive", forged)
    refusal = await told(fake, U_ALICE)
    assert "does not allow editing" in refusal.text and "allow_edit = false" in refusal.text
    assert not fake.views
    refused = [e for e in await app.store.audit(request_id=rid) if e.event == "refused"]
    assert [(e.actor, (e.data or {}).get("action")) for e in refused] == [("alice", EDIT)]
    assert (await app.service.get(rid)).status is Status.PENDING and await decisions(app, rid) == []


async def test_a_confirm_after_another_approver_approved_makes_no_second_decision(fake: FakeSlack, app: App) -> None:
    rid = await file(app, action="Bash", details={"command": "echo 1"})
    a, b = await prompt_in(fake, dm_id(U_ALICE), rid), await prompt_in(fake, C_TEAM, rid)
    view, ack = await start_edit(fake, U_ALICE, a, "echo edited")
    assert view.callback_id == CONFIRM_VIEW
    await fake.press(U_BOB, b, PREFIX + "approve")  # bob approves it as it is, meanwhile
    assert (await decided(app, rid)).decided_by == "bob"
    ack = await fake.submit_view(U_ALICE, view.id, {})  # then alice presses "Approve edited"
    assert ack["payload"]["response_action"] == "update" and not view.closed
    shown = view_text(view)
    assert "Already approved by `bob`" in shown and "Your edit was not used." in shown
    assert view.view.get("submit") is None  # nothing more to submit
    req = await app.service.get(rid)
    assert (req.status, req.decided_by, req.edited_details) == (Status.APPROVED, "bob", None)
    assert await decisions(app, rid) == ["approved"]
    for message in (a, b):
        await fake.wait_for(lambda m=message: not m.buttons() and "Approved* by `bob`" in text_of(m))


async def test_an_edit_submitted_once_the_request_was_decided_is_refused(fake: FakeSlack, app: App) -> None:
    rid = await file(app, action="Bash", details={"command": "echo 1"})
    a, b = await prompt_in(fake, dm_id(U_ALICE), rid), await prompt_in(fake, C_TEAM, rid)
    await fake.press(U_ALICE, a, PREFIX + EDIT)
    view = await opened(fake, U_ALICE)
    await fake.press(U_BOB, b, PREFIX + "reject")
    await decided(app, rid)
    ack = await fake.submit_view(U_ALICE, view.id, {"edit": "echo 2"})
    assert ack["payload"] == {"response_action": "errors", "errors": {"edit": ack["payload"]["errors"]["edit"]}}
    assert ack["payload"]["errors"]["edit"].startswith("Already rejected by bob")
    assert await decisions(app, rid) == ["rejected"]


async def test_tampered_or_stale_confirmations_are_refused(fake: FakeSlack, app: App) -> None:
    x = await file(app, action="Bash", summary="x", details={"command": "ls x"})
    y = await file(app, action="Bash", summary="y", details={"command": "ls y"})
    px, py = await prompt_in(fake, dm_id(U_ALICE), x), await prompt_in(fake, dm_id(U_ALICE), y)
    vx, _ = await start_edit(fake, U_ALICE, px, "ls -l x")
    vy, _ = await start_edit(fake, U_ALICE, py, "ls -l y")
    mx, my = vx.private_metadata, vy.private_metadata
    assert (vx.callback_id, vy.callback_id) == (CONFIRM_VIEW, CONFIRM_VIEW) and mx.startswith("e:")
    cx, cy = SlackSigner.claimed_edit(mx), SlackSigner.claimed_edit(my)
    assert cx is not None and cy is not None
    (x_edit, _, x_message), (y_edit, _, y_message) = cx, cy
    x_mac = mx.rsplit(":", 1)[1]
    rx, ry = await app.service.get(x), await app.service.get(y)
    signer = SlackSigner(await app.store.setting("slack_button_key", lambda: "unused"))
    forged = [
        mx[:-1] + ("A" if mx[-1] != "A" else "B"),  # one character changed
        mx.replace(f"e:{x_edit}:", f"e:{y_edit}:", 1),  # x's MAC on y's edit
        f"e:{x_edit}:{y}:{x_message}:{x_mac}",  # x's edit claimed for y
        signer.edit_confirm(x_edit, y, ry.action_digest, U_ALICE, x_message),  # signed, but x's edit is not y's
        signer.edit_confirm(x_edit, x, "0" * 64, U_ALICE, x_message),  # other content
        signer.edit_confirm(x_edit, x, rx.action_digest, U_ALICE, y_message),  # another prompt
        SlackSigner("11" * 32).edit_confirm(x_edit, x, rx.action_digest, U_ALICE, x_message),  # another key
        signer.edit_confirm(999, x, rx.action_digest, U_ALICE, x_message),  # no such edit
        signer.modal(x, rx.action_digest, U_ALICE, x_message, "edit"),  # the edit modal's, not a confirmation's
        "e:1:req_000000000000:C0:1.1:" + "A" * 43,
        "",
    ]
    for metadata in forged:
        answer = await submit_as(fake, U_ALICE, vx, CONFIRM_VIEW, metadata)
        assert answer is not None and answer["response_action"] == "update", metadata
        assert NOT_VALID in json.dumps(answer["view"]) and "submit" not in answer["view"], metadata
    # bob (an approver of x) submitting alice's genuine confirmation: it is alice's edit, not his.
    answer = await submit_as(fake, U_BOB, vx, CONFIRM_VIEW, mx)
    assert answer is not None and NOT_VALID in json.dumps(answer["view"])
    # An edit modal's metadata cannot approve through the note modal, nor skip the diff; a
    # confirmation's cannot propose another edit.
    edit_modal = signer.modal(y, ry.action_digest, U_ALICE, y_message, "edit")
    for callback, metadata, refused in (("signoff:note", edit_modal, {"note": NOT_VALID}),
                                        (EDIT_VIEW, my, {"edit": NOT_VALID})):  # fmt: skip
        answer = await submit_as(fake, U_ALICE, vy, callback, metadata)
        assert answer == {"response_action": "errors", "errors": refused}, callback
    answer = await submit_as(fake, U_ALICE, vy, CONFIRM_VIEW, edit_modal)
    assert answer is not None and NOT_VALID in json.dumps(answer["view"])
    assert [(await app.service.get(r)).status for r in (x, y)] == [Status.PENDING, Status.PENDING]
    assert await decisions(app, x) == [] and await decisions(app, y) == []

    # The genuine confirmation approves x with its edit, once; replayed, it is stale.
    assert await submit_as(fake, U_ALICE, vx, CONFIRM_VIEW, mx) is None
    req = await decided(app, x)
    assert (req.status, req.edited_details) == (Status.APPROVED, {"command": "ls -l x"})
    answer = await submit_as(fake, U_ALICE, vy, CONFIRM_VIEW, mx)  # (vx is closed: from another modal)
    assert answer is not None and "Already approved by `alice`" in view_text(vy)
    assert await decisions(app, x) == ["approved"] and (await app.service.get(y)).status is Status.PENDING


async def test_arguments_too_long_for_slack_are_edited_at_the_console(fake: FakeSlack, app: App) -> None:
    rid = await file(app, action="Bash", details={"command": "echo " + "x" * 3000})
    a = await prompt_in(fake, dm_id(U_ALICE), rid)
    await fake.press(U_ALICE, a, PREFIX + EDIT)
    note = await told(fake, U_ALICE)
    assert "too long to edit in Slack" in note.text and f"`signoff approve {rid} --edit FILE`" in note.text
    assert not fake.views
    assert (await app.service.get(rid)).status is Status.PENDING


# --- the views alone (no Slack): Slack's limits, and nothing of the agent's parsed -----------------


def test_the_edit_views_keep_to_slacks_limits_and_escape_agent_text() -> None:
    from signoff.adapters.slack import edits

    from .test_slack_render import HOSTILE, MESSAGE, SIGNER, all_text, assert_view, request

    details = {"query": " ".join(HOSTILE), "limit": 10}
    req = request("mcp__db__query", details)
    modal = edits.edit_modal(req, SIGNER.modal(req.id, req.action_digest, U_ALICE, MESSAGE, "edit"))
    assert modal is not None
    assert_view(modal)
    [box] = [b for b in modal["blocks"] if b["type"] == "input"]
    assert json.loads(box["element"]["initial_value"]) == details  # the text box holds the arguments as they are
    edited = {**details, "limit": 20, "note": "<!channel> `x` *y*"}
    view = edits.confirm_view(req, edited, SIGNER.edit_confirm(1, req.id, req.action_digest, U_ALICE, MESSAGE))
    assert view is not None
    assert_view(view)  # the diff: escaped, in code, no mention or markup
    assert '+  "limit": 20' in all_text(view["blocks"]) and view["notify_on_close"] is True
    assert view["submit"]["text"] == "Approve edited" and view["close"]["text"] == "Discard"
    assert_view(edits.note_view(edits.too_long(req)))
    assert_view(edits.plain_note("<!channel> *not bold*"))

    assert edits.edit_modal(request("Bash", {"command": "x" * 3000}), "m") is not None
    assert edits.edit_modal(request("Bash", {"command": "x" * 3001}), "m") is None  # over Slack's text box
    assert edits.edit_modal(request("Bash", {"command": "😀" * 1501}), "m") is None  # counted as Slack counts
    # A change too long to show whole is never offered for confirmation.
    huge = request("mcp__db__query", {"rows": ["&" * 2900] * 40})
    assert edits.confirm_view(huge, {"rows": ["<" * 2900] * 40}, "m") is None
