"""Backtest the example SmaCross on generated EUR_USD minute bars, in-process.

    python examples/backtest_example.py [report.html]

The same class runs live and in ``SimulatedArchitecture``; here it runs in the fast in-process
engine, then a small parameter grid goes through the vectorised path.
"""

import sys

import numpy as np
import pandas as pd

from osmarkets import run_script
from osmarkets.backtest import backtest
from osmarkets.backtest.vectorized import vectorized
from osmarkets.brokers.simulated import Commission
from osmarkets.strategies import SmaCross


def synthetic_bars(n: int = 5_000, seed: int = 42) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 1.10 * np.exp(np.cumsum(rng.normal(0, 0.0002, n)))
    open_ = np.r_[1.10, close[:-1]]
    wiggle = np.abs(rng.normal(0, 0.0001, (2, n)))
    index = pd.date_range("2024-03-04", periods=n, freq="1min", tz="UTC", name="time")
    return pd.DataFrame(
        {"open": open_, "high": np.maximum(open_, close) + wiggle[0],
         "low": np.minimum(open_, close) - wiggle[1], "close": close, "volume": 1.0},
        index=index,
    )  # fmt: skip


def main(report: str | None = None) -> None:
    bars = synthetic_bars()
    print(f"SmaCross on {len(bars):,} generated EUR_USD minute bars", flush=True)
    costs = {"spread": 0.0001, "commission": Commission(fraction=0.00002), "margin_rate": 0.02}
    result = backtest(SmaCross, bars, "EUR_USD:M1", params={"size": 10_000}, **costs)
    print(result)
    print(result.stats_table())
    grid = vectorized(SmaCross, bars, {"fast": [5, 10, 20], "slow": [30, 60], "size": [10_000]},
                      spread=costs["spread"], commission=costs["commission"])  # fmt: skip
    print(grid.table.sort_values("final_value", ascending=False).to_string(index=False))
    if report:
        print("report:", result.to_html(report))


if __name__ == "__main__":
    run_script(main, sys.argv[1] if len(sys.argv) > 1 else None)  # one line on Ctrl-C
