"""The console commands: ``pending``, ``show``, ``audit``, ``status`` read the database;
``approve``, ``reject``, ``answer``, ``grants``, ``revoke`` go through the service.

The read-only ones use plain ``sqlite3``, no event loop and no configuration model: they
start fast. How requests, grants and the audit log look on a terminal is the console
adapter's business; the command line (the composition root) passes it in as a ``Console``,
so this module imports no adapter.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse
    from collections.abc import Awaitable, Callable, Sequence
    from typing import Protocol

    from .config import Config
    from .grant_models import Grant
    from .models import Actor, ApprovalRequest, AuditEvent
    from .service import ApprovalService

    class Console(Protocol):
        """What these commands need of the console adapter (``signoff.adapters.console``)."""

        def console_actor(self) -> Actor: ...
        def table(self, rows: Sequence[Sequence[str]], headers: Sequence[str], /) -> str: ...
        def request_json(self, req: ApprovalRequest, /) -> dict[str, Any]: ...
        def audit_rows(self, events: Sequence[AuditEvent], /) -> list[dict[str, Any]]: ...
        def grant_json(self, g: Grant, now: float, /) -> dict[str, Any]: ...
        def format_pending(self, requests: Sequence[ApprovalRequest], now: float, /) -> str: ...
        def format_grants(self, grants: Sequence[Grant], now: float, /) -> str: ...
        def format_audit(self, events: Sequence[AuditEvent], fmt: str, /) -> str: ...
        def format_request(self, req: ApprovalRequest, events: Sequence[AuditEvent], now: float,
                           votes: Sequence[dict[str, Any]], callback: dict[str, Any] | None, /) -> str: ...  # fmt: skip
        async def decide(self, service: ApprovalService, request_id: str, approve: bool, reason: str | None,
                         as_approver: str | None, edited: tuple[Any] | None = None, /) -> tuple[bool, str]: ...  # fmt: skip
        async def answer(self, service: ApprovalService, request_id: str, text: str,
                         as_approver: str | None, /) -> tuple[bool, str]: ...  # fmt: skip


EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_DECIDED = 0, 1, 2, 3  # every command's exit codes


def print_error(message: str) -> None:
    """A command's error, on stderr, its control characters escaped."""
    from .sanitize import visible

    print(f"signoff: {visible(message)}", file=sys.stderr)  # messages may quote agent text


# --- read-only: plain sqlite3 ----------------------------------------------------------------


def cmd_pending(args: argparse.Namespace, console: Console) -> int:
    from . import readonly

    with readonly.connect(readonly.db_path(args.config)) as conn:
        reqs = readonly.pending(conn)
    print(json.dumps([console.request_json(r) for r in reqs], indent=2) if args.json
          else console.format_pending(reqs, time.time()))  # fmt: skip
    return EXIT_OK


def cmd_show(args: argparse.Namespace, console: Console) -> int:
    from . import readonly
    from .sanitize import json_visible

    with readonly.connect(readonly.db_path(args.config)) as conn:
        req = readonly.get(conn, args.id)
        events = readonly.audit(conn, request_id=req.id)
        votes = readonly.votes(conn, req.id)
        callback = readonly.callback_state(conn, req.id)
    if args.json:
        extra = {"votes": votes, "callback": callback, "audit": console.audit_rows(events)}
        print(json_visible({**console.request_json(req), **extra}, indent=2))
    else:
        print(console.format_request(req, events, time.time(), votes, callback))
    return EXIT_OK


def cmd_audit(args: argparse.Namespace, console: Console) -> int:
    from . import readonly
    from .durations import parse_duration

    if args.verify:
        return _verify_audit(args)
    try:
        since = None if args.since is None else time.time() - parse_duration(args.since)
    except ValueError as exc:
        print_error(f"--since: {exc}")
        return EXIT_USAGE
    with readonly.connect(readonly.db_path(args.config)) as conn:
        out = console.format_audit(readonly.audit(conn, since, args.request), args.format)
    if out:
        print(out)
    return EXIT_OK


def _verify_audit(args: argparse.Namespace) -> int:
    """``signoff audit verify [--file EXPORT]``: exit 0 when the chain holds, 1 naming the first broken event."""
    from . import audit_chain

    ok, message = audit_chain.verify_source(args.config, args.file)
    print(message)
    return EXIT_OK if ok else EXIT_ERROR


def cmd_status(args: argparse.Namespace) -> int:
    """Exit 0 when prompts can flow, 1 naming each problem."""
    from . import health, readonly

    with readonly.connect(readonly.db_path(args.config)) as conn:
        state = health.read(conn)
    if args.json:
        print(json.dumps(state.as_json(), indent=2))
    else:
        print("\n".join(f"{topic:<10}{text}" for topic, text in state.lines()))
        for problem in state.problems():
            print(f"problem   {problem}")
    return EXIT_ERROR if state.problems() else EXIT_OK


# --- through the service -----------------------------------------------------------------


async def _with_service(config: Config, fn: Callable[[ApprovalService], Awaitable[int]]) -> int:
    from .app import open_app

    async with open_app(config, background=False) as app:
        return await fn(app.service)


async def cmd_decide(config: Config, args: argparse.Namespace, console: Console, approve: bool) -> int:
    """``approve`` and ``reject``: 0 when this vote changed the request, 3 when it did not.
    ``approve --edit FILE`` approves the JSON object in FILE (``-``: stdin) instead of the agent's
    details; a file that is not one decides nothing."""
    edited: tuple[Any] | None = None
    if getattr(args, "edit", None) is not None:
        try:
            edited = (read_edit(args.edit),)
        except ValueError as exc:
            print_error(f"--edit {args.edit}: {exc}; nothing was decided")
            return EXIT_USAGE

    async def go(service: ApprovalService) -> int:
        changed, message = await console.decide(service, args.id, approve, args.reason, args.as_approver, edited)
        return await _outcome(service, console, args, changed, message)

    return await _with_service(config, go)


async def cmd_answer(config: Config, args: argparse.Namespace, console: Console) -> int:
    """``answer ID TEXT`` or ``answer ID --option N``: 0 when this answered the question, 3 when
    it had already been answered (or had ended)."""
    if (args.text is None) == (args.option is None):
        print_error("give the answer as text, or pick an option with --option N (one of the two)")
        return EXIT_USAGE

    async def go(service: ApprovalService) -> int:
        text = args.text
        if args.option is not None:
            offered = (await service.get(args.id)).options or []
            if not 1 <= args.option <= len(offered):
                print_error(f"--option {args.option}: request {args.id} offers {len(offered)} options; "
                            "see them with signoff show")  # fmt: skip
                return EXIT_USAGE
            text = offered[args.option - 1]
        changed, message = await console.answer(service, args.id, text, args.as_approver)
        return await _outcome(service, console, args, changed, message)

    return await _with_service(config, go)


async def _outcome(service: ApprovalService, console: Console, args: argparse.Namespace, changed: bool,
                   message: str) -> int:  # fmt: skip
    """What ``approve``, ``reject`` and ``answer`` print (``--json``: the request and ``changed``),
    and their exit code: 0 when this command decided, 3 when it did not."""
    if args.json:
        print(json.dumps({**console.request_json(await service.get(args.id)), "changed": changed}, indent=2))
    else:
        print(message)
    return EXIT_OK if changed else EXIT_NOT_DECIDED


def read_edit(path: str) -> dict[str, Any]:
    """The edited details in ``path`` (``-``: stdin): a JSON object, else ValueError saying why."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read it ({exc})") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"the new details must be a JSON object, not {type(value).__name__}")
    return value


async def cmd_grants(config: Config, args: argparse.Namespace, console: Console) -> int:
    async def go(service: ApprovalService) -> int:
        found = await service.list_grants(everything=args.all)
        now = service.clock()
        print(json.dumps([console.grant_json(g, now) for g in found], indent=2) if args.json
              else console.format_grants(found, now))  # fmt: skip
        return EXIT_OK

    return await _with_service(config, go)


async def cmd_revoke(config: Config, args: argparse.Namespace, console: Console) -> int:
    async def go(service: ApprovalService) -> int:
        if await service.revoke_grant(args.id, console.console_actor()):
            print(f"{args.id} revoked.")
            return EXIT_OK
        print(f"{args.id} had already ended; nothing changed.")
        return EXIT_NOT_DECIDED

    return await _with_service(config, go)
