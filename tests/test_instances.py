"""Several `signoff serve` instances on one PostgreSQL: agents spread over them, instances killed.

Every test runs real ``signoff serve`` processes on a fresh schema of a real PostgreSQL server
(tests/pg_cluster.py), selected by ``$SIGNOFF_DATABASE_URL`` (the config's ``[store] path`` is then
ignored), and the fake Telegram Bot API where a bot is involved. Agents speak MCP over streamable
HTTP on the wire (one POST per message), so a killed instance fails their call at once and they go
on with another instance, as behind a load balancer. Skipped when there is no PostgreSQL to be had.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import signal
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import httpx2
import pytest

from signoff.server.app import open_app
from signoff.server.config import load_config
from signoff.server.models import Actor
from signoff.server.service import PROGRESS_INTERVAL
from signoff.server.web_auth import WebAuth

from . import pg_cluster
from .conftest import SIGNOFF, subprocess_env
from .fake_telegram import FakeTelegram, Message
from .procs import Served, serve
from .web_support import unscope

pytestmark = pytest.mark.anyio

FINAL = ("approved", "rejected", "expired", "cancelled", "answered")
CHATS = [4000 + k for k in range(16)]  # approvers u0 … u15, one private chat each (prompts: 1 a second each)
SOON_CHAT = 4016  # u16: the approver of the requests that expire
CONSOLE = Actor("human", "ops", "console")
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
REQ_ID = re.compile(r"req_[0-9a-f]{12}")


# --- the database, read past signoff ------------------------------------------------------------


@pytest.fixture
def pg_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh schema on the test PostgreSQL, in $SIGNOFF_DATABASE_URL for every signoff process."""
    server = pg_cluster.server_url()
    if server is None:
        pytest.skip(f"no PostgreSQL for the tests: {pg_cluster.why_not()}")
    url = pg_cluster.fresh_schema_url(server)
    monkeypatch.setenv("SIGNOFF_DATABASE_URL", url)
    yield url
    pg_cluster.drop_schema_of(url)


class Db:
    """An autocommit psycopg connection to the store (quick reads, run from the event loop)."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(sql, args).fetchall())

    def holder_pid(self) -> int | None:
        """The pid of the process holding the bot lease now (None while nobody holds it)."""
        rows = self.rows("SELECT owner FROM leases WHERE name = 'telegram-bot' AND expires_at > %s", time.time())
        return int(rows[0][0].split(":")[1]) if rows else None

    def prompts(self) -> set[tuple[str, int, int]]:
        """(request, chat, message) of every prompt signoff recorded as sent."""
        rows = self.rows("SELECT request_id, address, message FROM prompts WHERE channel = 'telegram'")
        return {(str(r), int(a), int(m)) for r, a, m in rows}

    def undelivered(self) -> int:
        return int(self.rows("SELECT count(*) FROM outbox WHERE channel = 'telegram' AND done_at IS NULL")[0][0])

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def db(pg_url: str) -> Iterator[Db]:
    d = Db(pg_url)
    yield d
    d.close()


# --- instances ------------------------------------------------------------------------------------


@dataclass(eq=False)
class Instance:
    name: str
    served: Served
    stop: anyio.Event = field(default_factory=anyio.Event)

    @property
    def pid(self) -> int:
        return int(self.served.process.pid)

    @property
    def url(self) -> str:
        return self.served.url


@dataclass
class Kill:
    at: float  # time.monotonic(), the fake's clock
    name: str
    held_the_bot: bool


class Fleet:
    """``signoff serve`` instances of one config, each run by a task of ``tg`` (so several start at
    once); ``live`` are those not killed."""

    def __init__(self, tg: anyio.abc.TaskGroup, config: Path, **env: str) -> None:
        self.tg, self.config, self.env = tg, config, env
        self.live: list[Instance] = []
        self.kills: list[Kill] = []
        self._names = iter("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        self.closed = False

    async def start(self, count: int = 1) -> list[Instance]:
        """Start ``count`` instances side by side; return once each serves HTTP."""
        started: list[Instance] = []
        done = anyio.Event()

        async def run(name: str) -> None:
            async with serve(self.config, **self.env) as served:
                inst = Instance(name, served)
                # /healthz answers once uvicorn serves, and handles SIGTERM: until then (from the
                # "listening on" line to uvicorn's start) `signoff serve` ignores a SIGTERM.
                async with httpx2.AsyncClient(timeout=30) as http:
                    assert (await http.get(served.url.removesuffix("/mcp") + "/healthz")).status_code == 200
                started.append(inst)
                self.live.append(inst)
                if len(started) == count:
                    done.set()
                if self.closed:  # the fleet closed while this one started
                    inst.stop.set()
                try:
                    await inst.stop.wait()
                finally:  # also when the test failed: stop it here, where a cancelled test cannot skip it
                    with anyio.CancelScope(shield=True), anyio.fail_after(10):
                        if served.process.returncode is None:
                            served.process.terminate()
                        await served.process.wait()

        for _ in range(count):
            self.tg.start_soon(run, next(self._names))
        with anyio.fail_after(60):
            await done.wait()
        return started

    async def kill(self, inst: Instance, *, held_the_bot: bool) -> None:
        """SIGKILL: no handler runs, nothing is released; the lease stays taken until it expires."""
        self.live.remove(inst)
        inst.served.process.send_signal(signal.SIGKILL)
        at = time.monotonic()
        with anyio.fail_after(10):
            await inst.served.process.wait()
        self.kills.append(Kill(at, inst.name, held_the_bot))
        inst.stop.set()

    def pick(self, k: int) -> Instance:
        return self.live[k % len(self.live)]

    def by_pid(self, pid: int | None) -> Instance | None:
        return next((i for i in self.live if i.pid == pid), None)

    def close(self) -> None:
        self.closed = True
        for inst in self.live:
            inst.stop.set()


@asynccontextmanager
async def fleet_of(count: int, config: Path, **env: str) -> AsyncIterator[Fleet]:
    async with anyio.create_task_group() as tg:
        fleet = Fleet(tg, config, **env)
        try:
            await fleet.start(count)
            yield fleet
        finally:
            fleet.close()


# --- agents on the wire ---------------------------------------------------------------------------


class ToolFailed(Exception):
    pass


class Session:
    """One agent's MCP session with one instance, spoken as JSON-RPC POSTs: when the instance dies,
    the call fails at once (an ``httpx2.HTTPError``) instead of the SDK's reconnection attempts."""

    def __init__(self, http: httpx2.AsyncClient, url: str, name: str) -> None:
        self.http, self.url, self.name, self.headers = http, url, name, dict(ACCEPT)
        self.ids = itertools.count(2)  # calls may overlap: each has an id of its own

    async def _post(self, method: str, params: dict[str, Any], id_: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        if id_ is not None:
            body["id"] = id_
        response = await self.http.post(self.url, json=body, headers=self.headers)
        response.raise_for_status()
        if "mcp-session-id" in response.headers:
            self.headers["Mcp-Session-Id"] = response.headers["mcp-session-id"]
        if id_ is None:
            return {}
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            for line in response.text.splitlines():
                if line.startswith("data:") and (message := json.loads(line[5:])).get("id") == id_:
                    return dict(message)
            raise httpx2.RemoteProtocolError("the event stream ended without the answer")
        return dict(response.json())

    async def open(self) -> Session:
        await self._post("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                        "clientInfo": {"name": self.name, "version": "1"}}, 1)  # fmt: skip
        self.headers["MCP-Protocol-Version"] = "2025-06-18"
        await self._post("notifications/initialized", {}, None)
        return self

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = (await self._post("tools/call", {"name": tool, "arguments": arguments}, next(self.ids)))["result"]
        if result.get("isError"):
            raise ToolFailed(" ".join(c.get("text", "") for c in result.get("content", [])))
        return dict(result["structuredContent"])


async def healthz(http: httpx2.AsyncClient, inst: Instance) -> dict[str, Any]:
    return dict((await http.get(inst.url.removesuffix("/mcp") + "/healthz")).json())


async def until_waiting(http: httpx2.AsyncClient, expected: dict[Instance, int]) -> None:
    """Until each instance holds ``expected`` waiting calls (its /healthz says so), bounded."""
    with anyio.fail_after(15):
        for inst, count in expected.items():
            while (await healthz(http, inst))["waiting"] < count:
                pass  # each answer takes a round trip: this is a bounded wait for the server, not a spin


# --- Telegram ------------------------------------------------------------------------------------


def prompt_messages(fake: FakeTelegram, chat: int, rid: str) -> list[Message]:
    return [m for m in fake.chat(chat) if rid in m.text]


async def recorded_prompt(fake: FakeTelegram, db: Db, chat: int, rid: str) -> Message:
    """The prompt of ``rid`` in ``chat`` that signoff recorded as sent (never one whose sender died
    before recording it: pressing that one would make signoff track it after the fact)."""

    def found() -> Message | None:
        recorded = {m for r, c, m in db.prompts() if r == rid and c == chat}
        return next((m for m in prompt_messages(fake, chat, rid) if m.message_id in recorded and m.buttons()), None)

    result: Message = await fake.wait_for(found, within=40)
    return result


def config_text(api: str) -> str:
    """Approvers u0 … u16, each in a chat of their own; route r<k> (actions a<k>_*) asks u<k>; route
    "soon" (soon_*) asks u16 and expires after 2 s."""
    approvers = "".join(f"[approvers.u{k}]\ntelegram_user_id = {4000 + k}\n" for k in range(17))
    routes = "".join(f'[[routes]]\nname = "r{k}"\nmatch = {{ action = "a{k}_*" }}\napprovers = ["u{k}"]\n'
                     for k in range(16))  # fmt: skip
    head = f"""
[store]
path = "ignored.db"
[server]
port = 0
[telegram]
api_base_url = "{api}"
lease_ttl = "3s"
[defaults]
digest_threshold = 100
"""
    tail = """
[[routes]]
name = "soon"
match = { action = "soon_*" }
approvers = ["u16"]
timeout = "2s"
on_timeout = "reject"
[[routes]]
name = "default"
approvers = ["u0"]
"""
    return head + approvers + routes + tail


# --- a. three instances, agents spread over them, instances killed under load ------------------------


@dataclass
class Plan:
    """What happens to request ``i``: who decides it (``button``, ``cli``, ``app``: another instance,
    this process) and how, or ``expire`` (a 2 s route, on_timeout reject)."""

    i: int
    how: str
    approve: bool
    chat: int
    action: str
    late: bool = False  # filed only at kill 2, so a prompt is surely being sent then

    @property
    def expected(self) -> str:
        return "expired" if self.how == "expire" else "approved" if self.approve else "rejected"


def plans() -> list[Plan]:
    out = []
    for i in range(40):
        if i >= 32:
            out.append(Plan(i, "expire", False, SOON_CHAT, f"soon_{i}"))
            continue
        how = "button" if i % 4 != 3 else ("cli" if i % 16 == 3 else "app")
        out.append(Plan(i, how, i % 2 == 0 or how == "cli", CHATS[i % 16], f"a{i % 16}_deploy", late=i == 30))
    return out


@dataclass
class Outcome:
    """What an agent saw: its request, and the check_decision call that returned it final."""

    rid: str
    status: str
    answered_by: str  # the instance
    call_started: float  # time.time() when that call was sent
    refiled_by_error: bool  # its request_approval was cut by a kill, and the retry named the earlier request


async def test_three_instances_agents_spread_kills_under_load(
    fake: FakeTelegram, pg_url: str, db: Db, write_config: Callable[..., Path]
) -> None:
    config = write_config(config_text(fake.api_base_url))
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    why = f"(random seed {seed})"
    todo = plans()
    filed: dict[int, str] = {}
    outcomes: dict[int, Outcome] = {}
    some_filed, all_filed, go_late = anyio.Event(), anyio.Event(), anyio.Event()
    filed_now: dict[int, anyio.Event] = {p.i: anyio.Event() for p in todo}
    turns = itertools.count()
    waiting: dict[int, anyio.Event] = {p.i: anyio.Event() for p in todo}
    returned: dict[int, anyio.Event] = {p.i: anyio.Event() for p in todo}

    limits = httpx2.Limits(max_connections=200, max_keepalive_connections=200)
    async with (
        httpx2.AsyncClient(timeout=60, limits=limits) as http,
        fleet_of(3, config, SIGNOFF_DATABASE_URL=pg_url, SIGNOFF_TELEGRAM_TOKEN=fake.token) as fleet,
    ):
        await fake.wait_for(lambda: fleet.by_pid(db.holder_pid()))

        async def agent(plan: Plan) -> None:
            name = f"agent{plan.i}"
            args = {"action": plan.action, "summary": f"agent {plan.i} asks", "idempotency_key": f"k{plan.i}"}
            k, refiled = plan.i, False
            if plan.late:
                await go_late.wait()
            while plan.i not in filed:  # file it: a killed instance fails the call, the next one gets it
                inst = fleet.pick(k)
                k += 1
                try:
                    out = await (await Session(http, inst.url, name).open()).call("request_approval", args)
                    filed[plan.i] = out["request_id"]
                except httpx2.HTTPError:
                    continue
                except ToolFailed as exc:
                    # The instance died after filing it, before answering. Another instance refuses the
                    # same key from another MCP session (ApprovalService._same_content compares sessions)
                    # but names the request; nothing is lost either way: the database has it once.
                    assert "already used for a different request" in str(exc), str(exc)
                    found = REQ_ID.search(str(exc))
                    assert found is not None, str(exc)
                    filed[plan.i], refiled = found.group(0), True
            filed_now[plan.i].set()
            if len(filed) >= 13:
                some_filed.set()
            if all(p.i in filed for p in todo if not p.late):
                all_filed.set()
            rid = filed[plan.i]
            k = next(turns)  # the instances take turns, whoever filed it
            while True:
                inst = fleet.pick(k)
                k += 1
                started = time.time()
                try:
                    session = await Session(http, inst.url, name).open()
                    waiting[plan.i].set()
                    out = await session.call("check_decision", {"request_id": rid, "wait_seconds": 40})
                except httpx2.HTTPError:
                    waiting[plan.i] = anyio.Event()
                    continue
                if out["status"] != "pending":
                    outcomes[plan.i] = Outcome(rid, out["status"], inst.name, started, refiled)
                    returned[plan.i].set()
                    return

        async def press(plan: Plan) -> None:
            await filed_now[plan.i].wait()
            msg = await recorded_prompt(fake, db, plan.chat, filed[plan.i])
            await fake.press(plan.chat, msg, msg.button("approve" if plan.approve else "reject"))

        replaced = [anyio.Event() for _ in range(3)]

        async def replace() -> None:
            """Start a replacement for the instance just killed (while the test goes on)."""
            await fleet.start()
            next(e for e in replaced if not e.is_set()).set()

        buttons = [p for p in todo if p.how == "button"]
        with anyio.fail_after(100):
            async with anyio.create_task_group() as agents:
                for plan in todo:
                    agents.start_soon(agent, plan)

                # Kill 1, while agents are filing: an instance that does not run the bot.
                await some_filed.wait()
                holder = fleet.by_pid(db.holder_pid())
                await fleet.kill(rng.choice([i for i in fleet.live if i is not holder]), held_the_bot=False)
                agents.start_soon(replace)
                await all_filed.wait()
                for plan in buttons[:4]:
                    await press(plan)

                # The console (one `signoff` process each) and another instance (this process) decide,
                # while every agent concerned waits on some instance (and kill 1's replacement starts).
                others = [p for p in todo if p.how in ("cli", "app")]
                for plan in others:
                    await waiting[plan.i].wait()
                async with anyio.create_task_group() as deciders:
                    for plan in others:
                        if plan.how == "cli":
                            deciders.start_soon(console_decides, config, filed[plan.i], plan.approve)
                    async with open_app(load_config(config), background=False) as app:
                        for plan in others:
                            if plan.how == "app":
                                decision = await app.service.decide(filed[plan.i], plan.approve, CONSOLE, "no")
                                assert decision.changed
                for plan in others:
                    await returned[plan.i].wait()

                # Kill 2: the bot's holder, while Telegram takes a prompt it accepts only after the
                # sender is gone (a slow sendMessage): that send is never recorded, so the next holder
                # sends the prompt again. The one case where a prompt may reach a chat twice.
                await replaced[0].wait()  # never fewer than two instances
                sends = len(fake.sent("sendMessage"))
                fake.delays["sendMessage"] = (5.0, 1)
                go_late.set()
                await fake.wait_for(lambda: len(fake.sent("sendMessage")) > sends)
                holder = fleet.by_pid(db.holder_pid())
                assert holder is not None
                await fleet.kill(holder, held_the_bot=True)
                agents.start_soon(replace)
                for plan in buttons[4:14]:
                    await press(plan)

                # Kill 3: any instance, the bot's holder or not.
                await replaced[1].wait()
                holder = fleet.by_pid(db.holder_pid())
                victim = rng.choice(fleet.live)
                await fleet.kill(victim, held_the_bot=victim is holder)
                agents.start_soon(replace)
                for plan in buttons[14:]:
                    await press(plan)

            # Every request is final; the outbox drains (outcomes edited into every recorded prompt).
            await fake.wait_for(lambda: db.undelivered() == 0, within=40)
            holder = fleet.by_pid(db.holder_pid())
            live = {i.name for i in fleet.live}

        # What the agents saw is what the database says, and what was asked for.
        statuses = dict(db.rows("SELECT id, status FROM requests"))
        assert len(statuses) == len(todo), f"one request per agent, whatever was retried {why}"
        keys = db.rows("SELECT idempotency_key, count(*) FROM requests GROUP BY idempotency_key")
        assert sorted(k for k, n in keys if n == 1) == sorted(f"k{p.i}" for p in todo)
        for plan in todo:
            seen = outcomes[plan.i]
            assert seen.rid == filed[plan.i] and seen.status == statuses[seen.rid] == plan.expected, (plan, seen, why)

        # Exactly one decision and one final audit event per request; the chain verifies.
        events = db.rows("SELECT request_id, event, actor FROM audit ORDER BY seq")
        by_request: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for rid, event, actor in events:
            by_request[rid].append((event, actor))
        decided = dict(db.rows("SELECT id, decided_by FROM requests"))
        for rid, status in statuses.items():
            finals = [(e, a) for e, a in by_request[rid] if e in FINAL]
            assert finals == [(status, decided[rid])], (rid, by_request[rid], why)
            assert [e for e, _ in by_request[rid]].count("created") == 1
        verify = await anyio.run_process([SIGNOFF, "audit", "verify", "--config", str(config)],
                                         env=subprocess_env(), check=False)  # fmt: skip
        assert verify.returncode == 0 and b"audit chain OK" in verify.stdout, verify.stdout + verify.stderr

        # The bot lease moved to an instance that is alive.
        assert [k.held_the_bot for k in fleet.kills].count(True) >= 1
        assert holder is not None and holder.name in live, (holder, live, fleet.kills)

        # Waiters returned for decisions made in other processes: the console and this process decided
        # while they waited (their last call was sent before the decision).
        decided_at = dict(db.rows("SELECT id, decided_at FROM requests"))
        for plan in others:
            seen = outcomes[plan.i]
            assert seen.call_started < decided_at[seen.rid], (plan, seen)
        woken = sum(outcomes[p.i].call_started < decided_at[outcomes[p.i].rid] for p in todo)

        # Prompts: one per (request, chat), but where Telegram accepted a send whose process was
        # killed before recording it ("orphans": messages the fake holds that signoff never recorded).
        recorded = db.prompts()
        per_place = Counter((r, c) for r, c, _ in recorded)
        assert all(n == 1 for n in per_place.values()), per_place
        for rid, chat, message_id in recorded:  # each shows the outcome, without buttons
            m = fake.messages[(chat, message_id)]
            assert not m.buttons() and statuses[rid].capitalize() in m.text, (rid, m.text)

        def sent_and_orphans() -> tuple[Counter[tuple[str, int]], list[Message]]:
            sent: Counter[tuple[str, int]] = Counter()
            orphans: list[Message] = []
            for plan in todo:
                for m in prompt_messages(fake, plan.chat, filed[plan.i]):
                    sent[(filed[plan.i], plan.chat)] += 1
                    if (filed[plan.i], plan.chat, m.message_id) not in recorded:
                        orphans.append(m)
            return sent, orphans

        await fake.wait_for(lambda: sent_and_orphans()[1])  # the slow send of kill 2 has landed
        sent, orphans = sent_and_orphans()
        twice = sum(n - 1 for n in sent.values() if n > 1)
        for (rid, chat), n in sent.items():  # every prompt beyond the first in a place is an orphan
            assert n - 1 <= sum(m.chat_id == chat and rid in m.text for m in orphans), (rid, chat, n, orphans)
        holder_kills = [k for k in fleet.kills if k.held_the_bot]
        # Each orphan was asked of Telegram before a holder was killed, at most one per such kill (a
        # holder sends one message at a time); the slow send made at kill 2 is one of them.
        asked = [min(at for at, method, p in fake.timed if method == "sendMessage" and int(p["chat_id"]) == m.chat_id
                     and p["text"] == m.text) for m in orphans]  # fmt: skip
        assert 1 <= len(orphans) <= len(holder_kills), (orphans, fleet.kills)
        unmatched = list(holder_kills)
        for at in sorted(asked):
            kill = next((k for k in unmatched if k.at > at), None)
            assert kill is not None, (asked, fleet.kills)
            unmatched.remove(kill)
        assert twice <= len(orphans)
        print(f"\n{len(todo)} requests, kills {[(k.name, k.held_the_bot) for k in fleet.kills]}, {why}: "
              f"{len(orphans)} prompt(s) accepted by Telegram but never recorded, {twice} (request, chat) "
              f"prompted twice, {woken} waiters woken by a decision (answered by "
              f"{dict(sorted(Counter(o.answered_by for o in outcomes.values()).items()))}), "
              f"{sum(o.refiled_by_error for o in outcomes.values())} filings cut by a kill and refiled")  # fmt: skip


async def console_decides(config: Path, rid: str, approve: bool) -> None:
    argv = [SIGNOFF, "approve" if approve else "reject", rid, "--config", str(config)]
    if not approve:
        argv += ["--reason", "no"]
    done = await anyio.run_process(argv, env=subprocess_env(), check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# --- b, c: one fleet of three instances without a bot, shared by the tests below -------------------------

QUIET_CONFIG = """
[store]
path = "ignored.db"
[server]
port = 0
[approvers.u0]
telegram_user_id = 4000
[approvers.u1]
telegram_user_id = 4001
[approvers.u2]
telegram_user_id = 4002
[[routes]]
name = "escalating"
match = { action = "sweep_*" }
approvers = ["u0"]
timeout = "2s"
on_timeout = "reject"
escalation = [{ after = "0.5s", approvers = ["u1"] }, { after = "1s", approvers = ["u2"] }]
[[routes]]
name = "solo"
match = { action = "solo_*" }
approvers = ["u0"]
timeout = "0.2s"
[[routes]]
name = "default"
approvers = ["u0"]
"""


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module-wide: the shared fleet below lives in the event loop of every test here


@dataclass
class Quiet:
    fleet: Fleet
    config: Path
    url: str


@pytest.fixture(scope="module")
async def quiet(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Quiet]:
    """Three instances on a schema of their own, no Telegram token: started once for this module."""
    server = pg_cluster.server_url()
    if server is None:
        pytest.skip(f"no PostgreSQL for the tests: {pg_cluster.why_not()}")
    url = pg_cluster.fresh_schema_url(server)
    folder = tmp_path_factory.mktemp("quiet")
    config = folder / "signoff.toml"
    config.write_text(QUIET_CONFIG, encoding="utf-8")
    # Set up before any test's own environment: name everything these processes read.
    env = {"SIGNOFF_DATABASE_URL": url, "SIGNOFF_STATE_DIR": str(folder / "state"), "XDG_CONFIG_HOME": str(folder),
           "SIGNOFF_TELEGRAM_TOKEN": "", "SIGNOFF_SLACK_BOT_TOKEN": "", "SIGNOFF_CALLBACK_SECRET": "",
           "SIGNOFF_HTTP_TOKEN": ""}  # fmt: skip
    try:
        async with fleet_of(3, config, **env) as fleet:
            yield Quiet(fleet, config, url)
    finally:
        pg_cluster.drop_schema_of(url)


@pytest.fixture
def quiet_db(quiet: Quiet, monkeypatch: pytest.MonkeyPatch) -> Iterator[Db]:
    """The shared fleet's store, also for this process and the `signoff` commands a test runs."""
    monkeypatch.setenv("SIGNOFF_DATABASE_URL", quiet.url)
    d = Db(quiet.url)
    yield d
    d.close()


# --- b. a decision committed anywhere wakes the waiters in every instance -------------------------------

# A waiting check_decision re-reads its request every PROGRESS_INTERVAL (5 s) whatever happens: a
# waiter back well before that was woken by the decision's commit, not by its own re-read.
WAKE_BOUND = PROGRESS_INTERVAL - 1


async def test_waiters_in_every_instance_wake_when_a_decision_commits_anywhere(quiet: Quiet, quiet_db: Db) -> None:
    fleet = quiet.fleet
    async with (
        httpx2.AsyncClient(timeout=60) as http,
        httpx.AsyncClient(timeout=60) as browser,
        open_app(load_config(quiet.config), background=False) as elsewhere,  # one more instance: this process
    ):
        filer = await Session(http, fleet.live[0].url, "agent").open()

        async def waiters_wake(decide: Callable[[str], Awaitable[Callable[[], Awaitable[None]]]], expected: str,
                               bound: float) -> None:  # fmt: skip
            """File a request, one waiter on it in each instance; ``decide(rid)`` gets ready to decide
            it and returns how: each waiter returns, within ``bound`` of that decision."""
            rid = (await filer.call("request_approval", {"action": "deploy", "summary": "wake"}))["request_id"]
            decision = await decide(rid)
            sessions = [(inst, await Session(http, inst.url, "agent").open()) for inst in fleet.live]
            seen: dict[str, str] = {}
            back = anyio.Event()

            async def wait(inst: Instance, session: Session) -> None:
                out = await session.call("check_decision", {"request_id": rid, "wait_seconds": 20})
                seen[inst.name] = out["status"]
                if len(seen) == len(sessions):
                    back.set()

            async with anyio.create_task_group() as tg:
                for inst, session in sessions:
                    tg.start_soon(wait, inst, session)
                await until_waiting(http, {inst: 1 for inst, _ in sessions})
                with anyio.fail_after(bound):
                    await decision()
                    await back.wait()
            assert seen == {inst.name: expected for inst, _ in sessions}, (rid, seen)

        async def in_the_web_inbox_of_a(rid: str) -> Callable[[], Awaitable[None]]:
            """Approver u0, signed in to instance A's web inbox, approves: A decides (a waiter there too)."""
            base = fleet.live[0].url.removesuffix("/mcp")
            token = await WebAuth(elsewhere.store, elsewhere.config, time.time).issue_link("u0", "console")
            assert (await browser.post(f"{base}/web/login", data={"token": token})).status_code == 303
            unscope(browser)
            page = (await browser.get(f"{base}/web/r/{rid}")).text
            found = re.search(r'<meta name="csrf" content="([0-9a-f]+)">', page)
            assert found is not None, page[:500]

            async def approve() -> None:
                r = await browser.post(f"{base}/web/r/{rid}/approve", data={"csrf": found.group(1)})
                assert r.status_code == 303, r.text[:500]

            return approve

        async def in_this_process(rid: str) -> Callable[[], Awaitable[None]]:
            async def reject() -> None:
                assert (await elsewhere.service.decide(rid, False, CONSOLE, "not now")).changed

            return reject

        async def at_the_console(rid: str) -> Callable[[], Awaitable[None]]:
            async def approve() -> None:
                await console_decides(quiet.config, rid, True)

            return approve

        await waiters_wake(in_the_web_inbox_of_a, "approved", WAKE_BOUND)
        await waiters_wake(in_this_process, "rejected", WAKE_BOUND)
        # A `signoff` command starts a process of its own, a second or more: this bound is the whole call's.
        await waiters_wake(at_the_console, "approved", 20)


# --- c. deadlines and timers: swept by every instance, fired once ----------------------------------------


async def test_deadlines_and_timers_fire_once_under_load_and_every_instance_sweeps(quiet: Quiet, quiet_db: Db) -> None:
    fleet, db, count = quiet.fleet, quiet_db, 45
    limits = httpx2.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx2.AsyncClient(timeout=60, limits=limits) as http:
        # One agent's session per instance: it files on one, waits on the next.
        sessions = [await Session(http, inst.url, "sweeper").open() for inst in fleet.live]
        seen: dict[str, str] = {}

        async def agent(i: int) -> None:
            """At the deadline three background sweepers, and every waiter's instance (a waiter past its
            request's deadline sweeps), race to expire the same requests and fire the same timers."""
            out = await sessions[i % 3].call("request_approval", {"action": f"sweep_{i}", "summary": "expires"})
            waited = await sessions[(i + 1) % 3].call(
                "check_decision", {"request_id": out["request_id"], "wait_seconds": 20}
            )
            seen[out["request_id"]] = waited["status"]

        with anyio.fail_after(40):
            async with anyio.create_task_group() as tg:
                for i in range(count):
                    tg.start_soon(agent, i)
        assert len(seen) == count and set(seen.values()) == {"expired"}, Counter(seen.values())

        events: dict[str, list[tuple[str, Any]]] = defaultdict(list)
        for rid, event, data in db.rows("SELECT request_id, event, data FROM audit ORDER BY seq"):
            events[rid].append((event, json.loads(data) if data else None))
        escalations = 0
        for rid in seen:
            names = [e for e, _ in events[rid]]
            assert names.count("created") == 1 and [e for e in names if e in FINAL] == ["expired"], (rid, names)
            assert names[-1] == "expired", (rid, names)  # no timer fired after the deadline
            levels = [d["level"] for e, d in events[rid] if e == "escalated"]
            # Each level fires once (a sweep that finds two due fires them as one event, level 2).
            assert levels == sorted(set(levels)) and set(levels) <= {1, 2}, (rid, levels)
            escalations += len(levels)
        # Timers ran. A sweep comes about every second in each instance, so the deadline can overtake a
        # level: no count is exact, but none is ever doubled.
        assert escalations > 0

        # Every instance sweeps by itself: with the other two stopped (SIGSTOP, while nothing is pending
        # so they hold no lock), requests filed on the one left expire all the same. Its background
        # sweeper does it (nobody reads these requests through it); this test awaits the commits with a
        # LISTEN of its own on the store's channel.
        import psycopg

        async with await psycopg.AsyncConnection.connect(quiet.url, autocommit=True) as listen:
            await listen.execute(f'LISTEN "signoff:{pg_cluster.schema_of(quiet.url)}"')
            solo: list[str] = []
            for inst in list(fleet.live):
                others = [o for o in fleet.live if o is not inst]
                for o in others:
                    o.served.process.send_signal(signal.SIGSTOP)
                try:
                    session = await Session(http, inst.url, "solo").open()
                    rid = (await session.call("request_approval", {"action": f"solo_{inst.name}", "summary": "x"}))[
                        "request_id"
                    ]
                    with anyio.fail_after(10):
                        async for _ in listen.notifies():
                            if db.rows("SELECT status FROM requests WHERE id = %s", rid) == [("expired",)]:
                                break
                    solo.append(rid)
                finally:
                    for o in others:
                        o.served.process.send_signal(signal.SIGCONT)
        finals = db.rows(
            "SELECT request_id, count(*) FROM audit WHERE event = ANY(%s) GROUP BY request_id", list(FINAL)
        )
        assert {r: n for r, n in finals if r in seen or r in solo} == dict.fromkeys([*seen, *solo], 1)
