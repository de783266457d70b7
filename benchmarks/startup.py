"""Start-up figures, each against ``python -c pass`` measured alternately in the same run.

(h) ``signoff hook`` on a tool call an auto route approves (the compiled config cached, as it is
    from the second call of a session on)               target: <= 150 ms and <= 6x
(i) ``signoff mcp``: exec until the answer to ``initialize`` is read   target: <= 400 ms and <= 15x

Medians over N runs. Child processes may write bytecode (as an installed package has it), and
one warm-up run of each comes first.

    python -m benchmarks.startup [--quick]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIGNOFF = str(Path(sys.executable).with_name("signoff"))
CONFIG = """
[store]
path = "bench.db"

[[routes]]
name = "reads"
match = { action = ["Read", "Glob", "Grep"] }
auto = "approve"

[[routes]]
name = "default"
"""
INITIALIZE = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}) + "\n"  # fmt: skip

Row = tuple[str, str, str, bool]


def _env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "SIGNOFF_TELEGRAM_TOKEN")}
    env.update(SIGNOFF_STATE_DIR=str(folder / "state"), SIGNOFF_LOG_LEVEL="WARNING")
    return env


def _python(env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, env=env)
    return time.perf_counter() - t0


def _hook(config: Path, env: dict[str, str], i: int) -> float:
    event = json.dumps({"hook_event_name": "PreToolUse", "tool_name": "Read", "tool_input": {"file_path": "x"},
                        "tool_use_id": f"bench_{i}", "session_id": "bench", "cwd": "/tmp"})  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run([SIGNOFF, "hook", "--config", str(config)], input=event.encode(), capture_output=True,
                          env=env, check=True)  # fmt: skip
    elapsed = time.perf_counter() - t0
    answer = json.loads(proc.stdout)["hookSpecificOutput"]
    assert answer["permissionDecision"] == "allow", answer
    return elapsed


def _mcp(config: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen([SIGNOFF, "mcp", "--config", str(config)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(INITIALIZE.encode())
    proc.stdin.flush()
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - t0
    proc.stdin.close()  # the end of stdin: the server exits
    proc.wait(timeout=30)
    assert b'"serverInfo"' in line, line[:200]
    return elapsed


def _figure(name: str, ours: list[float], base: list[float], limit_ms: float, limit_ratio: float) -> Row:
    mo, mb = statistics.median(ours), statistics.median(base)
    ratio = mo / mb
    return (name, f"{mo * 1e3:.0f} ms vs {mb * 1e3:.0f} ms", f"{ratio:.1f}x (<= {limit_ms:.0f} ms, <= {limit_ratio:.0f}x)",
            mo * 1e3 <= limit_ms and ratio <= limit_ratio)  # fmt: skip


def run(folder: Path, quick: bool) -> list[Row]:
    where = folder / "startup"
    where.mkdir(parents=True, exist_ok=True)
    config = where / "signoff.toml"
    config.write_text(CONFIG, encoding="utf-8")
    env = _env(where)
    n = 7 if quick else 25
    _python(env)
    _hook(config, env, -1)  # creates the database and caches the compiled config
    _mcp(config, env)
    hook: list[float] = []
    hook_base: list[float] = []
    for i in range(n):
        hook_base.append(_python(env))
        hook.append(_hook(config, env, i))
    mcp: list[float] = []
    mcp_base: list[float] = []
    for _ in range(max(5, n // 2)):
        mcp_base.append(_python(env))
        mcp.append(_mcp(config, env))
    return [
        _figure("(h) signoff hook, auto route vs python -c pass", hook, hook_base, 150, 6),
        _figure("(i) signoff mcp exec -> initialize vs python -c pass", mcp, mcp_base, 400, 15),
    ]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        for name, measured, target, ok in run(Path(tmp), "--quick" in sys.argv):
            print(f"{name}  {measured}  {target}  {'OK' if ok else 'MISSED'}")
