"""The vectorised path: many parameter sets of one Brain at once, with numpy.

A Brain may define a classmethod ``signals(data, **params)`` returning its *target position* in
units after every bar (a Series or array aligned with ``data``), and optionally a classmethod
``signals_batch(data, param_sets)`` returning the targets of many parameter sets at once, as a
2-D array with one row per parameter set (faster: it can share work between them, as
:class:`~osmarkets.strategies.SmaCross` computes each distinct moving average once).

:func:`vectorized` turns the targets into fills and equity curves under the same fill and cost
model as the event-driven engine: the target decided at bar *t*'s close is traded at bar *t+1*'s
open (or at *t*'s close with ``fill='close'``), buys at the ask (or open plus half the spread)
plus slippage, sells at the bid minus slippage, the same commission. Margin is not checked here:
use the event-driven engine for leveraged strategies near their limits. A target that the
event-driven Brain reaches with the same orders gives the same fills and final value, which the
tests check for the example SmaCross.

Two engines give identical tables. ``engine='numba'`` (the default when numba is installed:
``pip install osmarkets[numba]``) runs compiled loops, one per parameter set, over all cores
(:mod:`osmarkets.backtest.kernels`); a Brain whose ``signals_batch`` accepts ``engine`` may
return :class:`~osmarkets.backtest.kernels.CrossTargets` there, a crossing rule evaluated inside
the loop without storing a target matrix (SmaCross does). ``engine='numpy'`` is the fallback.

Why the numpy engine is fast: a position only changes on a few bars, so the simulation works on
those changes (a sparse list of fills), not bar by bar. The cash and position after each fill are
sequential sums over the fills of one parameter set (in the engine's order, so the floats are
the same); the equity curve is rebuilt from them with one ``np.repeat`` per chunk of parameter
sets; the maximum drawdown scans blocks of bars and only looks inside the few blocks where the
curve makes a new high. Nothing loops in Python per bar or per parameter set (except calls to
``signals`` for a Brain without ``signals_batch``).
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..brain import Brain
from ..brokers.simulated import Commission
from ..data.validate import validate_bars
from .engine import FILL_MODES, load_bars

#: Bars per block in the drawdown scan.
BLOCK = 256
#: Elements (parameter sets x bars) per chunk when ``chunk`` is not given: about 8 MB per
#: float array, so a chunk's arrays stay in the CPU cache.
CHUNK_ELEMENTS = 1 << 20
#: The values of ``engine``.
ENGINES = ("auto", "numba", "numpy")


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
    chunk: int | None = None,
    batch: bool = True,
    engine: str = "auto",
    threads: int | None = None,
) -> VectorizedResult:
    """Simulate ``brain_class``'s targets for every parameter set of ``grid`` on ``data`` (the
    bars of one instrument: DataFrame, BarSeries or CSV path).

    ``chunk``: parameter sets simulated together (default: about a million bars' worth, which
    bounds memory whatever the grid size; with numba, the rest of the grid at once after a
    first chunk of targets that take no memory). ``batch=False`` ignores ``signals_batch``
    and calls ``signals`` once per parameter set (the reference the batched hook is tested
    against).

    ``engine``: ``'numba'`` (compiled loops over the parameter sets, on ``threads`` cores: all
    of them by default), ``'numpy'``, or ``'auto'`` (numba when it is installed). Both give the
    same table, to the bit. ``threads`` only concerns numba.
    """
    if getattr(brain_class, "signals", None) is None:
        raise TypeError(f"{brain_class.__name__} has no classmethod signals(data, **params)")
    if fill not in FILL_MODES:
        raise ValueError(f"fill: expected one of {', '.join(FILL_MODES)}, got {fill!r}")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk: expected a positive integer, got {chunk!r}")
    compiled = _use_numba(engine, threads)
    frame = load_bars(data)
    bars = validate_bars(frame)
    n = len(bars.time)
    if n == 0:
        raise ValueError("data: no bars")
    defaults = brain_class.parameters()
    combos = expand_grid(grid)
    for combo in combos:
        unknown = [k for k in combo if k not in defaults]
        if unknown:
            raise ValueError(f"grid: {brain_class.__name__} has no parameter {unknown[0]!r}")
    full = [{**defaults, **combo} for combo in combos]
    half = float(spread) / 2.0
    slip = float(slippage)
    at = 0 if fill == "next_open" else 3  # open or close
    if bars.bid is not None and bars.ask is not None:
        buy_px, sell_px = bars.ask[at] + slip, bars.bid[at] - slip
    else:
        buy_px, sell_px = bars.ohlc[at] + half + slip, bars.ohlc[at] - half - slip
    close = np.ascontiguousarray(bars.ohlc[3], dtype=float)
    prices = _Prices(close, np.asarray(buy_px, float), np.asarray(sell_px, float))
    hook = getattr(brain_class, "signals_batch", None) if batch else None
    extra = {}
    if hook is not None and _takes_engine(hook):
        extra["engine"] = "numba" if compiled else "numpy"
    size = chunk or max(1, CHUNK_ELEMENTS // n)
    finals, counts, drawdowns = [], [], []
    curves: list[np.ndarray] = []
    start = 0
    with _asking(compiled, threads):  # the thread count of every kernel, averages included
        while start < len(full):
            part = full[start : start + size]
            shown = combos[start : start + size]
            target = _targets(
                brain_class, hook, frame, part, shown, n, extra, checked=not compiled
            )
            if compiled:
                sim = _simulate_compiled(brain_class, target, shown, prices, float(cash),
                                         fill, commission, equity)  # fmt: skip
                if chunk is None and not isinstance(target, np.ndarray):
                    size = len(full)  # targets evaluated in the loop: no matrix to bound
            else:
                sim = _simulate(target, prices, float(cash), fill, commission, equity)
            start += len(part)
            finals.append(sim.final)
            counts.append(sim.trades)
            drawdowns.append(sim.max_drawdown)
            if sim.curve is not None:
                curves.append(sim.curve)
    table = pd.DataFrame(combos)
    table["final_value"] = np.concatenate(finals)
    table["trades"] = np.concatenate(counts)
    table["total_return"] = table["final_value"] / cash - 1.0
    table["max_drawdown"] = np.concatenate(drawdowns)
    curves_frame = None
    if equity:
        index = pd.DatetimeIndex(bars.time.view("M8[ns]"), name="time").tz_localize("UTC")
        curves_frame = pd.DataFrame(np.vstack(curves).T, index=index)
    return VectorizedResult(table, curves_frame)


def _use_numba(engine: str, threads: int | None) -> bool:
    """Whether ``engine`` runs the compiled kernels (checking ``engine`` and ``threads``)."""
    if not isinstance(engine, str) or engine not in ENGINES:
        raise ValueError(f"engine: expected one of {', '.join(ENGINES)}, got {engine!r}")
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1
    ):
        raise ValueError(f"threads: expected a positive integer or None, got {threads!r}")
    if engine == "numpy":
        return False
    try:
        from . import kernels
    except ImportError as exc:  # a broken numba install: as if it were missing
        if engine == "numba":
            raise ImportError(
                f"engine='numba' needs numba: pip install osmarkets[numba] ({exc})"
            ) from None
        return False
    if not kernels.AVAILABLE:
        if engine == "numba":
            raise ImportError(kernels.MISSING)
        return False
    return True


def _asking(compiled: bool, threads: int | None) -> AbstractContextManager[None]:
    if not compiled:
        return nullcontext()
    from . import kernels

    return kernels.asking(threads)


def _takes_engine(hook: Any) -> bool:
    """Whether a ``signals_batch`` accepts ``engine=`` (then it is told which one runs)."""
    try:
        parameters = inspect.signature(hook).parameters
    except (TypeError, ValueError):
        return False
    return "engine" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


def _targets(
    brain_class: type[Brain],
    hook: Any,
    frame: pd.DataFrame,
    params: list[dict[str, Any]],
    shown: list[dict[str, Any]],
    n: int,
    extra: Mapping[str, Any],
    checked: bool = True,
) -> Any:
    """The (parameter sets, bars) target matrix, from ``signals_batch`` or row by row, or the
    :class:`~osmarkets.backtest.kernels.CrossTargets` a ``signals_batch`` gave for numba.
    ``checked``: NaN and inf targets are looked for here (the compiled kernel does it
    itself)."""
    name = brain_class.__name__
    if hook is not None:
        raw = hook(frame, params, **extra)
        if extra.get("engine") == "numba" and _is_cross(raw):
            if raw.shape != (len(params), n):
                raise ValueError(
                    f"{name}.signals_batch: expected shape {(len(params), n)}, got {raw.shape}"
                )
            return raw
        target = np.asarray(raw, dtype=float)
        if target.shape != (len(params), n):
            raise ValueError(
                f"{name}.signals_batch: expected shape {(len(params), n)}, got {target.shape}"
            )
    else:
        signals = brain_class.signals  # type: ignore[attr-defined]
        target = np.empty((len(params), n))
        for row, combo in enumerate(params):
            values = np.asarray(signals(frame, **combo), dtype=np.float64)
            if values.shape != (n,):
                raise ValueError(
                    f"{name}.signals{shown[row]}: expected {n} targets, got shape {values.shape}"
                )
            target[row] = values
    if checked:
        finite = np.isfinite(target).all(axis=1)
        if not finite.all():
            row = int(np.argmin(finite))
            raise ValueError(f"{name}.signals{shown[row]}: NaN or inf target")
    return np.ascontiguousarray(target)


def _is_cross(raw: Any) -> bool:
    from .kernels import CrossTargets

    return isinstance(raw, CrossTargets)


@dataclass
class _Prices:
    close: np.ndarray
    buy: np.ndarray  # fill price of a buy on each bar
    sell: np.ndarray


@dataclass
class _Simulation:
    final: np.ndarray
    trades: np.ndarray
    max_drawdown: np.ndarray
    curve: np.ndarray | None


def _simulate_compiled(
    brain_class: type[Brain],
    target: Any,
    shown: list[dict[str, Any]],
    prices: _Prices,
    cash: float,
    fill: str,
    commission: Commission | None,
    want_curve: bool,
) -> _Simulation:
    """:func:`_simulate` with the numba kernel: the same floats, one compiled loop over the
    bars per parameter set, the parameter sets shared between the threads asked for."""
    from . import kernels

    crossing = not isinstance(target, np.ndarray)
    k, n = target.shape
    empty2, empty_int, empty1 = np.empty((0, 0)), np.empty(0, dtype=np.int64), np.empty(0)
    if crossing:
        matrix = empty2
        lines, fast, slow, size = target.lines, target.fast, target.slow, target.size
    else:
        matrix, lines, fast, slow, size = target, empty2, empty_int, empty_int, empty1
    final, drawdown = np.empty(k), np.empty(k)
    trades = np.empty(k, dtype=np.int64)
    bad = np.zeros(k, dtype=np.bool_)
    curve = np.empty((k, n)) if want_curve else empty2
    fee = commission or Commission()
    with kernels.threads():
        kernel = kernels.simulator(crossing, fill == "next_open")
        kernel(matrix, lines, fast, slow, size, prices.close, prices.buy, prices.sell, cash,
               float(fee.per_unit), float(fee.fraction), float(fee.minimum),
               commission is not None, want_curve, final, trades, drawdown, curve,
               bad)  # fmt: skip
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"{brain_class.__name__}.signals{shown[row]}: NaN or inf target")
    return _Simulation(final, trades, drawdown, curve if want_curve else None)


def _simulate(
    target: np.ndarray,
    prices: _Prices,
    cash: float,
    fill: str,
    commission: Commission | None,
    want_curve: bool,
) -> _Simulation:
    """Fills, final value, trade count, maximum drawdown (and the equity curves) of a
    (parameter sets, bars) target matrix."""
    k, n = target.shape
    # A fill wherever the target changes: target[t] != target[t - 1], with target[-1] = 0.
    moved = np.empty((k, n), dtype=bool)
    np.not_equal(target[:, 0], 0.0, out=moved[:, 0])
    np.not_equal(target[:, 1:], target[:, :-1], out=moved[:, 1:])
    flat = np.flatnonzero(moved)
    rows, cols = np.divmod(flat, n)
    values = target.ravel()
    delta = values[flat] - np.where(cols > 0, values[flat - 1], 0.0)
    if fill == "next_open":  # decided at bar t's close, traded at bar t+1's open
        keep = cols < n - 1
        rows, cols, delta = rows[keep], cols[keep] + 1, delta[keep]
    price = np.where(delta > 0, prices.buy[cols], prices.sell[cols])
    cost = delta * price
    if commission is not None:
        units = np.abs(delta)
        fee = commission.per_unit * units + commission.fraction * units * price
        cost += np.maximum(fee, commission.minimum)
    trades = np.bincount(rows, minlength=k)

    # One "event" per row at bar 0 (nothing traded) followed by the row's fills, so that each
    # event starts a segment of bars with constant cash and position.
    starts = np.cumsum(trades) - trades
    first = starts + np.arange(k)
    real = np.arange(len(rows)) + rows + 1
    size = len(rows) + k
    ev_row = np.repeat(np.arange(k), trades + 1)
    ev_col = np.zeros(size, dtype=np.int64)
    ev_col[real] = cols
    slot = np.arange(size) - first[ev_row]  # the event's place in its row
    # Cash and units after each event: sequential sums per row, as the engine's cumsum.
    spent = _row_cumsum(ev_row, slot, real, cost, k, trades)
    held = _row_cumsum(ev_row, slot, real, delta, k, trades)
    ev_cash = cash - spent

    width = -(-n // BLOCK) * BLOCK  # padded with the last bar, which changes no statistic
    close = np.empty(width)
    close[:n] = prices.close
    close[n:] = prices.close[-1]
    at = ev_row * width + ev_col
    lengths = np.diff(at, append=k * width)
    curve = np.repeat(held, lengths).reshape(k, width)
    curve *= close
    curve += np.repeat(ev_cash, lengths).reshape(k, width)  # cash + units * close
    final = curve[:, n - 1].copy()
    drawdown = _max_drawdown(curve.reshape(k, width // BLOCK, BLOCK))
    return _Simulation(final, trades, drawdown, curve[:, :n].copy() if want_curve else None)


def _row_cumsum(
    ev_row: np.ndarray,
    slot: np.ndarray,
    real: np.ndarray,
    values: np.ndarray,
    k: int,
    trades: np.ndarray,
) -> np.ndarray:
    """Running sum of ``values`` within each row, one row after another, as a 1-D array over
    the events (0 at each row's first event)."""
    padded = np.zeros((k, int(trades.max(initial=0)) + 1))
    flat = np.zeros(len(ev_row))
    flat[real] = values
    padded[ev_row, slot] = flat
    np.cumsum(padded, axis=1, out=padded)
    return padded[ev_row, slot]


def _max_drawdown(blocks: np.ndarray) -> np.ndarray:
    """``max(1 - equity / running peak)`` per row of ``blocks`` (rows, blocks, bars per block).

    A block whose highest value does not exceed the peak before it has that peak throughout,
    so its worst point is its lowest value: only the blocks that make a new high (rare in an
    equity curve) need a running maximum. The result is the same float as the bar-by-bar
    formula (division by a positive peak keeps the order of the values).
    """
    k, nb, _ = blocks.shape
    high = blocks.max(axis=2)
    low = blocks.min(axis=2)
    peak = np.empty_like(high)
    peak[:, 0] = -np.inf
    np.maximum.accumulate(high[:, :-1], axis=1, out=peak[:, 1:])
    easy = (high <= peak) & (peak > 0)
    worst = np.zeros((k, nb))
    with np.errstate(divide="ignore", invalid="ignore"):
        np.subtract(1.0, low / peak, out=worst, where=easy)
        hard_rows, hard_blocks = np.nonzero(~easy)
        inside = blocks[hard_rows, hard_blocks]
        running = np.concatenate([peak[hard_rows, hard_blocks][:, None], inside], axis=1)
        np.maximum.accumulate(running, axis=1, out=running)
        worst[hard_rows, hard_blocks] = (1.0 - inside / running[:, 1:]).max(axis=1)
    return worst.max(axis=1)


def target_from_events(up: np.ndarray, down: np.ndarray, size: float) -> np.ndarray:
    """Target position of a long-only entry/exit rule: ``size`` from an ``up`` bar until the
    next ``down`` bar, 0 before any event (a helper for ``signals`` implementations)."""
    n = len(up)
    marks = np.where(up, 1, np.where(down, 0, -1))
    last = np.maximum.accumulate(np.where(marks >= 0, np.arange(n), -1))
    state = np.where(last >= 0, marks[np.maximum(last, 0)], 0)
    return state * float(size)


def steps(
    shape: tuple[int, int],
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    initial: float = 0.0,
) -> np.ndarray:
    """A (rows, bars) matrix that holds ``initial`` until each row's first change, then
    ``values[i]`` from bar ``cols[i]`` on (a helper for ``signals_batch`` implementations:
    the changes are few, so this is one ``np.repeat`` instead of a forward fill).

    ``rows`` and ``cols`` must be sorted by row, then column, with no repeated pair.
    """
    k, n = shape
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    counts = np.bincount(rows, minlength=k)
    size = len(rows) + k
    real = np.arange(len(rows)) + rows + 1
    held = np.full(size, float(initial))
    held[real] = values
    at = np.repeat(np.arange(k), counts + 1) * n
    at[real] += cols
    return np.repeat(held, np.diff(at, append=k * n)).reshape(k, n)
