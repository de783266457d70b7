"""Button data that only we can make: ``<action>:<target>:<HMAC>``, at most 64 bytes.

Actions on a request (target: its 12 hex digits): ``a`` approve, ``r`` reject, ``w`` reject
with a reason, ``n`` approve with a note, ``e`` edit before approving, ``g0``–``g2`` approve and grant the route's
first–third grant option; on a question (``ask_human``), ``o0``–``o9`` answer with its first–tenth
offered option (the data carries only the index: the answer is the stored option) and ``q``
asks for an answer in the approver's own words. Their
HMAC also covers the request's ``action_digest``, which the data does not carry: it is checked
once the request is loaded, so the data is good only for exactly the content the prompt shows.
On a grant (``v``, target: its hex digits): revoke. On a digest (target: the id of the render —
one rendering of the digest message, an AUTOINCREMENT id that is never reused): ``A`` approve
all, ``R`` reject all, ``E`` review each; their HMAC also covers the chat, so the data is
worthless anywhere else, and a press counts only on the chat's newest render (see updates.py).
On a proposed edit (target: its id, an AUTOINCREMENT id that is never reused): ``c`` approve
edited, ``d`` discard; their HMAC also covers the edit's request and that request's action
digest, so the data is worthless on any other edit, request or content.

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

APPROVE, REJECT, REJECT_WITH_REASON, APPROVE_WITH_NOTE, EDIT, REVOKE = "a", "r", "w", "n", "e", "v"
APPROVE_ALL, REJECT_ALL, REVIEW_EACH = "A", "R", "E"
APPROVE_EDITED, DISCARD_EDIT = "c", "d"
GRANT_PREFIX = "g"
ANSWER, OPTION_PREFIX = "q", "o"  # a question's "✍️ Answer…", and its options "o0".."o9"
QUESTION_ACTIONS = {ANSWER, *(f"{OPTION_PREFIX}{i}" for i in range(10))}
REQUEST_ACTIONS = {APPROVE, REJECT, REJECT_WITH_REASON, APPROVE_WITH_NOTE, EDIT, "g0", "g1", "g2", *QUESTION_ACTIONS}
DIGEST_ACTIONS = {APPROVE_ALL, REJECT_ALL, REVIEW_EACH}
EDIT_ACTIONS = {APPROVE_EDITED, DISCARD_EDIT}
_FORMAT = re.compile(
    r"([arwnevq]|g[0-2]|o[0-9]):([0-9a-f]{12}):([A-Za-z0-9_-]{22})|([ARE]):(\d{1,15}):([A-Za-z0-9_-]{22})"
    r"|([cd]):(\d{1,15}):([A-Za-z0-9_-]{22})"
)
MAX_CALLBACK_DATA = 64
_PREFIX = {"v": "grt_"}


def new_key() -> str:
    return secrets.token_hex(32)


@dataclass(frozen=True, slots=True)
class Press:
    action: str
    target: str  # "req_…", "grt_…", or a digest render's id

    @property
    def request_id(self) -> str:
        return self.target

    @property
    def render_id(self) -> int:
        return int(self.target)

    @property
    def edit_id(self) -> int:
        return int(self.target)

    @property
    def grant_option(self) -> int | None:
        """For ``g0``–``g2``: which of the route's grant_options."""
        return int(self.action[1]) if self.action.startswith(GRANT_PREFIX) else None

    @property
    def option(self) -> int | None:
        """For ``o0``–``o9``: which of the question's options."""
        return int(self.action[1]) if self.action.startswith(OPTION_PREFIX) else None


class ButtonSigner:
    def __init__(self, key: str) -> None:
        self._key = bytes.fromhex(key)

    def _mac(self, message: str) -> str:
        digest = hmac.new(self._key, message.encode(), hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    @staticmethod
    def _request_message(action: str, hexid: str, digest: str | None) -> str:
        return f"{action}:{hexid}:{digest or ''}"

    @staticmethod
    def _digest_message(action: str, render_id: str, chat_id: int) -> str:
        return f"{action}:render {render_id}:{chat_id}"  # not the old "A:<upto>:<chat>": that data dies

    def sign(self, action: str, target: str, *, digest: str | None = None) -> str:
        """Data for a button on a request (``req_…``, bound to its ``action_digest``) or a grant (``grt_…``)."""
        assert action in REQUEST_ACTIONS | {REVOKE}
        hexid = target.split("_", 1)[1]
        message = f"{action}:{hexid}" if action == REVOKE else self._request_message(action, hexid, digest)
        data = f"{action}:{hexid}:{self._mac(message)}"
        assert len(data.encode()) <= MAX_CALLBACK_DATA
        return data

    @staticmethod
    def _edit_message(action: str, edit_id: int, request_id: str, digest: str | None) -> str:
        return f"{action}:edit {edit_id}:{request_id}:{digest or ''}"

    def sign_edit(self, action: str, edit_id: int, request_id: str, digest: str | None) -> str:
        """Data for a button on a proposed edit, bound to it, its request and that request's digest."""
        assert action in EDIT_ACTIONS
        data = f"{action}:{edit_id}:{self._mac(self._edit_message(action, edit_id, request_id, digest))}"
        assert len(data.encode()) <= MAX_CALLBACK_DATA
        return data

    def verify_edit(self, data: str | None, edit_id: int, request_id: str, digest: str | None) -> Press | None:
        """The press on proposed edit ``edit_id`` (of ``request_id``, whose ``action_digest`` is
        ``digest``) the data stands for; None if it is not ours or was made for another edit,
        request or content."""
        found = _FORMAT.fullmatch(data or "")
        if found is None or not found.group(7) or int(found.group(8)) != edit_id:
            return None
        action, mac = found.group(7), found.group(9)
        if not hmac.compare_digest(mac, self._mac(self._edit_message(action, edit_id, request_id, digest))):
            return None
        return Press(action, str(edit_id))

    def sign_digest(self, action: str, render_id: int, chat_id: int) -> str:
        assert action in DIGEST_ACTIONS
        data = f"{action}:{render_id}:{self._mac(self._digest_message(action, str(render_id), chat_id))}"
        assert len(data.encode()) <= MAX_CALLBACK_DATA
        return data

    @staticmethod
    def claimed(data: str | None) -> Press | None:
        """What well-formed data says it is, *unverified*: which request to load before
        ``verify_request``. None for data that is not even in our format."""
        found = _FORMAT.fullmatch(data or "")
        if found is None:
            return None
        if found.group(1):
            return Press(found.group(1), _PREFIX.get(found.group(1), "req_") + found.group(2))
        if found.group(7):
            return Press(found.group(7), found.group(8))
        return Press(found.group(4), found.group(5))

    def verify(self, data: str | None, chat_id: int | None = None) -> Press | None:
        """The grant or digest press the data stands for, or None if it is not ours (digest data:
        not for this chat). Request data never verifies here: use ``verify_request``."""
        found = _FORMAT.fullmatch(data or "")
        if found is None:
            return None
        if found.group(1):
            action, hexid, mac = found.group(1, 2, 3)
            if action != REVOKE or not hmac.compare_digest(mac, self._mac(f"{action}:{hexid}")):
                return None
            return Press(action, _PREFIX[action] + hexid)
        if found.group(7):  # edit data verifies only with its edit and request: ``verify_edit``
            return None
        action, render_id, mac = found.group(4, 5, 6)
        if chat_id is None or not hmac.compare_digest(mac, self._mac(self._digest_message(action, render_id, chat_id))):
            return None
        return Press(action, render_id)

    def verify_request(self, data: str | None, digest: str | None) -> Press | None:
        """The press on a request the data stands for, given that request's ``action_digest``;
        None if the data is not ours or was made for other content."""
        found = _FORMAT.fullmatch(data or "")
        if found is None or not found.group(1) or found.group(1) not in REQUEST_ACTIONS:
            return None
        action, hexid, mac = found.group(1, 2, 3)
        if not hmac.compare_digest(mac, self._mac(self._request_message(action, hexid, digest))):
            return None
        return Press(action, "req_" + hexid)
