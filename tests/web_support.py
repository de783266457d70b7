"""The web inbox under test: the real ``signoff serve`` ASGI app on uvicorn, in this event loop,
and a real Chromium driven by Playwright (async API).

Chromium is Debian's (``apt-get install chromium``; ``.ci/run`` installs it). Without it the
browser tests skip, saying so — unless ``SIGNOFF_REQUIRE_BROWSER=1`` (CI), where they fail.
Playwright never downloads a browser here: it is pointed at the system one.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn

from signoff.server.app import App
from signoff.server.http import build_http_app
from signoff.server.listen import bind
from signoff.server.web_auth import WebAuth, path_key


@dataclass
class Served:
    app: App
    base: str  # http://127.0.0.1:PORT

    async def sign_in(self, client: Any, approver: str) -> str:
        """Sign an httpx ``client`` in as ``approver`` through a fresh link, as the sign-in page's
        button does, and let it send the session cookie to every page (``unscope``); the
        address the sign-in redirected to (``/web/k/KEY/``)."""
        found = TOKEN_IN.search(await self.link(approver))
        assert found is not None
        r = await client.post(f"{self.base}/web/login", data={"token": found.group(1)})
        assert r.status_code == 303, r.text
        unscope(client)
        return str(r.headers["location"])

    async def link(self, approver: str) -> str:
        """A fresh sign-in link for ``approver`` at this server."""
        auth = WebAuth(self.app.store, self.app.config, time.time)
        token = await auth.issue_link(approver, "console")
        return f"{self.base}/web/login?token={token}"


@asynccontextmanager
async def serve_web(app: App, token: str | None = None, *, sock: socket.socket | None = None) -> AsyncIterator[Served]:
    """``app`` served over HTTP on a free loopback port (or on ``sock``, bound already: for a
    configuration that must name the port) until the block ends."""
    sock = sock or bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    config = uvicorn.Config(build_http_app(app, token, port=port), log_level="warning", log_config=None,
                            lifespan="on", timeout_graceful_shutdown=1)  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield Served(app, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task
        sock.close()


def chromium_path() -> str | None:
    return os.environ.get("SIGNOFF_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@asynccontextmanager
async def browser() -> AsyncIterator[Any]:
    """A headless Chromium (Playwright ``Browser``), closed afterwards."""
    path = chromium_path()
    if path is None:
        if os.environ.get("SIGNOFF_REQUIRE_BROWSER") == "1":
            pytest.fail("SIGNOFF_REQUIRE_BROWSER=1 but no Chromium: apt-get install chromium")
        pytest.skip("no Chromium here: apt-get install chromium to run the browser tests")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=path)
        try:
            yield b
        finally:
            await b.close()


class PageWatch:
    """What a page did that it must not: dialogs (alert, confirm), uncaught errors, console errors."""

    def __init__(self, page: Any) -> None:
        self.dialogs: list[str] = []
        self.errors: list[str] = []

        async def on_dialog(dialog: Any) -> None:
            self.dialogs.append(dialog.message)
            await dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)


TOKEN_IN = re.compile(r"token=([A-Za-z0-9_-]+)")


def unscope(client: Any) -> None:
    """Let an httpx client send its session cookie to every path. A browser sends it only below
    ``/web/k/KEY`` (its ``Path``), where every page of the session links; signoff accepts it on
    any page, so tests can keep addressing pages as ``/web/…``."""
    for cookie in list(client.cookies.jar):
        if cookie.name == "signoff_session" and cookie.path != "/":
            client.cookies.delete(cookie.name, domain=cookie.domain, path=cookie.path)  # one cookie of the name
            client.cookies.set(cookie.name, cookie.value, domain=cookie.domain, path="/")


SESSION_HOME = re.compile(r"(http://[^/]+/web/k/[0-9a-f]{24})/")


async def sign_in_page(page: Any, link: str) -> str:
    """Sign ``page`` in with the sign-in ``link`` as its approver would (open it, press the
    button) and return where the session's pages live: ``http://127.0.0.1:PORT/web/k/KEY``, the
    only addresses the browser sends its cookie to."""
    await page.goto(link)
    await page.click("#sign-in")
    await page.wait_for_url(re.compile(r"^http://[^/]+/web/k/[0-9a-f]{24}/$"))
    home = SESSION_HOME.match(page.url)
    assert home is not None, page.url
    return home.group(1)


def home_of(client: Any) -> str:
    """Where the pages of ``client``'s session live (``/web/k/KEY``): where signoff's links and
    redirects for it lead."""
    return f"/web/k/{path_key(client.cookies['signoff_session'])}"
