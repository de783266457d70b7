"""Red team: several signoff instances on one PostgreSQL (SECURITY.md, control 12).

An *instance* is what the database sees of a ``signoff serve``: its own statement connection,
listener and read pool. Here several ``open_app(config)`` Apps in one process share one fresh
schema of a real server (``tests/pg_cluster.py``); one test runs real ``signoff serve``
processes. Each test states the property it attacks in its docstring and attacks it with real
concurrency (``asyncio.gather`` across the instances, many rounds), or pins an interleaving with
a lock held from an outside connection (a row lock, the audit chain's advisory lock), so the
order is forced rather than hoped for. Every wait is bounded; nothing sleeps for a fixed time.

A test marked ``xfail(strict=True)`` is an attack that succeeds on this commit: its reason
names the hole, and it turns into a failure (XPASS) once the hole is closed.

Runs on PostgreSQL only: the suites in tests/security/ are parametrized over both stores, and
the ``[sqlite]`` case of every test here skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import psycopg
import pytest
from psycopg.pq import TransactionStatus

from signoff.server import grants as grants_mod
from signoff.server import web_queries as wq
from signoff.server.app import App, open_app
from signoff.server.channels import WEB, ChannelService
from signoff.server.config import Config, load_config
from signoff.server.errors import RequestError
from signoff.server.intake import NewRequest
from signoff.server.lease import BOT_LEASE, Lease
from signoff.server.models import Actor, ApprovalRequest, Decision, Status
from signoff.server.web_auth import WebAuth

from .. import pg_cluster
from ..procs import serve
from ..web_support import serve_web

pytestmark = [pytest.mark.anyio, pytest.mark.postgresql_only]

AGENT = Actor("agent", "claude-code", "mcp")
ALICE = Actor("human", "alice", "console")
BOB = Actor("human", "bob", "console")
CAROL = Actor("human", "carol", "console")
FINAL_EVENTS = {"approved", "rejected", "expired", "cancelled", "answered"}

CONFIG = """
[store]
path = "signoff.db"

[server]
port = 0

[approvers.alice]
telegram_user_id = 111

[approvers.bob]
telegram_user_id = 222

[approvers.carol]
telegram_user_id = 333

[[routes]]
name = "quorum"
match = { action = "vote_*" }
approvers = ["alice", "bob", "carol"]
quorum = 2

[[routes]]
name = "lenient"
match = { action = "lenient_*" }
approvers = ["alice", "bob"]
on_timeout = "approve"
timeout = "1m"

[[routes]]
name = "limited"
match = { action = "Limited" }
approvers = ["alice", "bob"]
grant_options = ["30m"]
grant_max_uses = 3

[[routes]]
name = "granted"
match = { action = "Bash" }
approvers = ["alice", "bob"]
grant_options = ["30m"]

[[routes]]
name = "default"
approvers = ["alice", "bob"]
timeout = "1m"
"""


# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
def pg_url(store_kind: str) -> str:
    """The fresh schema the autouse ``store_kind`` fixture made for this test (in
    $SIGNOFF_DATABASE_URL, so every config loaded and every signoff child process uses it)."""
    if store_kind != "postgresql":
        pytest.skip(
            "PostgreSQL only: these attacks are on instances sharing one PostgreSQL (the [postgresql] case runs them)"
        )
    if pg_cluster.server_url() is None:  # the store_kind fixture skipped already; said again for clarity
        pytest.skip(f"no PostgreSQL for the tests: {pg_cluster.why_not()}")
    url = os.environ.get("SIGNOFF_DATABASE_URL")
    assert url, "the store_kind fixture sets $SIGNOFF_DATABASE_URL for PostgreSQL"
    return url


@pytest.fixture
def config_file(pg_url: str, tmp_path: Path) -> Path:
    path = tmp_path / "signoff.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


@pytest.fixture
def cfg(config_file: Path) -> Config:
    return load_config(config_file)


@asynccontextmanager
async def instances(config: Config, n: int, *, background: bool = False,
                    clocks: list[Callable[[], float]] | None = None) -> AsyncIterator[list[App]]:  # fmt: skip
    """``n`` instances on the same store, each with its own connections (and clock, if given)."""
    async with AsyncExitStack() as stack:
        apps = []
        for i in range(n):
            clock = clocks[i] if clocks else time.time
            apps.append(await stack.enter_async_context(open_app(config, background=background, clock=clock)))
        yield apps


@asynccontextmanager
async def outside(url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A connection that bypasses signoff (as the test cluster's superuser, in the store's schema)."""
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        yield conn
    finally:
        await conn.close()


async def rows(conn: psycopg.AsyncConnection[Any], sql: str, *args: Any) -> list[tuple[Any, ...]]:
    cur = await conn.execute(sql, args or None)
    return list(await cur.fetchall()) if cur.description is not None else []


async def until(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Poll ``check`` until it holds; fail after ``within`` seconds."""
    with anyio.fail_after(within):
        while True:
            if await check():
                return
            await anyio.sleep(0.005)


async def events_of(db: psycopg.AsyncConnection[Any], request_id: str) -> list[str]:
    return [r[0] for r in await rows(db, "SELECT event FROM audit WHERE request_id = %s ORDER BY seq", request_id)]


async def file(app: App, action: str = "deploy", summary: str = "Deploy the shop", requester: Actor = AGENT,
               **kw: Any) -> ApprovalRequest:  # fmt: skip
    return await app.service.request_approval(NewRequest(action, summary, **kw), requester)


async def chain_is_whole(app: App, db: psycopg.AsyncConnection[Any]) -> int:
    """Verify the whole chain as ``signoff audit verify`` does, and that seq is 1…n without a gap."""
    status = await wq.verify_chain(app.store)
    assert status.ok, status.broken
    count, low, high = (await rows(db, "SELECT count(*), coalesce(min(seq), 1), coalesce(max(seq), 0) FROM audit"))[0]
    assert (low, high) == (1, count), f"seq is not dense: {count} events numbered {low}…{high}"
    assert status.count == count
    return int(count)


async def each_request_audited_once(db: psycopg.AsyncConnection[Any]) -> None:
    """Every request has one "created" event, at most one final event, and a final status has its event."""
    by_request: dict[str, list[str]] = {}
    for rid, event in await rows(db, "SELECT request_id, event FROM audit ORDER BY seq"):
        by_request.setdefault(rid, []).append(event)
    for rid, status in await rows(db, "SELECT id, status FROM requests"):
        seen = by_request.get(rid, [])
        assert seen.count("created") == 1, (rid, seen)
        finals = [e for e in seen if e in FINAL_EVENTS]
        assert finals == ([] if status == "pending" else [status]), (rid, status, seen)


def statement_backend(app: App) -> int:
    """The PostgreSQL backend pid of the instance's statement connection."""
    return int(app.store.conn.raw.info.backend_pid)  # type: ignore[attr-defined]


def transaction_status(app: App) -> TransactionStatus:
    return TransactionStatus(app.store.conn.raw.info.transaction_status)  # type: ignore[attr-defined]


async def waits_on_a_lock(mon: psycopg.AsyncConnection[Any], pid: int) -> bool:
    found = await rows(mon, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", pid)
    return bool(found) and found[0][0] == "Lock"


async def statements_queued(app: App, n: int) -> None:
    """Best effort, bounded: until ``n`` statements are under way on the instance's statement
    connection (white-box; after a fix that moves reads elsewhere this simply times out quietly)."""
    with anyio.move_on_after(2):
        await until(lambda: _running(app, n))


async def _running(app: App, n: int) -> bool:
    return len(getattr(app.store.conn, "_running", ())) >= n


async def _idle(app: App) -> bool:
    return not await _running(app, 1)


def chain_key(app: App) -> str:
    return f"{app.store.conn.schema}:audit_chain"  # type: ignore[attr-defined]


def lone_decision(pair: tuple[Decision, Decision]) -> tuple[Decision, Decision]:
    """(winner, loser) of two attempts on one request: exactly one changed it."""
    first, second = pair
    assert first.changed != second.changed, pair
    return (first, second) if first.changed else (second, first)


# --- 1. two instances decide one request at once ------------------------------------------------


async def test_two_instances_deciding_one_request_at_once_one_wins_and_the_loser_learns_who(
    cfg: Config, pg_url: str
) -> None:
    """Property: approve on A and reject on B of the same request, at once (100 requests, ten at a
    time so the pairs also contend with each other): exactly one attempt changes it, the request
    has exactly one final audit event (its winner's), and the loser is told the outcome and who
    decided — the same answer both instances then read."""
    async with instances(cfg, 2) as (a, b), outside(pg_url) as db:
        ids = [
            r.id for r in await asyncio.gather(*(file(a if i % 2 else b, summary=f"Deploy {i}") for i in range(100)))
        ]
        outcomes: dict[str, tuple[Decision, Decision]] = {}
        with anyio.fail_after(40):
            for start in range(0, 100, 10):
                batch = ids[start : start + 10]
                calls = []
                for n, rid in enumerate(batch):
                    approve, reject = a.service.decide(rid, True, ALICE), b.service.decide(rid, False, BOB)
                    calls += [approve, reject] if n % 2 else [reject, approve]
                got = await asyncio.gather(*calls)
                for n, rid in enumerate(batch):
                    outcomes[rid] = (got[2 * n], got[2 * n + 1])
        winners: Counter[str | None] = Counter()
        for rid, pair in outcomes.items():
            winner, loser = lone_decision(pair)
            winners[winner.request.decided_by] += 1
            assert loser.request.status is winner.request.status, (rid, pair)
            assert loser.request.decided_by == winner.request.decided_by in ("alice", "bob")
            stored_a, stored_b = await a.store.get(rid), await b.store.get(rid)
            assert stored_a == stored_b and stored_a is not None and stored_a.status is winner.request.status
            assert await events_of(db, rid) == ["created", winner.request.status.value]
        assert sum(winners.values()) == 100
        await chain_is_whole(a, db)


async def test_quorum_votes_cast_on_several_instances_count_once_each(cfg: Config, pg_url: str) -> None:
    """Property: on a quorum-2 route, alice votes on A, bob on B and alice again on C, all at
    once (30 requests at a time): each approver's vote is stored once, the request is approved
    exactly once by both, one "voted" event precedes the one "approved", and alice's second vote
    is told it was already cast (or that the request is decided)."""
    async with instances(cfg, 3) as (a, b, c), outside(pg_url) as db:
        ids = [r.id for r in await asyncio.gather(*(file(a, "vote_deploy", f"Deploy {i}") for i in range(30)))]
        with anyio.fail_after(30):
            got = await asyncio.gather(*(asyncio.gather(a.service.decide(rid, True, ALICE), b.service.decide(rid, True, BOB),
                                                        c.service.decide(rid, True, ALICE)) for rid in ids))  # fmt: skip
        for rid, (alice, bob, alice_again) in zip(ids, got, strict=True):
            assert sum(d.changed for d in (alice, bob, alice_again)) == 1, (rid, alice, bob, alice_again)
            assert sum(d.changed or d.voted for d in (alice, alice_again)) == 1
            second = alice_again if (alice.changed or alice.voted) else alice
            assert second.already_voted == "approve" or second.request.status.final
            stored = await b.store.get(rid)
            assert stored is not None and stored.status is Status.APPROVED
            assert sorted((stored.decided_by or "").split(", ")) == ["alice", "bob"]
            votes = await rows(db, "SELECT approver, vote FROM votes WHERE request_id = %s ORDER BY approver", rid)
            assert votes == [("alice", "approve"), ("bob", "approve")]
            assert await events_of(db, rid) == ["created", "voted", "approved"]
        await chain_is_whole(a, db)


# --- 2. an expiry sweep on one instance, a human on another, at the deadline -------------------


class Skewed:
    """Real time plus an offset the test moves (each instance has its own)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def test_an_expiry_on_one_instance_and_a_decision_on_another_at_the_deadline(cfg: Config, pg_url: str) -> None:
    """Property: at a request's deadline, A's sweep (its clock just past the deadline) races B's
    human decision (B's clock half a second behind, so B still takes it as pending): each
    request ends with exactly one final status and one final event, and a timeout approves only
    where the route's on_timeout says so — on a reject route "approved" is always the human's;
    on an approve route (B rejecting), "approved" is always the timeout's."""
    clock_a, clock_b = Skewed(), Skewed()
    async with instances(cfg, 2, clocks=[clock_a, clock_b]) as (a, b), outside(pg_url) as db:
        seen: Counter[tuple[str, str, str]] = Counter()
        base = 0.0
        with anyio.fail_after(40):
            for _ in range(5):
                clock_a.offset = clock_b.offset = base
                strict = [r.id for r in await asyncio.gather(*(file(a, "deploy", f"d{i}") for i in range(12)))]
                lenient = [r.id for r in await asyncio.gather(*(file(b, "lenient_deploy", f"l{i}") for i in range(12)))]
                clock_a.offset, clock_b.offset = base + 60.2, base + 59.5  # the deadline is filing + 60 s
                human = [b.service.decide(rid, True, ALICE) for rid in strict]
                human += [b.service.decide(rid, False, BOB) for rid in lenient]
                await asyncio.gather(a.service.sweep(), *human, a.service.sweep())
                await a.service.sweep()
                for route, rids in (("default", strict), ("lenient", lenient)):
                    for rid in rids:
                        req = await b.store.get(rid)
                        assert req is not None and req.status.final, req
                        finals = [e for e in await events_of(db, rid) if e in FINAL_EVENTS]
                        assert finals == [req.status.value], (rid, finals)
                        seen[(route, req.status.value, req.decided_by or "")] += 1
                base += 120.0
        allowed = {("default", "approved", "alice"), ("default", "expired", "timeout"),
                   ("lenient", "rejected", "bob"), ("lenient", "approved", "timeout")}  # fmt: skip
        assert set(seen) <= allowed, seen
        assert sum(seen.values()) == 120


# --- 3. the same idempotency key on several instances at once -----------------------------------


async def test_one_idempotency_key_filed_on_three_instances_at_once_is_one_request(cfg: Config, pg_url: str) -> None:
    """Property: the same call with the same idempotency key, filed on three instances at once
    (60 keys), is one request with one "created" event, and every instance returns it; the same
    key with other content is refused on whichever instance lost (never a second request); on
    a route with a live grant, the losers' use of the grant is rolled back (uses = keys)."""
    async with instances(cfg, 3) as apps, outside(pg_url) as db:
        a, b, _ = apps
        with anyio.fail_after(40):
            for start in range(0, 60, 15):
                keys = [f"key-{n}" for n in range(start, start + 15)]
                got = await asyncio.gather(*(asyncio.gather(*(file(x, summary="Same", idempotency_key=k) for x in apps))
                                             for k in keys))  # fmt: skip
                for key, same in zip(keys, got, strict=True):
                    assert len({r.id for r in same}) == 1, (key, same)
                    assert await events_of(db, same[0].id) == ["created"]
            # Different content under one key, at once on two instances: one request, one refusal.
            for n in range(20):
                key = f"clash-{n}"
                results = await asyncio.gather(file(a, summary="Mine", idempotency_key=key),
                                               file(b, summary="Theirs", idempotency_key=key), return_exceptions=True)  # fmt: skip
                filed = [r for r in results if isinstance(r, ApprovalRequest)]
                refused = [r for r in results if isinstance(r, RequestError)]
                assert len(filed) == 1 and len(refused) == 1, results
                assert "already used for a different request" in str(refused[0])
            counts = await rows(
                db,
                "SELECT count(*) FROM requests WHERE idempotency_key LIKE 'key-%%' OR idempotency_key LIKE 'clash-%%'",
            )
            assert counts == [(80,)]
            # Through a grant: both instances take the grant in their transaction; the loser rolls back.
            first = await file(a, "Bash", "Run the tests", details={"command": "npm test"}, cwd="/proj")
            _, grant = await a.service.approve_and_grant(first.id, "30m", ALICE)
            assert grant is not None
            keys = [f"granted-{n}" for n in range(10)]
            pairs = await asyncio.gather(*(asyncio.gather(file(a, "Bash", "Run the tests", details={"command": "npm test"},
                                                             cwd="/proj", idempotency_key=k),
                                                        file(b, "Bash", "Run the tests", details={"command": "npm test"},
                                                             cwd="/proj", idempotency_key=k)) for k in keys))  # fmt: skip
        for pair in pairs:
            assert pair[0].id == pair[1].id and pair[0].status is Status.APPROVED
            assert await events_of(db, pair[0].id) == ["created", "approved"]
        assert (await grants_mod.get(a.store, grant.id)).uses == len(keys)
        await chain_is_whole(a, db)


# --- 4. grants: max_uses and revocation across instances -----------------------------------------


async def test_a_grant_is_never_used_more_than_max_uses_nor_after_its_revocation(cfg: Config, pg_url: str) -> None:
    """Property: a grant with grant_max_uses = 3, used by 8 covered requests filed on two
    instances at once, approves exactly 3 (8 rounds, a new grant each); a grant revoked on A is
    not used by B's very next request; and racing a revocation on A against uses on B, every
    use the grant approved committed before the revocation (its events come first in the chain)."""
    async with instances(cfg, 2) as (a, b), outside(pg_url) as db:

        async def new_grant(action: str) -> str:
            req = await file(a, action, "Run the tests", details={"command": "npm test"}, cwd="/proj")
            decision, grant = await a.service.approve_and_grant(req.id, "30m", ALICE)
            assert decision.changed and grant is not None
            return grant.id

        def covered(app: App, action: str, n: int) -> Awaitable[ApprovalRequest]:
            return file(app, action, f"Run the tests {n}", details={"command": "npm test"}, cwd="/proj")

        with anyio.fail_after(40):
            for _ in range(8):
                gid = await new_grant("Limited")
                got = await asyncio.gather(*(covered(a if n % 2 else b, "Limited", n) for n in range(8)))
                by_grant = [r for r in got if r.decided_by == f"grant:{gid}"]
                assert len(by_grant) == 3, [(r.status, r.decided_by) for r in got]
                assert all(r.status is Status.PENDING for r in got if r not in by_grant)
                assert (await grants_mod.get(b.store, gid)).uses == 3

            gid = await new_grant("Bash")
            assert (await covered(b, "Bash", 0)).decided_by == f"grant:{gid}"
            assert await a.service.revoke_grant(gid, ALICE)
            after = await covered(b, "Bash", 1)
            assert after.status is Status.PENDING and after.decided_by is None

            for _ in range(5):
                gid = await new_grant("Bash")
                results = await asyncio.gather(a.service.revoke_grant(gid, BOB),
                                               *(covered(b if n % 2 else a, "Bash", n) for n in range(6)))  # fmt: skip
                assert results[0] is True
                revoked_at = await rows(db, "SELECT seq FROM audit WHERE event = 'grant_revoked' AND data LIKE %s",
                                        f'%"{gid}"%')  # fmt: skip
                assert len(revoked_at) == 1
                for req in results[1:]:
                    assert isinstance(req, ApprovalRequest)
                    if req.decided_by == f"grant:{gid}":
                        (seq,) = (await rows(db, "SELECT max(seq) FROM audit WHERE request_id = %s", req.id))[0]
                        assert seq < revoked_at[0][0], "a use of the grant committed after its revocation"
                assert (await covered(b, "Bash", 99)).status is Status.PENDING
        await chain_is_whole(a, db)


# --- 5. a sign-in link redeemed on several instances at once --------------------------------------


async def test_a_sign_in_link_redeemed_on_three_instances_at_once_signs_in_once(cfg: Config, pg_url: str) -> None:
    """Property: a single-use web sign-in link, redeemed on three instances at once (60 links),
    makes exactly one session; the other redemptions get nothing."""
    async with instances(cfg, 3) as apps, outside(pg_url) as db:
        auths = [WebAuth(x.store, x.config, time.time) for x in apps]
        tokens = [await auths[n % 3].issue_link("alice", "console") for n in range(60)]
        with anyio.fail_after(30):
            got = await asyncio.gather(
                *(asyncio.gather(*(auth.redeem(t, "redteam") for auth in auths)) for t in tokens)
            )
        for token, attempts in zip(tokens, got, strict=True):
            assert sum(r is not None for r in attempts) == 1, (token, attempts)
        assert await rows(db, "SELECT count(*) FROM web_sessions") == [(60,)]


async def test_a_sign_in_link_posted_to_two_signoff_serve_processes_at_once_signs_in_once(
    cfg: Config, config_file: Path, pg_url: str
) -> None:
    """Property: the same, through two real ``signoff serve`` processes over HTTP: of two POSTs
    of one link to /web/login, one on each process at once, exactly one gets a session (303 and
    a cookie); the other is refused (400, or 429 once that address failed too often)."""
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(serve(config_file))
        second = await stack.enter_async_context(serve(config_file))
        bases = [s.url.removesuffix("/mcp") for s in (first, second)]
        db = await stack.enter_async_context(outside(pg_url))
        async with instances(cfg, 1) as (issuer,):
            auth = WebAuth(issuer.store, issuer.config, time.time)
            tokens = [await auth.issue_link("bob", "console") for _ in range(12)]
        async with httpx.AsyncClient(timeout=20, follow_redirects=False) as http:
            with anyio.fail_after(40):
                for token in tokens:
                    answers = await asyncio.gather(
                        *(http.post(f"{base}/web/login", data={"token": token}) for base in bases)
                    )
                    codes = sorted(r.status_code for r in answers)
                    assert codes[0] == 303 and codes[1] in (400, 429), codes
                    assert sum("signoff_session" in r.headers.get("set-cookie", "") for r in answers) == 1
        assert await rows(db, "SELECT count(*) FROM web_sessions WHERE approver = 'bob'") == [(12,)]


# --- 6. the audit chain under three concurrent writers ------------------------------------------


async def test_the_audit_chain_stays_whole_under_three_concurrent_writers(cfg: Config, pg_url: str) -> None:
    """Property: filings, decisions racing on two instances, quorum votes from three, refusals
    recorded, grants made, used and revoked, agents cancelling — all at once on three instances —
    leave one chain that ``audit verify`` accepts, numbered 1…n without a gap, with exactly one
    "created" event per request and one final event per decided request."""
    async with instances(cfg, 3, background=True) as apps, outside(pg_url) as db:
        a, b, c = apps
        with anyio.fail_after(45):
            plain = await asyncio.gather(*(file(apps[n % 3], summary=f"Deploy {n}") for n in range(36)))
            quorum = await asyncio.gather(*(file(apps[n % 3], "vote_deploy", f"Vote {n}") for n in range(15)))
            seed = await file(a, "Bash", "Run the tests", details={"command": "npm test"}, cwd="/proj")
            _, grant = await a.service.approve_and_grant(seed.id, "30m", ALICE)
            assert grant is not None
            mallory = Actor("human", "mallory", "telegram")
            work: list[Awaitable[Any]] = []
            for n, req in enumerate(plain):
                x, y = apps[n % 3], apps[(n + 1) % 3]
                if n % 6 == 5:
                    work.append(x.service.cancel(req.id, AGENT, "no longer needed"))
                work += [x.service.decide(req.id, n % 2 == 0, ALICE), y.service.decide(req.id, n % 2 == 1, BOB)]
                work.append(apps[(n + 2) % 3].store.record(req.id, "refused", mallory, {"why": "not an approver"}))
            for n, req in enumerate(quorum):
                work += [a.service.decide(req.id, True, ALICE), b.service.decide(req.id, n % 3 != 0, BOB),
                         c.service.decide(req.id, True, CAROL)]  # fmt: skip
            for n in range(15):
                work.append(
                    file(apps[n % 3], "Bash", f"Run the tests {n}", details={"command": "npm test"}, cwd="/proj")
                )
                work.append(file(apps[(n + 1) % 3], summary=f"Late {n}"))
            work.insert(len(work) // 2, c.service.revoke_grant(grant.id, BOB))
            results = await asyncio.gather(*work, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert errors == [], errors[:3]
        count = await chain_is_whole(b, db)
        assert count > 150
        await each_request_audited_once(db)


# --- 6b. tampering with the audit log through SQL ------------------------------------------------


APPEND_ONLY = ("UPDATE audit SET actor = 'mallory'", "UPDATE audit SET hash = NULL, prev_hash = NULL",
               "DELETE FROM audit WHERE seq = 1", "TRUNCATE audit")  # fmt: skip


async def test_the_audit_log_refuses_update_delete_and_truncate_through_sql(cfg: Config, pg_url: str) -> None:
    """Property: an UPDATE, DELETE or TRUNCATE of the audit log, sent straight to PostgreSQL as
    the store's owner (guards left in place), is refused with "append-only"; an INSERT naming
    its own seq and hash is renumbered and rehashed by the chain; the chain still verifies."""
    async with instances(cfg, 2) as (a, b), outside(pg_url) as db:
        req = await file(a)
        await b.service.decide(req.id, False, BOB)
        before = await chain_is_whole(a, db)
        for sql in APPEND_ONLY:
            with pytest.raises(psycopg.errors.IntegrityError, match="append-only"):
                await db.execute(sql)
        await db.execute(
            "INSERT INTO audit (seq, at, event, request_id, actor_kind, actor, channel, route_snapshot, content_hash, "
            "prev_hash, hash) SELECT 1, 1.5, 'approved', id, 'human', 'alice', 'forged', route_snapshot, content_hash, "
            "NULL, repeat('0', 64) FROM requests WHERE id = %s",
            (req.id,),
        )
        assert await chain_is_whole(b, db) == before + 1
        assert await rows(db, "SELECT seq FROM audit WHERE channel = 'forged'") == [(before + 1,)]


@contextlib.contextmanager
def non_owner(url: str, schema: str) -> Iterator[tuple[psycopg.Connection[Any], str]]:
    """A connection acting as a role that may read and write every table of the store (all DML and
    TRUNCATE granted) but does not own it: an operator's maintenance or reporting role."""
    role = f"maint_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as admin:
        try:
            admin.execute(f"CREATE ROLE {role} NOLOGIN")
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("the test server's role may not create roles")
        try:
            admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
            admin.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA {schema} TO {role}")
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"SET ROLE {role}")
                yield conn, role
        finally:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


async def test_a_role_that_does_not_own_the_store_cannot_lift_the_guards(cfg: Config, pg_url: str) -> None:
    """Property: a role granted every DML privilege and TRUNCATE on the store's tables, but not
    their owner, can neither rewrite the audit log (UPDATE, DELETE, TRUNCATE refused) nor lift
    its guards (ALTER TABLE … DISABLE TRIGGER needs the owner)."""
    async with instances(cfg, 1) as (a,), outside(pg_url) as db:
        await file(a)
        before = await chain_is_whole(a, db)
        schema = a.store.conn.schema  # type: ignore[attr-defined]
    with non_owner(pg_url, schema) as (conn, _):
        for sql in APPEND_ONLY:
            with pytest.raises(psycopg.errors.IntegrityError, match="append-only"):
                conn.execute(sql)
        for sql in ("ALTER TABLE audit DISABLE TRIGGER USER", "ALTER TABLE audit DISABLE TRIGGER audit_truncate_guard",
                    "DROP TRIGGER audit_is_append_only_update ON audit"):  # fmt: skip
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
        assert conn.execute("SELECT count(*) FROM audit").fetchone() == (before,)


async def test_a_role_that_does_not_own_the_store_cannot_use_the_copy_tools_exception(cfg: Config, pg_url: str) -> None:
    """Property: the copy tool's exception to the append-only guards (``SET LOCAL signoff.copying =
    'on'``) is not open to a role that does not own the store: such a role can neither TRUNCATE
    the audit log nor change a request's status without its audit event (a role that may write
    the rows can change them: SECURITY.md trusts it as far as that, and the audit says so)."""
    async with instances(cfg, 1) as (a,), outside(pg_url) as db:
        req = await file(a)
        schema = a.store.conn.schema  # type: ignore[attr-defined]
    truncated = silently_approved = False
    with non_owner(pg_url, schema) as (conn, _):
        with contextlib.suppress(psycopg.Error), conn.transaction():
            conn.execute("SET LOCAL signoff.copying = 'on'")
            conn.execute("UPDATE requests SET status = 'approved', decided_by = 'alice', decided_kind = 'human', "
                         "decided_at = 1, decided_via = 'telegram' WHERE id = %s", (req.id,))  # fmt: skip
            silently_approved = True
        with contextlib.suppress(psycopg.Error), conn.transaction():
            conn.execute("SET LOCAL signoff.copying = 'on'")
            conn.execute("TRUNCATE audit")
            truncated = True
    async with outside(pg_url) as db:
        status = await rows(db, "SELECT status FROM requests WHERE id = %s", req.id)
        audited = "approved" in await events_of(db, req.id)
        assert status == [("pending",)] or (silently_approved and audited), "approved with no audit event"
        assert not truncated and (await events_of(db, req.id))[0] == "created", "the audit log was emptied"


# --- 7. leases on the database's clock -----------------------------------------------------------


async def test_instances_with_skewed_clocks_never_both_hold_the_bot_lease(cfg: Config, pg_url: str) -> None:
    """Property: instances claiming the bot lease at once (100 rounds, three claims each) never
    both hold it, and one whose Python clock runs an hour ahead cannot take a live lease from
    one whose clock runs an hour behind, nor the other way round: leases are compared on the
    database's clock (the row's expiry is the database's now + ttl), and a released lease is
    taken over at once."""
    async with instances(cfg, 3) as (a, b, c), outside(pg_url) as db:
        ahead = Lease(a.store, BOT_LEASE, 30, clock=lambda: time.time() + 3600)
        behind = Lease(b.store, BOT_LEASE, 30, clock=lambda: time.time() - 3600)
        honest = Lease(c.store, BOT_LEASE, 30)
        contenders = (ahead, behind, honest)
        holder: Lease | None = None
        with anyio.fail_after(30):
            for n in range(100):
                order = contenders[n % 3 :] + contenders[: n % 3]
                got = await asyncio.gather(*(lease.claim() for lease in order for _ in range(3)))
                held = {order[i // 3] for i, ok in enumerate(got) if ok}
                assert len(held) == 1, f"round {n}: {len(held)} holders"
                (now_holder,) = held
                holder = holder or now_holder
                assert now_holder is holder, f"round {n}: the lease was taken from its live holder"
                assert holder.remaining() > 0 and all(x.remaining() == 0 for x in contenders if x is not holder)
                if n % 25 == 24:  # hand it over: released, it goes at once to the next one asking
                    await holder.release()
                    nxt = contenders[(contenders.index(holder) + 1) % 3]
                    assert await nxt.claim()
                    holder = nxt
        (owner, expires, db_now) = (await rows(db, "SELECT owner, expires_at, extract(epoch FROM clock_timestamp())::float8 "
                                                   "FROM leases WHERE name = %s", BOT_LEASE))[0]  # fmt: skip
        assert holder is not None and owner == holder.owner
        assert abs(expires - (db_now + 30)) < 10, "the lease's expiry is not on the database's clock"


# --- 8. cancellation in the middle of a decision --------------------------------------------------


async def test_a_decision_cancelled_while_it_waits_leaves_nothing_half_written(cfg: Config, pg_url: str) -> None:
    """Property: a decision on A cancelled while it waits inside its transaction — for the audit
    chain's lock (another instance's transaction holds it), for the request's row (its vote's
    foreign key, or the compare-and-set itself) — 30 times: afterwards A's connection is idle
    (no transaction, no advisory lock left), the request is pending with no vote and no event
    but "created", and both instances decide other requests within a bound."""
    async with instances(cfg, 2) as (a, b), outside(pg_url) as holder, outside(pg_url) as mon:
        ids = [r.id for r in await asyncio.gather(*(file(a, summary=f"Deploy {n}") for n in range(40)))]
        pid = statement_backend(a)
        blocks = (("SELECT pg_advisory_xact_lock(hashtext(%s))", lambda rid: chain_key(a)),
                  ("SELECT 1 FROM requests WHERE id = %s FOR UPDATE", lambda rid: rid),
                  ("SELECT 1 FROM requests WHERE id = %s FOR NO KEY UPDATE", lambda rid: rid))  # fmt: skip
        with anyio.fail_after(40):
            for n, rid in enumerate(ids[:30]):
                sql, arg = blocks[n % 3]
                await holder.execute("BEGIN")
                await holder.execute(sql, (arg(rid),))
                task = asyncio.ensure_future(a.service.decide(rid, True, ALICE))
                await until(lambda: waits_on_a_lock(mon, pid))
                task.cancel()
                await holder.execute("COMMIT")
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                assert task.cancelled()
                assert transaction_status(a) is TransactionStatus.IDLE
                assert await rows(
                    mon, "SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'advisory'", pid
                ) == [(0,)]
                assert (await b.store.get(rid)).status is Status.PENDING  # type: ignore[union-attr]
                assert await rows(mon, "SELECT count(*) FROM votes WHERE request_id = %s", rid) == [(0,)]
                assert await events_of(mon, rid) == ["created"]
        with anyio.fail_after(10):
            done = await asyncio.gather(
                *(x.service.decide(rid, True, ALICE) for x, rid in zip((a, b) * 5, ids[30:], strict=True))
            )
            assert all(d.changed for d in done)
            assert (await a.service.decide(ids[0], False, BOB)).changed
        await chain_is_whole(a, mon)
        await each_request_audited_once(mon)


async def test_a_transaction_cancelled_during_begin_leaves_no_transaction_open(cfg: Config, pg_url: str) -> None:
    """Property: cancelling a decision at any point (here: while its BEGIN is on the wire — an
    MCP client's notifications/cancelled or a closed HTTP request can land there) leaves A's
    connection outside any transaction; a request A files afterwards is committed; and B can
    still decide another request within 3 s."""
    async with instances(cfg, 2) as (a, b), outside(pg_url) as mon:
        first, other = await file(a), await file(b)
        leaked, filed_late, b_waited = None, None, None
        task = asyncio.ensure_future(a.service.decide(first.id, True, ALICE))
        with anyio.fail_after(5):
            while True:  # the decision's first statement on A's connection is its BEGIN: cancel it on the wire
                if await _running(a, 1):
                    break
                await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await until(lambda: _idle(a))
        leaked = transaction_status(a)
        late = await file(a, summary="Filed after the cancellation")
        filed_late = await b.store.get(late.id)
        decide = asyncio.ensure_future(b.service.decide(other.id, False, BOB))
        started = time.monotonic()
        try:
            await asyncio.wait({decide}, timeout=3)
            b_waited = time.monotonic() - started
        finally:
            if not decide.done():  # end A's leaked transaction from outside, so B's decision (and this test) can end
                await rows(mon, "SELECT pg_terminate_backend(%s)", statement_backend(a))
                with anyio.fail_after(10):
                    await asyncio.wait({decide})
        assert leaked is TransactionStatus.IDLE, f"A's connection is left {leaked.name} after the cancellation"
        assert filed_late is not None, "a request A filed afterwards was never committed"
        assert b_waited < 3 and decide.result().changed, "B could not decide another request"


async def test_a_reader_on_the_same_instance_never_sees_a_decision_that_is_rolled_back(
    cfg: Config, pg_url: str
) -> None:
    """Property: while a human's decision on A is in flight and is then cancelled (rolled back),
    an agent checking its request on A is never told a status the database does not hold: what
    it reads is "pending" (the cancelled decision never committed), and B's later rejection is
    the request's only decision."""
    async with instances(cfg, 2) as (a, b), outside(pg_url) as holder, outside(pg_url) as mon:
        req = await file(a)
        await holder.execute("BEGIN")
        await holder.execute("SELECT 1 FROM requests WHERE id = %s FOR NO KEY UPDATE", (req.id,))
        decide = asyncio.ensure_future(a.service.decide(req.id, True, ALICE))
        await until(lambda: waits_on_a_lock(mon, statement_backend(a)))  # alice's compare-and-set waits on the row
        check = asyncio.ensure_future(a.service.get(req.id, requester=AGENT.name))  # the agent's check_decision on A
        await statements_queued(a, 2)
        decide.cancel()  # the approver's request went away
        await holder.execute("COMMIT")
        with anyio.fail_after(10):
            told = await check
            with contextlib.suppress(asyncio.CancelledError):
                await decide
        with anyio.fail_after(10):
            final = await b.service.decide(req.id, False, BOB)
        assert final.changed and final.request.status is Status.REJECTED
        assert await events_of(mon, req.id) == ["created", "rejected"]
        assert told.status is Status.PENDING, f"the agent was told {told.status.value!r} by {told.decided_by}"


async def test_a_failing_read_never_voids_a_transaction_that_then_reports_success(cfg: Config, pg_url: str) -> None:
    """Property: a request that the agent is told was approved by a grant exists, approved, with
    its audit events and the grant's use — even when, on the same instance, another coroutine's
    read fails on the server at that moment (an adapter's query bug, a statement_timeout, a DBA's
    pg_cancel_backend, or the audit timeline's `+text` below). Either the filing commits, or the
    agent gets an error."""
    async with instances(cfg, 2) as (a, b), outside(pg_url) as holder, outside(pg_url) as mon:
        seed = await file(a, "Bash", "Run the tests", details={"command": "npm test"}, cwd="/proj")
        _, grant = await a.service.approve_and_grant(seed.id, "30m", ALICE)
        assert grant is not None
        # Pin the interleaving: an uncommitted row with the same idempotency key (written as a copy
        # tool writes, so it takes no lock of signoff's) makes A's INSERT, its transaction's last
        # statement, wait; the failing read queues behind it.
        await holder.execute("BEGIN")
        await holder.execute("SET LOCAL signoff.copying = 'on'")
        await holder.execute("INSERT INTO requests (id, action, summary, metadata, route, route_snapshot, approvers, "
                             "requested_by, requested_via, content_hash, status, on_timeout, created_at, expires_at, "
                             "idempotency_key) SELECT 'req_placeholder', action, summary, metadata, route, route_snapshot, "
                             "approvers, requested_by, requested_via, content_hash, 'pending', on_timeout, created_at, "
                             "expires_at, 'same-key' FROM requests WHERE id = %s", (seed.id,))  # fmt: skip
        filing = asyncio.ensure_future(file(a, "Bash", "Run the tests", details={"command": "npm test"}, cwd="/proj",
                                            idempotency_key="same-key"))  # fmt: skip
        await until(lambda: waits_on_a_lock(mon, statement_backend(a)))
        failing = asyncio.ensure_future(a.store.read("SELECT 1 / 0"))
        await statements_queued(a, 2)
        await holder.execute("ROLLBACK")
        with anyio.fail_after(10):
            told = await asyncio.gather(filing, return_exceptions=True)
            await asyncio.gather(failing, return_exceptions=True)
        if isinstance(told[0], BaseException):
            return  # failed closed: the agent was not told it may act (what a fix may do)
        approved = told[0]
        assert approved.status is Status.APPROVED
        stored = await b.store.get(approved.id)
        uses = (await grants_mod.get(b.store, grant.id)).uses
        assert stored is not None and stored.status is Status.APPROVED, (
            "the agent was told 'approved'; nothing was stored"
        )
        assert await events_of(mon, approved.id) == ["created", "approved"]
        assert uses == 1


# --- 9. the listener: lost, flooded --------------------------------------------------------------


async def listeners(db: psycopg.AsyncConnection[Any], schema: str) -> set[int]:
    found = await rows(db, "SELECT pid FROM pg_stat_activity WHERE query = %s", f'LISTEN "signoff:{schema}"')
    return {int(r[0]) for r in found}


async def test_waiters_wake_when_the_listener_is_killed_and_when_it_is_flooded(cfg: Config, pg_url: str) -> None:
    """Property: with A's LISTEN connection terminated (pg_terminate_backend, twice), an agent
    waiting on A for a request B decides is still woken within 3 s (A polls meanwhile) and A
    listens again within 10 s; with the channel flooded by 100 000 foreign notifications, a
    waiter on A still wakes within 5 s of B's decision."""
    async with instances(cfg, 1, background=True) as (a,), outside(pg_url) as db:
        schema = a.store.conn.schema  # type: ignore[attr-defined]
        mine = await listeners(db, schema)
        assert len(mine) == 1 and a.store.notifications == "listening"
        async with instances(cfg, 1, background=True) as (b,):
            theirs = await listeners(db, schema) - mine
            for _ in range(2):
                req = await file(b)
                await rows(db, "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", list(mine))
                await until(lambda: _is(a.store.notifications, "polling"), within=5)
                waiting = asyncio.ensure_future(a.service.wait(req.id, 30, requester=AGENT.name))
                await b.service.decide(req.id, True, ALICE)
                with anyio.fail_after(3):
                    woke = await waiting
                assert woke.status is Status.APPROVED
                await until(lambda: _is(a.store.notifications, "listening"), within=10)
                mine = await listeners(db, schema) - theirs
                assert len(mine) == 1

            req = await file(a)
            waiting = asyncio.ensure_future(a.service.wait(req.id, 30, requester=AGENT.name))
            await db.execute(
                "SELECT pg_notify(%s, 'flood:' || g) FROM generate_series(1, 100000) AS g", (f"signoff:{schema}",)
            )
            started = time.monotonic()
            await b.service.decide(req.id, False, BOB)
            with anyio.fail_after(5):
                woke = await waiting
            assert woke.status is Status.REJECTED and time.monotonic() - started < 5
            with anyio.fail_after(5):
                assert (await a.service.decide((await file(b)).id, True, ALICE)).changed


async def _is(value: Any, expected: Any) -> bool:
    return bool(value == expected)


async def test_an_instance_whose_statement_connection_is_killed_serves_again(cfg: Config, pg_url: str) -> None:
    """Property: when A's statement connection is terminated (a failover, a DBA, pgbouncer), at
    most the next call on A fails — as a clear error, never a wrong answer — and A then files
    and decides again, its decisions seen by B (three times over)."""
    async with instances(cfg, 2) as (a, b), outside(pg_url) as db:
        for n in range(3):
            await rows(db, "SELECT pg_terminate_backend(%s)", statement_backend(a))
            failures, req = 0, None
            for attempt in range(3):
                try:
                    req = await file(a, summary=f"After kill {n}.{attempt}")
                    break
                except (psycopg.OperationalError, RequestError):
                    failures += 1
            assert failures <= 1 and req is not None
            assert (await a.service.decide(req.id, True, ALICE)).changed
            assert (await b.store.get(req.id)).status is Status.APPROVED  # type: ignore[union-attr]
        await chain_is_whole(b, db)


async def test_a_reconnected_statement_connection_stays_on_the_stores_schema(
    cfg: Config, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Property: the store lives in the schema the first connection found (pg.connect pins it:
    "a schema ... created later must not capture the store"); after its statement connection is
    lost and reopened, A still works in that schema and still takes the same audit-chain lock
    as every other instance (a transaction on A excludes an outside holder of that lock)."""
    server = pg_cluster.server_url()
    assert server is not None
    store, shadow = f"t_{secrets.token_hex(6)}", f"t_{secrets.token_hex(6)}"
    async with outside(server) as admin:
        await admin.execute(f"CREATE SCHEMA {store}")
        try:
            sep = "&" if "?" in server else "?"
            monkeypatch.setenv("SIGNOFF_DATABASE_URL", f"{server}{sep}options=-csearch_path%3D{shadow}%2C{store}")
            async with instances(load_config(config_file), 2) as (a, b):
                assert a.store.conn.schema == store  # type: ignore[attr-defined]
                await file(a)
                await admin.execute(f"CREATE SCHEMA {shadow}")  # e.g. one named after the role, made later
                await rows(admin, "SELECT pg_terminate_backend(%s)", statement_backend(a))
                with contextlib.suppress(psycopg.OperationalError):
                    await file(a)
                req = await file(a, summary="After the reconnect")
                assert (await b.store.get(req.id)) is not None
                (now_in,) = (await a.store.conn.execute_fetchall("SELECT current_schema()"))[0]
                async with a.store.transaction():
                    free = await rows(admin, "SELECT pg_try_advisory_lock(hashtext(%s))", f"{store}:audit_chain")
                    if free == [(True,)]:
                        await rows(admin, "SELECT pg_advisory_unlock(hashtext(%s))", f"{store}:audit_chain")
            assert now_in == store, f"after reconnecting, A's statements run in schema {now_in!r}, not {store!r}"
            assert free == [(False,)], "a transaction on A no longer holds the chain lock the other instances take"
        finally:
            await admin.execute(f"DROP SCHEMA IF EXISTS {shadow} CASCADE")
            await admin.execute(f"DROP SCHEMA IF EXISTS {store} CASCADE")


# --- 10. agent text special to PostgreSQL or to the dialect translator -----------------------------

NASTY = ["?", "??", "%s", "%(x)s", "%%", "%", "_", ":name", "::text", "$1", "$$", "'", "''", "\\", "\\'", '"', "--",
         "/*", "*/", "E'\\x41'", "'); DROP TABLE audit; --", "?::jsonb", "%(name)s :name ? $1", "\\u0000",
         "${HOME}", "`id`", "ü€𝄞"]  # fmt: skip


async def test_agent_text_special_to_postgresql_is_stored_exactly_or_refused(cfg: Config, pg_url: str) -> None:
    """Property: agent text special to PostgreSQL or to the dialect translator (placeholders,
    quotes, backslashes, comments, dollar quotes, escapes, NUL, very long text, JSON escapes) in
    the action, summary, details, metadata (keys and values), idempotency key, agent name,
    requester name, a question, its options and a human's answer is stored on A and read back
    on B exactly — or refused with a RequestError naming the field, storing nothing. Never a
    database error."""
    async with instances(cfg, 2) as (a, b), outside(pg_url) as db:
        filed: list[ApprovalRequest] = []
        for n, text in enumerate([*NASTY, " ".join(NASTY)]):
            req = await file(a, f"deploy {text}"[:200], text, Actor("agent", f"agent {text}"[:100], "mcp"),
                             details={text: text, "nested": [text, {text: [text, None, 1.5]}], "raw": "\\u0000 %s ?"},
                             metadata={text[:64]: text, "n": n}, idempotency_key=f"{n} {text}"[:200],
                             claimed_requester=f"bot {text}"[:200])  # fmt: skip
            assert await b.store.get(req.id) == req
            again = await file(b, f"deploy {text}"[:200], text, Actor("agent", f"agent {text}"[:100], "mcp"),
                               details={text: text, "nested": [text, {text: [text, None, 1.5]}], "raw": "\\u0000 %s ?"},
                               metadata={text[:64]: text, "n": n}, idempotency_key=f"{n} {text}"[:200],
                               claimed_requester=f"bot {text}"[:200])  # fmt: skip
            assert again.id == req.id
            filed.append(req)
        options = ["%s", "?", "$1", ":name", "'--", "\\", "%(x)s"]
        question = await file(a, "ask_human", "Which one: %s or ? or $1 -- /* ' \\", kind="question", options=options)
        assert (await b.store.get(question.id)) == question and question.options == options
        answered = await b.service.answer(question.id, "%(x)s'; -- :name ? $1 \\", ALICE)
        assert answered.changed and (await a.store.get(question.id)).answer == "%(x)s'; -- :name ? $1 \\"  # type: ignore[union-attr]
        decided = await b.service.decide(filed[0].id, False, BOB, "because ' -- %s ? :name $1 \\")
        assert (await a.store.get(filed[0].id)).reason == "because ' -- %s ? :name $1 \\"  # type: ignore[union-attr]
        assert decided.changed
        long_summary = "𝄞" * 1000  # the limit, in 4-byte characters
        big = {"text": "é%?'" * 12_000}  # ~60 KB of JSON, under the 64 KiB limit
        req = await file(a, summary=long_summary, details=big)
        assert await b.store.get(req.id) == req

        before = await rows(db, "SELECT count(*) FROM requests")
        refusals: list[Callable[[], Awaitable[Any]]] = [
            lambda: file(a, "deploy\x00", "NUL in the action"),
            lambda: file(a, summary="NUL \x00 in the summary"),
            lambda: file(a, details={"k": "\x00"}),
            lambda: file(a, details={"\x00": "key"}),
            lambda: file(a, metadata={"k": "a\x00b"}),
            lambda: file(a, idempotency_key="k\x00"),
            lambda: file(a, claimed_requester="bot\x00"),
            lambda: file(a, summary="x" * 1001),
            lambda: file(a, details={"text": "x" * 70_000}),
            lambda: file(a, "ask_human", "Pick", kind="question", options=["a\x00", "b"]),
        ]
        for refuse in refusals:
            with pytest.raises(RequestError):
                await refuse()
        assert await rows(db, "SELECT count(*) FROM requests") == before
        await chain_is_whole(a, db)


async def test_web_history_search_and_filters_with_special_text_answer_exactly(cfg: Config, pg_url: str) -> None:
    """Property: the web inbox's history search (ILIKE on PostgreSQL) and its filters and cursors,
    given text special to PostgreSQL, LIKE or the translator, answer 200 with exactly the
    requests whose text contains it (``%`` and ``_`` are literal), and the audit timeline's
    filters do too: never a 500, never a changed query."""
    async with instances(cfg, 2) as (a, b):
        texts = [t for t in NASTY if t.strip()]
        ids = {}
        for n, text in enumerate(texts):
            ids[(await file(a if n % 2 else b, summary=f"Summary {text} end")).id] = (
                f"deploy claude-code Summary {text} end"
            )
        async with serve_web(a) as served, httpx.AsyncClient(base_url=served.base, timeout=20) as alice:
            await served.sign_in(alice, "alice")
            with anyio.fail_after(40):
                for text in texts:
                    page = await alice.get("/web/history", params={"q": text})
                    assert page.status_code == 200, (text, page.status_code)
                    shown = set(re.findall(r'data-id="(req_[0-9a-f]{12})"', page.text))
                    expected = {rid for rid, hay in ids.items() if text.strip().lower() in hay.lower()}
                    assert shown == expected, (text, shown ^ expected)
                    for params in ({"requester": text}, {"route": text}, {"status": text}, {"older": text},
                                   {"newer": text}, {"from": text, "to": text}):  # fmt: skip
                        assert (await alice.get("/web/history", params=params)).status_code == 200, (params,)
                    for params in (
                        {"requester": text},
                        {"event": text},
                        {"request": text},
                        {"older": text},
                        {"newer": text},
                    ):
                        assert (await alice.get("/web/audit", params=params)).status_code == 200, (params,)


async def test_the_audit_timeline_filtered_by_a_busy_requester_answers(cfg: Config, pg_url: str) -> None:
    """Property: an approver's audit timeline filtered by a requester who filed more than
    ``web_queries.FEW`` requests (an agent can file that many) answers 200, not a server error."""
    async with instances(cfg, 1) as (a,), outside(pg_url) as db:
        seed = await file(a)
        async with db.transaction():  # 5001 requests of that agent, written as a copy tool writes them (fast)
            await db.execute("SET LOCAL signoff.copying = 'on'")
            await db.execute("INSERT INTO requests (id, action, summary, metadata, route, route_snapshot, approvers, "
                             "requested_by, requested_via, content_hash, status, on_timeout, created_at, expires_at) "
                             "SELECT 'req_bulk' || g, action, summary, metadata, route, route_snapshot, approvers, "
                             "requested_by, requested_via, content_hash, 'rejected', on_timeout, created_at, expires_at "
                             "FROM requests, generate_series(1, %s) AS g WHERE id = %s", (wq.FEW + 1, seed.id))  # fmt: skip
        async with serve_web(a) as served, httpx.AsyncClient(base_url=served.base, timeout=20) as alice:
            await served.sign_in(alice, "alice")
            page = await alice.get("/web/audit", params={"requester": AGENT.name})
        assert page.status_code == 200, page.status_code


async def test_an_audit_cursor_of_unicode_digits_is_not_a_server_error(cfg: Config, pg_url: str) -> None:
    """Property: the audit timeline's paging cursor, as any text, answers 200 or a clear refusal."""
    async with instances(cfg, 1) as (a,):
        await file(a)
        async with serve_web(a) as served, httpx.AsyncClient(base_url=served.base, timeout=20) as alice:
            await served.sign_in(alice, "alice")
            answers = [(await alice.get("/web/audit", params={key: "²"})).status_code for key in ("older", "newer")]
        assert all(code < 500 for code in answers), answers


async def test_the_audit_timeline_reads_the_same_rows_through_either_instance(cfg: Config, pg_url: str) -> None:
    """Property: the web inbox's reads (history, timeline) on B see every decision A committed,
    at once — the read pools of two instances agree with the statement connections."""
    async with instances(cfg, 2) as (a, b):
        ids = [r.id for r in await asyncio.gather(*(file(a, summary=f"Deploy {n}") for n in range(20)))]
        await asyncio.gather(*(a.service.decide(rid, n % 2 == 0, ALICE) for n, rid in enumerate(ids)))
        channels = ChannelService(b.service, WEB)
        page = await wq.history(channels, "alice", wq.HistoryFilter(status="approved"), limit=50)
        assert {r.id for r in page.rows} == set(ids[0::2])
        timeline = await wq.audit(channels, "alice", wq.AuditFilter(event="rejected"), limit=50)
        assert {e.request_id for e in timeline.rows} == set(ids[1::2])
