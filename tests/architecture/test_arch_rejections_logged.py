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
