"""The ``signoff`` command line: which code (with which adapters) runs each command; the
arguments are in ``cli_parser``.

The commands themselves live beside what they use: ``hook`` (Claude Code's hook),
``serve_commands`` (``mcp``, ``serve``), ``console_commands`` (``pending``, ``show``, ``audit``,
``status``, ``approve``, ``reject``, ``grants``, ``revoke``), ``doctor`` (``check-config``,
``doctor``) and ``setup_commands`` (``init``, ``schema``). Heavy libraries (the MCP SDK,
uvicorn) are imported only by the commands that need them, so the console commands start fast.
This module and ``app.py`` are where the application is wired together, so it is the one place
in ``server`` that imports ``adapters``: it hands them to the commands.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from .cli_parser import build_parser
from .errors import SignoffError

if TYPE_CHECKING:
    from .config import Config
    from .console_commands import Console


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--version"]:  # before parsing: no command is needed
        from .paths import package_version

        print(f"signoff {package_version()}")
        return 0
    args = build_parser().parse_args(argv)
    if getattr(args, "config", None) is None and args.config_before is not None:
        args.config = args.config_before  # `signoff --config PATH COMMAND`
    if args.command == "hook":  # every failure of a hook is a decision: it handles its own errors
        from .hook import run

        return run(args)  # sets up logging itself, on the path that can log
    from .console_commands import EXIT_ERROR, print_error

    try:
        if (without_config := _without_config().get(args.command)) is not None:
            return without_config(args)
        from .config import load_config

        config = load_config(args.config)
        # uvicorn catches SIGINT/SIGTERM for `serve` itself; every other command is cancelled by them.
        return _run(_with_config()[args.command](config, args), cancel_on_signals=args.command != "serve")
    except SignoffError as exc:
        print_error(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `signoff show ID | head`: the reader left; say nothing more
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


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


# --- wiring: each command with the adapters it needs -------------------------------------


def _console() -> Console:
    """The console adapter: how requests, grants, the audit log and the routes look on a terminal."""
    from signoff.adapters import console

    return console


async def _telegram_check(config: Config, token: str) -> list[tuple[bool, str]]:
    from signoff.adapters.telegram.doctor import check  # python-telegram-bot, only when a token is set

    return await check(config, token)


async def _slack_check(config: Config, token: str) -> list[tuple[bool, str]]:
    from signoff.adapters.slack.doctor import check  # slack_sdk, only when a token is set

    return await check(config, token)


def cmd_init(args: argparse.Namespace) -> int:
    from .setup_commands import cmd_init as init

    return init(args)


def cmd_schema(args: argparse.Namespace) -> int:
    from .setup_commands import cmd_schema as schema

    return schema(args)


def _with_config() -> dict[str, Callable[[Config, argparse.Namespace], Coroutine[Any, Any, int]]]:
    """The commands that load the configuration first (imported here: ``hook`` needs none of them)."""
    from . import console_commands as commands
    from . import doctor, proxy_commands, serve_commands, store_commands, web_commands

    return {
        "mcp": serve_commands.cmd_mcp,
        "serve": serve_commands.cmd_serve,
        "proxy": proxy_commands.cmd_proxy,
        "check-config": lambda config, args: doctor.cmd_check_config(config, _console().table),
        "approve": lambda config, args: commands.cmd_decide(config, args, _console(), approve=True),
        "reject": lambda config, args: commands.cmd_decide(config, args, _console(), approve=False),
        "answer": lambda config, args: commands.cmd_answer(config, args, _console()),
        "doctor": lambda config, args: doctor.cmd_doctor(config, _telegram_check, _slack_check),
        "grants": lambda config, args: commands.cmd_grants(config, args, _console()),
        "revoke": lambda config, args: commands.cmd_revoke(config, args, _console()),
        "web-link": web_commands.cmd_web_link,
        "web-sessions": web_commands.cmd_web_sessions,
        "migrate": store_commands.cmd_migrate,
    }


def _without_config() -> dict[str, Callable[[argparse.Namespace], int]]:
    """The commands that do not load the configuration: the read-only ones (plain sqlite3, no
    event loop: they must start fast), init and schema."""
    from . import console_commands as commands

    return {
        "pending": lambda args: commands.cmd_pending(args, _console()),
        "show": lambda args: commands.cmd_show(args, _console()),
        "audit": lambda args: commands.cmd_audit(args, _console()),
        "init": cmd_init,
        "schema": cmd_schema,
        "status": commands.cmd_status,
        "migrate-store": _migrate_store,
    }


def _migrate_store(args: argparse.Namespace) -> int:
    from .store_commands import cmd_migrate_store

    return cmd_migrate_store(args)


if __name__ == "__main__":
    sys.exit(main())
