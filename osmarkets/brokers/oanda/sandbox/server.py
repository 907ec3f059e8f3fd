"""A local OANDA v20 look-alike server for tests, demos and development without an account.

:class:`OandaSandbox` runs two real HTTP servers on 127.0.0.1 (the REST host and the stream
host, like ``api-fxpractice`` and ``stream-fxpractice``) speaking the v20 subset osMarkets uses,
with OANDA's paths, status codes (201 order create; 400/401/403/404/405/429 with OANDA's error
bodies), headers (``RequestID``, ``Location``, chunked line-delimited JSON streams), field
names, enum spellings, decimal strings and RFC3339 nanosecond times, as in the captured
fixtures.

Prices follow a seeded random walk per instrument that is a pure function of time (a sum of
interpolated hashed noise over time scales from 5 s to years), so candles of any granularity
and the live stream agree, and the same seed gives the same history. Market orders fill at the
current ask (buy) or bid (sell); limit, stop and market-if-touched orders and stop-loss /
take-profit / trailing-stop orders trigger on the simulated prices. The account keeps orders,
trades, positions, balance and the transaction log (netting, FIFO).

Fault knobs for tests: :meth:`~OandaSandbox.fail_requests` (429/500 for the next K requests),
:meth:`~OandaSandbox.lose_order_responses` (execute the order, answer 500),
:meth:`~OandaSandbox.slow_orders` (hold an order request, before or after executing it),
:meth:`~OandaSandbox.drop_streams` (end streams after N messages),
:meth:`~OandaSandbox.silence_streams` (send nothing, not even heartbeats),
:meth:`~OandaSandbox.reject_orders`, :attr:`~OandaSandbox.latency`, plus
:meth:`~OandaSandbox.set_price` to pin a quote.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import queue
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ....data.timeframes import Alignment, Timeframe
from ...money import CLOSEOUT_LEVEL, next_rollover, parse_financing
from ..parsers import OANDA_GRANULARITIES, format_time, parse_time
from .prices import (
    _CATALOGUE,
    INSTRUMENT_NAMES,
    MAX_COUNT,
    _candle_ends,
    _candle_starts,
    _hash_uniform,
    _Instrument,
)

DEFAULT_ACCOUNT_ID = "101-004-1234567-001"
USER_ID = 1234567
HOME_CURRENCY = "USD"

_ORDER_TYPES = ("MARKET", "LIMIT", "STOP", "MARKET_IF_TOUCHED")
_DEP_TYPES = {
    "stopLossOnFill": "STOP_LOSS",
    "takeProfitOnFill": "TAKE_PROFIT",
    "trailingStopLossOnFill": "TRAILING_STOP_LOSS",
}
_CLOSE = object()
log = logging.getLogger(__name__)

# OANDA's error bodies (see OANDA_V20.md section 1)
ERR_AUTH = {"errorMessage": "Insufficient authorization to perform request."}
ERR_FORBIDDEN = {"errorMessage": "The provided request was forbidden."}
ERR_RATE = {"errorMessage": "Requests are being rate limited. Please slow down."}
ERR_SERVER = {"errorMessage": "An unexpected error has occurred. Please retry."}


class _Error(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("errorMessage", ""))
        self.status = status
        self.body = body


def _invalid(field: str, status: int = 400) -> _Error:
    return _Error(status, {"errorMessage": f"Invalid value specified for '{field}'"})


# -- the HTTP side -------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, sandbox: OandaSandbox, port: int, stream: bool) -> None:
        self.sandbox = sandbox
        self.stream = stream
        self.connections: set[socket.socket] = set()
        self.accepted = 0
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
            self.accepted += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self.connections_lock:
            conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        sandbox = self.server.sandbox
        request_id = sandbox._next_request_id()
        with sandbox._lock:
            sandbox.requests += 1
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            if self.headers.get("Authorization") != f"Bearer {sandbox.token}":
                raise _Error(401, ERR_AUTH)
            sandbox._before_request()
            route = sandbox._route(method, url.path, self.server.stream)
            if route[0] == "stream":
                self._stream(route[1], query, request_id)
                return
            body = json.loads(raw) if raw.strip() else None
            status, payload, headers = route[1](query, body, request_id)
        except json.JSONDecodeError:
            status, payload, headers = 400, {"errorMessage": "Invalid JSON in request body"}, {}
        except _Error as err:
            status, payload, headers = err.status, err.body, {}
        except Exception:  # a sandbox bug: answer like OANDA would, keep serving
            log.exception("sandbox: %s %s failed", method, url.path)
            status, payload, headers = 500, ERR_SERVER, {}
        data = json.dumps(payload, separators=(",", ":")).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("RequestID", request_id)
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def _stream(self, kind: str, query: dict[str, str], request_id: str) -> None:
        sandbox = self.server.sandbox
        subscription = sandbox._subscribe(kind, query)
        drop_after, clean, silent = sandbox._take_stream_plan()
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.send_header("RequestID", request_id)
        self.end_headers()
        sent = 0
        abrupt = False
        next_beat = time.monotonic() + sandbox.heartbeat
        try:
            while not sandbox._closing.is_set():
                wait = next_beat - time.monotonic()
                try:
                    item = subscription.get(timeout=max(0.0, wait)) if wait > 0 else None
                except queue.Empty:
                    item = None
                if item is _CLOSE:
                    break
                if item is None:
                    item = sandbox._heartbeat(kind)
                    next_beat = time.monotonic() + sandbox.heartbeat
                if silent:
                    continue
                self._write_line(item)
                sent += 1
                if drop_after is not None and sent >= drop_after:
                    abrupt = not clean
                    break
            if not abrupt:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
        finally:
            sandbox._unsubscribe(subscription)

    def _write_line(self, item: dict[str, Any]) -> None:
        data = json.dumps(item, separators=(",", ":")).encode() + b"\n"
        size = self.server.sandbox.chunk_size
        pieces = [data] if not size else [data[i : i + size] for i in range(0, len(data), size)]
        for piece in pieces:
            self.wfile.write(b"%X\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()


class _Subscription(queue.Queue[Any]):
    def __init__(self, kind: str, instruments: frozenset[str]) -> None:
        super().__init__()
        self.kind = kind
        self.instruments = instruments


# -- the sandbox ---------------------------------------------------------------------------
class OandaSandbox:
    """A local OANDA v20 server; use it as a context manager.

    ``token`` is the bearer token it accepts; ``instruments`` the tradeable instruments (a
    subset of :data:`INSTRUMENT_NAMES`); ``seed`` fixes the price paths; ``heartbeat`` is the
    heartbeat interval of both streams (s); ``tick_interval`` how often prices move and pending
    orders are checked (s); ``chunk_size`` cuts every stream line into HTTP chunks of that many
    bytes (so chunks do not align with lines); ``port`` / ``stream_port`` 0 pick free ports.
    """

    def __init__(
        self,
        token: str = "sandbox-token",
        instruments: list[str] | tuple[str, ...] = ("EUR_USD", "USD_JPY"),
        seed: int = 0,
        *,
        heartbeat: float = 5.0,
        tick_interval: float = 0.25,
        balance: float = 100_000.0,
        account_id: str = DEFAULT_ACCOUNT_ID,
        port: int = 0,
        stream_port: int = 0,
        chunk_size: int | None = None,
        rate_limit: int | None = 120,
        clock: Callable[[], int] = time.time_ns,
        financing: Mapping[str, Any] | None = None,
        closeout: float = CLOSEOUT_LEVEL,
    ) -> None:
        if not token or not isinstance(token, str):
            raise ValueError("token: expected a non-empty string")
        if not instruments:
            raise ValueError("instruments: expected at least one instrument")
        unknown = [name for name in instruments if name not in _CATALOGUE]
        if unknown:
            raise ValueError(
                f"instruments: unknown {', '.join(map(str, unknown))} (the sandbox knows "
                f"{', '.join(INSTRUMENT_NAMES)})"
            )
        if not heartbeat > 0 or not tick_interval > 0:
            raise ValueError("heartbeat and tick_interval: expected seconds > 0")
        self.token = token
        self.seed = seed
        self.heartbeat = float(heartbeat)
        self.tick_interval = float(tick_interval)
        self.account_id = account_id
        self.chunk_size = chunk_size
        self.rate_limit = rate_limit
        self.latency = 0.0
        self.clock = clock
        self.instruments = {name: _Instrument(name, seed) for name in instruments}
        # OANDA's money rules, as the simulated broker applies them (brokers/money.py)
        self.financing = parse_financing(financing)
        self.closeout = float(closeout)
        self.financing_total = Decimal(0)
        self._next_roll = next_rollover(clock())
        self._port, self._stream_port = port, stream_port
        self._lock = threading.RLock()
        self._closing = threading.Event()
        self._subscriptions: set[_Subscription] = set()
        self._request_ids = itertools.count(10_000_000_000_000_001)
        self._window = (0, 0)
        self._fail: list[int] = []  # statuses for the next requests
        self._lose_orders = 0
        self._slow_orders: list[tuple[float, bool]] = []  # (seconds, before executing?)
        self._reject: list[tuple[str, bool]] = []  # (reason, as a 201 cancel?)
        self._stream_plans: list[tuple[int | None, bool, bool]] = []
        self.requests = 0
        self.stream_connections = 0
        # the account
        self.balance = Decimal(str(balance)).quantize(Decimal("0.0001"))
        self.created_time = format_time(self.clock())
        self.transactions: list[dict[str, Any]] = []
        self.orders: dict[str, dict[str, Any]] = {}
        self.trades: dict[str, dict[str, Any]] = {}
        self.realized: dict[str, dict[str, Decimal]] = {}
        self._order_meta: dict[str, dict[str, Any]] = {}
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        self._tx(
            "CREATE",
            "0",
            divisionID=4,
            siteID=101,
            accountUserID=USER_ID,
            accountNumber=1,
            homeCurrency=HOME_CURRENCY,
        )

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> OandaSandbox:
        if self._servers:
            return self
        try:
            rest = _Server(self, self._port, stream=False)
            try:
                stream = _Server(self, self._stream_port, stream=True)
            except OSError:
                rest.server_close()
                raise
        except OSError as exc:
            raise OSError(f"sandbox: cannot listen on 127.0.0.1: {exc.strerror}") from None
        self._servers = [rest, stream]
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                daemon=True,
                name="oanda-sandbox-http",
            )
            thread.start()
            self._threads.append(thread)
        ticker = threading.Thread(target=self._tick_loop, daemon=True, name="oanda-sandbox-tick")
        ticker.start()
        self._threads.append(ticker)
        return self

    def close(self) -> None:
        """Stop serving: ends streams, drops connections, joins threads (fast)."""
        if self._closing.is_set():
            return
        self._closing.set()
        with self._lock:
            subscriptions = list(self._subscriptions)
        for sub in subscriptions:
            sub.put(_CLOSE)
        for server in self._servers:
            server.shutdown()
            server.drop_connections()
            server.server_close()
        for thread in self._threads:
            thread.join(2.0)

    def __enter__(self) -> OandaSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OandaSandbox(rest_url={self.rest_url!r}, account_id={self.account_id!r})"

    @property
    def rest_connections(self) -> int:
        """TCP connections accepted by the REST server (keep-alive keeps this low)."""
        return self._servers[0].accepted if self._servers else 0

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}" if self._servers else ""

    @property
    def stream_url(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}" if self._servers else ""

    # -- fault knobs -----------------------------------------------------------------------
    def fail_requests(self, count: int, status: int = 500) -> None:
        """Answer the next ``count`` REST requests with ``status`` (429 or 5xx), unprocessed."""
        with self._lock:
            self._fail.extend([status] * count)

    def lose_order_responses(self, count: int = 1) -> None:
        """Execute the next ``count`` order creations but answer 500 (a lost response)."""
        with self._lock:
            self._lose_orders += count

    def slow_orders(self, count: int = 1, delay: float = 1.0, before: bool = True) -> None:
        """Hold the next ``count`` order requests ``delay`` seconds (past a client's read
        timeout, say) ``before`` executing them (OANDA learns of the order only then, as with
        a request stuck in a queue: a lookup meanwhile finds nothing, and a copy sent meanwhile
        is placed first, the late original then being refused with
        ``CLIENT_ORDER_ID_ALREADY_EXISTS``), or after executing them (the order exists at once,
        its answer comes late)."""
        with self._lock:
            self._slow_orders.extend([(float(delay), bool(before))] * count)

    def reject_orders(
        self, count: int = 1, reason: str = "MARKET_HALTED", cancel: bool = True
    ) -> None:
        """Kill the next ``count`` orders: a 201 with ``orderCancelTransaction(reason)`` when
        ``cancel``, else a 400 with ``orderRejectTransaction(rejectReason=reason)``."""
        with self._lock:
            self._reject.extend([(reason, cancel)] * count)

    def drop_streams(self, after: int, connections: int = 1, clean: bool = False) -> None:
        """End the next ``connections`` streams after ``after`` messages (abruptly, or with
        the chunked terminator when ``clean``)."""
        with self._lock:
            self._stream_plans.extend([(after, clean, False)] * connections)

    def silence_streams(self, connections: int = 1) -> None:
        """The next ``connections`` streams stay open but send nothing, not even heartbeats."""
        with self._lock:
            self._stream_plans.extend([(None, False, True)] * connections)

    def set_price(self, instrument: str, bid: float, ask: float) -> None:
        """Pin ``instrument``'s quote (until :meth:`release_price`); pending orders react, and
        a margin closeout closes the positions at this bid and ask (a pinned quote has no worse
        closeout tier)."""
        if not 0 < bid < ask:
            raise ValueError(f"set_price: expected 0 < bid < ask, got {bid}, {ask}")
        inst = self._instrument(instrument)
        with self._lock:
            inst.pinned = (bid, ask)
            self._publish_prices([instrument])

    def settle(self) -> None:
        """Apply what the clock has reached: the financing of every 17:00 New York passed and
        a margin closeout (also run at each price tick and before account requests)."""
        with self._lock:
            self._settle()

    def release_price(self, instrument: str) -> None:
        with self._lock:
            self._instrument(instrument).pinned = None

    def set_tradeable(self, instrument: str, tradeable: bool) -> None:
        """A halted instrument streams ``tradeable:false`` and cancels market orders."""
        with self._lock:
            self._instrument(instrument).tradeable = tradeable

    def _instrument(self, name: str) -> _Instrument:
        try:
            return self.instruments[name]
        except KeyError:
            raise ValueError(f"instrument: {name!r} is not in this sandbox") from None

    # -- request plumbing ------------------------------------------------------------------
    def _next_request_id(self) -> str:
        return str(next(self._request_ids))

    def _before_request(self) -> None:
        with self._lock:
            second = int(time.monotonic())
            start, count = self._window
            self._window = (second, count + 1) if start == second else (second, 1)
            limited = self.rate_limit is not None and self._window[1] > self.rate_limit
            status = self._fail.pop(0) if self._fail else None
        if self.latency:
            time.sleep(self.latency)
        if limited or status == 429:
            raise _Error(429, ERR_RATE)
        if status is not None:
            raise _Error(status, ERR_SERVER)

    def _take_stream_plan(self) -> tuple[int | None, bool, bool]:
        with self._lock:
            self.stream_connections += 1
            return self._stream_plans.pop(0) if self._stream_plans else (None, False, False)

    def _route(self, method: str, path: str, stream: bool) -> tuple[str, Any]:
        for pattern, methods, is_stream in self._routes():
            match = pattern.match(path)
            if not match:
                continue
            if is_stream != stream:
                break  # stream paths live only on the stream host, and vice versa
            groups = match.groupdict()
            if "account" in groups and groups["account"] != self.account_id:
                raise _Error(403, ERR_FORBIDDEN)
            if method not in methods:
                raise _Error(405, {"errorMessage": "The requested method is not allowed"})
            handler = methods[method]
            if is_stream:
                return "stream", handler
            args = {k: v for k, v in groups.items() if k != "account"}
            return "rest", lambda q, b, r, h=handler, a=args: h(q, b, r, **a)
        raise _Error(404, {"errorMessage": "The requested path does not exist"})

    def _routes(self) -> list[tuple[re.Pattern[str], dict[str, Any], bool]]:
        a = r"^/v3/accounts/(?P<account>[^/]+)"
        table: list[tuple[str, dict[str, Any], bool]] = [
            (r"^/v3/accounts/?$", {"GET": self._h_accounts}, False),
            (a + r"/?$", {"GET": self._h_account}, False),
            (a + r"/summary$", {"GET": self._h_summary}, False),
            (a + r"/instruments$", {"GET": self._h_instruments}, False),
            (a + r"/instruments/(?P<instrument>[^/]+)/candles$", {"GET": self._h_candles}, False),
            (r"^/v3/instruments/(?P<instrument>[^/]+)/candles$", {"GET": self._h_candles}, False),
            (a + r"/pricing$", {"GET": self._h_pricing}, False),
            (a + r"/pricing/stream$", {"GET": "pricing"}, True),
            (a + r"/transactions/stream$", {"GET": "transactions"}, True),
            (a + r"/orders$", {"GET": self._h_orders, "POST": self._h_create_order}, False),
            (a + r"/pendingOrders$", {"GET": self._h_pending}, False),
            (a + r"/orders/(?P<spec>[^/]+)$", {"GET": self._h_order}, False),
            (a + r"/orders/(?P<spec>[^/]+)/cancel$", {"PUT": self._h_cancel}, False),
            (a + r"/trades$", {"GET": self._h_trades}, False),
            (a + r"/openTrades$", {"GET": self._h_open_trades}, False),
            (a + r"/trades/(?P<spec>[^/]+)$", {"GET": self._h_trade}, False),
            (a + r"/trades/(?P<spec>[^/]+)/close$", {"PUT": self._h_close_trade}, False),
            (a + r"/positions$", {"GET": self._h_positions}, False),
            (a + r"/openPositions$", {"GET": self._h_open_positions}, False),
            (a + r"/positions/(?P<instrument>[^/]+)$", {"GET": self._h_position}, False),
            (
                a + r"/positions/(?P<instrument>[^/]+)/close$",
                {"PUT": self._h_close_position},
                False,
            ),
            (a + r"/transactions/sinceid$", {"GET": self._h_since}, False),
            (a + r"/transactions/idrange$", {"GET": self._h_idrange}, False),
            (a + r"/transactions/(?P<tid>\d+)$", {"GET": self._h_transaction}, False),
        ]
        return [(re.compile(p), m, s) for p, m, s in table]

    # -- streams ---------------------------------------------------------------------------
    def _subscribe(self, kind: str, query: dict[str, str]) -> _Subscription:
        names: frozenset[str] = frozenset()
        if kind == "pricing":
            names = frozenset(n for n in query.get("instruments", "").split(",") if n)
            if not names or any(n not in self.instruments for n in names):
                raise _invalid("instruments")
        sub = _Subscription(kind, names)
        with self._lock:
            self._subscriptions.add(sub)
            if kind == "pricing" and query.get("snapshot", "true") != "false":
                now = self.clock()
                for name in sorted(names):
                    sub.put(self._price_json(self.instruments[name], now))
        return sub

    def _unsubscribe(self, sub: _Subscription) -> None:
        with self._lock:
            self._subscriptions.discard(sub)

    def _heartbeat(self, kind: str) -> dict[str, Any]:
        beat: dict[str, Any] = {"type": "HEARTBEAT", "time": format_time(self.clock())}
        if kind == "transactions":
            beat = {
                "type": "HEARTBEAT",
                "lastTransactionID": self._last_id(),
                "time": beat["time"],
            }
        return beat

    def _publish_prices(self, names: list[str]) -> None:
        now = self.clock()
        prices = {n: self._price_json(self.instruments[n], now) for n in names}
        for sub in list(self._subscriptions):
            if sub.kind == "pricing":
                for name in names:
                    if name in sub.instruments:
                        sub.put(prices[name])
        self._check_orders(names)
        self._settle()

    @staticmethod
    def _closeout_prices(inst: _Instrument, bid: float, ask: float) -> tuple[float, float]:
        """The worst tier, where closeouts execute (a pinned quote is its own)."""
        if inst.pinned is not None:
            return bid, ask
        return bid - inst.half_spread, ask + inst.half_spread

    def _settle(self) -> None:
        self._roll_financing()
        self._check_closeout()

    def _roll_financing(self) -> None:
        """DAILY_FINANCING at each 17:00 New York the clock passed: every position pays or
        earns |units| x closing price x annual rate / 365 x days (3 on Wednesdays), in USD."""
        now = self.clock()
        while now >= self._next_roll[0]:
            stamp, days = self._next_roll
            self._next_roll = next_rollover(stamp)
            if not self.financing:
                continue
            per_position: dict[str, Decimal] = {}
            for trade in self._open_trades():
                rates = self.financing.get(trade["instrument"])
                if rates is None:
                    continue
                inst = self.instruments[trade["instrument"]]
                units = Decimal(trade["currentUnits"])
                mark = self._mark(inst, units, now)
                annual = Decimal(str(rates[0] if units > 0 else rates[1]))
                amount = (
                    abs(units) * mark * annual / 365 * days * self._home_rate(inst, float(mark))
                )
                trade["financing"] = str(Decimal(trade["financing"]) + amount)
                name = trade["instrument"]
                per_position[name] = per_position.get(name, Decimal(0)) + amount
            if not per_position:
                continue
            total = sum(per_position.values(), Decimal(0)).quantize(Decimal("0.0001"))
            self.balance += total
            self.financing_total += total
            self._tx(
                "DAILY_FINANCING",
                self._next_request_id(),
                financing=str(total),
                accountBalance=str(self.balance.quantize(Decimal("0.0001"))),
                accountFinancingMode="DAILY",
                positionFinancings=[
                    {"instrument": n, "financing": str(v.quantize(Decimal("0.0001")))}
                    for n, v in per_position.items()
                ],
            )

    def _check_closeout(self) -> None:
        """OANDA's margin closeout: when margin used / (2 x NAV) reaches 1.0 (the NAV has
        fallen to half the margin used), every open trade is closed at the closeout prices."""
        trades = self._open_trades()
        if not trades:
            return
        now = self.clock()
        margin = sum((self._trade_margin(t, now) for t in trades), Decimal(0))
        nav = self.balance + sum((self._trade_upl(t, now) for t in trades), Decimal(0))
        if margin <= 0 or nav > Decimal(str(self.closeout)) * margin:
            return
        rid = self._next_request_id()
        for trade in trades:
            inst = self.instruments[trade["instrument"]]
            units = -Decimal(trade["currentUnits"])
            bid, ask = self._closeout_prices(inst, *inst.quote(now))
            price = Decimal(inst.fmt(ask if units > 0 else bid))
            self._close_at_market(inst, units, rid, "MARGIN_CLOSEOUT", close_trade=trade,
                                  price=price, tradeClose={"tradeID": trade["id"],
                                                           "units": "ALL"})  # fmt: skip

    def _tick_loop(self) -> None:
        while not self._closing.wait(self.tick_interval):
            with self._lock:
                self._publish_prices(list(self.instruments))

    def _price_json(self, inst: _Instrument, now: int) -> dict[str, Any]:
        bid, ask = inst.quote(now)
        status = "tradeable" if inst.tradeable else "non-tradeable"
        return {
            "type": "PRICE",
            "time": format_time(now),
            "bids": [{"price": inst.fmt(bid), "liquidity": 10000000}],
            "asks": [{"price": inst.fmt(ask), "liquidity": 10000000}],
            "closeoutBid": inst.fmt(self._closeout_prices(inst, bid, ask)[0]),
            "closeoutAsk": inst.fmt(self._closeout_prices(inst, bid, ask)[1]),
            "status": status,
            "tradeable": inst.tradeable,
            "instrument": inst.name,
        }

    # -- transactions ----------------------------------------------------------------------
    def _last_id(self) -> str:
        return self.transactions[-1]["id"]

    def _tx(
        self, kind: str, request_id: str, batch: str | None = None, /, **fields: Any
    ) -> dict[str, Any]:
        tid = str(len(self.transactions) + 1)
        tx: dict[str, Any] = {
            "id": tid,
            "time": format_time(self.clock()),
            "userID": USER_ID,
            "accountID": self.account_id,
            "batchID": batch or tid,
        }
        if request_id != "0":
            tx["requestID"] = request_id
        tx["type"] = kind
        tx.update(fields)
        self.transactions.append(tx)
        for sub in list(self._subscriptions):
            if sub.kind == "transactions":
                sub.put(tx)
        return tx

    def _h_transaction(self, q: dict[str, str], body: Any, rid: str, tid: str) -> Any:
        with self._lock:
            if not 1 <= int(tid) <= len(self.transactions):
                raise _Error(404, {"errorMessage": "The Transaction specified does not exist"})
            return (
                200,
                {
                    "transaction": self.transactions[int(tid) - 1],
                    "lastTransactionID": self._last_id(),
                },
                {},
            )

    def _h_since(self, q: dict[str, str], body: Any, rid: str) -> Any:
        try:
            since = int(q["id"])
        except (KeyError, ValueError):
            raise _invalid("id") from None
        with self._lock:
            if since > len(self.transactions):
                raise _Error(416, {"errorMessage": "Range not satisfiable"})
            return (
                200,
                {"transactions": self.transactions[since:], "lastTransactionID": self._last_id()},
                {},
            )

    def _h_idrange(self, q: dict[str, str], body: Any, rid: str) -> Any:
        try:
            first, last = int(q["from"]), int(q["to"])
        except (KeyError, ValueError):
            raise _invalid("from") from None
        with self._lock:
            return (
                200,
                {
                    "transactions": self.transactions[max(first, 1) - 1 : last],
                    "lastTransactionID": self._last_id(),
                },
                {},
            )

    # -- accounts --------------------------------------------------------------------------
    def _h_accounts(self, q: dict[str, str], body: Any, rid: str) -> Any:
        return 200, {"accounts": [{"id": self.account_id, "tags": []}]}, {}

    def _summary(self) -> dict[str, Any]:
        self._settle()
        now = self.clock()
        unrealized = sum((self._trade_upl(t, now) for t in self._open_trades()), Decimal(0))
        margin = sum((self._trade_margin(t, now) for t in self._open_trades()), Decimal(0))
        nav = self.balance + unrealized
        pl = sum((sum(s.values(), Decimal(0)) for s in self.realized.values()), Decimal(0))
        money = lambda d: str(Decimal(d).quantize(Decimal("0.0001")))  # noqa: E731
        # real accounts: marginCallPercent = margin used / NAV, closeout at half of it
        call = str((margin / nav).quantize(Decimal("0.00001"))) if nav > 0 else "0.00000"
        pct = str((margin / (2 * nav)).quantize(Decimal("0.00001"))) if nav > 0 else "0.00000"
        pending = [o for o in self.orders.values() if o["state"] == "PENDING"]
        return {
            "guaranteedStopLossOrderMode": "DISABLED",
            "hedgingEnabled": False,
            "id": self.account_id,
            "createdTime": self.created_time,
            "currency": HOME_CURRENCY,
            "createdByUserID": USER_ID,
            "alias": "osMarkets sandbox",
            "marginRate": "0.05",
            "lastTransactionID": self._last_id(),
            "balance": money(self.balance),
            "openTradeCount": len(self._open_trades()),
            "openPositionCount": sum(1 for p in self._positions() if p["_open"]),
            "pendingOrderCount": len(pending),
            "pl": money(pl),
            "resettablePL": money(pl),
            "resettablePLTime": "0",
            "financing": money(self.financing_total),
            "commission": "0.0000",
            "guaranteedExecutionFees": "0.0000",
            "unrealizedPL": money(unrealized),
            "NAV": money(nav),
            "marginUsed": money(margin),
            "marginAvailable": money(max(nav - margin, Decimal(0))),
            "positionValue": money(margin * 20),
            "marginCloseoutUnrealizedPL": money(unrealized),
            "marginCloseoutNAV": money(nav),
            "marginCloseoutMarginUsed": money(margin),
            "marginCloseoutPositionValue": money(margin * 20),
            "marginCloseoutPercent": pct,
            "withdrawalLimit": money(max(nav - margin, Decimal(0))),
            "marginCallMarginUsed": money(margin),
            "marginCallPercent": call,
        }

    def _h_account(self, q: dict[str, str], body: Any, rid: str) -> Any:
        with self._lock:
            account = self._summary()
            account["trades"] = [self._trade_json(t) for t in self._open_trades()]
            account["positions"] = [self._position_json(p) for p in self._positions()]
            account["orders"] = [o for o in self.orders.values() if o["state"] == "PENDING"]
            return 200, {"account": account, "lastTransactionID": self._last_id()}, {}

    def _h_summary(self, q: dict[str, str], body: Any, rid: str) -> Any:
        with self._lock:
            return 200, {"account": self._summary(), "lastTransactionID": self._last_id()}, {}

    def _h_instruments(self, q: dict[str, str], body: Any, rid: str) -> Any:
        wanted = [n for n in q.get("instruments", "").split(",") if n]
        if any(n not in self.instruments for n in wanted):
            raise _invalid("instruments")
        items = [i.json for n, i in self.instruments.items() if not wanted or n in wanted]
        with self._lock:
            return 200, {"instruments": items, "lastTransactionID": self._last_id()}, {}

    def _h_pricing(self, q: dict[str, str], body: Any, rid: str) -> Any:
        names = [n for n in q.get("instruments", "").split(",") if n]
        if not names or any(n not in self.instruments for n in names):
            raise _invalid("instruments")
        now = self.clock()
        with self._lock:
            return (
                200,
                {
                    "time": format_time(now),
                    "prices": [self._price_json(self.instruments[n], now) for n in names],
                },
                {},
            )

    # -- candles ---------------------------------------------------------------------------
    def _h_candles(self, q: dict[str, str], body: Any, rid: str, instrument: str) -> Any:
        inst = self.instruments.get(instrument)
        if inst is None:
            raise _invalid("instrument")
        try:
            tf = Timeframe.parse(q.get("granularity", "S5"))
        except ValueError:
            raise _invalid("granularity") from None
        if tf.code not in OANDA_GRANULARITIES:
            raise _invalid("granularity")
        price = q.get("price", "M")
        if not price or any(c not in "MBA" for c in price) or len(set(price)) != len(price):
            raise _invalid("price")
        try:
            start = parse_time(q["from"]) if "from" in q else None
            end = parse_time(q["to"]) if "to" in q else None
        except ValueError:
            raise _invalid("from" if "from" in q else "to") from None
        if "count" in q:
            if start is not None and end is not None:
                raise _Error(
                    400,
                    {
                        "errorMessage": "Invalid value specified for 'count'. "
                        "Cannot specify 'count' with both 'from' and 'to'"
                    },
                )
            try:
                count = int(q["count"])
            except ValueError:
                raise _invalid("count") from None
            if count > MAX_COUNT:
                raise _Error(400, {"errorMessage": "Maximum value for 'count' exceeded"})
            if count < 1:
                raise _invalid("count")
        else:
            count = None
        include_first = q.get("includeFirst", "true") != "false"
        try:
            alignment = Alignment(
                int(q.get("dailyAlignment", 17)),
                q.get("alignmentTimezone", "America/New_York"),
                q.get("weeklyAlignment", "Friday"),
            ).checked()
        except ValueError:
            raise _invalid("dailyAlignment") from None
        now = self.clock()
        if start is not None and start > now:
            raise _Error(
                400, {"errorMessage": "Invalid value specified for 'from'. Time is in the future"}
            )
        starts = _candle_starts(tf, alignment, start, end, count, include_first, now)
        if starts is None:
            raise _Error(400, {"errorMessage": "Maximum value for 'count' exceeded"})
        candles = self._make_candles(inst, tf, alignment, starts, price, now)
        return 200, {"instrument": instrument, "granularity": tf.code, "candles": candles}, {}

    def _make_candles(
        self,
        inst: _Instrument,
        tf: Timeframe,
        alignment: Alignment,
        starts: np.ndarray,
        price: str,
        now: int,
    ) -> list[dict[str, Any]]:
        if not len(starts):
            return []
        ends = _candle_ends(tf, alignment, starts)
        complete = ends <= now
        ends = np.minimum(ends, now)
        steps = 8
        frac = np.linspace(0.0, 1.0, steps + 1)
        samples = starts[:, None] + ((ends - starts)[:, None] * frac[None, :]).astype(np.int64)
        mids = inst.path.mid(samples.ravel()).reshape(samples.shape)
        ohlc = np.stack([mids[:, 0], mids.max(axis=1), mids.min(axis=1), mids[:, -1]], axis=1)
        step = 10.0**-inst.digits
        bid = np.round((ohlc - inst.half_spread) / step) * step
        ask = np.maximum(np.round((ohlc + inst.half_spread) / step) * step, bid + step)
        mid = (bid + ask) / 2
        span = np.maximum((ends - starts) // 1_000_000_000, 1)
        noise = np.abs(_hash_uniform(inst.path.key, starts // 1_000_000_000))
        volume = (1 + noise * np.minimum(span, 50_000) * 0.3).astype(np.int64)
        out = []
        for i in range(len(starts)):
            candle: dict[str, Any] = {
                "complete": bool(complete[i]),
                "volume": int(volume[i]),
                "time": format_time(int(starts[i])),
            }
            for letter, key, values, extra in (
                ("M", "mid", mid, 1),
                ("B", "bid", bid, 0),
                ("A", "ask", ask, 0),
            ):
                if letter in price:
                    o, h, lo, c = values[i]
                    candle[key] = {
                        "o": inst.fmt(o, extra),
                        "h": inst.fmt(h, extra),
                        "l": inst.fmt(lo, extra),
                        "c": inst.fmt(c, extra),
                    }
            out.append(candle)
        return out

    # -- orders ----------------------------------------------------------------------------
    def _h_create_order(self, q: dict[str, str], body: Any, rid: str) -> Any:
        if not isinstance(body, dict) or not isinstance(body.get("order"), dict):
            raise _invalid("order")
        request = body["order"]
        kind = request.get("type", "MARKET")
        if kind not in _ORDER_TYPES:
            raise _invalid("order.type")
        inst = self.instruments.get(request.get("instrument", ""))
        if inst is None:
            raise _invalid("order.instrument")
        with self._lock:
            delay, before = self._slow_orders.pop(0) if self._slow_orders else (0.0, False)
        if before:
            self._closing.wait(delay)
        with self._lock:
            status, payload = self._create_order(request, kind, inst, rid)
            lose = status == 201 and self._lose_orders > 0
            if lose:
                self._lose_orders -= 1
        if not before:
            self._closing.wait(delay)
        if lose:
            raise _Error(500, ERR_SERVER)
        headers = {}
        if status == 201:
            oid = payload["orderCreateTransaction"]["id"]
            headers["Location"] = f"{self.rest_url}/v3/accounts/{self.account_id}/orders/{oid}"
        return status, payload, headers

    def _validate(self, request: dict[str, Any], kind: str, inst: _Instrument) -> str | None:
        try:
            units = Decimal(str(request.get("units")))
        except InvalidOperation:
            return "UNITS_INVALID"
        if not units.is_finite() or units == 0:
            return "UNITS_INVALID"
        if units != units.quantize(Decimal(1)):
            return "UNITS_PRECISION_EXCEEDED"
        if abs(units) < 1:
            return "UNITS_MIMIMUM_NOT_MET"
        if abs(units) > Decimal(inst.json["maximumOrderUnits"]):
            return "UNITS_LIMIT_EXCEEDED"
        tif = request.get("timeInForce", "FOK" if kind == "MARKET" else "GTC")
        allowed = ("FOK", "IOC") if kind == "MARKET" else ("GTC", "GTD", "GFD", "FOK", "IOC")
        if tif not in allowed:
            return "TIME_IN_FORCE_INVALID"
        if kind != "MARKET":
            bad = _bad_price(request.get("price"), inst.digits)
            if bad:
                return "PRICE_" + bad
        for key, prefix in (
            ("stopLossOnFill", "STOP_LOSS_ON_FILL_"),
            ("takeProfitOnFill", "TAKE_PROFIT_ON_FILL_"),
        ):
            if key in request:
                bad = _bad_price((request[key] or {}).get("price"), inst.digits)
                if bad:
                    return prefix + "PRICE_" + bad
        if "trailingStopLossOnFill" in request:
            distance = (request["trailingStopLossOnFill"] or {}).get("distance")
            bad = _bad_price(distance, inst.digits)
            if bad:
                return "TRAILING_STOP_LOSS_ON_FILL_PRICE_DISTANCE_" + bad
            low = Decimal(inst.json["minimumTrailingStopDistance"])
            if Decimal(str(distance)) < low:
                return "TRAILING_STOP_LOSS_ON_FILL_PRICE_DISTANCE_MINIMUM_NOT_MET"
        cid = (request.get("clientExtensions") or {}).get("id")
        if cid and any(
            (o.get("clientExtensions") or {}).get("id") == cid for o in self.orders.values()
        ):
            return "CLIENT_ORDER_ID_ALREADY_EXISTS"
        return None

    def _create_order(
        self, request: dict[str, Any], kind: str, inst: _Instrument, rid: str
    ) -> tuple[int, dict[str, Any]]:
        fields = {k: v for k, v in request.items() if k != "type"}
        fields.setdefault("timeInForce", "FOK" if kind == "MARKET" else "GTC")
        fields.setdefault("positionFill", "DEFAULT")
        if kind != "MARKET":
            fields.setdefault("triggerCondition", "DEFAULT")
            fields.setdefault("partialFill", "DEFAULT")  # "DEFAULT_FILL" on the order itself
        reason = self._validate(request, kind, inst)
        forced = self._reject.pop(0) if self._reject else None
        if reason is None and forced is not None and not forced[1]:
            reason = forced[0]
        if reason is not None:
            tx = self._tx(
                f"{kind}_ORDER_REJECT", rid, **fields, reason="CLIENT_ORDER", rejectReason=reason
            )
            return 400, {
                "orderRejectTransaction": tx,
                "relatedTransactionIDs": [tx["id"]],
                "lastTransactionID": tx["id"],
                "errorCode": reason,
                "errorMessage": _REJECT_MESSAGES.get(reason, reason),
            }
        create = self._tx(f"{kind}_ORDER", rid, **fields, reason="CLIENT_ORDER")
        batch = create["id"]
        order = {
            "id": create["id"],
            "createTime": create["time"],
            "type": kind,
            **fields,
            "state": "PENDING",
        }
        if kind != "MARKET":
            order["partialFill"] = "DEFAULT_FILL"
        self.orders[order["id"]] = order
        bid, ask = inst.quote(self.clock())
        self._order_meta[order["id"]] = {
            "above": Decimal(str(request.get("price", 0))) > Decimal(str((bid + ask) / 2))
        }
        payload: dict[str, Any] = {"orderCreateTransaction": create}
        if forced is not None:
            cancel = self._cancel(order, forced[0], rid, batch)
            payload["orderCancelTransaction"] = cancel
        elif kind == "MARKET" or self._triggered(order, inst, bid, ask):
            units = Decimal(order["units"])
            price = Decimal(inst.fmt(ask if units > 0 else bid))
            why = self._fill_problem(order, inst, units, price)
            if why:
                payload["orderCancelTransaction"] = self._cancel(order, why, rid, batch)
            else:
                payload.update(self._fill(order, inst, units, price, rid, batch))
        ids = [t["id"] for t in self.transactions[int(create["id"]) - 1 :]]
        payload["relatedTransactionIDs"] = ids
        payload["lastTransactionID"] = self._last_id()
        return 201, payload

    def _fill_problem(
        self, order: dict[str, Any], inst: _Instrument, units: Decimal, price: Decimal
    ) -> str | None:
        if not inst.tradeable:
            return "MARKET_HALTED"
        sl = (order.get("stopLossOnFill") or {}).get("price")
        tp = (order.get("takeProfitOnFill") or {}).get("price")
        if sl is not None and (Decimal(sl) >= price if units > 0 else Decimal(sl) <= price):
            return "STOP_LOSS_ON_FILL_LOSS"
        if tp is not None and (Decimal(tp) <= price if units > 0 else Decimal(tp) >= price):
            return "TAKE_PROFIT_ON_FILL_LOSS"
        required = abs(units) * price * inst.margin_rate * self._home_rate(inst, float(price))
        now = self.clock()
        available = (
            self.balance
            + sum((self._trade_upl(t, now) for t in self._open_trades()), Decimal(0))
            - sum((self._trade_margin(t, now) for t in self._open_trades()), Decimal(0))
        )
        reducing = order.get("positionFill") == "REDUCE_ONLY" or self._reduces(inst, units)
        if required > available and not reducing:
            return "INSUFFICIENT_MARGIN"
        return None

    def _reduces(self, inst: _Instrument, units: Decimal) -> bool:
        net = sum(
            (
                Decimal(t["currentUnits"])
                for t in self._open_trades()
                if t["instrument"] == inst.name
            ),
            Decimal(0),
        )
        return net != 0 and (net > 0) != (units > 0) and abs(units) <= abs(net)

    def _cancel(self, order: dict[str, Any], reason: str, rid: str, batch: str) -> dict[str, Any]:
        fields: dict[str, Any] = {"orderID": order["id"]}
        cid = (order.get("clientExtensions") or {}).get("id")
        if cid:
            fields["clientOrderID"] = cid
        tx = self._tx("ORDER_CANCEL", rid, batch, **fields, reason=reason)
        order.update(state="CANCELLED", cancellingTransactionID=tx["id"], cancelledTime=tx["time"])
        return tx

    def _home_rate(self, inst: _Instrument, price: float) -> Decimal:
        """Quote currency -> account currency (USD), from the sandbox's own prices."""
        base, quote = inst.name.split("_")
        if quote == HOME_CURRENCY:
            return Decimal(1)
        if base == HOME_CURRENCY:
            return Decimal(1) / Decimal(str(price))
        for name, invert in (
            (f"{HOME_CURRENCY}_{quote}", True),
            (f"{quote}_{HOME_CURRENCY}", False),
        ):
            other = self.instruments.get(name) or (
                _Instrument(name, self.seed) if name in _CATALOGUE else None
            )
            if other is not None:
                bid, ask = other.quote(self.clock())
                mid = Decimal(str((bid + ask) / 2))
                return Decimal(1) / mid if invert else mid
        return Decimal(1)

    def _close_at_market(
        self,
        inst: _Instrument,
        units: Decimal,
        rid: str,
        reason: str,
        close_trade: dict[str, Any] | None = None,
        *,
        price: Decimal | None = None,
        **fields: Any,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A reduce-only market order (closing a trade or a position) filled at once at the
        current quote; returns its create transaction and the fill."""
        create = self._tx(
            "MARKET_ORDER",
            rid,
            instrument=inst.name,
            units=str(units),
            timeInForce="FOK",
            positionFill="REDUCE_ONLY",
            reason=reason,
            **fields,
        )
        order = {
            "id": create["id"],
            "type": "MARKET",
            "state": "PENDING",
            "createTime": create["time"],
            "instrument": inst.name,
            "units": str(units),
        }
        self.orders[order["id"]] = order
        if price is None:
            bid, ask = inst.quote(self.clock())
            price = Decimal(inst.fmt(ask if units > 0 else bid))
        result = self._fill(
            order,
            inst,
            units,
            price,
            rid,
            create["id"],
            reason=f"MARKET_ORDER_{reason}",
            close_trade=close_trade,
        )
        return create, result

    def _fill(
        self,
        order: dict[str, Any],
        inst: _Instrument,
        units: Decimal,
        price: Decimal,
        rid: str,
        batch: str,
        reason: str | None = None,
        close_trade: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Fill ``units`` at ``price`` (netting, FIFO); returns the fill (and its dependents)."""
        now = self.clock()
        rate = self._home_rate(inst, float(price))
        bid, ask = inst.quote(now)
        fill: dict[str, Any] = {
            "orderID": order["id"],
            "instrument": inst.name,
            "units": str(units),
            "requestedUnits": str(units),
            "price": str(price),
            "fullVWAP": str(price),
            "fullPrice": {
                "type": "PRICE",
                "bids": [{"price": inst.fmt(bid), "liquidity": "10000000"}],
                "asks": [{"price": inst.fmt(ask), "liquidity": "10000000"}],
                "closeoutBid": inst.fmt(bid - inst.half_spread),
                "closeoutAsk": inst.fmt(ask + inst.half_spread),
                "timestamp": format_time(now),
            },
            "reason": reason or f"{order['type']}_ORDER",
        }
        cid = (order.get("clientExtensions") or {}).get("id")
        if cid:
            fill = {
                "orderID": order["id"],
                "clientOrderID": cid,
                **{k: v for k, v in fill.items() if k != "orderID"},
            }
        remaining = units
        closed: list[dict[str, Any]] = []
        reduced: dict[str, Any] | None = None
        total_pl = Decimal(0)
        candidates = (
            [close_trade]
            if close_trade
            else [t for t in self._open_trades() if t["instrument"] == inst.name]
        )
        closing_ids: list[str] = []
        for trade in candidates:
            current = Decimal(trade["currentUnits"])
            if remaining == 0 or (current > 0) == (remaining > 0):
                continue
            take = min(abs(current), abs(remaining))
            signed_take = take if current > 0 else -take  # trade units being closed
            pl = ((price - Decimal(trade["price"])) * signed_take * rate).quantize(
                Decimal("0.0001")
            )
            total_pl += pl
            entry = {
                "tradeID": trade["id"],
                "units": str(-signed_take),
                "price": str(price),
                "realizedPL": str(pl),
                "financing": "0.0000",
                "guaranteedExecutionFee": "0.0000",
                "halfSpreadCost": "0.0000",
            }
            trade["currentUnits"] = str(current - signed_take)
            trade["realizedPL"] = str(Decimal(trade["realizedPL"]) + pl)
            side = "long" if current > 0 else "short"
            book = self.realized.setdefault(inst.name, {"long": Decimal(0), "short": Decimal(0)})
            book[side] += pl
            if Decimal(trade["currentUnits"]) == 0:
                closed.append(entry)
                closing_ids.append(trade["id"])
            else:
                reduced = entry
            remaining -= -signed_take
        self.balance += total_pl
        fill.update(
            pl=str(total_pl.quantize(Decimal("0.0001"))),
            financing="0.0000",
            commission="0.0000",
            guaranteedExecutionFee="0.0000",
            accountBalance=str(self.balance.quantize(Decimal("0.0001"))),
            gainQuoteHomeConversionFactor=str(rate.quantize(Decimal("0.00000001"))),
            lossQuoteHomeConversionFactor=str(rate.quantize(Decimal("0.00000001"))),
            halfSpreadCost=str(
                (Decimal(str(inst.half_spread)) * abs(units) * rate).quantize(Decimal("0.0001"))
            ),
        )
        if closed:
            fill["tradesClosed"] = closed
        if reduced:
            fill["tradeReduced"] = reduced
        tx = self._tx("ORDER_FILL", rid, batch, **fill)
        result: dict[str, Any] = {"orderFillTransaction": tx}
        if remaining != 0:
            margin = (abs(remaining) * price * inst.margin_rate * rate).quantize(Decimal("0.0001"))
            tx["tradeOpened"] = {
                "tradeID": tx["id"],
                "units": str(remaining),
                "price": str(price),
                "guaranteedExecutionFee": "0.0000",
                "halfSpreadCost": "0.0000",
                "initialMarginRequired": str(margin),
            }
            trade = {
                "id": tx["id"],
                "instrument": inst.name,
                "price": str(price),
                "openTime": tx["time"],
                "initialUnits": str(remaining),
                "initialMarginRequired": str(margin),
                "state": "OPEN",
                "currentUnits": str(remaining),
                "realizedPL": "0.0000",
                "financing": "0.0000",
                "dividendAdjustment": "0.0000",
            }
            if order.get("tradeClientExtensions"):
                trade["clientExtensions"] = order["tradeClientExtensions"]
            self.trades[trade["id"]] = trade
        order.update(state="FILLED", fillingTransactionID=tx["id"], filledTime=tx["time"])
        if remaining != 0:
            order["tradeOpenedID"] = tx["id"]
        if closing_ids:
            order["tradeClosedIDs"] = closing_ids
        for tid in closing_ids:
            self._close_trade_record(self.trades[tid], tx, rid, batch)
        if remaining != 0:
            self._dependents(order, self.trades[tx["id"]], inst, price, rid, batch)
        return result

    def _close_trade_record(
        self, trade: dict[str, Any], fill: dict[str, Any], rid: str, batch: str
    ) -> None:
        trade.update(
            state="CLOSED",
            closeTime=fill["time"],
            averageClosePrice=fill["price"],
            closingTransactionIDs=[fill["id"]],
        )
        for key in ("takeProfitOrderID", "stopLossOrderID", "trailingStopLossOrderID"):
            dependent = self.orders.get(trade.get(key, ""))
            if dependent is not None and dependent["state"] == "PENDING":
                self._cancel(dependent, "LINKED_TRADE_CLOSED", rid, batch)

    def _dependents(
        self,
        order: dict[str, Any],
        trade: dict[str, Any],
        inst: _Instrument,
        price: Decimal,
        rid: str,
        batch: str,
    ) -> None:
        for key, kind in _DEP_TYPES.items():
            details = order.get(key)
            if not details:
                continue
            fields: dict[str, Any] = {
                "tradeID": trade["id"],
                "timeInForce": details.get("timeInForce", "GTC"),
                "triggerCondition": "DEFAULT",
            }
            if kind == "TRAILING_STOP_LOSS":
                fields["distance"] = details["distance"]
            else:
                fields["price"] = details["price"]
            tx = self._tx(f"{kind}_ORDER", rid, batch, **fields, reason="ON_FILL")
            dep = {
                "id": tx["id"],
                "createTime": tx["time"],
                "type": kind,
                **fields,
                "state": "PENDING",
            }
            if kind == "TRAILING_STOP_LOSS":
                distance = Decimal(details["distance"])
                long = Decimal(trade["currentUnits"]) > 0
                dep["trailingStopValue"] = inst.fmt(
                    float(price - distance if long else price + distance)
                )
            self.orders[dep["id"]] = dep
            trade[
                {
                    "STOP_LOSS": "stopLossOrderID",
                    "TAKE_PROFIT": "takeProfitOrderID",
                    "TRAILING_STOP_LOSS": "trailingStopLossOrderID",
                }[kind]
            ] = dep["id"]

    def _triggered(self, order: dict[str, Any], inst: _Instrument, bid: float, ask: float) -> bool:
        kind = order["type"]
        if kind in ("LIMIT", "STOP", "MARKET_IF_TOUCHED"):
            price, buy = float(order["price"]), Decimal(order["units"]) > 0
            level = ask if buy else bid
            if kind == "LIMIT":
                return level <= price if buy else level >= price
            if kind == "STOP":
                return level >= price if buy else level <= price
            above = self._order_meta.get(order["id"], {}).get("above", True)
            return level >= price if above else level <= price
        trade = self.trades.get(order.get("tradeID", ""))
        if trade is None or trade["state"] != "OPEN":
            return False
        long = Decimal(trade["currentUnits"]) > 0
        level = bid if long else ask  # the side the closing order trades at
        if kind == "STOP_LOSS":
            price = float(order["price"])
            return level <= price if long else level >= price
        if kind == "TAKE_PROFIT":
            price = float(order["price"])
            return level >= price if long else level <= price
        if kind == "TRAILING_STOP_LOSS":
            distance = float(order["distance"])
            value = float(order["trailingStopValue"])
            value = max(value, level - distance) if long else min(value, level + distance)
            order["trailingStopValue"] = inst.fmt(value)
            return level <= value if long else level >= value
        return False

    def _check_orders(self, names: list[str]) -> None:
        now = self.clock()
        quotes = {n: self.instruments[n].quote(now) for n in names}
        for order in list(self.orders.values()):
            if order["state"] != "PENDING":
                continue
            name = order.get("instrument") or self.trades.get(order.get("tradeID", ""), {}).get(
                "instrument"
            )
            if name not in quotes:
                continue
            inst = self.instruments[name]
            bid, ask = quotes[name]
            if not inst.tradeable or not self._triggered(order, inst, bid, ask):
                continue
            rid = self._next_request_id()
            if order["type"] in ("LIMIT", "STOP", "MARKET_IF_TOUCHED"):
                units = Decimal(order["units"])
                price = Decimal(inst.fmt(ask if units > 0 else bid))
                why = self._fill_problem(order, inst, units, price)
                batch = str(len(self.transactions) + 1)
                if why:
                    self._cancel(order, why, rid, batch)
                else:
                    self._fill(order, inst, units, price, rid, batch)
            else:
                trade = self.trades[order["tradeID"]]
                units = -Decimal(trade["currentUnits"])
                price = Decimal(inst.fmt(ask if units > 0 else bid))
                batch = str(len(self.transactions) + 1)
                self._fill(
                    order,
                    inst,
                    units,
                    price,
                    rid,
                    batch,
                    reason=f"{order['type']}_ORDER",
                    close_trade=trade,
                )

    def _find_order(self, spec: str) -> dict[str, Any] | None:
        if spec.startswith("@"):
            for order in self.orders.values():
                if (order.get("clientExtensions") or {}).get("id") == spec[1:]:
                    return order
            return None
        return self.orders.get(spec)

    def _h_order(self, q: dict[str, str], body: Any, rid: str, spec: str) -> Any:
        with self._lock:
            order = self._find_order(spec)
            if order is None:
                raise _Error(
                    404,
                    {
                        "errorMessage": "The Order specified does not exist",
                        "errorCode": "ORDER_DOESNT_EXIST",
                    },
                )
            return 200, {"order": order, "lastTransactionID": self._last_id()}, {}

    def _h_orders(self, q: dict[str, str], body: Any, rid: str) -> Any:
        state = q.get("state", "PENDING")
        with self._lock:
            orders = [o for o in self.orders.values() if state == "ALL" or o["state"] == state]
            if "instrument" in q:
                orders = [o for o in orders if o.get("instrument") == q["instrument"]]
            count = min(int(q.get("count", 50)), 500)
            orders = sorted(orders, key=lambda o: -int(o["id"]))[:count]
            return 200, {"orders": orders, "lastTransactionID": self._last_id()}, {}

    def _h_pending(self, q: dict[str, str], body: Any, rid: str) -> Any:
        with self._lock:
            orders = [o for o in self.orders.values() if o["state"] == "PENDING"]
            return 200, {"orders": orders, "lastTransactionID": self._last_id()}, {}

    def _h_cancel(self, q: dict[str, str], body: Any, rid: str, spec: str) -> Any:
        with self._lock:
            order = self._find_order(spec)
            if order is None or order["state"] != "PENDING":
                fields: dict[str, Any] = {}
                if order is not None:
                    fields["orderID"] = order["id"]
                if spec.startswith("@"):
                    fields["clientOrderID"] = spec[1:]
                tx = self._tx(
                    "ORDER_CANCEL_REJECT",
                    rid,
                    **fields,
                    reason="CLIENT_REQUEST",
                    rejectReason="ORDER_DOESNT_EXIST",
                )
                raise _Error(
                    404,
                    {
                        "orderCancelRejectTransaction": tx,
                        "relatedTransactionIDs": [tx["id"]],
                        "lastTransactionID": tx["id"],
                        "errorCode": "ORDER_DOESNT_EXIST",
                        "errorMessage": "The Order specified does not exist",
                    },
                )
            tx = self._cancel(order, "CLIENT_REQUEST", rid, str(len(self.transactions) + 1))
            return (
                200,
                {
                    "orderCancelTransaction": tx,
                    "relatedTransactionIDs": [tx["id"]],
                    "lastTransactionID": tx["id"],
                },
                {},
            )

    # -- trades and positions --------------------------------------------------------------
    def _open_trades(self) -> list[dict[str, Any]]:
        return [t for t in self.trades.values() if t["state"] == "OPEN"]

    def _mark(self, inst: _Instrument, units: Decimal, now: int) -> Decimal:
        bid, ask = inst.quote(now)
        return Decimal(str(bid if units > 0 else ask))  # the price it would close at

    def _trade_upl(self, trade: dict[str, Any], now: int) -> Decimal:
        inst = self.instruments[trade["instrument"]]
        units = Decimal(trade["currentUnits"])
        mark = self._mark(inst, units, now)
        rate = self._home_rate(inst, float(mark))
        return ((mark - Decimal(trade["price"])) * units * rate).quantize(Decimal("0.0001"))

    def _trade_margin(self, trade: dict[str, Any], now: int) -> Decimal:
        inst = self.instruments[trade["instrument"]]
        units = Decimal(trade["currentUnits"])
        mark = self._mark(inst, units, now)
        rate = self._home_rate(inst, float(mark))
        return (abs(units) * mark * inst.margin_rate * rate).quantize(Decimal("0.0001"))

    def _trade_json(self, trade: dict[str, Any]) -> dict[str, Any]:
        out = dict(trade)
        if trade["state"] == "OPEN":
            now = self.clock()
            out["unrealizedPL"] = str(self._trade_upl(trade, now))
            out["marginUsed"] = str(self._trade_margin(trade, now))
        return out

    def _h_trades(self, q: dict[str, str], body: Any, rid: str) -> Any:
        state = q.get("state", "OPEN")
        with self._lock:
            trades = [t for t in self.trades.values() if state == "ALL" or t["state"] == state]
            if "instrument" in q:
                trades = [t for t in trades if t["instrument"] == q["instrument"]]
            trades = sorted(trades, key=lambda t: -int(t["id"]))[
                : min(int(q.get("count", 50)), 500)
            ]
            return (
                200,
                {
                    "trades": [self._trade_json(t) for t in trades],
                    "lastTransactionID": self._last_id(),
                },
                {},
            )

    def _h_open_trades(self, q: dict[str, str], body: Any, rid: str) -> Any:
        with self._lock:
            trades = sorted(self._open_trades(), key=lambda t: -int(t["id"]))
            return (
                200,
                {
                    "trades": [self._trade_json(t) for t in trades],
                    "lastTransactionID": self._last_id(),
                },
                {},
            )

    def _find_trade(self, spec: str) -> dict[str, Any]:
        trade = self.trades.get(spec)
        if spec.startswith("@"):
            trade = next(
                (
                    t
                    for t in self.trades.values()
                    if (t.get("clientExtensions") or {}).get("id") == spec[1:]
                ),
                None,
            )
        if trade is None:
            raise _Error(
                404,
                {
                    "errorMessage": "The Trade specified does not exist",
                    "errorCode": "TRADE_DOESNT_EXIST",
                },
            )
        return trade

    def _h_trade(self, q: dict[str, str], body: Any, rid: str, spec: str) -> Any:
        with self._lock:
            return (
                200,
                {
                    "trade": self._trade_json(self._find_trade(spec)),
                    "lastTransactionID": self._last_id(),
                },
                {},
            )

    def _h_close_trade(self, q: dict[str, str], body: Any, rid: str, spec: str) -> Any:
        with self._lock:
            trade = self._find_trade(spec)
            if trade["state"] != "OPEN":
                raise _Error(
                    404,
                    {
                        "errorMessage": "The Trade specified does not exist",
                        "errorCode": "TRADE_DOESNT_EXIST",
                    },
                )
            inst = self.instruments[trade["instrument"]]
            current = Decimal(trade["currentUnits"])
            want = (body or {}).get("units", "ALL")
            try:
                size = abs(current) if want == "ALL" else Decimal(str(want))
            except InvalidOperation:
                raise _invalid("units") from None
            if size <= 0 or size > abs(current):
                raise _Error(
                    400,
                    {
                        "errorCode": "CLOSE_TRADE_UNITS_EXCEED_TRADE_SIZE",
                        "errorMessage": "The units specified exceed the trade size",
                    },
                )
            units = -size if current > 0 else size
            create, result = self._close_at_market(
                inst,
                units,
                rid,
                "TRADE_CLOSE",
                close_trade=trade,
                tradeClose={"tradeID": trade["id"], "units": str(want)},
            )
            ids = [t["id"] for t in self.transactions[int(create["id"]) - 1 :]]
            return (
                200,
                {
                    "orderCreateTransaction": create,
                    **result,
                    "relatedTransactionIDs": ids,
                    "lastTransactionID": self._last_id(),
                },
                {},
            )

    def _positions(self) -> list[dict[str, Any]]:
        now = self.clock()
        out = []
        names = sorted(set(self.realized) | {t["instrument"] for t in self.trades.values()})
        for name in names:
            inst = self.instruments[name]
            book = self.realized.get(name, {"long": Decimal(0), "short": Decimal(0)})
            sides: dict[str, dict[str, Any]] = {}
            total_upl = Decimal(0)
            for side in ("long", "short"):
                trades = [
                    t
                    for t in self._open_trades()
                    if t["instrument"] == name
                    and (Decimal(t["currentUnits"]) > 0) == (side == "long")
                ]
                units = sum((Decimal(t["currentUnits"]) for t in trades), Decimal(0))
                upl = sum((self._trade_upl(t, now) for t in trades), Decimal(0))
                total_upl += upl
                entry: dict[str, Any] = {
                    "units": str(units),
                    "pl": str(book[side]),
                    "resettablePL": str(book[side]),
                    "financing": "0.0000",
                    "guaranteedExecutionFees": "0.0000",
                    "unrealizedPL": str(upl),
                }
                if trades:
                    avg = (
                        sum(
                            (Decimal(t["price"]) * Decimal(t["currentUnits"]) for t in trades),
                            Decimal(0),
                        )
                        / units
                    )
                    entry["averagePrice"] = inst.fmt(float(avg), 1)
                    entry["tradeIDs"] = [t["id"] for t in trades]
                sides[side] = entry
            pl = book["long"] + book["short"]
            margin = sum(
                (
                    self._trade_margin(t, now)
                    for t in self._open_trades()
                    if t["instrument"] == name
                ),
                Decimal(0),
            )
            out.append(
                {
                    "instrument": name,
                    "long": sides["long"],
                    "short": sides["short"],
                    "pl": str(pl),
                    "resettablePL": str(pl),
                    "financing": "0.0000",
                    "commission": "0.0000",
                    "dividendAdjustment": "0.0000",
                    "guaranteedExecutionFees": "0.0000",
                    "unrealizedPL": str(total_upl),
                    "marginUsed": str(margin),
                    "_open": Decimal(sides["long"]["units"]) != 0
                    or Decimal(sides["short"]["units"]) != 0,
                }
            )
        return out

    @staticmethod
    def _position_json(position: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in position.items() if not k.startswith("_")}

    def _h_positions(self, q: dict[str, str], body: Any, rid: str) -> Any:
        with self._lock:
            return (
                200,
                {
                    "positions": [self._position_json(p) for p in self._positions()],
                    "lastTransactionID": self._last_id(),
                },
                {},
            )

    def _h_open_positions(self, q: dict[str, str], body: Any, rid: str) -> Any:
        with self._lock:
            return (
                200,
                {
                    "positions": [self._position_json(p) for p in self._positions() if p["_open"]],
                    "lastTransactionID": self._last_id(),
                },
                {},
            )

    def _h_position(self, q: dict[str, str], body: Any, rid: str, instrument: str) -> Any:
        if instrument not in self.instruments:
            raise _invalid("instrument")
        with self._lock:
            found = [p for p in self._positions() if p["instrument"] == instrument]
            zero = {
                "units": "0",
                "pl": "0.0000",
                "resettablePL": "0.0000",
                "financing": "0.0000",
                "guaranteedExecutionFees": "0.0000",
                "unrealizedPL": "0.0000",
            }
            position = (
                self._position_json(found[0])
                if found
                else {
                    "instrument": instrument,
                    "long": dict(zero),
                    "short": dict(zero),
                    "pl": "0.0000",
                    "resettablePL": "0.0000",
                    "financing": "0.0000",
                    "commission": "0.0000",
                    "guaranteedExecutionFees": "0.0000",
                    "unrealizedPL": "0.0000",
                    "marginUsed": "0.0000",
                }
            )
            return 200, {"position": position, "lastTransactionID": self._last_id()}, {}

    def _h_close_position(self, q: dict[str, str], body: Any, rid: str, instrument: str) -> Any:
        inst = self.instruments.get(instrument)
        if inst is None:
            raise _invalid("instrument")
        body = body or {}
        with self._lock:
            payload: dict[str, Any] = {}
            for side in ("long", "short"):
                want = body.get(f"{side}Units")
                if want in (None, "NONE"):
                    continue
                trades = [
                    t
                    for t in self._open_trades()
                    if t["instrument"] == instrument
                    and (Decimal(t["currentUnits"]) > 0) == (side == "long")
                ]
                if not trades:
                    tx = self._tx(
                        "MARKET_ORDER_REJECT",
                        rid,
                        instrument=instrument,
                        timeInForce="FOK",
                        positionFill="REDUCE_ONLY",
                        reason="POSITION_CLOSEOUT",
                        rejectReason="CLOSEOUT_POSITION_DOESNT_EXIST",
                        **{f"{side}PositionCloseout": {"instrument": instrument, "units": want}},
                    )
                    raise _Error(
                        400,
                        {
                            f"{side}OrderRejectTransaction": tx,
                            "relatedTransactionIDs": [tx["id"]],
                            "lastTransactionID": tx["id"],
                            "errorCode": "CLOSEOUT_POSITION_DOESNT_EXIST",
                            "errorMessage": "The Position requested to be closed "
                            "out does not exist",
                        },
                    )
                held = sum((Decimal(t["currentUnits"]) for t in trades), Decimal(0))
                units = (
                    -held
                    if want == "ALL"
                    else (-Decimal(str(want)) if side == "long" else Decimal(str(want)))
                )
                closeout: dict[str, Any] = {"instrument": instrument, "units": want}
                extra: dict[str, Any] = {f"{side}PositionCloseout": closeout}
                create, result = self._close_at_market(
                    inst, units, rid, "POSITION_CLOSEOUT", **extra
                )
                payload[f"{side}OrderCreateTransaction"] = create
                payload[f"{side}OrderFillTransaction"] = result["orderFillTransaction"]
            if not payload:
                raise _Error(400, {"errorMessage": "The request was missing required data"})
            first = min(int(v["id"]) for v in payload.values())
            payload["relatedTransactionIDs"] = [t["id"] for t in self.transactions[first - 1 :]]
            payload["lastTransactionID"] = self._last_id()
            headers = {
                "Location": f"{self.rest_url}/v3/accounts/{self.account_id}/positions/{instrument}"
            }
            return 200, payload, headers


_REJECT_MESSAGES = {
    "PRICE_PRECISION_EXCEEDED": "The price specified contains more precision than is allowed "
    "for the instrument",
    "UNITS_PRECISION_EXCEEDED": "The units specified contain more precision than is allowed "
    "for the instrument",
    "UNITS_MIMIMUM_NOT_MET": "The units specified is less than the minimum trade size",
    "UNITS_INVALID": "The units specified are invalid",
    "PRICE_MISSING": "The price is missing",
    "PRICE_INVALID": "The price specified is invalid",
    "CLIENT_ORDER_ID_ALREADY_EXISTS": "The client order ID specified is already assigned",
    "TIME_IN_FORCE_INVALID": "The time-in-force specified is invalid",
}


def _bad_price(value: Any, digits: int) -> str | None:
    if value is None:
        return "MISSING"
    if not isinstance(value, str):
        return "INVALID"  # OANDA wants decimal strings
    try:
        number = Decimal(value)
    except InvalidOperation:
        return "INVALID"
    if not number.is_finite() or number <= 0:
        return "INVALID"
    if number != number.quantize(Decimal(1).scaleb(-digits)):
        return "PRECISION_EXCEEDED"
    return None
