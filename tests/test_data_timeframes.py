"""Timeframes, bar-series ids and period alignment."""

import pickle
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from osmarkets.data import UNITS, Alignment, BarSeriesID, Timeframe, period_bounds, period_starts

CODES = ["S5", "S10", "M1", "M5", "M15", "M30", "H1", "H4", "H12", "D", "W", "M"]


@pytest.mark.parametrize("code", CODES)
def test_oanda_codes_round_trip(code):
    tf = Timeframe.parse(code)
    assert tf.code == code
    assert Timeframe.parse((tf.size, tf.unit)) == tf


def test_codes_mean_what_oanda_means():
    assert Timeframe.parse("M1") == (1, "Minutes")
    assert Timeframe.parse("M") == (1, "Months")
    assert Timeframe.parse("H4") == (4, "Hours")
    assert Timeframe.parse("D") == (1, "Days")
    assert Timeframe.parse("W") == (1, "Weeks")
    assert Timeframe.parse((5, "Seconds")).code == "S5"
    assert Timeframe.parse((3, "Months")).code == "MN3"


@given(st.integers(1, 500), st.sampled_from(UNITS))
def test_any_timeframe_round_trips_through_its_code(size, unit):
    tf = Timeframe.parse((size, unit))
    assert Timeframe.parse(tf.code) == tf


@pytest.mark.parametrize(
    "bad", ["", "X1", "M0", "H", "S", "1M", "M-1", (0, "Minutes"), (1, "Fortnights"), (1.5, "H"),
            (True, "Minutes"), None, 5, ("M1",)],
)  # fmt: skip
def test_unknown_timeframe_raises_naming_it(bad):
    with pytest.raises(ValueError, match="timeframe"):
        Timeframe.parse(bad)


def test_bar_series_id_forms_are_equal_and_hash_alike():
    a = BarSeriesID("EUR_USD", 1, "Minutes")
    forms = [
        ("EUR_USD", 1, "Minutes"),
        ("EUR_USD", "M1"),
        "EUR_USD:M1",
        "EUR_USD M1",
        a.key,
        ["EUR_USD", 1, "min"],
    ]
    for form in forms:
        parsed = BarSeriesID.parse(form)
        assert parsed == a
        assert hash(parsed) == hash(a)
    assert a == ("EUR_USD", 1, "Minutes")
    assert {("EUR_USD", 1, "Minutes"): 1}[a] == 1
    assert BarSeriesID.from_key(a.key.encode()) == a
    assert a.timeframe == Timeframe(1, "Minutes")
    assert str(a) == "EUR_USD:M1"


@pytest.mark.parametrize(
    "bad", [("EUR USD", 1, "Minutes"), ("", 1, "Minutes"), ("EUR_USD", 1, "Eons"), "EUR_USD",
            ("EUR_USD",), 42, ("EUR;USD", "M1")],
)  # fmt: skip
def test_bad_bar_series_id_raises(bad):
    with pytest.raises(ValueError):
        BarSeriesID.parse(bad)


def test_from_key_needs_the_terminator():
    with pytest.raises(ValueError, match="key"):
        BarSeriesID.from_key("EUR_USD M1")


symbols = st.from_regex(r"[A-Z]{3}_[A-Z]{3}|[A-Za-z0-9.]{1,8}", fullmatch=True)
bsids = st.builds(
    lambda s, size, unit: BarSeriesID(s, size, unit),
    symbols,
    st.integers(1, 120),
    st.sampled_from(UNITS),
)


@given(bsids, bsids)
def test_keys_are_prefix_free(a, b):
    # A ZeroMQ SUB socket matches topics by prefix: no key may be a prefix of another's.
    if a != b:
        assert not b.key.startswith(a.key)
        assert not a.key.startswith(b.key)
    assert BarSeriesID.from_key(a.key) == a


def test_m1_key_is_not_a_prefix_of_m15():
    assert not BarSeriesID("EUR_USD", 15, "Minutes").key.startswith(
        BarSeriesID("EUR_USD", 1, "Minutes").key
    )


@given(bsids)
def test_bar_series_id_pickles(bsid):
    again = pickle.loads(pickle.dumps(bsid))
    assert again == bsid
    assert type(again) is BarSeriesID
    assert again.key == bsid.key


@given(st.integers(0, 2**62), st.sampled_from(["S5", "M1", "M15", "H1", "H4"]))
def test_intraday_periods_are_utc_multiples(t, code):
    tf = Timeframe.parse(code)
    start, end = period_bounds(t, tf)
    assert start <= t < end
    assert start % tf.nanoseconds == 0
    assert end - start == tf.nanoseconds
    assert period_starts(np.array([t]), tf)[0] == start


def _direct_day_start(t_ns, hour=17, tz="America/New_York", weekly=None):
    """The alignment rule written out with zoneinfo, one time at a time."""
    zone = ZoneInfo(tz)
    local = datetime.fromtimestamp(t_ns / 1e9, zone).replace(tzinfo=None)
    day = (local - timedelta(hours=hour)).date()
    if weekly is not None:
        day -= timedelta(days=(day.weekday() - weekly) % 7)
    wall = datetime(day.year, day.month, day.day, hour)
    return int(pd.Timestamp(wall).tz_localize(tz).value)


times_2024 = st.integers(
    int(pd.Timestamp("2024-01-01", tz="UTC").value),
    int(pd.Timestamp("2025-01-01", tz="UTC").value),
).map(lambda t: t - t % 1_000_000)  # ms, as zoneinfo's float seconds need


@settings(max_examples=200)
@given(times_2024)
def test_daily_and_weekly_starts_follow_the_new_york_rule(t):
    assert period_starts(np.array([t]), Timeframe(1, "Days"))[0] == _direct_day_start(t)
    weekly = period_starts(np.array([t]), Timeframe(1, "Weeks"))[0]
    assert weekly == _direct_day_start(t, weekly=4)  # Friday
    start, end = period_bounds(t, Timeframe(1, "Days"))
    assert start <= t < end
    assert period_starts(np.array([end]), Timeframe(1, "Days"))[0] == end


def test_day_around_dst_start_is_23_hours():
    # 2024-03-10: New York springs forward; the trading day opening 17:00 EST on the 9th...
    t = int(pd.Timestamp("2024-03-10 12:00", tz="UTC").value)
    start, end = period_bounds(t, Timeframe(1, "Days"))
    assert pd.Timestamp(start, tz="UTC").tz_convert("America/New_York").hour == 17
    assert pd.Timestamp(end, tz="UTC").tz_convert("America/New_York").hour == 17
    assert end - start == 23 * 3600 * 10**9


def test_other_alignments():
    t = int(pd.Timestamp("2024-07-03 10:00", tz="UTC").value)
    utc_midnight = Alignment(0, "UTC", "Monday")
    day = period_starts(np.array([t]), Timeframe(1, "Days"), utc_midnight)[0]
    assert day == int(pd.Timestamp("2024-07-03", tz="UTC").value)
    week = period_starts(np.array([t]), Timeframe(1, "Weeks"), utc_midnight)[0]
    assert week == int(pd.Timestamp("2024-07-01", tz="UTC").value)
    month = period_starts(np.array([t]), Timeframe(1, "Months"), utc_midnight)[0]
    assert month == int(pd.Timestamp("2024-07-01", tz="UTC").value)


@pytest.mark.parametrize(
    "alignment, field",
    [(Alignment(24), "daily_alignment"), (Alignment(17, "Mars/Olympus"), "alignment_timezone"),
     (Alignment(17, "UTC", "Caturday"), "weekly_alignment")],
)  # fmt: skip
def test_bad_alignment_raises_naming_the_field(alignment, field):
    with pytest.raises(ValueError, match=field):
        period_starts(np.array([0]), Timeframe(1, "Days"), alignment)
