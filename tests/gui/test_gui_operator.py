"""The window's Brains panel and a Brain's own plots, on a real live architecture (headless Qt):
the buttons pause, resume, flatten and kill through the bridge; the values a Brain plotted are
drawn as it computed them, from history and live."""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from osmarkets.gui.app import qt_error  # noqa: E402

_QT = qt_error()
pytestmark = [
    pytest.mark.skipif(_QT is not None, reason=f"Qt cannot load here: {_QT}"),
    pytest.mark.timeout(240),
]
M1 = ("EUR_USD", 1, "Minutes")


def wait_for(condition: Any, timeout: float = 60.0, what: str = "it", app: Any = None) -> Any:
    from test_gui_window import wait_for as waiting

    return waiting(condition, timeout=timeout, what=what, app=app)


@pytest.fixture
def system() -> Iterator[Any]:
    from osmarkets.architecture import Architecture
    from osmarkets.brokers.simulated import SimulatedBroker
    from osmarkets.strategies import SmaCross

    arch = Architecture(broker_factory=functools.partial(SimulatedBroker, 1_000_000))
    try:
        arch.add_brain("sma", SmaCross, fast=3, slow=8)
        arch.add_brain("other", SmaCross, fast=4, slow=9)
        for name in ("sma", "other"):
            arch[name].subscribe(M1, 100)
        arch.stream(["EUR_USD"], speed=300.0, seed=5)
        yield arch
    finally:
        arch.shutdown()


@pytest.fixture
def app() -> Any:
    from osmarkets.gui.app import application

    return application()


def _row(window: Any, brain: str) -> int:
    table = window.brains
    for row in range(table.rowCount()):
        item = table.item(row, 0)
        if item is not None and item.text() == brain:
            return row
    return -1


def _state(window: Any, brain: str) -> str:
    row = _row(window, brain)
    item = window.brains.item(row, 1) if row >= 0 else None
    return item.text() if item is not None else ""


def test_the_brains_panel_buttons_pause_resume_flatten_and_kill(system, app) -> None:
    from osmarkets.gui.app import open_window

    window = open_window(system.nsaddr, keys=system.keys, series="EUR_USD:M1")
    try:
        wait_for(lambda: _row(window, "sma") >= 0 and _row(window, "other") >= 0,
                 what="both Brains listed", app=app)  # fmt: skip
        assert _state(window, "sma") == "running"
        buttons = window.brain_buttons
        window.statusBar().clearMessage()
        buttons["Pause"].click()  # nothing selected: nothing done, and the user is told
        assert "select a Brain" in window.statusBar().currentMessage()
        window.brains.selectRow(_row(window, "sma"))
        buttons["Pause"].click()
        wait_for(lambda: system.operator_status()["brains"]["sma"]["state"] == "paused",
                 what="sma paused", app=app)  # fmt: skip
        wait_for(lambda: _state(window, "sma") == "paused", what="the panel says so", app=app)
        assert system.operator_status()["brains"]["other"]["state"] == "running"
        window.brains.selectRow(_row(window, "sma"))
        buttons["Resume"].click()
        wait_for(lambda: _state(window, "sma") == "running", what="sma resumed", app=app)
        # a Brain the Overmind restarted says so
        os.kill(system["other"].osm_stats()["pid"], signal.SIGKILL)
        wait_for(lambda: _state(window, "other") == "running, restarted 1x",
                 what="other restarted", app=app)  # fmt: skip
        # the kill switch asks first: "no" does nothing
        asked: list[str] = []
        window.confirm = lambda text: asked.append(text) or False
        buttons["Kill switch"].click()
        assert asked and "kill switch" in asked[0]
        app.processEvents()
        assert system.operator_status()["kill_switch"] is False
        window.confirm = lambda text: True
        buttons["Kill switch"].click()
        wait_for(lambda: system.operator_status()["kill_switch"], what="kill switch", app=app)
        wait_for(lambda: _state(window, "sma") == "stopped"
                 and _state(window, "other") == "stopped, restarted 1x",
                 what="every Brain stopped", app=app)  # fmt: skip
        wait_for(lambda: window.kill_label.text() == "KILL SWITCH ON", app=app)

        def flat() -> bool:
            status = system.operator_status()
            rows = status["brains"].values()
            return not status["flattening"] and all(not r["positions"] and not r["pending"]
                                                    for r in rows)  # fmt: skip

        wait_for(flat, what="no position and no pending order", app=app)
        positions = system["trader"].record()["state"]["positions"]
        assert not any(positions.values())
        assert window.state.errors == []
    finally:
        window.close()


def test_a_brains_plots_are_drawn_as_it_computed_them(system, app) -> None:
    from osmarkets.gui.app import open_window

    # history: bars the Brain plotted before the window opened
    wait_for(lambda: len(system["sma"].osm_plots_since(0)["points"]) >= 20, what="plots")
    window = open_window(system.nsaddr, keys=system.keys, series="EUR_USD:M1")
    try:
        chart = wait_for(window.current_chart, what="the chart", app=app)
        model = chart.model
        key = "sma:fast"
        wait_for(lambda: model.completed >= 20 and key in model.plots(0, len(model)),
                 what="the Brain's values in the model", app=app)  # fmt: skip
        first = max(p[3] for p in system["sma"].osm_plots_since(0)["points"])
        # live: bars plotted after the window opened
        wait_for(lambda: model.completed and int(model.bars()["time"][-1]) > first + 3 * 60e9,
                 what="three more bars", app=app)  # fmt: skip
        wait_for(lambda: chart.refresh(force=True), app=app)
        computed = {
            (name, time): value
            for _series, name, _panel, time, value in system["sma"].osm_plots_since(0)["points"]
        }
        bars = model.bars()
        drawn = model.plot_points(0, model.completed)  # display indices: the bars'
        for name in ("fast", "slow"):
            panel, index, values = drawn[f"sma:{name}"]
            assert panel == "price"
            times = bars["time"][np.asarray(index, dtype=int)]
            pairs = [(int(t), float(v)) for t, v in zip(times, values, strict=True)]
            assert len(pairs) >= 20
            live = [p for p in pairs if p[0] > first]
            assert live, "no value of a bar plotted after the window opened"
            for time, value in pairs:
                expected = computed.get((name, time))
                if expected is None:
                    continue  # older than what the Brain keeps
                assert value == expected or (np.isnan(value) and np.isnan(expected))
        # and the chart draws exactly those values (the newest on screen, one per candle)
        items = chart.plot_items()
        line = items["sma:fast"]
        _x, shown = line.getData()
        finite = np.asarray(shown, dtype=float)
        finite = finite[np.isfinite(finite)]
        expected = {v for (n, _t), v in computed.items() if n == "fast"}
        assert len(finite) > 0 and all(v in expected for v in finite.tolist())
    finally:
        window.close()
