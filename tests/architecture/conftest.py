"""Fixtures of the architecture tests: real agent processes, always shut down."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from osmarkets.architecture import Architecture, SimulatedArchitecture

pytestmark = pytest.mark.timeout(120)


def make_bars(n: int, seed: int = 0, start: str = "2024-01-02", quotes: bool = False,
              freq: str = "1min") -> pd.DataFrame:  # fmt: skip
    """Random-walk one-minute bars (open = previous close), optionally with bid/ask."""
    rng = np.random.default_rng(seed)
    close = 1.1 * np.exp(np.cumsum(rng.normal(0, 6e-4, n)))
    open_ = np.r_[close[0], close[:-1]]
    wick = np.abs(rng.normal(0, 2e-4, n))
    high = np.maximum(open_, close) + wick
    low = np.minimum(open_, close) - wick
    index = pd.date_range(start, periods=n, freq=freq, tz="UTC", name="time")
    frame = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": 1.0}, index=index
    )
    if quotes:
        half = 0.00005
        for side, sign in (("bid", -1), ("ask", 1)):
            for col in ("open", "high", "low", "close"):
                frame[f"{side}_{col}"] = frame[col] + sign * half
    return frame


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it is truthy (no fixed sleeps as synchronisation)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
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


@pytest.fixture
def bars() -> Callable[..., pd.DataFrame]:
    return make_bars


@pytest.fixture
def architectures() -> Iterator[Callable[..., Any]]:
    """A factory of architectures that are all shut down at teardown."""
    made: list[Architecture] = []

    def make(cls: type = Architecture, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("heartbeat", 0.2)
        system = cls(*args, **kwargs)
        made.append(system)
        return system

    yield make
    for system in made:
        system.shutdown()


@pytest.fixture
def simulated(architectures: Callable[..., Any]) -> Callable[..., SimulatedArchitecture]:
    def make(*args: Any, **kwargs: Any) -> SimulatedArchitecture:
        return architectures(SimulatedArchitecture, *args, **kwargs)

    return make
