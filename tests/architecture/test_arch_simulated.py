"""SimulatedArchitecture: lock-step replay, parity with the in-process backtest, time frames,
several instruments, failing handlers, risk checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from arch_brains import Faulty, Greedy, Recorder
from conftest import make_bars

from osmarkets import feeds
from osmarkets.backtest import backtest
from osmarkets.data.resample import resample
from osmarkets.strategies import SmaCross

M1 = ("EUR_USD", 1, "Minutes")


def _fills(trades: pd.DataFrame) -> list[tuple]:
    return [
        (t.value, s, side, float(size), round(float(price), 10))
        for t, s, side, size, price in trades[
            ["time", "symbol", "side", "size", "price"]
        ].itertuples(index=False)
    ]


@pytest.mark.parametrize(
    ("quotes", "params", "broker"),
    [
        (False, {}, {}),
        (True, {"fast": 5, "slow": 12}, {}),
        (False, {"fast": 3, "slow": 8}, {"spread": 0.0002}),
    ],
)
def test_parity_with_backtest(simulated, quotes, params, broker) -> None:
    data = make_bars(500, seed=7, quotes=quotes)
    expected = backtest(SmaCross, data, M1, params=params, history=100, **broker)
    assert len(expected.trades) >= 4  # the comparison means something
    system = simulated({"EUR_USD": data}, 100_000, **broker)
    system.add_brain("sma", base=SmaCross, **params)
    system["sma"].subscribe(M1, 100)
    result = system.run(timeout=90)
    assert _fills(result.trades) == _fills(expected.trades)
    assert result.final_value == pytest.approx(expected.final_value, abs=1e-6)
    assert len(result.equity) == len(data)
    np.testing.assert_allclose(result.equity.to_numpy(), expected.equity.to_numpy(), atol=1e-6)


def test_two_brains_on_two_time_frames_of_one_instrument(simulated) -> None:
    data = make_bars(300, seed=3)
    system = simulated({"EUR_USD": data})
    system.add_brain("fast", base=Recorder, buy_on=10**9)
    system.add_brain("slow", base=Recorder, buy_on=10**9)
    system["fast"].subscribe(M1, 500)
    system["slow"].subscribe(("EUR_USD", 5, "Minutes"), 500)
    system.run(timeout=60)
    assert system["fast"].get_attr("osm_bars") == 300
    got = system["slow"].osm_series_frame(("EUR_USD", 5, "Minutes"))
    expected = resample(data, "M5")
    # the last five-minute bar completes only when a later bar arrives: it is still forming
    pd.testing.assert_frame_equal(got, expected.iloc[: len(got)], check_freq=False)
    assert len(got) == len(expected) - 1


def test_one_brain_on_two_instruments(simulated) -> None:
    eur = make_bars(120, seed=1)
    gbp = make_bars(80, seed=2, start="2024-01-02 00:20")
    system = simulated({"EUR_USD": eur, "GBP_USD": gbp})
    system.add_brain("both", base=Recorder, buy_on=10**9)
    system["both"].subscribe(M1, 200)
    system["both"].subscribe(("GBP_USD", 1, "Minutes"), 200)
    system.run(timeout=60)
    seen = system["both"].get_attr("seen")
    assert len(seen) == 200
    assert sorted(t for s, t in seen if s.startswith("GBP")) == list(gbp.index.as_unit("ns").asi8)
    assert [t for _, t in seen] == sorted(t for _, t in seen)  # time order across symbols


def test_failing_handler_is_counted_and_brain_keeps_running(simulated) -> None:
    data = make_bars(60, seed=4)
    system = simulated({"EUR_USD": data})
    system.add_brain("faulty", base=Faulty, every=3)
    system["faulty"].subscribe(M1, 10)
    system.run(timeout=60)
    proxy = system["faulty"]
    assert proxy.get_attr("count") == 60  # every bar handled, after the failures too
    assert proxy.osm_stats()["errors"] == 20
    assert "ZeroDivisionError: boom on bar 60" in proxy.osm_recent_errors()[-1]
    assert system.status().loc["faulty", "errors"] == 20


def test_risk_limits_reject_with_reason(simulated) -> None:
    data = make_bars(20, seed=5)
    system = simulated({"EUR_USD": data}, risk={"max_order_size": 500})
    system.add_brain("greedy", base=Greedy, size=1000)
    system.add_brain("small", base=Greedy, size=100)
    system["greedy"].subscribe(M1, 10)
    system["small"].subscribe(M1, 10)
    result = system.run(timeout=60)
    events = system["greedy"].get_attr("events")
    assert [e.kind for e in events] == ["rejected"]
    assert "max_order_size" in events[0].reason
    assert [e.kind for e in system["small"].get_attr("events")] == ["accepted", "filled"]
    assert list(result.trades["brain"]) == ["small"]


def test_kill_switch_rejects_everything(simulated) -> None:
    system = simulated({"EUR_USD": make_bars(10, seed=6)})
    system.add_brain("greedy", base=Greedy, size=10)
    system["greedy"].subscribe(M1, 10)
    system["trader"].kill_switch(True)
    system.run(timeout=60)
    (event,) = system["greedy"].get_attr("events")
    assert event.kind == "rejected" and "kill switch" in event.reason


def test_bad_data_is_refused_in_the_caller(simulated) -> None:
    with pytest.raises(ValueError, match="mapping"):
        simulated(make_bars(5))
    backwards = make_bars(5).iloc[::-1]
    with pytest.raises(ValueError, match="backwards"):
        simulated({"EUR_USD": backwards})
    with pytest.raises(ValueError, match="no such file"):
        simulated({"EUR_USD": "/nonexistent/bars.csv"})


def test_synthetic_quotes_run_to_the_end(simulated) -> None:
    system = simulated(None, symbols=["EUR_USD"], bars=40, seed=11)
    system.add_brain("rec", base=Recorder, buy_on=5)
    system["rec"].subscribe(M1, 50)
    result = system.run(timeout=60)
    assert system["rec"].get_attr("osm_bars") == 40
    ticks = list(feeds.synthetic_minutes("EUR_USD", bars=40, seed=11))
    progress = system["router"].progress()
    assert progress["ticks_in"] == progress["steps"] == len(ticks)  # one step per tick
    assert len(result.equity) == len(ticks)
    kinds = [e.kind for e in system["rec"].get_attr("events")]
    assert kinds == ["accepted", "filled"]
    assert len(result.trades) == 1


def test_progress_reports_the_starting_cash_before_the_broker_has_run_anything(simulated) -> None:
    """Before, ``equity`` was None until the Trader's first answer, and a progress callback
    formatting it (examples/launcher.py) raised on a slow machine."""
    system = simulated({"EUR_USD": make_bars(50)}, 25_000)
    system.add_brain("sma", base=SmaCross, fast=3, slow=8)
    info = system.progress()
    assert info["equity"] == 25_000.0 and info["fills"] == 0 and info["orders"] == 0
    seen: list[float] = []
    system.run(timeout=60, progress=lambda i: seen.append(i["equity"]), every=0.0)
    assert seen and all(isinstance(value, float) for value in seen)
