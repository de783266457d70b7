"""``signoff check-config`` and ``signoff doctor``: is this installation set up to work?

``check-config`` prints the configuration's routes; ``doctor`` checks the configuration, the
database (and its permissions), delivery (``health``), the HTTP listener, callback signing and
Telegram, naming what to do about each problem. The Telegram checks and the console's table
belong to the adapters: the command line (the composition root) passes them in, so this module
imports no adapter.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from .config import Config, RouteConfig

    Table = Callable[[Sequence[Sequence[str]], Sequence[str]], str]  # the console adapter's table()
    ChannelCheck = Callable[[Config, str], Awaitable[list[tuple[bool, str]]]]  # a channel adapter's doctor check()


async def cmd_check_config(config: Config, table: Table) -> int:
    """Print where the configuration came from, its routes (through ``table``) and its warnings."""
    from .config import identity_warnings
    from .durations import format_duration

    print(f"{config.source}: OK (chosen by {config.origin})")
    print(f"database: {config.database_label}")
    rows = []
    for r in config.routes:
        m = r.match.model_dump(by_alias=True, exclude_defaults=True) if r.match else {}
        decides = f"auto-{r.auto}" if r.auto else (", ".join(r.approvers) or "console")
        timeout = "-" if r.auto else format_duration(r.timeout or config.defaults.timeout)
        on_timeout = "-" if r.auto else (r.on_timeout or config.defaults.on_timeout)
        rows.append((r.name, json.dumps(m) if m else "(everything)", decides, timeout, on_timeout, _policy(r)))
    print(table(rows, ("ROUTE", "MATCH", "DECIDED BY", "TIMEOUT", "ON TIMEOUT", "POLICY")))
    for warning in [*shadowed_routes(config), *identity_warnings(config)]:
        print(f"warning: {warning}")
    return 0


def shadowed_routes(config: Config) -> list[str]:
    """Routes below one that matches everything: the first match decides, so they are used only
    when an agent names them (a common slip: a route appended after the starter's catch-all)."""
    catch_all = next(((i, r) for i, r in enumerate(config.routes) if r.match is None), None)
    if catch_all is None:
        return []
    i, everything = catch_all
    return [f"routes[{j}] ({r.name!r}) comes after routes[{i}] ({everything.name!r}), which matches every request: "
            f"it decides only requests that name it; move it above {everything.name!r}"
            for j, r in enumerate(config.routes) if j > i]  # fmt: skip


def _policy(r: RouteConfig) -> str:
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


async def cmd_doctor(config: Config, telegram_check: ChannelCheck, slack_check: ChannelCheck) -> int:
    """Print one line per check; 0 when nothing is wrong, else 1. ``telegram_check`` and
    ``slack_check`` run only when their channel's token is set."""
    problems = 0
    print(f"config    {config.source}: OK ({len(config.routes)} routes, {len(config.approvers)} approvers; "
          f"chosen by {config.origin})")  # fmt: skip
    problems += await _database(config)
    problems += _http(config) + _callbacks(config)
    tg = config.telegram.token_env
    token = os.environ.get(tg, "").strip()
    if not token:
        print(f"telegram  ${tg} is not set: console channel only (set it to a token from @BotFather to use Telegram)")
    else:
        for ok, line in await telegram_check(config, token):
            problems += 0 if ok else 1
            print(f"telegram  {line}")
    slack = os.environ.get(config.slack.bot_token_env, "").strip()
    if slack:
        for ok, line in await slack_check(config, slack):
            problems += 0 if ok else 1
            print(f"slack     {line}")
    elif any(a.slack_user_id for a in config.approvers.values()):
        problems += 1
        print(f"slack     ${config.slack.bot_token_env} is not set but approvers have slack_user_id: their Slack "
              "prompts wait until it is (see docs/slack.md)")  # fmt: skip
    return 0 if problems == 0 else 1


async def _database(config: Config) -> int:
    """The database opens (and migrates), what it holds, delivery's health, and its permissions."""
    from . import health
    from .app import open_app

    async with open_app(config, background=False) as app:
        service = app.service
        pending = await service.store.list_requests(status=None, limit=1_000_000)
        open_ = sum(1 for r in pending if not r.status.final)
        print(f"database  {config.database_label}: OK ({len(pending)} requests, {open_} pending)")
        state = await health.collect(service.store, service.clock())
        for topic, text in state.lines():
            print(f"{topic:<10}{text}")
        for problem in state.problems():
            print(f"problem   {problem}")
        problems = len(state.problems())
    if config.store.url:
        from .pg import unencrypted_remote

        if (host := unencrypted_remote(config.store.url)) is not None:
            problems += 1
            print(f"database  the connection to {host} may travel unencrypted; add sslmode=verify-full (and "
                  "sslrootcert=…) to the URL, see docs/operations.md")  # fmt: skip
    mode = 0 if config.store.url else config.db_path.stat().st_mode & 0o777
    if mode & 0o077:
        problems += 1
        print(f"database  permissions are {mode:o}; run: chmod 600 {config.db_path}")
    return problems


def _http(config: Config) -> int:
    """`signoff serve` refuses a public address without a bearer token."""
    from .listen import is_loopback

    env = config.server.auth_token_env
    has_token = bool(env and os.environ.get(env))
    if not is_loopback(config.server.host) and not has_token:
        print(
            f"http      {config.server.host} is not loopback and ${env} is empty: `signoff serve` will refuse to start"
        )
        return 1
    print(
        f"http      {config.server.host}:{config.server.port} ({'bearer token set' if has_token else 'no token, loopback only'})"
    )
    return 0


def _callbacks(config: Config) -> int:
    """Callbacks are signed: without the secret, requests with a callback_url are refused."""
    callbacks = config.callbacks
    problems = 0
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
    return problems
