"""Walk-forward windows, no leak of test bars into training, stitched equity."""

import numpy as np
import pandas as pd
import pytest
from helpers_optimize import SEEN, Momentum, make_bars

from osmarkets.optimize import IntRange, make_windows, walk_forward

INDEX = pd.date_range("2024-01-01", periods=100, freq="h", tz="UTC")


def test_rolling_windows_by_bar_count():
    windows = make_windows(INDEX, train=30, test=10)
    assert [(w.train.start, w.train.stop, w.test.start, w.test.stop) for w in windows] == [
        (0, 30, 30, 40),
        (10, 40, 40, 50),
        (20, 50, 50, 60),
        (30, 60, 60, 70),
        (40, 70, 70, 80),
        (50, 80, 80, 90),
        (60, 90, 90, 100),
    ]


def test_anchored_windows_grow_from_the_first_bar():
    windows = make_windows(INDEX, train=40, test=20, anchored=True)
    assert [(w.train.start, w.train.stop, w.test.stop) for w in windows] == [
        (0, 40, 60),
        (0, 60, 80),
        (0, 80, 100),
    ]


def test_last_window_may_be_short_and_step_can_differ():
    windows = make_windows(INDEX, train=50, test=15, step=30)
    assert [(w.train.start, w.test.start, w.test.stop) for w in windows] == [
        (0, 50, 65),
        (30, 80, 95),
    ]
    short = make_windows(INDEX, train=90, test=20)
    assert [(w.test.start, w.test.stop) for w in short] == [(90, 100)]


def test_windows_by_time_offsets():
    windows = make_windows(INDEX, train="1D", test="12h")
    first = windows[0]
    assert INDEX[first.train.stop] - INDEX[first.train.start] == pd.Timedelta("1D")
    assert INDEX[first.test.start] == INDEX[first.train.stop - 1] + pd.Timedelta("1h")
    for a, b in zip(windows, windows[1:], strict=False):
        assert INDEX[b.train.start] - INDEX[a.train.start] == pd.Timedelta("12h")


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"train": 0, "test": 5}, "train"),
        ({"train": 10, "test": -1}, "test"),
        ({"train": 10, "test": 5, "step": 0}, "step"),
        ({"train": 200, "test": 5}, "window"),
        ({"train": "fortnight", "test": 5}, "train"),
        ({"train": True, "test": 5}, "train"),
    ],
)
def test_bad_windows_raise_naming_the_argument(kwargs, field):
    with pytest.raises(ValueError, match=field):
        make_windows(INDEX, **kwargs)


@pytest.mark.parametrize("anchored", [False, True])
def test_optimisation_never_sees_a_test_bar(anchored):
    """Every data set the Brain sees is exactly a training window or exactly a test window:
    a training set ending even one bar late (on the test window's first bar) would fail."""
    bars = make_bars(1200, seed=11)
    SEEN.clear()
    result = walk_forward(
        Momentum,
        bars,
        {"lag": IntRange(1, 30)},
        train=400,
        test=200,
        anchored=anchored,
        samples=8,
        seed=1,
    )
    windows = result.windows
    assert len(windows) == 4
    train_spans = set(zip(windows["train_start"], windows["train_end"], strict=True))
    test_spans = set(zip(windows["test_start"], windows["test_end"], strict=True))
    seen = set(SEEN)
    assert seen == train_spans | test_spans
    for row in windows.itertuples():
        # training ends on the bar right before the test window: no gap, no overlap
        assert bars.index.get_loc(row.test_start) == bars.index.get_loc(row.train_end) + 1
    calls_per_window = {span: SEEN.count(span) for span in train_spans}
    assert all(count >= 8 for count in calls_per_window.values())


def test_stitched_equity_chains_the_test_windows():
    bars = make_bars(1500, seed=12)
    result = walk_forward(
        Momentum,
        bars,
        {"lag": IntRange(1, 30)},
        train=500,
        test=250,
        samples=10,
        cash=50_000.0,
        max_members=3,
    )
    w = result.windows
    equity = result.equity
    assert equity.index.is_unique and equity.index.is_monotonic_increasing
    assert (
        equity.index[0] == w["test_start"].iloc[0] and equity.index[-1] == w["test_end"].iloc[-1]
    )
    assert len(equity) == w["test_bars"].sum()
    # the stitched curve grows by each window's own out-of-sample return
    growth = np.prod(1 + w["oos_total_return"].to_numpy())
    assert equity.iloc[-1] / 50_000.0 == pytest.approx(growth)
    for row in w.itertuples():
        expected = (
            row.oos_annual_return / row.is_annual_return if row.is_annual_return > 0 else np.nan
        )
        assert row.efficiency == pytest.approx(expected, nan_ok=True)
    assert len(result.configurations()) == w["configurations"].sum()
