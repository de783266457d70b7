"""The import graph: no cycles among signoff's modules (issue 11's seam starts here).

Every import counts, also those inside functions (deferred for start-up time) and under
``if TYPE_CHECKING:``: a cycle through them still ties the modules into one knot, and one
refactor away from failing at load time.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = ["signoff", *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names}  # `from . import x` names a module
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module(p): p for folder in ("server", "adapters") for p in (ROOT / folder).rglob("*.py")}
    return {name: {t for t in _imports(path, name) if t in files and t != name}
            for name, path in files.items()}  # fmt: skip


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_graph_is_read() -> None:
    graph = _graph()
    assert "signoff.server.service" in graph["signoff.server.app"]
    assert "signoff.server.listen" in graph["signoff.adapters.telegram.webhook"]


def test_no_import_cycles() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, "an import cycle: " + " -> ".join(cycle or [])


def test_the_detector_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


# The core's public API and models: all an adapter may import of it (DESIGN.md's dependency rule).
# Notably not the store, the SQL, policy, grants or routing: a channel delivers outbox rows and
# turns a person's input into calls on the service (``channels.ChannelService``), nothing more.
_PUBLIC = "models errors config service channels outbox digests grant_models details_text sanitize durations lease listen metrics web_auth web_queries web_stats audit_export"
ADAPTER_MAY_IMPORT = {f"signoff.server.{m}" for m in _PUBLIC.split()}
# Where the application is put together from the configuration: the only server modules that
# may import an adapter.
COMPOSITION_ROOT = {"signoff.server.app", "signoff.server.cli"}


def _adapter_breaches(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    """Each adapter module's imports of the core beyond its public API and models."""
    found = {}
    for name, targets in graph.items():
        if name.startswith("signoff.adapters."):
            # `from signoff.server import x` names the package and the module: count the module only.
            core = {t for t in targets if t.startswith("signoff.server.")}
            if extra := sorted(core - ADAPTER_MAY_IMPORT):
                found[name] = extra
    return found


def _crossings(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports of one channel's package by another's."""
    return sorted(
        (name, t)
        for name, targets in graph.items()
        if name.startswith("signoff.adapters.")
        for t in targets
        if t.startswith("signoff.adapters.") and t.split(".")[2] != name.split(".")[2]
    )


def _root_breaches(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports of an adapter by a server module outside the composition root."""
    return sorted(
        (name, t)
        for name, targets in graph.items()
        if name.startswith("signoff.server.") and name not in COMPOSITION_ROOT
        for t in targets
        if t.startswith("signoff.adapters")
    )


def test_adapters_import_only_the_core_public_api() -> None:
    breaches = _adapter_breaches(_graph())
    assert not breaches, f"adapters import the core beyond its public API and models: {breaches}"


def test_adapters_do_not_import_each_other() -> None:
    crossing = _crossings(_graph())
    assert not crossing, f"one channel imports another: {crossing}"


def test_the_core_imports_adapters_only_in_the_composition_root() -> None:
    wrong = _root_breaches(_graph())
    assert not wrong, f"server modules outside {sorted(COMPOSITION_ROOT)} import adapters: {wrong}"


def test_the_rules_catch_each_breach() -> None:
    graph = {
        "signoff.adapters.slack.x": {"signoff.server.store", "signoff.server.models", "signoff.adapters.telegram.render",
                                     "signoff.adapters.slack.y"},
        "signoff.server.policy": {"signoff.adapters.console"},
        "signoff.server.app": {"signoff.adapters.telegram"},
    }  # fmt: skip
    assert _adapter_breaches(graph) == {"signoff.adapters.slack.x": ["signoff.server.store"]}
    assert _crossings(graph) == [("signoff.adapters.slack.x", "signoff.adapters.telegram.render")]
    assert _root_breaches(graph) == [("signoff.server.policy", "signoff.adapters.console")]
