"""What survives a Trader's or a Feeder's death on OANDA (against the sandbox): orders a Brain
sends while the Trader is dead are filled exactly once after it comes back, the Router keeps
publishing meanwhile, and a killed Feeder is restarted and backfills the bars it missed."""

from __future__ import annotations

import json
import os
import signal

import pytest
from oanda_arch_support import (
    DIE_ON_FILL_SIZE,
    TOKEN,
    fast_clock,
    launched,
    make_fill_dying_trading_broker,
    pid_alive,
    wait_for,
)

from osmarkets.brokers.oanda import OandaSandbox, trading
from osmarkets.brokers.oanda.client import OandaClient

pytestmark = pytest.mark.timeout(120)
MINUTE = 60_000_000_000


@pytest.fixture
def sandbox():
    with OandaSandbox(
        token=TOKEN, instruments=["EUR_USD"], seed=7, heartbeat=0.5, tick_interval=0.05,
        clock=fast_clock(60.0),
    ) as sb:  # fmt: skip
        yield sb


@pytest.fixture
def make(sandbox):
    with launched(sandbox) as build:
        yield build


def _kill(system, name: str) -> int:
    pid = system._agents[name].process.pid
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), what=f"the {name}'s death")
    return pid


def _orders(sandbox, client_id: str) -> list[dict]:
    return [t for t in sandbox.transactions if t["type"] == "MARKET_ORDER"
            and (t.get("clientExtensions") or {}).get("id") == client_id]  # fmt: skip


def _fills(sandbox, client_id: str) -> list[dict]:
    return [t for t in sandbox.transactions
            if t["type"] == "ORDER_FILL" and t.get("clientOrderID") == client_id]  # fmt: skip


def _filled_events(system, client_id: str) -> list:
    return [e for e in system["rec"].get_attr("events")
            if e.kind == "filled" and e.client_id == client_id]  # fmt: skip


def _assert_each_filled_once(system, sandbox, ids: list[str]) -> None:
    for cid in ids:
        wait_for(lambda cid=cid: _filled_events(system, cid), timeout=30,
                 what=f"the fill of {cid} at the Brain")  # fmt: skip
    for cid in ids:
        assert len(_orders(sandbox, cid)) == 1, cid  # one order per client id at the broker
        assert len(_fills(sandbox, cid)) == 1, cid
        assert len(_filled_events(system, cid)) == 1, cid
    assert system["rec"].osm_stats()["unacked"] == 0


def test_orders_sent_while_the_trader_is_dead_fill_once_after_the_overmind_restarts_it(
    make, sandbox
) -> None:
    system = make()
    first = system["rec"].send_order(side="buy", size=10, symbol="EUR_USD")
    wait_for(lambda: _filled_events(system, first), what="a fill before the crash")
    old = _kill(system, "trader")
    ids = [system["rec"].send_order(side="buy", size=10 + n, symbol="EUR_USD") for n in range(4)]
    wait_for(lambda: system.overmind.restarts.get("trader", 0) >= 1, timeout=30,
             what="the Overmind restarting the Trader")  # fmt: skip
    assert system._agents["trader"].process.pid != old
    _assert_each_filled_once(system, sandbox, ids)
    assert system["rec"].position("EUR_USD") == 10 + sum(10 + n for n in range(4))
    after = system["rec"].send_order(side="sell", size=5, symbol="EUR_USD")
    _assert_each_filled_once(system, sandbox, [after])


def test_router_publishes_while_the_trader_is_dead_and_orders_wait(make, sandbox) -> None:
    system = make(supervise=False)  # nobody restarts the Trader until we do
    _kill(system, "trader")
    ids = [system["rec"].send_order(side="buy", size=20 + n, symbol="EUR_USD") for n in range(3)]
    bars = system["rec"].get_attr("osm_bars")
    # one-minute bars complete every second of the sandbox's clock
    wait_for(lambda: system["rec"].get_attr("osm_bars") >= bars + 3, timeout=30,
             what="bars while the Trader is dead")  # fmt: skip
    assert system["rec"].osm_stats()["unacked"] == 3
    assert not [t for t in sandbox.transactions if t["type"] == "MARKET_ORDER"]
    system.restart_trader()
    _assert_each_filled_once(system, sandbox, ids)


def test_a_killed_feeder_is_restarted_and_backfills_the_gap(make, sandbox) -> None:
    system = make()
    wait_for(lambda: system["rec"].get_attr("osm_bars") >= 3, what="bars before the crash")
    old = _kill(system, "feeder")
    wait_for(lambda: system.overmind.restarts.get("feeder", 0) >= 1, timeout=30,
             what="the Overmind restarting the Feeder")  # fmt: skip
    before = system["rec"].get_attr("osm_bars")
    wait_for(lambda: system["rec"].get_attr("osm_bars") >= before + 3, timeout=30,
             what="bars after the restart")  # fmt: skip
    times = system["rec"].get_attr("seen")
    steps = {b - a for a, b in zip(times, times[1:], strict=False)}
    assert steps == {MINUTE}, sorted(steps)  # no minute missing across the Feeder's death
    assert system._agents["feeder"].process.pid != old


def _units(sandbox) -> float:
    """What the account holds in EUR_USD, from the broker's own fills."""
    return sum(float(t["units"]) for t in sandbox.transactions
               if t["type"] == "ORDER_FILL" and t.get("instrument") == "EUR_USD")  # fmt: skip


def _market_orders(sandbox) -> list[dict]:
    return [t for t in sandbox.transactions if t["type"] == "MARKET_ORDER"]


def _restarted(system, old_pid: int) -> None:
    wait_for(lambda: system.overmind.restarts.get("trader", 0) >= 1, timeout=30,
             what="the Overmind restarting the Trader")  # fmt: skip
    assert system._agents["trader"].process.pid != old_pid


def _settled(system) -> dict:
    status = system.operator_status()
    return status["flattening"] == 0 and not status["brains"]["rec"]["positions"] and status


@pytest.mark.parametrize("control", ["flatten", "kill"])
def test_a_flatten_queued_when_the_trader_dies_is_carried_out_when_it_is_back(
    make, sandbox, control
) -> None:
    system = make()
    first = system["rec"].send_order(side="buy", size=10, symbol="EUR_USD")
    wait_for(lambda: _filled_events(system, first), what="a fill before the crash")
    sandbox.slow_orders(1, delay=4.0, before=False)  # executed at once, answered 4 s later
    late = system["rec"].send_order(side="buy", size=5, symbol="EUR_USD")
    wait_for(lambda: _orders(sandbox, late), what="the order at the broker")
    getattr(system, control)()  # its flatten waits behind the broker's answer
    assert system.operator_status()["flattening"] == 1
    old = _kill(system, "trader")
    assert _units(sandbox) == 15  # nothing was flattened before the Trader died
    _restarted(system, old)
    wait_for(lambda: _settled(system), timeout=30, what="the Brain flat after the restart")
    assert _units(sandbox) == 0
    sells = [t for t in _market_orders(sandbox) if float(t["units"]) < 0]
    assert [float(t["units"]) for t in sells] == [-15.0]  # the late fill counted, once
    assert system.operator_status()["kill_switch"] is (control == "kill")


def test_a_flatten_held_by_a_failed_reconciliation_is_carried_out_when_the_broker_is_back(
    make, sandbox, monkeypatch
) -> None:
    """The restarted Trader cannot reconcile (the broker answers 503 to everything), so the
    flatten asked meanwhile waits; once the broker answers again the Trader tries again by
    itself (no other order or control comes) and carries the flatten out."""
    from osmarkets.agents import trader

    monkeypatch.setattr(trader, "RECONCILE_RETRY", 0.5)  # the forked Trader inherits it
    system = make()
    first = system["rec"].send_order(side="buy", size=10, symbol="EUR_USD")
    wait_for(lambda: _filled_events(system, first), what="a fill before the crash")
    sandbox.fail_requests(10**6, status=503)
    old = _kill(system, "trader")
    _restarted(system, old)
    wait_for(lambda: "error" in (system["trader"].get_attr("reconciliation") or {}),
             timeout=30, what="the reconciliation failing")  # fmt: skip
    system.flatten("rec")
    assert system.operator_status()["flattening"] == 1
    trader_agent = system["trader"]
    wait_for(lambda: trader_agent.get_attr("_held_flattens")
             and not trader_agent.get_attr("reconciling"),
             timeout=30, what="the flatten held, the attempt it asked for failed too")  # fmt: skip
    with sandbox._lock:  # the broker answers again
        sandbox._fail.clear()
    wait_for(lambda: _settled(system), timeout=30, what="the flatten after the reconciliation")
    assert _units(sandbox) == 0
    sells = [t for t in _market_orders(sandbox) if float(t["units"]) < 0]
    assert [float(t["units"]) for t in sells] == [-10.0]


def test_a_flatten_whose_order_reached_the_broker_is_not_carried_out_twice(make, sandbox) -> None:
    system = make()
    first = system["rec"].send_order(side="buy", size=10, symbol="EUR_USD")
    wait_for(lambda: _filled_events(system, first), what="a fill before the crash")
    sandbox.slow_orders(1, delay=4.0, before=False)  # the flatten's sell: answered late
    system.flatten("rec")
    wait_for(lambda: _units(sandbox) == 0, what="the flatten's sell executed at the broker")
    old = _kill(system, "trader")  # before its answer: the journal has it as submitting
    _restarted(system, old)
    wait_for(lambda: _settled(system), timeout=30, what="the flatten settled after the restart")
    bars = system["rec"].get_attr("osm_bars")
    wait_for(lambda: system["rec"].get_attr("osm_bars") >= bars + 3, timeout=30,
             what="bars after the restart")  # fmt: skip
    assert _units(sandbox) == 0  # not short: the flatten was not made again
    assert len([t for t in _market_orders(sandbox) if float(t["units"]) < 0]) == 1


def test_a_cancel_all_queued_when_the_trader_dies_is_carried_out_when_it_is_back(
    make, sandbox
) -> None:
    system = make()
    resting = system["rec"].send_order(side="buy", size=7, symbol="EUR_USD", type="limit",
                                       price=0.5)  # fmt: skip  # far below: it rests
    wait_for(lambda: [t for t in sandbox.transactions if t["type"] == "LIMIT_ORDER"],
             what="the limit order resting at the broker")  # fmt: skip
    sandbox.slow_orders(1, delay=4.0, before=False)
    late = system["rec"].send_order(side="buy", size=5, symbol="EUR_USD")
    wait_for(lambda: _orders(sandbox, late), what="the order at the broker")
    system.cancel_all("rec")  # its cancel waits behind the broker's answer
    old = _kill(system, "trader")
    assert not _cancels(sandbox, resting)
    _restarted(system, old)
    wait_for(lambda: _cancels(sandbox, resting), timeout=30, what="the cancel after the restart")
    wait_for(lambda: [e for e in system["rec"].get_attr("events")
                      if e.kind == "cancelled" and e.client_id == resting],
             timeout=30, what="the Brain told")  # fmt: skip
    assert len(_cancels(sandbox, resting)) == 1
    assert _units(sandbox) == 5  # the cancel touched nothing else


def _resting_then_unreachable(system, sandbox) -> str:
    """A limit order of the Brain resting at the broker, then the broker answering 503 to
    every request; the order's client id."""
    resting = system["rec"].send_order(side="buy", size=5, symbol="EUR_USD", type="limit",
                                       price=0.5)  # fmt: skip
    wait_for(lambda: [e for e in system["rec"].get_attr("events")
                      if e.kind == "accepted" and e.client_id == resting],
             what="the limit order accepted")  # fmt: skip
    sandbox.fail_requests(10**6, status=503)
    return resting


@pytest.mark.parametrize("control", ["cancel_all", "kill"])
def test_a_cancel_the_broker_could_not_be_asked_is_tried_again_until_the_order_is_cancelled(
    make, sandbox, monkeypatch, control
) -> None:
    """The broker answers 503 to the cancel (through the client's retries): the order goes on
    (a 'rejected' of size 0), so the request is not done; it is tried again and the order is
    cancelled once the broker answers, with no other control to prompt it."""
    from osmarkets.agents import trader

    monkeypatch.setattr(trader, "CANCEL_RETRY", 0.5)  # the forked Trader inherits it
    system = make()
    resting = _resting_then_unreachable(system, sandbox)
    system.kill() if control == "kill" else system.cancel_all("rec")
    trader_agent = system["trader"]
    wait_for(lambda: trader_agent.get_attr("_cancel_retries"), timeout=30,
             what="the cancel refused and another attempt planned")  # fmt: skip
    assert not _cancels(sandbox, resting)
    assert trader_agent.get_attr("_cancel_requests")  # not carried out: still journaled
    if control == "cancel_all":  # (the kill switch halts the Brain)
        refused = [e for e in system["rec"].get_attr("events")
                   if e.kind == "rejected" and e.client_id == resting]  # fmt: skip
        assert refused and refused[0].size == 0 and not refused[0].terminal  # it goes on
    with sandbox._lock:  # the broker answers again
        sandbox._fail.clear()
    wait_for(lambda: _cancels(sandbox, resting), timeout=30, what="the cancel tried again")
    wait_for(lambda: not trader_agent.get_attr("_cancel_requests"), timeout=10,
             what="the request carried out")  # fmt: skip
    if control == "cancel_all":
        wait_for(lambda: [e for e in system["rec"].get_attr("events")
                          if e.kind == "cancelled" and e.client_id == resting],
                 timeout=30, what="the Brain told")  # fmt: skip
    assert len(_cancels(sandbox, resting)) == 1


def test_a_cancel_tried_again_cancels_the_orders_it_asked_for_only(
    make, sandbox, monkeypatch
) -> None:
    """Two cancels of the Brain's orders while the broker cannot be asked, then an order the
    Brain sends once the broker is back: both requests end, the first order is cancelled
    once, the new one is left alone."""
    from osmarkets.agents import trader

    monkeypatch.setattr(trader, "CANCEL_RETRY", 1.0)
    system = make()
    resting = _resting_then_unreachable(system, sandbox)
    system.cancel_all("rec")
    system.cancel_all("rec")
    trader_agent = system["trader"]
    wait_for(lambda: len(trader_agent.get_attr("_cancel_retries")) == 2, timeout=30,
             what="both requests to be tried again")  # fmt: skip
    with sandbox._lock:
        sandbox._fail.clear()
    later = system["rec"].send_order(side="buy", size=3, symbol="EUR_USD", type="limit",
                                     price=0.5)  # fmt: skip
    wait_for(lambda: not trader_agent.get_attr("_cancel_requests"), timeout=30,
             what="both requests carried out")  # fmt: skip
    assert len(_cancels(sandbox, resting)) == 1
    assert not _cancels(sandbox, later)
    assert later in trader_agent.get_attr("open_orders")


def test_a_cancel_still_refused_after_its_attempts_is_an_incident(
    make, sandbox, monkeypatch
) -> None:
    from osmarkets.agents import trader

    monkeypatch.setattr(trader, "CANCEL_RETRY", 0.2)
    monkeypatch.setattr(trader, "CANCEL_ATTEMPTS", 3)
    system = make()
    resting = _resting_then_unreachable(system, sandbox)
    system.cancel_all("rec")
    incident = wait_for(lambda: [i for i in system["trader"].get_attr("incidents")
                                 if i["kind"] == "cancel"], timeout=60,
                        what="the incident after the last attempt")  # fmt: skip
    assert resting in incident[0]["detail"] and "after 3 cancels" in incident[0]["detail"]
    refused = [e for e in system["rec"].get_attr("events")
               if e.kind == "rejected" and e.client_id == resting]  # fmt: skip
    assert refused and not refused[0].terminal  # (the Brain drops the identical copies)
    assert not system["trader"].get_attr("_cancel_requests")  # given up, said
    with sandbox._lock:
        sandbox._fail.clear()
    assert not _cancels(sandbox, resting)


def _cancels(sandbox, client_id: str) -> list[dict]:
    return [t for t in sandbox.transactions
            if t["type"] == "ORDER_CANCEL" and t.get("clientOrderID") == client_id]  # fmt: skip


def test_a_fill_the_broker_thread_took_is_not_lost_when_the_trader_dies_before_journaling_it(
    make, sandbox, monkeypatch
) -> None:
    """The broker thread took a fill (its poll moved past it) and the process died before the
    journal had it: the broker's state file had not moved, so the restarted Trader reports
    the fill again, once."""
    monkeypatch.setattr(trading, "make_trading_broker", make_fill_dying_trading_broker)
    system = make()
    resting = system["rec"].send_order(side="buy", size=DIE_ON_FILL_SIZE, symbol="EUR_USD",
                                       type="limit", price=0.5)  # fmt: skip
    wait_for(lambda: [e for e in system["rec"].get_attr("events")
                      if e.kind == "accepted" and e.client_id == resting],
             what="the limit order accepted and journaled")  # fmt: skip
    old = system._agents["trader"].process.pid
    sandbox.set_price("EUR_USD", 0.40, 0.41)  # the limit fills at the broker
    wait_for(lambda: not pid_alive(old), timeout=30, what="the Trader dying after the poll")
    sandbox.release_price("EUR_USD")
    _restarted(system, old)
    wait_for(lambda: _filled_events(system, resting), timeout=30, what="the fill at the Brain")
    assert len(_fills(sandbox, resting)) == 1
    assert len(_filled_events(system, resting)) == 1
    assert system["rec"].position("EUR_USD") == DIE_ON_FILL_SIZE


def test_a_trade_made_by_hand_is_not_flattened_with_the_brains(make, sandbox) -> None:
    system = make()
    client = OandaClient(TOKEN, sandbox.account_id, rest_url=sandbox.rest_url,
                         stream_url=sandbox.stream_url)  # fmt: skip
    by_hand = client.create_order({"type": "MARKET", "instrument": "EUR_USD", "units": "4",
                                   "timeInForce": "FOK", "positionFill": "DEFAULT"})  # fmt: skip
    assert by_hand.status == 201
    mine = system["rec"].send_order(side="buy", size=10, symbol="EUR_USD")
    wait_for(lambda: _filled_events(system, mine), what="the Brain's fill")
    wait_for(lambda: system["trader"].get_attr("positions") == {"EUR_USD": 14.0},
             what="the Trader seeing both trades")  # fmt: skip
    for _ in range(2):  # a second flatten finds nothing to do
        system.flatten()
        wait_for(lambda: _settled(system), timeout=30, what="the Brain flat")
    bars = system["rec"].get_attr("osm_bars")
    wait_for(lambda: system["rec"].get_attr("osm_bars") >= bars + 2, what="bars after")
    assert _units(sandbox) == 4  # the trade made by hand is left alone
    assert [float(t["units"]) for t in _market_orders(sandbox)] == [4.0, 10.0, -10.0]


def test_the_trader_goes_on_when_it_cannot_write_the_broker_state_file(sandbox, tmp_path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / f"trader-{sandbox.account_id}.tmp").mkdir()  # where the file is written first
    with launched(sandbox, state_dir=str(state)) as build:
        system = build()
        cid = system["rec"].send_order(side="buy", size=3, symbol="EUR_USD")
        wait_for(lambda: _filled_events(system, cid), what="the fill at the Brain")
        incidents = system["trader"].get_attr("incidents")
        assert [i for i in incidents if i["kind"] == "state_file"]
        assert system["trader"].get_attr("state_file_errors") >= 1


def test_a_state_file_behind_the_journal_is_restored_from_it(sandbox, tmp_path) -> None:
    """The Trader died after journaling events and before writing the broker's state file: the
    next one writes the file from the journal's copy, and reports nothing twice."""
    state = tmp_path / "state"
    with launched(sandbox, state_dir=str(state)) as build:
        system = build()
        cid = system["rec"].send_order(side="buy", size=3, symbol="EUR_USD")
        wait_for(lambda: _filled_events(system, cid), what="the fill at the Brain")
        system.shutdown()
        path = state / f"trader-{sandbox.account_id}.json"
        journaled = json.loads(path.read_text())["last_transaction_id"]
        path.write_text('{"last_transaction_id": "1"}')  # as it was before the fill
        again = build()
        wait_for(lambda: again["trader"].get_attr("reconciled"), what="reconciled")
        assert again["trader"].get_attr("reconciliation")["missed_events"] == []
        assert int(json.loads(path.read_text())["last_transaction_id"]) >= int(journaled)
        assert [e.kind for e in again["rec"].get_attr("events")] == []  # nothing again
