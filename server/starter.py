"""The commented starter configuration that ``signoff init`` writes."""

from __future__ import annotations

import re

_TEMPLATE = """\
# signoff configuration, written by `signoff init`.
# Check it:   signoff check-config --config {path_hint}
# Then:       signoff doctor --config {path_hint}
# Secrets never live in this file: export SIGNOFF_TELEGRAM_TOKEN (the token @BotFather gave
# you) and, for `signoff serve` on a network, SIGNOFF_HTTP_TOKEN.
# Every key is explained in config.example.toml.

[store]
# Where requests and the audit log live. Default: ~/.local/state/signoff/signoff.db
# path = "signoff.db"

[approvers.{name}]
{telegram_line}

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

# Everything else an agent asks for (request_approval) also goes to you.
[[routes]]
name = "default"
approvers = ["{name}"]
"""


def starter_config(approver: str, telegram_user_id: int | None, path_hint: str = "signoff.toml") -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", approver):
        raise ValueError(f"approver name {approver!r}: use letters, digits, '-' or '_'")
    telegram_line = (
        f"telegram_user_id = {telegram_user_id}"
        if telegram_user_id is not None
        else "# Send /start to your bot to learn your Telegram user id, then:\n# telegram_user_id = 123456789"
    )
    return _TEMPLATE.format(name=approver, telegram_line=telegram_line, path_hint=path_hint)
