"""The simulated broker: order types, the intrabar path, gaps, netting, costs and margin."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from osmarkets.brokers.base import Order, make_order
from osmarkets.brokers.simulated import Commission, SimulatedBroker
from osmarkets.data.types import Bar

MIN = 60_000_000_000
_ids = iter(range(1, 1_000_000))


def order(side, size, type="market", price=None, symbol="X", **kw):
    return make_order(f"o{next(_ids)}", side, size, symbol, type, price, **kw)


def bar(i, o, h, low, c):
    return Bar(i * MIN, o, h, low, c, 1.0)


def quoted(i, mid_ohlc, spread):
    o, h, low, c = mid_ohlc
    half = spread / 2
    return Bar(
        i * MIN, o, h, low, c, 1.0,
        o - half, h - half, low - half, c - half,
        o + half, h + half, low + half, c + half,
    )  # fmt: skip


def fills(events):
    return [e for e in events if e.kind == "filled"]


def kinds(events):
    return [e.kind for e in events]


def test_market_order_waits_for_next_open():
    b = SimulatedBroker(1000)
    b.on_bar("X", bar(0, 10, 11, 9, 10.5))
    events = b.submit(order("buy", 2))
    assert kinds(events) == ["accepted"]
    assert b.position("X") == 0
    events = b.on_bar("X", bar(1, 10.2, 11, 9, 10.8))
    (f,) = fills(events)
    assert (f.side, f.size, f.price, f.time) == ("buy", 2, 10.2, MIN)
    assert b.position("X") == 2
    # marked at the close: 2 * (10.8 - 10.2)
    assert b.unrealized_pnl == pytest.approx(1.2)
    assert b.equity == pytest.approx(1001.2)


def test_spread_on_plain_bars_and_quotes_on_quoted_bars():
    b = SimulatedBroker(10_000, spread={"X": 0.2})
    b.submit(order("buy", 1))
    assert fills(b.on_bar("X", bar(0, 10, 11, 9, 10)))[0].price == pytest.approx(10.1)
    b.submit(order("sell", 1))
    assert fills(b.on_bar("X", bar(1, 10, 11, 9, 10)))[0].price == pytest.approx(9.9)
    q = SimulatedBroker(10_000, spread=5.0)  # ignored: the bar carries quotes
    q.submit(order("buy", 1))
    assert fills(q.on_bar("X", quoted(0, (10, 11, 9, 10), 0.02)))[0].price == pytest.approx(10.01)


def test_slippage_is_adverse_and_commission_is_charged():
    fee = Commission(per_unit=0.01, fraction=0.001, minimum=0.5)
    b = SimulatedBroker(10_000, slippage=0.05, commission=fee)
    b.submit(order("buy", 100))
    (f,) = fills(b.on_bar("X", bar(0, 10, 11, 9, 10)))
    assert f.price == pytest.approx(10.05)
    assert f.commission == pytest.approx(100 * 0.01 + 0.001 * 100 * 10.05)
    b.submit(order("sell", 1))
    (g,) = fills(b.on_bar("X", bar(1, 10, 11, 9, 10)))
    assert g.price == pytest.approx(9.95)
    assert g.commission == pytest.approx(0.5)  # the minimum
    assert b.balance == pytest.approx(10_000 - f.commission - g.commission + (9.95 - 10.05))


def test_limit_orders_fill_at_their_price_or_a_better_open():
    b = SimulatedBroker(10_000)
    b.on_bar("X", bar(0, 10, 10, 10, 10))
    b.submit(order("buy", 1, "limit", 9.5))
    assert fills(b.on_bar("X", bar(1, 10, 10.5, 9.6, 10))) == []  # not reached
    (f,) = fills(b.on_bar("X", bar(2, 10, 10.5, 9.0, 10)))
    assert f.price == 9.5
    b.submit(order("sell", 1, "limit", 11))
    (g,) = fills(b.on_bar("X", bar(3, 12, 12.5, 11.5, 12)))  # gap up through the limit
    assert g.price == 12


def test_stop_fills_at_level_or_at_a_gap_open():
    b = SimulatedBroker(10_000)
    b.on_bar("X", bar(0, 10, 10, 10, 10))
    b.submit(order("buy", 1, "stop", 10.5))
    (f,) = fills(b.on_bar("X", bar(1, 10, 11, 9.5, 10.8)))
    assert f.price == 10.5
    b.submit(order("sell", 1, "stop", 9.0))
    (g,) = fills(b.on_bar("X", bar(2, 8.0, 8.5, 7.5, 8.2)))  # gap down below the stop
    assert g.price == 8.0
    assert b.position("X") == 0


def test_gap_through_stop_loss_fills_at_open():
    b = SimulatedBroker(10_000)
    b.submit(order("buy", 10, stop_loss=9.0))
    b.on_bar("X", bar(0, 10, 10.2, 9.8, 10))
    (f,) = fills(b.on_bar("X", bar(1, 8.5, 8.8, 8.0, 8.6)))
    assert (f.reason, f.side, f.size, f.price) == ("stop_loss", "sell", 10, 8.5)
    assert b.position("X") == 0
    assert b.realized_pnl == pytest.approx(10 * (8.5 - 10))


@pytest.mark.parametrize(
    ("ohlc", "first"),
    [
        ((10, 12, 8, 11), "stop_loss"),  # bullish: open -> low -> high -> close
        ((10, 12, 8, 9), "take_profit"),  # bearish: open -> high -> low -> close
    ],
)
def test_stop_loss_and_take_profit_in_the_same_bar_follow_the_path(ohlc, first):
    b = SimulatedBroker(10_000)
    b.submit(order("buy", 1, stop_loss=9.0, take_profit=11.5))
    b.on_bar("X", bar(0, 10, 10, 10, 10))
    (f,) = fills(b.on_bar("X", bar(1, *ohlc)))
    assert f.reason == first
    assert f.price == (9.0 if first == "stop_loss" else 11.5)
    assert b.position("X") == 0
    assert not b.active  # the other protective order went with the position


def test_entry_and_stop_loss_in_the_same_bar():
    b = SimulatedBroker(10_000)
    b.on_bar("X", bar(0, 10, 10, 10, 10))
    b.submit(order("buy", 1, "stop", 10.5, stop_loss=10.2))
    # bearish bar: open 10 -> high 11 (stop fills at 10.5) -> low 9.5 (stop loss at 10.2)
    events = fills(b.on_bar("X", bar(1, 10, 11, 9.5, 9.8)))
    assert [(e.reason, e.price) for e in events] == [("", 10.5), ("stop_loss", 10.2)]


def test_trailing_stop_ratchets_and_never_moves_back():
    b = SimulatedBroker(10_000)
    b.submit(order("buy", 1, trailing_stop=1.0))
    b.on_bar("X", bar(0, 10, 10, 10, 10))  # fills at 10, trail level 9
    assert fills(b.on_bar("X", bar(1, 10, 12, 9.5, 11.5))) == []  # low first, then up to 12
    # trail level is now 11: a dip to 11.2 keeps it, and the ratchet never lowers it
    assert fills(b.on_bar("X", bar(2, 11.5, 11.6, 11.2, 11.4))) == []
    (f,) = fills(b.on_bar("X", bar(3, 11.4, 11.5, 10.5, 10.6)))
    assert (f.reason, f.price) == ("trailing_stop", 11.0)


def test_short_trailing_stop():
    b = SimulatedBroker(10_000)
    b.submit(order("sell", 1, trailing_stop=0.5))
    b.on_bar("X", bar(0, 10, 10, 10, 10))
    b.on_bar("X", bar(1, 10, 10.1, 9.0, 9.1))  # high first, then down to 9: trail at 9.5
    (f,) = fills(b.on_bar("X", bar(2, 9.1, 9.8, 9.05, 9.7)))
    assert (f.side, f.reason, f.price) == ("buy", "trailing_stop", 9.5)


def test_netting_reduce_close_and_reverse():
    b = SimulatedBroker(100_000)
    b.submit(order("buy", 10))
    b.on_bar("X", bar(0, 10, 10, 10, 10))
    b.submit(order("buy", 10))
    b.on_bar("X", bar(1, 12, 12, 12, 12))
    assert b.average_price("X") == pytest.approx(11)
    b.submit(order("sell", 5))
    b.on_bar("X", bar(2, 13, 13, 13, 13))
    assert b.position("X") == 15
    assert b.realized_pnl == pytest.approx(5 * 2)
    b.submit(order("sell", 25, stop_loss=20))  # reverse to a 10-unit short
    b.on_bar("X", bar(3, 14, 14, 14, 14))
    assert b.position("X") == -10
    assert b.average_price("X") == 14
    assert b.realized_pnl == pytest.approx(10 + 15 * 3)
    assert b.positions == {"X": -10}
    (f,) = fills(b.on_bar("X", bar(4, 19, 21, 19, 20)))  # the short's stop loss
    assert (f.reason, f.side, f.size, f.price) == ("stop_loss", "buy", 10, 20)
    assert b.positions == {}
    assert b.equity == pytest.approx(b.balance)
    assert b.balance == pytest.approx(100_000 + 55 - 60)


def test_closing_the_position_drops_its_protective_orders():
    b = SimulatedBroker(10_000)
    b.submit(order("buy", 1, stop_loss=5, take_profit=20))
    b.on_bar("X", bar(0, 10, 10, 10, 10))
    b.submit(order("sell", 1))
    b.on_bar("X", bar(1, 10, 10, 10, 10))
    assert b.position("X") == 0
    assert fills(b.on_bar("X", bar(2, 10, 25, 4, 10))) == []


def test_margin_rejects_with_reason_and_leverage_allows():
    b = SimulatedBroker(1_000)
    b.on_bar("X", bar(0, 10, 10, 10, 10))
    (e,) = b.submit(order("buy", 200))
    assert (e.kind, e.reason) == ("rejected", "insufficient margin")
    levered = SimulatedBroker(1_000, margin_rate={"X": 0.02})
    levered.on_bar("X", bar(0, 10, 10, 10, 10))
    assert kinds(levered.submit(order("buy", 4_000))) == ["accepted"]
    levered.on_bar("X", bar(1, 10, 10, 10, 10))
    assert levered.margin_used == pytest.approx(4_000 * 10 * 0.02)
    # reducing never needs margin
    assert kinds(levered.submit(order("sell", 4_000))) == ["accepted"]


def test_market_order_without_a_price_is_checked_at_the_fill():
    b = SimulatedBroker(1_000)
    assert kinds(b.submit(order("buy", 200))) == ["accepted"]  # no price known yet
    (e,) = b.on_bar("X", bar(0, 10, 10, 10, 10))
    assert (e.kind, e.reason) == ("rejected", "insufficient margin")
    assert b.position("X") == 0


@pytest.mark.parametrize(
    ("bad", "word"),
    [
        (Order("a", "X", "hold", 1.0), "side"),
        (Order("a", "X", "buy", -1.0), "size"),
        (Order("a", "X", "buy", math.nan), "size"),
        (Order("a", "X", "buy", 1.0, "limit"), "price"),
        (Order("a", "X", "buy", 1.0, "iceberg", 1.0), "type"),
        (Order("a", "", "buy", 1.0), "symbol"),
        (Order("a", "X", "buy", 1.0, stop_loss=-2.0), "stop_loss"),
        (Order("a", "X", "buy", 1.0, stop_loss=12.0, take_profit=11.0), "stop_loss"),
        ("not an order", "Order"),
    ],
)
def test_invalid_orders_are_rejected_with_a_reason(bad, word):
    (e,) = SimulatedBroker().submit(bad)
    assert e.kind == "rejected"
    assert word in e.reason


def test_duplicate_client_id_is_rejected():
    b = SimulatedBroker()
    assert kinds(b.submit(Order("same", "X", "buy", 1.0))) == ["accepted"]
    assert "duplicate" in b.submit(Order("same", "X", "buy", 1.0))[0].reason


def test_cancel_pending_unknown_and_filled():
    b = SimulatedBroker()
    b.on_bar("X", bar(0, 10, 10, 10, 10))
    limit = order("buy", 1, "limit", 5)
    b.submit(limit)
    assert kinds(b.cancel(limit.client_id)) == ["cancelled"]
    assert b.pending_orders == []
    assert b.cancel("nope")[0].reason == "unknown order"
    market = order("buy", 1)
    b.submit(market)
    b.on_bar("X", bar(1, 10, 10, 10, 10))
    (e,) = b.cancel(market.client_id)
    assert (e.kind, e.reason) == ("rejected", "already filled")


def test_market_if_touched_both_directions():
    b = SimulatedBroker(10_000)
    b.on_bar("X", bar(0, 10, 10, 10, 10))
    below = order("buy", 1, "market_if_touched", 9.0)
    above = order("buy", 1, "market_if_touched", 11.0)
    b.submit(below)
    b.submit(above)
    assert fills(b.on_bar("X", bar(1, 10, 10.5, 9.5, 10))) == []
    events = fills(b.on_bar("X", bar(2, 10, 11.2, 8.8, 9)))  # bearish: high first
    assert [(e.client_id, e.price) for e in events] == [
        (above.client_id, 11.0), (below.client_id, 9.0)
    ]  # fmt: skip


def test_fill_at_close_and_ticks():
    b = SimulatedBroker(10_000, spread=0.1)
    b.submit(order("buy", 1))
    (f,) = fills(b.fill_at_close("X", bar(0, 10, 11, 9, 10.5)))
    assert f.price == pytest.approx(10.55)
    b.submit(order("sell", 1, "limit", 10.7))
    from osmarkets.data.types import Tick

    assert fills(b.on_tick("X", Tick(MIN, 10.6, 10.65))) == []
    (g,) = fills(b.on_tick("X", Tick(2 * MIN, 10.72, 10.74)))
    assert g.price == 10.72
    assert b.position("X") == 0


def test_events_carry_brain_and_commission():
    b = SimulatedBroker(commission=Commission(minimum=1.0))
    o = make_order("k1", "buy", 1, "X", brain="alpha", stop_loss=5.0)
    (acc,) = b.submit(o)
    assert acc.brain == "alpha"
    (f,) = b.on_bar("X", bar(0, 10, 10, 10, 10))
    assert (f.brain, f.commission) == ("alpha", 1.0)
    (s,) = b.on_bar("X", bar(1, 4, 4, 4, 4))
    assert (s.brain, s.client_id, s.reason, s.commission) == ("alpha", "k1", "stop_loss", 1.0)


@pytest.mark.parametrize("kwargs", [{"cash": 0}, {"cash": math.inf}, {"spread": -1},
                                    {"margin_rate": 0}, {"margin_rate": {"X": 2}},
                                    {"slippage": "a"}])  # fmt: skip
def test_bad_configuration_names_the_field(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        SimulatedBroker(**kwargs)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["buy", "sell"]),
            st.integers(1, 50),
            st.floats(5, 15),
            st.floats(0, 2),
            st.floats(0, 2),
            st.floats(0, 1),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_accounting_identity_holds_for_any_sequence(steps):
    """balance == cash + realised - commission, equity == balance + units*(mark - avg), and
    the equity equals the cash-flow view: cash - sum(signed fills) + units * mark."""
    b = SimulatedBroker(1e9, commission=Commission(fraction=0.001))
    flow = 1e9
    for i, (side, size, o, up, down, c) in enumerate(steps):
        b.submit(order(side, size))
        high, low = o + up, max(o - down, 0.01)
        close = low + c * (high - low)
        for e in fills(b.on_bar("X", bar(i, o, high, low, close))):
            flow -= e.signed_size * e.price + e.commission
        assert b.equity == pytest.approx(flow + b.position("X") * close, rel=1e-9, abs=1e-6)
    assert b.balance == pytest.approx(1e9 + b.realized_pnl - b.commission_paid)
