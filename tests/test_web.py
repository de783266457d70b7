"""The web inbox's front door: sign-in links and sessions, the headers and checks every page
passes, and the inbox (live, in a real Chromium)."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from signoff.server.app import App, open_app
from signoff.server.config import load_config
from signoff.server.intake import NewRequest
from signoff.server.models import Actor
from signoff.server.web_auth import LINK_TTL, WebAuth

from .conftest import SIGNOFF, subprocess_env
from .web_support import TOKEN_IN, PageWatch, Served, browser, serve_web, sign_in_page

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

[[routes]]
name = "ops"
match = { action = "deploy*" }
approvers = ["bob"]

[[routes]]
name = "default"
approvers = ["alice", "bob"]
"""

AGENT = Actor("agent", "claude-code", "mcp")


@pytest.fixture
async def served(write_config: Callable[[str], Path]) -> AsyncIterator[Served]:
    async with open_app(load_config(write_config(CONFIG)), background=False) as app, serve_web(app) as s:
        yield s


async def file(app: App, action: str, summary: str = "Do the thing", **kw: Any) -> str:
    req = await app.service.request_approval(NewRequest(action=action, summary=summary, **kw), AGENT)
    return req.id


async def signed_in(served: Served, client: httpx.AsyncClient, approver: str) -> None:
    assert re.fullmatch(r"/web/k/[0-9a-f]{24}/", await served.sign_in(client, approver))


async def test_a_link_signs_in_once_and_a_get_spends_nothing(served: Served) -> None:
    link = await served.link("alice")
    async with httpx.AsyncClient() as client:
        for _ in range(2):  # a chat app's preview fetches the link: it must not use it up
            r = await client.get(link)
            assert r.status_code == 200 and 'id="sign-in"' in r.text and "alice" not in r.text
        token = TOKEN_IN.search(link)
        assert token is not None
        r = await client.post(f"{served.base}/web/login", data={"token": token.group(1)})
        assert r.status_code == 303
        home = re.fullmatch(r"(/web/k/[0-9a-f]{24})/", r.headers["location"])
        assert home is not None, r.headers["location"]
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and f"Path={home.group(1)};" in cookie + ";"
        inbox = await client.get(served.base + r.headers["location"])  # where a browser goes, cookie and all
        assert inbox.status_code == 200 and "Waiting for you" in inbox.text and "alice" in inbox.text
    async with httpx.AsyncClient() as other:  # the same link again, from anyone: spent
        again = await other.post(f"{served.base}/web/login", data={"token": token.group(1)})
        assert again.status_code == 400 and "expired or was already used" in again.text
        assert "set-cookie" not in again.headers


async def test_signed_out_sees_the_sign_in_page_and_nothing_else(served: Served) -> None:
    rid = await file(served.app, "refund", "Refund order 7")
    async with httpx.AsyncClient() as client:
        for path in ("/web/", "/web/inbox/rows", "/web/events", f"/web/r/{rid}", "/web/history", "/web/grants"):
            r = await client.get(served.base + path)
            assert r.status_code in (401, 404), path
            assert "Refund order 7" not in r.text and rid not in r.text
    async with httpx.AsyncClient(cookies={"signoff_session": "forged"}) as client:
        r = await client.get(served.base + "/web/")
        assert r.status_code == 401 and "Ask for a sign-in link" in r.text


async def test_every_page_carries_the_security_headers(served: Served) -> None:
    async with httpx.AsyncClient() as client:
        for path in ("/web/", "/web/login?token=x", "/web/static/app.js"):
            r = await client.get(served.base + path)
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["referrer-policy"] == "same-origin"
        page = await client.get(served.base + "/web/")
        assert not re.search(r"<script(?![^>]*\bsrc=)", page.text)  # no inline script …
        assert not re.search(r"\son[a-z]+\s*=", page.text)  # … and no inline handler


async def test_links_expire_and_unknown_people_get_none(served: Served) -> None:
    auth = WebAuth(served.app.store, served.app.config, lambda: 1_000.0)
    token = await auth.issue_link("alice", "console")
    late = WebAuth(served.app.store, served.app.config, lambda: 1_000.0 + LINK_TTL + 1)
    assert await late.redeem(token, "test") is None
    with pytest.raises(Exception, match="not an approver"):
        await auth.issue_link("mallory", "console")


async def test_state_changing_posts_need_the_csrf_token_and_this_origin(served: Served) -> None:
    async with httpx.AsyncClient() as client:
        await signed_in(served, client, "alice")
        r = await client.post(f"{served.base}/web/logout")  # no token
        assert r.status_code == 403 and "security token" in r.text
        r = await client.post(f"{served.base}/web/logout", data={"csrf": "0" * 64})
        assert r.status_code == 403
        r = await client.post(f"{served.base}/web/logout", headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and "another site" in r.text
        assert (await client.get(f"{served.base}/web/")).status_code == 200  # still signed in
        page = (await client.get(f"{served.base}/web/")).text
        csrf = page.split('name="csrf" content="')[1].split('"')[0]
        r = await client.post(f"{served.base}/web/logout", data={"csrf": csrf})
        assert r.status_code == 303
        assert (await client.get(f"{served.base}/web/")).status_code == 401  # the session ended in the database


async def test_sign_in_attempts_are_rate_limited(served: Served) -> None:
    async with httpx.AsyncClient() as client:
        codes = [(await client.post(f"{served.base}/web/login", data={"token": f"guess{n}"})).status_code
                 for n in range(12)]  # fmt: skip
    assert codes[:10] == [400] * 10 and codes[10:] == [429, 429]


async def test_without_public_url_only_loopback_names_are_served(served: Served) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.get(f"{served.base}/web/", headers={"Host": "evil.example"})  # DNS rebinding
        assert r.status_code == 403 and "loopback only" in r.text


async def test_the_inbox_shows_only_what_this_approver_may_decide(served: Served) -> None:
    await file(served.app, "refund", "Refund order 7")  # alice's
    await file(served.app, "deploy", "Deploy v2")  # bob's
    await file(served.app, "other", "Rotate keys")  # both
    async with httpx.AsyncClient() as client:
        await signed_in(served, client, "alice")
        page = (await client.get(f"{served.base}/web/")).text
        assert "Refund order 7" in page and "Rotate keys" in page and "Deploy v2" not in page
        rows = await client.get(f"{served.base}/web/inbox/rows", params={"route": "payments"})
        assert rows.headers["x-count"] == "1" and "Refund order 7" in rows.text and "Rotate keys" not in rows.text


async def test_sessions_are_listed_and_revoked_at_the_console(served: Served) -> None:
    config = served.app.config.source
    async with httpx.AsyncClient() as client:
        await signed_in(served, client, "bob")
        listed = subprocess.run([SIGNOFF, "web-sessions", "--config", config], env=subprocess_env(),
                                capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
        assert "bob" in listed.stdout
        session_id = listed.stdout.split()[0]
        ended = subprocess.run([SIGNOFF, "web-sessions", "--revoke", session_id, "--config", config],
                               env=subprocess_env(), capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
        assert ended.returncode == 0 and "1 session(s) ended" in ended.stdout
        assert (await client.get(f"{served.base}/web/")).status_code == 401
        link = subprocess.run([SIGNOFF, "web-link", "--as", "alice", "--config", config], env=subprocess_env(),
                              capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
        assert "/web/login?token=" in link.stdout and "once" in link.stdout
        unknown = subprocess.run([SIGNOFF, "web-link", "--as", "mallory", "--config", config],
                                 env=subprocess_env(), capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
        assert unknown.returncode == 2 and "no such approver" in unknown.stderr


async def test_the_inbox_updates_live_in_a_browser(served: Served) -> None:
    async with browser() as b:
        page = await b.new_page()
        watch = PageWatch(page)
        await sign_in_page(page, await served.link("alice"))
        assert "(0)" in await page.title()
        await page.wait_for_function("document.body.dataset.liveOpen === '1'", timeout=10_000)
        await file(served.app, "refund", "Refund <b>order</b> 9")
        await page.locator("#inbox").get_by_text("Refund <b>order</b> 9").wait_for(timeout=10_000)
        await page.wait_for_function("document.title.startsWith('(1)')", timeout=10_000)
        assert watch.dialogs == [] and watch.errors == []


async def test_the_overview_draws_this_approvers_figures_as_svg(served: Served) -> None:
    rid = await file(served.app, "refund", "Refund <script>alert(1)</script>")  # alice's route
    await file(served.app, "deploy", "Deploy v2")  # bob's: not in alice's figures
    await served.app.service.decide(rid, True, Actor("human", "alice", "console"))
    await file(served.app, "other", "Still pending")
    async with httpx.AsyncClient() as client:
        await signed_in(served, client, "alice")
        r = await client.get(f"{served.base}/web/overview")
    assert r.status_code == 200 and r.text.count("<svg") == 3
    assert "1 approved" in r.text  # the day's bar says what it counts
    assert "< 5 min: 1 pending" in r.text.replace("&lt;", "<")  # only alice's pending one
    assert "<script>" not in r.text
    assert re.search(r"default: median .* over 0", r.text) is None
    assert "payments: median" in r.text  # a person's decision on the payments route


async def test_web_without_its_slash_leads_to_the_inbox(served: Served) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.get(f"{served.base}/web")
    assert r.status_code == 308 and r.headers["location"] == "/web/"


async def test_an_open_page_says_when_its_session_ends(served: Served) -> None:
    async with browser() as b:
        page = await b.new_page()
        watch = PageWatch(page)
        await sign_in_page(page, await served.link("alice"))
        await page.wait_for_function("document.body.dataset.liveOpen === '1'", timeout=10_000)
        await WebAuth(served.app.store, served.app.config, time.time).revoke(approver="alice")
        await file(served.app, "refund", "Refund order 12")  # the page refreshes, and is refused
        await page.locator("#session-ended").wait_for(timeout=10_000)
        assert "session has ended" in await page.locator("#session-ended").inner_text()
        assert await page.get_by_text("Refund order 12").count() == 0
        assert watch.dialogs == []


async def test_a_browser_sends_the_session_cookie_only_below_the_sessions_key(served: Served) -> None:
    """Cookies ignore ports: a page on another loopback port could ask for a ``/web/…`` address
    of its own and get the cookie. So the cookie's ``Path`` is the session's own ``/web/k/KEY``
    (HttpOnly, SameSite=Strict), and the browser sends it nowhere else, not even to signoff's
    own unkeyed ``/web/`` pages."""
    await file(served.app, "refund", "Refund order 13")
    async with browser() as b:
        context = await b.new_context()
        page = await context.new_page()
        watch = PageWatch(page)
        home = await sign_in_page(page, await served.link("alice"))
        key = home.rsplit("/", 1)[1]
        assert re.fullmatch(r"[0-9a-f]{24}", key) and home == f"{served.base}/web/k/{key}"
        cookies = [c for c in await context.cookies() if c["name"] == "signoff_session"]
        assert len(cookies) == 1
        cookie = cookies[0]
        assert cookie["path"] == f"/web/k/{key}" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert "signoff_session" not in await page.evaluate("document.cookie")
        assert await page.get_by_text("Refund order 13").count() == 1  # signed in, at home
        for path in ("/web/", "/web/history"):
            r = await page.goto(served.base + path)
            assert r is not None and r.status == 401, path
            assert "cookie" not in await r.request.all_headers(), path
            assert await page.get_by_text("Ask for a sign-in link").count() == 1, path
            assert await page.get_by_text("Refund order 13").count() == 0, path
        r = await page.goto(f"{home}/")  # the same browser, below the key: still signed in
        assert r is not None and r.status == 200
        assert "signoff_session=" in (await r.request.all_headers()).get("cookie", "")
        assert await page.get_by_text("Refund order 13").count() == 1
        assert watch.dialogs == []


async def test_malformed_headers_tokens_and_edits_are_refused_not_500(served: Served) -> None:
    rid = await file(served.app, "other", "Configure", details={"replicas": 2})
    async with httpx.AsyncClient() as client:
        for host in ("[", "[::1"):
            r = await client.get(f"{served.base}/web/", headers={"Host": host})
            assert r.status_code == 403, host
        await signed_in(served, client, "alice")
        r = await client.post(f"{served.base}/web/logout", headers={"Origin": "http://["})
        assert r.status_code == 403 and "another site" in r.text
        r = await client.post(f"{served.base}/web/r/{rid}/approve", data={"csrf": "é"})
        assert r.status_code == 403 and "security token" in r.text
        page = (await client.get(f"{served.base}/web/r/{rid}")).text
        csrf = page.split('name="csrf" content="')[1].split('"')[0]
        deep = "[" * 5000 + "]" * 5000
        for what, field in (("edit", "arguments"), ("edit/approve", "edited")):
            r = await client.post(f"{served.base}/web/r/{rid}/{what}", data={"csrf": csrf, field: deep})
            assert r.status_code == 400, (what, r.status_code)
    assert (await served.app.service.get(rid)).status.value == "pending"
