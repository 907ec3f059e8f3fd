"""Batch resampling: equal to the streaming path and to an independent pandas computation.

Every property test builds the expected bars twice more, independently: with
``pandas.resample().agg(first/max/min/last/count|sum)`` for intraday frames, and with the
alignment rule written out with ``zoneinfo`` and a pandas groupby for days and weeks (the
generated streams cross the 2024 daylight saving changes).
"""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from osmarkets.data import (
    BAR_DTYPE,
    BarResampler,
    DataError,
    TickAggregator,
    Timeframe,
    records_to_frame,
    resample,
    ticks_to_bars,
)
from osmarkets.data.timeframes import Alignment

S = 10**9
M = 60 * S
H = 60 * M
SIDES = ("bid", "ask")
OHLC = ("open", "high", "low", "close")
DEFAULT = Alignment()
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Starts just before the 2024 New York / London daylight saving changes, and an ordinary week.
STARTS = [
    pd.Timestamp(s, tz="UTC").value
    for s in ("2024-03-07 15:00", "2024-03-29 20:00", "2024-10-31 19:00", "2024-06-05 03:17")
]


def index_of(times):
    ns = np.asarray(times, dtype=np.int64).view("M8[ns]")
    return pd.DatetimeIndex(ns, name="time").tz_localize("UTC")


@st.composite
def tick_frames(draw, max_gap=3 * H, unit=1):
    """Ticks with repeated timestamps, sub-period steps and gaps of several periods."""
    n = draw(st.integers(1, 120))
    step = st.one_of(
        st.just(0),  # several ticks with the same timestamp
        st.integers(1, 20 * S),
        st.integers(1, max_gap),
    )
    steps = draw(st.lists(step, min_size=n, max_size=n))
    times = draw(st.sampled_from(STARTS)) + np.cumsum(steps, dtype=np.int64)
    times -= times % unit
    bids = draw(st.lists(st.floats(0.5, 2.0), min_size=n, max_size=n))
    spreads = draw(st.lists(st.integers(0, 40), min_size=n, max_size=n))
    bid = np.array(bids)
    ask = bid + np.array(spreads) * 1e-5
    return pd.DataFrame({"bid": bid, "ask": ask}, index=index_of(times))


def stream_ticks(frame, timeframe, alignment=DEFAULT):
    agg = TickAggregator(timeframe, alignment)
    bars = []
    for tick in zip(frame.index.asi8.tolist(), frame["bid"].tolist(), frame["ask"].tolist(),
                    strict=True):  # fmt: skip
        bars.extend(agg.update(tick))
    last = agg.flush()
    if last is not None:
        bars.append(last)
    return records_to_frame(np.array([tuple(b) for b in bars], dtype=BAR_DTYPE))


def stream_bars(frame, timeframe, alignment=DEFAULT):
    res = BarResampler(timeframe, alignment)
    out = []
    for record in frame.itertuples():
        out.extend(res.update((record.Index.value, *record[1:])))
    last = res.flush()
    if last is not None:
        out.append(last)
    return records_to_frame(np.array([tuple(b) for b in out], dtype=BAR_DTYPE))


def assert_same(actual, expected):
    pd.testing.assert_frame_equal(
        actual[list(expected.columns)], expected, check_exact=True, check_freq=False
    )


def pandas_rule(tf):
    return f"{tf.size}" + {"Seconds": "s", "Minutes": "min", "Hours": "h"}[tf.unit]


def pandas_tick_bars(frame, tf):
    """ticks_to_bars computed with pandas resample, independently."""
    data = pd.DataFrame(
        {"mid": (frame["bid"] + frame["ask"]) / 2, "bid": frame["bid"], "ask": frame["ask"]}
    )
    grouped = data.resample(pandas_rule(tf), origin="epoch", closed="left", label="left")
    return _ohlc_from_groups(grouped, "mid", volume=("mid", "count"))


def _ohlc_from_groups(grouped, mid, volume):
    columns = {}
    for prefix, column in (("", mid), ("bid_", "bid"), ("ask_", "ask")):
        for name, how in zip(OHLC, ("first", "max", "min", "last"), strict=True):
            columns[prefix + name] = getattr(grouped[column], how)()
        if prefix == "":
            columns["volume"] = getattr(grouped[volume[0]], volume[1])().astype(float)
    out = pd.DataFrame(columns)
    counts = grouped[mid].count()
    return out[counts.to_numpy() > 0]


def direct_period_start(t_ns, unit, hour, tz, weekday=4):
    """OANDA's alignment rule written out with zoneinfo, one time at a time."""
    zone = ZoneInfo(tz)
    local = datetime.fromtimestamp(t_ns // S, zone).replace(tzinfo=None)
    day = (local - timedelta(hours=hour)).date()
    if unit == "Weeks":
        day -= timedelta(days=(day.weekday() - weekday) % 7)
    wall = datetime(day.year, day.month, day.day, hour, tzinfo=zone)
    return int(wall.timestamp()) * S


def direct_tick_bars(frame, unit, hour, tz):
    keys = [direct_period_start(t, unit, hour, tz) for t in frame.index.asi8]
    bid, ask = frame["bid"].to_numpy(), frame["ask"].to_numpy()
    data = pd.DataFrame({"mid": (bid + ask) / 2, "bid": bid, "ask": ask}, index=index_of(keys))
    out = _ohlc_from_groups(data.groupby(level=0), "mid", volume=("mid", "count"))
    out.index.name = "time"
    return out


INTRADAY = ["S5", "M1", "M5", "M15", "H1", "H4", (7, "Minutes")]


@PROPERTY
@given(st.data(), st.sampled_from(INTRADAY))
def test_ticks_to_bars_streaming_batch_and_pandas_agree_intraday(data, code):
    tf = Timeframe.parse(code)
    # Gaps up to 40 periods: several empty periods, without pandas filling millions of bins;
    # gaps up to 2 periods: denser data, which the batch path locates by binary search.
    periods = data.draw(st.sampled_from([2, 40]))
    frame = data.draw(tick_frames(max_gap=periods * tf.nanoseconds))
    batch = ticks_to_bars(frame, code)
    assert_same(stream_ticks(frame, tf), batch)
    assert_same(batch, pandas_tick_bars(frame, tf))
    assert batch["volume"].sum() == len(frame)
    assert batch.index.is_unique and batch.index.is_monotonic_increasing


ALIGNMENTS = st.sampled_from(
    [(17, "America/New_York"), (0, "America/New_York"), (5, "Europe/London"), (0, "UTC")]
)


@PROPERTY
@given(tick_frames(max_gap=30 * H, unit=S), st.sampled_from(["Days", "Weeks"]), ALIGNMENTS)
def test_ticks_to_bars_days_and_weeks_follow_the_alignment_rule(frame, unit, alignment):
    hour, tz = alignment
    batch = ticks_to_bars(frame, (1, unit), daily_alignment=hour, alignment_timezone=tz)
    assert_same(batch, direct_tick_bars(frame, unit, hour, tz))
    assert_same(stream_ticks(frame, Timeframe(1, unit), Alignment(hour, tz)), batch)


def test_daily_bar_on_the_dst_change_opens_at_17h_new_york_both_sides():
    # Ticks every 30 minutes from Friday 8 March to Tuesday 12 March 2024 (DST starts Sunday).
    times = np.arange(
        pd.Timestamp("2024-03-08", tz="UTC").value, pd.Timestamp("2024-03-12", tz="UTC").value,
        30 * M,
    )  # fmt: skip
    frame = pd.DataFrame({"bid": 1.0, "ask": 1.0001}, index=index_of(times))
    bars = ticks_to_bars(frame, "D")
    local = bars.index.tz_convert("America/New_York")
    assert set(local.hour) == {17}
    lengths = np.diff(bars.index.asi8) // H
    assert 23 in lengths  # the day that loses an hour


@pytest.mark.parametrize("unit", ["Days", "Weeks"])
@pytest.mark.parametrize("hour, tz", [(17, "America/New_York"), (0, "Asia/Kolkata"),
                                      (5, "Europe/London"), (2, "America/New_York")])  # fmt: skip
def test_dense_ticks_across_dst_changes_follow_the_alignment_rule(unit, hour, tz):
    # Ticks every 7 minutes (denser than the quarter-hour grid the batch path locates) for a
    # fortnight around each 2024 change; 02:00 New York does not exist on 10 March.
    rng = np.random.default_rng(1)
    for day in ("2024-03-03", "2024-03-24", "2024-10-20", "2024-10-27"):
        start = pd.Timestamp(day, tz="UTC").value
        times = start + np.arange(0, 14 * 24 * 60, 7, dtype=np.int64) * M
        bid = 1 + rng.random(len(times))
        frame = pd.DataFrame({"bid": bid, "ask": bid + 1e-4}, index=index_of(times))
        batch = ticks_to_bars(frame, (1, unit), daily_alignment=hour, alignment_timezone=tz)
        assert_same(stream_ticks(frame, Timeframe(1, unit), Alignment(hour, tz)), batch)
        if hour != 2:  # the zoneinfo rule below has no answer for a wall time that is skipped
            assert_same(batch, direct_tick_bars(frame, unit, hour, tz))


@st.composite
def bar_frames(draw, quoted, max_gap_minutes=180):
    n = draw(st.integers(1, 150))
    steps = draw(st.lists(st.integers(1, max_gap_minutes), min_size=n, max_size=n))
    times = draw(st.sampled_from(STARTS)) // M * M + np.cumsum(steps) * M
    o = np.array(draw(st.lists(st.floats(1.0, 2.0), min_size=n, max_size=n)))
    c = np.array(draw(st.lists(st.floats(1.0, 2.0), min_size=n, max_size=n)))
    up = np.array(draw(st.lists(st.floats(0, 0.1), min_size=n, max_size=n)))
    down = np.array(draw(st.lists(st.floats(0, 0.1), min_size=n, max_size=n)))
    volume = np.array(draw(st.lists(st.integers(0, 10_000), min_size=n, max_size=n)), float)
    frame = pd.DataFrame(
        {"open": o, "high": np.maximum(o, c) + up, "low": np.minimum(o, c) - down, "close": c,
         "volume": volume},
        index=index_of(times),
    )  # fmt: skip
    if quoted:
        half = np.array(draw(st.lists(st.integers(0, 20), min_size=n, max_size=n))) * 1e-5
        for side, sign in (("bid", -1), ("ask", 1)):
            for name in OHLC:
                frame[f"{side}_{name}"] = frame[name] + sign * half
    return frame


def pandas_bar_bars(frame, grouped):
    columns = {}
    prefixes = ("", "bid_", "ask_") if "bid_open" in frame.columns else ("",)
    for prefix in prefixes:
        for name, how in zip(OHLC, ("first", "max", "min", "last"), strict=True):
            columns[prefix + name] = getattr(grouped[prefix + name], how)()
        if prefix == "":
            columns["volume"] = grouped["volume"].sum()
    counts = grouped["open"].count()
    return pd.DataFrame(columns)[counts.to_numpy() > 0]


@PROPERTY
@given(st.booleans().flatmap(bar_frames), st.sampled_from(["M5", "M15", "H1", "H4", "M30"]))
def test_resample_streaming_batch_and_pandas_agree_intraday(frame, code):
    tf = Timeframe.parse(code)
    batch = resample(frame, code)
    assert_same(stream_bars(frame, tf), batch)
    grouped = frame.resample(pandas_rule(tf), origin="epoch", closed="left", label="left")
    assert_same(batch, pandas_bar_bars(frame, grouped))
    assert batch["volume"].sum() == frame["volume"].sum()


@PROPERTY
@given(
    st.booleans().flatmap(lambda q: bar_frames(q, max_gap_minutes=2000)),
    st.sampled_from(["Days", "Weeks"]),
    ALIGNMENTS,
)
def test_resample_days_and_weeks_follow_the_alignment_rule(frame, unit, alignment):
    hour, tz = alignment
    batch = resample(frame, (1, unit), daily_alignment=hour, alignment_timezone=tz)
    keys = index_of([direct_period_start(t, unit, hour, tz) for t in frame.index.asi8])
    expected = pandas_bar_bars(frame, frame.set_axis(keys).groupby(level=0))
    expected.index.name = "time"
    assert_same(batch, expected)
    assert_same(stream_bars(frame, Timeframe(1, unit), Alignment(hour, tz)), batch)


def test_trade_ticks_give_plain_ohlcv():
    frame = pd.DataFrame(
        {"price": [10.0, 12.0, 9.0, 11.0]},
        index=index_of([0, 10 * S, 20 * S, 70 * S]),
    )
    bars = ticks_to_bars(frame, "M1")
    assert list(bars.columns) == ["open", "high", "low", "close", "volume"]
    assert bars.iloc[0].tolist() == [10.0, 12.0, 9.0, 9.0, 3.0]
    assert bars.iloc[1].tolist() == [11.0, 11.0, 11.0, 11.0, 1.0]


def test_empty_input_gives_empty_output_with_the_columns():
    empty = pd.DataFrame({"bid": [], "ask": []}, index=index_of([]))
    bars = ticks_to_bars(empty, "M1")
    assert len(bars) == 0
    assert "bid_close" in bars.columns
    assert len(resample(bars, "M5")) == 0


@pytest.mark.parametrize("function", [ticks_to_bars, resample])
def test_bad_arguments_raise(function):
    frame = pd.DataFrame({"bid": [1.0], "ask": [1.1]}, index=index_of([0]))
    if function is resample:
        frame = ticks_to_bars(frame, "M1")
    with pytest.raises(ValueError, match="timeframe"):
        function(frame, "M0")
    with pytest.raises(ValueError, match="daily_alignment"):
        function(frame, "D", daily_alignment=25)
    with pytest.raises(ValueError, match="alignment_timezone"):
        function(frame, "D", alignment_timezone="Nowhere/Special")
    with pytest.raises(ValueError, match="weekly_alignment"):
        function(frame, "W", weekly_alignment="Funday")


def test_bad_input_is_validated_first():
    frame = pd.DataFrame({"bid": [1.0, 1.2], "ask": [1.1, 1.1]}, index=index_of([0, S]))
    with pytest.raises(DataError, match="bid is above ask at row 1"):
        ticks_to_bars(frame, "M1")
    bars = ticks_to_bars(frame.iloc[:1], "M1")
    twice = pd.concat([bars, bars])
    with pytest.raises(DataError, match="repeats"):
        resample(twice, "M5")
