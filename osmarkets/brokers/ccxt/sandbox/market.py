"""The simulated spot markets of the exchange sandbox: symbols, filters, prices, books, klines.

Everything here is a pure function of time and seed (plus a pinned quote where a test pinned
one), so the REST ticker, the order book, the klines and the websocket streams all tell the
same story, and the same seed gives the same history on every run.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np

from ...oanda.sandbox import PricePath, _hash_uniform

#: Binance kline intervals the sandbox serves, in milliseconds.
INTERVALS_MS: dict[str, int] = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
}
_WEEK_ORIGIN_MS = 345_600_000  # Binance's weekly klines open on Mondays (1970-01-05)
_OANDA_VOL = 0.08  # the annual volatility PricePath is built for
_KNOT_MS = 5_000  # PricePath is piecewise linear between multiples of 5 s

# symbol: (start price, tickSize, stepSize, minQty, minNotional, default top-of-book qty,
# spread in ticks, annual volatility)
CATALOGUE: dict[str, tuple[float, str, str, str, str, str, int, float]] = {
    "BTC/USDT": (60_000.0, "0.01", "0.00001", "0.00001", "5", "1.5", 1, 0.6),
    "ETH/USDT": (3_000.0, "0.01", "0.0001", "0.0001", "5", "20", 1, 0.7),
    "BNB/USDT": (600.0, "0.01", "0.001", "0.001", "5", "50", 1, 0.6),
    "SOL/USDT": (150.0, "0.01", "0.001", "0.001", "5", "200", 1, 0.9),
    "XRP/USDT": (0.5, "0.0001", "0.1", "0.1", "5", "50000", 1, 0.9),
    "ETH/BTC": (0.05, "0.00001", "0.0001", "0.0001", "0.0001", "20", 1, 0.5),
}  # fmt: skip
SYMBOLS = tuple(CATALOGUE)
BOOK_LEVELS = 50  # price levels per side of the simulated book


def fmt(value: Decimal, places: int = 8) -> str:
    """Binance's decimal strings: always ``places`` decimals (``"0.00100000"``)."""
    return f"{value:.{places}f}"


@dataclass
class Market:
    """One spot market: its filters, its price path and its current (ticked) book."""

    symbol: str
    seed: int
    book_qty: Decimal | None = None
    base: str = field(init=False)
    quote: str = field(init=False)
    id: str = field(init=False)
    tick: Decimal = field(init=False)
    step: Decimal = field(init=False)
    min_qty: Decimal = field(init=False)
    min_notional: Decimal = field(init=False)
    spread_ticks: int = field(init=False)
    path: PricePath = field(init=False)
    pinned: tuple[Decimal, Decimal] | None = None
    # the state of the last tick: what every REST call and every order sees until the next
    time_ms: int = 0
    bid: Decimal = Decimal(0)
    ask: Decimal = Decimal(0)
    last: Decimal = Decimal(0)
    update_id: int = 0
    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        start, tick, step, min_qty, notional, qty, spread, vol = CATALOGUE[self.symbol]
        self.base, self.quote = self.symbol.split("/")
        self.id = self.base + self.quote
        self.tick, self.step = Decimal(tick), Decimal(step)
        self.min_qty, self.min_notional = Decimal(min_qty), Decimal(notional)
        if self.book_qty is None:
            self.book_qty = Decimal(qty)
        self.spread_ticks = spread
        self.path = PricePath(start, self.seed, "binance:" + self.symbol)
        self._power = vol / _OANDA_VOL
        self.update_id = 1_000_000 + zlib.crc32(self.symbol.encode()) % 1_000_000

    # -- prices ----------------------------------------------------------------------------
    def mids(self, times_ms: np.ndarray) -> np.ndarray:
        """The simulated mid price at each time (ms): the OANDA sandbox's seeded path, its
        log-returns scaled from FX to crypto volatility."""
        raw = self.path.mid(np.asarray(times_ms, dtype=np.int64) * 1_000_000)
        return self.path.start * (raw / self.path.start) ** self._power

    def round_price(self, value: float | Decimal) -> Decimal:
        ticks = (Decimal(str(value)) / self.tick).quantize(Decimal(1), ROUND_HALF_UP)
        return max(ticks, Decimal(1)) * self.tick

    def floor_qty(self, value: Decimal) -> Decimal:
        return (value / self.step).to_integral_value(ROUND_DOWN) * self.step

    def quote_at(self, time_ms: int) -> tuple[Decimal, Decimal, Decimal]:
        """(bid, ask, last) at ``time_ms``; the pinned quote while one is pinned."""
        if self.pinned is not None:
            bid, ask = self.pinned
            return bid, ask, self.round_price((bid + ask) / 2)
        last = self.round_price(float(self.mids(np.array([time_ms]))[0]))
        half = self.spread_ticks // 2
        bid = max(last - half * self.tick, self.tick)
        return bid, bid + self.spread_ticks * self.tick, last

    def advance(self, time_ms: int) -> dict[str, Any] | None:
        """Move to ``time_ms``: recompute the quote and the book. Returns the Binance
        ``depthUpdate`` diff when the book changed (and bumps the update id), else None."""
        self.time_ms = time_ms
        self.bid, self.ask, self.last = self.quote_at(time_ms)
        assert self.book_qty is not None
        bids = {self.bid - k * self.tick: self.book_qty for k in range(BOOK_LEVELS)}
        bids = {p: q for p, q in bids.items() if p > 0}
        asks = {self.ask + k * self.tick: self.book_qty for k in range(BOOK_LEVELS)}
        diff_b = _diff(self.bids, bids)
        diff_a = _diff(self.asks, asks)
        self.bids, self.asks = bids, asks
        if not diff_b and not diff_a:
            return None
        self.update_id += 1
        return {
            "e": "depthUpdate",
            "E": time_ms,
            "s": self.id,
            "U": self.update_id,
            "u": self.update_id,
            "b": [[fmt(p), fmt(q)] for p, q in diff_b],
            "a": [[fmt(p), fmt(q)] for p, q in diff_a],
        }

    def levels(self, side: str) -> list[tuple[Decimal, Decimal]]:
        """The side a taker of ``side`` hits: asks (ascending) for a buy, bids (descending)
        for a sell."""
        if side == "BUY":
            return sorted(self.asks.items())
        return sorted(self.bids.items(), reverse=True)

    def depth(self, limit: int) -> dict[str, Any]:
        return {
            "lastUpdateId": self.update_id,
            "bids": [[fmt(p), fmt(q)] for p, q in self.levels("SELL")[:limit]],
            "asks": [[fmt(p), fmt(q)] for p, q in self.levels("BUY")[:limit]],
        }

    def book_ticker(self) -> dict[str, Any]:
        return {
            "symbol": self.id,
            "bidPrice": fmt(self.bid),
            "bidQty": fmt(self.bids.get(self.bid, Decimal(0))),
            "askPrice": fmt(self.ask),
            "askQty": fmt(self.asks.get(self.ask, Decimal(0))),
        }

    # -- klines ----------------------------------------------------------------------------
    def kline_starts(
        self, interval: str, start: int | None, end: int | None, limit: int, now: int
    ) -> np.ndarray:
        """Open times of the klines Binance returns for these parameters: from ``start``
        forwards, else the last ``limit`` up to ``end`` (or now)."""
        step = INTERVALS_MS[interval]
        origin = _WEEK_ORIGIN_MS if interval == "1w" else 0
        last_open = (min(end if end is not None else now, now) - origin) // step * step + origin
        if start is not None:
            first = -((origin - start) // step) * step + origin  # opens at or after start
            opens = np.arange(first, last_open + 1, step, dtype=np.int64)[:limit]
        else:
            opens = np.arange(last_open - (limit - 1) * step, last_open + 1, step, dtype=np.int64)
        return opens[opens >= 0]

    def klines(self, interval: str, opens: np.ndarray, now: int) -> list[list[Any]]:
        """Binance kline rows. High and low are exact for intervals up to 10 minutes (the
        path is piecewise linear between 5 s knots, all sampled) and sampled every
        ``interval / 120`` beyond. The kline still open closes at the last tick's price."""
        if not len(opens):
            return []
        step = INTERVALS_MS[interval]
        closes = np.minimum(opens + step, max(now, 0))
        n = int(min(max(step // _KNOT_MS, 1), 120))
        frac = np.linspace(0.0, 1.0, n + 1)
        times = opens[:, None] + ((closes - opens)[:, None] * frac[None, :]).astype(np.int64)
        times = np.minimum(times, now)
        mids = self.mids(times.ravel()).reshape(times.shape)
        tick = float(self.tick)
        mids = np.maximum(np.round(mids / tick), 1) * tick
        places = max(-self.tick.as_tuple().exponent, 0)  # type: ignore[operator]
        noise = np.abs(_hash_uniform(self.path.key, opens // 1000))
        span = np.maximum((closes - opens) / 1000.0, 1.0)
        volume = (noise + 0.05) * span * float(self.book_qty or 1) * 0.2
        volume = np.floor(volume / float(self.step)) * float(self.step)
        rows = []
        for i in range(len(opens)):
            o, h, lo, c = mids[i, 0], mids[i].max(), mids[i].min(), mids[i, -1]
            vol = Decimal(f"{volume[i]:.8f}")
            quote_vol = vol * Decimal(f"{(o + c) / 2:.{places}f}")
            rows.append(
                [
                    int(opens[i]),
                    f"{o:.{places}f}",
                    f"{h:.{places}f}",
                    f"{lo:.{places}f}",
                    f"{c:.{places}f}",
                    fmt(vol),
                    int(opens[i] + step - 1),
                    fmt(quote_vol),
                    int(noise[i] * 1000) + 1,
                    fmt((vol / 2).quantize(Decimal("1e-8"))),
                    fmt((quote_vol / 2).quantize(Decimal("1e-8"))),
                    "0",
                ]
            )
        return rows

    def day_stats(self, now: int) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
        """(open, high, low, volume, quote volume) of the rolling 24 h before ``now``."""
        times = np.linspace(now - 86_400_000, now, 289).astype(np.int64)
        mids = [self.round_price(float(m)) for m in self.mids(times)]
        mids[-1] = self.last
        volume = self.floor_qty(Decimal(f"{float(self.book_qty or 1) * 3000:.8f}"))
        return mids[0], max(mids), min(mids), volume, volume * self.last

    def symbol_info(self) -> dict[str, Any]:
        """The ``exchangeInfo`` entry, with the filters ccxt reads precision and limits from."""
        return {
            "symbol": self.id,
            "status": "TRADING",
            "baseAsset": self.base,
            "baseAssetPrecision": 8,
            "quoteAsset": self.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": [
                "LIMIT",
                "LIMIT_MAKER",
                "MARKET",
                "STOP_LOSS_LIMIT",
                "TAKE_PROFIT_LIMIT",
            ],
            "icebergAllowed": False,
            "ocoAllowed": False,
            "otoAllowed": False,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": False,
            "cancelReplaceAllowed": False,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": fmt(self.tick),
                    "maxPrice": fmt(Decimal(1_000_000)),
                    "tickSize": fmt(self.tick),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": fmt(self.min_qty),
                    "maxQty": fmt(Decimal(9_000)),
                    "stepSize": fmt(self.step),
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": fmt(self.min_notional),
                    "applyMinToMarket": True,
                    "maxNotional": fmt(Decimal(9_000_000)),
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
                {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER"],
        }


def _diff(
    old: dict[Decimal, Decimal], new: dict[Decimal, Decimal]
) -> list[tuple[Decimal, Decimal]]:
    """Binance diff-depth entries: changed levels with their new quantity, gone ones at 0."""
    out = [(p, Decimal(0)) for p in old if p not in new]
    out += [(p, q) for p, q in new.items() if old.get(p) != q]
    return sorted(out)
