"""``signoff hook``: Claude Code's PreToolUse / PermissionRequest hook, which never falls through.

Claude Code treats a hook that exits 1 (or prints nothing on PreToolUse) as "no opinion" and
runs the tool. So every way this command can end is a decision: an approval (only when a
human — or the operator's route — approved exactly this call), a rejection, or the
``--fallback`` answer ("ask" hands it to the terminal, "deny" refuses) printed as hook JSON
with exit 0 — for bad input, a bad config, an unusable database, a timeout or any exception.
If even printing that fails, the process exits 2 (Claude Code's blocking code) with the reason
on stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import claude_code
from .errors import RequestError, SignoffError
from .intake import MAX_KEY
from .models import Actor, ApprovalRequest, Status

if TYPE_CHECKING:
    import argparse

    from .app import App

# Imports are kept to what a call decided at once needs (``quick``): the full path below
# imports the service, pydantic, aiosqlite and asyncio, and Telegram only while a request is
# pending.

HANDLED = ("PreToolUse", "PermissionRequest")
DEFAULT_IDENTITY = "claude-code"
EXIT_BLOCK = 2
MAX_STDIN = 8_000_000  # characters; a tool call's input is bounded far below (details ≤ 64 KiB)


class BadInput(Exception):
    """The hook's stdin is not what Claude Code sends."""


@dataclass(frozen=True, slots=True)
class HookEvent:
    name: str
    tool_name: str
    tool_input: dict[str, Any]
    tool_use_id: str | None
    session: str | None
    cwd: str | None


def load(raw: str) -> Any:
    """The JSON on stdin, parsed once (``BadInput`` when it is not JSON)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise BadInput("stdin is not JSON (Claude Code sends the hook's JSON object there)") from None


def parse_event(event: Any) -> HookEvent | str:
    """The event, or the name of an event this hook does not decide (it stays silent)."""
    if not isinstance(event, dict):
        raise BadInput("stdin is not a JSON object")
    name = event.get("hook_event_name", "PreToolUse")
    if not isinstance(name, str):
        raise BadInput("hook_event_name is not a string")
    if name not in HANDLED:
        return name
    tool_name, tool_input = event.get("tool_name"), event.get("tool_input")
    if not isinstance(tool_name, str) or not tool_name:
        raise BadInput("tool_name is missing or not a string")
    if not isinstance(tool_input, dict):
        # Never ask a human about an input we could not read: they would approve something else.
        raise BadInput("tool_input is missing or not an object")
    tool_use_id, session, cwd = event.get("tool_use_id"), event.get("session_id"), event.get("cwd")
    if tool_use_id is not None and (not isinstance(tool_use_id, str) or len(tool_use_id) > MAX_KEY - 20):
        raise BadInput("tool_use_id is not a short string")
    if session is not None and not isinstance(session, str):
        raise BadInput("session_id is not a string")
    if cwd is not None and (not isinstance(cwd, str) or not cwd.startswith("/")):
        raise BadInput("cwd is not an absolute path")
    # Claude Code names its session in every hook event: "session" grants follow it.
    return HookEvent(name, tool_name, tool_input, tool_use_id or None, f"cc_{session}"[:200] if session else None,
                     cwd)  # fmt: skip


def _event_name(event: Any) -> str:
    """The event to answer for, as far as it can be told from broken input (else PreToolUse)."""
    name = event.get("hook_event_name") if isinstance(event, dict) else None
    return name if name in HANDLED else "PreToolUse"


def decide_at_once(event: HookEvent, args: argparse.Namespace) -> ApprovalRequest | None:
    """The fast path (``quick``): the request when its route decided it at once, else None."""
    from .quick import file_at_once

    new = claude_code.tool_request(event.tool_name, event.tool_input, event.tool_use_id, event.cwd)
    return file_at_once(args.config, new, args.identity, DEFAULT_IDENTITY, event.session)


async def decide(event: HookEvent, args: argparse.Namespace) -> tuple[ApprovalRequest | None, str]:
    """File the tool call, wait for a human; (the request, a note for when there is no decision)."""
    import asyncio
    import logging

    from .app import open_app
    from .config_cache import load_and_save

    config = load_and_save(args.config)  # validated in full; the next call can take the fast path
    identity = args.identity or config.server.stdio_identity or DEFAULT_IDENTITY
    requester = Actor("agent", identity, "hook")
    new = claude_code.tool_request(event.tool_name, event.tool_input, event.tool_use_id, event.cwd)
    async with open_app(config, background=False) as app:
        req = await app.service.request_approval(new, requester, session=event.session)
        if req.status.final:  # decided at once (a route, a grant): no bot, no Telegram connection
            return req, ""
        async with app.background():  # pending: watch for decisions, and run the bot if it is free
            if not os.environ.get(config.telegram.token_env, "").strip() and (lost := await _no_bot(app, req.id)):
                logging.getLogger("signoff.hook").warning(
                    "%s: %s", req.id, lost
                )  # this process cannot hold it either: say so at once
            try:
                async with asyncio.timeout(max(1.0, args.timeout)):
                    req = await claude_code.wait_for_human(app.service, req, within=None, on_progress=None)
            except TimeoutError:
                req = await app.service.cancel(req.id, requester, "the hook timed out")
                if req.status is Status.CANCELLED:  # withdrawn by us: the fallback answers
                    lost = await _no_bot(app, req.id)
                    return None, f"No decision within {args.timeout:.0f} s." + (f" {lost}" if lost else "")
    return req, ""


async def _no_bot(app: App, request_id: str) -> str | None:
    """Why no prompt can have reached a phone: it has prompts on a channel no process holds."""
    from . import health

    rows = await app.store.read("SELECT DISTINCT channel FROM outbox WHERE request_id = ? AND kind = 'prompt'",
                                (request_id,))  # fmt: skip
    channels = {str(r[0]) for r in rows}
    if not channels:
        return None  # nobody to prompt in a chat (console-only approvers)
    state = await health.collect(app.store, app.service.clock())
    if "telegram" in channels and not state.bot_live:
        return ("No signoff process holds the Telegram bot, so no prompt reached a phone; run `signoff serve` with "
                "SIGNOFF_TELEGRAM_TOKEN set (docs/operations.md), and `signoff status` to check.")  # fmt: skip
    if "slack" in channels and not state.slack_live:
        return ("No signoff process holds the Slack connection, so no prompt reached Slack; run `signoff serve` with "
                "SIGNOFF_SLACK_BOT_TOKEN and SIGNOFF_SLACK_APP_TOKEN set (docs/slack.md), and `signoff status` "
                "to check.")  # fmt: skip
    return None


def _setup_logging(args: argparse.Namespace) -> None:
    """Warnings and errors on stderr (``-v``: more); only on the full path, the fast one logs nothing."""
    import logging

    from . import logs

    logs.setup(logging.WARNING, verbose=getattr(args, "verbose", 0), fmt="text")


def run(args: argparse.Namespace) -> int:
    """The whole hook: read stdin, decide, print. Returns the exit code (0, or 2 if printing failed)."""
    raw = ""
    name = "PreToolUse"
    out: dict[str, Any] | None
    try:
        raw = sys.stdin.read(MAX_STDIN + 1)
        if len(raw) > MAX_STDIN:
            raise BadInput(f"stdin is larger than {MAX_STDIN // 1_000_000} MB")
        event = load(raw)
        name = _event_name(event)
        parsed = parse_event(event)
        if isinstance(parsed, str):
            print(f"signoff: hook: {parsed[:50]!r} is not handled; use signoff for PreToolUse or PermissionRequest "
                  "hooks", file=sys.stderr)  # fmt: skip
            return 0  # not a tool call: nothing to decide
        req, note = decide_at_once(parsed, args), ""
        if req is None:
            import asyncio

            _setup_logging(args)
            req, note = asyncio.run(decide(parsed, args))
        out = claude_code.hook_output(name, req, args.fallback, note)
    except (Exception, KeyboardInterrupt) as exc:  # every failure is the fallback decision
        out = claude_code.hook_output(name, None, args.fallback, _why(exc))
        print(f"signoff: hook: {exc if isinstance(exc, SignoffError) else _why(exc)}", file=sys.stderr)
    try:
        if out is not None:
            sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
    except Exception as exc:
        print(f"signoff: hook: cannot answer Claude Code ({type(exc).__name__}); blocking the tool call",
              file=sys.stderr)  # fmt: skip
        with contextlib.suppress(OSError):  # so the interpreter's last flush cannot change the exit code
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BLOCK
    return 0


def _why(exc: BaseException) -> str:
    if isinstance(exc, BadInput):
        return f"signoff could not read the hook input: {exc}."
    if isinstance(exc, RequestError):
        return f"signoff refused to file the request: {str(exc)[:300]}."
    if isinstance(exc, SignoffError):
        return f"signoff cannot decide: {str(exc).splitlines()[0][:300]}"
    return f"signoff failed ({type(exc).__name__}); no decision."
