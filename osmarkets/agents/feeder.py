"""The Feeder: pushes ticks or bars to the Router from a worker thread.

The data source (synthetic quotes, a replayed DataFrame or file: :mod:`osmarkets.feeds`) runs
in a thread with its own PUSH socket, so the agent's loop stays free for the proxy and the
Overmind. PUSH/PULL does not drop: when the Router falls behind, ``send`` blocks the thread
(back-pressure) until there is room again.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Iterator
from typing import Any

import zmq

from .. import feeds
from .base import OsmAgent, dumps

#: backfill quotes per message (a long gap goes in several: the Router stays responsive)
BACKFILL_CHUNK = 4000


def push_backfill(push: Any, symbol: str, quotes: list[tuple]) -> None:
    """Send a gap's synthetic ``quotes`` to the Router as ``backfill`` messages (the Router
    marks the bars they complete), :data:`BACKFILL_CHUNK` quotes at most each."""
    for start in range(0, len(quotes), BACKFILL_CHUNK):
        push.send(dumps(("backfill", symbol, quotes[start : start + BACKFILL_CHUNK])))


def zmq_url(address: Any) -> str:
    """The ZeroMQ endpoint of an osBrain AgentAddress."""
    return f"{address.transport}://{address.address}"


def source_events(source: dict[str, Any]) -> Iterator[feeds.Event]:
    """The event stream a Feeder configuration describes."""
    kind = source.get("kind")
    if kind == "replay":
        yield from feeds.replay_events(source["data"])
        return
    if kind != "synthetic":
        raise ValueError(f"feeder source kind: expected 'synthetic' or 'replay', got {kind!r}")
    symbols = list(source.get("symbols") or ["EUR_USD"])
    seed = int(source.get("seed", 0))
    options = dict(source.get("options") or {})
    bars = source.get("bars")
    streams = []
    for n, symbol in enumerate(symbols):
        if bars is not None:
            ticks = feeds.synthetic_minutes(symbol, bars=int(bars), seed=seed + n, **options)
        else:
            ticks = feeds.synthetic_ticks(symbol, seed=seed + n, **options)
        streams.append(_labelled(symbol, n, ticks))
    for _, _, event in heapq.merge(*streams):
        yield event


def _labelled(symbol: str, n: int, ticks: Iterator[Any]) -> Iterator[tuple]:
    """``(time, n, ('tick', symbol, tick))`` for a merge by time. A function, not a generator
    expression in the loop above: those bind ``symbol`` late, and every tick of every stream
    was labelled with the last symbol."""
    for tick in ticks:
        yield (tick.time, n, ("tick", symbol, tick))


class FeederAgent(OsmAgent):
    """See the module docstring. ``osm_cfg``: ``router_in`` (address), ``source`` (see
    :func:`source_events`), ``speed`` (0 = as fast as possible, else a factor of real time),
    ``batch`` (ticks or bars per message when replaying as fast as possible), ``stamp_now``
    (restamp ticks with the wall clock: a live-like feed for latency measurements)."""

    def osm_setup(self) -> None:
        self.feed_sent = 0
        self.feed_done = False
        self.feed_error = ""
        self._feed_stop = threading.Event()
        self._feed_thread: threading.Thread | None = None

    def start_feed(self) -> bool:
        """Start the feed thread (once)."""
        if self._feed_thread is None:
            self._feed_thread = threading.Thread(
                target=self._feed, name=f"{self.name}-feed", daemon=True
            )
            self._feed_thread.start()
        return True

    def stop_feed(self) -> None:
        self._feed_stop.set()

    def _feed(self) -> None:
        cfg = self.osm_cfg
        push = self.osm_socket(zmq.PUSH, zmq_url(cfg["router_in"]))
        # Deliver everything, however long the Router takes: losing the tail of a replay (and
        # its "end" marker) would leave a lock-stepped simulation waiting forever.
        push.setsockopt(zmq.LINGER, -1)
        speed = float(cfg.get("speed") or 0.0)
        batch = int(cfg.get("batch", 1)) if speed <= 0 else 1
        stamp = bool(cfg.get("stamp_now", False))
        pending: list[tuple] = []
        pending_symbol = ""
        first_data = first_wall = 0.0

        pending_kind = "ticks"

        def flush() -> None:
            nonlocal pending
            if pending:
                push.send(dumps((pending_kind, pending_symbol, pending)))
                self.feed_sent += len(pending)
                pending = []

        try:
            for kind, symbol, payload in source_events(cfg["source"]):
                if self._feed_stop.is_set():
                    break
                if speed > 0:
                    if not first_wall:
                        first_data, first_wall = payload.time, time.time()
                    due = first_wall + (payload.time - first_data) / 1e9 / speed
                    delay = due - time.time()
                    if delay > 0 and self._feed_stop.wait(delay):
                        break
                if stamp and kind == "tick":
                    payload = payload._replace(time=time.time_ns())
                if kind in ("tick", "bar") and batch > 1:
                    plural = f"{kind}s"
                    if symbol != pending_symbol or plural != pending_kind or len(pending) >= batch:
                        flush()
                        pending_symbol, pending_kind = symbol, plural
                    pending.append(tuple(payload))
                    continue
                flush()
                push.send(dumps((kind, symbol, payload)))
                self.feed_sent += 1
            flush()
            push.send(dumps(("end",)))
        except zmq.ContextTerminated:
            return
        except Exception as exc:  # a broken source is reported, never silent
            import traceback

            self.feed_error = f"{exc!r}\n{traceback.format_exc()}"
            self.osm_errors += 1
        finally:
            # The socket stays open: closing it right after the last send has been seen to
            # lose the tail of the replay on a loaded machine. The process's exit closes it.
            self._feed_socket = push
            self.feed_done = True

    def osm_stats(self) -> dict[str, Any]:
        stats = super().osm_stats()
        stats.update(sent=self.feed_sent, done=self.feed_done)
        return stats
