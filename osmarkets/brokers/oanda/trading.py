"""What the OANDA Feeder and Trader agents run: pure logic on the v20 adapter, no osBrain.

- :func:`write_token_file` / :func:`client_from_settings`: the access token reaches agent
  processes through a file readable only by the user (mode 0600), never as an agent attribute:
  an osBrain proxy can read any attribute, and attributes travel pickled.
- the gap backfill after the price stream reconnects is
  :func:`~osmarkets.brokers.oanda.stream.backfill_gap`, next to the stream it repairs.
- :class:`OandaTradingBroker`: the broker object of the Trader's worker thread. It wraps
  :class:`~osmarkets.brokers.oanda.OandaBroker`, reconciles with the account on (re)start
  (positions, pending orders, open trades, and the order events of transactions after the last
  one it had handled, kept in a small state file), polls ``transactions/sinceid`` while it
  runs (fills of pending orders and of stop-loss / take-profit orders), never reports an event
  twice, and turns a refused order (live trading not confirmed, wrong token, outage) into a
  'rejected' event with the reason instead of an exception.

  An order is reported 'rejected' only when OANDA rejected or cancelled it (or it certainly
  never reached OANDA). A re-sent order (OANDA answers ``CLIENT_ORDER_ID_ALREADY_EXISTS``: the
  Brain sends again an order it has no event for, as after a Trader's restart) is reported in
  its true state, looked up by its client id: its events are reported again if the previous
  Trader reported them (it may have died before delivering them: that is why the Brain sends
  again), and not at all if this Trader did. An order whose answer was lost and that OANDA
  still did not know at the client's ``order_deadline`` is *unresolved*: logged as an error, no
  event, kept (in the state file too) and looked up again every ``resolve_interval`` seconds
  and at the next reconciliation, then reported as OANDA knows it. The rejects OANDA records
  for refused copies (``CLIENT_ORDER_ID_ALREADY_EXISTS``) are never reported.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...secrecy import disable_core_dumps
from ..base import Order, OrderEvent
from ..statefile import write_state_file
from .broker import OandaBroker, Placement, Reconciliation, drop_duplicate_rejects
from .client import OandaClient, OrderStateUnknown
from .errors import OandaError
from .parsers import parse_account_summary, transaction_events

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
        resolve_interval=float(settings.get("resolve_interval", 5.0)),
    )


# -- the Trader's broker -----------------------------------------------------------------------
_RUN_ID = re.compile(r"^[0-9a-f]{8}$")


def brain_of(client_id: str) -> str:
    """The Brain that sent an order, from its client id ``'<brain>-<run>-<n>'`` (``<run>``:
    eight hex digits, see :attr:`osmarkets.architecture.Architecture.run_id`) or the older
    ``'<brain>-<n>'``; '' if foreign. Only a fallback: the Brain's name travels with every
    order in ``clientExtensions.comment``."""
    head, sep, tail = client_id.rpartition("-")
    if not (sep and tail.isdigit()):
        return ""
    brain, sep, run = head.rpartition("-")
    return brain if sep and brain and _RUN_ID.match(run) else head


def _order_from(raw: Any) -> Order | None:
    """An :class:`Order` saved in the state file (None if it is not one)."""
    if not isinstance(raw, dict):
        return None
    try:
        order = Order(**{key: raw[key] for key in Order._fields if key in raw})
    except TypeError:
        return None
    return order if isinstance(order.client_id, str) and order.client_id else None


class OandaTradingBroker:
    """The Trader's broker on one OANDA account (see the module docstring).

    ``positions`` (symbol -> signed units), ``equity`` and ``balance`` are what the Trader
    reads after every call. ``state_path``: a JSON file keeping the id of the last transaction
    handled, the outcomes reported and the unresolved orders, so that a restarted Trader reports
    the fills it missed. ``duplicates`` counts re-sent orders, ``unknown_orders`` the orders
    whose state was unknown at the deadline; ``unresolved`` holds those not resolved yet.
    """

    def __init__(
        self,
        client: OandaClient,
        *,
        state_path: str | os.PathLike[str] | None = None,
        poll_interval: float = 1.0,
        account_interval: float = 5.0,
        resolve_interval: float = 5.0,
    ) -> None:
        self.client = client
        self.oanda = OandaBroker(client)
        self.state_path = Path(state_path) if state_path else None
        self.poll_interval = poll_interval
        self.account_interval = account_interval
        self.resolve_interval = resolve_interval
        self.duplicates = 0
        self.unknown_orders = 0
        self.unresolved: dict[str, Order] = {}  # client id -> order, state unknown
        # client ids with an event reported by this incarnation (bounded, oldest first out)
        self._session: dict[str, None] = {}
        self._last_resolve = 0.0
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
        #: set by a Trader that journals this broker's events: the state file is then written
        #: by the Trader after them (:meth:`take_state`, :mod:`osmarkets.brokers.statefile`)
        self.defer_state = False
        self._unsaved: str | None = None
        self._deferred = ""

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
            "unresolved": [order._asdict() for order in self.unresolved.values()],
        }
        if self.defer_state:
            text = json.dumps(state)
            if text != self._deferred:  # an unchanged state is not written again
                self._unsaved = self._deferred = text
        else:
            write_state_file(self.state_path, json.dumps(state))

    def take_state(self) -> tuple[str, str] | None:
        """With ``defer_state``: the state file's path and its new text, to write once the
        events reported so far are journaled (then cleared), or None if it did not change."""
        text, self._unsaved = self._unsaved, None
        return (str(self.state_path), text) if text is not None else None

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
        """The events not reported yet, with their Brain; fills update ``positions``."""
        out = []
        for event in events:
            if not self._remember(event):
                continue
            event = self._reporting(event)
            if event.kind == "filled":
                self._hold(event)
            out.append(event)
        return out

    def _reporting(self, event: OrderEvent) -> OrderEvent:
        """``event`` about to be reported by this incarnation: its Brain filled in."""
        cid = event.client_id
        self.unresolved.pop(cid, None)
        self._session[cid] = None
        if len(self._session) > 200_000:
            del self._session[next(iter(self._session))]
        if not event.brain:
            event = event._replace(brain=self._brains.get(cid) or brain_of(cid))
        return event

    def _hold(self, fill: OrderEvent) -> None:
        if not fill.symbol:
            return
        held = self.positions.get(fill.symbol, 0.0) + fill.signed_size
        if abs(held) < 1e-9:
            self.positions.pop(fill.symbol, None)
        else:
            self.positions[fill.symbol] = held

    def _duplicate(self, order: Order, placement: Placement) -> list[OrderEvent]:
        """A re-sent order OANDA already holds: its current state, once per incarnation.

        The Brain sends an order again only while it has no event for it (after a timeout,
        or when a restarted Trader says hello), so the events a previous incarnation reported
        (and maybe died before delivering) are reported again; those this incarnation reported
        are not: the Trader delivered them. A fill already in the account when this incarnation
        read it (or already counted by it) does not move ``positions`` again."""
        self.duplicates += 1
        cid = order.client_id
        kinds = ", ".join(e.kind for e in placement.events)
        if cid in self._session:
            log.warning("order %s: a re-send of an order already reported (%s)", cid, kinds)
            return []
        log.warning("order %s: a re-send of an order OANDA holds; reporting it: %s", cid, kinds)
        fill_id = placement.fill_transaction_id
        counted = bool(
            fill_id and self.last_transaction_id and int(fill_id) <= int(self.last_transaction_id)
        )
        out = []
        for event in placement.events:
            new = self._remember(event)
            event = self._reporting(event)
            if event.kind == "filled" and new and not counted:
                self._hold(event)
            out.append(event)
        return out

    def _resolve_unresolved(self) -> list[OrderEvent]:
        """Look the unresolved orders up by client id; the events of those OANDA knows now."""
        self._last_resolve = time.monotonic()
        out: list[OrderEvent] = []
        for cid, order in list(self.unresolved.items()):
            try:
                placement = self.oanda.lookup(order)
            except OandaError as exc:
                log.info("order %s: looking it up failed (%s); will try again", cid, exc)
                continue
            if placement is None:
                continue
            self.unresolved.pop(cid, None)
            log.warning(
                "order %s: resolved, OANDA has it: %s", cid,
                ", ".join(e.kind for e in placement.events) or "no event",
            )  # fmt: skip
            out += self._apply(placement.events)
        return out

    def _transaction_events(self, transactions: list[dict[str, Any]]) -> list[OrderEvent]:
        transactions = drop_duplicate_rejects(transactions)
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
        for raw in state.get("unresolved") or []:
            saved = _order_from(raw)
            if saved is not None:
                self.unresolved[saved.client_id] = saved
                self._brains[saved.client_id] = saved.brain
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
        if self.unresolved:  # orders whose state was unknown: OANDA may know them now
            missed += self._resolve_unresolved()
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
        events: list[OrderEvent] = []
        try:
            body = self.client.transactions_since(self.last_transaction_id)
            events = self._apply(self._transaction_events(body.get("transactions", [])))
            self.last_transaction_id = str(body.get("lastTransactionID", self.last_transaction_id))
            if self.unresolved and (force or now - self._last_resolve >= self.resolve_interval):
                events += self._resolve_unresolved()
            if now - self._last_account >= self.account_interval:
                self._refresh_account()
        except OandaError as exc:  # the events already taken are still reported
            self.poll_errors += 1
            log.warning("polling the account failed: %s", exc)
        self._save_state()
        return events

    # -- the Broker interface ------------------------------------------------------------------
    def submit(self, order: Order) -> list[OrderEvent]:
        self._brains[order.client_id] = order.brain
        try:
            placement = self.oanda.place(order)
        except OrderStateUnknown as exc:  # maybe placed: not a reject (module docstring)
            self.unknown_orders += 1
            self.unresolved[order.client_id] = order
            log.error(
                "order %s of %s: %s. Not reported as rejected: kept unresolved, looked up by "
                "its client id every %g s and at the next reconciliation",
                order.client_id, order.brain or "?", exc, self.resolve_interval,
            )  # fmt: skip
            self._last_resolve = time.monotonic()
            self._save_state()
            return []
        except OandaError as exc:  # refused, or never reached OANDA: the Brain gets the reason
            return [
                OrderEvent("rejected", order.client_id, order.symbol, order.side, order.size,
                           time=order.time, reason=str(exc), brain=order.brain)
            ]  # fmt: skip
        if placement.duplicate:
            out = self._duplicate(order, placement)
        else:
            out = self._apply(placement.events)
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
