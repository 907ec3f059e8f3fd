"""History on subscribe in the OandaArchitecture: real agents against the real sandbox.

A Brain subscribing with ``history=n`` gets the last ``n`` completed OANDA candles first (the
Router downloads them in a worker thread), then live bars continuing them with no gap and no
duplicate. The sandbox clock runs 60 times real time: a one-minute bar completes every second.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from history_brains import Recorder
from oanda_arch_support import M1, TOKEN, fast_clock, wait_for

from osmarkets.architecture import OandaArchitecture
from osmarkets.brokers.oanda import OandaClient, OandaSandbox, candles_to_frame
from osmarkets.data.timeframes import BarSeriesID

pytestmark = pytest.mark.timeout(120)
FAST_CLIENT = {"backoff": 0.01, "max_backoff": 0.05, "timeout": (2.0, 5.0)}
M5 = ("EUR_USD", 5, "Minutes")
COLUMNS = ["open", "high", "low", "close", "volume",
           "bid_open", "bid_high", "bid_low", "bid_close",
           "ask_open", "ask_high", "ask_low", "ask_close"]  # fmt: skip


@pytest.fixture
def sandbox():
    with OandaSandbox(
        token=TOKEN, instruments=["EUR_USD", "USD_JPY"], seed=11, heartbeat=0.5,
        tick_interval=0.05, clock=fast_clock(60.0),
    ) as sb:  # fmt: skip
        yield sb


@pytest.fixture
def client(sandbox):
    with OandaClient(TOKEN, sandbox.account_id, rest_url=sandbox.rest_url,
                     stream_url=sandbox.stream_url, **FAST_CLIENT) as c:  # fmt: skip
        yield c


@pytest.fixture
def make(sandbox):
    made = []

    def build(**kwargs):
        kwargs.setdefault("access_token", TOKEN)
        kwargs.setdefault("client_options", FAST_CLIENT)
        kwargs.setdefault("poll_interval", 30.0)  # the Trader stays off the REST API
        kwargs.setdefault("heartbeat", 0.2)
        system = OandaArchitecture(
            logging=False, account_id=sandbox.account_id, rest_url=sandbox.rest_url,
            stream_url=sandbox.stream_url, **kwargs,
        )  # fmt: skip
        made.append(system)
        # the Trader has reconciled with the account: from here on, only downloads use REST
        wait_for(lambda: system["trader"].get_attr("reconciliation") is not None,
                 what="the Trader's reconciliation")  # fmt: skip
        return system

    yield build
    for system in made:
        system.shutdown()


def _history(snapshot) -> pd.DataFrame:
    """The bars of a Brain's series that came with the history (older than its first live
    bar)."""
    live, _seq, frame = snapshot
    return frame[frame.index.asi8 < live[0]] if live else frame


def _candles(client, bsid, first: pd.Timestamp, count: int) -> pd.DataFrame:
    bsid = BarSeriesID.parse(bsid)
    page = client.candles(bsid.symbol, bsid.timeframe.code, price="BA", start=first, count=count)
    return candles_to_frame(page["candles"])


def _check_history(system, brain, bsid, count, client) -> tuple[pd.DataFrame, tuple]:
    """The Brain's history right after subscribe: ``count`` bars in all (history plus the live
    bars that may already have arrived), equal to the sandbox's candles, mid and bid/ask."""
    snapshot = system[brain].snapshot(bsid)
    live, _seq, frame = snapshot
    history = _history(snapshot)
    assert len(frame) == count
    assert len(history) == count - len(live) and len(history) >= count - 3
    expected = _candles(client, bsid, history.index[0], len(history))
    pd.testing.assert_frame_equal(history[COLUMNS], expected[COLUMNS], check_freq=False)
    return history, snapshot


def _check_continuation(system, brain, bsid, history, snapshot, bars: int = 3) -> None:
    """Live bars follow the last downloaded candle: one period apart, no gap, no duplicate,
    with sequence numbers counting exactly the bars added."""
    step = BarSeriesID.parse(bsid).timeframe.nanoseconds
    key = BarSeriesID.parse(bsid)
    wait_for(lambda: len(system[brain].snapshot(bsid)[0]) >= bars, what=f"{bars} live bars")
    live, seq, frame = system[brain].snapshot(bsid)
    times = frame.index.asi8
    assert np.all(np.diff(times) == step), "gap or duplicate in the series"
    assert int(history.index.asi8[-1]) + step in times  # the bar after the last candle
    assert live == sorted(set(live)) and live[0] == int(history.index.asi8[-1]) + step
    added = int(np.sum(times > snapshot[2].index.asi8[-1]))
    assert seq - snapshot[1] == added
    assert system[brain].get_attr("osm_seq")[key] == seq


def test_history_first_then_live_bars(make, client) -> None:
    system = make()
    system.stream(["EUR_USD"])
    system.add_brain("a", base=Recorder)
    assert system["a"].subscribe(M1, 50)
    history, snapshot = _check_history(system, "a", M1, 50, client)
    _check_continuation(system, "a", M1, history, snapshot)
    stats = system["router"].osm_stats()
    assert stats["history_downloads"] == 1 and stats["history_failures"] == 0
    assert stats["history_bars"] == 50


def test_two_brains_two_time_frames(make, client) -> None:
    system = make()
    system.stream(["EUR_USD"])
    system.add_brain("fast", base=Recorder)
    system.add_brain("slow", base=Recorder)
    system["fast"].subscribe(M1, 30)
    system["slow"].subscribe(M5, 20)
    fast, fast_snap = _check_history(system, "fast", M1, 30, client)
    slow, slow_snap = _check_history(system, "slow", M5, 20, client)
    assert np.all(slow.index.asi8 % (5 * 60 * 10**9) == 0)
    _check_continuation(system, "slow", M5, slow, slow_snap, bars=1)
    _check_continuation(system, "fast", M1, fast, fast_snap)
    assert system["router"].osm_stats()["history_downloads"] == 2


def test_server_errors_during_download_are_retried(make, sandbox, client) -> None:
    system = make(client_options=dict(FAST_CLIENT, max_retries=5))
    system.stream(["EUR_USD"])
    system.add_brain("a", base=Recorder)
    before = sandbox.requests
    sandbox.fail_requests(3, status=500)
    system["a"].subscribe(M1, 50)
    assert sandbox.requests - before >= 4  # three 500s, retried, then the candles
    history, snapshot = _check_history(system, "a", M1, 50, client)
    _check_continuation(system, "a", M1, history, snapshot, bars=2)
    stats = system["router"].osm_stats()
    assert stats["history_downloads"] == 1 and stats["history_failures"] == 0


def test_failed_download_does_not_hang_the_subscription(make, sandbox) -> None:
    system = make(client_options=dict(FAST_CLIENT, max_retries=1))
    system.stream(["EUR_USD"])
    system.add_brain("a", base=Recorder)
    sandbox.fail_requests(2, status=500)  # the first try and its one retry
    assert system["a"].subscribe(M1, 50)  # returns, with whatever the Router had
    router = system["router"]
    stats = wait_for(lambda: (s := router.osm_stats())["history_failures"] == 1 and s,
                     what="the failure counted")  # fmt: skip
    assert stats["history_downloads"] == 1 and stats["errors"] >= 1
    assert any("history download for EUR_USD" in e and "failed" in e
               for e in router.osm_recent_errors())  # fmt: skip
    live, _seq, frame = system["a"].snapshot(M1)
    assert len(frame) <= len(live) + 1  # no downloaded history (at most a bar built live)
    # the subscription goes on: live bars arrive, one minute apart
    wait_for(lambda: len(system["a"].snapshot(M1)[0]) >= 3, what="live bars")
    times = system["a"].snapshot(M1)[2].index.asi8
    assert np.all(np.diff(times) == 60 * 10**9)
    # the same series is not downloaded again (it failed: no retry loop)
    system.add_brain("b", base=Recorder)
    system["b"].subscribe(M1, 50)
    assert router.osm_stats()["history_downloads"] == 1


def test_late_download_still_seeds_the_history(make, sandbox) -> None:
    # every REST answer takes 2 s; the subscription waits 0.5 s at most, goes on with what the
    # Router has, and the Brain re-reads the history when the download lands (the sequence
    # number jumps by the bars put in front)
    system = make(history_timeout=0.5)
    system.stream(["EUR_USD"])
    system.add_brain("a", base=Recorder)
    sandbox.latency = 2.0
    assert system["a"].subscribe(M1, 40)
    assert len(system["a"].snapshot(M1)[2]) < 40
    router = system["router"]
    wait_for(lambda: router.osm_stats()["history_bars"] > 0, what="the late download")
    sandbox.latency = 0.0
    assert router.osm_stats()["history_timeouts"] == 1
    wait_for(lambda: len(system["a"].snapshot(M1)[2]) == 40, what="the history at the Brain")
    times = system["a"].snapshot(M1)[2].index.asi8
    assert np.all(np.diff(times) == 60 * 10**9)
    assert system["a"].get_attr("osm_gaps") >= 1  # the jump was seen and the history re-read


# -- the pieces, without agents ------------------------------------------------------------------
class _Source:
    def __init__(self, records=None, error=None, gate=None):
        self.records, self.error, self.gate, self.calls = records, error, gate, []

    def fetch(self, bsid, count):
        self.calls.append((bsid, count))
        if self.gate is not None:
            self.gate.wait(10)
        if self.error is not None:
            raise self.error
        return self.records[-count:]


def _records(start_minute: int, count: int) -> np.ndarray:
    from osmarkets.data.types import BAR_DTYPE

    out = np.zeros(count, dtype=BAR_DTYPE)
    out["time"] = (start_minute + np.arange(count)) * 60 * 10**9
    for name in COLUMNS:
        out[name] = 1.0 + np.arange(count) / 1000
    return out


def test_loader_waits_once_per_series_and_reports_failures() -> None:
    import threading

    from osmarkets.agents.history import HistoryLoader

    bsid = BarSeriesID.parse(M1)
    gate = threading.Event()
    loader = HistoryLoader(_Source(records=_records(0, 100), gate=gate), timeout=30)
    assert not loader.needs_wait(bsid, 10, have=10)  # enough already: no download
    assert loader.needs_wait(bsid, 50, have=3)  # starts one
    assert loader.needs_wait(bsid, 50, have=3)  # still running: wait, no second download
    assert loader.downloads == 1 and loader.finished() == []
    gate.set()
    done = wait_for(loader.finished, what="the download")
    ((got, records, error),) = done
    assert got == bsid and error == "" and len(records) == 50
    assert not loader.needs_wait(bsid, 50, have=3)  # tried: the broker has no more
    assert loader.needs_wait(bsid, 80, have=50)  # a larger request downloads again
    failing = HistoryLoader(_Source(error=RuntimeError("boom")), timeout=30)
    assert failing.needs_wait(bsid, 50, have=0)
    ((_, records, error),) = wait_for(failing.finished, what="the failure")
    assert records is None and "boom" in error and failing.failures == 1
    assert not failing.needs_wait(bsid, 50, have=0)  # never a retry loop


def test_loader_stops_waiting_after_timeout() -> None:
    import threading

    from osmarkets.agents.history import HistoryLoader

    bsid = BarSeriesID.parse(M1)
    gate = threading.Event()
    loader = HistoryLoader(_Source(records=_records(0, 10), gate=gate), timeout=0.05)
    assert loader.needs_wait(bsid, 10, have=0)
    wait_for(lambda: loader.expired() == [bsid], what="the timeout")
    assert loader.timeouts == 1 and loader.expired() == []  # reported once
    assert not loader.needs_wait(bsid, 10, have=0)
    gate.set()
    ((_, records, _),) = wait_for(loader.finished, what="the late result")
    assert len(records) == 10 and loader.in_flight == {}


class _Router:
    """Just what RouterHistoryMixin reads of a Router."""

    def __init__(self, capacity: int = 1000):
        from osmarkets.agents.history import HistoryLoader, RouterHistoryMixin
        from osmarkets.agents.router import _Series
        from osmarkets.data.aggregate import TickAggregator

        self.mixin = RouterHistoryMixin
        bsid = BarSeriesID.parse(M1)
        self.series = {bsid: _Series(bsid, TickAggregator("M1", lenient=True), capacity)}
        self.history_loader = HistoryLoader(_Source(records=_records(0, 1)))

    def seed(self, records):
        return self.mixin.osm_history_seed(self, BarSeriesID.parse(M1), records)

    def duplicate(self, bar):
        return self.mixin.osm_history_duplicate(self, self.series[BarSeriesID.parse(M1)], bar)


def test_seed_goes_in_front_of_live_bars_without_overlap() -> None:
    from osmarkets.data.types import Bar

    router = _Router()
    series = router.series[BarSeriesID.parse(M1)]
    live = [Bar(t * 60 * 10**9, 2.0, 2.0, 2.0, 2.0) for t in (8, 9)]
    series.history.extend(live)
    series.seq = 2
    assert router.seed(_records(0, 10)) == 8  # minutes 0..7: older than the first live bar
    times = [bar.time // (60 * 10**9) for bar in series.history]
    assert times == list(range(10)) and series.seq == 10
    assert list(series.history)[-2:] == live  # the live bars win their periods
    assert router.duplicate(Bar(9 * 60 * 10**9, 1.0, 1.0, 1.0, 1.0))
    assert not router.duplicate(Bar(10 * 60 * 10**9, 1.0, 1.0, 1.0, 1.0))
    assert router.history_loader.overlaps == 1


def test_seed_stops_before_the_bar_being_formed() -> None:
    router = _Router(capacity=5)
    bsid = BarSeriesID.parse(M1)
    series = router.series[bsid]
    series.aggregator.update((6 * 60 * 10**9 + 5, 1.0, 1.0002))  # minute 6 is forming
    assert router.seed(_records(0, 10)) == 6
    times = [bar.time // (60 * 10**9) for bar in series.history]
    assert times == [1, 2, 3, 4, 5] and series.seq == 6  # capacity keeps the newest
    assert router.seed(_records(0, 0)) == 0


def test_last_candles_pages_backwards(client) -> None:
    from osmarkets.agents.history import last_candles

    bsid = BarSeriesID.parse(M1)
    records = last_candles(client, bsid, 6200, candles_to_frame)  # two pages of candles
    times = records["time"]
    assert len(records) == 6200 and np.all(np.diff(times) > 0)
    expected = _candles(client, bsid, pd.Timestamp(int(times[0]), tz="UTC"), 5000)
    got = records[:5000]
    for name in COLUMNS:
        assert np.array_equal(got[name], expected[name].to_numpy())
