"""(j) ``signoff proxy``: a tool call on an auto route through the proxy, against the same call
made directly to the same upstream MCP server, by the same kind of client in the same run.

Both sides are the MCP SDK's stdio client; the upstream is tests/upstream_server.py (an SDK
server), its ``read_note`` tool. Calls alternate, one on each connection, after a warm-up.
The proxied call adds a second stdio hop and the approval request (an SQLite insert, decided
by the route at once).                       targets: ratio <= 1.5x, p50 added <= 5 ms

    python -m benchmarks.proxy [--quick]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mcp import Client, StdioServerParameters

SIGNOFF = str(Path(sys.executable).with_name("signoff"))
UPSTREAM = str(Path(__file__).resolve().parent.parent / "tests" / "upstream_server.py")
CONFIG = """
[store]
path = "bench.db"

[[routes]]
name = "reads"
match = { action = "mcp__notes__read_*" }
auto = "approve"

[[routes]]
name = "default"
"""

Row = tuple[str, str, str, bool]


def _env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SIGNOFF_TELEGRAM_TOKEN"}
    env.update(SIGNOFF_STATE_DIR=str(folder / "state"), SIGNOFF_LOG_LEVEL="WARNING")
    return env


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def measure(folder: Path, n: int) -> dict[str, float]:
    notes = folder / "notes"
    notes.mkdir(parents=True, exist_ok=True)
    (notes / "a.txt").write_text("hello")
    config = folder / "signoff.toml"
    config.write_text(CONFIG, encoding="utf-8")
    env = _env(folder)
    direct = StdioServerParameters(command=sys.executable, args=[UPSTREAM, str(notes)], env=env)
    proxied = StdioServerParameters(command=SIGNOFF, args=["proxy", "--name", "notes", "--config", str(config), "--",
                                                           sys.executable, UPSTREAM, str(notes)], env=env)  # fmt: skip
    args = {"name": "a.txt"}
    async with Client(direct, cache=None) as d, Client(proxied, cache=None) as p:
        for _ in range(30):  # warm up both paths
            await d.call_tool("read_note", args)
            await p.call_tool("read_note", args)
        ours: list[float] = []
        base: list[float] = []
        for _ in range(n):
            t0 = time.perf_counter()
            r = await p.call_tool("read_note", args)
            t1 = time.perf_counter()
            await d.call_tool("read_note", args)
            t2 = time.perf_counter()
            assert not r.is_error, r.content
            ours.append(t1 - t0)
            base.append(t2 - t1)
    added = [o - b for o, b in zip(ours, base, strict=True)]
    mo, mb = statistics.median(ours), statistics.median(base)
    return {"proxied_ms": mo * 1e3, "direct_ms": mb * 1e3, "ratio": mo / mb, "added_p50_ms": _pct(added, 0.5) * 1e3,
            "added_p95_ms": _pct(added, 0.95) * 1e3}  # fmt: skip


def run(folder: Path, quick: bool) -> list[Row]:
    where = folder / "proxy"
    where.mkdir(parents=True, exist_ok=True)
    j = asyncio.run(measure(where, 100 if quick else 1000))
    ok = j["ratio"] <= 1.5 and j["added_p50_ms"] <= 5
    return [("(j) proxied call, auto route vs direct", f"{j['proxied_ms']:.2f} ms vs {j['direct_ms']:.2f} ms, "
             f"+{j['added_p50_ms']:.2f} ms p50 (p95 +{j['added_p95_ms']:.2f})",
             f"{j['ratio']:.2f}x (<= 1.5x, <= +5 ms)", ok)]  # fmt: skip


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        for name, measured, target, ok in run(Path(tmp), "--quick" in sys.argv):
            print(f"{name}  {measured}  {target}  {'OK' if ok else 'MISSED'}")
