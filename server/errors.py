"""Every error signoff raises on purpose, in one small hierarchy.

- ``SignoffError`` — the base; its message is written for a person (or a model) to act on.
  - ``ConfigError`` — the configuration file cannot be used; names the file, the key and the fix.
  - ``RequestError`` — a caller's input cannot be accepted (bad argument, unknown request id,
    unknown or forbidden route, idempotency conflict). MCP tools turn it into a tool error
    whose text says how to correct the call.
    - ``NotFoundError`` — no request (or grant) has that id.
    - ``NotAllowedError`` — a person may not make this decision (their own request, a vote
      on a quorum route by someone who is not its approver, a grant they may not revoke).
  - ``StoreError`` — the database cannot be opened or migrated.

Anything else that escapes is a bug; callers fail closed on it (never "approved").
"""

from __future__ import annotations


class SignoffError(Exception):
    """Base of every error signoff raises on purpose."""


class ConfigError(SignoffError):
    """The configuration cannot be used. ``str(err)`` lists every problem found."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: invalid configuration\n{lines}")


class RequestError(SignoffError):
    """A caller's input cannot be accepted; the message says how to fix the call."""


class NotFoundError(RequestError):
    """No request has the given id."""


class NotAllowedError(RequestError):
    """This person may not make this decision; the message says who can."""


class StoreError(SignoffError):
    """The database cannot be opened or migrated."""
