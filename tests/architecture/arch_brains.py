"""Brains used by the architecture tests (a module, so agent processes can import them)."""

from __future__ import annotations

from osmarkets import BarSeries, Brain
from osmarkets.brokers.base import OrderEvent


class Recorder(Brain):
    """Records what it sees; buys ``size`` once on its ``buy_on``-th bar."""

    buy_on = 3
    size = 100
    DEBUG = False

    def on_start(self) -> None:
        self.seen: list[tuple[str, int]] = []
        self.events: list[OrderEvent] = []
        self.debug_seen = 0

    def on_new_bar(self, series: BarSeries) -> None:
        self.seen.append((str(series.bsid), int(series[0].time)))
        if self.DEBUG:
            self.debug_seen += 1
        if len(self.seen) == self.buy_on:
            self.send_order(side="buy", size=self.size, symbol=series.bsid.symbol)

    def on_order_event(self, event: OrderEvent) -> None:
        self.events.append(event)


class Faulty(Brain):
    """Raises on every ``every``-th bar."""

    every = 3

    def on_start(self) -> None:
        self.count = 0

    def on_new_bar(self, series: BarSeries) -> None:
        self.count += 1
        if self.count % self.every == 0:
            raise ZeroDivisionError(f"boom on bar {self.count}")


class Greedy(Brain):
    """Sends one order of ``size`` on the first bar (to test risk limits)."""

    size = 1000

    def on_start(self) -> None:
        self.events: list[OrderEvent] = []
        self.sent = False

    def on_new_bar(self, series: BarSeries) -> None:
        if not self.sent:
            self.sent = True
            self.send_order(side="buy", size=self.size, symbol=series.bsid.symbol)

    def on_order_event(self, event: OrderEvent) -> None:
        self.events.append(event)


class HoldOne(Brain):
    """Buys ``size`` when flat and no order is pending, then holds: a restarted process that
    forgot its position would buy again."""

    size = 100

    def on_start(self) -> None:
        self.seen: list[tuple[str, int]] = []
        self.pending = False

    def on_new_bar(self, series: BarSeries) -> None:
        self.seen.append((str(series.bsid), int(series[0].time)))
        symbol = series.bsid.symbol
        if self.position(symbol) == 0 and not self.pending:
            self.pending = True
            self.send_order(side="buy", size=self.size, symbol=symbol)

    def on_order_event(self, event: OrderEvent) -> None:
        if event.kind in ("filled", "rejected", "cancelled"):
            self.pending = False


class FlagRecorder(Brain):
    """Records ``(bar time, series.backfilled, series.replayed)`` per bar, and raises on its
    first backfilled bar (the flag must still be reset); counts ticks that found
    ``series.backfilled`` set outside ``on_new_bar`` (it must never be)."""

    def on_start(self) -> None:
        self.flags: list[tuple[int, bool, bool]] = []
        self.raised = False
        self.ticks_seen = 0
        self.flag_outside = 0

    def on_new_bar(self, series: BarSeries) -> None:
        self.flags.append((int(series[0].time), series.backfilled, series.replayed))
        if series.backfilled and not self.raised:
            self.raised = True
            raise RuntimeError("user code raising on a backfilled bar")

    def on_tick(self, tick: object) -> None:
        self.ticks_seen += 1
        self.flag_outside += self.series(("EUR_USD", 1, "Minutes")).backfilled
