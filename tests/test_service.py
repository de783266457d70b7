from __future__ import annotations

import asyncio
import fnmatch
import time
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signoff.server.app import App, open_app
from signoff.server.config import Config, parse_config
from signoff.server.errors import NotFoundError, RequestError
from signoff.server.intake import MAX_DETAILS_BYTES
from signoff.server.models import Actor, Status
from signoff.server.service import ApprovalService, NewRequest

from .conftest import BASIC_CONFIG
from .fuzzing import OneLoop

pytestmark = pytest.mark.anyio

AGENT = Actor("agent", "claude-code", "mcp")
ALICE = Actor("human", "alice", "console")


async def test_lifecycle_request_decide_audit(app: App) -> None:
    svc = app.service
    req = await svc.request_approval(NewRequest("deploy", "Ship v2", {"sha": "abc"}, {"env": "prod"}), AGENT)
    assert req.status is Status.PENDING and req.route == "default" and req.approvers == ["alice", "bob"]
    assert req.requested_by == "claude-code"
    assert req.expires_at == pytest.approx(req.created_at + 3600)
    decision = await svc.decide(req.id, True, ALICE, "looks fine")
    assert decision.changed and decision.request.status is Status.APPROVED
    assert decision.request.decided_by == "alice" and decision.request.decided_via == "console"
    again = await svc.decide(req.id, False, Actor("human", "bob", "console"))
    assert not again.changed and again.request.status is Status.APPROVED
    events = await app.store.audit(request_id=req.id)
    assert [(e.event, e.actor, e.actor_kind, e.channel) for e in events] == [
        ("created", "claude-code", "agent", "mcp"),
        ("approved", "alice", "human", "console"),
    ]
    assert events[1].data == {"reason": "looks fine"}
    assert all(e.content_hash == req.content_hash and e.route_snapshot["name"] == "default" for e in events)


async def test_auto_routes_decide_at_once_and_are_audited(app: App) -> None:
    ok = await app.service.request_approval(NewRequest("read_file", "read it"), AGENT)
    assert ok.status is Status.APPROVED and ok.decided_by == "route:reads"
    no = await app.service.request_approval(NewRequest("drop_table", "drop it"), AGENT)
    assert no.status is Status.REJECTED
    events = await app.store.audit(request_id=ok.id)
    assert [(e.event, e.actor_kind, e.channel) for e in events] == [
        ("created", "agent", "mcp"),
        ("approved", "system", "policy"),
    ]


async def test_idempotency_same_key_same_request(app: App) -> None:
    new = NewRequest("deploy", "Ship", idempotency_key="k1")
    first = await app.service.request_approval(new, AGENT)
    second = await app.service.request_approval(new, AGENT)
    assert first.id == second.id
    await app.service.decide(first.id, False, ALICE, "no")
    third = await app.service.request_approval(new, AGENT)
    assert third.id == first.id and third.status is Status.REJECTED
    with pytest.raises(RequestError, match="already used for a different request"):
        await app.service.request_approval(NewRequest("deploy", "Ship something else", idempotency_key="k1"), AGENT)
    # Keys are scoped to the requester: another client's key is its own.
    other = await app.service.request_approval(new, Actor("agent", "other-client", "mcp"))
    assert other.id != first.id
    assert len(await app.store.list_requests()) == 2


async def test_concurrent_same_key_creates_one_request(app: App) -> None:
    new = NewRequest("deploy", "Ship", idempotency_key="race")
    results = await asyncio.gather(*(app.service.request_approval(new, AGENT) for _ in range(10)))
    assert len({r.id for r in results}) == 1
    assert len(await app.store.list_requests()) == 1


async def test_cancel(app: App) -> None:
    req = await app.service.request_approval(NewRequest("deploy", "Ship"), AGENT)
    cancelled = await app.service.cancel(req.id, AGENT, "not needed")
    assert cancelled.status is Status.CANCELLED and cancelled.reason == "not needed"
    assert (await app.service.decide(req.id, True, ALICE)).changed is False
    done = await app.service.request_approval(NewRequest("read_x", "r"), AGENT)
    assert (await app.service.cancel(done.id, AGENT)).status is Status.APPROVED


async def test_only_humans_decide(app: App) -> None:
    req = await app.service.request_approval(NewRequest("deploy", "Ship"), AGENT)
    for actor in (AGENT, Actor("system", "x", "scheduler")):
        with pytest.raises(RequestError, match="only a human"):
            await app.service.decide(req.id, True, actor)
    assert (await app.service.get(req.id)).status is Status.PENDING


async def test_unknown_request(app: App) -> None:
    with pytest.raises(NotFoundError, match="unknown request_id 'req_nope'"):
        await app.service.get("req_nope")
    with pytest.raises(NotFoundError):
        await app.service.decide("req_nope", True, ALICE)


async def test_wait_returns_the_moment_the_decision_lands(app: App) -> None:
    req = await app.service.request_approval(NewRequest("deploy", "Ship"), AGENT)
    progress: list[float] = []

    async def on_progress(elapsed: float, total: float, message: str) -> None:
        progress.append(elapsed)

    async with anyio.create_task_group() as tg:
        results: list[Any] = []

        async def waiter() -> None:
            results.append(await app.service.wait(req.id, 40, on_progress))

        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        with anyio.fail_after(5):  # far below the 40 s the waiter would otherwise sit
            await app.service.decide(req.id, True, ALICE)
            while not results:
                await anyio.wait_all_tasks_blocked()
                await anyio.lowlevel.checkpoint()
    assert results[0].status is Status.APPROVED


async def test_wait_is_capped_by_the_server_maximum(write_config: Any) -> None:
    config = parse_config(
        BASIC_CONFIG.replace("port = 0", 'port = 0\nmax_wait = "1s"'), source="t", base_dir=write_config("").parent
    )
    async with open_app(config) as app:
        req = await app.service.request_approval(NewRequest("deploy", "Ship"), AGENT)
        with anyio.fail_after(10):
            assert (await app.service.wait(req.id, 3600)).status is Status.PENDING


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_deadlines_apply_on_timeout(config: Config) -> None:
    clock = Clock()
    async with open_app(config, background=False) as app:
        svc = ApprovalService(config, app.store, clock=clock)
        rejected_by_silence = await svc.request_approval(NewRequest("deploy", "Ship"), AGENT)
        approved_by_silence = await svc.request_approval(NewRequest("lenient_x", "meh"), AGENT)
        assert approved_by_silence.expires_at == pytest.approx(clock.now + 600)
        clock.now += 601
        assert [r.id for r in await svc.sweep()] == [approved_by_silence.id]
        clock.now += 3600
        # get() applies a passed deadline itself, without waiting for the sweeper.
        expired = await svc.get(rejected_by_silence.id)
        assert expired.status is Status.EXPIRED and expired.decided_by == "timeout"
        ok = await svc.get(approved_by_silence.id)
        assert ok.status is Status.APPROVED and ok.decided_by == "timeout" and ok.decided_via == "scheduler"
        assert (await svc.decide(expired.id, True, ALICE)).changed is False
        assert await svc.sweep() == []  # a second sweeper finds nothing to do
        events = [e.event for e in await app.store.audit(request_id=expired.id)]
        assert events == ["created", "expired"]


async def test_agent_timeout_can_only_shorten_a_human_deadline(config: Config) -> None:
    async with open_app(config, background=False) as app:
        svc = app.service
        short = await svc.request_approval(NewRequest("deploy", "a", timeout_seconds=60), AGENT)
        assert short.expires_at - short.created_at == pytest.approx(60)
        long = await svc.request_approval(NewRequest("deploy", "b", timeout_seconds=86400), AGENT)
        assert long.expires_at - long.created_at == pytest.approx(3600)
        # Where silence approves, an agent cannot make it approve sooner.
        lenient = await svc.request_approval(NewRequest("lenient_x", "c", timeout_seconds=60), AGENT)
        assert lenient.expires_at - lenient.created_at == pytest.approx(600)


@pytest.mark.parametrize(
    ("new", "message"),
    [
        (NewRequest("", "x"), "'action' must not be empty"),
        (NewRequest("a" * 201, "x"), "limit is 200"),
        (NewRequest("dep\nloy", "x"), "control characters"),
        (NewRequest("deploy", "   "), "'summary' must not be empty"),
        (NewRequest("deploy", "x" * 1001), "limit is 1000"),
        (NewRequest("deploy", "x\x00"), "control characters"),
        (NewRequest("deploy", "x", details="y" * MAX_DETAILS_BYTES), "the limit is 65536"),
        (NewRequest("deploy", "x", details={"n": float("nan")}), "plain JSON"),
        (NewRequest("deploy", "x", metadata={f"k{i}": i for i in range(51)}), "limit is 50"),
        (NewRequest("deploy", "x", metadata={"k": {"nested": 1}}), "put structures in 'details'"),
        (NewRequest("deploy", "x", metadata={"k": [1]}), "must be a string, number"),
        (NewRequest("deploy", "x", metadata={"": 1}), "metadata keys"),
        (NewRequest("deploy", "x", metadata={"k": float("inf")}), "finite"),
        (NewRequest("deploy", "x", metadata="nope"), "must be an object"),  # type: ignore[arg-type]
        (NewRequest("deploy", "x", timeout_seconds=1), "between 10 and"),
        (NewRequest("deploy", "x", idempotency_key=""), "'idempotency_key' must not be empty"),
        (NewRequest("deploy", "x", route="nope"), "route 'nope' cannot be used"),
    ],
)
async def test_bad_input_is_a_request_error(app: App, new: NewRequest, message: str) -> None:
    with pytest.raises(RequestError, match=message.replace("(", r"\(")):
        await app.service.request_approval(new, AGENT)
    assert await app.store.list_requests() == []


# --- fuzz: no input an agent can send turns into an approval without a human -------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_scalar = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30) | st.lists(st.integers(), max_size=2)
)
_action = st.sampled_from(
    ["read_file", "list_x", "refund", "deploy", "drop_db", "lenient_y", "READ_FILE", "read*", "*"]
) | st.text(max_size=40)
_route = st.none() | st.sampled_from(["reads", "blocked", "large-refunds", "lenient", "default"]) | st.text(max_size=12)
_requester = st.sampled_from(["claude-code", "ci-bot", "root", ""]) | st.text(max_size=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    action=_action,
    summary=st.text(max_size=60),
    details=_json,
    metadata=st.dictionaries(st.sampled_from(["amount", "env", "requested_by", "route", "auto"]) | st.text(max_size=6), _scalar, max_size=5),
    route=_route,
    key=st.none() | st.text(max_size=10),
    timeout=st.none() | st.floats(min_value=-10, max_value=1e9),
    requester=_requester,
    claimed=st.none() | st.text(max_size=20),
)  # fmt: skip
def test_fuzz_no_agent_input_approves_without_a_human(
    action: str, summary: str, details: Any, metadata: dict[str, Any], route: str | None, key: str | None,
    timeout: float | None, requester: str, claimed: str | None,
) -> None:  # fmt: skip
    new = NewRequest(action, summary, details, metadata, route, key, timeout, claimed)
    _FUZZ.run(_fuzz_one(new, requester))


_FUZZ = OneLoop(BASIC_CONFIG)
_FUZZ_CLOCK = Clock()


@pytest.fixture(autouse=True, scope="module")
def _close_fuzz() -> Any:
    yield
    _FUZZ.close()


def _auto_approves(action: str) -> bool:
    # Written independently of server.routing: the BASIC_CONFIG's only auto-approving route.
    return fnmatch.fnmatchcase(action, "read_*") or fnmatch.fnmatchcase(action, "list_*")


async def _fuzz_one(new: NewRequest, requester: str) -> None:
    assert _FUZZ.app is not None and _FUZZ.config is not None
    svc = ApprovalService(_FUZZ.config, _FUZZ.app.store, clock=_FUZZ_CLOCK)
    agent = Actor("agent", requester, "mcp")
    try:
        req = await svc.request_approval(new, agent)
    except RequestError:
        return
    if req.status is Status.APPROVED:
        assert new.route is None and _auto_approves(new.action), (new, req)
        assert req.decided_by == "route:reads"
        return
    # Whatever the agent does next, nothing it can call approves the request.
    assert (await svc.wait(req.id, 0)).status is not Status.APPROVED
    with pytest.raises(RequestError):
        await svc.decide(req.id, True, agent)
    if req.status is Status.PENDING:
        after = await svc.cancel(req.id, agent, None)
        assert after.status is Status.CANCELLED
    # And silence approves only where the operator's route says so.
    if req.on_timeout == "approve":
        assert fnmatch.fnmatchcase(new.action, "lenient_*") and req.route == "lenient"
