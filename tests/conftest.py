"""Shared fixtures: real SQLite files in a temporary folder, the real service and MCP client."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from signoff.server.app import App, open_app
from signoff.server.config import Config, load_config

from . import pg_cluster
from .fake_telegram import FakeTelegram, fake_telegram

ROOT = Path(__file__).resolve().parent.parent
SIGNOFF = str(Path(sys.executable).with_name("signoff"))

BASIC_CONFIG = """
[store]
path = "signoff.db"

[server]
port = 0

[approvers.alice]
telegram_user_id = 111

[approvers.bob]
telegram_user_id = 222

[defaults]
timeout = "1h"

[[routes]]
name = "reads"
match = { action = ["read_*", "list_*"] }
auto = "approve"

[[routes]]
name = "blocked"
match = { action = "drop_*" }
auto = "reject"

[[routes]]
name = "large-refunds"
match = { action = "refund*", metadata = { amount = { gt = 25000 } } }
approvers = ["alice"]
timeout = "4h"

[[routes]]
name = "lenient"
match = { action = "lenient_*" }
approvers = ["alice", "bob"]
on_timeout = "approve"
timeout = "10m"

[[routes]]
name = "default"
approvers = ["alice", "bob"]
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# The suites that touch the store run on both stores: SQLite (the file the config names) and
# PostgreSQL (a fresh schema of a real server, selected by $SIGNOFF_DATABASE_URL, which every
# config loaded in the test and every signoff child process then uses).
BOTH_STORES = (
    "tests/test_store.py",
    "tests/test_service.py",
    "tests/test_processes.py",
    "tests/test_policies.py",
    "tests/test_telegram.py",
    "tests/test_questions.py",
    "tests/test_grants_digests_callbacks.py",
    "tests/security/",
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    path = Path(str(metafunc.definition.fspath)).relative_to(ROOT).as_posix()
    if "store_kind" in metafunc.fixturenames and path.startswith(BOTH_STORES):
        marked = metafunc.definition.get_closest_marker
        stores = (
            ["sqlite"]
            if marked("sqlite_only")
            else ["postgresql"]
            if marked("postgresql_only")
            else ["sqlite", "postgresql"]
        )
        metafunc.parametrize("store_kind", stores, indirect=True)


@pytest.fixture(autouse=True)
def store_kind(request: pytest.FixtureRequest, _isolated_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Which store the test runs on: "sqlite" unless its suite runs on both (BOTH_STORES).
    ``SIGNOFF_TEST_STORE=postgresql`` runs every other test on PostgreSQL too (a one-off check)."""
    kind = getattr(request, "param", os.environ.get("SIGNOFF_TEST_STORE", "sqlite"))
    if kind == "sqlite":
        yield kind
        return
    if request.node.get_closest_marker("sqlite_only"):  # a parametrized case marked so
        pytest.skip("about the SQLite file itself")
    server = pg_cluster.server_url()
    if server is None:
        pytest.skip(f"no PostgreSQL for the tests: {pg_cluster.why_not()}")
    url = pg_cluster.fresh_schema_url(server)
    monkeypatch.setenv("SIGNOFF_DATABASE_URL", url)
    yield kind
    pg_cluster.drop_schema_of(url)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Never touch the developer's real state directory or config.
    monkeypatch.setenv("SIGNOFF_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))  # no ~/.config/signoff/signoff.toml
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)  # systemd's, honoured by signoff
    monkeypatch.delenv("SIGNOFF_CONFIG", raising=False)
    monkeypatch.delenv("SIGNOFF_HTTP_TOKEN", raising=False)
    monkeypatch.delenv("SIGNOFF_TELEGRAM_TOKEN", raising=False)
    monkeypatch.delenv("SIGNOFF_CALLBACK_SECRET", raising=False)
    monkeypatch.delenv("SIGNOFF_DATABASE_URL", raising=False)  # never the developer's own database
    for name in ("SIGNOFF_SLACK_BOT_TOKEN", "SIGNOFF_SLACK_APP_TOKEN", "SIGNOFF_SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeTelegram]:
    """The fake Bot API, with the token in the environment: open_app runs the bot on it.
    Every test that uses it ends with no two processes having polled at once."""
    async with fake_telegram() as f:
        monkeypatch.setenv("SIGNOFF_TELEGRAM_TOKEN", f.token)
        yield f
        assert f.conflicts == 0


@pytest.fixture
def unpaced_telegram(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Telegram outbox's pacing (a call a second to a chat, one per three seconds to a group) cut
    to a few milliseconds in this process, for tests about what is sent, not when: a prompt and a few
    digest edits would otherwise take seconds each. The fake does not enforce pacing unless a test
    checks ``rate_violations()``, and tests of the pacing itself must not use this."""
    from signoff.adapters.telegram import outbox

    monkeypatch.setattr(outbox, "PRIVATE_GAP", 0.05)
    monkeypatch.setattr(outbox, "GROUP_GAP", 0.05)


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str, name: str = "signoff.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def config_path(write_config: Callable[[str], Path]) -> Path:
    return write_config(BASIC_CONFIG)


@pytest.fixture
def config(config_path: Path) -> Config:
    return load_config(config_path)


@pytest.fixture
async def app(config: Config) -> AsyncIterator[App]:
    async with open_app(config) as opened:
        yield opened


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a signoff child process: this one's, with logs kept quiet."""
    env = dict(os.environ)
    env.update({"SIGNOFF_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}, **extra)
    return env
