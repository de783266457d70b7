"""What the web inbox reads beyond the chat channels' needs: history (searched, filtered,
paged over one approver's requests), the audit timeline and its export, grants (issue 14)."""

from __future__ import annotations
