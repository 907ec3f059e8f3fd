"""What the broker conformance kit drives: a *venue*, the broker adapter under test plus a way
to move the market it trades on (no osBrain here).

An adapter author writes one :class:`Venue` subclass for a local sandbox of the broker (the
kit never reaches the internet): it makes broker objects on the sandbox's account, pins the
sandbox's price, and lets a broker see what the sandbox did. :class:`SimulatedVenue` and
:class:`OandaSandboxVenue` are the built-in ones (the exchange sandbox's is in
:mod:`osmarkets.brokers.ccxt.testing`); read them as worked examples.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from ..brokers.base import OrderEvent
from ..brokers.simulated import Commission, SimulatedBroker
from ..data.types import Tick

#: What a venue may be able to do. The kit runs a case only when the venue has what it needs:
#: an adapter that lacks a feature is not failed for it, and says so in its capabilities.
CAPABILITIES = frozenset({
    "limit", "stop", "stop_loss", "take_profit",  # order types and attached orders
    "ioc", "fok", "gtd", "reduce_only", "post_only",  # time in force and flags
    "partial_fills",  # the venue can be made to fill an order in parts (partial_liquidity)
    "reconcile",  # a new broker object adopts the account: positions, orders, missed fills
    "lost_response",  # the venue can execute an order and lose the answer (lose_response)
    "fractional",  # sizes below one unit, on the instrument's step (fine_size / bad_size)
    "cash",  # a cash account: balances per asset (crypto spot) rather than a margin account
    "catalogue",  # the venue knows its instruments and refuses others (the simulated broker
    # trades whatever its data holds)
    "stream",  # a price stream that reconnects and backfills (open_stream, interrupt_stream)
})  # fmt: skip


class Venue:
    """The broker under test and its market. Subclass it; the kit's cases use only this.

    A *broker* here is the object a Trader runs: ``submit(order)``, ``cancel(client_id)``,
    ``position(symbol)``, ``positions``, ``equity``, and optionally ``reconcile()`` and
    ``poll(force=True)``, each returning the order events it caused.
    """

    #: what this venue can do (a subset of :data:`CAPABILITIES`)
    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: an instrument the venue trades, and a size of it the account can afford many times
    symbol: str = ""
    size: float = 1.0
    #: the account currency (where fees and P&L are counted), and for a cash account the asset
    #: ``symbol`` buys
    currency: str = ""
    base: str = ""
    #: absolute tolerance of money amounts (the venue's rounding of balances)
    money_tolerance: float = 1e-9
    #: seconds a case waits for something the venue does on its own (a fill after a poll)
    timeout: float = 10.0
    #: seconds of the bars the stream case checks (the backfill's candle length)
    bar_seconds: int = 1

    _ids = itertools.count(1)

    def broker(self) -> Any:
        """A broker object on the venue's account. A second call is a restart: a new object
        (as a new Trader process would make) on the same account and state file."""
        raise NotImplementedError

    def set_price(self, bid: float, ask: float) -> None:
        """Pin ``symbol``'s quote at the venue; orders there execute against it."""
        raise NotImplementedError

    def quote(self) -> tuple[float, float]:
        """The current (bid, ask) of ``symbol`` at the venue."""
        raise NotImplementedError

    def settle(self, broker: Any) -> list[OrderEvent]:
        """Let the venue execute what is due at its current price, then let ``broker`` see it:
        the order events that reached the broker (a live adapter polls)."""
        raise NotImplementedError

    def balances(self, broker: Any) -> dict[str, float]:
        """The account's balances per currency as the venue holds them (a margin account: its
        currency only, realised P&L included)."""
        raise NotImplementedError

    def client_id(self, brain: str = "kit") -> str:
        """A client id no earlier order on the venue's account used."""
        return f"{brain}-{os.getpid():x}{int(time.time() * 1000) % 10**9:x}-{next(self._ids)}"

    # optional knobs: only venues with the matching capability implement them
    @contextmanager
    def partial_liquidity(self, units: float) -> Iterator[None]:
        """Within the block, the venue fills at most ``units`` of an order per price."""
        raise NotImplementedError
        yield

    def lose_response(self) -> None:
        """The next order request executes at the venue and its answer is lost."""
        raise NotImplementedError

    def fine_size(self) -> float:
        """A fractional size on the instrument's step (e.g. 0.00123 BTC)."""
        raise NotImplementedError

    def bad_size(self) -> float:
        """A size finer than the instrument's step."""
        raise NotImplementedError

    def open_stream(self, on_quote: Callable[[Tick, bool], None]) -> StreamHandle:
        """Start the adapter's price stream of ``symbol`` in a thread, with its backfill,
        composed as the adapter's Feeder composes them: ``on_quote(tick, backfilled)`` for
        every live quote and every backfill quote, in time order."""
        raise NotImplementedError

    def interrupt_stream(self) -> None:
        """Cut the stream's connection now; the stream must stay away longer than two bars
        (a reconnection backoff, a silence) so that, without its backfill, bars would be lost."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the venue holds (servers, files)."""


class StreamHandle:
    """A stream running in a thread: ``target()`` until ``stop()`` is called."""

    def __init__(self, target: Callable[[], None], stop: Callable[[], None]) -> None:
        self.error: BaseException | None = None
        self._stop = stop

        def run() -> None:
            try:
                target()
            except BaseException as exc:  # reported by stop()
                self.error = exc

        self._thread = threading.Thread(target=run, name="kit-stream", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the stream did not stop within {timeout} s")
        if self.error is not None:
            raise self.error


class SimulatedVenue(Venue):
    """The embedded simulated broker: it *is* the venue (its state is the account's, so a
    restart is the same object and there is nothing to reconcile)."""

    capabilities = frozenset({
        "limit", "stop", "stop_loss", "take_profit", "ioc", "fok", "gtd", "reduce_only",
        "post_only", "partial_fills", "fractional",
    })  # fmt: skip
    symbol = "BTC_USD"
    size = 2.0
    currency = "USD"

    def __init__(self) -> None:
        from ..instruments import Instrument

        spec = Instrument(self.symbol, lot_size=0.00001, min_size=0.00001)
        self._broker = SimulatedBroker(
            1_000_000.0, commission=Commission(fraction=0.001), instruments=[spec],
            currency=self.currency,
        )  # fmt: skip
        self._bid, self._ask = 99.0, 101.0
        self._time = 1_700_000_000_000_000_000
        self._broker.on_tick(self.symbol, Tick(self._time, self._bid, self._ask))

    def broker(self) -> SimulatedBroker:
        return self._broker

    def set_price(self, bid: float, ask: float) -> None:
        self._bid, self._ask = bid, ask

    def quote(self) -> tuple[float, float]:
        return self._bid, self._ask

    def settle(self, broker: Any) -> list[OrderEvent]:
        self._time += 1_000_000_000
        return list(broker.on_tick(self.symbol, Tick(self._time, self._bid, self._ask)))

    def balances(self, broker: Any) -> dict[str, float]:
        return {self.currency: broker.balance}

    @contextmanager
    def partial_liquidity(self, units: float) -> Iterator[None]:
        table = self._broker._max_fill
        saved = dict(table)
        table[None] = units
        try:
            yield
        finally:
            table.clear()
            table.update(saved)

    def fine_size(self) -> float:
        return 0.00123

    def bad_size(self) -> float:
        return 0.000123456


class OandaSandboxVenue(Venue):
    """The OANDA v20 adapter (:class:`~osmarkets.brokers.oanda.trading.OandaTradingBroker`,
    what the Trader runs) on the bundled :class:`~osmarkets.brokers.oanda.OandaSandbox`."""

    capabilities = frozenset({
        "limit", "stop", "stop_loss", "take_profit", "reduce_only", "reconcile",
        "lost_response", "catalogue", "stream",
    })  # fmt: skip
    symbol = "EUR_USD"
    size = 1000.0
    currency = "USD"
    money_tolerance = 1e-3  # OANDA's balances are decimals of 4 places

    def __init__(self) -> None:
        from ..brokers.oanda import OandaSandbox

        self._token = "kit-" + os.urandom(8).hex()
        # a clock ten times real time: a short reconnection loses several S5 bars
        base, origin = time.time_ns(), time.monotonic_ns()
        self.sandbox = OandaSandbox(
            token=self._token, instruments=[self.symbol], seed=3, heartbeat=0.2,
            tick_interval=0.05, clock=lambda: base + (time.monotonic_ns() - origin) * 10,
        ).start()  # fmt: skip
        self._dir = tempfile.mkdtemp(prefix="osm-kit-")
        token_file = Path(self._dir) / "token"
        token_file.write_text(self._token)
        self.settings = {
            "account_id": self.sandbox.account_id, "environment": "practice",
            "rest_url": self.sandbox.rest_url, "stream_url": self.sandbox.stream_url,
            "token_file": str(token_file), "state_path": str(Path(self._dir) / "state.json"),
            "options": {"backoff": 0.01, "max_backoff": 0.05, "timeout": (2.0, 5.0),
                        "order_deadline": 2.0},
            "poll_interval": 0.0, "resolve_interval": 0.2,
        }  # fmt: skip
        self._brokers: list[Any] = []
        self.set_price(1.09990, 1.10010)

    def broker(self) -> Any:
        from ..brokers.oanda.trading import make_trading_broker

        broker = make_trading_broker(self.settings)
        self._brokers.append(broker)
        return broker

    def set_price(self, bid: float, ask: float) -> None:
        self.sandbox.set_price(self.symbol, bid, ask)

    def quote(self) -> tuple[float, float]:
        return self.sandbox._instrument(self.symbol).quote(self.sandbox.clock())

    def settle(self, broker: Any) -> list[OrderEvent]:
        self.sandbox.settle()
        return list(broker.poll(force=True))

    def balances(self, broker: Any) -> dict[str, float]:
        summary = broker.client.account_summary()["account"]
        return {self.currency: float(summary["balance"])}

    def lose_response(self) -> None:
        self.sandbox.lose_order_responses(1)

    bar_seconds = 5  # S5 candles: the finest OANDA has

    def open_stream(self, on_quote: Callable[[Tick, bool], None]) -> StreamHandle:
        from ..brokers.oanda.stream import PriceStream, backfill_gap
        from ..brokers.oanda.trading import client_from_settings

        client = client_from_settings(self.settings)
        last = [0]
        self.sandbox.release_price(self.symbol)  # a moving price
        self.sandbox.drop_streams(after=40)  # the first connection ends after 40 messages

        def on_price(price: Any) -> None:
            if price.tradeable and price.tick.time > last[0]:
                last[0] = price.tick.time
                on_quote(price.tick, False)

        def backfill(_seen: dict[str, int]) -> None:  # as OandaFeederAgent does
            if last[0]:
                for tick in backfill_gap(client, self.symbol, last[0], "S5").ticks:
                    if tick.time > last[0]:
                        last[0] = tick.time
                        on_quote(tick, True)

        # a reconnection waits 1.5 to 3 s, 15 to 30 s of the sandbox's clock: several S5 bars
        stream = PriceStream(client, [self.symbol], on_price, backfill=backfill, backoff=3.0,
                             max_backoff=3.0)  # fmt: skip
        return StreamHandle(stream.run, lambda: stream.stop(timeout=0))

    def interrupt_stream(self) -> None:
        pass  # planned in open_stream: the sandbox ends the first connection by itself

    def close(self) -> None:
        import shutil

        for broker in self._brokers:
            with contextlib.suppress(Exception):  # closing what may already be closed
                broker.client.close()
        self.sandbox.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def venue_fixture(factory: Any) -> Any:
    """A pytest fixture yielding ``factory()`` and closing it after the test: write
    ``venue = venue_fixture(MyVenue)`` in a :class:`BrokerConformance` subclass."""
    import pytest

    @pytest.fixture
    def venue(self: Any) -> Iterator[Venue]:
        made = factory()
        try:
            yield made
        finally:
            made.close()

    return venue
