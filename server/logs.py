"""Logging for every signoff command: where it goes, how much of it, in which format.

stdout belongs to the MCP protocol under stdio, so logs always go to stderr. A hook and
``signoff mcp`` run inside an MCP client and say only what needs attention (warnings and
errors; ``-v`` for INFO, ``-vv`` for DEBUG); ``signoff serve`` runs on its own and logs INFO.
``$SIGNOFF_LOG_LEVEL`` wins over both. ``--log-format json`` writes one JSON object per line
(``ts``, ``level``, ``logger``, ``message``, ``exception``) for log shippers.

Secrets never reach a log line: httpx and httpcore (whose request lines carry the Telegram
bot token in the URL) stay at WARNING whatever the level, and every line, traceback
included, is scrubbed of Telegram bot tokens and of the secrets signoff reads from the
environment before it is written.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from typing import Any, Literal, TextIO

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")
LEVEL_ENV = "SIGNOFF_LOG_LEVEL"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Loggers that stay at WARNING or above whatever the level: httpx logs every request URL at
# INFO (Telegram's carry the bot token), httpcore every header at DEBUG; the MCP SDK logs
# every HTTP session at INFO.
QUIET = ("httpx", "httpcore", "mcp", "hpack")
# The environment variables signoff reads secrets from by default; their values are masked.
SECRET_ENVS = ("SIGNOFF_TELEGRAM_TOKEN", "SIGNOFF_HTTP_TOKEN", "SIGNOFF_CALLBACK_SECRET", "SIGNOFF_SLACK_BOT_TOKEN",
               "SIGNOFF_SLACK_APP_TOKEN", "SIGNOFF_SLACK_SIGNING_SECRET")  # fmt: skip
# A Telegram bot token anywhere (in a URL it follows "/bot"): the bot's id, a colon, 35 characters.
_BOT_TOKEN = re.compile(r"(?<![0-9])[0-9]{5,}:[A-Za-z0-9_-]{30,}")
_MIN_SECRET = 8  # shorter values would mask ordinary words; no real secret is that short

_secrets: set[str] = set()


def level_for(verbose: int, default: int) -> int:
    """The level for ``-v`` given ``verbose`` times: ``default``, then one step per ``-v`` (INFO, DEBUG)."""
    steps = [logging.WARNING, logging.INFO, logging.DEBUG]
    start = steps.index(default) if default in steps else 0
    return steps[min(start + max(verbose, 0), len(steps) - 1)]


def _env_level(stream: TextIO) -> int | None:
    """``$SIGNOFF_LOG_LEVEL`` (a name such as ``debug`` or a number), or None when unset or unusable."""
    raw = os.environ.get(LEVEL_ENV, "").strip()
    if not raw:
        return None
    if raw.isdigit():
        return int(raw)
    level = logging.getLevelNamesMapping().get(raw.upper())
    if level is None:
        print(f"signoff: ${LEVEL_ENV}={raw[:40]!r} is not a log level (DEBUG, INFO, WARNING, ERROR); ignoring it",
              file=stream)  # fmt: skip
    return level


def mask(*values: str | None) -> None:
    """Mask these values (secrets) in every log line from now on."""
    _secrets.update(v for v in values if v and len(v) >= _MIN_SECRET)


def mask_env(*names: str | None) -> None:
    """Mask the values of these environment variables (the ``*_env`` names a configuration gives)."""
    mask(*(os.environ.get(name, "").strip() for name in names if name))


def scrub(text: str) -> str:
    """``text`` with every known secret and every Telegram bot token replaced by a placeholder."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "<secret>")
    return _BOT_TOKEN.sub("<telegram-token>", text)


class TextFormatter(logging.Formatter):
    """``2026-01-02 10:00:00,123 INFO signoff: message``, scrubbed."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, RFC 3339 with milliseconds), ``level``, ``logger``,
    ``message`` and, when there is one, ``exception`` (the traceback as text); scrubbed."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        out: dict[str, Any] = {"ts": ts, "level": record.levelname, "logger": record.name,
                               "message": scrub(record.getMessage())}  # fmt: skip
        if record.exc_info:
            out["exception"] = scrub(self.formatException(record.exc_info))
        elif record.exc_text:
            out["exception"] = scrub(record.exc_text)
        if record.stack_info:
            out["stack"] = scrub(self.formatStack(record.stack_info))
        return json.dumps(out, ensure_ascii=False, default=str)


def setup(
    default: int = logging.INFO,
    *,
    verbose: int = 0,
    fmt: LogFormat = "text",
    stream: TextIO | None = None,
) -> int:
    """Send every log record to stderr (or ``stream``) at ``$SIGNOFF_LOG_LEVEL``, else at ``default``
    raised by ``verbose`` steps; return the level chosen. The values of ``SECRET_ENVS`` are masked
    (``mask_env`` adds the variables a configuration names). Safe to call again: it replaces its own
    handler."""
    stream = stream or sys.stderr
    env_level = _env_level(stream)
    level = env_level if env_level is not None else level_for(verbose, default)
    mask_env(*SECRET_ENVS)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_signoff", False)]:
        root.removeHandler(old)
    handler._signoff = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    return level
