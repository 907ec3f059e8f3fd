"""What the ccxt tests share: waiting on a condition (never a fixed sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition",
             interval: float = 0.02) -> Any:  # fmt: skip
    """The first truthy value of ``condition()`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


#: An order of this many BTC makes the Trader's broker of :func:`make_dying_ccxt_broker` kill
#: its process once: after the poll that saw it fill (a resting limit order) or right after the
#: exchange answered its request (a market order), before the Trader journals either.
DIE_ON_SIZE = 0.007


def make_dying_ccxt_broker(settings: dict[str, Any]) -> Any:
    """The Trader's broker factory of ``CcxtArchitecture`` with a broker that dies
    (``os._exit``) once the exchange has executed an order of :data:`DIE_ON_SIZE` and the
    broker thread has taken its fill, before the journal has it. A marker file beside the
    state file makes it die once."""
    import os
    from pathlib import Path

    from osmarkets.brokers.ccxt.broker import CcxtTradingBroker
    from osmarkets.brokers.ccxt.client import exchange_from_settings

    def dies_after(events: list) -> list:
        marker = Path(f"{settings['state_path']}.died")
        if not marker.exists() and any(
            e.kind == "filled" and abs(e.size - DIE_ON_SIZE) < 1e-12 for e in events
        ):
            marker.write_text("fill")
            os._exit(9)
        return events

    class DyingCcxtBroker(CcxtTradingBroker):
        def poll(self, force: bool = False) -> Any:
            return dies_after(super().poll(force))

        def submit(self, order: Any) -> Any:
            return dies_after(super().submit(order))

    return DyingCcxtBroker(  # as make_ccxt_broker (monkeypatched: a forked child sees it)
        exchange_from_settings(settings),
        currency=str(settings.get("currency") or "USDT"),
        state_path=settings.get("state_path"),
        poll_interval=float(settings.get("poll_interval", 1.0)),
        order_deadline=float(settings.get("order_deadline", 10.0)),
    )
