"""Logs: quiet hooks and ``signoff mcp``, ``-v``/``-vv``, ``serve --log-format json``, ``--host``/
``--port``, and no secret in any line — from real processes, except the formatter's own checks."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from anyio.streams.text import TextReceiveStream

from signoff.server import logs

from .conftest import SIGNOFF, subprocess_env
from .fake_telegram import FakeTelegram
from .procs import serve
from .test_telegram import ALICE, telegram_config

pytestmark = pytest.mark.anyio
BOT_TOKEN = "7123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw9"  # the shape of a real one; not one


def env(**extra: str) -> dict[str, str]:
    """A child's environment with no $SIGNOFF_LOG_LEVEL: each command's own default applies."""
    out = subprocess_env(**extra)
    if "SIGNOFF_LOG_LEVEL" not in extra:
        del out["SIGNOFF_LOG_LEVEL"]
    return out


@pytest.fixture
def root_logging() -> Iterator[None]:
    """``logs.setup`` configures the root logger: put it back as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in logs.QUIET}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in quiet.items():
        logging.getLogger(name).setLevel(old)


def test_json_lines_and_scrubbed_secrets(root_logging: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNOFF_HTTP_TOKEN", "bearer-secret-123456")
    monkeypatch.delenv("SIGNOFF_LOG_LEVEL", raising=False)
    out = io.StringIO()
    assert logs.setup(logging.INFO, fmt="json", stream=out) == logging.INFO
    log = logging.getLogger("signoff.test")
    log.debug("not shown at INFO")
    log.info("calling https://api.telegram.org/bot%s/getMe with bearer-secret-123456", BOT_TOKEN)
    try:
        raise RuntimeError(f"POST https://api.telegram.org/bot{BOT_TOKEN}/sendMessage failed")
    except RuntimeError:
        log.exception("delivery failed")
    logging.getLogger("httpx").info("HTTP Request: POST https://api.telegram.org/bot%s/getUpdates", BOT_TOKEN)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(x["level"], x["logger"]) for x in lines] == [("INFO", "signoff.test"), ("ERROR", "signoff.test")]
    assert set(lines[0]) == {"ts", "level", "logger", "message"} and lines[0]["ts"].endswith("Z")
    assert lines[0]["message"] == "calling https://api.telegram.org/bot<telegram-token>/getMe with <secret>"
    assert "Traceback" in lines[1]["exception"] and "bot<telegram-token>/sendMessage" in lines[1]["exception"]
    assert BOT_TOKEN not in out.getvalue() and "bearer-secret-123456" not in out.getvalue()


def test_levels(root_logging: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIGNOFF_LOG_LEVEL", raising=False)
    assert [logs.level_for(v, logging.WARNING) for v in (0, 1, 2, 5)] == [30, 20, 10, 10]
    assert [logs.level_for(v, logging.INFO) for v in (0, 1, 2)] == [20, 10, 10]
    monkeypatch.setenv("SIGNOFF_LOG_LEVEL", "error")
    assert logs.setup(logging.INFO, verbose=2, stream=io.StringIO()) == logging.ERROR  # the variable wins
    monkeypatch.setenv("SIGNOFF_LOG_LEVEL", "loud")
    err = io.StringIO()
    assert logs.setup(logging.WARNING, verbose=1, stream=err) == logging.INFO
    assert "$SIGNOFF_LOG_LEVEL='loud' is not a log level" in err.getvalue()
    assert logging.getLogger("httpx").level == logging.WARNING  # whatever the level


def run_mcp(config: Path, *args: str) -> str:
    """Run `signoff mcp` until the end of its (empty) input; its stderr."""
    out = subprocess.run([SIGNOFF, "mcp", "--config", str(config), *args], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, env=env(), timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""  # stdout belongs to the protocol
    return out.stderr


def test_mcp_is_quiet_unless_asked(config_path: Path) -> None:
    assert run_mcp(config_path) == ""
    info = run_mcp(config_path, "-v")
    assert "INFO signoff: signoff mcp (stdio)" in info and " DEBUG " not in info
    assert " DEBUG aiosqlite: " in run_mcp(config_path, "-vv")


def tool_call(use_id: str) -> str:
    return json.dumps({"session_id": "s", "hook_event_name": "PreToolUse", "tool_name": "Bash",
                       "tool_input": {"command": "make deploy"}, "tool_use_id": use_id, "cwd": "/tmp"})  # fmt: skip


def test_hook_is_quiet_unless_asked(config_path: Path) -> None:
    def hook(*args: str) -> str:  # a new tool call each time (a repeated tool_use_id is the same request)
        out = subprocess.run([SIGNOFF, "hook", "--config", str(config_path), "--timeout", "1", *args],
                             input=tool_call(f"t{os.urandom(4).hex()}"), capture_output=True, text=True, env=env(),
                             timeout=60)  # fmt: skip
        assert out.returncode == 0 and "permissionDecision" in json.loads(out.stdout)["hookSpecificOutput"]
        return out.stderr

    assert " INFO " not in hook() and " DEBUG " not in hook()
    assert " INFO signoff: telegram:" in hook("-v")
    assert " DEBUG " in hook("--verbose", "--verbose")


def free_port() -> int:
    """A loopback port that nothing listens on and that the kernel hands to nobody else for a while, so
    that tests running alongside (pytest-xdist) cannot take it before ``signoff serve`` binds it: a
    connection accepted on it and closed by this side first leaves it in TIME_WAIT, which keeps it out of
    the kernel's choices (bind to port 0, outgoing connections) while a socket with SO_REUSEADDR, as
    ``signoff serve`` binds, can still take it."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = int(listener.getsockname()[1])
        with socket.create_connection(("127.0.0.1", port)):
            accepted, _ = listener.accept()
            accepted.close()
    return port


async def test_serve_json_logs_and_host_port_flags(config_path: Path) -> None:
    port = free_port()
    argv = [SIGNOFF, "serve", "--config", str(config_path), "--log-format", "json", "--host", "127.0.0.1",
            "--port", str(port)]  # fmt: skip
    seen = ""
    async with await anyio.open_process(argv, env=env(), stdin=subprocess.DEVNULL) as proc:
        assert proc.stderr is not None
        stream = TextReceiveStream(proc.stderr)
        with anyio.fail_after(30):
            while f"listening on http://127.0.0.1:{port}/mcp" not in seen:
                seen += await stream.receive()
        async with httpx.AsyncClient() as h:
            assert (await h.get(f"http://127.0.0.1:{port}/healthz")).json()["status"] == "ok"
            assert (await h.get(f"http://127.0.0.1:{port}/metrics")).status_code == 200  # loopback, no token
        proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(10):
            async for chunk in stream:
                seen += chunk
            assert await proc.wait() == 0
    lines = [json.loads(line) for line in seen.splitlines()]  # every line is one JSON object
    assert all({"ts", "level", "logger", "message"} <= set(x) for x in lines)
    assert any(x["message"].startswith("database: ") for x in lines)
    refused = subprocess.run([SIGNOFF, "serve", "--config", str(config_path), "--host", "0.0.0.0"],
                             capture_output=True, text=True, env=env(), timeout=60)  # fmt: skip
    assert refused.returncode == 1 and "'0.0.0.0' is not a loopback address" in refused.stderr
    bad = subprocess.run([SIGNOFF, "serve", "--port", "70000"], capture_output=True, text=True, env=env(), timeout=60)
    assert bad.returncode == 2 and "a port is a number from 0 to 65535" in bad.stderr


async def test_no_token_in_debug_logs_of_serve_or_hook(fake: FakeTelegram, tmp_path: Path) -> None:
    """At DEBUG, with the bot running on the (fake) Bot API, whose URLs carry the token."""
    config_path = tmp_path / "signoff.toml"
    config_path.write_text(telegram_config(fake.api_base_url))
    async with serve(config_path, SIGNOFF_TELEGRAM_TOKEN=fake.token, SIGNOFF_LOG_LEVEL="DEBUG") as served:
        await served.wait_for_log("this process runs the bot now")
        await fake.wait_for(lambda: len(fake.sent("getUpdates")) >= 1)
    assert " DEBUG " in "".join(served.stderr)
    assert fake.token not in "".join(served.stderr)

    proc = subprocess.Popen([SIGNOFF, "hook", "-vv", "--config", str(config_path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(SIGNOFF_TELEGRAM_TOKEN=fake.token))  # fmt: skip
    try:
        assert proc.stdin is not None
        proc.stdin.write(tool_call("t1"))
        proc.stdin.close()
        proc.stdin = None
        prompt = await fake.wait_for(lambda: next((m for m in fake.chat(ALICE) if m.buttons()), None), within=30)
        await fake.press(ALICE, prompt, prompt.button("Approve"))
        out, err = await anyio.to_thread.run_sync(lambda: proc.communicate(timeout=60))  # the fake runs meanwhile
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert json.loads(out)["hookSpecificOutput"]["permissionDecision"] == "allow", err
    assert " DEBUG " in err and "sendMessage" in err
    assert fake.token not in err
