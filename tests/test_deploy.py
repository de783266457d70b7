"""The service files under deploy/, the Dockerfile and compose.yaml: checked as far as this
machine allows without root or a Docker daemon — each file parses, says what it must, and its
command line is one signoff accepts (run for real, with ``--help`` or against a live server)."""

from __future__ import annotations

import configparser
import json
import os
import plistlib
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from signoff.server.paths import default_state_dir

from .conftest import ROOT, SIGNOFF, subprocess_env
from .procs import serve

UNIT = ROOT / "deploy" / "systemd" / "signoff.service"
PLIST = ROOT / "deploy" / "launchd" / "dev.signoff.serve.plist"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"


def run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env=subprocess_env(**env), timeout=60,
                          stdin=subprocess.DEVNULL)  # fmt: skip


def accepts(argv: list[str], **env: str) -> None:
    """``argv`` (a signoff command line) parses: the same with ``--help`` exits 0 and names the command."""
    out = run([*argv, "--help"], **env)
    assert out.returncode == 0 and f"usage: signoff {argv[argv.index('serve')]}" in out.stdout, out.stderr


# --- systemd -------------------------------------------------------------------------------


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read(UNIT, encoding="utf-8")
    return parser


def test_systemd_user_unit(tmp_path: Path) -> None:
    u = unit()
    service = u["Service"]
    assert service["ExecStart"] == "%h/.local/bin/signoff serve"
    assert service["StateDirectory"] == "signoff" and service["Restart"] == "on-failure"
    assert service["EnvironmentFile"].startswith("-")  # optional: signoff starts without secrets
    assert u["Install"]["WantedBy"] == "default.target"  # a user unit: the user's default target
    # ExecStart, with %h expanded as systemd would, is a command signoff accepts.
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "signoff").symlink_to(SIGNOFF)
    accepts(shlex.split(service["ExecStart"].replace("%h", str(home))))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd's own check, in user mode (a private runtime folder stands in for the user manager's)."""
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "signoff").symlink_to(SIGNOFF)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    copy = tmp_path / "signoff.service"
    copy.write_text(UNIT.read_text(encoding="utf-8").replace("%h/.local/bin/signoff", SIGNOFF))
    out = run(["systemd-analyze", "--user", "verify", str(copy)], XDG_RUNTIME_DIR=str(runtime), HOME=str(home))
    assert (out.returncode, out.stderr.strip()) == (0, ""), out.stderr


def test_state_directory_from_systemd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``StateDirectory=`` sets $STATE_DIRECTORY (colon-separated when it names several);
    $SIGNOFF_STATE_DIR still wins."""
    monkeypatch.delenv("SIGNOFF_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_dir() == tmp_path / "xdg" / "signoff"
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/state/signoff:{tmp_path}/state/other")
    assert default_state_dir() == tmp_path / "state" / "signoff"
    monkeypatch.setenv("SIGNOFF_STATE_DIR", str(tmp_path / "mine"))
    assert default_state_dir() == tmp_path / "mine"
    # The whole way: a command run the way systemd runs the unit puts its database there.
    env = {k: v for k, v in subprocess_env().items() if k != "SIGNOFF_STATE_DIR"}
    env["STATE_DIRECTORY"] = str(tmp_path / "unit-state")
    out = subprocess.run([SIGNOFF, "check-config"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0 and f"database: {tmp_path / 'unit-state' / 'signoff.db'}" in out.stdout, out


# --- launchd -------------------------------------------------------------------------------


def test_launchd_plist(tmp_path: Path) -> None:
    with PLIST.open("rb") as f:
        plist = plistlib.load(f)
    assert plist["Label"] == "dev.signoff.serve" == PLIST.stem
    assert plist["RunAtLoad"] is True and plist["KeepAlive"] == {"SuccessfulExit": False}
    argv = plist["ProgramArguments"]
    assert argv[:2] == ["/bin/sh", "-c"]
    # Run it as launchd would (HOME set, nothing else), with --help appended: the secrets file is
    # read and the command is one signoff accepts.
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "signoff").symlink_to(SIGNOFF)
    (home / ".config" / "signoff").mkdir(parents=True)
    (home / ".config" / "signoff" / "signoff.env").write_text("SIGNOFF_HTTP_TOKEN=from-the-env-file\n")
    script = argv[2] + '; echo "$SIGNOFF_HTTP_TOKEN"'
    shown = subprocess.run(["/bin/sh", "-c", script.replace("exec ", ""), *argv[3:], "--help"], capture_output=True,
                           text=True, env={"HOME": str(home), "PATH": os.defpath}, timeout=60)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.rstrip().endswith("from-the-env-file")  # the secrets file was read
    log = (home / "Library" / "Logs" / "signoff.log").read_text()
    assert log == ""  # --help goes to stdout; stderr (the log) got nothing
    out = subprocess.run(["/bin/sh", "-c", argv[2], *argv[3:], "--help"], capture_output=True, text=True,
                         env={"HOME": str(home), "PATH": os.defpath}, timeout=60)  # fmt: skip
    assert out.returncode == 0 and "usage: signoff serve" in out.stdout, out.stderr


# --- Docker --------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the final stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    steps = [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def test_dockerfile() -> None:
    steps = dockerfile()
    ops = dict(steps)
    assert ops["FROM"] == "python:3.11-slim"
    user = ops["USER"].split(":")[0]
    assert user not in ("root", "0") and "useradd --system --uid 10001 --user-group" in ops["RUN"]
    assert steps.index(("USER", ops["USER"])) > max(i for i, (op, _) in enumerate(steps) if op == "RUN")
    assert ops["VOLUME"] == '["/var/lib/signoff"]' and "SIGNOFF_STATE_DIR=/var/lib/signoff" in ops["ENV"]
    assert ops["HEALTHCHECK"].startswith("--interval=") and "/healthz" in ops["HEALTHCHECK"]
    cmd = json.loads(ops["CMD"])
    assert cmd[0] == "signoff"
    accepts([SIGNOFF, *cmd[1:]])
    # Every build-context path the image copies exists and is not excluded by .dockerignore.
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()}
    build = re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), flags=re.MULTILINE)
    sources = [src for line in build for src in line.split()]
    assert {"pyproject.toml", "server", "adapters", "signoff"} <= set(sources)
    for src in sources:
        assert (ROOT / src).exists() and src not in ignored, src


def healthcheck_argv(text: str) -> list[str]:
    """The exec-form healthcheck (``"python", "-c", "..."``) in a Dockerfile or compose file."""
    found = re.search(r'"python", "-c", "([^"]*)"', text)
    assert found, "no exec-form python healthcheck"
    return ["python", "-c", found.group(1)]


@pytest.mark.anyio
async def test_the_healthcheck_passes_against_a_live_server_and_fails_without_one(config_path: Path) -> None:
    argv = healthcheck_argv(re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text()))
    assert any(":8765/" in a for a in argv)  # the image's port; a test cannot count on it being free here

    def on(port: object) -> list[str]:
        return [sys.executable if a == "python" else a.replace(":8765/", f":{port}/") for a in argv]

    with socket.socket() as held:  # bound by this test and not listening: nothing can answer on this port
        held.bind(("127.0.0.1", 0))
        assert run(on(held.getsockname()[1])).returncode != 0  # nothing listens
    async with serve(config_path) as served:
        port = served.url.rsplit(":", 1)[1].split("/")[0]
        assert run(on(port)).returncode == 0


def test_compose_file() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:  # PyYAML is not a dependency: check the lines that matter
        assert re.search(r"^services:\n  signoff:\n", text, flags=re.MULTILINE)
        assert "- signoff-state:/var/lib/signoff" in text and re.search(r"^volumes:\n  signoff-state:", text, re.M)
        assert "SIGNOFF_TELEGRAM_TOKEN: ${SIGNOFF_TELEGRAM_TOKEN:?" in text
        assert "SIGNOFF_HTTP_TOKEN: ${SIGNOFF_HTTP_TOKEN:?" in text
        assert "healthcheck:" in text and "/healthz" in text
    else:
        doc = yaml.safe_load(text)
        svc = doc["services"]["signoff"]
        assert "signoff-state:/var/lib/signoff" in svc["volumes"] and "signoff-state" in doc["volumes"]
        assert {"SIGNOFF_TELEGRAM_TOKEN", "SIGNOFF_HTTP_TOKEN"} <= set(svc["environment"])
        assert "/healthz" in " ".join(svc["healthcheck"]["test"])
    assert "\t" not in text
    # Compose runs the image's CMD; its healthcheck is the Dockerfile's.
    assert healthcheck_argv(text) == healthcheck_argv(re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text()))
