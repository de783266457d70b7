"""The web inbox end to end, as the issue names it done: from ``/web`` in Telegram to approving
an edited request in a real Chromium, the Telegram prompt then edited; and the pages as a
person sees them, on a desktop and on a phone (screenshots for docs/img, no sideways scroll).

``SIGNOFF_UPDATE_SCREENSHOTS=1`` writes the screenshots into docs/img (they are made, and
checked, on every run either way).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from signoff.server.app import App, open_app
from signoff.server.config import load_config
from signoff.server.intake import NewRequest
from signoff.server.listen import bind
from signoff.server.models import Actor, Status

from .conftest import ROOT
from .fake_telegram import FakeTelegram
from .web_support import TOKEN_IN, PageWatch, Served, browser, serve_web, sign_in_page

pytestmark = pytest.mark.anyio

ALICE, BOB = 111, 222
CONFIG = """
[store]
path = "signoff.db"
[server]
port = {port}
[telegram]
api_base_url = "{api}"
lease_ttl = "3s"
[approvers.alice]
telegram_user_id = 111
[approvers.bob]
telegram_user_id = 222
[[routes]]
name = "shell"
match = {{ action = "Bash" }}
approvers = ["alice"]
grant_options = ["30m"]
[[routes]]
name = "questions"
match = {{ action = "ask_human*" }}
approvers = ["alice", "bob"]
[[routes]]
name = "default"
approvers = ["alice", "bob"]
"""
AGENT = Actor("agent", "claude-code", "mcp")


@pytest.fixture
async def served(
    fake: FakeTelegram, write_config: Callable[[str], Path], unpaced_telegram: None
) -> AsyncIterator[Served]:
    sock = bind("127.0.0.1", 0)  # the port the links name: known before the configuration is written
    text = CONFIG.format(port=sock.getsockname()[1], api=fake.api_base_url)
    async with open_app(load_config(write_config(text))) as app, serve_web(app, sock=sock) as s:
        await fake.wait_for(lambda: fake.sent("getUpdates"))  # the bot is up
        yield s


async def file(app: App, action: str, summary: str, details: object = None, **kw: object) -> str:
    new = NewRequest(action=action, summary=summary, details=details, cwd="/home/alice/src/shop", **kw)  # type: ignore[arg-type]
    return (await app.service.request_approval(new, AGENT)).id


async def test_from_web_in_telegram_to_approving_an_edited_request(fake: FakeTelegram, served: Served) -> None:
    rid = await file(served.app, "Bash", "Push the fix to main", {"command": "git push --force origin main"})
    prompt = await fake.wait_for(lambda: next((m for m in fake.chat(ALICE) if rid in m.text and m.buttons()), None))
    await fake.say(ALICE, ALICE, "/web")
    sent = await fake.wait_for(lambda: next((m for m in fake.chat(ALICE) if "token=" in m.text), None))
    found = TOKEN_IN.search(sent.text)
    assert (
        found is not None and f"{served.base}/web/login?token={found.group(1)}" in sent.text
    )  # the link works as sent
    link = f"{served.base}/web/login?token={found.group(1)}"
    async with browser() as b:
        page = await b.new_page()
        watch = PageWatch(page)
        home = await sign_in_page(page, link)
        await page.get_by_text("Push the fix to main").click()
        await page.wait_for_url(f"{home}/r/{rid}")
        await page.click("#edit summary")
        await page.fill("#edit-arguments", "git push origin main")
        await page.click("#edit-check")
        await page.locator("#approve-edited").wait_for(timeout=10_000)
        await page.click("#approve-edited")
        await page.wait_for_url(f"**/r/{rid}?done=approved", timeout=10_000)
        assert "with changes" in await page.locator("#outcome").inner_text()
        assert watch.dialogs == [] and watch.errors == []
    req = await served.app.service.get(rid)
    assert (req.status, req.edited_details, req.decided_via) == (
        Status.APPROVED,
        {"command": "git push origin main"},
        "web",
    )
    await fake.wait_for(lambda: not prompt.buttons() and "with changes" in prompt.text and "alice" in prompt.text)


async def _populate(app: App) -> str:
    """A believable inbox: pending requests of several kinds, and a month of decisions."""
    diff = await file(app, "Edit", "Rename the setting to the US spelling",
                      {"file_path": "/home/alice/src/shop/settings.py", "old_string": "colour = 'blue'\nsize = 3",
                       "new_string": "color = 'blue'\nsize = 3"})  # fmt: skip
    await file(app, "Bash", "Run the migration on staging", {"command": "alembic upgrade head"})
    await file(app, "refund", "Refund order #4411 in full (damaged in transit)", {"order": 4411, "amount": 129.5},
               metadata={"amount": 129.5, "currency": "EUR"})  # fmt: skip
    await file(
        app,
        "ask_human",
        "Which region should the new bucket live in?",
        kind="question",
        options=["eu-west-1", "us-east-1"],
    )
    alice, bob = Actor("human", "alice", "telegram"), Actor("human", "bob", "slack")
    now, clock = time.time(), app.service.clock
    try:  # a month of history: filed and decided at their own times
        for n in range(60):
            filed = now - (n % 29) * 86400 - 3600 * (n % 7)
            app.service.clock = lambda t=filed: t
            route = ("Bash", {"command": f"make deploy BUILD={n}"}) if n % 3 else ("refund", {"order": n})
            rid = await file(app, route[0], f"Deploy build {n}" if n % 3 else f"Refund order {n}", route[1])
            app.service.clock = lambda t=filed + 60 * (1 + n % 40): t
            if n % 11 == 0:
                await app.service.sweep()
            else:
                await app.service.decide(rid, n % 5 != 0, alice if n % 2 else bob, None if n % 5 else "not today")
    finally:
        app.service.clock = clock
    return diff


async def _shot(page: object, name: str) -> None:
    png: bytes = await page.screenshot(full_page=True)  # type: ignore[attr-defined]
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    if os.environ.get("SIGNOFF_UPDATE_SCREENSHOTS") == "1":
        (ROOT / "docs" / "img" / name).write_bytes(png)


async def test_the_pages_on_a_desktop_and_on_a_phone(served: Served) -> None:
    diff = await _populate(served.app)
    pages = ["/", f"/r/{diff}", "/history", "/audit", "/grants", "/overview"]
    async with browser() as b:
        desktop = await b.new_context(viewport={"width": 1280, "height": 800})
        page = await desktop.new_page()
        watch = PageWatch(page)
        home = await sign_in_page(page, await served.link("alice"))
        for path, name in (("/", "web-inbox.png"), (f"/r/{diff}", "web-request.png"),
                           ("/overview", "web-overview.png")):  # fmt: skip
            await page.goto(home + path)
            await _shot(page, name)
        # Light and dark follow the system's setting.
        light = await page.evaluate("getComputedStyle(document.body).backgroundColor")
        await page.emulate_media(color_scheme="dark")
        dark = await page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert light == "rgb(247, 247, 245)" and dark == "rgb(22, 22, 21)", (light, dark)
        phone = await b.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                    has_touch=True)  # fmt: skip
        mobile = await phone.new_page()
        phone_watch = PageWatch(mobile)
        mobile_home = await sign_in_page(mobile, await served.link("bob"))
        for path in pages:
            await mobile.goto(mobile_home + path)
            width = await mobile.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], f"{path} scrolls sideways on a phone: {width}"
        assert watch.dialogs == watch.errors == phone_watch.dialogs == phone_watch.errors == []
