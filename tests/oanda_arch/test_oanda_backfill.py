"""The OANDA Feeder's gaps, end to end against the sandbox: reconnection waits stay at the initial
backoff while connections deliver prices, a restarted Feeder backfills any gap (none, or many
candles) without error, and the Brain sees the backfilled bars in order before the live ones,
with ``series.backfilled`` True for them only.

The sandbox's clock is the test's: it runs 60 times real time (one-minute bars complete every
second), can be frozen (prices keep coming, all at the same instant: no bar completes), and can
jump ahead (a gap of many minutes while the Feeder is dead).
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from oanda_arch_support import M1, TOKEN, launched, pid_alive, wait_for

from osmarkets.brokers.oanda import OandaSandbox
from osmarkets.data.types import to_ns

pytestmark = pytest.mark.timeout(120)
MINUTE = 60_000_000_000


class SimClock:
    """Simulated ns: ``factor`` times real time from a Tuesday morning, plus the jumps."""

    def __init__(self, factor: float = 60.0, start: str = "2024-01-02T07:00:00Z") -> None:
        self._lock = threading.Lock()
        self._base = to_ns(start)
        self._origin = time.monotonic_ns()
        self.factor = factor

    def __call__(self) -> int:
        with self._lock:
            return self._base + int((time.monotonic_ns() - self._origin) * self.factor)

    def set_factor(self, factor: float) -> None:
        with self._lock:
            now = time.monotonic_ns()
            self._base += int((now - self._origin) * self.factor)
            self._origin, self.factor = now, factor

    def jump(self, ns: int) -> None:
        with self._lock:
            self._base += ns


@pytest.fixture
def clock():
    return SimClock()


@pytest.fixture
def sandbox(clock):
    with OandaSandbox(
        token=TOKEN, instruments=["EUR_USD"], seed=9, heartbeat=0.5, tick_interval=0.05,
        clock=clock,
    ) as sb:  # fmt: skip
        yield sb


@pytest.fixture
def make(sandbox):
    with launched(sandbox, first_bars=2) as build:
        yield build


def _restart_feeder(system, while_dead=None) -> None:
    """Kill the Feeder, run ``while_dead()``, start a new one (which resumes after the Router's
    newest tick) and wait until it has backfilled and reads the stream."""
    pid = system._agents["feeder"].process.pid
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), what="the Feeder's death")
    if while_dead is not None:
        while_dead()
    system._restart_feeder("feeder")
    # the backfill runs before the stream's first price is handled
    wait_for(lambda: system["feeder"].get_attr("connected"), what="the new Feeder's stream")


def _backfilled(system) -> dict:
    return system["feeder"].osm_stats()["backfilled"]


def _expected_marks(periods: list[dict]) -> set[int]:
    """The bars a Brain must see with ``series.backfilled`` set: of each gap backfilled, the bar
    the gap cut (the backfill completes it) and every bar rebuilt from a candle."""
    marks = set()
    for period in periods:
        if period["since"] % MINUTE != MINUTE - 1:  # else it resumes after a complete bar
            marks.add(period["since"] - period["since"] % MINUTE)  # (the history's last)
        if period["first"] is not None:
            marks.update(range(period["first"], period["last"] + 1, MINUTE))
    return marks


def _assert_every_minute(system) -> list[int]:
    times = system["rec"].get_attr("seen")
    steps = {b - a for a, b in zip(times, times[1:], strict=False)}
    assert steps == {MINUTE}, sorted(steps)  # every bar once, in order, none missing
    return times


def test_reconnection_waits_stay_at_the_initial_backoff(make, sandbox) -> None:
    # five connections in a row deliver prices and are cut abruptly: the previous release
    # waited 1, 2, 4, 8, 16 s (as many simulated minutes); now each wait is at most 1 s
    sandbox.drop_streams(after=15, connections=5)
    system = make(stream_options={"backoff": 1.0, "max_backoff": 30.0})
    feeder = system["feeder"]
    wait_for(lambda: feeder.get_attr("reconnects") >= 5, timeout=40, what="5 reconnections")
    waits = list(feeder.get_attr("reconnect_waits"))
    assert len(waits) >= 5 and all(0.5 <= w <= 1.0 for w in waits), waits
    assert feeder.osm_stats()["reconnect_wait"] <= 1.0
    bars = system["rec"].get_attr("osm_bars")
    wait_for(lambda: system["rec"].get_attr("osm_bars") >= bars + 2, what="bars after them")
    times = _assert_every_minute(system)
    stats = _backfilled(system)
    assert stats["errors"] == 0 and stats["gaps"] >= 5
    # the bars of each gap are marked backfilled at the Brain, the live ones are not: wait for
    # the bar after the last gap's bars, then compare (no gap came in between)
    periods = feeder.backfilled_periods("EUR_USD")
    assert periods, "no gap was backfilled"
    expected = _expected_marks(periods)
    wait_for(lambda: system["rec"].get_attr("seen")[-1] > max(expected), what="a live bar")
    marked = system["rec"].get_attr("backfilled")
    assert feeder.backfilled_periods("EUR_USD") == periods
    assert marked == sorted(marked) and set(marked) == expected, (marked, periods)
    assert set(times) - expected  # and live bars, not marked, between and after them
    # each gap was short: about one simulated minute of waiting, never ten
    assert all(e["bars"] <= 4 for e in feeder.backfilled_periods("EUR_USD")), (
        feeder.backfilled_periods("EUR_USD")
    )


def test_restart_with_no_completed_candle_then_a_long_gap(make, sandbox, clock) -> None:
    system = make(history=100, supervise=False)  # the test restarts the Feeder itself
    # 1. no candle completes while the Feeder is dead (the previous release: KeyError)
    clock.set_factor(0.0)
    frozen = clock()
    wait_for(lambda: system["router"].last_times().get("EUR_USD") == frozen,
             what="the Router at the frozen instant")  # fmt: skip
    _restart_feeder(system)
    assert _backfilled(system) == {"gaps": 1, "bars": 0, "ticks": 0, "completed": 0, "errors": 0}
    assert system["feeder"].backfilled_periods() == []
    assert system["feeder"].get_attr("backfill_errors") == 0
    bars_before = system["rec"].get_attr("osm_bars")

    # 2. the clock jumps 30 minutes while the Feeder is dead
    _restart_feeder(system, while_dead=lambda: clock.jump(30 * MINUTE))
    (period,) = system["feeder"].backfilled_periods("EUR_USD")
    cut = frozen - frozen % MINUTE  # the bar that was forming when the clock froze
    assert period["after"] == "restart" and period["completed"] and period["bars"] == 29
    assert (period["first"], period["last"]) == (cut + MINUTE, cut + 29 * MINUTE)
    stats = _backfilled(system)
    assert stats == {"gaps": 1, "bars": 29, "ticks": 29 * 4 + 3, "completed": 1, "errors": 0}
    # the Brain gets the cut bar and the 29 backfilled ones at once, in order, before any live
    # bar (the last of them completes with the first live price of the next minute)
    wait_for(lambda: system["rec"].get_attr("osm_bars") >= bars_before + 30, what="the gap's bars")
    clock.set_factor(60.0)
    wait_for(lambda: system["rec"].get_attr("osm_bars") >= bars_before + 32, what="live bars")
    times = _assert_every_minute(system)
    assert cut in times and cut + 29 * MINUTE in times and times[-1] > cut + 30 * MINUTE
    # series.backfilled was True for exactly these 30 bars (the cut one, completed by the
    # backfill, and the last one, completed by the first live price, included), not live ones
    # (a loaded start may also have backfilled a bar between the history and the first live
    # quote, before the freeze: only the marks from the cut on are this gap's)
    marked = [t for t in system["rec"].get_attr("backfilled") if t >= cut]
    assert marked == [cut + k * MINUTE for k in range(30)], marked
    assert _expected_marks(system["feeder"].backfilled_periods("EUR_USD")) == set(marked)
    frame = system["rec"].osm_series_frame(M1)
    stamps = frame.index.asi8
    gap = frame[(stamps >= cut + MINUTE) & (stamps <= cut + 29 * MINUTE)]
    assert len(gap) == 29 and set(gap["volume"]) == {4.0}  # built from candles, 4 quotes each


def test_a_slow_start_after_the_history_download_loses_no_bar(sandbox, clock) -> None:
    # the Brain subscribes (history downloaded up to now), then three simulated minutes pass
    # before the stream starts: those candles are backfilled before the first live price
    from oanda_arch_support import FAST_CLIENT, Buyer

    from osmarkets.architecture import OandaArchitecture

    system = OandaArchitecture(
        logging=False, account_id=sandbox.account_id, access_token=TOKEN,
        rest_url=sandbox.rest_url, stream_url=sandbox.stream_url, client_options=FAST_CLIENT,
        poll_interval=0.2, heartbeat=0.2,
    )  # fmt: skip
    try:
        system.add_brain("rec", base=Buyer, buy_on=10**9)
        system["rec"].subscribe(M1, 10)
        history_end = system["rec"].osm_series_frame(M1).index[-1].value
        clock.jump(3 * MINUTE)
        system.stream(["EUR_USD"])
        wait_for(lambda: system["rec"].get_attr("osm_bars") >= 5, what="bars after the start")
        (period,) = system["feeder"].backfilled_periods("EUR_USD")
        assert period["after"] == "restart" and period["bars"] >= 3
        assert period["first"] == history_end + MINUTE
        times = _assert_every_minute(system)
        assert times[0] == history_end + MINUTE  # the first bar the Brain sees follows the history
    finally:
        system.shutdown()
