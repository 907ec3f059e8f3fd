"""The HTTP and websocket side of the exchange sandbox, and :class:`ExchangeSandbox` itself.

One aiohttp server on 127.0.0.1, in a background thread with its own event loop, serves
Binance spot's REST API (``/api/v3/...``, signed endpoints checked as Binance checks them) and
its market streams (``/ws``, ``/ws/<streams>``, ``/stream?streams=...``) on one port, so the
unmodified ``ccxt.binance`` and ``ccxt.pro.binance`` run against it with the URLs from
:meth:`ExchangeSandbox.ccxt_options`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from .engine import BinanceError, Engine, mandatory, param_int, param_limit, to_decimal
from .market import CATALOGUE, INTERVALS_MS, SYMBOLS, Market, fmt

if TYPE_CHECKING:  # aiohttp (a ccxt dependency) is imported when serving starts
    from aiohttp import web

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
DEFAULT_BALANCES = {"USDT": 10_000}
_RATE_SUFFIXES = ("@100ms", "@1000ms")
_STREAM_KINDS = ("trade", "aggTrade", "ticker", "miniTicker", "bookTicker", "depth",
                 "depth5", "depth10", "depth20")  # fmt: skip
# every REST base ccxt.binance knows, pointed at the sandbox so nothing reaches Binance
_API_PATHS = {
    "public": "/api/v3",
    "private": "/api/v3",
    "v1": "/api/v1",
    "sapi": "/sapi/v1",
    "sapiV2": "/sapi/v2",
    "sapiV3": "/sapi/v3",
    "sapiV4": "/sapi/v4",
    "dapiPublic": "/dapi/v1",
    "dapiPrivate": "/dapi/v1",
    "dapiPrivateV2": "/dapi/v2",
    "dapiData": "/futures/data",
    "eapiPublic": "/eapi/v1",
    "eapiPrivate": "/eapi/v1",
    "fapiPublic": "/fapi/v1",
    "fapiPublicV2": "/fapi/v2",
    "fapiPublicV3": "/fapi/v3",
    "fapiPrivate": "/fapi/v1",
    "fapiPrivateV2": "/fapi/v2",
    "fapiPrivateV3": "/fapi/v3",
    "fapiData": "/futures/data",
    "papi": "/papi/v1",
    "papiV2": "/papi/v2",
}
ERR_UNKNOWN = (-1000, "An unknown error occurred while processing the request.")
ERR_BUSY = (-1008, "Server is currently overloaded with other requests. Please try again in "
            "a few minutes.")  # fmt: skip
ERR_UNKNOWN_STATUS = (-1007, "Timeout waiting for response from backend server. Send status "
                      "unknown; execution status unknown.")  # fmt: skip


@dataclass(frozen=True)
class _Route:
    handler: Callable[[dict[str, str], int], Any]
    weight: Callable[[dict[str, str]], int]
    signed: bool = False
    order: bool = False  # an order creation: the order fault knobs apply


class _Stream:
    """One websocket connection and the streams it subscribed to."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, combined: bool) -> None:
        self.ws, self.request, self.combined = ws, request, combined
        self.streams: set[str] = set()
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()

    def send(self, payload: Any) -> None:
        self.queue.put_nowait(json.dumps(payload, separators=(",", ":")))


def _base_stream(name: str) -> str:
    for suffix in _RATE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


class ExchangeSandbox:
    """A local Binance-spot look-alike exchange; a context manager (or :meth:`start` /
    :meth:`close`).

    ``symbols``: the spot markets, unified (``'BTC/USDT'``; see
    :data:`~osmarkets.brokers.ccxt.sandbox.market.SYMBOLS`). ``seed`` fixes the price paths.
    ``api_key`` / ``secret``: the credential accepted (random when omitted). ``balances``:
    the starting free balance per asset (default 10,000 USDT, 0 of everything else).
    ``tick_interval``: seconds between price ticks (prices move, resting orders fill, streams
    publish); ``None`` for a manual clock where only :meth:`step` ticks. ``book_qty``: the
    quantity at each price level of the simulated book, one number or per symbol.
    ``weight_limit``: request weight allowed per minute (Binance: 6000); ``ban_seconds``: how
    long a client that ignores a 429 is banned with 418. ``clock``: milliseconds since the
    epoch, for a simulated time of the market (prices, candles, trades, order times; a demo
    runs it faster than real time); request timestamps (``recvWindow``) and weights follow the
    wall clock, as the clients that send them do.
    """

    def __init__(
        self,
        symbols: Iterable[str] = ("BTC/USDT", "ETH/USDT"),
        seed: int = 0,
        api_key: str | None = None,
        secret: str | None = None,
        balances: Mapping[str, Any] | None = None,
        port: int = 0,
        tick_interval: float | None = 0.1,
        *,
        book_qty: float | str | Mapping[str, float | str] | None = None,
        maker_fee: float | str = "0.001",
        taker_fee: float | str = "0.001",
        weight_limit: int | None = 6000,
        ban_seconds: float = 120.0,
        clock: Callable[[], int] | None = None,
    ) -> None:
        symbols = list(symbols)
        if not symbols:
            raise ValueError("symbols: expected at least one symbol")
        unknown = [s for s in symbols if s not in CATALOGUE]
        if unknown:
            raise ValueError(
                f"symbols: unknown {', '.join(map(str, unknown))} (the sandbox knows "
                f"{', '.join(SYMBOLS)})"
            )
        if tick_interval is not None and not tick_interval > 0:
            raise ValueError("tick_interval: expected seconds > 0, or None for a manual clock")
        if not 0 <= port <= 65535:
            raise ValueError(f"port: expected 0..65535, got {port}")
        for name, value in (("api_key", api_key), ("secret", secret)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{name}: expected a non-empty string")
        self.api_key = api_key or secrets.token_hex(32)
        self.secret = secret or secrets.token_hex(32)
        self.generated_secret = secret is None
        self.seed = seed
        self.tick_interval = tick_interval
        self.latency = 0.0
        self.weight_limit = weight_limit
        self.ban_seconds = float(ban_seconds)
        self.clock = clock or (lambda: time.time_ns() // 1_000_000)
        quantities: dict[str, Decimal | None] = {s: None for s in symbols}
        if isinstance(book_qty, Mapping):
            for s, q in book_qty.items():
                if s not in quantities:
                    raise ValueError(f"book_qty: {s!r} is not a symbol of this sandbox")
                quantities[s] = to_decimal(q, "book_qty")
        elif book_qty is not None:
            quantities = {s: to_decimal(book_qty, "book_qty") for s in symbols}
        if any(q is not None and q <= 0 for q in quantities.values()):
            raise ValueError("book_qty: expected a quantity > 0")
        markets = [Market(s, seed, quantities[s]) for s in symbols]
        start = {a: to_decimal(v, f"balances[{a}]") for a, v in
                 (DEFAULT_BALANCES if balances is None else balances).items()}  # fmt: skip
        self._engine = Engine(
            {m.id: m for m in markets},
            start,
            to_decimal(maker_fee, "maker_fee"),
            to_decimal(taker_fee, "taker_fee"),
        )
        self._by_symbol = {m.symbol: m for m in markets}
        self._lock = threading.RLock()
        self._engine.tick(self.clock(), set())
        self._engine.events.clear()
        # fault knobs and counters
        self._fail: list[int] = []
        self._lose: list[int | None] = []
        self._slow: list[tuple[float, bool]] = []
        self._reject: list[tuple[int, str, int]] = []
        self._silent_until = 0.0
        self._weight_window = -1
        self._weight = 0
        self._limited_window = -1  # the window in which a 429 was answered
        self._banned_until = 0  # ms
        self.requests = 0
        self.stream_connections = 0
        # server plumbing
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._start_error: BaseException | None = None
        self._streams: set[_Stream] = set()
        self._routes = self._make_routes()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> ExchangeSandbox:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, daemon=True, name="exchange-sandbox")
        self._thread.start()
        self._ready.wait(10)
        if self._start_error is not None:
            self._thread.join(2)
            self._thread = None
            if isinstance(self._start_error, ImportError):
                raise ImportError(
                    f"ExchangeSandbox needs aiohttp (pip install osmarkets[crypto]): "
                    f"{self._start_error}"
                )
            raise OSError(f"sandbox: cannot listen on 127.0.0.1: {self._start_error}")
        return self

    def close(self) -> None:
        """Stop serving: closes websockets and connections, joins the thread (fast)."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> ExchangeSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:  # no credentials here
        return f"ExchangeSandbox(url={self.url!r}, symbols={list(self._by_symbol)!r})"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}" if self._loop is not None else ""

    @property
    def ws_url(self) -> str:
        """The market-stream base (Binance's ``wss://stream.binance.com:9443/ws``)."""
        return f"ws://127.0.0.1:{self._port}/ws" if self._loop is not None else ""

    @property
    def port(self) -> int:
        return self._port

    def ccxt_options(self) -> dict[str, Any]:
        """The constructor dict for ``ccxt.binance(...)`` and ``ccxt.pro.binance(...)``:
        credentials, every REST and websocket URL pointed here, and options that keep ccxt
        to spot and off endpoints the sandbox does not serve (margin pairs, currencies)."""
        if not self.url:
            raise RuntimeError("ccxt_options: start the sandbox first")
        api: dict[str, Any] = {name: self.url + path for name, path in _API_PATHS.items()}
        ws_root = self.ws_url[: -len("/ws")]
        api["ws"] = {
            **{k: self.ws_url for k in ("spot", "margin", "linear", "inverse", "stock")},
            **{k: self.ws_url for k in ("option", "optionMarket", "optionPrivate", "papi")},
            "ws-api": {k: ws_root + "/ws-api/v3" for k in ("spot", "linear", "inverse")},
        }
        return {
            "apiKey": self.api_key,
            "secret": self.secret,
            "urls": {"api": api},
            "options": {
                "defaultType": "spot",
                "fetchMarkets": {"types": ["spot"]},
                "fetchMargins": False,
                "fetchCurrencies": False,
            },
        }

    # -- controls and fault knobs (thread-safe) ---------------------------------------------
    def set_price(self, symbol: str, bid: float | str, ask: float | str) -> None:
        """Pin ``symbol``'s quote (rounded to the tick) until :meth:`release_price`; the book,
        the ticker, the streams and the matching of resting orders follow it at once."""
        market = self._market(symbol)
        b, a = (
            market.round_price(to_decimal(bid, "bid")),
            market.round_price(to_decimal(ask, "ask")),
        )
        if not 0 < b < a:
            raise ValueError(f"set_price: expected 0 < bid < ask, got {bid}, {ask}")
        with self._lock:
            market.pinned = (b, a)
        self.step()

    def release_price(self, symbol: str) -> None:
        market = self._market(symbol)
        with self._lock:
            market.pinned = None
        self.step()

    def step(self) -> None:
        """One tick now: prices move to the clock, resting orders fill, streams publish."""
        with self._lock:
            self._engine.tick(self.clock(), self._wanted())
            events = self._take_events()
        self._publish(events)

    def fail_requests(self, count: int, status: int = 500) -> None:
        """Answer the next ``count`` REST requests with ``status`` (429, 418 or 5xx) and
        Binance's body for it, without processing them."""
        with self._lock:
            self._fail.extend([int(status)] * count)

    def lose_order_responses(self, count: int = 1, status: int | None = 503) -> None:
        """Execute the next ``count`` order creations, then answer ``status`` (503: Binance's
        -1007 "execution status unknown"; 500) or, with ``None``, drop the connection."""
        with self._lock:
            self._lose.extend([status] * count)

    def slow_orders(self, count: int = 1, delay: float = 1.0, before: bool = True) -> None:
        """Hold the next ``count`` order creations ``delay`` seconds, ``before`` executing
        them (the order does not exist meanwhile) or after (it exists, the answer is late)."""
        with self._lock:
            self._slow.extend([(float(delay), bool(before))] * count)

    def reject_orders(
        self,
        count: int = 1,
        code: int = -2010,
        msg: str = "New order rejected.",
        status: int = 400,
    ) -> None:
        """Refuse the next ``count`` order creations with this Binance error (not executed)."""
        with self._lock:
            self._reject.extend([(int(code), str(msg), int(status))] * count)

    def drop_streams(self, clean: bool = False) -> int:
        """Close every websocket now (abruptly, or with a close frame when ``clean``);
        returns how many were open."""
        with self._lock:
            streams = list(self._streams)
        loop = self._loop
        if loop is None:
            return 0

        def drop() -> None:
            for stream in streams:
                if clean:
                    stream.queue.put_nowait(None)
                elif stream.request.transport is not None:
                    stream.request.transport.abort()

        loop.call_soon_threadsafe(drop)
        return len(streams)

    def silence_streams(self, seconds: float) -> None:
        """Send nothing on any websocket for ``seconds`` (what is published meanwhile is lost,
        as from a stalled exchange); connections stay open and subscriptions are answered."""
        with self._lock:
            self._silent_until = time.monotonic() + float(seconds)

    def set_weight_limit(self, limit: int | None) -> None:
        """Request weight allowed per minute (``None``: unlimited)."""
        with self._lock:
            self.weight_limit = limit

    def reset_weights(self) -> None:
        """Forget the weight used this minute and any ban (Binance would wait a minute)."""
        with self._lock:
            self._weight, self._limited_window, self._banned_until = 0, -1, 0

    # -- introspection ---------------------------------------------------------------------
    def orders(self) -> list[dict[str, Any]]:
        """Every order, in Binance's query shape (``symbol`` is the exchange id)."""
        with self._lock:
            return [o.json() for o in self._engine.orders.values()]

    def balances(self) -> dict[str, dict[str, Decimal]]:
        """``{asset: {'free': Decimal, 'locked': Decimal}}``, exact."""
        with self._lock:
            e = self._engine
            return {a: {"free": e.free[a], "locked": e.locked[a]} for a in sorted(e.free)}

    def trades(self) -> list[dict[str, Any]]:
        """The account's trades, as ``GET /api/v3/myTrades`` reports them."""
        with self._lock:
            return [dict(t) for t in self._engine.my_trades]

    def quote(self, symbol: str) -> tuple[Decimal, Decimal, Decimal]:
        """(bid, ask, last) of the last tick."""
        market = self._market(symbol)
        with self._lock:
            return market.bid, market.ask, market.last

    @property
    def used_weight(self) -> int:
        with self._lock:
            return self._weight if self._weight_window == self.clock() // 60_000 else 0

    def _market(self, symbol: str) -> Market:
        try:
            return self._by_symbol[symbol]
        except KeyError:
            raise ValueError(f"symbol: {symbol!r} is not in this sandbox") from None

    # -- event loop ------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            from aiohttp import web
        except ImportError as exc:  # pip install osmarkets[crypto]
            self._start_error = exc
            self._ready.set()
            return
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._stop = asyncio.Event()
        app = web.Application(client_max_size=MAX_BODY, handler_args={"max_field_size": 16384})
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", self._port)
        try:
            loop.run_until_complete(site.start())
        except OSError as exc:
            self._start_error = OSError(exc.strerror or str(exc))
            loop.run_until_complete(runner.cleanup())
            loop.close()
            self._ready.set()
            return
        server = site._server
        assert server is not None
        self._port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._loop = loop
        ticker = loop.create_task(self._tick_loop()) if self.tick_interval else None
        self._ready.set()
        try:
            loop.run_until_complete(self._stop.wait())
        finally:
            if ticker is not None:
                ticker.cancel()
            for stream in list(self._streams):
                if stream.request.transport is not None:
                    stream.request.transport.abort()
            loop.run_until_complete(runner.cleanup())
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    async def _tick_loop(self) -> None:
        assert self.tick_interval is not None
        while True:
            await asyncio.sleep(self.tick_interval)
            try:
                self.step()
            except Exception:  # keep ticking; a bug here must not stop the market
                log.exception("exchange sandbox: tick failed")

    def _wanted(self) -> set[str]:
        return {_base_stream(name) for s in self._streams for name in s.streams}

    def _take_events(self) -> list[tuple[str, dict[str, Any]]]:
        events, self._engine.events = self._engine.events, []
        return events

    def _publish(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        loop = self._loop
        if not events or loop is None or loop.is_closed():
            return
        if time.monotonic() < self._silent_until:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._fanout(events)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._fanout, events)

    def _fanout(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        for stream in list(self._streams):
            subscribed = {_base_stream(n): n for n in stream.streams}
            for name, payload in events:
                full = subscribed.get(name)
                if full is None:
                    continue
                stream.send({"stream": full, "data": payload} if stream.combined else payload)

    # -- REST ------------------------------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if path == "/ws" or path.startswith(("/ws/", "/stream")):
            return await self._websocket(request, path)
        with self._lock:
            self.requests += 1
            status = self._fail.pop(0) if self._fail else None
        headers: dict[str, str] = {}
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            if status is not None:
                raise self._canned(status)
            route = self._routes.get((request.method, path))
            if route is None:
                if any(p == path for _, p in self._routes):
                    raise BinanceError(-1000, "Method not allowed.", status=405)
                raise BinanceError(-1000, "Unknown endpoint.", status=404)
            params, raw_query, raw_body, problem = await self._params(request)
            self._charge(route, params, headers)
            if problem is not None:
                raise problem
            if route.signed:
                self._authenticate(request, params, raw_query, raw_body)
            if route.order:
                return await self._order(route, params, request, headers)
            with self._lock:
                result = route.handler(params, self.clock())
                events = self._take_events()
            self._publish(events)
            return self._json(result, 200, headers)
        except BinanceError as exc:
            return self._json(exc.body(), exc.status, {**headers, **exc.headers})
        except Exception:
            log.exception("exchange sandbox: %s %s failed", request.method, path)
            return self._json({"code": ERR_UNKNOWN[0], "msg": ERR_UNKNOWN[1]}, 500, headers)

    async def _order(
        self, route: _Route, params: dict[str, str], request: web.Request, headers: dict[str, str]
    ) -> web.StreamResponse:
        with self._lock:
            reject = self._reject.pop(0) if self._reject else None
            slow = self._slow.pop(0) if self._slow else None
            lose = self._lose.pop(0) if self._lose else False
        if reject is not None:
            raise BinanceError(reject[0], reject[1], status=reject[2])
        if slow is not None and slow[1]:
            await asyncio.sleep(slow[0])
        with self._lock:
            result = route.handler(params, self.clock())
            events = self._take_events()
        self._publish(events)
        if slow is not None and not slow[1]:
            await asyncio.sleep(slow[0])
        if lose is not False:
            if lose is None:
                if request.transport is not None:
                    request.transport.abort()
                return self._json({}, 503, headers)  # never delivered
            code, msg = ERR_UNKNOWN_STATUS if lose == 503 else ERR_UNKNOWN
            return self._json({"code": code, "msg": msg}, lose, headers)
        return self._json(result, 200, headers)

    def _canned(self, status: int) -> BinanceError:
        if status in (418, 429):
            return BinanceError(
                -1003,
                "Too much request weight used; current limit is "
                f"{self.weight_limit} request weight per 1 MINUTE.",
                status=status,
                headers={"Retry-After": "1"},
            )
        code, msg = ERR_BUSY if status == 503 else ERR_UNKNOWN
        return BinanceError(code, msg, status=status)

    @staticmethod
    def _json(body: Any, status: int, headers: dict[str, str]) -> web.Response:
        from aiohttp import web

        return web.Response(
            text=json.dumps(body, separators=(",", ":")),
            status=status,
            content_type="application/json",
            headers=headers,
        )

    async def _params(
        self, request: web.Request
    ) -> tuple[dict[str, str], str, str, BinanceError | None]:
        """Query string and form body merged (the query wins, as on Binance), the raw strings
        the signature covers, and the first problem found (reported after weight is
        charged). A body that is not a form is ignored, so its parameters are missing."""
        from aiohttp import web

        problem: BinanceError | None = None
        raw_query = request.rel_url.raw_query_string
        raw_body = ""
        if request.method in ("POST", "PUT", "DELETE") and request.can_read_body:
            try:
                data = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise BinanceError(-1101, "Request body too large.", status=413) from None
            ctype = request.content_type
            if data and ctype in ("application/x-www-form-urlencoded", "", "text/plain"):
                raw_body = data.decode("utf-8", errors="replace")
        params: dict[str, str] = {}
        for source in (raw_body, raw_query):  # the query string is applied last: it wins
            seen: set[str] = set()
            try:
                pairs = parse_qsl(source, keep_blank_values=True, max_num_fields=200,
                                  errors="replace")  # fmt: skip
            except ValueError:
                problem = problem or BinanceError(-1101, "Too many parameters sent.")
                continue
            for key, value in pairs:
                if key in seen:
                    problem = problem or BinanceError(
                        -1101, f"Duplicate values for parameter '{key}'."
                    )
                seen.add(key)
                params[key] = value
        return params, raw_query, raw_body, problem

    def _charge(self, route: _Route, params: dict[str, str], headers: dict[str, str]) -> None:
        """Count the request's weight in this minute; 429 past the limit, 418 (and a ban)
        for a client that keeps going after its 429."""
        try:
            weight = route.weight(params)
        except (BinanceError, ValueError):
            weight = 1
        now = _wall_ms()  # weights are per real minute, as the clients spend them
        with self._lock:
            window = now // 60_000
            if window != self._weight_window:
                self._weight_window, self._weight = window, 0
            self._weight += weight
            headers["X-MBX-USED-WEIGHT-1M"] = str(self._weight)
            if now < self._banned_until:
                retry = max(1, (self._banned_until - now + 999) // 1000)
                raise BinanceError(
                    -1003,
                    f"Way too much request weight used; IP banned until {self._banned_until}. "
                    "Please use WebSocket Streams for live updates to avoid bans.",
                    status=418,
                    headers={"Retry-After": str(retry)},
                )
            if self.weight_limit is not None and self._weight > self.weight_limit:
                retry = max(1, ((window + 1) * 60_000 - now + 999) // 1000)
                if self._limited_window == window:
                    self._banned_until = now + int(self.ban_seconds * 1000)
                    raise BinanceError(
                        -1003,
                        f"Way too much request weight used; IP banned until "
                        f"{self._banned_until}. Please use WebSocket Streams for live updates "
                        "to avoid bans.",
                        status=418,
                        headers={"Retry-After": str(int(self.ban_seconds))},
                    )
                self._limited_window = window
                raise BinanceError(
                    -1003,
                    f"Too much request weight used; current limit is {self.weight_limit} "
                    "request weight per 1 MINUTE. Please use WebSocket Streams for live "
                    "updates to avoid polling the API.",
                    status=429,
                    headers={"Retry-After": str(retry)},
                )

    def _authenticate(
        self, request: web.Request, params: dict[str, str], raw_query: str, raw_body: str
    ) -> None:
        """Binance's checks, in its order: API key (-2014 format, -2015 unknown), timestamp
        and signature present (-1102), recvWindow (-1131), HMAC-SHA256 of the query string
        followed by the body (-1022), timestamp within the window (-1021)."""
        key = request.headers.get("X-MBX-APIKEY", "")
        if not key or len(key) > 256 or not key.isalnum():
            raise BinanceError(-2014, "API-key format invalid.", status=401)
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        timestamp = param_int(params, "timestamp", required=True)
        assert timestamp is not None
        signature = params.get("signature", "")
        if not signature:
            raise mandatory("signature")
        recv_window = param_int(params, "recvWindow", default=5000)
        assert recv_window is not None
        if recv_window > 60_000:
            raise BinanceError(-1131, "recvWindow must be less than 60000")
        payload = _unsigned(raw_query) + _unsigned(raw_body)
        expected = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise BinanceError(-1022, "Signature for this request is not valid.")
        now = _wall_ms()  # the clients' clocks are real ones, whatever the market's time
        if timestamp >= now + 1000:
            raise BinanceError(
                -1021, "Timestamp for this request was 1000ms ahead of the server's time."
            )
        if now - timestamp > recv_window:
            raise BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.")

    # -- websockets ------------------------------------------------------------------------
    async def _websocket(self, request: web.Request, path: str) -> web.StreamResponse:
        from aiohttp import WSMsgType, web

        ws = web.WebSocketResponse(autoping=True, max_msg_size=64 * 1024)
        if not ws.can_prepare(request).ok:
            return self._json({"code": -1000, "msg": "Expected a websocket upgrade."}, 400, {})
        await ws.prepare(request)
        combined = path.startswith("/stream")
        stream = _Stream(ws, request, combined)
        names: list[str] = []
        if combined:
            names = [n for n in request.query.get("streams", "").split("/") if n]
        elif path.startswith("/ws/"):
            names = [n for n in path[4:].split("/") if n]
        with self._lock:
            stream.streams.update(n for n in names if self._valid_stream(n))
            self._streams.add(stream)
            self.stream_connections += 1
        writer = asyncio.get_running_loop().create_task(self._writer(stream))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._command(stream, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    stream.send({"error": {"code": 3, "msg": "Invalid JSON: binary frame"}})
        finally:
            with self._lock:
                self._streams.discard(stream)
            stream.queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, 1.0)
            writer.cancel()
        return ws

    async def _writer(self, stream: _Stream) -> None:
        while True:
            text = await stream.queue.get()
            if text is None:
                with contextlib.suppress(Exception):
                    await stream.ws.close(code=1001, message=b"sandbox closing")
                return
            if stream.ws.closed:
                return
            try:
                await stream.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    def _valid_stream(self, name: str) -> bool:
        symbol, _, kind = name.partition("@")
        market = self._engine.markets.get(symbol.upper())
        if market is None or not kind:
            return False
        kind = _base_stream("@" + kind)[1:]
        if kind.startswith("kline_"):
            return kind[6:] in INTERVALS_MS
        return kind in _STREAM_KINDS

    def _command(self, stream: _Stream, text: str) -> None:
        """Binance's live subscription protocol: SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS,
        SET_PROPERTY / GET_PROPERTY (combined); errors as ``{"error": {code, msg}, id}``."""
        try:
            message = json.loads(text)
        except ValueError:
            stream.send({"error": {"code": 3, "msg": "Invalid JSON: expected value"}})
            return
        if not isinstance(message, dict):
            stream.send({"error": {"code": 2, "msg": "Invalid request: request ID must be an "
                         "unsigned integer"}, "id": None})  # fmt: skip
            return
        ident = message.get("id")
        if not isinstance(ident, int | str) or isinstance(ident, bool):
            stream.send({"error": {"code": 2, "msg": "Invalid request: request ID must be an "
                         "unsigned integer"}, "id": None})  # fmt: skip
            return
        method, params = message.get("method"), message.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                stream.send({"error": {"code": 1, "msg": "Invalid value type: expected a list "
                             "of strings"}, "id": ident})  # fmt: skip
                return
            bad = [p for p in params if not self._valid_stream(p)]
            if bad:
                stream.send({"error": {"code": 2, "msg": f"Invalid request: unknown stream "
                             f"{bad[0][:64]!r}"}, "id": ident})  # fmt: skip
                return
            with self._lock:
                if method == "SUBSCRIBE":
                    stream.streams.update(params)
                else:
                    stream.streams.difference_update(params)
            stream.send({"result": None, "id": ident})
        elif method == "LIST_SUBSCRIPTIONS":
            stream.send({"result": sorted(stream.streams), "id": ident})
        elif method == "SET_PROPERTY":
            stream.send({"result": None, "id": ident})
        elif method == "GET_PROPERTY":
            stream.send({"result": stream.combined, "id": ident})
        else:
            stream.send({"error": {"code": 2, "msg": "Invalid request: unknown variant "
                         f"{str(method)[:32]!r}"}, "id": ident})  # fmt: skip

    # -- routes ----------------------------------------------------------------------------
    def _make_routes(self) -> dict[tuple[str, str], _Route]:
        e = self._engine

        def one(weight: int) -> Callable[[dict[str, str]], int]:
            return lambda p: weight

        def by_symbol(single: int, every: int) -> Callable[[dict[str, str]], int]:
            return lambda p: single if p.get("symbol") else every

        def depth_weight(p: dict[str, str]) -> int:
            limit = param_int(p, "limit", default=100) or 100
            return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250

        v3 = "/api/v3/"
        table: dict[tuple[str, str], _Route] = {
            ("GET", v3 + "ping"): _Route(lambda p, now: {}, one(1)),
            ("GET", v3 + "time"): _Route(lambda p, now: {"serverTime": now}, one(1)),
            ("GET", v3 + "exchangeInfo"): _Route(self._exchange_info, one(20)),
            ("GET", v3 + "depth"): _Route(self._depth, depth_weight),
            ("GET", v3 + "trades"): _Route(self._public_trades, one(25)),
            ("GET", v3 + "aggTrades"): _Route(self._agg_trades, one(4)),
            ("GET", v3 + "klines"): _Route(self._klines, one(2)),
            ("GET", v3 + "uiKlines"): _Route(self._klines, one(2)),
            ("GET", v3 + "ticker/24hr"): _Route(self._ticker_24hr, by_symbol(2, 80)),
            ("GET", v3 + "ticker/price"): _Route(self._ticker_price, by_symbol(2, 4)),
            ("GET", v3 + "ticker/bookTicker"): _Route(self._book_ticker, by_symbol(2, 4)),
            ("GET", v3 + "avgPrice"): _Route(self._avg_price, one(2)),
            ("GET", "/sapi/v1/system/status"): _Route(
                lambda p, now: {"status": 0, "msg": "normal"}, one(1)
            ),
            ("POST", v3 + "order"): _Route(e.place, one(1), signed=True, order=True),
            ("POST", v3 + "order/test"): _Route(
                lambda p, now: e.place(p, now, test=True), one(1), signed=True
            ),
            ("GET", v3 + "order"): _Route(lambda p, now: e.query(p), one(4), signed=True),
            ("DELETE", v3 + "order"): _Route(e.cancel, one(1), signed=True),
            ("DELETE", v3 + "openOrders"): _Route(e.cancel_all, one(1), signed=True),
            ("GET", v3 + "openOrders"): _Route(
                lambda p, now: e.open_orders(p), by_symbol(6, 80), signed=True
            ),
            ("GET", v3 + "allOrders"): _Route(lambda p, now: e.all_orders(p), one(20), True),
            ("GET", v3 + "account"): _Route(lambda p, now: e.account(p), one(20), True),
            ("GET", v3 + "myTrades"): _Route(
                lambda p, now: e.trades_of(p),
                lambda p: 5 if p.get("orderId") else 20,
                signed=True,
            ),
        }
        return table

    def _symbols_param(self, params: dict[str, str]) -> list[Market]:
        """``symbol=`` or ``symbols=["A","B"]`` (JSON), else every market."""
        e = self._engine
        if params.get("symbol"):
            market = e.market(params)
            assert market is not None
            return [market]
        raw = params.get("symbols")
        if raw:
            try:
                names = json.loads(raw)
            except ValueError:
                names = None
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise BinanceError(-1100, "Illegal characters found in parameter 'symbols'.")
            out = []
            for name in names:
                market = e.markets.get(name)
                if market is None:
                    raise BinanceError(-1121, "Invalid symbol.")
                out.append(market)
            return out
        return list(e.markets.values())

    def _exchange_info(self, params: dict[str, str], now: int) -> dict[str, Any]:
        markets = self._symbols_param(params)
        return {
            "timezone": "UTC",
            "serverTime": now,
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": self.weight_limit or 1_000_000,
                },
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200_000},
                {
                    "rateLimitType": "RAW_REQUESTS",
                    "interval": "MINUTE",
                    "intervalNum": 5,
                    "limit": 61_000,
                },
            ],  # fmt: skip
            "exchangeFilters": [],
            "symbols": [m.symbol_info() for m in markets],
        }

    def _depth(self, params: dict[str, str], now: int) -> dict[str, Any]:
        market = self._engine.market(params)
        assert market is not None
        return market.depth(param_limit(params, 100, 5000))

    def _public_trades(self, params: dict[str, str], now: int) -> list[dict[str, Any]]:
        market = self._engine.market(params)
        assert market is not None
        limit = param_limit(params, 500, 1000)
        return list(self._engine.public[market.id])[-limit:]

    def _agg_trades(self, params: dict[str, str], now: int) -> list[dict[str, Any]]:
        market = self._engine.market(params)
        assert market is not None
        limit = param_limit(params, 500, 1000)
        start, end = param_int(params, "startTime"), param_int(params, "endTime")
        from_id = param_int(params, "fromId")
        out = []
        for t in self._engine.public[market.id]:
            if start is not None and t["time"] < start or end is not None and t["time"] > end:
                continue
            if from_id is not None and t["id"] < from_id:
                continue
            tid = t["id"]
            out.append({"a": tid, "p": t["price"], "q": t["qty"], "f": tid, "l": tid,
                        "T": t["time"], "m": t["isBuyerMaker"], "M": True})  # fmt: skip
        return out[:limit] if (start is not None or from_id is not None) else out[-limit:]

    def _klines(self, params: dict[str, str], now: int) -> list[list[Any]]:
        market = self._engine.market(params)
        assert market is not None
        interval = params.get("interval")
        if not interval:
            raise mandatory("interval")
        if interval not in INTERVALS_MS:
            raise BinanceError(-1120, "Invalid interval.")
        start, end = param_int(params, "startTime"), param_int(params, "endTime")
        limit = param_limit(params, 500, 1000)
        if start is not None and end is not None and start > end:
            raise BinanceError(-1023, "Start time is greater than end time.")
        opens = market.kline_starts(interval, start, end, limit, market.time_ms)
        return market.klines(interval, opens, market.time_ms)

    def _ticker_24hr(self, params: dict[str, str], now: int) -> Any:
        single = bool(params.get("symbol"))
        out = [self._engine.ticker_24hr(m, m.time_ms) for m in self._symbols_param(params)]
        return out[0] if single else out

    def _ticker_price(self, params: dict[str, str], now: int) -> Any:
        single = bool(params.get("symbol"))
        out = [{"symbol": m.id, "price": fmt(m.last)} for m in self._symbols_param(params)]
        return out[0] if single else out

    def _book_ticker(self, params: dict[str, str], now: int) -> Any:
        single = bool(params.get("symbol"))
        out = [m.book_ticker() for m in self._symbols_param(params)]
        return out[0] if single else out

    def _avg_price(self, params: dict[str, str], now: int) -> dict[str, Any]:
        market = self._engine.market(params)
        assert market is not None
        return {"mins": 5, "price": fmt(market.last), "closeTime": market.time_ms}


def _unsigned(raw: str) -> str:
    """``raw`` without its ``signature=`` parameter: what the signature covers."""
    return "&".join(part for part in raw.split("&") if not part.startswith("signature="))


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000
