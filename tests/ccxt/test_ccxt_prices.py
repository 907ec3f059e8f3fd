"""Prices from the ccxt adapter against the local exchange sandbox: the live quote stream
(websockets, polling, reconnection with backfill), candles, backfill quotes and history.

A real :class:`ExchangeSandbox` on 127.0.0.1 (ticking every 50 ms, so quotes flow), ccxt's
unmodified ``binance`` / ``pro.binance`` classes; no mocks. Threads synchronise on conditions
with timeouts, never on fixed sleeps.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
from ccxt_support import wait_for

pytest.importorskip("ccxt")
import ccxt  # noqa: E402

from osmarkets.brokers.ccxt import ExchangeSandbox  # noqa: E402
from osmarkets.brokers.ccxt.prices import (  # noqa: E402
    CcxtHistorySource,
    CcxtPriceStream,
    backfill_quotes,
    ccxt_timeframe,
    closed_candles,
)
from osmarkets.data.types import BAR_DTYPE  # noqa: E402

BTC, ETH = "BTC/USDT", "ETH/USDT"
MIN = 60_000_000_000  # ns


@pytest.fixture(scope="module")
def sb():
    with ExchangeSandbox(symbols=[BTC, ETH], seed=11, tick_interval=0.05) as sandbox:
        yield sandbox


@pytest.fixture
def settings(sb):
    options = sb.ccxt_options()
    options.pop("apiKey"), options.pop("secret")  # market data needs no credentials
    options["timeout"] = 3000
    return {"exchange": "binance", "options": options}


@pytest.fixture
def rest(settings):
    return ccxt.binance({**settings["options"], "enableRateLimit": False})


class Recorder:
    """A stream run in a thread, with what it delivered, in order: ('q', symbol, tick) and
    ('b', last_seen) entries."""

    def __init__(self, settings, symbols=(BTC, ETH), **kwargs):
        self.events: list[tuple] = []
        self.stream = CcxtPriceStream(
            settings, list(symbols), self._quote, backfill=self._backfill, **kwargs
        )
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _quote(self, symbol, tick):
        self.events.append(("q", symbol, tick))

    def _backfill(self, seen):
        self.events.append(("b", seen))

    def _run(self):
        try:
            self.stream.run()
        except BaseException as exc:  # noqa: BLE001 (reported to the test)
            self.error = exc

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stream.stop()
        self.thread.join(5)
        assert not self.thread.is_alive(), "run() did not return after stop()"

    def quotes(self, symbol=None, after: int = 0):
        return [e[2] for e in self.events[after:] if e[0] == "q" and symbol in (None, e[1])]

    def wait_quotes(self, count: int, after: int = 0, symbols=(BTC, ETH), timeout=10.0):
        wait_for(lambda: all(len(self.quotes(s, after)) >= count for s in symbols), timeout)


def assert_increasing(recorder, symbols=(BTC, ETH)):
    for symbol in symbols:
        times = [t.time for t in recorder.quotes(symbol)]
        assert times and all(b > a for a, b in zip(times, times[1:], strict=False)), symbol
        for tick in recorder.quotes(symbol):
            assert 0 < tick.bid < tick.ask


def without_websockets(settings):
    """The settings of an exchange that has no websocket quotes."""
    no_ws = {"watchBidsAsks": False, "watchOrderBook": False, "watchTicker": False}
    return {**settings, "options": {**settings["options"], "has": no_ws}}


# -- the stream --------------------------------------------------------------------------------
def test_websocket_quotes_are_the_book_tops_in_strictly_increasing_time(sb, settings):
    connections = sb.stream_connections
    with Recorder(settings, silence_timeout=5.0) as rec:
        rec.wait_quotes(10)
        assert rec.stream.using == "websocket"
        bid, ask, _ = sb.quote(BTC)
        latest = rec.quotes(BTC)[-1]
        assert abs(latest.mid - float(bid + ask) / 2) < 0.01 * latest.mid
    assert sb.stream_connections > connections
    assert_increasing(rec)
    assert rec.stream.reconnects == 0 and rec.stream.errors == 0
    assert not [e for e in rec.events if e[0] == "b"]  # no reconnection, no backfill


def test_poll_fallback_reads_tickers_over_rest(sb, settings):
    connections = sb.stream_connections
    with Recorder(settings, method="poll", poll_interval=0.05) as rec:
        rec.wait_quotes(4)
        assert rec.stream.using == "poll"
    assert sb.stream_connections == connections  # no websocket opened
    assert_increasing(rec)


def test_auto_on_an_exchange_without_websocket_quotes_polls(sb, settings):
    bare = without_websockets(settings)
    with Recorder(bare, poll_interval=0.05) as rec:
        rec.wait_quotes(2)
        assert rec.stream.using == "poll"


def test_websocket_on_an_exchange_without_websocket_quotes_is_an_error(sb, settings):
    bare = without_websockets(settings)
    stream = CcxtPriceStream(bare, [BTC], lambda s, t: None, method="websocket")
    started = time.monotonic()
    with pytest.raises(ValueError, match="method") as raised:
        stream.run()
    assert "websocket" in str(raised.value)
    assert time.monotonic() - started < 5 and stream.quotes == 0


def test_a_dropped_connection_reconnects_and_backfills_before_the_first_new_quote(sb, settings):
    with Recorder(settings, backoff=0.05, silence_timeout=5.0) as rec:
        rec.wait_quotes(3)
        mark = len(rec.events)
        assert sb.drop_streams() >= 1
        wait_for(lambda: rec.stream.reconnects >= 1)
        wait_for(lambda: [e for e in rec.events[mark:] if e[0] == "b"])
        at = next(i for i, e in enumerate(rec.events) if e[0] == "b")
        rec.wait_quotes(2, after=at + 1)
    assert rec.stream.reconnects >= 1 and rec.stream.connections >= 2
    seen = rec.events[at][1]
    for symbol in (BTC, ETH):  # the time of the last quote delivered before it, per symbol
        before = [e[2].time for e in rec.events[:at] if e[0] == "q" and e[1] == symbol]
        assert seen[symbol] == before[-1]
    assert_increasing(rec)


def test_reconnecting_after_good_connections_waits_only_the_backoff(sb, settings):
    """The wait doubles while connections fail, not when a connection that delivered quotes
    ends (they all end by an error: dropped, silent)."""
    with Recorder(settings, backoff=0.2, max_backoff=30.0, silence_timeout=5.0) as rec:
        rec.wait_quotes(2)
        for drop in range(1, 5):
            mark = len(rec.events)
            sb.drop_streams()
            wait_for(lambda d=drop: rec.stream.reconnects >= d)
            rec.wait_quotes(1, after=mark + 1, timeout=15)
    # the waits the stream chose (not timed: the machine may be slow): 0.2 s each, where the
    # doubling would have reached 3.2 s
    assert list(rec.stream.waits) == [0.2] * 4


def test_a_silent_connection_is_taken_for_dead_and_replaced(sb, settings):
    with Recorder(settings, backoff=0.05, silence_timeout=0.3) as rec:
        rec.wait_quotes(2)
        mark = len(rec.events)
        sb.silence_streams(1.0)
        wait_for(lambda: rec.stream.reconnects >= 1, timeout=5)
        assert "Timeout" in rec.stream.last_error
        rec.wait_quotes(1, after=mark, timeout=10)  # quotes again after the silence
        assert [e for e in rec.events[mark:] if e[0] == "b"]  # the gap was backfilled
    assert_increasing(rec)


@pytest.mark.parametrize("method", ["auto", "poll"])
def test_stop_from_another_thread_returns_run_promptly(sb, settings, method):
    rec = Recorder(settings, method=method, poll_interval=30.0, backoff=30.0)
    with rec:
        rec.wait_quotes(1, symbols=(BTC,))
        stopping = time.monotonic()
        rec.stream.stop()
        rec.thread.join(10)
        assert not rec.thread.is_alive()  # the poll interval and backoff are 30 s
        assert time.monotonic() - stopping < 10.0
    assert rec.error is None


def test_stop_during_a_backoff_wait_and_before_run(sb, settings):
    rec = Recorder(settings, backoff=30.0, silence_timeout=5.0)
    with rec:
        rec.wait_quotes(1, symbols=(BTC,))
        sb.drop_streams()
        wait_for(lambda: rec.stream.errors >= 1)  # waiting 30 s before reconnecting
        stopping = time.monotonic()
        rec.stream.stop()
        rec.thread.join(10)
        assert time.monotonic() - stopping < 10.0  # not the 30 s backoff
    early = CcxtPriceStream(settings, [BTC], lambda s, t: None)
    early.stop()
    started = time.monotonic()
    early.run()  # stopped before it started: returns at once
    assert time.monotonic() - started < 10.0 and early.connections == 0


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"method": "ws"}, "method"),
        ({"method": None}, "method"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"poll_interval": -1.0}, "poll_interval"),
        ({"poll_interval": math.nan}, "poll_interval"),
        ({"backoff": math.inf}, "backoff"),
        ({"backoff": "1"}, "backoff"),
        ({"max_backoff": None}, "max_backoff"),
        ({"silence_timeout": True}, "silence_timeout"),
        ({"silence_timeout": 0.0}, "silence_timeout"),
    ],
)
def test_bad_stream_arguments_are_named(settings, kwargs, name):
    with pytest.raises(ValueError, match=name):
        CcxtPriceStream(settings, [BTC], lambda s, t: None, **kwargs)


# -- candles -----------------------------------------------------------------------------------
def test_ccxt_timeframes():
    assert [ccxt_timeframe(tf) for tf in ("M1", "H4", "D", "W", (1, "Seconds"))] == [
        "1m", "4h", "1d", "1w", "1s",
    ]  # fmt: skip


@pytest.mark.parametrize("timeframe, span, limit", [("M1", 45, 7), ((1, "Seconds"), 25, 4)])
def test_closed_candles_page_through_and_never_return_the_forming_one(rest, timeframe, span,
                                                                      limit):  # fmt: skip
    length = MIN if timeframe == "M1" else 1_000_000_000
    # a candle ago: the sandbox's tick thread (starved on a loaded machine) may not have
    # reached the end of the candle that has just completed by the wall clock
    now = time.time_ns() - length
    since = now - span * length - length // 3  # mid-candle
    rows = closed_candles(rest, BTC, timeframe, since, limit=limit, now_ns=now)
    opens = [int(r[0]) * 1_000_000 for r in rows]
    assert len(rows) > limit  # several pages
    assert opens == sorted(set(opens))  # chronological, no duplicates
    assert all(b - a == length for a, b in zip(opens, opens[1:], strict=False))  # no gaps
    assert opens[0] >= since and opens[0] - since < length  # from the first one after since
    assert opens[-1] + length <= now < opens[-1] + 2 * length  # up to the last completed one
    whole = closed_candles(rest, BTC, timeframe, since, limit=1000, now_ns=now)
    assert [list(r) for r in whole] == [list(r) for r in rows]  # paging changes nothing


def test_closed_candles_with_nothing_completed_yet(rest):
    now = time.time_ns()
    assert closed_candles(rest, BTC, "M1", now - 1, now_ns=now) == []
    assert closed_candles(rest, BTC, "M1", now + MIN, now_ns=now) == []


def test_backfill_quotes_four_per_completed_candle_inside_its_period(rest):
    now = time.time_ns()
    since = (now // MIN - 6) * MIN + 17 * 1_000_000_000  # 17 s into a candle, 6 candles ago
    gap = backfill_quotes(rest, BTC, since, 0.5, "M1", now_ns=now)
    rows = closed_candles(rest, BTC, "M1", (since // MIN + 1) * MIN, now_ns=now)
    holding = since // MIN * MIN
    assert gap.instrument == BTC and gap.since == since
    assert gap.candles == len(rows) == now // MIN - since // MIN - 1
    assert len(gap.ticks) == 4 * gap.candles
    assert gap.first == int(rows[0][0]) * 1_000_000 and gap.last == int(rows[-1][0]) * 1_000_000
    times = [t.time for t in gap.ticks]
    assert all(b > a for a, b in zip(times, times[1:], strict=False)) and times[0] > since
    for k, row in enumerate(rows):
        opened = int(row[0]) * 1_000_000
        assert opened != holding and opened + MIN <= now  # neither since's nor the forming one
        four = gap.ticks[4 * k : 4 * k + 4]
        assert all(opened <= t.time < opened + MIN for t in four)
        assert all(t.ask - t.bid == pytest.approx(0.5) for t in four)
        o, h, lo, c = (float(x) for x in row[1:5])
        path = (o, h, lo, c) if c < o else (o, lo, h, c)
        assert [t.mid for t in four] == pytest.approx(path)


def test_backfill_quotes_with_no_completed_candle_after_since(rest):
    now = time.time_ns()
    gap = backfill_quotes(rest, BTC, now - 1_000_000, 0.1, "M1", now_ns=now)
    assert gap.ticks == [] and gap.candles == 0 and gap.first is None


# -- history -----------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [1, 5, 120])
def test_history_gives_the_last_completed_bars_with_no_quote_sides(settings, count):
    source = CcxtHistorySource(settings)
    before = time.time_ns()
    bars = source.fetch(("BTC/USDT", 1, "Minutes"), count)
    after = time.time_ns()
    assert bars.dtype == BAR_DTYPE and len(bars) == count
    times = bars["time"]
    assert np.all(np.diff(times) == MIN)
    assert before // MIN * MIN - MIN <= times[-1] <= after // MIN * MIN - MIN  # last completed
    for side in ("bid", "ask"):
        for part in ("open", "high", "low", "close"):
            assert np.isnan(bars[f"{side}_{part}"]).all()
    assert (bars["low"] > 0).all() and (bars["volume"] >= 0).all()
    assert (bars["high"] >= np.maximum(bars["open"], bars["close"])).all()
    assert (bars["low"] <= np.minimum(bars["open"], bars["close"])).all()


def test_history_of_no_bars_is_empty(settings):
    bars = CcxtHistorySource(settings).fetch(("BTC/USDT", 1, "Minutes"), 0)
    assert bars.dtype == BAR_DTYPE and len(bars) == 0


def test_history_source_repr_holds_no_credentials(sb, settings):
    source = CcxtHistorySource({**settings, "options": sb.ccxt_options()})
    assert sb.api_key not in repr(source) and sb.secret not in repr(source)
    assert repr(source) == "CcxtHistorySource(exchange='binance')"


@pytest.mark.parametrize(("method", "stamped"), [("book", False), ("ticker", True)])
def test_order_book_tops_and_the_full_ticker_are_quote_sources(sb, settings, method, stamped):
    with Recorder(settings, method=method, silence_timeout=5.0) as rec:
        rec.wait_quotes(6)
        assert rec.stream.using == method
        bid, ask, _ = sb.quote(BTC)
        latest = rec.quotes(BTC)[-1]
        assert (
            latest.bid < latest.ask and abs(latest.mid - float(bid + ask) / 2) < 0.01 * latest.mid
        )
    assert_increasing(rec)
    if stamped:  # the exchange's event time (ms), not the moment it arrived
        assert all(t.time % 1_000_000 == 0 for t in rec.quotes(BTC)[:3])


def test_auto_uses_the_order_book_where_the_top_of_book_stream_is_missing(sb, settings):
    options = {**settings["options"], "has": {"watchBidsAsks": False}}
    with Recorder({**settings, "options": options}, silence_timeout=5.0) as rec:
        rec.wait_quotes(4)
        assert rec.stream.using == "book"
