"""Syntax colouring for the request page, done on the server: text becomes a list of
``(css_class, text)`` pieces the templates render as ``<span class="tok-…">{{ text }}</span>``
(autoescaped: a piece is always text, never markup).

Each scanner is one regular expression whose last alternative takes any single character, so
it never fails and never drops or reorders a character: joining the pieces gives the input back
exactly (checked, with one plain piece as the fallback). Class ``""`` is plain text. Text larger
than ``LIMIT`` is not coloured at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Final

Piece = tuple[str, str]  # (css class, or "" for plain; text)

LIMIT: Final = 200_000  # characters; more is shown plain (colouring is linear, but not free)

# --- JSON -------------------------------------------------------------------------------------

_JSON = re.compile(
    r"""(?P<key>"(?:[^"\\\n]|\\.)*"(?=[ \t]*:))"""
    r"""|(?P<str>"(?:[^"\\\n]|\\.)*"?)"""
    r"|(?P<num>-?(?:\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|Infinity)|NaN)"
    r"|(?P<lit>\b(?:true|false|null)\b)"
    r"|(?P<punct>[{}\[\],:])"
    r"|(?P<plain>\s+|\w+|[\s\S])"
)

# --- shell (a Bash command) -------------------------------------------------------------------

_WORD_START = r"(?<![^\s;&|()<>])"  # at the start of the text, or after a blank or an operator
_SHELL = re.compile(
    rf"(?P<com>{_WORD_START}#[^\n]*)"
    r"""|(?P<str>'[^']*'?|\$'(?:[^'\\]|\\[\s\S])*'?|"(?:[^"\\]|\\[\s\S])*"?)"""
    r"|(?P<var>\$\{[^}\n]*\}?|\$(?:[A-Za-z_]\w*|[0-9@#?$!*-]))"
    r"|(?P<op>\|\||&&|;;|\|&|\$\(|<<<|<<-?|&>>?|\d*>>?(?:&\d*-?)?|\d*<&?|[|;&<>()`])"
    rf"|(?P<opt>{_WORD_START}--?[A-Za-z0-9_][\w.-]*)"
    r"|(?P<esc>\\[\s\S])"
    r"""|(?P<word>[^\s'"$|&;<>()`\\]+)"""
    r"|(?P<plain>\s+|[\s\S])"
)
_COMMAND_STARTS = {"||", "&&", ";;", "|&", "$(", "|", ";", "&", "(", "`"}

# --- source: Python, JavaScript/TypeScript ----------------------------------------------------

_PY_KEYWORDS = frozenset({
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "case", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is",
    "lambda", "match", "nonlocal", "not", "or", "pass", "raise", "return", "self", "try", "while", "with",
    "yield",
})  # fmt: skip
_JS_KEYWORDS = frozenset({
    "abstract", "as", "async", "await", "break", "case", "catch", "class", "const", "continue", "debugger",
    "declare", "default", "delete", "do", "else", "enum", "export", "extends", "false", "finally", "for",
    "from", "function", "get", "if", "implements", "import", "in", "instanceof", "interface", "let", "new",
    "null", "of", "private", "protected", "public", "readonly", "return", "set", "static", "super", "switch",
    "this", "throw", "true", "try", "type", "typeof", "undefined", "var", "void", "while", "with", "yield",
})  # fmt: skip
_NUMBER = (
    r"(?P<num>\b(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][+-]?\d+)?)[jJnL]?\b)"
)
_PYTHON = re.compile(
    r"(?P<com>#[^\n]*)"
    r"""|(?P<str>(?:\b[rRbBuUfF]{1,2})?(?:\"\"\"[\s\S]*?(?:\"\"\"|\Z)|'''[\s\S]*?(?:'''|\Z)"""
    r"""|"(?:[^"\\\n]|\\[\s\S])*"?|'(?:[^'\\\n]|\\[\s\S])*'?))"""
    rf"|{_NUMBER}"
    r"|(?P<deco>@[A-Za-z_][\w.]*)"
    r"|(?P<ident>[A-Za-z_]\w*)"
    r"|(?P<plain>\s+|\w+|[\s\S])"
)
_JS = re.compile(
    r"(?P<com>//[^\n]*|/\*[\s\S]*?(?:\*/|\Z))"
    r"""|(?P<str>"(?:[^"\\\n]|\\[\s\S])*"?|'(?:[^'\\\n]|\\[\s\S])*'?|`(?:[^`\\]|\\[\s\S])*`?)"""
    rf"|{_NUMBER}"
    r"|(?P<ident>[A-Za-z_$][\w$]*)"
    r"|(?P<plain>\s+|\w+|[\s\S])"
)

_EXTENSIONS = {
    "py": "python", "pyi": "python", "pyw": "python",
    "js": "js", "mjs": "js", "cjs": "js", "jsx": "js", "ts": "js", "tsx": "js", "mts": "js", "cts": "js",
    "sh": "shell", "bash": "shell", "zsh": "shell",
    "json": "json",
}  # fmt: skip


def language(path: object) -> str | None:
    """The language a file's name says it holds (python, js, shell or json), or None."""
    if not isinstance(path, str) or "." not in path.rsplit("/", 1)[-1]:
        return None
    return _EXTENSIONS.get(path.rsplit(".", 1)[-1].lower())


def _scan(pattern: re.Pattern[str], text: str) -> Iterator[tuple[str, str]]:
    """(group name, text) for every match; a gap (there is none: the last alternative takes
    any character) as plain, so that nothing is ever dropped."""
    pos = 0
    for m in pattern.finditer(text):
        if m.start() > pos:
            yield "plain", text[pos : m.start()]
        if m.end() > m.start():
            yield m.lastgroup or "plain", m.group()
        pos = max(pos, m.end())
    if pos < len(text):
        yield "plain", text[pos:]


def _json(text: str) -> Iterator[Piece]:
    for name, part in _scan(_JSON, text):
        yield ("" if name == "plain" else f"tok-{name}"), part


def _shell(text: str) -> Iterator[Piece]:
    expect_command = True  # the next word names a command
    for name, part in _scan(_SHELL, text):
        if name == "op":
            expect_command = part in _COMMAND_STARTS
            yield "tok-op", part
        elif name == "word":
            if expect_command and "=" in part and not part.startswith("="):  # FOO=bar cmd
                yield "tok-var", part
            elif expect_command:
                expect_command = False
                yield "tok-cmd", part
            else:
                yield "", part
        elif name == "plain":
            expect_command = expect_command or "\n" in part
            yield "", part
        else:
            expect_command = False if name in ("str", "var", "opt", "esc") else expect_command
            yield f"tok-{name}", part


def _source(pattern: re.Pattern[str], keywords: frozenset[str]) -> Callable[[str], Iterator[Piece]]:
    def scan(text: str) -> Iterator[Piece]:
        for name, part in _scan(pattern, text):
            if name == "ident":
                yield ("tok-kw" if part in keywords else ""), part
            else:
                yield ("" if name == "plain" else f"tok-{name}"), part

    return scan


_SCANNERS: dict[str, Callable[[str], Iterator[Piece]]] = {
    "json": _json,
    "shell": _shell,
    "python": _source(_PYTHON, _PY_KEYWORDS),
    "js": _source(_JS, _JS_KEYWORDS),
}


def colour(text: str, lang: str | None) -> list[Piece]:
    """``text`` as coloured pieces (``lang``: json, shell, python or js; anything else, or text
    over ``LIMIT``, is one plain piece). Adjacent pieces of one class are merged; none is empty."""
    scanner = _SCANNERS.get(lang or "")
    if scanner is None or len(text) > LIMIT:
        return [("", text)] if text else []
    pieces: list[Piece] = []
    run: list[str] = []  # the texts of the piece being gathered (joined once: no quadratic copying)
    run_cls = ""
    for cls, part in scanner(text):
        if not part:
            continue
        if run and cls != run_cls:
            pieces.append((run_cls, "".join(run)))
            run = []
        run_cls = cls
        run.append(part)
    if run:
        pieces.append((run_cls, "".join(run)))
    if "".join(part for _, part in pieces) != text:  # cannot happen; never show anything but the text
        return [("", text)]
    return pieces


def split_lines(pieces: list[Piece]) -> list[list[Piece]]:
    """``pieces`` cut at every ``\\n`` (dropped), as the lines they make: ``n`` newlines give
    ``n + 1`` lines, as ``str.split("\\n")`` does."""
    lines: list[list[Piece]] = [[]]
    for cls, text in pieces:
        first, *rest = text.split("\n")
        if first:
            lines[-1].append((cls, first))
        for part in rest:
            lines.append([(cls, part)] if part else [])
    return lines


def map_text(pieces: list[Piece], fn: Callable[[str], str]) -> list[Piece]:
    """``pieces`` with ``fn`` applied to each text (e.g. ``visible``, which works a character at
    a time, so it gives the same text as applied to the whole)."""
    return [(cls, fn(text)) for cls, text in pieces]
