"""The order model exchanges need: time in force, partial fills, fees, reduce-only, post-only,
on the simulated broker (the conformance kit runs the same cases on every broker)."""

from __future__ import annotations

import datetime
import math

import numpy as np
import pandas as pd
import pytest

from osmarkets import Brain
from osmarkets.backtest import backtest
from osmarkets.brokers.base import Order, OrderEvent, check_order, event_key, make_order
from osmarkets.brokers.simulated import Commission, SimulatedBroker
from osmarkets.data.types import Tick

T0 = 1_700_000_000_000_000_000
SEC = 1_000_000_000


def tick(t: int, bid: float, ask: float) -> Tick:
    return Tick(T0 + t * SEC, bid, ask)


def order(cid: str = "b-1", side: str = "buy", size: float = 10, **kw) -> Order:
    return make_order(cid, side, size, "X", brain="b", **kw)


def run(broker: SimulatedBroker, *quotes: tuple[float, float]) -> list[OrderEvent]:
    events: list[OrderEvent] = []
    for k, (bid, ask) in enumerate(quotes, start=1):
        events += broker.on_tick("X", tick(k, bid, ask))
    return events


def primed(**kw) -> SimulatedBroker:
    broker = SimulatedBroker(1_000_000, **kw)
    broker.on_tick("X", tick(0, 99.0, 101.0))
    return broker


# -- make_order / check_order ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"time_in_force": "DAY"}, "time_in_force"),
        ({"type": "limit", "price": 1.0, "time_in_force": "GTD"}, "expire_time"),
        ({"type": "limit", "price": 1.0, "expire_time": 5}, "expire_time"),
        ({"time_in_force": "GTD", "expire_time": 5}, "time_in_force"),
        ({"type": "limit", "price": 1.0, "expire_time": -1, "time_in_force": "GTD"},
         "expire_time"),
        ({"post_only": True}, "post_only"),
        ({"type": "limit", "price": 1.0, "post_only": True, "time_in_force": "IOC"}, "post_only"),
        ({"reduce_only": 1}, "reduce_only"),
        ({"post_only": "yes", "type": "limit", "price": 1.0}, "post_only"),
    ],
)  # fmt: skip
def test_make_order_names_the_bad_field(kw, field):
    with pytest.raises(ValueError, match=field):
        order(**kw)


def test_check_order_refuses_what_make_order_refuses():
    good = order(type="limit", price=100.0, time_in_force="GTD", expire_time=T0)
    assert check_order(good) is None
    assert "time_in_force" in check_order(good._replace(time_in_force="NOW"))
    assert "expire_time" in check_order(good._replace(expire_time=0))
    assert "post_only" in check_order(good._replace(post_only=True, type="stop"))
    assert "reduce_only" in check_order(good._replace(reduce_only="true"))


def test_terminal_and_event_key_of_partial_fills():
    part = OrderEvent("filled", "b-1", "X", "buy", 4.0, 100.0, 5, remaining=6.0)
    last = part._replace(size=6.0, remaining=0.0)
    assert not part.terminal and last.terminal
    assert OrderEvent("cancelled", "b-1", "X", "buy", 6.0).terminal
    assert not OrderEvent("accepted", "b-1", "X", "buy", 6.0).terminal
    assert OrderEvent("rejected", "b-1", "X", "buy", 6.0, reason="no").terminal
    # a refused cancel request (size 0) is not the end of the order
    assert not OrderEvent("rejected", "b-1", "", "", 0.0, reason="already filled").terminal
    # two parts of the same size at the same time are two events, not a copy
    assert event_key(part) != event_key(part._replace(remaining=2.0))


# -- time in force -----------------------------------------------------------------------------
def test_ioc_limit_not_marketable_is_cancelled_at_its_first_price():
    broker = primed()
    assert [e.kind for e in broker.submit(order(type="limit", price=95.0, time_in_force="IOC"))
            ] == ["accepted"]  # fmt: skip
    events = run(broker, (99.0, 101.0), (90.0, 92.0))
    assert [(e.kind, e.reason) for e in events] == [("cancelled", "IOC: not marketable")]
    assert broker.position("X") == 0 and not broker.pending_orders


def test_ioc_limit_marketable_fills_at_the_better_price():
    broker = primed()
    broker.submit(order(type="limit", price=102.0, time_in_force="IOC"))
    (fill,) = run(broker, (99.0, 101.0))
    assert (fill.kind, fill.price, fill.size, fill.remaining) == ("filled", 101.0, 10.0, 0.0)


def test_ioc_market_fills_what_there_is_and_cancels_the_rest():
    broker = primed(max_fill=4)
    broker.submit(order(time_in_force="IOC"))
    fill, rest = run(broker, (99.0, 101.0))
    assert (fill.kind, fill.size, fill.remaining) == ("filled", 4.0, 6.0)
    assert (rest.kind, rest.size) == ("cancelled", 6.0) and rest.terminal
    assert broker.position("X") == 4.0


def test_fok_that_cannot_fill_entirely_is_cancelled_and_nothing_trades():
    broker = primed(max_fill=4)
    broker.submit(order(time_in_force="FOK"))
    (event,) = run(broker, (99.0, 101.0))
    assert (event.kind, event.size) == ("cancelled", 10.0) and "FOK" in event.reason
    assert broker.position("X") == 0 and broker.balance == 1_000_000


def test_fok_that_can_fill_fills_entirely():
    broker = primed(max_fill=40)
    broker.submit(order(time_in_force="FOK"))
    (event,) = run(broker, (99.0, 101.0))
    assert (event.kind, event.size, event.remaining) == ("filled", 10.0, 0.0)


def test_gtd_limit_expires_at_its_time_and_not_before():
    broker = primed()
    broker.submit(order(type="limit", price=90.0, time_in_force="GTD", expire_time=T0 + 3 * SEC))
    assert run(broker, (99.0, 101.0), (98.0, 100.0)) == []  # t = 1, 2: still open
    (event,) = run(broker, (97.0, 99.0), (97.0, 99.0), (80.0, 82.0))[:1]  # t = 3: expired
    assert (event.kind, event.reason, event.time) == ("cancelled", "expired (GTD)", T0 + 3 * SEC)
    assert broker.position("X") == 0 and not broker.pending_orders


# -- partial fills -----------------------------------------------------------------------------
def test_a_large_market_order_fills_in_parts_until_done():
    broker = primed(max_fill=4, commission=Commission(per_unit=0.5))
    broker.submit(order())
    events = run(broker, (99.0, 101.0), (100.0, 102.0), (101.0, 103.0), (101.0, 103.0))
    assert [(e.kind, e.size, e.remaining, e.price) for e in events] == [
        ("filled", 4.0, 6.0, 101.0), ("filled", 4.0, 2.0, 102.0), ("filled", 2.0, 0.0, 103.0),
    ]  # fmt: skip
    assert [e.terminal for e in events] == [False, False, True]
    assert [e.commission for e in events] == [2.0, 2.0, 1.0] == [e.fee for e in events]
    assert broker.position("X") == 10.0
    assert broker.average_price("X") == pytest.approx((4 * 101 + 4 * 102 + 2 * 103) / 10)
    assert broker.balance == pytest.approx(1_000_000 - 5.0)  # the fees, exactly


def test_cancel_after_a_partial_fill_cancels_the_rest():
    broker = primed(max_fill=3)
    broker.submit(order(type="limit", price=101.0))
    (part,) = run(broker, (99.0, 101.0))
    assert (part.size, part.remaining) == (3.0, 7.0)
    (cancelled,) = broker.cancel("b-1")
    assert (cancelled.kind, cancelled.size) == ("cancelled", 7.0)
    assert broker.cancel("b-1")[0].kind == "rejected"
    assert run(broker, (90.0, 92.0)) == [] and broker.position("X") == 3.0


def test_a_resting_limit_fills_in_parts_across_bars():
    index = pd.date_range("2024-01-01", periods=6, freq="1min", tz="UTC", name="time")
    bars = pd.DataFrame({"open": [100, 100, 99, 99, 99, 99], "high": [101] * 6,
                         "low": [98.5] * 6, "close": [100, 99, 99, 99, 99, 99],
                         "volume": [1.0] * 6}, index=index)  # fmt: skip

    class Once(Brain):
        def on_start(self):
            self.events = []

        def on_new_bar(self, series):
            if len(series) == 1:
                self.send_order("buy", 10, "X", type="limit", price=99.0)

        def on_order_event(self, event):
            self.events.append(event)

    result = backtest(Once, bars, ("X", 1, "Minutes"), max_fill=4.0)
    assert list(result.trades["size"]) == [4.0, 4.0, 2.0]
    (row,) = result.orders.itertuples()
    assert (row.state, row.filled_size) == ("filled", 10.0)


# -- reduce-only, post-only --------------------------------------------------------------------
def test_reduce_only_without_a_position_is_rejected():
    broker = primed()
    (event,) = broker.submit(order(reduce_only=True))
    assert event.kind == "rejected" and "reduce_only" in event.reason


def test_reduce_only_is_cut_to_the_position():
    broker = primed()
    broker.submit(order("b-1", "buy", 6))
    run(broker, (99.0, 101.0))
    broker.submit(order("b-2", "sell", 10, reduce_only=True))
    fill, rest = run(broker, (99.0, 101.0))
    assert (fill.kind, fill.size, fill.remaining) == ("filled", 6.0, 4.0)
    assert (rest.kind, rest.size) == ("cancelled", 4.0) and "reduce_only" in rest.reason
    assert broker.position("X") == 0.0


def test_reduce_only_same_side_as_the_position_is_rejected():
    broker = primed()
    broker.submit(order("b-1", "buy", 6))
    run(broker, (99.0, 101.0))
    (event,) = broker.submit(order("b-2", "buy", 1, reduce_only=True))
    assert event.kind == "rejected" and "no short position" in event.reason


def test_post_only_that_would_take_is_rejected_and_one_that_rests_fills_later():
    broker = primed()
    (taker,) = broker.submit(order("b-1", type="limit", price=101.0, post_only=True))
    assert taker.kind == "rejected" and "post_only" in taker.reason
    (maker,) = broker.submit(order("b-2", type="limit", price=100.0, post_only=True))
    assert maker.kind == "accepted"
    (fill,) = run(broker, (98.0, 100.0))
    assert (fill.kind, fill.price) == ("filled", 100.0)


# -- fees and fractional sizes -----------------------------------------------------------------
def test_fees_carry_the_account_currency():
    broker = SimulatedBroker(1000, commission=Commission(fraction=0.001), currency="USD")
    broker.on_tick("X", tick(0, 99.0, 101.0))
    broker.submit(order(size=0.12345))
    (fill,) = run(broker, (99.0, 101.0))
    assert fill.fee_currency == "USD" and fill.fee == fill.commission
    assert fill.commission == pytest.approx(0.12345 * 101.0 * 0.001)


def test_fractional_sizes_follow_the_instrument_step():
    from osmarkets.instruments import Instrument

    spec = Instrument("X", lot_size=0.00001, min_size=0.00001)
    broker = SimulatedBroker(1_000_000, instruments=[spec])
    assert broker.submit(order(size=0.00123))[0].kind == "accepted"
    (bad,) = broker.submit(order("b-2", size=0.000123456))
    assert bad.kind == "rejected" and "lot size" in bad.reason


# -- the Brain's send_order --------------------------------------------------------------------
def test_send_order_takes_the_new_fields_and_refuses_a_naive_expiry():
    index = pd.date_range("2024-01-01", periods=4, freq="1min", tz="UTC", name="time")
    closes = np.array([100.0, 100.5, 101.0, 101.5])
    bars = pd.DataFrame({"open": closes, "high": closes + 1, "low": closes - 1,
                         "close": closes, "volume": 1.0}, index=index)  # fmt: skip
    expiry = datetime.datetime(2024, 1, 1, 0, 2, tzinfo=datetime.UTC)
    errors = []

    class Flags(Brain):
        def on_new_bar(self, series):
            if len(series) == 1:
                self.send_order("buy", 1, "X", type="limit", price=90.0, time_in_force="GTD",
                                expire_time=expiry)  # fmt: skip
                try:
                    self.send_order("buy", 1, "X", type="limit", price=90.0,
                                    time_in_force="GTD",
                                    expire_time=expiry.replace(tzinfo=None))  # fmt: skip
                except ValueError as exc:
                    errors.append(str(exc))

    result = backtest(Flags, bars, ("X", 1, "Minutes"))
    (row,) = result.orders.itertuples()
    assert row.state == "expired" and math.isnan(row.fill_price)
    assert errors and "timezone-aware" in errors[0]


# -- edges found in review ---------------------------------------------------------------------
def test_a_margin_failure_after_partial_fills_cancels_the_rest_never_rejects():
    broker = SimulatedBroker(1_000, margin_rate=0.02, max_fill=10_000)
    broker.on_tick("X", tick(0, 1.1, 1.1001))
    broker.submit(order(size=44_000))  # affordable at 1.1
    events = []
    for k, bid in enumerate([1.1, 1.09, 1.09, 1.09, 1.09], start=1):  # the price falls
        events += broker.on_tick("X", tick(k, bid, bid + 0.0001))
    fills = [e for e in events if e.kind == "filled"]
    assert fills and not [e for e in events if e.kind == "rejected"]
    (end,) = [e for e in events if e.terminal]
    assert end.kind == "cancelled" and "insufficient margin" in end.reason
    assert end.size == pytest.approx(44_000 - sum(f.size for f in fills))


def test_the_rest_of_a_triggered_stop_fills_as_a_market_order():
    broker = primed(max_fill=1_000)
    broker.submit(order(size=3_000, type="stop", price=102.0))
    first = run(broker, (102.5, 103.0))  # triggers: 1,000 fill
    assert [(e.kind, e.size) for e in first] == [("filled", 1_000.0)]
    rest = run(broker, (95.0, 96.0), (94.0, 95.0))  # back below the stop: the rest still fills
    assert [(e.kind, e.size, e.price) for e in rest] == [
        ("filled", 1_000.0, 96.0), ("filled", 1_000.0, 95.0),
    ]  # fmt: skip
    assert rest[-1].terminal and broker.position("X") == 3_000


def test_a_copy_of_a_pending_order_is_refused_without_ending_it():
    broker = primed()
    original = order(type="limit", price=90.0)
    broker.submit(original)
    (copy,) = broker.submit(original)
    assert copy.kind == "rejected" and "duplicate" in copy.reason and not copy.terminal
    assert [e.kind for e in broker.cancel(original.client_id)] == ["cancelled"]


def test_cancelling_an_order_that_ended_unfilled_says_so():
    broker = primed()
    broker.submit(order(type="limit", price=90.0, time_in_force="IOC"))
    run(broker, (99.0, 101.0))
    (refused,) = broker.cancel("b-1")
    assert (refused.kind, refused.reason, refused.terminal) == ("rejected", "already ended", False)
