"""Operator controls (osmarkets.operator) on real agents: pause and resume a Brain, flatten a
Brain or the whole account, cancel pending orders, the kill switch; from Python and from
``osmarkets ctl`` in another process; kept across a restart of the deployment."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import make_bars, wait_for
from operator_brains import Buyer

from osmarkets.agents.trader import CANCELS, FLATTENS
from osmarkets.architecture import Architecture
from osmarkets.brokers.simulated import SimulatedBroker
from osmarkets.journal import Journal
from osmarkets.operator import OPERATOR, brain_books, flatten_orders

M1 = ("EUR_USD", 1, "Minutes")
BROKER = functools.partial(SimulatedBroker, 10_000_000)


@pytest.fixture(autouse=True)
def own_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "nameservers"
    monkeypatch.setenv("OSMARKETS_REGISTRY_DIR", str(folder))
    return folder


def bars_of(system: Any, brain: str) -> int:
    return int(system[brain].osm_stats()["bars"])


def trading(architectures: Any, *brains: str, **kwargs: Any) -> Any:
    system = architectures(Architecture, broker_factory=BROKER, **kwargs)
    for name in brains:
        system.add_brain(name, Buyer)
        system[name].subscribe(M1, 10)
    system.stream(data={"EUR_USD": make_bars(5000)}, speed=120)
    for name in brains:
        wait_for(lambda name=name: len(_fills(system, name)) >= 2, 60, f"{name}'s fills")
    return system


def _fills(system: Any, brain: str) -> list:
    return [e for e in system[brain].osm_event_list() if e.kind == "filled"]


def _account(system: Any) -> dict[str, float]:
    return {s: u for s, u in system["trader"].record()["state"]["positions"].items() if u}


# -- the pure parts ---------
def test_flatten_orders_close_each_brain_and_what_else_the_account_holds() -> None:
    names = iter(range(1, 100))
    orders = flatten_orders(
        {"a": {"EUR_USD": 300.0, "GBP_USD": -50.0}, "b": {"EUR_USD": 0.0}},
        {"EUR_USD": 500.0, "GBP_USD": -50.0, "USD_JPY": 7.0},
        lambda brain: f"{brain}-op-{next(names)}",
    )
    got = [(o.brain, o.symbol, o.side, o.size, o.type) for o in orders]
    assert got == [
        ("a", "EUR_USD", "sell", 300.0, "market"),
        ("a", "GBP_USD", "buy", 50.0, "market"),
        (OPERATOR, "EUR_USD", "sell", 200.0, "market"),  # held outside every Brain
        (OPERATOR, "USD_JPY", "sell", 7.0, "market"),
    ]
    assert all(o.client_id.startswith(f"{o.brain}-op-") for o in orders)
    assert flatten_orders({"a": {"EUR_USD": 1e-12}}, None, lambda b: "x") == []


def test_brain_books_count_cash_commissions_and_marks() -> None:
    from osmarkets.brokers.base import OrderEvent

    fills = [
        OrderEvent("filled", "a-1", "EUR_USD", "buy", 100.0, 1.10, brain="a", commission=0.5),
        OrderEvent("filled", "a-2", "EUR_USD", "sell", 40.0, 1.20, brain="a"),
        OrderEvent("rejected", "a-3", "EUR_USD", "buy", 5.0, brain="a"),
        OrderEvent("filled", "b-1", "EUR_USD", "sell", 10.0, 1.15, brain="b"),
    ]
    books = brain_books(fills, {"EUR_USD": 1.30})
    assert books["a"]["fills"] == 2 and books["a"]["positions"] == {"EUR_USD": 60.0}
    assert books["a"]["pnl"] == pytest.approx(-110.0 - 0.5 + 48.0 + 60 * 1.30)
    assert books["b"]["pnl"] == pytest.approx(11.5 - 13.0)
    # no mark: the last fill's price
    assert brain_books(fills, {})["b"]["pnl"] == pytest.approx(11.5 - 10 * 1.15)


# -- from Python ---------
def test_a_paused_brain_keeps_its_bars_and_its_orders_are_refused_as_paused(architectures):
    system = trading(architectures, "a")
    status = system.pause("a")
    assert status["brains"]["a"]["state"] == "paused"
    seen = len(system["a"].osm_event_list())
    bars = bars_of(system, "a")
    wait_for(lambda: bars_of(system, "a") >= bars + 3, 60, "bars while paused")
    later = system["a"].osm_event_list()[seen:]
    rejected = [e for e in later if e.kind == "rejected"]
    assert rejected and all(e.reason == "paused" for e in rejected)
    # (an order sent before the pause may still fill; none sent after it does)
    assert len([e for e in later if e.kind == "filled"]) <= 1
    assert system.resume("a")["brains"]["a"]["state"] == "running"
    fills = len(_fills(system, "a"))
    wait_for(lambda: len(_fills(system, "a")) > fills + 1, 60, "fills after resume")


def test_flatten_one_brain_then_the_account(architectures):
    system = trading(architectures, "a", "b")
    system.pause("a")
    system.pause("b")
    system.flatten("a")
    wait_for(lambda: not system.operator_status()["brains"]["a"]["positions"], 60, "a flat")
    wait_for(lambda: not system["a"].get_attr("osm_positions").get("EUR_USD"), 30, "a told")
    assert system.operator_status()["brains"]["b"]["positions"]["EUR_USD"] > 0
    system.flatten()
    wait_for(lambda: not _account(system), 60, "the account flat")
    status = system.operator_status()
    assert all(not row["positions"] for row in status["brains"].values())


def test_a_second_flatten_before_the_first_fills_does_not_double_it(architectures):
    system = trading(architectures, "a")
    system.pause("a")
    for _ in range(3):  # an operator pressing Flatten again before the price moves
        system.flatten("a")

    def settled() -> dict:
        status = system.operator_status()
        row = status["brains"]["a"]
        return not status["flattening"] and not row["positions"] and row

    wait_for(settled, 60, "a flat")
    bars = bars_of(system, "a")
    wait_for(lambda: bars_of(system, "a") >= bars + 3, 60, "bars after the flatten")
    assert not system.operator_status()["brains"]["a"]["positions"]  # not short: not doubled
    assert not _account(system)


def test_cancel_all_leaves_no_pending_order(architectures):
    system = trading(architectures, "a")
    system.pause("a")  # no new orders: what is pending is the far limit order
    wait_for(lambda: system.operator_status()["brains"]["a"]["pending"] >= 1, 30, "pending")
    system.cancel_all("a")
    wait_for(lambda: system.operator_status()["brains"]["a"]["pending"] == 0, 30, "cancelled")
    cancelled = [e for e in system["a"].osm_event_list() if e.kind == "cancelled"]
    assert any(e.size == 10 for e in cancelled)  # the limit order's


def test_the_kill_switch_cancels_flattens_and_stops_every_brain(architectures):
    system = trading(architectures, "a", "b")
    report = system.kill()
    assert sorted(report["stopped"]) == ["a", "b"]
    wait_for(lambda: not _account(system), 60, "the account flat")
    status = wait_for(lambda: (s := system.operator_status())["flattening"] == 0 and s, 30)
    assert status["kill_switch"] is True
    for name in ("a", "b"):
        row = status["brains"][name]
        assert row["state"] == "stopped" and row["pending"] == 0 and not row["positions"]
        assert system[name].osm_stats()["state"] == "stopped"
    # no Brain runs its code any more: its bar count goes on (the plumbing), its own does not
    own = system["a"].get_attr("bars")
    plumbing = bars_of(system, "a")
    wait_for(lambda: bars_of(system, "a") >= plumbing + 3, 60, "bars after the kill")
    assert system["a"].get_attr("bars") == own
    assert not _account(system)
    with pytest.raises(ValueError, match="no Brain 'nobody'"):
        system.pause("nobody")


def test_controls_are_kept_across_a_restart_of_the_deployment(architectures, tmp_path):
    state = tmp_path / "state"
    system = architectures(Architecture, broker_factory=BROKER, state_dir=state)
    system.add_brain("a", Buyer)
    system.pause("a")
    system.shutdown()
    again = architectures(Architecture, broker_factory=BROKER, state_dir=state)
    again.add_brain("a", Buyer)
    assert again.operator_status()["brains"]["a"]["state"] == "paused"
    again.kill()
    again.shutdown()
    third = architectures(Architecture, broker_factory=BROKER, state_dir=state)
    third.add_brain("a", Buyer)
    status = third.operator_status()
    assert status["kill_switch"] is True and status["brains"]["a"]["state"] == "stopped"
    assert third["a"].osm_stats()["state"] == "stopped"


@pytest.mark.parametrize(
    "key, journaled, malformed",
    [
        (FLATTENS, '[["a", false], ["x"], [null, "yes"], 7, [null, false], ["a", 1]]', 4),
        (FLATTENS, "not json", 1),
        (FLATTENS, '{"a": false}', 1),
        (FLATTENS, "[]", 0),
        (CANCELS, '["a", 7, null, ["a"], {"a": 1}]', 3),
        (CANCELS, "null", 1),
        (CANCELS, "[" * 100_000, 1),  # too deep for json: not a crash at start
    ],
)
def test_journaled_requests_are_carried_out_at_start_and_garbage_ignored(
    architectures, tmp_path, key, journaled, malformed
):
    state = tmp_path / "state"
    system = architectures(Architecture, broker_factory=BROKER, state_dir=state)
    system.add_brain("a", Buyer)
    system.shutdown()
    journal = Journal.in_dir(state)
    journal.set(key, journaled)  # what a Trader that died before carrying them out left
    journal.close()
    again = architectures(Architecture, broker_factory=BROKER, state_dir=state)
    again.add_brain("a", Buyer)
    wait_for(lambda: again.operator_status()["flattening"] == 0, 30, "the journaled flattens")
    journal = Journal.in_dir(state)
    try:  # carried out (the cancels' end comes back from the broker thread): none left
        wait_for(lambda: json.loads(journal.get(key) or "[]") == [], 30, "no request left")
    finally:
        journal.close()
    incidents = [i for i in again["trader"].get_attr("incidents") if i["kind"] == "journal"]
    assert len(incidents) == (1 if malformed else 0)
    if malformed:
        assert f"{malformed} malformed requests under {key}" in incidents[0]["detail"]


# -- from the command line ---------
def ctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "osmarkets", "ctl", *args],
        capture_output=True, text=True, timeout=60, env=env or dict(os.environ),
    )  # fmt: skip


def test_osmarkets_ctl_pauses_flattens_and_kills_a_running_deployment(architectures):
    system = trading(architectures, "a")
    done = ctl("pause", "a")
    assert done.returncode == 0, done.stderr
    assert "a: paused" in done.stdout
    assert system.operator_status()["brains"]["a"]["state"] == "paused"
    done = ctl("flatten", "a")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: not _account(system), 60, "flat after ctl flatten")
    done = ctl("status", "--json")
    assert done.returncode == 0, done.stderr
    assert '"paused"' in done.stdout
    done = ctl("kill")
    assert done.returncode == 0, done.stderr
    assert system.operator_status()["kill_switch"] is True
    assert system["a"].osm_stats()["state"] == "stopped"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("pause",), "pause: name the Brain"),
        (("kill", "a"), "kill: takes no Brain name"),
        (("pause", "nobody"), "no Brain 'nobody'"),
        (("launch",), "invalid choice"),
        (("pause", "a", "--account"), "--account: only with flatten"),
    ],
)
def test_osmarkets_ctl_says_what_is_wrong_in_one_line(architectures, args, message):
    architectures(Architecture, broker_factory=BROKER).add_brain("a", Buyer)
    done = ctl(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_osmarkets_ctl_without_a_deployment_or_with_a_wrong_key(architectures, tmp_path):
    done = ctl("status")
    assert done.returncode == 2 and "no running architecture found" in done.stderr
    system = architectures(Architecture, broker_factory=BROKER)
    from osmarkets.agents.auth import DeploymentKeys, write_key_file

    wrong = write_key_file(tmp_path / "wrong.key", DeploymentKeys.generate())
    done = ctl("status", "--nameserver", str(system.nsaddr), "--key-file", str(wrong))
    assert done.returncode == 2 and "did not answer" in done.stderr
    assert "Traceback" not in done.stderr


def test_hostile_control_calls_are_refused_and_the_trader_goes_on(architectures):
    system = trading(architectures, "a")
    trader = system["trader"]
    for call, args in (
        (trader.operator_pause, (123,)),
        (trader.operator_pause, ("x" * 10_000,)),
        (trader.operator_resume, (None,)),
        (trader.operator_flatten, (["a"],)),
        (trader.operator_cancel_all, ({"brain": "a"},)),
        (trader.operator_pause, ("operator",)),  # the flatten's own name is no Brain
    ):
        with pytest.raises(ValueError, match="no Brain"):
            call(*args)
    assert system.operator_status()["brains"]["a"]["state"] == "running"
    fills = len(_fills(system, "a"))
    wait_for(lambda: len(_fills(system, "a")) > fills, 60, "trading goes on")
    assert system.status().loc["trader", "running"]
