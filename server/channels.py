"""The seam between the core and a chat channel (Telegram, Slack, the next one).

A channel adapter gets one ``ChannelService`` and needs nothing else from the core but the
models: it delivers the outbox rows addressed to it (``outbox``, ``digests``) and turns a
person's input into calls here. Every rule is decided here, for every channel alike: who a
channel user is (``approver_of``: the request's route snapshot *and* the current
configuration must both say so), who may decide, vote, bulk-decide (``allow_bulk``), revoke a
grant, see a request. A refusal is recorded as a ``refused`` audit event and raised as
``NotAllowedError`` (``NotApproverError`` for a bystander), whose message the adapter shows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import grants, policy
from .digests import DigestBook
from .errors import NotAllowedError, NotFoundError, RequestError
from .grant_models import Grant
from .lease import Lease
from .models import Actor, ApprovalRequest, AuditEvent, Decision, Status, Vote
from .outbox import Outbox
from .quiet import held_until
from .routing import resolve
from .service import ApprovalService
from .web_auth import WebAuth

WEB = "web"  # the web inbox: its users are approver names, signed in through server/web_auth.py
NOT_AN_APPROVER = "You are not an approver of this request."
NOTE_NEEDED = "Write the note, or press Approve instead."


class NotApproverError(NotAllowedError):
    """The person pressing is not an approver of the request (a bystander in a group, say)."""


class EmptyNoteError(RequestError):
    """ "Approve with note" without a note: nothing is decided; the channel asks again."""


@dataclass(frozen=True, slots=True)
class Bulk:
    """What a bulk decision did: ``done`` requests decided or voted on, ``skipped`` the rest
    (the presser's own requests, already decided, already voted)."""

    done: int
    skipped: int


class ChannelService:
    """The core as one channel sees it. ``user`` arguments are the channel's own id of the
    person (a Telegram user id, a Slack member id), as text."""

    def __init__(self, service: ApprovalService, channel: str) -> None:
        self.service = service
        self.config = service.config
        self.channel = channel
        self.clock: Callable[[], float] = service.clock
        self.outbox = Outbox(service.store, channel, service.clock)
        self.digests = DigestBook(service.store, channel, service.config, service.clock)

    # --- who is who ----------------------------------------------------------------------

    def approver_of(self, req: ApprovalRequest, user: str) -> str | None:
        """The approver of ``req`` whom ``user`` is, as the request's route snapshot *and* the
        current configuration both say; None for anyone else. On the web, ``user`` is the approver
        name a signed-in session belongs to: one who may decide ``req`` now."""
        if self.channel == WEB:
            return user if user in req.eligible() and self.configured(user) == user else None
        for entry in req.reach(channel=self.channel):
            if entry.user == user and self.configured(user) == entry.approver:
                return entry.approver
        return None

    def configured(self, user: str) -> str | None:
        """The approver ``user`` is in the current configuration, if any."""
        if self.channel == WEB:
            return user if user in self.config.approvers else None
        for name, approver in self.config.approvers.items():
            if self.channel == "telegram" and approver.telegram_user_id is not None:
                if str(approver.telegram_user_id) == user:
                    return name
            elif self.channel == "slack" and approver.slack_user_id == user:
                return name
        return None

    def actor(self, user: str, approver: str | None) -> Actor:
        return Actor("human", approver or f"{self.channel}:{user}", self.channel)

    async def refuse(self, req: ApprovalRequest, user: str, why: str, action: str) -> None:
        """Audit a refused press or command on ``req``."""
        await self.service.store.record(req.id, "refused", self.actor(user, self.approver_of(req, user)),
                                        {"why": why, "action": action})  # fmt: skip

    # --- requests ------------------------------------------------------------------------

    async def get(self, request_id: str) -> ApprovalRequest | None:
        try:
            return await self.service.get(request_id)
        except NotFoundError:
            return None

    async def check_approver(self, req: ApprovalRequest, user: str, action: str) -> str:
        """The approver ``user`` is for ``req``; a bystander is refused (audited)."""
        approver = self.approver_of(req, user)
        if approver is None:
            await self.refuse(req, user, "not an approver of this request", action)
            raise NotApproverError(NOT_AN_APPROVER)
        return approver

    async def decide(self, req: ApprovalRequest, approve: bool, user: str, action: str,
                     reason: str | None = None) -> Decision:  # fmt: skip
        """``user``'s decision (or vote) on ``req``. Refusals are audited and raised."""
        approver = await self.check_approver(req, user, action)
        try:
            return await self.service.decide(req.id, approve, self.actor(user, approver), reason)
        except NotAllowedError as exc:
            await self.refuse(req, user, str(exc), action)
            raise

    async def approve_with_note(self, req: ApprovalRequest, user: str, action: str, note: str) -> Decision:
        """``user``'s approval (or, on a quorum route, vote to approve) of ``req`` with ``note``,
        which the agent receives as the decision's ``reason``. The same rules as any approval
        (a bystander or the requester is refused and audited); an empty note decides nothing
        (``EmptyNoteError``), and a note is bounded like a reason (``RequestError``)."""
        await self.check_approver(req, user, action)
        if not note.strip():
            raise EmptyNoteError(NOTE_NEEDED)
        return await self.decide(req, True, user, action, note)

    async def check_edit(self, req: ApprovalRequest, user: str, action: str, details: Any) -> str | None:
        """``user``'s edit of ``req``, checked before they are asked to confirm it: its canonical
        JSON, or None when it changes nothing. A bystander or an edit the route or the approver may
        not make is refused (audited); arguments that are no edit raise ``RequestError``."""
        approver = await self.check_approver(req, user, action)
        try:
            checked = self.service.check_edit(req, details, self.actor(user, approver))
        except NotAllowedError as exc:
            await self.refuse(req, user, str(exc), action)
            raise
        return None if checked is None else checked[0]

    async def approve_edited(self, req: ApprovalRequest, user: str, action: str, details: Any) -> Decision:
        """``user``'s approval of ``req`` with ``details`` in place of the agent's arguments (see
        ``ApprovalService.approve_edited``). The same rules as any approval, and those of an edit;
        refusals are audited and raised."""
        approver = await self.check_approver(req, user, action)
        try:
            return await self.service.approve_edited(req.id, details, self.actor(user, approver))
        except NotAllowedError as exc:
            await self.refuse(req, user, str(exc), action)
            raise

    async def answer(self, req: ApprovalRequest, user: str, action: str, text: str) -> Decision:
        """``user``'s answer to the question ``req`` (``ask_human``), in their own words. The first
        answer wins (``Decision.changed``); a bystander or an answer the rules refuse is audited and
        raised; an empty or malformed answer raises ``RequestError`` and decides nothing."""
        approver = await self.check_approver(req, user, action)
        try:
            return await self.service.answer(req.id, text, self.actor(user, approver))
        except NotAllowedError as exc:
            await self.refuse(req, user, str(exc), action)
            raise

    async def answer_option(self, req: ApprovalRequest, option_index: int, user: str, action: str) -> Decision:
        """``user`` picks the question's ``option_index``-th offered answer (the text is the stored
        option, never anything the button carried)."""
        await self.check_approver(req, user, action)
        offered = req.options or []
        if not 0 <= option_index < len(offered):
            await self.refuse(req, user, "no such option on this question", action)
            raise NotAllowedError("This button is not valid.")
        return await self.answer(req, user, action, offered[option_index])

    async def approve_and_grant(self, req: ApprovalRequest, option_index: int, user: str, action: str,
                                notice_address: str) -> tuple[Decision, Grant | None]:  # fmt: skip
        """Approve ``req`` and grant the route's ``option_index``-th grant option; the grant's
        notice goes to ``notice_address``."""
        approver = await self.check_approver(req, user, action)
        offered = req.route_snapshot.get("grant_options") or []
        if not 0 <= option_index < len(offered):
            await self.refuse(req, user, "no such grant option on this route", action)
            raise NotAllowedError("This button is not valid.")
        try:
            # The web has no message to keep a grant's count in: its grants page shows the grant instead.
            notice = None if self.channel == WEB else (self.channel, notice_address)
            return await self.service.approve_and_grant(req.id, offered[option_index], self.actor(user, approver),
                                                        notice=notice)  # fmt: skip
        except NotAllowedError as exc:
            await self.refuse(req, user, str(exc), action)
            raise

    async def decide_bulk(self, items: list[ApprovalRequest], approve: bool, user: str, action: str) -> Bulk:
        """Approve or reject every one of ``items`` (a digest's pending ones) as ``user``. Refused
        as a whole (audited on each) unless ``user`` is an approver of every one and, to approve,
        every route allows bulk approval."""
        names = {r.id: self.approver_of(r, user) for r in items}
        refused = [r for r in items if names[r.id] is None]
        why = None
        if refused:
            why = "You are not an approver of every request in this digest."
        elif approve and not all(r.route_snapshot.get("allow_bulk") for r in items):
            why = "Some of these routes do not allow approving in bulk; use Review each."
        if why is not None:
            for req in refused or items:
                await self.service.store.record(req.id, "refused", self.actor(user, names[req.id]),
                                                {"why": why, "action": action})  # fmt: skip
            raise NotAllowedError(why)
        done = skipped = 0
        for req in items:
            try:
                decision = await self.service.decide(req.id, approve, self.actor(user, names[req.id]))
            except NotAllowedError:
                skipped += 1
                continue
            done += decision.changed or decision.voted
            skipped += not (decision.changed or decision.voted)
        return Bulk(done, skipped)

    async def told(self, decision: Decision, approve: bool) -> str | None:
        """What a presser is told about their decision or vote, in plain words; None when the
        request was already final before it (the channel says so in its own terms)."""
        if decision.changed:
            if decision.request.status is Status.ANSWERED:
                return "Answered 💬"
            return "Approved ✅" if decision.request.status is Status.APPROVED else "Rejected ❌"
        if decision.voted:
            votes = await self.votes(decision.request.id)
            n = sum(v.vote == ("approve" if approve else "reject") for v in votes)
            need = decision.request.quorum if approve else decision.request.reject_quorum
            return f"Your {'approval' if approve else 'rejection'} counts: {n} of {need}. Waiting for the others."
        if decision.already_voted:
            return f"You already voted to {decision.already_voted} this request; waiting for the others."
        return None

    async def pending_for(self, user: str) -> list[tuple[ApprovalRequest, str]]:
        """The pending requests ``user`` may decide, oldest first, with the approver they are."""
        found = []
        for req in await self.service.pending():
            if (name := self.approver_of(req, user)) is not None:
                found.append((req, name))
        return found

    async def show(self, request_id: str, user: str) -> ApprovalRequest:
        """A request in full, for one of its approvers only (anyone else: not found, so ids
        cannot be probed)."""
        req = await self.get(request_id)
        if req is None or self.approver_of(req, user) is None:
            raise NotFoundError("No such request among yours.")
        return req

    async def votes(self, request_id: str) -> list[Vote]:
        return await policy.votes(self.service.store, request_id)

    async def events(self, request_id: str) -> list[AuditEvent]:
        """The audit trail of one request, oldest first (show it only to whom ``may_see`` it)."""
        return await self.service.store.audit(request_id=request_id)

    def held_until(self, req: ApprovalRequest, approver: str) -> float | None:
        """Until when quiet hours hold a new message to ``approver`` about ``req`` (None: not held)."""
        return held_until(self.config, req, approver, self.clock())

    # --- grants --------------------------------------------------------------------------

    async def grants_for(self, user: str) -> list[Grant]:
        """The live grants, for an approver (anyone else is refused)."""
        if self.configured(user) is None:
            raise NotAllowedError("You are not an approver.")
        return await self.service.list_grants()

    async def grant(self, grant_id: str) -> Grant | None:
        try:
            return await grants.get(self.service.store, grant_id)
        except NotFoundError:
            return None

    async def grant_from(self, request_id: str) -> Grant | None:
        """The grant made by approving ``request_id``, if one was."""
        return await grants.made_from(self.service.store, request_id)

    async def revoke(self, grant: Grant, user: str) -> bool:
        """End ``grant`` as ``user``: only the approver who made it or an approver of its route
        may. False if it had already ended."""
        name = self.configured(user)
        route = self.config.route(grant.route)
        may = name is not None and (
            name == grant.created_by or (route is not None and name in resolve(self.config, route).everyone)
        )
        if not may or name is None:
            why = "Only the approver who made it or an approver of its route can revoke it."
            await self.service.store.record(grant.from_request, "refused", self.actor(user, name),
                                            {"why": why, "action": "revoke", "grant": grant.id})  # fmt: skip
            raise NotAllowedError(why)
        return await self.service.revoke_grant(grant.id, Actor("human", name, self.channel))

    async def grant_notice_sent(self, grant: Grant, message: str) -> None:
        await grants.set_notice(self.service.store, grant.id, message)

    # --- the connection ------------------------------------------------------------------

    async def web_link(self, user: str) -> str | None:
        """A sign-in link to the web inbox for the approver ``user`` is (valid 10 minutes, once),
        or None for anyone who is not a configured approver or when the inbox is off. Send it
        to that person alone (a DM), never to a group."""
        approver = self.configured(user)
        if approver is None or not self.config.web.enabled:
            return None
        auth = WebAuth(self.service.store, self.config, self.clock)
        return auth.link_url(await auth.issue_link(approver, self.channel))

    async def last_change(self) -> int:
        """A number that grows whenever a request is filed, decided, voted on, escalated or granted
        (by any process on the database): the audit log's last sequence number."""
        rows = await self.service.store.read("SELECT coalesce(max(seq), 0) FROM audit")
        return int(rows[0][0])

    def may_see(self, req: ApprovalRequest, user: str) -> bool:
        """Whether ``user`` may read ``req`` (on the web: any approver it ever reaches, its
        escalation levels included, for history; elsewhere: an approver of it now)."""
        if self.channel == WEB:
            return self.configured(user) == user and user in req.everyone()
        return self.approver_of(req, user) is not None

    def lease(self, name: str, ttl: float) -> Lease:
        """The lease that makes one process at a time hold this channel's connection."""
        return Lease(self.service.store, name, ttl)

    async def setting(self, key: str, make: Callable[[], str]) -> str:
        """A stored setting (created once, across processes, with ``make``)."""
        return await self.service.store.setting(key, make)

    async def save_setting(self, key: str, value: str) -> None:
        await self.service.store.save_setting(key, value)
