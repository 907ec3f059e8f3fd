"""History on subscribe: where the Router gets the bars it does not have yet.

A Router only builds bars from the data that reaches it after a series is first asked for, so a
Brain subscribing with ``history=100`` would start with an empty series. With a *history
source* (an OANDA account: :class:`OandaHistorySource`; another broker's: see
:func:`register_history_source`), the Router's :class:`HistoryLoader`
downloads the missing completed bars in a worker thread (never in the Router's handler
thread), and the Router seeds its store with them before it answers the request:

1. a Brain asks ``('history', brain, bsid, n)`` for a series the Router holds fewer than ``n``
   bars of: the loader starts a download and the Router answers ``('wait', None, seq)``;
   the Brain asks again a moment later (it is inside ``subscribe``, which returns only with
   the history);
2. the worker thread downloads the last ``n`` completed candles (``price='BA'``: mid and
   bid/ask OHLC) and hands them to the Router's loop (:meth:`HistoryLoader.finished`,
   polled by a timer and on each history request);
3. the Router puts the candles older than its own first bar (or than the bar it is forming)
   in front of its store and moves the series' sequence number on by as many bars, so the
   first live bar is the one after the last candle (no gap, no duplicate), and answers
   ``('ok', records, seq)``.

A download that fails (after the client's own retries) or takes longer than ``timeout`` is
logged and counted; the request is then answered with whatever history exists: a
subscription never hangs. An observer (a GUI, ``brain=None``) is never made to wait: it gets
what exists at once, and re-reads the history when the sequence number jumps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from ..data.series import frame_to_records
from ..data.timeframes import BarSeriesID
from ..data.types import BAR_DTYPE

DEFAULT_TIMEOUT = 60.0  # seconds a request waits for a download before it gets what exists
MAX_PAGE = 5000  # OANDA's limit on candles per request


class HistorySource(Protocol):
    """Something that downloads the last completed bars of a series (blocking: it runs in a
    worker thread)."""

    def fetch(self, bsid: BarSeriesID, count: int) -> np.ndarray:
        """The last ``count`` completed bars of ``bsid`` as chronological ``BAR_DTYPE``
        records (fewer if the broker has fewer)."""
        ...


class OandaHistorySource:
    """Completed OANDA candles (bid/ask, so mid and both sides) for a series.

    Holds only token-free settings (see
    :func:`~osmarkets.brokers.oanda.trading.client_from_settings`): a client is made for each
    download and closed after it, so no attribute of the Router, readable through a proxy,
    holds the token.
    """

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)

    def __repr__(self) -> str:
        return f"OandaHistorySource(account_id={self.settings.get('account_id')!r})"

    def fetch(self, bsid: BarSeriesID, count: int) -> np.ndarray:
        from ..brokers.oanda.parsers import candles_to_frame
        from ..brokers.oanda.trading import client_from_settings

        bsid = BarSeriesID.parse(bsid)
        client = client_from_settings(self.settings)
        try:
            return last_candles(client, bsid, count, candles_to_frame)
        finally:
            client.close()


def last_candles(client: Any, bsid: BarSeriesID, count: int, to_frame: Any) -> np.ndarray:
    """The last ``count`` complete candles of ``bsid``, paging backwards from now (``to`` +
    ``count``) under the 5000-candle limit; chronological ``BAR_DTYPE`` records."""
    code = bsid.timeframe.code
    pages: list[np.ndarray] = []
    have = 0
    end: int | None = None
    while have < count:
        # one more than needed: the newest candle may be still forming, and a page that ends
        # at ``to`` may hold the candle at ``to`` (already in the previous page)
        ask = min(MAX_PAGE, count - have + 1)
        page = client.candles(bsid.symbol, code, price="BA", end=end, count=ask)
        raw = page.get("candles") or []
        records = frame_to_records(to_frame(raw))  # the incomplete candle is dropped
        if end is not None:
            records = records[records["time"] < end]
        if not len(records):
            break  # the broker has no older candles
        pages.append(records)
        have += len(records)
        end = int(records["time"][0])
    if not pages:
        return np.empty(0, dtype=BAR_DTYPE)
    records = np.concatenate(pages[::-1])
    return records[-count:]


class HistoryLoader:
    """Runs a :class:`HistorySource` in worker threads for the Router and keeps track of what
    is in flight, what finished and what failed. Only :meth:`finished` results touch the
    Router's store, and the Router calls it from its own loop."""

    def __init__(self, source: HistorySource, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.source = source
        self.timeout = float(timeout)
        self.in_flight: dict[BarSeriesID, tuple[int, float]] = {}  # bsid -> (count, started)
        self.tried: dict[BarSeriesID, int] = {}  # bsid -> largest count downloaded or tried
        self.downloads = 0
        self.failures = 0
        self.timeouts = 0
        self.bars = 0
        self.overlaps = 0  # live bars dropped: their period came with the download
        self._done: list[tuple[BarSeriesID, int, np.ndarray | None, str]] = []
        self._lock = threading.Lock()

    def needs_wait(self, bsid: BarSeriesID, count: int, have: int) -> bool:
        """Whether a request for ``count`` bars of ``bsid`` (the Router holds ``have``) must
        wait for a download; starts one if none was tried for that many bars yet. A download
        past ``timeout`` is no longer waited for; a failed one is not tried again."""
        if count <= have:
            return False
        flight = self.in_flight.get(bsid)
        if flight is not None:  # a larger request asks again once this one has finished
            return time.monotonic() - flight[1] <= self.timeout
        if self.tried.get(bsid, 0) >= count:
            return False  # downloaded or failed already: the broker has no more
        self._start(bsid, count)
        return True

    def _start(self, bsid: BarSeriesID, count: int) -> None:
        self.in_flight[bsid] = (count, time.monotonic())
        self.tried[bsid] = max(self.tried.get(bsid, 0), count)
        self.downloads += 1
        threading.Thread(
            target=self._download, args=(bsid, count), name=f"history-{bsid.key}", daemon=True
        ).start()

    def _download(self, bsid: BarSeriesID, count: int) -> None:
        try:
            records = np.asarray(self.source.fetch(bsid, count), dtype=BAR_DTYPE)
            result: tuple[BarSeriesID, int, np.ndarray | None, str] = (bsid, count, records, "")
        except Exception as exc:  # reported by the Router's loop (finished())
            result = (bsid, count, None, f"{type(exc).__name__}: {exc}")
        with self._lock:
            self._done.append(result)

    def expired(self) -> list[BarSeriesID]:
        """Downloads past ``timeout`` (each reported once): requests stop waiting for them."""
        now = time.monotonic()
        late = [
            bsid
            for bsid, (_count, started) in self.in_flight.items()
            if now - started > self.timeout and started >= 0
        ]
        for bsid in late:
            count, _ = self.in_flight[bsid]
            self.in_flight[bsid] = (count, -float("inf"))  # still running, no longer awaited
            self.timeouts += 1
        return late

    def finished(self) -> list[tuple[BarSeriesID, np.ndarray | None, str]]:
        """Downloads that ended since the last call: ``(bsid, records or None, error)``."""
        with self._lock:
            done, self._done = self._done, []
        out = []
        for bsid, count, records, error in done:
            flight = self.in_flight.get(bsid)
            if flight is not None and flight[0] == count:
                del self.in_flight[bsid]
            if records is None:
                self.failures += 1
            else:
                self.bars += len(records)
            out.append((bsid, records, error))
        return out

    def stats(self) -> dict[str, int]:
        return {
            "history_downloads": self.downloads,
            "history_failures": self.failures,
            "history_timeouts": self.timeouts,
            "history_bars": self.bars,
            "history_overlaps": self.overlaps,
        }


def seed_cutoff(history: Any, forming: Any) -> int | None:
    """The first period the live data owns: candles must be older. ``history``: the series'
    bars (oldest first), ``forming``: the bar its aggregator is building (or None)."""
    if len(history):
        return int(history[0].time)
    if forming is not None:
        return int(forming.time)
    return None


#: history source kind -> the import path (``'package.module:name'``) of its factory, a
#: callable of the spec's ``settings`` returning a :class:`HistorySource`. Names, not callables:
#: the spec travels as data (see :func:`make_source`).
HISTORY_SOURCES: dict[str, str] = {
    "oanda": "osmarkets.agents.history:OandaHistorySource",
    "ccxt": "osmarkets.brokers.ccxt.prices:make_history_source",
}


def register_history_source(kind: str, factory: str) -> None:
    """Register the history source of a broker adapter: ``factory`` is the import path
    (``'package.module:name'``) of a callable taking the spec's ``settings`` (a mapping of
    token-free data) and returning a :class:`HistorySource`. Register it when the adapter's
    module is imported, in the owner's process: the Router (forked from it) inherits the
    registration."""
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"history source kind: expected a name, got {kind!r}")
    module, sep, name = factory.partition(":") if isinstance(factory, str) else ("", "", "")
    if not (module and sep and name):
        raise ValueError(
            f"history source factory: expected an import path 'package.module:name', "
            f"got {factory!r}"
        )
    HISTORY_SOURCES[kind] = factory


def make_source(spec: Mapping[str, Any]) -> HistorySource:
    """A history source from a picklable description (what the architecture sends the
    Router): ``{'kind': 'oanda', 'settings': {...}}``, built by the factory registered for
    its kind (:data:`HISTORY_SOURCES`, :func:`register_history_source`)."""
    from ..brokers.live import load_object

    kind = spec.get("kind")
    path = HISTORY_SOURCES.get(kind) if isinstance(kind, str) else None
    if path is None:
        raise ValueError(f"history source kind: unknown {kind!r}")
    settings = spec.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise ValueError(f"history source settings: expected a mapping, got {settings!r}")
    source: HistorySource = load_object(path)(settings)
    return source


class RouterHistoryMixin:
    """The Router's side of history on subscribe (see the module docstring). Mixed into
    :class:`~osmarkets.agents.router.RouterAgent`; inactive (every method a no-op) until
    :meth:`set_history_source` is called, so simulated and replay architectures are
    unchanged."""

    history_loader: HistoryLoader | None = None

    def set_history_source(
        self, spec: Mapping[str, Any], timeout: float = DEFAULT_TIMEOUT
    ) -> bool:
        """Download the bars a subscription asks for and the Router does not have from
        ``spec`` (see :func:`make_source`). Called through the proxy by the architecture."""
        if not timeout > 0:
            raise ValueError(f"history timeout: expected seconds > 0, got {timeout!r}")
        first = self.history_loader is None
        self.history_loader = HistoryLoader(make_source(spec), timeout)
        if first:
            self.each(0.05, "osm_history_poll")  # type: ignore[attr-defined]
        return True

    def osm_history_poll(self) -> None:
        """Timer (and every history request): seed the finished downloads, report the late
        ones."""
        loader = self.history_loader
        if loader is None:
            return
        agent: Any = self
        for bsid in loader.expired():
            agent.osm_errors += 1
            agent.log_warning(
                f"{bsid}: history download still running after {loader.timeout:g} s: "
                "answering with the bars the Router has"
            )
        for bsid, records, error in loader.finished():
            if records is None:
                agent.osm_errors += 1
                agent.osm_last_errors.append(f"history download for {bsid} failed: {error}")
                agent.log_error(
                    f"{bsid}: history download failed ({error}): "
                    "the subscription goes on with the bars the Router has"
                )
                continue
            added = self.osm_history_seed(bsid, records)
            agent.log_info(f"{bsid}: {added} bars of history downloaded")

    def osm_history_wait(self, series: Any, brain: Any, count: int) -> bool:
        """Whether the request of ``brain`` for ``count`` bars of ``series`` must be answered
        ``'wait'`` (a download runs). Observers (``brain=None``) never wait."""
        loader = self.history_loader
        if loader is None:
            return False
        self.osm_history_poll()
        wanted = min(count, series.history.maxlen or count)
        waiting = loader.needs_wait(series.bsid, wanted, len(series.history))
        return waiting and brain is not None

    def osm_history_seed(self, bsid: BarSeriesID, records: np.ndarray) -> int:
        """Put the downloaded ``records`` older than the live data in front of the series'
        store; the sequence number moves on by as many bars (subscribers that had the older,
        shorter history see the jump and re-read it). Returns the number of bars added."""
        from ..data.types import Bar

        agent: Any = self
        series = agent.series.get(bsid)
        if series is None or not len(records):
            return 0
        records = np.sort(np.asarray(records, dtype=BAR_DTYPE), order="time")
        forming = getattr(series.aggregator, "forming", None)
        cutoff = seed_cutoff(series.history, forming)
        if cutoff is not None:
            records = records[records["time"] < cutoff]
        if not len(records):
            return 0
        bars = [Bar(*row) for row in records.tolist()]
        live = list(series.history)
        series.history.clear()
        series.history.extend(bars + live)
        series.seq += len(bars)
        return len(bars)

    def osm_history_duplicate(self, series: Any, bar: Any) -> bool:
        """A live bar not after the series' newest one (a late tick of a period the download
        already delivered): dropped, so no bar is published twice."""
        if self.history_loader is None or not series.history:
            return False
        if bar.time > series.history[-1].time:
            return False
        self.history_loader.overlaps += 1
        return True

    def osm_history_stats(self) -> dict[str, int]:
        loader = self.history_loader
        return loader.stats() if loader is not None else {}
