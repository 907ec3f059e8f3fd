"""What survives an agent's death: the Router keeps publishing while the Trader is dead, a dead
agent that is not restarted shows in status(), and a simulation whose Trader dies stops at once
with an error naming it (its broker state died with it)."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from arch_brains import HoldOne, Recorder
from conftest import make_bars, pid_alive, wait_for
from test_arch_simulated import _fills

from osmarkets.architecture import AgentDiedError, Architecture
from osmarkets.backtest import backtest
from osmarkets.brokers.simulated import SimulatedBroker
from osmarkets.strategies import SmaCross

M1 = ("EUR_USD", 1, "Minutes")


def _kill(system, name: str) -> int:
    pid = system._agents[name].process.pid
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), what=f"the {name}'s death")
    return pid


def test_router_keeps_publishing_while_the_trader_is_dead(architectures) -> None:
    # no broker: the Trader only takes market data; a small backlog so it overflows
    system = architectures(Architecture, logging=False)
    system._agents["router"].proxy.set_attr(market_backlog=50)
    system.add_brain("rec", base=Recorder, buy_on=10**9)
    system["rec"].subscribe(M1, 10)
    # Endless synthetic quotes, much faster than real time: thousands of ticks for the
    # dead Trader. A Router whose send blocked would stop publishing after the first ones.
    system.stream(["EUR_USD"], seed=3, speed=600.0)
    old = _kill(system, "trader")
    rec, router = system._agents["rec"].proxy, system._agents["router"].proxy
    wait_for(lambda: rec.get_attr("osm_bars") >= 20, timeout=60,
             what="bars published while the Trader is dead")  # fmt: skip
    stats = router.osm_stats()
    assert stats["market_pending"] <= 50
    assert stats["market_dropped"] > 0  # counted, not silent
    assert router.progress()["ticks_in"] > 100
    status = system.status()
    assert not status.loc["trader", "alive"] and status.loc["trader", "pid"] == old
    assert "not restarted" in status.loc["trader", "problem"]
    assert status.loc["router", "alive"] and status.loc["rec", "alive"]
    with pytest.raises(AgentDiedError, match="trader agent 'trader' died"):
        system["rec"]  # the owner's next call names the dead agent


def test_simulation_with_a_dead_trader_fails_fast_naming_it(simulated) -> None:
    system = simulated(symbols=["EUR_USD"], bars=20_000, seed=4)
    system.add_brain("rec", base=Recorder, buy_on=5)
    system["rec"].subscribe(M1, 30)
    killed: list[int] = []

    def progress(info: dict) -> None:
        if not killed and info["steps"] > 0:
            killed.append(_kill(system, "trader"))

    with pytest.raises(RuntimeError, match=r"trader agent 'trader' died .*cannot resume"):
        system.run(timeout=90, progress=progress, every=0.0)
    assert killed  # it died mid-replay, and run() did not hang until its timeout
    assert system.overmind is not None and system.overmind.restarts.get("trader", 0) == 0


def test_simulation_refuses_to_start_with_a_dead_trader(simulated) -> None:
    system = simulated(symbols=["EUR_USD"], bars=50, seed=4)
    system.add_brain("rec", base=Recorder)
    system["rec"].subscribe(M1, 30)
    _kill(system, "trader")
    with pytest.raises(RuntimeError, match="trader agent 'trader' died"):
        system.run(timeout=60)


def test_simulation_survives_a_killed_brain_with_the_backtest_fills(simulated) -> None:
    """A SIGKILLed Brain is restarted with its positions from the Trader and the bars it had not
    handled replayed (marked), and the run ends with exactly the in-process backtest's fills."""
    data = make_bars(1500, seed=11)
    params = {"fast": 3, "slow": 8}
    expected = backtest(SmaCross, data, M1, params=params, history=100)
    assert len(expected.trades) >= 20
    system = simulated({"EUR_USD": data}, 100_000)
    system.add_brain("sma", base=SmaCross, **params)
    system["sma"].subscribe(M1, 100)
    killed: list[int] = []

    def progress(info: dict) -> None:
        # mid-run, while the Brain holds a position or has orders behind it
        if not killed and info["steps"] > 400 and info["fills"] >= 5:
            killed.append(_kill(system, "sma"))

    result = system.run(timeout=120, progress=progress, every=0.0)
    assert killed and system.overmind.restarts.get("sma", 0) >= 1, system.overmind.restarts
    stats = system["sma"].osm_stats()
    assert _fills(result.trades) == _fills(expected.trades), (stats, killed)
    np.testing.assert_allclose(result.equity.to_numpy(), expected.equity.to_numpy(), atol=1e-6)
    assert stats["bars"] >= 1 and stats["missed"] == 0


def test_restarted_live_brain_keeps_its_position_and_replays_missed_bars(architectures) -> None:
    system = architectures(broker_factory=lambda: SimulatedBroker(100_000.0), heartbeat=0.2)
    system.add_brain("victim", base=HoldOne)
    system["victim"].subscribe(M1, 30)
    system.stream(["EUR_USD"], seed=3, speed=600)  # ten bars a second
    wait_for(lambda: system["victim"].get_attr("osm_positions").get("EUR_USD") == 100.0,
             what="the Brain's fill")  # fmt: skip
    _kill(system, "victim")
    wait_for(lambda: system.overmind.restarts.get("victim") == 1, what="the restart")
    wait_for(lambda: system["victim"].osm_stats()["bars"] >= 5, what="bars after the restart")
    # the account is the authority: the new process holds what the old one bought
    assert system["victim"].get_attr("osm_positions") == {"EUR_USD": 100.0}
    seen = system["victim"].get_attr("seen")
    times = [t for _, t in seen]
    assert times == sorted(times) and len(set(times)) == len(times)  # in order, none twice
    assert system["victim"].osm_stats()["replayed"] >= 1  # bars completed while it was down
