"""The one clock: every "now" of the app is `clock.now()`, so a test sets the time in one place
(`monkeypatch.setattr(clock, "now", ...)`) and every module sees it."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)
