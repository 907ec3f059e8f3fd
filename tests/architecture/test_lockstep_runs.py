"""The lock-step in runs (issue 18): bars travel ahead of the Trader while the broker is quiet,
one acknowledgement per run; the fills and the final value stay those of the in-process
backtest, for a Brain that orders rarely, on every bar, with limit orders, and on two
instruments; step messages from a stranger are counted and survived."""

from __future__ import annotations

import time

import msgspec
import numpy as np
import pandas as pd
import pytest
import zmq
from conftest import make_bars

from osmarkets import Brain, wire
from osmarkets.agents.feeder import zmq_url
from osmarkets.architecture import SimulatedArchitecture
from osmarkets.backtest import backtest
from osmarkets.strategies import SmaCross

M1 = ("EUR_USD", 1, "Minutes")
GBP = ("GBP_USD", 1, "Minutes")


class Every(Brain):
    """Flips its position every ``every``-th bar of each series (market orders)."""

    every = 37
    size = 1000.0
    limit = False

    def on_start(self) -> None:
        self.counts: dict[str, int] = {}

    def on_new_bar(self, series) -> None:  # type: ignore[no-untyped-def]
        symbol = series.bsid.symbol
        n = self.counts.get(symbol, 0) + 1
        self.counts[symbol] = n
        if n % self.every:
            return
        side = "sell" if self.position(symbol) > 0 else "buy"
        size = self.size + abs(self.position(symbol))
        if self.limit:  # rests until the price comes back: the broker is not quiet meanwhile
            price = float(series.close[0]) * (0.9995 if side == "buy" else 1.0005)
            self.send_order(side=side, size=size, symbol=symbol, type="limit", price=price)
        else:
            self.send_order(side=side, size=size, symbol=symbol)


def _fills(trades: pd.DataFrame) -> list[tuple]:
    return [
        (t.value, s, side, float(size), round(float(price), 10))
        for t, s, side, size, price in trades[
            ["time", "symbol", "side", "size", "price"]
        ].itertuples(index=False)
    ]


def _run(system: SimulatedArchitecture, base: type, bsids: list, **params) -> tuple:  # type: ignore[no-untyped-def]
    system.add_brain("b", base=base, **params)
    for bsid in bsids:
        system["b"].subscribe(bsid, 50)
    result = system.run(timeout=120)
    return result, system["router"].progress()


def _same(result, expected, bars: int) -> None:  # type: ignore[no-untyped-def]
    assert _fills(result.trades) == _fills(expected.trades)
    assert result.final_value == pytest.approx(expected.final_value, abs=1e-6)
    assert len(result.equity) == bars
    np.testing.assert_allclose(result.equity.to_numpy(), expected.equity.to_numpy(), atol=1e-6)


@pytest.mark.parametrize(
    ("every", "limit"),
    [(37, False), (1, False), (2, False), (11, True)],
    ids=["rarely", "every-bar", "every-other-bar", "limit-orders"],
)
def test_runs_give_the_backtest_fills(simulated, every: int, limit: bool) -> None:
    data = make_bars(600, seed=11)
    params = {"every": every, "limit": limit}
    expected = backtest(Every, data, M1, params=params, history=50)
    assert len(expected.trades) >= 5
    result, info = _run(simulated({"EUR_USD": data}, 100_000), Every, [M1], **params)
    _same(result, expected, len(data))
    assert info["steps"] == len(data)
    if every == 37:  # runs were used: far fewer round trips than bars
        assert info["runs"] > 0 and info["rounds"] < len(data) / 3


def test_runs_match_one_step_at_a_time(simulated, architectures) -> None:
    """SmaCross with runs and with the lock-step as it was: the same fills, fewer rounds."""
    data = make_bars(800, seed=5)

    class OneStep(SimulatedArchitecture):
        _lockstep_run = 1

    new, info_new = _run(simulated({"EUR_USD": data}), SmaCross, [M1], fast=5, slow=15)
    old, info_old = _run(architectures(OneStep, {"EUR_USD": data}), SmaCross, [M1], fast=5,
                         slow=15)  # fmt: skip
    assert _fills(new.trades) == _fills(old.trades)
    assert new.final_value == pytest.approx(old.final_value, abs=1e-9)
    assert info_old["rounds"] == len(data) and info_old["runs"] == 0
    assert info_new["rounds"] < info_old["rounds"]


def test_runs_on_two_instruments(simulated) -> None:
    eur = make_bars(300, seed=1)
    gbp = make_bars(240, seed=2, start="2024-01-02 00:30")
    data = {"EUR_USD": eur, "GBP_USD": gbp}
    expected = backtest(Every, data, [M1, GBP], params={"every": 13}, history=50)
    assert len(expected.trades) >= 10
    result, info = _run(simulated(data, 100_000), Every, [M1, GBP], every=13)
    assert _fills(result.trades) == _fills(expected.trades)
    assert result.final_value == pytest.approx(expected.final_value, abs=1e-6)
    assert info["runs"] > 0


def test_runs_on_a_longer_time_frame(simulated, architectures) -> None:
    """Steps that complete no bar of the Brain's series travel in its runs too: the same fills
    as one step at a time. (Not the backtest's: the Router completes a five-minute bar when
    the next minute arrives, after the broker ran that minute; so it was before runs.)"""
    data = make_bars(500, seed=9)
    m5 = ("EUR_USD", 5, "Minutes")

    class OneStep(SimulatedArchitecture):
        _lockstep_run = 1

    new, info = _run(simulated({"EUR_USD": data}, 100_000), Every, [m5], every=7)
    old, _ = _run(architectures(OneStep, {"EUR_USD": data}, 100_000), Every, [m5], every=7)
    assert len(old.trades) >= 5
    assert _fills(new.trades) == _fills(old.trades)
    assert new.final_value == pytest.approx(old.final_value, abs=1e-9)
    assert info["runs"] > 0


def test_stray_step_messages_are_counted_and_survived(simulated) -> None:
    data = make_bars(400, seed=3)
    expected = backtest(Every, data, M1, params={"every": 9}, history=50)
    system = simulated({"EUR_USD": data}, 100_000)
    system.add_brain("b", base=Every, every=9)
    system["b"].subscribe(M1, 50)
    router = system["router"]
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(zmq_url(router.addr("in")))
    try:
        bad = [
            msgspec.msgpack.encode(["step_ack", "b", "run", 1, 0]),  # wrong types
            msgspec.msgpack.encode(["step_ack", "b", 1]),  # fields missing
            msgspec.msgpack.encode(["steps", 1, [], None, {}]),  # not the Router's to take
            msgspec.msgpack.encode(["bars", "EUR_USD", [[1, "x"]]]),
        ]
        for data_ in bad:
            push.send(data_)
        # well formed but stray: an unknown run, a Brain that is not waited for
        push.send(wire.encode(("step_ack", "b", 10**6, 10**6, 10**6)))
        push.send(wire.encode(("step_ack", "ghost", 1, 1, 5)))
        deadline = time.monotonic() + 10
        while router.osm_stats()["malformed"] < len(bad) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert router.osm_stats()["malformed"] == len(bad)
        result = system.run(timeout=120)
    finally:
        push.close(linger=0)
    assert _fills(result.trades) == _fills(expected.trades)
    assert result.final_value == pytest.approx(expected.final_value, abs=1e-6)
    assert system["router"].osm_stats()["errors"] == 0


class JournalFails(Every):
    """Every, whose journal refuses its ``nth`` order of a run once (a full disk): the order is
    dropped, never sent unjournaled, though the step's acknowledgement counted it."""

    nth = 2
    run_orders = 0
    failed = ""

    def send_order(self, *args, **kwargs) -> str:  # type: ignore[no-untyped-def]
        client_id = super().send_order(*args, **kwargs)
        if getattr(self, "_osm_outbox", None) is None:
            return client_id  # not a run's bar
        self.run_orders += 1
        if self.run_orders == self.nth:
            self.failed = client_id
            journal = self.osm_journal  # type: ignore[attr-defined]
            record = journal.record_order

            def refuse(order, *cause):  # type: ignore[no-untyped-def]
                if order.client_id == client_id:
                    journal.record_order = record  # once
                    raise OSError("No space left on device")
                return record(order, *cause)

            journal.record_order = refuse
        return client_id


def test_an_order_the_journal_refuses_in_a_run_is_dropped_and_the_simulation_goes_on(
    simulated,
) -> None:
    """Before, the Trader waited for ever for the order the acknowledgement had counted."""
    data = make_bars(600, seed=11)
    system = simulated({"EUR_USD": data}, 100_000)
    result, info = _run(system, JournalFails, [M1], every=37)
    assert info["steps"] == len(data) and info["runs"] > 0
    failed = system["b"].get_attr("failed")
    assert failed.startswith("b-")
    assert failed not in set(result.trades["client_id"])
    assert len(result.trades) >= 5  # the other orders were sent and filled
    stats = system["b"].osm_stats()
    assert stats["dropped"].get("order") == 1, stats
    answers = [e for e in system["b"].osm_event_list() if e.client_id == failed]
    assert [(e.kind, e.reason) for e in answers] == [("rejected", "unknown order")]
