"""Optimisation and walk-forward of the example SmaCross on generated bars, from the CLI.

Run: python examples/optimize_example.py [OUTPUT_DIR] [--workers N]

1. writes 20,000 seeded one-minute bars (a random walk with trending regimes) to a CSV;
2. ``osmarkets optimize``: 400 random (fast, slow) configurations, filters, a portfolio, every
   configuration saved to ``results.parquet`` and an HTML report with the exploration map and
   the portfolio's correlation matrix and equity; it prints how much of it is luck: the
   probability of backtest overfitting (PBO) of the search and the deflated Sharpe ratio (DSR)
   of the best configuration and of each portfolio member, deflated by the 400 trials;
3. ``osmarkets walkforward``: rolling 6,000-bar training windows, 2,000-bar test windows,
   stitched out-of-sample equity and the in-sample vs out-of-sample scatter in another report.

Both commands show a progress bar on stderr. The same runs in Python are
``osmarkets.optimize.explore(...)`` and ``walk_forward(...)`` (see docs/optimize.rst).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd

from osmarkets import run_script
from osmarkets.cli import main as osmarkets

HERE = Path(__file__).resolve().parent


def generated_bars(n: int = 20_000, seed: int = 7) -> pd.DataFrame:
    """One-minute bars whose drift switches sign every few hundred bars (trends to follow)."""
    rng = np.random.default_rng(seed)
    regime = np.repeat(rng.choice([-1.0, 1.0], n // 300 + 1), 300)[:n]
    steps = rng.normal(0.00004 * regime, 0.0008)
    close = 10.0 * np.exp(np.cumsum(steps))
    open_ = np.r_[10.0, close[:-1]]
    wiggle = np.abs(rng.normal(0, 0.0004, (2, n)))
    index = pd.date_range("2024-03-04", periods=n, freq="1min", tz="UTC", name="time")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * (1 + wiggle[0]),
            "low": np.minimum(open_, close) * (1 - wiggle[1]),
            "close": close,
            "volume": rng.integers(1, 100, n).astype(float),
        },
        index=index,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default="optimize-output")
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "bars.csv"
    generated_bars().to_csv(data)
    brain = f"{HERE / 'sma_cross.py'}:SmaCross"
    common = [
        brain, "--data", str(data), "--bsid", "DEMO:M1",
        "--space", "fast=2:40", "--space", "slow=20:240",
        "--min-trades", "20", "--max-drawdown", "0.3", "--max-correlation", "0.6",
        "--workers", str(args.workers),
    ]  # fmt: skip
    code = osmarkets(["optimize", *common, "--samples", "400", "--smooth", "5",
                      "-o", str(out / "results.parquet"),
                      "--html", str(out / "optimize.html")])  # fmt: skip
    if code:
        return code
    code = osmarkets(["walkforward", *common, "--samples", "100", "--train", "6000",
                      "--test", "2000", "-o", str(out / "walkforward.parquet"),
                      "--html", str(out / "walkforward.html")])  # fmt: skip
    if code == 0:
        print(
            f"reports: {os.fspath(out / 'optimize.html')}, {os.fspath(out / 'walkforward.html')}"
        )
    return code


if __name__ == "__main__":
    run_script(main)  # exit status, and one line on Ctrl-C
