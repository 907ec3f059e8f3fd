"""Backtest statistics checked against an independent reference: empyrical-reloaded.

``empyrical`` (the maintained fork of Quantopian's library, a test-only dependency) computes
Sharpe, Sortino, max drawdown, annual return (CAGR) and Calmar from per-bar returns. Where its
definitions match ours, both agree to a relative 1e-9 on several equity curves (seeded random
walks of daily and minute bars, a flat stretch, a losing curve, a single huge drawdown). Where
they differ by design (what a ratio with a zero denominator is, the risk-free rate's unit, the
sign of the drawdown, Sortino on one return, an account below zero, a leading NaN), the tests
below state the relation; docs/statistics.rst ("Checked against a reference implementation")
lists the same differences.
"""

import math

import empyrical as ep
import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from osmarkets.backtest.stats import (
    annual_return,
    calmar,
    infer_periods_per_year,
    max_drawdown,
    returns_from_equity,
    sharpe,
    sortino,
    summary,
)

REL = 1e-9
INITIAL = 10_000.0


def agree(ours: float, reference: float, *, abs_tol: float = 0.0) -> None:
    assert math.isfinite(ours) and math.isfinite(reference), (ours, reference)
    assert math.isclose(ours, reference, rel_tol=REL, abs_tol=abs_tol), (
        ours,
        reference,
        abs(ours - reference) / max(abs(reference), 1e-300),
    )


def equity_from(returns: np.ndarray, index: pd.DatetimeIndex) -> pd.Series:
    return pd.Series(INITIAL * np.cumprod(1.0 + returns), index=index)


def daily_walk() -> tuple[pd.Series, float]:
    rng = np.random.default_rng(20240101)
    index = pd.bdate_range("2021-01-04", periods=756, tz="UTC")  # three years of stock days
    return equity_from(rng.normal(4e-4, 1e-2, len(index)), index), 252.0


def minute_walk() -> tuple[pd.Series, float]:
    """Six weeks of one-minute FX-like bars (no weekends); P is the observed, non-integer rate."""
    rng = np.random.default_rng(7)
    index = pd.date_range("2024-03-04", "2024-04-13", freq="min", tz="UTC", inclusive="left")
    index = index[index.day_of_week < 5]
    ppy = infer_periods_per_year(index)
    assert 370_000 < ppy < 400_000 and ppy != round(ppy)
    return equity_from(rng.normal(3e-6, 3e-4, len(index)), index), ppy


def flat_stretch() -> tuple[pd.Series, float]:
    """A daily walk with 150 bars without any change in the middle (out of the market)."""
    rng = np.random.default_rng(11)
    returns = rng.normal(5e-4, 8e-3, 500)
    returns[150:300] = 0.0
    return equity_from(returns, pd.bdate_range("2022-01-03", periods=500, tz="UTC")), 252.0


def losing() -> tuple[pd.Series, float]:
    rng = np.random.default_rng(3)
    returns = rng.normal(-8e-4, 1.2e-2, 504)
    return equity_from(returns, pd.bdate_range("2020-01-02", periods=504, tz="UTC")), 252.0


def single_crash() -> tuple[pd.Series, float]:
    """Hourly bars: a steady climb, a 59% fall in four bars, a partial recovery."""
    rng = np.random.default_rng(5)
    returns = np.concatenate(
        [
            rng.normal(1e-3, 2e-3, 200),
            [-0.2, -0.2, -0.2, -0.2],
            rng.normal(2e-3, 2e-3, 200),
        ]
    )
    index = pd.date_range("2023-06-01", periods=len(returns), freq="h", tz="UTC")
    return equity_from(returns, index), 24 * 365.25


CURVES = {
    "daily_walk": daily_walk,
    "minute_walk": minute_walk,
    "flat_stretch": flat_stretch,
    "losing": losing,
    "single_crash": single_crash,
}


@pytest.fixture(params=list(CURVES), scope="module")
def curve(request):
    return CURVES[request.param]()


def test_the_curves_cover_what_they_claim():
    eq, _ = losing()
    assert eq.iloc[-1] < INITIAL
    eq, _ = flat_stretch()
    assert (eq.diff().iloc[150:300] == 0).all()
    eq, _ = single_crash()
    assert max_drawdown(eq, INITIAL) > 0.55


def test_summary_agrees_with_the_reference(curve):
    """Backtest summary (returns measured from the initial cash) vs empyrical on those returns."""
    eq, ppy = curve
    rets = returns_from_equity(eq, INITIAL)
    assert not rets.isna().any() and len(rets) == len(eq)
    got = summary(eq, None, initial_cash=INITIAL, periods_per_year=ppy)

    agree(got["sharpe"], ep.sharpe_ratio(rets, risk_free=0.0, annualization=ppy))
    agree(got["sortino"], ep.sortino_ratio(rets, required_return=0.0, annualization=ppy))
    agree(got["max_drawdown"], -ep.max_drawdown(rets))
    agree(got["annual_return"], ep.annual_return(rets, annualization=ppy))
    agree(got["annual_return"], ep.cagr(rets, annualization=ppy))
    agree(got["calmar"], ep.calmar_ratio(rets, annualization=ppy))
    agree(got["total_return"], ep.cum_returns_final(rets))


def test_functions_on_a_curve_without_initial_cash_agree(curve):
    """Called on their own, the statistics start at the first equity value: the reference gets
    the ``pct_change`` returns without the leading NaN (why: the test on a leading NaN)."""
    eq, ppy = curve
    rets = returns_from_equity(eq).dropna()
    assert len(rets) == len(eq) - 1

    agree(sharpe(rets, ppy), ep.sharpe_ratio(rets, annualization=ppy))
    agree(sortino(rets, ppy), ep.sortino_ratio(rets, annualization=ppy))
    agree(max_drawdown(eq), -ep.max_drawdown(rets))
    agree(annual_return(eq, ppy), ep.annual_return(rets, annualization=ppy))
    agree(calmar(eq, ppy), ep.calmar_ratio(rets, annualization=ppy))
    # the per-bar downside deviation, annualised as empyrical reports it
    shortfall = np.minimum(rets.to_numpy(), 0.0)
    agree(
        math.sqrt(float(np.mean(shortfall**2))) * math.sqrt(ppy),
        ep.downside_risk(rets, annualization=ppy),
    )


def test_signs_and_scales_of_the_curves():
    eq, ppy = losing()
    got = summary(eq, None, initial_cash=INITIAL, periods_per_year=ppy)
    assert got["annual_return"] < 0 and got["calmar"] < 0 and got["sharpe"] < 0
    eq, ppy = single_crash()
    got = summary(eq, None, initial_cash=INITIAL, periods_per_year=ppy)
    assert got["max_drawdown"] == pytest.approx(1 - 0.8**4, abs=0.05)


# -- differences by design ----------------------------------------------------------------------


def test_risk_free_rate_is_annual_here_and_per_bar_in_the_reference(curve):
    """Ours takes an annual rate and compounds it down to a bar; empyrical's ``risk_free`` /
    ``required_return`` is already per bar. With the converted rate, both agree."""
    eq, ppy = curve
    rets = returns_from_equity(eq, INITIAL)
    annual = 0.04
    per_bar = (1 + annual) ** (1 / ppy) - 1
    agree(sharpe(rets, ppy, annual), ep.sharpe_ratio(rets, risk_free=per_bar, annualization=ppy))
    agree(
        sortino(rets, ppy, annual),
        ep.sortino_ratio(rets, required_return=per_bar, annualization=ppy),
    )
    # the annual rate passed as it is would be a different (wrong) figure
    assert not math.isclose(
        sharpe(rets, ppy, annual),
        ep.sharpe_ratio(rets, risk_free=annual, annualization=ppy),
        rel_tol=1e-3,
    )


def test_periods_per_year_defaults_differ():
    """empyrical's ``period='daily'`` means 252 bars a year; ``summary`` without
    ``periods_per_year`` reads the rate from the timestamps. Same P, same figure."""
    eq, _ = daily_walk()
    rets = returns_from_equity(eq, INITIAL)
    agree(sharpe(rets, 252), ep.sharpe_ratio(rets, period="daily"))
    inferred = infer_periods_per_year(eq.index)
    assert 250 < inferred < 262 and inferred != 252  # weekdays, no holidays: about 261
    got = summary(eq, None, initial_cash=INITIAL)
    agree(got["sharpe"], ep.sharpe_ratio(rets, annualization=inferred))
    agree(got["annual_return"], ep.annual_return(rets, annualization=inferred))


def test_max_drawdown_is_positive_here_and_negative_in_the_reference():
    eq, _ = single_crash()
    rets = returns_from_equity(eq, INITIAL)
    assert max_drawdown(eq, INITIAL) > 0 > ep.max_drawdown(rets)
    agree(max_drawdown(eq, INITIAL), -ep.max_drawdown(rets))


def test_a_leading_nan_is_a_period_for_the_reference_annual_return():
    """``pct_change()`` starts with NaN. We drop it; empyrical's ``annual_return`` counts every
    row (``len(returns)``), so the reference must get ``returns.dropna()``."""
    eq, ppy = daily_walk()
    with_nan = eq.pct_change()
    n = len(with_nan) - 1
    growth = eq.iloc[-1] / eq.iloc[0]
    agree(annual_return(eq, ppy), growth ** (ppy / n) - 1)
    agree(ep.annual_return(with_nan, annualization=ppy), growth ** (ppy / (n + 1)) - 1)
    # the ratios skip NaNs in both
    agree(sharpe(with_nan, ppy), ep.sharpe_ratio(with_nan, annualization=ppy))
    agree(sortino(with_nan, ppy), ep.sortino_ratio(with_nan, annualization=ppy))


def _daily(values) -> pd.Series:
    return pd.Series(
        values, index=pd.date_range("2024-01-01", periods=len(values), tz="UTC"), dtype=float
    )


def test_zero_denominator_is_nan_here_and_infinite_in_the_reference():
    """Every bar +1%: no deviation and no shortfall. empyrical gives +inf, we give NaN."""
    up = _daily([0.01] * 20)
    assert math.isnan(sharpe(up, 252)) and ep.sharpe_ratio(up, annualization=252) == math.inf
    assert math.isnan(sortino(up, 252)) and ep.sortino_ratio(up, annualization=252) == math.inf
    down = _daily([-0.01] * 20)
    assert math.isnan(sharpe(down, 252)) and ep.sharpe_ratio(down, annualization=252) == -math.inf
    # a constant loss has a downside deviation: both give -sqrt(P)
    agree(sortino(down, 252), ep.sortino_ratio(down, annualization=252))
    agree(sortino(down, 252), -math.sqrt(252))
    # gains of different sizes: a Sharpe ratio, but no shortfall for Sortino
    gains = _daily([0.01, 0.02, 0.005, 0.03])
    agree(sharpe(gains, 252), ep.sharpe_ratio(gains, annualization=252))
    assert math.isnan(sortino(gains, 252))
    assert ep.sortino_ratio(gains, annualization=252) == math.inf


def test_undefined_cases_where_both_agree():
    flat = _daily([0.0] * 20)
    assert math.isnan(sharpe(flat, 252)) and math.isnan(ep.sharpe_ratio(flat, annualization=252))
    assert math.isnan(sortino(flat, 252))
    assert math.isnan(ep.sortino_ratio(flat, annualization=252))
    # Calmar without a drawdown
    rising = pd.Series(
        INITIAL * np.cumprod(1 + np.array([0.01, 0.02, 0.005])), index=flat.index[:3]
    )
    rets = returns_from_equity(rising, INITIAL)
    assert max_drawdown(rising, INITIAL) == 0 == ep.max_drawdown(rets)
    assert math.isnan(calmar(rising, 252, INITIAL))
    assert math.isnan(ep.calmar_ratio(rets, annualization=252))
    # one return: no sample standard deviation
    one = _daily([0.01])
    assert math.isnan(sharpe(one, 252)) and math.isnan(ep.sharpe_ratio(one, annualization=252))


def test_sortino_of_a_single_return():
    """Our downside deviation needs no second bar (it is a mean over n, not a sample deviation),
    so one losing bar gives -sqrt(P); empyrical returns NaN below two returns."""
    one = _daily([-0.01])
    agree(sortino(one, 252), -math.sqrt(252))
    assert math.isnan(ep.sortino_ratio(one, annualization=252))


def test_account_wiped_out_or_below_zero():
    """Equity reaching exactly 0: both give an annual return of -1. Below zero (a leveraged
    account owing money): we give -1 and a drawdown above 1; the reference's drawdown agrees,
    but its annual return is a negative growth factor raised to the power P/n: NaN for a
    fractional power (and so Calmar is NaN), a meaningless real number for a whole one."""
    zero = _daily([5_000.0, 0.0])
    rets = returns_from_equity(zero, INITIAL)
    assert annual_return(zero, 252, INITIAL) == -1 == ep.annual_return(rets, annualization=252)
    assert max_drawdown(zero, INITIAL) == 1 == -ep.max_drawdown(rets)

    below = _daily([5_000.0, -1_000.0])
    rets = returns_from_equity(below, INITIAL)
    ppy = 365.25  # P / n = 182.625
    assert annual_return(below, ppy, INITIAL) == -1
    agree(max_drawdown(below, INITIAL), 1.1)
    agree(max_drawdown(below, INITIAL), -ep.max_drawdown(rets))
    agree(calmar(below, ppy, INITIAL), -1 / 1.1)
    with np.errstate(invalid="ignore"):
        assert math.isnan(ep.annual_return(rets, annualization=ppy))
        assert math.isnan(ep.calmar_ratio(rets, annualization=ppy))
    # P / n = 2 / 2 = 1: the reference gives (-0.1) ** 1 - 1
    assert ep.annual_return(rets, annualization=2) == pytest.approx(-1.1)
    assert annual_return(below, 2, INITIAL) == -1


# -- any returns --------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    bp=st.lists(st.integers(-4_000, 4_000), min_size=2, max_size=300),
    ppy=st.sampled_from([12.0, 52.0, 252.0, 365.25, 24 * 365.25, 375_123.4]),
)
def test_property_agreement_on_any_returns(bp, ppy):
    """Returns in whole basis points (so a tie is exact), between -40% and +40% a bar."""
    returns = np.array(bp, dtype=float) / 1e4
    index = pd.date_range("2024-01-01", periods=len(returns), freq="h", tz="UTC")
    eq = equity_from(returns, index)
    growth = eq.iloc[-1] / INITIAL
    assume(abs(math.log(growth)) * ppy / len(returns) < 200)  # 1 + CAGR representable
    rets = returns_from_equity(eq, INITIAL)
    near_zero = 1e-9  # a ratio near 0 is a difference of nearly equal sums: compare absolutely

    if len(set(bp)) > 1:
        agree(sharpe(rets, ppy), ep.sharpe_ratio(rets, annualization=ppy), abs_tol=near_zero)
    if min(bp) < 0:
        agree(sortino(rets, ppy), ep.sortino_ratio(rets, annualization=ppy), abs_tol=near_zero)
    agree(max_drawdown(eq, INITIAL), -ep.max_drawdown(rets), abs_tol=near_zero)
    agree(annual_return(eq, ppy, INITIAL), ep.annual_return(rets, annualization=ppy),
          abs_tol=near_zero)  # fmt: skip
    if min(bp) < 0:
        agree(calmar(eq, ppy, INITIAL), ep.calmar_ratio(rets, annualization=ppy),
              abs_tol=near_zero)  # fmt: skip
