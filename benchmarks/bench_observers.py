"""Do observers (GUIs) slow the trading path? Ticks/s through the Trader, with and without them.

Run: python benchmarks/bench_observers.py [--bars N] [--repeats K]

A live Architecture replays ``--bars`` minutes of synthetic EUR_USD quotes as fast as possible
(thousands of ticks) through Router and Trader; a Brain buys on its first bar and holds, so the
Trader publishes an account update on its ``observers`` feed for every tick. Measured: ticks/s
from the first tick to the Trader having consumed the last one, median over ``--repeats``, for

* no observer;
* a GUI bridge attached (reads history as an observer, the Trader's and the Overmind's feeds);
* a stalled observer: a SUB socket on the Trader's feed with a receive high-water mark of 1 that
  never reads (PUB drops its messages instead of blocking the Trader);

and a SimulatedArchitecture run (lock-step) of the same bars with and without a GUI bridge.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from typing import Any

import zmq

from osmarkets import BarSeries, Brain
from osmarkets.architecture import Architecture, SimulatedArchitecture
from osmarkets.brokers.simulated import SimulatedBroker
from osmarkets.gui.bridge import Connection
from osmarkets.strategies import SmaCross

M1 = ("EUR_USD", 1, "Minutes")


class Holder(Brain):
    def on_start(self) -> None:
        self.bars = 0

    def on_new_bar(self, series: BarSeries) -> None:
        self.bars += 1
        if self.bars == 1:
            self.send_order(side="buy", size=1000, symbol=series.bsid.symbol)


def _wait(condition: Any, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not met")
        time.sleep(0.005)


def live_run(bars: int, observer: str) -> float:
    """Ticks/s through the Trader with ``observer`` in ('none', 'gui', 'stalled')."""
    ctx = zmq.Context()
    connection = None
    with Architecture(broker_factory=functools.partial(SimulatedBroker, 100_000)) as system:
        system.add_brain("holder", base=Holder)
        system["holder"].subscribe(M1, 10)
        trader, router = system["trader"], system["router"]
        if observer == "stalled":
            address = trader.addr("observers")
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.RCVHWM, 1)
            sub.setsockopt(zmq.LINGER, 0)
            sub.connect(f"{address.transport}://{address.address}")
            sub.setsockopt(zmq.SUBSCRIBE, b"")
        elif observer == "gui":
            connection = Connection(system.nsaddr, keys=system.keys)
            connection.watch(M1, 500)
            _wait(lambda: any(m[0] == "history" for m in connection.drain()), 30)
        started = time.perf_counter()
        system.stream(["EUR_USD"], bars=bars, seed=1, speed=0)
        feeder = system["feeder"]
        _wait(lambda: feeder.get_attr("feed_done") and router.progress()["finished"])
        ticks = router.progress()["ticks_in"]
        _wait(lambda: trader.osm_stats()["received"] > ticks and trader.idle_now())
        elapsed = time.perf_counter() - started
        if connection is not None:
            connection.close()
    ctx.destroy(linger=0)
    return ticks / elapsed


def simulated_run(bars: int, gui: bool) -> float:
    """Bars/s of a lock-stepped SimulatedArchitecture.run() with or without a GUI bridge."""
    with SimulatedArchitecture(None, 100_000, bars=bars, seed=1) as system:
        system.add_brain("sma", base=SmaCross, fast=5, slow=20)
        system["sma"].subscribe(M1, 100)
        connection = Connection(system.nsaddr, keys=system.keys) if gui else None
        if connection is not None:
            connection.watch(M1, 500)
            _wait(lambda: any(m[0] == "history" for m in connection.drain()), 30)
        started = time.perf_counter()
        system.run(timeout=600)
        elapsed = time.perf_counter() - started
        steps = system["router"].progress()["bars_out"]
        if connection is not None:
            connection.close()
    return steps / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bars", type=int, default=300, help="minutes of synthetic quotes")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    live = {name: [] for name in ("none", "gui", "stalled")}  # type: dict[str, list[float]]
    sim = {False: [], True: []}  # type: dict[bool, list[float]]
    for _ in range(args.repeats):  # interleaved, so drifts of the machine hit every case
        for name in live:
            live[name].append(live_run(args.bars, name))
        for gui in sim:
            sim[gui].append(simulated_run(args.bars, gui))
    base = statistics.median(live["none"])
    print(f"live: {args.bars} minutes of synthetic ticks, median of {args.repeats} runs")
    print(f"{'observer':<22}{'ticks/s':>10}{'ratio':>8}")
    for name, label in (("none", "none"), ("gui", "GUI bridge"), ("stalled", "stalled SUB")):
        value = statistics.median(live[name])
        print(f"{label:<22}{value:>10,.0f}{value / base:>8.2f}")
    plain = statistics.median(sim[False])
    print(f"SimulatedArchitecture.run(): {args.bars} bars (lock-step)")
    print(f"{'observer':<22}{'bars/s':>10}{'ratio':>8}")
    for gui, label in ((False, "none"), (True, "GUI bridge")):
        value = statistics.median(sim[gui])
        print(f"{label:<22}{value:>10,.0f}{value / plain:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
