"""What an agent may ask for: the bounds of a new request, checked and serialized once.

``check_new_request`` is the gate every new request passes (MCP, hooks, tests alike); the
bounds are documented in the README and in the tool schemas.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import RequestError
from .store import dumps

# Input bounds, documented in the README and in the tool schemas.
MAX_ACTION = 200
MAX_SUMMARY = 1_000
MAX_DETAILS_BYTES = 64 * 1024
MAX_METADATA_KEYS = 50
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 1_000
MAX_KEY = 200
MAX_REASON = 2_000
MIN_TIMEOUT = 10.0
MAX_TIMEOUT = 30 * 86400.0


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


def _check_text(name: str, value: str, limit: int, *, single_line: bool = False) -> None:
    if not value.strip():
        raise RequestError(f"'{name}' must not be empty")
    if len(value) > limit:
        raise RequestError(f"'{name}' is {len(value)} characters; the limit is {limit}. Shorten it")
    bad = [c for c in value if (ord(c) < 32 and (single_line or c not in "\n\t")) or ord(c) == 127]
    if bad:
        raise RequestError(f"'{name}' contains control characters ({bad[0]!r}); remove them")


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
    _check_text("summary", new.summary, MAX_SUMMARY)
    if not isinstance(new.metadata, dict):
        raise RequestError("'metadata' must be an object of scalar values, e.g. {\"amount\": 120}")
    if len(new.metadata) > MAX_METADATA_KEYS:
        raise RequestError(f"'metadata' has {len(new.metadata)} keys; the limit is {MAX_METADATA_KEYS}")
    for key, value in new.metadata.items():
        if not isinstance(key, str) or not key or len(key) > MAX_METADATA_KEY:
            raise RequestError(f"metadata keys must be 1–{MAX_METADATA_KEY} characters; {key!r} is not")
        if value is not None and not isinstance(value, str | int | float | bool):
            raise RequestError(
                f"metadata[{key!r}] must be a string, number, boolean or null; put structures in 'details'"
            )
        if isinstance(value, str) and len(value) > MAX_METADATA_VALUE:
            raise RequestError(
                f"metadata[{key!r}] is longer than {MAX_METADATA_VALUE} characters; move it to 'details'"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise RequestError(f"metadata[{key!r}] must be a finite number")
    if new.idempotency_key is not None:
        _check_text("idempotency_key", new.idempotency_key, MAX_KEY, single_line=True)
    if new.claimed_requester is not None:
        _check_text("agent_name", new.claimed_requester, MAX_ACTION, single_line=True)
    if new.timeout_seconds is not None and not (MIN_TIMEOUT <= new.timeout_seconds <= MAX_TIMEOUT):
        raise RequestError(f"'timeout_seconds' must be between {MIN_TIMEOUT:.0f} and {MAX_TIMEOUT:.0f}")
    try:
        details = dumps(new.details)
    except (TypeError, ValueError, RecursionError) as exc:
        raise RequestError(f"'details' must be plain JSON (no NaN or Infinity): {exc}") from None
    if len(details.encode()) > MAX_DETAILS_BYTES:
        raise RequestError(
            f"'details' is {len(details.encode())} bytes as JSON; the limit is {MAX_DETAILS_BYTES}. "
            "Summarize it or send a link"
        )
    metadata = dumps(new.metadata)
    if new.callback_url is not None and len(new.callback_url) > 2000:
        raise RequestError("'callback_url' is longer than 2000 characters")
    extra = [new.callback_url] if new.callback_url is not None else []  # hashes of older requests stay the same
    head = dumps([new.action, new.summary, new.route, new.timeout_seconds, new.claimed_requester, *extra])
    digest = hashlib.sha256("\x1e".join((head, details, metadata)).encode()).hexdigest()
    action_digest = hashlib.sha256(
        f'{{"action":{dumps(new.action)},"details":{details},"metadata":{metadata}}}'.encode()
    ).hexdigest()
    return Encoded(None if new.details is None else details, metadata, digest, action_digest)
