"""The web inbox's history, audit timeline (with its export and hash-chain status) and grants:
who sees what, search, filters and keyset paging, the export's escaping, Revoke — over HTTP,
and the export and Revoke in a real Chromium."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from signoff.server import web_queries as wq
from signoff.server.app import App, open_app
from signoff.server.channels import WEB, ChannelService
from signoff.server.config import load_config
from signoff.server.intake import NewRequest
from signoff.server.models import Actor

from .web_support import PageWatch, Served, browser, home_of, serve_web, sign_in_page

pytestmark = pytest.mark.anyio

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
grant_options = ["30m"]

[[routes]]
name = "ops"
match = { action = "deploy*" }
approvers = ["bob"]

[[routes]]
name = "default"
approvers = ["alice", "bob"]
grant_options = ["30m"]
"""

AGENT = Actor("agent", "claude-code", "mcp")
ALICE = Actor("human", "alice", "console")


@pytest.fixture
async def served(write_config: Callable[[str], Path]) -> AsyncIterator[Served]:
    async with open_app(load_config(write_config(CONFIG)), background=False) as app, serve_web(app) as s:
        yield s


async def file(app: App, action: str, summary: str = "Do the thing", agent: Actor = AGENT, **kw: Any) -> str:
    req = await app.service.request_approval(NewRequest(action=action, summary=summary, **kw), agent)
    return req.id


@asynccontextmanager
async def signed_in(served: Served, approver: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.base) as client:
        await served.sign_in(client, approver)
        yield client


def ids(html: str) -> list[str]:
    return re.findall(r'data-id="([^"]+)"', html)


def csrf_of(html: str) -> str:
    return html.split('name="csrf" content="')[1].split('"')[0]


async def test_an_approver_sees_only_requests_of_their_routes(served: Served) -> None:
    app = served.app
    refund = await file(app, "refund", "Refund order 7")  # alice's route only
    await app.service.approve_and_grant(refund, "30m", ALICE)
    deploy = await file(app, "deploy", "Deploy v2")  # bob's
    both = await file(app, "other", "Rotate keys")
    async with signed_in(served, "bob") as bob:
        history = (await bob.get("/web/history")).text
        assert set(ids(history)) == {deploy, both} and "Refund order 7" not in history
        audit = (await bob.get("/web/audit")).text
        assert refund not in audit and deploy in audit and both in audit
        assert (await bob.get("/web/audit", params={"request": refund})).text.count("data-seq=") == 0
        for fmt in ("csv", "jsonl"):
            export = await bob.get(f"/web/audit/export.{fmt}")
            assert export.status_code == 200 and refund not in export.text and deploy in export.text
        grants = (await bob.get("/web/grants")).text
        assert "data-grant=" not in grants and refund not in grants
    async with signed_in(served, "alice") as alice:
        assert set(ids((await alice.get("/web/history")).text)) == {refund, both}
        assert re.search(r'data-grant="[^"]+"', (await alice.get("/web/grants")).text)
    async with httpx.AsyncClient(base_url=served.base) as nobody:
        for path in ("/web/history", "/web/audit", "/web/audit/export.csv", "/web/grants"):
            r = await nobody.get(path)
            assert r.status_code == 401 and refund not in r.text and both not in r.text
    # An approver the configuration no longer names sees nothing, whatever the table says.
    channels = ChannelService(app.service, WEB)
    assert (await wq.history(channels, "mallory", wq.HistoryFilter())).rows == []


async def test_keyset_pages_have_no_duplicates_nor_gaps(served: Served) -> None:
    app = served.app
    filed = [await file(app, "other", f"Task number {n}") for n in range(57)]
    newest_first = list(reversed(filed))
    channels = ChannelService(app.service, WEB)
    seen: list[str] = []
    cursor = None
    while True:
        p = await wq.history(channels, "alice", wq.HistoryFilter(), older=cursor, limit=7)
        seen += [r.id for r in p.rows]
        if p.older is None:
            break
        cursor = p.older
    assert seen == newest_first
    # Back again with the newer cursors, from the oldest page.
    back: list[str] = []
    p = await wq.history(channels, "alice", wq.HistoryFilter(), older=cursor, limit=7)
    back = [r.id for r in p.rows]
    while p.newer is not None:
        p = await wq.history(channels, "alice", wq.HistoryFilter(), newer=p.newer, limit=7)
        back = [r.id for r in p.rows] + back
    assert back == newest_first
    # Over HTTP (50 a page), following the links the page shows; a request filed meanwhile
    # neither repeats nor shifts a row.
    async with signed_in(served, "alice") as alice:
        first = (await alice.get("/web/history")).text
        assert ids(first) == newest_first[:50] and 'id="newer"' not in first
        await file(app, "other", "Filed while paging")
        older = re.search(r'href="([^"]+)" rel="next"', first)
        assert older is not None
        second = (await alice.get(older.group(1).replace("&amp;", "&"))).text
        assert ids(second) == newest_first[50:] and 'id="older"' not in second and 'id="newer"' in second


async def test_search_and_filters(served: Served) -> None:
    app = served.app
    tests = await file(app, "Bash", "Run the npm TESTS in ~/shop")
    bad = await file(app, "Bash", "Delete the 100% of files", agent=Actor("agent", "codex", "mcp"))
    refund = await file(app, "refund", "Refund order 7")
    await app.service.decide(bad, False, ALICE, "no")
    channels = ChannelService(app.service, WEB)

    async def found(**kw: Any) -> set[str]:
        return {r.id for r in (await wq.history(channels, "alice", wq.HistoryFilter(**kw))).rows}

    assert await found(q="npm tests") == {tests}  # a substring, any case (the trigram index)
    assert await found(q="100%") == {bad}  # no wildcard
    assert await found(q="%") == {bad}  # short terms: LIKE, escaped
    assert await found(q="codex") == {bad}  # the requester
    assert await found(q="refu") == {refund}  # the action
    assert await found(q="nothing like it") == set()
    assert await found(status="rejected") == {bad}
    assert await found(route="payments") == {refund}
    assert await found(requester="codex") == {bad}
    assert await found(q="bash", status="pending") == {tests}
    req = await app.service.get(tests)
    assert await found(since=req.created_at + 1e-6) == {bad, refund}
    assert await found(until=req.created_at + 1e-6) == {tests}
    async with signed_in(served, "alice") as alice:
        page = (await alice.get("/web/history", params={"q": "npm tests", "status": "bogus"})).text
        assert ids(page) == [tests]
        assert ids((await alice.get("/web/history", params={"from": "2000-01-01", "to": "2000-01-02"})).text) == []


async def test_audit_filters_paging_and_chain_status(served: Served) -> None:
    app = served.app
    rids = [await file(app, "other", f"Job {n}") for n in range(30)]
    for rid in rids[:26]:
        await app.service.decide(rid, False, ALICE, "not now")
    channels = ChannelService(app.service, WEB)
    seqs: list[int] = []
    cursor = None
    while True:
        p = await wq.audit(channels, "alice", wq.AuditFilter(event="rejected"), older=cursor, limit=10)
        seqs += [e.seq for e in p.rows]
        assert all(e.event == "rejected" for e in p.rows)
        if p.older is None:
            break
        cursor = p.older
    assert len(seqs) == 26 == len(set(seqs)) and seqs == sorted(seqs, reverse=True)
    assert {e.request_id for e in (await wq.audit(channels, "alice", wq.AuditFilter(request_id=rids[0]))).rows} == {
        rids[0]
    }
    async with signed_in(served, "alice") as alice:
        page = (await alice.get("/web/audit")).text
        assert "Hash chain: <strong>OK</strong>" in page  # a short chain is checked by itself
        status, head = await wq.ChainCache(auto_limit=0).status(app.store)
        assert status is None and head > 0  # a long one only on demand …
        checked, _ = await wq.ChainCache(auto_limit=0).status(app.store, check=True)
        assert checked is not None and checked.ok and checked.count == head  # … as `audit verify` counts


async def test_export_matches_the_filter_and_neutralises_formulas(served: Served) -> None:
    app = served.app
    hostile = Actor("agent", '=HYPERLINK("http://evil")', "mcp")
    kept = await file(app, "other", "<script>alert(1)</script>", agent=hostile)
    other = await file(app, "other", "Plain")
    await app.service.decide(kept, False, ALICE, "@SUM(1+1) <b>")
    async with signed_in(served, "alice") as alice:
        r = await alice.get("/web/audit/export.csv", params={"requester": hostile.name})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert "attachment" in r.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert [row["event"] for row in rows] == ["created", "rejected"] and other not in r.text
        assert all(row["request_id"] == kept for row in rows)
        assert rows[0]["actor"] == "'" + hostile.name  # a formula shows as text
        assert not any(cell[:1] in "=+-@" for row in rows for cell in row.values() if cell)
        lines = (await alice.get("/web/audit/export.jsonl", params={"event": "rejected"})).text.splitlines()
        events = [json.loads(line) for line in lines]
        assert [e["request_id"] for e in events] == [kept] and events[0]["data"] == {"reason": "@SUM(1+1) <b>"}
        page = (await alice.get("/web/history")).text
        assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


async def test_revoke_needs_the_csrf_token_and_the_core_decides_who(served: Served) -> None:
    app = served.app
    refund = await file(app, "refund", "Refund order 7")  # payments: alice only
    _, grant = await app.service.approve_and_grant(refund, "30m", ALICE)
    assert grant is not None
    async with signed_in(served, "bob") as bob:
        page = (await bob.get("/web/grants")).text
        r = await bob.post(f"/web/grants/{grant.id}/revoke", data={"csrf": csrf_of(page)})
        assert r.status_code == 403 and "Only the approver who made it" in r.text
        assert (await bob.post("/web/grants/nope/revoke", data={"csrf": csrf_of(page)})).status_code == 404
    assert [g.id for g in await app.service.list_grants()] == [grant.id]
    assert "refused" in [e.event for e in await app.store.audit(request_id=refund)]
    async with signed_in(served, "alice") as alice:
        page = (await alice.get("/web/grants")).text
        assert f'data-grant="{grant.id}"' in page and "any refund call" in page
        assert (await alice.post(f"/web/grants/{grant.id}/revoke")).status_code == 403  # no token
        assert [g.id for g in await app.service.list_grants()] == [grant.id]
        r = await alice.post(f"/web/grants/{grant.id}/revoke", data={"csrf": csrf_of(page)})
        assert r.status_code == 303 and r.headers["location"] == f"{home_of(alice)}/grants?done=revoked"
        after = (await alice.get("/web/grants?done=revoked")).text
        assert "Grant revoked" in after and "revoked by alice" in after
        again = await alice.post(f"/web/grants/{grant.id}/revoke", data={"csrf": csrf_of(page)})
        assert again.headers["location"] == f"{home_of(alice)}/grants?done=ended"
    assert await app.service.list_grants() == []


async def test_export_and_revoke_in_a_browser(served: Served, tmp_path: Path) -> None:
    app = served.app
    rid = await file(app, "other", "Rotate <b>keys</b>")
    _, grant = await app.service.approve_and_grant(rid, "30m", ALICE)
    assert grant is not None
    async with browser() as b:
        context = await b.new_context(accept_downloads=True)
        page = await context.new_page()
        watch = PageWatch(page)
        home = await sign_in_page(page, await served.link("alice"))
        await page.goto(f"{home}/audit?event=approved")
        async with page.expect_download(timeout=10_000) as info:
            await page.click("#export-csv")
        download = await info.value
        saved = tmp_path / download.suggested_filename
        await download.save_as(saved)
        assert saved.suffix == ".csv"
        with saved.open(encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert [(r["event"], r["request_id"]) for r in rows] == [("approved", rid)]
        await page.goto(f"{home}/grants")
        await page.click(f'[data-revoke="{grant.id}"]')
        await page.wait_for_url(f"{home}/grants?done=revoked", timeout=10_000)
        await page.locator("#notice").wait_for(timeout=10_000)
        assert await page.locator("#live [data-grant]").count() == 0
        assert await page.locator(f'#ended [data-grant="{grant.id}"]').count() == 1
        # A phone: the history does not scroll sideways.
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.goto(f"{home}/history")
        await page.get_by_text("Rotate <b>keys</b>").wait_for(timeout=10_000)
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert watch.dialogs == [] and watch.errors == []
    assert await app.service.list_grants() == []
