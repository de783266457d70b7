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
