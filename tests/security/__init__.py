"""Regression tests, one per way around a human decision (issue: trust)."""
