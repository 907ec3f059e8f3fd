"""Brains for the operator and Informer tests (a module, so agent processes can import them)."""

from __future__ import annotations

from osmarkets import BarSeries, Brain
from osmarkets.brokers.base import OrderEvent


class Buyer(Brain):
    """Buys ``lot`` on every bar; on its first bar it also leaves a limit order far below the
    price (pending until cancelled)."""

    lot = 100.0
    bars = 0

    def on_start(self) -> None:
        self.bars = 0
        self.events: list[OrderEvent] = []

    def on_new_bar(self, series: BarSeries) -> None:
        self.bars += 1
        symbol = series.bsid.symbol
        if self.bars == 1:
            price = float(series.close[0]) * 0.5  # never reached
            self.send_order(side="buy", size=10, symbol=symbol, type="limit", price=price)
        self.send_order(side="buy", size=self.lot, symbol=symbol)

    def on_order_event(self, event: OrderEvent) -> None:
        self.events.append(event)


class Faulty(Brain):
    """Raises on its third bar (an error line for the Informer)."""

    def on_start(self) -> None:
        self.bars = 0

    def on_new_bar(self, series: BarSeries) -> None:
        self.bars += 1
        if self.bars == 3:
            raise RuntimeError("faulty brain: bar three")


class EveryBar(Brain):
    """Buys and sells ``size`` in turn, an order on every bar: a fill per bar."""

    size = 1000.0

    def on_new_bar(self, series: BarSeries) -> None:
        side = "sell" if self.position(series.bsid.symbol) > 0 else "buy"
        self.send_order(side=side, size=self.size, symbol=series.bsid.symbol)
