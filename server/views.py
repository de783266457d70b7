"""The structured output of every MCP tool (a public contract: keep it stable)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from .models import ApprovalRequest, Status, view


class RequestView(BaseModel):
    """What every MCP tool returns: the state of one approval request."""

    request_id: str = Field(description="Pass this to check_decision and cancel_request.")
    status: Status = Field(
        description="pending, approved, rejected, expired or cancelled. Only 'approved' means go ahead."
    )
    route: str = Field(description="The route that decides this request.")
    approvers: list[str] = Field(description="Who may decide it.")
    created_at: str | None
    expires_at: str | None = Field(description="When the route's on_timeout default applies (UTC).")
    decided_at: str | None
    decided_by: str | None = Field(description="Who decided, or 'timeout' / the route for automatic decisions.")
    reason: str | None = Field(description="The reason the human gave, if any.")

    @classmethod
    def of(cls, req: ApprovalRequest) -> RequestView:
        return cls.model_validate(view(req))
