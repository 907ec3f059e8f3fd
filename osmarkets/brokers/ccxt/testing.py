"""The conformance kit's venue for the ccxt adapter: ccxt's unmodified ``binance`` class on the
local :class:`~osmarkets.brokers.ccxt.ExchangeSandbox` (see :mod:`osmarkets.testing.venues`)."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from ...data.types import Tick
from ...testing.venues import StreamHandle, Venue
from ..base import OrderEvent
from .broker import CcxtTradingBroker
from .client import write_secret_files
from .sandbox import ExchangeSandbox


class ExchangeSandboxVenue(Venue):
    """:class:`~osmarkets.brokers.ccxt.broker.CcxtTradingBroker` on the exchange sandbox, a
    spot cash account of 1,000,000 USDT; the sandbox's clock is manual (prices move only when
    the kit pins them), so every case is deterministic."""

    capabilities = frozenset({
        "limit", "ioc", "fok", "post_only", "partial_fills", "reconcile", "lost_response",
        "fractional", "cash", "catalogue", "stream",
    })  # fmt: skip
    symbol = "BTC/USDT"
    size = 0.01
    currency = "USDT"
    base = "BTC"
    money_tolerance = 1e-8  # Binance's balances have 8 decimals

    def __init__(self) -> None:
        self.sandbox = ExchangeSandbox(
            symbols=[self.symbol], seed=5, tick_interval=None, balances={"USDT": 1_000_000}
        ).start()
        self._dir = tempfile.mkdtemp(prefix="osm-kit-")
        secrets = write_secret_files(self._dir, self.sandbox.api_key, self.sandbox.secret)
        options = self.sandbox.ccxt_options()
        options.pop("apiKey")
        options.pop("secret")
        self.settings = {
            "exchange": "binance", **secrets, "options": options, "currency": self.currency,
            "state_path": str(Path(self._dir) / "state.json"), "order_deadline": 2.0,
            "poll_interval": 0.0,
        }  # fmt: skip
        self._brokers: list[CcxtTradingBroker] = []
        self.set_price(50_000.0, 50_001.0)

    def broker(self) -> CcxtTradingBroker:
        from .broker import make_ccxt_broker

        broker = make_ccxt_broker(self.settings)
        broker.absent_after = 3.0  # the sandbox keeps no request longer than that
        self._brokers.append(broker)
        return broker

    def set_price(self, bid: float, ask: float) -> None:
        self.sandbox.set_price(self.symbol, bid, ask)

    def quote(self) -> tuple[float, float]:
        bid, ask, *_ = self.sandbox.quote(self.symbol)
        return float(bid), float(ask)

    def settle(self, broker: Any) -> list[OrderEvent]:
        self.sandbox.step()
        return list(broker.poll(force=True))

    def balances(self, broker: Any) -> dict[str, float]:
        held = self.sandbox.balances()
        return {asset: float(b["free"] + b["locked"]) for asset, b in held.items()}

    @contextmanager
    def partial_liquidity(self, units: float) -> Iterator[None]:
        market = self.sandbox._by_symbol[self.symbol]
        with self.sandbox._lock:
            saved, market.book_qty = market.book_qty, Decimal(str(units))
        self.sandbox.step()
        try:
            yield
        finally:
            with self.sandbox._lock:
                market.book_qty = saved
            self.sandbox.step()

    def lose_response(self) -> None:
        self.sandbox.lose_order_responses(1)

    def open_stream(self, on_quote: Callable[[Tick, bool], None]) -> StreamHandle:
        """The adapter's stream (Binance's bookTicker) and backfill (1-second candles), as
        :class:`~osmarkets.agents.ccxt.CcxtFeederAgent` composes them; the sandbox ticks on its
        own meanwhile (the venue's clock is otherwise manual)."""
        from .client import exchange_from_settings
        from .prices import CcxtPriceStream, backfill_quotes

        rest = exchange_from_settings(self.settings)
        last = [0]
        spread = [0.0]
        ticking = threading.Event()

        def live(symbol: str, tick: Tick) -> None:
            spread[0] = tick.ask - tick.bid
            if tick.time > last[0]:
                last[0] = tick.time
                on_quote(tick, False)

        def backfill(_seen: dict[str, int]) -> None:
            if last[0]:
                for tick in backfill_quotes(rest, self.symbol, last[0], spread[0], "S1").ticks:
                    if tick.time > last[0]:
                        last[0] = tick.time
                        on_quote(tick, True)

        def tick_loop() -> None:
            while not ticking.wait(0.05):
                self.sandbox.step()

        self.sandbox.release_price(self.symbol)
        threading.Thread(target=tick_loop, daemon=True, name="kit-sandbox-clock").start()
        # a reconnection waits 1.5 to 3 s: more than two 1-second bars are missed meanwhile
        stream = CcxtPriceStream(self.settings, [self.symbol], live, backfill=backfill,
                                 backoff=3.0, max_backoff=3.0)  # fmt: skip

        def stop() -> None:
            stream.stop()
            ticking.set()

        return StreamHandle(stream.run, stop)

    def interrupt_stream(self) -> None:
        self.sandbox.drop_streams()

    def fine_size(self) -> float:
        return 0.00123

    def bad_size(self) -> float:
        return 0.000123456

    def close(self) -> None:
        self.sandbox.close()
        shutil.rmtree(self._dir, ignore_errors=True)
