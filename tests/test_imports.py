"""The code imports itself as ``signoff.server`` / ``signoff.adapters`` only.

In a checkout, ``server/`` and ``adapters/`` also sit at the top of sys.path (``signoff/server``
and ``signoff/adapters`` are symlinks to them). A stray ``import server.x`` would load a second
copy of a module, with its own classes and globals, and would break once installed, where only
``signoff`` exists. These tests fail on the first such import.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import signoff

ROOT = Path(__file__).resolve().parent.parent
TOP_LEVEL = {"server", "adapters"}


def _sources() -> list[Path]:
    return sorted(p for folder in ("server", "adapters", "tests", "benchmarks") for p in (ROOT / folder).rglob("*.py"))


def test_no_source_imports_a_top_level_server_or_adapters() -> None:
    offenders = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names if n.split(".")[0] in TOP_LEVEL]
    assert offenders == [], "import these as signoff.server… / signoff.adapters…:\n" + "\n".join(offenders)


def test_every_module_imports_under_signoff_and_loads_no_top_level_copy() -> None:
    # In a fresh interpreter: this test process may have imported anything.
    code = (
        "import importlib, pkgutil, sys, signoff\n"
        "for m in pkgutil.walk_packages(signoff.__path__, 'signoff.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] in ('server', 'adapters')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    loaded = {m.name for m in pkgutil.walk_packages(signoff.__path__, "signoff.")}
    assert {"signoff.server.cli", "signoff.adapters.telegram.channel"} <= loaded
    assert importlib.import_module("signoff.server.cli").main is not None
