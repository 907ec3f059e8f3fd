"""Indicators: incremental classes and vectorised functions against independent pandas formulas."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from osmarkets.indicators import (
    ATR,
    EMA,
    MACD,
    RSI,
    SMA,
    WMA,
    BollingerBands,
    RollingMax,
    RollingMin,
    Stochastic,
    atr,
    bollinger,
    ema,
    macd,
    rolling_max,
    rolling_min,
    rsi,
    sma,
    stochastic,
    wma,
)

# -- independent reference formulas (pandas, written from the textbook definitions) ----------


def seeded_ewm(s: pd.Series, period: int, alpha: float) -> pd.Series:
    """EMA/Wilder recursion seeded with the SMA of the first ``period`` values."""
    s = s.reset_index(drop=True)
    out = pd.Series(np.nan, index=s.index)
    valid = s.dropna()
    if len(valid) < period:
        return out
    start = valid.index[0]
    seed_at = start + period - 1
    seeded = s.loc[seed_at:].copy()
    seeded.iloc[0] = s.loc[start:seed_at].mean()
    out.loc[seed_at:] = seeded.ewm(alpha=alpha, adjust=False).mean()
    return out


def ref_sma(x, n):
    return pd.Series(x).rolling(n).mean().to_numpy()


def ref_ema(x, n):
    return seeded_ewm(pd.Series(x), n, 2 / (n + 1)).to_numpy()


def ref_wma(x, n):
    weights = np.arange(1, n + 1, dtype=float)
    return pd.Series(x).rolling(n).apply(lambda w: (w * weights).sum() / weights.sum(), raw=True)


def ref_rsi(x, n):
    delta = pd.Series(x).diff()
    avg_gain = seeded_ewm(delta.clip(lower=0), n, 1 / n)
    avg_loss = seeded_ewm(-delta.clip(upper=0), n, 1 / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 100 - 100 / (1 + avg_gain / avg_loss)  # RS form; 0/0 (no move at all) -> 50
    out[(avg_gain == 0) & (avg_loss == 0)] = 50.0
    return out.to_numpy()


def ref_atr(h, lo, c, n):
    h, lo, c = pd.Series(h), pd.Series(lo), pd.Series(c)
    prev = c.shift()
    tr = pd.concat([h - lo, (h - prev).abs(), (lo - prev).abs()], axis=1).max(axis=1)
    return seeded_ewm(tr, n, 1 / n).to_numpy()


def ref_bollinger(x, n, k):
    s = pd.Series(x)
    mid = s.rolling(n).mean()
    std = s.rolling(n).apply(np.std, raw=True)  # numpy's default ddof=0: population std
    return mid.to_numpy(), (mid + k * std).to_numpy(), (mid - k * std).to_numpy()


def ref_macd(x, fast, slow, signal):
    s = pd.Series(x)
    line = seeded_ewm(s, fast, 2 / (fast + 1)) - seeded_ewm(s, slow, 2 / (slow + 1))
    sig = seeded_ewm(line, signal, 2 / (signal + 1))
    return line.to_numpy(), sig.to_numpy(), (line - sig).to_numpy()


def ref_stochastic(h, lo, c, kp, dp):
    hh = pd.Series(h).rolling(kp).apply(np.max, raw=True)
    ll = pd.Series(lo).rolling(kp).apply(np.min, raw=True)
    rng = hh - ll
    k = (100 * (pd.Series(c) - ll) / rng).where(rng > 0, 50.0).where(hh.notna())
    return k.to_numpy(), k.rolling(dp).mean().to_numpy()


def ref_rolling_max(x, n):
    return pd.Series(x).rolling(n).apply(np.max, raw=True).to_numpy()


def ref_rolling_min(x, n):
    return pd.Series(x).rolling(n).apply(np.min, raw=True).to_numpy()


# -- helpers -----------------------------------------------------------------------------------


def random_walk(n, seed=0, level=100.0):
    rng = np.random.default_rng(seed)
    return level + rng.standard_normal(n).cumsum()


def random_bars(n, seed=0):
    rng = np.random.default_rng(seed)
    close = 100 + rng.standard_normal(n).cumsum()
    high = close + rng.random(n) * 2
    low = close - rng.random(n) * 2
    return high, low, close


def feed(indicator, *columns):
    """Feed row by row; returns an (n, components) array of what ``update`` returned."""
    out = [indicator.update(*row) for row in zip(*columns, strict=True)]
    return np.array(out, dtype=float).reshape(len(out), -1)


def assert_close(actual, expected, rtol=1e-9, atol=1e-9):
    np.testing.assert_allclose(
        np.asarray(actual, float), np.asarray(expected, float), rtol=rtol, atol=atol
    )


# (class, constructor args, vectorised function, reference, number of inputs)
SINGLE = [
    (SMA, (7,), sma, ref_sma),
    (EMA, (7,), ema, ref_ema),
    (WMA, (7,), wma, ref_wma),
    (RSI, (7,), rsi, ref_rsi),
    (RollingMax, (7,), rolling_max, ref_rolling_max),
    (RollingMin, (7,), rolling_min, ref_rolling_min),
]


@pytest.mark.parametrize(
    ("cls", "args", "vec", "ref"), SINGLE, ids=lambda p: getattr(p, "__name__", "")
)
def test_single_input_indicators_match_reference(cls, args, vec, ref):
    x = random_walk(500, seed=1)
    expected = np.asarray(ref(x, *args), float)
    assert_close(feed(cls(*args), x)[:, 0], expected)
    assert_close(vec(x, *args), expected)


def test_bollinger_matches_reference():
    x = random_walk(500, seed=2)
    expected = np.column_stack(ref_bollinger(x, 20, 2.5))
    assert_close(feed(BollingerBands(20, 2.5), x), expected)
    assert_close(np.column_stack(bollinger(x, 20, 2.5)), expected)


def test_macd_matches_reference():
    x = random_walk(500, seed=3)
    expected = np.column_stack(ref_macd(x, 12, 26, 9))
    assert_close(feed(MACD(), x), expected)
    assert_close(np.column_stack(macd(x)), expected)


def test_atr_and_stochastic_match_reference():
    h, lo, c = random_bars(500, seed=4)
    assert_close(feed(ATR(14), h, lo, c)[:, 0], ref_atr(h, lo, c, 14))
    assert_close(atr(h, lo, c, 14), ref_atr(h, lo, c, 14))
    expected = np.column_stack(ref_stochastic(h, lo, c, 14, 3))
    assert_close(feed(Stochastic(14, 3), h, lo, c), expected)
    assert_close(np.column_stack(stochastic(h, lo, c, 14, 3)), expected)


prices = st.lists(st.floats(1.0, 1000.0), min_size=0, max_size=80)


@settings(max_examples=40, deadline=None)
@given(x=prices, period=st.integers(1, 12))
def test_property_single_input(x, period):
    x = np.array(x, dtype=float)
    for cls, _, vec, ref in SINGLE:
        expected = np.asarray(ref(x, period), float) if len(x) else np.array([])
        assert_close(feed(cls(period), x)[:, 0] if len(x) else np.array([]), expected, atol=1e-7)
        assert_close(vec(x, period), expected, atol=1e-7)


@settings(max_examples=30, deadline=None)
@given(
    bars=st.lists(
        st.tuples(st.floats(1.0, 1000.0), st.floats(0.0, 5.0), st.floats(0.0, 5.0)),
        min_size=1,
        max_size=60,
    ),
    period=st.integers(1, 10),
    d_period=st.integers(1, 4),
)
def test_property_bar_indicators(bars, period, d_period):
    c = np.array([b[0] for b in bars])
    h = c + np.array([b[1] for b in bars])
    lo = c - np.array([b[2] for b in bars])
    assert_close(feed(ATR(period), h, lo, c)[:, 0], ref_atr(h, lo, c, period), atol=1e-7)
    assert_close(atr(h, lo, c, period), ref_atr(h, lo, c, period), atol=1e-7)
    expected = np.column_stack(ref_stochastic(h, lo, c, period, d_period))
    assert_close(feed(Stochastic(period, d_period), h, lo, c), expected, atol=1e-7)
    assert_close(np.column_stack(stochastic(h, lo, c, period, d_period)), expected, atol=1e-7)


@settings(max_examples=30, deadline=None)
@given(x=st.lists(st.floats(1.0, 1000.0), min_size=1, max_size=80), period=st.integers(1, 12))
def test_property_bollinger_and_macd(x, period):
    x = np.array(x)
    expected = np.column_stack(ref_bollinger(x, period, 2.0))
    assert_close(feed(BollingerBands(period), x), expected, atol=1e-6)
    assert_close(np.column_stack(bollinger(x, period)), expected, atol=1e-6)
    fast, slow, signal = period, period + 3, 2
    expected = np.column_stack(ref_macd(x, fast, slow, signal))
    assert_close(feed(MACD(fast, slow, signal), x), expected, atol=1e-7)
    assert_close(np.column_stack(macd(x, fast, slow, signal)), expected, atol=1e-7)


# -- warm-up: NaN until ready ------------------------------------------------------------------

WARMUP = [
    (lambda: SMA(5), 5),
    (lambda: EMA(5), 5),
    (lambda: WMA(5), 5),
    (lambda: RSI(5), 6),  # needs period changes, so period + 1 values
    (lambda: RollingMax(5), 5),
    (lambda: RollingMin(5), 5),
    (lambda: BollingerBands(5), 5),
    (lambda: MACD(3, 5, 4), 8),  # slow + signal - 1
]


@pytest.mark.parametrize(("make", "needed"), WARMUP)
def test_nan_until_ready(make, needed):
    ind = make()
    assert not ind.ready
    assert np.isnan(ind.value).all()
    for i, v in enumerate(random_walk(needed + 3, seed=5)):
        out = ind.update(v)
        assert ind.ready == (i + 1 >= needed)
        if i + 1 < needed:
            assert np.isnan(out).any()
        else:
            assert not np.isnan(out).any()
        assert np.array_equal(np.asarray(out), np.asarray(ind.value), equal_nan=True)


def test_macd_line_exists_before_signal():
    ind = MACD(3, 5, 4)
    outs = feed(ind, random_walk(10, seed=6))
    assert np.isnan(outs[:4, 0]).all() and not np.isnan(outs[4:, 0]).any()
    assert np.isnan(outs[:7, 1]).all() and not np.isnan(outs[7:, 1]).any()


def test_bar_indicators_nan_until_ready():
    h, lo, c = random_bars(20, seed=7)
    atr_out = feed(ATR(4), h, lo, c)[:, 0]
    assert np.isnan(atr_out[:3]).all() and not np.isnan(atr_out[3:]).any()
    st_ind = Stochastic(4, 3)
    outs = []
    for i, bar in enumerate(zip(h, lo, c, strict=True)):
        outs.append(st_ind.update(*bar))
        assert st_ind.ready == (i + 1 >= 6)
    outs = np.array(outs)
    assert np.isnan(outs[:3, 0]).all() and not np.isnan(outs[3:, 0]).any()
    assert np.isnan(outs[:5, 1]).all() and not np.isnan(outs[5:, 1]).any()


def test_periods_are_exposed():
    assert SMA(9).period == 9 and RSI(14).period == 14 and ATR().period == 14
    assert MACD(12, 26, 9).period == 34 and Stochastic(14, 3).period == 16


# -- edge values -------------------------------------------------------------------------------


def test_flat_prices_give_neutral_rsi_and_stochastic_and_zero_width_bands():
    flat = [5.0] * 30
    assert feed(RSI(5), flat)[-1, 0] == 50.0
    assert rsi(np.array(flat), 5)[-1] == 50.0
    assert tuple(feed(Stochastic(5, 3), flat, flat, flat)[-1]) == (50.0, 50.0)
    bands = feed(BollingerBands(5), flat)[-1]
    assert tuple(bands) == (5.0, 5.0, 5.0)


def test_rsi_extremes():
    rising = np.arange(1.0, 30.0)
    assert feed(RSI(5), rising)[-1, 0] == 100.0
    assert feed(RSI(5), rising[::-1])[-1, 0] == 0.0


def test_rolling_extremes_follow_a_sliding_window():
    x = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]
    mx, mn = RollingMax(3), RollingMin(3)
    for i, v in enumerate(x):
        hi, lo = mx.update(v), mn.update(v)
        if i >= 2:
            assert hi == max(x[i - 2 : i + 1]) and lo == min(x[i - 2 : i + 1])


# -- no drift over long runs -------------------------------------------------------------------


def spiky_series(n, seed=8):
    """A random walk with rare huge spikes: a naive running sum keeps each spike's rounding
    error forever after the spike leaves the window."""
    rng = np.random.default_rng(seed)
    x = 100 + rng.standard_normal(n).cumsum() * 0.1
    spikes = rng.choice(n, size=n // 500, replace=False)
    x[spikes] = 1e12 * rng.random(len(spikes))
    return x, spikes


def calm_rows(n, spikes, span):
    """Rows whose last ``span`` inputs contain no spike."""
    mask = np.ones(n, dtype=bool)
    for s in spikes:
        mask[s : s + span] = False
    return mask


def test_sma_matches_pandas_over_1e5_values():
    x = random_walk(100_000, seed=12, level=10_000.0)
    expected = pd.Series(x).rolling(50).mean().to_numpy()
    assert_close(feed(SMA(50), x)[:, 0], expected, rtol=1e-11, atol=0)
    assert_close(sma(x, 50), expected, rtol=1e-11, atol=0)


def test_sma_does_not_drift_after_outliers():
    # pandas' own rolling mean does drift here (its running total keeps the spikes' rounding
    # error), so the reference is an exact math.fsum per window.
    n, period = 100_000, 50
    x, spikes = spiky_series(n)
    got = feed(SMA(period), x)[:, 0]
    # Exact window means (math.fsum), on the rows where the window and the previous one are
    # spike-free (so an exact recomputation has happened since the last spike left).
    calm = calm_rows(n, spikes, 2 * period)
    calm[: period - 1] = False
    rows = np.flatnonzero(calm)
    exact = np.array([math.fsum(x[i - period + 1 : i + 1]) / period for i in rows])
    assert_close(got[rows], exact, rtol=1e-12, atol=0)
    assert_close(sma(x, period)[rows], exact, rtol=1e-12, atol=0)


def test_wma_and_bollinger_do_not_drift():
    n, period = 30_000, 20
    x, spikes = spiky_series(n, seed=9)
    calm = calm_rows(n, spikes, 2 * period)
    calm[: period - 1] = False
    rows = np.flatnonzero(calm)[::37]
    weights = np.arange(1, period + 1)
    exact_wma = [math.fsum(weights * x[i - period + 1 : i + 1]) / weights.sum() for i in rows]
    assert_close(feed(WMA(period), x)[rows, 0], exact_wma, rtol=1e-12, atol=0)
    exact_std = [np.std(x[i - period + 1 : i + 1]) for i in rows]
    bands = feed(BollingerBands(period, 1.0), x)
    assert_close((bands[:, 1] - bands[:, 0])[rows], exact_std, rtol=1e-6, atol=1e-9)
    vec = bollinger(x, period, 1.0)
    assert_close((vec.upper - vec.mid)[rows], exact_std, rtol=1e-6, atol=1e-9)
    assert_close(wma(x, period)[rows], exact_wma, rtol=1e-12, atol=0)


# -- inputs: NaN warm-up, pandas in/out, bad values -------------------------------------------


def test_leading_nans_are_a_warm_up_not_data():
    x = random_walk(60, seed=10)
    padded = np.concatenate([[np.nan] * 4, x])
    for make in (lambda: SMA(5), lambda: EMA(5), lambda: RSI(5), lambda: MACD(3, 6, 3)):
        assert_close(feed(make(), padded)[4:], feed(make(), x))
    assert_close(ema(padded, 5)[4:], ema(x, 5))
    assert np.isnan(ema(padded, 5)[:4]).all()
    # chaining: an SMA of an RSI
    r = rsi(x, 5)
    assert_close(sma(r, 3)[5:], ref_sma(r[5:], 3))


def test_series_in_series_out():
    idx = pd.date_range("2024-01-01", periods=50, freq="min", tz="UTC")
    s = pd.Series(random_walk(50, seed=11), index=idx)
    out = sma(s, 5)
    assert isinstance(out, pd.Series) and out.index.equals(idx)
    bands = bollinger(s, 5)
    assert all(part.index.equals(idx) for part in bands)
    assert_close(bands.mid, out)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "3", None, True])
@pytest.mark.parametrize(
    "make",
    [
        SMA,
        EMA,
        WMA,
        RSI,
        ATR,
        BollingerBands,
        RollingMax,
        RollingMin,
        lambda p: sma([1.0, 2.0], p),
    ],
)
def test_bad_period_raises_naming_it(make, bad):
    with pytest.raises(ValueError, match="period"):
        make(bad)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: MACD(fast=0), "fast"),
        (lambda: MACD(slow=2.0), "slow"),
        (lambda: MACD(signal=-1), "signal"),
        (lambda: MACD(fast=26, slow=12), "fast"),
        (lambda: macd([1.0], fast=30), "fast"),
        (lambda: Stochastic(k_period=0), "k_period"),
        (lambda: Stochastic(d_period="3"), "d_period"),
        (lambda: BollingerBands(20, k=0), "k"),
        (lambda: bollinger([1.0], 2, k=float("nan")), "k"),
    ],
)
def test_bad_arguments_name_the_parameter(call, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call()


def test_non_finite_values_after_start_are_rejected():
    ind = SMA(3)
    ind.update(1.0)
    with pytest.raises(ValueError, match="value"):
        ind.update(float("nan"))
    with pytest.raises(ValueError, match="value"):
        EMA(3).update(float("inf"))
    atr_ind = ATR(3)
    atr_ind.update(2.0, 1.0, 1.5)
    with pytest.raises(ValueError, match="low"):
        atr_ind.update(2.0, float("nan"), 1.5)
    with pytest.raises(ValueError, match="high"):
        ATR(3).update(1.0, 2.0, 1.5)
    with pytest.raises(ValueError, match="high"):
        Stochastic().update(1.0, 2.0, 1.5)


def test_vectorised_bad_input_names_field_and_row():
    x = random_walk(10)
    x[6] = np.nan
    with pytest.raises(ValueError, match=r"values.*row 6"):
        sma(x, 3)
    idx = pd.date_range("2024-01-01", periods=10, freq="D")
    with pytest.raises(ValueError, match="2024-01-07"):
        ema(pd.Series(x, index=idx), 3)
    h, lo, c = random_bars(10)
    with pytest.raises(ValueError, match="low has 9 values"):
        atr(h, lo[:-1], c)
    lo[4] = h[4] + 1
    with pytest.raises(ValueError, match=r"high .* below low .* row 4"):
        stochastic(h, lo, c)
    with pytest.raises(ValueError, match="one-dimensional"):
        sma(np.ones((3, 3)), 2)
    with pytest.raises(ValueError, match="numeric"):
        sma(["a", "b"], 2)
    with pytest.raises(ValueError, match="values must be numeric"):
        sma(pd.Series(["a", "b"]), 2)


def test_short_inputs_give_all_nan():
    for f in (sma, ema, wma, rsi, rolling_max):
        assert np.isnan(f(np.array([1.0, 2.0]), 5)).all()
        assert len(f(np.array([]), 5)) == 0
    assert np.isnan(np.column_stack(macd(np.arange(1.0, 10.0)))).all()
