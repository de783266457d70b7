"""Which route decides a request — and why an agent can never lower the bar.

The first ``[[routes]]`` entry whose ``match`` fits wins. An agent may *name* a route, but
only to raise the bar: the named route must fit the request too, must not approve by
itself, and must be at least as strict as the route that would have been chosen anyway
(see ``_at_least_as_strict``). ``requested_by`` is what the transport says, never what the
agent claims.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import Comparison, Config, Match, RouteConfig
from .errors import RequestError


@dataclass(frozen=True, slots=True)
class Choice:
    """The route that decides a request, with the values it resolved to."""

    route: RouteConfig
    approvers: list[str]
    timeout: float
    on_timeout: str
    # Where each approver's prompts go, as configured when the request was filed.
    telegram: list[dict[str, Any]]
    # Each escalation level: after (seconds), the approvers it adds, and their chats.
    escalation: list[dict[str, Any]]

    @property
    def everyone(self) -> list[str]:
        """Every approver who may ever decide: the route's and every escalation level's."""
        return self.approvers + [a for level in self.escalation for a in level["approvers"]]

    def snapshot(self) -> dict[str, Any]:
        """The route as it is now, stored with the request so later config edits don't change it."""
        r = self.route
        return {
            "name": r.name,
            "approvers": self.approvers,
            "timeout": self.timeout,
            "on_timeout": self.on_timeout,
            "auto": r.auto,
            "telegram": self.telegram,
            "match": None if r.match is None else r.match.model_dump(by_alias=True, exclude_defaults=True),
            "escalation": self.escalation,
            "reminder": r.reminder,
            "quorum": r.quorum,
            "reject_quorum": r.reject_quorum,
            "allow_self_approval": r.allow_self_approval,
            "grant_options": r.grant_options,
            "grant_scope": None if r.grant_scope is None else r.grant_scope.model_dump(),
            "grant_max_uses": r.grant_max_uses,
            "allow_bulk": r.allow_bulk,
            "urgent": r.urgent,
        }


def _glob(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern)


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if not (isinstance(v, float) and math.isnan(v)) else None


def _same(a: Any, b: Any) -> bool:
    """Equality that does not let ``True`` pass for ``1`` or ``"1"`` for ``1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _number(a) is not None and _number(b) is not None:
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


def _fits(cond: Comparison, present: bool, value: Any) -> bool:
    # A missing key never fits: a condition on metadata the agent left out must not be
    # satisfied by leaving it out.
    if not present:
        return False
    checks = cond.model_fields_set
    n = _number(value)
    for op in ("gt", "gte", "lt", "lte"):
        if op in checks:
            bound = getattr(cond, op)
            if n is None:
                return False
            if op == "gt" and not n > bound:
                return False
            if op == "gte" and not n >= bound:
                return False
            if op == "lt" and not n < bound:
                return False
            if op == "lte" and not n <= bound:
                return False
    if "eq" in checks and not _same(value, cond.eq):
        return False
    if "ne" in checks and _same(value, cond.ne):
        return False
    return "in_" not in checks or any(_same(value, c) for c in cond.in_ or [])


def matches(match: Match | None, action: str, requested_by: str, metadata: Mapping[str, Any]) -> bool:
    """Whether a route's ``match`` fits the request (no ``match`` fits everything)."""
    if match is None:
        return True
    if match.action is not None:
        patterns = [match.action] if isinstance(match.action, str) else match.action
        if not any(_glob(p, action) for p in patterns):
            return False
    if match.requested_by is not None and not _glob(match.requested_by, requested_by):
        return False
    return all(_fits(cond, key in metadata, metadata.get(key)) for key, cond in match.metadata.items())


def _chats(config: Config, names: list[str]) -> list[dict[str, Any]]:
    return [
        {"approver": name, "user_id": a.telegram_user_id, "chat_id": a.telegram_chat_id or a.telegram_user_id}
        for name in names
        if (a := config.approvers[name]).telegram_user_id is not None
    ]


def resolve(config: Config, route: RouteConfig) -> Choice:
    approvers = config.expand(route.approvers)
    seen = list(approvers)
    levels = []
    for level in route.escalation:
        added = [a for a in config.expand(level.approvers) if a not in seen]
        seen += added
        levels.append({"after": level.after, "approvers": added, "telegram": _chats(config, added)})
    return Choice(
        route=route,
        approvers=approvers,
        timeout=route.timeout or config.defaults.timeout,
        on_timeout=route.on_timeout or config.defaults.on_timeout,
        telegram=_chats(config, approvers),
        escalation=levels,
    )


def _at_least_as_strict(named: Choice, first: Choice) -> bool:
    if named.route.auto == "reject":
        return True
    if named.route.auto == "approve":
        return False
    if first.route.auto == "approve":
        return True  # any human route is stricter than approving at once
    if first.route.auto == "reject":
        return False  # a human route would be looser than rejecting at once
    if not set(named.everyone) <= set(first.everyone):
        return False
    n, f = named.route, first.route
    if n.quorum < f.quorum or n.reject_quorum > f.reject_quorum or (n.allow_self_approval > f.allow_self_approval):
        return False
    return named.on_timeout == "reject" or first.on_timeout == "approve"


def choose_route(
    config: Config, *, action: str, requested_by: str, metadata: Mapping[str, Any], named: str | None
) -> Choice:
    """Pick the route for a request, or raise ``RequestError`` saying how to fix the call."""
    fitting = [r for r in config.routes if matches(r.match, action, requested_by, metadata)]
    if not fitting:
        raise RequestError(
            f"no route accepts action {action!r} with this metadata; the operator has not allowed it. "
            f"Routes: {', '.join(r.name for r in config.routes)}"
        )
    first = resolve(config, fitting[0])
    if named is None:
        return first
    route = config.route(named)
    if route is None:
        raise RequestError(
            f"unknown route {named!r}; omit 'route' to use the matching one, or name one of: "
            f"{', '.join(r.name for r in fitting if r.auto != 'approve')}"
        )
    if route not in fitting:
        raise RequestError(
            f"route {named!r} does not match this request; omit 'route' (the matching route is {first.route.name!r})"
        )
    if route.auto == "approve":
        raise RequestError(f"route {named!r} approves by itself and cannot be chosen by name; omit 'route'")
    choice = resolve(config, route)
    if not _at_least_as_strict(choice, first):
        raise RequestError(
            f"route {named!r} cannot be chosen by name: it is less strict than {first.route.name!r}, "
            f"the route this request matches; omit 'route'"
        )
    return choice
