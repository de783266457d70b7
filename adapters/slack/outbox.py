"""Draining the outbox into Slack: prompts out, outcomes edited in, nothing lost.

The core writes the rows (server/outbox.py); the process that holds the Slack lease delivers
the ones addressed to ``slack`` here and reports back. An address is an approver's member id
(``U…``: their DM with the app) or a channel id (``C…``); a sent message is remembered as
``<channel id>:<ts>``, since Slack edits need the ``D…``/``C…`` id a post returned.

Pacing follows Slack's limits: ``chat.postMessage`` about one a second per channel, edits
(``chat.update``, Tier 3, 50+ a minute per workspace) spaced across the workspace. A 429 waits
its ``Retry-After`` (the row is retried then, without counting as a failure); 5xx, timeouts and
connection errors back off; a place Slack refuses (``channel_not_found``, ``not_in_channel``,
…) is warned about once and retried slowly. Prompts and reminders of non-urgent routes wait
for the end of the approver's quiet hours.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import ClientError
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from signoff.server.channels import ChannelService
from signoff.server.metrics import count_slack_error
from signoff.server.models import ApprovalRequest, Status
from signoff.server.outbox import PROMPTS, Delivery, Kind

from .buttons import SlackSigner
from .questions import escalated_for, prompt_for, reminder_for
from .render import digest, grant_notice

log = logging.getLogger("signoff.slack")

POST_GAP = 1.0  # seconds between posts to one channel
UPDATE_GAP = 1.2  # seconds between edits, workspace-wide (Tier 3: 50 a minute)
MAX_BACKOFF = 60.0
UNREACHABLE_BACKOFF = 300.0
NEW_MESSAGES = (Kind.PROMPT, Kind.REMINDER)  # what quiet hours hold
# Errors that say the place cannot be reached (yet): the app is not in the channel, the user left…
UNREACHABLE = {"channel_not_found", "not_in_channel", "is_archived", "user_not_found", "cannot_dm_bot",
               "user_disabled", "restricted_action", "messages_tab_disabled"}  # fmt: skip
GONE = {"message_not_found", "cant_update_message", "edit_window_closed"}  # an edit of a message that is no more


def split(message: str) -> tuple[str, str]:
    """``<channel id>:<ts>`` → (channel id, ts)."""
    channel, _, ts = message.partition(":")
    return channel, ts


def retry_after(exc: SlackApiError) -> float:
    """Slack's ``Retry-After`` (integer seconds) of a 429; 1 s when it is missing or odd."""
    try:
        return max(1.0, float(exc.response.headers.get("Retry-After", "1")))
    except (TypeError, ValueError):
        return 1.0


class SlackOutbox:
    """Delivers due outbox rows through ``client``; one instance per lease holder."""

    def __init__(self, core: ChannelService, client: AsyncWebClient, signer: SlackSigner) -> None:
        self.core = core
        self.rows = core.outbox
        self.client = client
        self.signer = signer
        self.clock = core.clock
        self._free_at: dict[str, float] = {}  # per address: the next post (monotonic time)
        self._update_free_at = 0.0
        self._paused_until = 0.0  # after a 429 on any method: Slack asked us to wait
        self._warned: set[str] = set()

    async def drain(self) -> float:
        """Deliver what is due now; return how long until something may be due again."""
        wait = 0.25
        for row in await self.rows.due():
            now = time.monotonic()
            if self._paused_until > now:
                return self._paused_until - now
            try:
                if row.kind == Kind.PROMPT and await self.core.digests.gather(row):
                    continue  # into the digest: no call of its own
            except Exception:  # never let one row stop the others; it is then sent as a prompt of its own
                log.exception("slack: gathering outbox row %d into a digest failed", row.id)
            free_at = self._free_at.get(row.address, 0.0)
            if row.kind in PROMPTS or row.kind in (Kind.REMINDER, Kind.ESCALATED):
                if free_at > now:
                    wait = min(wait, free_at - now)
                    continue  # this channel is paced; others go on
            elif self._update_free_at > now:
                wait = min(wait, self._update_free_at - now)
                continue
            await self._deliver(row)
        return max(0.0, wait)

    async def _deliver(self, row: Delivery) -> None:
        req = await self.core.get(row.request_id)
        if req is None:  # pragma: no cover - rows reference requests by foreign key
            await self.rows.done(row.id)
            return
        try:
            if row.kind in NEW_MESSAGES and req.status is Status.PENDING:
                held = self.core.held_until(req, row.approver)
                if held is not None:
                    await self.rows.hold(row.id, held)
                    return
            await self._send(row, req)
            await self.rows.done(row.id)
            if row.kind in PROMPTS:
                self._warned.discard(row.address)
        except SlackApiError as exc:
            await self._failed(row, exc)
        except (ClientError, TimeoutError, OSError) as exc:  # connection errors and timeouts
            count_slack_error("timeout" if isinstance(exc, TimeoutError) else "network")
            await self._retry(row, min(MAX_BACKOFF, 2.0**row.attempts), f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug with one row must never hold up every other prompt
            log.exception("slack: delivering outbox row %d (%s) failed; backing it off", row.id, row.kind)
            await self._retry(row, min(UNREACHABLE_BACKOFF, 2.0 ** (row.attempts + 2)),
                              f"internal error: {type(exc).__name__}")  # fmt: skip

    async def _failed(self, row: Delivery, exc: SlackApiError) -> None:
        status = exc.response.status_code
        error = str(exc.response.get("error", "")) if isinstance(exc.response.data, dict) else ""
        count_slack_error(error or str(status))
        if status == 429 or error == "ratelimited":
            delay = retry_after(exc)
            self._paused_until = time.monotonic() + delay
            await self._retry(row, delay, f"429: retry after {delay:.0f} s", count=False)
        elif error in GONE:
            log.info("slack: outbox row %d: the message is gone (%s); nothing to edit", row.id, error)
            await self.rows.done(row.id)
        elif error in UNREACHABLE:
            self._warn_unreachable(row, error)
            await self._retry(row, min(UNREACHABLE_BACKOFF, 2.0 ** (row.attempts + 2)), error)
        else:  # 5xx, invalid_auth while a token is rotated, …: back off and try again
            await self._retry(row, min(MAX_BACKOFF, 2.0**row.attempts), f"{status} {error or 'error'}")

    async def _retry(self, row: Delivery, delay: float, error: str, *, count: bool = True) -> None:
        await self.rows.retry(row.id, delay, error, count=count)
        log.info("slack: will retry delivery %d in %.0f s (%s)", row.id, delay, error)

    def _warn_unreachable(self, row: Delivery, error: str) -> None:
        if row.address not in self._warned:
            self._warned.add(row.address)
            who = f"approver {row.approver!r}" if row.approver else "this place"
            log.warning("slack: cannot post to %s (%s): %s. Invite the app to the channel, or check "
                        "slack_user_id / slack_channel; delivery is retried until it works.", row.address, who, error)  # fmt: skip

    # --- Slack calls, paced ------------------------------------------------------------

    async def post(self, address: str, text: str, blocks: list[dict[str, Any]] | None = None,
                   thread_ts: str | None = None, *, channel: str | None = None) -> str:  # fmt: skip
        """Post a message to ``channel`` (by default ``address``), paced as a post to ``address``:
        the place's outbox address, which ``drain`` checks (a reply in a DM goes to its ``D…`` id,
        yet it is a post to the member's ``U…`` place); return it as ``<channel id>:<ts>``."""
        self._free_at[address] = time.monotonic() + POST_GAP
        response = await self.client.chat_postMessage(channel=channel or address, text=text, blocks=blocks,
                                                      thread_ts=thread_ts, unfurl_links=False,
                                                      unfurl_media=False)  # fmt: skip
        return f"{response['channel']}:{response['ts']}"

    async def update(self, message: str, text: str, blocks: list[dict[str, Any]]) -> None:
        self._update_free_at = time.monotonic() + UPDATE_GAP
        channel, ts = split(message)
        await self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)

    # --- the kinds -----------------------------------------------------------------------

    async def _send(self, row: Delivery, req: ApprovalRequest) -> None:
        kind = row.kind
        if kind in PROMPTS:
            await self._send_prompt(row, req)
        elif kind in (Kind.OUTCOME, Kind.PROGRESS):
            await self.edit_prompts(req, row.address)
        elif kind == Kind.REMINDER:
            await self._thread_note(req, row, reminder_for(req, self.clock()), voted_check=True)
        elif kind == Kind.ESCALATED:
            await self._thread_note(req, row, escalated_for(req))
        elif kind in (Kind.GRANT_USED, Kind.GRANT_NOTICE):
            await self._grant_count(req, row)
        elif kind == Kind.DIGEST:
            await self._digest(row)
        else:
            log.warning("slack: unknown outbox kind %r; skipped", kind)

    async def _send_prompt(self, row: Delivery, req: ApprovalRequest) -> None:
        if req.status is not Status.PENDING:
            return  # decided before it was delivered: nothing to ask
        if row.kind == Kind.PROMPT and await self.rows.prompts(req.id, row.address):
            return  # the place has it already (asked for with /signoff pending while this one was held)
        votes = await self.core.votes(req.id)
        text, blocks = prompt_for(req, self.clock(), votes, self.signer)
        message = await self.post(row.address, text, blocks)
        await self.rows.sent(row.id, req.id, row.address, message)
        # Changed while we were sending? Then what it queued may have missed this place.
        current = await self.core.get(req.id)
        if current is not None and current.status is not Status.PENDING:
            await self.rows.queue(req.id, Kind.OUTCOME, row.address)
        elif current is not None and current.level != req.level:
            await self.rows.queue(req.id, Kind.ESCALATED, row.address)
        elif len(await self.core.votes(req.id)) != len(votes):
            await self.rows.queue(req.id, Kind.PROGRESS, row.address)

    async def edit_prompts(self, req: ApprovalRequest, address: str) -> None:
        """Show the request as it is now on each of its prompts at ``address`` (buttons while pending)."""
        messages = await self.rows.prompts(req.id, address)
        if not messages:
            return
        text, blocks = prompt_for(req, self.clock(), await self.core.votes(req.id), self.signer)
        for message in messages:
            try:
                await self.update(message, text, blocks)
            except SlackApiError as exc:
                if exc.response.get("error") not in GONE:
                    raise

    async def _thread_note(self, req: ApprovalRequest, row: Delivery, text: str, *, voted_check: bool = False) -> None:
        if req.status is not Status.PENDING:
            return
        if voted_check and any(v.approver == row.approver for v in await self.core.votes(req.id)):
            return  # voted since the reminder was queued
        messages = await self.rows.prompts(req.id, row.address)
        channel, thread = split(messages[-1]) if messages else (row.address, None)
        await self.post(row.address, text, None, thread_ts=thread, channel=channel)

    async def _grant_count(self, req: ApprovalRequest, row: Delivery) -> None:
        """Send a grant's notice (queued as ``grant_notice`` when the grant is made), or edit it: its
        count of uses (``grant_used``, for a request the grant approved), its end (``grant_notice``)."""
        if row.kind == Kind.GRANT_NOTICE:
            grant = await self.core.grant_from(req.id)
        elif (req.decided_by or "").startswith("grant:"):
            grant = await self.core.grant((req.decided_by or "").removeprefix("grant:"))
        else:
            return
        if grant is None or grant.notice_channel != "slack" or grant.notice_address != row.address:
            return
        await self.rows.done_grant_uses(row.address, grant.id)  # this one message shows them all …
        try:
            grant = await self.core.grant(grant.id) or grant  # … counted from here on
            text, blocks = grant_notice(grant, self.clock(), self.signer)
            if grant.notice_message is None:
                await self.core.grant_notice_sent(grant, await self.post(row.address, text, blocks))
            else:
                await self.update(grant.notice_message, text, blocks)
        except Exception:
            await self.rows.undone(row.id)  # marked done with the uses above: due again, for its retry
            raise

    async def _digest(self, row: Delivery) -> None:
        book = self.core.digests
        draft = await book.start_refresh(row.address)
        try:
            if draft.message is None and not draft.items:
                return
            render_id = await book.new_render(row.address, draft.message, [])  # supersedes every earlier render
            text, blocks, listed = digest(draft.items, draft.decided, self.clock(), render_id, row.address,
                                                 self.signer)  # fmt: skip
            await book.list_render(render_id, [r.id for r in listed])
            message = draft.message
            edited = False
            if message is not None:
                try:
                    await self.update(message, text, blocks)
                    edited = True
                except SlackApiError as exc:
                    if exc.response.get("error") not in GONE:
                        raise
            if not edited and listed:  # no message yet, or it was deleted: a new one carries this render
                message = await self.post(row.address, text, blocks)
            await book.rendered(row.address, render_id, message, pending=bool(draft.items))
        except Exception:
            await self.rows.undone(row.id)
            raise
