"""The pure pieces under the OANDA agents, in-process against the sandbox."""

from __future__ import annotations

import pytest
from oanda_arch_support import TOKEN, fast_clock, wait_for

from osmarkets.brokers.base import make_order
from osmarkets.brokers.oanda import OandaClient, OandaSandbox
from osmarkets.brokers.oanda.trading import (
    OandaTradingBroker,
    brain_of,
    read_token,
    write_token_file,
)


@pytest.fixture
def sandbox():
    with OandaSandbox(token=TOKEN, instruments=["EUR_USD"], seed=2, clock=fast_clock(600.0)) as sb:
        yield sb


def _client(sandbox, **options) -> OandaClient:
    return OandaClient(TOKEN, sandbox.account_id, rest_url=sandbox.rest_url,
                       stream_url=sandbox.stream_url, backoff=0.01, max_backoff=0.05,
                       **options)  # fmt: skip


@pytest.fixture
def client(sandbox):
    with _client(sandbox) as c:
        yield c


def _orders(sandbox, client_id: str) -> list[dict]:
    return [t for t in sandbox.transactions if t["type"].endswith("_ORDER")
            and (t.get("clientExtensions") or {}).get("id") == client_id]  # fmt: skip


def _copies_refused(sandbox, client_id: str) -> list[dict]:
    return [t for t in sandbox.transactions if t["type"].endswith("_ORDER_REJECT")
            and t.get("rejectReason") == "CLIENT_ORDER_ID_ALREADY_EXISTS"
            and (t.get("clientExtensions") or {}).get("id") == client_id]  # fmt: skip


def test_trading_broker_reports_each_outcome_once(client, tmp_path) -> None:
    state = tmp_path / "state.json"
    broker = OandaTradingBroker(client, state_path=state, poll_interval=0.0)
    assert broker.reconcile().missed_events == []
    events = broker.submit(make_order("bot-1", "buy", 100, "EUR_USD", brain="bot"))
    assert [e.kind for e in events] == ["accepted", "filled"]
    assert broker.poll(force=True) == []  # the fill is not reported a second time
    assert broker.positions == {"EUR_USD": 100.0}
    # a limit order filled while "nobody was running": the next incarnation reports it
    price = client.prices(["EUR_USD"])[0].tick.ask
    broker.submit(make_order("bot-2", "buy", 10, "EUR_USD", "limit", price=price + 0.01))
    fresh = OandaTradingBroker(client, state_path=state)
    found = fresh.reconcile()
    assert [(e.kind, e.client_id, e.brain) for e in found.missed_events] in (
        [],
        [("filled", "bot-2", "bot")],  # already filled on submit (marketable limit)
    )
    assert fresh.positions == {"EUR_USD": 110.0}
    assert fresh.poll(force=True) == []


def test_refused_orders_become_rejected_events(client) -> None:
    broker = OandaTradingBroker(client)
    (event,) = broker.submit(make_order("x-1", "buy", 100, "XAU_EUR"))
    assert event.kind == "rejected" and "XAU_EUR" in event.reason
    live = OandaClient(TOKEN, client.account_id, "live", rest_url=client.rest_url)
    (event,) = OandaTradingBroker(live).submit(make_order("x-2", "buy", 1, "EUR_USD"))
    assert event.kind == "rejected" and "confirm_live" in event.reason


def test_token_file_and_brain_names(tmp_path, monkeypatch) -> None:
    path = write_token_file(tmp_path, "abc")
    assert read_token({"token_file": path}) == "abc"
    monkeypatch.delenv("OANDA_ACCESS_TOKEN", raising=False)
    with pytest.raises(ValueError, match="token_file"):
        read_token({"token_file": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match="access_token"):
        read_token({})
    assert brain_of("my-brain-12") == "my-brain" and brain_of("oanda:7") == ""
    assert brain_of("my-brain-0a1b2c3d-1000003") == "my-brain"  # '<brain>-<run>-<n>'
    assert brain_of("b-0a1b2c3d-x") == ""


@pytest.mark.parametrize("polled", [False, True])
def test_a_resend_after_the_trader_died_before_delivering_gets_the_fill(
    sandbox, client, tmp_path, polled
) -> None:
    """Issue (a): the Trader saved the broker's answer and died before the Brain got the fill;
    the restarted Trader's reconciliation holds the fill as reported, the Brain sends the order
    again: it gets the fill (the same one), not a reject, and only once."""
    state = tmp_path / "state.json"
    first = OandaTradingBroker(client, state_path=state, poll_interval=0.0)
    first.reconcile()
    order = make_order("bot-0a1b2c3d-1", "buy", 100, "EUR_USD", brain="bot")
    answer = first.submit(order)  # saved in the state file; the Trader dies before delivery
    assert [e.kind for e in answer] == ["accepted", "filled"]
    if polled:  # the cursor of the state file may be past the fill too
        assert first.poll(force=True) == []
    second = OandaTradingBroker(client, state_path=state, poll_interval=0.0)
    assert second.reconcile().missed_events == []  # the fill is recorded as reported
    assert second.positions == {"EUR_USD": 100.0}
    again = second.submit(order)  # the Brain's re-send: it has no event for the order
    assert [(e.kind, e.reason) for e in again] == [("accepted", "duplicate"), ("filled", "")]
    assert again[1] == answer[1]  # the same fill, for the same Brain
    assert second.duplicates == 1
    assert second.positions == {"EUR_USD": 100.0}  # already in the account's position
    assert second.poll(force=True) == []  # the refused copy is not a 'rejected'
    assert len(_copies_refused(sandbox, order.client_id)) == 1
    assert second.submit(order) == []  # reported by this Trader: no second fill
    assert second.duplicates == 2 and second.positions == {"EUR_USD": 100.0}
    assert len(_orders(sandbox, order.client_id)) == 1


def test_a_slow_order_post_gives_accepted_and_filled_only(sandbox, tmp_path) -> None:
    """Issue (b): the order POST is answered after the client's read timeout, OANDA learning
    of the order only then: exactly accepted + filled, no reject, one order."""
    with _client(sandbox, timeout=(2.0, 0.4)) as client:
        broker = OandaTradingBroker(client, state_path=tmp_path / "s.json", poll_interval=0.0)
        broker.reconcile()
        sandbox.slow_orders(1, delay=1.2, before=True)
        order = make_order("bot-0a1b2c3d-2", "sell", 40, "EUR_USD", brain="bot")
        events = broker.submit(order)
        wait_for(lambda: _copies_refused(sandbox, order.client_id), what="the late original")
        events += broker.poll(force=True)
        assert [(e.kind, e.client_id) for e in events] == [
            ("accepted", order.client_id),
            ("filled", order.client_id),
        ]
        assert broker.positions == {"EUR_USD": -40.0}
        assert len(_orders(sandbox, order.client_id)) == 1


@pytest.mark.parametrize("restart", [False, True])
def test_an_order_unknown_at_the_deadline_stays_unresolved_then_is_reported(
    sandbox, tmp_path, caplog, restart
) -> None:
    """Every copy of the order is held past the client's ``order_deadline``: no event (not a
    reject), an error logged, the order kept (across a restart too) and reported once OANDA
    knows it: by the account's transactions (a market order's fill) or by a lookup (a
    pending order)."""
    state = tmp_path / "s.json"
    options = {"timeout": (2.0, 0.3), "order_deadline": 0.5}
    with _client(sandbox, **options) as client:
        broker = OandaTradingBroker(client, state_path=state, poll_interval=0.0)
        broker.reconcile()
        price = client.prices(["EUR_USD"])[0].tick.bid
        sandbox.slow_orders(20, delay=2.5)
        if restart:  # a pending order: only a lookup tells it was placed
            order = make_order("bot-0a1b2c3d-3", "buy", 10, "EUR_USD", "limit",
                               price=round(price * 0.9, 5), brain="bot")  # fmt: skip
        else:
            order = make_order("bot-0a1b2c3d-3", "buy", 10, "EUR_USD", brain="bot")
        assert broker.submit(order) == []
        assert "Not reported as rejected" in caplog.text
        assert broker.unknown_orders == 1 and broker.unresolved == {order.client_id: order}
        copies = 20 - len(sandbox._slow_orders)  # the order POSTs held so far
        wait_for(lambda: _orders(sandbox, order.client_id), what="the order at OANDA")
        wait_for(lambda: len(_copies_refused(sandbox, order.client_id)) == copies - 1,
                 what="every copy answered")  # fmt: skip
        if restart:
            fresh = OandaTradingBroker(client, state_path=state, poll_interval=0.0)
            assert fresh.unresolved == {}
            found = fresh.reconcile()
            assert [(e.kind, e.client_id, e.brain) for e in found.missed_events] == [
                ("accepted", order.client_id, "bot")
            ]
            assert fresh.unresolved == {} and fresh.poll(force=True) == []
        else:
            events = broker.poll(force=True)
            assert [(e.kind, e.client_id, e.brain) for e in events] == [
                ("filled", order.client_id, "bot")
            ]
            assert broker.unresolved == {} and broker.positions == {"EUR_USD": 10.0}
            assert broker.poll(force=True) == []
        assert len(_orders(sandbox, order.client_id)) == 1
