"""The order model's time in force and flags, as OANDA's v20 order requests carry them, and
what OANDA cannot do refused with a reason before any request."""

from __future__ import annotations

from osmarkets.brokers.base import make_order
from osmarkets.brokers.oanda import OandaBroker

T = 1_900_000_000_000_000_000  # 2030: a GTD in the future


def test_flags_map_to_v20_fields(client):
    broker = OandaBroker(client)
    market = broker.order_request(make_order("b-1", "buy", 10, "EUR_USD", brain="b"))
    assert (market["timeInForce"], market["positionFill"]) == ("FOK", "DEFAULT")
    ioc = broker.order_request(make_order("b-2", "buy", 10, "EUR_USD", time_in_force="IOC"))
    assert ioc["timeInForce"] == "IOC"
    gtd = broker.order_request(make_order("b-3", "buy", 10, "EUR_USD", "limit", 1.0,
                                          time_in_force="GTD", expire_time=T))  # fmt: skip
    assert (gtd["timeInForce"], gtd["gtdTime"]) == ("GTD", "2030-03-17T17:46:40.000000000Z")
    fok = broker.order_request(make_order("b-4", "buy", 10, "EUR_USD", "limit", 1.0,
                                          time_in_force="FOK"))  # fmt: skip
    assert fok["timeInForce"] == "FOK"
    reduce = broker.order_request(make_order("b-5", "sell", 10, "EUR_USD", reduce_only=True))
    assert reduce["positionFill"] == "REDUCE_ONLY"


def test_post_only_is_refused_without_a_request(client, sandbox):
    broker = OandaBroker(client)
    before = client.account_summary()["account"]["lastTransactionID"]
    order = make_order("b-1", "buy", 10, "EUR_USD", "limit", 1.0, post_only=True, brain="b")
    (event,) = broker.submit(order)
    assert event.kind == "rejected" and "post_only" in event.reason
    assert client.account_summary()["account"]["lastTransactionID"] == before


def test_reduce_only_with_no_position_does_not_open_one(client, sandbox):
    broker = OandaBroker(client)
    (event,) = broker.submit(make_order("b-1", "sell", 10, "EUR_USD", reduce_only=True,
                                        brain="b"))  # fmt: skip
    assert event.kind == "rejected" and "no long position" in event.reason
    assert broker.position("EUR_USD") == 0
    broker.submit(make_order("b-2", "buy", 10, "EUR_USD", brain="b"))
    events = broker.submit(make_order("b-3", "sell", 10, "EUR_USD", reduce_only=True,
                                      brain="b"))  # fmt: skip
    assert events[-1].kind == "filled" and broker.position("EUR_USD") == 0


def test_an_ioc_partial_fill_then_its_cancel_end_the_order_once():
    from osmarkets.brokers.oanda.parsers import order_response_events

    body = {
        "orderCreateTransaction": {"id": "1", "time": "2024-01-02T10:00:00.000000000Z"},
        "orderFillTransaction": {"units": "400", "price": "1.1", "instrument": "EUR_USD",
                                 "time": "2024-01-02T10:00:00.000000001Z"},
        "orderCancelTransaction": {"reason": "MARKET_ORDER_IOC_PARTIAL",
                                   "time": "2024-01-02T10:00:00.000000002Z"},
    }  # fmt: skip
    events = order_response_events(201, body, "b-1", "EUR_USD", "buy", 1000.0, "b")
    assert [(e.kind, e.size, e.remaining) for e in events] == [
        ("accepted", 1000.0, 0.0), ("filled", 400.0, 600.0), ("cancelled", 600.0, 0.0),
    ]  # fmt: skip
    assert [e.terminal for e in events] == [False, False, True]
