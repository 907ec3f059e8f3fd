"""Probability of backtest overfitting (CSCV): vectorised ``pbo`` vs a naive per-combination loop.

Run: python benchmarks/bench_overfit.py [--repeats 3] [--naive 20] [--periods 30889]
         [--configurations 1024] [--partitions 16]

On a seeded 30,889 × 1,024 float64 matrix of synthetic per-period returns (the length of the
one-minute bars of ``/work/shared/data/market``; the data themselves are not needed), times
:func:`osmarkets.optimize.overfit.pbo` with 16 partitions (12,870 combinations) as the median of
``--repeats`` runs. The reference is the textbook loop: for each combination, gather the
in-sample and out-of-sample rows, compute every configuration's Sharpe ratio with numpy, pick
the in-sample best and rank it out-of-sample with ``scipy.stats.rankdata``. It is run on the
first ``--naive`` combinations only and extrapolated linearly to all of them (labelled so);
its logits are checked against the vectorised ones. Target: under 2 s for ``pbo``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import time

import numpy as np
from scipy import stats

from osmarkets.optimize.overfit import pbo


def naive_logits(matrix: np.ndarray, partitions: int, count: int) -> tuple[np.ndarray, float]:
    """Logits of the first ``count`` combinations, one combination at a time, and the time."""
    periods, configurations = matrix.shape
    size = periods // partitions
    groups = matrix[: partitions * size].reshape(partitions, size, configurations)
    logits = []
    start = time.perf_counter()
    combos = itertools.combinations(range(partitions), partitions // 2)
    for combo in itertools.islice(combos, count):
        outside = [g for g in range(partitions) if g not in combo]
        is_rows = groups[list(combo)].reshape(-1, configurations)
        oos_rows = groups[outside].reshape(-1, configurations)
        is_sharpe = is_rows.mean(axis=0) / is_rows.std(axis=0, ddof=1)
        oos_sharpe = oos_rows.mean(axis=0) / oos_rows.std(axis=0, ddof=1)
        best = int(np.argmax(is_sharpe))
        omega = stats.rankdata(oos_sharpe)[best] / (configurations + 1)
        logits.append(math.log(omega / (1 - omega)))
    return np.array(logits), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive", type=int, default=20, help="combinations run by the loop")
    parser.add_argument("--periods", type=int, default=30_889)
    parser.add_argument("--configurations", type=int, default=1024)
    parser.add_argument("--partitions", type=int, default=16)
    args = parser.parse_args()

    rng = np.random.default_rng(2015)
    matrix = rng.normal(0.0, 1e-4, (args.periods, args.configurations))
    matrix[:, ::7] += rng.standard_t(3, (args.periods, 1)) * 5e-5  # fat-tailed shared factor

    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        result = pbo(matrix, args.partitions)
        times.append(time.perf_counter() - start)
    fast = statistics.median(times)
    combinations = result.combinations

    count = min(args.naive, combinations)
    logits, elapsed = naive_logits(matrix, args.partitions, count)
    slow = elapsed / count * combinations
    agree = np.allclose(logits, result.logits[:count], rtol=0, atol=1e-9)

    print(
        f"PBO by CSCV: {args.periods:,} periods × {args.configurations:,} configurations, "
        f"{args.partitions} partitions = {combinations:,} combinations "
        f"(PBO {result.pbo:.3f}, degradation {result.degradation:.3f})"
    )
    rows = [
        (f"pbo, vectorised (median of {args.repeats})", fast, combinations / fast, ""),
        (
            f"naive loop, {count} combinations timed ({elapsed:.2f} s), extrapolated",
            slow,
            combinations / slow,
            f"{slow / fast:,.0f}×",
        ),
    ]
    print(f"| {'measure':<62} | {'seconds':>9} | {'combinations/s':>14} | {'speed-up':>8} |")
    print(f"|{'-' * 64}|{'-' * 10}:|{'-' * 15}:|{'-' * 9}:|")
    for name, seconds, rate, ratio in rows:
        print(f"| {name:<62} | {seconds:>9.3f} | {rate:>14,.0f} | {ratio:>8} |")
    print(f"runs: {', '.join(f'{t:.3f}' for t in times)} s; naive logits agree: {agree}")
    print(f"target < 2 s for pbo: {'met' if fast < 2.0 else 'NOT met'}")


if __name__ == "__main__":
    main()
