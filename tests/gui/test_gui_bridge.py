"""The GUI's bridge on real architectures (no Qt needed): it only observes. It reads history
without subscribing, so a simulation's lock-step never waits for it; it shows every order event
from the Trader's observers feed and the Overmind's status table."""

from __future__ import annotations

import functools
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from gui_brains import EveryKind

from osmarkets.architecture import Architecture, SimulatedArchitecture
from osmarkets.backtest import backtest
from osmarkets.brokers.simulated import SimulatedBroker
from osmarkets.data import BarSeriesID
from osmarkets.gui.bridge import Connection, GuiState
from osmarkets.strategies import SmaCross

pytestmark = pytest.mark.timeout(180)
M1 = BarSeriesID("EUR_USD", 1, "Minutes")
PARAMS = {"fast": 5, "slow": 12}


@pytest.fixture(autouse=True)
def own_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSMARKETS_REGISTRY_DIR", str(tmp_path / "nameservers"))


def make_bars(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 1.1 * np.exp(np.cumsum(rng.normal(0, 6e-4, n)))
    open_ = np.r_[close[0], close[:-1]]
    wick = np.abs(rng.normal(0, 2e-4, n))
    index = pd.date_range("2024-01-02", periods=n, freq="1min", tz="UTC", name="time")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) + wick,
            "low": np.minimum(open_, close) - wick,
            "close": close,
            "volume": 1.0,
        },
        index=index,
    )


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "it") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def fills(trades: pd.DataFrame) -> list[tuple]:
    rows = trades[["time", "symbol", "side", "size", "price"]].itertuples(index=False)
    return [
        (t.value, s, side, float(size), round(float(price), 10))
        for t, s, side, size, price in rows
    ]


def attach(system: Any, state: GuiState, count: int = 100) -> Connection:
    """A bridge watching M1, with its history loaded into ``state``."""
    connection = Connection(system.nsaddr, keys=system.keys)
    connection.watch(M1, count)
    wait_for(lambda: state.apply(connection.drain()) or M1 in state.models, what="the history")
    return connection


def test_a_gui_on_a_simulation_changes_nothing_and_killing_it_cannot_stall_the_run() -> None:
    data = make_bars(200, seed=7)
    expected = backtest(SmaCross, data, M1, params=PARAMS, history=100)
    assert len(expected.trades) >= 4
    # paced (50 bars a second) so that the bridge is killed while the replay runs
    with SimulatedArchitecture({"EUR_USD": data}, 100_000, speed=3_000) as system:
        system.add_brain("sma", base=SmaCross, **PARAMS)
        system["sma"].subscribe(M1, 100)
        state = GuiState()
        connection = attach(system, state)
        killed: dict[str, Any] = {}

        def progress(info: dict[str, Any]) -> None:
            state.apply(connection.drain())
            if not killed and state.models[M1].completed >= 20:
                os.kill(connection.process.pid, signal.SIGKILL)
                killed.update(info)

        try:
            result = system.run(timeout=120, progress=progress, every=0.02)
        finally:
            connection.close()
        assert killed and not killed["finished"] and killed["steps"] < len(data)
        assert fills(result.trades) == fills(expected.trades)
        assert result.final_value == pytest.approx(expected.final_value, abs=1e-6)
        assert list(system["router"].subscriptions()) == ["sma"]  # the GUI never subscribed


def test_a_gui_following_a_whole_simulation_sees_every_bar_and_fill() -> None:
    data = make_bars(300, seed=11)
    expected = backtest(SmaCross, data, M1, params=PARAMS, history=100)
    with SimulatedArchitecture({"EUR_USD": data}, 100_000) as system:
        system.add_brain("sma", base=SmaCross, **PARAMS)
        system["sma"].subscribe(M1, 100)
        state = GuiState()
        connection = attach(system, state, count=1_000)
        try:
            result = system.run(timeout=120)
            assert fills(result.trades) == fills(expected.trades)
            n = len(result.trades)
            wait_for(
                lambda: (
                    state.apply(connection.drain())
                    or (state.models[M1].completed == len(data) and state.blotter.fills == n)
                ),
                what="every bar and fill at the GUI",
            )
        finally:
            connection.close()
        bars = state.models[M1].bars()
        np.testing.assert_array_equal(bars["close"], data["close"].to_numpy())
        blotter = state.blotter
        assert {row["kind"] for row in blotter.orders.values()} == {"filled"}
        assert blotter.account["equity"] == system["trader"].record()["state"]["equity"]
        assert len(state.fills) == n  # trade markers for charts opened later


def test_the_gui_shows_every_kind_of_order_event_and_the_status_feed() -> None:
    broker = functools.partial(SimulatedBroker, 100_000)
    with Architecture(broker_factory=broker, risk={"max_order_size": 1_000}) as system:
        system.add_brain("every", base=EveryKind)
        system["every"].subscribe(M1, 10)
        state = GuiState()
        connection = attach(system, state)
        seen: list[str] = []
        original = state.blotter.add_event

        def record(event: Any) -> None:
            seen.append(event.kind)
            original(event)

        state.blotter.add_event = record  # type: ignore[method-assign]
        try:
            # paced (50 ms a bar): unpaced, all 40 bars can pass before the market order
            # reaches the Trader, and it then waits for a price that never comes
            system.stream(data={"EUR_USD": make_bars(40, seed=5)}, speed=1200)
            wait_for(
                lambda: state.apply(connection.drain()) or len(seen) >= 5,
                what="five order events at the GUI",
            )
            wait_for(
                lambda: (
                    state.apply(connection.drain())
                    or {"router", "trader", "every", "feeder"}
                    <= {row.get("name") for row in state.status}
                ),
                what="the Overmind's status table",
            )
        finally:
            connection.close()
        # live and unpaced: the rejection may overtake the fill; the Brain saw the same order
        assert seen == [e.kind for e in system["every"].get_attr("events")]
        assert sorted(seen) == ["accepted", "accepted", "cancelled", "filled", "rejected"]
        states = sorted(row["kind"] for row in state.blotter.orders.values())
        assert states == ["cancelled", "filled", "rejected"]
        rejected = next(r for r in state.blotter.orders.values() if r["kind"] == "rejected")
        assert rejected["reason"].startswith("risk:")
        assert state.blotter.account["positions"] == {"EUR_USD": 100.0}
        assert state.errors == []
        assert list(system["router"].subscriptions()) == ["every"]


def test_over_tcp_the_bridge_is_a_curve_client_and_needs_the_keys() -> None:
    broker = functools.partial(SimulatedBroker, 100_000)
    with Architecture(transport="tcp", broker_factory=broker) as system:
        system.add_brain("sma", base=SmaCross, **PARAMS)
        system["sma"].subscribe(M1, 100)
        system.stream(["EUR_USD"], speed=300, seed=1)
        assert str(system["router"].addr("pub").transport) == "tcp"
        assert str(system.status_feed).startswith("tcp://")
        state = GuiState()
        connection = Connection(system.nsaddr, keys=system.keys)
        connection.watch(M1, 100)
        try:
            wait_for(
                lambda: (
                    state.apply(connection.drain())
                    or (M1 in state.models and state.models[M1].ticks > 0 and state.status)
                ),
                what="history, ticks and status over CURVE",
            )
        finally:
            connection.close()
        assert state.connected and state.errors == [] and connection.undecodable == 0
        # without the keys the name server does not answer; the window is told why
        state = GuiState()
        stranger = Connection(system.nsaddr)
        try:
            wait_for(lambda: state.apply(stranger.drain()) or state.errors, what="the error")
        finally:
            stranger.close()
        assert not state.connected and "no deployment keys" in state.errors[0]
        assert list(system["router"].subscriptions()) == ["sma"]
