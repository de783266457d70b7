"""The package as a user gets it: the built wheel, installed into a fresh virtualenv next to a
package that ships top-level ``server`` and ``adapters`` (as AdapterHub's ``adapters`` does), and
run with ``uvx --from <wheel>``; and the MCP registry's ``server.json``.

Slow on purpose (fresh environments download their dependencies from PyPI): the wheel, uv and the
virtualenv are made once for the module, with pip's and uv's caches under pytest's temporary base.
No subprocess sees the real home folder, config or state.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from .conftest import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
VERSION = PROJECT["version"]
# Fresh environments download from PyPI; a slow mirror must not turn that into a hang report.
pytestmark = pytest.mark.timeout(300)

CLASH_MESSAGE = "this is the clashing distribution's top-level package, not signoff's"
CONFIG = """
[store]
path = "signoff.db"

[approvers.alice]
telegram_user_id = 111

[[routes]]
name = "reads"
match = { action = "read_*" }
auto = "approve"

[[routes]]
name = "default"
approvers = ["alice"]
"""


@dataclass
class Tools:
    base: Path
    uv: Path
    wheel: Path
    env: dict[str, str]

    def bin(self, name: str) -> Path:
        return self.uv.with_name(name)


def run(argv: list[str | Path], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; fail with its output when it fails."""
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env, cwd=cwd,
                          stdin=subprocess.DEVNULL, timeout=240, check=False)  # fmt: skip
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def isolated_env(base: Path, caches: Path) -> dict[str, str]:
    """This environment minus anything that would point a child at the checkout, the developer's
    virtualenv or their signoff setup; home, config and state folders under ``base``."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
           and not k.startswith(("SIGNOFF_", "CLAUDE_PLUGIN_", "UV_", "PIP_"))}  # fmt: skip
    dev_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != dev_bin)
    for name in ("home", "config", "state", "cache"):
        (base / name).mkdir(exist_ok=True)
    env.update(
        HOME=str(base / "home"),
        XDG_CONFIG_HOME=str(base / "config"),
        XDG_STATE_HOME=str(base / "state"),
        XDG_CACHE_HOME=str(base / "cache"),
        SIGNOFF_STATE_DIR=str(base / "state" / "signoff"),
        SIGNOFF_LOG_LEVEL="WARNING",
        PIP_CACHE_DIR=str(caches / "pip"),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        UV_CACHE_DIR=str(caches / "uv"),
        UV_PYTHON=sys.executable,  # the interpreter running the tests: uv must not fetch one
        UV_PYTHON_DOWNLOADS="never",
        UV_NO_CONFIG="1",
    )
    return env


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Tools:
    """uv (from PATH, else from PyPI into a virtualenv of its own) and the wheel it builds from the checkout."""
    base = tmp_path_factory.mktemp("package")
    env = isolated_env(base, tmp_path_factory.getbasetemp() / "package-caches")
    found = shutil.which("uv", path=env["PATH"])
    if found and shutil.which("uvx", path=env["PATH"]):
        uv = Path(found)
    else:
        venv.create(base / "uv-venv", with_pip=False)
        uv_python = base / "uv-venv" / "bin" / "python"
        run([sys.executable, "-m", "pip", "--python", uv_python, "install", "--quiet", "uv"], env, base)
        uv = base / "uv-venv" / "bin" / "uv"
    run([uv, "build", "--wheel", "--out-dir", base / "dist", ROOT], env, base)
    (wheel,) = (base / "dist").glob("signoff-*.whl")
    return Tools(base, uv, wheel, env)


def clash_wheel(where: Path) -> Path:
    """A wheel with top-level ``server`` and ``adapters`` packages that refuse to be imported:
    if signoff imported either name, it would get these instead of its own."""
    name = "clash_server_adapters"
    dist_info = f"{name}-1.0.dist-info"
    raising = f"raise ImportError({CLASH_MESSAGE!r})\n"
    files = {
        "server/__init__.py": raising,
        "server/cli.py": raising,
        "adapters/__init__.py": raising,
        "adapters/telegram/__init__.py": raising,
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: signoff-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist_info}/top_level.txt": "adapters\nserver\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    wheel = where / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
        zf.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return wheel


@dataclass
class Installed:
    venv: Path
    config: Path
    env: dict[str, str]
    cwd: Path

    @property
    def signoff(self) -> Path:
        return self.venv / "bin" / "signoff"


@pytest.fixture(scope="module")
def installed(tools: Tools) -> Installed:
    """A fresh virtualenv with pip: our wheel, then the clashing one on top of it."""
    where = tools.base / "venv"
    venv.create(where, with_pip=True)
    pip: list[str | Path] = [where / "bin" / "python", "-m", "pip"]
    run([*pip, "install", "--quiet", tools.wheel], tools.env, tools.base)
    run([*pip, "install", "--quiet", clash_wheel(tools.base)], tools.env, tools.base)
    config = tools.base / "signoff.toml"
    config.write_text(textwrap.dedent(CONFIG))
    return Installed(where, config, tools.env, tools.base)


def test_the_wheel_holds_only_the_signoff_package_and_its_metadata(tools: Tools) -> None:
    names = zipfile.ZipFile(tools.wheel).namelist()
    dist_info = f"signoff-{VERSION}.dist-info/"
    assert [n for n in names if not n.startswith(("signoff/", dist_info))] == []
    assert len(names) == len(set(names))
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    for needed in ("signoff/__init__.py", "signoff/py.typed", "signoff/server/cli.py", "signoff/server/hook.py",
                   "signoff/adapters/__init__.py", "signoff/adapters/telegram/__init__.py",
                   "signoff/server/migrations/0012_request_search.sql", "signoff/server/pg_migrations/0012_baseline.sql",
                   f"{dist_info}licenses/LICENSE", f"{dist_info}entry_points.txt"):  # fmt: skip
        assert needed in names
    entry_points = zipfile.ZipFile(tools.wheel).read(f"{dist_info}entry_points.txt").decode()
    assert "signoff = signoff.server.cli:main" in entry_points


def test_the_clashing_package_really_owns_the_generic_names(installed: Installed) -> None:
    # Otherwise the tests below would prove nothing.
    python = installed.venv / "bin" / "python"
    for name in ("server", "adapters"):
        done = subprocess.run([python, "-c", f"import {name}"], capture_output=True, text=True, env=installed.env,
                              cwd=installed.cwd, timeout=60, check=False)  # fmt: skip
        assert done.returncode != 0 and CLASH_MESSAGE in done.stderr, done.stderr
    run([python, "-m", "pip", "check"], installed.env, installed.cwd)


def test_version_next_to_the_clash(installed: Installed) -> None:
    assert run([installed.signoff, "--version"], installed.env, installed.cwd).stdout.strip() == f"signoff {VERSION}"


def test_check_config_next_to_the_clash_with_a_file_and_with_the_embedded_default(installed: Installed) -> None:
    with_file = run([installed.signoff, "check-config", "--config", installed.config], installed.env, installed.cwd)
    assert f"{installed.config}: OK" in with_file.stdout and "reads" in with_file.stdout, with_file.stdout
    embedded = run([installed.signoff, "check-config"], installed.env, installed.cwd)
    assert "<embedded default>: OK" in embedded.stdout, embedded.stdout
    # The state folder the environment names, never the real home.
    assert installed.env["SIGNOFF_STATE_DIR"] in embedded.stdout, embedded.stdout


@pytest.mark.anyio
async def test_one_mcp_round_trip_over_stdio_next_to_the_clash(installed: Installed) -> None:
    params = StdioServerParameters(command=str(installed.signoff), args=["mcp", "--config", str(installed.config)],
                                   env=installed.env, cwd=installed.cwd)  # fmt: skip
    async with Client(params) as client:
        info = client.server_info
        assert info is not None and (info.name, info.version) == ("signoff", VERSION)
        filed = (
            await client.call_tool("request_approval", {"action": "read_logs", "summary": "look"})
        ).structured_content
        assert filed is not None and filed["status"] == "approved", filed
        decided = (await client.call_tool("check_decision", {"request_id": filed["request_id"]})).structured_content
    assert decided is not None and (decided["request_id"], decided["status"]) == (filed["request_id"], "approved")
    assert (installed.config.parent / "signoff.db").is_file()


@pytest.mark.anyio
async def test_uvx_from_the_wheel_serves_mcp(tools: Tools) -> None:
    params = StdioServerParameters(command=str(tools.bin("uvx")), args=["--from", str(tools.wheel), "signoff", "mcp"],
                                   env=tools.env, cwd=tools.base)  # fmt: skip
    async with Client(params) as client:
        assert client.server_info is not None and client.server_info.version == VERSION
        names = {t.name for t in (await client.list_tools()).tools}
    assert {"request_approval", "check_decision", "cancel_request", "permission_prompt"} <= names


# The MCP registry (registry.modelcontextprotocol.io) entry. Its checks: a reverse-DNS name with
# one slash, a description of at most 100 characters, exact versions, and for a PyPI package a
# `mcp-name: <name>` line in the README that PyPI shows.
SERVER_JSON = json.loads((ROOT / "server.json").read_text())


def test_server_json_names_this_package_and_its_version() -> None:
    assert SERVER_JSON["$schema"].startswith("https://static.modelcontextprotocol.io/schemas/")
    assert re.fullmatch(r"io\.github\.[A-Za-z0-9-]+/[A-Za-z0-9._-]+", SERVER_JSON["name"])
    assert 0 < len(SERVER_JSON["description"]) <= 100
    assert SERVER_JSON["version"] == VERSION
    (package,) = SERVER_JSON["packages"]
    assert (package["registryType"], package["identifier"], package["version"]) == ("pypi", PROJECT["name"], VERSION)
    assert (package["runtimeHint"], package["transport"]) == ("uvx", {"type": "stdio"})
    assert package["packageArguments"] == [{"type": "positional", "value": "mcp"}]
    token = next(v for v in package["environmentVariables"] if v["name"] == "SIGNOFF_TELEGRAM_TOKEN")
    assert token["isSecret"] is True


def test_the_readme_carries_the_registry_name() -> None:
    names = re.findall(r"mcp-name:\s*(\S+)", (ROOT / "README.md").read_text())
    assert names == [SERVER_JSON["name"]]


def test_the_claude_code_plugin_carries_the_package_version_and_no_fail_open_hook() -> None:
    # The e2e tests (tests/e2e/test_plugin_e2e.py) run the plugin; these are the checks that need no Claude Code.
    marketplace = json.loads((ROOT / ".claude-plugin" / "marketplace.json").read_text())
    (entry,) = marketplace["plugins"]
    plugin = ROOT / entry["source"]
    manifest = json.loads((plugin / ".claude-plugin" / "plugin.json").read_text())
    assert (manifest["name"], manifest["version"]) == (entry["name"], VERSION)
    hooks = json.loads((plugin / "hooks" / "hooks.json").read_text())["hooks"]
    commands = [h["command"] for group in hooks["PreToolUse"] for h in group["hooks"]]
    assert commands and all("signoff hook" in c for c in commands)
    # A hook command naming ${user_config.…} is skipped while the option is unset: the call then
    # goes through unasked. The token comes from the environment; any other failure blocks (exit 2).
    assert not [c for c in commands if "user_config" in c or not c.endswith("|| exit 2")]
