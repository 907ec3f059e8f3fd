"""The simulated architecture on data of any market: a daily file as it comes, sessions of an
exchange calendar, longer frames made by the Router, shorter ones refused with the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import exchange_calendars as xcals
import numpy as np
import pandas as pd
import pytest

from osmarkets.backtest import backtest
from osmarkets.data import Alignment, conform, read_bars
from osmarkets.strategies import SmaCross

pytestmark = pytest.mark.timeout(180)
PARAMS = {"fast": 5, "slow": 20, "size": 100}


def yahoo_file(path: Path, n: int = 160) -> Path:
    """Daily bars of New York sessions as Yahoo writes them (dates, Adj Close)."""
    dates = xcals.get_calendar("XNYS", start="2022-01-03", end="2023-12-29").sessions[:n]
    rng = np.random.default_rng(8)
    close = np.round(40 * np.exp(np.cumsum(rng.normal(0, 0.02, n))), 2)
    open_ = np.round(np.r_[40.0, close[:-1]] * (1 + rng.normal(0, 0.004, n)), 2)
    high, low = np.maximum(open_, close) + 0.3, np.minimum(open_, close) - 0.3
    rows = ["Date,Open,High,Low,Close,Adj Close,Volume"]
    rows += [
        f"{d:%Y-%m-%d},{o:.2f},{h:.2f},{lo:.2f},{c:.2f},{c:.2f},1000"
        for d, o, h, lo, c in zip(dates, open_, high, low, close, strict=True)
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


def fills(trades: pd.DataFrame) -> list[tuple[Any, ...]]:
    return list(trades[["side", "size", "price"]].itertuples(index=False, name=None))


@pytest.mark.parametrize("calendar", [None, "XNYS"])
def test_a_yahoo_daily_file_trades_as_the_backtest_does(simulated, tmp_path, calendar):
    path = yahoo_file(tmp_path / "stock.csv")
    expected = backtest(SmaCross, str(path), "STK:D", params=PARAMS, calendar=calendar)
    assert len(expected.trades) >= 4
    system = simulated({"STK": str(path)}, calendar=calendar)
    system.add_brain("sma", base=SmaCross, **PARAMS)
    system["sma"].subscribe("STK:D", 100)
    result = system.run(timeout=120)
    assert fills(result.trades) == fills(expected.trades)
    assert result.final_value == pytest.approx(expected.final_value, abs=1e-9)


def test_the_router_derives_weeks_and_refuses_a_shorter_frame(simulated, tmp_path):
    path = yahoo_file(tmp_path / "stock.csv")
    system = simulated({"STK": str(path)}, calendar="XNYS")
    system.add_brain("sma", base=SmaCross, **PARAMS)
    with pytest.raises(Exception, match="the feed of STK carries D bars; ask for D"):
        system["sma"].subscribe("STK:M1", 10)
    system["sma"].subscribe("STK:W", 100)
    system.run(timeout=120)
    expected, _ = conform(read_bars(path), "W", Alignment.of(calendar="XNYS"))
    history = system["sma"].get_attr("osm_series")
    weekly = [s for bsid, s in history.items() if bsid.code == "W"][0].to_pandas()
    # every week but the last, still forming when the data ends, stamped at its first open
    assert len(weekly) == len(expected) - 1
    pd.testing.assert_frame_equal(weekly[expected.columns], expected.iloc[:-1], check_freq=False)


def test_a_given_data_timeframe_and_regular_hours_ticks_reach_the_router(simulated, tmp_path):
    # an irregular file (a 36-hour gap only): its frame cannot be inferred, it is given
    frame = pd.DataFrame(
        {"open": [1.0, 1.1, 1.2], "high": [1.2, 1.3, 1.4], "low": [0.9, 1.0, 1.1],
         "close": [1.1, 1.2, 1.3], "volume": 1.0},
        index=pd.DatetimeIndex(["2024-01-02", "2024-01-03 12:00", "2024-01-05"], tz="UTC",
                               name="time"),
    )  # fmt: skip
    with pytest.raises(ValueError, match="cannot infer"):
        simulated({"X": frame})
    system = simulated({"X": frame}, data_timeframe="D")
    assert system["router"].get_attr("base_timeframes") == {"X": "D"}
    # ticks from 8:00 to 18:00 New York: only those inside the session are replayed
    local = pd.date_range("2024-03-05 08:00", "2024-03-05 18:00", freq="30s",
                          tz="America/New_York", inclusive="left")  # fmt: skip
    ticks = pd.DataFrame({"bid": 1.0, "ask": 1.0001}, index=local.tz_convert("UTC").rename("time"))
    regular = simulated({"T": ticks}, calendar="XNYS", regular_hours=True)
    kept = regular.frames["T"].index.tz_convert("America/New_York")
    assert kept.min().strftime("%H:%M") == "09:30" and kept.max().strftime("%H:%M") == "15:59"
    assert len(kept) == 390 * 2
