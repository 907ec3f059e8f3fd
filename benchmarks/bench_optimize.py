"""Optimiser throughput: SmaCross configurations per second, in-process vs Backtester agents.

Run: python benchmarks/bench_optimize.py [--repeats R] [--workers N] [--sizes 1024,10000]

On the 30,889 one-minute bars of ``/work/shared/data/market/2006-01-02-volume-min-001.txt``
(or, if absent, 30,000 seeded synthetic bars), evaluates

* a grid of 1,024 SmaCross configurations (fast 2..33 x slow 40..226 step 6), and
* 10,000 random configurations (fast 2..101, slow 102..401),

with the full evaluation of :class:`osmarkets.optimize.evaluate.Evaluator` (vectorised
simulation, every statistic, filters), first in this process (``workers=0``), then on N local
Backtester agents (``workers=N``; started before the clock runs, their start-up time is shown
separately). Prints medians over repeats, the speed-up and the scaling efficiency
(speed-up / N). Also times a whole ``explore(...)`` call with the portfolio step, and the
probability of backtest overfitting of the 1,024-configuration grid: its per-bar returns
(bars x 1,024, recomputed by the evaluator) and ``pbo`` with 16 partitions (12,870
combinations; target under 2 s). ``--only-pbo`` runs that part alone.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from osmarkets.optimize import IntRange, Space, explore
from osmarkets.optimize.agents import AgentRunner
from osmarkets.optimize.evaluate import Evaluator
from osmarkets.optimize.overfit import pbo
from osmarkets.optimize.pipeline import InProcessRunner
from osmarkets.strategies import SmaCross

DATA = Path("/work/shared/data/market/2006-01-02-volume-min-001.txt")


def load_bars() -> tuple[pd.DataFrame, str]:
    if DATA.exists():
        from osmarkets.data.io import read_bars

        return read_bars(DATA), DATA.name
    rng = np.random.default_rng(0)
    n = 30_000
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    open_ = np.r_[100.0, close[:-1]]
    index = pd.date_range("2024-01-02", periods=n, freq="1min", tz="UTC", name="time")
    frame = pd.DataFrame({"open": open_, "high": np.maximum(open_, close) * 1.0005,
                          "low": np.minimum(open_, close) * 0.9995, "close": close,
                          "volume": 1.0}, index=index)  # fmt: skip
    return frame, "synthetic"


def configurations(size: int) -> list[dict]:
    if size == 1024:
        return [{"fast": f, "slow": s} for f in range(2, 34) for s in range(40, 232, 6)]
    return Space({"fast": IntRange(2, 101), "slow": IntRange(102, 401)}).sample(size, seed=1)


def timed(run, configs, repeats: int) -> tuple[float, int]:
    times = []
    rows = 0
    for _ in range(repeats):
        start = time.perf_counter()
        rows = len(run(configs))
        times.append(time.perf_counter() - start)
    return statistics.median(times), rows


def time_pbo(evaluator: Evaluator, repeats: int) -> None:
    """The per-bar returns of the 1,024-configuration grid, then their PBO (16 partitions)."""
    configs = configurations(1024)
    start = time.perf_counter()
    returns = evaluator.returns(configs).to_numpy(dtype=float)
    gathered = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        found = pbo(returns, 16)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"returns of 1,024 configurations x {returns.shape[0]:,} bars: {gathered:.2f} s; "
          f"pbo(16 partitions, {found.combinations:,} combinations): {median:.2f} s median "
          f"({found.combinations / median:,.0f} combinations/s), PBO {found.pbo:.3f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sizes", default="1024,10000")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--only-pbo", action="store_true", help="time the PBO step only")
    args = parser.parse_args()
    bars, source = load_bars()
    sizes = [int(s) for s in args.sizes.split(",")]
    cash = 2_000_000.0  # SmaCross trades 1,000 units of a ~1,250 index: no margin call
    evaluator = Evaluator(SmaCross, bars, "ES:M1", cash=cash)
    print(f"data: {source}, {len(bars):,} bars; SmaCross; medians of {args.repeats} runs")
    time_pbo(evaluator, args.repeats)
    if args.only_pbo:
        return
    local = InProcessRunner(evaluator, args.batch)
    started = time.perf_counter()
    with AgentRunner(evaluator, workers=args.workers, batch=args.batch) as agents:
        startup = time.perf_counter() - started
        agents.run(configurations(1024)[:256])  # each Backtester fetches the job once
        header = (
            f"{'configurations':>14} {'in-process cfg/s':>17} "
            f"{f'workers={args.workers} cfg/s':>17} {'speed-up':>9} {'efficiency':>10}"
        )
        print(header)
        for size in sizes:
            configs = configurations(size)
            repeats = args.repeats if size <= 2048 else max(1, args.repeats // 2)
            t_local, n_local = timed(local.run, configs, repeats)
            t_agents, n_agents = timed(agents.run, configs, repeats)
            assert n_local == n_agents == len(configs), (n_local, n_agents)
            r_local, r_agents = n_local / t_local, n_agents / t_agents
            speed = r_agents / r_local
            print(f"{size:>14,} {r_local:>17,.0f} {r_agents:>17,.0f} {speed:>8.2f}x "
                  f"{speed / args.workers:>9.0%}")  # fmt: skip
    print(
        f"agent start-up (name server, generator, collector, {args.workers} Backtesters): "
        f"{startup:.2f} s"
    )
    for workers in (0, args.workers):
        start = time.perf_counter()
        result = explore(SmaCross, bars, {"fast": IntRange(2, 33), "slow": IntRange(40, 226)},
                         samples=1024, workers=workers, batch=args.batch, cash=cash)  # fmt: skip
        wall = time.perf_counter() - start
        print(
            f"explore(samples=1024, workers={workers}) end to end, with start-up and "
            f"portfolio: {wall:.2f} s ({len(result.table) / wall:,.0f} cfg/s)"
        )


if __name__ == "__main__":
    main()
