"""Streams: line reassembly, reconnects, silence detection, backfill, transaction catch-up."""

import json
import threading

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
    assert stream.error.status == 404


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
