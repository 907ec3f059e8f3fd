"""Brains for the GUI bridge tests (a module, so agent processes can import them)."""

from __future__ import annotations

from osmarkets import BarSeries, Brain
from osmarkets.brokers.base import OrderEvent


class EveryKind(Brain):
    """Produces each kind of order event: a market buy (accepted, filled), an order over the
    risk limit (rejected), a far limit order (accepted) that it then cancels (cancelled)."""

    def on_start(self) -> None:
        self.bars = 0
        self.events: list[OrderEvent] = []
        self.pending = ""

    def on_new_bar(self, series: BarSeries) -> None:
        self.bars += 1
        symbol = series.bsid.symbol
        if self.bars == 2:
            self.send_order(side="buy", size=100, symbol=symbol)
        elif self.bars == 3:
            self.send_order(side="buy", size=10**9, symbol=symbol)  # over max_order_size
        elif self.bars == 4:
            price = float(series.close[0]) * 0.5  # never reached
            self.pending = self.send_order(side="buy", size=10, symbol=symbol, type="limit",
                                           price=price)  # fmt: skip
        elif self.bars == 5 and self.pending:
            self.cancel_order(self.pending)

    def on_order_event(self, event: OrderEvent) -> None:
        self.events.append(event)
