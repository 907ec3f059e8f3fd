"""Reading OANDA's line-delimited JSON streams, reconnecting forever until told to stop.

OANDA sends a stream as HTTP chunks whose boundaries do not follow lines, a heartbeat about
every 5 s, and may end it at any time with no notice. :func:`iter_lines` reassembles lines;
:class:`StreamReader` reconnects with backoff when the stream ends, fails, or stays silent
longer than ``silence_timeout`` (10 s for prices, 20 s for transactions, as OANDA advises), and
calls ``on_reconnect`` so the owner can backfill what it missed (candles for prices,
``transactions/sinceid`` for transactions).
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
from typing import Any

from .client import OandaClient
from .errors import OandaAuthError, OandaError, OandaNotFound
from .parsers import Heartbeat, Price, parse_stream_message

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
        self.error: OandaError | None = None
        self._stop = threading.Event()
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
        """Read until :meth:`stop`; reconnect with exponential backoff and jitter."""
        failures = 0
        while not self._stop.is_set():
            try:
                delivered = self._read_once()
            except (OandaAuthError, OandaNotFound) as exc:
                self.error = exc
                log.error("%s: %s; giving up", self.name, exc)
                return
            except Exception as exc:  # any failure of the connection: reconnect
                if self._stop.is_set():
                    return
                log.warning("%s: %s; reconnecting", self.name, _describe(exc, self.client))
                delivered = 0
            else:
                if not self._stop.is_set():
                    log.warning("%s: stream ended; reconnecting", self.name)
            failures = 0 if delivered else failures + 1
            delay = min(self.max_backoff, self.backoff * 2 ** min(failures, 16))
            self._stop.wait(delay * random.uniform(0.5, 1.0))

    def _read_once(self) -> int:
        response = self.client.open_stream(self.path, self.params, self.silence_timeout)
        with self._lock:
            if self._stop.is_set():
                _close_quietly(response)
                return 0
            self._response = response
        self.connects += 1
        delivered = 0
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
                delivered += 1
        finally:
            with self._lock:
                self._response = None
            _close_quietly(response)
        return delivered

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
