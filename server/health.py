"""Is anyone delivering? Who holds the Telegram bot and the Slack connection, the outbox
backlog, pending requests, failing callbacks.

``signoff status``, ``signoff doctor`` and ``/healthz`` all show this. A hook or a
``permission_prompt`` reaches a phone only while some signoff process holds the channel's lease
(the bot lease for Telegram, ``slack-connection`` for Slack), so its absence is reported as a
problem, with what to do about it. Read-only: a handful of
indexed queries, the same on a plain ``sqlite3`` connection (the fast console path) and on the
server's ``Store``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .durations import humanize_delta
from .lease import BOT_LEASE, SLACK_LEASE

if TYPE_CHECKING:
    from .store import Store

STALE_PROMPT = 60.0  # a prompt due this long without being sent means delivery is stuck

_LEASE = "SELECT owner, expires_at, since FROM leases WHERE name = ?"
_PENDING = "SELECT count(*) FROM requests WHERE status = 'pending'"
_DUE_PROMPT = (  # the oldest prompt someone still has to see on a channel: due, unsent, request pending
    "(SELECT min(o.created_at) FROM outbox AS o JOIN requests AS r ON r.id = o.request_id "
    "WHERE o.kind = 'prompt' AND o.channel = '{}' AND o.done_at IS NULL AND o.next_attempt_at <= ? "
    "AND r.status = 'pending')"
)
_OUTBOX = (
    "SELECT (SELECT count(*) FROM outbox WHERE done_at IS NULL AND kind != 'callback'), "
    f"{_DUE_PROMPT.format('telegram')}, {_DUE_PROMPT.format('slack')}"
)
_CALLBACKS = (  # each on a partial index: undelivered rows, and finished rows that failed
    "SELECT (SELECT count(*) FROM outbox WHERE kind = 'callback' AND done_at IS NULL AND attempts > 0), "
    "(SELECT count(*) FROM outbox WHERE kind = 'callback' AND last_error IS NOT NULL AND done_at > ?)"
)


@dataclass(frozen=True, slots=True)
class BotHolder:
    """The bot lease's row: who holds (or last held) the Telegram connection."""

    host: str
    pid: int | None
    since: float
    expires_at: float

    @classmethod
    def from_owner(cls, owner: str, expires_at: float, since: float) -> BotHolder:
        host, _, rest = owner.partition(":")  # lease.new_owner(): host:pid:random
        pid = rest.partition(":")[0]
        return cls(host, int(pid) if pid.isdigit() else None, since, expires_at)


@dataclass(frozen=True, slots=True)
class Health:
    now: float
    bot: BotHolder | None  # None: no process ever held it
    pending: int
    outbox_backlog: int  # undelivered chat messages (prompts, outcomes, edits), held ones included
    oldest_prompt_due: float | None  # when the oldest prompt that is due but unsent was filed
    callbacks_retrying: int
    callbacks_given_up_24h: int
    slack: BotHolder | None = None  # who holds (or last held) the Slack connection
    oldest_telegram_due: float | None = None  # the same as oldest_prompt_due, per channel
    oldest_slack_due: float | None = None

    @property
    def bot_live(self) -> bool:
        return self.bot is not None and self.bot.expires_at >= self.now

    @property
    def slack_live(self) -> bool:
        return self.slack is not None and self.slack.expires_at >= self.now

    def problems(self) -> list[str]:
        """What stops prompts reaching people, each with what to do."""
        out = []
        if self.bot is not None and not self.bot_live:
            out.append(
                f"no signoff process holds the Telegram bot: {self.bot.host} (pid {self.bot.pid}) let it go "
                f"{humanize_delta(self.bot.expires_at - self.now)}; prompts reach no phone until one runs "
                "(start `signoff serve`, or see docs/operations.md to run it all the time)"
            )
        elif self.bot is None and self.oldest_telegram_due is not None:
            out.append(
                "prompts are waiting and no signoff process has held the Telegram bot yet: start `signoff serve` "
                "with SIGNOFF_TELEGRAM_TOKEN set"
            )
        if self.slack is not None and not self.slack_live:
            out.append(
                f"no signoff process holds the Slack connection: {self.slack.host} (pid {self.slack.pid}) let it go "
                f"{humanize_delta(self.slack.expires_at - self.now)}; Slack prompts wait until one runs "
                "(start `signoff serve`, see docs/slack.md)"
            )
        elif self.slack is None and self.oldest_slack_due is not None:
            out.append(
                "Slack prompts are waiting and no signoff process has held the Slack connection yet: start "
                "`signoff serve` with SIGNOFF_SLACK_BOT_TOKEN and SIGNOFF_SLACK_APP_TOKEN set (docs/slack.md)"
            )
        if self.oldest_prompt_due is not None and self.now - self.oldest_prompt_due > STALE_PROMPT:
            out.append(
                f"the oldest undelivered prompt was filed {humanize_delta(self.oldest_prompt_due - self.now)}; "
                "see the bot holder's log (`signoff doctor` checks the token)"
            )
        if self.callbacks_retrying:
            out.append(
                f"{self.callbacks_retrying} decision callback(s) are failing and being retried; "
                "`signoff show ID` gives the error"
            )
        return out

    def as_json(self) -> dict[str, Any]:
        bot = None
        if self.bot is not None:
            bot = {"host": self.bot.host, "pid": self.bot.pid, "since": self.bot.since, "live": self.bot_live,
                   "expires_at": self.bot.expires_at}  # fmt: skip
        age = None if self.oldest_prompt_due is None else round(self.now - self.oldest_prompt_due, 3)
        slack = None
        if self.slack is not None:
            slack = {"host": self.slack.host, "pid": self.slack.pid, "since": self.slack.since,
                     "live": self.slack_live, "expires_at": self.slack.expires_at}  # fmt: skip
        return {
            "bot": bot,
            "slack": slack,
            "pending": self.pending,
            "outbox": {"backlog": self.outbox_backlog, "oldest_prompt_age_s": age},
            "callbacks": {"retrying": self.callbacks_retrying, "given_up_24h": self.callbacks_given_up_24h},
            "problems": self.problems(),
        }

    def _held(self, holder: BotHolder | None, what: str) -> str:
        if holder is None:
            return f"no process has held {what} yet"
        if holder.expires_at >= self.now:
            return f"held by {holder.host} pid {holder.pid} for {humanize_delta(holder.since - self.now).removesuffix(' ago')}"
        return f"NOT HELD (last: {holder.host} pid {holder.pid}, {humanize_delta(holder.expires_at - self.now)})"

    def lines(self) -> list[tuple[str, str]]:
        """(topic, text) rows for ``signoff status`` and ``doctor``."""
        if self.bot is None:
            bot = "no process has held the Telegram bot yet"
        elif self.bot_live:
            bot = f"held by {self.bot.host} pid {self.bot.pid} for {humanize_delta(self.bot.since - self.now).removesuffix(' ago')}"
        else:
            bot = (
                f"NOT HELD (last: {self.bot.host} pid {self.bot.pid}, {humanize_delta(self.bot.expires_at - self.now)})"
            )
        backlog = f"{self.outbox_backlog} undelivered"
        if self.oldest_prompt_due is not None:
            backlog += f"; oldest due prompt filed {humanize_delta(self.oldest_prompt_due - self.now)}"
        if self.outbox_backlog and self.bot is None and self.slack is None:
            backlog += " (they wait for a process with a Telegram or Slack token, and are sent then)"
        rows = [("bot", bot)]
        if self.slack is not None or self.oldest_slack_due is not None:
            rows.append(("slack", self._held(self.slack, "the Slack connection")))
        rows += [("pending", str(self.pending)), ("outbox", backlog)]
        if self.callbacks_retrying or self.callbacks_given_up_24h:
            rows.append(
                ("callbacks", f"{self.callbacks_retrying} retrying, {self.callbacks_given_up_24h} given up in 24 h")
            )
        return rows


def _holder(lease: Any) -> BotHolder | None:
    return None if lease is None else BotHolder.from_owner(str(lease[0]), float(lease[1]), float(lease[2]))


def _assemble(now: float, lease: Any, slack: Any, pending: Any, outbox: Any, callbacks: Any) -> Health:
    due = [float(t) for t in (outbox[1], outbox[2]) if t is not None]
    return Health(
        now=now,
        bot=_holder(lease),
        pending=int(pending[0]),
        outbox_backlog=int(outbox[0]),
        oldest_prompt_due=min(due) if due else None,
        callbacks_retrying=int(callbacks[0] or 0),
        callbacks_given_up_24h=int(callbacks[1] or 0),
        slack=_holder(slack),
        oldest_telegram_due=None if outbox[1] is None else float(outbox[1]),
        oldest_slack_due=None if outbox[2] is None else float(outbox[2]),
    )


def read(conn: Any, now: float | None = None) -> Health:
    """Health from a plain connection (``readonly.connect``); None: no database yet."""
    now = time.time() if now is None else now
    if conn is None:
        return Health(now, None, 0, 0, None, 0, 0)
    day = now - 86400
    return _assemble(
        now,
        conn.execute(_LEASE, (BOT_LEASE,)).fetchone(),
        conn.execute(_LEASE, (SLACK_LEASE,)).fetchone(),
        conn.execute(_PENDING).fetchone(),
        conn.execute(_OUTBOX, (now, now)).fetchone(),
        conn.execute(_CALLBACKS, (day,)).fetchone(),
    )


async def collect(store: Store, now: float) -> Health:
    """Health through the server's store (``/healthz``)."""
    day = now - 86400

    async def one(sql: str, args: tuple[Any, ...] = ()) -> Any:
        rows = await store.read(sql, args)
        return rows[0] if rows else None

    return _assemble(
        now,
        await one(_LEASE, (BOT_LEASE,)),
        await one(_LEASE, (SLACK_LEASE,)),
        await one(_PENDING),
        await one(_OUTBOX, (now, now)),
        await one(_CALLBACKS, (day,)),
    )
