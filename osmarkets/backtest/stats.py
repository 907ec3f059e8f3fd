"""Backtest statistics: small functions on pandas objects, one formula each.

Conventions (the formulas are written out in the statistics page of the documentation):

- ``equity`` is a Series of account values (cash plus open positions marked to market) on a
  time index, one value per bar; ``returns`` are per-bar simple returns.
- A statistic that is undefined for the input (no bars, one bar, no trades, a zero
  denominator) is NaN, never an exception: an optimiser evaluating thousands of parameter
  sets must get a value it can filter on. In particular *a ratio with a zero denominator is
  NaN*, even when the numerator is positive (Sharpe and Sortino of a series without variance or
  downside, profit factor without a losing trade, Calmar without a drawdown).
- Malformed input (not a Series, non-finite values, a fill with an unknown side) raises
  ``ValueError`` naming the field and the row.
- The risk-free rate is annual and compounded into a per-bar rate:
  ``(1 + rate) ** (1 / periods_per_year) - 1``.

Pure pandas/numpy: no osBrain import.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

NAN = math.nan
DAYS_PER_YEAR = 365.25
ROUND_TRIP_COLUMNS = [
    "symbol",
    "entry_time",
    "exit_time",
    "side",
    "size",
    "entry_price",
    "exit_price",
    "commission",
    "pnl",
]
SUMMARY_KEYS = (
    "final_value",
    "total_return",
    "annual_return",
    "sharpe",
    "sortino",
    "max_drawdown",
    "max_drawdown_duration",
    "calmar",
    "trades",
    "round_trips",
    "win_rate",
    "profit_factor",
    "average_trade",
    "exposure",
    "trades_per_day",
    "active_days_fraction",
)


# -- validation ---------------------------------------------------------------------------------


def _series(data: Any, name: str) -> pd.Series:
    """``data`` as a float Series; raise ``ValueError`` naming ``name`` and the first bad row."""
    if not isinstance(data, pd.Series):
        raise ValueError(f"{name} must be a pandas Series, got {type(data).__name__}")
    try:
        values = data.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from None
    bad = ~np.isfinite(values.to_numpy())
    if bad.any():
        row = values.index[int(np.argmax(bad))]
        raise ValueError(f"{name} has a non-finite value at row {row}")
    return values


def _returns(data: Any, name: str) -> np.ndarray:
    """Per-bar returns as an array; NaNs (the first row of ``pct_change()``) are dropped."""
    if not isinstance(data, pd.Series):
        raise ValueError(f"{name} must be a pandas Series, got {type(data).__name__}")
    values = data.astype(np.float64).to_numpy()
    values = values[~np.isnan(values)]
    if np.isinf(values).any():
        raise ValueError(f"{name} has an infinite value")
    return values


def _check_periods(periods_per_year: Any) -> float:
    value = float(periods_per_year)
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"periods_per_year must be a finite number > 0, got {periods_per_year!r}")
    return value


def _per_period_rate(risk_free_rate: float, periods_per_year: float) -> float:
    """Annual rate compounded down to one bar."""
    rate = float(risk_free_rate)
    if not math.isfinite(rate) or rate <= -1:
        raise ValueError(f"risk_free_rate must be a finite annual rate > -1, got {risk_free_rate}")
    return float((1.0 + rate) ** (1.0 / periods_per_year) - 1.0)


def _datetime_index(series: pd.Series, name: str) -> pd.DatetimeIndex:
    if not isinstance(series.index, pd.DatetimeIndex):
        raise ValueError(f"{name} must have a DatetimeIndex, got {type(series.index).__name__}")
    return series.index


# -- returns ------------------------------------------------------------------------------------


def total_return(equity: pd.Series, initial: float | None = None) -> float:
    """``final / initial - 1``; ``initial`` defaults to the first equity value.

    NaN for an empty series or a non-positive initial value (a return on nothing is undefined).
    """
    eq = _series(equity, "equity")
    if eq.empty:
        return NAN
    start = float(eq.iloc[0]) if initial is None else float(initial)
    if not start > 0:
        return NAN
    return float(eq.iloc[-1]) / start - 1.0


def annual_return(
    equity: pd.Series, periods_per_year: float, initial: float | None = None
) -> float:
    """Compound annual growth rate: ``(final / initial) ** (periods_per_year / periods) - 1``.

    ``periods`` is the number of bar-to-bar steps: ``len(equity) - 1``, or ``len(equity)`` when
    ``initial`` (the value one bar before the first point, e.g. the starting cash) is given.
    NaN with no step; -1 when the account was wiped out (final value <= 0).
    """
    ppy = _check_periods(periods_per_year)
    eq = _series(equity, "equity")
    periods = len(eq) - (1 if initial is None else 0)
    growth = total_return(eq, initial) + 1.0
    if periods <= 0 or math.isnan(growth):
        return NAN
    if growth <= 0:
        return -1.0
    return float(math.exp(math.log(growth) * ppy / periods) - 1.0)


def returns_from_equity(equity: pd.Series, initial: float | None = None) -> pd.Series:
    """Per-bar simple returns; with ``initial``, the first bar's return is measured from it."""
    eq = _series(equity, "equity")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = eq.pct_change()
        if initial is not None and not eq.empty:
            out.iloc[0] = eq.iloc[0] / float(initial) - 1.0 if initial else NAN
    return out.replace([np.inf, -np.inf], np.nan)


def sharpe(returns: pd.Series, periods_per_year: float, risk_free_rate: float = 0.0) -> float:
    """Annualised Sharpe ratio: ``mean(r - rf) / std(r - rf) * sqrt(periods_per_year)``.

    ``std`` is the sample standard deviation (``ddof=1``). NaN with fewer than two returns or
    when the excess returns are all equal (zero deviation).
    """
    ppy = _check_periods(periods_per_year)
    excess = _returns(returns, "returns") - _per_period_rate(risk_free_rate, ppy)
    if len(excess) < 2 or excess.max() == excess.min():
        return NAN
    return float(excess.mean() / excess.std(ddof=1) * math.sqrt(ppy))


def sortino(returns: pd.Series, periods_per_year: float, risk_free_rate: float = 0.0) -> float:
    """Annualised Sortino ratio: ``mean(r - t) / DD * sqrt(periods_per_year)``.

    The target ``t`` is the per-bar risk-free rate; the downside deviation is
    ``DD = sqrt(mean(min(r - t, 0) ** 2))`` over *all* bars (Sortino and Price's definition:
    bars above the target count as zero shortfall). NaN with no returns or no shortfall.
    """
    ppy = _check_periods(periods_per_year)
    excess = _returns(returns, "returns") - _per_period_rate(risk_free_rate, ppy)
    if len(excess) == 0:
        return NAN
    shortfall = np.minimum(excess, 0.0)
    downside = math.sqrt(float(np.mean(shortfall * shortfall)))
    if downside == 0.0:
        return NAN
    return float(excess.mean() / downside * math.sqrt(ppy))


# -- drawdowns ----------------------------------------------------------------------------------


def drawdown(equity: pd.Series, initial: float | None = None) -> pd.Series:
    """Per-bar drawdown ``1 - equity / running peak`` (a positive fraction, 0 at a new high).

    With ``initial``, it counts as the first peak. Bars where the peak is not positive are NaN.
    """
    eq = _series(equity, "equity")
    peak = eq.cummax()
    if initial is not None:
        peak = peak.clip(lower=float(initial))
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = 1.0 - eq / peak.where(peak > 0)
    return dd


def max_drawdown(equity: pd.Series, initial: float | None = None) -> float:
    """Largest fall from a running peak, as a positive fraction of that peak.

    In ``[0, 1]`` while equity stays positive (above 1 only if the account went negative). 0 for
    a single bar or a curve that never falls; NaN for an empty series.
    """
    dd = drawdown(equity, initial)
    if dd.empty or dd.isna().all():
        return NAN
    return float(max(dd.max(), 0.0))


def max_drawdown_duration(equity: pd.Series) -> pd.Timedelta:
    """Longest time from a peak to the recovery of that peak, or to the end if never recovered.

    A recovery is the first later bar with equity at or above the peak. ``Timedelta(0)`` when the
    curve never falls below a previous peak; ``NaT`` for an empty series. Needs a
    ``DatetimeIndex``.
    """
    eq = _series(equity, "equity")
    index = _datetime_index(eq, "equity")
    if eq.empty:
        return pd.Timedelta("NaT")
    values = eq.to_numpy()
    at_peak = values >= np.maximum.accumulate(values)
    times = index.asi8
    peak_time = pd.Series(np.where(at_peak, times, np.iinfo(np.int64).min)).cummax().to_numpy()
    # at_peak[0] is always true, so every bar has a peak at or before it
    recovered = at_peak[1:] & ~at_peak[:-1]
    durations = (times[1:] - peak_time[:-1])[recovered]
    longest = int(durations.max()) if len(durations) else 0
    if not at_peak[-1]:
        longest = max(longest, int(times[-1] - peak_time[-1]))
    unit = index.unit if hasattr(index, "unit") else "ns"
    return pd.Timedelta(np.timedelta64(longest, unit))


def calmar(equity: pd.Series, periods_per_year: float, initial: float | None = None) -> float:
    """Annual return divided by max drawdown; NaN without a drawdown."""
    mdd = max_drawdown(equity, initial)
    if not mdd > 0:
        return NAN
    return annual_return(equity, periods_per_year, initial) / mdd


# -- trades -------------------------------------------------------------------------------------


def _fills(trades: pd.DataFrame | None) -> pd.DataFrame:
    """Validated fills: time, symbol, side, size, price, commission (0 if absent)."""
    if trades is None:
        trades = pd.DataFrame(columns=["time", "symbol", "side", "size", "price"])
    if not isinstance(trades, pd.DataFrame):
        raise ValueError(f"trades must be a pandas DataFrame, got {type(trades).__name__}")
    missing = [c for c in ("time", "symbol", "side", "size", "price") if c not in trades.columns]
    if missing:
        raise ValueError(f"trades is missing column(s): {', '.join(missing)}")
    fills = trades.reset_index(drop=True)
    if "commission" not in fills.columns:
        fills = fills.assign(commission=0.0)
    fills = fills.assign(time=pd.to_datetime(fills["time"], utc=True))
    for col in ("size", "price", "commission"):
        try:
            values = fills[col].astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"trades column {col} must be numeric") from None
        bad = ~np.isfinite(values.to_numpy())
        if col == "size" or col == "price":
            bad |= values.to_numpy() <= 0
        if bad.any():
            row = int(np.argmax(bad))
            raise ValueError(f"trades row {row}: {col} must be finite and > 0, got {values[row]}")
        fills[col] = values
    sides = fills["side"].astype(str).str.lower()
    bad_side = ~sides.isin(["buy", "sell"])
    if bad_side.any():
        row = int(np.argmax(bad_side.to_numpy()))
        raise ValueError(
            f"trades row {row}: side must be 'buy' or 'sell', got {fills['side'][row]!r}"
        )
    fills["side"] = sides
    if fills["time"].isna().any():
        row = int(np.argmax(fills["time"].isna().to_numpy()))
        raise ValueError(f"trades row {row}: time is missing")
    backwards = fills["time"].diff() < pd.Timedelta(0)
    if backwards.any():
        row = int(np.argmax(backwards.to_numpy()))
        raise ValueError(f"trades row {row}: time goes backwards")
    return fills


class _Trip:
    """A round trip being built: opening and closing volumes and values."""

    __slots__ = ("entry_time", "direction", "opened", "open_value", "closed", "close_value", "fee")

    def __init__(self, time: pd.Timestamp, direction: int) -> None:
        self.entry_time = time
        self.direction = direction
        self.opened = 0.0
        self.open_value = 0.0
        self.closed = 0.0
        self.close_value = 0.0
        self.fee = 0.0


def round_trips(trades: pd.DataFrame | None) -> pd.DataFrame:
    """Closed round trips from fills, netting per symbol as OANDA does.

    Per symbol, a round trip runs from a flat position to the next flat position. Fills in the
    direction of the position add to it; fills against it reduce it; a fill that crosses zero
    closes the trip (with the part of the fill that flattens it) and opens a new one in the
    other direction with the rest. Commission of a crossing fill is split pro rata.

    Columns: ``symbol``, ``entry_time`` (first opening fill), ``exit_time`` (the fill that
    flattened it), ``side`` ('long'/'short'), ``size`` (units opened over the trip, which equals
    units closed), ``entry_price`` and ``exit_price`` (volume-weighted over the opening and
    closing fills), ``commission`` and ``pnl``:
    ``direction * size * (exit_price - entry_price) - commission``. A position still open at the
    end is not a round trip and is left out.
    """
    fills = _fills(trades)
    trips: list[dict[str, Any]] = []
    position: dict[Any, float] = {}
    current: dict[Any, _Trip] = {}
    for time, symbol, side, size, price, fee in zip(
        fills["time"], fills["symbol"], fills["side"], fills["size"], fills["price"],
        fills["commission"], strict=True,
    ):  # fmt: skip
        qty = size if side == "buy" else -size
        pos = position.get(symbol, 0.0)
        remaining = size
        remaining_fee = fee
        if pos != 0.0 and (pos > 0) != (qty > 0):  # reduces (or crosses) the position
            trip = current[symbol]
            closing = min(size, abs(pos))
            share = fee * closing / size
            trip.closed += closing
            trip.close_value += closing * price
            trip.fee += share
            remaining -= closing
            remaining_fee -= share
            pos += closing if qty > 0 else -closing
            # units are often fractional: a residue of rounding is flat
            if abs(pos) <= 1e-9 * max(size, trip.opened):
                pos = 0.0
                trips.append(_finish(symbol, trip, time))
                del current[symbol]
            if remaining <= 1e-9 * size:
                position[symbol] = pos
                continue
        if remaining > 0:
            trip = current.get(symbol) or _Trip(time, 1 if qty > 0 else -1)
            current[symbol] = trip
            trip.opened += remaining
            trip.open_value += remaining * price
            trip.fee += remaining_fee
            pos += remaining if qty > 0 else -remaining
        position[symbol] = pos
    if not trips:
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in ROUND_TRIP_COLUMNS})
    return pd.DataFrame(trips, columns=ROUND_TRIP_COLUMNS)


def _dtype(column: str) -> Any:
    if column in ("entry_time", "exit_time"):
        return "datetime64[ns, UTC]"
    if column in ("symbol", "side"):
        return object
    return np.float64


def _finish(symbol: Any, trip: _Trip, exit_time: pd.Timestamp) -> dict[str, Any]:
    entry = trip.open_value / trip.opened
    exit_ = trip.close_value / trip.closed
    size = trip.opened
    gross = trip.direction * (trip.close_value - trip.open_value)
    return {
        "symbol": symbol,
        "entry_time": trip.entry_time,
        "exit_time": exit_time,
        "side": "long" if trip.direction > 0 else "short",
        "size": size,
        "entry_price": entry,
        "exit_price": exit_,
        "commission": trip.fee,
        "pnl": gross - trip.fee,
    }


def _pnl(trips: pd.DataFrame) -> np.ndarray:
    if not isinstance(trips, pd.DataFrame) or "pnl" not in trips.columns:
        raise ValueError("round_trips must be a DataFrame with a pnl column (see round_trips())")
    return trips["pnl"].astype(np.float64).to_numpy()


def win_rate(round_trips: pd.DataFrame) -> float:
    """Fraction of round trips with a positive net pnl; NaN without round trips."""
    pnl = _pnl(round_trips)
    return float((pnl > 0).mean()) if len(pnl) else NAN


def profit_factor(round_trips: pd.DataFrame) -> float:
    """Gross profit over gross loss (sum of winning pnl / -sum of losing pnl); NaN if no loss."""
    pnl = _pnl(round_trips)
    loss = -pnl[pnl < 0].sum()
    if not loss > 0:
        return NAN
    return float(pnl[pnl > 0].sum() / loss)


def average_trade(round_trips: pd.DataFrame) -> float:
    """Mean net pnl per round trip (account currency); NaN without round trips."""
    pnl = _pnl(round_trips)
    return float(pnl.mean()) if len(pnl) else NAN


# -- activity -----------------------------------------------------------------------------------


def exposure(positions: pd.Series | pd.DataFrame) -> float:
    """Fraction of bars with a non-zero position (any symbol, for a DataFrame of positions).

    NaN positions count as flat (a symbol not traded yet); NaN for no bars.
    """
    if isinstance(positions, pd.Series):
        frame = positions.to_frame()
    elif isinstance(positions, pd.DataFrame):
        frame = positions
    else:
        raise ValueError(
            f"positions must be a Series or DataFrame, got {type(positions).__name__}"
        )
    if len(frame) == 0:
        return NAN
    try:
        values = frame.astype(np.float64).fillna(0.0).to_numpy()
    except (TypeError, ValueError):
        raise ValueError(
            "positions must hold the signed position size per bar (numbers), e.g. a Series "
            "or one column per symbol; round trips are not positions"
        ) from None
    return float((values != 0).any(axis=1).mean())


def _calendar_days(equity: pd.Series) -> tuple[pd.Timestamp, pd.Timestamp, int] | None:
    """First and last UTC calendar day of the equity span and the number of days, inclusive."""
    eq = _series(equity, "equity")
    index = _datetime_index(eq, "equity")
    if eq.empty:
        return None
    if index.tz is not None:
        index = index.tz_convert("UTC")
    first, last = index.min().normalize(), index.max().normalize()
    return first, last, (last - first).days + 1


def _fill_days(trades: pd.DataFrame | None, first: pd.Timestamp, last: pd.Timestamp) -> pd.Series:
    """UTC calendar day of each fill inside ``[first, last]`` days."""
    fills = _fills(trades)
    days = fills["time"].dt.normalize()
    if first.tzinfo is None:
        days = days.dt.tz_localize(None)
    return days[(days >= first) & (days <= last)]


def trades_per_day(trades: pd.DataFrame | None, equity: pd.Series) -> float:
    """Fills per calendar day of the equity span (UTC days, first to last bar's day inclusive).

    Calendar days include weekends and holidays, so this is an average over the whole test,
    comparable between instruments. NaN for an empty equity curve.
    """
    span = _calendar_days(equity)
    if span is None:
        return NAN
    first, last, days = span
    return len(_fill_days(trades, first, last)) / days


def active_days_fraction(trades: pd.DataFrame | None, equity: pd.Series) -> float:
    """ "Daily activity": fraction of calendar days in the equity span with at least one fill.

    Same UTC calendar days as :func:`trades_per_day` (so a strategy on daily stock bars is
    active on at most about 5/7 of them). NaN for an empty equity curve.
    """
    span = _calendar_days(equity)
    if span is None:
        return NAN
    first, last, days = span
    return _fill_days(trades, first, last).nunique() / days


def infer_periods_per_year(index: pd.Index) -> float:
    """Bars per year, for annualising, from the bars' own timestamps.

    When the sample spans at least 30 days, it is the observed rate:
    ``(len(index) - 1) / (span / 365.25 days)``. That is what an annualisation needs: one-minute
    FX bars (closed at weekends) give about 375,000 bars a year, not the 525,960 minutes of a
    calendar year, and daily stock bars give about 252. Over a shorter sample the rate is too
    noisy (one weekend changes it a lot), so it is ``365.25 days / median spacing``. NaN with
    fewer than two bars or no positive spacing.
    """
    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError(f"index must be a DatetimeIndex, got {type(index).__name__}")
    if len(index) < 2:
        return NAN
    year_ns = DAYS_PER_YEAR * 86_400e9
    times = index.asi8.astype(np.float64) * (pd.Timedelta(1, unit=index.unit).value)
    span = times.max() - times.min()
    if span >= 30 * 86_400e9:
        return float((len(index) - 1) / (span / year_ns))
    spacing = np.median(np.diff(np.sort(times)))
    if not spacing > 0:
        return NAN
    return float(year_ns / spacing)


# -- all together -------------------------------------------------------------------------------


def summary(
    equity: pd.Series,
    trades: pd.DataFrame | None,
    *,
    initial_cash: float,
    positions: pd.Series | pd.DataFrame | None = None,
    risk_free_rate: float = 0.0,
    periods_per_year: float | None = None,
) -> dict[str, Any]:
    """Every statistic of a backtest, as a dict with the keys of :data:`SUMMARY_KEYS`.

    ``initial_cash`` is the account value before the first bar: total and annual return and the
    first bar's return are measured from it, and it is the first peak for drawdowns.
    ``periods_per_year`` defaults to :func:`infer_periods_per_year` of the equity index.
    ``exposure`` is NaN without ``positions``; ``trades`` counts fills and ``round_trips``
    closed round trips.
    """
    eq = _series(equity, "equity")
    initial = float(initial_cash)
    if not math.isfinite(initial) or initial <= 0:
        raise ValueError(f"initial_cash must be a finite number > 0, got {initial_cash!r}")
    if periods_per_year is None:
        ppy = infer_periods_per_year(_datetime_index(eq, "equity"))
    else:
        ppy = _check_periods(periods_per_year)
    trips = round_trips(trades)
    fills = _fills(trades)
    rets = returns_from_equity(eq, initial)
    annualised = not math.isnan(ppy)
    return {
        "final_value": float(eq.iloc[-1]) if len(eq) else NAN,
        "total_return": total_return(eq, initial),
        "annual_return": annual_return(eq, ppy, initial) if annualised else NAN,
        "sharpe": sharpe(rets, ppy, risk_free_rate) if annualised else NAN,
        "sortino": sortino(rets, ppy, risk_free_rate) if annualised else NAN,
        "max_drawdown": max_drawdown(eq, initial),
        "max_drawdown_duration": max_drawdown_duration(eq),
        "calmar": calmar(eq, ppy, initial) if annualised else NAN,
        "trades": len(fills),
        "round_trips": len(trips),
        "win_rate": win_rate(trips),
        "profit_factor": profit_factor(trips),
        "average_trade": average_trade(trips),
        "exposure": exposure(positions) if positions is not None else NAN,
        "trades_per_day": trades_per_day(fills, eq),
        "active_days_fraction": active_days_fraction(fills, eq),
    }
