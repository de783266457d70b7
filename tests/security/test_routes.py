"""A named route is never looser than the first match, on any key — tried through the MCP client."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client
from mcp.types import Implementation

from signoff.server.app import open_app
from signoff.server.config import RouteConfig, parse_config
from signoff.server.mcp_tools import build_mcp
from signoff.server.routing import NOT_A_BAR, STRICTER

pytestmark = pytest.mark.anyio

HEAD = """
[store]
path = "signoff.db"
[callbacks]
allowed_urls = ["https://hooks.example.com/signoff/"]
[approvers.alice]
[approvers.bob]
[approvers.carol]
[approvers.lead]
[approvers.mallory]
"""
GRANTS = {
    "approvers": '["alice", "bob"]', "timeout": '"4h"', "on_timeout": '"reject"', "reminder": '"15m"',
    "escalation": '[{ after = "10m", approvers = ["lead"] }]', "grant_options": '["30m"]',
    "grant_scope": '{ argument = "command", patterns = ["make deploy"] }', "grant_max_uses": "5",
    "allow_bulk": "false", "urgent": "false", "callback_url": '"https://hooks.example.com/signoff/a"',
}  # fmt: skip
VOTES = {"approvers": '["alice", "bob", "carol"]', "quorum": "2", "reject_quorum": "2", "allow_self_approval": "false"}

LOOSER = [
    (GRANTS, {"approvers": '["alice", "bob", "mallory"]'}),
    (GRANTS, {"escalation": '[{ after = "5m", approvers = ["lead"] }]'}),  # the same person, sooner
    (GRANTS, {"escalation": '[{ after = "10m", approvers = ["mallory"] }]'}),
    (
        GRANTS,
        {"on_timeout": '"approve"', "timeout": '"60s"', "escalation": None},
    ),  # the 60 s approve-on-silence
    (GRANTS, {"on_timeout": '"approve"', "timeout": '"8h"'}),
    (GRANTS, {"timeout": '"8h"'}),
    (GRANTS, {"reminder": None}),
    (GRANTS, {"reminder": '"1h"'}),
    (GRANTS, {"grant_options": '["30m", "session"]'}),
    (GRANTS, {"grant_options": '["2h"]'}),
    (GRANTS, {"grant_scope": '{ argument = "command", patterns = ["make deploy", "make *"] }'}),
    (GRANTS, {"grant_scope": None}),
    (GRANTS, {"grant_max_uses": "50"}),
    (GRANTS, {"grant_max_uses": None}),
    (GRANTS, {"allow_bulk": "true"}),
    (GRANTS, {"urgent": "true"}),
    (GRANTS, {"callback_url": '"https://hooks.example.com/signoff/b"'}),
    (GRANTS, {"callback_url": None}),
    (VOTES, {"quorum": "1"}),
    (VOTES, {"reject_quorum": "3"}),
    (VOTES, {"allow_self_approval": "true"}),
]
STRICTER_OR_SAME = [
    (GRANTS, {}),
    (GRANTS, {"timeout": '"1h"', "reminder": '"5m"', "grant_max_uses": "2"}),
    (GRANTS, {"approvers": '["alice"]', "escalation": '[{ after = "20m", approvers = ["lead"] }]'}),
    (GRANTS, {"grant_options": "[]", "grant_scope": None, "grant_max_uses": None}),
    (VOTES, {"quorum": "3", "reject_quorum": "1"}),
]


def route(name: str, keys: dict[str, str | None]) -> str:
    lines = [f'[[routes]]\nname = "{name}"\nmatch = {{ action = "deploy" }}']
    lines += [f"{k} = {v}" for k, v in keys.items() if v is not None]
    return "\n".join(lines) + "\n"


def config_text(base: dict[str, str], change: dict[str, str | None]) -> str:
    named = {**base, **change}
    return HEAD + route("first", base) + route("named", named) + '[[routes]]\nname = "secret-ops"\n'


def test_every_route_key_has_a_strictness_rule() -> None:
    fields = set(RouteConfig.model_fields)
    assert fields == set(STRICTER) | set(NOT_A_BAR), "a new route key needs a rule in routing.STRICTER"
    assert not set(STRICTER) & set(NOT_A_BAR)


def _ids(cases: list[tuple[dict[str, str], dict[str, str | None]]]) -> list[str]:
    return [",".join(f"{k}={v}" for k, v in change.items()) or "same" for _, change in cases]


async def _try(tmp_path: Path, base: dict[str, str], change: dict[str, str | None]) -> tuple[bool, str]:
    config = parse_config(config_text(base, change), source="t", base_dir=tmp_path)
    async with open_app(config, background=False) as app:
        mcp = build_mcp(app.service, transport="memory")
        async with Client(mcp, client_info=Implementation(name="claude-code", version="1")) as client:
            result = await client.call_tool(
                "request_approval", {"action": "deploy", "summary": "s", "route": "named", "details": {}}
            )
    text = result.content[0].text if result.is_error else ""  # type: ignore[union-attr]
    return not result.is_error, str(text)


@pytest.mark.parametrize(("base", "change"), LOOSER, ids=_ids(LOOSER))
async def test_a_looser_named_route_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: dict[str, str], change: dict[str, str | None]
) -> None:
    monkeypatch.setenv("SIGNOFF_CALLBACK_SECRET", "s3cret")
    accepted, error = await _try(tmp_path, base, change)
    assert not accepted
    assert "route 'named' cannot be used for this request" in error
    for other in ("first", "secret-ops"):  # the operator's other routes are not listed
        assert other not in error


@pytest.mark.parametrize(("base", "change"), STRICTER_OR_SAME, ids=_ids(STRICTER_OR_SAME))
async def test_a_stricter_or_equal_named_route_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: dict[str, str], change: dict[str, str | None]
) -> None:
    monkeypatch.setenv("SIGNOFF_CALLBACK_SECRET", "s3cret")
    accepted, error = await _try(tmp_path, base, change)
    assert accepted, error


async def test_an_unknown_or_unmatched_name_gets_the_same_answer(tmp_path: Path) -> None:
    text = HEAD + route("first", VOTES) + '[[routes]]\nname = "reads"\nmatch = { action = "read" }\nauto = "approve"\n'
    config = parse_config(text, source="t", base_dir=tmp_path)
    async with open_app(config, background=False) as app:
        mcp = build_mcp(app.service, transport="memory")
        async with Client(mcp, client_info=Implementation(name="claude-code", version="1")) as client:
            answers = set()
            for name in ("ghost", "reads", "first"):
                result = await client.call_tool("request_approval", {"action": "deploy", "summary": "s", "route": name})
                text = str(result.content[0].text)  # type: ignore[union-attr]
                answers.add(text.replace(name, "NAME"))
                if name == "first":
                    assert not result.is_error  # the first match itself may be named
            answers.discard(next(a for a in answers if "request_id" in a))
    assert len(answers) == 1 and "reads" not in next(iter(answers))
