"""Hooks for observers (GUIs, monitors): the Trader's ``observers`` feed, history reads that do
not subscribe, the Overmind's status feed, and the per-user registry of name servers. Real agent
processes, no mocks."""

from __future__ import annotations

import functools
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
from conftest import make_bars, pid_alive, wait_for
from observer_brains import EveryKind, Holder

from osmarkets import registry, wire
from osmarkets.agents.base import socket_option
from osmarkets.brokers.simulated import SimulatedBroker
from osmarkets.data import BarSeriesID

M1 = ("EUR_USD", 1, "Minutes")
BROKER = functools.partial(SimulatedBroker, 100_000)


@pytest.fixture(autouse=True)
def own_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test sees only the architectures it starts."""
    folder = tmp_path / "nameservers"
    monkeypatch.setenv("OSMARKETS_REGISTRY_DIR", str(folder))
    return folder


@pytest.fixture
def context() -> Any:
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def _subscriber(ctx: zmq.Context, address: Any, rcvhwm: int = 100_000) -> zmq.Socket:
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, rcvhwm)
    sub.setsockopt(zmq.LINGER, 0)
    url = address if isinstance(address, str) else f"{address.transport}://{address.address}"
    sub.connect(url)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    return sub


_FEEDS = wire.Decoder(wire.OBSERVERS | wire.STATUS)
_REPLY = wire.Decoder(wire.HISTORY_REPLY)


def _drain(sub: zmq.Socket) -> list[tuple]:
    out = []
    while True:
        try:
            out.append(_FEEDS(sub.recv(zmq.NOBLOCK)))
        except zmq.Again:
            return out


def _key(event: Any) -> tuple:
    return (event.kind, event.client_id, event.side, float(event.size), event.reason)


# -- the Trader's observers feed ----------------------------------------------------------------
def test_observers_get_every_order_event_and_the_account(architectures, context) -> None:
    system = architectures(broker_factory=BROKER, risk={"max_order_size": 1_000})
    trader = system["trader"]
    feed = _subscriber(context, trader.addr("observers"))
    system.add_brain("every", base=EveryKind)
    system["every"].subscribe(M1, 10)
    # Connected before any broker job, but a SUB socket is live only once its subscription
    # reached the PUB: what it may have missed is in the snapshot, by sequence number.
    updates: list[tuple] = []
    # live mode fills a market order on the next data: at full speed a loaded machine can
    # replay all 40 bars before the Brain's first order arrives, leaving it unfilled
    system.stream(data={"EUR_USD": make_bars(40, seed=5)}, speed=600)

    def brain_done() -> list:
        try:
            events = system["every"].get_attr("events")
        except Exception:  # before the first bar: on_start has not run yet
            return []
        return events if len(events) >= 5 else []

    events = wait_for(brain_done, what="the Brain's five order events")
    wait_for(lambda: trader.idle_now(), what="the Trader to be idle")
    snapshot = trader.observer_snapshot(100)
    wait_for(
        lambda: updates.extend(_drain(feed)) or (updates and updates[-1][1] == snapshot["seq"]),
        what="the last update",
    )
    seqs = [u[1] for u in updates]
    assert seqs == list(range(seqs[0], seqs[-1] + 1))  # numbered, none lost here
    assert all(u[0] == "update" for u in updates)
    # what was published before our subscription was live is in the snapshot
    early = [e for seq, e in snapshot["events"] if seq < seqs[0]]
    published = early + [e for u in updates for e in u[2]]
    assert [_key(e) for e in published] == [_key(e) for e in events]
    assert {e.kind for e in published} == {"accepted", "filled", "rejected", "cancelled"}
    assert next(e for e in published if e.kind == "rejected").reason.startswith("risk:")
    # the account after the last job: the broker's own state
    state = trader.record()["state"]
    account = updates[-1][3]
    assert account == snapshot["account"]
    assert account["positions"] == state["positions"] == {"EUR_USD": 100.0}
    assert account["equity"] == state["equity"] and account["balance"] == state["balance"]


def test_a_slow_observer_never_blocks_the_trader_and_recovers_from_the_snapshot(
    architectures, context
) -> None:
    system = architectures(broker_factory=BROKER)
    trader = system["trader"]
    # a tiny high-water mark for the next observer (it applies to connections made after it)
    trader.execute_as_method(socket_option, "observers", zmq.SNDHWM, 5)
    feed = _subscriber(context, trader.addr("observers"), rcvhwm=5)
    system.add_brain("holder", base=Holder)
    system["holder"].subscribe(M1, 10)
    bars = 300  # thousands of ticks: an account update for each while the observer sleeps
    system.stream(["EUR_USD"], bars=bars, seed=4, speed=0)
    router, feeder = system["router"], system["feeder"]
    wait_for(lambda: feeder.get_attr("feed_done") and router.progress()["finished"],
             timeout=60, what="the whole feed through the Router")  # fmt: skip
    ticks = router.progress()["ticks_in"]
    wait_for(lambda: trader.idle_now() and trader.osm_stats()["received"] > ticks,
             timeout=60, what="the Trader to consume every tick")  # fmt: skip
    assert system["holder"].get_attr("bars") >= bars - 2  # the trading path went on
    latest = trader.observer_snapshot(0)["seq"]
    assert latest > ticks // 2 > 2_000  # one update per tick once the position is open
    got = wait_for(lambda: _drain(feed), what="the queued updates")
    seqs = [u[1] for u in got]
    assert len(seqs) < latest and seqs == sorted(seqs)  # PUB dropped, it did not block
    gaps = [b - a for a, b in zip(seqs, seqs[1:], strict=False) if b != a + 1]
    assert gaps or seqs[-1] < latest  # the observer can tell that it missed updates
    # recovery: the snapshot has every event after the last update the observer saw
    snapshot = trader.observer_snapshot(1_000)
    assert snapshot["seq"] == latest
    seen = [e for u in got for e in u[2]]
    recovered = seen + [e for seq, e in snapshot["events"] if seq > seqs[-1]]
    if seqs[0] > 1:  # the first updates arrived before our subscription was live
        recovered = [e for seq, e in snapshot["events"] if seq < seqs[0]] + recovered
    brain_events = system["holder"].get_attr("events")
    assert sorted(map(_key, recovered)) == sorted(map(_key, brain_events))
    assert snapshot["account"]["positions"] == {"EUR_USD": 1000.0}


# -- history for observers ------------------------------------------------------------------------
def test_history_for_an_observer_does_not_subscribe(architectures, context) -> None:
    data = make_bars(60, seed=9)
    system = architectures(broker_factory=BROKER)
    system.add_brain("rec", base=Holder)
    system["rec"].subscribe(M1, 20)
    router = system["router"]
    before = router.subscriptions()
    system.stream(data={"EUR_USD": data}, speed=0)
    wait_for(lambda: router.progress()["bars_out"] == 60, what="60 bars routed")
    req = context.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.setsockopt(zmq.RCVTIMEO, 10_000)
    address = router.addr("history")
    req.connect(f"{address.transport}://{address.address}")
    for bsid, count in ((M1, 25), (("EUR_USD", 5, "Minutes"), 5)):
        req.send(wire.encode(("history", None, BarSeriesID.parse(bsid), count)))
        kind, packed, seq = _REPLY(req.recv())
        records = wire.unpack_bars(packed)
        assert kind == "ok"
        if bsid == M1:
            assert seq == 60 and len(records) == 25
            np.testing.assert_array_equal(records["close"], data["close"].to_numpy()[-25:])
        else:  # a new series for an observer starts empty, and is not a subscription
            assert seq == 0 and len(records) == 0
    assert router.subscriptions() == before
    assert None not in router.subscriptions() and "None" not in router.subscriptions()


# -- the Overmind's status feed ------------------------------------------------------------
def test_overmind_publishes_the_status_table(architectures, context) -> None:
    system = architectures(broker_factory=BROKER, heartbeat=0.1)
    system.add_brain("rec", base=Holder)
    assert system["router"].get_attr("osm_cfg")["status_feed"] == system.status_feed
    feed = _subscriber(context, system.status_feed)
    tables: list[tuple] = []

    def complete() -> bool:
        tables.extend(_drain(feed))
        return len(tables) >= 2 and {"router", "trader", "rec"} <= {
            row["name"] for row in tables[-1][2]
        }

    wait_for(complete, what="two status tables with every agent")
    kind, seq, rows = tables[-1]
    assert kind == "status" and seq > tables[0][1]
    by_name = {row["name"]: row for row in rows}
    pids = system.status()["pid"].to_dict()
    for name in ("router", "trader", "rec"):
        assert by_name[name]["running"] and by_name[name]["pid"] == pids[name]
        assert "received" in by_name[name] and "errors" in by_name[name]


def test_without_supervision_there_is_no_status_feed(architectures) -> None:
    system = architectures(broker_factory=BROKER, supervise=False)
    assert system.status_feed is None
    assert "status_feed" not in system["router"].get_attr("osm_cfg")


# -- the registry of name servers ----------------------------------------------------------------
def test_architecture_registers_its_name_server_and_removes_it(architectures, own_registry):
    system = architectures(broker_factory=BROKER)
    (entry,) = registry.running()
    assert entry["nameserver"] == str(system.nsaddr) and entry["pid"] == os.getpid()
    path = Path(entry["path"])
    assert path.parent == own_registry
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(own_registry.stat().st_mode) == 0o700
    second = architectures(broker_factory=BROKER)
    assert [e["nameserver"] for e in registry.running()] == [
        str(second.nsaddr),
        str(system.nsaddr),
    ]
    system.shutdown()
    assert not path.exists()
    assert [e["nameserver"] for e in registry.running()] == [str(second.nsaddr)]


def test_stale_and_malformed_entries_are_ignored_and_cleaned(own_registry) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = registry.register("127.0.0.1:31001", pid=child.pid)
    live = registry.register("127.0.0.1:31002")
    reused = registry.register("127.0.0.1:31003")  # a live pid, but another process's start
    text = json.loads(reused.read_text())
    text["process_start"] = -1
    reused.write_text(json.dumps(text))
    garbage = own_registry / "123-456"
    garbage.write_text("{not json")
    wrong = own_registry / "124-457"
    wrong.write_text(json.dumps({"pid": os.getpid(), "nameserver": "no-port"}))
    assert not pid_alive(child.pid)
    assert [e["nameserver"] for e in registry.running()] == ["127.0.0.1:31002"]
    assert sorted(p.name for p in own_registry.iterdir()) == [live.name]
    assert not dead.exists()
    registry.unregister(live)
    assert registry.running() == []


def test_register_rejects_a_bad_address(own_registry) -> None:
    with pytest.raises(ValueError, match="nsaddr"):
        registry.register("localhost")


def test_an_architecture_killed_with_sigkill_leaves_a_stale_entry_that_is_cleaned(
    own_registry,
) -> None:
    script = (
        "from osmarkets.architecture import Architecture\n"
        "import sys, time\n"
        "a = Architecture(supervise=False)\n"
        "print(a.nsaddr, flush=True)\n"
        "time.sleep(600)\n"
    )
    env = dict(os.environ, OSMARKETS_REGISTRY_DIR=str(own_registry))
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             env=env)  # fmt: skip
    try:
        address = owner.stdout.readline().strip()
        assert [e["nameserver"] for e in registry.running()] == [address]
    finally:
        owner.kill()
        owner.wait()
    assert registry.running() == []
    assert list(own_registry.iterdir()) == []
