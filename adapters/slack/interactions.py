"""What signoff does with what a person does in Slack: button presses, the reason, note and
answer modals, the ``/signoff`` command. Socket Mode and HTTP mode hand their payloads to the same ``Interactions``.

A press counts only when its value is ours (signed), made for this request's very content (its
action digest), on a message that shows this request (one of its recorded prompts), by the
Slack member who is an approver of it (never the channel, never a name), while it is pending.
Everything else is answered with an ephemeral message only the presser sees, and a refusal by
a bystander is audited. The rules themselves are the core's (``ChannelService``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from signoff.server.channels import ChannelService
from signoff.server.details_text import EMPTY_COMMAND, NOT_AN_OBJECT, parse_edit
from signoff.server.errors import NotAllowedError, NotFoundError, RequestError
from signoff.server.models import ApprovalRequest, Decision, Status
from signoff.server.outbox import Kind

from .buttons import (
    ACTION_PREFIX,
    ANSWER,
    ANSWER_MODAL,
    APPROVE,
    APPROVE_ALL,
    APPROVE_EDITED,
    APPROVE_WITH_NOTE,
    DETAILS,
    EDIT,
    EDIT_MODAL,
    NOTE_MODAL,
    QUESTION_ACTIONS,
    REASON_MODAL,
    REJECT,
    REJECT_ALL,
    REJECT_WITH_REASON,
    REVIEW_EACH,
    REVOKE,
    Press,
    SlackSigner,
)
from .edits import (
    CONFIRM_CALLBACK,
    EDIT_BLOCK,
    EDIT_CALLBACK,
    confirm_view,
    diff_too_long,
    edit_modal,
    note_view,
    plain_note,
    too_long,
)
from .questions import ANSWER_BLOCK, ANSWER_CALLBACK, EMPTY_ANSWER, answer_modal, late_view, prompt_for
from .render import (
    NOTE_BLOCK,
    NOTE_CALLBACK,
    REASON_BLOCK,
    REASON_CALLBACK,
    already,
    clock,
    details_modal,
    escape,
    grants_list,
    note_modal,
    reason_modal,
    short_digest,
    web_link_text,
)

log = logging.getLogger("signoff.slack")

NOT_VALID = "This button is not valid."
NOT_HERE = "This button is not valid here: it is not on a prompt of its request. `/signoff pending` sends a fresh one."
OUT_OF_DATE = "This digest is out of date; use the newest one."
# "Edit before approving": what the edit modal and its confirmation say (the core's words where it has them).
NO_CHANGE = "That changes nothing: edit the arguments, or press Approve on the prompt."
EDIT_CLOSED = "This edit was already approved or discarded."
_EDIT_ERRORS = {NOT_AN_OBJECT: "That is not a JSON object.", EMPTY_COMMAND: "The command is empty."}
HELP = (
    "signoff puts approval requests from AI agents in front of their approvers.\n"
    "`/signoff pending` — the requests waiting for you, with their buttons\n"
    "`/signoff show ID` — one request in full\n"
    "`/signoff grants` — the live grants, with a button to revoke each\n"
    "`/signoff web` — a sign-in link to the web inbox, shown to you alone\n"
    "`/signoff whoami` — your Slack member id, and whether you are an approver"
)


class Interactions:
    """Turns Slack payloads into calls on the core. ``on_decided`` wakes the outbox so every
    prompt shows an outcome at once."""

    def __init__(self, core: ChannelService, client: AsyncWebClient, signer: SlackSigner,
                 on_decided: Callable[[], None]) -> None:  # fmt: skip
        self.core = core
        self.client = client
        self.signer = signer
        self.on_decided = on_decided

    # --- entry points ----------------------------------------------------------------------

    async def block_actions(self, payload: dict[str, Any]) -> None:
        """A button press (already acknowledged: Slack wants the ack within 3 s)."""
        user = str((payload.get("user") or {}).get("id") or "")
        for action in payload.get("actions") or []:
            action_id = str(action.get("action_id") or "")
            if not action_id.startswith(ACTION_PREFIX) or not user:
                continue
            await self._press(payload, user, action_id.removeprefix(ACTION_PREFIX), action.get("value"))

    async def view_submission(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        """The reason or the note modal was submitted (or an edit, or its confirmation); return
        the ack's payload (errors keep it open). Each modal's metadata is signed for its kind: a
        reason modal's can only reject, a note modal's only approve, an edit modal's only propose
        an edit, whatever callback_id the payload claims."""
        view = payload.get("view") or {}
        callback = view.get("callback_id")
        if callback == EDIT_CALLBACK:
            return await self._edit_submitted(payload, view)
        if callback == CONFIRM_CALLBACK:
            return await self._edit_confirmed(payload, view)
        if callback == ANSWER_CALLBACK:
            return await self._answer_submitted(payload, view)
        if callback not in (REASON_CALLBACK, NOTE_CALLBACK):
            return None
        note = callback == NOTE_CALLBACK
        kind, block = (NOTE_MODAL, NOTE_BLOCK) if note else (REASON_MODAL, REASON_BLOCK)
        action = APPROVE_WITH_NOTE if note else REJECT_WITH_REASON
        user = str((payload.get("user") or {}).get("id") or "")
        metadata = view.get("private_metadata")
        found = self.signer.verify_modal(metadata, user, kind)
        req = None if found is None else await self.core.get(found[0])
        if found is None or req is None or not self.signer.verify_modal_digest(metadata, user, req.action_digest, kind):
            log.warning("slack: refused a %s modal with metadata that is not ours (user %s)", kind, user)
            return _errors(NOT_VALID, block)
        if await self.core.outbox.request_on(found[1]) != req.id:
            await self.core.refuse(req, user, "the modal is not from a prompt of this request", action)
            return _errors(NOT_HERE, block)
        text = _text_input(view, block)
        if not note and not text.strip():
            return _errors("Write the reason, or press Reject instead.", block)
        try:
            if note:
                decision = await self.core.approve_with_note(req, user, action, text)
            else:
                decision = await self.core.decide(req, False, user, action, text)
        except RequestError as exc:  # refused (audited), an empty note, or text the core does not take
            return _errors(str(exc), block)
        if decision.changed or decision.voted:
            self.on_decided()
        if not decision.changed:
            await self._tell(found[1], user, await self._result(decision, note))
        return None

    async def slash(self, payload: dict[str, Any]) -> dict[str, Any]:
        """``/signoff …``: the ack's payload is the answer, shown to the caller only."""
        user = str(payload.get("user_id") or "")
        word, _, rest = str(payload.get("text") or "").strip().partition(" ")
        word = word.lower()
        if word == "pending":
            return _ephemeral(await self._pending(user))
        if word == "show":
            return await self._show(user, rest.strip(), str(payload.get("trigger_id") or ""))
        if word == "grants":
            return await self._grants(user)
        if word == "web":
            return await self._web(user)
        if word in ("whoami", "start"):
            name = self.core.configured(user)
            role = (f"You are approver *{escape(name)}*." if name else
                    f"You are not an approver. To become one, add to the config:\n```[approvers.yourname]\n"
                    f"slack_user_id = \"{escape(user)}\"```")  # fmt: skip
            return _ephemeral(f"Your Slack member id is `{escape(user)}`.\n{role}")
        return _ephemeral(HELP)

    # --- presses ---------------------------------------------------------------------------

    async def _press(self, payload: dict[str, Any], user: str, action: str, value: Any) -> None:
        value = value if isinstance(value, str) else None
        where = _message_of(payload)
        if action in (APPROVE_ALL, REJECT_ALL, REVIEW_EACH):
            await self._digest_press(payload, user, action, value, where)
        elif action == REVOKE:
            await self._revoke(where, user, value)
        else:
            await self._request_press(payload, user, value, where)

    async def _request_press(self, payload: dict[str, Any], user: str, value: str | None, where: str | None) -> None:
        claimed = self.signer.claimed(value)
        req = None if claimed is None else await self.core.get(claimed.request_id)
        press = None if req is None else self.signer.verify_request(value, req.action_digest)
        # A question's buttons only answer it, an approval's only decide it (Details: both).
        if (
            req is None
            or press is None
            or (press.action != DETAILS and req.is_question != (press.action in QUESTION_ACTIONS))
        ):
            log.warning(
                "slack: refused a press with a value that is not ours, or made for other content (user %s)", user
            )
            await self._tell(where, user, NOT_VALID)
            return
        shown, untracked = (False, None) if where is None else await self._on_prompt(payload, req, where, user)
        if where is None or not shown:
            await self.core.refuse(req, user, "the button is not on a prompt of this request", press.action)
            await self._tell(where, user, NOT_HERE)
            return
        try:
            await self.core.check_approver(req, user, press.action)
        except NotAllowedError as exc:
            await self._tell(where, user, str(exc))
            return
        if press.action == DETAILS:  # an approver's own look: no decision, no pending check
            await self._open(payload, details_modal(req), where, user)
            return
        if req.status is not Status.PENDING:
            await self._tell(where, user, already(req))
            return
        if untracked is not None:  # an approver's press on a prompt we lost track of: edited with the rest
            await self.core.outbox.track(req.id, untracked, where)
        if req.is_question:
            await self._question_press(payload, req, press, user, where)
            return
        if press.action == EDIT:
            await self._open_edit(payload, req, user, where)
            return
        if press.action in (REJECT_WITH_REASON, APPROVE_WITH_NOTE):
            kind = REASON_MODAL if press.action == REJECT_WITH_REASON else NOTE_MODAL
            metadata = self.signer.modal(req.id, req.action_digest, user, where, kind)
            view = reason_modal(req, metadata) if kind == REASON_MODAL else note_modal(req, metadata)
            await self._open(payload, view, where, user)
            return
        try:
            if press.grant_option is not None:
                decision, grant = await self.core.approve_and_grant(req, press.grant_option, user, press.action,
                                                                     where.partition(":")[0])  # fmt: skip
            else:
                decision, grant = await self.core.decide(req, press.action == APPROVE, user, press.action), None
        except NotAllowedError as exc:
            await self._tell(where, user, str(exc))
            return
        if decision.changed or decision.voted:
            self.on_decided()
        if not decision.changed:  # the edited prompt says it all when it decided
            await self._tell(where, user, await self._result(decision, press.action != REJECT))
        if grant is not None:  # its notice goes out through the outbox: paced, and retried after a 429
            await self.core.outbox.queue(grant.from_request, Kind.GRANT_NOTICE, where.partition(":")[0])
            self.on_decided()

    async def _on_prompt(
        self, payload: dict[str, Any], req: ApprovalRequest, where: str, user: str
    ) -> tuple[bool, str | None]:
        """Whether the pressed message shows ``req``: one of its recorded prompts, or — a prompt
        pressed before its sender recorded it, or sent just before a crash — a message whose
        blocks, as Slack hands them back, show the request's ID and shortened digest; and for
        the latter, the place to record it under once the press is known to count (the caller
        records it only then: a refused press records nothing). Another request's prompt, a
        digest or any other message shows nothing."""
        shown = await self.core.outbox.request_on(where)
        if shown is not None:
            return shown == req.id, None
        text = json.dumps((payload.get("message") or {}).get("blocks") or [])
        if not (req.action_digest and req.id in text and short_digest(req) in text):
            return False, None
        channel = where.partition(":")[0]
        # Recorded under the place its outbox rows use: the approver's id for a DM, else the channel.
        mine = [e.address for e in req.reach(channel="slack") if e.user == user and e.address in (user, channel)]
        return True, mine[0] if mine else channel

    async def _result(self, decision: Decision, approve: bool) -> str:
        """What the presser is told about a vote, or a decision that changed nothing."""
        return await self.core.told(decision, approve) or already(decision.request)

    async def _digest_press(self, payload: dict[str, Any], user: str, action: str, value: str | None,
                            where: str | None) -> None:  # fmt: skip
        book = self.core.digests
        claimed = self.signer.claimed(value)
        address = None if claimed is None or not claimed.target.isdigit() else await book.address_of(claimed.render_id)
        press = None if address is None else self.signer.verify_digest(value, address)
        if press is None or address is None or press.action != action:
            await self._tell(where, user, NOT_VALID if address is not None or claimed is None else OUT_OF_DATE)
            return
        rendering = None if where is None else await book.current(address, press.render_id, where)
        if rendering is None:
            await self._tell(where, user, OUT_OF_DATE)
            return
        items = await book.listed(rendering)
        if not items:
            await self._tell(where, user, "Nothing in this digest is pending any more.")
            return
        if action == REVIEW_EACH:
            names = {r.id: self.core.approver_of(r, user) for r in items}
            mine = {rid for rid, name in names.items() if name}
            if not mine:
                await self._tell(where, user, "None of these requests is yours to decide.")
                return
            taken = await book.take_for_review(address, items, only=mine,
                                               prompted=await self.core.outbox.prompted(address))  # fmt: skip
            for req in taken:
                await self.core.outbox.queue(req.id, Kind.SHOW, address, names[req.id] or "")
            await book.queue_refresh(items[0].id, address)
            self.on_decided()
            await self._tell(where, user, f"Sending the {len(taken)} oldest one by one.")
            return
        approve = action == APPROVE_ALL
        items = [r for r in items if not r.is_question]  # answered one by one, never in bulk
        if not items:
            await self._tell(where, user, "Questions are answered one by one: press “Review each”.")
            return
        try:
            bulk = await self.core.decide_bulk(items, approve, user, action)
        except NotAllowedError as exc:
            await self._tell(where, user, str(exc))
            return
        self.on_decided()
        text = f"{'Approved' if approve else 'Rejected'} {bulk.done} of {len(items)}."
        if bulk.skipped:
            text += f" {bulk.skipped} skipped (your own requests, already decided, or already voted)."
        await self._tell(where, user, text)

    async def _revoke(self, where: str | None, user: str, value: str | None) -> None:
        press = self.signer.verify_grant(value)
        grant = None if press is None else await self.core.grant(press.target)
        if press is None or grant is None:
            await self._tell(where, user, NOT_VALID if press is None else "This grant no longer exists.")
            return
        try:
            revoked = await self.core.revoke(grant, user)
        except NotAllowedError as exc:
            await self._tell(where, user, str(exc))
            return
        if grant.notice_channel == "slack" and grant.notice_address:
            await self.core.outbox.queue(grant.from_request, Kind.GRANT_NOTICE, grant.notice_address)
        self.on_decided()
        await self._tell(where, user, f"Revoked {grant.id}." if revoked else f"{grant.id} had already ended.")

    # --- questions (ask_human) ----------------------------------------------------------------

    async def _question_press(self, payload: dict[str, Any], req: ApprovalRequest, press: Press, user: str,
                              where: str) -> None:  # fmt: skip
        """An offered answer answers the question with that option (the stored text, never the
        value's); "✍️ Answer…" opens a modal for the approver's own words."""
        if press.action == ANSWER:
            metadata = self.signer.modal(req.id, req.action_digest, user, where, ANSWER_MODAL)
            await self._open(payload, answer_modal(req, metadata), where, user)
            return
        if press.option is None:  # cannot happen: a question's buttons are options and Answer…
            await self._tell(where, user, NOT_VALID)
            return
        try:
            decision = await self.core.answer_option(req, press.option, user, press.action)
        except RequestError as exc:  # refused (audited by the core): not this approver's, or no such option
            await self._tell(where, user, str(exc))
            return
        if decision.changed:
            self.on_decided()  # every prompt now says who answered and what
        else:
            await self._tell(where, user, await self._result(decision, True))

    async def _answer_submitted(self, payload: dict[str, Any], view: dict[str, Any]) -> dict[str, Any] | None:
        """The answer modal: answers the question with what was written, when its metadata was
        signed for an answer modal, this user, this question's content and one of its prompts.
        An empty or refused answer keeps the modal open, saying why; a question that ended
        meanwhile is shown as it ended, and nothing is decided."""
        user = str((payload.get("user") or {}).get("id") or "")
        metadata = view.get("private_metadata")
        found = self.signer.verify_modal(metadata, user, ANSWER_MODAL)
        req = None if found is None else await self.core.get(found[0])
        if (found is None or req is None or not req.is_question
                or not self.signer.verify_modal_digest(metadata, user, req.action_digest, ANSWER_MODAL)):  # fmt: skip
            log.warning("slack: refused an answer modal with metadata that is not ours (user %s)", user)
            return _errors(NOT_VALID, ANSWER_BLOCK)
        if await self.core.outbox.request_on(found[1]) != req.id:
            await self.core.refuse(req, user, "the modal is not from a prompt of this request", ANSWER)
            return _errors(NOT_HERE, ANSWER_BLOCK)
        if req.status is not Status.PENDING:
            return _update(late_view(req))
        text = _text_input(view, ANSWER_BLOCK)
        if not text.strip():
            return _errors(EMPTY_ANSWER, ANSWER_BLOCK)
        try:
            decision = await self.core.answer(req, user, ANSWER, text)
        except RequestError as exc:  # refused (audited), too long, control characters
            return _errors(str(exc), ANSWER_BLOCK)
        if not decision.changed:  # someone else answered first, or it expired: this answer made none
            return _update(late_view(decision.request))
        self.on_decided()
        return None  # closes the modal; every prompt now shows the answer

    # --- "edit before approving" -------------------------------------------------------------

    async def _open_edit(self, payload: dict[str, Any], req: ApprovalRequest, user: str, where: str) -> None:
        """ "✏️ Edit": the modal with the current arguments, for an approver who may edit this request."""
        try:  # whether ``user`` may edit it at all (the route's allow_edit, its quorum): the core's rule
            await self.core.check_edit(req, user, EDIT, req.details)
        except NotAllowedError as exc:  # refused and audited by the core
            await self._tell(where, user, str(exc))
            return
        except RequestError:  # the arguments as they stand fail a check of an edit's content: the
            pass  # modal opens all the same, and what is submitted is checked then
        view = edit_modal(req, self.signer.modal(req.id, req.action_digest, user, where, EDIT_MODAL))
        if view is None:
            await self._tell_mrkdwn(where, user, too_long(req))
            return
        await self._open(payload, view, where, user)

    async def _edit_submitted(self, payload: dict[str, Any], view: dict[str, Any]) -> dict[str, Any]:
        """The edited arguments: checked (by the core) and, if they are an edit, kept as a proposed
        edit and shown as a diff to confirm. Anything else keeps the modal open, saying why;
        nothing is decided here."""
        user = str((payload.get("user") or {}).get("id") or "")
        metadata = view.get("private_metadata")
        found = self.signer.verify_modal(metadata, user, EDIT_MODAL)
        req = None if found is None else await self.core.get(found[0])
        if (found is None or req is None
                or not self.signer.verify_modal_digest(metadata, user, req.action_digest, EDIT_MODAL)):  # fmt: skip
            log.warning("slack: refused an edit modal with metadata that is not ours (user %s)", user)
            return _errors(NOT_VALID, EDIT_BLOCK)
        where = found[1]
        if await self.core.outbox.request_on(where) != req.id:
            await self.core.refuse(req, user, "the modal is not from a prompt of this request", EDIT)
            return _errors(NOT_HERE, EDIT_BLOCK)
        if req.status is not Status.PENDING:
            return _errors(_plain_already(req), EDIT_BLOCK)
        try:
            edited = await self.core.check_edit(req, user, EDIT, parse_edit(req, _text_input(view, EDIT_BLOCK)))
        except RequestError as exc:  # not JSON, not an object, too long…, or refused (audited)
            return _errors(_EDIT_ERRORS.get(str(exc), str(exc)), EDIT_BLOCK)
        if edited is None:
            return _errors(NO_CHANGE, EDIT_BLOCK)
        edit_id = await self.core.outbox.propose_edit(where, req.id, user, edited)
        confirm = confirm_view(req, json.loads(edited),
                               self.signer.edit_confirm(edit_id, req.id, req.action_digest, user, where))  # fmt: skip
        if confirm is None:
            await self.core.outbox.close_edit(edit_id)
            return _update(note_view(diff_too_long(req)))
        return _update(confirm)

    async def _edit_confirmed(self, payload: dict[str, Any], view: dict[str, Any]) -> dict[str, Any] | None:
        """ "Approve edited": approves with exactly the proposed edit's arguments — the ones its
        diff showed — only when the view's metadata was signed for this very edit, its request,
        that request's content, its prompt and this user, and the edit is still open."""
        user = str((payload.get("user") or {}).get("id") or "")
        found = await self._confirmed_edit(user, view.get("private_metadata"))
        if found is None:
            return _update(plain_note(NOT_VALID))
        edit_id, req, details = found
        if req.status is not Status.PENDING:
            await self.core.outbox.close_edit(edit_id)
            return _update(note_view(f"{already(req)} Your edit was not used."))
        if not await self.core.outbox.close_edit(edit_id):
            return _update(plain_note(EDIT_CLOSED))
        try:
            decision = await self.core.approve_edited(req, user, APPROVE_EDITED, details)
        except RequestError as exc:  # refused (audited) or arguments the core does not take now
            return _update(plain_note(f"{exc} Your edit was not used."))
        if not decision.changed:  # another decision came first: this one made none
            return _update(note_view(f"{already(decision.request)} Your edit was not used."))
        self.on_decided()
        return None  # closes the view; every prompt now says "Approved with changes"

    async def view_closed(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        """The confirmation view was closed ("Discard"): its proposed edit can approve nothing any more."""
        view = payload.get("view") or {}
        if view.get("callback_id") == CONFIRM_CALLBACK:
            user = str((payload.get("user") or {}).get("id") or "")
            found = await self._confirmed_edit(user, view.get("private_metadata"))
            if found is not None:
                await self.core.outbox.close_edit(found[0])
        return None  # the ack of a view_closed carries nothing

    async def _confirmed_edit(self, user: str, metadata: Any) -> tuple[int, ApprovalRequest, Any] | None:
        """(edit id, request, edited arguments) of confirmation metadata made for ``user``, for an
        edit of the request that ``user`` proposed from its prompt; None (logged) otherwise."""
        claimed = self.signer.claimed_edit(metadata)
        edit = None if claimed is None else await self.core.outbox.proposed_edit(claimed[0])
        req = None if edit is None else await self.core.get(edit.request_id)
        if (claimed is None or edit is None or req is None or (edit.request_id, edit.address) != claimed[1:]
                or edit.user_id != user or not self.signer.verify_edit_confirm(metadata, user, req.action_digest)):  # fmt: skip
            log.warning("slack: refused an edit confirmation that is not ours, or made for another edit (user %s)",
                        user)  # fmt: skip
            return None
        return edit.id, req, json.loads(edit.details)

    # --- commands --------------------------------------------------------------------------

    async def _pending(self, user: str) -> str:
        mine = await self.core.pending_for(user)
        if not mine:
            return "Nothing is waiting for you."
        for req, approver in mine[:10]:
            # Through the outbox, to their DM: paced and tracked like any other prompt.
            await self.core.outbox.queue(req.id, Kind.SHOW, user, approver)
        self.on_decided()
        more = " (the 10 oldest)" if len(mine) > 10 else ""
        asks = sum(1 for req, _ in mine if req.is_question)
        more += f", {asks} of them question(s) to answer" if asks else ""
        return f"{len(mine)} request(s) waiting for you{more}: sending them to you in a direct message from signoff."

    async def _show(self, user: str, request_id: str, trigger_id: str) -> dict[str, Any]:
        try:
            req = await self.core.show(request_id, user)
        except NotFoundError:
            return _ephemeral("No such request among yours. `/signoff pending` lists them.")
        if trigger_id:  # in full, in a modal; the answer is then the prompt's short form
            try:
                await self.client.views_open(trigger_id=trigger_id, view=details_modal(req))
            except SlackApiError as exc:
                log.info("slack: could not open the details of %s: %s", req.id, exc.response.get("error"))
        text, blocks = prompt_for(req, self.core.clock(), await self.core.votes(req.id), self.signer)
        # Shown to the caller alone: a look, not a prompt (its buttons would not be on a prompt).
        return {"response_type": "ephemeral", "text": text, "blocks": [b for b in blocks if b.get("type") != "actions"]}

    async def _grants(self, user: str) -> dict[str, Any]:
        try:
            live = await self.core.grants_for(user)
        except NotAllowedError as exc:
            return _ephemeral(escape(str(exc)))
        if not live:
            return _ephemeral("No grants are live. Approve a request with “Approve for …” to make one.")
        text, blocks = grants_list(live, self.core.clock(), self.signer)
        return {"response_type": "ephemeral", "text": text, "blocks": blocks}

    async def _web(self, user: str) -> dict[str, Any]:
        """A sign-in link to the web inbox, for an approver: in the command's own answer, which
        only the caller sees (ephemeral, never ``in_channel``), with no unfurl."""
        if self.core.configured(user) is None:
            return _ephemeral("Sorry, only approvers can sign in to the web inbox. `/signoff whoami` shows your "
                              "member id and how to become one.")  # fmt: skip
        url = await self.core.web_link(user)
        if url is None:
            return _ephemeral("The web inbox is off (`[web] enabled = false` in the configuration).")
        text = web_link_text(url, local=not self.core.config.web.public_url)
        return {"response_type": "ephemeral", "text": text, "unfurl_links": False, "unfurl_media": False}

    # --- answering -------------------------------------------------------------------------

    async def _tell(self, where: str | None, user: str, text: str) -> None:
        """An ephemeral message to ``user`` in the channel of ``where`` (else their DM), as plain
        text: some refusals quote what an agent sent (its requester name), which must not become
        mrkdwn, a link or a mention."""
        channel = where.partition(":")[0] if where else user
        safe = escape(text)[:2900]
        block = {"type": "section", "text": {"type": "plain_text", "text": safe, "emoji": True}}
        try:
            await self.client.chat_postEphemeral(channel=channel, user=user, text=safe, blocks=[block])
        except SlackApiError as exc:  # the decision stands regardless
            log.info("slack: could not answer a press: %s", exc.response.get("error"))

    async def _tell_mrkdwn(self, where: str | None, user: str, text: str) -> None:
        """``_tell`` for mrkdwn we rendered (agent text in it already escaped and in code)."""
        channel = where.partition(":")[0] if where else user
        block = {"type": "section", "text": {"type": "mrkdwn", "text": text, "verbatim": True}}
        try:
            await self.client.chat_postEphemeral(channel=channel, user=user, text=text, blocks=[block])
        except SlackApiError as exc:
            log.info("slack: could not answer a press: %s", exc.response.get("error"))

    async def _open(self, payload: dict[str, Any], view: dict[str, Any], where: str | None, user: str) -> None:
        try:
            await self.client.views_open(trigger_id=str(payload.get("trigger_id") or ""), view=view)
        except SlackApiError as exc:  # the trigger expired (3 s): say so rather than fail silently
            log.info("slack: could not open a modal: %s", exc.response.get("error"))
            await self._tell(where, user, "Slack took too long to open the form; press the button again.")


def _message_of(payload: dict[str, Any]) -> str | None:
    """The message a press was on, as ``<channel id>:<ts>``; None when not on a message."""
    container = payload.get("container") or {}
    channel = container.get("channel_id") or (payload.get("channel") or {}).get("id")
    ts = container.get("message_ts") or (payload.get("message") or {}).get("ts")
    if container.get("type") not in (None, "message") or container.get("is_ephemeral"):
        return None
    return f"{channel}:{ts}" if isinstance(channel, str) and isinstance(ts, str) else None


def _text_input(view: dict[str, Any], block_id: str) -> str:
    values = ((view.get("state") or {}).get("values") or {}).get(block_id) or {}
    for element in values.values():
        if isinstance(element, dict) and isinstance(element.get("value"), str):
            return str(element["value"])
    return ""


def _errors(text: str, block: str = "reason") -> dict[str, Any]:
    return {"response_action": "errors", "errors": {block: text[:150]}}


def _update(view: dict[str, Any]) -> dict[str, Any]:
    return {"response_action": "update", "view": view}


def _plain_already(req: ApprovalRequest) -> str:
    """``already`` as plain text (a modal's error under its input shows no mrkdwn)."""
    who = f" by {req.decided_by}" if req.decided_by else ""
    when = f" at {clock(req.decided_at)}" if req.decided_at else ""
    return f"Already {req.status.value}{who}{when}."


def _ephemeral(text: str) -> dict[str, Any]:
    return {"response_type": "ephemeral", "text": text}
