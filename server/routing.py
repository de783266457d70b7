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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import RequestError
from .models import EscalationStep, RouteSnapshot, SlackEntry, TelegramEntry

if TYPE_CHECKING:  # not at run time: the hook's fast path matches routes without pydantic (see quick.py)
    from .config import Comparison, Config, Match, RouteConfig


@dataclass(frozen=True, slots=True)
class Choice:
    """The route that decides a request, with the values it resolved to."""

    route: RouteConfig
    approvers: list[str]
    timeout: float
    on_timeout: str
    # Where each approver's prompts go, as configured when the request was filed.
    telegram: list[TelegramEntry]
    slack: list[SlackEntry]
    # Each escalation level: after (seconds), the approvers it adds, and their chats.
    escalation: list[EscalationStep]

    @property
    def everyone(self) -> list[str]:
        """Every approver who may ever decide: the route's and every escalation level's."""
        return self.approvers + [a for level in self.escalation for a in level["approvers"]]

    def snapshot(self) -> RouteSnapshot:
        """The route as it is now, stored with the request so later config edits don't change it."""
        r = self.route
        return {
            "name": r.name,
            "approvers": self.approvers,
            "timeout": self.timeout,
            "on_timeout": self.on_timeout,
            "auto": r.auto,
            "telegram": self.telegram,
            "slack": self.slack,
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
            "allow_edit": r.allow_edit,
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


def _chats(config: Config, names: list[str]) -> list[TelegramEntry]:
    return [
        {"approver": name, "user_id": a.telegram_user_id, "chat_id": a.telegram_chat_id or a.telegram_user_id}
        for name in names
        if (a := config.approvers[name]).telegram_user_id is not None
    ]


def _slack(config: Config, names: list[str]) -> list[SlackEntry]:
    return [
        {"approver": name, "user_id": a.slack_user_id, "address": a.slack_channel or a.slack_user_id}
        for name in names
        if (a := config.approvers[name]).slack_user_id is not None
    ]


def resolve(config: Config, route: RouteConfig) -> Choice:
    approvers = config.expand(route.approvers)
    seen = list(approvers)
    levels: list[EscalationStep] = []
    for level in route.escalation:
        added = [a for a in config.expand(level.approvers) if a not in seen]
        seen += added
        levels.append({"after": level.after, "approvers": added, "telegram": _chats(config, added),
                       "slack": _slack(config, added)})  # fmt: skip
    return Choice(
        route=route,
        approvers=approvers,
        timeout=route.timeout or config.defaults.timeout,
        on_timeout=route.on_timeout or config.defaults.on_timeout,
        telegram=_chats(config, approvers),
        slack=_slack(config, approvers),
        escalation=levels,
    )


def _eligible(choice: Choice, at: float) -> set[str]:
    """Who may decide ``at`` seconds after filing: the route's approvers and the levels fired by then."""
    return set(choice.approvers).union(*(lv["approvers"] for lv in choice.escalation if lv["after"] <= at))


def _silence_approves(n: Choice, f: Choice) -> bool:
    """Both routes approve when nobody answers: then asking fewer people, or later, is looser."""
    return n.on_timeout == "approve" and f.on_timeout == "approve"


def _who_decides(n: Choice, f: Choice) -> bool:
    # At every moment, whoever may decide on the named route may also decide on the first match:
    # no approver added, none earlier (escalation levels and their order included). Where silence
    # approves on both, the same people at every moment: fewer would mean fewer who can say no.
    moments = {0.0, *(lv["after"] for lv in n.escalation), *(lv["after"] for lv in f.escalation)}
    if _silence_approves(n, f):
        return all(_eligible(n, t) == _eligible(f, t) for t in moments)
    return all(_eligible(n, t) <= _eligible(f, t) for t in moments)


def _urgent(n: Choice, f: Choice) -> bool:
    # An agent cannot make its request urgent (that wakes approvers at night and skips digests);
    # where silence approves, it cannot make it less urgent either (held prompts let silence win).
    if _silence_approves(n, f):
        return n.route.urgent == f.route.urgent
    return n.route.urgent <= f.route.urgent


def _silence(n: Choice, f: Choice) -> bool:
    # Silence never approves sooner: where the first match rejects on timeout the named route
    # must too, and no later; where it approves, the named route rejects or approves no sooner.
    if f.on_timeout == "reject":
        return n.on_timeout == "reject" and n.timeout <= f.timeout
    return n.on_timeout == "reject" or n.timeout >= f.timeout


def _scope(n: Choice, f: Choice) -> bool:
    ns, fs = n.route.grant_scope, f.route.grant_scope
    if not n.route.grant_options or fs is None:
        return True
    return ns is not None and (ns.argument, ns.kind) == (fs.argument, fs.kind) and set(ns.patterns) <= set(fs.patterns)


def _max_uses(n: Choice, f: Choice) -> bool:
    nm, fm = n.route.grant_max_uses, f.route.grant_max_uses
    return not n.route.grant_options or fm is None or (nm is not None and nm <= fm)


def _reminder(n: Choice, f: Choice) -> bool:
    nr, fr = n.route.reminder, f.route.reminder
    return fr is None or (nr is not None and nr <= fr)


Rule = Callable[[Choice, Choice], bool]
# For every key of a route: is the named route (first argument) at least as strict as the first
# match (second) on it? A test walks RouteConfig's fields, so a new key needs a rule here (or a
# reason in NOT_A_BAR) before the suite passes. Where the choice was open, the stricter one.
STRICTER: dict[str, Rule] = {
    "approvers": _who_decides,
    "escalation": _who_decides,
    "timeout": _silence,
    "on_timeout": _silence,
    "reminder": _reminder,  # reminded at least as often: a forgotten prompt is how silence wins
    "quorum": lambda n, f: n.route.quorum >= f.route.quorum,
    "reject_quorum": lambda n, f: n.route.reject_quorum <= f.route.reject_quorum,
    "allow_self_approval": lambda n, f: n.route.allow_self_approval <= f.route.allow_self_approval,
    "grant_options": lambda n, f: set(n.route.grant_options) <= set(f.route.grant_options),
    "grant_scope": _scope,
    "grant_max_uses": _max_uses,
    "allow_bulk": lambda n, f: n.route.allow_bulk <= f.route.allow_bulk,
    "urgent": _urgent,
    # The decision goes where the operator sends it for this kind of request, and nowhere else.
    "callback_url": lambda n, f: n.route.callback_url == f.route.callback_url,
    # An operator who turned edits off (say, for agents that ignore edited_details) keeps them off.
    "allow_edit": lambda n, f: n.route.allow_edit <= f.route.allow_edit,
}
NOT_A_BAR = {
    "name": "what is being compared",
    "description": "words for people",
    "match": "the named route must fit the request as well; what it matches does not lower the bar",
    "auto": "compared first, in _at_least_as_strict: reject at once is strictest, approve at once loosest",
}


def _at_least_as_strict(named: Choice, first: Choice) -> bool:
    if named.route.auto == "reject":
        return True
    if named.route.auto == "approve":
        return False
    if first.route.auto == "approve":
        return True  # any human route is stricter than approving at once
    if first.route.auto == "reject":
        return False  # a human route would be looser than rejecting at once
    return all(rule(named, first) for rule in STRICTER.values())


def choose_route(
    config: Config, *, action: str, requested_by: str, metadata: Mapping[str, Any], named: str | None
) -> Choice:
    """Pick the route for a request, or raise ``RequestError`` saying how to fix the call. A
    refused name gets one answer whatever the reason, and never the operator's other routes."""
    fitting = [r for r in config.routes if matches(r.match, action, requested_by, metadata)]
    if not fitting:
        raise RequestError(
            f"no route accepts action {action[:100]!r} with this metadata; the operator has not allowed it"
        )
    first = resolve(config, fitting[0])
    if named is None:
        return first
    route = config.route(named)
    choice = None if route is None or route not in fitting or route.auto == "approve" else resolve(config, route)
    if choice is None or not _at_least_as_strict(choice, first):
        raise RequestError(
            f"route {named[:100]!r} cannot be used for this request; omit 'route' (the matching route is chosen "
            "for you, and a named route may only be stricter than it on every rule)"
        )
    return choice
