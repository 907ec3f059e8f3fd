"""Greedy, correlation-aware portfolio of strategy configurations.

The rule (:func:`select_portfolio`): candidates are visited best score first. The portfolio
starts empty; a candidate joins only if

1. the Pearson correlation of its per-bar returns with every member's returns is below
   ``max_correlation`` (a negative correlation is welcome: it diversifies), and
2. adding it improves the portfolio's performance measure (the Sharpe ratio of the combined
   equity by default; an empty portfolio's measure is minus infinity, so the first candidate
   with a defined measure joins).

It stops after ``max_members`` members. Weights are equal by default: the capital is split
equally between the members at the start and each runs on its own share without rebalancing,
so the combined equity is ``cash * mean(member_equity / member_start_value)``; that is what
running the members side by side on one account does. Custom weights must sum to 1.

Statistics (:attr:`Portfolio.stats`) come from the combined equity *and* from what the members
did (:class:`Activity`: their fills, holdings and round trips): ``trades`` counts every
member's fills, ``round_trips``, ``win_rate``, ``profit_factor`` and ``average_trade`` pool the
members' round trips (each member's netted on its own, its P&L scaled to its share of the
cash), ``exposure`` is the fraction of bars with a position in any member, and
``trades_per_day`` and ``active_days_fraction`` count the fills of all members (see
:func:`activity_stats`). Given equity curves alone, those statistics are NaN (unknown), never 0.

Pure numpy/pandas: no osBrain here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..backtest import stats as st
from .results import annualisation_note

MEASURES = ("sharpe", "sortino", "total_return", "calmar")
#: The statistics of :func:`~osmarkets.backtest.stats.summary` that need fills or positions,
#: not just an equity curve.
ACTIVITY_KEYS = (
    "trades", "round_trips", "win_rate", "profit_factor", "average_trade", "exposure",
    "trades_per_day", "active_days_fraction",
)  # fmt: skip
_FILL_COLUMNS = ["time", "symbol", "side", "size", "price", "commission"]


@dataclass
class Activity:
    """What one strategy run did, for the statistics that an equity curve cannot give.

    ``trades``: one row per fill (``time``, ``symbol``, ``side``, ``size``, ``price``,
    ``commission``), in time order; ``holdings``: units held per symbol after every bar (one
    column per symbol, the run's time index); ``round_trips``: its closed round trips as
    :func:`~osmarkets.backtest.stats.round_trips` gives them, ``pnl`` in account currency."""

    trades: pd.DataFrame
    holdings: pd.DataFrame
    round_trips: pd.DataFrame

    @classmethod
    def of(cls, result: Any) -> Activity:
        """The activity of a :class:`~osmarkets.backtest.result.Result`."""
        return cls(result.trades, result.holdings, result.positions)


def activity_stats(
    equity: pd.Series,
    parts: Sequence[tuple[str, Activity, float]],
    *,
    cash: float,
    periods_per_year: float | None = None,
) -> dict[str, Any]:
    """:func:`~osmarkets.backtest.stats.summary` of a combined ``equity`` made of the runs in
    ``parts``: ``(key, activity, scale)``, ``scale`` being the factor that turns the run's money
    into the combined account's (its weight times the combined cash over its own start value;
    walk-forward also multiplies by the growth of the windows before it).

    Every run's fills count (``trades``, ``trades_per_day``, ``active_days_fraction``); round
    trips are each run's own (runs are separate sub-accounts: a run's trip never nets against
    another's), their P&L and commission scaled by ``scale``; ``exposure`` is the fraction of
    bars of ``equity`` where any run holds a position."""
    index = pd.DatetimeIndex(equity.index)
    fills = []
    trips = []
    held = np.zeros(len(index), dtype=bool)
    for key, activity, scale in parts:
        trades = activity.trades
        if len(trades):
            fills.append(pd.DataFrame({
                "time": pd.to_datetime(trades["time"], utc=True),
                "symbol": f"{key}:" + trades["symbol"].astype(str),
                "side": trades["side"].to_numpy(),
                "size": trades["size"].to_numpy(dtype=float) * scale,
                "price": trades["price"].to_numpy(dtype=float),
                "commission": _column(trades, "commission") * scale,
            }))  # fmt: skip
        if len(activity.round_trips):
            trip = activity.round_trips.copy()
            trip["pnl"] = trip["pnl"].astype(float) * scale
            trip["commission"] = trip["commission"].astype(float) * scale
            trips.append(trip)
        holdings = activity.holdings
        if holdings.shape[1]:
            busy = (holdings.astype(float).fillna(0.0).to_numpy() != 0).any(axis=1)
            where = pd.Series(busy, index=pd.DatetimeIndex(holdings.index))
            where = where[~where.index.duplicated(keep="last")]
            held |= where.reindex(index, fill_value=False).to_numpy(dtype=bool)
    combined = (
        pd.concat(fills, ignore_index=True).sort_values("time", kind="stable")
        if fills
        else pd.DataFrame(columns=_FILL_COLUMNS)
    )
    positions = pd.Series(held.astype(float), index=index)
    summary = st.summary(equity, combined, initial_cash=cash, positions=positions,
                         periods_per_year=periods_per_year)  # fmt: skip
    pooled = (
        pd.concat(trips, ignore_index=True)
        if trips
        else pd.DataFrame({"pnl": pd.Series(dtype=float)})
    )
    summary["round_trips"] = len(pooled)
    summary["win_rate"] = st.win_rate(pooled)
    summary["profit_factor"] = st.profit_factor(pooled)
    summary["average_trade"] = st.average_trade(pooled)
    return summary


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name in frame.columns:
        return frame[name].to_numpy(dtype=float)
    return np.zeros(len(frame))


def measure_of(
    equity: pd.Series, measure: str, periods_per_year: float, initial: float | None = None
) -> float:
    """The performance measure of an equity curve (NaN when undefined)."""
    if measure == "total_return":
        return st.total_return(equity, initial)
    if measure == "calmar":
        return st.calmar(equity, periods_per_year, initial)
    returns = st.returns_from_equity(equity, initial)
    if measure == "sharpe":
        return st.sharpe(returns, periods_per_year)
    if measure == "sortino":
        return st.sortino(returns, periods_per_year)
    raise ValueError(f"measure: expected one of {', '.join(MEASURES)}, got {measure!r}")


def combine(curves: pd.DataFrame, weights: Any = None, cash: float = 1.0) -> pd.Series:
    """Combined equity of member curves (columns) given their start values: each member runs on
    ``weight * cash`` from the start, no rebalancing."""
    if curves.shape[1] == 0:
        return pd.Series(float(cash), index=curves.index, name="equity")
    w = np.full(curves.shape[1], 1.0 / curves.shape[1]) if weights is None else np.asarray(weights)
    start = curves.attrs.get("start")
    base = np.asarray(start, dtype=float) if start is not None else curves.iloc[0].to_numpy()
    normalised = curves.to_numpy(dtype=float) / base
    return pd.Series(cash * normalised @ w, index=curves.index, name="equity")


@dataclass
class Portfolio:
    """``members``: configuration ids in the order they joined; ``params``: their parameters;
    ``weights``: a Series by id; ``correlation``: the members' return correlation matrix;
    ``equity``: the combined equity; ``member_equity``: one column per member;
    ``decisions``: one row per candidate visited (id, score, accepted, reason, measure);
    ``stats``: the statistics of the combined equity and of the members' fills (see the
    module documentation); ``annualisation``: how its ratios are annualised (one sentence)."""

    members: list[str]
    params: dict[str, dict[str, Any]]
    weights: pd.Series
    correlation: pd.DataFrame
    equity: pd.Series
    member_equity: pd.DataFrame
    decisions: pd.DataFrame
    measure: str = "sharpe"
    value: float = math.nan
    stats: dict[str, Any] = field(default_factory=dict)
    cash: float = 1.0
    annualisation: str = ""

    def to_pandas(self) -> pd.DataFrame:
        """Members with their weights and parameters."""
        rows = [{"id": m, "weight": float(self.weights[m]), **self.params.get(m, {})}
                for m in self.members]  # fmt: skip
        return pd.DataFrame(rows, columns=["id", "weight", *_param_names(self.params)])

    def __repr__(self) -> str:
        return f"<Portfolio {len(self.members)} members {self.measure}={self.value:.4g}>"

    def plot(self) -> Any:
        """Correlation matrix of the members and the combined equity (matplotlib figure)."""
        from .results import plot_portfolio

        return plot_portfolio(self)

    def to_html(self, path: str) -> str:
        """One self-contained HTML page: members, statistics, decisions, the chart."""
        from .results import portfolio_html

        return portfolio_html(self, path)


def _param_names(params: Mapping[str, Mapping[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for p in params.values():
        names.update(dict.fromkeys(p))
    return list(names)


def select_portfolio(
    curves: Mapping[str, pd.Series],
    *,
    scores: Mapping[str, float] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    max_correlation: float = 0.7,
    max_members: int = 10,
    measure: str = "sharpe",
    periods_per_year: float | None = None,
    cash: float | None = None,
    initial: Mapping[str, float] | None = None,
    activity: Mapping[str, Activity] | Callable[[str], Activity] | None = None,
) -> Portfolio:
    """Apply the greedy rule of this module to ``curves`` (id -> equity Series on one time
    index), visited in the given order (best first). ``initial``: each curve's value before its
    first bar (the starting cash), so the first bar's return counts; defaults to the first
    value. ``cash``: the combined account's starting value (default: the mean of ``initial``).
    ``activity``: each curve's :class:`Activity` (a mapping, or a function of the id, called
    for the members only), for the statistics of fills and positions; without it they are NaN.
    """
    if measure not in MEASURES:
        raise ValueError(f"measure: expected one of {', '.join(MEASURES)}, got {measure!r}")
    if not -1.0 <= max_correlation <= 1.0:
        raise ValueError(f"max_correlation: expected a value in [-1, 1], got {max_correlation}")
    if max_members < 1:
        raise ValueError(f"max_members: expected >= 1, got {max_members}")
    ids = list(curves)
    frame = pd.DataFrame({i: curves[i].astype(float) for i in ids})
    if frame.isna().any().any():
        raise ValueError("curves: equity curves must share one time index (NaN after aligning)")
    starts = {
        i: float((initial or {}).get(i, frame[i].iloc[0] if len(frame) else 1.0)) for i in ids
    }
    for i, value in starts.items():
        if not value > 0:
            raise ValueError(f"curves[{i!r}]: start value must be > 0, got {value}")
    account = (
        float(cash) if cash is not None else float(np.mean(list(starts.values())) if ids else 1.0)
    )
    if periods_per_year is None:
        periods_per_year = st.infer_periods_per_year(pd.DatetimeIndex(frame.index))
    prev = frame.shift(1)
    for i in ids:
        prev.loc[prev.index[:1], i] = starts[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = (frame / prev - 1.0) if len(frame) else frame
    returns = returns.replace([np.inf, -np.inf], np.nan)  # an account wiped out
    members: list[str] = []
    decisions = []
    current = -math.inf
    for i in ids:
        row = {"id": i, "score": float((scores or {}).get(i, math.nan)), "accepted": False,
               "reason": "", "measure": math.nan}  # fmt: skip
        decisions.append(row)
        if len(members) >= max_members:
            row["reason"] = "portfolio full"
            continue
        worst = _max_correlation(returns, i, members)
        if math.isnan(worst):
            row["reason"] = "correlation undefined (flat or non-finite returns)"
            continue
        if worst >= max_correlation:
            row["reason"] = f"correlation {worst:.3f} >= {max_correlation:g}"
            continue
        trial = members + [i]
        value = _measure(frame, trial, starts, account, measure, periods_per_year)
        row["measure"] = value
        if math.isnan(value) or not value > current:
            row["reason"] = f"{measure} {value:.4g} does not improve {current:.4g}"
            continue
        members, current = trial, value
        row["accepted"] = True
    weights = pd.Series(1.0 / len(members) if members else [], index=members, dtype=float)
    member_equity = frame[members].copy()
    member_equity.attrs["start"] = [starts[m] for m in members]
    equity = combine(member_equity, weights.to_numpy(), account)
    correlation = returns[members].corr() if members else pd.DataFrame()
    summary: dict[str, Any] = {}
    if len(equity) and activity is not None:
        get = activity if callable(activity) else activity.__getitem__
        scales = {m: float(weights[m]) * account / starts[m] for m in members}
        parts = [(m, get(m), scales[m]) for m in members]
        summary = activity_stats(equity, parts, cash=account, periods_per_year=periods_per_year)
    elif len(equity):  # equity curves alone say nothing of fills or positions
        summary = st.summary(equity, None, initial_cash=account, periods_per_year=periods_per_year)
        summary.update(dict.fromkeys(ACTIVITY_KEYS, math.nan))
    return Portfolio(
        members=members,
        params={m: dict((params or {}).get(m, {})) for m in members},
        weights=weights,
        correlation=correlation,
        equity=equity,
        member_equity=member_equity,
        decisions=pd.DataFrame(
            decisions, columns=["id", "score", "accepted", "reason", "measure"]
        ),  # fmt: skip
        measure=measure,
        value=current if members else math.nan,
        stats=summary,
        cash=account,
        annualisation=annualisation_note(pd.DatetimeIndex(frame.index), periods_per_year),
    )


def _max_correlation(returns: pd.DataFrame, candidate: str, members: list[str]) -> float:
    """Highest correlation of the candidate's returns with a member's; NaN when undefined
    (flat or non-finite returns)."""
    r = returns[candidate].to_numpy()
    if not np.isfinite(r).all() or r.max(initial=0.0) == r.min(initial=0.0):
        return math.nan
    if not members:
        return -math.inf
    worst = -math.inf
    for m in members:
        c = float(np.corrcoef(r, returns[m].to_numpy())[0, 1])
        if math.isnan(c):
            return math.nan
        worst = max(worst, c)
    return worst


def _measure(
    frame: pd.DataFrame,
    members: list[str],
    starts: Mapping[str, float],
    account: float,
    measure: str,
    periods_per_year: float,
) -> float:
    curves = frame[members].copy()
    curves.attrs["start"] = [starts[m] for m in members]
    equity = combine(curves, None, account)
    return measure_of(equity, measure, periods_per_year, account)


__all__ = [
    "ACTIVITY_KEYS", "Activity", "MEASURES", "Portfolio", "activity_stats", "combine",
    "measure_of", "select_portfolio",
]  # fmt: skip
