"""What a grant is and what it covers, in words: the model and the pure helpers a channel
shows (``offer`` on a button, ``Grant.scope`` in a notice). The grants' storage and rules are
in ``grants.py``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .config import GRANT_SESSION, grant_seconds
from .durations import humanize_delta
from .models import ApprovalRequest
from .scopes import Kind, covered, kind_for

_FIELDS = ("id", "route", "action", "requested_by", "session", "argument", "pattern", "from_request", "created_at",
           "created_by", "expires_at", "max_uses", "uses", "revoked_at", "revoked_by", "notice_channel",
           "notice_address", "notice_message", "cwd", "dead_at", "dead_reason")  # fmt: skip
_COLUMNS = ", ".join(_FIELDS)


def short_path(path: str | None) -> str:
    """A working directory for people: ``~/src/shop``."""
    if path is None:
        return "no known folder"
    home = os.path.expanduser("~")
    if home not in ("", "/") and (path == home or path.startswith(home + "/")):
        return "~" + path[len(home) :]
    return path


def coverage(action: str, pattern: str | None, cwd: str | None, requested_by: str) -> str:
    """What a grant covers, in a line: ``Bash `npm test` in ~/src/shop, from claude-code``."""
    what = f"{action} `{pattern}`" if pattern is not None else f"any {action} call"
    return f"{what} in {short_path(cwd)}, from {requested_by}"


def option_text(option: str) -> str:
    if option == GRANT_SESSION:
        return "this session"
    return humanize_delta(grant_seconds(option) or 0).removeprefix("in ")


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    route: str
    action: str
    requested_by: str
    session: str | None
    argument: str | None
    pattern: str | None
    from_request: str
    created_at: float
    created_by: str
    expires_at: float
    max_uses: int | None
    uses: int
    revoked_at: float | None
    revoked_by: str | None
    notice_channel: str | None  # where the notice that counts its uses and offers Revoke is
    notice_address: str | None
    notice_message: str | None  # None while it is being sent
    cwd: str | None = None
    dead_at: float | None = None
    dead_reason: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Grant:
        return cls(*(row[i] for i in range(len(_FIELDS))))

    def live(self, now: float) -> bool:
        return (
            self.revoked_at is None
            and self.dead_at is None
            and self.expires_at > now
            and (self.max_uses is None or self.uses < self.max_uses)
        )

    def scope(self) -> str:
        """What it covers, in a line: ``Bash `npm test` in ~/src/shop, from claude-code (its session)``."""
        return coverage(self.action, self.pattern, self.cwd, self.requested_by) + (
            " (its session)" if self.session else ""
        )


def _argument(details: Any, key: str) -> str | None:
    value = details.get(key) if isinstance(details, dict) else None
    return value if isinstance(value, str) else None


def _scope_of(req: ApprovalRequest) -> dict[str, Any] | None:
    scope = req.route_snapshot.get("grant_scope")
    return scope if isinstance(scope, dict) else None


def _kind(scope: dict[str, Any]) -> Kind:
    """How a route snapshot's ``grant_scope`` compares values (as ``GrantScope.kind`` does)."""
    match = scope.get("match")
    return match if match in ("command", "path", "exact") else kind_for(str(scope["argument"]))


def scope_pattern(req: ApprovalRequest) -> tuple[bool, str | None, str | None]:
    """(whether a grant can be made from ``req``, its argument, the pattern that covers it)."""
    scope = _scope_of(req)
    if scope is None:
        return True, None, None
    value = _argument(req.details, scope["argument"])
    if value is None:
        return False, None, None
    kind = _kind(scope)
    pattern = next((p for p in scope["patterns"] if covered(kind, p, value, req.cwd)), None)
    return pattern is not None, scope["argument"], pattern


def options(req: ApprovalRequest) -> list[str]:
    """The grant options a prompt for ``req`` offers (none when its arguments cannot be scoped)."""
    opts = list(req.route_snapshot.get("grant_options") or [])
    if not opts or not scope_pattern(req)[0]:
        return []
    return [o for o in opts if o != GRANT_SESSION or req.session is not None]


def offer(req: ApprovalRequest, option: str) -> str:
    """Exactly what approving ``req`` with ``option`` would grant, for its button:
    ``npm test` in ~/src/shop, from claude-code, 30 min``."""
    _, _, pattern = scope_pattern(req)
    return f"{coverage(req.action, pattern, req.cwd, req.requested_by)}, {option_text(option)}"


def covers(grant: Grant, req: ApprovalRequest) -> bool:
    """Whether ``req`` is inside what ``grant`` was given for (its liveness aside)."""
    if (grant.route, grant.action, grant.requested_by, grant.cwd) != (req.route, req.action, req.requested_by, req.cwd):
        return False
    if grant.session is not None and grant.session != req.session:
        return False
    if grant.argument is None or grant.pattern is None:
        return grant.argument is None and _scope_of(req) is None
    scope = _scope_of(req)
    value = _argument(req.details, grant.argument)
    if scope is None or value is None:
        return False
    return covered(_kind(scope), grant.pattern, value, req.cwd)


# Arguments a grant lets vary besides its scoped one: words for people, and how long to wait.
# Every other argument must equal the granting request's (a grant for `npm test` does not
# cover `npm test` with `dangerouslyDisableSandbox: true`).
