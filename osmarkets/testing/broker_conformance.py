"""The broker conformance kit: one pytest suite every broker adapter passes.

Use it from a test file of your own adapter::

    from osmarkets.testing.broker_conformance import BrokerConformance
    from osmarkets.testing.venues import venue_fixture

    class TestMyBroker(BrokerConformance):
        venue = venue_fixture(MyVenue)   # a Venue subclass on your broker's local sandbox

pytest then runs every case below against it. A case that needs something the venue cannot do
(a capability of :data:`~osmarkets.testing.venues.CAPABILITIES` it does not list) is skipped
with that reason, so the report shows what the adapter supports. The cases check what a
trader's money depends on, whatever the broker:

- every order gets exactly one terminal event, and 'rejected' only when nothing executed;
- fills add up to the order, at a price the market quoted, and move the position by that much;
- a re-sent order (same client id, after a retry or a lost answer) never trades twice;
- a restarted adapter adopts the account (positions, open orders) and reports the fills it
  missed, once;
- balances move by exactly what the fills and their fees say.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest

from ..brokers.base import Order, OrderEvent, make_order, position_change
from ..data.types import Tick
from .venues import Venue

__all__ = ["BrokerConformance", "collect"]


def collect(
    venue: Venue, broker: Any, first: list[OrderEvent], client_id: str,
    until: Callable[[list[OrderEvent]], bool] | None = None,
) -> list[OrderEvent]:  # fmt: skip
    """The events of ``client_id``: ``first`` (what submit returned) plus what settling the
    venue brings, until the order's terminal event (or ``until(events)``) or the venue's
    timeout."""
    done = until or (lambda evs: any(e.terminal for e in evs))
    events = [e for e in first if e.client_id == client_id]
    deadline = time.monotonic() + venue.timeout
    while not done(events) and time.monotonic() < deadline:
        events += [e for e in venue.settle(broker) if e.client_id == client_id]
        if not done(events):
            time.sleep(0.02)
    return events


def _one_terminal(events: list[OrderEvent]) -> OrderEvent:
    ends = [e for e in events if e.terminal and not e.reason.startswith(_PROTECTIVE)]
    assert len(ends) == 1, f"expected exactly one terminal event, got {events}"
    return ends[0]


_PROTECTIVE = ("stop_loss", "take_profit", "trailing_stop")


def _fills(events: list[OrderEvent]) -> list[OrderEvent]:
    return [e for e in events if e.kind == "filled" and not e.reason]


def _moved(venue: Venue, fills: list[OrderEvent]) -> float:
    """How far ``fills`` move the position: their signed sizes, less a fee taken in the asset
    bought (a cash account's position is what it holds)."""
    return sum(position_change(f) for f in _fills(fills))


def _wait(condition: Callable[[], Any], timeout: float, what: str, stream: Any) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if stream.error is not None:
            raise stream.error
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _needs(venue: Venue, *what: str) -> None:
    missing = [name for name in what if name not in venue.capabilities]
    if missing:
        pytest.skip(f"{type(venue).__name__} does not support {', '.join(missing)}")


class BrokerConformance:
    """The suite (see the module docstring). Subclasses provide the ``venue`` fixture."""

    @pytest.fixture
    def venue(self) -> Venue:
        raise NotImplementedError("define the venue fixture: venue = venue_fixture(MyVenue)")

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def start(venue: Venue) -> Any:
        """A broker as a Trader starts one: reconciled with the account first, if it can."""
        broker = venue.broker()
        if hasattr(broker, "reconcile"):
            broker.reconcile()
        return broker

    @staticmethod
    def order(venue: Venue, side: str = "buy", size: float | None = None, **kw: Any) -> Order:
        return make_order(venue.client_id(), side, venue.size if size is None else size,
                          venue.symbol, brain="kit", **kw)  # fmt: skip

    @staticmethod
    def submit(venue: Venue, broker: Any, order: Order) -> list[OrderEvent]:
        return collect(venue, broker, list(broker.submit(order)), order.client_id)

    def flatten(self, venue: Venue, broker: Any) -> None:
        held = broker.position(venue.symbol)
        if held:
            side = "sell" if held > 0 else "buy"
            self.submit(venue, broker, self.order(venue, side, abs(held)))

    # -- market orders -------------------------------------------------------------------------
    def test_market_order_fills_at_a_quoted_price_with_one_terminal_event(self, venue: Venue):
        broker = self.start(venue)
        bid, ask = venue.quote()
        before = broker.position(venue.symbol)
        order = self.order(venue)
        events = self.submit(venue, broker, order)
        end = _one_terminal(events)
        assert end.kind == "filled", events
        fills = _fills(events)
        assert math.isclose(sum(f.size for f in fills), order.size, rel_tol=1e-9)
        spread = ask - bid
        for fill in fills:
            assert bid - spread <= fill.price <= ask + spread, (fill, bid, ask)
            assert fill.client_id == order.client_id and fill.side == "buy"
        assert broker.position(venue.symbol) == pytest.approx(before + _moved(venue, fills))
        assert not [e for e in events if e.kind == "rejected"]
        self.flatten(venue, broker)

    def test_a_sell_reverses_what_a_buy_did(self, venue: Venue):
        broker = self.start(venue)
        before = broker.position(venue.symbol)
        bought = _moved(venue, _fills(self.submit(venue, broker, self.order(venue, "buy"))))
        events = self.submit(venue, broker, self.order(venue, "sell", bought))
        assert _one_terminal(events).kind == "filled"
        assert broker.position(venue.symbol) == pytest.approx(before, abs=venue.size * 1e-6)

    # -- pending orders ------------------------------------------------------------------------
    def test_limit_order_rests_then_fills_at_its_price_or_better(self, venue: Venue):
        _needs(venue, "limit")
        broker = self.start(venue)
        bid, ask = venue.quote()
        limit = round(bid * 0.99, 5)
        order = self.order(venue, type="limit", price=limit)
        first = list(broker.submit(order))
        resting = collect(venue, broker, first, order.client_id,
                          until=lambda evs: bool(evs))  # fmt: skip
        assert resting and all(e.kind == "accepted" for e in resting), resting
        venue.set_price(limit * 0.995, limit * 0.999)
        events = collect(venue, broker, resting, order.client_id)
        end = _one_terminal(events)
        assert end.kind == "filled" and end.price <= limit * (1 + 1e-9), events
        self.flatten(venue, broker)

    def test_stop_order_triggers_when_the_price_goes_through(self, venue: Venue):
        _needs(venue, "stop")
        broker = self.start(venue)
        bid, ask = venue.quote()
        level = round(ask * 1.01, 5)
        order = self.order(venue, type="stop", price=level)
        resting = collect(venue, broker, list(broker.submit(order)), order.client_id,
                          until=lambda evs: bool(evs))  # fmt: skip
        assert all(e.kind == "accepted" for e in resting), resting
        venue.set_price(level * 1.001, level * 1.002)
        end = _one_terminal(collect(venue, broker, resting, order.client_id))
        assert end.kind == "filled" and end.price >= level * (1 - 1e-9)
        self.flatten(venue, broker)

    def test_stop_loss_closes_the_position_it_protects(self, venue: Venue):
        _needs(venue, "stop_loss")
        broker = self.start(venue)
        bid, ask = venue.quote()
        before = broker.position(venue.symbol)
        stop = round(bid * 0.99, 5)
        order = self.order(venue, stop_loss=stop)
        assert _one_terminal(self.submit(venue, broker, order)).kind == "filled"
        venue.set_price(stop * 0.998, stop * 0.999)
        closing = collect(
            venue,
            broker,
            [],
            order.client_id,
            until=lambda evs: any(e.reason == "stop_loss" for e in evs),
        )
        (fill,) = [e for e in closing if e.reason == "stop_loss"]
        assert fill.side == "sell" and fill.size == pytest.approx(order.size)
        assert broker.position(venue.symbol) == pytest.approx(before, abs=venue.size * 1e-6)

    def test_take_profit_closes_the_position_it_protects(self, venue: Venue):
        _needs(venue, "take_profit")
        broker = self.start(venue)
        bid, ask = venue.quote()
        target = round(ask * 1.01, 5)
        order = self.order(venue, take_profit=target)
        assert _one_terminal(self.submit(venue, broker, order)).kind == "filled"
        venue.set_price(target * 1.001, target * 1.002)
        closing = collect(
            venue,
            broker,
            [],
            order.client_id,
            until=lambda evs: any(e.reason == "take_profit" for e in evs),
        )
        (fill,) = [e for e in closing if e.reason == "take_profit"]
        assert fill.side == "sell" and fill.price >= target * (1 - 1e-9)

    # -- cancel --------------------------------------------------------------------------------
    def test_cancel_ends_a_resting_order_and_a_second_cancel_is_refused(self, venue: Venue):
        _needs(venue, "limit")
        broker = self.start(venue)
        bid, _ = venue.quote()
        order = self.order(venue, type="limit", price=round(bid * 0.9, 5))
        resting = collect(venue, broker, list(broker.submit(order)), order.client_id,
                          until=lambda evs: bool(evs))  # fmt: skip
        assert all(e.kind == "accepted" for e in resting)
        cancelled = [e for e in broker.cancel(order.client_id) if e.client_id == order.client_id]
        assert [e.kind for e in cancelled] == ["cancelled"], cancelled
        again = broker.cancel(order.client_id)
        assert again and all(e.kind == "rejected" and e.reason for e in again), again
        assert not any(e.terminal for e in again)  # a refused request, not the order's end
        unknown = broker.cancel(venue.client_id())
        assert unknown and all(e.kind == "rejected" and e.reason for e in unknown)
        assert broker.position(venue.symbol) == pytest.approx(broker.position(venue.symbol))

    # -- rejects -------------------------------------------------------------------------------
    def test_an_unaffordable_order_is_rejected_with_a_reason_and_nothing_trades(self, venue):
        broker = self.start(venue)
        before = broker.position(venue.symbol)
        events = self.submit(venue, broker, self.order(venue, size=venue.size * 1e7))
        end = _one_terminal(events)
        assert end.kind == "rejected" and end.reason, events
        assert not _fills(events)
        assert broker.position(venue.symbol) == pytest.approx(before)

    def test_an_unknown_instrument_is_rejected_with_a_reason(self, venue: Venue):
        _needs(venue, "catalogue")
        broker = self.start(venue)
        order = make_order(venue.client_id(), "buy", venue.size, "NOPE_NOPE", brain="kit")
        events = collect(venue, broker, list(broker.submit(order)), order.client_id)
        end = _one_terminal(events)
        assert end.kind == "rejected" and end.reason

    # -- idempotence ---------------------------------------------------------------------------
    def test_a_resent_order_never_trades_twice(self, venue: Venue):
        broker = self.start(venue)
        before = broker.position(venue.symbol)
        order = self.order(venue)
        first = self.submit(venue, broker, order)
        assert _one_terminal(first).kind == "filled"
        again = collect(venue, broker, list(broker.submit(order)), order.client_id,
                        until=lambda evs: True)  # fmt: skip
        assert not [e for e in again if e.kind == "filled"], again
        assert not [e for e in again if e.kind == "rejected" and "duplicate" not in e.reason]
        assert broker.position(venue.symbol) == pytest.approx(before + _moved(venue, first))
        self.flatten(venue, broker)

    def test_an_order_whose_answer_was_lost_trades_once(self, venue: Venue):
        _needs(venue, "lost_response")
        broker = self.start(venue)
        before = broker.position(venue.symbol)
        order = self.order(venue)
        venue.lose_response()
        first = list(broker.submit(order))  # no answer: the adapter must not say 'rejected'
        assert not [e for e in first if e.kind == "rejected"], first
        events = collect(venue, broker, first + list(broker.submit(order)), order.client_id)
        assert _one_terminal(events).kind == "filled", events
        assert sum(f.size for f in _fills(events)) == pytest.approx(order.size)
        assert broker.position(venue.symbol) == pytest.approx(before + _moved(venue, events))
        self.flatten(venue, broker)

    # -- partial fills -------------------------------------------------------------------------
    def test_partial_fills_add_up_and_end_once(self, venue: Venue):
        _needs(venue, "partial_fills")
        broker = self.start(venue)
        order = self.order(venue, size=venue.size * 3)
        with venue.partial_liquidity(venue.size):
            events = self.submit(venue, broker, order)
        fills = _fills(events)
        assert len(fills) >= 2, events
        remaining = [f.remaining for f in fills]
        assert remaining == sorted(remaining, reverse=True) and remaining[-1] == 0
        assert sum(f.size for f in fills) == pytest.approx(order.size)
        for fill in fills:
            assert fill.remaining == pytest.approx(
                order.size - sum(f.size for f in fills[: fills.index(fill) + 1])
            )
        assert _one_terminal(events) is fills[-1]
        self.flatten(venue, broker)

    # -- time in force and flags ---------------------------------------------------------------
    def test_ioc_limit_that_cannot_fill_is_cancelled(self, venue: Venue):
        _needs(venue, "ioc", "limit")
        broker = self.start(venue)
        bid, _ = venue.quote()
        order = self.order(venue, type="limit", price=round(bid * 0.9, 5), time_in_force="IOC")
        end = _one_terminal(self.submit(venue, broker, order))
        assert end.kind == "cancelled" and end.reason

    def test_fok_that_cannot_fill_entirely_trades_nothing(self, venue: Venue):
        _needs(venue, "fok", "partial_fills")
        broker = self.start(venue)
        before = broker.position(venue.symbol)
        with venue.partial_liquidity(venue.size):
            events = self.submit(venue, broker, self.order(venue, size=venue.size * 3,
                                                           time_in_force="FOK"))  # fmt: skip
        assert _one_terminal(events).kind in ("cancelled", "rejected") and not _fills(events)
        assert broker.position(venue.symbol) == pytest.approx(before)

    def test_reduce_only_never_opens_a_position(self, venue: Venue):
        _needs(venue, "reduce_only")
        broker = self.start(venue)
        self.flatten(venue, broker)
        events = self.submit(venue, broker, self.order(venue, "sell", reduce_only=True))
        assert _one_terminal(events).kind == "rejected" and "reduce_only" in events[-1].reason
        assert broker.position(venue.symbol) == pytest.approx(0.0, abs=venue.size * 1e-6)

    def test_post_only_that_would_take_is_refused(self, venue: Venue):
        _needs(venue, "post_only")
        broker = self.start(venue)
        _, ask = venue.quote()
        order = self.order(venue, type="limit", price=round(ask * 1.01, 5), post_only=True)
        events = self.submit(venue, broker, order)
        assert _one_terminal(events).kind in ("rejected", "cancelled") and not _fills(events)

    def test_fractional_sizes_on_the_step_trade_and_finer_ones_are_refused(self, venue):
        _needs(venue, "fractional")
        broker = self.start(venue)
        fine = venue.fine_size()
        events = self.submit(venue, broker, self.order(venue, size=fine))
        assert _one_terminal(events).kind == "filled"
        assert sum(f.size for f in _fills(events)) == pytest.approx(fine, rel=1e-12)
        bad = self.submit(venue, broker, self.order(venue, size=venue.bad_size()))
        end = _one_terminal(bad)
        assert end.kind == "rejected" and end.reason and not _fills(bad)
        self.flatten(venue, broker)

    # -- restart -------------------------------------------------------------------------------
    def test_a_restarted_adapter_adopts_the_account_and_reports_missed_fills_once(self, venue):
        _needs(venue, "reconcile", "limit")
        first = self.start(venue)
        before = first.position(venue.symbol)
        opened = self.submit(venue, first, self.order(venue))  # a position
        bid, _ = venue.quote()
        limit = round(bid * 0.99, 5)
        resting = self.order(venue, type="limit", price=limit)
        collect(venue, first, list(first.submit(resting)), resting.client_id,
                until=lambda evs: bool(evs))  # fmt: skip
        far = self.order(venue, type="limit", price=round(bid * 0.8, 5))
        collect(venue, first, list(first.submit(far)), far.client_id, until=lambda evs: bool(evs))
        # the first adapter dies; meanwhile the resting order fills at the venue
        venue.set_price(limit * 0.995, limit * 0.999)
        second = venue.broker()
        report = second.reconcile()
        missed = [e for e in report.missed_events if e.client_id == resting.client_id]
        assert [e.kind for e in missed if e.kind == "filled"] == ["filled"], report
        moved = _moved(venue, _fills(opened) + _fills(missed))
        assert second.position(venue.symbol) == pytest.approx(before + moved)
        later = [e for e in venue.settle(second) if e.client_id == resting.client_id]
        assert not [e for e in later if e.kind == "filled"], later  # reported once only
        # its open orders are known: the far one cancels by client id
        assert [e.kind for e in second.cancel(far.client_id)] == ["cancelled"]
        self.flatten(venue, second)

    # -- prices -------------------------------------------------------------------------------
    def test_a_dropped_stream_reconnects_without_a_lost_bar(self, venue: Venue):
        _needs(venue, "stream")
        quotes: list[tuple[Tick, bool]] = []
        stream = venue.open_stream(lambda tick, backfilled: quotes.append((tick, backfilled)))
        try:
            _wait(lambda: len(quotes) >= 5, 30, "the first quotes", stream)
            venue.interrupt_stream()
            _wait(lambda: any(b for _, b in quotes), 60, "the backfill after the gap", stream)
            seen = len(quotes)
            _wait(lambda: any(not b for _, b in quotes[seen:]), 30, "live quotes again", stream)
        finally:
            stream.stop()
        times = [tick.time for tick, _ in quotes]
        assert times == sorted(times) and len(set(times)) == len(times), "quotes out of order"
        period = int(venue.bar_seconds * 1e9)
        first = next(i for i, (_, b) in enumerate(quotes) if b)
        before, after = quotes[first - 1][0].time, quotes[first][0].time
        live_after = next(t.time for t, b in quotes[first:] if not b)
        # at least one whole bar lies between the last quote before the gap and the first
        # live one after it: without the backfill it would be lost
        assert live_after // period - before // period >= 2, "the gap was too short"
        bars = {t // period for t in times}
        missing = [b for b in range(min(bars), max(bars) + 1) if b not in bars]
        assert not missing, f"bars lost: {len(missing)} (backfill began {after - before} ns on)"

    # -- money ---------------------------------------------------------------------------------
    def test_balances_move_by_exactly_what_fills_and_fees_say(self, venue: Venue):
        broker = self.start(venue)
        self.flatten(venue, broker)
        start = venue.balances(broker)
        events = self.submit(venue, broker, self.order(venue, "buy"))
        held = broker.position(venue.symbol)
        events += self.submit(venue, broker, self.order(venue, "sell", abs(held)))
        assert broker.position(venue.symbol) == pytest.approx(0.0, abs=venue.size * 1e-6)
        end = venue.balances(broker)
        fills = _fills(events)
        expected = {k: 0.0 for k in start}
        expected[venue.currency] = -sum(f.signed_size * f.price for f in fills)
        if "cash" in venue.capabilities:  # the asset bought and sold is a balance too
            expected[venue.base] = sum(f.signed_size for f in fills)
        for fill in fills:
            currency = fill.fee_currency or venue.currency
            if currency == venue.currency:
                expected[venue.currency] -= fill.commission
            elif currency in expected:
                expected[currency] -= fill.fee
        for currency, change in expected.items():
            moved = end.get(currency, 0.0) - start.get(currency, 0.0)
            assert moved == pytest.approx(change, abs=venue.money_tolerance), (
                currency, moved, change, fills,
            )  # fmt: skip
