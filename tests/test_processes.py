"""Real signoff processes: stdio and HTTP servers, the command line, crashes and signals."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from signoff.server.app import open_app
from signoff.server.config import load_config
from signoff.server.models import Actor, Status
from signoff.server.service import ApprovalService, NewRequest

from .conftest import SIGNOFF, subprocess_env
from .procs import cli, http_client, serve, stdio_client, write_lock_is_free

pytestmark = pytest.mark.anyio
AGENT = Actor("agent", "claude-code", "mcp")


async def file_request(config_path: Path, new: NewRequest, *, created_ago: float = 0) -> str:
    """File a request from this process (optionally as if it had been filed ``created_ago`` seconds ago)."""
    config = load_config(config_path)
    async with open_app(config, background=False) as app:
        svc = ApprovalService(config, app.store, clock=lambda: time.time() - created_ago)
        return (await svc.request_approval(new, AGENT)).id


async def test_stdio_lifecycle_decided_from_the_command_line(config_path: Path) -> None:
    async with stdio_client(config_path) as client:
        out = (
            await client.call_tool("request_approval", {"action": "deploy", "summary": "Ship v2"})
        ).structured_content
        assert out is not None and out["status"] == "pending"
        rid = out["request_id"]

        pending = cli("pending", "--json", config=config_path)
        assert pending.returncode == 0 and [r["request_id"] for r in json.loads(pending.stdout)] == [rid]
        table = cli("pending", config=config_path).stdout
        assert rid in table and "deploy" in table and "Ship v2" in table and "in 59 min" in table

        results: list[Any] = []

        async def wait_for_decision() -> None:
            r = await client.call_tool("check_decision", {"request_id": rid, "wait_seconds": 45})
            results.append(r.structured_content)

        with anyio.fail_after(30):  # far below the 45 s the call would wait without a decision
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_for_decision)
                approve = await anyio.run_process([SIGNOFF, "approve", rid, "--reason", "ship it", "--config",
                                                   str(config_path)], env=subprocess_env(), check=False)  # fmt: skip
                assert approve.returncode == 0, approve.stderr
                assert b"approved by" in approve.stdout
        assert results[0]["status"] == "approved" and results[0]["reason"] == "ship it"

    shown = cli("show", rid, config=config_path)
    assert "Status    approved" in shown.stdout and "via console" in shown.stdout
    events = [json.loads(line) for line in cli("audit", "--format", "jsonl", config=config_path).stdout.splitlines()]
    assert [(e["event"], e["channel"], e["actor_kind"]) for e in events] == [
        ("created", "mcp", "agent"),
        ("approved", "console", "human"),
    ]
    assert events[0]["actor"] == "mcp"  # the stdio client's own name, as the transport reported it


async def test_two_processes_deciding_the_same_request_at_once(config_path: Path) -> None:
    for _ in range(4):
        rid = await file_request(config_path, NewRequest("deploy", "race"))
        argv = ["--config", str(config_path)]
        a = subprocess.Popen(
            [SIGNOFF, "approve", rid, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env()
        )
        b = subprocess.Popen([SIGNOFF, "reject", rid, "--reason", "no", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=subprocess_env())  # fmt: skip
        codes = sorted((a.wait(timeout=60), b.wait(timeout=60)))
        for p in (a, b):
            p.communicate()
        assert codes == [0, 3], codes  # one decision counted; the other was told "already decided"
        events = json.loads(cli("show", rid, "--json", config=config_path).stdout)["audit"]
        decisions = [e for e in events if e["event"] in ("approved", "rejected")]
        assert len(decisions) == 1


async def test_already_decided_is_reported_not_overwritten(config_path: Path) -> None:
    rid = await file_request(config_path, NewRequest("deploy", "x"))
    assert cli("reject", rid, "--reason", "no", config=config_path).returncode == 0
    again = cli("approve", rid, config=config_path)
    assert again.returncode == 3 and "was already rejected by" in again.stdout
    assert json.loads(cli("show", rid, "--json", config=config_path).stdout)["status"] == "rejected"


async def test_deadline_that_passed_while_no_server_ran(config_path: Path) -> None:
    rid = await file_request(config_path, NewRequest("deploy", "old"), created_ago=7200)
    assert "overdue" in cli("pending", config=config_path).stdout
    async with stdio_client(config_path, name=AGENT.name) as client:  # its own request: the same requester
        out = (await client.call_tool("check_decision", {"request_id": rid})).structured_content
    assert out is not None and out["status"] == "expired" and out["decided_by"] == "timeout"
    assert "expired" in cli("audit", "--request", rid, config=config_path).stdout


async def test_server_killed_while_pending_then_restarted(config_path: Path) -> None:
    async with serve(config_path) as server:
        async with http_client(server.url) as client:
            out = (await client.call_tool("request_approval", {"action": "deploy", "summary": "x"})).structured_content
        assert out is not None
        rid = out["request_id"]
        server.process.send_signal(signal.SIGKILL)
        with anyio.fail_after(10):
            await server.process.wait()
    async with serve(config_path) as server, http_client(server.url) as client:
        again = (await client.call_tool("check_decision", {"request_id": rid})).structured_content
        assert again is not None and again["status"] == "pending"
        assert cli("approve", rid, config=config_path).returncode == 0
        with anyio.fail_after(20):
            final = (
                await client.call_tool("check_decision", {"request_id": rid, "wait_seconds": 30})
            ).structured_content
        assert final is not None and final["status"] == "approved"


async def test_serve_stops_on_a_sigterm_that_comes_before_it_has_started_serving(config_path: Path) -> None:
    """A SIGTERM right after "listening on" (while the app is still being built, before uvicorn
    takes the signals over) stops the server; it used to be swallowed."""
    async with serve(config_path) as served:
        served.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(15):
            await served.process.wait()
    assert served.process.returncode == 0


async def test_http_requires_the_bearer_token(config_path: Path) -> None:
    token = "s3cret-token-for-tests"
    async with serve(config_path, SIGNOFF_HTTP_TOKEN=token) as server:
        base = server.url.removesuffix("/mcp")
        async with httpx.AsyncClient() as h:
            healthz = (await h.get(f"{base}/healthz")).json()
            assert (healthz["status"], healthz["waiting"], healthz["pending"], healthz["problems"]) == ("ok", 0, 0, [])
            denied = await h.post(server.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
            assert denied.status_code == 401
            wrong = await h.post(server.url, json={}, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
        async with http_client(server.url, token) as client:
            out = (await client.call_tool("request_approval", {"action": "deploy", "summary": "x"})).structured_content
        assert out is not None and out["status"] == "pending"
        shown = json.loads(cli("show", out["request_id"], "--json", config=config_path).stdout)
        assert shown["requested_by"] == "http-client"  # the identity bound to the token
    assert token not in "".join(server.stderr)


async def test_serve_refuses_a_public_address_without_a_token(write_config: Any) -> None:
    path = write_config('[server]\nhost = "0.0.0.0"\n[[routes]]\nname = "default"\n')
    res = cli("serve", config=path)
    assert res.returncode == 1
    assert "not a loopback address" in res.stderr and "SIGNOFF_HTTP_TOKEN" in res.stderr


@pytest.mark.parametrize("how", ["eof", "SIGTERM", "SIGINT"])
async def test_stdio_server_exits_promptly_and_releases_the_database(config_path: Path, how: str) -> None:
    db = load_config(config_path).db_path
    proc = subprocess.Popen([SIGNOFF, "mcp", "--config", str(config_path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env())  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
            "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}  # fmt: skip
    proc.stdin.write((json.dumps(init) + "\n").encode())
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline())["id"] == 1  # the server is up
    if how == "eof":
        proc.stdin.close()
    else:
        proc.send_signal(getattr(signal, how))
    code = proc.wait(timeout=10)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    assert code == 0
    assert write_lock_is_free(db)


async def test_console_commands(config_path: Path) -> None:
    assert cli("pending", config=config_path).stdout.strip() == "No pending requests."
    assert json.loads(cli("pending", "--json", config=config_path).stdout) == []
    missing = cli("show", "req_nope", config=config_path)
    assert missing.returncode == 1 and "unknown request id 'req_nope'" in missing.stderr
    no_reason = cli("reject", "req_x", config=config_path)
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    rid = await file_request(config_path, NewRequest("refund", "Refund order 7", {"order": 7}, {"amount": 30000}))
    shown = cli("show", rid, config=config_path).stdout
    assert "large-refunds" in shown and '"order": 7' in shown and "amount = 30000" in shown
    done = cli("approve", rid, "--json", config=config_path)
    assert json.loads(done.stdout)["status"] == "approved" and json.loads(done.stdout)["changed"] is True
    csv_out = cli("audit", "--format", "csv", "--since", "1h", config=config_path).stdout.splitlines()
    assert csv_out[0].startswith("seq,at,event,request_id") and len(csv_out) == 3
    assert cli("audit", "--since", "soon", config=config_path).returncode == 2
    assert json.loads(cli("show", rid, "--json", config=config_path).stdout)["status"] == Status.APPROVED.value


async def test_doctor(config_path: Path) -> None:
    res = cli("doctor", config=config_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "database" in res.stdout and "OK" in res.stdout
    assert "callbacks" not in res.stdout  # this config has none


def test_doctor_says_callbacks_need_their_secret(write_config: Any) -> None:
    path = write_config('[store]\npath = "d.db"\n[callbacks]\nallowed_hosts = ["hooks.example.com"]\n'
                        '[[routes]]\nname = "default"\n')  # fmt: skip
    res = cli("doctor", config=path)
    assert res.returncode == 1 and "callbacks $SIGNOFF_CALLBACK_SECRET is not set" in res.stdout


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT"])
async def test_http_server_exits_cleanly_on_signals_even_with_a_waiting_call(config_path: Path, how: str) -> None:
    db = load_config(config_path).db_path
    async with serve(config_path) as server, http_client(server.url) as client:
        out = (await client.call_tool("request_approval", {"action": "deploy", "summary": "x"})).structured_content
        assert out is not None
        polled: list[Any] = []
        async with anyio.create_task_group() as tg:

            async def long_poll() -> None:
                r = await client.call_tool("check_decision", {"request_id": out["request_id"], "wait_seconds": 50})
                polled.append(r.structured_content)

            tg.start_soon(long_poll)
            await anyio.wait_all_tasks_blocked()
            server.process.send_signal(getattr(signal, how))
            with anyio.fail_after(10):  # the long-poll alone would hold it for 50 s
                code = await server.process.wait()
        assert code == 0
        assert polled[0]["status"] == "pending"  # released at shutdown: still pending, never approved
        assert write_lock_is_free(db)
        assert "Traceback" not in "".join(server.stderr)


async def test_processes_starting_together_on_a_new_database(config_path: Path) -> None:
    # Several MCP clients often start their servers at once; the first opening of the file
    # (WAL switch, migrations) must not fail any of them.
    argv = [SIGNOFF, "approve", "req_nope", "--config", str(config_path)]
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
        for _ in range(6)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [1] * 6
    assert all("unknown request_id 'req_nope'" in err for _, err in outs), outs
