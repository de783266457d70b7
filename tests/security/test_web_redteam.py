"""Red team: attacks on the web inbox (``/web``), as an agent, a local process, a bystander,
another site in the same browser, a link previewer and a curious second approver would try
them — against the real ``signoff serve`` app over HTTP, and in a real Chromium where the
browser's own behaviour (scripts, cookies, frames, referrers) is what is attacked.

Every test states an attack and asserts it fails. A test that fails here is a hole (see the
module's report), not a flaky test: nothing here sleeps, every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import io
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from signoff.server.app import App, open_app
from signoff.server.config import load_config
from signoff.server.intake import NewRequest
from signoff.server.models import Actor, Status
from signoff.server.web_auth import LINK_TTL, WebAuth, csrf_token

from ..web_support import TOKEN_IN, PageWatch, Served, browser, home_of, serve_web, sign_in_page, unscope

pytestmark = pytest.mark.anyio

AGENT = Actor("agent", "claude-code", "mcp")

CONFIG = """
[store]
path = "signoff.db"

[approvers.alice]
telegram_user_id = 111
identities = ["alice-laptop*"]

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
name = "escalating"
match = { action = "escalate*" }
approvers = ["alice"]
timeout = "4h"
escalation = [{ after = "1h", approvers = ["bob"] }]

[[routes]]
name = "money"
match = { action = "wire*" }
approvers = ["alice", "bob"]
quorum = 2

[[routes]]
name = "frozen"
match = { action = "frozen*" }
approvers = ["alice"]
allow_edit = false

[[routes]]
name = "questions"
match = { action = "ask_human*" }
approvers = ["alice"]

[[routes]]
name = "default"
approvers = ["alice", "bob"]
"""

PUBLIC = "https://signoff.example.com"

# Everything an agent writes, at once: markup, an event handler, a javascript: URL, a style,
# a formula, a bidi override and a line break.
HOSTILE = (
    "<img src=x onerror=\"window.__pwned=1;alert('img')\"><script>window.__pwned=1;alert('s')</script>"
    "<svg onload=alert('svg')></svg><a href=\"javascript:alert('a')\" id=evil-link>x</a>"
    "<style>body{display:none}</style>\"'><iframe src=javascript:alert('f')></iframe>=1+1"
)
HOSTILE_LINE = HOSTILE  # (one line already: it also goes where line breaks are refused)


@pytest.fixture
async def app(write_config: Callable[..., Path]) -> AsyncIterator[App]:
    async with open_app(load_config(write_config(CONFIG)), background=False) as opened:
        yield opened


@pytest.fixture
async def served(app: App) -> AsyncIterator[Served]:
    async with serve_web(app) as s:
        yield s


async def file(app: App, action: str, summary: str = "Do the thing", *, who: Actor = AGENT, **kw: Any) -> str:
    session = kw.pop("session", None)
    client_name = kw.pop("client_name", None)
    req = await app.service.request_approval(NewRequest(action=action, summary=summary, **kw), who,
                                             session=session, client_name=client_name)  # fmt: skip
    return req.id


def token_of(link: str) -> str:
    found = TOKEN_IN.search(link)
    assert found is not None
    return found.group(1)


async def sign_in(served: Served, client: httpx.AsyncClient, approver: str) -> str:
    """Sign ``client`` in as ``approver``; the session's CSRF token."""
    await served.sign_in(client, approver)
    return await csrf_of(served, client)


async def csrf_of(served: Served, client: httpx.AsyncClient) -> str:
    page = await client.get(f"{served.base}/web/")
    found = re.search(r'<meta name="csrf" content="([0-9a-f]*)">', page.text)
    assert found is not None and found.group(1)
    return found.group(1)


async def status(app: App, rid: str) -> Status:
    return (await app.service.get(rid)).status


def csp_ok(r: httpx.Response) -> bool:
    csp = r.headers.get("content-security-policy", "")
    return (
        "default-src 'none'" in csp
        and "frame-ancestors 'none'" in csp
        and "unsafe-inline" not in csp
        and r.headers.get("x-content-type-options") == "nosniff"
        and r.headers.get("x-frame-options") == "DENY"
    )


# --- who sees what ---------------------------------------------------------------------------


async def test_a_curious_second_approver_finds_nothing_of_another_route_anywhere(served: Served) -> None:
    """Bob (an approver, not of "payments") hunts for Alice's refund: the page and its fragments,
    the inbox and its rows, history and its search, audit and its filter, both exports, the
    overview's counts, the grants page — by id and by text."""
    app = served.app
    secret = "Refund order 7 to IBAN-SECRET-42"
    rid = await file(app, "refund", secret, metadata={"iban": "IBAN-SECRET-42"})
    other = await file(app, "refund", "Second refund IBAN-SECRET-42")
    await app.service.decide(other, True, Actor("human", "alice", "console"), "ok")
    async with httpx.AsyncClient() as bob:
        await sign_in(served, bob, "bob")
        paths = [f"/web/r/{rid}", f"/web/r/{rid}/state", f"/web/r/{rid}/trail", f"/web/r/{other}", "/web/",
                 "/web/inbox/rows", "/web/inbox/rows?route=payments", "/web/history", "/web/history?q=IBAN-SECRET",
                 "/web/history?q=IB", "/web/history?route=payments", "/web/history?status=approved",
                 f"/web/audit?request={rid}", f"/web/audit?request={other}", "/web/audit", "/web/audit?verify=1",
                 f"/web/audit/export.csv?request={rid}", "/web/audit/export.csv", "/web/audit/export.jsonl",
                 "/web/grants", "/web/overview"]  # fmt: skip
        for path in paths:
            r = await bob.get(served.base + path)
            assert r.status_code in (200, 404), path
            shown = r.text.replace('value="IBAN-SECRET"', "")  # the filter boxes say what was asked for
            for asked in (rid, other):
                shown = shown.replace(f'value="{asked}"', "").replace(f"request={asked}", "")
            assert "IBAN-SECRET" not in shown and "refund" not in shown.lower(), path
            assert rid not in shown and other not in shown, path
        overview = (await bob.get(f"{served.base}/web/overview")).text.replace("&lt;", "<")
        assert "< 5 min: 0 pending" in overview and "approved (0)" in overview
        # The id of a request of his own route and one that does not exist answer alike.
        missing = await bob.get(f"{served.base}/web/r/req_doesnotexist")
        theirs = await bob.get(f"{served.base}/web/r/{rid}")
        assert missing.status_code == theirs.status_code == 404 and missing.text == theirs.text


async def test_a_bystander_approver_cannot_decide_another_routes_request_by_any_door(served: Served) -> None:
    """Bob, with a valid session and CSRF token, posts every decision there is to Alice's refund
    (and to a Bash request whose grant he would like): nothing decided, nothing granted, every
    one refused as 'not found' and audited."""
    app = served.app
    rid = await file(app, "refund", "Refund order 8")
    bash = await file(app, "Bash", "Run tests", details={"command": "npm test"})
    async with httpx.AsyncClient() as bob:
        csrf = await sign_in(served, bob, "bob")
        for target in (rid, bash):
            for what, form in (("approve", {}), ("reject", {"reason": "no"}), ("note", {"note": "fine"}),
                               ("grant", {"option": "0"}), ("option", {"option": "0"}), ("answer", {"answer": "yes"}),
                               ("edit", {"arguments": '{"command": "rm -rf /"}'}),
                               ("edit/approve", {"edited": '{"command": "rm -rf /"}'})):  # fmt: skip
                r = await bob.post(f"{served.base}/web/r/{target}/{what}", data={"csrf": csrf, **form})
                assert r.status_code == 404 and "No such request among yours" in r.text, (target, what)
    assert await status(app, rid) is Status.PENDING and await status(app, bash) is Status.PENDING
    assert await app.service.list_grants() == []
    refused = [e for e in await app.store.audit(request_id=rid) if e.event == "refused"]
    assert refused and all(e.channel == "web" for e in refused)


async def test_an_escalation_level_still_to_come_may_look_but_not_decide(served: Served) -> None:
    """Bob is on the request's escalation level that fires in an hour: he may read it (the
    documented contract) but approving, granting or editing now is refused."""
    rid = await file(served.app, "escalate_db", "Drop the staging DB")
    async with httpx.AsyncClient() as bob:
        csrf = await sign_in(served, bob, "bob")
        page = await bob.get(f"{served.base}/web/r/{rid}")
        assert page.status_code == 200 and 'id="not-yet"' in page.text and 'id="approve"' not in page.text
        inbox = await bob.get(f"{served.base}/web/inbox/rows")
        assert rid not in inbox.text and inbox.headers["x-count"] == "0"
        for what, form in (("approve", {}), ("note", {"note": "x"}), ("edit/approve", {"edited": "{}"})):
            r = await bob.post(f"{served.base}/web/r/{rid}/{what}", data={"csrf": csrf, **form})
            assert r.status_code == 403, what
    assert await status(served.app, rid) is Status.PENDING


async def test_the_agent_named_like_an_approver_cannot_approve_its_own_request_on_the_web(served: Served) -> None:
    """Alice's own agent (an identity of hers) files a request; her web session tries to approve it."""
    rid = await file(served.app, "other", "Pay myself", who=Actor("agent", "alice-laptop/claude", "mcp"))
    async with httpx.AsyncClient() as alice:
        csrf = await sign_in(served, alice, "alice")
        for what, form in (("approve", {}), ("note", {"note": "mine"})):
            r = await alice.post(f"{served.base}/web/r/{rid}/{what}", data={"csrf": csrf, **form})
            assert r.status_code == 403, what
    assert await status(served.app, rid) is Status.PENDING


# --- questions and approvals are not interchangeable -------------------------------------------


async def test_a_question_cannot_be_approved_from_the_web(served: Served) -> None:
    qid = await file(served.app, "ask_human", "May I push to main?", kind="question", options=["yes", "no"])
    async with httpx.AsyncClient() as alice:
        csrf = await sign_in(served, alice, "alice")
        page = await alice.get(f"{served.base}/web/r/{qid}")
        assert 'id="approve"' not in page.text and 'id="edit-check"' not in page.text
        for what, form in (("approve", {}), ("note", {"note": "approved"}), ("grant", {"option": "0"}),
                           ("edit", {"arguments": "{}"}), ("edit/approve", {"edited": '{"x": 1}'}),
                           ("reject", {"reason": "no"})):  # fmt: skip
            r = await alice.post(f"{served.base}/web/r/{qid}/{what}", data={"csrf": csrf, **form})
            assert r.status_code in (400, 403), what
            assert await status(served.app, qid) is Status.PENDING, what
        r = await alice.post(f"{served.base}/web/r/{qid}/option", data={"csrf": csrf, "option": "7"})
        assert r.status_code == 403 and await status(served.app, qid) is Status.PENDING


async def test_an_approval_cannot_be_answered_into_a_decision(served: Served) -> None:
    rid = await file(served.app, "refund", "Refund order 9")
    async with httpx.AsyncClient() as alice:
        csrf = await sign_in(served, alice, "alice")
        for what, form in (("answer", {"answer": "yes"}), ("option", {"option": "0"})):
            r = await alice.post(f"{served.base}/web/r/{rid}/{what}", data={"csrf": csrf, **form})
            assert r.status_code == 403, what
    req = await served.app.service.get(rid)
    assert req.status is Status.PENDING and req.answer is None


# --- CSRF, origin, methods ---------------------------------------------------------------------


async def test_no_state_change_without_this_sessions_token_from_this_origin(served: Served) -> None:
    rid = await file(served.app, "other", "Rotate keys")
    async with httpx.AsyncClient() as alice, httpx.AsyncClient() as bob:
        await sign_in(served, alice, "alice")
        bobs = await sign_in(served, bob, "bob")
        url = f"{served.base}/web/r/{rid}/approve"
        cases: list[tuple[dict[str, str], dict[str, str]]] = [
            ({}, {}),  # no token at all
            ({"csrf": ""}, {}),
            ({"csrf": bobs}, {}),  # another session's token (Bob may decide it too, but not as Alice)
            ({"csrf": bobs.upper()}, {}),
            ({}, {"X-CSRF-Token": ""}),
            ({}, {"X-CSRF-Token": bobs}),
            ({"csrf": csrf_token("guessed-secret")}, {}),
        ]
        for form, headers in cases:
            r = await alice.post(url, data=form, headers=headers)
            assert r.status_code == 403, (form, headers)
        # Alice's own token, sent from somewhere else: another site, a sandboxed frame, another local port.
        mine = await csrf_of(served, alice)
        port = served.base.rsplit(":", 1)[1]
        for origin in ("https://evil.example", "null", "http://127.0.0.1:1", f"http://localhost:{port}x",
                       f"http://127.0.0.1:{port}.evil.example"):  # fmt: skip
            r = await alice.post(url, data={"csrf": mine}, headers={"Origin": origin})
            assert r.status_code == 403 and "another site" in r.text, origin
        # An empty header must not fall back to a form field another page could fill.
        r = await alice.post(url, data={"csrf": mine}, headers={"X-CSRF-Token": ""})
        assert r.status_code == 403
        # GET, HEAD, PUT on a decision's address decide nothing.
        for method in ("GET", "HEAD", "PUT", "DELETE", "PATCH"):
            r = await alice.request(method, url, params={"csrf": mine})
            assert r.status_code == 405, method
    assert await status(served.app, rid) is Status.PENDING
    # Bob's token from his own session works for him: the checks above were not just broken forms.
    async with httpx.AsyncClient() as bob2:
        token2 = await sign_in(served, bob2, "bob")
        r = await bob2.post(url, data={"csrf": token2})
        assert r.status_code == 303


async def test_grant_revoke_by_a_bystander_and_without_token_is_refused(served: Served) -> None:
    rid = await file(served.app, "Bash", "Run tests", details={"command": "npm test"})
    _, grant = await served.app.service.approve_and_grant(rid, "30m", Actor("human", "alice", "console"))
    assert grant is not None
    async with httpx.AsyncClient() as bob, httpx.AsyncClient() as alice:
        csrf = await sign_in(served, bob, "bob")
        listing = await bob.get(f"{served.base}/web/grants")
        assert grant.id not in listing.text
        r = await bob.post(f"{served.base}/web/grants/{grant.id}/revoke", data={"csrf": csrf})
        assert r.status_code in (403, 404)
        await sign_in(served, alice, "alice")
        r = await alice.post(f"{served.base}/web/grants/{grant.id}/revoke")  # Alice may, but not without her token
        assert r.status_code == 403
    assert [g.id for g in await served.app.service.list_grants()] == [grant.id]


# --- sign-in links ---------------------------------------------------------------------------


async def test_a_link_redeemed_concurrently_signs_in_exactly_once(served: Served) -> None:
    token = token_of(await served.link("alice"))
    clients = [httpx.AsyncClient() for _ in range(8)]
    try:
        results = await asyncio.gather(*(c.post(f"{served.base}/web/login", data={"token": token}) for c in clients))
    finally:
        for c in clients:
            await c.aclose()
    assert sorted(r.status_code for r in results) == [303] + [400] * 7
    rows = await served.app.store.read("SELECT count(*) FROM web_sessions")
    assert rows[0][0] == 1


async def test_previewers_and_prefetchers_do_not_spend_a_link_or_get_a_session(served: Served) -> None:
    link = await served.link("alice")
    token = token_of(link)
    previewers = ["TelegramBot (like TwitterBot)", "Slackbot-LinkExpanding 1.0", "facebookexternalhit/1.1"]
    async with httpx.AsyncClient() as bot:
        for ua in previewers:
            for method in ("GET", "HEAD", "OPTIONS"):
                r = await bot.request(method, link, headers={"User-Agent": ua, "Purpose": "prefetch",
                                                             "Sec-Purpose": "prefetch"})  # fmt: skip
                assert "set-cookie" not in r.headers and r.status_code in (200, 405), (ua, method)
    async with httpx.AsyncClient() as person:
        r = await person.post(f"{served.base}/web/login", data={"token": token})
        assert r.status_code == 303


async def test_an_old_link_and_a_reused_link_sign_nobody_in(served: Served) -> None:
    auth = WebAuth(served.app.store, served.app.config, lambda: time.time() - LINK_TTL - 1)
    stale = await auth.issue_link("alice", "console")  # issued 10 minutes and a second ago
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{served.base}/web/login", data={"token": stale})
        assert r.status_code == 400 and "set-cookie" not in r.headers
        # The token's hash (what the database holds) is no token either.
        fresh = token_of(await served.link("alice"))
        hashed = hashlib.sha256(fresh.encode()).hexdigest()
        for wrong in (hashed, fresh + "x", fresh[:-1], fresh.upper(), f" {fresh}", "%", "' OR 1=1 --"):
            r = await client.post(f"{served.base}/web/login", data={"token": wrong})
            assert r.status_code == 400, wrong
        r = await client.post(f"{served.base}/web/login", data={"token": fresh})
        assert r.status_code == 303


async def test_a_local_process_cannot_lock_the_approver_out_of_signing_in(served: Served) -> None:
    """HOLE (availability). The failed sign-in limit is per client address; without
    ``public_url`` every client is 127.0.0.1, and behind the documented reverse proxy every
    client is the proxy. Ten junk POSTs a minute from any local process (or anyone on the
    internet, behind a proxy) and the approver's own valid link is refused with 429."""
    token = token_of(await served.link("alice"))
    async with httpx.AsyncClient() as attacker:
        for n in range(10):
            await attacker.post(f"{served.base}/web/login", data={"token": f"junk{n}"})
    async with httpx.AsyncClient(headers={"User-Agent": "Mozilla/5.0 (the approver)"}) as approver:
        r = await approver.post(f"{served.base}/web/login", data={"token": token})
    assert r.status_code == 303, f"the approver's valid link was refused: {r.status_code}"


async def test_the_sign_in_form_reflects_no_markup_and_redirects_only_home(served: Served) -> None:
    async with httpx.AsyncClient() as client:
        evil = '"><script>alert(1)</script><img src=x onerror=alert(1)>'
        r = await client.get(f"{served.base}/web/login", params={"token": evil, "next": "https://evil.example"})
        assert r.status_code == 200 and "<script>alert" not in r.text and "<img src=x" not in r.text
        assert "evil.example" not in r.text
        token = token_of(await served.link("alice"))
        r = await client.post(f"{served.base}/web/login?next=https://evil.example",
                              data={"token": token, "next": "//evil.example/", "redirect": "https://evil.example"})  # fmt: skip
        assert r.status_code == 303 and r.headers["location"] == f"{home_of(client)}/"  # this session's home
        unscope(client)
        csrf = await csrf_of(served, client)
        rid = await file(served.app, "refund", "Refund order 1")
        r = await client.post(f"{served.base}/web/r/{rid}/approve?next=//evil.example", data={"csrf": csrf})
        assert r.status_code == 303 and r.headers["location"].startswith(f"{home_of(client)}/r/{rid}?done=")
        page = await client.get(f"{served.base}/web/r/{rid}", params={"done": "<b>pwned</b>"})
        assert "pwned" not in page.text
        r = await client.post(f"{served.base}/web/logout?next=https://evil.example", data={"csrf": csrf})
        assert r.status_code == 303 and r.headers["location"] == "/web/"
        # Doubled slashes are a path here, never a host.
        r = await client.get(f"{served.base}/web//evil.example/")
        assert r.status_code in (401, 404) and not r.headers.get("location", "").startswith("//")


# --- sessions --------------------------------------------------------------------------------


async def test_session_fixation_a_planted_cookie_is_replaced_and_worthless(served: Served) -> None:
    """An attacker plants a cookie of their choosing (or their own live session) in the victim's
    browser before the victim signs in: the victim gets a fresh secret, and the planted one
    never becomes the victim's session."""
    async with httpx.AsyncClient() as bob:
        await sign_in(served, bob, "bob")
        bobs_secret = bob.cookies["signoff_session"]
    for planted in ("attacker-chosen-value-0123456789", bobs_secret):
        async with httpx.AsyncClient(cookies={"signoff_session": planted}) as victim:
            r = await victim.post(f"{served.base}/web/login", data={"token": token_of(await served.link("alice"))})
            assert r.status_code == 303
            fresh = r.headers["set-cookie"].split(";")[0].split("=", 1)[1]
            assert fresh != planted and len(fresh) >= 43
        async with httpx.AsyncClient(cookies={"signoff_session": planted}) as attacker:
            page = await attacker.get(f"{served.base}/web/")
            assert ">alice<" not in page.text


async def test_ended_sessions_stay_ended_sign_out_revoke_expiry(served: Served) -> None:
    app = served.app
    async with httpx.AsyncClient() as a1, httpx.AsyncClient() as a2, httpx.AsyncClient() as a3:
        csrf = await sign_in(served, a1, "alice")
        await sign_in(served, a2, "alice")
        await sign_in(served, a3, "bob")
        old = a1.cookies["signoff_session"]
        assert (await a1.post(f"{served.base}/web/logout", data={"csrf": csrf})).status_code == 303
        async with httpx.AsyncClient(cookies={"signoff_session": old}) as replay:  # the cookie a thief kept
            assert (await replay.get(f"{served.base}/web/")).status_code == 401
            rid = await file(app, "refund", "Refund after sign-out")
            r = await replay.post(f"{served.base}/web/r/{rid}/approve", data={"csrf": csrf})
            assert r.status_code == 401 and await status(app, rid) is Status.PENDING
        await WebAuth(app.store, app.config, time.time).revoke(approver="alice")
        assert (await a2.get(f"{served.base}/web/")).status_code == 401
        await app.store.write("UPDATE web_sessions SET expires_at = ? WHERE approver = 'bob'", (time.time() - 1,))
        assert (await a3.get(f"{served.base}/web/")).status_code == 401
        assert (await a3.get(f"{served.base}/web/audit/export.jsonl")).status_code == 401


async def test_an_approver_removed_from_the_configuration_is_signed_out(write_config: Callable[..., Path]) -> None:
    before = load_config(write_config(CONFIG))
    without_bob = CONFIG.replace("[approvers.bob]\ntelegram_user_id = 222\n", "").replace('"alice", "bob"', '"alice"')
    without_bob = without_bob.replace("quorum = 2", "quorum = 1").replace(
        'escalation = [{ after = "1h", approvers = ["bob"] }]', ""
    )
    after = load_config(write_config(without_bob, "after.toml"))
    assert "bob" not in after.approvers
    async with open_app(before, background=False) as app, serve_web(app) as served:
        rid = await file(app, "other", "Filed while Bob was an approver")
        async with httpx.AsyncClient() as bob:
            csrf = await sign_in(served, bob, "bob")
            secret = bob.cookies["signoff_session"]
        link = token_of(await served.link("bob"))  # an unused link, too
    async with open_app(after, background=False) as app, serve_web(app) as served:
        async with httpx.AsyncClient(cookies={"signoff_session": secret}) as bob:
            for path in ("/web/", f"/web/r/{rid}", "/web/history", "/web/audit/export.csv", "/web/events"):
                r = await bob.get(served.base + path)
                assert r.status_code == 401 and rid not in r.text, path
            r = await bob.post(f"{served.base}/web/r/{rid}/approve", data={"csrf": csrf})
            assert r.status_code == 401
        async with httpx.AsyncClient() as anyone:
            r = await anyone.post(f"{served.base}/web/login", data={"token": link})
            assert r.status_code == 400
        assert await status(app, rid) is Status.PENDING


# --- where the inbox answers, and its headers --------------------------------------------------


async def test_dns_rebinding_and_forged_hosts_are_refused_with_the_headers(served: Served) -> None:
    port = served.base.rsplit(":", 1)[1]
    hosts = ["evil.example", f"evil.example:{port}", f"127.0.0.1.nip.io:{port}", f"localhost.:{port}",
             f"0.0.0.0:{port}", f"127.0.0.1:{port}@evil.example", f"evil.example#@127.0.0.1:{port}",
             f"[::ffff:8.8.8.8]:{port}", "", f"localhost.evil.example:{port}"]  # fmt: skip
    async with httpx.AsyncClient() as client:
        await sign_in(served, client, "alice")
        for host in hosts:
            r = await client.get(f"{served.base}/web/", headers={"Host": host})
            assert r.status_code in (400, 403), host
            assert r.status_code == 400 or csp_ok(r), host
            assert 'name="csrf"' not in r.text, host


async def test_with_a_public_url_only_that_host_is_served_and_the_cookie_is_secure(
    write_config: Callable[..., Path],
) -> None:
    config = load_config(write_config(CONFIG + f'\n[web]\npublic_url = "{PUBLIC}"\n'))
    async with open_app(config, background=False) as app, serve_web(app) as served:
        token = token_of(await served.link("alice"))
        async with httpx.AsyncClient() as client:
            for host in ("127.0.0.1", "localhost", "evil.example", "signoff.example.com.evil.example",
                         "signoff.example.com:8443"):  # fmt: skip
                r = await client.post(f"{served.base}/web/login", data={"token": token}, headers={"Host": host})
                assert r.status_code == 403 and csp_ok(r), host
            r = await client.post(f"{served.base}/web/login", data={"token": token},
                                  headers={"Host": "signoff.example.com", "Origin": PUBLIC})  # fmt: skip
            assert r.status_code == 303
            cookie = r.headers["set-cookie"]
            assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie


async def test_every_response_under_web_carries_the_strict_headers(served: Served) -> None:
    """Errors and odd corners too: the sign-in page, 400/401/403/404/405/429, static files and a
    missing one, the redirect after sign-in, an export, the event stream, and ``/web`` itself."""
    rid = await file(served.app, "refund", "Refund order 3")
    async with httpx.AsyncClient() as anon:
        for method, path in (("GET", "/web/login?token=x"), ("GET", "/web/r/x"), ("GET", "/web/nope"),
                             ("GET", "/web/static/app.js"), ("GET", "/web/static/nope.js"),
                             ("GET", "/web/static/"), ("DELETE", "/web/"), ("POST", "/web/logout"),
                             ("GET", "/web/events")):  # fmt: skip
            r = await anon.request(method, served.base + path)
            assert csp_ok(r), (method, path, r.status_code)
        r = await anon.get(f"{served.base}/web/", headers={"Host": "evil.example"})
        assert r.status_code == 403 and csp_ok(r)
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{served.base}/web/login", data={"token": token_of(await served.link("alice"))})
        assert r.status_code == 303 and csp_ok(r)
        unscope(client)
        csrf = await csrf_of(served, client)
        for r in (await client.get(f"{served.base}/web/audit/export.csv"),
                  await client.post(f"{served.base}/web/r/{rid}/approve", data={"csrf": "0"}),
                  await client.post(f"{served.base}/web/r/{rid}/reject", data={"csrf": csrf}),
                  await client.post(f"{served.base}/web/r/{rid}/approve", data={"csrf": csrf})):  # fmt: skip
            assert csp_ok(r), r.status_code
        async with client.stream("GET", f"{served.base}/web/events") as stream:
            assert stream.status_code == 200 and csp_ok(stream)
        async with httpx.AsyncClient() as attacker:
            for n in range(11):
                r = await attacker.post(f"{served.base}/web/login", data={"token": f"x{n}"})
            assert r.status_code == 429 and csp_ok(r)


async def test_static_files_cannot_be_walked_out_of_their_folder(served: Served) -> None:
    paths = ["/web/static/../pages.py", "/web/static/%2e%2e/pages.py", "/web/static/..%2fpages.py",
             "/web/static/%2e%2e%2f%2e%2e%2fserver%2fweb_auth.py", "/web/static//etc/passwd",
             "/web/static/../templates/base.html", "/web/static/..\\pages.py"]  # fmt: skip
    async with httpx.AsyncClient() as client:
        for path in paths:
            # httpx would normalise "..": send the raw target.
            r = await client.get(served.base + "/", extensions={"target": path.encode()})
            assert r.status_code in (400, 401, 404), path
            assert "def " not in r.text and "root:" not in r.text and "{%" not in r.text, path


async def test_hostile_query_strings_never_crash_a_page(served: Served) -> None:
    """Odd values in every filter and cursor: no 500 (whose traceback could hold request data)."""
    await file(served.app, "refund", "Refund order 4")
    values = ['"', "'", "\\", "%", "_", '" OR 1=1 --', "NEAR(a b)", "*", "a\x01b", "nan:x", "inf:x", "1e999:x",
              "-1", "9" * 40, ":", "\u202e", "x" * 5000, "req_x:req_y", "9999-99-99", "2024-02-30"]  # fmt: skip
    async with httpx.AsyncClient() as client:
        await sign_in(served, client, "alice")
        for v in values:
            for path, keys in (("/web/history", ("q", "status", "route", "requester", "from", "to", "older", "newer")),
                               ("/web/audit", ("event", "request", "requester", "from", "to", "older", "newer")),
                               ("/web/audit/export.csv", ("request", "older")),
                               ("/web/", ("route", "requester", "age", "kind")),
                               ("/web/inbox/rows", ("route", "age"))):  # fmt: skip
                for k in keys:
                    r = await client.get(served.base + path, params={k: v})
                    assert r.status_code < 500, (path, k, v)
            r = await client.get(f"{served.base}/web/r/{quote(v, safe='')}")
            assert r.status_code in (404, 200), v


# --- decisions: via=web, stale tabs, edits ------------------------------------------------------


async def test_a_stale_tab_cannot_decide_twice_or_change_the_outcome(served: Served) -> None:
    app = served.app
    rid = await file(app, "refund", "Refund order 5", details={"amount": 5})
    async with httpx.AsyncClient() as tab1, httpx.AsyncClient() as tab2:
        c1 = await sign_in(served, tab1, "alice")
        c2 = await sign_in(served, tab2, "alice")
        r = await tab1.post(f"{served.base}/web/r/{rid}/approve", data={"csrf": c1})
        assert r.headers["location"].endswith("?done=approved")
        for what, form in (("reject", {"reason": "changed my mind"}), ("note", {"note": "also this"}),
                           ("edit/approve", {"edited": '{"amount": 5000}'}), ("approve", {}),
                           ("grant", {"option": "0"})):  # fmt: skip
            r = await tab2.post(f"{served.base}/web/r/{rid}/{what}", data={"csrf": c2, **form})
            assert r.status_code in (303, 403), what
            if r.status_code == 303:
                assert r.headers["location"].endswith("?done=already"), what
        r = await tab2.post(f"{served.base}/web/r/{rid}/edit", data={"csrf": c2, "arguments": '{"amount": 1}'})
        assert r.status_code == 303 and r.headers["location"].endswith("?done=already")
    req = await app.service.get(rid)
    assert (req.status, req.reason, req.edited_details, req.decided_via) == (Status.APPROVED, None, None, "web")
    decided = [e for e in await app.store.audit(request_id=rid) if e.event in ("approved", "rejected")]
    assert [(e.event, e.actor, e.channel) for e in decided] == [("approved", "alice", "web")]
    assert await app.service.list_grants() == []


async def test_racing_approve_and_reject_from_two_tabs_decide_once(served: Served) -> None:
    app = served.app
    rids = [await file(app, "other", f"Race {n}") for n in range(5)]
    async with httpx.AsyncClient() as alice, httpx.AsyncClient() as bob:
        ca, cb = await sign_in(served, alice, "alice"), await sign_in(served, bob, "bob")
        for rid in rids:
            await asyncio.gather(
                alice.post(f"{served.base}/web/r/{rid}/approve", data={"csrf": ca}),
                bob.post(f"{served.base}/web/r/{rid}/reject", data={"csrf": cb, "reason": "no"}),
            )
    for rid in rids:
        events = [e for e in await app.store.audit(request_id=rid) if e.event in ("approved", "rejected")]
        assert len(events) == 1 and events[0].channel == "web", rid
        req = await app.service.get(rid)
        assert req.decided_via == "web" and req.decided_by == events[0].actor


async def test_a_quorum_vote_from_the_web_counts_once_however_often_it_is_sent(served: Served) -> None:
    rid = await file(served.app, "wire", "Wire 1M")
    async with httpx.AsyncClient() as alice, httpx.AsyncClient() as alice2:
        c1, c2 = await sign_in(served, alice, "alice"), await sign_in(served, alice2, "alice")
        await asyncio.gather(*(c.post(f"{served.base}/web/r/{rid}/approve", data={"csrf": t})
                               for c, t in ((alice, c1), (alice2, c2), (alice, c1))))  # fmt: skip
        # An edit on a quorum route would have each approver vote for different arguments: refused.
        r = await alice.post(f"{served.base}/web/r/{rid}/edit/approve", data={"csrf": c1, "edited": '{"to": "me"}'})
        assert r.status_code in (303, 403)
    assert await status(served.app, rid) is Status.PENDING
    votes = await served.app.service.store.read("SELECT approver FROM votes WHERE request_id = ?", (rid,))
    assert [v[0] for v in votes] == ["alice"]


async def test_approve_edited_cannot_skip_the_routes_rules(served: Served) -> None:
    """Posting straight to "Approve edited" (no Check) on a route that forbids edits, or with
    arguments that are no edit, approves nothing."""
    frozen = await file(served.app, "frozen_config", "Set replicas", details={"replicas": 2})
    plain = await file(served.app, "refund", "Refund", details={"amount": 5})
    async with httpx.AsyncClient() as alice:
        csrf = await sign_in(served, alice, "alice")
        page = await alice.get(f"{served.base}/web/r/{frozen}")
        assert 'id="edit-check"' not in page.text
        r = await alice.post(f"{served.base}/web/r/{frozen}/edit/approve", data={"csrf": csrf,
                                                                                "edited": '{"replicas": 200}'})  # fmt: skip
        assert r.status_code == 403
        r = await alice.post(f"{served.base}/web/r/{frozen}/edit", data={"csrf": csrf, "arguments": '{"replicas": 9}'})
        assert r.status_code == 403 and 'id="approve-edited"' not in r.text
        for bad in ("[1]", '"text"', "null", "{", "1e999", '{"amount": NaN}', "{" * 5000 + "}" * 5000):
            r = await alice.post(f"{served.base}/web/r/{plain}/edit/approve", data={"csrf": csrf, "edited": bad})
            assert r.status_code in (400, 403), bad
    assert await status(served.app, frozen) is Status.PENDING
    assert await status(served.app, plain) is Status.PENDING


# --- agent text, exports, logs ---------------------------------------------------------------


async def test_the_audit_export_neutralises_formulas_an_agent_wrote(served: Served) -> None:
    formulas = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(1,2)",
                "\t=1+1", "\r=1+1"]  # fmt: skip
    for f in formulas:
        rid = await file(served.app, "refund", f.lstrip("\r"), who=Actor("agent", f, "mcp"), metadata={"k": f.strip()})
        await served.app.service.decide(rid, False, Actor("human", "alice", "console"), f)
    async with httpx.AsyncClient() as client:
        await sign_in(served, client, "alice")
        r = await client.get(f"{served.base}/web/audit/export.csv")
    assert r.status_code == 200 and r.headers["content-disposition"].startswith("attachment;")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert len(rows) > 1
    for row in rows[1:]:
        for value in row:
            assert value[:1] not in ("=", "+", "-", "@", "\t", "\r"), row


async def test_no_secret_ever_reaches_the_logs_or_the_database_in_clear(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rid = await file(served.app, "refund", "Refund order 6")
    link = await served.link("alice")
    token = token_of(link)
    async with httpx.AsyncClient(headers={"User-Agent": f"probe {token}"[:10]}) as client:
        await client.get(link)
        await client.post(f"{served.base}/web/login", data={"token": token + "x"})  # a failure, logged or not
        r = await client.post(f"{served.base}/web/login", data={"token": token})
        assert r.status_code == 303
        unscope(client)
        secret = client.cookies["signoff_session"]
        csrf = await csrf_of(served, client)
        await client.post(f"{served.base}/web/r/{rid}/approve", data={"csrf": csrf[:-1] + "0"})
        await client.post(f"{served.base}/web/r/{rid}/approve", data={"csrf": csrf})
        await client.get(f"{served.base}/web/r/{rid}", headers={"Host": "evil.example"})
        await client.get(f"{served.base}/web/audit/export.jsonl")
        await client.post(f"{served.base}/web/logout", data={"csrf": csrf})
    ours = [rec for rec in caplog.records if not rec.name.startswith(("httpx", "httpcore"))]  # not this test's client
    text = "\n".join(f"{rec.name} {rec.getMessage()} {rec.exc_text or ''}" for rec in ours)
    for s in (token, secret, csrf):
        assert s not in text
    dump = json.dumps([list(row) for table in ("web_links", "web_sessions", "audit", "requests")
                       for row in await served.app.store.read(f"SELECT * FROM {table}")], default=str)  # fmt: skip
    for s in (token, secret, csrf):
        assert s not in dump


# --- in a real browser -----------------------------------------------------------------------


async def browser_sign_in(page: Any, served: Served, approver: str) -> str:
    """Sign ``page`` in as ``approver``, as a person would; where the session's pages live."""
    return await sign_in_page(page, await served.link(approver))


async def test_agent_text_never_runs_as_script_markup_or_style_in_a_browser(served: Served) -> None:
    """Every string an agent controls carries markup, handlers, a javascript: link and a style,
    on every page that shows it (and in a live refresh, which uses innerHTML): nothing runs,
    no element is made of it."""
    app = served.app
    meta = {HOSTILE_LINE[:64]: HOSTILE_LINE, "n": 1}
    rids = [
        await file(app, "refund" + HOSTILE_LINE[:150], HOSTILE, details={"html": HOSTILE}, metadata=meta,
                   claimed_requester=HOSTILE_LINE[:150], client_name=HOSTILE_LINE, session=HOSTILE_LINE[:100]),
        await file(app, "Bash", HOSTILE, details={"command": "npm test", "description": "tests"},
                   cwd="/tmp/" + HOSTILE_LINE[:100], session=HOSTILE_LINE[:100]),
        await file(app, "Edit", HOSTILE, details={"file_path": "/a/" + HOSTILE_LINE[:50], "old_string": HOSTILE,
                                                  "new_string": HOSTILE + "x"}),
        await file(app, "ask_human", HOSTILE, kind="question", options=[HOSTILE_LINE[:75], "<b>no</b>"]),
    ]  # fmt: skip
    _, grant = await app.service.approve_and_grant(rids[1], "session", Actor("human", "alice", "console"))
    assert grant is not None
    await app.service.decide(rids[0], False, Actor("human", "alice", "console"), HOSTILE)
    async with browser() as b:
        page = await b.new_page()
        watch = PageWatch(page)
        home = await browser_sign_in(page, served, "alice")
        pages = ["/", *(f"/r/{r}" for r in rids), "/history", "/history?q=" + "%3Cimg",
                 "/audit", "/grants", "/overview", "/inbox/rows", f"/r/{rids[2]}/trail"]  # fmt: skip
        for path in pages:
            await page.goto(home + path)
            made = await page.evaluate(
                """() => ({
                    pwned: window.__pwned === 1,
                    imgs: document.querySelectorAll('img[src="x"], img[onerror]').length,
                    svgs: document.querySelectorAll('svg[onload], iframe').length,
                    links: [...document.querySelectorAll('a[href]')].filter(a => !a.href.startsWith(location.origin)).length,
                    styles: document.querySelectorAll('style, [style]').length,
                    visible: document.body && getComputedStyle(document.body).display !== 'none',
                })"""
            )
            assert made == {"pwned": False, "imgs": 0, "svgs": 0, "links": 0, "styles": 0, "visible": True}, path
        # Not vacuous: the text is there, as text.
        await page.goto(f"{home}/r/{rids[0]}")
        assert "<script>window.__pwned=1" in await page.locator("#summary").inner_text()
        # A live refresh of the inbox (innerHTML).
        await page.goto(f"{home}/")
        await page.wait_for_function("document.body.dataset.liveOpen === '1'", timeout=10_000)
        late = await file(app, "refund", "late " + HOSTILE)
        await page.locator(f'tr[data-href="{home.removeprefix(served.base)}/r/{late}"]').wait_for(timeout=10_000)
        assert await page.evaluate("window.__pwned === 1") is False
        assert await page.locator("#inbox img, #inbox svg, #inbox script, #inbox iframe").count() == 0
        assert watch.dialogs == []


async def test_the_session_cookie_is_invisible_to_script_and_not_sent_by_other_sites(served: Served) -> None:
    """From another site open in the same browser: a form auto-posting a decision, a top-level
    GET, a frame; and the sign-in page's token must not ride out in a Referer."""
    rid = await file(served.app, "refund", "Refund order 11")
    evil = "http://evil.example"
    referers: list[str | None] = []
    home = ""  # the session's pages, once signed in

    async with browser() as b:
        context = await b.new_context()
        page = await context.new_page()

        async def evil_site(route: Any) -> None:
            url = route.request.url
            referers.append(route.request.headers.get("referer"))
            bodies = {
                f"{evil}/post": f'<form id=f method=post action="{home}/r/{rid}/approve">'
                '<input name=csrf value=""></form><script>document.getElementById("f").submit()</script>',
                f"{evil}/frame": f'<iframe id=t src="{home}/r/{rid}"></iframe>',
            }
            await route.fulfill(status=200, content_type="text/html", body=bodies.get(url, "<p>hi</p>"))

        await context.route(f"{evil}/**", evil_site)
        await page.goto(await served.link("alice"))
        # The sign-in page (its URL holds the token) navigates off-site: no Referer goes along.
        await page.evaluate(f"location.href = '{evil}/from-sign-in'")
        await page.wait_for_url(f"{evil}/from-sign-in")
        assert referers == [None]
        await page.go_back()
        await page.click("#sign-in")
        await page.wait_for_url(re.compile(r"^http://[^/]+/web/k/[0-9a-f]{24}/$"))
        home = page.url.rstrip("/")  # the other site is given the session's own address: the worst case
        assert "signoff_session" not in await page.evaluate("document.cookie")
        cookie = next(c for c in await context.cookies() if c["name"] == "signoff_session")
        assert (
            cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == home.removeprefix(served.base)
        )

        async with page.expect_response(f"{home}/r/{rid}/approve") as posted:
            await page.goto(f"{evil}/post")
        assert (await posted.value).status in (401, 403)
        assert await status(served.app, rid) is Status.PENDING

        await page.goto(f"{evil}/frame")
        await page.wait_for_load_state("load")
        for frame in page.frames[1:]:
            with contextlib.suppress(Exception):
                assert "Refund order 11" not in await frame.content()
        assert await status(served.app, rid) is Status.PENDING


async def test_a_page_on_another_loopback_port_cannot_steal_the_session(served: Served) -> None:
    """HOLE (loopback mode). Cookies are not separated by port: the session cookie of
    ``http://127.0.0.1:PORT`` (``SameSite=Strict``: 127.0.0.1 is one *site* whatever the port)
    is sent to any other server on 127.0.0.1 whose page asks for an address of its own that the
    cookie's ``Path`` covers. An agent that can start a dev server and say "open
    http://127.0.0.1:3000 to see my work" would get the cookie; the CSRF token is a public
    function of it (``csrf_token``), so it could then approve its own requests. The victim here
    is signed in, in this browser, and opens the agent's page, which asks for ``/web/…`` and
    for a guessed ``/web/k/…`` address: neither may carry the cookie."""
    rid = await file(served.app, "refund", "Refund the agent's own order")
    guess = "0123456789abcdef01234567"  # the session's key is unknown to the agent: it guesses
    asked = ("/web/grab", f"/web/k/{guess}/grab")
    seen: dict[str, str] = {}  # path asked for -> the Cookie header it came with
    arrived = asyncio.Condition()
    html = ("<!doctype html><p>preview of my work</p><script>"
            + "".join(f"fetch('{path}');" for path in (*asked, "/web/k/KEY/control")) + "</script>")  # fmt: skip

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        path = head[0].split(" ")[1]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
        if path.startswith("/web/"):
            async with arrived:
                seen[path] = headers.get("cookie", "")
                arrived.notify_all()
        body = page_html.encode() if path == "/" else b""
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
        await writer.drain()
        writer.close()

    page_html = html
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    evil_port = server.sockets[0].getsockname()[1]
    try:
        async with browser() as b:
            page = await b.new_page()
            home = await browser_sign_in(page, served, "alice")
            assert await page.locator('meta[name="csrf"]').count() == 1  # signed in: there is a cookie to steal
            key = home.rsplit("/", 1)[1]
            # The control: had the agent known the key, the browser would have sent the cookie to its
            # port (so nothing else, such as the browser keeping cookies apart by port, protects it).
            page_html = html.replace("/web/k/KEY/control", f"/web/k/{key}/control")
            control = f"/web/k/{key}/control"
            await page.goto(f"http://127.0.0.1:{evil_port}/")
            async with asyncio.timeout(10), arrived:
                await arrived.wait_for(lambda: all(path in seen for path in (*asked, control)))
    finally:
        server.close()
        await server.wait_closed()
    assert "signoff_session=" in seen[control], "the control request carried no cookie: the test proves nothing"
    stolen = next((m for path in asked if (m := re.search(r"signoff_session=([^;\s]+)", seen[path]))), None)
    if stolen is not None:  # show what the thief can do with it
        async with httpx.AsyncClient(cookies={"signoff_session": stolen.group(1)}) as thief:
            await thief.post(f"{served.base}/web/r/{rid}/approve", data={"csrf": csrf_token(stolen.group(1))})
    assert stolen is None, (
        f"another loopback server received the session; the request is now {await status(served.app, rid)}"
    )


async def test_the_edit_confirm_approves_exactly_what_was_checked_in_a_browser(served: Served) -> None:
    """Check an edit, then change the text without checking again, then press "Approve edited":
    what is approved is what the diff showed, not what the box now says."""
    rid = await file(served.app, "refund", "Refund", details={"amount": 5, "to": "acct-1"})
    async with browser() as b:
        page = await b.new_page()
        watch = PageWatch(page)
        home = await browser_sign_in(page, served, "alice")
        await page.goto(f"{home}/r/{rid}")
        await page.click("#edit summary")
        await page.fill("#edit-arguments", '{"amount": 4, "to": "acct-1"}')
        await page.click("#edit-check")
        await page.locator("#approve-edited").wait_for(timeout=10_000)
        await page.fill("#edit-arguments", '{"amount": 5000000, "to": "acct-evil"}')
        await page.click("#approve-edited")
        await page.locator("#flash").wait_for(timeout=10_000)
        assert watch.errors == []
    req = await served.app.service.get(rid)
    assert req.status is Status.APPROVED and req.edited_details == {"amount": 4, "to": "acct-1"}
    assert req.decided_via == "web"


async def test_web_without_its_slash_is_still_behind_the_guard(served: Served) -> None:
    """HOLE (low). ``/web`` itself (no slash) is not under the ``/web`` mount: it falls through to the MCP
    app's 404, without the guard's headers or its Host check."""
    async with httpx.AsyncClient() as client:
        r = await client.get(f"{served.base}/web")
        assert csp_ok(r), (r.status_code, dict(r.headers))
        r = await client.get(f"{served.base}/web", headers={"Host": "evil.example"})
        assert r.status_code in (307, 308, 403) and csp_ok(r), r.status_code


async def test_the_open_web_prefix_is_no_way_around_the_bearer_token(
    write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``[server] auth_token_env`` set, ``/web`` is open (it signs people in itself): dot
    segments, encoded slashes and look-alike prefixes must not reach ``/mcp`` or ``/metrics``."""
    monkeypatch.setenv("SIGNOFF_HTTP_TOKEN", "t" * 40)
    config = load_config(write_config(CONFIG + '\n[server]\nauth_token_env = "SIGNOFF_HTTP_TOKEN"\n'))
    mcp_call = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    async with (
        open_app(config, background=False) as app,
        serve_web(app, "t" * 40) as served,
        httpx.AsyncClient() as client,
    ):
        r = await client.post(f"{served.base}/mcp", json=mcp_call)
        assert r.status_code == 401  # the front door is locked: the attacks below are not vacuous
        for target in ("/web/../mcp", "/web/%2e%2e/mcp", "/web%2f..%2fmcp", "/web/..%2fmcp", "/webmcp",
                       "/web/../metrics", "/web%2f..%2fmetrics", "/web/./../mcp/"):  # fmt: skip
            for method in ("GET", "POST"):
                r = await client.request(method, served.base + "/", extensions={"target": target.encode()},
                                         json=mcp_call if method == "POST" else None,
                                         headers={"Accept": "application/json, text/event-stream"})  # fmt: skip
                assert r.status_code in (400, 401, 403, 404, 405), (target, method, r.status_code)
                assert "tools" not in r.text and "signoff_" not in r.text, (target, method)


async def test_a_search_with_a_nul_character_does_not_crash_the_history(served: Served) -> None:
    """HOLE (low, robustness). An approver's search (or a link to one that anyone sends them)
    with U+0000 in it: SQLite's FTS5 query parser fails ("unterminated string"), a 500."""
    async with httpx.AsyncClient() as client:
        await sign_in(served, client, "alice")
        for q in ("a\x00b", "\x00\x00\x00", "abc\x00"):
            r = await client.get(f"{served.base}/web/history", params={"q": q})
            assert r.status_code < 500, (repr(q), r.status_code)
