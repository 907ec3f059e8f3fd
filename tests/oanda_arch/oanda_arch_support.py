"""Brains and helpers of the OandaArchitecture tests (a module, so agent processes import it)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
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


class Buyer(Brain):
    """Records its bars and events; buys ``size`` once on its ``buy_on``-th bar."""

    buy_on = 3
    size = 100

    def on_start(self) -> None:
        self.seen: list[int] = []
        self.events: list[OrderEvent] = []

    def on_new_bar(self, series: BarSeries) -> None:
        self.seen.append(int(series[0].time))
        if len(self.seen) == self.buy_on:
            self.send_order(side="buy", size=self.size, symbol=series.bsid.symbol)

    def on_order_event(self, event: OrderEvent) -> None:
        self.events.append(event)
