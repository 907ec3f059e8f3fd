"""Client ids and re-sent orders end to end (real agent processes, the sandbox on 127.0.0.1):
a second run on the same account, an order POST answered after the client's read timeout, and
a Trader killed between saving the broker's answer and delivering it to the Brain."""

from __future__ import annotations

import json
import re
from pathlib import Path

import oanda_arch_support
import pytest
from oanda_arch_support import (
    DIE_ON_SIZE,
    FAST_CLIENT,
    TOKEN,
    Buyer,
    fast_clock,
    launched,
    pid_alive,
    wait_for,
)

from osmarkets.brokers.oanda import OandaSandbox, trading

pytestmark = pytest.mark.timeout(180)
DUPLICATE = "CLIENT_ORDER_ID_ALREADY_EXISTS"


@pytest.fixture
def sandbox():
    with OandaSandbox(
        token=TOKEN, instruments=["EUR_USD"], seed=11, heartbeat=0.5, tick_interval=0.05,
        clock=fast_clock(60.0),
    ) as sb:  # fmt: skip
        yield sb


@pytest.fixture
def state_dir(tmp_path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def launch(sandbox, state_dir):
    with launched(sandbox, state_dir=str(state_dir)) as build:
        yield build


def _events(system, client_id: str) -> list:
    return [e for e in system["rec"].get_attr("events") if e.client_id == client_id]


def _filled(system, client_id: str) -> list:
    return [e for e in _events(system, client_id) if e.kind == "filled"]


def _orders(sandbox, client_id: str) -> list[dict]:
    return [t for t in sandbox.transactions if t["type"] == "MARKET_ORDER"
            and (t.get("clientExtensions") or {}).get("id") == client_id]  # fmt: skip


def _refused_copies(sandbox, client_id: str) -> list[dict]:
    return [t for t in sandbox.transactions if t["type"] == "MARKET_ORDER_REJECT"
            and t.get("rejectReason") == DUPLICATE
            and (t.get("clientExtensions") or {}).get("id") == client_id]  # fmt: skip


def _polled_past(state_file: Path, transaction_id: str) -> bool:
    """Whether the Trader's broker has read the account's transactions up to this one."""
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    return int(state.get("last_transaction_id") or 0) >= int(transaction_id)


def _fill(system, size: float) -> str:
    cid = system["rec"].send_order(side="buy", size=size, symbol="EUR_USD")
    wait_for(lambda: _filled(system, cid), timeout=30, what=f"the fill of {cid}")
    return cid


@pytest.mark.parametrize("same_state_dir", [True, False])
def test_a_second_run_on_the_same_account_gets_its_orders_filled(
    launch, sandbox, tmp_path, same_state_dir
) -> None:
    """Issue (c): client ids are '<brain>-<deployment>-<n>', so the second launch of the same
    launcher on the same account does not reuse the first one's ids: with the same state_dir
    the deployment id is kept and n goes on from the journal; with another (or none) the
    deployment id differs."""
    first = launch()
    run1 = [_fill(first, 10 + n) for n in range(2)]
    first.shutdown()
    second = launch() if same_state_dir else launch(state_dir=str(tmp_path / "other"))
    assert (second.run_id == first.run_id) is same_state_dir
    run2 = [_fill(second, 20 + n) for n in range(2)]
    for ids, system in ((run1, first), (run2, second)):
        for cid in ids:
            assert re.fullmatch(rf"rec-{system.run_id}-\d+", cid), cid
            assert len(cid) <= 128  # osMarkets' MAX_CLIENT_ID for clientExtensions.id
    assert not set(run1) & set(run2)
    for cid in run2:
        assert [e.kind for e in _events(second, cid)] == ["accepted", "filled"]
        assert len(_orders(sandbox, cid)) == 1
    assert not [t for t in sandbox.transactions if t["type"].endswith("_REJECT")]
    # the same state_dir resumes the deployment: its Brain holds what it bought in both runs
    # (the account's 62); another state_dir is another deployment, whose Brain bought 41
    assert second["rec"].position("EUR_USD") == (62 if same_state_dir else 41)


def test_an_order_post_answered_after_the_read_timeout(launch, sandbox, state_dir) -> None:
    """Issue (b): OANDA learns of the order only after the client's read timeout: the Brain
    receives exactly accepted and filled, never 'rejected', and the account holds one order."""
    system = launch(client_options=dict(FAST_CLIENT, timeout=(2.0, 0.5)))
    sandbox.slow_orders(1, delay=1.5, before=True)
    cid = system["rec"].send_order(side="buy", size=30, symbol="EUR_USD")
    wait_for(lambda: _filled(system, cid), timeout=30, what="the fill")
    (late,) = wait_for(lambda: _refused_copies(sandbox, cid), what="the late original refused")
    state_file = state_dir / f"trader-{sandbox.account_id}.json"
    wait_for(lambda: _polled_past(state_file, late["id"]), what="the Trader reading the reject")
    assert [e.kind for e in _events(system, cid)] == ["accepted", "filled"]
    assert len(_orders(sandbox, cid)) == 1
    assert system["rec"].position("EUR_USD") == 30


def test_a_trader_killed_between_saving_and_delivering_a_fill(
    launch, sandbox, monkeypatch
) -> None:
    """Issue (a): the broker thread had OANDA's answer and the Trader died before the journal
    had it (and so before the Brain got it). The broker's state file had not moved past it:
    the restarted Trader's reconciliation reports the fill as missed, the Brain's re-send of
    the order is not submitted again, and the Brain gets the fill, once, and no 'rejected'."""
    monkeypatch.setattr(
        trading, "make_trading_broker", oanda_arch_support.make_dying_trading_broker
    )
    system = launch(supervise=False)  # the test restarts the Trader itself
    before = _fill(system, 5)  # the Trader works
    old = system._agents["trader"].process.pid
    cid = system["rec"].send_order(side="buy", size=DIE_ON_SIZE, symbol="EUR_USD")
    wait_for(lambda: not pid_alive(old), what="the Trader dying after it saved the answer")
    assert len(_orders(sandbox, cid)) == 1 and _events(system, cid) == []
    system.restart_trader()
    wait_for(lambda: _filled(system, cid), timeout=30, what="the fill after the re-send")
    info = system["trader"].get_attr("reconciliation")
    # the state file moves past an answer only once the journal has it: not here
    assert [e.client_id for e in info["missed_events"]] == [cid]
    after = _fill(system, 3)  # orders go on
    assert [(e.kind, e.reason) for e in _events(system, cid)] == [("filled", "")]
    assert len(_orders(sandbox, cid)) == 1
    assert system["rec"].position("EUR_USD") == 5 + DIE_ON_SIZE + 3
    assert system["rec"].osm_stats()["unacked"] == 0
    for other in (before, after):
        assert [e.kind for e in _events(system, other)] == ["accepted", "filled"]
    wait_for(lambda: system["trader"].get_attr("positions") == {"EUR_USD": 85.0},
             what="the Trader's position")  # fmt: skip


def test_client_ids_without_and_with_a_run_id() -> None:
    """In-process: a Brain outside a deployment (a backtest) keeps '<name>-<n>'; with the run
    id a deployment gives it, '<name>-<run>-<n>', still '<brain>-'-prefixed as check_order
    wants."""
    from osmarkets.brokers.base import check_order

    sent = []

    class Context:
        def submit_order(self, brain, order):
            sent.append(order)

        def now(self, brain):
            return 1

    brain = Buyer()
    brain.bind(Context(), "bot")
    brain.send_order("buy", 1, "EUR_USD")
    brain._osm_run_id = "0a1b2c3d"
    brain.send_order("buy", 1, "EUR_USD")
    assert [o.client_id for o in sent] == ["bot-1", "bot-0a1b2c3d-2"]
    assert all(check_order(o) is None for o in sent)
