"""How requests look in Slack, and the signed values behind their buttons (pure functions, no Slack).

Every message and modal is checked with the fake Slack's own Block Kit checks (the limits Slack
enforces), and every text in it for what hostile agent text could make of it: no mention, link
or markup — agent text (marked with ``ZQX`` here) appears in mrkdwn only inside code spans.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signoff.adapters.slack import render
from signoff.adapters.slack.buttons import (
    ACTION_PREFIX,
    APPROVE,
    APPROVE_ALL,
    APPROVE_WITH_NOTE,
    DETAILS,
    DIGEST_ACTIONS,
    EDIT,
    NOTE_MODAL,
    REJECT,
    REJECT_ALL,
    REJECT_WITH_REASON,
    REQUEST_ACTIONS,
    REVIEW_EACH,
    REVOKE,
    Press,
    SlackSigner,
    new_key,
)
from signoff.server.details_text import details_text
from signoff.server.grant_models import Grant
from signoff.server.models import ApprovalRequest, Status, Vote
from signoff.server.sanitize import has_control

from .fake_slack import SlackError, _check_message, _check_view

NOW = 1_700_000_000.0
DIGEST_A, DIGEST_B = "ab" * 32, "cd" * 32
U_ALICE, U_BOB = "U0ALICE", "U0BOB"
MESSAGE = "C0TEAM:1700000001.000100"
MARK = "ZQX"  # in every hostile string: where it shows in mrkdwn, agent text escaped its code span
HOSTILE = [
    "<!channel> ZQX", "<!here|ZQX>", "<@U123> ZQX", "<#C123|ZQX>", "<https://evil.example|click ZQX>",
    "https://evil.example/ZQX", "@channel ZQX", "*bold ZQX*", "_italic ZQX_", "~strike ZQX~", "> quote ZQX",
    "`ZQX`", "```\nZQX\n```", "x` *ZQX* `y", "`` ZQX ``", ":rotating_light: ZQX", "&lt;!channel&gt; ZQX",
    "\u202eZQX\u202c", "ZQX\x1b[2J\x00\x07\r", "\u2066ZQX\u2069", "ZQX\u2028line", "&amp; ZQX &",
]  # fmt: skip


def signer() -> SlackSigner:
    return SlackSigner(new_key())


SIGNER = signer()


def request(action: str = "Bash", details: Any = None, **kw: Any) -> ApprovalRequest:
    base = ApprovalRequest(
        id="req_0123456789ab", action=action, summary="s", details=details, metadata={}, route="default",
        route_snapshot={}, approvers=["alice"], requested_by="claude-code", requested_via="mcp", claimed_requester=None,
        idempotency_key=None, content_hash="h", status=Status.PENDING, on_timeout="reject", created_at=NOW - 60,
        expires_at=NOW + 3600, decided_at=None, decided_by=None, decided_kind=None, decided_via=None, reason=None,
        action_digest=DIGEST_A,
    )  # fmt: skip
    return replace(base, **kw)


def grant(**kw: Any) -> Grant:
    base = Grant(
        id="grt_0123456789ab", route="default", action="Bash", requested_by="claude-code", session=None,
        argument="command", pattern="npm test", from_request="req_0123456789ab", created_at=NOW - 60,
        created_by="alice", expires_at=NOW + 1800, max_uses=5, uses=1, revoked_at=None, revoked_by=None,
        notice_channel="slack", notice_address="C0TEAM", notice_message="1700000001.000100", cwd="/srv/shop",
    )  # fmt: skip
    return replace(base, **kw)


def final(req: ApprovalRequest, status: Status, **kw: Any) -> ApprovalRequest:
    return replace(req, status=status, decided_at=NOW, decided_by=kw.pop("decided_by", "alice"),
                   decided_via=kw.pop("decided_via", "slack"), **kw)  # fmt: skip


# --- checks --------------------------------------------------------------------------------------------


def texts(node: Any, kind: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every text object in ``node`` (of ``kind``, if given): (its text, the object)."""
    if isinstance(node, dict):
        is_text = node.get("type") in ("mrkdwn", "plain_text") and isinstance(node.get("text"), str)
        if is_text and (kind is None or node["type"] == kind):
            yield node["text"], node
        for value in node.values():
            yield from texts(value, kind)
    elif isinstance(node, list):
        for value in node:
            yield from texts(value, kind)


def outside_code(text: str) -> str:
    """``text`` without its code blocks and inline code spans (only ours have backticks)."""
    return re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", text, flags=re.DOTALL))


def assert_safe_mrkdwn(text: str) -> None:
    """What Slack could parse in a mrkdwn ``text``: nothing of the agent's."""
    assert "<" not in text and ">" not in text, text  # no <!channel>, <@U…>, <url|link>, quote
    assert "&" not in re.sub(r"&(amp|lt|gt);", "", text), text  # every & is ours, as an entity
    assert MARK not in outside_code(text), text  # agent text only in code: no *bold*, _x_, :emoji:, links
    assert text.count("```") % 2 == 0, text
    assert has_control(text, allow_newlines=True) is None, text  # no bidi override, no terminal escape


def assert_safe(blocks: Any) -> None:
    for text, obj in texts(blocks):
        if obj["type"] == "mrkdwn":
            assert obj.get("verbatim") is True, obj  # no automatic links, channel names or mentions
            assert_safe_mrkdwn(text)
        else:
            assert "<" not in text and ">" not in text and has_control(text) is None, text


def assert_message(fallback: str, blocks: list[dict[str, Any]]) -> None:
    """A message Slack accepts (the fake's Block Kit checks) and that nothing of the agent's escapes."""
    _check_message({"text": fallback, "blocks": blocks}, required=True)
    assert len(blocks) <= render.MAX_BLOCKS
    assert render.text_size(blocks) <= render.MAX_MESSAGE_TEXT
    assert_safe_mrkdwn(fallback)
    assert_safe(blocks)
    for b in blocks:
        for e in b.get("elements", []) + ([b["accessory"]] if "accessory" in b else []):
            if e.get("type") == "button":
                assert e["action_id"].startswith(ACTION_PREFIX) and len(e["action_id"]) <= 255
                assert len(e["value"]) <= 2000 and len(e["text"]["text"]) <= render.MAX_BUTTON_TEXT


def assert_view(view: dict[str, Any]) -> None:
    _check_view(view)
    assert len(view["blocks"]) <= 100 and len(view["title"]["text"]) <= 24
    assert len(view.get("private_metadata", "")) <= 3000
    assert len(json.dumps(view)) < 250_000
    assert_safe(view["blocks"])


def buttons(blocks: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The buttons of ``blocks`` by action (action_id without the prefix)."""
    found = [e for b in blocks for e in [*b.get("elements", []), b.get("accessory") or {}] if e.get("type") == "button"]
    return {e["action_id"].removeprefix(ACTION_PREFIX): e for e in found}


def all_text(blocks: Sequence[dict[str, Any]]) -> str:
    return "\n".join(t for t, _ in texts(list(blocks)))


def hostile_request(text: str, **kw: Any) -> ApprovalRequest:
    """A request with ``text`` in every field an agent (or the config) fills in."""
    req = request(
        text, {"command": text * 3, "note": text}, summary=text, requested_by=text, claimed_requester=text,
        client_name=text + "c", cwd="/srv/" + text, route=text,
        metadata={text: text, "k" + text: [text], "n": 1},
        route_snapshot={"quorum": 2, "reject_quorum": 2, "grant_options": ["30m", "2h"],
                        "escalation": [{"after": 60, "approvers": [text, "bob"], "telegram": []}]},
        level=1,
    )  # fmt: skip
    return replace(req, **kw)


def every_rendering(req: ApprovalRequest, text: str) -> None:
    """Render ``req`` every way there is, pending and final, and check each."""
    votes = [Vote(text, "approve", NOW, None), Vote("bob" + text, "reject", NOW, text)]
    assert_message(*render.prompt(req, NOW, votes, SIGNER))
    for status in (Status.APPROVED, Status.REJECTED, Status.EXPIRED, Status.CANCELLED):
        done = final(req, status, decided_by=text, reason=text)
        fallback, blocks = render.prompt(done, NOW, votes, SIGNER)
        assert_message(fallback, blocks)
        assert not buttons(blocks)
        assert_safe_mrkdwn(render.already(done))
    assert_view(render.details_modal(req))
    assert_view(render.reason_modal(req, SIGNER.modal(req.id, req.action_digest, U_ALICE, MESSAGE)))
    for short in (render.reminder(req, NOW), render.escalated(req)):
        assert_safe_mrkdwn(short)
    fallback, blocks, listed = render.digest([req] * 30, 3, NOW, 7, "C0TEAM", SIGNER)
    assert_message(fallback, blocks)
    assert len(listed) == render.DIGEST_LISTED
    g = grant(action=text, requested_by=text, pattern=text, cwd="/srv/" + text, route=text, revoked_by=text)
    for each in (g, replace(g, revoked_at=NOW - 5)):
        assert_message(*render.grant_notice(each, NOW, SIGNER))
    assert_message(*render.grants_list([g] * 25, NOW, SIGNER))


# --- the checks themselves -------------------------------------------------------------------------------


def test_the_fake_checks_refuse_what_slack_refuses() -> None:
    """The checks above have teeth: over-long sections, headers, button labels are refused."""
    ok = {"type": "section", "text": {"type": "mrkdwn", "text": "x"}}
    _check_message({"text": "t", "blocks": [ok]}, required=True)
    long_label = {"type": "button", "text": {"type": "plain_text", "text": "x" * 76}, "action_id": "a", "value": "v"}
    for bad in (
        [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}],
        [{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}],
        [ok] * 51,
        [{"type": "actions", "elements": [long_label]}],
    ):
        with pytest.raises(SlackError):
            _check_message({"text": "t", "blocks": bad}, required=True)
    with pytest.raises(AssertionError):
        assert_safe_mrkdwn("*ZQX* <!channel>")


# --- escaping and limits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_never_becomes_a_mention_link_or_markup(text: str) -> None:
    every_rendering(hostile_request(text), text)


def test_escape_and_code_spans() -> None:
    assert render.escape("<!channel> & <@U1> <http://x|y>") == "&lt;!channel&gt; &amp; &lt;@U1&gt; &lt;http://x|y&gt;"
    assert render.code("a`b") == "`aˋb`"  # a backtick cannot close the span
    assert render.code("") == "“”"
    assert render.code("x" * 500, 20) == "`" + "x" * 17 + "…`"
    assert render.code("/a/very/long/path/to/the/project", 12, keep_end=True) == "`…e/project`"
    assert render.length("😀") == 2  # counted as Slack does at most: UTF-16 units


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(alphabet=st.sampled_from(list("<>&`*_~!@#:|\\ \n\r\t\x00\x1b\x7f\u202e\u2066\u200fé😀aZ")), max_size=40),
    st.text(max_size=40),
)
def test_fuzzed_hostile_text_is_always_safe_and_within_limits(left: str, right: str) -> None:
    text = left + MARK + right
    every_rendering(hostile_request(text), text)


def test_huge_agent_text_stays_within_slacks_limits() -> None:
    req = request(
        "A" * 10_000, {"command": "x" * 100_000}, summary="s" * 20_000, requested_by="r" * 5000,
        claimed_requester="c" * 5000, client_name="n" * 5000, cwd="/" + "d" * 5000, route="q" * 5000,
        metadata={f"key{i}" * 20: "v" * 500 for i in range(500)},
        route_snapshot={"quorum": 3, "grant_options": ["30m", "2h", "session"],
                        "escalation": [{"after": 60, "approvers": [f"name{i}" * 30 for i in range(200)], "telegram": []}]},
        session="sess", level=1,
    )  # fmt: skip
    votes = [Vote(f"voter{i}" * 40, "approve", NOW, None) for i in range(100)]
    fallback, blocks = render.prompt(req, NOW, votes, SIGNER)
    assert_message(fallback, blocks)
    header = blocks[0]["text"]["text"]
    assert blocks[0]["type"] == "header" and len(header) <= 150 and header.endswith("…")
    body = all_text(blocks)
    assert "*Action* `AAAA" in body  # the action cut in the header is shown longer below it
    assert "more metadata keys" in body and "Trimmed to fit: `signoff show req_0123456789ab`" in body
    assert "more characters of details — press *Details*" in body and DETAILS in buttons(blocks)
    assert len(fallback) < 300
    every_rendering(req, "A")


def test_metadata_is_bounded_and_says_how_many_keys_are_left_out() -> None:
    req = request(metadata={f"k{i}": i for i in range(500)})
    _, blocks = render.prompt(req, NOW, [], SIGNER)
    meta = next(t for t, _ in texts(blocks, "mrkdwn") if "`k0` = `0`" in t)
    shown = meta.count(" = ")
    assert f"… {500 - shown} more metadata keys" in meta and 10 < shown < 500


# --- what a prompt says --------------------------------------------------------------------------------------


def test_the_prompt_shows_who_where_route_expiry_id_and_digest() -> None:
    req = request("Bash", {"command": "npm test"}, cwd="/srv/shop", client_name="cursor", claimed_requester="helper",
                  summary="Run the tests", metadata={"ticket": "T-1"})  # fmt: skip
    fallback, blocks = render.prompt(req, NOW, [], SIGNER)
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "🔐 Approval needed: Bash", "emoji": False},
    }
    head = blocks[1]["text"]["text"]
    assert "Asked by `claude-code` (calls itself `helper`) · client `cursor`" in head
    assert "In `/srv/shop`" in head and "Route `default` · expires in 1 h (23:13 UTC)" in head
    assert "ID `req_0123456789ab` · digest `abababababab`" in head
    body = all_text(blocks)
    assert "```\nRun the tests\n```" in body and '`ticket` = `"T-1"`' in body and "```\n$ npm test\n```" in body
    assert "Trimmed" not in body and "more characters" not in body
    assert fallback == "🔐 Approval needed: `Bash` from `claude-code`"
    assert_message(fallback, blocks)


def test_pending_buttons_are_signed_for_the_request_and_its_content() -> None:
    req = request(route_snapshot={"grant_options": ["30m", "2h"]}, cwd="/srv/shop")
    _, blocks = render.prompt(req, NOW, [], SIGNER)
    found = buttons(blocks)
    assert list(found) == [APPROVE, REJECT, APPROVE_WITH_NOTE, REJECT_WITH_REASON, "grant0", "grant1", EDIT]
    assert found[APPROVE_WITH_NOTE]["text"]["text"] == "📝 Approve with note"
    assert found[APPROVE]["style"] == "primary" and found[REJECT]["style"] == "danger"
    assert found["grant0"]["text"]["text"] == "✅ any Bash call in /srv/shop, from claude-code, 30 min"
    assert "grant_options" not in all_text(blocks) and "*Approve and allow more like it:*" in all_text(blocks)
    for action, button in found.items():
        press = SIGNER.verify_request(button["value"], req.action_digest)
        assert press == Press(action, req.id)
        assert SIGNER.verify_request(button["value"], DIGEST_B) is None  # made for other content
    assert SIGNER.verify_request(found["grant1"]["value"], DIGEST_A).grant_option == 1  # type: ignore[union-attr]
    assert SIGNER.verify_request(found[APPROVE]["value"], DIGEST_A).grant_option is None  # type: ignore[union-attr]


def test_grant_labels_keep_the_duration_when_cut() -> None:
    req = request(route_snapshot={"grant_options": ["30m", "session"]}, session="s1", cwd="/srv/" + "p" * 200,
                  requested_by="an-agent-with-a-long-name")  # fmt: skip
    _, blocks = render.prompt(req, NOW, [], SIGNER)
    labels = [b["text"]["text"] for a, b in buttons(blocks).items() if a.startswith("grant")]
    assert [len(label) <= 75 for label in labels] == [True, True]
    assert labels[0].endswith("…, 30 min") and labels[1].endswith("…, this session")
    assert "from `an-agent-with-a-long-name`" not in all_text(blocks)  # the full offer is in code, as one span
    assert "from an-agent-with-a-long-name, 30 min`" in all_text(blocks)


def test_trimmed_details_say_how_much_was_left_out_and_offer_details() -> None:
    req = request("Bash", {"command": "y" * 100_000})
    full = details_text(req)
    _, blocks = render.prompt(req, NOW, [], SIGNER)
    note = next(t for t, _ in texts(blocks, "mrkdwn") if "more characters of details" in t)
    left = int(re.search(r"… ([\d,]+) more", note)[1].replace(",", ""))  # type: ignore[index]
    shown = sum(t.count("y") for t, _ in texts(blocks, "mrkdwn") if t.startswith("```"))
    assert left == len(full) - len("$ ") - shown and shown > 5000
    sections = [b for b in blocks if b["type"] == "section" and "```\n$ yyy" in b["text"]["text"]]
    assert len(sections) == 1 and len([b for b in blocks if "yyyy" in json.dumps(b)]) <= render.DETAILS_SECTIONS
    assert DETAILS in buttons(blocks)
    assert SIGNER.verify_request(buttons(blocks)[DETAILS]["value"], DIGEST_A) == Press(DETAILS, req.id)


def test_long_details_are_split_at_line_breaks_and_the_modal_shows_them_all() -> None:
    lines = [f"line {i:05d} " + "x" * 40 for i in range(600)]  # ~30k characters
    req = request("mcp__db__query", "\n".join(lines))
    _, blocks = render.prompt(req, NOW, [], SIGNER)
    details = [t for t, _ in texts(blocks, "mrkdwn") if t.startswith("```\nline")]
    assert 1 <= len(details) <= render.DETAILS_SECTIONS
    assert all(t.endswith("x\n```") for t in details)  # each cut after a whole line
    modal = render.details_modal(req)
    assert_view(modal)
    assert modal["title"]["text"] == "Request details" and "more characters" not in all_text(modal["blocks"])
    body = all_text(modal["blocks"])
    assert all(line in body for line in lines)


def test_the_details_modal_says_what_even_it_cannot_hold() -> None:
    req = request("Write", {"file_path": "big.txt", "content": "z" * 1_000_000})
    modal = render.details_modal(req)
    assert_view(modal)
    note = modal["blocks"][-1]["elements"][0]["text"]
    assert "more characters not shown" in note and "`signoff show req_0123456789ab`" in note
    assert render.details_modal(request(details=None))["blocks"][-1]["text"]["text"].startswith("No details")


def test_the_reason_modal() -> None:
    req = request()
    metadata = SIGNER.modal(req.id, req.action_digest, U_ALICE, MESSAGE)
    view = render.reason_modal(req, metadata)
    assert_view(view)
    assert view["callback_id"] == "signoff:reason" == render.REASON_CALLBACK and view["private_metadata"] == metadata
    assert (view["title"]["text"], view["submit"]["text"], view["close"]["text"]) == (
        "Reject with reason",
        "Reject",
        "Cancel",
    )
    field = view["blocks"][-1]
    assert field["block_id"] == "reason" and field["element"] == {
        "type": "plain_text_input", "action_id": "reason", "multiline": True, "max_length": 1000}  # fmt: skip


def test_the_note_modal() -> None:
    req = request()
    metadata = SIGNER.modal(req.id, req.action_digest, U_ALICE, MESSAGE, NOTE_MODAL)
    view = render.note_modal(req, metadata)
    assert_view(view)
    assert view["callback_id"] == "signoff:note" == render.NOTE_CALLBACK and view["private_metadata"] == metadata
    assert (view["title"]["text"], view["submit"]["text"]) == ("Approve with note", "Approve")
    field = view["blocks"][-1]
    assert field["block_id"] == "note" and field["element"] == {
        "type": "plain_text_input", "action_id": "note", "multiline": True, "max_length": 1000}  # fmt: skip


def test_a_note_is_shown_as_a_note_in_code() -> None:
    req = final(request(), Status.APPROVED, decided_kind="human", reason="`<!channel>` *ship* it")
    outcome = render.prompt(req, NOW, [], SIGNER)[1][-1]["text"]["text"]
    assert outcome == "✅ *Approved* by `alice` at 22:13 UTC\nNote: `ˋ&lt;!channel&gt;ˋ *ship* it`"


def test_an_edited_approval_says_approved_with_changes() -> None:
    req = final(request(), Status.APPROVED, decided_kind="human", edited_details={"command": "make deploy-staging"})
    outcome = render.prompt(req, NOW, [], SIGNER)[1][-1]["text"]["text"]
    assert outcome == "✅ *Approved* *with changes* by `alice` at 22:13 UTC"


def test_reason_and_note_metadata_never_verify_as_each_other() -> None:
    reason = SIGNER.modal("req_0123456789ab", DIGEST_A, U_ALICE, MESSAGE)
    note = SIGNER.modal("req_0123456789ab", DIGEST_A, U_ALICE, MESSAGE, NOTE_MODAL)
    assert reason != note
    assert SIGNER.verify_modal(note, U_ALICE, NOTE_MODAL) == ("req_0123456789ab", MESSAGE)
    assert SIGNER.verify_modal_digest(note, U_ALICE, DIGEST_A, NOTE_MODAL)
    assert SIGNER.verify_modal(note, U_ALICE) is None and not SIGNER.verify_modal_digest(note, U_ALICE, DIGEST_A)
    assert SIGNER.verify_modal(reason, U_ALICE, NOTE_MODAL) is None
    assert not SIGNER.verify_modal_digest(reason, U_ALICE, DIGEST_A, NOTE_MODAL)
    assert SIGNER.verify_modal(note, U_BOB, NOTE_MODAL) is None  # replayed by another user
    assert not any(SIGNER.verify_modal(v, U_ALICE, NOTE_MODAL) for v in every_one_char_change(note))


# --- final requests --------------------------------------------------------------------------------------


def test_final_requests_have_no_buttons_and_say_how_they_ended() -> None:
    req = request("Bash", {"command": "x" * 50_000}, route_snapshot={"grant_options": ["30m"]})
    cases = {
        Status.APPROVED: "✅ *Approved* by `alice` at 22:13 UTC",
        Status.REJECTED: "❌ *Rejected* by `alice` at 22:13 UTC\nReason: `&lt;not&gt; now`",
        Status.EXPIRED: "⌛ *Expired* — nobody decided in time at 22:13 UTC",
        Status.CANCELLED: "🚫 *Cancelled* by the agent at 22:13 UTC",
    }
    for status, outcome in cases.items():
        fallback, blocks = render.prompt(
            final(req, status, reason="<not> now" if status is Status.REJECTED else None), NOW, [], SIGNER
        )
        assert_message(fallback, blocks)
        assert not buttons(blocks) and not [b for b in blocks if b["type"] == "actions"]
        assert blocks[-1]["text"]["text"] == outcome
        assert "press *Details*" not in all_text(blocks) and "Approve and allow" not in all_text(blocks)
        assert fallback.startswith(status.value.capitalize())
    by_policy = final(req, Status.APPROVED, decided_by="policy", decided_via="policy", reason="auto rule")
    assert "Reason" not in render.prompt(by_policy, NOW, [], SIGNER)[1][-1]["text"]["text"]
    assert render.already(final(req, Status.APPROVED)) == "Already approved by `alice` at 22:13 UTC."
    assert render.already(replace(req, status=Status.EXPIRED)) == "Already expired."


def test_quorum_progress_and_escalation() -> None:
    req = request(route_snapshot={"quorum": 2, "approvers": ["alice", "bob"],
                                  "escalation": [{"after": 60, "approvers": ["carol"], "telegram": []}]}, level=1)  # fmt: skip
    _, blocks = render.prompt(req, NOW, [Vote("alice", "approve", NOW, None)], SIGNER)
    body = all_text(blocks)
    assert "🗳 1 of 2 approvals — `alice` ✓" in body and "⬆️ Escalated to `carol`" in body
    assert "`alice`, `bob`, `carol` may decide it now" in render.escalated(req)
    assert "Still waiting for you: `Bash` (`req_0123456789ab`) — expires in 1 h" in render.reminder(req, NOW)


# --- grants --------------------------------------------------------------------------------------------


def test_grant_notice_offers_revoke_only_while_live() -> None:
    g = grant()
    fallback, blocks = render.grant_notice(g, NOW, SIGNER)
    assert_message(fallback, blocks)
    text = blocks[0]["text"]["text"]
    assert "`Bash ˋnpm testˋ in /srv/shop, from claude-code`" in text and "until 22:43 UTC (in 30 min)" in text
    assert "Used: 1 use of 5." in text
    assert SIGNER.verify_grant(buttons(blocks)[REVOKE]["value"]) == Press(REVOKE, g.id)
    for ended in (replace(g, revoked_at=NOW - 1, revoked_by="bob"), replace(g, uses=5), replace(g, expires_at=NOW - 1)):
        fallback, blocks = render.grant_notice(ended, NOW, SIGNER)
        assert_message(fallback, blocks)
        assert not buttons(blocks)
    assert (
        "revoked by `bob`"
        in render.grant_notice(replace(g, revoked_at=NOW, revoked_by="bob"), NOW, SIGNER)[1][0]["text"]["text"]
    )


def test_grants_list_is_bounded_and_each_live_grant_has_revoke() -> None:
    grants = [grant(id=f"grt_{i:012x}", expires_at=NOW + (1800 if i % 2 else -5)) for i in range(30)]
    fallback, blocks = render.grants_list(grants, NOW, SIGNER)
    assert_message(fallback, blocks)
    rows = [b for b in blocks if b["type"] == "section" and "grt_" in b["text"]["text"]]
    assert len(rows) == render.GRANTS_LISTED
    revokes = [b["accessory"] for b in rows if "accessory" in b]
    assert len(revokes) == 10 and {SIGNER.verify_grant(r["value"]).target for r in revokes} == {  # type: ignore[union-attr]
        f"grt_{i:012x}" for i in range(1, 20, 2)}  # fmt: skip
    assert "… and 10 more" in all_text(blocks)
    assert render.grants_list([], NOW, SIGNER)[0] == "No grants."


# --- digests --------------------------------------------------------------------------------------------


def test_digest_lists_the_oldest_and_signs_its_buttons_for_this_render_and_place() -> None:
    items = [request("Bash", id=f"req_{i:012x}", route_snapshot={"allow_bulk": True}) for i in range(25)]
    items += [request("refund", id=f"req_{i:012x}", route_snapshot={"allow_bulk": True}) for i in range(25, 27)]
    fallback, blocks, listed = render.digest(items, 2, NOW, 41, "C0TEAM", SIGNER)
    assert_message(fallback, blocks)
    assert listed == items[: render.DIGEST_LISTED]
    body = all_text(blocks)
    assert "📋 *27 pending* — 25 × `Bash`, 2 × `refund`" in body and "… and 7 more" in body
    assert "`req_000000000013`" in body and "`req_000000000014`" not in body  # the 20th listed, the 21st not
    found = buttons(blocks)
    assert list(found) == [REVIEW_EACH, APPROVE_ALL, REJECT_ALL]
    for action, button in found.items():
        assert SIGNER.verify_digest(button["value"], "C0TEAM") == Press(action, "41")
        assert SIGNER.verify_digest(button["value"], "C0OTHER") is None  # sent elsewhere
        assert SIGNER.verify_request(button["value"], DIGEST_A) is None and SIGNER.verify_grant(button["value"]) is None
    assert SIGNER.verify_digest(found[APPROVE_ALL]["value"], "C0TEAM").render_id == 41  # type: ignore[union-attr]


def test_approve_all_only_when_every_listed_route_allows_bulk() -> None:
    bulk = [request(id=f"req_{i:012x}", route_snapshot={"allow_bulk": True}) for i in range(25)]
    assert APPROVE_ALL in buttons(render.digest(bulk, 0, NOW, 1, "U0ALICE", SIGNER)[1])
    one_not = [*bulk[:5], replace(bulk[5], route_snapshot={}), *bulk[6:]]
    assert list(buttons(render.digest(one_not, 0, NOW, 1, "U0ALICE", SIGNER)[1])) == [REVIEW_EACH, REJECT_ALL]
    unlisted_not = [*bulk[:22], replace(bulk[22], route_snapshot={"allow_bulk": False})]  # not listed: not decided
    assert APPROVE_ALL in buttons(render.digest(unlisted_not, 0, NOW, 1, "U0ALICE", SIGNER)[1])


def test_an_empty_digest_has_no_buttons() -> None:
    fallback, blocks, listed = render.digest([], 4, NOW, 1, "C0TEAM", SIGNER)
    assert_message(fallback, blocks)
    assert listed == [] and not buttons(blocks) and "nothing pending (4 decided)" in fallback


# --- signed values ------------------------------------------------------------------------------------------


def test_a_request_value_verifies_only_for_its_request_and_content() -> None:
    value = SIGNER.request(APPROVE, "req_0123456789ab", DIGEST_A)
    assert SIGNER.claimed(value) == Press(APPROVE, "req_0123456789ab")
    assert SIGNER.verify_request(value, DIGEST_A) == Press(APPROVE, "req_0123456789ab")
    assert SIGNER.verify_request(value, DIGEST_B) is None  # the content changed
    assert SIGNER.verify_request(value, None) is None
    other = value.replace("req_0123456789ab", "req_0123456789ac")  # the MAC of A on request B
    assert (
        SIGNER.claimed(other) == Press(APPROVE, "req_0123456789ac") and SIGNER.verify_request(other, DIGEST_A) is None
    )
    relabelled = value.replace(f"q:{APPROVE}:", f"q:{REJECT}:")  # approve's MAC on a reject
    assert SIGNER.verify_request(relabelled, DIGEST_A) is None
    assert signer().verify_request(value, DIGEST_A) is None  # another database's key
    undigested = SIGNER.request(REJECT, "req_0123456789ab", None)
    assert SIGNER.verify_request(undigested, None) == Press(REJECT, "req_0123456789ab")
    assert SIGNER.verify_request(undigested, DIGEST_A) is None


def every_one_char_change(value: str) -> Iterator[str]:
    for i, c in enumerate(value):
        for other in {"A", "a", "0", "_", ":", "-"} - {c}:
            yield value[:i] + other + value[i + 1 :]
    yield value + "A"
    yield value[:-1]
    yield " " + value


def test_tampering_with_one_character_fails() -> None:
    value = SIGNER.request(APPROVE, "req_0123456789ab", DIGEST_A)
    assert not any(SIGNER.verify_request(v, DIGEST_A) for v in every_one_char_change(value))
    dvalue = SIGNER.digest(APPROVE_ALL, 12, "C0TEAM")
    assert not any(SIGNER.verify_digest(v, "C0TEAM") for v in every_one_char_change(dvalue))
    gvalue = SIGNER.grant("grt_0123456789ab")
    assert not any(SIGNER.verify_grant(v) for v in every_one_char_change(gvalue))
    metadata = SIGNER.modal("req_0123456789ab", DIGEST_A, U_ALICE, MESSAGE)
    assert not any(SIGNER.verify_modal(v, U_ALICE) for v in every_one_char_change(metadata))
    assert not any(SIGNER.verify_modal_digest(v, U_ALICE, DIGEST_A) for v in every_one_char_change(metadata))


def test_values_of_one_kind_never_verify_as_another() -> None:
    values = {
        "request": SIGNER.request(REJECT, "req_0123456789ab", DIGEST_A),
        "digest": SIGNER.digest(REJECT_ALL, 5, "C0TEAM"),
        "grant": SIGNER.grant("grt_0123456789ab"),
        "modal": SIGNER.modal("req_0123456789ab", DIGEST_A, U_ALICE, MESSAGE),
    }
    checks: dict[str, Callable[[str], object]] = {
        "request": lambda v: SIGNER.verify_request(v, DIGEST_A),
        "digest": lambda v: SIGNER.verify_digest(v, "C0TEAM"),
        "grant": SIGNER.verify_grant,
        "modal": lambda v: SIGNER.verify_modal(v, U_ALICE),
    }
    for kind, value in values.items():
        for other, check in checks.items():
            assert (check(value) is not None) == (kind == other), (kind, other)
        # the same id and MAC under another kind's prefix
        mac = value.rsplit(":", 1)[1]
        for forged in (f"q:{APPROVE}:req_0123456789ab:{mac}", f"g:{REVOKE}:grt_0123456789ab:{mac}",
                       f"d:{APPROVE_ALL}:5:{mac}"):  # fmt: skip
            if forged != value:
                assert SIGNER.verify_request(forged, DIGEST_A) is None and SIGNER.verify_grant(forged) is None
                assert SIGNER.verify_digest(forged, "C0TEAM") is None
    assert SIGNER.claimed(values["modal"]) is None


def test_a_digest_value_is_bound_to_its_render_and_address() -> None:
    value = SIGNER.digest(APPROVE_ALL, 12, "C0TEAM")
    assert SIGNER.verify_digest(value, "C0TEAM") == Press(APPROVE_ALL, "12")
    assert SIGNER.verify_digest(value, "U0ALICE") is None
    assert SIGNER.verify_digest(value.replace(":12:", ":13:"), "C0TEAM") is None
    assert SIGNER.verify_digest(value.replace(":12:", ":012:"), "C0TEAM") is None


def test_modal_metadata_is_bound_to_the_user_the_message_and_the_content() -> None:
    metadata = SIGNER.modal("req_0123456789ab", DIGEST_A, U_ALICE, MESSAGE)
    assert len(metadata) <= 3000
    assert SIGNER.verify_modal(metadata, U_ALICE) == ("req_0123456789ab", MESSAGE)
    assert SIGNER.verify_modal_digest(metadata, U_ALICE, DIGEST_A)
    assert SIGNER.verify_modal(metadata, U_BOB) is None  # replayed by another user
    assert not SIGNER.verify_modal_digest(metadata, U_BOB, DIGEST_A)
    assert not SIGNER.verify_modal_digest(metadata, U_ALICE, DIGEST_B)  # the content changed
    moved = metadata.replace("C0TEAM:1700000001.000100", "C0TEAM:1700000002.000100")  # another message
    assert SIGNER.verify_modal(moved, U_ALICE) is None and not SIGNER.verify_modal_digest(moved, U_ALICE, DIGEST_A)
    other = metadata.replace("req_0123456789ab", "req_0123456789ac")
    assert SIGNER.verify_modal(other, U_ALICE) is None
    assert signer().verify_modal(metadata, U_ALICE) is None
    for junk in (None, "", "m:", metadata + ":x", json.dumps({"r": "req_0123456789ab"})):
        assert SIGNER.verify_modal(junk, U_ALICE) is None and not SIGNER.verify_modal_digest(junk, U_ALICE, DIGEST_A)


def test_nothing_but_our_format_is_claimed_or_verified() -> None:
    for junk in (None, "", "approve", "q:approve:req_0123456789ab", "q:approve:req_0123456789ab:" + "A" * 43 + "\n",
                 "q:delete:req_0123456789ab:" + "A" * 43, "q:approve:req_0123456789AB:" + "A" * 43,
                 "d:approve_all:-1:" + "A" * 43, "g:revoke:req_0123456789ab:" + "A" * 43):  # fmt: skip
        assert SIGNER.verify_request(junk, DIGEST_A) is None and SIGNER.verify_grant(junk) is None
        assert SIGNER.verify_digest(junk, "C0TEAM") is None
    assert SIGNER.claimed("q:delete:req_0123456789ab:" + "A" * 43) is None
    with pytest.raises(ValueError):
        SIGNER.request("delete", "req_0123456789ab", None)
    with pytest.raises(ValueError):
        SIGNER.digest(APPROVE, 1, "C0TEAM")
    with pytest.raises(ValueError):
        SIGNER.modal("req_0123456789ab", None, U_ALICE, "not a message")
    with pytest.raises(ValueError):
        SlackSigner("00" * 8)  # too short a key


def test_every_action_has_a_value_within_slacks_limits() -> None:
    for action in REQUEST_ACTIONS:
        value = SIGNER.request(action, "req_0123456789ab", DIGEST_A)
        assert len(value) <= 2000 and SIGNER.verify_request(value, DIGEST_A) == Press(action, "req_0123456789ab")
    for action in DIGEST_ACTIONS:
        value = SIGNER.digest(action, 10**17, "C" + "X" * 200)
        assert len(value) <= 2000 and SIGNER.verify_digest(value, "C" + "X" * 200) == Press(action, str(10**17))
    assert Press("grant2", "req_0123456789ab").grant_option == 2 and Press(REVOKE, "grt_1").grant_option is None


def test_the_prompt_at_a_glance() -> None:
    """A typical prompt: every block type in its place, pending then approved (same message, edited)."""
    req = request("Bash", {"command": "npm test"}, route_snapshot={"grant_options": ["30m"]}, cwd="/srv/shop")
    _, blocks = render.prompt(req, time.time(), [], SIGNER)
    assert [b["type"] for b in blocks] == ["header", "section", "section", "section", "section", "actions"]
    _, done = render.prompt(final(req, Status.APPROVED), time.time(), [], SIGNER)
    assert [b["type"] for b in done] == ["header", "section", "section", "section", "section"]
