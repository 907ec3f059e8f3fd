"""Streaming aggregation: TickAggregator and BarResampler, one record at a time."""

import math

import pandas as pd
import pytest

from osmarkets.data import Bar, BarResampler, DataError, Tick, TickAggregator

T0 = int(pd.Timestamp("2024-05-01 12:00", tz="UTC").value)
S = 10**9
M = 60 * S


def feed(agg, records):
    out = []
    for record in records:
        out.extend(agg.update(record))
    return out


def test_bars_close_when_a_later_period_starts():
    agg = TickAggregator("M1")
    ticks = [Tick(T0 + 1 * S, 1.0, 1.2), Tick(T0 + 20 * S, 1.4, 1.6), Tick(T0 + 59 * S, 0.8, 1.0)]
    assert feed(agg, ticks) == []
    forming = agg.forming
    assert forming is not None
    assert forming.time == T0
    assert (forming.open, forming.high, forming.low, forming.close) == (1.1, 1.5, 0.9, 0.9)
    assert (forming.bid_open, forming.bid_high, forming.bid_low, forming.bid_close) == (
        1.0, 1.4, 0.8, 0.8,
    )  # fmt: skip
    assert (forming.ask_high, forming.ask_low) == (1.6, 1.0)
    assert forming.volume == 3
    done = agg.update(Tick(T0 + M, 1.0, 1.1))
    assert done == [forming]
    assert agg.forming is not None and agg.forming.time == T0 + M


def test_a_jump_over_several_periods_emits_one_bar_and_no_empty_ones():
    agg = TickAggregator("M1")
    agg.update(Tick(T0 + 5 * S, 1.0, 1.0))
    done = agg.update(Tick(T0 + 7 * M + 3 * S, 1.1, 1.1))
    assert [bar.time for bar in done] == [T0]
    assert agg.forming.time == T0 + 7 * M


def test_repeated_timestamps_are_accepted_in_order():
    agg = TickAggregator("M1")
    feed(agg, [Tick(T0, 1.0, 1.0), Tick(T0, 1.3, 1.3), Tick(T0, 1.2, 1.2)])
    bar = agg.flush()
    assert bar is not None
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (1.0, 1.3, 1.0, 1.2, 3.0)


def test_flush_emits_once_and_refuses_ticks_of_the_flushed_period():
    agg = TickAggregator("M1")
    agg.update(Tick(T0, 1.0, 1.0))
    bar = agg.flush()
    assert bar is not None and bar.time == T0
    assert agg.flush() is None
    assert agg.forming is None
    with pytest.raises(DataError, match="backwards"):
        agg.update(Tick(T0 + 30 * S, 1.0, 1.0))
    assert agg.update(Tick(T0 + M, 1.0, 1.0)) == []
    assert agg.forming.time == T0 + M


def test_close_until_emits_when_the_clock_passes_the_period_end():
    agg = TickAggregator("M1")
    agg.update(Tick(T0 + S, 1.0, 1.0))
    assert agg.close_until(T0 + M - 1) == []
    [bar] = agg.close_until(T0 + M)
    assert bar.time == T0
    assert agg.close_until(T0 + 5 * M) == []


@pytest.mark.parametrize(
    "tick, field",
    [(Tick(T0, math.nan, 1.0), "bid"), (Tick(T0, 1.0, math.nan), "ask"),
     (Tick(T0, 0.0, 1.0), "bid"), (Tick(T0, -1.0, -0.5), "bid"),
     (Tick(T0, 1.0, math.inf), "ask"), (Tick(T0, 1.2, 1.1), "bid"),
     (Tick(T0 - 1, 1.0, 1.1), "time")],
)  # fmt: skip
def test_strict_mode_raises_naming_the_field(tick, field):
    agg = TickAggregator("M1")
    agg.update(Tick(T0, 1.0, 1.1))
    with pytest.raises(DataError) as info:
        agg.update(tick)
    assert info.value.field == field
    assert field in str(info.value)
    assert agg.forming.volume == 1  # the bad tick left the bar alone


def test_lenient_mode_drops_and_counts_bad_ticks():
    agg = TickAggregator("M1", lenient=True)
    good = [Tick(T0 + i * S, 1.0 + i / 100, 1.01 + i / 100) for i in range(5)]
    bad = [Tick(T0 + 5 * S, math.nan, 1.0), Tick(T0 + 5 * S, 1.2, 1.1), Tick(T0, 1.0, 1.1),
           Tick(T0 + 6 * S, 0.0, 1.0)]  # fmt: skip
    feed(agg, good[:3] + bad + good[3:])
    assert agg.dropped == len(bad)
    assert "bid" in (agg.last_error or "")
    bar = agg.flush()
    assert bar is not None and bar.volume == len(good)
    assert bar.close == (good[-1].bid + good[-1].ask) / 2


def test_trade_ticks_have_equal_sides():
    agg = TickAggregator("S5")
    feed(agg, [(T0, 10.0, 10.0), (T0 + S, 11.0, 11.0)])
    bar = agg.flush()
    assert bar.open == bar.bid_open == bar.ask_open == 10.0
    assert bar.high == 11.0


def test_daily_bars_follow_new_york_17h():
    agg = TickAggregator("D")
    # 2024-05-01 20:59 UTC is 16:59 EDT (day of 30 April 17:00); 21:00 UTC starts a new day.
    first = int(pd.Timestamp("2024-05-01 20:59", tz="UTC").value)
    agg.update(Tick(first, 1.0, 1.0))
    done = agg.update(Tick(first + M, 1.0, 1.0))
    assert [pd.Timestamp(b.time, tz="UTC") for b in done] == [
        pd.Timestamp("2024-04-30 21:00", tz="UTC")
    ]


def test_unknown_timeframe_raises():
    with pytest.raises(ValueError, match="timeframe"):
        TickAggregator("M0")
    with pytest.raises(ValueError, match="timeframe"):
        BarResampler((1, "Fortnights"))


def bar(i, o, h, lo, c, v=1.0):
    return Bar(T0 + i * M, o, h, lo, c, v)


def test_bar_resampler_m1_to_m5():
    res = BarResampler("M5")
    bars = [
        bar(0, 1.0, 1.5, 0.9, 1.2, 2),
        bar(1, 1.2, 1.3, 0.8, 1.1, 3),
        bar(4, 1.1, 1.6, 1.0, 1.4),
    ]
    assert feed(res, bars) == []
    [done] = res.update(bar(5, 1.4, 1.4, 1.4, 1.4))
    assert done == Bar(T0, 1.0, 1.6, 0.8, 1.4, 6.0)
    assert math.isnan(done.bid_close)
    assert res.flush() == Bar(T0 + 5 * M, 1.4, 1.4, 1.4, 1.4, 1.0)


def test_bar_resampler_keeps_sides_when_quoted():
    res = BarResampler("M5")
    q1 = Bar(T0, 1.0, 1.2, 0.9, 1.1, 1, 0.99, 1.19, 0.89, 1.09, 1.01, 1.21, 0.91, 1.11)
    q2 = Bar(T0 + M, 1.1, 1.3, 1.0, 1.2, 1, 1.09, 1.29, 0.99, 1.19, 1.11, 1.31, 1.01, 1.21)
    feed(res, [q1, q2])
    out = res.flush()
    assert out == Bar(T0, 1.0, 1.3, 0.9, 1.2, 2, 0.99, 1.29, 0.89, 1.19, 1.01, 1.31, 0.91, 1.21)
    res = BarResampler("M5")
    res.update(q1)
    with pytest.raises(DataError, match="bid_close missing"):
        res.update(bar(1, 1.0, 1.0, 1.0, 1.0))


@pytest.mark.parametrize(
    "record, field",
    [(bar(1, math.nan, 1, 1, 1), "open"), (bar(1, 1, 0.9, 0.8, 1), "high"),
     (bar(1, 1, 1.1, 1.05, 1), "low"), (bar(1, 1, 1, 1.1, 1), "high"),
     (bar(1, 1, 1, 1, 1, -1), "volume"), (bar(1, 1, 1, 1, 1, math.nan), "volume"),
     (bar(0, 1, 1, 1, 1), "time"), (bar(-1, 1, 1, 1, 1), "time")],
)  # fmt: skip
def test_bar_resampler_refuses_bad_bars(record, field):
    res = BarResampler("M5")
    res.update(bar(0, 1.0, 1.0, 1.0, 1.0))
    with pytest.raises(DataError) as info:
        res.update(record)
    assert info.value.field == field
    lenient = BarResampler("M5", lenient=True)
    lenient.update(bar(0, 1.0, 1.0, 1.0, 1.0))
    assert lenient.update(record) == []
    assert lenient.dropped == 1
    assert lenient.flush() == bar(0, 1.0, 1.0, 1.0, 1.0)


def test_two_bars_with_the_same_time_are_named_as_such():
    res = BarResampler("M5")
    res.update(bar(0, 1.0, 1.0, 1.0, 1.0))
    with pytest.raises(DataError, match="repeats"):
        res.update(bar(0, 1.0, 1.0, 1.0, 1.0))
