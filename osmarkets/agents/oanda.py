"""The OANDA Feeder: OANDA's pricing stream, read in a worker thread, pushed to the Router.

The stream reader (:class:`~osmarkets.brokers.oanda.PriceStream`) runs in the Feeder's thread
with its own PUSH socket, so the agent's loop stays free for the proxy and the Overmind. It
reconnects with backoff when the stream ends, fails or goes silent (the wait is reset after any
connection that delivered a price), and after each reconnection, and when a restarted Feeder
starts, pushes the candles completed meanwhile as synthetic quotes
(:func:`~osmarkets.brokers.oanda.stream.backfill_gap`), before any new price, so the Router's
bars stay complete. The backfill quotes travel as ``backfill`` messages
(:class:`~osmarkets.wire.BackfillIn`): the Router aggregates them as ticks and publishes the bars
they complete marked, so a Brain sees ``series.backfilled`` True in ``on_new_bar`` for them. The
Feeder counts them (``osm_stats()['backfilled']``), logs each gap, and keeps the periods it
backfilled (:meth:`OandaFeederAgent.backfilled_periods`). Non-tradeable prices (a halted market,
a closed session) are not bars' material: they are skipped and counted. The access token is read
from a file readable only by the user (see
:func:`~osmarkets.brokers.oanda.trading.client_from_settings`), never kept as an attribute.
"""

from __future__ import annotations

import threading
import traceback
from collections import deque
from typing import Any

import zmq

from ..brokers.oanda.parsers import Price, format_time
from ..brokers.oanda.stream import Backfill, PriceStream, backfill_gap
from ..brokers.oanda.trading import client_from_settings
from ..data.timeframes import Timeframe
from ..data.types import Tick
from .base import OsmAgent, dumps
from .feeder import push_backfill, zmq_url


class OandaFeederAgent(OsmAgent):
    """See the module docstring. ``osm_cfg``: ``router_in``, ``instruments``, ``oanda``
    (token-free client settings), ``backfill`` (granularity code, default ``'M1'``),
    ``stream`` (keyword arguments of the PriceStream: ``backoff``, ``max_backoff``,
    ``silence_timeout``)."""

    def osm_setup(self) -> None:
        self.feed_sent = 0
        self.feed_done = False
        self.feed_error = ""
        self.nontradeable = 0  # prices flagged non-tradeable, skipped
        self.stale = 0  # prices not newer than the last one pushed (a reconnection snapshot)
        self.reconnects = 0
        self.backfill_gaps = 0  # gaps looked at (each reconnection, a restart), per symbol
        self.backfilled_bars = 0  # candles pushed as four quotes each: one bar each
        self.backfilled_ticks = 0  # synthetic quotes pushed (bars' and completions')
        self.backfill_completed = 0  # bars cut by a gap, completed with their candle
        self.backfill_errors = 0
        #: the last 100 gaps backfilled: symbol, since, first/last bar open time, bars, ...
        self.backfill_log: deque[dict[str, Any]] = deque(maxlen=100)
        #: seconds waited before each of the last 100 reconnections (``backoff`` at most
        #: while every connection delivers prices)
        self.reconnect_waits: deque[float] = deque(maxlen=100)
        self.connected = False
        self._feed_stop = threading.Event()
        self._feed_thread: threading.Thread | None = None
        self._reader: PriceStream | None = None

    def start_feed(self) -> bool:
        """Start the stream thread (once)."""
        if self._feed_thread is None:
            self._feed_thread = threading.Thread(
                target=self._feed, name=f"{self.name}-oanda", daemon=True
            )
            self._feed_thread.start()
        return True

    def stop_feed(self) -> None:
        self._feed_stop.set()
        reader = self._reader
        if reader is not None:
            reader.stop(timeout=0)  # closes the response: a blocked read returns at once

    def _feed(self) -> None:
        cfg = self.osm_cfg
        push = self.osm_socket(zmq.PUSH, zmq_url(cfg["router_in"]))
        push.setsockopt(zmq.LINGER, 0)
        instruments = list(cfg["instruments"])
        granularity = cfg.get("backfill") or "M1"
        # a restarted Feeder resumes after the newest tick the Router has (see below)
        last: dict[str, int] = {
            str(k): int(v) for k, v in (cfg.get("resume_after") or {}).items() if k in instruments
        }

        # Symbols backfilled while a candle was still forming (left to the live stream):
        # when the first live quote comes, the candles that completed in between without any
        # quote of ours (a gap or a restart that ended just before a candle closed) are
        # backfilled first, so no period of the feed is skipped.
        unfinished: set[str] = set()
        length = Timeframe.parse(granularity).nanoseconds

        def send(symbol: str, tick: Tick) -> bool:
            if symbol in unfinished:
                unfinished.discard(symbol)
                end = (last.get(symbol, 0) // length + 1) * length  # of the newest quote's candle
                if tick.time >= end + length:  # a whole candle in between
                    fill(symbol, reconnected=True, since=end - 1)
            if tick.time <= last.get(symbol, 0):
                self.stale += 1
                return False
            push.send(dumps(("tick", symbol, tuple(tick))))
            last[symbol] = tick.time
            self.feed_sent += 1
            return True

        def send_backfill(symbol: str, ticks: list[Tick]) -> int:
            # 'backfill' messages, not ticks: the Router marks the bars they complete
            fresh: list[tuple] = []
            newest = last.get(symbol, 0)
            for tick in ticks:
                if tick.time <= newest:
                    self.stale += 1
                    continue
                fresh.append(tuple(tick))
                newest = tick.time
            push_backfill(push, symbol, fresh)
            if fresh:
                last[symbol] = newest
                self.feed_sent += len(fresh)
            return len(fresh)

        def on_price(price: Price) -> None:
            self.connected = True
            if not price.tradeable:
                if not self.nontradeable:
                    self.log_warning(f"{price.instrument}: non-tradeable prices skipped")
                self.nontradeable += 1
                return
            send(price.instrument, price.tick)

        def backfill(last_seen: dict[str, int], reconnected: bool = True) -> None:
            # runs in the stream's thread before the new connection's first price is handled
            if reconnected:
                self.reconnects += 1
                self.reconnect_waits.append(reader.last_wait)
            for symbol in instruments:
                if symbol in last:  # else nothing pushed yet: no gap to fill
                    self.backfill_gaps += 1
                    fill(symbol, reconnected)
                    unfinished.add(symbol)

        def fill(symbol: str, reconnected: bool, since: int | None = None) -> None:
            try:
                start = last[symbol] if since is None else since
                gap = backfill_gap(client, symbol, start, granularity)
            except Exception as exc:  # the stream goes on; the gap is reported
                self.backfill_errors += 1
                self.log_error(f"{symbol}: backfill after a gap failed: {exc}")
                return
            sent = send_backfill(symbol, gap.ticks)
            self.backfilled_ticks += sent
            self.backfilled_bars += gap.candles
            self.backfill_completed += int(gap.completed)
            if sent != len(gap.ticks):  # cannot happen: every quote is after `since`
                self.log_warning(f"{symbol}: {len(gap.ticks) - sent} backfill quotes stale")
            if gap.ticks:
                self._record_backfill(gap, granularity, reconnected)

        try:
            client = client_from_settings(cfg["oanda"])
            reader = PriceStream(
                client, instruments, on_price, backfill=backfill,
                name=f"{self.name}-prices", **dict(cfg.get("stream") or {}),
            )  # fmt: skip
            self._reader = reader
            if last:  # a restarted Feeder: first the candles completed while none ran
                backfill({}, reconnected=False)
            if not self._feed_stop.is_set():
                reader.run()  # until stop_feed, or an error retrying cannot cure
            if reader.error is not None:
                self.feed_error = str(reader.error)
                self.osm_errors += 1
                self.log_error(f"price stream stopped: {reader.error}")
        except zmq.ContextTerminated:
            return
        except Exception as exc:
            self.feed_error = f"{type(exc).__name__}: {exc}"
            self.osm_errors += 1
            self.osm_last_errors.append(traceback.format_exc())
        finally:
            self._feed_socket = push
            self.feed_done = True

    def _record_backfill(self, gap: Backfill, granularity: str, reconnected: bool) -> None:
        entry = {
            "symbol": gap.instrument, "since": gap.since, "first": gap.first,
            "last": gap.last, "bars": gap.candles, "completed": gap.completed,
            "ticks": len(gap.ticks), "granularity": granularity,
            "after": "reconnection" if reconnected else "restart",
        }  # fmt: skip
        self.backfill_log.append(entry)
        span = "none"
        if gap.first is not None and gap.last is not None:
            span = f"{format_time(gap.first)} .. {format_time(gap.last)}"
        cut = "; the bar cut by the gap completed with its candle" if gap.completed else ""
        self.log_info(
            f"{gap.instrument}: gap after {format_time(gap.since)} ({entry['after']}): "
            f"{gap.candles} bars backfilled from {granularity} candles (open times {span})"
            f"{cut}; they reach the Router before any live price"
        )

    def backfilled_periods(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """The last gaps backfilled (oldest first), of ``symbol`` or of all: ``symbol``,
        ``since`` (the last quote before the gap, ns), ``first`` / ``last`` (open times of the
        first and last bar rebuilt from candles, ns; None when none completed), ``bars``,
        ``completed`` (the bar cut by the gap was completed with its candle), ``ticks``,
        ``granularity``, ``after`` ('reconnection' or 'restart'). A bar of the backfill's time
        frame is backfilled when ``first <= bar.time <= last`` for one of these."""
        return [dict(e) for e in self.backfill_log if symbol is None or e["symbol"] == symbol]

    def osm_stats(self) -> dict[str, Any]:
        stats = super().osm_stats()
        reader = self._reader
        stats.update(
            sent=self.feed_sent, done=self.feed_done, nontradeable=self.nontradeable,
            reconnects=self.reconnects, backfilled_bars=self.backfilled_bars,
            backfilled={
                "gaps": self.backfill_gaps, "bars": self.backfilled_bars,
                "ticks": self.backfilled_ticks, "completed": self.backfill_completed,
                "errors": self.backfill_errors,
            },
            reconnect_wait=self.reconnect_waits[-1] if self.reconnect_waits else 0.0,
            bad_lines=reader.bad_lines if reader is not None else 0,
        )  # fmt: skip
        return stats
