"""What every web response carries and every web request must pass, before any page runs.

- **Where**: without ``[web] public_url`` the inbox answers only clients on loopback, and only
  under a loopback ``Host`` (a DNS-rebinding page cannot reach it under its own name). With
  it, only that host.
- **Headers**: a strict Content-Security-Policy (scripts, styles and images from signoff
  itself, nothing inline, ``frame-ancestors 'none'``), ``nosniff``, ``same-origin`` referrers (a sign-in
  link's token never leaks in a Referer), ``no-store``.
- **Session**: the cookie is read once; pages get ``request.state.session`` (None when signed out).
  The cookie's ``Path`` is ``/web/k/KEY``, KEY derived from its secret, and every page of the
  session lives below it (``request.state.base``): browsers send cookies to every port of a
  host, so a page served on another loopback port (an agent's dev server) could otherwise make
  the browser hand it the cookie; it cannot guess the path the cookie is sent to.
- **CSRF**: a POST whose ``Origin`` is another site is refused here; every state-changing page
  also requires the session's token, in the form or the ``X-CSRF-Token`` header (``csrf_ok``).
  The sign-in's secret is its token.
"""

from __future__ import annotations

import hmac
import time
from collections import deque
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signoff.server.listen import is_loopback
from signoff.server.web_auth import WebAuth, WebSession, path_key

COOKIE = "signoff_session"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # no Referer to other sites (a link's token never leaks); Origin stays
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


class RateLimit:
    """At most ``limit`` failures per ``window`` seconds per key (a client address), in this process."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self.seen: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        now = time.monotonic()
        q = self.seen.setdefault(key, deque())
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def blocked(self, key: str) -> bool:
        return len(self._recent(key)) >= self.limit

    def failed(self, key: str) -> None:
        self._recent(key).append(time.monotonic())
        if len(self.seen) > 10_000:  # bounded memory under a flood of addresses
            self.seen = {k: v for k, v in self.seen.items() if v}


class WebGuard:
    """Pure ASGI middleware in front of the web pages (it must not buffer the event stream)."""

    def __init__(self, app: ASGIApp, auth: WebAuth, public_url: str | None) -> None:
        self.app = app
        self.auth = auth
        self.public = urlsplit(public_url) if public_url else None
        self.secure = self.public is not None and self.public.scheme == "https"

    def _where_refused(self, scope: Scope) -> str | None:
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        try:
            name = urlsplit(f"//{host}").hostname or ""
        except ValueError:  # "[" and other malformed names
            return "This address is not one signoff's web inbox is served at."
        if self.public is not None:
            if host.lower() != (self.public.netloc or "").lower():
                return "This address is not the one signoff's web inbox is served at ([web] public_url)."
            return None
        client = scope.get("client") or ("", 0)
        if not is_loopback(str(client[0])) or not is_loopback(name):
            return "The web inbox answers on loopback only; set [web] public_url to serve it elsewhere."
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in HEADERS if h[0] not in names)]
            await send(message)

        why = self._where_refused(scope)
        if why is not None:
            await PlainTextResponse(why, status_code=403)(scope, receive, send_with_headers)
            return
        request = Request(scope)
        web_root = str(scope.get("root_path", ""))  # where the inbox is mounted: /web
        given = _path_key(scope, web_root)
        root = web_root if given is None else f"{web_root}/k/{given}"
        scope["root_path"] = root  # the pages route below the session's key
        secret = request.cookies.get(COOKIE, "")
        # Static files need no session: no database read for them.
        static = str(scope["path"]).startswith(f"{root}/static/")
        session = await self.auth.session(secret) if secret and not static else None
        if session is not None and given is not None and given != path_key(secret):
            session = None  # another session's address: this cookie is not for it
        scope.setdefault("state", {})
        scope["state"]["session"] = session
        scope["state"]["secret"] = secret if session else ""
        scope["state"]["secure"] = self.secure
        scope["state"]["web_root"] = web_root
        # Where this session's pages live: every link and redirect stays below its key.
        scope["state"]["base"] = f"{web_root}/k/{path_key(secret)}" if session else root
        if scope["method"] not in ("GET", "HEAD") and _foreign_origin(request):
            refused = PlainTextResponse("Refused: this form was sent from another site.", status_code=403)
            await refused(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


def _path_key(scope: Scope, root: str) -> str | None:
    """The session key a path starts with (``/web/k/KEY/…``), if any."""
    path = str(scope["path"])
    rest = path[len(root) :] if path.startswith(root) else path
    if not rest.startswith("/k/"):
        return None
    key = rest[3:].split("/", 1)[0]
    return key if key and len(key) <= 64 else None


def _foreign_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return False  # not sent by every browser on every form; the CSRF token still is required
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:  # malformed: not this site
        return True
    return origin == "null" or netloc.lower() != request.headers.get("host", "").lower()


async def csrf_ok(request: Request) -> bool:
    """Whether a POST carries its session's CSRF token (the ``X-CSRF-Token`` header, or the
    ``csrf`` form field). Every state-changing page calls it first (``pages.posting``)."""
    session: WebSession | None = request.state.session
    if session is None:
        return False
    given: object = request.headers.get("x-csrf-token")
    if given is None:
        given = (await request.form()).get("csrf")
    # Bytes: compare_digest refuses str with non-ASCII characters (a 500, not a refusal).
    return isinstance(given, str) and hmac.compare_digest(given.encode(), session.csrf.encode())
