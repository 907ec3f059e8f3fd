"""Brains and helpers of the OandaArchitecture tests (a module, so agent processes import it)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from osmarkets import BarSeries, Brain
from osmarkets.brokers.base import OrderEvent
from osmarkets.data.types import to_ns

TOKEN = "oanda-arch-secret-token-9f8e7d6c5b4a"
M1 = ("EUR_USD", 1, "Minutes")


def fast_clock(factor: float = 60.0, start: str = "2024-01-02T07:00:00Z") -> Callable[[], int]:
    """A sandbox clock running ``factor`` times real time from a fixed weekday morning, so
    one-minute bars complete every second and no weekend pause interferes."""
    base = to_ns(start)
    origin = time.monotonic_ns()
    return lambda: base + int((time.monotonic_ns() - origin) * factor)


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it is truthy (no fixed sleeps as synchronisation)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except Exception:  # an agent restarting, a proxy timing out: try again
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}: {value!r}")
        time.sleep(0.02)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def proc_environ(pid: int) -> bytes:
    """``/proc/<pid>/environ``: what any process of the user can read of ``pid``'s environment
    (b"" when it cannot: the process is not dumpable, its environ owned by root)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return fh.read()
    except PermissionError:
        return b""


#: An order of this many units makes the Trader's broker of :func:`make_dying_trading_broker`
#: kill its process right after it has the answer, before the journal and the Brain (once).
DIE_ON_SIZE = 77


def make_dying_trading_broker(settings: dict[str, Any]) -> Any:
    """The Trader's broker factory of ``OandaArchitecture`` (``make_trading_broker``), with a
    broker that dies (``os._exit``) right after it has OANDA's answer to an order of
    :data:`DIE_ON_SIZE` units, before the Trader journals it. A marker file beside the state
    file makes it die once only, so the restarted Trader lives."""
    from pathlib import Path

    from osmarkets.brokers.oanda.trading import OandaTradingBroker, client_from_settings

    class DyingTradingBroker(OandaTradingBroker):
        def submit(self, order: Any) -> Any:
            events = super().submit(order)  # the broker thread has the answer
            marker = Path(f"{self.state_path}.died")
            if order.size == DIE_ON_SIZE and not marker.exists():
                marker.write_text(order.client_id)
                os._exit(9)
            return events

    return DyingTradingBroker(
        client_from_settings(settings),
        state_path=settings.get("state_path"),
        poll_interval=float(settings.get("poll_interval", 1.0)),
    )


#: A limit order of this many units makes the Trader's broker of
#: :func:`make_fill_dying_trading_broker` kill its process right after the poll that saw it
#: fill, before the Trader's main thread journals the fill (once).
DIE_ON_FILL_SIZE = 7


def make_fill_dying_trading_broker(settings: dict[str, Any]) -> Any:
    """The Trader's broker factory of ``OandaArchitecture`` with a broker that dies
    (``os._exit``) right after the poll that reported the fill of an order of
    :data:`DIE_ON_FILL_SIZE` units: the broker thread has taken the fill (its state moved past
    it) and the journal has not. A marker file beside the state file makes it die once."""
    from pathlib import Path

    from osmarkets.brokers.oanda.trading import OandaTradingBroker, client_from_settings

    class FillDyingTradingBroker(OandaTradingBroker):
        def poll(self, force: bool = False) -> Any:
            events = super().poll(force)
            marker = Path(f"{self.state_path}.died")
            if not marker.exists() and any(
                e.kind == "filled" and e.size == DIE_ON_FILL_SIZE for e in events
            ):
                marker.write_text("fill")
                os._exit(9)
            return events

    return FillDyingTradingBroker(
        client_from_settings(settings),
        state_path=settings.get("state_path"),
        poll_interval=float(settings.get("poll_interval", 1.0)),
    )


class Buyer(Brain):
    """Records its bars (``seen``; ``backfilled``: those with ``series.backfilled`` set) and
    events; buys ``size`` once on its ``buy_on``-th bar."""

    buy_on = 3
    size = 100

    def on_start(self) -> None:
        self.seen: list[int] = []
        self.backfilled: list[int] = []
        self.events: list[OrderEvent] = []

    def on_new_bar(self, series: BarSeries) -> None:
        self.seen.append(int(series[0].time))
        if series.backfilled:
            self.backfilled.append(int(series[0].time))
        if len(self.seen) == self.buy_on:
            self.send_order(side="buy", size=self.size, symbol=series.bsid.symbol)

    def on_order_event(self, event: OrderEvent) -> None:
        self.events.append(event)


FAST_CLIENT = {"backoff": 0.01, "max_backoff": 0.05, "timeout": (2.0, 5.0)}


@contextlib.contextmanager
def launched(sandbox: Any, first_bars: int = 1, **fixed: Any) -> Iterator[Callable[..., Any]]:
    """A builder of OandaArchitectures on ``sandbox``, each with a Buyer Brain ``rec``
    subscribed to M1 and the stream started (``fixed``: options of every launch, such as
    ``state_dir``); all are shut down on leaving."""
    from osmarkets.architecture import OandaArchitecture

    made: list[Any] = []

    def build(history: int = 10, **kwargs: Any) -> Any:
        options = {"client_options": FAST_CLIENT, "poll_interval": 0.2, "heartbeat": 0.2}
        options.update(fixed)
        options.update(kwargs)
        system = OandaArchitecture(
            logging=False, account_id=sandbox.account_id, access_token=TOKEN,
            rest_url=sandbox.rest_url, stream_url=sandbox.stream_url, **options,
        )  # fmt: skip
        made.append(system)
        system.add_brain("rec", base=Buyer, buy_on=10**9)
        system["rec"].subscribe(M1, history)
        system.stream(["EUR_USD"])
        wait_for(lambda: system["rec"].get_attr("osm_bars") >= first_bars, what="first bars")
        return system

    try:
        yield build
    finally:
        for system in made:
            system.shutdown()
