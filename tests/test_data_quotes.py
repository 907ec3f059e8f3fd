"""QuoteGuard: which live ticks and bars are accepted, why the others are rejected."""

import math

import numpy as np
import pandas as pd
import pytest

from osmarkets.data import Bar, Tick, TickAggregator
from osmarkets.data.quotes import (
    DEFAULT_MAX_BACK_NS,
    DEFAULT_MAX_FUTURE_NS,
    REASONS,
    TIME_MAX_NS,
    QuoteGuard,
)

S = 10**9
M = 60 * S
NOW = int(pd.Timestamp("2025-06-02 12:00", tz="UTC").value)  # the injected wall clock
T0 = NOW - 10 * M
NAN = math.nan
INF = math.inf


class Clock:
    def __init__(self, now: int = NOW) -> None:
        self.now = now
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return self.now


def guard(**kwargs) -> QuoteGuard:
    kwargs.setdefault("clock", Clock())
    return QuoteGuard(**kwargs)


def quoted_bar(time: int, **fields) -> Bar:
    bar = Bar(time, 1.10, 1.20, 1.00, 1.15, 10.0,
              1.09, 1.19, 0.99, 1.14, 1.11, 1.21, 1.01, 1.16)  # fmt: skip
    return bar._replace(**fields)


# -- accepted ------------------------------------------------------------------------------------
def test_good_ticks_and_bars_are_accepted_and_nothing_is_counted():
    g = guard()
    assert g.check("tick", "EUR_USD", Tick(T0, 1.1, 1.1002)) is None
    assert g.check("tick", "EUR_USD", (T0 + 1, 1.1, 1.1002, 2.0, 3.0)) is None
    assert g.check("bar", "EUR_USD", Bar(T0, 1.1, 1.2, 1.0, 1.15)) is None
    assert g.check("bar", "EUR_USD", quoted_bar(T0 + M)) is None
    assert g.check("bar", "GBP_USD", [T0, 1, 2, 1, 2]) is None  # a list, int prices
    assert g.counts == {} and g.rejected == 0 and g.accepted == 5
    assert g.newest("tick", "EUR_USD") == T0 + 1
    assert g.newest("bar", "EUR_USD") == T0 + M
    assert g.newest("tick", "GBP_USD") is None


def test_equal_bid_and_ask_are_accepted_a_crossed_tick_is_not():
    g = guard()
    assert g.check("tick", "EUR_USD", Tick(T0, 1.1, 1.1)) is None
    assert g.check("tick", "EUR_USD", Tick(T0 + 1, 1.1001, 1.1)) == "crossed"
    assert g.counts == {"crossed": 1}
    assert "above ask" in g.last_detail


def test_equal_tick_times_are_accepted():
    g = guard()
    for _ in range(3):
        assert g.check("tick", "EUR_USD", Tick(T0, 1.1, 1.2)) is None
    assert g.rejected == 0


def test_numpy_integer_times_and_prices_are_numbers():
    g = guard()
    assert g.check("tick", "EUR_USD", (np.int64(T0), np.float64(1.1), np.float32(1.2))) is None
    assert g.newest("tick", "EUR_USD") == T0
    record = np.array([(T0 + 1, 1.1, 1.2)], dtype=[("t", "i8"), ("b", "f8"), ("a", "f8")])[0]
    assert g.check("tick", "EUR_USD", record) is None


# -- symbols -------------------------------------------------------------------------------------
@pytest.mark.parametrize("symbol", ["", None, 1, b"EUR_USD", ("EUR_USD",), ["EUR_USD"]])
def test_a_symbol_must_be_a_non_empty_str(symbol):
    g = guard()
    assert g.check("tick", symbol, Tick(T0, 1.1, 1.2)) == "symbol"
    assert g.counts == {"symbol": 1}


def test_unknown_symbols_are_rejected_and_the_set_is_read_at_each_check():
    known = {"EUR_USD"}
    g = guard(known_symbols=known)
    assert g.check("tick", "EUR_USD", Tick(T0, 1.1, 1.2)) is None
    assert g.check("tick", "GBP_USD", Tick(T0, 1.3, 1.4)) == "unknown_symbol"
    assert g.newest("tick", "GBP_USD") is None
    known.add("GBP_USD")  # not copied: a symbol added later is known from then on
    assert g.check("tick", "GBP_USD", Tick(T0, 1.3, 1.4)) is None
    g.known_symbols = {"USD_JPY": None}  # a dict works too (its keys)
    assert g.check("tick", "EUR_USD", Tick(T0 + 1, 1.1, 1.2)) == "unknown_symbol"
    assert g.check("tick", "USD_JPY", Tick(T0, 150.0, 150.1)) is None
    assert g.counts == {"unknown_symbol": 2}


def test_none_means_any_symbol():
    g = guard(known_symbols=None)
    assert g.check("tick", "ANYTHING", Tick(T0, 1.1, 1.2)) is None


# -- kind and shape ------------------------------------------------------------------------------
def test_unknown_kind_and_bad_shapes():
    g = guard()
    assert g.check("ticks", "EUR_USD", Tick(T0, 1.1, 1.2)) == "kind"
    assert g.check("tick", "EUR_USD", (T0, 1.1)) == "shape"
    assert g.check("tick", "EUR_USD", (T0, 1.1, 1.2, 0.0, 0.0, 0.0)) == "shape"
    assert g.check("bar", "EUR_USD", (T0, 1.1, 1.2, 1.0)) == "shape"
    assert g.check("bar", "EUR_USD", (*quoted_bar(T0), 1.0)) == "shape"
    assert g.check("tick", "EUR_USD", None) == "shape"
    assert g.check("tick", "EUR_USD", 12345) == "shape"
    assert g.check("tick", "EUR_USD", "abc") == "shape"
    assert g.check("tick", "EUR_USD", {"time": T0, "bid": 1.1, "ask": 1.2}) == "shape"
    assert g.counts == {"kind": 1, "shape": 8}
    assert g.rejected == 9 and g.accepted == 0


# -- times ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("time", [True, False, float(T0), "2025-06-02", None, np.bool_(True)])
def test_a_time_must_be_an_int_and_a_bool_is_not_one(time):
    g = guard()
    assert g.check("tick", "EUR_USD", (time, 1.1, 1.2)) == "time_type"
    assert g.check("bar", "EUR_USD", (time, 1.1, 1.2, 1.0, 1.1)) == "time_type"
    assert g.counts == {"time_type": 2}


@pytest.mark.parametrize("time", [-1, -(2**63), 2**63, 2**70, TIME_MAX_NS + 1])
def test_a_time_must_be_within_int64_ns_from_1970(time):
    g = guard(max_future_ns=None)  # no future bound: the range check alone
    assert g.check("tick", "EUR_USD", (time, 1.1, 1.2)) == "time_range"
    assert g.counts == {"time_range": 1}
    assert g.newest("tick", "EUR_USD") is None


def test_the_range_bounds_themselves_are_accepted():
    g = guard(max_future_ns=None)
    assert g.check("tick", "A", (0, 1.1, 1.2)) is None
    assert g.check("tick", "B", (TIME_MAX_NS, 1.1, 1.2)) is None


def test_a_far_future_tick_is_rejected_and_later_ticks_are_still_accepted():
    g = guard()
    assert g.check("tick", "EUR_USD", Tick(T0, 1.1, 1.2)) is None
    ten_years = NOW + 10 * 365 * 24 * 3600 * S
    assert g.check("tick", "EUR_USD", Tick(ten_years, 1.1, 1.2)) == "future"
    assert g.newest("tick", "EUR_USD") == T0  # the rejected tick changed nothing
    for k in range(1, 5):
        assert g.check("tick", "EUR_USD", Tick(T0 + k * S, 1.1, 1.2)) is None
    assert g.counts == {"future": 1} and g.accepted == 5


def test_bars_keep_building_after_a_far_future_tick_is_rejected():
    """The failure this guard exists for: without it the aggregator stalls for ever."""
    g = guard()
    agg = TickAggregator("M1", lenient=True)
    bad = Tick(NOW + 10 * 365 * 24 * 3600 * S, 1.1, 1.2)
    stream = [Tick(T0, 1.1, 1.2), bad, Tick(T0 + M, 1.1, 1.2), Tick(T0 + 2 * M, 1.1, 1.2)]
    bars = [
        bar for tick in stream if g.check("tick", "X", tick) is None for bar in agg.update(tick)
    ]
    assert [bar.time for bar in bars] == [T0, T0 + M]
    assert agg.dropped == 0
    unguarded = TickAggregator("M1", lenient=True)  # the same stream without the guard
    assert [bar.time for tick in stream for bar in unguarded.update(tick)] == [T0]
    assert unguarded.dropped == 2  # every later tick is "older": bar building stopped


def test_the_future_bound_is_relative_to_the_injected_clock():
    clock = Clock()
    g = guard(clock=clock, max_future_ns=5 * S)
    assert g.check("tick", "EUR_USD", Tick(NOW + 5 * S, 1.1, 1.2)) is None  # the bound itself
    assert g.check("tick", "EUR_USD", Tick(NOW + 5 * S + 1, 1.1, 1.2)) == "future"
    assert clock.calls == 2
    clock.now += M  # the clock moves on: the same time is now fine
    assert g.check("tick", "EUR_USD", Tick(NOW + 5 * S + 1, 1.1, 1.2)) is None
    assert g.counts == {"future": 1}


def test_no_future_bound_when_none_for_simulated_time():
    g = guard(max_future_ns=None)
    assert g.check("tick", "EUR_USD", Tick(NOW + 10 * 365 * 24 * 3600 * S, 1.1, 1.2)) is None


def test_past_data_years_ago_is_accepted_as_in_a_replay():
    g = guard()  # the wall clock bound only limits the future
    start = int(pd.Timestamp("2024-01-02 07:00", tz="UTC").value)
    assert g.check("tick", "EUR_USD", Tick(start, 1.1, 1.2)) is None
    assert g.check("bar", "EUR_USD", Bar(start - 365 * 24 * 3600 * S, 1.1, 1.2, 1.0, 1.1)) is None


def test_a_tick_ten_minutes_in_the_past_is_rejected():
    g = guard()
    assert g.check("tick", "EUR_USD", Tick(NOW, 1.1, 1.2)) is None
    assert g.check("tick", "EUR_USD", Tick(NOW - 10 * M, 1.1, 1.2)) == "back"
    assert g.check("tick", "EUR_USD", Tick(NOW - 1, 1.1, 1.2)) == "back"  # 0 tolerance
    assert g.newest("tick", "EUR_USD") == NOW
    assert g.check("tick", "EUR_USD", Tick(NOW, 1.1, 1.2)) is None
    assert g.counts == {"back": 2}


def test_backwards_is_per_symbol_and_per_kind():
    g = guard()
    assert g.check("tick", "EUR_USD", Tick(T0 + M, 1.1, 1.2)) is None
    assert g.check("tick", "GBP_USD", Tick(T0, 1.3, 1.4)) is None  # another symbol
    assert g.check("bar", "EUR_USD", Bar(T0, 1.1, 1.2, 1.0, 1.1)) is None  # bars: own clock
    assert g.rejected == 0


def test_the_backwards_tolerance():
    g = guard(max_back_ns=2 * S)
    assert g.check("tick", "EUR_USD", Tick(T0 + 10 * S, 1.1, 1.2)) is None
    assert g.check("tick", "EUR_USD", Tick(T0 + 8 * S, 1.1, 1.2)) is None  # within 2 s
    assert g.newest("tick", "EUR_USD") == T0 + 10 * S  # an older accepted time never lowers it
    assert g.check("tick", "EUR_USD", Tick(T0 + 8 * S - 1, 1.1, 1.2)) == "back"
    assert g.counts == {"back": 1}


def test_bars_are_strictly_increasing():
    g = guard()
    assert g.check("bar", "EUR_USD", Bar(T0 + M, 1.1, 1.2, 1.0, 1.1)) is None
    assert g.check("bar", "EUR_USD", Bar(T0 + M, 1.1, 1.2, 1.0, 1.1)) == "repeat"
    assert g.check("bar", "EUR_USD", Bar(T0, 1.1, 1.2, 1.0, 1.1)) == "back"
    assert g.check("bar", "EUR_USD", Bar(T0 + 2 * M, 1.1, 1.2, 1.0, 1.1)) is None
    assert g.counts == {"repeat": 1, "back": 1}


def test_the_defaults():
    assert DEFAULT_MAX_BACK_NS == 0
    assert DEFAULT_MAX_FUTURE_NS == 60 * S
    g = QuoteGuard()
    assert g.known_symbols is None and g.max_back_ns == 0 and g.max_future_ns == 60 * S
    assert abs(g.clock() - pd.Timestamp.now(tz="UTC").value) < 60 * S  # time.time_ns


def test_the_default_future_bound_is_60_seconds():
    g = guard()
    assert g.check("tick", "A", Tick(NOW + 60 * S, 1.1, 1.2)) is None
    assert g.check("tick", "B", Tick(NOW + 61 * S, 1.1, 1.2)) == "future"


# -- prices and volumes --------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [NAN, INF, -INF, 0.0, -1.1, 0, True, False, np.bool_(True),
                                 "1.1", None, 10**400])  # fmt: skip
def test_tick_prices_must_be_finite_positive_numbers(bad):
    g = guard()
    assert g.check("tick", "EUR_USD", (T0, bad, 1.2)) == "price"
    assert g.check("tick", "EUR_USD", (T0, 1.1, bad)) == "price"
    assert g.counts == {"price": 2}
    assert g.newest("tick", "EUR_USD") is None


@pytest.mark.parametrize("field", ["open", "high", "low", "close"])
@pytest.mark.parametrize("bad", [NAN, INF, 0.0, -1.0, True])
def test_bar_prices_must_be_finite_positive_numbers(field, bad):
    g = guard()
    assert g.check("bar", "EUR_USD", Bar(T0, 1.1, 1.2, 1.0, 1.1)._replace(**{field: bad})) == (
        "price"
    )
    assert g.counts == {"price": 1}


def test_tick_volumes():
    g = guard()
    assert g.check("tick", "A", (T0, 1.1, 1.2, NAN, NAN)) is None  # unknown volume
    assert g.check("tick", "A", (T0, 1.1, 1.2, -1.0, 0.0)) == "volume"
    assert g.check("tick", "A", (T0, 1.1, 1.2, 0.0, INF)) == "volume"
    assert g.check("tick", "A", (T0, 1.1, 1.2, True, 0.0)) == "volume"
    assert g.counts == {"volume": 3}


@pytest.mark.parametrize("bad", [NAN, -1.0, INF, False, "3"])
def test_bar_volume_must_be_a_finite_number_at_least_zero(bad):
    g = guard()
    assert g.check("bar", "EUR_USD", Bar(T0, 1.1, 1.2, 1.0, 1.1, bad)) == "volume"


# -- bar consistency -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "ohlc",
    [
        (1.1, 1.0, 1.2, 1.1),  # high below low
        (1.25, 1.2, 1.0, 1.1),  # open above high
        (0.95, 1.2, 1.0, 1.1),  # open below low
        (1.1, 1.2, 1.0, 1.21),  # close above high
        (1.1, 1.2, 1.0, 0.99),  # close below low
    ],
)
def test_bar_ohlc_must_be_consistent(ohlc):
    g = guard()
    assert g.check("bar", "EUR_USD", Bar(T0, *ohlc)) == "ohlc"
    assert g.check("bar", "EUR_USD", quoted_bar(T0, bid_open=0.5)) == "ohlc"  # bid side
    assert g.counts == {"ohlc": 2}
    assert g.newest("bar", "EUR_USD") is None


def test_bar_ohlc_bounds_are_inclusive():
    g = guard()
    assert g.check("bar", "EUR_USD", Bar(T0, 1.0, 1.2, 1.0, 1.2)) is None
    assert g.check("bar", "EUR_USD", Bar(T0 + M, 1.1, 1.1, 1.1, 1.1)) is None


def test_bar_quotes_crossed_and_nan_sides():
    g = guard()
    assert g.check("bar", "A", quoted_bar(T0, bid_open=1.12, bid_high=1.19)) == "crossed"
    assert g.check("bar", "A", quoted_bar(T0, bid_close=1.17, bid_high=1.19)) == "crossed"
    assert g.check("bar", "A", quoted_bar(T0, bid_open=1.11)) is None  # equal is fine
    # no quotes: all eight NaN (the default), accepted
    assert g.check("bar", "B", Bar(T0, 1.1, 1.2, 1.0, 1.1)) is None
    # partly NaN or non-positive sides are not quotes
    assert g.check("bar", "C", quoted_bar(T0, ask_close=NAN)) == "price"
    assert g.check("bar", "C", quoted_bar(T0, bid_low=-1.0)) == "price"
    assert g.check("bar", "C", (T0, 1.1, 1.2, 1.0, 1.1, 0.0, 1.09, 1.19, 0.99, 1.14)) == "price"
    assert g.check("bar", "C", quoted_bar(T0, bid_low=True)) == "price"
    assert g.counts == {"crossed": 2, "price": 4}


# -- state and counters --------------------------------------------------------------------------
def test_a_rejected_record_never_changes_the_state():
    g = guard(known_symbols={"EUR_USD"})
    assert g.check("tick", "EUR_USD", Tick(T0, 1.1, 1.2)) is None
    bad = [
        Tick(T0 + S, 1.3, 1.2),  # crossed, but later: must not move the newest time
        Tick(T0 + 2 * S, NAN, 1.2),
        (T0 + 3 * S, 1.1, 1.2, -5.0, 0.0),
        Tick(NOW + 3600 * S, 1.1, 1.2),
    ]
    for tick in bad:
        assert g.check("tick", "EUR_USD", tick) is not None
    assert g.newest("tick", "EUR_USD") == T0
    assert g.check("tick", "EUR_USD", Tick(T0 + 1, 1.1, 1.2)) is None
    assert g.counts == {"crossed": 1, "price": 1, "volume": 1, "future": 1}
    assert g.rejected == 4 and g.accepted == 2


def test_counts_are_per_reason_a_copy_and_sum_to_rejected():
    g = guard(known_symbols={"EUR_USD"})
    checks = [
        ("tick", "EUR_USD", Tick(T0, 1.2, 1.1)),
        ("tick", "EUR_USD", Tick(T0, 1.2, 1.1)),
        ("tick", "GBP_USD", Tick(T0, 1.1, 1.2)),
        ("tick", "EUR_USD", (True, 1.1, 1.2)),
        ("tick", "EUR_USD", Tick(T0, 1.1, 1.2)),
        ("tick", "EUR_USD", Tick(T0 - 1, 1.1, 1.2)),
    ]
    reasons = [g.check(*c) for c in checks]
    assert reasons == ["crossed", "crossed", "unknown_symbol", "time_type", None, "back"]
    counts = g.counts
    assert counts == {"crossed": 2, "unknown_symbol": 1, "time_type": 1, "back": 1}
    assert sum(counts.values()) == g.rejected == 5
    counts["crossed"] = 100
    assert g.counts["crossed"] == 2
    assert set(counts) <= set(REASONS)


def test_record_counts_a_rejection_decided_by_the_caller():
    g = guard()
    assert g.check("tick", "EUR_USD", Tick(T0, 1.1, 1.2)) is None
    assert g.record("feed_kind", "a bar for a tick feed") == "feed_kind"
    assert g.counts == {"feed_kind": 1} and g.rejected == 1
    assert g.last_detail == "a bar for a tick feed"
    assert g.newest("tick", "EUR_USD") == T0


def test_every_reason_has_a_detail_for_the_log():
    g = guard()
    assert g.last_detail is None
    g.check("tick", "EUR_USD", Tick(NOW + 3600 * S, 1.1, 1.2))
    assert "ahead of the clock" in g.last_detail


@pytest.mark.parametrize(
    "kwargs",
    [
        {"known_symbols": "EUR_USD"},  # a str is a container of letters
        {"known_symbols": 3},
        {"max_back_ns": -1},
        {"max_back_ns": True},
        {"max_back_ns": 1.5},
        {"max_future_ns": -1},
        {"max_future_ns": 2.0},
        {"clock": 5},
    ],
)
def test_bad_options_fail_at_construction(kwargs):
    with pytest.raises((TypeError, ValueError)):
        QuoteGuard(**kwargs)
