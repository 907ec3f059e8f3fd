"""OandaBroker against the sandbox: every order type, SL/TP, rejects, idempotent retries."""

import pytest
from oanda_support import TOKEN, wait_for

from osmarkets.brokers.base import Broker, make_order
from osmarkets.brokers.oanda import OandaBroker, OandaClient
from osmarkets.brokers.oanda.client import OrderStateUnknown


@pytest.fixture
def broker(client):
    return OandaBroker(client)


def quote(client, name="EUR_USD"):
    return client.prices([name])[0].tick


def test_is_a_broker(broker):
    def takes(b: Broker) -> Broker:
        return b

    assert takes(broker) is broker
    assert "token" not in repr(broker).lower() or "hidden" in repr(broker)


def test_market_buy_fills_at_ask_and_sell_at_bid(sandbox, broker):
    sandbox.set_price("EUR_USD", 1.10000, 1.10012)
    events = broker.submit(make_order("b1", "buy", 1000, "EUR_USD"))
    assert [e.kind for e in events] == ["accepted", "filled"]
    assert events[1].price == 1.10012 and events[1].size == 1000 and events[1].side == "buy"
    events = broker.submit(make_order("s1", "sell", 400, "EUR_USD"))
    assert events[-1].price == 1.10000 and events[-1].side == "sell"
    assert broker.position("EUR_USD") == 600
    assert broker.position("USD_JPY") == 0.0


def test_realized_pl_reaches_the_balance(sandbox, broker):
    start = broker.account_summary().balance
    sandbox.set_price("EUR_USD", 1.10000, 1.10010)
    broker.submit(make_order("o", "buy", 10000, "EUR_USD"))
    sandbox.set_price("EUR_USD", 1.10110, 1.10120)
    broker.submit(make_order("c", "sell", 10000, "EUR_USD"))
    assert broker.account_summary().balance == pytest.approx(start + 10000 * (1.10110 - 1.10010))
    assert broker.position("EUR_USD") == 0


@pytest.mark.parametrize(
    "kind, side, offset, marketable",
    [
        ("limit", "buy", -0.001, False),
        ("limit", "sell", 0.001, False),
        ("stop", "buy", 0.001, False),
        ("stop", "sell", -0.001, False),
        ("market_if_touched", "buy", -0.001, False),
        ("market_if_touched", "sell", 0.001, False),
        ("limit", "buy", 0.001, True),
    ],
)
def test_pending_orders_trigger(sandbox, broker, kind, side, offset, marketable):
    sandbox.set_price("EUR_USD", 1.10000, 1.10010)
    price = round(1.10005 + offset, 5)
    events = broker.submit(make_order("p1", side, 100, "EUR_USD", type=kind, price=price))
    if marketable:
        assert [e.kind for e in events] == ["accepted", "filled"]
        return
    assert [e.kind for e in events] == ["accepted"]
    assert [o.client_id for o in broker.pending_orders()] == ["p1"]
    # the side the order trades at touches its price
    if side == "buy":
        sandbox.set_price("EUR_USD", round(price - 0.0001, 5), price)
    else:
        sandbox.set_price("EUR_USD", price, round(price + 0.0001, 5))
    wait_for(lambda: broker.position("EUR_USD") != 0)
    assert broker.position("EUR_USD") == (100 if side == "buy" else -100)
    assert broker.pending_orders() == []


def test_stop_loss_and_take_profit_on_fill(sandbox, broker):
    sandbox.set_price("EUR_USD", 1.10000, 1.10010)
    broker.submit(make_order("sl", "buy", 1000, "EUR_USD", stop_loss=1.09, take_profit=1.12))
    trade = broker.open_trades()[0]
    assert trade.stop_loss_order_id and trade.take_profit_order_id
    kinds = {o.type for o in broker.pending_orders()}
    assert kinds == {"STOP_LOSS", "TAKE_PROFIT"}
    last = broker.account_summary().last_transaction_id
    sandbox.set_price("EUR_USD", 1.08990, 1.09000)
    wait_for(lambda: broker.position("EUR_USD") == 0)
    assert broker.pending_orders() == []  # take profit cancelled with the trade
    recon = broker.reconcile(last)
    stops = [e for e in recon.missed_events if e.kind == "filled"]
    assert len(stops) == 1 and stops[0].reason == "stop_loss" and stops[0].side == "sell"
    assert stops[0].price == 1.08990 and stops[0].client_id == "sl"


def test_take_profit_on_short(sandbox, broker):
    sandbox.set_price("EUR_USD", 1.10000, 1.10010)
    broker.submit(make_order("tp", "sell", 1000, "EUR_USD", take_profit=1.095))
    sandbox.set_price("EUR_USD", 1.09480, 1.09490)
    wait_for(lambda: broker.position("EUR_USD") == 0)


def test_trailing_stop_follows_the_price(sandbox, broker):
    sandbox.set_price("EUR_USD", 1.10000, 1.10010)
    broker.submit(make_order("ts", "buy", 1000, "EUR_USD", trailing_stop=0.001))
    sandbox.set_price("EUR_USD", 1.10500, 1.10510)  # moves the stop up to 1.10400
    wait_for(lambda: any(o.type == "TRAILING_STOP_LOSS" for o in broker.pending_orders()))
    sandbox.set_price("EUR_USD", 1.10420, 1.10430)
    assert broker.position("EUR_USD") == 1000
    sandbox.set_price("EUR_USD", 1.10390, 1.10400)
    wait_for(lambda: broker.position("EUR_USD") == 0)


@pytest.mark.parametrize(
    "order, reason",
    [
        (dict(side="buy", stop_loss=1.2), "STOP_LOSS_ON_FILL_LOSS"),
        (dict(side="buy", take_profit=1.0), "TAKE_PROFIT_ON_FILL_LOSS"),
        (dict(side="buy", size=1e9), "UNITS_LIMIT_EXCEEDED"),
        (dict(side="buy", size=5_000_000), "INSUFFICIENT_MARGIN"),
    ],
)
def test_rejects(sandbox, broker, order, reason):
    sandbox.set_price("EUR_USD", 1.10000, 1.10010)
    args = {"size": 1000, **order}
    events = broker.submit(make_order("r", args.pop("side"), args.pop("size"), "EUR_USD", **args))
    assert [(e.kind, e.reason) for e in events] == [("rejected", reason)]
    assert broker.position("EUR_USD") == 0


def test_local_rejects_need_no_request(sandbox, broker):
    broker.client.instruments()
    before = sandbox.requests
    events = broker.submit(make_order("z", "buy", 0.3, "EUR_USD"))
    assert events[0].kind == "rejected" and "units" in events[0].reason
    events = broker.submit(make_order("u", "buy", 1, "XAU_USD"))
    assert events[0].kind == "rejected" and "XAU_USD" in events[0].reason
    assert sandbox.requests == before


def _creates(sandbox, client_id):
    return [t for t in sandbox.transactions if t["type"].endswith("_ORDER")
            and (t.get("clientExtensions") or {}).get("id") == client_id]  # fmt: skip


def _duplicate_rejects(sandbox, client_id):
    return [t for t in sandbox.transactions if t["type"].endswith("_ORDER_REJECT")
            and t.get("rejectReason") == "CLIENT_ORDER_ID_ALREADY_EXISTS"
            and (t.get("clientExtensions") or {}).get("id") == client_id]  # fmt: skip


def test_a_resent_order_gives_its_true_state_not_a_reject(sandbox, broker, caplog):
    sandbox.set_price("EUR_USD", 1.10000, 1.10010)
    since = broker.account_summary().last_transaction_id
    first = broker.place(make_order("dup", "buy", 1, "EUR_USD", brain="b"))
    assert [e.kind for e in first.events] == ["accepted", "filled"] and not first.duplicate
    sandbox.set_price("EUR_USD", 1.20000, 1.20010)  # a new order would fill elsewhere
    again = broker.place(make_order("dup", "buy", 1, "EUR_USD", brain="b"))
    assert again.duplicate  # the caller can tell
    assert [(e.kind, e.reason) for e in again.events] == [
        ("accepted", "duplicate"),
        ("filled", ""),
    ]
    assert again.events[1] == first.events[1]  # the very same fill: price, size, time
    assert again.events[0].time == first.events[0].time
    assert len(_creates(sandbox, "dup")) == 1 and broker.position("EUR_USD") == 1
    assert "CLIENT_ORDER_ID_ALREADY_EXISTS" in caplog.text  # the duplicate answer is logged
    # OANDA recorded a reject of the copy: it is not an outcome of the order
    assert len(_duplicate_rejects(sandbox, "dup")) == 1
    events, _ = broker.events_since(since)
    assert [(e.kind, e.client_id) for e in events] == [("filled", "dup")]
    # submit() says the same, without a reject
    assert [e.kind for e in broker.submit(make_order("dup", "buy", 1, "EUR_USD"))] == [
        "accepted", "filled",
    ]  # fmt: skip


def test_a_resent_pending_order_is_still_pending(sandbox, broker):
    sandbox.set_price("EUR_USD", 1.10000, 1.10010)
    order = make_order("lim", "buy", 5, "EUR_USD", type="limit", price=1.05)
    assert [e.kind for e in broker.submit(order)] == ["accepted"]
    again = broker.place(order)
    assert again.duplicate and [e.kind for e in again.events] == ["accepted"]
    assert [o.client_id for o in broker.pending_orders()] == ["lim"]


def test_an_id_held_by_another_order_is_a_true_reject(sandbox, broker, caplog):
    broker.submit(make_order("taken", "buy", 1, "EUR_USD"))
    placed = broker.place(make_order("taken", "sell", 7, "EUR_USD"))
    assert not placed.duplicate
    assert [(e.kind, e.reason) for e in placed.events] == [
        ("rejected", "CLIENT_ORDER_ID_ALREADY_EXISTS")
    ]
    assert "held by another order" in caplog.text
    assert broker.position("EUR_USD") == 1


@pytest.mark.parametrize("before", [True, False])
def test_an_answer_after_the_read_timeout_gives_one_order_and_no_reject(sandbox, before):
    # before=True: OANDA learns of the order only after the client gave up waiting (the lookup
    # finds nothing, the copy sent then is placed, the late original is refused as a duplicate);
    # before=False: the order exists at once, its answer is late (the lookup finds it)
    with OandaClient(TOKEN, sandbox.account_id, rest_url=sandbox.rest_url, backoff=0.01,
                     max_backoff=0.05, timeout=(2.0, 0.4)) as client:  # fmt: skip
        broker = OandaBroker(client)
        client.instruments()
        since = broker.account_summary().last_transaction_id
        sandbox.slow_orders(1, delay=1.2, before=before)
        placed = broker.place(make_order("slow", "buy", 100, "EUR_USD"))
        assert [e.kind for e in placed.events] == ["accepted", "filled"]
        assert placed.recovered != before and not placed.duplicate
        if before:  # the original lands late and is refused
            wait_for(lambda: _duplicate_rejects(sandbox, "slow"), timeout=5)
        assert len(_creates(sandbox, "slow")) == 1
        assert broker.position("EUR_USD") == 100
        events, _ = broker.events_since(since)
        assert [(e.kind, e.client_id) for e in events] == [("filled", "slow")]


def test_an_order_unknown_at_the_deadline_is_not_rejected(sandbox):
    options = dict(backoff=0.01, max_backoff=0.05, timeout=(2.0, 0.3), order_deadline=0.5)
    with OandaClient(TOKEN, sandbox.account_id, rest_url=sandbox.rest_url, **options) as client:
        broker = OandaBroker(client)
        client.instruments()
        sandbox.slow_orders(20, delay=2.5)  # every copy is held past the deadline
        order = make_order("late", "buy", 10, "EUR_USD")
        with pytest.raises(OrderStateUnknown) as info:
            broker.submit(order)
        assert info.value.client_id == "late" and "not rejected" in str(info.value)
        assert broker.lookup(order) is None  # OANDA does not know it yet
        found = wait_for(lambda: broker.lookup(order), timeout=5)
        assert [e.kind for e in found.events] == ["accepted", "filled"]
        wait_for(lambda: len(_duplicate_rejects(sandbox, "late")) >= 1, timeout=5)
        assert len(_creates(sandbox, "late")) == 1


@pytest.mark.parametrize("cancel", [True, False])
def test_fault_rejects(sandbox, broker, cancel):
    sandbox.reject_orders(
        1, reason="MARKET_HALTED" if cancel else "INSUFFICIENT_MARGIN", cancel=cancel
    )
    events = broker.submit(make_order("f", "buy", 10, "EUR_USD"))
    assert events[0].kind == "rejected"
    assert events[0].reason == ("MARKET_HALTED" if cancel else "INSUFFICIENT_MARGIN")


def test_halted_market_cancels_market_orders(sandbox, broker):
    sandbox.set_tradeable("EUR_USD", False)
    assert broker.client.prices(["EUR_USD"])[0].tradeable is False
    events = broker.submit(make_order("h", "buy", 10, "EUR_USD"))
    assert [(e.kind, e.reason) for e in events] == [("rejected", "MARKET_HALTED")]


def test_lost_response_is_not_sent_twice(sandbox, broker):
    sandbox.lose_order_responses(1)
    events = broker.submit(make_order("lost", "buy", 100, "EUR_USD"))
    assert [e.kind for e in events] == ["accepted", "filled"]
    assert broker.position("EUR_USD") == 100  # one order, not two
    creates = [t for t in sandbox.transactions if t["type"] == "MARKET_ORDER"]
    assert len(creates) == 1


@pytest.mark.parametrize("status", [429, 500])
def test_error_bursts_on_orders_give_one_order(sandbox, broker, status):
    broker.client.instruments()
    sandbox.fail_requests(3, status=status)
    events = broker.submit(make_order("burst", "sell", 100, "EUR_USD"))
    assert events[-1].kind == "filled"
    assert broker.position("EUR_USD") == -100
    assert len([t for t in sandbox.transactions if t["type"] == "MARKET_ORDER"]) == 1


def test_lost_response_of_a_pending_order(sandbox, broker):
    sandbox.set_price("EUR_USD", 1.10000, 1.10010)
    sandbox.lose_order_responses(1)
    events = broker.submit(make_order("lp", "buy", 100, "EUR_USD", type="limit", price=1.09))
    assert [e.kind for e in events] == ["accepted"]
    assert len(broker.pending_orders()) == 1


def test_cancel(sandbox, broker):
    sandbox.set_price("EUR_USD", 1.10000, 1.10010)
    broker.submit(make_order("c1", "buy", 100, "EUR_USD", type="limit", price=1.05))
    events = broker.cancel("c1")
    assert [(e.kind, e.client_id, e.symbol, e.size) for e in events] == [
        ("cancelled", "c1", "EUR_USD", 100)
    ]
    for gone in ("c1", "never"):  # no longer pending / never created: a reject with a reason
        [event] = broker.cancel(gone)
        assert (event.kind, event.client_id) == ("rejected", gone)
        assert event.reason


def test_reconcile_after_restart(sandbox, client):
    sandbox.set_price("EUR_USD", 1.10000, 1.10010)
    first = OandaBroker(client)
    first.submit(make_order("a", "buy", 300, "EUR_USD"))
    first.submit(make_order("b", "sell", 100, "EUR_USD", type="limit", price=1.2))
    seen = first.account_summary().last_transaction_id
    first.submit(make_order("c", "sell", 100, "EUR_USD"))  # the Trader dies before it sees this
    restarted = OandaBroker(client)
    recon = restarted.reconcile(seen)
    assert recon.positions == {"EUR_USD": 200}
    assert [o.client_id for o in recon.pending_orders] == ["b"]
    assert [t.units for t in recon.open_trades] == [200]
    assert [(e.kind, e.client_id, e.size) for e in recon.missed_events] == [("filled", "c", 100)]
    assert recon.last_transaction_id == restarted.account_summary().last_transaction_id
    # the restarted broker knows "b" well enough to cancel it and describe the cancel
    assert restarted.cancel("b")[0].symbol == "EUR_USD"
