"""The schedule of pulse rounds: pure functions of a cadence, dates and time zones.

A cadence says when rounds open (a weekday every week or two, or a day of the month every month
or quarter) and for how many whole local days each stays open. Rounds are numbered from 1 and
follow from the cadence alone, so nothing has to be stored to know when round 40 opens.
Instants are aware UTC datetimes; the caller passes `now`, this module never reads a clock.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import MAXYEAR, UTC, date, datetime, timedelta
from itertools import count
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

__all__ = [
    "Cadence", "CadenceError", "Every", "Window", "first_window_after", "next_window",
    "opening_dates", "validate", "window", "window_at", "windows_between",
]

Every = Literal["weekly", "biweekly", "monthly", "quarterly"]

# Step between rounds: in weeks for weekly/biweekly, in months for monthly/quarterly.
_STEP: dict[str, int] = {"weekly": 1, "biweekly": 2, "monthly": 1, "quarterly": 3}
# The shortest gap between two openings minus one day, so windows never overlap
# (monthly: Jan 31 -> Feb 28 is 28 days; quarterly: Jan 31 -> Apr 30 is 89 days).
_MAX_OPEN_DAYS: dict[str, int] = {"weekly": 6, "biweekly": 13, "monthly": 27, "quarterly": 88}


class CadenceError(ValueError):
    """A cadence a survey cannot run on; the message says what is wrong and what is allowed."""


class Cadence(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    every: Every
    start: date  # the first day a round may open (local date in the time zone)
    weekday: int = 0  # weekly/biweekly: 0 = Monday ... 6 = Sunday
    day_of_month: int = 1  # monthly/quarterly: 1..31; shorter months use their last day
    open_days: int = 3  # how long a round stays open, in whole local days
    time_zone: str = "UTC"  # IANA name


class Window(msgspec.Struct, frozen=True):
    number: int  # 1-based round number in this cadence
    opens_on: date  # local date
    opens_at: datetime  # aware UTC: local midnight at the start of opens_on
    closes_at: datetime  # aware UTC: local midnight at the start of opens_on + open_days


def validate(cadence: Cadence) -> Cadence:
    """Return the cadence unchanged, or raise CadenceError saying what to fix."""
    every = cadence.every
    if not isinstance(every, str) or every not in _STEP:
        raise CadenceError(
            f"every must be one of weekly, biweekly, monthly or quarterly, not {every!r}"
        )
    if not isinstance(cadence.start, date) or isinstance(cadence.start, datetime):
        raise CadenceError(f"start must be a date such as 2025-01-06, not {cadence.start!r}")
    if not _is_int_between(cadence.weekday, 0, 6):
        raise CadenceError(
            f"weekday must be between 0 (Monday) and 6 (Sunday), not {cadence.weekday!r}"
        )
    if not _is_int_between(cadence.day_of_month, 1, 31):
        raise CadenceError(
            "day_of_month must be between 1 and 31 (shorter months use their last day), "
            f"not {cadence.day_of_month!r}"
        )
    if not _is_int_between(cadence.open_days, 1, _MAX_OPEN_DAYS[every]):
        raise CadenceError(
            f"open_days must be between 1 and {_MAX_OPEN_DAYS[every]} for a {every} survey, "
            f"not {cadence.open_days!r}"
        )
    _zone(cadence.time_zone)
    return cadence


def opening_dates(cadence: Cadence) -> Iterator[date]:
    """Every round's local opening date, in order, from the first one on or after start.

    Infinite in practice: it only ends where dates end, in the year 9999.
    """
    validate(cadence)
    for number in count(1):
        try:
            yield _opening_date(cadence, number)
        except OverflowError:
            return


def window(cadence: Cadence, number: int) -> Window:
    """The number-th round (1-based)."""
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise ValueError(f"round numbers start at 1, not {number!r}")
    return _window(validate(cadence), _zone(cadence.time_zone), number)


def windows_between(cadence: Cadence, start: datetime, end: datetime) -> list[Window]:
    """The rounds that open in [start, end), in order."""
    _require_aware(end, "end")
    found: list[Window] = []
    current = first_window_after(cadence, start)
    zone = _zone(cadence.time_zone)
    while current.opens_at < end:
        found.append(current)
        current = _window(cadence, zone, current.number + 1)
    return found


def window_at(cadence: Cadence, moment: datetime) -> Window | None:
    """The round open at that instant (opens_at <= moment < closes_at), or None between rounds."""
    following = _first_opening(cadence, moment, strictly_after=True)
    if following.number == 1:
        return None
    latest = _window(cadence, _zone(cadence.time_zone), following.number - 1)
    return latest if moment < latest.closes_at else None


def next_window(cadence: Cadence, moment: datetime) -> Window:
    """The first round that opens strictly after moment (opens_at > moment).

    While a round is open this is the one after it, which is what "next round opens on" shows.
    """
    return _first_opening(cadence, moment, strictly_after=True)


def first_window_after(cadence: Cadence, moment: datetime) -> Window:
    """The first round that opens at or after moment (opens_at >= moment).

    Used when a facilitator changes a cadence: the new one's rounds start from here, so they never
    overlap rounds already run.
    """
    return _first_opening(cadence, moment, strictly_after=False)


def _first_opening(cadence: Cadence, moment: datetime, *, strictly_after: bool) -> Window:
    validate(cadence)
    _require_aware(moment, "moment")
    zone = _zone(cadence.time_zone)
    # Local dates may jump by up to a day around odd transitions; rounds are at least 7 days
    # apart, so starting one round before the local date's round never misses the answer.
    number = max(1, _rounds_on_or_before(cadence, moment.astimezone(zone).date()) - 1)
    while True:
        candidate = _window(cadence, zone, number)
        if candidate.opens_at > moment or (not strictly_after and candidate.opens_at == moment):
            return candidate
        number += 1


def _window(cadence: Cadence, zone: ZoneInfo, number: int) -> Window:
    try:
        opens_on = _opening_date(cadence, number)
        opens_at = _local_midnight(opens_on, zone)
        closes_at = _local_midnight(opens_on + timedelta(days=cadence.open_days), zone)
        if closes_at <= opens_at:
            # The zone skipped opens_on entirely (Pacific/Apia, 2011-12-30): keep one real day
            # open rather than a round nobody could answer.
            closes_at = _local_midnight(opens_on + timedelta(days=cadence.open_days + 1), zone)
    except OverflowError:
        raise ValueError(f"round {number} of this cadence would open after the year 9999") from None
    return Window(number=number, opens_on=opens_on, opens_at=opens_at, closes_at=closes_at)


def _opening_date(cadence: Cadence, number: int) -> date:
    step = _STEP[cadence.every]
    if cadence.every in ("weekly", "biweekly"):
        return _first_weekday(cadence) + timedelta(weeks=(number - 1) * step)
    return _month_day(_first_month(cadence) + (number - 1) * step, cadence.day_of_month)


def _rounds_on_or_before(cadence: Cadence, day: date) -> int:
    """How many rounds open on or before the local date `day` (0 if none)."""
    step = _STEP[cadence.every]
    if cadence.every in ("weekly", "biweekly"):
        days = (day - _first_weekday(cadence)).days
        return days // (7 * step) + 1 if days >= 0 else 0
    first = _first_month(cadence)
    k = (day.year * 12 + day.month - 1 - first) // step
    if k >= 0 and _month_day(first + k * step, cadence.day_of_month) > day:
        k -= 1
    return max(k + 1, 0)


def _first_weekday(cadence: Cadence) -> date:
    return cadence.start + timedelta(days=(cadence.weekday - cadence.start.weekday()) % 7)


def _first_month(cadence: Cadence) -> int:
    """Months since year 0 of the first monthly opening on or after start."""
    month = cadence.start.year * 12 + cadence.start.month - 1
    return month if _month_day(month, cadence.day_of_month) >= cadence.start else month + 1


def _month_day(month_index: int, day_of_month: int) -> date:
    year, month = divmod(month_index, 12)
    if year > MAXYEAR:
        raise OverflowError
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day_of_month, last))


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The aware UTC instant at which `day` starts in `zone`."""
    wall = datetime(day.year, day.month, day.day)
    # fold=0 picks the first of two midnights when clocks fall back over midnight.
    instant = wall.replace(tzinfo=zone).astimezone(UTC)
    if _wall_clock(instant, zone) == wall:
        return instant
    # Midnight does not exist (clocks jump forward over it, e.g. America/Santiago): the day
    # starts at the first instant that exists after it, the end of the jump. fold=1 gives an
    # instant before the jump and fold=0 one at or after its end; bisect to the second.
    before = int(wall.replace(tzinfo=zone, fold=1).astimezone(UTC).timestamp())
    after = int(instant.timestamp())
    while after - before > 1:
        middle = (before + after) // 2
        if _wall_clock(datetime.fromtimestamp(middle, UTC), zone) >= wall:
            after = middle
        else:
            before = middle
    return datetime.fromtimestamp(after, UTC)


def _wall_clock(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _zone(name: str) -> ZoneInfo:
    # "localtime" is whatever the server is set to, so the schedule would move with the host.
    if isinstance(name, str) and name != "localtime":
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise CadenceError(
        f"unknown time zone {name!r}: use an IANA name such as 'Europe/Madrid', "
        "'America/New_York' or 'UTC'"
    )


def _is_int_between(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _require_aware(moment: datetime, name: str) -> None:
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime such as datetime.now(UTC): {moment!r}")
