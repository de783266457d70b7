"""The approval use cases, free of any transport.

MCP tools, the command line and the channel adapters call ``ApprovalService``; it routes,
stores, decides, waits and sweeps deadlines. It keeps nothing in memory that matters: the
waiters it holds are only a way to return early, and the database stays the only truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from . import grants, policy
from .config import Config, callback_url_problems
from .errors import NotAllowedError, NotFoundError, RequestError
from .grant_models import Grant
from .grant_models import options as grant_options
from .intake import Encoded, NewRequest, check_answer, check_edit, check_new_request, check_reason
from .models import Actor, ApprovalRequest, Decision, RouteSnapshot, Status, iso
from .outbox import QUEUE_ONCE, Kind
from .quiet import expected_after
from .routing import Choice, choose_route
from .store import INSERT, Store, dumps, request_row
from .waiting import Waiters


class _Raced(Exception):
    """Another process filed the same idempotency key first: roll back and take its request."""


SWEEP_INTERVAL = 1.0
PROGRESS_INTERVAL = 5.0

ProgressCallback = Callable[[float, float, str], Awaitable[None]]


def _canonical(url: str) -> str:
    from .callback_targets import parse_url

    try:
        return parse_url(url).url
    except ValueError:
        return url


def _new_id() -> str:
    return "req_" + secrets.token_hex(6)


class ApprovalService:
    """Files, decides, waits for and expires approval requests in one ``Store``."""

    def __init__(self, config: Config, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.progress_interval = PROGRESS_INTERVAL
        self._snapshots: dict[str, str] = {}
        self._snapshots_parsed: dict[str, RouteSnapshot] = {}
        self.waiters = Waiters(store)

    # --- use cases ---------------------------------------------------------------------

    async def request_approval(
        self, new: NewRequest, requester: Actor, *, session: str | None = None, client_name: str | None = None
    ) -> ApprovalRequest:
        """File a request (or return the one filed earlier under the same idempotency key).
        ``session`` names the requester's MCP session, for "session" grants; ``client_name`` is
        what the MCP client calls itself, kept as a label when the operator pinned the identity."""
        encoded = check_new_request(new)
        content_hash = encoded.content_hash
        if new.idempotency_key is not None:
            earlier = await self.store.find_by_key(requester.name, new.idempotency_key)
            if earlier is not None:
                return self._same_content(earlier, content_hash, new.cwd, session)
        choice = choose_route(
            self.config, action=new.action, requested_by=requester.name, metadata=new.metadata, named=new.route
        )
        question = new.kind == "question"
        if question and choice.route.auto is not None:
            # Only a human answers a question: a route that decides by itself has nobody to ask.
            raise RequestError(
                f"route {choice.route.name!r} decides automatically, so nobody can answer this question; "
                "the operator must route 'ask_human' to approvers"
            )
        # A question nobody answers in time expires, whatever the route says silence means.
        on_timeout = "reject" if question else choice.on_timeout
        timeout = choice.timeout
        if new.timeout_seconds is not None:
            # An agent may make a human decide sooner, never make silence approve sooner.
            timeout = min(timeout, new.timeout_seconds) if on_timeout == "reject" else max(timeout, new.timeout_seconds)
        route_url = choice.route.callback_url
        if new.callback_url is not None and route_url is not None and new.callback_url != route_url:
            # The operator chose where this route's decisions go; an agent cannot redirect them.
            raise RequestError(
                f"route {choice.route.name!r} sends its decisions to its own callback; omit callback_url"
            )
        if (
            new.callback_url is not None
            and new.callback_url != route_url
            and _canonical(new.callback_url)
            in {_canonical(r.callback_url) for r in self.config.routes if r.callback_url}
        ):  # another route's receiver hears only about that route's decisions
            raise RequestError("callback_url is the receiver of another route's decisions; omit it or use your own")
        callback_url = new.callback_url or route_url
        if callback_url is not None and (problems := callback_url_problems(callback_url, self.config)):
            raise RequestError(f"callback_url: {problems[0]}")  # never echoes the URL
        if callback_url is not None and not os.environ.get(self.config.callbacks.secret_env):
            raise RequestError(f"callback_url cannot be used: the operator has not set ${self.config.callbacks.secret_env} "
                               "(the key callbacks are signed with)")  # fmt: skip
        snapshot_json = self._snapshot_json(choice)
        now = self.clock()
        auto = choice.route.auto
        status = Status.PENDING if auto is None else (Status.APPROVED if auto == "approve" else Status.REJECTED)
        escalation_at, reminder_at = policy.first_timers(self._snapshots_parsed[choice.route.name], now)
        req = ApprovalRequest(
            id=_new_id(),
            action=new.action,
            summary=new.summary,
            details=new.details,
            metadata=dict(new.metadata),
            route=choice.route.name,
            route_snapshot=self._snapshots_parsed[choice.route.name],
            approvers=choice.approvers,
            requested_by=requester.name,
            requested_via=requester.channel,
            claimed_requester=new.claimed_requester,
            idempotency_key=new.idempotency_key,
            content_hash=content_hash,
            status=status,
            on_timeout=on_timeout,
            created_at=now,
            expires_at=now + timeout,
            decided_at=None if auto is None else now,
            decided_by=None if auto is None else f"route:{choice.route.name}",
            decided_kind=None if auto is None else "system",
            decided_via=None if auto is None else "policy",
            reason=None if auto is None else f"route {choice.route.name!r} decides automatically",
            next_escalation_at=escalation_at if auto is None else None,
            next_reminder_at=reminder_at if auto is None else None,
            session=session,
            callback_url=callback_url,
            cwd=new.cwd,
            action_digest=encoded.action_digest,
            client_name=client_name,
            kind=new.kind,
            options=new.options,
        )
        if auto is None and (why := policy.unreachable(self.config, req, [])) is not None:
            # Nobody who may approve is left (say, the only approvers made the request): fail closed now.
            req = replace(req, status=Status.CANCELLED if question else Status.REJECTED, decided_at=now,
                          decided_by=f"route:{choice.route.name}", decided_kind="system", decided_via="policy",
                          reason=why)  # fmt: skip
        if req.status is Status.PENDING and choice.route.grant_options and not question:
            granted = await self._insert_granted(req, encoded, snapshot_json, now)
            if granted is not None:
                return granted
        stored = await self.store.insert(req, encoded.details, encoded.metadata, snapshot_json)
        if stored.id != req.id:  # lost a race on the idempotency key
            return self._same_content(stored, content_hash, new.cwd, session)
        return stored

    async def _insert_granted(
        self, req: ApprovalRequest, encoded: Encoded, snapshot_json: str, now: float
    ) -> ApprovalRequest | None:
        """File ``req`` approved by a live grant that covers it, in one transaction with the grant's
        use; None when no grant covers it (or the idempotency key raced: the caller files it)."""
        try:
            async with self.store.transaction() as conn:
                grant = await grants.take(conn, self.config, req, now)
                if grant is None:
                    return None
                approved = replace(req, status=Status.APPROVED, decided_at=now, decided_by=f"grant:{grant.id}",
                                   decided_kind="system", decided_via="grant", next_escalation_at=None,
                                   next_reminder_at=None, reason=f"covered by {grant.id}, granted by {grant.created_by}")  # fmt: skip
                cur = await conn.execute(
                    INSERT, request_row(approved, encoded.details, encoded.metadata, snapshot_json)
                )
                if cur.rowcount == 0:
                    raise _Raced()
                if grant.notice_channel is not None and grant.notice_address is not None:  # the granter's quiet count
                    await conn.execute(QUEUE_ONCE, (approved.id, Kind.GRANT_USED, grant.notice_channel,
                                                    grant.notice_address, "", now, now))  # fmt: skip
        except _Raced:
            return None
        self._wake([approved.id])
        return approved

    def _snapshot_json(self, choice: Choice) -> str:
        # Routes are immutable for the life of the service, so each snapshot is built once.
        name = choice.route.name
        if name not in self._snapshots:
            snapshot = choice.snapshot()
            self._snapshots[name] = dumps(snapshot)
            self._snapshots_parsed[name] = snapshot
        return self._snapshots[name]

    @staticmethod
    def _same_content(
        earlier: ApprovalRequest, content_hash: str, cwd: str | None, session: str | None
    ) -> ApprovalRequest:
        # The same call from another folder or session is another request: an approval (or a
        # grant's) given there must not be handed back here.
        if earlier.content_hash != content_hash or earlier.cwd != cwd or earlier.session != session:
            raise RequestError(
                f"idempotency_key {earlier.idempotency_key!r} was already used for a different request "
                f"({earlier.id}); use a new key for new content"
            )
        return earlier

    async def get(self, request_id: str, *, requester: str | None = None) -> ApprovalRequest:
        """The current state of a request; applies its deadline first if it has passed. With
        ``requester``, only a request filed under that identity is found: an agent sees and
        withdraws only its own (anything else is "unknown", so ids cannot be probed)."""
        req = await self.store.get(request_id)
        if req is None or (requester is not None and req.requested_by != requester):
            raise NotFoundError(
                f"unknown request_id {request_id[:100]!r}; use the request_id that request_approval returned"
            )
        if req.status is Status.PENDING and req.expires_at <= self.clock():
            await self.sweep()
            req = await self.store.get(request_id) or req
        return req

    async def decide(self, request_id: str, approve: bool, actor: Actor, reason: str | None = None) -> Decision:
        """A human's decision through a channel. The first valid decision wins."""
        return await self._decide(request_id, approve, actor, reason, edited=None)

    async def approve_edited(self, request_id: str, details: Any, actor: Actor, reason: str | None = None) -> Decision:
        """Approve the request with ``details`` in place of the agent's arguments ("Edit before
        approving"): the agent receives them as ``edited_details`` and must act on them. Only an
        approver who may decide it now (on a route without approvers: whoever runs the console),
        only where the route sets ``allow_edit`` (the default), and only on a route that needs one
        approval: on a quorum route each approver would vote for different arguments, so an edit
        is refused there. Details the same as the original approve it unchanged."""
        return await self._decide(request_id, True, actor, reason, edited=(details,))

    async def _decide(
        self, request_id: str, approve: bool, actor: Actor, reason: str | None, *, edited: tuple[Any] | None
    ) -> Decision:
        if actor.kind != "human":
            raise RequestError("only a human, through a channel, can decide a request")
        reason = check_reason(reason)
        req = await self.get(request_id)  # not found → error; past deadline → expired first
        if req.is_question:
            raise NotAllowedError(f"request {req.id} is a question, not an approval: answer it (signoff answer)")
        if req.status.final:
            return Decision(False, req)
        edit = None if edited is None else self._check_edit(req, edited[0], actor)
        if approve and not policy.may_approve(self.config, req, actor.name):
            raise NotAllowedError(
                # The requester's name is not quoted: an agent chooses it, and this text reaches chats.
                f"{actor.name} made request {req.id} and cannot approve it; another "
                "approver must (the route does not set allow_self_approval)"
            )
        needed = req.quorum if approve else req.reject_quorum
        if needed > 1 and actor.name not in req.eligible():
            raise NotAllowedError(
                f"route {req.route!r} needs {needed} distinct approvers to {'approve' if approve else 'reject'}; "
                f"vote as one of them ({', '.join(req.eligible())})"
            )
        decision = await policy.cast(self.store, self.config, request_id, approve, actor, self.clock(), reason, edit)
        if decision is None:
            raise NotFoundError(f"unknown request_id {request_id!r}")
        if decision.changed:
            self._wake([request_id])
        return decision

    async def answer(self, request_id: str, answer: str, actor: Actor) -> Decision:
        """A human's answer to a question (``ask_human``). The first answer wins; any approver who
        may decide the question now may give it, and whoever runs the console (trusted as any
        approver, as for ``decide``), never the identity that asked it unless the route allows
        self-approval."""
        if actor.kind != "human":
            raise RequestError("only a human, through a channel, can answer a question")
        answer = check_answer(answer)
        req = await self.get(request_id)
        if not req.is_question:
            raise NotAllowedError(f"request {req.id} asks for an approval, not an answer: approve or reject it")
        if req.status.final:
            return Decision(False, req)
        if req.eligible() and actor.name not in req.eligible() and actor.channel != "console":
            raise NotAllowedError(f"{actor.name} may not answer question {req.id} "
                                  f"(who may: {', '.join(req.eligible())})")  # fmt: skip
        if not policy.may_approve(self.config, req, actor.name):
            raise NotAllowedError(f"{actor.name} asked question {req.id} and cannot answer it; another approver must")
        decision = await self.store.answer(request_id, answer, actor, self.clock())
        if decision is None:
            raise NotFoundError(f"unknown request_id {request_id!r}")
        if decision.changed:
            self._wake([request_id])
        return decision

    def check_edit(self, req: ApprovalRequest, details: Any, actor: Actor) -> tuple[str, str] | None:
        """Whether ``actor`` may approve ``req`` with ``details`` (a channel checks an edit before it
        asks to confirm it): as ``approve_edited`` would, without deciding anything."""
        return self._check_edit(req, details, actor)

    def _check_edit(self, req: ApprovalRequest, details: Any, actor: Actor) -> tuple[str, str] | None:
        """(the edit's JSON, its action digest), None when it changes nothing; refuses an edit
        the route or the actor may not make."""
        if not req.route_snapshot.get("allow_edit", True):
            raise NotAllowedError(f"route {req.route!r} does not allow editing a request before approving it "
                                  "(allow_edit = false); approve or reject it as it is")  # fmt: skip
        if req.quorum > 1:
            raise NotAllowedError(f"route {req.route!r} needs {req.quorum} approvals, each for the same arguments: "
                                  "an edit is possible only where one approval decides; approve or reject it as it is")  # fmt: skip
        if req.eligible() and actor.name not in req.eligible():
            raise NotAllowedError(
                f"{actor.name} is not an approver of request {req.id} and cannot edit it "
                f"(its approvers: {', '.join(req.eligible())})"
            )
        return check_edit(req.action, req.details, req.metadata, details)

    async def approve_and_grant(
        self, request_id: str, option: str, actor: Actor, *, notice: tuple[str, str] | None = None
    ) -> tuple[Decision, Grant | None]:
        """Approve a request and grant its route's ``option`` ("30m", "session") for requests like it.
        The grant is made only when this approval decided the request; ``notice`` is the
        (channel, address) its notice goes to."""
        req = await self.get(request_id)
        if not req.status.final and option not in grant_options(req):
            raise NotAllowedError(f"request {req.id} does not offer a grant of {option!r}")
        decision = await self.decide(request_id, True, actor)
        if not decision.changed:
            return decision, None
        grant = await grants.create(
            self.store, decision.request, option, actor.name, self.clock(), notice, actor.channel
        )
        return decision, grant

    async def list_grants(self, *, everything: bool = False) -> list[Grant]:
        return await grants.listing(self.store, self.clock(), everything=everything)

    async def revoke_grant(self, grant_id: str, actor: Actor) -> bool:
        """End a grant now (False if it had already ended)."""
        if actor.kind != "human":
            raise NotAllowedError("only a human can revoke a grant")
        return await grants.revoke(self.store, grant_id, actor.name, actor.channel, self.clock())

    async def cancel(self, request_id: str, actor: Actor, reason: str | None = None) -> ApprovalRequest:
        """Withdraw a pending request; a final one is returned unchanged. An agent may withdraw
        only a request filed under its own identity."""
        reason = check_reason(reason)
        req = await self.get(request_id, requester=actor.name if actor.kind == "agent" else None)
        if req.status.final:
            return req
        return (await self._set_final(request_id, Status.CANCELLED, actor, reason)).request

    async def _set_final(self, request_id: str, status: Status, actor: Actor, reason: str | None) -> Decision:
        decision = await self.store.decide(request_id, status, actor, self.clock(), reason)
        if decision is None:
            raise NotFoundError(f"unknown request_id {request_id!r}")
        if decision.changed:
            self._wake([request_id])
        return decision

    async def sweep(self) -> list[ApprovalRequest]:
        """Apply ``on_timeout`` to every request whose deadline has passed (returned), then fire
        the escalation levels and reminders that are due."""
        now = self.clock()
        done: list[ApprovalRequest] = []
        due = await self.store.next_deadline()  # reads: most sweeps find nothing, and take no write lock
        if due is not None and due <= now:
            done = await self.store.expire_due(now)
            self._wake(r.id for r in done)
        timer = await policy.next_timer(self.store)
        if timer is not None and timer <= now:
            await policy.escalate_due(self.store, now)
            await policy.remind_due(self.store, now)
        return done

    async def wait(
        self,
        request_id: str,
        wait_seconds: float,
        on_progress: ProgressCallback | None = None,
        *,
        requester: str | None = None,
    ) -> ApprovalRequest:
        """Return once the request is final or ``wait_seconds`` have passed, whichever is first.

        Decisions made by any process on the same file are seen within ``WATCH_INTERVAL``.
        ``on_progress(elapsed, total, message)`` is called every ``progress_interval`` seconds.
        With ``requester``, only that identity's own request is found (see ``get``).
        """
        wait_seconds = max(0.0, min(wait_seconds, self.config.server.max_wait))
        first = await self.get(request_id, requester=requester)
        if wait_seconds <= 0 or first.status.final:
            return first
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + wait_seconds
        # Register before the first read, so a decision committed in between still wakes us.
        with self.waiters.registered(request_id) as event:
            req = await self.get(request_id)
            while not req.status.final and not self.waiters.closing:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                # Wake for the request's own deadline too, so an expiry is reported at once.
                until_expiry = max(0.0, req.expires_at - self.clock()) + 0.01
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
                # arrives as the event fires, and a shutdown would then wait forever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, self.progress_interval, until_expiry)):
                        await event.wait()
                event.clear()
                req = await self.get(request_id)
                if not req.status.final and on_progress is not None and deadline > loop.time():
                    elapsed = loop.time() - start
                    await on_progress(elapsed, wait_seconds, f"waiting for {', '.join(req.approvers) or 'a human'}")
        return req

    @property
    def waiting(self) -> int:
        """How many calls are waiting for a decision in this process right now."""
        return self.waiters.count

    def release_waiters(self) -> None:
        """Shutting down: every waiting call returns the current state now (still pending)."""
        self.waiters.release()

    # --- background work ---------------------------------------------------------------

    def _wake(self, request_ids: Any) -> None:
        self.waiters.wake(request_ids)

    async def watch(self) -> None:
        """Wake local waiters when another process decides their request (``waiting.Waiters``)."""
        await self.waiters.watch()

    async def sweep_forever(self) -> None:
        """Sweep due deadlines about every second, for as long as the process runs."""
        while True:
            await self.sweep()
            await asyncio.sleep(SWEEP_INTERVAL)

    async def note(self, req: ApprovalRequest) -> str | None:
        """For the agent, while ``req`` is pending: quorum progress, and when a decision can be
        expected if every approver who may decide is in quiet hours."""
        if req.status.final:
            return None
        parts = []
        if req.quorum > 1:
            approvals = sum(v.vote == "approve" for v in await policy.votes(self.store, req.id))
            parts.append(f"{approvals} of {req.quorum} approvals so far")
        after = expected_after(self.config, req, self.clock())
        if after is not None:
            parts.append(f"the approvers are in quiet hours; expect a decision after {iso(after)}")
        return "; ".join(parts) or None

    async def pending(self) -> list[ApprovalRequest]:
        await self.sweep()
        return await self.store.list_requests(status=Status.PENDING)
