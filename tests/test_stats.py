"""Backtest statistics against hand computations on small series, plus invariants."""

import math
import statistics

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from osmarkets.backtest import stats
from osmarkets.backtest.stats import (
    active_days_fraction,
    annual_return,
    average_trade,
    calmar,
    exposure,
    infer_periods_per_year,
    max_drawdown,
    max_drawdown_duration,
    profit_factor,
    round_trips,
    sharpe,
    sortino,
    summary,
    total_return,
    trades_per_day,
    win_rate,
)

DAY = pd.Timedelta(days=1)


def daily(values, start="2024-01-01"):
    return pd.Series(
        values, index=pd.date_range(start, periods=len(values), freq="D", tz="UTC"), dtype=float
    )


def fills(rows):
    """rows: (day, symbol, side, size, price, commission)."""
    base = pd.Timestamp("2024-01-01", tz="UTC")
    return pd.DataFrame(
        [
            {"time": base + pd.Timedelta(hours=h), "symbol": s, "side": side, "size": q,
             "price": p, "commission": c}
            for h, s, side, q, p, c in rows
        ]
    )  # fmt: skip


# -- independent reference implementations (plain Python loops) -------------------------------


def brute_max_drawdown(values):
    peak, worst = values[0], 0.0
    for v in values:
        peak = max(peak, v)
        worst = max(worst, (peak - v) / peak)
    return worst


def brute_drawdown_duration(values, times):
    longest = pd.Timedelta(0)
    for i, v in enumerate(values):
        peak = max(values[: i + 1])
        if v >= peak:
            continue
        p = max(j for j in range(i + 1) if values[j] == peak)  # the peak this bar is under
        r = next((k for k in range(i + 1, len(values)) if values[k] >= peak), None)
        end = times[r] if r is not None else times[-1]
        longest = max(longest, end - times[p])
    return longest


# -- returns --------------------------------------------------------------------------------


def test_total_and_annual_return():
    values = [100.0, 104.0, 98.0, 103.0, 110.0, 121.0]
    eq = daily(values)
    assert total_return(eq) == pytest.approx(values[-1] / values[0] - 1)
    assert total_return(eq, initial=50.0) == pytest.approx(values[-1] / 50.0 - 1)
    periods = len(values) - 1
    assert annual_return(eq, 252) == pytest.approx((values[-1] / values[0]) ** (252 / periods) - 1)
    # with the starting value one bar before the curve, there is one more step
    expected = (values[-1] / 90.0) ** (252 / len(values)) - 1
    assert annual_return(eq, 252, initial=90.0) == pytest.approx(expected)


def test_return_edge_cases():
    assert math.isnan(total_return(daily([])))
    assert total_return(daily([5.0])) == 0.0
    assert math.isnan(annual_return(daily([5.0]), 252))  # no step to annualise
    assert math.isnan(total_return(daily([0.0, 1.0])))  # return on nothing
    assert annual_return(daily([100.0, -5.0]), 252) == -1.0  # wiped out
    assert annual_return(daily([100.0, 100.0, 100.0]), 252) == 0.0


def test_sharpe_by_hand():
    r = [0.01, -0.02, 0.015, 0.003, -0.004, 0.02]
    expected = statistics.mean(r) / statistics.stdev(r) * math.sqrt(252)
    assert sharpe(pd.Series(r), 252) == pytest.approx(expected)
    rf = 0.03
    rf_bar = (1 + rf) ** (1 / 252) - 1
    ex = [x - rf_bar for x in r]
    expected = statistics.mean(ex) / statistics.stdev(ex) * math.sqrt(252)
    assert sharpe(pd.Series(r), 252, risk_free_rate=rf) == pytest.approx(expected)


def test_sortino_by_hand():
    r = [0.01, -0.02, 0.015, 0.003, -0.004, 0.02]
    rf_bar = (1 + 0.02) ** (1 / 12) - 1
    ex = [x - rf_bar for x in r]
    downside = math.sqrt(sum(min(x, 0.0) ** 2 for x in ex) / len(ex))
    expected = statistics.mean(ex) / downside * math.sqrt(12)
    assert sortino(pd.Series(r), 12, risk_free_rate=0.02) == pytest.approx(expected)


def test_ratio_edge_cases_are_nan_not_errors():
    assert math.isnan(sharpe(pd.Series([0.0, 0.0, 0.0]), 252))  # flat: no deviation
    assert math.isnan(sharpe(pd.Series([0.01]), 252))
    assert math.isnan(sharpe(pd.Series([], dtype=float), 252))
    assert math.isnan(sortino(pd.Series([0.01, 0.02]), 252))  # no shortfall
    assert math.isnan(sortino(pd.Series([], dtype=float), 252))
    # the leading NaN of pct_change() is ignored
    eq = daily([100.0, 101.0, 99.0, 102.0])
    assert sharpe(eq.pct_change(), 252) == pytest.approx(sharpe(eq.pct_change().iloc[1:], 252))


# -- drawdowns --------------------------------------------------------------------------------


def test_drawdown_by_hand():
    values = [100.0, 90.0, 95.0, 101.0, 100.0, 102.0, 80.0, 85.0]
    eq = daily(values)
    assert max_drawdown(eq) == pytest.approx(brute_max_drawdown(values))
    assert max_drawdown(eq) == pytest.approx((102 - 80) / 102)
    assert max_drawdown_duration(eq) == brute_drawdown_duration(values, list(eq.index))
    assert max_drawdown_duration(eq) == 3 * DAY  # 100 on day 0, recovered on day 3
    # initial cash as the first peak
    assert max_drawdown(daily([90.0, 95.0]), initial=100.0) == pytest.approx(0.1)
    ar = annual_return(eq, 365)
    assert calmar(eq, 365) == pytest.approx(ar / brute_max_drawdown(values))


def test_unrecovered_drawdown_runs_to_the_end():
    eq = daily([100.0, 120.0, 110.0, 115.0, 119.0, 90.0, 100.0])
    assert max_drawdown_duration(eq) == eq.index[-1] - eq.index[1]


def test_drawdown_edge_cases():
    assert math.isnan(max_drawdown(daily([])))
    assert pd.isna(max_drawdown_duration(daily([])))
    assert max_drawdown(daily([7.0])) == 0.0
    assert max_drawdown_duration(daily([7.0])) == pd.Timedelta(0)
    rising = daily([1.0, 2.0, 2.0, 3.0])
    assert max_drawdown(rising) == 0.0 and max_drawdown_duration(rising) == pd.Timedelta(0)
    assert math.isnan(calmar(rising, 252))  # no drawdown: the ratio is undefined
    with pytest.raises(ValueError, match="DatetimeIndex"):
        max_drawdown_duration(pd.Series([1.0, 2.0]))


equity_values = st.lists(st.floats(1.0, 1e6), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(values=equity_values, scale=st.floats(1e-3, 1e3))
def test_property_drawdown(values, scale):
    eq = daily(values)
    mdd = max_drawdown(eq)
    assert 0.0 <= mdd <= 1.0
    assert mdd == pytest.approx(brute_max_drawdown(values), abs=1e-12)
    assert max_drawdown(eq * scale) == pytest.approx(mdd, abs=1e-12)
    assert max_drawdown_duration(eq) == brute_drawdown_duration(values, list(eq.index))
    assert max_drawdown_duration(eq) <= eq.index[-1] - eq.index[0]


@settings(max_examples=60, deadline=None)
@given(
    r=st.lists(st.floats(-0.1, 0.1), min_size=2, max_size=40),
    scale=st.floats(0.01, 100.0),
)
def test_property_sharpe_sortino_scale_invariance(r, scale):
    s = pd.Series(r)
    assume(max(r) - min(r) > 1e-9)
    base = sharpe(s, 252)
    assert sharpe(s * scale, 252) == pytest.approx(base, rel=1e-6)
    assert sharpe(-s, 252) == pytest.approx(-base, rel=1e-6)
    base_sortino = sortino(s, 252)
    if not math.isnan(base_sortino):
        assert sortino(s * scale, 252) == pytest.approx(base_sortino, rel=1e-6)
        assert base_sortino >= base or base <= 0  # downside deviation <= total for mean >= 0


# -- round trips ------------------------------------------------------------------------------


def test_simple_long_round_trip():
    trips = round_trips(
        fills([(0, "EUR", "buy", 10, 100.0, 1.0), (1, "EUR", "sell", 10, 110.0, 1.5)])
    )
    assert len(trips) == 1
    t = trips.iloc[0]
    assert (t.symbol, t.side, t["size"], t.entry_price, t.exit_price) == (
        "EUR",
        "long",
        10,
        100,
        110,
    )
    assert t.pnl == pytest.approx(10 * (110 - 100) - 2.5)
    assert t.entry_time < t.exit_time


def test_reversal_closes_and_opens_a_new_round_trip():
    rows = [
        (0, "X", "buy", 10, 100.0, 3.0),
        (1, "X", "sell", 15, 90.0, 6.0),  # closes 10 long, opens 5 short
        (2, "X", "buy", 5, 80.0, 1.0),
    ]
    trips = round_trips(fills(rows))
    assert list(trips.side) == ["long", "short"]
    assert list(trips["size"]) == [10, 5]
    long_fee = 3.0 + 6.0 * 10 / 15
    short_fee = 6.0 * 5 / 15 + 1.0
    assert trips.pnl[0] == pytest.approx(10 * (90 - 100) - long_fee)
    assert trips.pnl[1] == pytest.approx(5 * (90 - 80) - short_fee)
    assert trips.exit_time[0] == trips.entry_time[1]


def test_scaling_in_and_out_is_one_round_trip():
    rows = [
        (0, "X", "buy", 10, 100.0, 0.0),
        (1, "X", "buy", 10, 110.0, 0.0),
        (2, "X", "sell", 5, 120.0, 0.0),
        (3, "X", "sell", 15, 90.0, 0.0),
        (4, "X", "sell", 7, 95.0, 0.0),  # opens a short left open at the end: not a trip
    ]
    trips = round_trips(fills(rows))
    assert len(trips) == 1
    t = trips.iloc[0]
    assert t["size"] == 20
    assert t.entry_price == pytest.approx((10 * 100 + 10 * 110) / 20)
    assert t.exit_price == pytest.approx((5 * 120 + 15 * 90) / 20)
    assert t.pnl == pytest.approx(5 * 120 + 15 * 90 - 10 * 100 - 10 * 110)


def test_symbols_are_netted_separately():
    rows = [
        (0, "A", "buy", 1, 10.0, 0.0),
        (1, "B", "sell", 2, 50.0, 0.0),
        (2, "A", "sell", 1, 12.0, 0.0),
        (3, "B", "buy", 2, 45.0, 0.0),
    ]
    trips = round_trips(fills(rows)).set_index("symbol")
    assert trips.loc["A", "pnl"] == pytest.approx(2.0) and trips.loc["A", "side"] == "long"
    assert trips.loc["B", "pnl"] == pytest.approx(10.0) and trips.loc["B", "side"] == "short"


@settings(max_examples=60, deadline=None)
@given(
    legs=st.lists(
        st.tuples(st.sampled_from(["buy", "sell"]), st.integers(1, 20), st.floats(1.0, 200.0),
                  st.floats(0.0, 2.0)),
        min_size=1,
        max_size=15,
    )
)  # fmt: skip
def test_property_round_trip_pnl_is_the_cash_flow(legs):
    rows = [(i, "S", side, q, p, c) for i, (side, q, p, c) in enumerate(legs)]
    pos = sum(q if side == "buy" else -q for side, q, _, _ in legs)
    if pos:  # close the position so every unit is in a round trip
        rows.append((len(rows), "S", "sell" if pos > 0 else "buy", abs(pos), 100.0, 0.5))
    cash = sum((-q if side == "buy" else q) * p - c for _, _, side, q, p, c in rows)
    trips = round_trips(fills(rows))
    assert trips.pnl.sum() == pytest.approx(cash, abs=1e-6)
    assert trips.commission.sum() == pytest.approx(sum(r[5] for r in rows), abs=1e-9)
    # sizes opened equal sizes traded / 2 (each unit is opened once and closed once)
    assert trips["size"].sum() == pytest.approx(sum(r[3] for r in rows) / 2)
    assert (trips.exit_time >= trips.entry_time).all()


def test_round_trips_validation():
    good = fills([(0, "X", "buy", 1, 1.0, 0.0)])
    assert list(round_trips(good).columns) == stats.ROUND_TRIP_COLUMNS
    assert round_trips(good).empty and round_trips(None).empty
    with pytest.raises(ValueError, match="price"):
        round_trips(good.drop(columns="price"))
    with pytest.raises(ValueError, match=r"row 0: side"):
        round_trips(good.assign(side="hold"))
    with pytest.raises(ValueError, match=r"row 0: size"):
        round_trips(good.assign(size=-1))
    with pytest.raises(ValueError, match=r"row 0: price"):
        round_trips(good.assign(price=float("nan")))
    backwards = fills([(5, "X", "buy", 1, 1.0, 0.0), (1, "X", "sell", 1, 1.0, 0.0)])
    with pytest.raises(ValueError, match=r"row 1: time goes backwards"):
        round_trips(backwards)
    # no commission column: free fills; upper-case sides accepted
    plain = fills([(0, "X", "BUY", 2, 1.0, 0.0), (1, "X", "Sell", 2, 3.0, 0.0)])
    assert round_trips(plain.drop(columns="commission")).pnl[0] == pytest.approx(4.0)


def test_trade_statistics_by_hand():
    trips = pd.DataFrame({"pnl": [10.0, -4.0, 6.0, -2.0, 0.0]})
    assert win_rate(trips) == pytest.approx(2 / 5)
    assert profit_factor(trips) == pytest.approx((10 + 6) / (4 + 2))
    assert average_trade(trips) == pytest.approx(statistics.mean(trips.pnl))
    empty = pd.DataFrame({"pnl": []})
    assert math.isnan(win_rate(empty)) and math.isnan(average_trade(empty))
    assert math.isnan(profit_factor(empty))
    assert math.isnan(profit_factor(pd.DataFrame({"pnl": [1.0, 2.0]})))  # no loss
    assert profit_factor(pd.DataFrame({"pnl": [-1.0]})) == 0.0


# -- activity ---------------------------------------------------------------------------------


def test_exposure():
    assert exposure(pd.Series([0, 1, 0, -2])) == pytest.approx(2 / 4)
    frame = pd.DataFrame({"A": [0, 1, 0, 0], "B": [0, 0, np.nan, 3]})
    assert exposure(frame) == pytest.approx(2 / 4)
    assert math.isnan(exposure(pd.Series([], dtype=float)))
    with pytest.raises(ValueError, match="positions"):
        exposure(pd.DataFrame({"symbol": ["A"], "side": ["long"]}))


def test_trades_per_day_and_active_days():
    eq = pd.Series(1.0, index=pd.date_range("2024-01-01", "2024-01-04 23:00", freq="h", tz="UTC"))
    days = (eq.index[-1].normalize() - eq.index[0].normalize()).days + 1
    rows = [(1, "X", "buy", 1, 1.0, 0.0), (5, "X", "sell", 1, 1.0, 0.0),
            (50, "X", "buy", 1, 1.0, 0.0), (24 * 10, "X", "sell", 1, 1.0, 0.0)]  # fmt: skip
    trades = fills(rows)  # the last fill is after the equity span
    assert trades_per_day(trades, eq) == pytest.approx(3 / days)
    assert active_days_fraction(trades, eq) == pytest.approx(2 / days)
    assert trades_per_day(None, eq) == 0.0 and active_days_fraction(None, eq) == 0.0
    assert math.isnan(trades_per_day(trades, eq.iloc[:0]))
    # a naive index is read as UTC too
    naive = eq.tz_localize(None)
    assert active_days_fraction(trades, naive) == pytest.approx(2 / days)


def test_infer_periods_per_year():
    minutes = pd.date_range("2024-01-01", periods=600, freq="min", tz="UTC")
    assert infer_periods_per_year(minutes) == pytest.approx(365.25 * 24 * 60)
    business = pd.bdate_range("2020-01-01", "2023-12-31", tz="UTC")
    span_years = (business[-1] - business[0]) / pd.Timedelta(days=365.25)
    assert infer_periods_per_year(business) == pytest.approx((len(business) - 1) / span_years)
    assert 255 < infer_periods_per_year(business) < 265
    assert math.isnan(infer_periods_per_year(minutes[:1]))
    same = pd.DatetimeIndex([minutes[0]] * 3)
    assert math.isnan(infer_periods_per_year(same))
    with pytest.raises(ValueError, match="DatetimeIndex"):
        infer_periods_per_year(pd.RangeIndex(5))


# -- summary ----------------------------------------------------------------------------------


def test_summary_matches_the_individual_functions():
    eq = daily([1000.0, 1010.0, 990.0, 1030.0, 1025.0, 1050.0])
    trades = fills([(0, "X", "buy", 1, 10.0, 0.1), (30, "X", "sell", 1, 12.0, 0.1),
                    (50, "X", "sell", 2, 12.0, 0.1), (90, "X", "buy", 2, 13.0, 0.1)])  # fmt: skip
    positions = pd.Series([1, 0, -2, -2, 0, 0], index=eq.index)
    out = summary(eq, trades, initial_cash=1000.0, positions=positions, periods_per_year=252)
    assert tuple(out) == stats.SUMMARY_KEYS
    rets = eq.pct_change()
    assert out["final_value"] == 1050.0
    assert out["total_return"] == pytest.approx(0.05)
    assert out["annual_return"] == pytest.approx(1.05 ** (252 / len(eq)) - 1)
    # the first bar's return is measured from initial_cash (here 0), not dropped
    assert out["sharpe"] == pytest.approx(sharpe(rets.fillna(0.0), 252))
    assert out["sortino"] == pytest.approx(sortino(rets.fillna(0.0), 252))
    assert out["max_drawdown"] == pytest.approx(max_drawdown(eq))
    assert out["max_drawdown_duration"] == max_drawdown_duration(eq)
    assert out["trades"] == 4 and out["round_trips"] == 2
    assert out["win_rate"] == pytest.approx(0.5)
    assert out["exposure"] == pytest.approx(3 / 6)
    assert out["trades_per_day"] == pytest.approx(4 / 6)
    fill_days = {t.normalize() for t in trades.time}
    assert out["active_days_fraction"] == pytest.approx(len(fill_days) / len(eq))


@pytest.mark.parametrize(
    "equity",
    [daily([]), daily([1000.0]), daily([1000.0] * 10)],
    ids=["no-bars", "one-bar", "flat"],
)
def test_summary_edge_cases_do_not_raise(equity):
    out = summary(equity, None, initial_cash=1000.0, periods_per_year=None)
    assert tuple(out) == stats.SUMMARY_KEYS
    assert out["trades"] == 0 and out["round_trips"] == 0
    assert math.isnan(out["sharpe"]) and math.isnan(out["win_rate"])
    assert math.isnan(out["exposure"])
    if len(equity):
        assert out["total_return"] == 0.0 and out["max_drawdown"] == 0.0
        assert out["trades_per_day"] == 0.0
    else:
        assert math.isnan(out["final_value"]) and math.isnan(out["total_return"])


def test_summary_validation():
    eq = daily([1.0, float("nan"), 2.0])
    with pytest.raises(ValueError, match=r"equity .* row 2024-01-02"):
        summary(eq, None, initial_cash=1.0)
    with pytest.raises(ValueError, match="initial_cash"):
        summary(daily([1.0]), None, initial_cash=0)
    with pytest.raises(ValueError, match="periods_per_year"):
        summary(daily([1.0, 2.0]), None, initial_cash=1.0, periods_per_year=0)
    with pytest.raises(ValueError, match="equity must be a pandas Series"):
        total_return([1.0, 2.0])
    with pytest.raises(ValueError, match="risk_free_rate"):
        sharpe(pd.Series([0.1, 0.2]), 252, risk_free_rate=float("nan"))
