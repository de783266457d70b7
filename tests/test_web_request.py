"""The web inbox's request page (issue 14): who sees it, what it shows, and every decision made
from it — over HTTP against the real app, and in a real Chromium with the Telegram prompt on the
fake Bot API edited when the web decides."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from signoff.server.app import App, open_app
from signoff.server.config import load_config
from signoff.server.intake import NewRequest
from signoff.server.models import Actor, Status

from .fake_telegram import FakeTelegram
from .web_support import PageWatch, Served, browser, home_of, serve_web, sign_in_page

pytestmark = pytest.mark.anyio

AGENT = Actor("agent", "claude-code", "mcp")
BOB_AT_CONSOLE = Actor("human", "bob", "console")
ALICE_TG, BOB_TG = 111, 222

CONFIG = """
[store]
path = "signoff.db"

[approvers.alice]
telegram_user_id = 111

[approvers.bob]
telegram_user_id = 222

[[routes]]
name = "payments"
match = { action = "refund*" }
approvers = ["alice"]

[[routes]]
name = "tests"
match = { action = "Bash" }
approvers = ["alice"]
grant_options = ["30m", "session"]
grant_scope = { argument = "command", patterns = ["npm test", "pytest *"] }

[[routes]]
name = "money"
match = { action = "wire*" }
approvers = ["alice", "bob"]
quorum = 2

[[routes]]
name = "default"
approvers = ["alice", "bob"]
"""

HOSTILE = "<script>alert('summary')</script><img src=x onerror=\"alert('img')\"><a href=\"javascript:alert(1)\">x</a>"


@pytest.fixture
async def served(write_config: Callable[[str], Path]) -> AsyncIterator[Served]:
    async with open_app(load_config(write_config(CONFIG)), background=False) as app, serve_web(app) as s:
        yield s


async def file(app: App, action: str, summary: str = "Do the thing", *, session: str | None = None, **kw: Any) -> str:
    return (await app.service.request_approval(NewRequest(action=action, summary=summary, **kw), AGENT,
                                               session=session)).id  # fmt: skip


async def sign_in(served: Served, client: httpx.AsyncClient, approver: str) -> None:
    await served.sign_in(client, approver)


async def csrf_of(served: Served, client: httpx.AsyncClient, rid: str) -> str:
    page = await client.get(f"{served.base}/web/r/{rid}")
    found = re.search(r'<meta name="csrf" content="([0-9a-f]+)">', page.text)
    assert found is not None
    return found.group(1)


async def post(served: Served, client: httpx.AsyncClient, rid: str, what: str, **form: str) -> httpx.Response:
    form.setdefault("csrf", await csrf_of(served, client, rid))
    return await client.post(f"{served.base}/web/r/{rid}/{what}", data=form)


async def events(app: App, rid: str) -> list[tuple[str, str, str]]:
    return [(e.event, e.actor, e.channel) for e in await app.store.audit(request_id=rid)]


# --- over HTTP --------------------------------------------------------------------------------


async def test_the_page_shows_the_request_to_its_approvers_only(served: Served) -> None:
    rid = await file(served.app, "refund", "Refund order 7", details={"order": 7, "lines": [{"sku": "A"}]},
                     metadata={"ticket": "T-1"}, claimed_requester="billing-bot")  # fmt: skip
    async with httpx.AsyncClient() as alice, httpx.AsyncClient() as bob:
        await sign_in(served, alice, "alice")
        await sign_in(served, bob, "bob")
        page = await alice.get(f"{served.base}/web/r/{rid}")
        assert page.status_code == 200
        for shown in ("Refund order 7", "claude-code", "billing-bot", "not verified", "T-1", "payments", "created",
                      'data-key="approve"', 'data-key="reject"', f'data-refresh="{home_of(alice)}/r/'):  # fmt: skip
            assert shown in page.text, shown
        req = await served.app.service.get(rid)
        assert req.action_digest is not None and req.action_digest in page.text
        assert "<details open>" in page.text and "sku" in page.text  # JSON folded by level
        for path in (f"/web/r/{rid}", f"/web/r/{rid}/state", f"/web/r/{rid}/trail", "/web/r/req_000000000000"):
            other = await bob.get(served.base + path)
            assert other.status_code == 404 and "No such request among yours" in other.text
            assert "Refund order 7" not in other.text
        # Bob cannot decide it either: refused (audited), nothing decided, and to him it does not exist.
        r = await post(served, bob, rid, "approve", csrf=await csrf_of(served, bob, "x"))
        assert r.status_code == 404 and "No such request among yours" in r.text
        r = await post(served, bob, rid, "reject", csrf=await csrf_of(served, bob, "x"), reason="no")
        assert r.status_code == 404
    assert (await served.app.service.get(rid)).status is Status.PENDING
    assert ("refused", "web:bob", "web") in await events(served.app, rid)


async def test_a_decision_needs_the_csrf_token(served: Served) -> None:
    rid = await file(served.app, "refund")
    async with httpx.AsyncClient() as client:
        await sign_in(served, client, "alice")
        for form in ({}, {"csrf": "0" * 64}):
            r = await client.post(f"{served.base}/web/r/{rid}/approve", data=form)
            assert r.status_code == 403 and "security token" in r.text
        r = await client.post(f"{served.base}/web/r/{rid}/approve", data={"csrf": await csrf_of(served, client, rid)},
                              headers={"Origin": "https://evil.example"})  # fmt: skip
        assert r.status_code == 403
    async with httpx.AsyncClient() as stranger:  # signed out: the sign-in page, nothing else
        r = await stranger.post(f"{served.base}/web/r/{rid}/approve", data={"csrf": "x"})
        assert r.status_code == 401
    assert (await served.app.service.get(rid)).status is Status.PENDING


async def test_approve_and_a_stale_tab(served: Served) -> None:
    first, second = await file(served.app, "other", "First"), await file(served.app, "other", "Second")
    async with httpx.AsyncClient() as client:
        await sign_in(served, client, "alice")
        r = await post(served, client, first, "approve")
        assert r.status_code == 303 and r.headers["location"] == f"{home_of(client)}/r/{first}?done=approved"
        page = await client.get(served.base + r.headers["location"])
        assert 'id="flash">Approved ✅' in page.text and 'data-key="approve"' not in page.text
        req = await served.app.service.get(first)
        assert (req.status, req.decided_by, req.decided_via) == (Status.APPROVED, "alice", "web")

        csrf = await csrf_of(served, client, second)  # the tab is open …
        await served.app.service.decide(second, True, BOB_AT_CONSOLE)  # … when bob decides at the console
        r = await post(served, client, second, "reject", csrf=csrf, reason="too late")
        assert r.status_code == 303 and r.headers["location"].endswith("?done=already")
        page = await client.get(served.base + r.headers["location"])
        assert re.search(r"Already approved by bob at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\.", page.text)
        # A forged flash is not shown: the message comes from a fixed list and must agree with the state.
        forged = await client.get(f"{served.base}/web/r/{second}", params={"done": "rejected"})
        assert "Rejected ❌" not in forged.text
        forged = await client.get(f"{served.base}/web/r/{second}", params={"done": "<b>hi</b>"})
        assert "<b>hi</b>" not in forged.text and "&lt;b&gt;hi" not in forged.text
    req = await served.app.service.get(second)
    assert (req.status, req.decided_by, req.reason) == (Status.APPROVED, "bob", None)
    assert [e for e in await events(served.app, second) if e[0] in ("approved", "rejected")] == [
        ("approved", "bob", "console")
    ]


async def test_reject_needs_a_reason_and_a_note_is_kept(served: Served) -> None:
    rejected, noted = await file(served.app, "other", "One"), await file(served.app, "other", "Two")
    async with httpx.AsyncClient() as client:
        await sign_in(served, client, "alice")
        r = await post(served, client, rejected, "reject", reason="  ")
        assert r.status_code == 400 and "Write why you reject it" in r.text
        assert (await served.app.service.get(rejected)).status is Status.PENDING
        r = await post(served, client, rejected, "reject", reason="not on a Friday\r\nsee <b>runbook</b>")
        assert r.status_code == 303 and r.headers["location"].endswith("?done=rejected")
        page = await client.get(served.base + r.headers["location"])
        assert "see &lt;b&gt;runbook&lt;/b&gt;" in page.text
        r = await post(served, client, noted, "note", note="")
        assert r.status_code == 400 and (await served.app.service.get(noted)).status is Status.PENDING
        r = await post(served, client, noted, "note", note="ship it after lunch")
        assert r.headers["location"].endswith("?done=approved")
    req = await served.app.service.get(rejected)
    assert (req.status, req.reason, req.decided_via) == (Status.REJECTED, "not on a Friday\nsee <b>runbook</b>", "web")
    req = await served.app.service.get(noted)
    assert (req.status, req.reason) == (Status.APPROVED, "ship it after lunch")


async def test_edit_is_checked_before_it_can_be_approved(served: Served) -> None:
    rid = await file(served.app, "other", "Configure", details={"replicas": 2, "name": "web"})
    command = await file(served.app, "Bash", "Run the tests", details={"command": "npm test"})
    async with httpx.AsyncClient() as client:
        await sign_in(served, client, "alice")
        page = await client.get(f"{served.base}/web/r/{rid}")
        assert "&#34;replicas&#34;: 2" in page.text  # the current arguments, to edit
        for bad in ("{not json", "[1, 2]"):
            r = await post(served, client, rid, "edit", arguments=bad)
            assert r.status_code == 400 and 'id="edit-error"' in r.text and "not a JSON object" in r.text
            assert 'id="approve-edited"' not in r.text
        r = await post(served, client, rid, "edit", arguments='{"name": "web", "replicas": 2}')
        assert r.status_code == 200 and 'id="edit-unchanged"' in r.text and 'id="approve-edited"' not in r.text
        r = await post(served, client, rid, "edit", arguments='{\r\n"name": "web", "replicas": 3}')
        assert r.status_code == 200 and '<span class="del">-  &#34;replicas&#34;: 2' in r.text
        assert '<span class="add">+  &#34;replicas&#34;: 3' in r.text
        assert (await served.app.service.get(rid)).status is Status.PENDING  # nothing decided by a check
        checked = re.search(r'name="edited" value="([^"]*)"', r.text)
        assert checked is not None
        r = await post(served, client, rid, "edit/approve", edited=html.unescape(checked.group(1)))
        assert r.status_code == 303 and r.headers["location"].endswith("?done=approved")
        page = await client.get(served.base + r.headers["location"])
        assert "Approved with changes" in page.text

        r = await post(served, client, command, "edit", arguments="")
        assert r.status_code == 400 and "The command is empty" in r.text
        r = await post(served, client, command, "edit", arguments="npm run lint")
        assert r.status_code == 200 and 'id="approve-edited"' in r.text
    req = await served.app.service.get(rid)
    assert (req.status, req.edited_details, req.decided_by) == (
        Status.APPROVED,
        {"name": "web", "replicas": 3},
        "alice",
    )
    assert (await served.app.service.get(command)).status is Status.PENDING


async def test_a_grant_option_says_what_it_covers_and_grants_it(served: Served) -> None:
    rid = await file(served.app, "Bash", "Run the tests", details={"command": "npm test"}, session="s1")
    label = "Approve and grant: Bash `npm test` in no known folder, from claude-code, 30 min"
    async with httpx.AsyncClient() as client:
        await sign_in(served, client, "alice")
        page = await client.get(f"{served.base}/web/r/{rid}")
        assert label in page.text and "from claude-code, this session" in page.text
        r = await post(served, client, rid, "grant", option="9")  # no such option: refused, nothing decided
        assert r.status_code == 403 and (await served.app.service.get(rid)).status is Status.PENDING
        r = await post(served, client, rid, "grant", option="0")
        assert r.status_code == 303 and r.headers["location"].endswith("?done=granted")
    [grant] = await served.app.service.list_grants()
    assert (grant.created_by, grant.pattern, grant.from_request, grant.notice_channel) == (
        "alice",
        "npm test",
        rid,
        None,
    )
    covered = await served.app.service.get(await file(served.app, "Bash", "Again", details={"command": "npm test"}))
    assert covered.status is Status.APPROVED and covered.decided_via == "grant"


async def test_a_question_is_answered_with_an_option_or_in_words(served: Served) -> None:
    picked = await file(served.app, "ask_human", "Which region?", kind="question", options=["eu-west", "<us>"])
    typed = await file(served.app, "ask_human", "Any last words?", kind="question")
    async with httpx.AsyncClient() as client:
        await sign_in(served, client, "alice")
        page = await client.get(f"{served.base}/web/r/{picked}")
        assert "&lt;us&gt;</button>" in page.text and 'data-key="approve"' not in page.text
        r = await post(served, client, picked, "option", option="1")
        assert r.headers["location"].endswith("?done=answered")
        r = await post(served, client, typed, "answer", answer="")
        assert r.status_code == 400
        r = await post(served, client, typed, "answer", answer="ship it")
        assert r.headers["location"].endswith("?done=answered")
        page = await client.get(served.base + r.headers["location"])
        assert "Answered 💬" in page.text and "ship it" in page.text
    assert (await served.app.service.get(picked)).answer == "<us>"
    req = await served.app.service.get(typed)
    assert (req.status, req.answer, req.decided_by) == (Status.ANSWERED, "ship it", "alice")


async def test_quorum_progress_and_a_vote(served: Served) -> None:
    rid = await file(served.app, "wire", "Wire 10k")
    async with httpx.AsyncClient() as client:
        await sign_in(served, client, "alice")
        assert "0 of 2 approvals" in (await client.get(f"{served.base}/web/r/{rid}")).text
        r = await post(served, client, rid, "approve")
        assert r.headers["location"].endswith("?done=voted")
        page = await client.get(served.base + r.headers["location"])
        assert "Your vote counts" in page.text and "1 of 2 approvals — alice ✓" in page.text
        assert 'id="edit"' not in page.text  # one approval does not decide: no edit
    assert (await served.app.service.get(rid)).status is Status.PENDING


async def test_hostile_text_is_shown_as_text(served: Served) -> None:
    rid = await file(served.app, "other", HOSTILE, details={"cmd": HOSTILE, HOSTILE: [HOSTILE]},
                     metadata={HOSTILE[:60]: HOSTILE}, claimed_requester="<b>x</b>")  # fmt: skip
    async with httpx.AsyncClient() as client:
        await sign_in(served, client, "alice")
        page = (await client.get(f"{served.base}/web/r/{rid}")).text
    assert "<script>alert" not in page and "<img" not in page and not re.search(r"<a [^>]*javascript", page)
    assert "&lt;script&gt;alert(&#39;summary&#39;)&lt;/script&gt;" in page
    assert not re.search(r"<script(?![^>]*\bsrc=)", page) and not re.search(r"\son[a-z]+\s*=\s*\"", page)


# --- in a real browser --------------------------------------------------------------------------


async def open_request(b: Any, served: Served, approver: str, rid: str) -> tuple[Any, PageWatch]:
    page = await b.new_page()
    watch = PageWatch(page)
    home = await sign_in_page(page, await served.link(approver))
    await page.goto(f"{home}/r/{rid}")
    return page, watch


@pytest.fixture
async def with_telegram(fake: FakeTelegram, write_config: Callable[[str], Path],
                        unpaced_telegram: None) -> AsyncIterator[Served]:  # fmt: skip
    text = CONFIG + f'\n[telegram]\napi_base_url = "{fake.api_base_url}"\nlease_ttl = "3s"\n'
    async with open_app(load_config(write_config(text))) as app, serve_web(app) as s:
        yield s


async def test_approve_in_the_browser_edits_the_telegram_prompt(fake: FakeTelegram, with_telegram: Served) -> None:
    served = with_telegram
    rid = await file(served.app, "other", "Rotate the keys", details={"cmd": "rotate"})
    prompts = [await fake.wait_for(lambda c=c: next((m for m in fake.chat(c) if rid in m.text and m.buttons()), None))
               for c in (ALICE_TG, BOB_TG)]  # fmt: skip
    async with browser() as b:
        page, watch = await open_request(b, served, "alice", rid)
        await page.click("#approve")
        await page.wait_for_url(f"**/r/{rid}?done=approved", timeout=10_000)
        assert "Approved ✅" in await page.locator("#flash").inner_text()
        assert "by alice" in await page.locator("#outcome").inner_text()
        assert watch.dialogs == [] and watch.errors == []
    for msg in prompts:  # every approver's prompt now shows the outcome, without buttons
        await fake.wait_for(lambda m=msg: not m.buttons() and "Approved" in m.text and "<b>alice</b>" in m.text)


async def test_reject_with_a_reason_in_the_browser(served: Served) -> None:
    rid = await file(served.app, "other", "Drop the table")
    async with browser() as b:
        page, watch = await open_request(b, served, "alice", rid)
        await page.click("#reject")  # no reason: the browser asks for one, nothing is sent
        assert (await served.app.service.get(rid)).status is Status.PENDING
        await page.fill("#reject-reason", "not without a backup")
        await page.click("#reject")
        await page.wait_for_url(f"**/r/{rid}?done=rejected", timeout=10_000)
        assert "not without a backup" in await page.locator("#state").inner_text()
        assert watch.dialogs == [] and watch.errors == []
    req = await served.app.service.get(rid)
    assert (req.status, req.reason, req.decided_via) == (Status.REJECTED, "not without a backup", "web")


async def test_edit_then_approve_in_the_browser(served: Served) -> None:
    rid = await file(served.app, "Edit", "Fix the typo",
                     details={"file_path": "/src/a.py", "old_string": "colour = 1", "new_string": "color = 1"})  # fmt: skip
    async with browser() as b:
        page, watch = await open_request(b, served, "alice", rid)
        assert await page.locator("#details pre.diff .del").inner_text() == "-colour = 1"
        assert await page.locator("#details pre.diff .add").inner_text() == "+color = 1"
        await page.click("#edit summary")
        text = await page.input_value("#edit-arguments")
        await page.fill("#edit-arguments", text.replace("color = 1", "color = 2"))
        await page.click("#edit-check")
        await page.locator("#approve-edited").wait_for(timeout=10_000)
        assert "color = 2" in await page.locator("#edit pre.diff .add").first.inner_text()
        assert (await served.app.service.get(rid)).status is Status.PENDING
        await page.click("#approve-edited")
        await page.wait_for_url(f"**/r/{rid}?done=approved", timeout=10_000)
        assert "with changes" in await page.locator("#outcome").inner_text()
        assert watch.dialogs == [] and watch.errors == []
    req = await served.app.service.get(rid)
    assert req.edited_details == {"file_path": "/src/a.py", "old_string": "colour = 1", "new_string": "color = 2"}


async def test_hostile_html_runs_no_script_in_the_browser(served: Served) -> None:
    rid = await file(served.app, "other", HOSTILE, details={"cmd": HOSTILE, "deep": {"x": [HOSTILE]}},
                     metadata={"note": HOSTILE}, claimed_requester="<img src=x onerror=alert(2)>")  # fmt: skip
    async with browser() as b:
        page, watch = await open_request(b, served, "alice", rid)
        assert await page.locator("#summary").inner_text() == HOSTILE
        assert await page.locator("script").count() == 2  # signoff's own two files, nothing else
        assert await page.locator("main img, main a[href^='javascript']").count() == 0
        await page.keyboard.press("j")  # some interaction, so an event handler would have had its chance
        assert watch.dialogs == [] and watch.errors == []


async def test_keyboard_a_approves(served: Served) -> None:
    rid = await file(served.app, "other", "Press a")
    async with browser() as b:
        page, watch = await open_request(b, served, "alice", rid)
        await page.keyboard.press("r")  # r goes to the reason …
        assert await page.evaluate("document.activeElement.id") == "reject-reason"
        await page.keyboard.type("a")  # … where a is just a letter
        assert (await served.app.service.get(rid)).status is Status.PENDING
        await page.locator("h1").click()
        await page.keyboard.press("a")
        await page.wait_for_url(f"**/r/{rid}?done=approved", timeout=10_000)
        assert watch.dialogs == [] and watch.errors == []
    assert (await served.app.service.get(rid)).decided_by == "alice"


async def test_the_open_page_follows_a_decision_made_elsewhere(served: Served) -> None:
    rid = await file(served.app, "other", "Decided in chat")
    async with browser() as b:
        page, watch = await open_request(b, served, "alice", rid)
        await page.wait_for_function("document.body.dataset.liveOpen === '1'", timeout=10_000)
        await served.app.service.decide(rid, True, BOB_AT_CONSOLE)
        await page.locator("#outcome").get_by_text("by bob").wait_for(timeout=10_000)
        await page.locator("#actions").wait_for(state="hidden", timeout=10_000)
        assert "approved" in await page.locator("#trail").inner_text()
        with anyio.fail_after(10):  # the stale tab's button, if pressed anyway, decides nothing
            csrf = await page.evaluate("window.signoff.csrf")
            home = page.url.rsplit("/r/", 1)[0]  # the session's pages: where its cookie goes
            r = await page.request.post(f"{home}/r/{rid}/reject", form={"csrf": csrf, "reason": "x"})
            assert r.ok and "Already approved by bob" in await r.text()
        assert watch.dialogs == [] and watch.errors == []
    req = await served.app.service.get(rid)
    assert (req.status, req.decided_by, req.reason) == (Status.APPROVED, "bob", None)
