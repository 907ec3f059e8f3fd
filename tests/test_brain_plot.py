"""Brain.plot: what a Brain charts, checked where it is called, kept by the Brain agent's
PlotLog at the bar being handled, read back incrementally by a GUI."""

from __future__ import annotations

import math

import numpy as np
import pytest

from osmarkets import Brain
from osmarkets.agents.brain import PlotLog
from osmarkets.backtest import backtest
from osmarkets.strategies import SmaCross


class Recorder:
    """A context that only records plots (what the Brain agent's context does)."""

    def __init__(self) -> None:
        self.plots: list[tuple[str, float, str]] = []

    def plot(self, brain: Brain, name: str, value: float, panel: str) -> None:
        self.plots.append((name, value, panel))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", 1.0), "plot name"),
        (("has space", 1.0), "plot name"),
        (("x" * 41, 1.0), "plot name"),
        ((["fast"], 1.0), "plot name"),
        (("fast", "1.0"), "expected a number"),
        (("fast", True), "expected a number"),
        (("fast", None), "expected a number"),
        (("fast", 1.0, "below"), "plot panel"),
    ],
)
def test_bad_plots_raise_one_clear_error(args, message) -> None:
    brain = Brain()
    brain.bind(Recorder(), "b")
    with pytest.raises(ValueError, match=message):
        brain.plot(*args)


def test_plots_reach_the_context_as_floats_and_nan_is_allowed() -> None:
    brain, context = Brain(), Recorder()
    brain.bind(context, "b")
    brain.plot("fast", np.float32(1.5))
    brain.plot("z.score", float("nan"), panel="sub")
    brain.plot("n", 3)
    assert context.plots[0] == ("fast", 1.5, "price")
    assert context.plots[1][0] == "z.score" and math.isnan(context.plots[1][1])
    assert context.plots[2] == ("n", 3.0, "price") and type(context.plots[2][1]) is float


def test_a_backtest_of_a_plotting_brain_runs_unchanged(tmp_path) -> None:
    index = np.arange(200)
    close = 1.1 + 0.01 * np.sin(index / 7)
    import pandas as pd

    frame = pd.DataFrame(
        {"open": close, "high": close + 1e-4, "low": close - 1e-4, "close": close,
         "volume": 1.0},
        index=pd.date_range("2024-01-02", periods=200, freq="1min", tz="UTC", name="time"),
    )  # fmt: skip
    result = backtest(SmaCross, frame, ("EUR_USD", 1, "Minutes"), params={"fast": 5, "slow": 15})
    assert len(result.trades) > 0


def test_the_plot_log_keeps_values_at_the_bar_at_hand_and_reads_back_what_is_new() -> None:
    log = PlotLog(keep=3, recent=4)
    log.add("early", "price", 1.0)  # before any bar: nothing to attach it to
    assert log.since(0)["points"] == []
    log.at("EUR_USD:M1", 100)
    log.add("fast", "price", 1.0)
    log.add("fast", "price", 1.5)  # the same bar: the last value wins
    log.add("z", "sub", -2.0)
    first = log.since(0)
    assert first["full"] and sorted(first["points"]) == [
        ("EUR_USD:M1", "fast", "price", 100, 1.5), ("EUR_USD:M1", "z", "sub", 100, -2.0),
    ]  # fmt: skip
    seq = first["seq"]
    log.at("EUR_USD:M1", 160)
    log.add("fast", "price", 2.0)
    new = log.since(seq)
    assert not new["full"] and new["points"] == [("EUR_USD:M1", "fast", "price", 160, 2.0)]
    for time in (220, 280, 340, 400, 460):  # past ``recent``: a stale reader gets it all
        log.at("EUR_USD:M1", time)
        log.add("fast", "price", float(time))
    stale = log.since(seq)
    assert stale["full"]
    kept = [p for p in stale["points"] if p[1] == "fast"]
    assert [p[3] for p in kept] == [340, 400, 460]  # ``keep`` bars per name
    assert log.since(10**9)["full"]  # another process's number: everything
