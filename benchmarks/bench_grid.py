"""Compiled grids (issue 18): the vectorised path's engines against a plain numba loop, side by
side in one run (medians over repeats, the contenders interleaved in every repeat).

    python benchmarks/bench_grid.py [--repeats 7] [--data PATH] [--threads N]

Workload: the 1,024 (fast, slow) SMA-cross combinations of bench_backtest.py (fast 2-33, slow
35-66, one unit, 100,000 cash, next-open fills, no costs) on the 30,889 one-minute bars of
/work/shared/data/market/2006-01-02-volume-min-001.txt (read as bench_backtest.py does), or,
if absent, 30,000 generated bars.

* osmarkets ``vectorized(SmaCross, ...)``: ``engine='numpy'``; ``engine='numba'`` on 1 thread
  and on all cores (the public call, everything included: bars checked, exact averages, the
  table built). The exact averages are cached per series across calls, as in real use: the
  rows marked "cold" clear that cache before every call.
* the numba serial reference: one plain ``@njit`` loop per combination (both SMAs as running
  float sums, the crossover decided on the close, filled at the next open, cash, position,
  equity and maximum drawdown tracked bar by bar), over the combinations one after another;
  and the same loop over the combinations with ``prange`` on all cores.

Compilation is excluded (every contender runs once before timing) and printed separately.
``gc.collect()`` runs before every timed call, outside the timing (timeit disables the
collector instead): a full collection walks every object of the process, hundreds of
thousands once numba is imported, and would otherwise land in one contender's call at random.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import pandas as pd

from osmarkets import strategies
from osmarkets.backtest import kernels  # first: it picks numba's threading layer, as in real use
from osmarkets.backtest.vectorized import vectorized
from osmarkets.strategies import SmaCross

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_backtest import DATA, grid, load  # noqa: E402

CASH = 100_000.0


@numba.njit(cache=False)
def reference_one(
    close: np.ndarray, open_: np.ndarray, fast: int, slow: int, size: float, cash: float
) -> tuple[float, int, float]:
    """One combination, bar by bar: running-sum SMAs, cross on the close, fill at next open."""
    n = len(close)
    fsum = 0.0
    ssum = 0.0
    pf = np.nan
    ps = np.nan
    pos = 0.0
    money = cash
    trades = 0
    peak = -np.inf
    mdd = 0.0
    want = 0.0
    pending = False
    for t in range(n):
        if pending:
            money -= (want - pos) * open_[t]
            pos = want
            trades += 1
            pending = False
        c = close[t]
        fsum += c
        if t >= fast:
            fsum -= close[t - fast]
        ssum += c
        if t >= slow:
            ssum -= close[t - slow]
        f = fsum / fast if t >= fast - 1 else np.nan
        s = ssum / slow if t >= slow - 1 else np.nan
        if pf <= ps and f > s and pos == 0.0:
            want = size
            pending = t < n - 1
        elif pf >= ps and f < s and pos > 0.0:
            want = 0.0
            pending = t < n - 1
        pf = f
        ps = s
        eq = money + pos * c
        if eq > peak:
            peak = eq
        dd = 1.0 - eq / peak
        if dd > mdd:
            mdd = dd
    return money + pos * close[n - 1], trades, mdd


@numba.njit(cache=False)
def reference_serial(
    close: np.ndarray,
    open_: np.ndarray,
    fast: np.ndarray,
    slow: np.ndarray,
    size: np.ndarray,
    cash: float,
    final: np.ndarray,
    trades: np.ndarray,
    drawdown: np.ndarray,
) -> None:
    for i in range(len(fast)):
        final[i], trades[i], drawdown[i] = reference_one(
            close, open_, fast[i], slow[i], size[i], cash
        )


@numba.njit(cache=False, parallel=True)
def reference_parallel(
    close: np.ndarray,
    open_: np.ndarray,
    fast: np.ndarray,
    slow: np.ndarray,
    size: np.ndarray,
    cash: float,
    final: np.ndarray,
    trades: np.ndarray,
    drawdown: np.ndarray,
) -> None:
    for i in numba.prange(len(fast)):
        final[i], trades[i], drawdown[i] = reference_one(
            close, open_, fast[i], slow[i], size[i], cash
        )


def load_average() -> str:
    """The 1-minute load average (other processes on a shared machine skew the 2-core rows:
    the reference's own 2-core ratio shows how much)."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--data", default=DATA)
    parser.add_argument(
        "--threads",
        type=int,
        default=kernels.max_threads(),
        help="threads of the 'all cores' rows (default: numba's maximum)",
    )
    args = parser.parse_args()
    df, source = load(args.data)
    combos = grid()
    k, n, cores = len(combos), len(df), args.threads
    print(
        f"data: {source}: {n} bars; {k} combinations; repeats: {args.repeats} (medians); "
        f"cores: {cores} (os.cpu_count() {os.cpu_count()}); load average {load_average()}"
    )

    close = df["close"].to_numpy(float)
    open_ = df["open"].to_numpy(float)
    fast = np.array([c["fast"] for c in combos], dtype=np.int64)
    slow = np.array([c["slow"] for c in combos], dtype=np.int64)
    size = np.array([float(c["size"]) for c in combos])
    ref_out = (np.empty(k), np.empty(k, dtype=np.int64), np.empty(k))

    def run_ref(kernel: Any, threads: int) -> Any:
        numba.set_num_threads(threads)
        try:
            kernel(close, open_, fast, slow, size, CASH, *ref_out)
        finally:
            numba.set_num_threads(kernels.max_threads())
        return ref_out

    def cold(fn: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            strategies._AVERAGES.clear()
            return fn()

        return run

    contenders: dict[str, Callable[[], Any]] = {
        "osmarkets vectorized, engine='numpy'": lambda: vectorized(
            SmaCross, df, combos, engine="numpy"
        ),
        "osmarkets vectorized, engine='numba', 1 thread": lambda: vectorized(
            SmaCross, df, combos, engine="numba", threads=1
        ),
        f"osmarkets vectorized, engine='numba', {cores} threads": lambda: vectorized(
            SmaCross, df, combos, engine="numba", threads=cores
        ),
        "numba serial reference (plain @njit loop)": lambda: run_ref(reference_serial, 1),
        f"numba reference, prange, {cores} threads": lambda: run_ref(reference_parallel, cores),
        "  cold averages: engine='numba', 1 thread": cold(
            lambda: vectorized(SmaCross, df, combos, engine="numba", threads=1)
        ),
        f"  cold averages: engine='numba', {cores} threads": cold(
            lambda: vectorized(SmaCross, df, combos, engine="numba", threads=cores)
        ),
    }
    print("\nfirst calls (compilation, or loading it from numba's disk cache; excluded below):")
    first: dict[str, Any] = {}
    for label, fn in contenders.items():
        seconds, first[label] = timed(fn)
        print(f"  {label.strip():<52}{seconds:>8.2f} s")

    times: dict[str, list[float]] = {label: [] for label in contenders}
    for _ in range(args.repeats):
        for label, fn in contenders.items():
            times[label].append(timed(fn)[0])
    rate = {label: k / statistics.median(values) for label, values in times.items()}

    print(f"\n{'grid of 1,024 SMA-cross combinations':<56}{'combos/s':>10}{'ms':>9}")
    for label in contenders:
        print(f"{label:<56}{rate[label]:>10,.0f}{1000 * k / rate[label]:>9.1f}")

    numpy_rate = rate["osmarkets vectorized, engine='numpy'"]
    ours_1 = rate["osmarkets vectorized, engine='numba', 1 thread"]
    ours_n = rate[f"osmarkets vectorized, engine='numba', {cores} threads"]
    ref_1 = rate["numba serial reference (plain @njit loop)"]
    ref_n = rate[f"numba reference, prange, {cores} threads"]
    print("\nratios:")
    rows = [
        ("ours, 1 thread / reference serial", ours_1 / ref_1, ">= 1.0"),
        (f"ours, {cores} threads / reference serial", ours_n / ref_1, ">= 1.8"),
        (f"ours, {cores} threads / ours, 1 thread", ours_n / ours_1, ""),
        (f"reference, {cores} threads / reference serial", ref_n / ref_1, ""),
        (f"ours, {cores} threads / reference, {cores} threads", ours_n / ref_n, ""),
        ("ours numba, 1 thread / ours numpy", ours_1 / numpy_rate, ""),
    ]
    for label, value, target in rows:
        verdict = ""
        if target:
            verdict = f"target {target}: {'met' if value >= float(target[3:]) else 'NOT met'}"
        print(f"  {label:<50}{value:>7.2f}x  {verdict}")

    numba_table = first[f"osmarkets vectorized, engine='numba', {cores} threads"].table
    numpy_table = first["osmarkets vectorized, engine='numpy'"].table
    try:
        pd.testing.assert_frame_equal(numba_table, numpy_table, check_exact=True)
        same = "identical"
    except AssertionError:
        same = "DIFFERENT"
    final, trades, _ = run_ref(reference_serial, 1)
    agree = int(np.sum((trades == numba_table["trades"].to_numpy())
                       & (final == numba_table["final_value"].to_numpy())))  # fmt: skip
    print(f"\nload average at the end: {load_average()}; numba threading layer: "
          f"{numba.threading_layer()}")  # fmt: skip
    print(f"numba vs numpy engine tables (final value, trades, return, drawdown): {same}")
    print(
        f"reference vs osmarkets: {agree}/{k} combinations with the same fill count and final "
        "value (the reference takes backtrader's cross rule and running-sum averages)"
    )


if __name__ == "__main__":
    sys.exit(main())
