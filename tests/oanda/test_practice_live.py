"""Opt-in checks against the real OANDA practice environment.

Runs only when OANDA_ACCESS_TOKEN and OANDA_ACCOUNT_ID are set; never in CI. It reads the
account and history, and trades one unit of EUR_USD (opened and closed) on the practice account.
"""

import os

import pandas as pd
import pytest

from osmarkets.brokers.base import make_order
from osmarkets.brokers.oanda import OandaBroker, OandaClient, PriceStream

pytestmark = pytest.mark.skipif(
    not (os.environ.get("OANDA_ACCESS_TOKEN") and os.environ.get("OANDA_ACCOUNT_ID")),
    reason="set OANDA_ACCESS_TOKEN and OANDA_ACCOUNT_ID to run against the practice API",
)


@pytest.fixture(scope="module")
def client():
    with OandaClient(account_id=os.environ["OANDA_ACCOUNT_ID"], environment="practice") as c:
        yield c


def test_account_and_instruments(client):
    broker = OandaBroker(client)
    assert broker.account_summary().id == os.environ["OANDA_ACCOUNT_ID"]
    assert client.instrument("EUR_USD").display_precision == 5


def test_history_paginates(client):
    end = pd.Timestamp.now(tz="UTC").floor("D") - pd.Timedelta(days=7)
    frame = client.history("EUR_USD", "M1", end - pd.Timedelta(days=6), end, price="BA")
    assert len(frame) > 5000 and frame.index.is_unique


def test_stream_receives_something(client):
    import threading

    got = threading.Event()
    stream = PriceStream(
        client, ["EUR_USD"], lambda p: got.set(), on_heartbeat=lambda h: got.set()
    ).start()
    try:
        assert got.wait(15)
    finally:
        stream.stop()


def test_one_unit_round_trip(client):
    broker = OandaBroker(client)
    before = broker.position("EUR_USD")
    tag = f"osm-test-{pd.Timestamp.now().value}"
    events = broker.submit(make_order(tag + "-o", "buy", 1, "EUR_USD"))
    if events[-1].kind == "filled":
        broker.submit(make_order(tag + "-c", "sell", 1, "EUR_USD"))
        assert broker.position("EUR_USD") == before
    else:
        assert events[-1].kind == "rejected"  # market closed: a reject with a reason
        assert events[-1].reason
