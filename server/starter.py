"""The commented starter configuration that ``signoff init`` writes."""

from __future__ import annotations

import re

_TEMPLATE = """\
{schema_line}
# signoff configuration, written by `signoff init`.
# Check it:   signoff check-config{config_flag}
# Then:       signoff doctor{config_flag}
# Secrets never live in this file: export SIGNOFF_TELEGRAM_TOKEN (the token @BotFather gave
# you) and/or SIGNOFF_SLACK_BOT_TOKEN and SIGNOFF_SLACK_APP_TOKEN (docs/slack.md), and, for
# `signoff serve` on a network, SIGNOFF_HTTP_TOKEN.
# Every key: `signoff schema` (the first line lets TOML editors check keys) and docs/configuration.md.

[store]
# Where requests and the audit log live. Default: ~/.local/state/signoff/signoff.db
# path = "signoff.db"

[approvers.{name}]
{telegram_line}
{slack_line}

[defaults]
timeout = "1h"          # how long approvers have
on_timeout = "reject"   # silence is never consent

# Claude Code: reading and searching are harmless, so they are approved at once.
[[routes]]
name = "claude-code-reads"
match = {{ action = ["Read", "Glob", "Grep", "LS", "TodoWrite", "NotebookRead"] }}
auto = "approve"

# Shell commands, file changes and the web go to you.
[[routes]]
name = "claude-code-changes"
match = {{ action = ["Bash", "Edit", "MultiEdit", "Write", "NotebookEdit", "WebFetch", "WebSearch"] }}
approvers = ["{name}"]
timeout = "30m"

# Everything else an agent asks for (request_approval, ask_human) also goes to you. The first
# route that matches decides: add your own routes above this one.
[[routes]]
name = "default"
approvers = ["{name}"]
"""


def starter_config(approver: str, telegram_user_id: int | None, config_flag: str = "", schema_line: str = "",
                   slack_user_id: str | None = None) -> str:  # fmt: skip
    """The starter file; ``config_flag`` is what commands need to find it (empty at the default place)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", approver):
        raise ValueError(f"--approver {approver!r}: use letters, digits, '-' or '_'")
    telegram_line = (
        f"telegram_user_id = {telegram_user_id}"
        if telegram_user_id is not None
        else "# Send /start to your bot to learn your Telegram user id, then:\n# telegram_user_id = 123456789"
    )
    if slack_user_id is not None and not re.fullmatch(r"[UW][A-Z0-9]{2,20}", slack_user_id):
        raise ValueError(
            f"--slack-user-id {slack_user_id!r}: a member id looks like U0123ABCD (Slack profile → ⋮ → Copy member ID)"
        )
    slack_line = (
        f'slack_user_id = "{slack_user_id}"'
        if slack_user_id is not None
        else "# In Slack, /signoff whoami (or your profile → ⋮ → Copy member ID) gives your member id:\n"
        '# slack_user_id = "U0123ABCD"'
    )
    text = _TEMPLATE.format(
        name=approver,
        telegram_line=telegram_line,
        slack_line=slack_line,
        config_flag=config_flag,
        schema_line=schema_line,
    )
    return text if schema_line else text.lstrip("\n")
