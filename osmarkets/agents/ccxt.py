"""The ccxt Feeder: an exchange's quotes, read in a worker thread, pushed to the Router.

The stream (:class:`~osmarkets.brokers.ccxt.prices.CcxtPriceStream`: websockets where the
exchange has them, REST polling otherwise) runs in the Feeder's thread with its own PUSH socket,
so the agent's loop stays free for the proxy and the Overmind. After each reconnection, and
when a restarted Feeder starts (``resume_after``), the candles completed meanwhile are pushed
first as ``backfill`` quotes (:func:`~osmarkets.brokers.ccxt.prices.backfill_quotes`), before
any new quote, so the Router's bars stay complete and are marked backfilled. The API key and
secret are read from files readable only by the user, never kept as attributes.
"""

from __future__ import annotations

import threading
import traceback
from typing import Any

import zmq

from ..brokers.ccxt.client import exchange_from_settings
from ..brokers.ccxt.prices import CcxtPriceStream, backfill_quotes
from ..data.types import Tick
from .base import OsmAgent, dumps
from .feeder import push_backfill, zmq_url


class CcxtFeederAgent(OsmAgent):
    """See the module docstring. ``osm_cfg``: ``router_in``, ``instruments``, ``ccxt``
    (credential-free exchange settings), ``backfill`` (granularity code, default ``'M1'``),
    ``stream`` (:class:`~osmarkets.brokers.ccxt.prices.CcxtPriceStream` keyword arguments),
    ``resume_after`` (symbol -> ns: a restarted Feeder backfills from there)."""

    def osm_setup(self) -> None:
        self.feed_sent = 0
        self.feed_done = False
        self.feed_error = ""
        self.stale = 0  # quotes not newer than the last one pushed
        self.reconnects = 0
        self.backfilled_bars = 0
        self.backfilled_ticks = 0
        self.backfill_errors = 0
        self._feed_stop = threading.Event()
        self._feed_thread: threading.Thread | None = None
        self._stream: CcxtPriceStream | None = None

    def start_feed(self) -> bool:
        """Start the stream thread (once)."""
        if self._feed_thread is None:
            self._feed_thread = threading.Thread(
                target=self._feed, name=f"{self.name}-ccxt", daemon=True
            )
            self._feed_thread.start()
        return True

    def stop_feed(self) -> None:
        self._feed_stop.set()
        stream = self._stream
        if stream is not None:
            stream.stop()

    def _feed(self) -> None:
        cfg = self.osm_cfg
        push = self.osm_socket(zmq.PUSH, zmq_url(cfg["router_in"]))
        push.setsockopt(zmq.LINGER, 0)
        sending = threading.Lock()  # the stream's loop and its backfill may be two threads
        symbols = list(cfg["instruments"])
        granularity = cfg.get("backfill") or "M1"
        last: dict[str, int] = {
            str(k): int(v) for k, v in (cfg.get("resume_after") or {}).items() if k in symbols
        }
        spreads: dict[str, float] = {}
        rest: Any = None

        def on_quote(symbol: str, tick: Tick) -> None:
            with sending:
                spreads[symbol] = tick.ask - tick.bid
                if tick.time <= last.get(symbol, 0):
                    self.stale += 1
                    return
                push.send(dumps(("tick", symbol, tuple(tick))))
                last[symbol] = tick.time
                self.feed_sent += 1

        def backfill(_seen: dict[str, int], reconnected: bool = True) -> None:
            nonlocal rest
            if reconnected:
                self.reconnects += 1
            if rest is None:
                rest = exchange_from_settings(cfg["ccxt"])
            for symbol in symbols:
                if symbol not in last:
                    continue  # nothing pushed yet: no gap to fill
                try:
                    gap = backfill_quotes(rest, symbol, last[symbol], spreads.get(symbol, 0.0),
                                          granularity)  # fmt: skip
                except Exception as exc:  # the stream goes on; the gap is reported
                    self.backfill_errors += 1
                    self.log_error(f"{symbol}: backfill after a gap failed: {exc}"[:500])
                    continue
                fresh = [tuple(t) for t in gap.ticks if t.time > last[symbol]]
                with sending:
                    push_backfill(push, symbol, fresh)
                    if fresh:
                        last[symbol] = int(fresh[-1][0])
                        self.feed_sent += len(fresh)
                self.backfilled_ticks += len(fresh)
                self.backfilled_bars += gap.candles
                if gap.candles:
                    self.log_info(f"{symbol}: {gap.candles} bars backfilled after a gap")

        try:
            stream = CcxtPriceStream(cfg["ccxt"], symbols, on_quote, backfill=backfill,
                                     **dict(cfg.get("stream") or {}))  # fmt: skip
            self._stream = stream
            if last:  # a restarted Feeder: first the candles completed while none ran
                backfill({}, reconnected=False)
            if not self._feed_stop.is_set():
                stream.run()  # until stop_feed
        except zmq.ContextTerminated:
            return
        except Exception as exc:
            self.feed_error = f"{type(exc).__name__}: {exc}"[:500]
            self.osm_errors += 1
            self.osm_last_errors.append(traceback.format_exc())
        finally:
            self.feed_done = True

    def osm_stats(self) -> dict[str, Any]:
        stats = super().osm_stats()
        stream = self._stream
        stats.update(
            sent=self.feed_sent, done=self.feed_done, stale=self.stale,
            reconnects=self.reconnects, backfilled_bars=self.backfilled_bars,
            backfilled={"bars": self.backfilled_bars, "ticks": self.backfilled_ticks,
                        "errors": self.backfill_errors},
            using=stream.using if stream is not None else "",
            stream_errors=stream.errors if stream is not None else 0,
        )  # fmt: skip
        return stats
