"""The compiled (numba) engine of the vectorised path: the same tables as the numpy engine, to
the bit, on real and synthetic bars, with costs, both fills, quotes, long and short targets and
equity curves that go through zero; its arguments, the fallback without numba, the disk cache
fallback and fork safety."""

import multiprocessing
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_backtest import make_bars
from test_vectorized import Follower, NanTarget, random_params, tick_bars

from osmarkets import Brain
from osmarkets.backtest import vectorized as vectorized_module
from osmarkets.backtest.vectorized import vectorized
from osmarkets.brokers.simulated import Commission
from osmarkets.data import read_bars
from osmarkets.strategies import SmaCross

numba = pytest.importorskip("numba")
kernels = pytest.importorskip("osmarkets.backtest.kernels")

ROOT = Path(__file__).resolve().parents[1]
STOCK = ROOT / "examples" / "data" / "stock-daily.csv"
MINUTES = Path("/work/shared/data/market/2006-01-02-volume-min-001.txt")
COSTS = {
    "spread": 0.02,
    "slippage": 0.01,
    "commission": Commission(per_unit=0.005, fraction=2e-4, minimum=1.0),
}


def both(brain, data, grid, **options):
    """Run both engines; assert identical tables and equity curves; return the numba one."""
    compiled = vectorized(brain, data, grid, engine="numba", **options)
    reference = vectorized(brain, data, grid, engine="numpy", **options)
    pd.testing.assert_frame_equal(compiled.table, reference.table, check_exact=True)
    if reference.equity is not None:
        pd.testing.assert_frame_equal(compiled.equity, reference.equity, check_exact=True)
    return compiled


def sma_grid(fasts, slows, size=10.0):
    return [{"fast": f, "slow": s, "size": size} for f in fasts for s in slows]


@pytest.mark.parametrize("fill", ["next_open", "close"])
@pytest.mark.parametrize("costs", [False, True])
def test_real_daily_stock_bars(fill, costs):
    data = read_bars(STOCK)
    out = both(SmaCross, data, sma_grid(range(2, 12), range(15, 40, 3)), fill=fill,
               equity=True, **(COSTS if costs else {}))  # fmt: skip
    assert out.table["trades"].sum() > 500


@pytest.mark.skipif(not MINUTES.exists(), reason="the shared one-minute futures file is absent")
def test_real_minute_bars():
    names = ["date", "time", "open", "high", "low", "close", "volume", "oi"]
    raw = pd.read_csv(MINUTES, header=None, skiprows=1, names=names)
    index = pd.DatetimeIndex(pd.to_datetime(raw["date"] + " " + raw["time"]), name="time")
    data = pd.DataFrame(
        {c: raw[c].to_numpy(float) for c in ("open", "high", "low", "close", "volume")},
        index=index.tz_localize("UTC"),
    )
    out = both(SmaCross, data, sma_grid([2, 5, 10, 21], [30, 47, 66], size=1), **COSTS)
    assert (out.table["trades"] > 100).all()
    both(SmaCross, data, sma_grid([10], [30], size=1), fill="close")


@pytest.mark.parametrize("fill", ["next_open", "close"])
@pytest.mark.parametrize("quotes", [0.0, 0.04])
def test_ties_quotes_and_chunks(fill, quotes):
    params = random_params(np.random.default_rng(7), 23) + [
        {"fast": 30, "slow": 8, "size": 2.0},
        {"fast": 5, "slow": 5, "size": 1.0},  # never crosses: no fill
        {"fast": 1, "slow": 3, "size": 3.0},  # a side set on the first bar
    ]
    ticks = tick_bars(1500, seed=5)
    both(SmaCross, ticks, params, fill=fill, equity=True, chunk=4, **COSTS)
    both(SmaCross, make_bars(1100, seed=3, quotes=quotes), params, fill=fill, equity=True)


@pytest.mark.parametrize("fill", ["next_open", "close"])
def test_materialised_long_and_short_targets(fill):
    """A Brain without signals_batch: the kernel reads the target matrix."""
    data = make_bars(700, seed=8, quotes=0.04)
    grid = [{"seed": s, "scale": 10.0} for s in range(7)]
    both(Follower, data, grid, fill=fill, equity=True, chunk=3, **COSTS)
    both(SmaCross, data, random_params(np.random.default_rng(2), 5), batch=False, fill=fill)


@pytest.mark.parametrize("cash", [0.0, 50.0, -100.0])
@pytest.mark.parametrize("fill", ["next_open", "close"])
def test_equity_through_zero_and_below(cash, fill):
    """Peaks at or below zero (0/0 is NaN, a negative peak turns the division around): the
    kernel's careful pass spreads NaN as numpy does."""
    data = make_bars(600, seed=11)
    grid = [{"seed": s, "scale": 200.0} for s in range(6)]
    out = both(Follower, data, grid, fill=fill, equity=True, cash=cash, **COSTS)
    assert out.equity.min().min() < 0
    both(SmaCross, data, sma_grid([2, 3], [9, 20], size=100.0), cash=cash, fill=fill)


def test_a_nan_target_is_named_by_both_engines():
    data = make_bars(40)
    for engine in ("numba", "numpy"):
        with pytest.raises(ValueError, match=r"NanTarget.signals\{'level': 2\}: NaN"):
            vectorized(NanTarget, data, {"level": [1, 2]}, engine=engine)


def test_hostile_arguments():
    data = make_bars(50)
    with pytest.raises(ValueError, match="expected one of auto, numba, numpy, got 'bogus'"):
        vectorized(SmaCross, data, engine="bogus")
    with pytest.raises(ValueError, match="engine"):
        vectorized(SmaCross, data, engine=None)
    for bad in (0, -1, True, False, 1.5, "2"):
        with pytest.raises(ValueError, match=r"threads: expected a positive integer"):
            vectorized(SmaCross, data, threads=bad)
    with pytest.raises(ValueError, match="engine: expected 'numpy' or 'numba'"):
        SmaCross.signals_batch(data, [{"fast": 2, "slow": 5, "size": 1}], engine="gpu")


def test_threads_give_the_same_table_and_are_restored():
    data = tick_bars(900, seed=2)
    grid = random_params(np.random.default_rng(4), 12)
    before = numba.get_num_threads()
    one = vectorized(SmaCross, data, grid, engine="numba", threads=1, equity=True)
    many = vectorized(SmaCross, data, grid, engine="numba", threads=10_000, equity=True)
    assert numba.get_num_threads() == before
    pd.testing.assert_frame_equal(one.table, many.table, check_exact=True)
    pd.testing.assert_frame_equal(one.equity, many.equity, check_exact=True)


def test_auto_falls_back_to_numpy_without_numba(monkeypatch):
    data = tick_bars(600, seed=9)
    grid = random_params(np.random.default_rng(8), 6)
    expected = vectorized(SmaCross, data, grid, engine="numba", **COSTS)

    def no_kernel(*args, **kwargs):
        raise AssertionError("the compiled kernel ran without numba")

    monkeypatch.setattr(kernels, "AVAILABLE", False)
    monkeypatch.setattr(kernels, "simulator", no_kernel)
    monkeypatch.setattr(vectorized_module, "_simulate_compiled", no_kernel)
    fallback = vectorized(SmaCross, data, grid, **COSTS)  # engine='auto'
    pd.testing.assert_frame_equal(fallback.table, expected.table, check_exact=True)
    with pytest.raises(ImportError, match=r"pip install osmarkets\[numba\]"):
        vectorized(SmaCross, data, grid, engine="numba")
    plain = vectorized(SmaCross, data, grid, engine="numpy", threads=2, **COSTS)
    pd.testing.assert_frame_equal(plain.table, expected.table, check_exact=True)


def test_cross_targets_are_the_numpy_targets():
    data = tick_bars(800, seed=12)
    params = random_params(np.random.default_rng(3), 15)
    lazy = SmaCross.signals_batch(data, params, engine="numba")
    assert isinstance(lazy, kernels.CrossTargets)
    assert lazy.shape == (15, 800)
    assert np.array_equal(np.asarray(lazy), SmaCross.signals_batch(data, params))


class Told(Brain):
    """A signals_batch that takes **options is told the engine."""

    level = 1.0
    seen: list = []

    @classmethod
    def signals(cls, data, level=level, **_):
        return np.full(len(data), float(level))

    @classmethod
    def signals_batch(cls, data, param_sets, **options):
        cls.seen.append(options.get("engine"))
        return np.vstack([cls.signals(data, **p) for p in param_sets])


def test_a_hook_taking_options_is_told_the_engine():
    data = make_bars(60)
    Told.seen.clear()
    a = vectorized(Told, data, {"level": [1, 2, 3]}, engine="numba")
    b = vectorized(Told, data, {"level": [1, 2, 3]}, engine="numpy")
    assert Told.seen == ["numba", "numpy"]
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)


def test_kernels_compile_without_a_writable_cache_directory():
    """numba refuses cache=True where it can write no cache (here: source with no file); the
    kernels are then compiled for the process only."""
    space: dict = {}
    exec("def double(x):\n    return 2 * x\n", space)  # no source file: no cache locator
    with pytest.raises(RuntimeError, match="cannot cache"):
        numba.njit(cache=True)(space["double"])
    assert kernels._jit()(space["double"])(21) == 42


def _child(queue):
    data = make_bars(300, seed=1)
    out = vectorized(SmaCross, data, sma_grid([2, 3], [8, 13]), engine="numba", threads=2)
    queue.put(float(out.table["final_value"].sum()))


@pytest.mark.skipif("NUMBA_THREADING_LAYER" in os.environ, reason="a threading layer chosen")
def test_a_forked_process_can_run_the_kernels_again():
    """GNU OpenMP aborts a process forked after it ran; osMarkets forks its agents, so the
    kernels use a fork-safe threading layer."""
    data = make_bars(300, seed=1)
    parent = vectorized(SmaCross, data, sma_grid([2, 3], [8, 13]), engine="numba", threads=2)
    assert numba.threading_layer() != "omp"
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue,))
    process.start()
    process.join(120)
    assert process.exitcode == 0
    assert queue.get(timeout=5) == float(parent.table["final_value"].sum())


@pytest.mark.parametrize(
    "kind", ["ticks", "decimals", "integers", "tiny", "huge", "short", "nan", "mixed"]
)
def test_compiled_exact_averages_are_rolling_mean(kind):
    """The compiled window sums give rolling_mean's floats (and hand it what int64 cannot
    hold: many binary fraction digits, huge sums, non-finite values)."""
    from osmarkets.indicators._common import rolling_mean

    rng = np.random.default_rng(17)
    close = {
        "ticks": tick_bars(3000, seed=4)["close"].to_numpy(),
        "decimals": read_bars(STOCK)["close"].to_numpy(),
        "integers": np.cumsum(rng.integers(-3, 4, 5000)).astype(float) + 4000.0,
        "tiny": rng.integers(1, 9, 400) * 2.0**-1060,  # over 1000 fraction bits: Python ints
        "huge": rng.integers(1, 9, 400) * 2.0**60,
        "short": np.array([1.5, 2.25, 3.0]),
        "nan": np.r_[np.nan, np.arange(50.0)],
        "mixed": np.r_[np.full(200, 0.25), rng.normal(0, 1, 200)],
    }[kind]
    periods = [1, 2, 3, 7, 30, 64, 2000]
    if kind == "nan":  # not a price series: refused alike
        with pytest.raises(ValueError, match="NaN"):
            rolling_mean(close, 3)
        with pytest.raises(ValueError, match="NaN"):
            kernels.exact_means(close, periods)
        return
    got = kernels.exact_means(close, periods)
    for row, period in enumerate(periods):
        np.testing.assert_array_equal(got[row], rolling_mean(close, period), err_msg=str(period))


def test_cold_averages_are_the_cached_ones():
    from osmarkets import strategies

    data = tick_bars(2000, seed=6)
    grid = sma_grid(range(2, 9), range(20, 40, 4))
    strategies._AVERAGES.clear()
    cold = vectorized(SmaCross, data, grid, engine="numba", equity=True)
    strategies._AVERAGES.clear()
    numpy_cold = vectorized(SmaCross, data, grid, engine="numpy", equity=True)
    warm = vectorized(SmaCross, data, grid, engine="numba", equity=True)
    for other in (numpy_cold, warm):
        pd.testing.assert_frame_equal(cold.table, other.table, check_exact=True)
        pd.testing.assert_frame_equal(cold.equity, other.equity, check_exact=True)
