"""Durations as people write them in the config: ``"90s"``, ``"30m"``, ``"4h"``, ``"2d"``, ``"1h30m"``."""

from __future__ import annotations

import re

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?[smhd])+")


def parse_duration(text: str) -> float:
    """Return the number of seconds ``text`` stands for; ``ValueError`` says the accepted forms."""
    cleaned = text.strip().lower().replace(" ", "")
    if not _WHOLE.fullmatch(cleaned):
        raise ValueError(
            f"{text!r} is not a duration; write a number and a unit, e.g. '90s', '30m', '4h', '2d' or '1h30m'"
        )
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(cleaned))
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """The inverse of :func:`parse_duration` for display: ``5400`` → ``"1h30m"``."""
    seconds = round(seconds)
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            count, seconds = divmod(seconds, size)
            parts.append(f"{count}{unit}")
    return "".join(parts)


def humanize_delta(seconds: float) -> str:
    """A short relative time for terminals and phones: ``"in 58 min"``, ``"3 h ago"``."""
    future = seconds >= 0
    s = abs(seconds)
    if s < 60:
        text = f"{int(s)} s"
    elif s < 3600:
        text = f"{int(s // 60)} min"
    elif s < 86400 * 2:
        text = f"{s / 3600:.1f} h".replace(".0 ", " ")
    else:
        text = f"{int(s // 86400)} d"
    return f"in {text}" if future else f"{text} ago"
