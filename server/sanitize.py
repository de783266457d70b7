"""Agent-supplied text made safe to show a human: no terminal escapes, no bidi tricks.

``visible(text)`` replaces every C0 control (but, where allowed, line breaks and tabs), DEL,
every C1 control and the Unicode bidirectional overrides and isolates with a visible
``\\xNN`` / ``\\u{NNNN}`` escape, so an ANSI sequence in a metadata key cannot clear a
screen or fake "Approved by alice", and U+202E cannot reverse what an approver reads. Use it
at every output that shows agent text (terminal and chat alike), after any trimming.
"""

from __future__ import annotations

import json
import re
from typing import Any

# C0 except \t \n, DEL, C1; bidi embeddings/overrides (U+202A–202E), isolates (U+2066–2069),
# marks that reorder (U+200E, U+200F, U+061C); line/paragraph separators (U+2028, U+2029).
_BEYOND_C0 = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"  # DEL, C1, bidi, separators
_UNSAFE = re.compile(f"[\x00-\x08\x0b-\x1f{_BEYOND_C0}]")
_UNSAFE_ONE_LINE = re.compile(f"[\x00-\x1f{_BEYOND_C0}]")
# What json.dumps(ensure_ascii=False) leaves raw (it escapes C0 itself); inside JSON strings,
# where alone they can stand, "\uXXXX" decodes to the very same character.
_RAW_IN_JSON = re.compile(f"[{_BEYOND_C0}]")


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{{{code:04x}}}"


def visible(text: str, *, one_line: bool = False) -> str:
    """``text`` with every control and bidi character shown as an escape (``one_line``: line
    breaks and tabs too)."""
    return (_UNSAFE_ONE_LINE if one_line else _UNSAFE).sub(_escape, text)


def json_visible(value: Any, *, indent: int | None = None) -> str:
    """JSON that reads as text (non-ASCII kept) but carries no raw control or bidi character."""
    text = json.dumps(value, ensure_ascii=False, indent=indent)
    return _RAW_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def has_control(text: str, *, allow_newlines: bool = False) -> str | None:
    """The first control or bidi character in ``text`` (None when there is none); with
    ``allow_newlines``, line breaks and tabs are allowed."""
    found = (_UNSAFE if allow_newlines else _UNSAFE_ONE_LINE).search(text)
    return None if found is None else found.group()
