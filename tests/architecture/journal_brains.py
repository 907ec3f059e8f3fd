"""Brains of the journal tests (a module, so agent processes can import them)."""

from __future__ import annotations

import os
from typing import Any

from osmarkets import BarSeries, Brain
from osmarkets.brokers.base import OrderEvent


class Suicidal(Brain):
    """Trades every bar (buy, sell, buy... ``size``) and counts the bars it handled in its
    saved state. Dies once (``os._exit``, as a SIGKILL would leave it), right after the order
    of its ``die_on``-th bar left (``die_in='bar'``), or right after the follow-up order it
    sends on its first fill (``die_in='event'``); ``marker`` (a file) makes it die once."""

    size = 10
    die_on = 5
    die_in = "bar"
    marker = ""
    every_bar = True

    def on_restore(self, state: dict[str, Any]) -> None:
        self.handled = int(state["handled"])
        self.restored = dict(state)

    def on_start(self) -> None:
        if not hasattr(self, "handled"):
            self.handled = 0
        self.replayed_bars = 0

    def on_save(self) -> dict[str, Any]:
        return {"handled": self.handled}

    def _die(self) -> None:
        if self.marker and not os.path.exists(self.marker):
            with open(self.marker, "w") as fh:
                fh.write(str(os.getpid()))
            os._exit(9)

    def on_new_bar(self, series: BarSeries) -> None:
        self.handled += 1
        self.replayed_bars += int(series.replayed)
        if not self.every_bar and self.handled != 2:
            return
        side = "buy" if self.handled % 2 else "sell"
        self.send_order(side=side, size=self.size, symbol=series.bsid.symbol)
        if self.die_in == "bar" and self.handled == self.die_on:
            self._die()

    def on_order_event(self, event: OrderEvent) -> None:
        if self.die_in == "event" and event.kind == "filled" and event.size == self.size:
            self.send_order(side="buy", size=1, symbol=event.symbol)  # the follow-up
            self._die()


class Unsaveable(Brain):
    """on_save returns what cannot be stored (a complex number), then plain data again."""

    def on_start(self) -> None:
        self.bars = 0

    def on_new_bar(self, series: BarSeries) -> None:
        self.bars += 1

    def on_save(self) -> dict[str, Any]:
        return {"bars": complex(self.bars)} if self.bars == 2 else {"bars": self.bars}
