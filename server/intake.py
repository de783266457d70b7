"""What an agent may ask for: the bounds of a new request, checked and serialized once.

``check_new_request`` is the gate every new request passes (MCP, hooks, tests alike); the
bounds are documented in the README and in the tool schemas.

Control characters are refused in every field an agent writes (``sanitize.has_control``: C0,
DEL, C1, the bidi marks, overrides and isolates): one-line fields (action, metadata keys and
values, idempotency key, agent name, route, callback URL, cwd) allow none; the summary and
reasons allow line breaks and tabs; strings in ``details`` also allow carriage returns (file
contents, CRLF files). So a tool call whose input carries ESC, C1 or a bidi override (a
``Write`` of such a file, say) is refused — a deny with this reason for Claude Code — rather
than shown to an approver who cannot see what it hides. Errors name the field, the character's
code point and the fix, never the value.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from .errors import RequestError
from .rows import dumps
from .sanitize import has_control

# Input bounds, documented in the README and in the tool schemas.
MAX_ACTION = 200
MAX_SUMMARY = 1_000
MAX_DETAILS_BYTES = 64 * 1024
MAX_METADATA_KEYS = 50
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 1_000
MAX_KEY = 200
MAX_ROUTE = 100  # as long as a route name in the configuration may be
MAX_URL = 2_000
MAX_REASON = 2_000
# Metadata numbers: what every JSON reader (and a float comparison in a route) sees exactly
# the same way. Larger ones (10**400 is beyond float range) are refused: send them as strings.
MAX_SAFE_INTEGER = 2**53 - 1
MIN_TIMEOUT = 10.0
MAX_TIMEOUT = 30 * 86400.0
# ask_human: the answers a question may offer as buttons (Slack's button text stops at 75).
MAX_OPTIONS = 10
MAX_OPTION = 75
MAX_TOPIC = 64
QUESTION_ACTION = "ask_human"  # a question's action: this, or "ask_human.<topic>"
_TOPIC = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True, slots=True)
class NewRequest:
    """What an agent asks for; checked by ``ApprovalService.request_approval``."""

    action: str
    summary: str
    details: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    route: str | None = None
    idempotency_key: str | None = None
    timeout_seconds: float | None = None
    claimed_requester: str | None = None
    callback_url: str | None = None
    # Where the agent acts, as its transport says (the stdio server's working directory, a hook's
    # ``cwd``) — never an argument the agent chooses. Grants are scoped to it.
    cwd: str | None = None
    # ask_human files a question (kind "question") with the answers it offers; an agent's
    # request_approval is always an "approval".
    kind: str = "approval"
    options: list[str] | None = None


def question_action(topic: str | None) -> str:
    """A question's action: ``ask_human``, or ``ask_human.<topic>`` so routes can send topics
    to different people. A topic is letters, digits, ``_``, ``.`` and ``-``."""
    if topic is None:
        return QUESTION_ACTION
    if len(topic) > MAX_TOPIC or not _TOPIC.fullmatch(topic):
        raise RequestError(
            f"'topic' must be 1–{MAX_TOPIC} letters, digits, '_', '.' or '-' (e.g. 'billing'), starting "
            "with a letter, digit or '_'"
        )
    return f"{QUESTION_ACTION}.{topic}"


def is_question_action(action: str) -> bool:
    return action == QUESTION_ACTION or action.startswith(QUESTION_ACTION + ".")


def _seen(text: str) -> str:
    """What a person sees of ``text``: compatibility forms folded (NFKC), every dash as ``-``,
    combining marks and the invisible format characters (Unicode Cf: zero-width space, word
    joiner, soft hyphen, BOM…) gone, trimmed."""
    kept = []
    for c in unicodedata.normalize("NFKD", text):
        kind = unicodedata.category(c)
        if kind in ("Cf", "Mn"):
            continue
        kept.append("-" if kind == "Pd" else c)
    return unicodedata.normalize("NFKC", "".join(kept)).strip()


_SCRIPTS = ("LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE")  # scripts whose letters pass for each other


def _scripts(text: str) -> set[str]:
    """The look-alike scripts whose letters ``text`` uses ("nо" with a Cyrillic o: two)."""
    found = set()
    for c in text:
        if c.isalpha():
            word = unicodedata.name(c, "").split(" ")[0]
            if word in _SCRIPTS:
                found.add(word)
    return found


def _check_options(options: list[str]) -> None:
    """Options a person can tell apart, and whose text is exactly the answer the agent gets."""
    if not isinstance(options, list) or not 1 <= len(options) <= MAX_OPTIONS:
        raise RequestError(f"'options' must be a list of 1–{MAX_OPTIONS} answers (or omitted for a free answer)")
    for n, option in enumerate(options, 1):
        if not isinstance(option, str):
            raise RequestError(f"option {n} must be a string")
        _check_text(f"option {n}", option, MAX_OPTION, single_line=True)
        if option != option.strip():
            raise RequestError(
                f"option {n} starts or ends with spaces; remove them (the answer is the option's exact text)"
            )
        # Emoji sequences join with U+200D; any other invisible character only hides what the option says.
        if any(unicodedata.category(c) == "Cf" and c != "\u200d" for c in option) or not _seen(option):
            raise RequestError(f"option {n} contains invisible characters (U+200B, U+2060, U+FEFF, soft hyphen…); "
                               "write it in plain visible text")  # fmt: skip
        if len(_scripts(option)) > 1:
            raise RequestError(f"option {n} mixes Latin, Cyrillic or Greek letters (which look alike); "
                               "write each option in one script")  # fmt: skip
    if len({_seen(o).casefold() for o in options}) != len(options):
        raise RequestError("'options' has the same answer twice (or two that look the same); give each once")


def check_answer(answer: str) -> str:
    """A human's answer to a question, stripped: not empty, at most ``MAX_REASON`` characters,
    line breaks and tabs kept, every other control and bidi character refused."""
    if not isinstance(answer, str) or not answer.strip():
        raise RequestError("the answer is empty; write what the agent should know")
    answer = answer.strip()
    _check_text("answer", answer, MAX_REASON)
    return answer


def _code(char: str) -> str:
    return f"U+{ord(char):04X}"


def _check_text(name: str, value: str, limit: int, *, single_line: bool = False) -> None:
    """Refuse an empty, over-long or control-carrying text field. Errors name the field and
    the fix, never the value (it may be 1 MB, or an escape sequence)."""
    if not value.strip():
        raise RequestError(f"'{name}' must not be empty")
    if len(value) > limit:
        raise RequestError(f"'{name}' is {len(value)} characters; the limit is {limit}. Shorten it")
    bad = has_control(value, allow_newlines=not single_line)
    if bad is not None:
        allowed = "" if single_line else " (line breaks and tabs are fine)"
        raise RequestError(f"'{name}' contains control characters ({_code(bad)}); remove them{allowed}")


def check_reason(reason: str | None) -> str | None:
    """A reason (an agent's for cancelling, a human's for deciding), stripped; None when empty.
    Line breaks and tabs are kept; every other control and bidi character is refused."""
    if reason is None or not reason.strip():
        return None
    reason = reason.strip()
    _check_text("reason", reason, MAX_REASON)
    return reason


def _details_text(value: str) -> str | None:
    """The first character a string in 'details' may not carry: tab, line feed and carriage
    return are fine (file contents, CRLF files included); ESC, every other C0, DEL, C1 and
    the bidi overrides are not."""
    return has_control(value.replace("\r", ""), allow_newlines=True)


def _check_details(details: Any) -> None:
    """Every string in ``details`` (keys on one line), walked without recursion: it may be
    nested as deep as JSON allows."""
    stack = [details]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            bad = _details_text(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
            bad = next((c for k in item if isinstance(k, str) and (c := has_control(k)) is not None), None)
        elif isinstance(item, list | tuple):
            stack.extend(item)
            bad = None
        else:
            bad = None
        if bad is not None:
            raise RequestError(
                f"'details' contains control characters ({_code(bad)}); signoff does not show such text "
                "to an approver. Remove them (tabs, line feeds and carriage returns are fine)"
            )


def _check_metadata(metadata: dict[str, Any]) -> None:
    if len(metadata) > MAX_METADATA_KEYS:
        raise RequestError(f"'metadata' has {len(metadata)} keys; the limit is {MAX_METADATA_KEYS}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not key or len(key) > MAX_METADATA_KEY:
            size = f"{len(key)} characters" if isinstance(key, str) else "not a string"
            raise RequestError(f"metadata keys must be 1–{MAX_METADATA_KEY} characters; one is {size}")
        if (bad := has_control(key)) is not None:
            raise RequestError(f"a 'metadata' key contains control characters ({_code(bad)}); remove them")
        # From here on the key is short and plain: naming it helps the agent fix the call.
        if value is not None and not isinstance(value, str | int | float | bool):
            raise RequestError(
                f"metadata[{key!r}] must be a string, number, boolean or null; put structures in 'details'"
            )
        if isinstance(value, str) and len(value) > MAX_METADATA_VALUE:
            raise RequestError(
                f"metadata[{key!r}] is longer than {MAX_METADATA_VALUE} characters; move it to 'details'"
            )
        if isinstance(value, str) and (bad := has_control(value)) is not None:
            raise RequestError(f"metadata[{key!r}] contains control characters ({_code(bad)}); remove them "
                               "(metadata values are single-line facts; put text in 'details')")  # fmt: skip
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else 0
        if not abs(number) <= MAX_SAFE_INTEGER:  # NaN and infinities too
            raise RequestError(
                f"metadata[{key!r}] must be a finite number within ±{MAX_SAFE_INTEGER} (2**53 - 1); "
                "send larger numbers and ids as strings"
            )


@dataclass(frozen=True, slots=True)
class Encoded:
    """A checked request's JSON, serialized once: what is stored, and the hash of its content."""

    details: str | None
    metadata: str
    content_hash: str
    action_digest: str  # SHA-256 of the canonical JSON {"action", "details", "metadata"}: what a decision is for


def check_new_request(new: NewRequest) -> Encoded:
    """Validate the bounds of a new request and serialize it."""
    _check_text("action", new.action, MAX_ACTION, single_line=True)
    if new.kind == "question":
        if not is_question_action(new.action):
            raise RequestError("a question's action is 'ask_human' or 'ask_human.<topic>'")
        if new.options is not None:
            _check_options(new.options)
    elif new.kind != "approval":
        raise RequestError(f"unknown kind of request {new.kind!r}")
    elif new.action.casefold().startswith(QUESTION_ACTION):
        # Not only ask_human and ask_human.*: a route written for questions ("ask_human*")
        # must never receive an approval, whose silence it might treat as consent.
        raise RequestError(f"actions starting with {QUESTION_ACTION!r} are for questions: call ask_human to ask a "
                           "human one, or name the action otherwise")  # fmt: skip
    elif new.options is not None:
        raise RequestError("only a question (ask_human) offers options")
    _check_text("question" if new.kind == "question" else "summary", new.summary, MAX_SUMMARY)
    if new.kind == "question" and not _seen(new.summary):
        raise RequestError("'question' shows nothing (only invisible characters); write the question")
    if not isinstance(new.metadata, dict):
        raise RequestError("'metadata' must be an object of scalar values, e.g. {\"amount\": 120}")
    _check_metadata(new.metadata)
    if new.idempotency_key is not None:
        _check_text("idempotency_key", new.idempotency_key, MAX_KEY, single_line=True)
    if new.claimed_requester is not None:
        _check_text("agent_name", new.claimed_requester, MAX_ACTION, single_line=True)
    if new.route is not None:
        _check_text("route", new.route, MAX_ROUTE, single_line=True)
    if new.callback_url is not None:
        _check_text("callback_url", new.callback_url, MAX_URL, single_line=True)
    if new.cwd is not None:
        _check_text("cwd", new.cwd, MAX_URL, single_line=True)
    if new.timeout_seconds is not None and not (MIN_TIMEOUT <= new.timeout_seconds <= MAX_TIMEOUT):
        raise RequestError(f"'timeout_seconds' must be between {MIN_TIMEOUT:.0f} and {MAX_TIMEOUT:.0f}")
    details = _encode_details(new.details)
    metadata = dumps(new.metadata)
    # Hashes of older requests stay the same: what they did not have is not hashed.
    extra: list[Any] = [new.callback_url] if new.callback_url is not None else []
    if new.kind == "question":
        extra += ["question", new.options]
    head = dumps([new.action, new.summary, new.route, new.timeout_seconds, new.claimed_requester, *extra])
    digest = hashlib.sha256("\x1e".join((head, details, metadata)).encode()).hexdigest()
    return Encoded(None if new.details is None else details, metadata, digest,
                   _action_digest(new.action, details, metadata))  # fmt: skip


def _encode_details(details: Any, name: str = "details") -> str:
    """``details`` as canonical JSON, within the size bound and free of control characters."""
    try:
        text = dumps(details)
    except RecursionError:
        raise RequestError(f"'{name}' is nested too deeply; flatten it") from None
    except (TypeError, ValueError):
        raise RequestError(f"'{name}' must be plain JSON (no NaN or Infinity)") from None
    if len(text.encode()) > MAX_DETAILS_BYTES:
        raise RequestError(
            f"'{name}' is {len(text.encode())} bytes as JSON; the limit is {MAX_DETAILS_BYTES}. "
            "Summarize it or send a link"
        )
    _check_details(details)
    return text


def _action_digest(action: str, details_json: str, metadata_json: str) -> str:
    return hashlib.sha256(
        f'{{"action":{dumps(action)},"details":{details_json},"metadata":{metadata_json}}}'.encode()
    ).hexdigest()


def check_edit(action: str, details: Any, metadata: dict[str, Any], edited: Any) -> tuple[str, str] | None:
    """An approver's edit of a request's ``details`` ("Edit before approving"), checked like an
    agent's: (its canonical JSON, the action digest of the edited call), or None when it is
    the same as the original (no edit). The arguments of a tool call stay an object."""
    if edited is None:
        raise RequestError("the edited details are empty; give the arguments to approve, as JSON")
    if isinstance(details, dict) and not isinstance(edited, dict):
        raise RequestError("the edited details must be a JSON object, like the original arguments")
    text = _encode_details(edited, "edited details")
    if text == dumps(details):
        return None
    return text, _action_digest(action, text, dumps(metadata))
