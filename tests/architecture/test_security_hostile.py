# ruff: noqa: E501  (one hostile input per line reads best)
"""Hostile input against every socket and public proxy method of a running deployment.

Each input is sent on its own and the test waits until the target agent has counted it. For
every one: nothing is executed (a pickle whose ``__reduce__`` writes a file never writes it),
nothing wrong reaches the broker, the agent keeps running. At the end a valid order from each
Brain still fills and reaches that Brain only.
"""

from __future__ import annotations

import math
import os
import pickle
import time
from pathlib import Path
from typing import Any

import cloudpickle
import msgspec
import Pyro4
import pytest
import zmq
from arch_brains import Recorder
from conftest import wait_for

from osmarkets import wire
from osmarkets.architecture import Architecture
from osmarkets.brokers.base import Order, OrderEvent
from osmarkets.brokers.simulated import SimulatedBroker
from osmarkets.data.types import Bar, Tick

pytestmark = pytest.mark.timeout(300)

M1 = ("EUR_USD", 1, "Minutes")
TEN_YEARS_NS = 10 * 365 * 86_400 * 10**9


class _WritesFile:
    """A pickle that, if ever unpickled, writes ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> Any:
        return (exec, (f"open({self.path!r}, 'w').write('pwned')",))


def _url(address: Any) -> str:
    return f"{address.transport}://{address.address}"


def _order(client_id: str, brain: str, **fields: Any) -> Order:
    base = dict(client_id=client_id, symbol="EUR_USD", side="buy", size=100.0, brain=brain)
    base.update(fields)
    return Order(**base)


def _raw_order(*values: Any) -> bytes:
    """An order message whose fields bypass Order's Python types (msgspec encodes as given)."""
    return msgspec.msgpack.encode(["order", list(values), "x"])


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Any:
    marker = tmp_path_factory.mktemp("hostile") / "pwned"
    system = Architecture(
        broker_factory=lambda: SimulatedBroker(100_000.0), heartbeat=0.2, supervise=True
    )
    try:
        for name in ("rec", "other"):
            system.add_brain(name, base=Recorder, buy_on=10**9)
            system[name].subscribe(M1, 20)
        system.stream(["EUR_USD"], seed=3, speed=600)  # ten one-minute bars a second, endless
        wait_for(lambda: system["rec"].get_attr("osm_bars") >= 2, what="bars at the Brain")
        context = zmq.Context()
        yield system, marker, context
        context.destroy(linger=0)
    finally:
        system.shutdown()


def _counted(system: Any, name: str) -> int:
    stats = system[name].osm_stats()
    return int(stats["malformed"]) + int(stats["errors"])


def _push(context: zmq.Context, address: Any, data: bytes) -> None:
    push = context.socket(zmq.PUSH)
    push.connect(_url(address))
    push.send(data)
    push.close(linger=5000)


def _generic(marker: Path, valid: tuple, foreign: tuple) -> list[tuple[str, bytes]]:
    """Inputs every socket must refuse: ``valid`` is a well-formed message of that socket
    (cut and extended here), ``foreign`` a well-formed message of another socket."""
    data = wire.encode(valid)
    return [
        ("empty", b""),
        ("garbage bytes", bytes(range(256))),
        ("pickle whose __reduce__ writes a file", pickle.dumps(_WritesFile(marker))),
        ("pickle of a legitimate-looking tuple", pickle.dumps(("tick", "EUR_USD", (1, 1.0, 1.1)))),
        ("cloudpickled lambda", cloudpickle.dumps(lambda: os.system("true"))),
        ("json text", b'["tick", "EUR_USD", [1, 1.0, 1.1]]'),
        ("truncated message", data[: len(data) // 2]),
        ("deeply nested arrays", b"\x91" * 100_000 + b"\x90"),
        ("array declaring 4 billion items", b"\xdd\xff\xff\xff\xff"),
        ("unknown kind", wire.encode(("nope", 1))),
        ("kind of another socket", wire.encode(foreign)),
        ("extra field", wire.encode((*valid, "extra"))),
        ("map instead of array", msgspec.msgpack.encode({"kind": "tick", "symbol": "EUR_USD"})),
        ("invalid msgpack opcode", b"\xc1\xc1\xc1"),
    ]


def test_hostile_input_on_every_socket(deployment) -> None:
    system, marker, context = deployment
    auth = dict(system._brain_auth)
    router, trader = system["router"], system["trader"]
    now = time.time_ns()
    last = router.last_times()["EUR_USD"]
    tick = ("tick", "EUR_USD", Tick(last, 1.1, 1.1001))
    order = ("order", _order("rec-900001", "rec"), auth["rec"])
    event = ("event", OrderEvent("filled", "rec-1", "EUR_USD", "buy", 1e6, brain="rec"), "x")

    router_in = _generic(marker, tick, order) + [
        ("crossed quote", wire.encode(("tick", "EUR_USD", Tick(last + 1, 1.2, 1.1)))),
        ("tick ten years ahead", wire.encode(("tick", "EUR_USD", Tick(now + TEN_YEARS_NS, 1.1, 1.2)))),
        ("tick ten minutes in the past", wire.encode(("tick", "EUR_USD", Tick(last - 600 * 10**9, 1.1, 1.2)))),
        ("time=True", msgspec.msgpack.encode(["tick", "EUR_USD", [True, 1.1, 1.2]])),
        ("time=2**64-1", msgspec.msgpack.encode(["tick", "EUR_USD", [2**64 - 1, 1.1, 1.2]])),
        ("float time", msgspec.msgpack.encode(["tick", "EUR_USD", [1.7e18, 1.1, 1.2]])),
        ("NaN bid", wire.encode(("tick", "EUR_USD", Tick(last + 2, math.nan, 1.2)))),
        ("negative ask", wire.encode(("tick", "EUR_USD", Tick(last + 3, 1.1, -1.2)))),
        ("unknown symbol", wire.encode(("tick", "XAU_USD", Tick(last + 4, 1900.0, 1900.5)))),
        ("bar on a tick feed", wire.encode(("bar", "EUR_USD", Bar(last, 1.1, 1.2, 1.0, 1.1)))),
        ("batch of crossed ticks", wire.encode(("ticks", "EUR_USD", [Tick(last + 5, 2.0, 1.0)] * 3))),
        ("backfill of crossed quotes", wire.encode(("backfill", "EUR_USD", [Tick(last + 6, 2.0, 1.0)] * 2))),
        ("backfill of an unknown symbol", wire.encode(("backfill", "XAU_USD", [Tick(last + 7, 1900.0, 1900.5)]))),
        ("backfill ten years ahead", wire.encode(("backfill", "EUR_USD", [Tick(now + TEN_YEARS_NS, 1.1, 1.2)]))),
        ("backfill with time=True", msgspec.msgpack.encode(["backfill", "EUR_USD", [[True, 1.1, 1.2]]])),
        ("backfill of bars", msgspec.msgpack.encode(["backfill", "EUR_USD", [list(Bar(last, 1.1, 1.2, 1.0, 1.1))]])),
        ("backfill without its ticks", msgspec.msgpack.encode(["backfill", "EUR_USD"])),
        ("ack with wrong types", msgspec.msgpack.encode(["ack", 1, 2, "x", None])),
        ("trader_ack with a list", msgspec.msgpack.encode(["trader_ack", 1, [1, 2]])),
    ]  # fmt: skip
    orders = _generic(marker, order, tick) + [
        ("sell of -100", wire.encode(("order", _order("rec-900002", "rec", side="sell", size=-100.0), auth["rec"]))),
        ("side 'foo'", wire.encode(("order", _order("rec-900003", "rec", side="foo"), auth["rec"]))),
        ("type 'foo'", wire.encode(("order", _order("rec-900004", "rec", type="foo"), auth["rec"]))),
        ("1e18 units", wire.encode(("order", _order("rec-900005", "rec", size=1e18), auth["rec"]))),
        ("NaN size", wire.encode(("order", _order("rec-900006", "rec", size=math.nan), auth["rec"]))),
        ("limit at a negative price", wire.encode(("order", _order("rec-900007", "rec", type="limit", price=-1.0), auth["rec"]))),
        ("path as symbol", wire.encode(("order", _order("rec-900008", "rec", symbol="../../etc/passwd"), auth["rec"]))),
        ("another Brain's client id", wire.encode(("order", _order("other-900009", "rec"), auth["rec"]))),
        ("negative time", wire.encode(("order", _order("rec-900010", "rec", time=-5), auth["rec"]))),
        ("10,000-character client id", wire.encode(("order", _order("rec-" + "9" * 10_000, "rec"), auth["rec"]))),
        ("order as another Brain", wire.encode(("order", _order("other-900011", "other"), auth["rec"]))),
        ("order without credential", wire.encode(("order", _order("rec-900012", "rec"), ""))),
        ("order of an unknown Brain", wire.encode(("order", _order("ghost-1", "ghost"), "x"))),
        ("bool size", _raw_order("rec-900013", "EUR_USD", "buy", True)),
        ("forged hello", wire.encode(("hello", "other", "ipc:///tmp/attacker", "wrong"))),
        ("hello with a foreign address", wire.encode(("hello", "rec", "ipc:///tmp/attacker", auth["rec"]))),
        ("cancel with a wrong credential", wire.encode(("cancel", "other", "other-1", auth["rec"]))),
    ]  # fmt: skip
    events = _generic(marker, event, tick) + [
        ("forged fill", wire.encode(event)),
        ("fill with another Brain's credential", wire.encode(("event", OrderEvent("filled", "rec-1", "EUR_USD", "buy", 1e6, brain="rec"), auth["other"]))),
        ("event of another Brain", wire.encode(("event", OrderEvent("filled", "other-1", "EUR_USD", "buy", 1e6, brain="other"), auth["rec"]))),
        ("forged trader_up", wire.encode(("trader_up", 1, "x"))),
    ]  # fmt: skip
    targets = [
        ("router", router.addr("in"), router_in),
        ("trader", trader.addr("orders"), orders),
        ("rec", system["rec"].addr("events"), events),
    ]
    sent = 0
    for name, address, inputs in targets:
        for what, data in inputs:
            before = _counted(system, name)
            _push(context, address, data)
            wait_for(
                lambda n=name, b=before: _counted(system, n) > b, 20, f"{name} to count {what}"
            )
            sent += 1
    # the history REP socket answers every request, refused ones with b"\x00"
    req = context.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(_url(router.addr("history")))
    history = [
        ("garbage", bytes(range(200))),
        ("pickle whose __reduce__ writes a file", pickle.dumps(_WritesFile(marker))),
        (
            "unknown unit",
            msgspec.msgpack.encode(["history", "rec", ["EUR_USD", 1, "Lightyears"], 5]),
        ),
        ("negative count", wire.encode(("history", "rec", ("EUR_USD", 1, "Minutes"), -5))),
        ("oversized", b"\x00" * (wire.MAX_MESSAGE_BYTES + 1)),
    ]
    for what, data in history:
        before = _counted(system, "router")
        req.send(data)
        assert req.poll(10_000), what
        reply = req.recv()
        if what in ("unknown unit", "negative count"):  # well formed: refused with the reason
            refused = msgspec.msgpack.decode(reply)
            assert refused[0] == "refused" and ("unit" in refused[1] or "-5" in refused[1])
        else:
            assert reply == b"\x00", what
        wait_for(lambda b=before: _counted(system, "router") > b, 10, f"router counting {what}")
        sent += 1
    req.close()
    assert sent >= 50
    # nothing was executed, every agent runs, the Brains' positions did not move
    assert not marker.exists()
    status = system.status()
    assert status["running"].all() and status["alive"].all()
    assert system.overmind.restarts == {}
    assert system["rec"].get_attr("osm_positions") == {}
    assert system["rec"].osm_stats()["forged"] >= 3
    stats = trader.osm_stats()
    assert stats["forged"] >= 5 and stats["invalid_orders"] >= 8
    record = trader.record()
    assert record["fills"] == [] and not any(record["state"]["positions"].values())
    # the invalid orders of 'rec' got a 'rejected' event with the reason, nothing else
    wait_for(lambda: len(system["rec"].get_attr("events")) >= 8, what="the rejections")
    got = system["rec"].get_attr("events")
    assert {e.kind for e in got} == {"rejected"}
    assert all(e.reason.startswith("invalid order:") for e in got)
    assert system["other"].get_attr("events") == []
    # bar building went on after the bad ticks (the one ten years ahead included)
    bars = system["rec"].get_attr("osm_bars")
    wait_for(lambda: system["rec"].get_attr("osm_bars") >= bars + 3, what="bars after the ticks")
    # and a valid order of each Brain still fills and reaches that Brain only
    for name in ("rec", "other"):
        _push(context, trader.addr("orders"),
              wire.encode(("order", _order(f"{name}-950000", name), auth[name])))  # fmt: skip
        wait_for(lambda n=name: system[n].get_attr("osm_positions").get("EUR_USD") == 100.0,
                 what=f"the fill at {name}")  # fmt: skip
    counts = router.osm_stats()["rejected_by_reason"]
    for reason in ("crossed", "future", "back", "unknown_symbol", "price", "feed_kind"):
        assert counts.get(reason, 0) >= 1, (reason, counts)


def test_hostile_proxy_calls_are_refused_or_counted(deployment) -> None:
    system, marker, _ = deployment
    calls = [
        ("router", "set_base_timeframes", (5,)),
        ("router", "subscriptions", (1,)),
        ("trader", "observer_snapshot", ("many",)),
        ("rec", "subscribe", (("EUR_USD", 1, "Lightyears"), 10)),
        ("rec", "subscribe", (M1, -1)),
        ("rec", "osm_series_frame", ("no such series",)),
    ]
    for name, method, args in calls:
        before = system[name].osm_stats()["errors"]
        with pytest.raises(Exception):  # noqa: B017 - any error, raised in the caller
            getattr(system[name], method)(*args)
        assert system[name].osm_stats()["errors"] == before + 1, method
        assert system[name].is_running()
    # without the deployment's key, Pyro refuses before deserialising anything
    uri = system._nameserver_proxy().lookup("trader")
    stranger = Pyro4.core.Proxy(uri)
    stranger._pyroHmacKey = None
    with pytest.raises(Pyro4.errors.PyroError, match="hmac"):
        stranger.ping()
    wrong = Pyro4.core.Proxy(uri)
    wrong._pyroHmacKey = b"not the key"
    with pytest.raises(Pyro4.errors.PyroError, match="hmac"):
        wrong.ping()
    ns = Pyro4.core.Proxy(f"PYRO:Pyro.NameServer@{system.nsaddr}")
    ns._pyroHmacKey = None
    with pytest.raises(Pyro4.errors.PyroError, match="hmac"):
        ns.list()
    assert system["trader"].is_running() and not marker.exists()


def test_the_logger_takes_text_only(tmp_path) -> None:
    marker = tmp_path / "pwned"
    log_path = tmp_path / "osm.log"
    with Architecture(logging=True, log_path=str(log_path), heartbeat=0.2) as system:
        system.add_brain("rec", base=Recorder)
        logger = system["logger"]
        system["rec"].log_warning("a line from the Brain")
        wait_for(lambda: any("a line from the Brain" in line for line in logger.recent("WARNING")),
                 what="the Brain's warning at the Logger")  # fmt: skip
        context = zmq.Context()
        try:
            pub = context.socket(zmq.PUB)
            pub.connect(_url(logger.addr("sub")))
            inputs = [b"INFO" + pickle.dumps(_WritesFile(marker)), b"ERROR\xff\xfe\x00",
                      b"WARNING" + b"\x80" * 10]  # fmt: skip
            # a PUB drops what it sends before the subscription arrived: repeat until counted
            wait_for(lambda: [pub.send(data) for data in inputs]
                     and logger.osm_stats()["malformed"] >= 2, what="the Logger counting")  # fmt: skip
        finally:
            context.destroy(linger=0)
        assert logger.is_running() and not marker.exists()
    assert "a line from the Brain" in log_path.read_text()


# The owner's lifecycle and configuration calls: legitimate with any argument they accept.
_OWNER_ONLY = {"shutdown", "stop_feed", "kill_switch", "register_brain", "unsubscribe_brain",
               "start_feed", "osm_setup", "before_loop", "on_init"}  # fmt: skip


def _public_methods(cls: type) -> list[str]:
    """Methods osMarkets defines on an agent class (osBrain's own are osBrain's concern)."""
    names = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("osmarkets"):
            continue
        for name, value in vars(klass).items():
            if callable(value) and not name.startswith("_") and name not in _OWNER_ONLY:
                names.add(name)
    return sorted(names)


def test_every_public_proxy_method_survives_garbage(deployment) -> None:
    """Every method an authenticated caller can reach through a proxy, called with arguments of
    the wrong type: it raises to the caller or ignores them; the agent keeps running and
    nothing reaches the broker."""
    from osmarkets.agents import RouterAgent, TraderAgent
    from osmarkets.agents.brain import make_brain_class

    system, marker, _ = deployment
    garbage = [("\x00" * 10_000,), (None, None), (-1, {"a": [1.5]})]
    called = 0
    for name, cls in (("router", RouterAgent), ("trader", TraderAgent),
                      ("rec", make_brain_class(Recorder))):  # fmt: skip
        proxy = system[name]
        for method in _public_methods(cls):
            for args in garbage:
                try:
                    proxy._pyroTimeout = 10.0
                    getattr(proxy, method)(*args)
                except Exception:
                    pass
                called += 1
            assert proxy.is_running(), f"{name}.{method} stopped the loop"
    assert called >= 60
    assert system.status()["running"].all() and not marker.exists()
    fills = system["trader"].record()["fills"]
    assert all(fill.client_id.endswith("-950000") for fill in fills)
