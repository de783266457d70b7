"""Decision callbacks: an HTTP POST to the request's ``callback_url`` once it is final.

The outbox row is written by a trigger in the same statement that makes the request final,
so a callback is never lost; whichever process holds the ``callbacks`` lease delivers it,
retrying with backoff (up to five minutes apart) until the receiver answers 2xx — at least
once, across restarts. Redirects are not followed, and only hosts in ``[callbacks]
allowed_hosts`` are called, checked when the request is filed and again before each attempt.

Every POST carries ``X-Signoff-Timestamp`` (Unix seconds) and ``X-Signoff-Signature:
sha256=<hex>``, the HMAC-SHA256 of ``timestamp + "." + body`` under the secret in
``$SIGNOFF_CALLBACK_SECRET`` (``[callbacks] secret_env``). A receiver checks it with::

    import hashlib, hmac
    def verify(secret: bytes, body: bytes, timestamp: str, signature: str) -> bool:
        mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest("sha256=" + mac, signature)   # and reject old timestamps
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import urllib.parse
from typing import Any

import httpx

from .config import host_allowed
from .lease import Lease
from .models import Actor, ApprovalRequest, view
from .service import ApprovalService

log = logging.getLogger("signoff.callbacks")

LEASE_NAME = "callbacks"
LEASE_TTL = 30.0
MAX_BACKOFF = 300.0
SIGNATURE_HEADER = "X-Signoff-Signature"
TIMESTAMP_HEADER = "X-Signoff-Timestamp"
_DUE = (
    "SELECT id, request_id, attempts FROM outbox WHERE kind = 'callback' AND done_at IS NULL "
    "AND next_attempt_at <= ? ORDER BY id LIMIT 50"
)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def payload(req: ApprovalRequest, delivery: int, attempt: int) -> dict[str, Any]:
    body = view(req)
    body.update(action=req.action, summary=req.summary, metadata=req.metadata, requested_by=req.requested_by,
                decided_via=req.decided_via)  # fmt: skip
    return {"event": "request.final", "request": body, "delivery": {"id": delivery, "attempt": attempt}}


class CallbackDeliverer:
    """Delivers due callbacks while this process holds the ``callbacks`` lease."""

    def __init__(
        self, service: ApprovalService, secret: str, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.service = service
        self.store = service.store
        self.config = service.config
        self.secret = secret
        self.lease = Lease(self.store, LEASE_NAME, LEASE_TTL)
        self.transport = transport
        self.client: httpx.AsyncClient | None = None
        self.wake = asyncio.Event()

    async def run(self) -> None:
        """Forever: when a callback is due, take the lease (if free) and deliver what is due."""
        self.client = httpx.AsyncClient(timeout=self.config.callbacks.timeout, follow_redirects=False,
                                        transport=self.transport, headers={"User-Agent": "signoff-callbacks"})  # fmt: skip
        try:
            while True:
                rows = await self.store.read(
                    "SELECT min(next_attempt_at) FROM outbox WHERE kind = 'callback' AND done_at IS NULL"
                )
                due = None if not rows or rows[0][0] is None else float(rows[0][0])
                if due is not None and due <= self.service.clock() and await self.lease.claim():
                    await self.deliver_due()
                with_timeout = 1.0 if due is None else min(1.0, max(0.05, due - self.service.clock()))
                self.wake.clear()
                try:
                    async with asyncio.timeout(with_timeout):
                        await self.wake.wait()
                except TimeoutError:
                    pass
        finally:
            await self.client.aclose()
            if self.lease.remaining() > 0:
                await asyncio.shield(self.lease.release())

    async def deliver_due(self) -> int:
        """Attempt every due callback once; return how many were delivered."""
        delivered = 0
        for row in await self.store.read(_DUE, (self.service.clock(),)):
            if self.lease.remaining() < self.config.callbacks.timeout + 1 and not await self.lease.claim():
                break
            req = await self.store.get(row["request_id"])
            if req is None or req.callback_url is None:  # pragma: no cover - the trigger needs both
                await self._finish(row["id"], None)
                continue
            error = await self._post(req, int(row["id"]), int(row["attempts"]) + 1)
            if error is None:
                delivered += 1
                await self._finish(row["id"], None)
                await self.store.record(req.id, "callback_delivered", Actor("system", "callbacks", "http"),
                                        {"url": req.callback_url, "attempt": int(row["attempts"]) + 1})  # fmt: skip
            else:
                delay = min(MAX_BACKOFF, 2.0 ** int(row["attempts"]))
                await self.store.write(
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?",
                    (self.service.clock() + delay, error[:500], row["id"]),
                )
                log.info("callback for %s failed (%s); retrying in %.0f s", req.id, error, delay)
        return delivered

    async def _post(self, req: ApprovalRequest, delivery: int, attempt: int) -> str | None:
        """POST the callback; None when the receiver took it, else what went wrong."""
        assert req.callback_url is not None and self.client is not None
        host = urllib.parse.urlsplit(req.callback_url).hostname or ""
        if not host_allowed(host, self.config.callbacks.allowed_hosts):
            return f"host {host!r} is no longer in [callbacks] allowed_hosts; not sent"
        body = json.dumps(payload(req, delivery, attempt), ensure_ascii=False, sort_keys=True).encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
                   SIGNATURE_HEADER: signature(self.secret, timestamp, body)}  # fmt: skip
        try:
            response = await self.client.post(req.callback_url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"

    async def _finish(self, outbox_id: int, error: str | None) -> None:
        await self.store.write(
            "UPDATE outbox SET done_at = ?, attempts = attempts + 1, last_error = ? WHERE id = ?",
            (self.service.clock(), error, outbox_id),
        )
