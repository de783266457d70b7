"""The approval use cases, free of any transport.

MCP tools, the command line and the channel adapters call ``ApprovalService``; it routes,
stores, decides, waits and sweeps deadlines. It keeps nothing in memory that matters: the
waiters it holds are only a way to return early, and the database stays the only truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .config import Config
from .errors import NotFoundError, RequestError
from .models import Actor, ApprovalRequest, Status
from .routing import Choice, choose_route
from .store import Decision, Store, dumps

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

WATCH_INTERVAL = 0.05  # how often a waiting process looks for commits by other processes
SWEEP_INTERVAL = 1.0
PROGRESS_INTERVAL = 5.0

ProgressCallback = Callable[[float, float, str], Awaitable[None]]


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
    head = dumps([new.action, new.summary, new.route, new.timeout_seconds, new.claimed_requester])
    digest = hashlib.sha256("\x1e".join((head, details, metadata)).encode()).hexdigest()
    return Encoded(None if new.details is None else details, metadata, digest)


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
        self._snapshots_parsed: dict[str, dict[str, Any]] = {}
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._watching = asyncio.Event()
        self._closing = False

    # --- use cases ---------------------------------------------------------------------

    async def request_approval(self, new: NewRequest, requester: Actor) -> ApprovalRequest:
        """File a request (or return the one filed earlier under the same idempotency key)."""
        encoded = check_new_request(new)
        content_hash = encoded.content_hash
        if new.idempotency_key is not None:
            earlier = await self.store.find_by_key(requester.name, new.idempotency_key)
            if earlier is not None:
                return self._same_content(earlier, content_hash)
        choice = choose_route(
            self.config, action=new.action, requested_by=requester.name, metadata=new.metadata, named=new.route
        )
        timeout = choice.timeout
        if new.timeout_seconds is not None:
            # An agent may make a human decide sooner, never make silence approve sooner.
            timeout = (
                min(timeout, new.timeout_seconds)
                if choice.on_timeout == "reject"
                else max(timeout, new.timeout_seconds)
            )
        snapshot_json = self._snapshot_json(choice)
        now = self.clock()
        auto = choice.route.auto
        status = Status.PENDING if auto is None else (Status.APPROVED if auto == "approve" else Status.REJECTED)
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
            on_timeout=choice.on_timeout,
            created_at=now,
            expires_at=now + timeout,
            decided_at=None if auto is None else now,
            decided_by=None if auto is None else f"route:{choice.route.name}",
            decided_kind=None if auto is None else "system",
            decided_via=None if auto is None else "policy",
            reason=None if auto is None else f"route {choice.route.name!r} decides automatically",
        )
        stored = await self.store.insert(req, encoded.details, encoded.metadata, snapshot_json)
        if stored.id != req.id:  # lost a race on the idempotency key
            return self._same_content(stored, content_hash)
        return stored

    def _snapshot_json(self, choice: Choice) -> str:
        # Routes are immutable for the life of the service, so each snapshot is built once.
        name = choice.route.name
        if name not in self._snapshots:
            snapshot = choice.snapshot()
            self._snapshots[name] = dumps(snapshot)
            self._snapshots_parsed[name] = snapshot
        return self._snapshots[name]

    @staticmethod
    def _same_content(earlier: ApprovalRequest, content_hash: str) -> ApprovalRequest:
        if earlier.content_hash != content_hash:
            raise RequestError(
                f"idempotency_key {earlier.idempotency_key!r} was already used for a different request "
                f"({earlier.id}); use a new key for new content"
            )
        return earlier

    async def get(self, request_id: str) -> ApprovalRequest:
        """The current state of a request; applies its deadline first if it has passed."""
        req = await self.store.get(request_id)
        if req is None:
            raise NotFoundError(f"unknown request_id {request_id!r}; use the request_id that request_approval returned")
        if req.status is Status.PENDING and req.expires_at <= self.clock():
            await self.sweep()
            req = await self.store.get(request_id) or req
        return req

    async def decide(self, request_id: str, approve: bool, actor: Actor, reason: str | None = None) -> Decision:
        """A human's decision through a channel. The first valid decision wins."""
        if actor.kind != "human":
            raise RequestError("only a human, through a channel, can decide a request")
        if reason is not None:
            reason = reason.strip() or None
            if reason is not None and len(reason) > MAX_REASON:
                raise RequestError(f"the reason is longer than {MAX_REASON} characters")
        await self.get(request_id)  # not found → error; past deadline → expired first
        status = Status.APPROVED if approve else Status.REJECTED
        return await self._set_final(request_id, status, actor, reason)

    async def cancel(self, request_id: str, actor: Actor, reason: str | None = None) -> ApprovalRequest:
        """Withdraw a pending request; a final one is returned unchanged."""
        if reason is not None and len(reason) > MAX_REASON:
            raise RequestError(f"'reason' is longer than {MAX_REASON} characters; shorten it")
        req = await self.get(request_id)
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
        """Apply ``on_timeout`` to every request whose deadline has passed."""
        now = self.clock()
        due = await self.store.next_deadline()  # a read: most sweeps find nothing, and take no write lock
        if due is None or due > now:
            return []
        done = await self.store.expire_due(now)
        self._wake(r.id for r in done)
        return done

    async def wait(
        self, request_id: str, wait_seconds: float, on_progress: ProgressCallback | None = None
    ) -> ApprovalRequest:
        """Return once the request is final or ``wait_seconds`` have passed, whichever is first.

        Decisions made by any process on the same file are seen within ``WATCH_INTERVAL``.
        ``on_progress(elapsed, total, message)`` is called every ``progress_interval`` seconds.
        """
        wait_seconds = max(0.0, min(wait_seconds, self.config.server.max_wait))
        if wait_seconds <= 0:
            return await self.get(request_id)
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + wait_seconds
        event = asyncio.Event()
        # Register before the first read, so a decision committed in between still wakes us.
        self._waiters.setdefault(request_id, set()).add(event)
        self._watching.set()
        try:
            req = await self.get(request_id)
            while not req.status.final and not self._closing:
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
        finally:
            waiters = self._waiters.get(request_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[request_id]
        return req

    def release_waiters(self) -> None:
        """Shutting down: every waiting call returns the current state now (still pending)."""
        self._closing = True
        for events in self._waiters.values():
            for event in events:
                event.set()

    # --- background work ---------------------------------------------------------------

    def _wake(self, request_ids: Any) -> None:
        for rid in request_ids:
            for event in self._waiters.get(rid, ()):
                event.set()

    async def watch(self) -> None:
        """Wake local waiters when another process decides their request (polls ``data_version``)."""
        version: int | None = None
        while True:
            if not self._waiters:
                self._watching.clear()
                await self._watching.wait()
                version = None  # check at once: a commit may have landed before the waiter came
            current = await self.store.data_version()
            if current != version:
                version = current
                statuses = await self.store.statuses(list(self._waiters))
                self._wake(rid for rid, status in statuses.items() if status.final)
            await asyncio.sleep(WATCH_INTERVAL)

    async def sweep_forever(self) -> None:
        """Sweep due deadlines about every second, for as long as the process runs."""
        while True:
            await self.sweep()
            await asyncio.sleep(SWEEP_INTERVAL)

    async def pending(self) -> list[ApprovalRequest]:
        await self.sweep()
        return await self.store.list_requests(status=Status.PENDING)
