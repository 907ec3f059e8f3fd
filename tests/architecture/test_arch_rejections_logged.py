"""Every rejected order is logged with its reason (issue 14: a deployment that talks)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from conftest import make_bars, wait_for

from osmarkets import Brain
from osmarkets.architecture import Architecture
from osmarkets.brokers.simulated import SimulatedBroker

pytestmark = pytest.mark.timeout(120)


class Oversized(Brain):
    def on_new_bar(self, series):
        if len(series) == 2:
            self.send_order("buy", 10**9, series.bsid.symbol)  # over the risk limit


def test_a_rejected_order_is_logged_with_its_reason(tmp_path: Path) -> None:
    log = tmp_path / "deployment.log"
    broker = functools.partial(SimulatedBroker, 100_000)
    with Architecture(broker_factory=broker, risk={"max_order_size": 1_000}, logging=True,
                      log_path=str(log)) as system:  # fmt: skip
        system.add_brain("big", base=Oversized)
        system["big"].subscribe(("EUR_USD", 1, "Minutes"), 5)
        system.stream(data={"EUR_USD": make_bars(20)}, speed=1200)
        wait_for(lambda: log.exists() and "rejected" in log.read_text(), 30,
                 "the rejection in the log file")  # fmt: skip
    text = log.read_text()
    line = next(line for line in text.splitlines() if "rejected" in line)
    assert "(trader)" in line and "'big'" in line and "max_order_size" in line


class Chatty(Brain):
    def on_new_bar(self, series):
        self.debug(f"bar at {int(series.time[0])}")


def test_debug_lines_appear_once_debug_is_set(tmp_path: Path) -> None:
    log = tmp_path / "deployment.log"
    broker = functools.partial(SimulatedBroker, 100_000)
    with Architecture(broker_factory=broker, logging=True, log_path=str(log)) as system:
        system.add_brain("chatty", base=Chatty)
        system["chatty"].subscribe(("EUR_USD", 1, "Minutes"), 5)
        system.stream(data={"EUR_USD": make_bars(200)}, speed=600)
        wait_for(lambda: system["chatty"].get_attr("osm_bars") >= 3, 30, "bars")
        assert not log.exists() or "debug:" not in log.read_text()  # off by default
        system["chatty"].set_attr(DEBUG=True)
        wait_for(lambda: log.exists() and "debug: bar at" in log.read_text(), 30,
                 "a debug line in the log file")  # fmt: skip
    line = next(line for line in log.read_text().splitlines() if "debug: bar at" in line)
    assert "(chatty)" in line


def test_debug_in_a_backtest_goes_to_the_osmarkets_brain_logger(caplog) -> None:
    import logging

    from osmarkets.backtest import backtest

    class Loud(Chatty):
        DEBUG = True

    with caplog.at_level(logging.INFO, logger="osmarkets.brain"):
        backtest(Loud, make_bars(5), "EUR_USD:M1")
    assert sum("bar at" in r.getMessage() for r in caplog.records) == 5
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="osmarkets.brain"):
        backtest(Chatty, make_bars(5), "EUR_USD:M1")
    assert not caplog.records
