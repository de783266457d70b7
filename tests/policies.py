"""Shared by the policy tests: the examples in docs/policies.md, a clock the test moves, and the app on the fake Bot API."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from signoff.server.app import App
from signoff.server.config import Config, parse_config
from signoff.server.models import Actor
from signoff.server.service import NewRequest

from .conftest import ROOT
from .fake_telegram import FakeTelegram, Message

AGENT = Actor("agent", "claude-code", "mcp")
ALICE, BOB, CAROL, LEAD, CTO, MALLORY = 111, 222, 333, 444, 555, 666


POLICIES_DOC = ROOT / "docs" / "policies.md"


def readme_example(name: str) -> str:
    """The code block that follows ``<!-- policy-example: NAME -->`` in docs/policies.md (the
    README links there), so the documented examples are the ones the tests run."""
    text = POLICIES_DOC.read_text(encoding="utf-8")
    found = re.search(rf"<!-- policy-example: {re.escape(name)} -->\n```\w+\n(.*?)```", text, re.S)
    assert found is not None, f"docs/policies.md has no policy example {name!r}"
    return found.group(1)


class Clock:
    """Real time plus an offset the test moves forward: timers fire without waiting minutes."""

    def __init__(self, at: float | None = None) -> None:
        self.offset = 0.0 if at is None else at - time.time()

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def example_config(name: str, fake: FakeTelegram, folder: Path, *, edit: dict[str, str] | None = None) -> Config:
    """A docs/policies.md example, with the database in ``folder`` and the bot on the fake."""
    text = readme_example(name)
    for old, new in (edit or {}).items():
        assert old in text, f"{old!r} is not in the policy example {name!r}"
        text = text.replace(old, new)
    text += f'\n[store]\npath = "signoff.db"\n[telegram]\napi_base_url = "{fake.api_base_url}"\nlease_ttl = "3s"\n'
    return parse_config(text, source=f"docs/policies.md example {name}", base_dir=folder)


async def file(app: App, action: str, summary: str = "Please", *, requester: Actor = AGENT, **kw: Any) -> str:
    session = kw.pop("session", None)
    return (await app.service.request_approval(NewRequest(action, summary, **kw), requester, session=session)).id


async def prompt_for(fake: FakeTelegram, chat_id: int, request_id: str) -> Message:
    return await fake.wait_for(
        lambda: next((m for m in fake.chat(chat_id) if request_id in m.text and m.buttons()), None)
    )


async def answer_to(fake: FakeTelegram, cq: str) -> str:
    await fake.wait_for(lambda: cq in fake.answers)
    return str(fake.answers[cq].get("text", ""))
