"""The ``signoff`` command line's arguments: every command, its options and their help texts
(``cli`` runs them). Kept apart so adding a command does not crowd the wiring in ``cli``."""

from __future__ import annotations

import argparse

CONFIG_HELP = (
    "config file, before or after the command (default: $SIGNOFF_CONFIG, else "
    "$XDG_CONFIG_HOME/signoff/signoff.toml if it exists, else the embedded default; never the current folder)"
)


def build_parser() -> argparse.ArgumentParser:
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
    s = sub.add_parser("proxy", parents=[common, verbosity],
                       help="an approval gateway in front of another MCP server (stdio): every tool call asks first")  # fmt: skip
    s.add_argument("--name", required=True, type=_upstream_name, help="the server's name: its tools are mcp__NAME__TOOL "
                   "in routes; without a command or --url, the [[upstreams]] entry of that name")  # fmt: skip
    s.add_argument("--identity", metavar="NAME", type=_identity,
                   help="file every request as NAME (default: [server] stdio_identity, else the client's own name)")  # fmt: skip
    s.add_argument("--url", help="a streamable-HTTP upstream instead of a command")
    s.add_argument("--header", action="append", metavar='"K: V"', help="with --url: a header to send (repeatable)")
    s.add_argument("--timeout", type=float, metavar="SECONDS", help="how long one forwarded request may take (600)")
    s.add_argument("upstream_command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS…]",
                   help="the stdio MCP server to run and put behind approvals")  # fmt: skip
    s = sub.add_parser("serve", parents=[common, verbosity],
                       help="serve MCP over streamable HTTP at /mcp, the web inbox at /web, /healthz and /metrics")  # fmt: skip
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
    s.add_argument("--reason", metavar="TEXT", help="a note to approve with (the agent receives it)")
    s.add_argument("--edit", metavar="FILE", help="approve these arguments instead (a JSON object; - reads stdin)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--as", dest="as_approver", metavar="NAME", help="vote as this approver (needed on quorum routes)")
    s = sub.add_parser("reject", parents=[common], help="reject a pending request")
    s.add_argument("id")
    s.add_argument("--reason", required=True, help="why (the agent is told)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--as", dest="as_approver", metavar="NAME", help="vote as this approver (needed on quorum routes)")
    s = sub.add_parser("answer", parents=[common], help="answer a question an agent asked (ask_human)")
    s.add_argument("id")
    s.add_argument("text", nargs="?", help="the answer, in your words (or pick one with --option)")
    s.add_argument("--option", type=int, metavar="N", help="answer with the question's N-th option (from 1)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--as", dest="as_approver", metavar="NAME", help="answer as this approver")
    s = sub.add_parser("web-link", parents=[common], help="print a sign-in link to the web inbox (10 minutes, once)")
    s.add_argument("--as", dest="as_approver", metavar="NAME", required=True, help="the approver to sign in as")
    s = sub.add_parser("web-sessions", parents=[common], help="list web inbox sessions, or end them")
    s.add_argument("--all", action="store_true", help="include ended sessions")
    ends = s.add_mutually_exclusive_group()
    ends.add_argument("--revoke", metavar="ID", help="end this session")
    ends.add_argument("--revoke-approver", metavar="NAME", help="end every session of this approver")
    s.add_argument("--json", action="store_true", help="machine-readable output")
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
    s = sub.add_parser(
        "status",
        parents=[common],
        help="who holds the Telegram bot and Slack, outbox backlog, pending, failing callbacks",
    )
    s.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("schema", help="print the configuration's JSON Schema (for TOML editors)")
    sub.add_parser("doctor", parents=[common], help="check the configuration, the database, Telegram and Slack")
    sub.add_parser("migrate", parents=[common],
                   help="upgrade the database to this version (serve does too) and say what changed")  # fmt: skip
    s = sub.add_parser("migrate-store", help="copy a store (a SQLite file, or PostgreSQL) into an empty PostgreSQL")
    s.add_argument("--from", dest="source", required=True, metavar="PATH_OR_URL",
                   help="the store to copy: its [store] path, or a postgresql:// URL")  # fmt: skip
    s.add_argument("--to", required=True, metavar="URL", help="the PostgreSQL to copy into: postgresql://user@host/db")
    s.add_argument("--replace", action="store_true",
                   help="empty the target first when it already holds a store (its data is lost)")  # fmt: skip
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
    s.add_argument("--slack-user-id", help="your Slack member id, U… (/signoff whoami in Slack tells it)")
    s.add_argument("--approver", default="me", help="your approver name (default: me)")
    s.add_argument("--force", action="store_true", help="overwrite an existing file")
    return p


def _identity(value: str) -> str:
    from .sanitize import has_control

    if not value.strip() or len(value) > 100 or has_control(value) is not None:
        raise argparse.ArgumentTypeError("an identity is 1–100 printable characters, e.g. 'claude-code@laptop'")
    return value


def _upstream_name(value: str) -> str:
    import re

    # No "__": mcp__NAME__TOOL must name one server and one tool (a__b + c is not a + b__c).
    if len(value) > 64 or not re.fullmatch(r"[A-Za-z0-9-]+(_[A-Za-z0-9-]+)*", value):
        raise argparse.ArgumentTypeError("a name is 1–64 letters, digits, '-' or single '_' inside, e.g. 'fs'")
    return value


def _host(value: str) -> str:
    if not value.strip() or any(c.isspace() for c in value) or len(value) > 253:
        raise argparse.ArgumentTypeError("a host is an address or name, e.g. 127.0.0.1, ::1 or 0.0.0.0")
    return value.removeprefix("[").removesuffix("]")  # [::1] as in a URL


def _port(value: str) -> int:
    if not value.isdigit() or int(value) > 65535:
        raise argparse.ArgumentTypeError("a port is a number from 0 to 65535 (0: any free one)")
    return int(value)
