"""Backfilled bars are marked: the Router publishes every bar a ``backfill`` message completes, or
that holds one of its quotes, with ``backfilled=True``, and a Brain sees ``series.backfilled``
True in ``on_new_bar`` for it (only then). Real Router, Trader and Brain processes; the test is
the Feeder, pushing to the Router's ``in`` socket."""

from __future__ import annotations

import functools
import time
from typing import Any

import msgspec
import pytest
import zmq
from arch_brains import FlagRecorder
from conftest import make_bars, wait_for

from osmarkets import wire
from osmarkets.brokers.simulated import SimulatedBroker
from osmarkets.data import BarSeriesID
from osmarkets.data.types import Bar, Tick, to_ns

M1 = ("EUR_USD", 1, "Minutes")
MINUTE = 60_000_000_000
SECOND = 1_000_000_000
BROKER = functools.partial(SimulatedBroker, 100_000)
_PUB = wire.Decoder(wire.BRAIN_PUB)


# -- the codec ----------------------------------------------------------------------------------
def test_bar_publications_carry_the_mark_and_old_ones_still_decode() -> None:
    bar = Bar(to_ns("2024-01-02T07:00:00Z"), 1.1, 1.2, 1.0, 1.15, 4.0, *[1.1] * 8)
    old = _PUB(wire.encode(("bar", M1, 7, bar, None)))  # five fields: before the mark
    assert old == ("bar", M1, 7, bar, None, False)
    assert _PUB(wire.encode(("bar", M1, 7, bar, None, True)))[-1] is True
    for bad in (("bar", M1, 7, bar, None, 1), ("bar", M1, 7, bar, None, True, "extra")):
        with pytest.raises(wire.WireError):
            _PUB(wire.encode(bad))


def test_backfill_messages_decode_at_the_router_only() -> None:
    router_in = wire.Decoder(wire.ROUTER_IN)
    ticks = [Tick(to_ns("2024-01-02T07:00:00Z"), 1.1, 1.1001)]
    assert router_in(wire.encode(("backfill", "EUR_USD", ticks))) == ("backfill", "EUR_USD", ticks)
    assert router_in(wire.encode(("backfill", "EUR_USD", []))) == ("backfill", "EUR_USD", [])
    hostile = [
        msgspec.msgpack.encode(["backfill", "EUR_USD", [[True, 1.1, 1.2]]]),  # bool time
        msgspec.msgpack.encode(["backfill", "EUR_USD", [[1, 1.1, 1.2, 1, 1, 9]]]),  # 6 fields
        msgspec.msgpack.encode(["backfill", "EUR_USD", {"t": 1}]),  # a map of ticks
        msgspec.msgpack.encode(["backfill", 5, []]),  # symbol not a str
        msgspec.msgpack.encode(["backfill", "EUR_USD"]),  # no ticks
    ]
    for data in hostile:
        with pytest.raises(wire.WireError):
            router_in(data)
    # never passed on as such: the Trader and the Brains do not take the kind
    for schema in (wire.TRADER_MARKET, wire.BRAIN_PUB):
        with pytest.raises(wire.WireError):
            wire.Decoder(schema)(wire.encode(("backfill", "EUR_USD", ticks)))


# -- the Router and a Brain ---------------------------------------------------------------------
def _tick(at: int, mid: float) -> Tick:
    return Tick(at, round(mid - 0.00005, 6), round(mid + 0.00005, 6))


def _drain(sub: zmq.Socket, into: dict[int, tuple]) -> None:
    while True:
        try:
            data = sub.recv(zmq.NOBLOCK)
        except zmq.Again:
            return
        message = _PUB(memoryview(data)[data.find(b"|") + 1 :])
        if message[0] == "bar":
            into[int(message[3].time)] = message


def test_bars_completed_by_backfill_quotes_are_published_marked(architectures) -> None:
    system = architectures(broker_factory=BROKER, base_timeframes={"EUR_USD": None})
    router = system["router"]
    system.add_brain("rec", base=FlagRecorder)
    system["rec"].subscribe(M1, 10)
    context = zmq.Context()
    try:
        push = context.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.connect(f"{router.addr('in').transport}://{router.addr('in').address}")
        sub = context.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.connect(f"{router.addr('pub').transport}://{router.addr('pub').address}")
        sub.setsockopt(zmq.SUBSCRIBE, BarSeriesID(*M1).key.encode())
        published: dict[int, tuple] = {}

        def send(kind: str, *ticks: Tick) -> None:
            rows = [tuple(t) for t in ticks]
            if kind == "tick":
                for row in rows:
                    push.send(wire.encode(("tick", "EUR_USD", row)))
            else:
                push.send(wire.encode((kind, "EUR_USD", rows)))

        # 1. live ticks, one a minute, until the Brain and this SUB both get bars (a SUB socket
        #    receives only once its subscription reached the Router: the slow joiner)
        start = to_ns("2024-01-02T07:00:00Z")
        minute = start
        deadline = time.monotonic() + 20
        while not (published and system["rec"].get_attr("osm_bars") >= 1):
            assert time.monotonic() < deadline, "no bar reached the Brain and the test's SUB"
            send("tick", _tick(minute + SECOND, 1.1))
            minute += MINUTE
            if sub.poll(200):
                _drain(sub, published)
        warm = minute - MINUTE  # forming: the last warm-up tick's bar, completed live below

        # 2. the scenario, from minute s: live, a gap cut in minute s+1, the backfill (two
        #    messages, one crossed quote among them), then live again from minute s+4
        s = minute

        def at(k: int, seconds: float) -> int:
            return s + k * MINUTE + int(seconds * SECOND)

        send("tick", _tick(at(0, 1), 1.1010), _tick(at(0, 30), 1.1012), _tick(at(1, 1), 1.1020))
        send("tick", _tick(at(1, 20), 1.1021))  # the last price before the gap
        send("backfill",
             _tick(at(1, 30), 1.1030), _tick(at(1, 45), 1.1000), _tick(at(1, 59.999), 1.1025),
             _tick(at(2, 0), 1.1026), _tick(at(2, 15), 1.1040))  # fmt: skip
        send("backfill",
             _tick(at(2, 30), 1.1010), Tick(at(2, 45), 1.2, 1.1),  # crossed: dropped, counted
             _tick(at(2, 59.999), 1.1030), _tick(at(3, 0), 1.1031), _tick(at(3, 15), 1.1050),
             _tick(at(3, 30), 1.1020), _tick(at(3, 59.999), 1.1035))  # fmt: skip
        # the first live price after the gap completes the last backfilled bar (minute s+3)
        send("tick", _tick(at(4, 5), 1.1040), _tick(at(5, 1), 1.1041), _tick(at(6, 1), 1.1042))

        expected = {warm: False, at(0, 0): False, at(1, 0): True, at(2, 0): True,
                    at(3, 0): True, at(4, 0): False, at(5, 0): False}  # fmt: skip

        def seen() -> dict[int, Any]:
            return {t: (b, r) for t, b, r in system["rec"].get_attr("flags")}

        wait_for(lambda: at(5, 0) in seen(), what="the Brain's bar of minute s+5")

        def sub_done() -> bool:
            _drain(sub, published)
            return at(5, 0) in published

        wait_for(sub_done, what="the publication of minute s+5")

        # on the wire: the mark, each bar once, in order
        got = {t: published[t][5] for t in expected}
        assert got == expected, got
        seqs = [published[t][2] for t in sorted(expected)]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
        # the cut bar spans the live and the backfilled quotes, closes with its candle's close
        cut = published[at(1, 0)][3]
        assert (cut.open, cut.high, cut.low, cut.close) == pytest.approx(
            (1.1020, 1.1030, 1.1000, 1.1025)
        )
        assert published[at(2, 0)][3].volume == 4  # the crossed quote did not count

        # at the Brain: series.backfilled True for the backfilled bars only, never replayed
        flags = seen()
        assert {t: flags[t][0] for t in expected} == expected, flags
        assert not any(replayed for _, replayed in flags.values())
        rec = system["rec"]
        assert rec.get_attr("raised")  # user code raised on the first backfilled bar ...
        assert rec.osm_stats()["errors"] >= 1  # ... counted, and the Brain went on
        wait_for(lambda: rec.get_attr("ticks_seen") > 0, what="ticks at the Brain")
        assert rec.get_attr("flag_outside") == 0  # never set outside on_new_bar

        # the bad quote was dropped and counted; the Trader got ticks, not an unknown kind
        assert router.osm_stats()["rejected_by_reason"].get("crossed", 0) >= 1
        assert system["trader"].osm_stats()["malformed"] == 0
    finally:
        context.destroy(linger=0)


def test_lock_step_bars_go_through_the_held_path_unmarked(simulated) -> None:
    # lock-step bars carry an events watermark: the Brain holds them (the tuple with the mark)
    data = make_bars(40, seed=5)
    system = simulated({"EUR_USD": data})
    system.add_brain("rec", base=FlagRecorder)
    system["rec"].subscribe(M1, 100)
    system.run(timeout=60)
    flags = system["rec"].get_attr("flags")
    assert [t for t, _, _ in flags] == list(data.index.as_unit("ns").asi8)
    assert not any(backfilled or replayed for _, backfilled, replayed in flags)
