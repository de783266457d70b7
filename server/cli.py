"""The ``signoff`` command line.

Heavy libraries (the MCP SDK, uvicorn) are imported only by the commands that need them,
so the console commands start fast. This module and ``app.py`` are where the application is
wired together, so it is the one place in ``server`` that imports ``adapters``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from .errors import SignoffError

if TYPE_CHECKING:
    from .config import Config

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_DECIDED = 0, 1, 2, 3
CONFIG_HELP = (
    "config file, before or after the command (default: $SIGNOFF_CONFIG, else "
    "$XDG_CONFIG_HOME/signoff/signoff.toml if it exists, else the embedded default; never the current folder)"
)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    verbosity = argparse.ArgumentParser(add_help=False)
    verbosity.add_argument("-v", "--verbose", action="count", default=0,
                           help="log more on stderr: -v INFO, -vv DEBUG ($SIGNOFF_LOG_LEVEL, when set, wins)")  # fmt: skip
    p = argparse.ArgumentParser(prog="signoff", description="Let AI agents ask a human before they act.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("--config", dest="config_before", metavar="PATH", help=CONFIG_HELP)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("mcp", parents=[common, verbosity], help="serve MCP over stdio (what an MCP client starts)")
    s.add_argument("--identity", metavar="NAME", type=_identity,
                   help="file every request as NAME (default: [server] stdio_identity, else the client's own name)")  # fmt: skip
    s = sub.add_parser("serve", parents=[common, verbosity],
                       help="serve MCP over streamable HTTP at /mcp, with /healthz and /metrics")  # fmt: skip
    s.add_argument("--host", type=_host, help="listen on this address (overrides [server] host)")
    s.add_argument("--port", type=_port, help="listen on this port, 0 for any free one (overrides [server] port)")
    s.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="text (default), or json: one JSON object per line, for log shippers")  # fmt: skip
    sub.add_parser("check-config", parents=[common], help="validate the configuration and print the routes")
    s = sub.add_parser("pending", parents=[common], help="list pending requests")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s = sub.add_parser("show", parents=[common], help="show one request in full, with its audit trail")
    s.add_argument("id")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s = sub.add_parser("approve", parents=[common], help="approve a pending request")
    s.add_argument("id")
    s.add_argument("--reason", help="optional note recorded with the decision")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--as", dest="as_approver", metavar="NAME", help="vote as this approver (needed on quorum routes)")
    s = sub.add_parser("reject", parents=[common], help="reject a pending request")
    s.add_argument("id")
    s.add_argument("--reason", required=True, help="why (the agent is told)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--as", dest="as_approver", metavar="NAME", help="vote as this approver (needed on quorum routes)")
    s = sub.add_parser("grants", parents=[common], help="list live grants (with --all, ended ones too)")
    s.add_argument("--all", action="store_true", help="include expired, used-up and revoked grants")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s = sub.add_parser("revoke", parents=[common], help="end a grant now")
    s.add_argument("id", help="the grant's id (grt_…), as `signoff grants` lists it")
    s = sub.add_parser("audit", parents=[common], help="print the audit log (`audit verify`: check its hash chain)")
    s.add_argument(
        "verify", nargs="?", choices=("verify",), help="check the hash chain and name the first broken event"
    )
    s.add_argument("--file", metavar="PATH", help="with verify: check an `audit --format jsonl` export instead")
    s.add_argument("--since", metavar="DURATION", help="only events newer than this, e.g. 30m, 2d")
    s.add_argument("--request", metavar="ID", help="only this request's events")
    s.add_argument("--format", choices=("table", "jsonl", "csv"), default="table")
    s = sub.add_parser("status", parents=[common], help="who holds the bot, outbox backlog, pending, failing callbacks")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("schema", help="print the configuration's JSON Schema (for TOML editors)")
    sub.add_parser("doctor", parents=[common], help="check the configuration, the database and Telegram")
    s = sub.add_parser(
        "hook", parents=[common, verbosity], help="a Claude Code hook (PreToolUse, PermissionRequest): JSON on stdin"
    )
    s.add_argument(
        "--timeout",
        type=float,
        default=590,
        metavar="SECONDS",
        help="answer with the fallback after this long (default 590: under Claude Code's 600 s hook limit)",
    )
    s.add_argument(
        "--fallback",
        choices=("ask", "deny"),
        default="ask",
        help="the answer when nobody decided in time or anything fails: ask (hand it to the terminal; default) or deny",
    )
    s.add_argument("--identity", metavar="NAME", type=_identity,
                   help="file requests as NAME (default: [server] stdio_identity, else claude-code)")  # fmt: skip
    s = sub.add_parser("init", help="write a commented starter config")
    s.add_argument("--path", help="where to write it (default: $XDG_CONFIG_HOME/signoff/signoff.toml, "
                                  "i.e. ~/.config/signoff/signoff.toml, where every command looks)")  # fmt: skip
    s.add_argument("--telegram-user-id", type=int, help="your Telegram user id (send /start to your bot to learn it)")
    s.add_argument("--approver", default="me", help="your approver name (default: me)")
    s.add_argument("--force", action="store_true", help="overwrite an existing file")
    return p


def _identity(value: str) -> str:
    from .sanitize import has_control

    if not value.strip() or len(value) > 100 or has_control(value) is not None:
        raise argparse.ArgumentTypeError("an identity is 1–100 printable characters, e.g. 'claude-code@laptop'")
    return value


def _err(message: str) -> None:
    from .sanitize import visible

    print(f"signoff: {visible(message)}", file=sys.stderr)  # messages may quote agent text


def _host(value: str) -> str:
    if not value.strip() or any(c.isspace() for c in value) or len(value) > 253:
        raise argparse.ArgumentTypeError("a host is an address or name, e.g. 127.0.0.1, ::1 or 0.0.0.0")
    return value.removeprefix("[").removesuffix("]")  # [::1] as in a URL


def _port(value: str) -> int:
    if not value.isdigit() or int(value) > 65535:
        raise argparse.ArgumentTypeError("a port is a number from 0 to 65535 (0: any free one)")
    return int(value)


def _setup_logging(args: argparse.Namespace, *, quiet: bool) -> None:
    """Logs to stderr (stdout belongs to the MCP protocol under stdio): WARNING and up for the
    commands an MCP client runs (``quiet``), INFO for ``serve``; see ``logs.py``."""
    import logging

    from . import logs

    logs.setup(logging.WARNING if quiet else logging.INFO, verbose=getattr(args, "verbose", 0),
               fmt=getattr(args, "log_format", "text"))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--version"]:  # before parsing: no command is needed
        from .paths import package_version

        print(f"signoff {package_version()}")
        return EXIT_OK
    args = _parser().parse_args(argv)
    if getattr(args, "config", None) is None and args.config_before is not None:
        args.config = args.config_before  # `signoff --config PATH COMMAND`
    if args.command == "hook":  # every failure of a hook is a decision: it handles its own errors
        from .hook import run

        return run(args)  # sets up logging itself, on the path that can log
    try:
        if args.command in WITHOUT_CONFIG:
            return WITHOUT_CONFIG[args.command](args)
        from .config import load_config

        config = load_config(args.config)
        # uvicorn catches SIGINT/SIGTERM for `serve` itself; every other command is cancelled by them.
        return _run(COMMANDS[args.command](config, args), cancel_on_signals=args.command != "serve")
    except SignoffError as exc:
        _err(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def _run(coro: Coroutine[Any, Any, int], *, cancel_on_signals: bool = True) -> int:
    """Run ``coro``; SIGINT and SIGTERM cancel it, so every resource is closed on the way out."""
    import asyncio
    import signal

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        if cancel_on_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, task.cancel)
        try:
            return await coro
        except asyncio.CancelledError:
            return 0

    return asyncio.run(guarded())


def where(config: Config) -> str:
    """Which config (and why) and which database a command uses, for its first log line."""
    return f"config {config.source} ({config.origin}), database {config.db_path}"


# --- long-running servers ----------------------------------------------------------------


async def cmd_mcp(config: Config, args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from .app import open_app
    from .logs import mask_env
    from .mcp_tools import build_mcp

    _setup_logging(args, quiet=True)
    mask_env(config.telegram.token_env, config.server.auth_token_env, config.callbacks.secret_env)
    interrupted = False
    async with open_app(config) as app:
        identity = args.identity or config.server.stdio_identity
        logging.getLogger("signoff").info("signoff mcp (stdio): %s; requests filed as %s", where(config),
                                          identity or "the client's own name")  # fmt: skip
        mcp = build_mcp(app.service, transport="stdio", identity=identity, cwd=os.getcwd())
        server = asyncio.create_task(mcp.run_stdio_async())
        try:
            await asyncio.shield(server)  # returns at the end of stdin
        except asyncio.CancelledError:
            interrupted = True  # SIGINT/SIGTERM: _run cancelled us
            server.cancel()
    if interrupted:
        # The database is closed. The SDK's stdin reader sits in read() in a worker thread
        # that nothing can interrupt, and waiting for it would keep the process alive.
        sys.stderr.flush()
        os._exit(0)
    return EXIT_OK


async def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    import logging

    from .app import open_app
    from .http import http_token, serve
    from .logs import mask_env

    _setup_logging(args, quiet=False)
    mask_env(config.telegram.token_env, config.server.auth_token_env, config.callbacks.secret_env)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if overrides:  # --host/--port over [server] host/port
        config = config.model_copy(update={"server": config.server.model_copy(update=overrides)})
    token = http_token(config)  # before opening anything: refuse an unprotected public address
    logging.getLogger("signoff").info("signoff serve: %s", where(config))
    async with open_app(config) as app:
        await serve(app, token)
    return EXIT_OK


# --- console commands --------------------------------------------------------------------


async def cmd_check_config(config: Config, args: argparse.Namespace) -> int:
    from signoff.adapters.console import table

    from .durations import format_duration

    print(f"{config.source}: OK (chosen by {config.origin})")
    print(f"database: {config.db_path}")
    rows = []
    for r in config.routes:
        m = r.match.model_dump(by_alias=True, exclude_defaults=True) if r.match else {}
        decides = f"auto-{r.auto}" if r.auto else (", ".join(r.approvers) or "console")
        timeout = "-" if r.auto else format_duration(r.timeout or config.defaults.timeout)
        on_timeout = "-" if r.auto else (r.on_timeout or config.defaults.on_timeout)
        rows.append((r.name, json.dumps(m) if m else "(everything)", decides, timeout, on_timeout, _policy(r)))
    print(table(rows, ("ROUTE", "MATCH", "DECIDED BY", "TIMEOUT", "ON TIMEOUT", "POLICY")))
    from .config import identity_warnings

    for warning in identity_warnings(config):
        print(f"warning: {warning}")
    return EXIT_OK


def _policy(r: Any) -> str:
    """A route's policies in a few words, for check-config."""
    from .durations import format_duration

    parts = []
    if r.quorum > 1:
        parts.append(f"quorum {r.quorum}")
    if r.reject_quorum > 1:
        parts.append(f"reject_quorum {r.reject_quorum}")
    if r.reminder:
        parts.append(f"remind every {format_duration(r.reminder)}")
    parts += [f"+{'/'.join(lv.approvers)} at {format_duration(lv.after)}" for lv in r.escalation]
    if r.grant_options:
        parts.append(f"grants {'/'.join(r.grant_options)}")
    parts += [word for word, on in (("bulk", r.allow_bulk), ("urgent", r.urgent), ("self-approval", r.allow_self_approval),
                                    ("callback", r.callback_url)) if on]  # fmt: skip
    return ", ".join(parts) or "-"


async def _with_service(config: Config, fn: Callable[[Any], Awaitable[int]]) -> int:
    from .app import open_app

    async with open_app(config, background=False) as app:
        return await fn(app.service)


# Commands that do not load the configuration: the read-only ones (plain sqlite3, no event
# loop: they must start fast) and init.


def cmd_pending(args: argparse.Namespace) -> int:
    from signoff.adapters.console import format_pending, request_json

    from . import readonly

    with readonly.connect(readonly.db_path(args.config)) as conn:
        reqs = readonly.pending(conn)
    print(json.dumps([request_json(r) for r in reqs], indent=2) if args.json else format_pending(reqs, time.time()))
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from signoff.adapters.console import audit_rows, format_request, request_json, safe_json

    from . import readonly

    with readonly.connect(readonly.db_path(args.config)) as conn:
        req = readonly.get(conn, args.id)
        events = readonly.audit(conn, request_id=req.id)
        votes = readonly.votes(conn, req.id)
        callback = readonly.callback_state(conn, req.id)
    if args.json:
        extra = {"votes": votes, "callback": callback, "audit": audit_rows(events)}
        print(safe_json({**request_json(req), **extra}, indent=2))
    else:
        print(format_request(req, events, time.time(), votes, callback))
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    from signoff.adapters.console import format_audit

    from . import readonly
    from .durations import parse_duration

    if args.verify:
        return _verify_audit(args)
    try:
        since = None if args.since is None else time.time() - parse_duration(args.since)
    except ValueError as exc:
        _err(f"--since: {exc}")
        return EXIT_USAGE
    with readonly.connect(readonly.db_path(args.config)) as conn:
        out = format_audit(readonly.audit(conn, since, args.request), args.format)
    if out:
        print(out)
    return EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    from .setup_commands import cmd_init as init

    return init(args)


def cmd_schema(args: argparse.Namespace) -> int:
    from .setup_commands import cmd_schema as schema

    return schema(args)


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


def _verify_audit(args: argparse.Namespace) -> int:
    """``signoff audit verify [--file EXPORT]``: exit 0 when the chain holds, 1 naming the first broken event."""
    from . import audit_chain

    ok, message = audit_chain.verify_source(args.config, args.file)
    print(message)
    return EXIT_OK if ok else EXIT_ERROR


async def _decide(config: Config, args: argparse.Namespace, approve: bool) -> int:
    from signoff.adapters.console import decide, request_json

    async def go(service: Any) -> int:
        changed, message = await decide(service, args.id, approve, args.reason, args.as_approver)
        if args.json:
            print(json.dumps({**request_json(await service.get(args.id)), "changed": changed}, indent=2))
        else:
            print(message)
        return EXIT_OK if changed else EXIT_NOT_DECIDED

    return await _with_service(config, go)


async def cmd_approve(config: Config, args: argparse.Namespace) -> int:
    return await _decide(config, args, True)


async def cmd_reject(config: Config, args: argparse.Namespace) -> int:
    return await _decide(config, args, False)


async def cmd_grants(config: Config, args: argparse.Namespace) -> int:
    from signoff.adapters.console import format_grants, grant_json

    async def go(service: Any) -> int:
        found = await service.list_grants(everything=args.all)
        now = service.clock()
        print(json.dumps([grant_json(g, now) for g in found], indent=2) if args.json else format_grants(found, now))
        return EXIT_OK

    return await _with_service(config, go)


async def cmd_revoke(config: Config, args: argparse.Namespace) -> int:
    from signoff.adapters.console import console_actor

    async def go(service: Any) -> int:
        if await service.revoke_grant(args.id, console_actor()):
            print(f"{args.id} revoked.")
            return EXIT_OK
        print(f"{args.id} had already ended; nothing changed.")
        return EXIT_NOT_DECIDED

    return await _with_service(config, go)


async def cmd_doctor(config: Config, args: argparse.Namespace) -> int:
    from . import health
    from .http import is_loopback

    problems = 0
    print(f"config    {config.source}: OK ({len(config.routes)} routes, {len(config.approvers)} approvers; "
          f"chosen by {config.origin})")  # fmt: skip

    async def go(service: Any) -> int:
        pending = await service.store.list_requests(status=None, limit=1_000_000)
        open_ = sum(1 for r in pending if not r.status.final)
        print(f"database  {config.db_path}: OK ({len(pending)} requests, {open_} pending)")
        state = await health.collect(service.store, service.clock())
        for topic, text in state.lines():
            print(f"{topic:<10}{text}")
        for problem in state.problems():
            print(f"problem   {problem}")
        return len(state.problems())

    problems += await _with_service(config, go)
    mode = config.db_path.stat().st_mode & 0o777
    if mode & 0o077:
        problems += 1
        print(f"database  permissions are {mode:o}; run: chmod 600 {config.db_path}")
    env = config.server.auth_token_env
    has_token = bool(env and os.environ.get(env))
    if not is_loopback(config.server.host) and not has_token:
        problems += 1
        print(
            f"http      {config.server.host} is not loopback and ${env} is empty: `signoff serve` will refuse to start"
        )
    else:
        print(
            f"http      {config.server.host}:{config.server.port} ({'bearer token set' if has_token else 'no token, loopback only'})"
        )
    callbacks = config.callbacks
    uses_callbacks = bool(callbacks.prefixes()) or any(r.callback_url for r in config.routes)
    if uses_callbacks and not os.environ.get(callbacks.secret_env, "").strip():
        problems += 1
        print(f"callbacks ${callbacks.secret_env} is not set: requests with a callback_url are refused; set it to a "
              "long random secret your receivers share")  # fmt: skip
    elif uses_callbacks:
        print(f"callbacks signed with ${callbacks.secret_env}; allowed: "
              f"{', '.join(p.label for p in callbacks.prefixes()) or 'none'}")  # fmt: skip
    for warning in callbacks.deprecations():
        print(f"callbacks warning: {warning}")
    tg = config.telegram.token_env
    token = os.environ.get(tg, "").strip()
    if not token:
        print(f"telegram  ${tg} is not set: console channel only (set it to a token from @BotFather to use Telegram)")
    else:
        from signoff.adapters.telegram.doctor import check

        for ok, line in await check(config, token):
            problems += 0 if ok else 1
            print(f"telegram  {line}")
    return EXIT_OK if problems == 0 else EXIT_ERROR


COMMANDS: dict[str, Callable[[Config, argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "mcp": cmd_mcp,
    "serve": cmd_serve,
    "check-config": cmd_check_config,
    "approve": cmd_approve,
    "reject": cmd_reject,
    "doctor": cmd_doctor,
    "grants": cmd_grants,
    "revoke": cmd_revoke,
}


WITHOUT_CONFIG: dict[str, Callable[[argparse.Namespace], int]] = {
    "pending": cmd_pending,
    "show": cmd_show,
    "audit": cmd_audit,
    "init": cmd_init,
    "schema": cmd_schema,
    "status": cmd_status,
}


if __name__ == "__main__":
    sys.exit(main())
