from __future__ import annotations

from typing import Any

import pytest

from signoff.server.config import Config, parse_config
from signoff.server.errors import RequestError
from signoff.server.routing import choose_route, matches

from .conftest import BASIC_CONFIG


def cfg(text: str = BASIC_CONFIG) -> Config:
    return parse_config(text, source="test", base_dir=None)


def pick(config: Config, action: str, metadata: dict[str, Any] | None = None, named: str | None = None,
         requested_by: str = "claude-code") -> str:  # fmt: skip
    return choose_route(
        config, action=action, requested_by=requested_by, metadata=metadata or {}, named=named
    ).route.name


def test_first_matching_route_wins() -> None:
    c = cfg()
    assert pick(c, "read_file") == "reads"
    assert pick(c, "list_users") == "reads"
    assert pick(c, "refund", {"amount": 30000}) == "large-refunds"
    assert pick(c, "refund", {"amount": 25000}) == "default"  # gt, not gte
    assert pick(c, "refund") == "default"  # a missing key never matches
    assert pick(c, "refund", {"amount": "30000"}) == "default"  # a string is not a number
    assert pick(c, "refund", {"amount": True}) == "default"  # nor is a boolean
    assert pick(c, "deploy") == "default"


@pytest.mark.parametrize(
    ("cond", "value", "fits"),
    [
        ("{ gte = 5 }", 5, True), ("{ gte = 5 }", 4.9, False), ("{ lt = 5 }", 4, True), ("{ lte = 5 }", 6, False),
        ("{ eq = 'prod' }", "prod", True), ("{ eq = 'prod' }", "dev", False), ("'prod'", "prod", True),
        ("{ ne = 'prod' }", "dev", True), ("{ ne = 'prod' }", "prod", False), ("{ in = ['a', 'b'] }", "b", True),
        ("{ in = ['a', 'b'] }", "c", False), ("{ eq = 1 }", True, False), ("true", True, True), ("true", 1, False),
        ("{ gt = 1, lt = 10 }", 5, True), ("{ gt = 1, lt = 10 }", 10, False), ("{ in = [1, 2] }", 2.0, True),
        ("{ gt = 1 }", None, False), ("{ eq = 3 }", 3.0, True),
    ],
)  # fmt: skip
def test_metadata_comparisons(cond: str, value: Any, fits: bool) -> None:
    c = cfg(f"[[routes]]\nname = 'r'\nmatch = {{ metadata = {{ k = {cond} }} }}\n")
    assert matches(c.routes[0].match, "x", "y", {"k": value}) is fits


def test_requested_by_glob_uses_the_transport_identity() -> None:
    c = cfg("[[routes]]\nname='ci'\nmatch={ requested_by = 'ci-*' }\nauto='approve'\n[[routes]]\nname='default'\n")
    assert pick(c, "x", requested_by="ci-bot") == "ci"
    assert pick(c, "x", requested_by="claude-code", metadata={"requested_by": "ci-bot"}) == "default"


def test_no_matching_route_is_a_clear_error() -> None:
    c = cfg("[[routes]]\nname='only-reads'\nmatch={ action='read_*' }\nauto='approve'\n")
    with pytest.raises(RequestError, match="no route accepts action 'deploy'"):
        pick(c, "deploy")


def test_naming_a_route_can_only_raise_the_bar() -> None:
    c = cfg()
    # A stricter human route that also matches: allowed.
    assert pick(c, "read_file", named="default") == "default"
    # An auto-approving route: never by name, not even when it is the matching one.
    with pytest.raises(RequestError, match="cannot be used for this request"):
        pick(c, "read_file", named="reads")
    with pytest.raises(RequestError, match="cannot be used for this request"):
        pick(c, "refund", named="reads")
    # A route that does not match.
    with pytest.raises(RequestError, match="cannot be used for this request"):
        pick(c, "deploy", named="large-refunds")
    # A later matching route with more approvers than the first match: lower bar, refused.
    with pytest.raises(RequestError, match="cannot be used for this request"):
        pick(c, "refund", {"amount": 30000}, named="default")
    # Escaping an auto-reject through a human route: refused.
    with pytest.raises(RequestError, match="cannot be used for this request"):
        pick(c, "drop_table", named="default")
    with pytest.raises(RequestError, match="cannot be used for this request"):
        pick(c, "deploy", named="nope")


def test_a_route_whose_silence_approves_is_never_chosen_over_one_that_rejects() -> None:
    c = cfg(
        "[approvers.a]\ntelegram_user_id=1\n"
        "[[routes]]\nname='strict'\nmatch={action='x'}\napprovers=['a']\n"
        "[[routes]]\nname='silent-ok'\napprovers=['a']\non_timeout='approve'\n"
    )
    with pytest.raises(RequestError, match="cannot be used for this request"):
        pick(c, "x", named="silent-ok")
