"""A daily stock file as it comes, in osMarkets and in backtrader: the same fills?

Run: python benchmarks/daily_vs_backtrader.py [--data yahoo-daily.csv] [--repeats R]

Reads the file with ``read_bars`` (its layout detected), backtests the package's SMA-cross
10/30 on ``SYM:D`` (the frame inferred from the dates, the bars used as they are) and runs
backtrader's SMA-cross on the same DataFrame (``pip install backtrader``; benchmarking only),
then prints both fill lists' agreement, both final values and both speeds (medians).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_backtest import run_backtrader  # noqa: E402

from osmarkets.backtest import backtest  # noqa: E402
from osmarkets.data import read_bars  # noqa: E402
from osmarkets.strategies import SmaCross  # noqa: E402

DATA = "/work/shared/data/market/orcl-1995-2014.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    frame = read_bars(args.data)[["open", "high", "low", "close", "volume"]]
    runs = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        ours = backtest(SmaCross, frame, "SYM:D", params={"size": 1})
        runs.append(time.perf_counter() - start)
    trades = ours.trades
    fills = [
        (s if side == "buy" else -s, p)
        for side, s, p in zip(trades["side"], trades["size"], trades["price"], strict=True)
    ]
    rate = len(frame) / statistics.median(runs)
    print(f"{args.data}: {len(frame)} daily bars; osMarkets SYM:D {rate:,.0f} bars/s")
    print(f"osMarkets: {len(fills)} fills, final value {ours.final_value:,.3f}")
    start = time.perf_counter()
    theirs = run_backtrader(frame)
    if theirs is None:
        print("backtrader: not installed (pip install backtrader)")
        return
    elapsed = time.perf_counter() - start
    bt_fills, bt_value = theirs
    same = fills == [(float(s), float(p)) for s, p in bt_fills]
    print(f"backtrader: {len(bt_fills)} fills, final value {bt_value:,.3f}, "
          f"{len(frame) / elapsed:,.0f} bars/s")  # fmt: skip
    print(
        f"fills {'identical' if same else 'DIFFERENT'}, final values "
        f"{'equal' if abs(bt_value - ours.final_value) < 1e-6 else 'DIFFERENT'}"
    )


if __name__ == "__main__":
    main()
