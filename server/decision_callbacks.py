"""Decision callbacks: an HTTP POST to the request's ``callback_url`` once it is final.

The outbox row is written by a trigger in the same statement that makes the request final,
so a callback is never lost; whichever process holds the ``callbacks`` lease delivers it,
retrying with backoff (up to five minutes apart) until the receiver answers 2xx — at least
once, across restarts. Redirects are not followed, and environment proxies are not used.

Where it goes (``callback_targets``): only a URL under one of ``[callbacks] allowed_urls``
(scheme, host, port and path), checked when the request is filed and again before each
attempt, against the configuration of the delivering process. Before each attempt a host
name is resolved once, every address must be public (unless the prefix names the IP
itself), and the POST connects to a checked address with the name as ``Host`` and TLS SNI.

Every POST carries ``X-Signoff-Timestamp`` (Unix seconds) and ``X-Signoff-Signature:
sha256=<hex>``, the HMAC-SHA256 of ``timestamp + "." + url + "." + body`` under the secret in
``$SIGNOFF_CALLBACK_SECRET`` (``[callbacks] secret_env``), where ``url`` is the callback URL
in canonical form (scheme and host in lower case, no default port, path and query as
written). A receiver checks it with::

    import hashlib, hmac
    def verify(secret: bytes, url: str, body: bytes, timestamp: str, signature: str) -> bool:
        signed = timestamp.encode() + b"." + url.encode() + b"." + body
        mac = hmac.new(secret, signed, hashlib.sha256).hexdigest()
        return hmac.compare_digest("sha256=" + mac, signature)   # and reject old timestamps
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import httpx

from .callback_targets import Resolver, allowed_target, checked_addresses, post_pinned, system_resolver
from .lease import Lease
from .models import Actor, ApprovalRequest, view
from .outbox import Outbox
from .service import ApprovalService

log = logging.getLogger("signoff.callbacks")

LEASE_NAME = "callbacks"
LEASE_TTL = 30.0
MAX_BACKOFF = 300.0
SIGNATURE_HEADER = "X-Signoff-Signature"
TIMESTAMP_HEADER = "X-Signoff-Timestamp"


def signature(secret: str, timestamp: str, url: str, body: bytes) -> str:
    """``sha256=`` + HMAC-SHA256(secret, timestamp "." url "." body). The URL is canonical and has
    no '{', and the body is a JSON object, so the signed string splits only one way."""
    signed = timestamp.encode() + b"." + url.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def payload(req: ApprovalRequest, delivery: int, attempt: int) -> dict[str, Any]:
    body = view(req)
    body.update(action=req.action, summary=req.summary, details=req.details, metadata=req.metadata,
                requested_by=req.requested_by, decided_via=req.decided_via)  # fmt: skip
    return {"event": "request.final", "request": body, "delivery": {"id": delivery, "attempt": attempt}}


class CallbackDeliverer:
    """Delivers due callbacks while this process holds the ``callbacks`` lease."""

    def __init__(
        self,
        service: ApprovalService,
        secret: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.service = service
        self.store = service.store
        self.config = service.config
        self.secret = secret
        self.lease = Lease(self.store, LEASE_NAME, LEASE_TTL)
        self.rows = Outbox(self.store, "callback", service.clock)  # the trigger files them under channel 'callback'
        self.transport = transport
        self.resolver: Resolver = resolver or system_resolver
        self.client: httpx.AsyncClient | None = None
        self.wake = asyncio.Event()

    async def run(self) -> None:
        """Forever: when a callback is due, take the lease (if free) and deliver what is due."""
        # No keep-alive: a connection made for one name is never reused for another on the same IP.
        self.client = httpx.AsyncClient(timeout=self.config.callbacks.timeout, follow_redirects=False, trust_env=False,
                                        limits=httpx.Limits(max_keepalive_connections=0), transport=self.transport,
                                        headers={"User-Agent": "signoff-callbacks"})  # fmt: skip
        try:
            while True:
                due = await self.rows.next_due()
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
        for row in await self.rows.due(limit=50):
            if self.lease.remaining() < self.config.callbacks.timeout + 1 and not await self.lease.claim():
                break
            req = await self.store.get(row.request_id)
            if req is None or req.callback_url is None:  # pragma: no cover - the trigger needs both
                await self.rows.finish(row.id, None)
                continue
            error = await self._post(req, row.id, row.attempts + 1)
            if error is None:
                delivered += 1
                await self.rows.finish(row.id, None)
                await self.store.record(req.id, "callback_delivered", Actor("system", "callbacks", "http"),
                                        {"url": req.callback_url, "attempt": row.attempts + 1})  # fmt: skip
            else:
                delay = min(MAX_BACKOFF, 2.0**row.attempts)
                await self.rows.retry(row.id, delay, error)
                log.info("callback for %s failed (%s); retrying in %.0f s", req.id, error, delay)
        return delivered

    async def _post(self, req: ApprovalRequest, delivery: int, attempt: int) -> str | None:
        """POST the callback; None when the receiver took it, else what went wrong."""
        assert req.callback_url is not None and self.client is not None
        callbacks = self.config.callbacks  # checked again at delivery: the prefixes, not what was true at filing
        try:
            target = allowed_target(req.callback_url, callbacks.prefixes())
            async with asyncio.timeout(callbacks.timeout):
                addresses = await checked_addresses(target, self.resolver)
        except ValueError as exc:
            return f"not sent: {exc}"
        except TimeoutError:
            return f"not sent: resolving the host took longer than {callbacks.timeout:g} s"
        body = json.dumps(payload(req, delivery, attempt), ensure_ascii=False, sort_keys=True).encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
                   SIGNATURE_HEADER: signature(self.secret, timestamp, target.url, body)}  # fmt: skip
        error = "no address"
        for ip in addresses:  # each one checked; the next only when this one cannot be reached
            try:
                response = await post_pinned(self.client, target, ip, body, headers)
            except httpx.ConnectError as exc:
                error = f"{type(exc).__name__} ({ip}): {exc}"
                continue
            except httpx.HTTPError as exc:
                return f"{type(exc).__name__}: {exc}"
            return None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        return error
