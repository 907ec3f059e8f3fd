"""The equity curve of a backtest, from its fills and the closes, and what is kept of it.

``equity(t) = (cash - cost of the fills up to t) + sum of each position at its last close``.
It is computed after the bars were replayed, vectorised, in steps of :data:`STEP` times, so the
only array as long as the data is the result; a streamed backtest computes it window by window,
carrying the units held and the cost paid from one window to the next. Either way the sums run
in the order of one plain per-time ``cumsum`` (the fills of one time added together first), so
the floats are the same bit for bit whatever the step or the windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..data.timeframes import DEFAULT_ALIGNMENT, Alignment, Timeframe, period_starts

#: Times per step: the temporaries of a step stay a few MB at any size.
STEP = 1 << 16


@dataclass
class Stretch:
    """One instrument over a run of times: its bar ``times`` and ``close`` in the stretch, its
    contract ``multiplier``, the ``units`` held and its last close before the stretch (NaN when
    it had no bar yet). :func:`marked_equity` moves ``units`` and ``close_before`` to the end
    of the stretch."""

    times: np.ndarray
    close: np.ndarray
    multiplier: float
    units: float = 0.0
    close_before: float = math.nan


def marked_equity(
    times: np.ndarray,
    stretches: list[Stretch],
    number: np.ndarray,
    local: np.ndarray,
    signed: np.ndarray,
    cost: np.ndarray,
    cash: float,
    spent: float = 0.0,
) -> tuple[np.ndarray, float]:
    """The equity at each of ``times`` (sorted, unique: every time any stretch has a bar) and
    the cost paid at the end. The fills, in the order they happened: ``number`` (the stretch),
    ``local`` (the bar in that stretch), ``signed`` units and ``cost`` (``units * price *
    multiplier + commission``). ``spent``: what the fills before the stretch cost."""
    single = len(stretches) == 1 and len(stretches[0].times) == len(times)
    at = local
    if not single and len(local):
        own = np.array([stretches[k].times[i] for k, i in zip(number, local, strict=True)])
        at = np.searchsorted(times, own)
    bars_with_fills, which = np.unique(at, return_inverse=True)
    per_time = np.zeros(len(bars_with_fills))
    np.add.at(per_time, which, cost)
    paid_after = np.cumsum(np.r_[spent, per_time])  # [0]: before the first fill
    held = []  # per stretch: its bars with fills and the units held after each
    for k, stretch in enumerate(stretches):
        mine = number == k
        bars, where = np.unique(local[mine], return_inverse=True)
        delta = np.zeros(len(bars))
        np.add.at(delta, where, signed[mine])
        held.append((bars, np.cumsum(np.r_[stretch.units, delta])))
    equity = np.empty(len(times))
    for start in range(0, len(times), STEP):
        rows = np.arange(start, min(start + STEP, len(times)))
        value = np.zeros(len(rows))
        for k, stretch in enumerate(stretches):
            own_rows = rows if single else np.searchsorted(stretch.times, times[rows], "right") - 1
            bars, units = held[k]
            now = units[np.searchsorted(bars, own_rows, side="right")]
            if single:
                value += now * stretch.close[own_rows] * stretch.multiplier
                continue
            close = stretch.close[np.maximum(own_rows, 0)] if len(stretch.close) else 0.0
            close = np.where(own_rows >= 0, close, stretch.close_before)
            marked = now * close * stretch.multiplier
            value += np.where(np.isnan(close), 0.0, marked)
        paid = paid_after[np.searchsorted(bars_with_fills, rows, side="right")]
        equity[rows] = cash - paid + value
    for stretch, (_, units) in zip(stretches, held, strict=True):
        stretch.units = float(units[-1])
        if len(stretch.close):
            stretch.close_before = float(stretch.close[-1])
    return equity, float(paid_after[-1])


class EquityKeep:
    """What a backtest keeps of its per-bar equity: every bar in ``dtype`` (``'float64'``, or
    ``'float32'`` to halve it), or only the last value of each ``every`` period (a time-frame
    code such as ``'H1'`` or ``'D'``, aligned as the backtest's bars) for runs too long to keep
    one value per bar."""

    DTYPES = ("float64", "float32")

    def __init__(self, dtype: str = "float64", every: Any = None) -> None:
        if dtype not in self.DTYPES:
            raise ValueError(f"equity_dtype: expected 'float64' or 'float32', got {dtype!r}")
        self.dtype = dtype
        try:
            self.every = None if every is None else Timeframe.parse(every)
        except (ValueError, TypeError):
            raise ValueError(
                f"equity_every: expected a time frame code such as 'H1' or 'D', got {every!r}"
            ) from None

    def apply(self, equity: pd.Series, alignment: Alignment = DEFAULT_ALIGNMENT) -> pd.Series:
        if self.every is not None and len(equity):
            starts = period_starts(pd.DatetimeIndex(equity.index).asi8, self.every, alignment)
            last = np.flatnonzero(np.r_[starts[1:] != starts[:-1], True])
            equity = equity.iloc[last]
        if self.dtype == "float32":
            equity = equity.astype(np.float32)
        return equity


class KeptEquity:
    """The equity of a streamed run, window by window, kept as ``keep`` says as the windows
    come: with ``every``, only the last value of each period (the last period of a window
    waits for the next window, which may continue it), so the curve held is the kept one."""

    def __init__(self, keep: EquityKeep, alignment: Alignment = DEFAULT_ALIGNMENT) -> None:
        self.keep = keep
        self.alignment = alignment
        self.parts: list[pd.Series] = []
        self.pending: pd.Series | None = None

    def add(self, equity: pd.Series) -> None:
        if self.keep.dtype == "float32":
            equity = equity.astype(np.float32)
        if self.keep.every is None:
            self.parts.append(equity)
            return
        if self.pending is not None:
            equity = pd.concat([self.pending, equity])
        if not len(equity):
            return
        starts = period_starts(
            pd.DatetimeIndex(equity.index).asi8, self.keep.every, self.alignment
        )
        self.parts.append(equity.iloc[np.flatnonzero(starts[1:] != starts[:-1])])
        self.pending = equity.iloc[-1:]

    def result(self) -> pd.Series:
        parts = [*self.parts, *([] if self.pending is None else [self.pending])]
        if not parts:
            return pd.Series([], dtype=self.keep.dtype, name="equity")
        return pd.concat(parts).rename("equity")


__all__ = ["STEP", "EquityKeep", "KeptEquity", "Stretch", "marked_equity"]
