"""The vectorised path: batched signals, the sparse simulation and the block drawdown scan,
checked against the per-combination path, a bar-by-bar reference and the event-driven engine.
Every test runs with each engine ``engine='auto'`` can choose (numba when installed, numpy)."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_backtest import make_bars

from osmarkets import Brain
from osmarkets.backtest import backtest
from osmarkets.backtest.vectorized import BLOCK, _max_drawdown, steps, vectorized
from osmarkets.brokers.simulated import Commission
from osmarkets.strategies import SmaCross


@pytest.fixture(autouse=True, scope="module", params=["numba", "numpy"])
def engine(request):
    """The engine ``vectorized`` picks by default: numba (when installed) or numpy, by hiding
    numba from it (the fallback)."""
    from osmarkets.backtest import kernels

    available = kernels.AVAILABLE
    kernels.AVAILABLE = available and request.param == "numba"
    yield request.param
    kernels.AVAILABLE = available


def tick_bars(n=900, seed=3, tick=0.25, quiet=0.7):
    """Prices on a tick grid with long flat stretches, so moving averages tie exactly."""
    rng = np.random.default_rng(seed)
    moves = rng.choice([-1, 0, 1], size=n, p=[(1 - quiet) / 2, quiet, (1 - quiet) / 2])
    close = 100.0 + tick * np.cumsum(moves)
    open_ = np.r_[100.0, close[:-1]] + tick * rng.integers(-1, 2, n)
    index = pd.date_range("2024-01-02", periods=n, freq="1min", tz="UTC", name="time")
    return pd.DataFrame(
        {"open": open_, "high": np.maximum(open_, close) + tick,
         "low": np.minimum(open_, close) - tick, "close": close, "volume": 1.0},
        index=index,
    )  # fmt: skip


def random_params(rng, count):
    return [
        {"fast": int(rng.integers(1, 40)), "slow": int(rng.integers(1, 60)),
         "size": float(rng.choice([1, 3, 10]))}
        for _ in range(count)
    ]  # fmt: skip


def assert_same(a, b):
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)
    if a.equity is not None:
        assert np.array_equal(a.equity.to_numpy(), b.equity.to_numpy())


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    ticks=st.booleans(),
    fill=st.sampled_from(["next_open", "close"]),
)
def test_batch_equals_per_combination(seed, ticks, fill):
    rng = np.random.default_rng(seed)
    data = tick_bars(700, seed=seed % 1000) if ticks else make_bars(700, seed=seed % 1000)
    params = random_params(rng, 9)
    batched = SmaCross.signals_batch(data, params)
    one_by_one = np.vstack([SmaCross.signals(data, **p) for p in params])
    assert np.array_equal(batched, one_by_one)
    costs = {"spread": 0.02, "commission": Commission(per_unit=0.01, minimum=0.5)}
    fast = vectorized(SmaCross, data, params, fill=fill, equity=True, chunk=4, **costs)
    slow = vectorized(SmaCross, data, params, fill=fill, equity=True, batch=False, **costs)
    assert_same(fast, slow)


@pytest.mark.parametrize("fill", ["next_open", "close"])
@pytest.mark.parametrize("ticks", [True, False])
def test_random_parameter_sets_match_the_event_driven_engine(fill, ticks):
    data = tick_bars(1200, seed=21) if ticks else make_bars(1200, seed=21)
    params = random_params(np.random.default_rng(99), 6) + [
        {"fast": 30, "slow": 8, "size": 2.0},  # fast longer than slow: truncated averages early
        {"fast": 5, "slow": 5, "size": 1.0},  # never crosses
    ]
    costs = {"spread": 0.05, "slippage": 0.01, "commission": Commission(fraction=1e-4)}
    grid = vectorized(SmaCross, data, params, fill=fill, equity=True, **costs)
    traded = 0
    for row, p in enumerate(params):
        ref = backtest(SmaCross, data, "X:M1", params=p, fill=fill, **costs)
        traded += len(ref.trades)
        assert grid.table["trades"].iloc[row] == len(ref.trades), p
        assert grid.table["final_value"].iloc[row] == pytest.approx(ref.final_value, rel=1e-12)
        assert np.allclose(grid.equity[row].to_numpy(), ref.equity.to_numpy(), rtol=1e-12)
    assert traded > 50


def target_path(seed, n):
    """Positions that change now and then, long and short, in half units (exact in floats)."""
    rng = np.random.default_rng(seed)
    levels = rng.integers(-4, 5, n) / 2.0
    hold = rng.random(n) < 0.85
    hold[0] = False
    out = levels.copy()
    for t in range(1, n):
        if hold[t]:
            out[t] = out[t - 1]
    return out


class Follower(Brain):
    """Trades to a predetermined target after every bar; ``signals`` gives the same targets."""

    seed = 0
    scale = 10.0

    def on_start(self):
        self.path = target_path(self.seed, 100_000) * self.scale
        self.count = 0

    def on_new_bar(self, series):
        want = self.path[self.count]
        self.count += 1
        symbol = series.bsid.symbol
        delta = want - self.position(symbol)
        if delta:
            self.send_order("buy" if delta > 0 else "sell", abs(delta), symbol)

    @classmethod
    def signals(cls, data, seed=seed, scale=scale, **_):
        return target_path(seed, 100_000)[: len(data)] * scale


def bar_by_bar(data, target, cash, fill, half=0.0, slip=0.0, commission=None):
    """Reference simulation: one bar at a time, plain Python."""
    quoted = "ask_open" in data
    field = "open" if fill == "next_open" else "close"
    if quoted:
        buy, sell = data[f"ask_{field}"].to_numpy(), data[f"bid_{field}"].to_numpy()
    else:
        buy, sell = data[field].to_numpy() + half, data[field].to_numpy() - half
    close = data["close"].to_numpy()
    held, spent, fills, curve = 0.0, 0.0, 0, []
    for t in range(len(close)):
        want = (target[t - 1] if t else 0.0) if fill == "next_open" else target[t]
        delta = want - held
        if delta:
            price = buy[t] + slip if delta > 0 else sell[t] - slip
            cost = delta * price
            if commission is not None:
                cost += commission(abs(delta), price)
            spent += cost
            held += delta
            fills += 1
        curve.append((cash - spent) + held * close[t])
    curve = np.array(curve)
    peaks = np.maximum.accumulate(curve)
    drawdown = max(1.0 - value / peak for value, peak in zip(curve, peaks, strict=True))
    return fills, curve, drawdown


@pytest.mark.parametrize("fill", ["next_open", "close"])
@pytest.mark.parametrize("quotes", [0.0, 0.04])
def test_long_and_short_targets_match_reference_and_engine(fill, quotes):
    data = make_bars(BLOCK * 2 + 37, seed=8, quotes=quotes)
    commission = Commission(per_unit=0.02, fraction=1e-4, minimum=0.3)
    params = [{"seed": s, "scale": 10.0} for s in range(5)]
    out = vectorized(Follower, data, params, fill=fill, spread=0.1, slippage=0.01,
                     commission=commission, equity=True, chunk=2)  # fmt: skip
    half = 0.0 if quotes else 0.05
    for row, p in enumerate(params):
        target = Follower.signals(data, **p)
        fills, curve, drawdown = bar_by_bar(data, target, 100_000.0, fill, half, 0.01, commission)
        assert out.table["trades"].iloc[row] == fills
        assert np.allclose(out.equity[row].to_numpy(), curve, rtol=1e-13, atol=0)
        assert out.table["max_drawdown"].iloc[row] == pytest.approx(drawdown, rel=1e-12)
        ref = backtest(Follower, data, "X:M1", params=p, fill=fill, spread=0.1, slippage=0.01,
                       commission=commission)  # fmt: skip
        assert len(ref.trades) == fills
        assert out.table["final_value"].iloc[row] == pytest.approx(ref.final_value, rel=1e-12)


def naive_drawdown(curves):
    peaks = np.maximum.accumulate(curves, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.max(1.0 - curves / peaks, axis=1)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    blocks=st.integers(1, 4),
    shape=st.sampled_from(["walk", "rising", "falling", "flat", "steps", "negative", "sunk"]),
)
def test_block_drawdown_equals_the_bar_by_bar_formula(seed, blocks, shape):
    rng = np.random.default_rng(seed)
    n = blocks * BLOCK
    walk = 1000.0 + np.cumsum(rng.normal(0, 3, (3, n)), axis=1)
    curves = {
        "walk": walk,
        "rising": np.cumsum(rng.random((3, n)), axis=1) + 1.0,
        "falling": 1e4 - np.cumsum(rng.random((3, n)), axis=1),
        "flat": np.full((3, n), 5.0),
        "steps": np.repeat(rng.integers(1, 5, (3, n // 16)).astype(float), 16, axis=1),
        "negative": walk - 1000.0,  # crosses zero
        "sunk": -1.0 - np.cumsum(rng.random((3, n)), axis=1),  # below zero throughout
    }[shape]
    got = _max_drawdown(curves.reshape(3, blocks, BLOCK))
    assert np.array_equal(got, naive_drawdown(curves), equal_nan=True)


def test_steps_is_a_forward_fill():
    rng = np.random.default_rng(5)
    dense = np.zeros((6, 50))
    dense[rng.random((6, 50)) < 0.1] = 1.0
    rows, cols = np.nonzero(dense)
    values = rng.normal(size=len(rows))
    expected = np.full((6, 50), -1.5)
    for r, c, v in zip(rows, cols, values, strict=True):
        expected[r, c:] = v
    assert np.array_equal(steps((6, 50), rows, cols, values, initial=-1.5), expected)


def test_padding_and_chunking_do_not_change_results():
    data = make_bars(BLOCK + 1, seed=4)
    params = random_params(np.random.default_rng(1), 7)
    one = vectorized(SmaCross, data, params, equity=True, chunk=1)
    many = vectorized(SmaCross, data, params, equity=True)
    assert_same(one, many)
    assert one.equity.shape == (BLOCK + 1, 7)


class BadShape(Brain):
    @classmethod
    def signals(cls, data, **_):
        return np.zeros(len(data))

    @classmethod
    def signals_batch(cls, data, param_sets):
        return np.zeros((len(param_sets), len(data) - 1))


class NanTarget(Brain):
    level = 1.0

    @classmethod
    def signals(cls, data, level=level, **_):
        out = np.full(len(data), float(level))
        out[3] = np.nan if level > 1 else level
        return out


def test_bad_targets_and_arguments_are_named():
    data = make_bars(40)
    with pytest.raises(ValueError, match=r"BadShape.signals_batch: expected shape \(1, 40\)"):
        vectorized(BadShape, data)
    assert vectorized(BadShape, data, batch=False).table["trades"].iloc[0] == 0
    with pytest.raises(ValueError, match=r"NanTarget.signals\{'level': 2\}: NaN"):
        vectorized(NanTarget, data, {"level": [1, 2]})
    with pytest.raises(ValueError, match="chunk"):
        vectorized(SmaCross, data, chunk=0)
    with pytest.raises(ValueError, match="fill"):
        vectorized(SmaCross, data, fill="later")
    with pytest.raises(ValueError, match="fast/slow: expected positive integers"):
        vectorized(SmaCross, data, {"fast": [0]})
    with pytest.raises(ValueError, match="fast/slow: expected positive integers"):
        vectorized(SmaCross, data, {"slow": [2.5]})
    with pytest.raises(ValueError, match="close"):
        vectorized(SmaCross, data.assign(close=np.r_[np.nan, data["close"].to_numpy()[1:]]))
