"""Prices from a crypto exchange through ccxt: the live quotes of the Feeder, the candles of a
gap's backfill and of history on subscribe (no osBrain here).

- :class:`CcxtPriceStream` reads top-of-book quotes with ccxt's websocket methods
  (``watch_ticker``, whose Binance stream carries the best bid and ask) where the exchange has
  them, else by polling ``fetch_ticker`` over REST. It runs an asyncio loop in the calling
  thread (the Feeder's worker thread), reconnects with backoff when the connection fails or
  goes silent, and on the first quote of a new connection calls ``backfill(last_seen)``
  so that the Feeder can fill the gap from the exchange's candles.
- :func:`closed_candles` pages through ``fetch_ohlcv`` (exchanges cap a request at a few
  hundred or thousand candles) for the completed candles after a time.
- :func:`backfill_quotes` turns them into synthetic quotes, as the OANDA adapter does: four per
  candle (open, high, low, close inside the period), around the trade prices at the last
  spread seen, so the Router's bars are complete after a gap.
- :class:`CcxtHistorySource` is the Router's history on subscribe (``kind='ccxt'``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ...data.timeframes import BarSeriesID, Timeframe
from ...data.types import BAR_DTYPE, Tick
from ..oanda.stream import Backfill
from .client import describe, exchange_from_settings

log = logging.getLogger(__name__)

_MS = 1_000_000  # ns per ms


def ccxt_timeframe(timeframe: Any) -> str:
    """ccxt's name of a time frame (``'1m'``, ``'4h'``, ``'1d'``, ``'1w'``, ``'1M'``)."""
    tf = Timeframe.parse(timeframe)
    unit = {"Seconds": "s", "Minutes": "m", "Hours": "h", "Days": "d", "Weeks": "w",
            "Months": "M"}[tf.unit]  # fmt: skip
    return f"{tf.size}{unit}"


def exchange_now(exchange: Any) -> int:
    """The exchange's clock (ns): which candle is still forming is the exchange's call, and a
    local clock may be skewed (or a sandbox's clock accelerated). The local clock if the
    exchange cannot tell."""
    if exchange.has.get("fetchTime"):
        with contextlib.suppress(Exception):  # no answer: the local clock will do
            return int(exchange.fetch_time()) * _MS
    return time.time_ns()


def closed_candles(
    exchange: Any, symbol: str, timeframe: Any, since_ns: int, *, limit: int = 1000,
    now_ns: int | None = None,
) -> list[list[float]]:  # fmt: skip
    """The completed candles of ``symbol`` opened at or after ``since_ns``, oldest first, as
    ccxt's ``[ms, open, high, low, close, volume]`` rows (pages of ``limit``)."""
    tf = Timeframe.parse(timeframe)
    length_ms = tf.nanoseconds // _MS
    now_ms = (exchange_now(exchange) if now_ns is None else now_ns) // _MS
    since_ms = max(0, since_ns // _MS)
    rows: list[list[float]] = []
    code = ccxt_timeframe(tf)
    while since_ms + length_ms <= now_ms:
        page = exchange.fetch_ohlcv(symbol, code, since=since_ms, limit=limit)
        page = [r for r in page if r[0] >= since_ms and r[0] + length_ms <= now_ms]
        if not page:
            break
        rows.extend(page)
        since_ms = int(page[-1][0]) + length_ms
        if len(page) < limit // 2:  # the exchange has no more (some cap below the asked limit)
            break
    return rows


def backfill_quotes(
    exchange: Any, symbol: str, since_ns: int, spread: float, timeframe: Any = "M1",
    *, now_ns: int | None = None,
) -> Backfill:  # fmt: skip
    """Synthetic quotes rebuilding what the stream missed after ``since_ns`` (the last quote
    delivered): four inside each completed candle opened after it, at its open, high, low and
    close, ``spread`` wide around those trade prices. The candle holding ``since_ns`` and the
    one still forming are left as they are (the live quotes go on from there)."""
    tf = Timeframe.parse(timeframe)
    length = tf.nanoseconds
    start = (since_ns // length + 1) * length
    half = max(0.0, spread) / 2.0
    ticks: list[Tick] = []
    first = last = None
    rows = closed_candles(exchange, symbol, tf, start, now_ns=now_ns)
    for row in rows:
        opened = int(row[0]) * _MS
        if row[4] < row[1]:  # bearish: the high came first, as the simulated broker assumes
            prices = (row[1], row[2], row[3], row[4])
        else:
            prices = (row[1], row[3], row[2], row[4])
        for offset, price in zip((0, length // 4, length // 2, length - _MS), prices,
                                 strict=True):  # fmt: skip
            ticks.append(Tick(opened + offset, float(price) - half, float(price) + half))
        first = opened if first is None else first
        last = opened
    return Backfill(symbol, since_ns, ticks, len(rows), False, first, last)


class CcxtHistorySource:
    """The Router's history on subscribe from a ccxt exchange (``fetch_ohlcv``: trade prices,
    no bid/ask sides). Holds token-free settings only; an exchange object is made per download."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)

    def __repr__(self) -> str:
        return f"CcxtHistorySource(exchange={self.settings.get('exchange')!r})"

    def fetch(self, bsid: BarSeriesID, count: int) -> np.ndarray:
        bsid = BarSeriesID.parse(bsid)
        exchange = exchange_from_settings(self.settings)
        length = bsid.timeframe.nanoseconds
        now = exchange_now(exchange)
        since = (now // length - count - 1) * length
        rows = closed_candles(exchange, bsid.symbol, bsid.timeframe, since, now_ns=now)
        rows = rows[-count:] if count > 0 else []  # (rows[-0:] would be all of them)
        records = np.zeros(len(rows), dtype=BAR_DTYPE)
        for name in BAR_DTYPE.names or ():
            if name.startswith(("bid_", "ask_")):
                records[name] = np.nan
        for k, row in enumerate(rows):
            records[k]["time"] = int(row[0]) * _MS
            for j, name in enumerate(("open", "high", "low", "close", "volume"), start=1):
                records[k][name] = float(row[j] or 0.0)
        return records


def make_history_source(settings: Mapping[str, Any]) -> CcxtHistorySource:
    """The factory registered for ``kind='ccxt'`` (see
    :func:`osmarkets.agents.history.register_history_source`)."""
    return CcxtHistorySource(settings)


#: how :class:`CcxtPriceStream` reads quotes
METHODS = ("auto", "websocket", "book", "ticker", "poll")


class CcxtPriceStream:
    """Quotes of ``symbols`` to ``on_quote(symbol, tick)``, in the calling thread (see the
    module docstring). ``method``: ``'auto'`` (the top of the book as it changes where the
    exchange streams it, ``watch_bids_asks``, stamped on arrival; else the top of its order
    book stream, ``watch_order_book``; else ``watch_ticker``; else REST polling),
    ``'websocket'`` (the same, never polling), ``'book'`` (``watch_order_book``'s best bid and
    ask, stamped by the exchange where it says when), ``'ticker'`` (the exchange's full ticker
    stream, ``watch_ticker``: Binance's ``@ticker``, stamped by the exchange's clock) or
    ``'poll'`` (``fetch_ticker`` every ``poll_interval`` seconds). ``watch_trades`` is not a
    source: trades carry no bid and ask. ``backoff`` /
    ``max_backoff``: seconds before a reconnection, doubling while connections fail;
    ``silence_timeout``: seconds without a quote after which a connection is taken for dead.
    ``backfill(last_seen)`` is called (in this thread) before the first quote after a
    reconnection, with the time of the last quote delivered per symbol."""

    def __init__(
        self,
        settings: Mapping[str, Any],
        symbols: Sequence[str],
        on_quote: Callable[[str, Tick], None],
        *,
        backfill: Callable[[dict[str, int]], None] | None = None,
        method: str = "auto",
        poll_interval: float = 1.0,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        silence_timeout: float = 30.0,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
        for name, value in (
            ("poll_interval", poll_interval),
            ("backoff", backoff),
            ("max_backoff", max_backoff),
            ("silence_timeout", silence_timeout),
        ):
            if isinstance(value, bool) or not (  # (True is an int, not a number of seconds)
                isinstance(value, int | float) and math.isfinite(value) and value > 0
            ):
                raise ValueError(f"{name}: expected seconds > 0, got {value!r}")  # fmt: skip
        self.settings = dict(settings)
        self.symbols = list(symbols)
        self.on_quote = on_quote
        self.backfill = backfill
        self._backfill_due: dict[str, int] | None = None  # last quotes before a reconnection
        self.method = method
        self.poll_interval = float(poll_interval)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.silence_timeout = float(silence_timeout)
        self.connections = 0
        #: seconds waited before each of the last 100 reconnections
        self.waits: deque[float] = deque(maxlen=100)
        self.reconnects = 0
        self.quotes = 0
        self.errors = 0
        self.last_error = ""
        self.using = ""  # 'websocket' or 'poll', once connected
        self.last_seen: dict[str, int] = {}
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._over: asyncio.Event | None = None  # set when a connection's session ends

    def __repr__(self) -> str:
        return f"CcxtPriceStream({self.settings.get('exchange')!r}, {self.symbols!r})"

    def stop(self) -> None:
        """Make :meth:`run` return soon (from any thread)."""
        self._stop.set()
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(wake.set)

    def run(self) -> None:
        """Stream until :meth:`stop` (blocking). ``method='websocket'`` on an exchange without
        websocket quotes raises ``ValueError`` (a setting to fix, not a connection to retry)."""
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        wait = self.backoff
        first = True
        while not self._stop.is_set():
            exchange = exchange_from_settings(self.settings, pro=True)
            needs = {"ticker": "watchTicker", "book": "watchOrderBook"}.get(self.method)
            if needs and not exchange.has.get(needs):
                with contextlib.suppress(Exception):
                    await exchange.close()
                raise ValueError(f"method: {describe(exchange)} has no {needs}")
            if self.method == "websocket" and not any(
                exchange.has.get(name) for name in ("watchBidsAsks", "watchOrderBook",
                                                     "watchTicker")
            ):  # fmt: skip
                with contextlib.suppress(Exception):
                    await exchange.close()
                raise ValueError(
                    f"method: {describe(exchange)} has no websocket quotes (use 'poll' or 'auto')"
                )
            quotes = self.quotes
            try:
                self.connections += 1
                if not first:
                    self.reconnects += 1
                    if self.backfill is not None and self.last_seen:
                        # on the new connection's first quote: every candle that closed
                        # before it is complete by then (a candle still open now could
                        # close before the connection is up, and be lost)
                        self._backfill_due = dict(self.last_seen)
                first = False
                await self._session(exchange)
            except Exception as exc:  # a lost connection: backoff and reconnect
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
                log.warning("%s prices: %s; reconnecting", describe(exchange), self.last_error)
            finally:
                with contextlib.suppress(Exception):  # closing a broken connection
                    await exchange.close()
            if self._stop.is_set():
                break
            # a connection that delivered quotes was a good one, even if it ended in an error
            # (they all do: dropped, silent): only failing ones make the wait grow
            delivered = self.quotes > quotes
            wait = self.backoff if delivered else min(self.max_backoff, wait * 2)
            self.waits.append(wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _session(self, exchange: Any) -> bool:
        """One connection: quotes until it fails, falls silent or :meth:`stop`. True if it
        delivered a quote (the next reconnection then waits only ``backoff``)."""
        has = exchange.has
        auto = self.method in ("auto", "websocket")
        if self.method == "ticker":
            self.using = "ticker"
            jobs = [self._tickers(exchange, symbol, watch=True) for symbol in self.symbols]
        elif self.method == "book" or (
            auto and not has.get("watchBidsAsks") and has.get("watchOrderBook")
        ):
            self.using = "book"
            jobs = [self._books(exchange, symbol) for symbol in self.symbols]
        elif self.method != "poll" and has.get("watchBidsAsks"):
            self.using = "websocket"  # the top of book as it changes (Binance's bookTicker)
            jobs = [self._bids_asks(exchange)]
        elif self.method != "poll" and has.get("watchTicker"):
            self.using = "websocket"
            jobs = [self._tickers(exchange, symbol, watch=True) for symbol in self.symbols]
        elif self.method == "websocket":
            raise ValueError(f"{describe(exchange)} has no websocket quotes (method='poll')")
        else:
            self.using = "poll"
            jobs = [self._tickers(exchange, symbol, watch=False) for symbol in self.symbols]
        self._over = asyncio.Event()
        tasks = [asyncio.create_task(job) for job in jobs]
        stop = asyncio.create_task(self._wake.wait())  # type: ignore[union-attr]
        delivered = False
        try:
            pending = {*tasks, stop}
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if stop in done:
                    return delivered
                for task in done:
                    delivered = task.result() or delivered  # raises a task's error
        finally:
            self._over.set()  # a task whose cancellation is lost still ends at its next check
            for task in (*tasks, stop):
                task.cancel()
            await asyncio.gather(*tasks, stop, return_exceptions=True)
        return delivered

    def _live(self) -> bool:
        return not self._stop.is_set() and not (self._over is not None and self._over.is_set())

    async def _pause(self, seconds: float) -> None:
        """Sleep until the next poll, or less if the session ends: ``asyncio.wait_for`` in
        Python 3.11 can swallow a cancellation that meets a finishing call, and a plain sleep
        would then hold :meth:`stop` for the whole poll interval."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._over.wait()  # type: ignore[union-attr]

    async def _bids_asks(self, exchange: Any) -> bool:
        seen: dict[str, Any] = {}
        while self._live():
            async with asyncio.timeout(self.silence_timeout):
                books = await exchange.watch_bids_asks(self.symbols)
            for symbol, book in books.items():
                update = (book.get("info") or {}).get("u"), book.get("bid"), book.get("ask")
                if symbol in self.symbols and seen.get(symbol) != update:
                    seen[symbol] = update
                    self._deliver(symbol, book)
        return True

    async def _books(self, exchange: Any, symbol: str) -> bool:
        seen = None
        while self._live():
            async with asyncio.timeout(self.silence_timeout):
                book = await exchange.watch_order_book(symbol, 5)
            bids, asks = book.get("bids") or [], book.get("asks") or []
            if not bids or not asks:
                continue  # an empty side: no quote
            top = (bids[0][0], asks[0][0], bids[0][1], asks[0][1])
            if top != seen:  # a change deeper in the book is not a new quote
                seen = top
                self._deliver(
                    symbol,
                    {
                        "bid": top[0],
                        "ask": top[1],
                        "bidVolume": top[2],
                        "askVolume": top[3],
                        "timestamp": book.get("timestamp"),
                    },
                )
        return True

    async def _tickers(self, exchange: Any, symbol: str, watch: bool) -> bool:
        while self._live():
            if watch:  # Binance's full ticker (with the best bid and ask), not its miniTicker
                params = {"name": "ticker"} if exchange.id.startswith("binance") else {}
                call = exchange.watch_ticker(symbol, params)
            else:
                call = exchange.fetch_ticker(symbol)
            async with asyncio.timeout(self.silence_timeout):
                ticker = await call
            self._deliver(symbol, ticker)
            if not watch:
                await self._pause(self.poll_interval)
        return True

    def _deliver(self, symbol: str, ticker: Mapping[str, Any]) -> None:
        bid, ask = ticker.get("bid"), ticker.get("ask")
        if bid is None or ask is None or not 0 < float(bid) <= float(ask):
            return  # an empty or crossed book: no quote
        due, self._backfill_due = self._backfill_due, None
        if due is not None and self.backfill is not None:  # the gap first, then this quote
            try:
                self.backfill(due)
            except Exception as exc:  # logged; the live quotes go on
                log.warning("prices: the backfill of a gap failed: %s", str(exc)[:200])
        stamp = ticker.get("timestamp")
        when = int(stamp) * _MS if stamp else time.time_ns()
        previous = self.last_seen.get(symbol, 0)
        if when <= previous:
            when = previous + 1  # same exchange millisecond: still a newer quote
        self.last_seen[symbol] = when
        self.quotes += 1
        self.on_quote(symbol, Tick(when, float(bid), float(ask),
                                   float(ticker.get("bidVolume") or 0.0),
                                   float(ticker.get("askVolume") or 0.0)))  # fmt: skip
