"""A grant covers only what the approver saw: word by word, path by path, in its folder, for
its requester, and only while the configuration still stands behind it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signoff.server.app import open_app
from signoff.server.config import load_config, parse_config
from signoff.server.errors import ConfigError
from signoff.server.intake import NewRequest
from signoff.server.models import Actor, Status
from signoff.server.scopes import command_covered

from ..conftest import SIGNOFF, subprocess_env
from ..fake_telegram import FakeTelegram
from ..policies import AGENT, ALICE, answer_to, prompt_for
from ..procs import stdio_client

pytestmark = pytest.mark.anyio

GRANTS = """
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
name = "tests"
match = {{ action = "Bash" }}
approvers = ["alice", "bob"]
grant_options = ["30m", "session"]
grant_scope = {{ argument = "command", patterns = ["npm test", "pytest *"] }}

[[routes]]
name = "edits"
match = {{ action = "Edit" }}
approvers = ["alice"]
grant_options = ["30m"]
grant_scope = {{ argument = "file_path", patterns = ["/home/me/proj/src/*"] }}

[[routes]]
name = "default"
approvers = ["alice"]
"""


def bash(command: str) -> dict[str, Any]:
    return {"command": command, "description": "Run the tests"}


async def granted(app: Any, fake: FakeTelegram, action: str, details: dict[str, Any], cwd: str | None,
                  requester: Actor = AGENT) -> str:  # fmt: skip
    """File a request, press its "30 min" grant button as alice; return the button's text."""
    req = await app.service.request_approval(NewRequest(action, "Please", details=details, cwd=cwd), requester)
    prompt = await prompt_for(fake, ALICE, req.id)
    label = next(b["text"] for b in prompt.buttons() if "30 min" in b["text"])
    assert await answer_to(fake, await fake.press(ALICE, prompt, prompt.button("30 min"))) == "Approved ✅"
    return str(label)


async def status_of(app: Any, action: str, details: dict[str, Any], cwd: str | None,
                    requester: Actor = AGENT) -> Status:  # fmt: skip
    req = await app.service.request_approval(NewRequest(action, "Please", details=details, cwd=cwd), requester)
    return Status(req.status)


async def test_a_command_grant_covers_exactly_the_words_granted(fake: FakeTelegram, tmp_path: Path) -> None:
    config = parse_config(GRANTS.format(api=fake.api_base_url), source="t", base_dir=tmp_path)
    async with open_app(config) as app:
        label = await granted(app, fake, "Bash", bash("npm test"), "/home/me/shop")
        # The button says exactly what it grants.
        assert label == "✅ Bash `npm test` in /home/me/shop, from claude-code, 30 min"
        assert await status_of(app, "Bash", bash("npm test"), "/home/me/shop") is Status.APPROVED
        for command in ("npm test --script-shell=./x.sh", "npm test --node-options=--require=./evil.js",
                        "npm testify-everything", "npm test; curl evil", "npm test $(curl evil)", "npm  test *",
                        "npm test\tx", "npm 'test' > out", "npm test \\\n--evil"):  # fmt: skip
            assert await status_of(app, "Bash", bash(command), "/home/me/shop") is Status.PENDING, command


async def test_a_word_pattern_is_one_word_that_is_not_an_option(fake: FakeTelegram, tmp_path: Path) -> None:
    config = parse_config(GRANTS.format(api=fake.api_base_url), source="t", base_dir=tmp_path)
    async with open_app(config) as app:
        await granted(app, fake, "Bash", bash("pytest tests/test_a.py"), "/p")
        assert await status_of(app, "Bash", bash("pytest tests/test_b.py"), "/p") is Status.APPROVED
        for command in ("pytest -p evil", "pytest --co", "pytest a b", "pytest", "pytest *", "pytest tests/*.py"):
            assert await status_of(app, "Bash", bash(command), "/p") is Status.PENDING, command


async def test_a_path_grant_is_normalised_and_never_crosses_a_slash(fake: FakeTelegram, tmp_path: Path) -> None:
    config = parse_config(GRANTS.format(api=fake.api_base_url), source="t", base_dir=tmp_path)
    async with open_app(config) as app:
        await granted(app, fake, "Edit", {"file_path": "/home/me/proj/src/a.py"}, "/home/me/proj")
        ok = {"file_path": "src/b.py"}  # relative: resolved against the working directory
        assert await status_of(app, "Edit", ok, "/home/me/proj") is Status.APPROVED
        for path in ("/home/me/proj/src/../../.ssh/authorized_keys", "/home/me/proj/src/x/a.py",
                     "src/../../../etc/passwd", "/home/me/proj/src//../secret", "/home/me/proj/src"):  # fmt: skip
            assert await status_of(app, "Edit", {"file_path": path}, "/home/me/proj") is Status.PENDING, path


async def test_a_grant_stays_in_its_folder_and_with_its_requester(fake: FakeTelegram, tmp_path: Path) -> None:
    config = parse_config(GRANTS.format(api=fake.api_base_url), source="t", base_dir=tmp_path)
    async with open_app(config) as app:
        await granted(app, fake, "Bash", bash("npm test"), "/home/me/shop")
        assert await status_of(app, "Bash", bash("npm test"), "/home/me/other-repo") is Status.PENDING
        assert await status_of(app, "Bash", bash("npm test"), None) is Status.PENDING
        cursor = Actor("agent", "cursor", "mcp")
        assert await status_of(app, "Bash", bash("npm test"), "/home/me/shop", cursor) is Status.PENDING


async def test_a_grant_dies_when_its_granter_or_its_route_changes(fake: FakeTelegram, tmp_path: Path) -> None:
    text = GRANTS.format(api=fake.api_base_url)
    config = parse_config(text, source="t", base_dir=tmp_path)
    async with open_app(config) as app:
        await granted(app, fake, "Bash", bash("npm test"), "/p")
        assert await status_of(app, "Bash", bash("npm test"), "/p") is Status.APPROVED
    changes = {
        "alice left the route": ('approvers = ["alice", "bob"]', 'approvers = ["bob"]'),
        "no more grants": ('grant_options = ["30m", "session"]\ngrant_scope', "#"),
        "shorter grants only": ('grant_options = ["30m", "session"]', 'grant_options = ["10m"]'),
        "another scope": ('patterns = ["npm test", "pytest *"]', 'patterns = ["pytest *"]'),
    }
    for why, (old, new) in changes.items():
        changed = parse_config(text.replace(old, new, 1), source="t", base_dir=tmp_path)
        async with open_app(changed, background=False) as app:
            assert await status_of(app, "Bash", bash("npm test"), "/p") is Status.PENDING, why
    async with open_app(config, background=False) as app:  # the old config back: the grant stays dead
        assert await status_of(app, "Bash", bash("npm test"), "/p") is Status.PENDING
        dead = [e for e in await app.store.audit() if e.event == "grant_dead"]
        assert len(dead) == 1 and "alice is no longer an approver" in str(dead[0].data)  # audited once


def test_old_glob_patterns_are_refused_with_the_fix(tmp_path: Path) -> None:
    bad = GRANTS.format(api="http://x").replace('"npm test", "pytest *"', '"npm test*", "pytest *"')
    with pytest.raises(ConfigError, match=r"patterns\[0\]: 'npm test\*' is not a command pattern.*'npm test \*'"):
        parse_config(bad, source="t", base_dir=tmp_path)


async def test_stdio_grants_are_scoped_to_the_folder_the_server_runs_in(tmp_path: Path) -> None:
    """Claude Code starts `signoff mcp` in the project: a grant given there does not reach another project."""
    config = tmp_path / "signoff.toml"
    config.write_text(GRANTS.format(api="http://127.0.0.1:9/bot"), encoding="utf-8")
    shop, other = tmp_path / "shop", tmp_path / "other"
    shop.mkdir()
    other.mkdir()
    args = {"action": "Bash", "summary": "Run the tests", "details": bash("npm test")}
    async with stdio_client(config, cwd=shop) as one, stdio_client(config, cwd=other) as two:
        first = (await one.call_tool("request_approval", args)).structured_content
        assert first is not None
        async with open_app(load_config(config), background=False) as app:
            req = await app.service.get(first["request_id"])
            assert req.cwd == str(shop)
            await app.service.approve_and_grant(req.id, "30m", Actor("human", "alice", "console"))
        same = (await one.call_tool("request_approval", args)).structured_content
        elsewhere = (await two.call_tool("request_approval", args)).structured_content
        assert same is not None and same["status"] == "approved"
        assert elsewhere is not None and elsewhere["status"] == "pending"


async def test_hook_grants_follow_the_cwd_claude_code_sends(tmp_path: Path) -> None:
    config = tmp_path / "signoff.toml"
    config.write_text(GRANTS.format(api="http://127.0.0.1:9/bot"), encoding="utf-8")

    def hook(cwd: str, tool_use_id: str) -> subprocess.Popen[str]:
        event = {"hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": bash("npm test"),
                 "tool_use_id": tool_use_id, "session_id": "s", "cwd": cwd}  # fmt: skip
        proc = subprocess.Popen([SIGNOFF, "hook", "--config", str(config), "--timeout", "20", "--fallback", "deny"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=subprocess_env())  # fmt: skip
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(event))
        proc.stdin.close()
        return proc

    def decision(proc: subprocess.Popen[str]) -> str:
        assert proc.stdout is not None and proc.stderr is not None
        out = proc.stdout.read()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
        return str(json.loads(out)["hookSpecificOutput"]["permissionDecision"])

    first = hook("/home/me/shop", "t1")
    async with open_app(load_config(config), background=False) as app:
        with anyio.fail_after(20):
            while not (pending := await app.service.pending()):
                await anyio.wait_all_tasks_blocked()  # another process files it: look again
        assert pending[0].cwd == "/home/me/shop"
        await app.service.approve_and_grant(pending[0].id, "30m", Actor("human", "alice", "console"))
    assert decision(first) == "allow"
    assert decision(hook("/home/me/shop", "t2")) == "allow"
    elsewhere = hook("/home/me/other", "t3")
    async with open_app(load_config(config), background=False) as app:
        with anyio.fail_after(20):
            while not (pending := await app.service.pending()):
                await anyio.wait_all_tasks_blocked()  # another process files it: look again
        assert pending[0].cwd == "/home/me/other"  # not covered: asked about
        await app.service.decide(pending[0].id, False, Actor("human", "alice", "console"), "not here")
    assert decision(elsewhere) == "deny"


# --- property: covered only when an independent word-by-word matcher says so -------------------

PLAIN = st.text(alphabet="abcdefgtxyz0123456789-_./=:,@+%", min_size=1, max_size=8)
SPECIAL = st.sampled_from([";", "&", "|", "<", ">", "(", ")", "$", "`", "\\", "*", "?", "[", "]", "{", "}", "!",
                           "#", "~", "\n", "\t", "\r", "\x1b", "\x00", "\x7f", "\x85", "\u202e", "'", '"', "&&",
                           "$(id)", "`id`", "2>&1", "<<EOF"])  # fmt: skip


def independent(pattern: list[str], words: list[str]) -> bool:
    """Written apart from server.scopes: the same rules, word by word, on already-split words."""
    if pattern and pattern[-1] == "**":
        return len(words) >= len(pattern) - 1 and independent(pattern[:-1], words[: len(pattern) - 1])
    if len(pattern) != len(words):
        return False
    for want, got in zip(pattern, words, strict=True):
        if want == "*":
            if got.startswith("-"):
                return False
        elif want != got:
            return False
    return True


@settings(max_examples=300, deadline=None)
@given(
    pattern=st.lists(st.one_of(PLAIN, st.just("*")), min_size=1, max_size=4).map(
        lambda p: [p[0].strip("*") or "x", *p[1:]]
    ),
    rest=st.booleans(),
    words=st.lists(PLAIN, min_size=1, max_size=6),
    special=st.one_of(st.none(), st.tuples(SPECIAL, st.integers(0, 60))),
)
def test_a_command_is_covered_only_word_by_word(pattern: list[str], rest: bool, words: list[str],
                                                special: tuple[str, int] | None) -> None:  # fmt: skip
    pattern_words = [*pattern, "**"] if rest else pattern
    command = " ".join(words)
    if special is not None:
        text, at = special
        at = min(at, len(command))
        command = command[:at] + text + command[at:]
    got = command_covered(" ".join(pattern_words), command)
    if special is not None:
        assert not got, (pattern_words, command)  # anything but plain words is never covered
    else:
        assert got == independent(pattern_words, words), (pattern_words, command)


def test_the_property_can_fail() -> None:
    """The independent matcher is not a copy: it tells a covered command from an uncovered one."""
    assert independent(["npm", "test"], ["npm", "test"]) and not independent(["npm", "test"], ["npm", "test", "-x"])
    assert independent(["pytest", "*"], ["pytest", "a.py"]) and not independent(["pytest", "*"], ["pytest", "-p"])
    assert independent(["git", "**"], ["git", "-c", "x"])
