"""The request page: everything a chat prompt shows and more, and the decisions (issue 14).

Only an approver the request ever reaches sees it (anyone else: "No such request among yours",
as for an id that does not exist); only one who may decide it now gets the buttons. Every
decision is a ``ChannelService`` call (the core decides, ``via = web``) and answers with a
redirect back here, ``?done=`` naming one of a fixed list of messages. A stale tab deciding a
request someone already decided decides nothing and is told who did, and when.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from signoff.server.details_text import edit_source, editable, edits_command, parse_edit
from signoff.server.errors import NotAllowedError, RequestError
from signoff.server.grant_models import offer, short_path
from signoff.server.grant_models import options as grant_options
from signoff.server.models import ApprovalRequest, Decision, Status
from signoff.server.sanitize import visible

from .details import Line, details_view, edit_preview, edited_view, flash, metadata, policy_view, trail, when
from .pages import posting, signed_in
from .render import Web, page, session_of

MISSING = "No such request among yours."
REASON_NEEDED = "Write why you reject it: the agent reads the reason."
NO_EDIT = "A question is answered, not edited."
NOT_JSON = "The arguments to approve are not valid JSON; check your edit again."

Act = Callable[[Web, ApprovalRequest, str, FormData], Awaitable[str]]


@dataclass
class EditState:
    """The Edit form after "Check": the text as written, and what it means."""

    text: str
    error: str | None = None
    unchanged: bool = False
    checked: str | None = None  # the canonical JSON of the checked arguments: exactly what "Approve edited" sends
    diff: list[Line] = field(default_factory=list)


def _text(form: FormData, name: str) -> str:
    """A form field as the user wrote it (browsers send line breaks as CRLF)."""
    value = form.get(name)
    return value.replace("\r\n", "\n").replace("\r", "\n") if isinstance(value, str) else ""


async def _load(request: Request, web: Web) -> tuple[ApprovalRequest | None, str]:
    session = session_of(request)
    assert session is not None
    return await web.channels.get(str(request.path_params["rid"])[:100]), session.approver


def _missing(request: Request, web: Web) -> Response:
    return page(request, web, "error.html", status_code=404, message=MISSING)


def _back(request: Request, req: ApprovalRequest, done: str) -> Response:
    return RedirectResponse(f"{request.state.base}/r/{quote(req.id)}?done={done}", status_code=303)


async def _render(request: Request, web: Web, req: ApprovalRequest, user: str, *, template: str = "request.html",
                  status_code: int = 200, problem: str | None = None, edit: EditState | None = None) -> Response:  # fmt: skip
    channels = web.channels
    decide = req.status is Status.PENDING and channels.approver_of(req, user) is not None
    offered = req.route_snapshot.get("grant_options") or []
    grants = [] if req.is_question else [(offered.index(o), visible(offer(req, o), one_line=True))
                                          for o in grant_options(req)]  # fmt: skip
    done = request.query_params.get("done", "")[:20]
    return page(
        request, web, template, status_code=status_code,
        req=req, vis=visible, when=when, short_path=short_path,
        view=details_view(req), edited=edited_view(req), metadata=metadata(req),
        policy=policy_view(req, await channels.votes(req.id)),
        trail=trail(await channels.events(req.id)),
        note=await channels.service.note(req),
        flash=flash(done, req) if done else None, problem=problem,
        decide=decide, grants=grants, editable=decide and not req.is_question and editable(req),
        edit=edit or EditState(edit_source(req) if not req.is_question else ""),
        edits_command=edits_command(req),
    )  # fmt: skip


async def show(request: Request, web: Web) -> Response:
    req, user = await _load(request, web)
    if req is None or not web.channels.may_see(req, user):
        return _missing(request, web)
    return await _render(request, web, req, user)


def part(template: str) -> Callable[[Request, Web], Awaitable[Response]]:
    """A region of the page, fetched again when something changed (``data-refresh``)."""

    async def run(request: Request, web: Web) -> Response:
        req, user = await _load(request, web)
        if req is None or not web.channels.may_see(req, user):
            return _missing(request, web)
        return await _render(request, web, req, user, template=template)

    return run


def _done(decision: Decision) -> str:
    if decision.changed:
        return decision.request.status.value
    if decision.voted:
        return "voted"
    return "already_voted" if decision.already_voted else "already"


def deciding(act: Act) -> Callable[[Request, Web], Awaitable[Response]]:
    """A decision's POST: the core decides (refusals are audited there) and the page says how it went."""

    async def run(request: Request, web: Web) -> Response:
        req, user = await _load(request, web)
        if req is None:
            return _missing(request, web)
        form = await request.form()
        try:
            done = await act(web, req, user, form)
        except NotAllowedError as exc:
            if not web.channels.may_see(req, user):
                return _missing(request, web)  # refused and audited; to them it does not exist
            return await _render(request, web, await web.channels.get(req.id) or req, user, status_code=403,
                                 problem=str(exc))  # fmt: skip
        except RequestError as exc:
            return await _render(request, web, req, user, status_code=400, problem=str(exc))
        return _back(request, req, done)

    return run


async def _approve(web: Web, req: ApprovalRequest, user: str, form: FormData) -> str:
    return _done(await web.channels.decide(req, True, user, "approve"))


async def _reject(web: Web, req: ApprovalRequest, user: str, form: FormData) -> str:
    await web.channels.check_approver(req, user, "reject")
    reason = _text(form, "reason")
    if not reason.strip() and req.status is Status.PENDING:
        raise RequestError(REASON_NEEDED)
    return _done(await web.channels.decide(req, False, user, "reject", reason))


async def _note(web: Web, req: ApprovalRequest, user: str, form: FormData) -> str:
    if req.status.final:  # a stale tab: the core decides nothing, whatever the note says
        return _done(await web.channels.decide(req, True, user, "note"))
    return _done(await web.channels.approve_with_note(req, user, "note", _text(form, "note")))


async def _grant(web: Web, req: ApprovalRequest, user: str, form: FormData) -> str:
    index = _index(form, "option")
    decision, grant = await web.channels.approve_and_grant(req, index, user, f"grant{index}", user)
    return "granted" if grant is not None else _done(decision)


async def _option(web: Web, req: ApprovalRequest, user: str, form: FormData) -> str:
    index = _index(form, "option")
    return _done(await web.channels.answer_option(req, index, user, f"option{index}"))


async def _answer(web: Web, req: ApprovalRequest, user: str, form: FormData) -> str:
    return _done(await web.channels.answer(req, user, "answer", _text(form, "answer")))


async def _approve_edited(web: Web, req: ApprovalRequest, user: str, form: FormData) -> str:
    try:
        edited: Any = json.loads(_text(form, "edited"))
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python parses
        raise RequestError(NOT_JSON) from None
    return _done(await web.channels.approve_edited(req, user, "edit", edited))


def _index(form: FormData, name: str) -> int:
    value = form.get(name)
    if not isinstance(value, str) or not value.isdigit() or len(value) > 2:
        return -1  # no such option: the core refuses it (audited)
    return int(value)


async def check(request: Request, web: Web) -> Response:
    """Edit → "Check": nothing is decided. Invalid arguments: the error, the text kept. Valid:
    the change as a diff, and "Approve edited" carrying exactly the checked arguments."""
    req, user = await _load(request, web)
    if req is None:
        return _missing(request, web)
    text = _text(await request.form(), "arguments")
    try:
        await web.channels.check_approver(req, user, "edit")
        if req.is_question:
            raise NotAllowedError(NO_EDIT)
        if req.status.final:
            return _back(request, req, "already")
        checked = await web.channels.check_edit(req, user, "edit", parse_edit(req, text))
    except NotAllowedError as exc:
        if not web.channels.may_see(req, user):
            return _missing(request, web)
        return await _render(request, web, req, user, status_code=403, problem=str(exc))
    except RequestError as exc:
        return await _render(request, web, req, user, status_code=400, edit=EditState(text, error=str(exc)))
    if checked is None:
        return await _render(request, web, req, user, edit=EditState(text, unchanged=True))
    diff = edit_preview(req, json.loads(checked))
    return await _render(request, web, req, user, edit=EditState(text, checked=checked, diff=diff))


def routes(web: Web) -> list[Route]:
    acts: dict[str, Act] = {"approve": _approve, "reject": _reject, "note": _note, "grant": _grant,
                            "option": _option, "answer": _answer, "edit/approve": _approve_edited}  # fmt: skip
    return [
        Route("/r/{rid}", signed_in(web, show), methods=["GET"]),
        Route("/r/{rid}/state", signed_in(web, part("_request_state.html")), methods=["GET"]),
        Route("/r/{rid}/trail", signed_in(web, part("_request_trail.html")), methods=["GET"]),
        Route("/r/{rid}/edit", posting(web, check), methods=["POST"]),
        *(Route(f"/r/{{rid}}/{name}", posting(web, deciding(act)), methods=["POST"]) for name, act in acts.items()),
    ]
