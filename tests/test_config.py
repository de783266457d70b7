from __future__ import annotations

import re
import subprocess
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from signoff.server.config import NOT_KEYS, Config, load_config
from signoff.server.durations import format_duration, parse_duration
from signoff.server.errors import ConfigError

from .conftest import ROOT, SIGNOFF, subprocess_env


def test_example_config_loads_and_documents_every_key() -> None:
    config = load_config(ROOT / "config.example.toml")
    assert [r.name for r in config.routes] == ["large-refunds", "reads", "payouts", "prod-deploys", "tests", "default"]
    assert config.db_path == ROOT / "signoff.db"
    assert config.approvers["bob"].telegram_chat_id == -1001234567890
    assert config.routes[0].timeout == 4 * 3600
    text = (ROOT / "config.example.toml").read_text()
    keys: set[str] = set()

    def walk(model: type[BaseModel]) -> None:
        for name, field in model.model_fields.items():
            if name in NOT_KEYS:
                continue
            keys.add(field.alias or name)
            for inner in _models(field.annotation):
                walk(inner)

    walk(Config)
    for key in sorted(keys - {"gt", "gte", "lt", "lte", "eq", "ne", "in"}):  # comparisons: listed in a comment
        assert re.search(rf"\b{key}\b", text), f"config.example.toml does not show {key!r}"


def _models(tp: Any) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for arg in typing.get_args(tp) for m in _models(arg)]


def test_embedded_default_uses_the_state_dir(tmp_path: Path) -> None:
    config = load_config(None)
    assert config.db_path == tmp_path / "state" / "signoff.db"
    assert [r.name for r in config.routes] == ["default"]
    assert config.source == "<embedded default>"


def test_signoff_config_env_is_the_fallback(config_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNOFF_CONFIG", str(config_path))
    assert load_config(None).source == str(config_path)


def test_relative_store_path_resolves_against_the_config_folder(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_config('[store]\npath = "data/x.db"\n[[routes]]\nname = "default"\n')
    assert load_config(path).db_path == tmp_path / "data" / "x.db"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[store]\npath = "x\n', ["TOML syntax error", "line 2, column"]),
        ("[[routes]]\nname = 'a'\napproverz = ['alice']\n", ["routes[0].approverz", "did you mean 'approvers'?"]),
        ("[defaults]\ntimout = '1h'\n[[routes]]\nname='a'\n", ["defaults.timout", "did you mean 'timeout'?"]),
        ("[[routes]]\nname='a'\nmatch = { action = 'x', metadata = { amount = { gtt = 5 } } }\n",
         ["routes[0].match.metadata.amount.gtt", "did you mean 'gt'?"]),
        ("[[routes]]\nname='a'\nmatch = { acton = 'x' }\n", ["routes[0].match.acton", "did you mean 'action'?"]),
        ("[[routes]]\nname='a'\ntimeout = '4x'\n", ["routes[0].timeout", "'4x' is not a duration"]),
        ("[[routes]]\nname='a'\ntimeout = '0s'\n", ["routes[0].timeout", "longer than zero"]),
        ("[[routes]]\nname='a'\non_timeout = 'maybe'\n", ["routes[0].on_timeout", "'approve' or 'reject'"]),
        ("[[routes]]\nname='a'\napprovers = ['alcie']\n[approvers.alice]\ntelegram_user_id = 1\n",
         ["routes[0].approvers[0]", "unknown approver or group 'alcie'", "did you mean 'alice'?"]),
        ("[[routes]]\nname='a'\n[[routes]]\nname='a'\n", ["routes[1].name", "used twice"]),
        ("[[routes]]\nname='a'\nauto='approve'\napprovers=['x']\n[approvers.x]\ntelegram_user_id=1\n",
         ["routes[0]", "remove 'approvers' or remove 'auto'"]),
        ("[[routes]]\nname='a'\nauto='approve'\ntimeout='1h'\n", ["routes[0]", "never waits"]),
        ("[store]\npath='x.db'\n", ["routes: required key is missing"]),
        ("routes = []\n", ["routes", "at least 1"]),
        ("[server]\nport = 'abc'\n[[routes]]\nname='a'\n", ["server.port", "valid integer"]),
        ("[server]\nport = 70000\n[[routes]]\nname='a'\n", ["server.port", "65535"]),
        ("[serverr]\nport = 1\n[[routes]]\nname='a'\n", ["serverr: unknown key", "did you mean 'server'?"]),
        ("[approvers.x]\ntelegram_user_id = 'abc'\n[[routes]]\nname='a'\n", ["approvers.x.telegram_user_id"]),
        ("[approvers.x]\ntelegram_chat_id = 5\n[[routes]]\nname='a'\n", ["approvers.x", "needs telegram_user_id"]),
        ("[[routes]]\nname='a'\nmatch = { metadata = { amount = {} } }\n", ["routes[0].match.metadata.amount", "at least one"]),
        ("[[routes]]\nname=''\n", ["routes[0].name", "at least 1 character"]),
        ("routes = 'all'\n", ["routes", "valid list"]),
    ],
)  # fmt: skip
def test_malformed_config_gives_an_actionable_message(
    write_config: Callable[..., Path], text: str, expected: list[str]
) -> None:
    path = write_config(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid configuration")
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    assert "Traceback" not in message


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_check_config_cli_prints_routes_and_fails_cleanly(write_config: Callable[..., Path]) -> None:
    ok = subprocess.run([SIGNOFF, "check-config", "--config", str(ROOT / "config.example.toml")],
                        capture_output=True, text=True, env=subprocess_env(), timeout=60)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "large-refunds" in ok.stdout and "auto-approve" in ok.stdout and "4h" in ok.stdout
    bad = write_config("[[routes]]\nname='a'\napproverz=[]\n", name="bad.toml")
    res = subprocess.run([SIGNOFF, "check-config", "--config", str(bad)], capture_output=True, text=True,
                         env=subprocess_env(), timeout=60)  # fmt: skip
    assert res.returncode == 1
    assert "routes[0].approverz: unknown key; did you mean 'approvers'?" in res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("4h", 14400), ("2d", 172800), ("1h30m", 5400)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "10", "h", "-5m", "1.5.2h", "5 minutes"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|zero"):
        parse_duration(text)
