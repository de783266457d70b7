"""What a grant pattern covers: commands word by word, paths segment by segment, else exactly.

A grant covers only what its approver saw, so matching is never a glob on a raw string:

- **command** (``grant_scope.argument = "command"``): the command and the pattern are both
  split into POSIX shell words (``shlex``). Each pattern word must equal the command's word at
  that place; ``*`` stands for exactly one word that does not start with ``-``; a trailing
  ``**`` stands for any further words, options included. ``npm test`` covers exactly
  ``npm test``; ``pytest *`` covers ``pytest tests/test_a.py`` and not ``pytest -p evil``. A
  command that is not plain words — quotes left open, a shell operator, redirect,
  substitution, expansion or glob character (``; & | < > ( ) $ ` \\ * ? [ ] { } ! # ~``), a
  line break, a tab or any other control character — is never covered: the shell would
  not run the words we compared.
- **path** (arguments named ``path`` or ``*_path``): the value is resolved against the
  request's working directory and normalised (``.``, ``..``, repeated ``/``); a relative
  pattern is resolved against the same directory. Pattern segments match path segments one
  to one with ``fnmatch`` (so ``*`` never crosses ``/``); a trailing ``**`` segment stands
  for any further segments. Wildcards do not match hidden names (``.git``, ``.ssh``) unless the
  pattern writes the dot; a value starting with ``~`` or holding ``$`` is never covered (a
  tool may expand it elsewhere). Symbolic links are not followed (see SECURITY.md).
- **exact** (any other argument): the value must equal the pattern.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import shlex
from typing import Literal

from .sanitize import has_control

Kind = Literal["command", "path", "exact"]
ANY_WORD, ANY_REST = "*", "**"
_NOT_PLAIN = re.compile(r"[;&|<>()$`\\*?\[\]{}!#~\"']")
_QUOTES = re.compile(r"[\"']")


def kind_for(argument: str) -> Kind:
    """How an argument's values are matched when the route does not say."""
    if argument == "command":
        return "command"
    if argument == "path" or argument.endswith("_path"):
        return "path"
    return "exact"


def command_words(command: str) -> list[str] | None:
    """The command's shell words, or None when it is not plain words (then nothing covers it)."""
    if has_control(command) is not None or "\t" in command:
        return None
    # Quotes are allowed (they only group words); everything else that the shell interprets is not.
    if _NOT_PLAIN.search(_QUOTES.sub("", command)):
        return None
    try:
        words = shlex.split(command, comments=False, posix=True)
    except ValueError:  # a quote left open
        return None
    return words or None


def pattern_problem(kind: Kind, pattern: str) -> str | None:
    """Why ``pattern`` cannot be a grant pattern of this kind (None when it can)."""
    if has_control(pattern) is not None:
        return "it contains a control character"
    if kind == "command":
        try:
            words = shlex.split(pattern, comments=False, posix=True)
        except ValueError:
            return "a quote is left open"
        if not words:
            return "it is empty"
        for i, word in enumerate(words):
            if word == ANY_REST and i != len(words) - 1:
                return "'**' may only be the last word"
            if word not in (ANY_WORD, ANY_REST) and _NOT_PLAIN.search(word):
                return (f"the word {word!r} has a shell character; a pattern is a command written word by word: "
                        "'*' stands for one word that is not an option, a trailing '**' for any further words "
                        "(write 'npm test' or 'npm test *', not 'npm test*')")  # fmt: skip
        if words[0] in (ANY_WORD, ANY_REST):
            return "the first word must be the program, not a wildcard"
        return None
    if kind == "path":
        parts = pattern.split("/")
        if ".." in parts or "." in parts:
            return "write it without '.' or '..' segments"
        if any(p == ANY_REST for p in parts[:-1]):
            return "'**' may only be the last segment"
        return None
    return None


def command_covered(pattern: str, command: str) -> bool:
    words = command_words(command)
    if words is None:
        return False
    try:
        want = shlex.split(pattern, comments=False, posix=True)
    except ValueError:
        return False
    if want and want[-1] == ANY_REST:
        head = want[:-1]
        if len(words) < len(head):
            return False
        words = words[: len(head)]
        want = head
    if len(words) != len(want):
        return False
    return all(w == g or (w == ANY_WORD and not g.startswith("-")) for w, g in zip(want, words, strict=True))


def normal_path(path: str, cwd: str | None) -> str | None:
    """``path`` made absolute against ``cwd`` and normalised; None when it cannot be (a relative
    path without a working directory, a control character)."""
    if not path or has_control(path) is not None:
        return None
    if not path.startswith("/"):
        if cwd is None or not cwd.startswith("/"):
            return None
        path = cwd + "/" + path
    normal = posixpath.normpath(path)
    return "/" + normal.lstrip("/")  # normpath keeps a leading '//'


def _segment(want: str, got: str) -> bool:
    # As in the shell, a wildcard does not match a hidden name (.git, .ssh, .claude): write the dot.
    if got.startswith(".") and not want.startswith("."):
        return False
    return fnmatch.fnmatchcase(got, want)


def path_covered(pattern: str, path: str, cwd: str | None) -> bool:
    if path.startswith("~") or "$" in path:
        return False  # a tool may expand these to somewhere else than we would compare
    value = normal_path(path, cwd)
    if pattern.startswith("~"):
        pattern = posixpath.expanduser(pattern)
    want = normal_path(pattern, cwd) if not pattern.endswith("/" + ANY_REST) else None
    if pattern.endswith("/" + ANY_REST):
        base = normal_path(pattern[: -len(ANY_REST) - 1] or "/", cwd)
        want = None if base is None else base.rstrip("/") + "/" + ANY_REST
    if value is None or want is None:
        return False
    got_parts, want_parts = value.split("/")[1:], want.split("/")[1:]
    if want_parts and want_parts[-1] == ANY_REST:
        head = want_parts[:-1]
        if len(got_parts) <= len(head):
            return False  # '**' stands for at least one further segment: the folder itself is not inside it
        if any(part.startswith(".") for part in got_parts[len(head) :]):
            return False  # nor a hidden name below it
        got_parts = got_parts[: len(head)]
        want_parts = head
    if len(got_parts) != len(want_parts):
        return False
    return all(_segment(w, g) for w, g in zip(want_parts, got_parts, strict=True))


def covered(kind: Kind, pattern: str, value: str, cwd: str | None) -> bool:
    """Whether ``value`` (of an argument of ``kind``) is covered by ``pattern``."""
    if kind == "command":
        return command_covered(pattern, value)
    if kind == "path":
        return path_covered(pattern, value, cwd)
    return has_control(value) is None and value == pattern
