"""Button data that only we can make: ``<action>:<target>:<HMAC>``, at most 64 bytes.

Actions on a request (target: its 12 hex digits): ``a`` approve, ``r`` reject, ``w`` reject
with a reason, ``g0``–``g2`` approve and grant the route's first–third grant option. On a
grant (``v``, target: its hex digits): revoke. On a digest (target: the last item the
message showed, so a press never covers a request the approver has not seen): ``A`` approve
all, ``R`` reject all, ``E`` review each; their HMAC also covers the chat, so the data is
worthless anywhere else.

The HMAC key is a secret the store generates once (``settings.telegram_callback_key``), so
every process signs and checks alike, and a forged or altered press is refused. A replayed
press is harmless: it names the same target and action, and a decision is made only once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

APPROVE, REJECT, REJECT_WITH_REASON, REVOKE = "a", "r", "w", "v"
APPROVE_ALL, REJECT_ALL, REVIEW_EACH = "A", "R", "E"
GRANT_PREFIX = "g"
REQUEST_ACTIONS = {APPROVE, REJECT, REJECT_WITH_REASON, "g0", "g1", "g2"}
DIGEST_ACTIONS = {APPROVE_ALL, REJECT_ALL, REVIEW_EACH}
_FORMAT = re.compile(r"([arwv]|g[0-2]):([0-9a-f]{12}):([A-Za-z0-9_-]{22})|([ARE]):(\d{1,15}):([A-Za-z0-9_-]{22})")
MAX_CALLBACK_DATA = 64
_PREFIX = {"v": "grt_"}


def new_key() -> str:
    return secrets.token_hex(32)


@dataclass(frozen=True, slots=True)
class Press:
    action: str
    target: str  # "req_…", "grt_…", or a digest's last item

    @property
    def request_id(self) -> str:
        return self.target

    @property
    def grant_option(self) -> int | None:
        """For ``g0``–``g2``: which of the route's grant_options."""
        return int(self.action[1]) if self.action.startswith(GRANT_PREFIX) else None


class CallbackSigner:
    def __init__(self, key: str) -> None:
        self._key = bytes.fromhex(key)

    def _mac(self, action: str, target: str, chat_id: int | None = None) -> str:
        message = f"{action}:{target}" if chat_id is None else f"{action}:{target}:{chat_id}"
        digest = hmac.new(self._key, message.encode(), hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def sign(self, action: str, target: str) -> str:
        """Data for a button on a request (``req_…``) or a grant (``grt_…``)."""
        assert action in REQUEST_ACTIONS | {REVOKE}
        hexid = target.split("_", 1)[1]
        data = f"{action}:{hexid}:{self._mac(action, hexid)}"
        assert len(data.encode()) <= MAX_CALLBACK_DATA
        return data

    def sign_digest(self, action: str, upto: int, chat_id: int) -> str:
        assert action in DIGEST_ACTIONS
        return f"{action}:{upto}:{self._mac(action, str(upto), chat_id)}"

    def verify(self, data: str | None, chat_id: int | None = None) -> Press | None:
        """The press the data stands for, or None if it is not ours (digest data: not for this chat)."""
        found = _FORMAT.fullmatch(data or "")
        if found is None:
            return None
        if found.group(1):
            action, hexid, mac = found.group(1, 2, 3)
            if not hmac.compare_digest(mac, self._mac(action, hexid)):
                return None
            return Press(action, _PREFIX.get(action, "req_") + hexid)
        action, upto, mac = found.group(4, 5, 6)
        if chat_id is None or not hmac.compare_digest(mac, self._mac(action, upto, chat_id)):
            return None
        return Press(action, upto)
