"""signoff benchmarks: each figure is measured side by side with its baseline in one run.

    make bench            # or: python -m benchmarks [--quick]

(a) request_approval + check_decision through the in-memory MCP client, against two calls
    of a no-op tool on the same server that returns the same output contract
                                                   target: ratio <= 2x
(b) request_approval throughput (service layer) against raw aiosqlite inserts of the same
    rows with the same pragmas                     target: ratio >= 0.5x
(c) latency from a decision committed by another process to a waiting check_decision
    returning                                      target: p50 <= 150 ms
(d) wall time of `signoff pending` against `python -c pass`   target: ratio <= 10x
(e), (f) Telegram: see benchmarks/telegram.py
(g) a burst of 1,000 requests to one approver, gathered into a digest: see benchmarks/digest.py
(h), (i) start-up: `signoff hook` on an auto route, `signoff mcp` exec -> initialize answered, against
    `python -c pass`: see benchmarks/startup.py      targets: <= 6x (150 ms), <= 15x (400 ms)
(j) a call through `signoff proxy` on an auto route against the same call made directly to the
    upstream, same client, same run: see benchmarks/proxy.py   targets: <= 1.5x, p50 added <= 5 ms
(n), (o) the HTTP path as agents use it (round trip; 1,000 waiting agents): see benchmarks/http.py
(p), (q) Slack: a press to a waiting check_decision, and the burst (g) in Slack: see benchmarks/slack.py
(m) the web inbox at 100,000 requests: page server times, and filed -> shown over SSE: see benchmarks/web.py
    targets: p95 <= 50 ms; SSE p50 <= 100 ms
(k), (l) PostgreSQL: 1 vs 3 instances vs SQLite, and a decision -> a waiter in another instance: see benchmarks/instances.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mcp import Client

from signoff.server import db as dbmod
from signoff.server.app import open_app
from signoff.server.config import Config, parse_config
from signoff.server.mcp_tools import build_mcp
from signoff.server.models import Actor
from signoff.server.service import NewRequest
from signoff.server.views import RequestView

from . import digest, http, instances, proxy, slack, startup, telegram, web

CONFIG = """
[store]
path = "bench.db"
[[routes]]
name = "default"
"""
SIGNOFF = str(Path(sys.executable).with_name("signoff"))
AGENT = Actor("agent", "bench", "mcp")


def config_in(folder: Path) -> Config:
    (folder / "signoff.toml").write_text(CONFIG)
    return parse_config(CONFIG, source=str(folder / "signoff.toml"), base_dir=folder)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def bench_mcp_round_trip(folder: Path, n: int) -> dict[str, float]:
    config = config_in(folder / "a")
    async with open_app(config) as app:
        mcp = build_mcp(app.service, transport="memory")

        # The baseline returns the same output contract, so the SDK's own cost of carrying
        # and validating a RequestView is on both sides and the ratio is our code's.
        canned = RequestView(request_id="req_0", status="pending", route="default", approvers=[],
                             created_at="2026-01-01T00:00:00.000Z", expires_at="2026-01-01T01:00:00.000Z",
                             decided_at=None, decided_by=None, reason=None)  # fmt: skip

        async def noop(request_id: str) -> RequestView:
            return canned

        mcp.add_tool(noop, name="noop")
        async with Client(mcp) as client:
            for _ in range(20):  # warm up both paths
                await client.call_tool("noop", {"request_id": "x"})
                r = await client.call_tool("request_approval", {"action": "deploy", "summary": "warm"})
            ours: list[float] = []
            base: list[float] = []
            for i in range(n):
                t0 = time.perf_counter()
                r = await client.call_tool("request_approval", {"action": "deploy", "summary": f"bench {i}"})
                assert r.structured_content is not None
                await client.call_tool("check_decision", {"request_id": r.structured_content["request_id"]})
                t1 = time.perf_counter()
                await client.call_tool("noop", {"request_id": "x"})
                await client.call_tool("noop", {"request_id": "x"})
                t2 = time.perf_counter()
                ours.append(t1 - t0)
                base.append(t2 - t1)
    mo, mb = statistics.median(ours), statistics.median(base)
    return {"ours_ms": mo * 1e3, "noop_ms": mb * 1e3, "ratio": mo / mb}


async def bench_throughput(folder: Path, n: int) -> dict[str, float]:
    config = config_in(folder / "b")
    async with open_app(config, background=False) as app:
        svc = app.service
        for i in range(50):
            await svc.request_approval(NewRequest("deploy", f"warm {i}"), AGENT)
        t0 = time.perf_counter()
        for i in range(n):
            await svc.request_approval(NewRequest("deploy", f"bench {i}", {"i": i}, {"n": i}), AGENT)
        ours = n / (time.perf_counter() - t0)
        rows = await app.store.list_requests(limit=1)
    template = rows[0]
    raw_path = folder / "b" / "raw.db"
    # The same pragmas and schema, so the same rows are written: the request and (by trigger) its audit event.
    async with dbmod.connect(raw_path) as conn:
        cols = "id, action, summary, details, metadata, route, route_snapshot, approvers, requested_by, requested_via, content_hash, status, on_timeout, created_at, expires_at"
        sql = f"INSERT INTO requests ({cols}) VALUES ({','.join('?' * 15)})"
        snap = json.dumps(template.route_snapshot)
        t0 = time.perf_counter()
        for i in range(n):
            await conn.execute(sql, (f"raw_{i}", "deploy", f"bench {i}", json.dumps({"i": i}), json.dumps({"n": i}),
                                     "default", snap, "[]", "bench", "mcp", "h", "pending", "reject", time.time(), time.time() + 3600))  # fmt: skip
        raw = n / (time.perf_counter() - t0)
    return {"ours_per_s": ours, "raw_per_s": raw, "ratio": ours / raw}


DECIDER = r"""
import asyncio, sys, time
from signoff.server.app import open_app
from signoff.server.config import load_config
from signoff.server.models import Actor

async def main():
    config = load_config(sys.argv[1])
    async with open_app(config, background=False) as app:
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line.strip():
                return
            await app.service.decide(line.strip(), True, Actor("human", "bench", "console"))
            print(time.time(), flush=True)

asyncio.run(main())
"""


async def bench_cross_process(folder: Path, n: int) -> dict[str, float]:
    config = config_in(folder / "c")
    proc = subprocess.Popen([sys.executable, "-c", DECIDER, str(folder / "c" / "signoff.toml")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdin and proc.stdout
    assert proc.stdout.readline().strip() == "ready"
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    try:
        async with open_app(config) as app:
            mcp = build_mcp(app.service, transport="memory")
            async with Client(mcp) as client:
                for i in range(n):
                    r = await client.call_tool("request_approval", {"action": "deploy", "summary": f"x{i}"})
                    assert r.structured_content is not None
                    rid = r.structured_content["request_id"]
                    waiting = asyncio.create_task(
                        client.call_tool("check_decision", {"request_id": rid, "wait_seconds": 30})
                    )
                    await asyncio.sleep(0.02)  # let the waiter settle, as a real agent's would be
                    proc.stdin.write(rid + "\n")
                    proc.stdin.flush()
                    result = await waiting
                    returned = time.time()
                    committed = float(await loop.run_in_executor(None, proc.stdout.readline))
                    assert result.structured_content is not None and result.structured_content["status"] == "approved"
                    latencies.append(returned - committed)
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    return {"p50_ms": pct(latencies, 0.5) * 1e3, "p95_ms": pct(latencies, 0.95) * 1e3, "n": n}


def bench_cli_start(folder: Path, n: int) -> dict[str, float]:
    cfg = folder / "a" / "signoff.toml"
    ours: list[float] = []
    base: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([SIGNOFF, "pending", "--config", str(cfg)], check=True, capture_output=True)
        t1 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True, capture_output=True)
        t2 = time.perf_counter()
        ours.append(t1 - t0)
        base.append(t2 - t1)
    mo, mb = statistics.median(ours), statistics.median(base)
    return {"pending_ms": mo * 1e3, "python_ms": mb * 1e3, "ratio": mo / mb}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    quick = parser.parse_args().quick
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for sub in "abc":
            (folder / sub).mkdir()
        a = asyncio.run(bench_mcp_round_trip(folder, 50 if quick else 500))
        b = asyncio.run(bench_throughput(folder, 200 if quick else 2000))
        c = asyncio.run(bench_cross_process(folder, 10 if quick else 60))
        d = bench_cli_start(folder, 5 if quick else 20)
        telegram_rows = telegram.run(folder, quick)
        telegram_rows += digest.run(folder, quick)
        telegram_rows += startup.run(folder, quick)
        telegram_rows += proxy.run(folder, quick)
        telegram_rows += http.run(folder, quick)
        telegram_rows += slack.run(folder, quick)
        telegram_rows += web.run(folder, quick)
        telegram_rows += instances.run(folder, quick)
    rows: list[tuple[str, str, str, bool]] = [
        ("(a) MCP round trip vs no-op", f"{a['ours_ms']:.2f} ms vs {a['noop_ms']:.2f} ms", f"{a['ratio']:.2f}x (<= 2x)", a["ratio"] <= 2),
        ("(b) request_approval vs raw insert", f"{b['ours_per_s']:.0f}/s vs {b['raw_per_s']:.0f}/s", f"{b['ratio']:.2f}x (>= 0.5x)", b["ratio"] >= 0.5),
        ("(c) cross-process decision -> waiter", f"p50 {c['p50_ms']:.1f} ms, p95 {c['p95_ms']:.1f} ms", "p50 <= 150 ms", c["p50_ms"] <= 150),
        ("(d) signoff pending vs python -c pass", f"{d['pending_ms']:.0f} ms vs {d['python_ms']:.0f} ms", f"{d['ratio']:.1f}x (<= 10x)", d["ratio"] <= 10),
    ]  # fmt: skip
    rows += telegram_rows
    width = max(len(r[0]) for r in rows)
    for name, measured, target, ok in rows:
        print(f"{name:<{width}}  {measured:<36}  {target:<18}  {'OK' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
