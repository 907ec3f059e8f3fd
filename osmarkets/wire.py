"""The data plane's codec: every message between agents, as schema'd MessagePack.

Why: the first cut pickled every message, and unpickling runs code (a pickle's ``__reduce__``
executes whatever it names). Here a message is MessagePack, and decoding it builds only the types
declared below for the socket it arrived on: strings, numbers, lists, dicts, and the records of
:mod:`osmarkets.data.types` and :mod:`osmarkets.brokers.base`, each field checked against its
annotation (``Tick.time`` must be an ``int``, ``True`` is refused). Decoding *is* validation:
anything else raises :class:`WireError` and the agent drops, logs and counts it.

The library is `msgspec <https://jcristharif.com/msgspec/>`_: it decodes straight into typed
records in one C pass (no intermediate dicts), it is faster than pickle on these messages
(``benchmarks/bench_pipeline.py``), and its MessagePack is a standard any language can read.

A message is written as a plain tuple whose first item is its kind, ``('tick', symbol, tick)``;
it decodes back to the same tuple shape (nested messages included), so the agents' dispatch code
reads the same as before. Each socket has its schema: a union of the kinds it may carry
(:data:`ROUTER_IN`, :data:`BRAIN_PUB`, ...), and a kind that is not in it is refused.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from .brokers.base import Order, OrderEvent
from .data.types import BAR_DTYPE, Bar, Tick

#: Largest message any agent accepts (a history reply of 100,000 bars is about 11 MB).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

BsidTuple = tuple[str, int, str]


class WireError(ValueError):
    """A message that is not one of the kinds its socket carries, or not well formed."""


class Message(msgspec.Struct, array_like=True, tag=True, forbid_unknown_fields=True):
    """Base of every message: encoded as ``[kind, field, ...]``."""


# -- market data: Feeder -> Router, Router -> Trader ----------------------------------------------
class TickIn(Message, tag="tick"):
    symbol: str
    tick: Tick


class TicksIn(Message, tag="ticks"):
    symbol: str
    ticks: list[Tick]


class BarIn(Message, tag="bar"):
    symbol: str
    bar: Bar


class BarsIn(Message, tag="bars"):
    """Bars of one symbol in a row (a replay as fast as possible sends them in batches)."""

    symbol: str
    bars: list[Bar]


class BackfillIn(Message, tag="backfill"):
    """Synthetic quotes rebuilding a gap of the live feed (the OANDA Feeder's, from candles):
    handled as ticks, but the bars they complete are published with ``backfilled=True``."""

    symbol: str
    ticks: list[Tick]


class End(Message, tag="end"):
    pass


# -- acknowledgements to the Router ---------------------------------------------------------------
class Ack(Message, tag="ack"):
    brain: str
    key: str
    seq: int
    orders: int


class ProbeAck(Message, tag="probe_ack"):
    brain: str
    key: str


class TraderAck(Message, tag="trader_ack"):
    step: int
    events: dict[str, int]
    #: runs of steps (:class:`Steps`): after this step the broker holds no open order and
    #: cannot act by itself (no margin closeout), so no step produces an order event until a
    #: Brain orders again; trailing with a default (a message without it decodes as False)
    quiet: bool = False


class StepAck(Message, tag="step_ack"):
    """A Brain's acknowledgement of a lock-step *run*: it handled every bar of the run up to
    and including step ``step`` and had sent ``orders`` orders and cancels by then (it stops
    at the end of the first step in which it sent one)."""

    brain: str
    run: int
    step: int
    orders: int


# -- the lock-step, Router -> Trader --------------------------------------------------------------
class Step(Message, tag="step"):
    step: int
    market: TickIn | TicksIn | BarIn
    orders: dict[str, int]


class Steps(Message, tag="steps"):
    """The lock-step with runs: first the ``ahead`` steps, whose bars the Brains handled without
    sending an order (run as they come), then the orders the Brains sent up to now, then step
    ``step`` on ``market`` once ``orders`` orders of each Brain have arrived (``market`` None:
    no step yet, acknowledge with ``step`` once the rest is done)."""

    step: int
    ahead: list[TickIn | TicksIn | BarIn]
    market: TickIn | TicksIn | BarIn | None
    orders: dict[str, int]


# -- publications, Router -> Brains and GUIs ------------------------------------------------------
class BarOut(Message, tag="bar"):
    bsid: BsidTuple
    seq: int
    bar: Bar
    events: dict[str, int] | None
    #: the bar was completed by backfill quotes (:class:`BackfillIn`), not by the live feed;
    #: trailing with a default, so a message without it still decodes (as False)
    backfilled: bool = False


class Probe(Message, tag="probe"):
    bsid: BsidTuple


class TickOut(Message, tag="tick"):
    symbol: str
    seq: int
    tick: Tick


class TicksOut(Message, tag="ticks"):
    symbol: str
    seq: int
    ticks: list[Tick]


# -- history, Brains and GUIs <-> Router (REQ/REP) ------------------------------------------------
class HistoryRequest(Message, tag="history"):
    brain: str | None
    bsid: BsidTuple
    count: int


class TicksRequest(Message, tag="ticks"):
    brain: str
    symbol: str


class Ok(Message, tag="ok"):
    records: bytes | None  # BAR_DTYPE records, oldest first (see pack_bars)
    seq: int


class Wait(Message, tag="wait"):
    records: None
    seq: int


class Refused(Message, tag="refused"):
    reason: str  # why the Router cannot serve this series (a frame shorter than its feed's)
    seq: int


# -- orders, Brains -> Trader; events, Trader -> Brains -------------------------------------------
# ``auth`` is the Brain's credential, known only to that Brain, the Trader and the owner: the
# Trader binds every order, cancel and hello to the Brain it names only when it matches, and a
# Brain accepts an event only when it carries its own credential.
class Hello(Message, tag="hello"):
    brain: str
    address: str
    auth: str


class OrderMsg(Message, tag="order"):
    order: Order
    auth: str


class Cancel(Message, tag="cancel"):
    brain: str
    client_id: str
    auth: str


class EventMsg(Message, tag="event"):
    event: OrderEvent
    auth: str


class TraderUp(Message, tag="trader_up"):
    pid: int
    auth: str


# -- observers: Trader -> GUIs, Overmind -> GUIs --------------------------------------------------
class Update(Message, tag="update"):
    seq: int
    events: list[OrderEvent]
    account: dict[str, Any]


class Status(Message, tag="status"):
    seq: int
    rows: list[dict[str, Any]]


#: What each socket accepts.
ROUTER_IN = (
    TickIn | TicksIn | BarIn | BarsIn | BackfillIn | End | Ack | ProbeAck | TraderAck | StepAck
)
ROUTER_HISTORY = HistoryRequest | TicksRequest
HISTORY_REPLY = Ok | Wait | Refused
BRAIN_PUB = BarOut | Probe | TickOut | TicksOut
TRADER_MARKET = Step | Steps | TickIn | TicksIn | BarIn
TRADER_ORDERS = Hello | OrderMsg | Cancel
BRAIN_EVENTS = EventMsg | TraderUp
OBSERVERS = Update
STATUS = Status


def _enc_hook(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise NotImplementedError(f"cannot encode a {type(value).__name__} on the wire")


_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)


def encode(message: tuple) -> bytes:
    """``('kind', field, ...)`` as MessagePack (NamedTuples and nested tuples as arrays)."""
    return _encoder.encode(message)


def as_tuple(message: Message) -> tuple:
    """``(kind, field, ...)`` of a decoded message, nested messages included."""
    fields = tuple(
        as_tuple(value) if isinstance(value, Message) else value
        for value in msgspec.structs.astuple(message)
    )
    return (message.__struct_config__.tag, *fields)


class Decoder:
    """Decode the messages of one socket (``schema``: a union of :class:`Message` kinds) into
    ``('kind', field, ...)`` tuples; anything else raises :class:`WireError`."""

    def __init__(self, schema: Any) -> None:
        self._decoder = msgspec.msgpack.Decoder(schema)

    def __call__(self, data: bytes | memoryview) -> tuple:
        if len(data) > MAX_MESSAGE_BYTES:
            raise WireError(f"message of {len(data)} bytes (at most {MAX_MESSAGE_BYTES})")
        try:
            return as_tuple(self._decoder.decode(data))
        except (msgspec.MsgspecError, RecursionError, MemoryError, TypeError) as exc:
            # RecursionError: nesting past Python's limit (msgspec stops there, safely)
            raise WireError(f"{type(exc).__name__}: {exc}"[:300]) from None


def pack_bars(bars: Any) -> bytes:
    """Bars (tuples or a BAR_DTYPE array) as the bytes of a BAR_DTYPE array."""
    if isinstance(bars, np.ndarray) and bars.dtype == BAR_DTYPE:
        return bars.tobytes()
    return np.array([tuple(bar) for bar in bars], dtype=BAR_DTYPE).tobytes()


def unpack_bars(data: bytes | None) -> np.ndarray:
    """The BAR_DTYPE array :func:`pack_bars` wrote (a fixed layout of numbers: no code)."""
    if not data:
        return np.empty(0, dtype=BAR_DTYPE)
    if len(data) % BAR_DTYPE.itemsize:
        raise WireError(f"bar records of {len(data)} bytes: not a multiple of a bar's size")
    return np.frombuffer(data, dtype=BAR_DTYPE).copy()


__all__ = [
    "BRAIN_EVENTS", "BRAIN_PUB", "Decoder", "HISTORY_REPLY", "MAX_MESSAGE_BYTES", "OBSERVERS",
    "ROUTER_HISTORY", "ROUTER_IN", "STATUS", "TRADER_MARKET", "TRADER_ORDERS", "WireError",
    "as_tuple", "encode", "pack_bars", "unpack_bars",
]  # fmt: skip
