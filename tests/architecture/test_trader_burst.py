"""A burst of market data and orders never hangs the Trader: its loop and its broker thread
talk over inproc pipes, and with both bounded a burst filled them both ways (the loop blocked
sending a job, the broker thread sending a result). Found by benchmarks/bench_observers.py:
3,000 minutes at full speed with a fill per bar stopped the Trader for good."""

from __future__ import annotations

import functools

from conftest import wait_for
from operator_brains import EveryBar

from osmarkets.architecture import Architecture
from osmarkets.brokers.simulated import SimulatedBroker


def test_a_fill_per_bar_at_full_speed_does_not_stall_the_trader(architectures):
    bars = 3500  # synthetic quotes: about 140,000 ticks, each a job of the broker thread
    system = architectures(
        Architecture, broker_factory=functools.partial(SimulatedBroker, 10_000_000)
    )
    system.add_brain("every", EveryBar)
    system["every"].subscribe(("EUR_USD", 1, "Minutes"), 10)
    system.stream(["EUR_USD"], bars=bars, speed=0, seed=1)

    def done() -> bool:
        trader = system["trader"].osm_stats()  # a stalled loop would not even answer this
        orders = system["every"].osm_stats()["orders"]
        return orders >= bars - 10 and trader["fills"] >= orders

    wait_for(done, 240, "every order filled")
    wait_for(system["trader"].idle_now, 120, "the Trader idle: every job done")
