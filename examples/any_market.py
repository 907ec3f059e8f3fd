"""Data of any market: a daily stock file as it comes, weeks by trading sessions, minute bars
restricted to regular hours, and a futures contract with its multiplier.

Run: python examples/any_market.py [--data path/to/yahoo-daily.csv]

The bundled ``examples/data/stock-daily.csv`` is a synthetic file in Yahoo's layout (dates at
00:00 UTC, New York sessions of 2019-2023); give any Yahoo, Stooq, MetaTrader, NinjaTrader or
TradeStation export instead. See docs/data.rst, "Data of any market".
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from osmarkets import run_script
from osmarkets.backtest import backtest
from osmarkets.data import Alignment, conform, infer_timeframe, read_bars
from osmarkets.instruments import Instrument
from osmarkets.strategies import SmaCross

HERE = Path(__file__).resolve().parent


def session_minutes(days: pd.DataFrame) -> pd.DataFrame:
    """Seeded minute bars from 4:00 to 20:00 New York on the sessions of ``days`` (so that
    there are pre-market and after-hours bars to drop)."""
    rng = np.random.default_rng(1)
    stamps = [
        pd.date_range(f"{day:%Y-%m-%d} 04:00", periods=960, freq="min", tz="America/New_York")
        for day in days.index[:20]
    ]
    index = pd.DatetimeIndex(np.concatenate([s.tz_convert("UTC") for s in stamps]), name="time")
    close = 4000 + np.cumsum(rng.normal(0, 0.75, len(index))).round(2)
    open_ = np.r_[close[0], close[:-1]]
    return pd.DataFrame(
        {"open": open_, "high": np.maximum(open_, close) + 0.25,
         "low": np.minimum(open_, close) - 0.25, "close": close, "volume": 10.0},
        index=index.tz_convert("UTC"),
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(HERE / "data" / "stock-daily.csv"))
    args = parser.parse_args()

    days = read_bars(args.data)  # the layout is detected (Yahoo here)
    times = days.index.as_unit("ns").asi8
    print(f"{args.data}: {len(days)} bars, time frame {infer_timeframe(times)} (inferred)")

    daily = backtest(SmaCross, days, "STOCK:D", params={"size": 100})
    print(f"STOCK:D as it comes:           final value {daily.final_value:,.2f}")
    weekly = backtest(SmaCross, days, "STOCK:W", params={"size": 100, "fast": 4, "slow": 12},
                      calendar="XNYS")  # fmt: skip
    print(f"STOCK:W by XNYS trading weeks:  final value {weekly.final_value:,.2f}")

    minutes = session_minutes(days)
    nyse = Alignment.of(calendar="XNYS", regular_hours=True)
    regular, _ = conform(minutes, "M1", nyse)
    print(f"minute bars: {len(minutes):,} from 4:00 to 20:00, {len(regular):,} in regular hours")

    es = Instrument("ES", multiplier=50, tick_size=0.25, margin_rate=0.05)
    futures = backtest(SmaCross, minutes, "ES:M5", params={"size": 1}, calendar="XNYS",
                       regular_hours=True, instruments=[es])  # fmt: skip
    print(
        f"ES:M5, 1 contract x 50, regular hours: {len(futures.trades)} fills, "
        f"final value {futures.final_value:,.2f}"
    )


if __name__ == "__main__":
    run_script(main)  # exit status, and one line on Ctrl-C
