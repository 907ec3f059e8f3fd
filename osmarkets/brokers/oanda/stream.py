"""Reading OANDA's line-delimited JSON streams, reconnecting forever until told to stop.

OANDA sends a stream as HTTP chunks whose boundaries do not follow lines, a heartbeat about
every 5 s, and may end it at any time with no notice. :func:`iter_lines` reassembles lines;
:class:`StreamReader` reconnects with backoff when the stream ends, fails, or stays silent
longer than ``silence_timeout`` (10 s for prices, 20 s for transactions, as OANDA advises), and
calls ``on_reconnect`` so the owner can backfill what it missed (candles for prices:
:func:`backfill_gap`; ``transactions/sinceid`` for transactions).

The backoff grows only across consecutive connections that delivered no data: a connection that
delivered data (for the price stream, at least one price; for the transaction stream, any
message) and then ended resets it, so a stream that keeps dropping after working reconnects
after the initial wait every time instead of ever longer ones.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from ...data.timeframes import Timeframe
from ...data.types import ASK_OHLC, BID_OHLC, OHLC, Tick
from .client import MAX_CANDLES, OandaClient
from .errors import OandaAuthError, OandaError, OandaNotFound
from .parsers import Heartbeat, Price, candles_to_frame, parse_stream_message

log = logging.getLogger(__name__)


def iter_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Complete non-blank lines from byte chunks cut anywhere (mid-line, mid-character).

    A last line with no newline is a truncated message and is dropped.
    """
    pending = b""
    for chunk in chunks:
        if not chunk:
            continue
        pending += chunk
        if b"\n" not in chunk:
            continue
        *lines, pending = pending.split(b"\n")
        for line in lines:
            line = line.strip()
            if line:
                yield line
    if pending.strip():
        log.warning("stream ended in the middle of a line (%d bytes dropped)", len(pending))


class StreamSilent(Exception):
    """Nothing (not even a heartbeat) arrived for longer than the silence timeout."""


class StreamReader:
    """Consume one stream endpoint in a background thread, reconnecting until :meth:`stop`.

    ``on_message`` gets each decoded object (:class:`Price`, :class:`Heartbeat` or a
    transaction dict). ``on_reconnect(attempt)`` runs after every successful re-connection
    (not the first one), before new messages are delivered. Bad lines are logged, counted in
    :attr:`bad_lines` and skipped. A 401/403/404 stops the reader (retrying cannot help) and
    is kept in :attr:`error`.

    Reconnection waits: ``backoff`` seconds after a connection that delivered data (see
    :meth:`is_data`; however it ended: cleanly, abruptly or silent), then twice as long after
    each further connection in a row that delivered none (it could not connect, or sent only
    heartbeats or bad lines), up to ``max_backoff``; each wait is drawn uniformly between half
    and all of that (jitter). ``sleep(seconds)`` waits; by default it returns early on
    :meth:`stop` (tests inject one that records the waits). :attr:`empty_connections` is the
    current run of connections without data, :attr:`last_wait` the last wait.
    """

    def __init__(
        self,
        client: OandaClient,
        path: str,
        params: dict[str, Any],
        on_message: Callable[[Any], None],
        *,
        silence_timeout: float = 10.0,
        on_reconnect: Callable[[int], None] | None = None,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        name: str = "oanda-stream",
        sleep: Callable[[float], Any] | None = None,
    ) -> None:
        if silence_timeout <= 0:
            raise ValueError(f"silence_timeout: expected seconds > 0, got {silence_timeout!r}")
        self.client = client
        self.path = path
        self.params = params
        self.on_message = on_message
        self.on_reconnect = on_reconnect
        self.silence_timeout = silence_timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.name = name
        self.connects = 0
        self.messages = 0
        self.heartbeats = 0
        self.bad_lines = 0
        self.handler_errors = 0
        self.empty_connections = 0
        self.last_wait = 0.0
        self.error: OandaError | None = None
        self._stop = threading.Event()
        self._sleep = sleep if sleep is not None else self._stop.wait
        self._connection_data = 0  # data messages of the current connection
        self._response: Any = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)

    def start(self) -> StreamReader:
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading: closes the open response so a blocked read returns at once."""
        self._stop.set()
        with self._lock:
            response = self._response
        if response is not None:
            _close_quietly(response)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> None:
        """Read until :meth:`stop`; reconnect with backoff and jitter (see the class doc)."""
        while not self._stop.is_set():
            try:
                self._read_once()
            except (OandaAuthError, OandaNotFound) as exc:
                self.error = exc
                log.error("%s: %s; giving up", self.name, exc)
                return
            except Exception as exc:  # any failure of the connection: reconnect
                if self._stop.is_set():
                    return
                log.warning("%s: %s; reconnecting", self.name, _describe(exc, self.client))
            else:
                if not self._stop.is_set():
                    log.warning("%s: stream ended; reconnecting", self.name)
            if self._stop.is_set():
                return
            # counted whether the connection ended cleanly or with an exception
            self.empty_connections = 0 if self._connection_data else self.empty_connections + 1
            self.last_wait = self.reconnect_delay() * random.uniform(0.5, 1.0)
            self._sleep(self.last_wait)

    def reconnect_delay(self) -> float:
        """The longest wait before the next connection (before jitter): ``backoff`` after a
        connection that delivered data, doubled for each connection since that delivered
        none, at most ``max_backoff``."""
        doublings = max(0, self.empty_connections - 1)
        return min(self.max_backoff, self.backoff * 2 ** min(doublings, 16))

    def is_data(self, message: Any) -> bool:
        """Whether ``message`` shows that the connection works (resets the backoff):
        anything but a heartbeat. Subclasses decide per stream."""
        return not isinstance(message, Heartbeat)

    def _read_once(self) -> int:
        self._connection_data = 0
        response = self.client.open_stream(self.path, self.params, self.silence_timeout)
        with self._lock:
            if self._stop.is_set():
                _close_quietly(response)
                return 0
            self._response = response
        self.connects += 1
        try:
            if self.connects > 1 and self.on_reconnect is not None:
                self.on_reconnect(self.connects - 1)
            last_message = [time.monotonic()]  # read by _watch, written here
            chunks = response.iter_content(chunk_size=None)
            for line in iter_lines(self._watch(chunks, last_message)):
                if self._stop.is_set():
                    break
                last_message[0] = time.monotonic()
                self._dispatch(line)
        finally:
            with self._lock:
                self._response = None
            _close_quietly(response)
        return self._connection_data

    def _watch(self, chunks: Iterable[bytes], last: list[float]) -> Iterator[bytes]:
        # The socket read timeout catches total silence; this catches bytes that never
        # complete a line (a stalled or garbage-sending peer).
        for chunk in chunks:
            if time.monotonic() - last[0] > self.silence_timeout:
                raise StreamSilent(f"no complete message for {self.silence_timeout} s")
            yield chunk

    def _dispatch(self, line: bytes) -> None:
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            message = parse_stream_message(data)
        except ValueError as exc:
            self.bad_lines += 1
            log.warning("%s: bad line skipped (%s): %.200r", self.name, exc, line)
            return
        self.messages += 1
        if isinstance(message, Heartbeat):
            self.heartbeats += 1
        if self.is_data(message):
            self._connection_data += 1
        try:
            self.on_message(message)
        except Exception:
            self.handler_errors += 1
            log.exception("%s: message handler failed", self.name)


class PriceStream(StreamReader):
    """The pricing stream of ``instruments``: ``on_price(Price)`` for every price.

    ``backfill(last_times)`` runs after a reconnection with ``{instrument: ns}`` of the last
    price seen per instrument, so the owner can fetch the candles it may have missed.
    """

    def __init__(
        self,
        client: OandaClient,
        instruments: list[str],
        on_price: Callable[[Price], None],
        *,
        on_heartbeat: Callable[[Heartbeat], None] | None = None,
        backfill: Callable[[dict[str, int]], None] | None = None,
        silence_timeout: float = 10.0,
        snapshot: bool = True,
        **kwargs: Any,
    ) -> None:
        if not instruments:
            raise ValueError("instruments: expected at least one instrument")
        self.last_times: dict[str, int] = {}
        self._on_price = on_price
        self._on_heartbeat = on_heartbeat
        self._backfill = backfill
        super().__init__(
            client,
            client._account_path("/pricing/stream"),
            {"instruments": ",".join(instruments), "snapshot": "true" if snapshot else "false"},
            self._handle,
            silence_timeout=silence_timeout,
            on_reconnect=self._reconnected,
            name=kwargs.pop("name", "oanda-prices"),
            **kwargs,
        )

    def is_data(self, message: Any) -> bool:
        """A price (tradeable or not) resets the backoff; heartbeats alone do not (OANDA sends
        them on any open connection, also when nothing else works)."""
        return isinstance(message, Price)

    def _handle(self, message: Any) -> None:
        if isinstance(message, Price):
            self.last_times[message.instrument] = message.tick.time
            self._on_price(message)
        elif isinstance(message, Heartbeat) and self._on_heartbeat is not None:
            self._on_heartbeat(message)

    def _reconnected(self, attempt: int) -> None:
        if self._backfill is not None:
            self._backfill(dict(self.last_times))


class TransactionStream(StreamReader):
    """The account's transaction stream: ``on_transaction(dict)`` for each transaction.

    After a reconnection the transactions missed meanwhile are fetched with
    ``transactions/sinceid`` and delivered first, so none is lost.
    """

    def __init__(
        self,
        client: OandaClient,
        on_transaction: Callable[[dict[str, Any]], None],
        *,
        silence_timeout: float = 20.0,
        last_transaction_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.last_transaction_id = last_transaction_id
        self._on_transaction = on_transaction
        super().__init__(
            client,
            client._account_path("/transactions/stream"),
            {},
            self._handle,
            silence_timeout=silence_timeout,
            on_reconnect=self._reconnected,
            name=kwargs.pop("name", "oanda-transactions"),
            **kwargs,
        )

    def is_data(self, message: Any) -> bool:
        """Any message resets the backoff: on a quiet account heartbeats (with the last
        transaction id) are all this stream carries, and they come only every ~5 s."""
        return True

    def _handle(self, message: Any) -> None:
        if isinstance(message, dict) and "id" in message:
            if self.last_transaction_id is not None and int(message["id"]) <= int(
                self.last_transaction_id
            ):
                return  # already delivered by the catch-up
            self.last_transaction_id = str(message["id"])
            self._on_transaction(message)

    def _reconnected(self, attempt: int) -> None:
        if self.last_transaction_id is None:
            return
        body = self.client.transactions_since(self.last_transaction_id)
        for tx in body.get("transactions", []):
            self._handle(tx)


# -- backfill of the price stream's gaps ---------------------------------------------------------
class Backfill(NamedTuple):
    """What :func:`backfill_gap` found for one instrument after ``since``."""

    instrument: str
    since: int  #: the last quote delivered before the gap (ns)
    ticks: list[Tick]  #: the synthetic quotes, time order, all after ``since``
    candles: int  #: complete candles opened after ``since``: four quotes each, one bar each
    completed: bool  #: the candle holding ``since`` was complete: its high, low, close follow
    first: int | None  #: open time of the first of the ``candles`` (ns), None if none
    last: int | None  #: open time of the last of them


_BA_COLUMNS = [f"{side}_{part}" for part in ("open", "high", "low", "close")
               for side in ("bid", "ask")]  # fmt: skip


def gap_candles(
    client: OandaClient,
    instrument: str,
    since: int,
    granularity: Any = "M1",
    *,
    page_size: int = MAX_CANDLES,
) -> Any:
    """The complete bid/ask candles whose period ends after ``since`` (ns): the one holding
    ``since`` if it is complete, then every later one, oldest first, as a candle DataFrame
    (:func:`~osmarkets.brokers.oanda.candles_to_frame`; empty when none completed).

    Any gap length: pages of at most ``page_size`` candles (OANDA's limit, 5000) are asked
    with ``from`` + ``count``, each page after the last candle of the previous one
    (``includeFirst=false``), until a page is short or ends with the incomplete candle.
    """
    import pandas as pd

    tf = Timeframe.parse(granularity)
    if not tf.is_intraday:
        raise ValueError(f"backfill granularity: expected an intraday time frame, got {tf.code}")
    if not 0 < page_size <= MAX_CANDLES:
        raise ValueError(f"page_size: expected 1..{MAX_CANDLES}, got {page_size!r}")
    length = tf.nanoseconds
    frames: list[Any] = []
    # every candle that may hold `since` opens after since - length (alignment-free)
    cursor, include_first = since - length + 1, True
    while True:
        page = client.candles(
            instrument, tf.code, price="BA", start=cursor, count=page_size,
            include_first=include_first,
        )  # fmt: skip
        raw = page.get("candles") or []
        frame = candles_to_frame(raw)  # complete candles only
        if len(frame):
            if not set(_BA_COLUMNS) <= set(frame.columns):
                raise ValueError("backfill candles: bid/ask prices missing")
            starts = frame.index.asi8  # type: ignore[attr-defined]
            keep = starts + length > since
            if not include_first:  # never the previous page's last candle again
                keep &= starts > cursor
            frame = frame[keep]
        if len(frame):
            frames.append(frame)
        if len(raw) < page_size or not raw[-1].get("complete", True) or not len(frame):
            break
        cursor, include_first = int(frame.index.asi8[-1]), False  # type: ignore[attr-defined]
    if not frames:  # no candle completed: an empty frame, with the bid/ask columns all the same
        return candles_to_frame([]).reindex(columns=[*OHLC, "volume", *BID_OHLC, *ASK_OHLC])
    return pd.concat(frames)


def backfill_gap(
    client: OandaClient,
    instrument: str,
    since: int,
    granularity: Any = "M1",
    *,
    page_size: int = MAX_CANDLES,
) -> Backfill:
    """Synthetic quotes rebuilding what the price stream missed after ``since`` (ns, the last
    quote delivered), from the candles of ``granularity`` (:func:`gap_candles`).

    - The candle holding ``since``, if complete: its high, low and close (bid and ask sides)
      as three quotes between ``since`` and its end, so the bar cut by the gap ends with the
      candle's close and spans its range.
    - Every complete candle opened after ``since``: four quotes inside its period (open at its
      start, high at a quarter, low at half, close 1 ms before its end), so a bar aggregated
      from them has the candle's bid/ask OHLC (and volume 4).

    Works for any gap: none (no candle completed: no quote), short, or longer than one candles
    request. The candle still forming is left to the live stream.
    """
    tf = Timeframe.parse(granularity)
    length = tf.nanoseconds
    frame = gap_candles(client, instrument, since, tf, page_size=page_size)
    ticks: list[Tick] = []
    completed = False
    first: int | None = None
    last: int | None = None
    candles = 0
    if len(frame):
        starts = frame.index.asi8
        values = frame[_BA_COLUMNS].to_numpy()
        for start, row in zip(starts.tolist(), values.tolist(), strict=True):
            if start <= since:  # the candle holding `since`: partly delivered already
                end = start + length
                room = end - since
                times = (since + room // 4, since + room // 2, end - min(1_000_000, room // 4))
                if room >= 4:  # else no time is left between `since` and the candle's end
                    completed = True
                    for k, at in enumerate(times, start=1):
                        ticks.append(Tick(at, float(row[2 * k]), float(row[2 * k + 1])))
                continue
            offsets = (0, length // 4, length // 2, length - 1_000_000)
            for k, offset in enumerate(offsets):
                ticks.append(Tick(start + offset, float(row[2 * k]), float(row[2 * k + 1])))
            candles += 1
            first = start if first is None else first
            last = start
    return Backfill(instrument, since, ticks, candles, completed, first, last)


def _close_quietly(response: Any) -> None:
    # Shut the socket down first: close() alone does not wake a read blocked in another thread.
    with contextlib.suppress(Exception):  # already closed
        sock = getattr(getattr(response.raw, "_connection", None), "sock", None)
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):  # closing a dead socket
        response.close()


def _describe(exc: BaseException, client: OandaClient) -> str:
    return client._scrub(f"{type(exc).__name__}: {exc}")
