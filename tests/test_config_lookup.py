"""Which configuration a command uses, and saying so: --config, $SIGNOFF_CONFIG, the user config
file, else the embedded default — never a file in the current folder, where agents write."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from signoff.server import config_schema
from signoff.server.config import load_config
from signoff.server.errors import ConfigError

from .conftest import BASIC_CONFIG, ROOT, SIGNOFF

TAPLO = shutil.which("taplo", path=str(Path(SIGNOFF).parent)) or shutil.which("taplo")


def run(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "SIGNOFF_LOG_LEVEL": "WARNING", **env}
    return subprocess.run([SIGNOFF, *args], capture_output=True, text=True, env=full, cwd=cwd, timeout=60,
                          stdin=subprocess.DEVNULL)  # fmt: skip


def write(path: Path, db: Path, route: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'[store]\npath = "{db}"\n[[routes]]\nname = "{route}"\nauto = "approve"\n')
    return path


@pytest.fixture
def xdg(tmp_path: Path) -> Path:
    return Path(os.environ["XDG_CONFIG_HOME"]) / "signoff" / "signoff.toml"


def test_lookup_order(tmp_path: Path, xdg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = write(tmp_path / "explicit.toml", tmp_path / "a.db", "from-flag")
    env = write(tmp_path / "env.toml", tmp_path / "b.db", "from-env")
    assert load_config(None).origin == "embedded default"
    write(xdg, tmp_path / "c.db", "from-xdg")
    assert (load_config(None).routes[0].name, load_config(None).origin) == ("from-xdg", "the user config file")
    monkeypatch.setenv("SIGNOFF_CONFIG", str(env))
    assert (load_config(None).routes[0].name, load_config(None).origin) == ("from-env", "$SIGNOFF_CONFIG")
    assert (load_config(explicit).routes[0].name, load_config(explicit).origin) == ("from-flag", "--config")


def test_a_config_in_the_current_folder_is_never_read(tmp_path: Path) -> None:
    # An agent can write ./signoff.toml (or ./.config/signoff/signoff.toml) with an auto-approve route.
    write(tmp_path / "signoff.toml", tmp_path / "agent.db", "agent-wrote-this")
    write(tmp_path / ".config" / "signoff" / "signoff.toml", tmp_path / "agent.db", "agent-wrote-this")
    out = run("check-config", cwd=tmp_path, XDG_CONFIG_HOME="relative/ignored")
    assert out.returncode == 0, out.stderr
    assert "agent-wrote-this" not in out.stdout and "<embedded default>: OK (chosen by embedded default)" in out.stdout


def test_relative_xdg_config_home_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "rel" / "signoff" / "signoff.toml", tmp_path / "x.db", "relative")
    monkeypatch.setenv("XDG_CONFIG_HOME", "rel")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert load_config(None).origin == "embedded default"


def test_init_writes_where_every_command_looks(tmp_path: Path, xdg: Path) -> None:
    """The issue's newcomer: `signoff init` in one folder, then plain commands in another use that config."""
    project = tmp_path / "project"
    project.mkdir()
    out = run("init", "--telegram-user-id", "4242", cwd=project)
    assert out.returncode == 0, out.stderr
    assert xdg.is_file() and not (project / "signoff.toml").exists()
    assert xdg.stat().st_mode & 0o077 == 0
    assert "--config" not in out.stdout  # at the default place, no command needs it
    text = xdg.read_text()
    assert text.startswith("#:schema file://") and "telegram_user_id = 4242" in text
    checked = run("check-config", cwd=tmp_path)
    assert checked.returncode == 0 and f"{xdg}: OK (chosen by the user config file)" in checked.stdout
    db = next(line for line in checked.stdout.splitlines() if line.startswith("database: ")).removeprefix("database: ")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert run("approve", "req_nope", cwd=elsewhere).returncode == 1  # opens (and creates) that database
    assert Path(db).is_file()
    audit = run("audit", "--format", "jsonl", cwd=elsewhere)  # the read-only path finds the same file
    assert audit.returncode == 0, audit.stderr
    again = run("init", cwd=project)
    assert again.returncode == 1 and "exists; use --force" in again.stderr


def test_init_path_creates_folders_and_names_failures(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "signoff.toml"
    out = run("init", "--path", str(target))
    assert out.returncode == 0 and target.is_file()
    assert f"--config {target}" in out.stdout  # elsewhere, commands need to be told
    blocker = tmp_path / "file"
    blocker.write_text("")
    bad = run("init", "--path", str(blocker / "signoff.toml"))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert f"cannot write {blocker / 'signoff.toml'}" in bad.stderr and "--path" in bad.stderr
    folder = run("init", "--path", str(tmp_path))
    assert folder.returncode == 1 and "is a folder" in folder.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "file"]  # nothing half-written left


def test_a_missing_named_config_says_how_to_create_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    for argv in (["check-config"], ["pending"]):
        out = run(*argv, SIGNOFF_CONFIG=str(missing))
        assert out.returncode == 1
        assert "named by $SIGNOFF_CONFIG" in out.stderr and f"signoff init --path {missing}" in out.stderr


@pytest.mark.parametrize("key", ["source", "origin"])
def test_internal_fields_are_not_keys(key: str, tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'{key} = "--config"\n{BASIC_CONFIG}')
    with pytest.raises(ConfigError, match=f"{key}: unknown key"):
        load_config(path)


def test_the_shipped_schema_is_the_models_schema() -> None:
    assert config_schema.shipped_text() == config_schema.generated_text(), (
        "regenerate it: python -m signoff.server.config_schema > server/config.schema.json"
    )
    out = run("schema")
    assert out.returncode == 0 and json.loads(out.stdout) == config_schema.generate()


@pytest.mark.skipif(TAPLO is None, reason="taplo (a test dependency) is not installed")
def test_taplo_checks_a_config_against_the_schema(tmp_path: Path) -> None:
    """What a TOML editor does with init's `#:schema` line: accept good keys, name a wrong one."""
    assert TAPLO is not None
    good = tmp_path / "good.toml"
    assert run("init", "--path", str(good), "--telegram-user-id", "1").returncode == 0
    example = tmp_path / "example.toml"  # every key signoff accepts, under the same directive
    example.write_text(config_schema.schema_directive() + "\n" + (ROOT / "config.example.toml").read_text())
    ok = subprocess.run([TAPLO, "check", str(good), str(example)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text().replace('on_timeout = "reject"', 'on_timeout = "approve"\nquorom = 2'))
    failed = subprocess.run([TAPLO, "check", str(bad)], capture_output=True, text=True, timeout=60)
    assert failed.returncode != 0 and "'quorom' was unexpected" in failed.stderr
