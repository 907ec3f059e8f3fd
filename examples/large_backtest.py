"""A backtest streamed from a directory of Parquet files, one per instrument.

    python examples/large_backtest.py [DIRECTORY] [--bars N]

Without a directory it writes a small one first (three instruments of generated one-minute
bars, 200,000 bars each), then runs one Brain over every instrument with the bars read in
chunks: the memory used does not depend on the length of the files. See docs/large.rst.
"""

from __future__ import annotations

import argparse
import math
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from osmarkets import Brain
from osmarkets.backtest import backtest
from osmarkets.indicators import SMA


class Trend(Brain):
    """Long when the 60-bar average is above the 240-bar one, per instrument."""

    fast = 60
    slow = 240

    def on_start(self) -> None:
        self.lines: dict[str, list] = {}

    def on_new_bar(self, series) -> None:
        symbol = series.bsid.symbol
        lines = self.lines.setdefault(symbol, [SMA(self.fast), SMA(self.slow), math.nan, math.nan])
        price = series.close[0]
        fast, slow = lines[0].update(price), lines[1].update(price)
        before_fast, before_slow = lines[2], lines[3]
        lines[2], lines[3] = fast, slow
        held = self.position(symbol)
        if before_fast <= before_slow and fast > slow and held == 0:
            self.send_order("buy", 1, symbol)
        elif before_fast >= before_slow and fast < slow and held > 0:
            self.send_order("sell", held, symbol)


def write_example(folder: Path, bars: int) -> list[str]:
    """Generated one-minute bars on a 0.25 tick grid, one Parquet file per instrument, in row
    groups of 16,384 bars (the unit a streamed backtest reads)."""
    symbols = ["ES", "NQ", "YM"]
    for seed, symbol in enumerate(symbols):
        rng = np.random.default_rng(seed)
        close = np.round(4 * (4000 + np.cumsum(rng.normal(0, 1.0, bars)))) / 4
        open_ = np.r_[close[0], close[:-1]]
        frame = pd.DataFrame(
            {"open": open_, "high": np.maximum(open_, close) + 0.25,
             "low": np.minimum(open_, close) - 0.25, "close": close, "volume": 1.0},
            index=pd.date_range("2024-01-01", periods=bars, freq="1min", tz="UTC", name="time"),
        )  # fmt: skip
        frame.to_parquet(folder / f"{symbol}.parquet", row_group_size=16_384)
    return symbols


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A backtest streamed from Parquet files.")
    parser.add_argument("directory", nargs="?", help="one <SYMBOL>.parquet file per instrument")
    parser.add_argument("--bars", type=int, default=200_000, help="bars per generated file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        if args.directory:
            folder = Path(args.directory)
            symbols = sorted(p.name.split(".")[0] for p in folder.glob("*.parquet"))
        else:
            folder = Path(scratch)
            symbols = write_example(folder, args.bars)
        start = time.perf_counter()
        result = backtest(Trend, folder, [f"{s}:M1" for s in symbols], history=300,
                          equity_dtype="float32")  # fmt: skip
        elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    bars = len(symbols) * args.bars if not args.directory else None
    rate = f", {bars / elapsed:,.0f} bars/s" if bars else ""
    print(f"{len(symbols)} instruments streamed in {elapsed:.1f} s{rate}; peak RSS {peak:,.0f} MB")
    print(f"fills {len(result.trades)}, final equity {float(result.equity.iloc[-1]):,.2f}")


if __name__ == "__main__":
    main()
