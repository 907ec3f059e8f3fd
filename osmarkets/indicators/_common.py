"""Shared helpers: argument checks, input conversion and the vectorised recursions.

Kept private: users see only the indicator classes and functions re-exported by
:mod:`osmarkets.indicators`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .exact import WindowSum, window_sums

NAN = math.nan

ArrayLike = Any
"""What the vectorised functions accept: a 1-D numpy array, a pandas Series or a sequence."""


def check_period(name: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` if it is an integer >= ``minimum``; otherwise raise ``ValueError``.

    ``bool`` is refused although it is an ``int`` subclass: ``SMA(True)`` is a bug, not a
    one-bar average.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def check_positive_float(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a finite number > 0; otherwise raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out) or out <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return out


def bad_value(name: str, value: float) -> ValueError:
    """The exception an incremental ``update`` raises for a non-finite input."""
    return ValueError(f"{name} must be a finite number once the indicator started, got {value}")


def bad_bar(high: float, low: float, close: float) -> ValueError:
    """``bad_value`` for the first non-finite field of a high/low/close bar."""
    for name, value in (("high", high), ("low", low), ("close", close)):
        if not math.isfinite(value):
            return bad_value(name, value)
    raise AssertionError("bad_bar called on a finite bar")


# -- vectorised side ------------------------------------------------------------------------


class Inputs:
    """Validated float64 arrays for a vectorised indicator, plus how to wrap its outputs.

    Leading NaNs (the warm-up of another indicator fed into this one) are allowed: ``start`` is
    the first row where every input is finite, and the computation runs on ``[start:]`` only.
    A non-finite value after that point is an error naming the field and the row.
    """

    def __init__(self, **named: ArrayLike) -> None:
        self.index: pd.Index | None = None
        arrays: dict[str, np.ndarray] = {}
        length: int | None = None
        for name, data in named.items():
            if isinstance(data, pd.Series) and self.index is None:
                self.index = data.index
            try:
                if isinstance(data, pd.Series):
                    arr = data.to_numpy(dtype=np.float64, na_value=np.nan)
                else:
                    arr = np.asarray(data, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{name} must be numeric: {exc}") from None
            if arr.ndim != 1:
                raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
            if length is not None and len(arr) != length:
                first = next(iter(named))
                raise ValueError(f"{name} has {len(arr)} values but {first} has {length}")
            length = len(arr)
            arrays[name] = arr
        self.n = length or 0
        finite = np.ones(self.n, dtype=bool)
        for arr in arrays.values():
            finite &= np.isfinite(arr)
        self.start = int(np.argmax(finite)) if finite.any() else self.n
        for name, arr in arrays.items():
            bad = ~np.isfinite(arr[self.start :])
            if bad.any():
                row = self.start + int(np.argmax(bad))
                label = self.index[row] if self.index is not None else row
                raise ValueError(
                    f"{name} has a non-finite value ({arr[row]}) at row {label} after the first "
                    "valid row; only leading NaNs (a warm-up) are allowed"
                )
        self.arrays = {name: arr[self.start :] for name, arr in arrays.items()}

    def wrap(self, tail: np.ndarray) -> Any:
        """Pad a result computed on the valid tail back to full length; Series in, Series out."""
        out = np.full(self.n, np.nan)
        out[self.start :] = tail
        if self.index is not None:
            return pd.Series(out, index=self.index)
        return out


def seeded_recursion(x: np.ndarray, period: int, alpha: float) -> np.ndarray:
    """``y[period-1] = mean(x[:period])``, then ``y[t] = y[t-1] + alpha * (x[t] - y[t-1])``.

    This is the EMA (alpha = 2/(n+1)) and Wilder (alpha = 1/n) smoothing with an SMA seed. No
    closed-form numpy expression of a first-order recursion is exact over long series (the
    powers of ``1 - alpha`` under/overflow), so the recursion runs in pandas' compiled
    ``ewm(adjust=False)`` loop, started at the seed. Rows before the seed are NaN.
    """
    out = np.full(len(x), np.nan)
    if len(x) < period:
        return out
    tail = x[period - 1 :].copy()
    tail[0] = math.fsum(x[:period].tolist()) / period  # the incremental classes' exact seed
    out[period - 1 :] = pd.Series(tail).ewm(alpha=alpha, adjust=False).mean().to_numpy()
    return out


def rolling_mean(x: np.ndarray, period: int) -> np.ndarray:
    """Trailing ``period``-row mean: ``math.fsum(window) / period`` for every window, bit for
    bit (:func:`~osmarkets.indicators.exact.window_sums`)."""
    return window_sums(x, period) / period


def rolling_pstd(x: np.ndarray, period: int, mean: np.ndarray) -> np.ndarray:
    """Trailing population standard deviation, exact to its definition: ``sqrt`` of each
    window's exact population variance rounded once, as
    :class:`~osmarkets.indicators.BollingerBands` computes it (``mean`` is not needed and
    kept for the callers' signature). O(N) exact integer updates."""
    n = len(x)
    out = np.full(n, np.nan)
    window = WindowSum(period, squares=True)
    for t, value in enumerate(x.tolist()):
        window.push(value)
        if t >= period - 1:
            out[t] = math.sqrt(window.variance())
    return out
