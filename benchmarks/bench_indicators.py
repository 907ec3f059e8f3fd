"""Indicator speed: incremental updates per second, and vectorised values per second.

Run: python benchmarks/bench_indicators.py [--bars N] [--repeats R]

Side by side: each incremental class against the per-bar recomputation a Brain would otherwise
do on its newest-first BarSeries (``close[:n].mean()`` with numpy), and each vectorised
function against the pandas one-liner closest to it. Medians over repeats.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from previous_sma import RunningSMA  # noqa: E402

from osmarkets.indicators import (  # noqa: E402
    ATR,
    EMA,
    MACD,
    RSI,
    SMA,
    WMA,
    BollingerBands,
    RollingMax,
    Stochastic,
    atr,
    bollinger,
    ema,
    macd,
    rolling_max,
    rsi,
    sma,
    wma,
)


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n, reps = args.bars, args.repeats
    rng = np.random.default_rng(0)
    close = 100 + rng.standard_normal(n).cumsum()
    high = close + rng.random(n)
    low = close - rng.random(n)
    closes = close.tolist()
    bars = list(zip(high.tolist(), low.tolist(), closes, strict=True))
    newest_first = close[::-1].copy()

    print(f"incremental, {n:,} updates (median of {reps}); updates/s")
    single: list[tuple[str, Callable[[], object]]] = [
        ("SMA(30)", lambda: SMA(30)),
        ("EMA(30)", lambda: EMA(30)),
        ("WMA(30)", lambda: WMA(30)),
        ("RSI(14)", lambda: RSI(14)),
        ("BollingerBands(20)", lambda: BollingerBands(20)),
        ("MACD(12,26,9)", lambda: MACD()),
        ("RollingMax(30)", lambda: RollingMax(30)),
    ]
    for name, make in single:

        def run(make: Callable[[], object] = make) -> None:
            update = make().update  # type: ignore[attr-defined]
            for v in closes:
                update(v)

        t = median_time(run, reps)
        print(f"  {name:<20} {n / t:>14,.0f}")
    for name, make_bar in (("ATR(14)", lambda: ATR(14)), ("Stochastic(14,3)", Stochastic)):

        def run_bars(make: Callable[[], object] = make_bar) -> None:
            update = make().update  # type: ignore[attr-defined]
            for h, lo, c in bars:
                update(h, lo, c)

        t = median_time(run_bars, reps)
        print(f"  {name:<20} {n / t:>14,.0f}")

    def naive_sma() -> None:  # what on_new_bar would do on a BarSeries view, once per bar
        for i in range(n - 30, -1, -1):
            newest_first[i : i + 30].mean()

    t_naive = median_time(naive_sma, reps)
    t_sma = median_time(lambda: [s.update(v) for s in [SMA(30)] for v in closes], reps)
    print(f"  numpy close[:30].mean() per bar: {n / t_naive:,.0f}/s; "
          f"SMA(30).update is {t_naive / t_sma:.1f}x faster")  # fmt: skip
    t_running = median_time(lambda: [s.update(v) for s in [RunningSMA(30)] for v in closes], reps)
    print(
        f"  exact SMA(30) {n / t_sma:,.0f}/s vs the previous running-sum SMA(30) "
        f"{n / t_running:,.0f}/s: {t_running / t_sma:.2f} of its speed (the update alone; the "
        f"target, >= 0.90 for the SMA-cross Brain, is measured by bench_backtest.py)"
    )

    print(f"\nvectorised, {n:,} values (median of {reps}); values/s, ratio to pandas")
    s = pd.Series(close)
    hs, ls = pd.Series(high), pd.Series(low)
    weights = np.arange(1.0, 31.0)

    def pandas_rsi() -> object:
        d = s.diff()
        gain = d.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
        loss = (-d.clip(upper=0)).ewm(alpha=1 / 14, adjust=False).mean()
        return 100 - 100 / (1 + gain / loss)

    def pandas_atr() -> object:
        prev = s.shift()
        tr = pd.concat([hs - ls, (hs - prev).abs(), (ls - prev).abs()], axis=1).max(axis=1)
        return tr.ewm(alpha=1 / 14, adjust=False).mean()

    def pandas_bollinger() -> object:
        mid, std = s.rolling(20).mean(), s.rolling(20).std(ddof=0)
        return mid + 2 * std, mid - 2 * std

    def pandas_macd() -> object:
        line = s.ewm(span=12, adjust=False).mean() - s.ewm(span=26, adjust=False).mean()
        return line, line.ewm(span=9, adjust=False).mean()

    cases: list[tuple[str, Callable[[], object], Callable[[], object]]] = [  # fmt: skip
        ("sma(30)", lambda: sma(close, 30), lambda: s.rolling(30).mean()),
        ("ema(30)", lambda: ema(close, 30), lambda: s.ewm(span=30, adjust=False).mean()),
        (
            "wma(30)",
            lambda: wma(close, 30),
            lambda: s.rolling(30).apply(lambda w: w @ weights / weights.sum(), raw=True),
        ),
        ("rsi(14)", lambda: rsi(close, 14), pandas_rsi),
        ("atr(14)", lambda: atr(high, low, close, 14), pandas_atr),
        ("bollinger(20)", lambda: bollinger(close, 20), pandas_bollinger),
        ("macd()", lambda: macd(close), pandas_macd),
        ("rolling_max(30)", lambda: rolling_max(close, 30), lambda: s.rolling(30).max()),
    ]
    for name, ours, theirs in cases:
        t_ours = median_time(ours, reps)
        t_theirs = median_time(theirs, reps)
        print(f"  {name:<16} {n / t_ours:>14,.0f}   pandas {n / t_theirs:>14,.0f}   "
              f"ratio {t_theirs / t_ours:5.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
