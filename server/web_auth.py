"""Signing in to the web inbox without passwords: single-use links and revocable sessions.

An approver asks for a link (``/web`` to the bot, the Slack slash command, or ``signoff
web-link --as NAME``); the link carries a random token valid for ``LINK_TTL`` seconds, stored
only as its SHA-256. Redeeming it is one compare-and-set (``used_at IS NULL``), so a link
signs in once however often it is opened. The session's secret lives in the browser's cookie;
the database keeps its SHA-256, the approver, the expiry and whether it was revoked. A
session of an approver no longer in the configuration is no session.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from .config import Config
from .errors import NotAllowedError
from .store import Store

LINK_TTL = 600.0  # a sign-in link works for 10 minutes, once
TOUCH_EVERY = 60.0  # how often a session's last_seen is written (not on every page)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class WebSession:
    """A signed-in browser: ``id`` is the public name of the session (a prefix of its hash),
    ``csrf`` the token its forms must carry (derived from the cookie's secret)."""

    id: str
    approver: str
    created_at: float
    expires_at: float
    last_seen: float
    revoked_at: float | None
    client: str
    csrf: str = ""

    @property
    def live(self) -> bool:
        return self.revoked_at is None


def path_key(secret: str) -> str:
    """The path below which the session whose cookie holds ``secret`` lives (``/web/k/KEY``): the
    cookie's ``Path``, so a browser sends it to no other address, such as a page on another
    port of the same host (cookies ignore ports), which cannot know it."""
    return hashlib.sha256(b"signoff-path\x00" + secret.encode()).hexdigest()[:24]


def csrf_token(secret: str) -> str:
    """The CSRF token of the session whose cookie holds ``secret``: known to its pages, not to
    any other site (which cannot read the cookie)."""
    return hashlib.sha256(b"signoff-csrf\x00" + secret.encode()).hexdigest()


class WebAuth:
    """Links and sessions in the store."""

    def __init__(self, store: Store, config: Config, clock: Callable[[], float]) -> None:
        self.store = store
        self.config = config
        self.clock = clock

    async def issue_link(self, approver: str, via: str) -> str:
        """A new sign-in token for ``approver`` (a configured approver name)."""
        if approver not in self.config.approvers:
            known = ", ".join(sorted(self.config.approvers)) or "none"
            raise NotAllowedError(f"{approver!r} is not an approver in the configuration (known: {known})")
        token = secrets.token_urlsafe(32)
        now = self.clock()
        await self.store.write(
            "INSERT INTO web_links (token_hash, approver, via, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
            (_hash(token), approver, via, now, now + LINK_TTL),
        )
        # Old links are of no use to anyone: drop them as new ones are made.
        await self.store.write("DELETE FROM web_links WHERE expires_at < ?", (now - 86400,))
        return token

    def link_url(self, token: str, port: int | None = None) -> str:
        """The address of the sign-in link: ``[web] public_url``, else loopback."""
        base = self.config.web.public_url
        if base is None:
            base = f"http://127.0.0.1:{port or self.config.server.port}"
        return f"{base.rstrip('/')}/web/login?token={token}"

    async def redeem(self, token: str, client: str) -> tuple[str, WebSession] | None:
        """Trade a link's token for a session: (the cookie's secret, the session), or None when
        the token is unknown, used or expired (or its approver left the configuration)."""
        now = self.clock()
        rows = await self.store.write(
            "UPDATE web_links SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND expires_at > ? "
            "RETURNING approver",
            (now, _hash(token), now),
        )
        if not rows or rows[0][0] not in self.config.approvers:
            return None
        approver = str(rows[0][0])
        secret = secrets.token_urlsafe(32)
        expires = now + self.config.web.session_ttl
        await self.store.write(
            "INSERT INTO web_sessions (id_hash, approver, created_at, expires_at, last_seen, client) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (_hash(secret), approver, now, expires, now, client[:300]),
        )
        session = WebSession(_hash(secret)[:12], approver, now, expires, now, None, client[:300], csrf_token(secret))
        return secret, session

    async def session(self, secret: str) -> WebSession | None:
        """The live session whose cookie holds ``secret``, or None (unknown, expired, revoked,
        or its approver is no longer configured)."""
        if not secret or len(secret) > 200:
            return None
        now = self.clock()
        rows = await self.store.read(
            "SELECT id_hash, approver, created_at, expires_at, last_seen, revoked_at, client FROM web_sessions "
            "WHERE id_hash = ? AND revoked_at IS NULL AND expires_at > ?",
            (_hash(secret), now),
        )
        if not rows or rows[0][1] not in self.config.approvers:
            return None
        row = rows[0]
        if now - float(row[4]) > TOUCH_EVERY:
            await self.store.write("UPDATE web_sessions SET last_seen = ? WHERE id_hash = ?", (now, row[0]))
        return WebSession(str(row[0])[:12], str(row[1]), float(row[2]), float(row[3]), float(row[4]), None,
                          str(row[6]), csrf_token(secret))  # fmt: skip

    async def end(self, secret: str) -> None:
        """Sign out: the session whose cookie holds ``secret`` ends now."""
        await self.store.write(
            "UPDATE web_sessions SET revoked_at = ? WHERE id_hash = ? AND revoked_at IS NULL",
            (self.clock(), _hash(secret)),
        )

    async def sessions(self, *, everything: bool = False) -> list[WebSession]:
        """Sessions, newest first: live ones (with ``everything``, ended ones too)."""
        where = "" if everything else "WHERE revoked_at IS NULL AND expires_at > ?"
        args = () if everything else (self.clock(),)
        rows = await self.store.read(
            "SELECT id_hash, approver, created_at, expires_at, last_seen, revoked_at, client FROM web_sessions "
            f"{where} ORDER BY created_at DESC LIMIT 500",
            args,
        )
        return [WebSession(str(r[0])[:12], str(r[1]), float(r[2]), float(r[3]), float(r[4]),
                           None if r[5] is None else float(r[5]), str(r[6])) for r in rows]  # fmt: skip

    async def revoke(self, session_id: str | None = None, *, approver: str | None = None) -> int:
        """End the session named ``session_id`` (its 12-character id), or every session of
        ``approver``; return how many ended."""
        now = self.clock()
        if session_id is not None:
            if len(session_id) != 12 or not all(c in "0123456789abcdef" for c in session_id):
                return 0
            rows = await self.store.write(
                "UPDATE web_sessions SET revoked_at = ? WHERE substr(id_hash, 1, 12) = ? AND revoked_at IS NULL "
                "RETURNING 1",
                (now, session_id),
            )
        else:
            rows = await self.store.write(
                "UPDATE web_sessions SET revoked_at = ? WHERE approver = ? AND revoked_at IS NULL RETURNING 1",
                (now, approver),
            )
        return len(rows)
