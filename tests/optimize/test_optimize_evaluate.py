"""Evaluation of configurations, filters and score smoothing."""

import math

import numpy as np
import pandas as pd
import pytest
from helpers_optimize import EventMomentum, Momentum, make_bars

from osmarkets.backtest import stats as st
from osmarkets.optimize.evaluate import STAT_KEYS, Evaluator, Filters, batch_stats, smooth_scores
from osmarkets.optimize.space import IntRange, Space
from osmarkets.strategies import SmaCross


def test_vectorised_and_event_driven_evaluations_agree():
    bars = make_bars(2500, seed=4, freq="7min")  # several calendar days
    configs = [{"fast": f, "slow": s} for f, s in [(3, 21), (8, 40), (12, 30), (5, 77)]]
    fast = Evaluator(SmaCross, bars, "X:M7", cash=1e6)
    slow = Evaluator(SmaCross, bars, "X:M7", cash=1e6, engine="event")
    assert fast.vectorized and not slow.vectorized
    for a, b in zip(fast.evaluate(configs), slow.evaluate(configs), strict=True):
        assert a["id"] == b["id"]
        assert a["stats"]["trades"] > 4
        for key in STAT_KEYS:
            assert a["stats"][key] == pytest.approx(b["stats"][key], rel=1e-9, nan_ok=True), key


def test_brain_without_signals_runs_event_driven():
    ev = Evaluator(EventMomentum, make_bars(400), "X:M1")
    assert not ev.vectorized
    rows = ev.evaluate([{"lag": 3}, {"lag": 9}])
    assert [r["params"] for r in rows] == [{"lag": 3}, {"lag": 9}]
    assert all(r["stats"]["trades"] > 0 for r in rows)
    with pytest.raises(ValueError, match="signals"):
        Evaluator(EventMomentum, make_bars(400), engine="vectorized")


def test_evaluator_rejects_unknown_parameters_and_settings():
    ev = Evaluator(Momentum, make_bars(100))
    with pytest.raises(ValueError, match="nope"):
        ev.evaluate([{"nope": 1}])
    with pytest.raises(ValueError, match="score"):
        Evaluator(Momentum, make_bars(100), score="luck")
    with pytest.raises(ValueError, match="engine"):
        Evaluator(Momentum, make_bars(100), engine="gpu")
    with pytest.raises(ValueError, match="filters"):
        Evaluator(Momentum, make_bars(100), filters={"min_luck": 1})


def test_batch_stats_match_the_statistics_module():
    rng = np.random.default_rng(0)
    index = pd.date_range("2024-01-01", periods=500, freq="2h", tz="UTC")
    curves = 1000 * np.exp(np.cumsum(rng.normal(0, 0.01, (3, 500)), axis=1))
    fills = rng.random((3, 500)) < 0.05
    day = np.unique(index.normalize().asi8, return_inverse=True)[1]
    days = (index[-1].normalize() - index[0].normalize()).days + 1
    ppy = st.infer_periods_per_year(index)
    got = batch_stats(curves, fills, day, days, 1000.0, ppy)
    for row in range(3):
        equity = pd.Series(curves[row], index=index)
        trades = pd.DataFrame(
            {"time": index[fills[row]], "symbol": "X", "side": "buy", "size": 1.0, "price": 1.0}
        )
        want = st.summary(equity, trades, initial_cash=1000.0, periods_per_year=ppy)
        for key in (
            "final_value",
            "total_return",
            "sharpe",
            "sortino",
            "max_drawdown",
            "trades",
            "trades_per_day",
            "active_days_fraction",
        ):
            assert got[key][row] == pytest.approx(want[key], rel=1e-9), key


STATS = {
    "trades_per_day": 2.0,
    "active_days_fraction": 0.5,
    "sharpe": 1.2,
    "sortino": 1.5,
    "max_drawdown": 0.1,
    "trades": 40,
}


@pytest.mark.parametrize(
    "field, limit, passes",
    [
        ("min_trades_per_day", 2.0, True),
        ("min_trades_per_day", 2.1, False),
        ("min_active_days", 0.5, True),
        ("min_active_days", 0.6, False),
        ("min_sharpe", 1.0, True),
        ("min_sharpe", 1.3, False),
        ("min_sortino", 1.5, True),
        ("min_sortino", 2.0, False),
        ("max_drawdown", 0.1, True),
        ("max_drawdown", 0.05, False),
        ("min_trades", 40, True),
        ("min_trades", 41, False),
    ],
)
def test_each_filter_threshold(field, limit, passes):
    verdict = Filters(**{field: limit}).verdict(STATS)
    assert (verdict == "") is passes
    if not passes:
        assert verdict.split()[0] in STATS


def test_an_undefined_statistic_fails_its_filter_only():
    stats = {**STATS, "sharpe": math.nan}
    assert Filters(min_sharpe=0.0).verdict(stats) == "sharpe undefined"
    assert Filters(min_trades=1).verdict(stats) == ""


@pytest.mark.parametrize(
    "bad", [{"min_sharpe": "high"}, {"min_trades": math.nan}, {"max_drawdown": True}]
)
def test_bad_filter_values_raise_naming_the_field(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        Filters.coerce(bad)


def test_smoothing_lowers_an_isolated_peak_below_a_plateau():
    space = Space({"a": IntRange(0, 20)})
    scores = {a: 1.0 for a in range(21)}
    scores[3] = 10.0  # lucky spike among poor neighbours
    for a in (14, 15, 16, 17, 18):
        scores[a] = 5.0  # a broad plateau
    table = pd.DataFrame({"a": list(scores), "score": list(scores.values())})
    smooth = smooth_scores(table, space, neighbours=5)
    assert table["score"].idxmax() == 3
    assert table.loc[smooth.idxmax(), "a"] == 16
    assert smooth[3] < smooth[16]


def test_smoothing_keeps_nan_scores_nan():
    space = Space({"a": IntRange(0, 5)})
    table = pd.DataFrame({"a": range(6), "score": [1, np.nan, 2, 3, np.nan, np.nan]})
    smooth = smooth_scores(table, space, neighbours=2)
    assert np.isnan(smooth[1]) and np.isfinite(smooth[0])


def test_the_optimisation_maths_does_not_import_osbrain():
    import subprocess
    import sys

    code = ("import sys, osmarkets.optimize; osmarkets.optimize.explore; "
            "print('osbrain' in sys.modules)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.stdout.strip() == "False", done.stderr
