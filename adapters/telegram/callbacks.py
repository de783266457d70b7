"""Button data that only we can make: ``<action>:<request hex>:<HMAC>``, at most 64 bytes.

The HMAC key is a secret the store generates once (``settings.telegram_callback_key``), so
every process signs and checks alike, and a forged or altered press is refused. A replayed
press is harmless: it names the same request and action, and a decision is made only once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

APPROVE, REJECT, REJECT_WITH_REASON = "a", "r", "w"
_ACTIONS = {APPROVE, REJECT, REJECT_WITH_REASON}
_FORMAT = re.compile(r"([arw]):([0-9a-f]{12}):([A-Za-z0-9_-]{22})")
MAX_CALLBACK_DATA = 64


def new_key() -> str:
    return secrets.token_hex(32)


@dataclass(frozen=True, slots=True)
class Press:
    action: str
    request_id: str


class CallbackSigner:
    def __init__(self, key: str) -> None:
        self._key = bytes.fromhex(key)

    def _mac(self, action: str, rid: str) -> str:
        digest = hmac.new(self._key, f"{action}:{rid}".encode(), hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def sign(self, action: str, request_id: str) -> str:
        assert action in _ACTIONS and request_id.startswith("req_")
        rid = request_id.removeprefix("req_")
        data = f"{action}:{rid}:{self._mac(action, rid)}"
        assert len(data.encode()) <= MAX_CALLBACK_DATA
        return data

    def verify(self, data: str | None) -> Press | None:
        """The press the data stands for, or None if it is not ours."""
        found = _FORMAT.fullmatch(data or "")
        if found is None:
            return None
        action, rid, mac = found.groups()
        if not hmac.compare_digest(mac, self._mac(action, rid)):
            return None
        return Press(action, f"req_{rid}")
