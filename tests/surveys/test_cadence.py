"""Rounds follow from the cadence alone: on the right local day, across daylight saving, never
skipped, never doubled, never overlapping."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from surveys.cadence import (
    Cadence,
    CadenceError,
    Window,
    first_window_after,
    next_window,
    opening_dates,
    validate,
    window,
    window_at,
    windows_between,
)

MICROSECOND = timedelta(microseconds=1)
HOUR = timedelta(hours=1)
MAX_OPEN_DAYS = {"weekly": 6, "biweekly": 13, "monthly": 27, "quarterly": 88}
ZONES = [
    "UTC",
    "Europe/Madrid",
    "America/New_York",
    "America/Santiago",  # clocks jump over midnight
    "America/Havana",  # midnight happens twice when clocks fall back
    "Australia/Lord_Howe",  # 30-minute daylight saving
    "Asia/Kolkata",
    "Pacific/Apia",  # skipped 2011-12-30 entirely
]


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def opens(cadence: Cadence, count: int) -> list[date]:
    return [w.opens_on for w in (window(cadence, n) for n in range(1, count + 1))]


def starts_day(instant: datetime, day: date, zone: ZoneInfo) -> bool:
    """instant is the first moment whose local wall clock reads `day` 00:00 or later."""
    midnight = datetime(day.year, day.month, day.day)
    wall = instant.astimezone(zone).replace(tzinfo=None)
    just_before = (instant - timedelta(seconds=1)).astimezone(zone).replace(tzinfo=None)
    return wall >= midnight > just_before


# --- hand-checked schedules -------------------------------------------------------------------


def test_weekly_monday_round_in_madrid_moves_an_hour_in_utc_at_spring_forward() -> None:
    cadence = Cadence("weekly", date(2025, 3, 17), weekday=0, time_zone="Europe/Madrid")
    before, after = window(cadence, 2), window(cadence, 3)
    assert before == Window(2, date(2025, 3, 24), utc(2025, 3, 23, 23), utc(2025, 3, 26, 23))
    assert after == Window(3, date(2025, 3, 31), utc(2025, 3, 30, 22), utc(2025, 4, 2, 22))


def test_weekly_monday_round_in_madrid_moves_back_at_fall_back() -> None:
    cadence = Cadence("weekly", date(2025, 10, 20), weekday=0, time_zone="Europe/Madrid")
    before, after = window(cadence, 1), window(cadence, 2)
    assert before == Window(1, date(2025, 10, 20), utc(2025, 10, 19, 22), utc(2025, 10, 22, 22))
    assert after == Window(2, date(2025, 10, 27), utc(2025, 10, 26, 23), utc(2025, 10, 29, 23))


@pytest.mark.parametrize(("opens_on", "hours"), [(date(2025, 3, 29), 71), (date(2025, 10, 25), 73)])
def test_three_day_round_over_a_clock_change_lasts_three_local_days(
    opens_on: date, hours: int
) -> None:
    cadence = Cadence("weekly", opens_on, weekday=5, open_days=3, time_zone="Europe/Madrid")
    round_ = window(cadence, 1)
    assert round_.opens_on == opens_on
    assert round_.closes_at - round_.opens_at == hours * HOUR


def test_monthly_on_the_31st_opens_on_the_last_day_of_shorter_months() -> None:
    cadence = Cadence("monthly", date(2027, 1, 1), day_of_month=31)
    assert list(islice(opening_dates(cadence), 4)) == [
        date(2027, 1, 31), date(2027, 2, 28), date(2027, 3, 31), date(2027, 4, 30),
    ]
    leap = Cadence("monthly", date(2028, 2, 1), day_of_month=31)
    assert opens(leap, 2) == [date(2028, 2, 29), date(2028, 3, 31)]


def test_monthly_starting_after_the_day_opens_next_month() -> None:
    cadence = Cadence("monthly", date(2025, 1, 16), day_of_month=15)
    assert opens(cadence, 2) == [date(2025, 2, 15), date(2025, 3, 15)]


def test_quarterly_runs_every_third_month_from_the_first_opening() -> None:
    cadence = Cadence("quarterly", date(2025, 2, 20), day_of_month=15)
    assert opens(cadence, 5) == [
        date(2025, 3, 15), date(2025, 6, 15), date(2025, 9, 15), date(2025, 12, 15),
        date(2026, 3, 15),
    ]
    end_of_month = Cadence("quarterly", date(2025, 11, 1), day_of_month=31, open_days=88)
    assert opens(end_of_month, 3) == [date(2025, 11, 30), date(2026, 2, 28), date(2026, 5, 31)]
    first, second = window(end_of_month, 1), window(end_of_month, 2)
    assert first.closes_at <= second.opens_at


def test_biweekly_counts_from_the_first_weekday_on_or_after_start() -> None:
    cadence = Cadence("biweekly", date(2025, 1, 1), weekday=0)  # a Wednesday
    assert opens(cadence, 3) == [date(2025, 1, 6), date(2025, 1, 20), date(2025, 2, 3)]
    assert window_at(cadence, utc(2025, 1, 14, 12)) is None  # the Monday in between is off
    assert window_at(cadence, utc(2025, 1, 21, 12)) == window(cadence, 2)


def test_round_opens_on_start_when_start_is_the_weekday() -> None:
    cadence = Cadence("weekly", date(2025, 1, 6), weekday=0)
    assert window(cadence, 1).opens_on == date(2025, 1, 6)


def test_santiago_round_opens_when_the_skipped_midnight_would_have_been() -> None:
    # 2024-09-08: clocks went from 23:59:59 -04 straight to 01:00 -03.
    cadence = Cadence("weekly", date(2024, 9, 8), weekday=6, time_zone="America/Santiago")
    assert window(cadence, 1).opens_at == utc(2024, 9, 8, 4)


def test_havana_round_opens_at_the_first_of_two_midnights() -> None:
    # 2024-11-03: clocks went from 00:59:59 -04 back to 00:00 -05.
    cadence = Cadence("weekly", date(2024, 11, 3), weekday=6, time_zone="America/Havana")
    assert window(cadence, 1).opens_at == utc(2024, 11, 3, 4)


def test_toronto_1919_round_opens_at_the_end_of_a_jump_that_started_before_midnight() -> None:
    # 1919-03-30 23:30 -05 jumped to 1919-03-31 00:30 -04: the day began at 00:30, not 01:00.
    cadence = Cadence("weekly", date(1919, 3, 31), weekday=0, time_zone="America/Toronto")
    assert window(cadence, 1).opens_at == utc(1919, 3, 31, 4, 30)


def test_apia_round_on_the_skipped_day_still_stays_open_a_day() -> None:
    cadence = Cadence("weekly", date(2011, 12, 30), weekday=4, open_days=1,
                      time_zone="Pacific/Apia")
    round_ = window(cadence, 1)
    assert (round_.opens_at, round_.closes_at) == (utc(2011, 12, 30, 10), utc(2011, 12, 31, 10))


def test_no_round_is_open_before_the_first_or_between_rounds() -> None:
    cadence = Cadence("weekly", date(2025, 1, 6), weekday=0, open_days=2)
    assert window_at(cadence, utc(2025, 1, 5, 23, 59)) is None
    assert window_at(cadence, utc(2025, 1, 7, 23, 59)) == window(cadence, 1)
    assert window_at(cadence, utc(2025, 1, 8)) is None


def test_next_window_is_strictly_after_and_first_window_after_includes_the_moment() -> None:
    cadence = Cadence("weekly", date(2025, 1, 6), weekday=0)
    opening = window(cadence, 2).opens_at
    assert next_window(cadence, opening) == window(cadence, 3)
    assert first_window_after(cadence, opening) == window(cadence, 2)
    assert next_window(cadence, utc(1999, 1, 1)) == window(cadence, 1)


def test_windows_between_is_half_open() -> None:
    cadence = Cadence("weekly", date(2025, 1, 6), weekday=0)
    start, end = window(cadence, 1).opens_at, window(cadence, 4).opens_at
    assert [w.number for w in windows_between(cadence, start, end)] == [1, 2, 3]
    assert windows_between(cadence, end, start) == []
    assert len(windows_between(cadence, utc(2025, 1, 1), utc(2026, 1, 1))) == 52


def test_far_rounds_are_computed_without_walking_the_schedule() -> None:
    cadence = Cadence("weekly", date(2000, 1, 3), weekday=0, time_zone="Europe/Madrid")
    began = time.perf_counter()
    far = window(cadence, 300_000)
    assert far.opens_on == date(2000, 1, 3) + timedelta(weeks=299_999)
    assert window_at(cadence, far.opens_at) == far
    assert time.perf_counter() - began < 0.5


def test_cadence_decodes_from_json_and_refuses_unknown_fields() -> None:
    raw = b"""{"every": "monthly", "start": "2025-01-01", "day_of_month": 31,
              "time_zone": "Europe/Madrid"}"""
    assert msgspec.json.decode(raw, type=Cadence) == Cadence(
        "monthly", date(2025, 1, 1), day_of_month=31, time_zone="Europe/Madrid"
    )
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"every": "weekly", "start": "2025-01-01", "hour": 9}', type=Cadence)


# --- validation -------------------------------------------------------------------------------


def test_valid_cadence_is_returned_unchanged() -> None:
    cadence = Cadence(
        "quarterly", date(2025, 1, 1), day_of_month=31, open_days=88, time_zone="Asia/Kolkata"
    )
    assert validate(cadence) is cadence


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"every": "daily"},
            "every must be one of weekly, biweekly, monthly or quarterly, not 'daily'",
        ),
        (
            {"start": datetime(2025, 1, 1)},
            "start must be a date such as 2025-01-06, not datetime.datetime(2025, 1, 1, 0, 0)",
        ),
        ({"weekday": 7}, "weekday must be between 0 (Monday) and 6 (Sunday), not 7"),
        ({"weekday": True}, "weekday must be between 0 (Monday) and 6 (Sunday), not True"),
        (
            {"day_of_month": 0},
            "day_of_month must be between 1 and 31 (shorter months use their last day), not 0",
        ),
        ({"open_days": 7}, "open_days must be between 1 and 6 for a weekly survey, not 7"),
        ({"open_days": 0}, "open_days must be between 1 and 6 for a weekly survey, not 0"),
        (
            {"every": "biweekly", "open_days": 14},
            "open_days must be between 1 and 13 for a biweekly survey, not 14",
        ),
        (
            {"every": "monthly", "open_days": 28},
            "open_days must be between 1 and 27 for a monthly survey, not 28",
        ),
        (
            {"every": "quarterly", "open_days": 89},
            "open_days must be between 1 and 88 for a quarterly survey, not 89",
        ),
        (
            {"time_zone": "Mars/Olympus"},
            "unknown time zone 'Mars/Olympus': "
            "use an IANA name such as 'Europe/Madrid', 'America/New_York' or 'UTC'",
        ),
        ({"time_zone": "/etc/passwd"}, "unknown time zone '/etc/passwd'"),
        ({"time_zone": ""}, "unknown time zone ''"),
        ({"time_zone": "localtime"}, "unknown time zone 'localtime'"),
    ],
)
def test_invalid_cadence_says_what_is_allowed(changes: dict[str, object], message: str) -> None:
    cadence = msgspec.structs.replace(Cadence("weekly", date(2025, 1, 1)), **changes)
    with pytest.raises(CadenceError) as caught:
        validate(cadence)
    assert str(caught.value).startswith(message)
    with pytest.raises(CadenceError):
        window(cadence, 1)


def test_round_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="round numbers start at 1, not 0"):
        window(Cadence("weekly", date(2025, 1, 1)), 0)


def test_moments_must_be_aware() -> None:
    with pytest.raises(ValueError, match="moment must be an aware datetime"):
        window_at(Cadence("weekly", date(2025, 1, 1)), datetime(2025, 1, 6))


def test_rounds_past_the_year_9999_are_refused() -> None:
    cadence = Cadence("quarterly", date(2025, 1, 1))
    with pytest.raises(ValueError, match="would open after the year 9999"):
        window(cadence, 40_000)
    assert list(opening_dates(Cadence("monthly", date(9999, 11, 1))))[-1] == date(9999, 12, 1)


# --- properties over random cadences ----------------------------------------------------------


@st.composite
def cadences(draw: st.DrawFn) -> Cadence:
    every = draw(st.sampled_from(list(MAX_OPEN_DAYS)))
    return Cadence(
        every=every,
        start=draw(st.dates(date(2000, 1, 1), date(2100, 12, 31))),
        weekday=draw(st.integers(0, 6)),
        day_of_month=draw(st.integers(1, 31)),
        open_days=draw(st.integers(1, MAX_OPEN_DAYS[every])),
        time_zone=draw(st.sampled_from(ZONES)),
    )


ROUNDS = 16
tricky = [
    Cadence("weekly", date(2011, 12, 20), weekday=4, open_days=1, time_zone="Pacific/Apia"),
    Cadence("weekly", date(2011, 12, 20), weekday=5, open_days=6, time_zone="Pacific/Apia"),
    Cadence("monthly", date(2011, 10, 1), day_of_month=30, open_days=1, time_zone="Pacific/Apia"),
    Cadence("weekly", date(2024, 8, 1), weekday=6, open_days=1, time_zone="America/Santiago"),
    Cadence("biweekly", date(2024, 10, 1), weekday=5, open_days=13, time_zone="America/Havana"),
    Cadence("quarterly", date(2025, 1, 31), day_of_month=31, open_days=88,
            time_zone="Australia/Lord_Howe"),
]
property_settings = settings(max_examples=200, deadline=None)


def with_examples(test):  # type: ignore[no-untyped-def]
    for cadence in tricky:
        test = example(cadence)(test)
    return test


@property_settings
@with_examples
@given(cadences())
def test_rounds_are_in_order_and_never_overlap(cadence: Cadence) -> None:
    rounds = [window(cadence, n) for n in range(1, ROUNDS + 1)]
    assert rounds[0].opens_on >= cadence.start
    for earlier, later in zip(rounds, rounds[1:]):
        assert earlier.opens_on < later.opens_on
        assert earlier.opens_at < earlier.closes_at <= later.opens_at < later.closes_at


@property_settings
@with_examples
@given(cadences())
def test_rounds_open_and_close_at_local_midnight(cadence: Cadence) -> None:
    zone = ZoneInfo(cadence.time_zone)
    for n in range(1, ROUNDS + 1):
        round_ = window(cadence, n)
        assert round_.opens_at.utcoffset() == timedelta(0)
        assert starts_day(round_.opens_at, round_.opens_on, zone)
        close_day = round_.opens_on + timedelta(days=cadence.open_days)
        skipped_day = starts_day(round_.opens_at, close_day, zone)  # only Apia, 2011-12-30
        if skipped_day:
            close_day += timedelta(days=1)
        assert starts_day(round_.closes_at, close_day, zone)


@property_settings
@with_examples
@given(cadences())
def test_no_round_is_skipped_or_doubled(cadence: Cadence) -> None:
    days = opens(cadence, ROUNDS)
    if cadence.every in ("weekly", "biweekly"):
        step = 7 if cadence.every == "weekly" else 14
        assert (days[0] - cadence.start).days < 7
        assert all(day.weekday() == cadence.weekday for day in days)
        assert all((b - a).days == step for a, b in zip(days, days[1:]))
        return
    step = 1 if cadence.every == "monthly" else 3
    months = [day.year * 12 + day.month for day in days]
    first_possible = cadence.start.year * 12 + cadence.start.month
    assert months[0] in (first_possible, first_possible + 1)
    assert all(b - a == step for a, b in zip(months, months[1:]))
    for day in days:
        following_month = date(day.year + day.month // 12, day.month % 12 + 1, 1)
        last = (following_month - timedelta(days=1)).day
        assert day.day == min(cadence.day_of_month, last)


@property_settings
@given(cadences(), st.integers(1, 60), st.integers(1, 5_000))
def test_round_n_agrees_with_the_opening_dates(cadence: Cadence, n: int, far: int) -> None:
    assert window(cadence, n).opens_on == next(islice(opening_dates(cadence), n - 1, None))
    far_round = window(cadence, far)
    assert window_at(cadence, far_round.opens_at) == far_round


@property_settings
@with_examples
@given(cadences())
def test_each_round_is_found_from_inside_it_and_the_next_from_its_edges(cadence: Cadence) -> None:
    for n in range(1, ROUNDS + 1):
        round_, following = window(cadence, n), window(cadence, n + 1)
        assert window_at(cadence, round_.opens_at) == round_
        assert window_at(cadence, round_.closes_at - MICROSECOND) == round_
        assert window_at(cadence, round_.closes_at) != round_
        assert window_at(cadence, round_.opens_at - MICROSECOND) != round_
        assert next_window(cadence, round_.opens_at) == following
        assert next_window(cadence, round_.closes_at - MICROSECOND) == following
        assert first_window_after(cadence, round_.closes_at) == following
        assert first_window_after(cadence, round_.opens_at) == round_


@property_settings
@given(cadences(), st.datetimes(datetime(1999, 6, 1), datetime(2101, 6, 1), timezones=st.just(UTC)))
def test_any_moment_is_inside_at_most_one_round_and_before_the_next(
    cadence: Cadence, moment: datetime
) -> None:
    following = next_window(cadence, moment)
    assert following.opens_at > moment
    if following.number > 1:
        assert window(cadence, following.number - 1).opens_at <= moment
    current = window_at(cadence, moment)
    if current is not None:
        assert current.opens_at <= moment < current.closes_at
        assert current.number == following.number - 1
    elif following.number > 1:
        assert window(cadence, following.number - 1).closes_at <= moment


@property_settings
@given(
    cadences(),
    st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)),
    st.timedeltas(timedelta(0), timedelta(days=400)),
)
def test_windows_between_lists_exactly_the_rounds_opening_in_the_span(
    cadence: Cadence, start: datetime, span: timedelta
) -> None:
    end = start + span
    found = windows_between(cadence, start, end)
    first = first_window_after(cadence, start)
    if not found:
        assert first.opens_at >= end
        return
    assert found[0] == first
    assert [w.number for w in found] == list(range(first.number, first.number + len(found)))
    assert all(start <= w.opens_at < end for w in found)
    assert window(cadence, found[-1].number + 1).opens_at >= end
