"""Agent-supplied text made safe to show a human: no terminal escapes, no bidi tricks.

``visible(text)`` replaces every C0 control (but, where allowed, line breaks and tabs), DEL,
every C1 control and the Unicode bidirectional overrides and isolates with a visible
``\\xNN`` / ``\\u{NNNN}`` escape, so an ANSI sequence in a metadata key cannot clear a
screen or fake "Approved by alice", and U+202E cannot reverse what an approver reads. Use it
at every output that shows agent text (terminal and chat alike), after any trimming.
"""

from __future__ import annotations

import re

# C0 except \t \n, DEL, C1; bidi embeddings/overrides (U+202A–202E), isolates (U+2066–2069),
# marks that reorder (U+200E, U+200F, U+061C); line/paragraph separators (U+2028, U+2029).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_UNSAFE_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{{{code:04x}}}"


def visible(text: str, *, one_line: bool = False) -> str:
    """``text`` with every control and bidi character shown as an escape (``one_line``: line
    breaks and tabs too)."""
    return (_UNSAFE_ONE_LINE if one_line else _UNSAFE).sub(_escape, text)


def has_control(text: str, *, allow_newlines: bool = False) -> str | None:
    """The first control or bidi character in ``text`` (None when there is none); with
    ``allow_newlines``, line breaks and tabs are allowed."""
    found = (_UNSAFE if allow_newlines else _UNSAFE_ONE_LINE).search(text)
    return None if found is None else found.group()
