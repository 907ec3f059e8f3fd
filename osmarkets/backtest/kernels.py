"""Compiled kernels of the vectorised path (numba, an optional extra: ``pip install
osmarkets[numba]``).

:func:`simulator`'s kernels turn the targets of many parameter sets into the same fills, final
values, trade counts, maximum drawdowns and equity curves as the numpy path of
:func:`~osmarkets.backtest.vectorized.vectorized`, bit for bit: one loop over the bars per
parameter set, the parameter sets spread over the cores (``numba.prange``). The floats are
computed in the numpy path's order (cash and position are running sums over the fills, equity
is ``position * close + cash``, the drawdown is ``1 - equity / running peak``), with no
fast-math, so the tables are identical.

The targets come either as a (parameter sets, bars) matrix or as :class:`CrossTargets`, the rule
of a line crossing another (:class:`~osmarkets.strategies.SmaCross`), which the kernel
evaluates bar by bar without storing a matrix: the grid then runs at the speed of one
compiled loop per parameter set, with no memory traffic beyond the lines and the prices.
:func:`exact_means` computes SmaCross's exact averages (the same floats as
:mod:`osmarkets.indicators`), parallel over the periods.

The functions are compiled on first use and cached on disk (``cache=True``: the compilation is
paid once per machine); when no cache directory is writable they are compiled once per process
instead. ``AVAILABLE`` is False when numba is not installed (the numpy path is then used).

Threads: osMarkets forks agent processes, and a process forked after GNU OpenMP has run aborts
("fork() called from a process already using GNU OpenMP"). Unless the user chose a threading
layer (``NUMBA_THREADING_LAYER``), this module asks numba for a fork-safe one (``forksafe``:
TBB where installed, else numba's own workqueue) before any parallel kernel has run. The
workqueue does not allow two launches at once, so the kernels here run under :data:`LOCK`.
"""

from __future__ import annotations

import importlib
import math
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np

numba: Any
try:
    numba = importlib.import_module("numba")  # no type information: Any
    _WHY = ""
except ImportError as exc:  # pragma: no cover - the fallback test sets AVAILABLE instead
    numba = None
    _WHY = f" ({exc})"

#: numba is importable (tests set it to False to check the numpy fallback).
AVAILABLE = numba is not None

#: One parallel launch at a time, with its own thread count.
LOCK = threading.RLock()

_TINY = 2.2250738585072014e-308  # the smallest normal float

MISSING = f"engine='numba' needs numba: pip install osmarkets[numba]{_WHY}"

if numba is not None and "NUMBA_THREADING_LAYER" not in os.environ:
    _parallel: Any = importlib.import_module("numba.np.ufunc.parallel")
    if numba.config.THREADING_LAYER == "default" and not _parallel._is_initialized:
        numba.config.THREADING_LAYER = "forksafe"


def max_threads() -> int:
    """The most threads numba may use (the cores, or ``NUMBA_NUM_THREADS``)."""
    if numba is None:
        return 1
    return int(numba.config.NUMBA_NUM_THREADS)


#: The thread count a caller asked for (``vectorized(threads=...)``), for every kernel it
#: launches, its ``signals_batch``'s included.
_ASKED: ContextVar[int | None] = ContextVar("osmarkets_numba_threads", default=None)


@contextmanager
def asking(count: int | None) -> Iterator[None]:
    """Kernels launched inside (through :func:`threads`) run on ``count`` threads."""
    token = _ASKED.set(count)
    try:
        yield
    finally:
        _ASKED.reset(token)


@contextmanager
def threads(count: int | None = None) -> Iterator[None]:
    """Launch kernels inside on ``count`` threads (None: what an enclosing :func:`asking`
    asked, else numba's current count, all cores unless changed; more than numba's maximum:
    the maximum), one launch at a time; numba's count is restored after."""
    count = count or _ASKED.get()
    with LOCK:
        previous = numba.get_num_threads()
        if count:
            numba.set_num_threads(min(count, max_threads()))
        try:
            yield
        finally:
            numba.set_num_threads(previous)


def exact_means(close: np.ndarray, periods: list[int]) -> np.ndarray:
    """``rolling_mean(close, period)`` of :mod:`osmarkets.indicators` for every period, one
    row each, the same floats: the window sums are exact integer sums of the closes scaled by
    one power of two (:func:`~osmarkets.indicators.exact.window_sums`), compiled and
    parallel over the periods. Closes that need Python integers (too many binary fraction
    digits for int64) or whose sums fall below the smallest normal float go through
    ``rolling_mean`` itself."""
    from osmarkets.indicators._common import rolling_mean
    from osmarkets.indicators.exact import fraction_bits

    x = np.ascontiguousarray(close, dtype=np.float64)
    out = np.empty((len(periods), len(x)))
    shift = fraction_bits(x) if np.isfinite(x).all() else 1001
    biggest = float(np.max(np.abs(x))) if len(x) and shift <= 1000 else math.inf
    fits = [shift <= 1000 and biggest * 2.0**shift * p < 2.0**62 for p in periods]
    rows = [i for i, ok in enumerate(fits) if ok]
    if rows:
        part = np.empty((len(rows), len(x)))
        small = np.zeros(len(rows), dtype=np.bool_)
        chosen = np.array([periods[i] for i in rows], dtype=np.int64)
        with threads():
            window_means((x * 2.0**shift).astype(np.int64), chosen, 2.0**shift, part, small)
        out[rows] = part
        for j, i in enumerate(rows):
            fits[i] = not small[j]
    for i, ok in enumerate(fits):
        if not ok:
            out[i] = rolling_mean(x, periods[i])
    return out


@dataclass(frozen=True, eq=False)
class CrossTargets:
    """The targets of a long-only crossing rule, unevaluated: parameter set ``i`` holds
    ``size[i]`` units from a bar where line ``lines[fast[i]]`` crosses above line
    ``lines[slow[i]]`` until one where it crosses below, and nothing before its first cross
    up. A cross is a change of the sign of ``fast - slow`` from the previous non-zero sign (a
    tie neither crosses nor resets it; NaN, a line not ready yet, counts as a tie); the first
    sign is not a cross. :class:`~osmarkets.strategies.SmaCross` returns this from
    ``signals_batch(..., engine='numba')``; ``np.asarray`` gives the target matrix."""

    lines: np.ndarray  # (lines, bars) float64, C-contiguous
    fast: np.ndarray  # int64 row of each parameter set's fast line
    slow: np.ndarray
    size: np.ndarray  # float64

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.fast), self.lines.shape[1])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.empty(self.shape)
        with threads():
            sma_cross_targets(self.lines, self.fast, self.slow, self.size, out)
        return out if dtype is None else out.astype(dtype, copy=False)


def _jit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit(cache=True, **options)``, or without the disk cache when numba finds no
    writable cache directory (it refuses to decorate then)."""

    def decorate(function: Callable[..., Any]) -> Any:
        try:
            return numba.njit(cache=True, **options)(function)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return numba.njit(cache=False, **options)(function)

    return decorate


if numba is not None:

    @_jit(inline="always")
    def _cross(a: float, b: float, side: int, state: float, units: float) -> tuple[int, float]:
        """One bar of :class:`CrossTargets`' rule: the sign of ``a - b`` (0: a tie or NaN),
        the last non-zero sign and the target after this bar."""
        now = int(a > b) - int(a < b)
        if now != 0 and now != side:
            if side != 0:
                state = units if now > 0 else 0.0
            side = now
        return side, state

    @_jit(inline="always")
    def _row(
        row: int,
        target: np.ndarray,
        lines: np.ndarray,
        fast: np.ndarray,
        slow: np.ndarray,
        size: np.ndarray,
        close: np.ndarray,
        buy: np.ndarray,
        sell: np.ndarray,
        cash: float,
        per_unit: float,
        fraction: float,
        minimum: float,
        final: np.ndarray,
        trades: np.ndarray,
        drawdown: np.ndarray,
        curve: np.ndarray,
        bad: np.ndarray,
        crossing: bool,
        next_open: bool,
        commission: bool,
        want_curve: bool,
        careful: bool,
    ) -> bool:
        """One parameter set, bar by bar: fills where the target changes (at the next bar's
        open or at this close), cash and position as running sums of the fills, the equity
        ``position * close + cash`` and the drawdown ``1 - equity / running peak``.

        The fast way takes maxima without branches (the equity goes up and down
        unpredictably): exact while the peak is positive and no equity is NaN or infinite.
        Returns False when that did not hold; the caller then runs the row ``careful``ly,
        where NaN spreads as through numpy's maximum."""
        n = close.shape[0]
        above = lines[fast[row]] if crossing else close
        below = lines[slow[row]] if crossing else close
        units = size[row] if crossing else 0.0
        side = 0
        state = 0.0
        last = 0.0  # the target after the previous change
        pending = 0.0  # next_open: the change decided at the previous bar, traded now
        waiting = False
        held = 0.0
        spent = 0.0
        money = cash
        count = 0
        finite = True
        peak = -math.inf
        worst = -math.inf
        total = 0.0
        first = 0.0
        for t in range(n):
            if crossing:
                side, state = _cross(above[t], below[t], side, state, units)
                x = state
            else:
                x = target[row, t]
            if next_open:
                if waiting:
                    delta = pending
                    price = buy[t] if delta > 0 else sell[t]
                    cost = delta * price
                    if commission:
                        amount = abs(delta)
                        fee = per_unit * amount + fraction * amount * price
                        cost += minimum if fee < minimum else fee
                    spent += cost
                    money = cash - spent
                    held += delta
                    count += 1
                    waiting = False
                if x != last:  # a NaN or inf target always differs from the last (finite) one
                    finite = finite and abs(x) < math.inf
                    if t < n - 1:
                        pending = x - last
                        waiting = True
                last = x
            elif x != last:
                finite = finite and abs(x) < math.inf
                delta = x - last
                last = x
                price = buy[t] if delta > 0 else sell[t]
                cost = delta * price
                if commission:
                    amount = abs(delta)
                    fee = per_unit * amount + fraction * amount * price
                    cost += minimum if fee < minimum else fee
                spent += cost
                money = cash - spent
                held += delta
                count += 1
            equity = held * close[t] + money
            if want_curve:
                curve[row, t] = equity
            if careful:  # NaN spreads, as through numpy's maximum
                if equity > peak or equity != equity:
                    peak = equity
                fall = 1.0 - equity / peak
                if fall > worst or fall != fall:
                    worst = fall
            else:
                total += equity
                peak = equity if equity > peak else peak
                fall = 1.0 - equity / peak
                worst = fall if fall > worst else worst
            if t == 0:
                first = equity
        # The fast way is the formula itself while the peak is positive (from the first bar
        # on) and every equity finite (their sum is then finite, or the row is rerun).
        if not careful and not (first > 0.0 and abs(total) < math.inf):
            return False
        final[row] = held * close[n - 1] + money
        trades[row] = count
        drawdown[row] = worst
        bad[row] = not finite
        return True

    @_jit(parallel=True)
    def sma_cross_targets(
        averages: np.ndarray,
        fast: np.ndarray,
        slow: np.ndarray,
        size: np.ndarray,
        out: np.ndarray,
    ) -> None:
        """``out[i]``: the target after every bar of :class:`CrossTargets`' parameter set
        ``i`` (lines ``averages[fast[i]]`` and ``averages[slow[i]]``, ``size[i]`` units)."""
        k, n = out.shape
        for i in numba.prange(k):
            above = averages[fast[i]]
            below = averages[slow[i]]
            side = 0
            state = 0.0
            for t in range(n):
                side, state = _cross(above[t], below[t], side, state, size[i])
                out[i, t] = state


if numba is not None:

    @_jit(parallel=True)
    def window_means(
        ints: np.ndarray, periods: np.ndarray, scale: float, out: np.ndarray, small: np.ndarray
    ) -> None:
        """``out[i, t]``: the sum of ``ints`` over the ``periods[i]`` rows up to ``t`` (an
        exact int64 sum), as a float divided by ``scale`` and by the period, NaN before the
        window is full; ``small[i]`` where a sum came out below the smallest normal float
        (the caller recomputes that row)."""
        n = ints.shape[0]
        for i in numba.prange(periods.shape[0]):
            period = periods[i]
            total = 0
            for t in range(n):
                total += ints[t]
                if t >= period:
                    total -= ints[t - period]
                if t >= period - 1:
                    value = float(total) / scale
                    if value != 0.0 and abs(value) < _TINY:
                        small[i] = True
                    out[i, t] = value / period
                else:
                    out[i, t] = math.nan


_SIMULATORS: dict[tuple[bool, bool], Any] = {}


def simulator(crossing: bool, next_open: bool) -> Any:
    """The kernel ``simulate(target, lines, fast, slow, size, close, buy, sell, cash, per_unit,
    fraction, minimum, commission, want_curve, final, trades, drawdown, curve, bad)``: the
    targets are the rows of ``target``, or with ``crossing`` the :class:`CrossTargets` of
    ``lines``, ``fast``, ``slow`` and ``size`` (evaluated bar by bar, never stored); fills at
    the next open (``next_open``) or at the close, plus a commission if ``commission``; the
    equity curves are written to ``curve`` if ``want_curve``. It fills ``final``, ``trades``,
    ``drawdown`` and ``bad`` (a NaN or infinite target) for every parameter set.

    ``crossing`` and ``next_open`` are constants of the compiled code (one variant each,
    compiled on first use and cached on disk), so the loop over the bars tests neither."""
    key = (bool(crossing), bool(next_open))
    with LOCK:
        kernel = _SIMULATORS.get(key)
        if kernel is None:
            kernel = _SIMULATORS[key] = _simulator(*key)
    return kernel


def _simulator(crossing: bool, next_open: bool) -> Any:
    @_jit(parallel=True)
    def simulate(
        target: np.ndarray,
        lines: np.ndarray,
        fast: np.ndarray,
        slow: np.ndarray,
        size: np.ndarray,
        close: np.ndarray,
        buy: np.ndarray,
        sell: np.ndarray,
        cash: float,
        per_unit: float,
        fraction: float,
        minimum: float,
        commission: bool,
        want_curve: bool,
        final: np.ndarray,
        trades: np.ndarray,
        drawdown: np.ndarray,
        curve: np.ndarray,
        bad: np.ndarray,
    ) -> None:
        for row in numba.prange(final.shape[0]):
            if not _row(row, target, lines, fast, slow, size, close, buy, sell, cash, per_unit,
                        fraction, minimum, final, trades, drawdown, curve, bad, crossing,
                        next_open, commission, want_curve, False):  # fmt: skip
                _row(row, target, lines, fast, slow, size, close, buy, sell, cash, per_unit,
                     fraction, minimum, final, trades, drawdown, curve, bad, crossing,
                     next_open, commission, want_curve, True)  # fmt: skip

    return simulate
