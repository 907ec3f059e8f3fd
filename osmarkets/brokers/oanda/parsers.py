"""OANDA v20 JSON -> osMarkets objects: times, candles, prices, order outcomes, account state.

Pure functions on already-decoded JSON, so they are tested against captured real responses
(``tests/oanda/fixtures``) without any network. Parsers accept both the 2016 and the newer
shapes (missing ``type``/``tradeable``, integer or string ``liquidity``) and ignore unknown keys.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ...data.types import ASK_OHLC, BID_OHLC, OHLC, Tick
from ..base import OrderEvent

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9})\d*)?"
    r"(Z|z|[+-]\d{2}:?\d{2})?$"
)
_UNIX = re.compile(r"^(\d{1,12})(?:\.(\d{1,9}))?$")
# The candle granularities OANDA serves: the client refuses others before asking, the sandbox
# answers them with OANDA's 400.
OANDA_GRANULARITIES = (
    "S5", "S10", "S15", "S30", "M1", "M2", "M4", "M5", "M10", "M15", "M30",
    "H1", "H2", "H3", "H4", "H6", "H8", "H12", "D", "W", "M",
)  # fmt: skip


# -- times ---------------------------------------------------------------------------------
def parse_time(value: Any) -> int:
    """Nanoseconds since the epoch for an RFC3339 (``...43.094548890Z``) or UNIX time string.

    Exact to the nanosecond (``datetime`` would truncate to microseconds). A time with no
    offset is read as UTC (OANDA reads it as New York time: the adapter always sends ``Z``).
    """
    if not isinstance(value, str):
        raise ValueError(f"time: expected an RFC3339 or UNIX time string, got {value!r}")
    text = value.strip()
    match = _RFC3339.match(text)
    if match:
        year, month, day, hour, minute, second, frac, offset = match.groups()
        try:
            seconds = calendar.timegm(
                (int(year), int(month), int(day), int(hour), int(minute), int(second), 0, 0, 0)
            )
            # timegm does not validate; round-trip through pandas to catch Feb 30 and such
            pd.Timestamp(int(year), int(month), int(day), int(hour), int(minute), int(second))
        except ValueError:
            raise ValueError(f"time: invalid date/time {value!r}") from None
        if offset and offset not in ("Z", "z"):
            sign = 1 if offset[0] == "+" else -1
            digits = offset[1:].replace(":", "")
            seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
        nanos = int((frac or "").ljust(9, "0"))
        return seconds * 1_000_000_000 + nanos
    match = _UNIX.match(text)
    if match:
        whole, frac = match.groups()
        return int(whole) * 1_000_000_000 + int((frac or "").ljust(9, "0"))
    raise ValueError(f"time: expected an RFC3339 or UNIX time string, got {value!r}")


def format_time(time_ns: int) -> str:
    """RFC3339 with nine fractional digits and ``Z``, as OANDA writes times."""
    seconds, nanos = divmod(int(time_ns), 1_000_000_000)
    stamp = pd.Timestamp(seconds, unit="s")
    return f"{stamp:%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z"


def _decimal(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected a decimal string, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{what}: expected a finite number, got {value!r}")
    return number


# -- candles -------------------------------------------------------------------------------
_COMPONENTS = {"mid": OHLC, "bid": BID_OHLC, "ask": ASK_OHLC}


def candles_to_frame(
    candles: Iterable[Mapping[str, Any]] | Mapping[str, Any], include_incomplete: bool = False
) -> pd.DataFrame:
    """Candles (a list, or a whole ``.../candles`` response) as a bar DataFrame.

    The DataFrame follows DESIGN.md section 3: UTC ``DatetimeIndex`` named ``time`` (candle
    open), ``open`` ... ``close`` and ``volume``, plus ``bid_*`` / ``ask_*`` when those
    components were requested. ``open`` ... ``close`` are the mid prices when ``mid`` is present,
    the mean of bid and ask when both sides are, otherwise the one side present. Incomplete
    candles (the one still forming) are dropped unless ``include_incomplete``.
    """
    if isinstance(candles, Mapping):
        if "candles" not in candles:
            raise ValueError("candles response: missing field 'candles'")
        candles = candles["candles"]
    items: Iterable[Mapping[str, Any]] = candles  # type: ignore[assignment]
    rows: list[list[float]] = []
    times: list[int] = []
    present: list[str] | None = None
    for number, candle in enumerate(items):
        if not include_incomplete and not candle.get("complete", True):
            continue
        where = f"candle {number}"
        if "time" not in candle:
            raise ValueError(f"{where}: missing field 'time'")
        parts = [name for name in _COMPONENTS if name in candle]
        if not parts:
            raise ValueError(f"{where}: no mid, bid or ask prices")
        if present is None:
            present = parts
        elif parts != present:
            raise ValueError(f"{where}: price components {parts} differ from {present}")
        row = [float(candle.get("volume", 0))]
        for name in parts:
            ohlc = candle[name]
            row.extend(_decimal(ohlc.get(k), f"{where} {name}.{k}") for k in "ohlc")
        times.append(parse_time(candle["time"]))
        rows.append(row)
    present = present or ["mid"]
    columns = ["volume"] + [c for name in present for c in _COMPONENTS[name]]
    data = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(columns))
    index = pd.DatetimeIndex(np.asarray(times, dtype=np.int64).view("M8[ns]"), tz="UTC")
    frame = pd.DataFrame(data, index=index.rename("time"), columns=columns)
    if len(frame) and not frame.index.is_monotonic_increasing:
        raise ValueError("candles: times are not increasing")
    if "mid" not in present:
        if "bid" in present and "ask" in present:
            mids = (frame[list(BID_OHLC)].to_numpy() + frame[list(ASK_OHLC)].to_numpy()) / 2
        else:
            side = BID_OHLC if "bid" in present else ASK_OHLC
            mids = frame[list(side)].to_numpy()
        for i, name in enumerate(OHLC):
            frame[name] = mids[:, i]
    order = [*OHLC, "volume"] + [c for c in (*BID_OHLC, *ASK_OHLC) if c in frame.columns]
    return frame[order]


# -- prices --------------------------------------------------------------------------------
class Price(NamedTuple):
    """One ClientPrice: the best quote as a :class:`Tick`, plus what a Tick cannot say."""

    instrument: str
    tick: Tick
    tradeable: bool
    closeout_bid: float
    closeout_ask: float


class Heartbeat(NamedTuple):
    """A stream heartbeat; ``last_transaction_id`` only on the transaction stream."""

    time: int
    last_transaction_id: str | None = None


def _liquidity(bucket: Mapping[str, Any]) -> float:
    value = bucket.get("liquidity", 0)
    try:
        return float(value)  # an int in prices, a string in fills' fullPrice
    except (TypeError, ValueError):
        return 0.0


def parse_price(data: Mapping[str, Any]) -> Price:
    """A ClientPrice (polled or streamed, 2016 or newer format) as a :class:`Price`."""
    instrument = data.get("instrument")
    if not isinstance(instrument, str):
        raise ValueError("price: missing field 'instrument'")
    bids, asks = data.get("bids") or [], data.get("asks") or []
    if not bids or not asks:
        raise ValueError(f"price {instrument}: empty bids or asks")
    bid = _decimal(bids[0].get("price"), f"price {instrument} bids[0].price")
    ask = _decimal(asks[0].get("price"), f"price {instrument} asks[0].price")
    if bid <= 0 or ask <= 0:
        raise ValueError(f"price {instrument}: non-positive bid or ask")
    if "tradeable" in data:
        tradeable = bool(data["tradeable"])
    else:
        tradeable = data.get("status", "tradeable") == "tradeable"
    tick = Tick(parse_time(data.get("time")), bid, ask, _liquidity(bids[0]), _liquidity(asks[0]))
    return Price(
        instrument,
        tick,
        tradeable,
        _decimal(data.get("closeoutBid", bid), f"price {instrument} closeoutBid"),
        _decimal(data.get("closeoutAsk", ask), f"price {instrument} closeoutAsk"),
    )


def parse_stream_message(data: Mapping[str, Any]) -> Price | Heartbeat | dict[str, Any]:
    """Dispatch one decoded stream line on ``type``.

    ``PRICE`` (or no ``type``, the 2016 format) gives a :class:`Price`, ``HEARTBEAT`` a
    :class:`Heartbeat`; anything else (a transaction, an unknown object) comes back as a dict.
    """
    kind = data.get("type")
    if kind == "HEARTBEAT":
        return Heartbeat(parse_time(data.get("time")), data.get("lastTransactionID"))
    if kind in (None, "PRICE"):
        return parse_price(data)
    return dict(data)


# -- order outcomes ------------------------------------------------------------------------
_FILL_REASONS = {
    "STOP_LOSS_ORDER": "stop_loss",
    "GUARANTEED_STOP_LOSS_ORDER": "stop_loss",
    "TAKE_PROFIT_ORDER": "take_profit",
    "TRAILING_STOP_LOSS_ORDER": "trailing_stop",
    "MARKET_ORDER_TRADE_CLOSE": "trade_close",
    "MARKET_ORDER_POSITION_CLOSEOUT": "position_closeout",
    "MARKET_ORDER_MARGIN_CLOSEOUT": "margin_closeout",
}


def _side(units: float) -> str:
    return "buy" if units > 0 else "sell"


def fill_event(tx: Mapping[str, Any], client_id: str = "", brain: str = "") -> OrderEvent:
    """An ``ORDER_FILL`` transaction as a 'filled' :class:`OrderEvent`."""
    units = _decimal(tx.get("units"), "ORDER_FILL units")
    price = tx.get("price")
    if price is None:
        price = tx.get("fullVWAP")
    commission = sum(
        abs(_decimal(tx.get(k, "0"), f"ORDER_FILL {k}"))
        for k in ("commission", "guaranteedExecutionFee")
    )
    return OrderEvent(
        kind="filled",
        client_id=client_id or tx.get("clientOrderID") or f"oanda:{tx.get('orderID', '')}",
        symbol=str(tx.get("instrument", "")),
        side=_side(units),
        size=abs(units),
        price=_decimal(price, "ORDER_FILL price"),
        time=parse_time(tx.get("time")),
        reason=_FILL_REASONS.get(str(tx.get("reason", "")), ""),
        commission=commission,
        brain=brain,
    )


def order_response_events(
    status: int,
    body: Mapping[str, Any],
    client_id: str,
    symbol: str,
    side: str,
    size: float,
    brain: str = "",
) -> list[OrderEvent]:
    """Every outcome of ``POST .../orders`` as order events, in order.

    - 201 with only ``orderCreateTransaction``: a pending order, ``['accepted']``;
    - 201 with ``orderFillTransaction``: ``['accepted', 'filled']``;
    - 201 with ``orderCancelTransaction`` (OANDA accepted then killed it: ``MARKET_HALTED``,
      ``STOP_LOSS_ON_FILL_LOSS``, ``INSUFFICIENT_MARGIN``...): ``['rejected']`` with that
      reason, or ``['cancelled']`` when the reason is the client's own request;
    - 400/404 with ``orderRejectTransaction`` or just an error: ``['rejected']`` with the
      ``rejectReason`` (else ``errorCode``, else the message).
    """

    def event(kind: str, reason: str = "", time: int = 0) -> OrderEvent:
        return OrderEvent(
            kind, client_id, symbol, side, size, time=time, reason=reason, brain=brain
        )

    if status >= 400:
        reject = body.get("orderRejectTransaction") or {}
        reason = (
            reject.get("rejectReason")
            or body.get("errorCode")
            or body.get("errorMessage")
            or f"HTTP {status}"
        )
        time = parse_time(reject["time"]) if "time" in reject else 0
        return [event("rejected", str(reason), time)]
    events: list[OrderEvent] = []
    create = body.get("orderCreateTransaction")
    fill = body.get("orderFillTransaction")
    cancel = body.get("orderCancelTransaction")
    if cancel and not fill:
        reason = str(cancel.get("reason", ""))
        kind = "cancelled" if reason == "CLIENT_REQUEST" else "rejected"
        return [event(kind, reason, parse_time(cancel["time"]) if "time" in cancel else 0)]
    if create:
        events.append(event("accepted", "", parse_time(create["time"]) if "time" in create else 0))
    if fill:
        filled = fill_event(fill, client_id, brain)
        rest = max(0.0, size - filled.size) if cancel else 0.0
        events.append(filled._replace(remaining=rest))  # a partial fill: the rest is open
        if cancel:  # IOC remainder cancelled after a partial fill: its size is the rest
            when = parse_time(cancel["time"]) if "time" in cancel else 0
            events.append(event("cancelled", str(cancel.get("reason", "")), when)._replace(
                size=rest))  # fmt: skip
    return events


def transaction_events(
    transactions: Iterable[Mapping[str, Any]],
    client_ids: Mapping[str, str] | None = None,
    known: Mapping[str, tuple[str, str, float]] | None = None,
) -> list[OrderEvent]:
    """Order events hidden in a transaction list (stream, ``sinceid``): fills, cancels, rejects.

    ``client_ids`` maps OANDA order ids to osMarkets client ids when a transaction lacks
    ``clientOrderID`` (fills of stop-loss / take-profit orders); ``known`` gives
    ``(symbol, side, size)`` for a client id, used by cancels that carry no instrument.
    """
    client_ids = client_ids or {}
    known = known or {}
    events: list[OrderEvent] = []
    for tx in transactions:
        kind = str(tx.get("type", ""))
        order_id = str(tx.get("orderID", ""))
        cid = tx.get("clientOrderID") or client_ids.get(order_id) or ""
        ext = tx.get("clientExtensions") or {}
        if kind == "ORDER_FILL":
            events.append(fill_event(tx, cid))
        elif kind == "ORDER_CANCEL":
            cid = cid or f"oanda:{order_id}"
            symbol, side, size = known.get(cid, ("", "", 0.0))
            reason = str(tx.get("reason", ""))
            if reason == "LINKED_TRADE_CLOSED":
                continue  # a dependent SL/TP going away with its trade: not an order outcome
            events.append(
                OrderEvent(
                    "cancelled",
                    cid,
                    symbol,
                    side,
                    size,
                    time=parse_time(tx["time"]),
                    reason=reason,
                )
            )
        elif kind.endswith("_ORDER_REJECT") and "units" in tx:
            units = _decimal(tx["units"], f"{kind} units")
            cid = ext.get("id") or cid or f"oanda:{tx.get('id', '')}"
            events.append(
                OrderEvent(
                    "rejected",
                    cid,
                    str(tx.get("instrument", "")),
                    _side(units),
                    abs(units),
                    time=parse_time(tx["time"]),
                    reason=str(tx.get("rejectReason", "")),
                )
            )
    return events


# -- account state -------------------------------------------------------------------------
class AccountSummary(NamedTuple):
    id: str
    currency: str
    balance: float
    nav: float
    unrealized_pl: float
    realized_pl: float
    margin_used: float
    margin_available: float
    open_trade_count: int
    open_position_count: int
    pending_order_count: int
    last_transaction_id: str


def parse_account_summary(body: Mapping[str, Any]) -> AccountSummary:
    """``GET /v3/accounts/{A}/summary`` (or the full account) as an :class:`AccountSummary`."""
    acc = body.get("account")
    if not isinstance(acc, Mapping):
        raise ValueError("account response: missing field 'account'")

    def num(key: str) -> float:
        return _decimal(acc.get(key, "0"), f"account {key}")

    return AccountSummary(
        id=str(acc.get("id", "")),
        currency=str(acc.get("currency", "")),
        balance=num("balance"),
        nav=num("NAV"),
        unrealized_pl=num("unrealizedPL"),
        realized_pl=num("pl"),
        margin_used=num("marginUsed"),
        margin_available=num("marginAvailable"),
        open_trade_count=int(acc.get("openTradeCount", 0)),
        open_position_count=int(acc.get("openPositionCount", 0)),
        pending_order_count=int(acc.get("pendingOrderCount", 0)),
        last_transaction_id=str(body.get("lastTransactionID", acc.get("lastTransactionID", ""))),
    )


class PositionInfo(NamedTuple):
    symbol: str
    long_units: float
    short_units: float  # negative or zero, as OANDA writes it
    long_average_price: float
    short_average_price: float
    unrealized_pl: float

    @property
    def units(self) -> float:
        """Net signed units (long plus short)."""
        return self.long_units + self.short_units


def parse_position(data: Mapping[str, Any]) -> PositionInfo:
    """One OANDA ``Position`` (both sides) as a :class:`PositionInfo`."""
    name = str(data.get("instrument", ""))
    long, short = data.get("long") or {}, data.get("short") or {}
    return PositionInfo(
        symbol=name,
        long_units=_decimal(long.get("units", "0"), f"position {name} long.units"),
        short_units=_decimal(short.get("units", "0"), f"position {name} short.units"),
        long_average_price=_decimal(long.get("averagePrice", "nan"), "averagePrice")
        if "averagePrice" in long
        else math.nan,
        short_average_price=_decimal(short.get("averagePrice", "nan"), "averagePrice")
        if "averagePrice" in short
        else math.nan,
        unrealized_pl=_decimal(data.get("unrealizedPL", "0"), f"position {name} unrealizedPL"),
    )


class TradeInfo(NamedTuple):
    id: str
    symbol: str
    units: float  # current signed units
    price: float
    open_time: int
    unrealized_pl: float
    client_id: str
    stop_loss_order_id: str | None
    take_profit_order_id: str | None
    trailing_stop_order_id: str | None


def parse_trade(data: Mapping[str, Any]) -> TradeInfo:
    """One OANDA ``Trade`` / ``TradeSummary`` as a :class:`TradeInfo`."""
    tid = str(data.get("id", ""))
    return TradeInfo(
        id=tid,
        symbol=str(data.get("instrument", "")),
        units=_decimal(data.get("currentUnits"), f"trade {tid} currentUnits"),
        price=_decimal(data.get("price"), f"trade {tid} price"),
        open_time=parse_time(data.get("openTime")),
        unrealized_pl=_decimal(data.get("unrealizedPL", "0"), f"trade {tid} unrealizedPL"),
        client_id=str((data.get("clientExtensions") or {}).get("id", "")),
        stop_loss_order_id=(data.get("stopLossOrder") or {}).get("id")
        or data.get("stopLossOrderID"),
        take_profit_order_id=(data.get("takeProfitOrder") or {}).get("id")
        or data.get("takeProfitOrderID"),
        trailing_stop_order_id=(data.get("trailingStopLossOrder") or {}).get("id")
        or data.get("trailingStopLossOrderID"),
    )


class PendingOrder(NamedTuple):
    id: str
    client_id: str
    type: str  # OANDA's spelling: LIMIT, STOP, MARKET_IF_TOUCHED, TAKE_PROFIT, ...
    symbol: str
    units: float  # signed; NaN for dependent orders (they act on a trade)
    price: float
    trade_id: str | None
    create_time: int


def parse_order(data: Mapping[str, Any]) -> PendingOrder:
    """One OANDA ``Order`` as a :class:`PendingOrder`."""
    oid = str(data.get("id", ""))
    units = data.get("units")
    price = data.get("price", data.get("distance"))
    return PendingOrder(
        id=oid,
        client_id=str((data.get("clientExtensions") or {}).get("id", "")),
        type=str(data.get("type", "")),
        symbol=str(data.get("instrument", "")),
        units=_decimal(units, f"order {oid} units") if units is not None else math.nan,
        price=_decimal(price, f"order {oid} price") if price is not None else math.nan,
        trade_id=data.get("tradeID"),
        create_time=parse_time(data["createTime"]) if "createTime" in data else 0,
    )
