"""(g) A burst: 1,000 requests within 10 s to one approver, on the fake Bot API.

Counts the calls that put something in the approver's chat (sendMessage and
editMessageText) while the burst lands — target ≤ 40 — and the calls that broke Telegram's
limits (more than 1/s to the chat, 30/s overall) — target 0 — then presses "Approve all" on
the newest rendering of the digest until nothing is pending: each press decides only the
items that message lists (``DIGEST_LISTED``), so it takes about 1,000 / 20 presses, each
waiting for the digest's next edit at the chat's pace. Checks that every one of the 1,000 is
approved by alice, and reports the presses and how long they took.

    python -m benchmarks.digest     # (g) alone; python -m benchmarks runs it with the rest
"""

from __future__ import annotations

import asyncio
import textwrap
import time
from pathlib import Path
from typing import Any

from signoff.server.models import Actor, Status
from signoff.server.service import NewRequest
from tests.fake_telegram import FakeTelegram

from .telegram import bot_on_fake

ALICE = 111


def write_config(folder: Path, fake: FakeTelegram) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "signoff.toml"
    path.write_text(
        textwrap.dedent(f"""
        [store]
        path = "digest.db"
        [telegram]
        api_base_url = "{fake.api_base_url}"
        lease_ttl = "3s"
        [defaults]
        digest_threshold = 5
        [approvers.alice]
        telegram_user_id = {ALICE}
        [[routes]]
        name = "refunds"
        approvers = ["alice"]
        allow_bulk = true
    """)
    )
    return path


def _calls(fake: FakeTelegram) -> int:
    return sum(1 for m, p in fake.calls if m in ("sendMessage", "editMessageText") and int(p["chat_id"]) == ALICE)


async def bench_burst(folder: Path, count: int, seconds: float) -> dict[str, Any]:
    async with bot_on_fake(lambda fake: write_config(folder / "digest", fake)) as (fake, app):
        agent = Actor("agent", "bench", "mcp")
        ids: list[str] = []
        t0 = time.monotonic()
        for i in range(count):  # evenly over `seconds`, as a runaway agent would
            ids.append((await app.service.request_approval(NewRequest("refund", f"Refund {i}"), agent)).id)
            lag = t0 + seconds * (i + 1) / count - time.monotonic()
            if lag > 0:
                await asyncio.sleep(lag)
        filed = time.monotonic() - t0
        digest = await fake.wait_for(
            lambda: next((m for m in fake.chat(ALICE) if f"{count} pending" in m.text and m.buttons()), None), 120
        )
        during = _calls(fake)
        presses, stale, t1 = 0, 0, time.monotonic()
        pressed: str | None = None
        while True:
            # The newest render: the message edited with new buttons since the last press (or done).
            await fake.wait_for(lambda: "nothing pending" in digest.text
                                or (digest.buttons() and digest.button("Approve all") != pressed), 120)  # fmt: skip  # noqa: B023
            if "nothing pending" in digest.text:
                break
            pressed = digest.button("Approve all")
            cq = await fake.press(ALICE, digest, pressed)
            await fake.wait_for(lambda cq=cq: cq in fake.answers, 60)
            presses += 1
            stale += fake.answers[cq].get("text", "").startswith("This digest is out of date")
        pressing = time.monotonic() - t1
        final = [await app.service.get(rid) for rid in ids]
    return {"filed_in": filed, "calls_during": during, "calls_total": _calls(fake),
            "sends": sum(1 for m, p in fake.calls if m == "sendMessage" and int(p["chat_id"]) == ALICE),
            "violations": fake.rate_violations(), "approved": sum(r is not None and r.status is Status.APPROVED for r in final),
            "by_alice": sum(r is not None and r.decided_by == "alice" for r in final),
            "presses": presses, "stale": stale, "pressing": pressing}  # fmt: skip


def run(folder: Path, quick: bool) -> list[tuple[str, str, str, bool]]:
    count = 1000
    g = asyncio.run(bench_burst(folder, count, 10.0))
    return [
        (f"(g) {count} requests in {g['filed_in']:.1f} s to one approver",
         f"{g['calls_during']} messages+edits while they landed ({g['sends']} sent in all, {g['calls_total']} calls), "
         f"{g['violations']} rate violations; Approve all: {g['approved']}/{count} approved in {g['presses']} presses "
         f"of the newest digest ({g['pressing']:.0f} s, {g['stale']} out of date)",
         "<= 40, 0, all", g["calls_during"] <= 40 and g["violations"] == 0 and g["approved"] == g["by_alice"] == count
         and g["stale"] == 0),
    ]  # fmt: skip


if __name__ == "__main__":
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name, measured, target, ok in run(Path(tmp), "--quick" in sys.argv):
            print(f"{name}  {measured}  {target}  {'OK' if ok else 'MISSED'}")
