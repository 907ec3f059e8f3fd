"""Streams: line reassembly, reconnects, silence detection, backfill, transaction catch-up."""

import json
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oanda_support import TOKEN, load, wait_for

from osmarkets.brokers.base import make_order
from osmarkets.brokers.oanda import (
    OandaBroker,
    OandaClient,
    OandaSandbox,
    PriceStream,
    TransactionStream,
    iter_lines,
)
from osmarkets.brokers.oanda.parsers import Heartbeat, Price


def fixture_bytes() -> bytes:
    return b"".join(
        json.dumps(m).encode() + b"\n" for m in load("oandapyV20/pricing_stream.ndjson")
    )


@settings(max_examples=60)
@given(st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=40))
def test_iter_lines_any_chunking(cuts):
    data = fixture_bytes() + b"\n" + fixture_bytes()  # a blank line in the middle is skipped
    chunks, pos = [], 0
    for cut in cuts:
        chunks.append(data[pos : pos + cut])
        pos += cut
    chunks.append(data[pos:])
    lines = list(iter_lines(chunks))
    assert [json.loads(line) for line in lines] == load("oandapyV20/pricing_stream.ndjson") * 2


def test_iter_lines_drops_truncated_tail():
    assert list(iter_lines([b'{"a":1}\n{"b":', b"2"])) == [b'{"a":1}']


class Collector:
    def __init__(self):
        self.prices, self.beats, self.backfills = [], [], []
        self.lock = threading.Lock()

    def price(self, p):
        with self.lock:
            self.prices.append(p)

    def beat(self, b):
        self.beats.append(b)

    def backfill(self, last):
        self.backfills.append(last)


@pytest.fixture
def chunky():
    """A sandbox that cuts every stream line into 7-byte chunks."""
    with OandaSandbox(
        token=TOKEN,
        instruments=["EUR_USD", "USD_JPY"],
        seed=3,
        heartbeat=0.1,
        tick_interval=0.05,
        chunk_size=7,
    ) as sb:
        yield sb


def make_client(sb):
    return OandaClient(
        TOKEN, sb.account_id, rest_url=sb.rest_url, stream_url=sb.stream_url, backoff=0.01
    )


def test_price_stream_over_split_chunks(chunky):
    got = Collector()
    stream = PriceStream(
        make_client(chunky), ["EUR_USD", "USD_JPY"], got.price, on_heartbeat=got.beat, backoff=0.01
    ).start()
    try:
        wait_for(lambda: len({p.instrument for p in got.prices}) == 2 and len(got.beats) >= 2)
    finally:
        stream.stop()
    assert not stream.running
    assert stream.bad_lines == 0 and stream.reconnects == 0
    assert all(isinstance(p, Price) and p.tick.bid < p.tick.ask for p in got.prices)
    assert all(isinstance(b, Heartbeat) for b in got.beats)
    jpy = [p for p in got.prices if p.instrument == "USD_JPY"][0]
    assert jpy.tick.bid > 50  # JPY prices, not EUR_USD


@pytest.mark.parametrize("clean", [False, True])
def test_dropped_stream_reconnects_and_backfills(sandbox, client, clean):
    sandbox.drop_streams(after=5, connections=2, clean=clean)
    got = Collector()
    stream = PriceStream(
        client, ["EUR_USD"], got.price, backfill=got.backfill, backoff=0.01
    ).start()
    try:
        wait_for(lambda: stream.reconnects >= 2 and len(got.prices) > 12)
    finally:
        stream.stop()
    assert sandbox.stream_connections >= 3
    assert len(got.backfills) == stream.reconnects
    # the backfill hook learns the last price time seen before each gap
    assert all(set(b) == {"EUR_USD"} for b in got.backfills)
    assert got.backfills[0]["EUR_USD"] <= got.prices[-1].tick.time


def test_silent_stream_detected(sandbox, client):
    sandbox.silence_streams(connections=1)
    got = Collector()
    stream = PriceStream(client, ["EUR_USD"], got.price, silence_timeout=0.4, backoff=0.01).start()
    try:
        wait_for(lambda: stream.reconnects >= 1 and got.prices)
    finally:
        stream.stop()
    assert sandbox.stream_connections >= 2


def test_wrong_token_stops_the_stream(sandbox):
    bad = OandaClient(
        "nope", sandbox.account_id, rest_url=sandbox.rest_url, stream_url=sandbox.stream_url
    )
    stream = PriceStream(bad, ["EUR_USD"], lambda p: None, backoff=0.01).start()
    wait_for(lambda: not stream.running)
    assert stream.error is not None and stream.error.status == 401
    assert TOKEN not in str(stream.error)


def test_stream_only_on_stream_host(sandbox, client):
    wrong = OandaClient(
        TOKEN, sandbox.account_id, rest_url=sandbox.rest_url, stream_url=sandbox.rest_url
    )
    stream = PriceStream(wrong, ["EUR_USD"], lambda p: None, backoff=0.01).start()
    wait_for(lambda: not stream.running)
    assert stream.error is not None and stream.error.status == 404


def test_handler_errors_are_counted_not_fatal(sandbox, client):
    def boom(price):
        raise RuntimeError("handler bug")

    stream = PriceStream(client, ["EUR_USD"], boom, backoff=0.01).start()
    try:
        wait_for(lambda: stream.handler_errors >= 3)
    finally:
        stream.stop()


def test_transactions_stream_catches_up_after_silence(sandbox, client):
    broker = OandaBroker(client)
    last = broker.account_summary().last_transaction_id
    got: list[dict] = []
    sandbox.silence_streams(connections=1)
    stream = TransactionStream(
        client, got.append, silence_timeout=0.4, last_transaction_id=last, backoff=0.01
    ).start()
    try:
        wait_for(lambda: sandbox.stream_connections >= 1)
        broker.submit(make_order("t1", "buy", 10, "EUR_USD"))  # sent into the silent stream
        wait_for(lambda: stream.reconnects >= 1)
        broker.submit(make_order("t2", "sell", 10, "EUR_USD"))
        wait_for(lambda: sum(t["type"] == "ORDER_FILL" for t in got) == 2)
    finally:
        stream.stop()
    ids = [int(t["id"]) for t in got]
    assert ids == list(range(int(last) + 1, ids[-1] + 1))  # none lost, none twice
    assert [t["clientOrderID"] for t in got if t["type"] == "ORDER_FILL"] == ["t1", "t2"]


def test_sandbox_close_ends_open_streams_quickly(client):
    sb = OandaSandbox(token=TOKEN, instruments=["EUR_USD"], heartbeat=30.0).start()
    c = make_client(sb)
    stream = PriceStream(c, ["EUR_USD"], lambda p: None, backoff=5.0).start()
    wait_for(lambda: sb.stream_connections >= 1)
    sb.close()
    stream.stop(timeout=5.0)
    assert not stream.running
    assert all(not t.is_alive() for t in sb._threads)


# -- reconnection waits (issue: the backoff kept doubling after connections that worked) ------
PRICE_LINE = (
    b'{"type":"PRICE","instrument":"EUR_USD","time":"2024-01-02T07:00:%02d.000000000Z",'
    b'"bids":[{"price":"1.10000","liquidity":1000000}],'
    b'"asks":[{"price":"1.10010","liquidity":1000000}],'
    b'"closeoutBid":"1.09990","closeoutAsk":"1.10020","status":"tradeable","tradeable":true}\n'
)
BEAT_LINE = b'{"type":"HEARTBEAT","time":"2024-01-02T07:00:00.000000000Z"}\n'


class ScriptedStreams:
    """A stream host on 127.0.0.1 that answers the n-th connection as ``plans[n]`` says:
    ``('prices', k)`` / ``('beats', k)`` / ``('garbage', k)``: k such lines, then the
    connection is cut (abruptly, or with the chunked terminator when the plan has a third item
    ``'clean'``); ``('fail',)``: a 503. Connections past the plans get heartbeats until
    closed."""

    def __init__(self, plans):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.plans = list(plans)
        self.connections = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                n = owner.connections
                owner.connections += 1
                plan = owner.plans[n] if n < len(owner.plans) else ("beats", 10**6)
                if plan[0] == "fail":
                    body = b'{"errorMessage":"down"}'
                    self.send_response(503)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.close_connection = True
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                lines = {
                    "prices": [PRICE_LINE % (k % 60) for k in range(plan[1])],
                    "beats": [BEAT_LINE] * plan[1],
                    "garbage": [b"not json\n"] * plan[1],
                }[plan[0]]
                try:
                    for line in lines:
                        self.wfile.write(b"%X\r\n%s\r\n" % (len(line), line))
                        self.wfile.flush()
                        if plan[0] == "beats" and n >= len(owner.plans):
                            time.sleep(0.01)  # past the script: an idle, open stream
                    if plan[2:] == ("clean",):
                        self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def run_recording_waits(client, count, backoff=0.2, max_backoff=100.0, **kwargs):
    """Run a PriceStream in this thread with a sleep that records each reconnection wait
    instead of sleeping; stop after ``count`` waits. Returns (stream, waits, prices)."""
    waits: list[float] = []
    prices: list[Price] = []

    def sleep(seconds):
        waits.append(seconds)
        if len(waits) >= count:
            stream.stop()

    stream = PriceStream(
        client, ["EUR_USD"], prices.append, backoff=backoff, max_backoff=max_backoff,
        sleep=sleep, **kwargs,
    )  # fmt: skip
    stream.run()
    return stream, waits, prices


def assert_waits(waits, multiples, backoff=0.2):
    """Each wait is within its jitter range: between half and all of ``backoff * m``."""
    assert len(waits) == len(multiples), waits
    for wait, m in zip(waits, multiples, strict=True):
        assert backoff * m / 2 <= wait <= backoff * m, (waits, multiples)


@pytest.mark.parametrize("clean", [False, True])
def test_backoff_stays_initial_while_connections_deliver_prices(clean):
    # the issue: each connection delivers prices then drops; waits must not grow
    plans = [("prices", 3, "clean") if clean else ("prices", 3)] * 8
    with ScriptedStreams(plans) as host:
        client = OandaClient(TOKEN, "101-004-1-001", rest_url=host.url, stream_url=host.url)
        stream, waits, prices = run_recording_waits(client, 8)
    assert_waits(waits, [1] * 8)
    assert len(prices) == 24 and stream.connects == 8 and stream.empty_connections == 0


def test_backoff_grows_only_across_connections_without_prices():
    plans = [
        ("fail",), ("fail",), ("fail",),  # could not connect: 1, 2, 4
        ("prices", 2),  # worked, then dropped: back to 1
        ("beats", 3), ("garbage", 2), ("beats", 1, "clean"),  # no price: 1, 2, 4
        ("fail",),  # 8
        ("prices", 1), ("prices", 5, "clean"),  # 1, 1
        ("fail",), ("fail",), ("fail",), ("fail",), ("fail",),  # 1, 2, 4, 8, 8 (the cap)
    ]  # fmt: skip
    with ScriptedStreams(plans) as host:
        client = OandaClient(TOKEN, "101-004-1-001", rest_url=host.url, stream_url=host.url)
        stream, waits, _ = run_recording_waits(client, len(plans), max_backoff=1.6)
    assert_waits(waits, [1, 2, 4, 1, 1, 2, 4, 8, 1, 1, 1, 2, 4, 8, 8])
    assert stream.bad_lines == 2 and stream.heartbeats == 4


def test_backoff_resets_against_the_sandbox_after_abrupt_drops(sandbox, client):
    # the sandbox cuts 6 connections in a row after 4 messages (a snapshot price, then ticks)
    sandbox.drop_streams(after=4, connections=6)
    stream, waits, prices = run_recording_waits(client, 6, backoff=0.05)
    assert_waits(waits, [1] * 6, backoff=0.05)
    assert sandbox.stream_connections == 6 and len(prices) >= 6


def test_transaction_stream_heartbeats_count_as_data():
    stream = TransactionStream.__new__(TransactionStream)
    assert stream.is_data(Heartbeat(0, None))
    price_stream = PriceStream.__new__(PriceStream)
    assert not price_stream.is_data(Heartbeat(0, None))


# -- the gap backfill (issue: KeyError when no candle completed during the gap) ----------------
MINUTE = 60_000_000_000
BA = [f"{side}_{part}" for side in ("bid", "ask") for part in ("open", "high", "low", "close")]


class Frozen:
    """A sandbox whose clock the test sets (``now[0]``, ns), and a client that records the
    keyword arguments of its candles requests (``requests_made``)."""

    def __init__(self, sb: OandaSandbox, now: list[int]) -> None:
        self.sb = sb
        self.now = now
        self.requests_made: list[dict] = []
        self.counting_client = make_client(sb)
        plain = self.counting_client.candles

        def counting(*args, **kwargs):
            self.requests_made.append(kwargs)
            return plain(*args, **kwargs)

        self.counting_client.candles = counting


@pytest.fixture
def frozen():
    from osmarkets.data.types import to_ns

    now = [to_ns("2024-01-02T07:00:30Z")]  # a Tuesday: no weekend within 5100 minutes
    with OandaSandbox(
        token=TOKEN, instruments=["EUR_USD"], seed=11, heartbeat=5.0, tick_interval=5.0,
        clock=lambda: now[0], rate_limit=None,
    ) as sb:  # fmt: skip
        yield Frozen(sb, now)


def candles_between(sb, start, end):
    """The sandbox's complete M1 bid/ask candles opened in [start, end)."""
    raw = make_client(sb).history("EUR_USD", "M1", start, end, price="BA")
    return raw[BA]


def bars_of(ticks):
    from osmarkets.data.aggregate import TickAggregator

    agg = TickAggregator("M1")
    bars = [bar for tick in ticks for bar in agg.update(tick)]
    return bars + [agg.flush()] if ticks else bars


def test_backfill_with_no_completed_candle_is_empty(frozen):
    from osmarkets.brokers.oanda.stream import backfill_gap, gap_candles

    since = frozen.now[0] - 20 * 10**9  # 07:00:10, and now is 07:00:30: the candle is forming
    gap = backfill_gap(frozen.counting_client, "EUR_USD", since)
    assert gap.ticks == [] and gap.candles == 0 and not gap.completed
    assert gap.first is None and gap.last is None
    frame = gap_candles(frozen.counting_client, "EUR_USD", since)
    assert len(frame) == 0 and set(BA) <= set(frame.columns)  # no KeyError for its users


def test_backfill_completes_the_bar_cut_by_the_gap(frozen):
    from osmarkets.brokers.oanda.stream import backfill_gap

    since = frozen.now[0] - 20 * 10**9  # 07:00:10
    frozen.now[0] += MINUTE  # 07:01:30: the candle of 07:00 completed, 07:01 forms
    gap = backfill_gap(frozen.counting_client, "EUR_USD", since)
    assert gap.candles == 0 and gap.completed and len(gap.ticks) == 3
    start = since - since % MINUTE
    assert all(since < t.time < start + MINUTE for t in gap.ticks)
    candle = candles_between(frozen.sb, start, start + MINUTE).iloc[0]
    high, low, close = gap.ticks
    assert (high.bid, high.ask) == (candle["bid_high"], candle["ask_high"])
    assert (low.bid, low.ask) == (candle["bid_low"], candle["ask_low"])
    assert (close.bid, close.ask) == (candle["bid_close"], candle["ask_close"])


@pytest.mark.parametrize("at_boundary", [False, True])
def test_backfill_rebuilds_each_completed_candle(frozen, at_boundary):
    from osmarkets.brokers.oanda.stream import backfill_gap

    start = frozen.now[0] - frozen.now[0] % MINUTE  # 07:00
    since = start if at_boundary else start + 10 * 10**9
    frozen.now[0] = start + 7 * MINUTE + 5 * 10**9  # 07:07:05
    gap = backfill_gap(frozen.counting_client, "EUR_USD", since)
    assert gap.candles == 6 and gap.first == start + MINUTE and gap.last == start + 6 * MINUTE
    times = [t.time for t in gap.ticks]
    assert times == sorted(set(times)) and times[0] > since
    assert len(gap.ticks) == 3 + 6 * 4
    # the bars aggregated from the quotes: the candles' bid/ask OHLC, 4 quotes each
    bars = bars_of(gap.ticks)[1:]  # the first is the bar cut by the gap: its other quotes
    expected = candles_between(frozen.sb, start + MINUTE, start + 7 * MINUTE)
    assert [b.time for b in bars] == list(expected.index.asi8)
    got = [[getattr(b, c) for c in BA] for b in bars]
    assert got == expected.to_numpy().tolist() and {b.volume for b in bars} == {4.0}


@pytest.mark.parametrize("page_size", [5000, 1000])
def test_backfill_pages_through_gaps_longer_than_one_request(frozen, page_size):
    from osmarkets.brokers.oanda.stream import backfill_gap

    since = frozen.now[0]  # 07:00:30
    start = since - since % MINUTE
    frozen.now[0] = start + 5100 * MINUTE + 1  # 5100 candles later (Friday 20:00, no weekend)
    gap = backfill_gap(frozen.counting_client, "EUR_USD", since, page_size=page_size)
    assert gap.completed and gap.candles == 5099  # 07:01 ... the one before the forming one
    assert (gap.first, gap.last) == (start + MINUTE, start + 5099 * MINUTE)
    opens = [t.time for t in gap.ticks[3::4]]
    assert opens == [start + k * MINUTE for k in range(1, 5100)]  # none missing, none twice
    requests = frozen.requests_made
    assert len(requests) >= 2 and all(r["count"] <= 5000 for r in requests)
    assert [r["include_first"] for r in requests] == [True] + [False] * (len(requests) - 1)
