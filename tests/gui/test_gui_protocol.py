"""The window <-> bridge PAIR link's schema (no Qt, no architecture): typed MessagePack both
ways, never pickle; whatever does not decode is counted and shown as an error, never run."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from osmarkets import wire
from osmarkets.brokers.base import OrderEvent
from osmarkets.data.timeframes import BarSeriesID
from osmarkets.data.types import BAR_DTYPE, Bar, Tick
from osmarkets.gui.bridge import (
    REPORTED_REFUSALS,
    TO_BRIDGE,
    GuiState,
    WindowDecoder,
    _Bridge,
    encode_batch,
)

MIN = 60_000_000_000
T0 = 1_704_186_000_000_000_000
M1 = ("EUR_USD", 1, "Minutes")


def records(n: int) -> np.ndarray:
    out = np.zeros(n, dtype=BAR_DTYPE)
    out["time"] = T0 + MIN * np.arange(n)
    close = 1.1 + 1e-4 * np.arange(n)
    out["open"], out["close"], out["volume"] = close, close, 1.0
    out["high"], out["low"] = close + 1e-4, close - 1e-4
    for side, sign in (("bid", -1), ("ask", 1)):  # quotes, not NaN: records compare equal
        for f in ("open", "high", "low", "close"):
            out[f"{side}_{f}"] = out[f] + sign * 5e-5
    return out


def bridge_items(history: np.ndarray) -> list[tuple]:
    """Items as the bridge builds them, from what the wire decoders give it."""
    fill = OrderEvent("filled", "x", "EUR_USD", "buy", 10.0, 1.1, time=int(history["time"][2]))
    return [
        ("hello", "gui-1", False),
        ("history", M1, wire.pack_bars(history[:4]), 4),
        ("bar", M1, 5, Bar(*history[4].tolist())),
        ("ticks", "EUR_USD", [Tick(int(history["time"][4]) + MIN, 1.2, 1.2002)]),
        ("account", [fill], {"equity": 5.0, "positions": {"EUR_USD": 10.0}}),
        ("series", ["EUR_USD:M1"], ["EUR_USD"]),
        ("status", [{"name": "router", "running": True, "pid": 12}]),
        ("error", "boom"),
    ]


def test_a_batch_decodes_to_what_the_state_applies() -> None:
    history = records(5)
    decoder = WindowDecoder()
    messages = decoder(encode_batch(bridge_items(history)))
    assert [m[0] for m in messages] == [
        "hello", "history", "bar", "ticks", "account", "series", "status", "error",
    ]  # fmt: skip
    _, bsid, loaded, seq = messages[1]
    assert type(bsid) is BarSeriesID and bsid == M1 and seq == 4
    assert loaded.dtype == BAR_DTYPE
    np.testing.assert_array_equal(loaded, history[:4])
    assert type(messages[2][1]) is BarSeriesID and type(messages[2][3]) is Bar
    assert type(messages[3][2][0]) is Tick
    event = messages[4][1][0]
    assert type(event) is OrderEvent and event.kind == "filled" and event.size == 10.0
    assert decoder.undecodable == 0

    state = GuiState()
    state.apply(messages)
    model = state.models[BarSeriesID(*M1)]
    assert state.connected and model.completed == 5 and len(model) == 6
    assert state.last_price["EUR_USD"] == pytest.approx(1.2001)
    assert list(model.markers().x) == [2] and state.blotter.account["equity"] == 5.0
    assert state.series == ["EUR_USD:M1"] and state.errors == ["boom"]


def test_pickle_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> Any:
            return (os.makedirs, (str(marker),))

    decoder = WindowDecoder()
    for data in (
        pickle.dumps(("batch", [("error", "hi")])),
        pickle.dumps(("batch", [Payload()])),
        pickle.dumps(Payload()),
    ):
        [(kind, text)] = decoder(data)
        assert kind == "error" and "undecodable" in text
    assert not marker.exists() and decoder.undecodable == 3


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never used in MessagePack
        os.urandom(64),
        msgspec.msgpack.encode({"batch": []}),
        msgspec.msgpack.encode(["batch"]),
        msgspec.msgpack.encode(["watch", list(M1), 10]),  # a command is no batch
        msgspec.msgpack.encode(["batch", "not a list"]),
    ],
)
def test_garbage_is_one_error_item(data: bytes) -> None:
    decoder = WindowDecoder()
    [(kind, text)] = decoder(data)
    assert kind == "error" and text.startswith("undecodable message")
    assert decoder.undecodable == 1


def test_the_good_items_of_a_bad_batch_are_kept() -> None:
    history = records(5)
    good = bridge_items(history)
    bad: list[Any] = [
        ("bar", M1, "5", Bar(*history[4].tolist())),  # seq not an int
        ("bar", M1, True, Bar(*history[4].tolist())),  # nor a bool
        ("hello", "gui-1", 1),  # lockstep must be a bool
        ("ticks", "EUR_USD", [(T0, "1.1", 1.2)]),  # a price as text
        ("exec", "import os"),  # not a kind of the link
        ("bar", ("EUR USD!", 1, "Minutes"), 6, Bar(*history[4].tolist())),  # bad series id
        ("history", M1, b"\x00" * 7, 4),  # not whole bars
        ("account", [("filled", "x")], {}),  # an event with missing fields
        ("status", [{1: "not a str key"}]),
    ]
    decoder = WindowDecoder()
    items = good[:3] + bad + good[3:]
    messages = decoder(wire.encode(("batch", items)))
    assert len(messages) == len(items)
    errors = [m for m in messages if m[0] == "error" and m[1] != "boom"]
    assert len(errors) == len(bad) == decoder.undecodable
    assert [m[0] for m in messages if m not in errors] == [m[0] for m in good]
    state = GuiState()
    state.apply(messages)  # the good ones applied, the bad ones listed
    assert state.models[BarSeriesID(*M1)].completed == 5
    assert len(state.errors) == len(bad) + 1


def test_an_item_that_cannot_be_encoded_is_replaced_by_an_error() -> None:
    messages = WindowDecoder()(encode_batch([("status", [{"x": object()}]), ("hello", "g", True)]))
    assert messages[0][0] == "error" and "'status'" in messages[0][1]
    assert messages[1] == ("hello", "g", True)


def test_a_history_that_cannot_be_applied_is_an_error_not_a_crash() -> None:
    state = GuiState()
    backwards = records(4)[::-1].copy()
    state.apply([("history", BarSeriesID(*M1), backwards, 4), ("hello", "g", False)])
    assert state.connected and len(state.errors) == 1 and "backwards" in state.errors[0]


def test_commands_decode_at_the_bridge_and_nothing_else_does() -> None:
    commands = wire.Decoder(TO_BRIDGE)
    assert commands(wire.encode(("watch", BarSeriesID(*M1), 500))) == ("watch", M1, 500)
    assert commands(wire.encode(("stop",))) == ("stop",)
    for message in (("watch", M1, True), ("watch", M1), ("history", None, M1, 5), ("exec", "x")):
        with pytest.raises(wire.WireError):
            commands(wire.encode(message))
    with pytest.raises(wire.WireError):
        commands(pickle.dumps(("stop",)))


def bare_bridge() -> _Bridge:
    """A bridge's message handling without its sockets and proxies."""
    bridge = _Bridge.__new__(_Bridge)
    bridge.outbox, bridge.refused, bridge.running = [], {}, True
    bridge.commands = wire.Decoder(TO_BRIDGE)
    bridge.pub_decoder = wire.Decoder(wire.BRAIN_PUB)
    bridge.trader_decoder = wire.Decoder(wire.OBSERVERS)
    bridge.status_decoder = wire.Decoder(wire.STATUS)
    bridge.watched = {BarSeriesID(*M1): 100}
    bridge.bar_seq = {BarSeriesID(*M1): 4}
    bridge.trader_seq = 0
    return bridge


def test_the_bridge_forwards_decoded_feeds_and_counts_the_rest() -> None:
    bridge = bare_bridge()
    history = records(6)
    bar = Bar(*history[4].tolist())
    key = BarSeriesID(*M1).key.encode()
    bridge.on_pub(key + wire.encode(("bar", M1, 5, bar, None)))
    bridge.on_pub(key + wire.encode(("bar", M1, 5, bar, None)))  # seen: dropped
    bridge.on_pub(key + wire.encode(("probe", M1)))  # for the Brains
    bridge.on_pub(b"EUR_USD tick|" + wire.encode(("tick", "EUR_USD", 1, Tick(T0, 1.1, 1.2))))
    event = OrderEvent("filled", "a", "EUR_USD", "buy", 1.0, 1.1, time=T0)
    bridge.on_trader(wire.encode(("update", 1, [event], {"equity": 1.0})))
    bridge.on_status([wire.encode(("status", 1, [{"name": "a"}])), b"junk"])
    bridge.command(wire.encode(("stop",)))
    assert not bridge.running
    # the newest status table did not decode: the one before it is shown
    kinds = [item[0] for item in bridge.outbox]
    assert kinds == ["bar", "ticks", "account", "error", "status"], bridge.outbox
    assert bridge.refused == {"status": 1}
    messages = WindowDecoder()(encode_batch(bridge.outbox))
    assert messages[0] == ("bar", BarSeriesID(*M1), 5, bar)
    assert messages[2] == ("account", [event], {"equity": 1.0})

    bridge.outbox.clear()
    bridge.refused.clear()
    evil = pickle.dumps(("stop",))
    for _ in range(REPORTED_REFUSALS + 5):
        bridge.command(evil)
        bridge.on_pub(key + evil)
        bridge.on_trader(evil)
    assert bridge.refused == {"command": 25, "data": 25, "trader": 25}
    assert len(bridge.outbox) == 3 * REPORTED_REFUSALS  # reported, then only counted
    assert all(item[0] == "error" for item in bridge.outbox)
