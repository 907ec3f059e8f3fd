"""BarSeries: newest-first, fixed capacity, checked against a plain Python list model."""

import math
import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from osmarkets.data import BAR_DTYPE, Bar, BarSeries, frame_to_records, records_to_frame

MINUTE = 60 * 10**9
BSID = ("EUR_USD", 1, "Minutes")


def make_bar(i, quoted=True, price=None):
    p = 1.0 + (i % 97) / 1000 if price is None else price
    if quoted:
        return Bar(i * MINUTE, p, p + 0.01, p - 0.01, p + 0.001, float(i % 7),
                   p - 1e-4, p + 0.01 - 1e-4, p - 0.01 - 1e-4, p + 0.001 - 1e-4,
                   p + 1e-4, p + 0.01 + 1e-4, p - 0.01 + 1e-4, p + 0.001 + 1e-4)  # fmt: skip
    return Bar(i * MINUTE, p, p + 0.01, p - 0.01, p + 0.001, float(i % 7))


def same_bar(a, b):
    return all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True))


def check_against_model(series, model):
    newest_first = model[::-1][: series.capacity]
    assert len(series) == len(newest_first)
    for i, bar in enumerate(newest_first):
        assert same_bar(series[i], bar)
    assert list(series.close) == [b.close for b in newest_first]
    assert list(series.time) == [b.time for b in newest_first]
    assert list(series.close[:30]) == [b.close for b in newest_first[:30]]
    if newest_first:
        assert series.last == series[0]
        assert same_bar(series[-1], newest_first[-1])


ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 3)),
        st.tuples(st.just("update"), st.floats(0.5, 2.0)),
        st.tuples(st.just("extend"), st.integers(0, 12)),
    ),
    max_size=60,
)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 9), ops)
def test_behaves_like_a_list_model(capacity, operations):
    series = BarSeries(BSID, capacity)
    model: list[Bar] = []
    i = 0
    for op, arg in operations:
        if op == "append":
            i += arg  # time gaps of one to three bars
            bar = make_bar(i)
            series.append(bar)
            model.append(bar)
        elif op == "update" and model:
            bar = make_bar(i, price=arg)
            series.update_last(bar)
            model[-1] = bar
        elif op == "extend":
            bars = [make_bar(i + k + 1) for k in range(arg)]
            i += arg
            series.extend(np.array([tuple(b) for b in bars], dtype=BAR_DTYPE))
            model.extend(bars)
        check_against_model(series, model)
        # The storage never grows: appends relocate inside the same buffer.
        assert len(series._data) == 2 * capacity


def test_capacity_overflow_drops_the_oldest_and_relocates_in_place():
    series = BarSeries(BSID, 5)
    buffer = series._data
    for i in range(23):
        series.append(make_bar(i))
    assert series._data is buffer
    assert len(series) == 5
    assert list(series.time) == [i * MINUTE for i in range(22, 17, -1)]


def test_columns_are_views_not_copies():
    series = BarSeries(BSID, 10)
    for i in range(4):
        series.append(make_bar(i))
    close = series.close
    assert np.shares_memory(close, series._data)
    assert close[:30].mean() == pytest.approx(np.mean([make_bar(i).close for i in range(4)]))


def test_plain_ohlc_tuples_get_nan_sides():
    series = BarSeries(BSID, 3)
    series.append((MINUTE, 1.0, 1.2, 0.9, 1.1))
    assert series[0].volume == 0.0
    assert math.isnan(series[0].bid_close)
    assert not series.has_quotes
    assert list(series.to_pandas().columns) == ["open", "high", "low", "close", "volume"]


def test_out_of_order_and_bad_calls_raise():
    series = BarSeries(BSID, 3)
    with pytest.raises(IndexError):
        series.update_last(make_bar(1))
    series.append(make_bar(5))
    with pytest.raises(ValueError, match="not after"):
        series.append(make_bar(5))
    with pytest.raises(ValueError, match="not after"):
        series.append(make_bar(4))
    with pytest.raises(ValueError, match="different bar time"):
        series.update_last(make_bar(6))
    with pytest.raises(IndexError):
        series[1]
    with pytest.raises(TypeError):
        series[0:2]
    with pytest.raises(ValueError, match="capacity"):
        BarSeries(BSID, 0)
    older = np.array([tuple(make_bar(3))], dtype=BAR_DTYPE)
    with pytest.raises(ValueError, match="before"):
        series.extend(older)


@pytest.mark.parametrize("quoted", [True, False])
def test_pandas_round_trip(quoted):
    bars = [make_bar(i * 2, quoted) for i in range(12)]
    series = BarSeries(BSID, 20)
    series.extend(bars)
    frame = series.to_pandas()
    assert frame.index.name == "time"
    assert str(frame.index.tz) == "UTC"
    assert frame.index.is_monotonic_increasing
    assert ("bid_close" in frame.columns) == quoted
    again = BarSeries.from_pandas(frame, BSID)
    assert len(again) == len(series)
    for i in range(len(series)):
        assert same_bar(again[i], series[i])
    records, expected = frame_to_records(frame), series.to_records()
    for name in BAR_DTYPE.names:
        assert np.array_equal(records[name], expected[name], equal_nan=name != "time")
    pd.testing.assert_frame_equal(records_to_frame(series.to_records()), frame)


def test_from_pandas_keeps_only_capacity_newest():
    frame = BarSeries(BSID, 10)
    frame.extend([make_bar(i) for i in range(10)])
    small = BarSeries.from_pandas(frame.to_pandas(), BSID, capacity=4)
    assert list(small.time) == [i * MINUTE for i in (9, 8, 7, 6)]


def test_series_pickles():
    series = BarSeries(BSID, 4)
    series.extend([make_bar(i) for i in range(6)])
    again = pickle.loads(pickle.dumps(series))
    assert again.bsid == series.bsid
    assert [tuple(b) for b in again] == [tuple(b) for b in series]


def test_extend_names_the_first_bar_out_of_order():
    bars = np.array([tuple(make_bar(t)) for t in (1, 2, 4, 3)], dtype=BAR_DTYPE)
    with pytest.raises(ValueError, match=r"time: bar 3 \(\d+\) is not after bar 2"):
        BarSeries(BSID, 10).extend(bars)
