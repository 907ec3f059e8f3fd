"""What the OANDA Feeder and Trader agents run: pure logic on the v20 adapter, no osBrain.

- :func:`write_token_file` / :func:`client_from_settings`: the access token reaches agent
  processes through a file readable only by the user (mode 0600), never as an agent attribute:
  an osBrain proxy can read any attribute, and attributes travel pickled.
- :func:`backfill_ticks`: after the price stream reconnects, the candles completed meanwhile
  become four synthetic quotes each (open, high, low, close, bid and ask), so the Router's
  tick aggregation rebuilds every missed bar with the candle's bid/ask OHLC: no bar is lost.
- :class:`OandaTradingBroker`: the broker object of the Trader's worker thread. It wraps
  :class:`~osmarkets.brokers.oanda.OandaBroker`, reconciles with the account on (re)start
  (positions, pending orders, open trades, and the order events of transactions after the last
  one it had handled, kept in a small state file), polls ``transactions/sinceid`` while it
  runs (fills of pending orders and of stop-loss / take-profit orders), never reports an event
  twice, and turns a refused order (live trading not confirmed, wrong token, outage) into a
  'rejected' event with the reason instead of an exception.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...data.timeframes import Timeframe
from ...data.types import Tick
from ...secrecy import disable_core_dumps
from ..base import Order, OrderEvent
from .broker import OandaBroker, Reconciliation
from .client import MAX_CANDLES, OandaClient
from .errors import OandaError
from .parsers import candles_to_frame, parse_account_summary, transaction_events

log = logging.getLogger(__name__)

TOKEN_ENV = "OANDA_ACCESS_TOKEN"


# -- the token ---------------------------------------------------------------------------------
def write_token_file(directory: str | os.PathLike[str], token: str) -> str:
    """Write ``token`` to a new file in ``directory`` readable only by the user; its path."""
    path = os.path.join(os.fspath(directory), "oanda-token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token)
    return path


def read_token(settings: Mapping[str, Any]) -> str:
    """The token of ``settings['token_file']``, else of ``OANDA_ACCESS_TOKEN``.

    The process that calls it holds the token from then on (the Trader's broker factory, the
    OANDA Feeder, the Router's history downloads): its core dumps are disabled first
    (:func:`osmarkets.secrecy.disable_core_dumps`; a forked agent inherits that from its owner,
    one started with *spawn* does not)."""
    disable_core_dumps()
    path = settings.get("token_file")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise ValueError(
                f"token_file: cannot read the access token file ({exc.strerror})"
            ) from None
        if token:
            return token
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise ValueError(f"access_token: missing (pass it or set {TOKEN_ENV})")
    return token


def client_from_settings(settings: Mapping[str, Any]) -> OandaClient:
    """An :class:`OandaClient` from token-free ``settings``: ``account_id``, ``environment``,
    ``rest_url``, ``stream_url``, ``confirm_live``, ``token_file``, ``options`` (keyword
    arguments of the client: timeouts, retries, backoff)."""
    return OandaClient(
        read_token(settings),
        settings.get("account_id"),
        settings.get("environment", "practice"),
        rest_url=settings.get("rest_url"),
        stream_url=settings.get("stream_url"),
        confirm_live=bool(settings.get("confirm_live", False)),
        **dict(settings.get("options") or {}),
    )


def make_trading_broker(settings: Mapping[str, Any]) -> OandaTradingBroker:
    """The Trader's broker factory (``functools.partial(make_trading_broker, settings)``)."""
    return OandaTradingBroker(
        client_from_settings(settings),
        state_path=settings.get("state_path"),
        poll_interval=float(settings.get("poll_interval", 1.0)),
    )


# -- backfill ----------------------------------------------------------------------------------
def backfill_ticks(
    client: OandaClient, instrument: str, since: int, granularity: Any = "M1"
) -> list[Tick]:
    """Synthetic quotes rebuilding the candles of ``granularity`` completed after the one that
    holds ``since`` (ns, the last quote delivered), in time order.

    Each candle gives four quotes inside its period: open at its start, then high, low and close
    (bid and ask sides each), so bars aggregated from them have the candle's bid/ask OHLC.
    """
    tf = Timeframe.parse(granularity)
    if not tf.is_intraday:
        raise ValueError(f"backfill granularity: expected an intraday time frame, got {tf.code}")
    length = tf.nanoseconds
    first = since - since % length  # the candle holding `since`: partly delivered already
    ticks: list[Tick] = []
    cursor, include_first = first, True
    while True:
        page = client.candles(
            instrument, tf.code, price="BA", start=cursor, count=MAX_CANDLES,
            include_first=include_first,
        )  # fmt: skip
        raw = page.get("candles") or []
        frame = candles_to_frame(raw)
        frame = frame[frame.index.asi8 > first]  # type: ignore[attr-defined]
        columns = [f"{side}_{part}" for part in ("open", "high", "low", "close")
                   for side in ("bid", "ask")]  # fmt: skip
        if len(frame) and not set(columns) <= set(frame.columns):
            raise ValueError("backfill candles: bid/ask prices missing")
        offsets = (0, length // 4, length // 2, length - 1_000_000)
        for start, row in zip(frame.index.asi8, frame[columns].to_numpy(), strict=True):  # type: ignore[attr-defined]
            for k, offset in enumerate(offsets):
                ticks.append(Tick(int(start) + offset, float(row[2 * k]), float(row[2 * k + 1])))
        if len(raw) < MAX_CANDLES or not len(frame):
            return ticks
        cursor, include_first = int(frame.index.asi8[-1]), False  # type: ignore[attr-defined]


# -- the Trader's broker -----------------------------------------------------------------------
def brain_of(client_id: str) -> str:
    """The Brain that sent an order, from its client id ``'<brain>-<n>'`` ('' if foreign)."""
    head, sep, tail = client_id.rpartition("-")
    return head if sep and tail.isdigit() else ""


class OandaTradingBroker:
    """The Trader's broker on one OANDA account (see the module docstring).

    ``positions`` (symbol -> signed units), ``equity`` and ``balance`` are what the Trader
    reads after every call. ``state_path``: a JSON file keeping the id of the last transaction
    handled, so that a restarted Trader reports the fills it missed.
    """

    def __init__(
        self,
        client: OandaClient,
        *,
        state_path: str | os.PathLike[str] | None = None,
        poll_interval: float = 1.0,
        account_interval: float = 5.0,
    ) -> None:
        self.client = client
        self.oanda = OandaBroker(client)
        self.state_path = Path(state_path) if state_path else None
        self.poll_interval = poll_interval
        self.account_interval = account_interval
        self.positions: dict[str, float] = {}
        self.equity = math.nan
        self.balance = math.nan
        self.last_transaction_id: str | None = None
        self.poll_errors = 0
        self._reported: deque[tuple[str, str, int]] = deque(maxlen=2000)
        self._reported_set: set[tuple[str, str, int]] = set()
        self._brains: dict[str, str] = {}
        self._last_poll = 0.0
        self._last_account = 0.0

    def __repr__(self) -> str:
        return f"OandaTradingBroker({self.client!r})"

    # -- state file --------------------------------------------------------------------------
    def _load_state(self) -> dict[str, Any]:
        if self.state_path is None or not self.state_path.exists():
            return {}
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("trader state %s unreadable (%s); starting afresh", self.state_path, exc)
            return {}
        return state if isinstance(state, dict) else {}

    def _save_state(self) -> None:
        if self.state_path is None:
            return
        state = {
            "last_transaction_id": self.last_transaction_id,
            "reported": [list(key) for key in self._reported],
        }
        tmp = self.state_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh)
        os.replace(tmp, self.state_path)

    # -- events ------------------------------------------------------------------------------
    def _remember(self, event: OrderEvent) -> bool:
        """Record an outcome as reported; False if it was reported already."""
        if event.kind not in ("filled", "cancelled", "rejected"):
            return True
        # a 201 with orderCancelTransaction is reported 'rejected' by the order call and
        # 'cancelled' by the transaction list: one outcome either way
        kind = "filled" if event.kind == "filled" else "ended"
        key = (kind, event.client_id, int(event.time))
        if key in self._reported_set:
            return False
        if len(self._reported) == self._reported.maxlen:
            self._reported_set.discard(self._reported[0])
        self._reported.append(key)
        self._reported_set.add(key)
        return True

    def _apply(self, events: list[OrderEvent]) -> list[OrderEvent]:
        out = []
        for event in events:
            if not self._remember(event):
                continue
            if not event.brain:
                brain = self._brains.get(event.client_id) or brain_of(event.client_id)
                event = event._replace(brain=brain)
            if event.kind == "filled" and event.symbol:
                held = self.positions.get(event.symbol, 0.0) + event.signed_size
                if abs(held) < 1e-9:
                    self.positions.pop(event.symbol, None)
                else:
                    self.positions[event.symbol] = held
            out.append(event)
        return out

    def _transaction_events(self, transactions: list[dict[str, Any]]) -> list[OrderEvent]:
        for tx in transactions:
            ext = tx.get("clientExtensions") or {}
            if ext.get("id") and ext.get("comment"):
                self._brains[str(ext["id"])] = str(ext["comment"])
        self.oanda._learn(transactions)
        return transaction_events(transactions, self.oanda._oanda_ids, self.oanda._known)

    def _refresh_account(self) -> None:
        summary = parse_account_summary(self.client.account_summary())
        self.equity, self.balance = summary.nav, summary.balance
        self._last_account = time.monotonic()

    # -- reconciliation ----------------------------------------------------------------------
    def reconcile(self) -> Reconciliation:
        """Adopt the account's state; the order events missed since the last transaction this
        broker (or its previous incarnation, through the state file) handled."""
        state = self._load_state()
        for key in state.get("reported") or []:
            with contextlib.suppress(TypeError, ValueError):
                kind, cid, when = key
                self._remember(OrderEvent(str(kind), str(cid), "", "", 0.0, time=int(when)))
        since = state.get("last_transaction_id")
        found = self.oanda.reconcile(None)
        missed: list[OrderEvent] = []
        last = found.last_transaction_id
        if since:
            body = self.client.transactions_since(str(since))
            missed = self._transaction_events(body.get("transactions", []))
            last = str(body.get("lastTransactionID", last))
        for order in found.pending_orders:
            if order.client_id:
                self._brains.setdefault(order.client_id, brain_of(order.client_id))
        self.positions = dict(found.positions)
        # the positions already hold the missed fills: report them, do not apply them twice
        held = dict(self.positions)
        missed = self._apply(missed)
        self.positions = held
        self.last_transaction_id = last
        self._refresh_account()
        self._save_state()
        self._last_poll = time.monotonic()
        return found._replace(missed_events=missed, last_transaction_id=last)

    def poll(self, force: bool = False) -> list[OrderEvent]:
        """Order events of the transactions since the last poll (at most one request per
        ``poll_interval`` unless ``force``); failures are logged and counted, not raised."""
        now = time.monotonic()
        if self.last_transaction_id is None or (
            not force and now - self._last_poll < self.poll_interval
        ):
            return []
        self._last_poll = now
        try:
            body = self.client.transactions_since(self.last_transaction_id)
            events = self._apply(self._transaction_events(body.get("transactions", [])))
            self.last_transaction_id = str(body.get("lastTransactionID", self.last_transaction_id))
            if now - self._last_account >= self.account_interval:
                self._refresh_account()
        except OandaError as exc:
            self.poll_errors += 1
            log.warning("polling the account failed: %s", exc)
            return []
        self._save_state()
        return events

    # -- the Broker interface ------------------------------------------------------------------
    def submit(self, order: Order) -> list[OrderEvent]:
        try:
            events = self.oanda.submit(order)
        except OandaError as exc:  # refused or unreachable: the Brain gets the reason
            return [
                OrderEvent("rejected", order.client_id, order.symbol, order.side, order.size,
                           time=order.time, reason=str(exc), brain=order.brain)
            ]  # fmt: skip
        self._brains[order.client_id] = order.brain
        out = self._apply(events)
        self._save_state()
        return out

    def cancel(self, client_id: str) -> list[OrderEvent]:
        try:
            events = self.oanda.cancel(client_id)
        except OandaError as exc:
            return [OrderEvent("rejected", client_id, "", "", 0.0, reason=str(exc))]
        out = self._apply(events)
        self._save_state()
        return out

    def position(self, symbol: str) -> float:
        return self.positions.get(symbol, 0.0)

    def on_tick(self, symbol: str, tick: Any) -> list[OrderEvent]:
        return self.poll()

    def on_bar(self, symbol: str, bar: Any) -> list[OrderEvent]:
        return self.poll()
