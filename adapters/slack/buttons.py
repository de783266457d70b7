"""Button values and modal metadata that only we can make, each bound to what it was made for.

Slack sends a button's ``value`` back, unchanged, with the press (and a modal's
``private_metadata`` with its submission); anyone who can post to the app can also make up
such payloads. So every value carries an HMAC-SHA256 (the full 32 bytes, base64url), keyed
with a secret the store generates once (setting ``slack_button_key``), and a value is acted on
only when its MAC checks out. Formats (``:``-separated, matched by one strict regex each):

* on a request, ``q:<action>:<req_id>:<mac>`` — ``approve``, ``reject``, ``reason`` (reject
  with a reason), ``note`` (approve with a note), ``details``, ``edit`` (edit before approving),
  ``grant0``–``grant2`` (approve and grant the route's first–third grant option); on a question
  (``ask_human``), ``option0``–``option9`` (answer with its first–tenth offered option: the value
  carries only the index, the answer is always the stored option) and ``answer`` (opens the answer
  modal). The MAC also covers the request's ``action_digest``, which the value does not
  carry: it is checked once the request is loaded, so a value is good only for exactly the
  content the prompt showed.
* on a digest, ``d:<action>:<render id>:<mac>`` — ``approve_all``, ``reject_all``,
  ``review_each``; the MAC also covers the address (channel or user id) the digest was sent
  to, so the value is worthless anywhere else.
* on a grant, ``g:revoke:<grt_id>:<mac>``.
* a modal's metadata — reject with a reason, or approve with a note —
  ``m:<req_id>:<channel>:<ts>:<mac_user>:<mac_content>``: ``mac_content`` binds the request,
  the prompt message (``<channel>:<ts>``), the Slack user who opened the modal and the
  request's ``action_digest``; ``mac_user`` binds the same without the digest, plus
  ``mac_content`` itself. So the user and message can be checked before the request is loaded
  (``verify_modal``), and the content after it is loaded (``verify_modal_digest``); a change to
  any character fails both. Both MACs also bind the modal's kind (``MODAL_KINDS``): a reason
  modal's metadata never verifies as a note modal's (it cannot approve), nor the reverse; an
  edit modal's (``edit``) only asks for an edit, it decides nothing; an answer modal's
  (``answer``) only answers a question.
* a proposed edit's confirmation view ("Approve edited"),
  ``e:<edit id>:<req_id>:<channel>:<ts>:<mac>``: the MAC binds the proposed edit (a row the
  store keeps, with the edited arguments, the request and the approver who proposed it), the
  request, the prompt message, the Slack user and the request's ``action_digest``.

Every MAC is over a JSON array that starts with a version tag and the kind (``request``,
``digest``, ``grant``, ``modal-user``, ``modal``, ``note-modal-user``, ``note-modal``,
``edit-modal-user``, ``edit-modal``, ``answer-modal-user``, ``answer-modal``, ``edit-confirm``): the
encoding is unambiguous and a value of one kind never verifies as another. A replayed value is harmless: it names the same target,
action and content, and a decision is made only once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass

APPROVE, REJECT, REJECT_WITH_REASON, APPROVE_WITH_NOTE, DETAILS = "approve", "reject", "reason", "note", "details"
EDIT = "edit"  # "✏️ Edit": opens the edit modal
APPROVE_EDITED = "approve_edited"  # the edit's confirmation view (no button value: the audit's name for it)
GRANT = "grant"  # the actions are "grant0".."grant2": the route's grant option of that index
ANSWER = "answer"  # a question's "✍️ Answer…": opens the answer modal
OPTION = "option"  # a question's actions "option0".."option9": answer with its offered option of that index
APPROVE_ALL, REJECT_ALL, REVIEW_EACH = "approve_all", "reject_all", "review_each"
REVOKE = "revoke"
ACTION_PREFIX = "signoff:"  # every action_id is ACTION_PREFIX + action; the interaction handler dispatches on it
GRANT_OPTIONS = 3  # grant0..grant2
QUESTION_OPTIONS = 10  # option0..option9 (the core offers at most 10)
QUESTION_ACTIONS = frozenset({ANSWER, *(f"{OPTION}{i}" for i in range(QUESTION_OPTIONS))})
REQUEST_ACTIONS = frozenset(
    {
        APPROVE,
        REJECT,
        REJECT_WITH_REASON,
        APPROVE_WITH_NOTE,
        DETAILS,
        EDIT,
        *(f"{GRANT}{i}" for i in range(GRANT_OPTIONS)),
        *QUESTION_ACTIONS,
    }
)
DIGEST_ACTIONS = frozenset({APPROVE_ALL, REJECT_ALL, REVIEW_EACH})
MAX_VALUE = 2000  # Slack's limit on a button value
MAX_METADATA = 3000  # and on a view's private_metadata
# A modal's kind: the MAC tags of its metadata (content, user). "reason" keeps the tags it always had.
REASON_MODAL, NOTE_MODAL, EDIT_MODAL, ANSWER_MODAL = "reason", "note", "edit", "answer"
MODAL_KINDS = {REASON_MODAL: ("modal", "modal-user"), NOTE_MODAL: ("note-modal", "note-modal-user"),
               EDIT_MODAL: ("edit-modal", "edit-modal-user"), ANSWER_MODAL: ("answer-modal", "answer-modal-user")}  # fmt: skip

_VERSION = "signoff-slack-1"
_MAC = r"[A-Za-z0-9_-]{43}"  # 32 bytes, base64url without padding
_REQUEST_ID = r"req_[0-9a-f]{12}"
_GRANT_ID = r"grt_[0-9a-f]{12}"
_RENDER_ID = r"0|[1-9][0-9]{0,17}"
_MESSAGE = r"[A-Z0-9]{1,40}:[0-9]{1,12}\.[0-9]{1,9}"  # "<channel id>:<message ts>"
_VALUE = re.compile(
    rf"q:(?P<q_action>approve|reject|reason|note|details|edit|grant[0-2]|answer|option[0-9]):(?P<q_target>{_REQUEST_ID}):(?P<q_mac>{_MAC})"
    rf"|d:(?P<d_action>approve_all|reject_all|review_each):(?P<d_target>{_RENDER_ID}):(?P<d_mac>{_MAC})"
    rf"|g:(?P<g_action>revoke):(?P<g_target>{_GRANT_ID}):(?P<g_mac>{_MAC})"
)
_MODAL = re.compile(rf"m:(?P<request>{_REQUEST_ID}):(?P<message>{_MESSAGE}):(?P<user_mac>{_MAC}):(?P<mac>{_MAC})")
_EDIT_ID = r"[1-9][0-9]{0,17}"
_CONFIRM = re.compile(rf"e:(?P<edit>{_EDIT_ID}):(?P<request>{_REQUEST_ID}):(?P<message>{_MESSAGE}):(?P<mac>{_MAC})")


def new_key() -> str:
    return secrets.token_hex(32)


def grant_action(index: int) -> str:
    """The action of the button for the route's grant option ``index`` (0–2)."""
    if not 0 <= index < GRANT_OPTIONS:
        raise ValueError(f"grant option index {index} is out of range")
    return f"{GRANT}{index}"


@dataclass(frozen=True, slots=True)
class Press:
    action: str
    target: str  # "req_…", "grt_…", or a digest render's id as text

    @property
    def request_id(self) -> str:
        return self.target

    @property
    def render_id(self) -> int:
        return int(self.target)

    @property
    def grant_option(self) -> int | None:
        """For ``grant0``–``grant2``: which of the route's grant_options."""
        if self.action.startswith(GRANT) and self.action[len(GRANT) :].isdigit():
            return int(self.action[len(GRANT) :])
        return None

    @property
    def option(self) -> int | None:
        """For ``option0``–``option9``: which of the question's offered answers."""
        if self.action.startswith(OPTION) and self.action[len(OPTION) :].isdigit():
            return int(self.action[len(OPTION) :])
        return None


def _parse(value: str | None) -> tuple[str, str, str, str] | None:
    """(kind, action, target, mac) of a well-formed value; None for anything else."""
    if not isinstance(value, str):
        return None
    found = _VALUE.fullmatch(value)
    if found is None:
        return None
    kind = value[0]
    return kind, found[f"{kind}_action"], found[f"{kind}_target"], found[f"{kind}_mac"]


class SlackSigner:
    def __init__(self, key: str) -> None:
        self._key = bytes.fromhex(key)
        if len(self._key) < 16:
            raise ValueError("the Slack button key must be at least 16 bytes (32 hex digits)")

    def _mac(self, *parts: str) -> str:
        message = json.dumps([_VERSION, *parts], separators=(",", ":"), ensure_ascii=True)
        digest = hmac.new(self._key, message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def _check(self, mac: str, *parts: str) -> bool:
        return hmac.compare_digest(mac.encode(), self._mac(*parts).encode())

    # --- a request's buttons ---------------------------------------------------------------------

    def request(self, action: str, request_id: str, digest: str | None) -> str:
        """The value of a button on request ``request_id``, bound to its ``action_digest``."""
        if action not in REQUEST_ACTIONS or not re.fullmatch(_REQUEST_ID, request_id):
            raise ValueError(f"not a request button: {action!r} on {request_id!r}")
        return self._checked(f"q:{action}:{request_id}:{self._mac('request', action, request_id, digest or '')}")

    @staticmethod
    def claimed(value: str | None) -> Press | None:
        """What a well-formed value says it is, *unverified*: which request (or grant, or digest
        render) to load before verifying. None for a value that is not even in our format."""
        parsed = _parse(value)
        return None if parsed is None else Press(parsed[1], parsed[2])

    def verify_request(self, value: str | None, digest: str | None) -> Press | None:
        """The press on a request the value stands for, given that request's ``action_digest``;
        None if the value is not ours, not a request's, or was made for other content."""
        parsed = _parse(value)
        if parsed is None or parsed[0] != "q":
            return None
        _, action, request_id, mac = parsed
        if not self._check(mac, "request", action, request_id, digest or ""):
            return None
        return Press(action, request_id)

    # --- a digest's buttons ----------------------------------------------------------------------

    def digest(self, action: str, render_id: int, address: str) -> str:
        """The value of a button on one render of a digest, sent to ``address`` (channel or user id)."""
        if action not in DIGEST_ACTIONS or render_id < 0:
            raise ValueError(f"not a digest button: {action!r} on render {render_id!r}")
        return self._checked(f"d:{action}:{render_id}:{self._mac('digest', action, str(render_id), address)}")

    def verify_digest(self, value: str | None, address: str) -> Press | None:
        """The digest press the value stands for, if it was made for ``address``; else None."""
        parsed = _parse(value)
        if parsed is None or parsed[0] != "d":
            return None
        _, action, render_id, mac = parsed
        if not self._check(mac, "digest", action, render_id, address):
            return None
        return Press(action, render_id)

    # --- a grant's Revoke button -----------------------------------------------------------------

    def grant(self, grant_id: str) -> str:
        """The value of the Revoke button of grant ``grant_id``."""
        if not re.fullmatch(_GRANT_ID, grant_id):
            raise ValueError(f"not a grant id: {grant_id!r}")
        return self._checked(f"g:{REVOKE}:{grant_id}:{self._mac('grant', REVOKE, grant_id)}")

    def verify_grant(self, value: str | None) -> Press | None:
        parsed = _parse(value)
        if parsed is None or parsed[0] != "g":
            return None
        _, action, grant_id, mac = parsed
        if not self._check(mac, "grant", action, grant_id):
            return None
        return Press(action, grant_id)

    # --- the reject-with-reason and approve-with-note modals --------------------------------------

    def modal(self, request_id: str, digest: str | None, user_id: str, message: str, kind: str = REASON_MODAL) -> str:
        """The ``private_metadata`` of the ``kind`` modal (``REASON_MODAL``, ``NOTE_MODAL``, ``EDIT_MODAL``, ``ANSWER_MODAL``)
        ``user_id`` opened from the prompt ``message`` (``"<channel id>:<ts>"``) of request ``request_id``."""
        if not re.fullmatch(_REQUEST_ID, request_id) or not re.fullmatch(_MESSAGE, message):
            raise ValueError(f"not a request and message: {request_id!r}, {message!r}")
        content_tag, user_tag = MODAL_KINDS[kind]
        content_mac = self._mac(content_tag, request_id, message, user_id, digest or "")
        user_mac = self._mac(user_tag, request_id, message, user_id, content_mac)
        metadata = f"m:{request_id}:{message}:{user_mac}:{content_mac}"
        assert len(metadata) <= MAX_METADATA
        return metadata

    def verify_modal(self, metadata: str | None, user_id: str, kind: str = REASON_MODAL) -> tuple[str, str] | None:
        """(request id, prompt message ``"<channel>:<ts>"``) of ``kind`` metadata made for
        ``user_id``; None otherwise. This does NOT check the content: load the request, then
        ``verify_modal_digest``."""
        found = _MODAL.fullmatch(metadata) if isinstance(metadata, str) else None
        user_tag = MODAL_KINDS[kind][1]
        if found is None or not self._check(
            found["user_mac"], user_tag, found["request"], found["message"], user_id, found["mac"]
        ):
            return None
        return found["request"], found["message"]

    def verify_modal_digest(
        self, metadata: str | None, user_id: str, digest: str | None, kind: str = REASON_MODAL
    ) -> bool:
        """Whether the metadata was made for a ``kind`` modal, for ``user_id`` *and* for the
        request's content as it is now (its ``action_digest``): the check to pass before the
        submission decides anything."""
        found = _MODAL.fullmatch(metadata) if isinstance(metadata, str) else None
        if found is None or self.verify_modal(metadata, user_id, kind) is None:
            return False
        content_tag = MODAL_KINDS[kind][0]
        return self._check(found["mac"], content_tag, found["request"], found["message"], user_id, digest or "")

    # --- a proposed edit's confirmation view --------------------------------------------------------

    def edit_confirm(self, edit_id: int, request_id: str, digest: str | None, user_id: str, message: str) -> str:
        """The ``private_metadata`` of the view that confirms proposed edit ``edit_id`` of request
        ``request_id``, made by ``user_id`` from the prompt ``message`` (``"<channel id>:<ts>"``)."""
        if edit_id < 1 or not re.fullmatch(_REQUEST_ID, request_id) or not re.fullmatch(_MESSAGE, message):
            raise ValueError(f"not an edit, request and message: {edit_id!r}, {request_id!r}, {message!r}")
        mac = self._mac("edit-confirm", str(edit_id), request_id, message, user_id, digest or "")
        metadata = f"e:{edit_id}:{request_id}:{message}:{mac}"
        assert len(metadata) <= MAX_METADATA
        return metadata

    @staticmethod
    def claimed_edit(metadata: str | None) -> tuple[int, str, str] | None:
        """(edit id, request id, prompt message) the metadata *claims*, unverified: what to load
        before ``verify_edit_confirm``. None for anything not in the format."""
        found = _CONFIRM.fullmatch(metadata) if isinstance(metadata, str) else None
        return None if found is None else (int(found["edit"]), found["request"], found["message"])

    def verify_edit_confirm(self, metadata: str | None, user_id: str, digest: str | None) -> bool:
        """Whether the metadata was made for ``user_id`` and the request's content as it is now
        (its ``action_digest``), for the edit, request and message it names."""
        found = _CONFIRM.fullmatch(metadata) if isinstance(metadata, str) else None
        return found is not None and self._check(
            found["mac"], "edit-confirm", found["edit"], found["request"], found["message"], user_id, digest or ""
        )

    @staticmethod
    def _checked(value: str) -> str:
        assert len(value) <= MAX_VALUE and _VALUE.fullmatch(value), value
        return value
