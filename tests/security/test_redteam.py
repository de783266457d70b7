"""Red-team regressions: each test is an attack that, on this commit, still gets around a promise
of SECURITY.md (its docstring says how). They fail until the hole is closed."""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path
from typing import Any

import pytest

from signoff.adapters.telegram.render import prompt_text
from signoff.server.app import open_app
from signoff.server.callback_targets import address_problem
from signoff.server.config import parse_config
from signoff.server.errors import RequestError
from signoff.server.intake import NewRequest
from signoff.server.models import Actor, ApprovalRequest, Status

from ..fake_telegram import FakeTelegram
from ..policies import AGENT, ALICE, answer_to, prompt_for

pytestmark = pytest.mark.anyio

TG = """
[store]
path = "signoff.db"
[telegram]
api_base_url = "{api}"
lease_ttl = "3s"
[approvers.alice]
telegram_user_id = 111
[approvers.bob]
telegram_user_id = 222

[[routes]]
name = "edits"
match = {{ action = "Edit" }}
approvers = ["alice"]
grant_options = ["30m"]
grant_scope = {{ argument = "file_path", patterns = ["/home/me/proj/src/*"] }}

[[routes]]
name = "tests"
match = {{ action = "Bash" }}
approvers = ["alice"]
grant_options = ["30m"]
grant_scope = {{ argument = "command", patterns = ["npm test"] }}

[[routes]]
name = "default"
approvers = ["alice"]
"""


def tg_config(fake: FakeTelegram, folder: Path) -> Any:
    return parse_config(TG.format(api=fake.api_base_url), source="redteam", base_dir=folder)


# --- one agent request silences every prompt -----------------------------------------------


async def test_a_malformed_multiedit_does_not_stop_every_other_prompt(fake: FakeTelegram, tmp_path: Path) -> None:
    """An agent files action 'MultiEdit' with edits=[1]: rendering raises, the outbox stops at that row, no later prompt is sent."""
    async with open_app(tg_config(fake, tmp_path)) as app:
        await app.service.request_approval(
            NewRequest("MultiEdit", "Tidy up", details={"file_path": "/x", "edits": [1]}), AGENT
        )
        honest = await app.service.request_approval(NewRequest("deploy", "Deploy the shop"), AGENT)
        await prompt_for(fake, ALICE, honest.id)  # times out today: silence, then on_timeout decides


def test_an_edit_under_the_size_limit_renders_quickly() -> None:
    """A 58 KB Edit (under the 64 KiB limit) makes difflib take ~20 s per render, stalling the bot's event loop."""
    old = "\n".join(str(i % 97) for i in range(10_000))
    new = "\n".join(str((i * 7) % 101) for i in range(10_000))
    req = ApprovalRequest(id="req_0123456789ab", action="Edit", summary="Edit", route="default", route_snapshot={},
                          details={"file_path": "/x", "old_string": old, "new_string": new}, metadata={},
                          approvers=["alice"], requested_by="claude-code", requested_via="hook", claimed_requester=None,
                          idempotency_key=None, content_hash="h", status=Status.PENDING, on_timeout="reject",
                          created_at=0.0, expires_at=3600.0, decided_at=None, decided_by=None, decided_kind=None,
                          decided_via=None, reason=None, action_digest="ab" * 32)  # fmt: skip
    start = time.monotonic()
    prompt_text(req, 0.0)
    assert time.monotonic() - start < 3.0


# --- the approver does not see the whole tool call -------------------------------------------


async def test_a_bash_prompt_shows_that_the_sandbox_is_off(fake: FakeTelegram, tmp_path: Path) -> None:
    """Claude Code's Bash input {'command': 'npm test', 'dangerouslyDisableSandbox': true} is shown as just '$ npm test'."""
    async with open_app(tg_config(fake, tmp_path)) as app:
        req = await app.service.request_approval(
            NewRequest("Bash", "Run the tests", details={"command": "npm test", "dangerouslyDisableSandbox": True}),
            AGENT,
        )
        prompt = await prompt_for(fake, ALICE, req.id)
        assert "dangerouslyDisableSandbox" in prompt.text


async def test_an_edit_prompt_shows_replace_all(fake: FakeTelegram, tmp_path: Path) -> None:
    """An Edit with replace_all=true is shown as a one-occurrence diff: the approver cannot tell every match changes."""
    async with open_app(tg_config(fake, tmp_path)) as app:
        details = {"file_path": "/home/me/proj/src/a.py", "old_string": "x", "new_string": "y", "replace_all": True}
        req = await app.service.request_approval(NewRequest("Edit", "Edit a.py", details=details), AGENT)
        prompt = await prompt_for(fake, ALICE, req.id)
        assert "replace_all" in prompt.text


async def test_a_command_grant_does_not_cover_other_arguments(fake: FakeTelegram, tmp_path: Path) -> None:
    """After '30 min' on plain `npm test`, the same command with dangerouslyDisableSandbox=true is approved by the grant."""
    async with open_app(tg_config(fake, tmp_path)) as app:
        first = await app.service.request_approval(
            NewRequest("Bash", "Run the tests", details={"command": "npm test"}, cwd="/home/me/proj"), AGENT
        )
        prompt = await prompt_for(fake, ALICE, first.id)
        assert await answer_to(fake, await fake.press(ALICE, prompt, prompt.button("30 min"))) == "Approved ✅"
        later = await app.service.request_approval(
            NewRequest("Bash", "Run the tests",
                       details={"command": "npm test", "dangerouslyDisableSandbox": True}, cwd="/home/me/proj"), AGENT,
        )  # fmt: skip
        assert later.status is not Status.APPROVED


async def test_a_path_grant_does_not_cover_a_tilde_path(fake: FakeTelegram, tmp_path: Path) -> None:
    """file_path '~/../src/x' is read as <cwd>/~/../src/x (inside the grant); a tool that expands '~' writes outside it."""
    async with open_app(tg_config(fake, tmp_path)) as app:
        first = await app.service.request_approval(
            NewRequest("Edit", "Edit a.py", details={"file_path": "/home/me/proj/src/a.py"}, cwd="/home/me/proj"), AGENT
        )
        prompt = await prompt_for(fake, ALICE, first.id)
        assert await answer_to(fake, await fake.press(ALICE, prompt, prompt.button("30 min"))) == "Approved ✅"
        later = await app.service.request_approval(
            NewRequest("Edit", "Edit x", details={"file_path": "~/../src/x"}, cwd="/home/me/proj"), AGENT
        )
        assert later.status is not Status.APPROVED


# --- a named route that is "stricter" but lets silence approve ---------------------------------

SILENCE = """
[store]
path = "signoff.db"
[approvers.alice]
telegram_user_id = 111
[approvers.bob]
telegram_user_id = 222
[approvers.carol]
telegram_user_id = 333

[[routes]]
name = "low-risk"
match = { action = "lenient_*" }
approvers = ["alice", "bob"]
on_timeout = "approve"
timeout = "10m"
urgent = true
escalation = [{ after = "5m", approvers = ["carol"] }]

[[routes]]
name = "bob-only"
approvers = ["bob"]
on_timeout = "approve"
timeout = "10m"
urgent = true

[[routes]]
name = "console"
approvers = []
on_timeout = "approve"
timeout = "10m"

[[routes]]
name = "not-urgent"
approvers = ["alice", "bob"]
on_timeout = "approve"
timeout = "10m"
escalation = [{ after = "5m", approvers = ["carol"] }]
"""


@pytest.mark.parametrize("named", ["console", "bob-only", "not-urgent"])
async def test_a_named_route_cannot_silence_an_approve_on_timeout_request(tmp_path: Path, named: str) -> None:
    """On a route where silence approves, naming a route that prompts fewer people (or none, or later) is accepted as 'stricter'."""
    config = parse_config(SILENCE, source="redteam", base_dir=tmp_path)
    async with open_app(config, background=False) as app:
        with pytest.raises(RequestError):
            await app.service.request_approval(NewRequest("lenient_cleanup", "Clean up", route=named), AGENT)


# --- callbacks --------------------------------------------------------------------------------

CALLBACKS = """
[store]
path = "signoff.db"
[callbacks]
allowed_urls = ["https://hooks.example.com/signoff/"]
[approvers.alice]
telegram_user_id = 111

[[routes]]
name = "reads"
match = { action = "read_*" }
auto = "approve"

[[routes]]
name = "prod-deploy"
match = { action = "deploy_prod" }
approvers = ["alice"]
callback_url = "https://hooks.example.com/signoff/prod-deploy"
"""


async def test_an_agent_cannot_send_an_approval_to_another_routes_receiver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An auto-approved 'read_x' with callback_url = the prod-deploy route's receiver sends it a signed 'approved' at once."""
    monkeypatch.setenv("SIGNOFF_CALLBACK_SECRET", "s3cret")
    config = parse_config(CALLBACKS, source="redteam", base_dir=tmp_path)
    async with open_app(config, background=False) as app:
        try:
            req = await app.service.request_approval(
                NewRequest("read_x", "Read", callback_url="https://hooks.example.com/signoff/prod-deploy"), AGENT
            )
        except RequestError:
            return  # refused: the operator's receiver for prod deploys hears only about prod deploys
        rows = await app.store.read("SELECT count(*) FROM outbox WHERE kind = 'callback' AND request_id = ?", (req.id,))
        assert req.status is not Status.APPROVED or rows[0][0] == 0


def test_a_site_local_ipv6_address_is_not_public() -> None:
    """fec0::/10 (deprecated site-local, still routed inside some networks) passes address_problem as public."""
    assert address_problem(ipaddress.IPv6Address("fec0::1")) is not None


# --- the red team's smaller notes, closed by the lead -------------------------------------


def test_a_csv_export_cannot_carry_a_spreadsheet_formula(tmp_path: Path) -> None:
    """An agent's action '=HYPERLINK(...)' would run as a formula when an auditor opens the CSV."""
    import anyio

    from ..procs import cli

    config = tmp_path / "signoff.toml"
    config.write_text('[store]\npath = "signoff.db"\n[[routes]]\nname = "default"\n', encoding="utf-8")

    async def file() -> None:
        async with open_app(parse_config(config.read_text(), source="t", base_dir=tmp_path), background=False) as app:
            await app.service.request_approval(
                NewRequest('=HYPERLINK("http://evil")', "s"), Actor("agent", "@SUM(1)", "mcp")
            )

    anyio.run(file)
    out = cli("audit", "--format", "csv", config=config).stdout
    assert ",'=HYPERLINK" not in out  # the action is not a column; the actor is
    assert ",'@SUM(1)," in out and ",@SUM(1)," not in out


async def test_an_idempotency_key_does_not_carry_an_approval_to_another_folder(tmp_path: Path) -> None:
    """The same call and key from another folder is another request, never the approved one."""
    config = parse_config('[store]\npath = "signoff.db"\n[[routes]]\nname = "default"\n', source="t", base_dir=tmp_path)
    async with open_app(config, background=False) as app:
        first = await app.service.request_approval(NewRequest("Bash", "s", idempotency_key="k", cwd="/a"), AGENT)
        await app.service.decide(first.id, True, Actor("human", "alice", "console"))
        with pytest.raises(RequestError, match="idempotency_key"):
            await app.service.request_approval(NewRequest("Bash", "s", idempotency_key="k", cwd="/b"), AGENT)
        again = await app.service.request_approval(NewRequest("Bash", "s", idempotency_key="k", cwd="/a"), AGENT)
        assert again.id == first.id


def test_a_huge_hook_input_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    """200 MB on stdin used ~900 MB of memory; now the hook stops reading at 8 MB and denies."""
    import json
    import subprocess

    from ..conftest import SIGNOFF, subprocess_env

    config = tmp_path / "signoff.toml"
    config.write_text('[[routes]]\nname = "default"\n', encoding="utf-8")
    stdin = '{"tool_name": "Bash", "tool_input": {"command": "' + "x" * 20_000_000 + '"}}'
    proc = subprocess.run([SIGNOFF, "hook", "--config", str(config), "--fallback", "deny"], input=stdin,
                          capture_output=True, text=True, env=subprocess_env(), timeout=60)  # fmt: skip
    assert proc.returncode == 0 and "larger than 8 MB" in proc.stderr
    assert json.loads(proc.stdout)["hookSpecificOutput"]["permissionDecision"] == "deny"
