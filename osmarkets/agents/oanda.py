"""The OANDA Feeder: OANDA's pricing stream, read in a worker thread, pushed to the Router.

The stream reader (:class:`~osmarkets.brokers.oanda.PriceStream`) runs in the Feeder's thread
with its own PUSH socket, so the agent's loop stays free for the proxy and the Overmind. It
reconnects with backoff when the stream ends, fails or goes silent, and after each
reconnection pushes the candles completed meanwhile as synthetic quotes
(:func:`~osmarkets.brokers.oanda.trading.backfill_ticks`), before any new price, so the
Router's bars stay complete. Non-tradeable prices (a halted market, a closed session) are not
bars' material: they are skipped and counted. The access token is read from a file readable
only by the user (see :func:`~osmarkets.brokers.oanda.trading.client_from_settings`), never
kept as an attribute.
"""

from __future__ import annotations

import threading
import traceback
from typing import Any

import zmq

from ..brokers.oanda.parsers import Price
from ..brokers.oanda.stream import PriceStream
from ..brokers.oanda.trading import backfill_ticks, client_from_settings
from ..data.types import Tick
from .base import OsmAgent, dumps
from .feeder import zmq_url


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
        self.backfilled_bars = 0
        self.backfilled_ticks = 0
        self.backfill_errors = 0
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

        def send(symbol: str, tick: Tick) -> bool:
            if tick.time <= last.get(symbol, 0):
                self.stale += 1
                return False
            push.send(dumps(("tick", symbol, tuple(tick))))
            last[symbol] = tick.time
            self.feed_sent += 1
            return True

        def on_price(price: Price) -> None:
            self.connected = True
            if not price.tradeable:
                if not self.nontradeable:
                    self.log_warning(f"{price.instrument}: non-tradeable prices skipped")
                self.nontradeable += 1
                return
            send(price.instrument, price.tick)

        def backfill(last_seen: dict[str, int]) -> None:
            self.reconnects += 1
            for symbol in instruments:
                since = last.get(symbol)
                if since is None:
                    continue
                try:
                    ticks = backfill_ticks(client, symbol, since, granularity)
                except Exception as exc:  # the stream goes on; the gap is reported
                    self.backfill_errors += 1
                    self.log_error(f"{symbol}: backfill after reconnection failed: {exc}")
                    continue
                sent = sum(send(symbol, tick) for tick in ticks)
                self.backfilled_ticks += sent
                self.backfilled_bars += sent // 4
                if ticks:
                    self.log_info(f"{symbol}: {len(ticks) // 4} bars backfilled after a gap")

        try:
            client = client_from_settings(cfg["oanda"])
            reader = PriceStream(
                client, instruments, on_price, backfill=backfill,
                name=f"{self.name}-prices", **dict(cfg.get("stream") or {}),
            )  # fmt: skip
            self._reader = reader
            if last:  # a restarted Feeder: first the candles completed while none ran
                backfill({})
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

    def osm_stats(self) -> dict[str, Any]:
        stats = super().osm_stats()
        reader = self._reader
        stats.update(
            sent=self.feed_sent, done=self.feed_done, nontradeable=self.nontradeable,
            reconnects=self.reconnects, backfilled_bars=self.backfilled_bars,
            bad_lines=reader.bad_lines if reader is not None else 0,
        )  # fmt: skip
        return stats
