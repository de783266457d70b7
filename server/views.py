"""The structured output of every MCP tool (a public contract: keep it stable).

The JSON schema is kept flat on purpose — an inline enum rather than a ``$ref``, a type list
rather than ``anyOf`` for nullable fields — because MCP clients validate every result
against it, and a nested schema costs them more than our whole tool call.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, WithJsonSchema

from .models import ApprovalRequest, view


def _nullable(description: str) -> WithJsonSchema:
    return WithJsonSchema({"type": ["string", "null"], "description": description})


StatusName = Literal["pending", "approved", "rejected", "expired", "cancelled", "answered"]


class RequestView(BaseModel):
    """What every MCP tool returns: the state of one approval request (or one ask_human question)."""

    request_id: str = Field(description="Pass this to check_decision and cancel_request.")
    status: StatusName = Field(
        description="pending, approved, rejected, expired or cancelled; for a question (ask_human): pending, "
        "answered, expired or cancelled. Only 'approved' means go ahead."
    )
    route: str = Field(description="The route that decides this request.")
    approvers: list[str] = Field(description="Who may decide it.")
    created_at: Annotated[str, Field(description="When it was filed (ISO 8601, UTC).")]
    expires_at: Annotated[str, Field(description="When the route's on_timeout default applies (ISO 8601, UTC).")]
    decided_at: Annotated[str | None, _nullable("When it was decided, or null while pending.")]
    decided_by: Annotated[
        str | None, _nullable("Who decided: an approver, 'timeout', or 'route:NAME' for automatic decisions.")
    ]
    reason: Annotated[
        str | None,
        _nullable(
            "The reason given with the decision, if any: why it was rejected, or the note an approver approved with."
        ),
    ]
    note: Annotated[
        str | None,
        _nullable("While pending: progress and when a decision can be expected (e.g. approvers in quiet hours)."),
    ] = None
    action_digest: Annotated[
        str | None,
        _nullable(
            "SHA-256 of the canonical JSON of action, details and metadata: the exact call a decision is for. "
            "Act only on the arguments with this digest."
        ),
    ] = None

    edited_details: Annotated[
        Any,
        WithJsonSchema(
            {
                "type": ["object", "array", "string", "number", "boolean", "null"],
                "description": "Null unless the approver changed your arguments before approving. When not null, act "
                "on these arguments instead of the details you sent (they replace them whole).",
            }
        ),
    ] = None
    answer: Annotated[
        str | None, _nullable("A question's answer (status 'answered'): the human's own words or the option chosen.")
    ] = None
    answered_by: Annotated[str | None, _nullable("Who answered the question, or null.")] = None

    @classmethod
    def of(cls, req: ApprovalRequest, note: str | None = None) -> RequestView:
        return cls.model_validate({**view(req), "note": note})
