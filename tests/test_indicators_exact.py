"""Indicators exact to their definition: every incremental value equals its definition computed
directly (``==``), the vectorised versions equal the incremental ones, and the fast SMA-cross
trades exactly like one written with ``math.fsum``."""

from __future__ import annotations

import math
from collections import deque
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from osmarkets import Brain
from osmarkets.backtest import backtest
from osmarkets.backtest.vectorized import vectorized
from osmarkets.data.io import read_bars
from osmarkets.indicators import (
    ATR,
    EMA,
    RSI,
    SMA,
    WMA,
    BollingerBands,
    Crossover,
    atr,
    bollinger,
    ema,
    rsi,
    sma,
    wma,
)
from osmarkets.indicators.exact import WindowSum, window_sums
from osmarkets.strategies import SmaCross

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "market"


def grid_walk(n: int, seed: int, tick: float = 0.01, start: float = 100.0) -> list[float]:
    """A random walk on a price grid: prices in cents, many exact ties between averages."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(-2, 3, n)
    return [round(start + tick * k, 2) for k in np.cumsum(steps)]


def exact_wma(window: list[float]) -> float:
    n = len(window)
    total = sum(Fraction(v) * (i + 1) for i, v in enumerate(window))
    return float(total) / (n * (n + 1) / 2)


def exact_std(window: list[float]) -> float:
    n = len(window)
    values = [Fraction(v) for v in window]
    s1 = sum(values)
    s2 = sum(v * v for v in values)
    try:
        return math.sqrt(float((n * s2 - s1 * s1) / (n * n)))
    except OverflowError:  # the variance itself is beyond the float range
        return math.inf


def check_definitions(values: list[float], period: int) -> None:
    s, w, b = SMA(period), WMA(period), BollingerBands(period, 2.0)
    window: deque[float] = deque(maxlen=period)
    for x in values:
        mean, weighted, bands = s.update(x), w.update(x), b.update(x)
        window.append(x)
        if len(window) < period:
            assert math.isnan(mean) and math.isnan(weighted) and math.isnan(bands.mid)
            continue
        as_list = list(window)
        assert mean == math.fsum(as_list) / period
        assert weighted == exact_wma(as_list)
        assert bands.mid == mean
        std = exact_std(as_list)
        assert bands.upper == mean + 2.0 * std and bands.lower == mean - 2.0 * std


prices = st.one_of(
    st.integers(1, 100_000).map(lambda k: k / 100),  # cents
    st.integers(1, 4_000).map(lambda k: k * 0.25),  # quarter ticks
    st.floats(1e-300, 1e-290),
    st.floats(1e290, 1e300),
    st.floats(1e-6, 1e6),
)


@settings(max_examples=150, deadline=None)
@given(values=st.lists(prices, min_size=1, max_size=60), period=st.integers(1, 12))
def test_every_step_equals_the_definition(values, period):
    check_definitions(values, period)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), period=st.integers(2, 40))
def test_random_walks_on_a_price_grid_with_exact_ties(seed, period):
    values = grid_walk(400, seed)
    check_definitions(values, period)
    x = np.array(values)
    incremental = [SMA(period).update(v) for v in values]
    sums = window_sums(x, period)
    assert np.array_equal(sma(x, period), np.array(_feed(SMA(period), values)), equal_nan=True)
    assert len(incremental) == len(sums)


def _feed(indicator, values):
    return [indicator.update(v) for v in values]


def test_the_falsifying_examples_of_the_running_sums():
    bands = BollingerBands(2)
    for x in (130.0, 1.27, 1.27):
        value = bands.update(x)
    assert value.upper == value.mid == value.lower == 1.27  # a flat window: no deviation
    # the ORCL tie of 2004-06-29 in miniature: two averages exactly equal on a cent grid
    fast, slow = SMA(2), SMA(4)
    for x in (0.1, 0.2, 0.3, 0.1, 0.2, 0.3, 0.25, 0.25):
        f, s = fast.update(x), slow.update(x)
    assert f == math.fsum([0.25, 0.25]) / 2 and s == math.fsum([0.2, 0.3, 0.25, 0.25]) / 4


def test_vectorised_versions_equal_the_incremental_ones():
    values = grid_walk(3000, 7) + [1e300, 1e-300, 3.0, 1e-300, 2.5] * 20
    x = np.array(values)
    for period in (1, 3, 14, 30):
        assert np.array_equal(sma(x, period), _feed(SMA(period), values), equal_nan=True)
        assert np.array_equal(wma(x, period), _feed(WMA(period), values), equal_nan=True)
        bands = bollinger(x, period)
        incremental = _feed(BollingerBands(period), values)
        assert np.array_equal(bands.mid, [b.mid for b in incremental], equal_nan=True)
        assert np.array_equal(bands.upper, [b.upper for b in incremental], equal_nan=True)
    # the recursive ones (EMA, RSI, ATR) share the exact seed; their recursions run in
    # different float orders (pandas' compiled loop), so they agree to rounding after it
    grid = np.array(grid_walk(3000, 7))
    for period in (3, 14):
        pairs = ((ema(grid, period), _feed(EMA(period), grid.tolist())),
                 (rsi(grid, period), _feed(RSI(period), grid.tolist())))  # fmt: skip
        for vector, incremental in pairs:
            seed = period - 1 if len(vector) and not np.isnan(vector[period - 1]) else period
            assert vector[seed] == incremental[seed]
            np.testing.assert_allclose(vector, incremental, rtol=1e-12, equal_nan=True)
    high, low = grid + 0.5, grid - 0.5
    bars = list(zip(high.tolist(), low.tolist(), grid.tolist(), strict=True))
    vector = atr(high, low, grid, 14)
    one = ATR(14)
    incremental = [one.update(*bar) for bar in bars]
    assert vector[13] == incremental[13]
    np.testing.assert_allclose(vector, incremental, rtol=1e-12, equal_nan=True)


def test_window_sums_equal_fsum_on_int64_and_big_integer_paths():
    ints = np.arange(1, 500, dtype=float) * 0.25  # a tick grid: the int64 path
    cents = np.array(grid_walk(500, 3))  # full mantissas: Python integers
    mixed = np.array([1e300, 1.0, -1e300, 1e-300, 7.5] * 40)
    for x in (ints, cents, mixed):
        for period in (1, 2, 7, 30):
            got = window_sums(x, period)
            expected = [math.fsum(x[t - period + 1 : t + 1]) for t in range(period - 1, len(x))]
            assert np.array_equal(got[period - 1 :], expected)
            assert np.isnan(got[: period - 1]).all()


def test_seeds_are_exact_means():
    values = grid_walk(40, 5)
    e = EMA(10)
    seeded = _feed(e, values)[9]
    assert seeded == math.fsum(values[:10]) / 10
    changes = np.diff(values)
    r = RSI(10)
    _feed(r, values[:11])
    gains = math.fsum(max(c, 0.0) for c in changes[:10]) / 10
    losses = math.fsum(max(-c, 0.0) for c in changes[:10]) / 10
    assert r.value == 100.0 * gains / (gains + losses)


def test_crossover_follows_backtraders_rule():
    cross = Crossover()
    fast = [1, 1, 2, 2, 2, 3, 2, 1, 1, 2, 3]
    slow = [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]
    got = [cross.update(float(a), float(b)) for a, b in zip(fast, slow, strict=True)]
    # below, tie, tie, tie (not a cross), above (a cross: last non-zero sign was below),
    # tie, below (cross down), below, tie, above (cross up)
    assert got == [0, 0, 0, 0, 0, 1, 0, -1, -1 * 0, 0, 1]
    touch = Crossover()
    assert [touch.update(a, 2.0) for a in (3.0, 2.0, 3.0)] == [0, 0, 0]  # touched, not crossed
    assert touch.update(math.nan, 2.0) == 0  # warming up: ignored


def test_a_window_sum_grows_its_scale_for_finer_values():
    window = WindowSum(3)
    assert window.push(1.0) == 1.0 and window.shift == 0
    assert window.push(0.5) == 1.5 and window.shift == 1
    assert window.push(0.1) == math.fsum([1.0, 0.5, 0.1])
    assert window.push(1e-300) == math.fsum([0.5, 0.1, 1e-300])


class FsumCross(Brain):
    """The same strategy written directly from the definitions (math.fsum, last non-zero sign)."""

    fast = 10
    slow = 30
    size = 1000

    def on_start(self):
        self.window: deque[float] = deque(maxlen=self.slow)
        self.last = 0

    def on_new_bar(self, series):
        self.window.append(float(series.close[0]))
        if len(self.window) < self.slow:
            return
        values = list(self.window)
        f = math.fsum(values[-self.fast :]) / self.fast
        s = math.fsum(values) / self.slow
        sign = 1 if f > s else -1 if f < s else 0
        if not sign:
            return
        crossed, self.last = (sign if self.last == -sign else 0), sign
        symbol = series.bsid.symbol
        held = self.position(symbol)
        if crossed > 0 and held == 0:
            self.send_order("buy", self.size, symbol)
        elif crossed < 0 and held > 0:
            self.send_order("sell", held, symbol)


def fills(result):
    return result.trades[["side", "size", "price"]].values.tolist()


def grid_bars(n: int, seed: int) -> pd.DataFrame:
    close = np.array(grid_walk(n, seed, tick=0.01, start=20.0))
    open_ = np.r_[close[0], close[:-1]]
    index = pd.date_range("2020-01-01", periods=n, freq="D", tz="UTC", name="time")
    return pd.DataFrame({"open": open_, "high": np.maximum(open_, close) + 0.01,
                         "low": np.minimum(open_, close) - 0.01, "close": close,
                         "volume": 1.0}, index=index)  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_fast_sma_cross_trades_like_the_definition(seed):
    data = grid_bars(2000, seed)
    params = {"fast": 5, "slow": 20, "size": 1}
    fast = backtest(SmaCross, data, "X:D", params=params)
    slow = backtest(FsumCross, data, "X:D", params=params)
    assert len(fast.trades) > 20 and fills(fast) == fills(slow)
    assert fast.final_value == slow.final_value
    run = vectorized(SmaCross, data, [params])
    assert float(run.table["final_value"].iloc[0]) == pytest.approx(fast.final_value, abs=1e-9)


@pytest.mark.skipif(not SHARED.exists(), reason="the shared market data is not beside the project")
@pytest.mark.parametrize(
    ("name", "bsid"),
    [
        ("orcl-1995-2014.txt", "ORCL:D"),
        ("nvda-1999-2014.txt", "NVDA:D"),
        ("2006-01-02-volume-min-001.txt", "FUT:M1"),
    ],  # fmt: skip
)
def test_on_real_data_the_fast_cross_gives_the_fsum_crosss_fills(name, bsid):
    data = read_bars(SHARED / name)[["open", "high", "low", "close", "volume"]]
    fast = backtest(SmaCross, data, bsid, params={"size": 1})
    slow = backtest(FsumCross, data, bsid, params={"size": 1})
    assert fills(fast) == fills(slow) and fast.final_value == slow.final_value
    closes = data["close"].to_numpy()
    for period in (10, 30):
        assert np.array_equal(sma(closes, period), _feed(SMA(period), closes.tolist()),
                              equal_nan=True)  # fmt: skip
    if bsid == "ORCL:D":  # backtrader's figure on this file (benchmarks/README.md)
        assert round(fast.final_value, 6) == 100_026.460652


def test_a_restarted_sma_cross_primes_its_averages_from_the_history():
    data = grid_bars(300, 4)
    brain = SmaCross()
    brain.fast, brain.slow = 5, 20
    from osmarkets.data.series import BarSeries, frame_to_records

    records = frame_to_records(data)
    series = BarSeries("X:D", capacity=300)
    for record in records[:-1]:
        series.append(record)
    fast, slow, cross = brain._start_lines(series)
    reference = SMA(20)
    for value in data["close"].to_numpy()[:-2]:  # all but the newest, handled by on_new_bar
        reference.update(value)
    assert slow.value == reference.value and fast.ready


def _documented_sma_cross(path: Path) -> type:
    """The SmaCross class of a document's first ``class SmaCross`` code block."""
    import re
    import textwrap

    text = path.read_text()
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", text)
    code = next(textwrap.dedent(b) for b in blocks if "class SmaCross" in b)
    namespace: dict = {}
    exec(compile("from osmarkets import Brain\n" + code, str(path), "exec"), namespace)  # noqa: S102
    return namespace["SmaCross"]


@pytest.mark.parametrize("document", ["README.rst", "docs/tutorial.rst"])
def test_the_readme_and_the_tutorial_show_the_package_strategy(document):
    cls = _documented_sma_cross(Path(__file__).resolve().parents[1] / document)
    for seed in (5, 6):
        data = grid_bars(1500, seed)
        params = {"fast": 5, "slow": 20, "size": 1}
        ours = backtest(cls, data, "X:D", params=params)
        package = backtest(SmaCross, data, "X:D", params=params)
        assert len(ours.trades) > 10 and fills(ours) == fills(package)
