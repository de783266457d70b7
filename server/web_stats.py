"""The web inbox's overview figures: pending by age, decisions per day by outcome, median
time to decision per route (issue 14)."""

from __future__ import annotations
