"""How requests look in Telegram (pure functions of the request)."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any

from signoff.adapters.telegram.buttons import (
    APPROVE,
    APPROVE_WITH_NOTE,
    EDIT,
    REJECT,
    REJECT_WITH_REASON,
    ButtonSigner,
    Press,
    new_key,
)
from signoff.adapters.telegram.render import MAX_TEXT, keyboard, prompt_text
from signoff.server.models import ApprovalRequest, Status


def request(action: str, details: Any, **kw: Any) -> ApprovalRequest:
    now = time.time()
    base = ApprovalRequest(
        id="req_0123456789ab", action=action, summary="s", details=details, metadata={}, route="default",
        route_snapshot={}, approvers=["alice"], requested_by="claude-code", requested_via="mcp", claimed_requester=None,
        idempotency_key=None, content_hash="h", status=Status.PENDING, on_timeout="reject", created_at=now,
        expires_at=now + 3600, decided_at=None, decided_by=None, decided_kind=None, decided_via=None, reason=None,
    )  # fmt: skip
    return replace(base, **kw)


def test_claude_code_tools_render_in_their_own_terms() -> None:
    bash = prompt_text(request("Bash", {"command": "rm -rf build && make", "description": "Rebuild"}), time.time())
    assert "<pre>$ rm -rf build &amp;&amp; make</pre>" in bash
    edit = prompt_text(
        request("Edit", {"file_path": "app.py", "old_string": "x = 1\ny = 2", "new_string": "x = 1\ny = 3"}),
        time.time(),
    )
    assert "--- app.py" in edit and "-y = 2" in edit and "+y = 3" in edit and "old_string" not in edit
    write = prompt_text(
        request("Write", {"file_path": "notes.md", "content": "# Title\n" + "line\n" * 3000}), time.time()
    )
    assert "notes.md\n\n# Title" in write and "more characters: /show" in write and len(write) <= MAX_TEXT
    fetch = prompt_text(
        request("WebFetch", {"url": "https://example.com/a?b=1&c=2", "prompt": "summarize"}), time.time()
    )
    assert "https://example.com/a?b=1&amp;c=2\n\nsummarize" in fetch
    other = prompt_text(request("mcp__db__query", {"sql": "select 1"}), time.time())
    assert "&quot;sql&quot;: &quot;select 1&quot;" in other


def test_outcome_and_buttons() -> None:
    done = request("Bash", {"command": "ls"}, status=Status.REJECTED, decided_by="alice", decided_at=time.time(),
                   decided_via="telegram", reason="<not> now")  # fmt: skip
    text = prompt_text(done, time.time())
    assert "❌ <b>Rejected</b> by <b>alice</b>" in text and "Reason: &lt;not&gt; now" in text
    signer = ButtonSigner(new_key())
    req = request("Bash", {}, action_digest="ab" * 32)
    rows = keyboard(req, signer).inline_keyboard
    datas = [str(b.callback_data) for row in rows for b in row]
    assert all(len(d.encode()) <= 64 for d in datas)
    labels = [[b.text for b in row] for row in rows]
    assert labels == [["✅ Approve", "❌ Reject"], ["📝 Approve with note", "✍️ Reject with reason"], ["✏️ Edit"]]
    assert [signer.verify_request(d, req.action_digest) for d in datas] == [
        Press(action, req.id) for action in (APPROVE, REJECT, APPROVE_WITH_NOTE, REJECT_WITH_REASON, EDIT)
    ]
    # "Edit" only where the route allows editing and one approval decides (an old snapshot without
    # allow_edit allows it, as approve_edited reads it).
    for snapshot in ({"allow_edit": False}, {"quorum": 2}):
        labels = [
            [b.text for b in row] for row in keyboard(replace(req, route_snapshot=snapshot), signer).inline_keyboard
        ]
        assert ["✏️ Edit"] not in labels
    assert signer.verify_request(datas[0], "cd" * 32) is None  # made for other content
    assert signer.verify(datas[0]) is None  # request data verifies only against its request's digest
    assert ButtonSigner(new_key()).verify_request(datas[0], req.action_digest) is None  # another database's key


def test_an_approval_note_is_shown_as_a_note_and_escaped() -> None:
    noted = request("Bash", {"command": "ls"}, status=Status.APPROVED, decided_by="alice", decided_at=time.time(),
                    decided_via="telegram", decided_kind="human", reason="<b>after</b> 18:00\n✅ Approved by bob")  # fmt: skip
    text = prompt_text(noted, time.time())
    outcome = text.rsplit("\n\n", 1)[1]
    assert outcome.startswith("✅ <b>Approved</b> by <b>alice</b>")
    assert outcome.endswith("\nNote: &lt;b&gt;after&lt;/b&gt; 18:00\\x0a✅ Approved by bob")  # one line, no markup


def test_the_header_shows_where_and_exactly_what() -> None:
    home = os.path.expanduser("~")
    req = request("Bash", {"command": "npm test"}, cwd=f"{home}/src/shop", action_digest="1a2b3c4d5e6f" + "0" * 52,
                  client_name="cursor", claimed_requester="helper")  # fmt: skip
    text = prompt_text(req, time.time())
    head = text.split("\n\n")[0]  # above the summary, whatever the agent sent
    assert (
        "Approval needed: Bash" in head
        and "Asked by <b>claude-code (calls itself “helper”) · client “cursor”</b>" in head
    )
    assert (
        "In <code>~/src/shop</code>" in head
        and "ID <code>req_0123456789ab</code> · digest <code>1a2b3c4d5e6f</code>" in head
    )


def test_an_edited_approval_says_approved_with_changes() -> None:
    edited = request("Bash", {"command": "make deploy"}, status=Status.APPROVED, decided_by="alice",
                     decided_at=time.time(), decided_via="telegram", decided_kind="human",
                     edited_details={"command": "make deploy-staging"})  # fmt: skip
    outcome = prompt_text(edited, time.time()).rsplit("\n\n", 1)[1]
    assert outcome.startswith("✅ <b>Approved</b> <b>with changes</b> by <b>alice</b>")
    plain = replace(edited, edited_details=None)
    assert prompt_text(plain, time.time()).rsplit("\n\n", 1)[1].startswith("✅ <b>Approved</b> by <b>alice</b>")
