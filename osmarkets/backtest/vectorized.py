"""The vectorised path: many parameter sets of one Brain at once, with numpy.

A Brain may define a classmethod ``signals(data, **params)`` returning its *target position* in
units after every bar (a Series or array aligned with ``data``). :func:`vectorized` turns the
targets of many parameter sets into fills and equity curves with array arithmetic, under the
same fill and cost model as the event-driven engine: the target decided at bar *t*'s close is
traded at bar *t+1*'s open (or at *t*'s close with ``fill='close'``), buys at the ask (or open
plus half the spread) plus slippage, sells at the bid minus slippage, the same commission.
Margin is not checked here: use the event-driven engine for leveraged strategies near their
limits. A target that the event-driven Brain reaches with the same orders gives the same fills
and final value, which the tests check for the example SmaCross.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..brain import Brain
from ..brokers.simulated import Commission
from ..data.validate import validate_bars
from .engine import FILL_MODES, load_bars


@dataclass
class VectorizedResult:
    """``table``: one row per parameter set (its parameters, ``final_value``, ``trades`` = number
    of fills, ``total_return``, ``max_drawdown``); ``equity``: one column per parameter set
    (same row order as ``table``) when asked for, else None."""

    table: pd.DataFrame
    equity: pd.DataFrame | None = None

    def best(self, by: str = "final_value") -> pd.Series:
        return self.table.iloc[int(np.argmax(self.table[by].to_numpy()))]


def expand_grid(grid: Mapping[str, Iterable[Any]] | Iterable[Mapping[str, Any]] | None) -> list:
    """``{'fast': [5, 10], 'slow': [20, 30]}`` -> every combination; a list of dicts as is."""
    if grid is None:
        return [{}]
    if isinstance(grid, Mapping):
        names = list(grid)
        values = [list(v) if not isinstance(v, str) else [v] for v in grid.values()]
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]
    combos = [dict(c) for c in grid]
    if not combos:
        raise ValueError("grid: no parameter sets")
    return combos


def vectorized(
    brain_class: type[Brain],
    data: Any,
    grid: Mapping[str, Iterable[Any]] | Iterable[Mapping[str, Any]] | None = None,
    *,
    cash: float = 100_000.0,
    fill: str = "next_open",
    spread: float = 0.0,
    slippage: float = 0.0,
    commission: Commission | None = None,
    equity: bool = False,
    chunk: int = 128,
) -> VectorizedResult:
    """Simulate ``brain_class.signals`` for every parameter set of ``grid`` on ``data`` (the
    bars of one instrument: DataFrame, BarSeries or CSV path)."""
    signals = getattr(brain_class, "signals", None)
    if signals is None:
        raise TypeError(f"{brain_class.__name__} has no classmethod signals(data, **params)")
    if fill not in FILL_MODES:
        raise ValueError(f"fill: expected one of {', '.join(FILL_MODES)}, got {fill!r}")
    frame = load_bars(data)
    bars = validate_bars(frame)
    n = len(bars.time)
    defaults = brain_class.parameters()
    combos = expand_grid(grid)
    for combo in combos:
        unknown = [k for k in combo if k not in defaults]
        if unknown:
            raise ValueError(f"grid: {brain_class.__name__} has no parameter {unknown[0]!r}")
    half = float(spread) / 2.0
    slip = float(slippage)
    at = 0 if fill == "next_open" else 3  # open or close
    if bars.bid is not None and bars.ask is not None:
        buy_px, sell_px = bars.ask[at] + slip, bars.bid[at] - slip
    else:
        buy_px, sell_px = bars.ohlc[at] + half + slip, bars.ohlc[at] - half - slip
    close = bars.ohlc[3]
    finals, counts, peaks_dd = [], [], []
    curves = []
    for start in range(0, len(combos), chunk):
        part = combos[start : start + chunk]
        # One row per parameter set: every reduction below runs along contiguous memory.
        target = np.empty((len(part), n))
        for j, combo in enumerate(part):
            values = np.asarray(signals(frame, **{**defaults, **combo}), dtype=float)
            if values.shape != (n,):
                raise ValueError(
                    f"{brain_class.__name__}.signals{combo}: expected {n} targets, "
                    f"got shape {values.shape}"
                )
            if not np.all(np.isfinite(values)):
                raise ValueError(f"{brain_class.__name__}.signals{combo}: NaN or inf target")
            target[j] = values
        if fill == "next_open":
            held = np.empty_like(target)
            held[:, 0] = 0.0
            held[:, 1:] = target[:, :-1]
        else:
            held = target
        delta = np.diff(held, axis=1, prepend=0.0)
        price = np.where(delta > 0, buy_px, sell_px)
        flows = delta * price
        if commission is not None:
            size = np.abs(delta)
            fee = commission.per_unit * size + commission.fraction * size * price
            flows += np.where(size > 0, np.maximum(fee, commission.minimum), 0.0)
        curve = np.cumsum(flows, axis=1)
        np.subtract(cash, curve, out=curve)
        curve += held * close
        finals.append(curve[:, -1].copy())
        counts.append(np.count_nonzero(delta, axis=1))
        peak = np.maximum.accumulate(curve, axis=1)
        peaks_dd.append(np.max(1.0 - curve / peak, axis=1))
        if equity:
            curves.append(curve)
    table = pd.DataFrame(combos)
    table["final_value"] = np.concatenate(finals)
    table["trades"] = np.concatenate(counts)
    table["total_return"] = table["final_value"] / cash - 1.0
    table["max_drawdown"] = np.concatenate(peaks_dd)
    curves_frame = None
    if equity:
        index = pd.DatetimeIndex(bars.time.view("M8[ns]"), name="time").tz_localize("UTC")
        curves_frame = pd.DataFrame(np.vstack(curves).T, index=index)
    return VectorizedResult(table, curves_frame)


def target_from_events(up: np.ndarray, down: np.ndarray, size: float) -> np.ndarray:
    """Target position of a long-only entry/exit rule: ``size`` from an ``up`` bar until the
    next ``down`` bar, 0 before any event (a helper for ``signals`` implementations)."""
    n = len(up)
    marks = np.where(up, 1, np.where(down, 0, -1))
    last = np.maximum.accumulate(np.where(marks >= 0, np.arange(n), -1))
    state = np.where(last >= 0, marks[np.maximum(last, 0)], 0)
    return state * float(size)
