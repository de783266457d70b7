"""``signoff web-link`` and ``signoff web-sessions``: sign-in links and sessions of the web inbox
(``server/web_auth.py``), at the console."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .console_commands import EXIT_NOT_DECIDED, EXIT_OK, EXIT_USAGE, print_error
from .models import iso

if TYPE_CHECKING:
    import argparse

    from .config import Config


async def cmd_web_link(config: Config, args: argparse.Namespace) -> int:
    """Print a sign-in link for the approver named by ``--as`` (valid 10 minutes, once)."""
    from .store import Store
    from .web_auth import LINK_TTL, WebAuth

    if not config.web.enabled:
        print_error(f"the web inbox is off in {config.source} ([web] enabled = false); turn it on to sign in")
        return EXIT_USAGE
    if args.as_approver not in config.approvers:
        known = ", ".join(sorted(config.approvers)) or "none"
        print_error(f"--as {args.as_approver!r}: no such approver in {config.source} (known: {known})")
        return EXIT_USAGE
    async with Store.open(config.database) as store:
        import time

        auth = WebAuth(store, config, time.time)
        url = auth.link_url(await auth.issue_link(args.as_approver, "console"))
    print(url)
    print(f"Open it within {int(LINK_TTL // 60)} minutes; it signs in once, as {args.as_approver}."
          + ("" if config.web.public_url else " (It works on this machine only: set [web] public_url to serve "
             "the inbox elsewhere.)"))  # fmt: skip
    return EXIT_OK


async def cmd_web_sessions(config: Config, args: argparse.Namespace) -> int:
    """List web sessions (``--all``: ended ones too), or end one (``--revoke ID``) or every one
    of an approver (``--revoke-approver NAME``)."""
    import time

    from .store import Store
    from .web_auth import WebAuth

    async with Store.open(config.database) as store:
        auth = WebAuth(store, config, time.time)
        if args.revoke or args.revoke_approver:
            ended = await auth.revoke(args.revoke, approver=args.revoke_approver)
            print(f"{ended} session(s) ended." if ended else "No live session matched; nothing changed.")
            return EXIT_OK if ended else EXIT_NOT_DECIDED
        found = await auth.sessions(everything=args.all)
    if args.json:
        print(json.dumps([{"id": s.id, "approver": s.approver, "created_at": iso(s.created_at),
                           "expires_at": iso(s.expires_at), "last_seen": iso(s.last_seen),
                           "revoked_at": iso(s.revoked_at), "client": s.client} for s in found], indent=2))  # fmt: skip
        return EXIT_OK
    if not found:
        print("No live web sessions." if not args.all else "No web sessions.")
        return EXIT_OK
    from .sanitize import visible

    for s in found:
        state = f"revoked {iso(s.revoked_at)}" if s.revoked_at else f"until {iso(s.expires_at)}"
        print(f"{s.id}  {visible(s.approver, one_line=True):<12}  since {iso(s.created_at)}  {state}  "
              f"last seen {iso(s.last_seen)}  {visible(s.client, one_line=True)[:60]}")  # fmt: skip
    return EXIT_OK
