"""The portfolio's and walk-forward's statistics count the members' fills, round trips, win rate
and exposure (they were computed from an equity curve alone: ``trades 0, round_trips 0,
win_rate nan, exposure nan`` for a member that traded)."""

import math

import numpy as np
import pandas as pd
import pytest
from helpers_optimize import EventMomentum, Momentum, make_bars

from osmarkets.backtest import backtest
from osmarkets.brokers.simulated import Commission
from osmarkets.optimize import Evaluator, IntRange, explore, select_portfolio, walk_forward
from osmarkets.optimize.pipeline import member_run, vectorized_activity
from osmarkets.optimize.portfolio import ACTIVITY_KEYS, Activity, activity_stats

KEYS = ("trades", "round_trips", "win_rate", "profit_factor", "average_trade", "exposure",
        "trades_per_day", "active_days_fraction")  # fmt: skip


def _close(a, b):
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == pytest.approx(b, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("brain", [Momentum, EventMomentum], ids=["vectorized", "event"])
def test_a_one_member_portfolio_has_its_members_statistics(brain):
    bars = make_bars(2000, seed=5)
    result = explore(brain, bars, {"lag": IntRange(1, 40)}, samples=10, max_members=1)
    portfolio = result.portfolio
    [member] = portfolio.members
    row = result.table.set_index("id").loc[member]
    own = backtest(EventMomentum, bars, "DATA:M1", params=portfolio.params[member]).stats
    stats = portfolio.stats
    assert stats["trades"] == row["trades"] == own["trades"] > 0
    assert stats["round_trips"] == own["round_trips"] > 0
    assert 0 < stats["exposure"] <= 1 and 0 <= stats["win_rate"] <= 1
    for key in KEYS:
        assert _close(stats[key], own[key]), key
    assert stats["trades_per_day"] == pytest.approx(row["trades_per_day"])
    assert stats["active_days_fraction"] == pytest.approx(row["active_days_fraction"])


def test_members_fills_are_pooled_and_their_pnl_scaled_by_weight():
    bars = make_bars(1500, seed=3)
    runs = {
        lag: backtest(EventMomentum, bars, "DATA:M1", params={"lag": lag}, cash=100_000.0)
        for lag in (3, 17)
    }
    weights = {3: 0.25, 17: 0.75}
    curves = pd.DataFrame({lag: r.equity for lag, r in runs.items()})
    curves.attrs["start"] = [100_000.0, 100_000.0]
    equity = 200_000.0 * (curves / 100_000.0) @ pd.Series(weights)
    parts = [(str(lag), Activity.of(r), weights[lag] * 2.0) for lag, r in runs.items()]
    stats = activity_stats(equity, parts, cash=200_000.0)
    assert stats["trades"] == sum(len(r.trades) for r in runs.values())
    pnl = np.concatenate([r.positions["pnl"].to_numpy() * weights[lag] * 2.0
                          for lag, r in runs.items()])  # fmt: skip
    assert stats["round_trips"] == len(pnl) == sum(len(r.positions) for r in runs.values())
    assert stats["win_rate"] == pytest.approx((pnl > 0).mean())
    assert stats["average_trade"] == pytest.approx(pnl.mean())
    assert stats["profit_factor"] == pytest.approx(pnl[pnl > 0].sum() / -pnl[pnl < 0].sum())
    busy = np.logical_or.reduce([(r.holdings.to_numpy() != 0).any(axis=1) for r in runs.values()])
    assert stats["exposure"] == pytest.approx(busy.mean())
    days = pd.concat([r.trades["time"] for r in runs.values()]).dt.normalize()
    assert stats["active_days_fraction"] == pytest.approx(days.nunique() / 2)  # 2 calendar days


def test_equity_curves_alone_give_unknown_not_zero_activity():
    index = pd.date_range("2024-01-01", periods=50, freq="h", tz="UTC")
    rng = np.random.default_rng(0)
    curve = pd.Series(100.0 * np.cumprod(1 + rng.normal(0.001, 0.01, 50)), index=index)
    portfolio = select_portfolio({"a": curve})
    for key in ACTIVITY_KEYS:
        assert math.isnan(portfolio.stats[key]), key


def test_vectorized_fills_rebuild_the_vectorized_equity_exactly():
    """The fills given for a vectorised member are the vectorised model's own: cash minus their
    cost plus the units held at the close is its equity curve, with spread, slippage and
    commission."""
    bars = make_bars(1200, seed=9)
    commission = Commission(per_unit=0.001, fraction=0.0002, minimum=0.05)
    for fill in ("next_open", "close"):
        evaluator = Evaluator(Momentum, bars, spread=0.002, slippage=0.001, fill=fill,
                              commission=commission, cash=50_000.0)  # fmt: skip
        equity, activity = member_run(evaluator, {"lag": 7})
        trades = activity.trades
        assert len(trades) > 50
        signed = np.where(trades["side"] == "buy", 1.0, -1.0) * trades["size"].to_numpy()
        cost = pd.Series(signed * trades["price"].to_numpy() + trades["commission"].to_numpy(),
                         index=pd.DatetimeIndex(trades["time"]))  # fmt: skip
        spent = cost.groupby(level=0).sum().reindex(equity.index, fill_value=0.0).cumsum()
        units = activity.holdings.iloc[:, 0].to_numpy()
        rebuilt = 50_000.0 - spent.to_numpy() + units * bars["close"].to_numpy()
        np.testing.assert_allclose(rebuilt, equity.to_numpy(), rtol=0, atol=1e-6)
        assert len(trades) == evaluator.evaluate([{"lag": 7}])[0]["stats"]["trades"]
        again = vectorized_activity(evaluator, {"lag": 7})
        pd.testing.assert_frame_equal(again.trades, trades)


@pytest.mark.parametrize("brain", [Momentum, EventMomentum], ids=["vectorized", "event"])
def test_walk_forward_statistics_count_every_window_members_fills(brain):
    bars = make_bars(2500, seed=8)
    wf = walk_forward(brain, bars, {"lag": IntRange(1, 40)}, train=1000, test=500, samples=10,
                      max_members=2, max_correlation=0.95)  # fmt: skip
    windows = wf.windows
    assert (windows["members"] > 0).all()
    stats = wf.stats
    assert stats["trades"] == windows["oos_trades"].sum() > 0
    trips = []
    busy = []
    for k, row in windows.iterrows():
        test = bars.loc[row["test_start"] : row["test_end"]]
        portfolio = wf.explorations[k].portfolio
        flags = np.zeros(len(test), dtype=bool)
        fills = 0
        for member in portfolio.members:
            run = backtest(EventMomentum, test, "DATA:M1", params=portfolio.params[member])
            fills += len(run.trades)
            trips.append(run.positions["pnl"].to_numpy())
            flags |= (run.holdings.to_numpy() != 0).any(axis=1)
        assert fills == row["oos_trades"]
        busy.append(flags)
    pnl = np.concatenate(trips)
    assert stats["round_trips"] == len(pnl) > 0
    assert stats["win_rate"] == pytest.approx((pnl > 0).mean())
    assert stats["exposure"] == pytest.approx(np.concatenate(busy).mean())
    assert 0 < stats["exposure"] <= 1
