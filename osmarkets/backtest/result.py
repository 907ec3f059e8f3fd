"""The outcome of a backtest or a simulated run: fills, equity curve, statistics and reports.

The same :class:`Result` comes out of the in-process engine and out of
``SimulatedArchitecture.result()`` (through :meth:`Result.from_run`), so reports and
comparisons do not care which runner produced them.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..brokers.base import Order, OrderEvent
from . import stats
from .records import RecordLog

TRADE_COLUMNS = (
    "time", "symbol", "side", "size", "price", "commission", "brain", "reason", "client_id",
)  # fmt: skip
ORDER_COLUMNS = (
    "client_id", "symbol", "side", "type", "size", "price", "state", "reason", "submit_time",
    "final_time", "filled_size", "fill_price", "commission", "brain",
)  # fmt: skip
#: Final states of an order in :attr:`Result.orders`: ``accepted`` (still working at the end)
#: and ``pending`` (sent, no answer from the broker yet) are the open ones.
ORDER_STATES = (
    "filled", "partially_filled", "rejected", "cancelled", "expired", "accepted", "pending",
)  # fmt: skip
_OPEN_STATES = ("pending", "accepted")
#: Rows of a table shown in the HTML report; longer tables are cut with a note.
HTML_MAX_ROWS = 1000
#: A time step this many times the median bar spacing (a night, a weekend) breaks the plot lines.
GAP_FACTOR = 10.0
#: Above this many fills of one side, the plot's markers are small, faint and under the price.
MANY_FILLS = 200


def holdings_frame(trades: pd.DataFrame, index: pd.DatetimeIndex) -> pd.DataFrame:
    """Units held per symbol after each bar of ``index`` (fills stamped at or before the bar's
    time count), from the fills alone."""
    columns = {}
    stamps = index.as_unit("ns").asi8 if len(index) else np.empty(0, dtype=np.int64)
    for symbol, group in trades.groupby("symbol", sort=False):
        signed = np.where(group["side"] == "buy", 1.0, -1.0) * group["size"].to_numpy(float)
        times = pd.DatetimeIndex(group["time"]).as_unit("ns").asi8
        units = np.cumsum(signed)
        where = np.searchsorted(times, stamps, side="right") - 1
        columns[symbol] = np.where(where >= 0, units[np.maximum(where, 0)], 0.0)
    return pd.DataFrame(columns, index=index)


def trades_frame(fills: Iterable[OrderEvent]) -> pd.DataFrame:
    """One row per fill, in the order they happened (``time`` as UTC timestamps)."""
    if isinstance(fills, RecordLog):
        return _trades_from_log(fills)
    rows = [e for e in fills if e.kind == "filled"]
    times = np.array([e.time for e in rows], dtype=np.int64)
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime(times, unit="ns", utc=True),  # ns even when empty
            "symbol": pd.Series([e.symbol for e in rows], dtype=object),
            "side": pd.Series([e.side for e in rows], dtype=object),
            "size": np.array([e.size for e in rows], dtype=float),
            "price": np.array([e.price for e in rows], dtype=float),
            "commission": np.array([e.commission for e in rows], dtype=float),
            "brain": pd.Series([e.brain for e in rows], dtype=object),
            "reason": pd.Series([e.reason for e in rows], dtype=object),
            "client_id": pd.Series([e.client_id for e in rows], dtype=object),
        },
        columns=list(TRADE_COLUMNS),
    )
    return frame


class _OrderRow:
    """One order's row while :func:`orders_frame` runs (slots: a third of a dict's memory)."""

    __slots__ = (
        "client_id", "symbol", "side", "type", "size", "price", "state", "reason",
        "submit_time", "final_time", "filled_size", "value", "commission", "brain",
    )  # fmt: skip
    client_id: str
    symbol: str
    side: str
    type: str
    size: float
    price: float
    state: str
    reason: str
    submit_time: int
    final_time: int
    filled_size: float
    value: float
    commission: float
    brain: str

    def __init__(self, **values: Any) -> None:
        for name, value in values.items():
            setattr(self, name, value)


@functools.cache
def _no_trades() -> pd.DataFrame:
    """The trades frame of a run without fills, built once (about 1 ms; a copy is 20 us)."""
    return trades_frame([])


def _trades_from_log(log: RecordLog[OrderEvent]) -> pd.DataFrame:
    """:func:`trades_frame` from a columnar log, without making a tuple per fill."""
    kinds = log.take("kind", np.arange(len(log)))
    keep = np.flatnonzero(kinds == "filled") if len(kinds) else np.zeros(0, dtype=np.int64)
    del kinds
    if not len(keep):
        return _no_trades().copy()

    def texts(name: str) -> pd.Series:
        return pd.Series(log.take(name, keep), dtype=object, copy=False)

    def numbers(name: str) -> np.ndarray:
        return log.take(name, keep).astype(float)

    times = log.take("time", keep).astype(np.int64)
    return pd.DataFrame(
        {
            "time": pd.to_datetime(times, unit="ns", utc=True),
            "symbol": texts("symbol"),
            "side": texts("side"),
            "size": numbers("size"),
            "price": numbers("price"),
            "commission": numbers("commission"),
            "brain": texts("brain"),
            "reason": texts("reason"),
            "client_id": texts("client_id"),
        },
        columns=list(TRADE_COLUMNS),
    )


def orders_frame(
    events: Iterable[OrderEvent], orders: Iterable[Order] | None = None
) -> pd.DataFrame:
    """One row per order (columns :data:`ORDER_COLUMNS`) with its final state, from every order
    event of a run and, when known, the orders sent (their type, price and submit time).

    With ``orders``, the rows are exactly those orders, in the order they were sent, and events
    about other client ids are ignored; without, every client id seen in an event is an order.
    ``state`` is one of :data:`ORDER_STATES`: ``filled`` when the fills add up to the order's
    size, ``partially_filled`` when they cover part of it (whatever ended the rest: the
    ``reason`` says), ``rejected``, ``cancelled``, ``expired`` (a cancel whose reason names an
    expiry, as OANDA's ``TIME_IN_FORCE_EXPIRED``), else ``accepted`` or ``pending`` when it was
    still open at the end. Fills with a reason (a position's stop-loss, take-profit, trailing
    stop or a closeout, which carry the client id of the order that opened the position) are
    not fills of the order: they are in the trades only. A refusal that comes after the order
    ended (a cancel request for a filled order) does not change its state. ``submit_time`` is
    when the Brain sent it (the first event's time when unknown), ``final_time`` the time of
    its last event (an event stamped before the order was sent is counted at the send time);
    ``fill_price`` is the size-weighted average fill price.
    """
    rows: dict[str, _OrderRow] = {}
    known = orders is not None
    for order in orders or ():
        rows.setdefault(
            order.client_id,
            _OrderRow(**{
                "client_id": order.client_id, "symbol": order.symbol, "side": order.side,
                "type": order.type, "size": float(order.size),
                "price": math.nan if order.price is None else float(order.price),
                "state": "pending", "reason": "", "submit_time": int(order.time),
                "final_time": int(order.time), "filled_size": 0.0, "value": 0.0,
                "commission": 0.0, "brain": order.brain,
            }),
        )  # fmt: skip
    for event in events:
        kind = event.kind
        row = rows.get(event.client_id)
        if row is None:
            if known or not event.client_id or (kind == "filled" and event.reason):
                continue
            if kind == "rejected" and not event.symbol:
                continue  # a refused cancel request for an order never seen
            row = rows[event.client_id] = _OrderRow(**{
                "client_id": event.client_id, "symbol": event.symbol, "side": event.side,
                "type": "", "size": float(event.size), "price": math.nan, "state": "pending",
                "reason": "", "submit_time": int(event.time), "final_time": int(event.time),
                "filled_size": 0.0, "value": 0.0, "commission": 0.0, "brain": event.brain,
            })  # fmt: skip
        state = row.state
        if kind == "filled":
            if event.reason:
                continue  # a protective order or closeout of the position: a trade, not this order
            row.filled_size += event.size
            row.value += event.size * event.price
            row.commission += event.commission
            row.final_time = int(event.time)
            full = row.filled_size >= row.size * (1 - 1e-9)
            row.state = "filled" if full else "partially_filled"
            continue
        if state not in _OPEN_STATES and state != "partially_filled":
            continue  # the order had ended: e.g. a cancel request refused as "already filled"
        when = max(int(event.time), row.submit_time)
        if state == "partially_filled":
            if kind in ("cancelled", "expired", "rejected"):  # the rest of it ended
                row.reason, row.final_time = event.reason, when
            continue
        if kind == "accepted":
            row.state = "accepted"
        elif kind == "rejected":
            row.state = "rejected"
        elif kind == "cancelled":
            expired = "expir" in event.reason.lower()
            row.state = "expired" if expired else "cancelled"
        elif kind == "expired":
            row.state = "expired"
        else:
            continue
        row.reason, row.final_time = event.reason, when
    items = list(rows.values())
    filled = np.array([r.filled_size for r in items], dtype=float)
    value = np.array([r.value for r in items], dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        average = np.where(filled > 0, value / np.where(filled > 0, filled, 1.0), np.nan)

    def times(name: str) -> pd.DatetimeIndex:
        stamps = np.array([getattr(r, name) for r in items], dtype=np.int64)
        return pd.DatetimeIndex(
            pd.DatetimeIndex(pd.to_datetime(stamps, unit="ns", utc=True)).where(stamps > 0)
        )

    def texts(name: str) -> pd.Series:
        return pd.Series([getattr(r, name) for r in items], dtype=object)

    return pd.DataFrame(
        {
            "client_id": texts("client_id"),
            "symbol": texts("symbol"),
            "side": texts("side"),
            "type": texts("type"),
            "size": np.array([r.size for r in items], dtype=float),
            "price": np.array([r.price for r in items], dtype=float),
            "state": texts("state"),
            "reason": texts("reason"),
            "submit_time": times("submit_time"),
            "final_time": times("final_time"),
            "filled_size": filled,
            "fill_price": average,
            "commission": np.array([r.commission for r in items], dtype=float),
            "brain": texts("brain"),
        },
        columns=list(ORDER_COLUMNS),
    )


def _fill_events(trades: pd.DataFrame) -> list[OrderEvent]:
    """The fills of a trades frame as events (for a Result built without its order events)."""
    if not len(trades) or "client_id" not in trades:
        return []
    stamps = pd.DatetimeIndex(trades["time"]).as_unit("ns").asi8

    def column(name: str, default: Any) -> Any:
        return trades[name] if name in trades else [default] * len(trades)

    return [
        OrderEvent(
            "filled",
            str(cid),
            str(symbol),
            str(side),
            float(size),
            float(price),
            int(time),
            str(reason or ""),
            float(commission),
            str(brain or ""),
        )  # fmt: skip
        for cid, symbol, side, size, price, time, reason, commission, brain in zip(
            trades["client_id"],
            trades["symbol"],
            trades["side"],
            trades["size"],
            trades["price"],
            stamps,
            column("reason", ""),
            column("commission", 0.0),
            column("brain", ""),
            strict=True,
        )  # fmt: skip
    ]


def _multipliers(values: Mapping[str, float] | None) -> dict[str, float]:
    """The multipliers other than 1 (so an all-ones mapping changes nothing), checked."""
    table = {}
    for symbol, value in (values or {}).items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"multipliers[{symbol!r}]: expected a number, got {value!r:.60}")
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"multipliers[{symbol!r}]: expected a positive number, got {value!r}")
        if value != 1:
            table[symbol] = float(value)
    return table


def _round_trips(trades: pd.DataFrame, multipliers: Mapping[str, float]) -> pd.DataFrame:
    """:func:`stats.round_trips` with each trip's ``pnl`` in account currency.

    stats.round_trips values a trip as size times price. For symbols with a multiplier the
    trips are built a second time from prices scaled by it (the value of one unit), which
    gives ``direction * size * (exit_price - entry_price) * multiplier - commission``; the
    prices shown stay the traded ones. Both passes see the same sizes in the same order, so
    their rows match one to one.
    """
    trips = stats.round_trips(trades)
    if not len(trips):
        return trips
    factor = trades["symbol"].map(multipliers).fillna(1.0).astype(float)
    if not bool((factor == 1.0).all()):
        valued = trades.assign(price=trades["price"] * factor)
        trips["pnl"] = stats.round_trips(valued)["pnl"].to_numpy()
    if "conversion" in trades:  # P&L realised in the account currency at the closing fill
        at = trades.assign(exit_time=trades["time"]).groupby(["symbol", "exit_time"])
        rate = at["conversion"].last()
        keys = pd.MultiIndex.from_arrays([trips["symbol"], trips["exit_time"]])
        closing = rate.reindex(keys).to_numpy(dtype=float)
        trips["pnl"] = (trips["pnl"] + trips["commission"]) * closing - trips["commission"]
    return trips


class Result:
    """Fills, equity curve and statistics of one run.

    ``trades``: one row per fill (time, symbol, side, size, price, commission, brain, reason,
    client_id). ``equity``: account value after every bar (indexed by the bar's time).
    ``positions``: round trips. ``stats``: the summary statistics of
    :func:`osmarkets.backtest.stats.summary` (see :doc:`statistics`). ``final_value``: cash
    plus open positions marked at the last close. ``multipliers``: symbol -> contract
    multiplier (see :mod:`osmarkets.instruments`); the round trips' ``pnl`` and the statistics
    drawn from it (win rate, profit factor, average trade) are in account currency, price move
    times size times multiplier. Symbols left out have a multiplier of 1.

    ``orders``: one row per order sent, with its final state (:func:`orders_frame`; built from
    the trades' fills when not given); ``rejections``: why orders were rejected, reason ->
    count; ``stats`` adds ``orders``, ``orders_filled``, ``orders_rejected`` and
    ``orders_cancelled`` to the summary.
    """

    def __init__(
        self,
        trades: pd.DataFrame,
        equity: pd.Series,
        *,
        initial_cash: float,
        prices: Mapping[str, pd.DataFrame] | None = None,
        open_positions: Mapping[str, float] | None = None,
        name: str = "",
        params: Mapping[str, Any] | None = None,
        multipliers: Mapping[str, float] | None = None,
        orders: pd.DataFrame | None = None,
    ) -> None:
        self.trades = trades
        self.equity = equity
        self.initial_cash = float(initial_cash)
        self.prices = dict(prices or {})
        self.open_positions = dict(open_positions or {})
        self.name = name
        self.params = dict(params or {})
        self.multipliers = _multipliers(multipliers)
        self._stats: dict[str, Any] | None = None
        self._positions: pd.DataFrame | None = None
        self._holdings: pd.DataFrame | None = None
        self._orders = orders
        #: (events, orders sent) the orders frame is built from on first use, if it was not
        #: given: a grid of backtests that never looks at it does not pay for it
        self._orders_from: tuple[Any, Any] | None = None

    @classmethod
    def from_run(
        cls,
        fills: Iterable[OrderEvent],
        equity: pd.Series,
        *,
        initial_cash: float,
        prices: Mapping[str, pd.DataFrame] | None = None,
        open_positions: Mapping[str, float] | None = None,
        name: str = "",
        params: Mapping[str, Any] | None = None,
        multipliers: Mapping[str, float] | None = None,
        events: Iterable[OrderEvent] | None = None,
        orders: Iterable[Order] | None = None,
        conversions: Iterable[float] | None = None,
    ) -> Result:
        """Build a Result from fill events (``kind == 'filled'``; others are ignored), the
        equity after every bar and, for plots, the bars of each symbol. ``multipliers``
        (symbol -> contract multiplier, 1 when left out) scale the round trips' P&L as the
        broker scaled the account's; the equity is taken as given.

        ``events``: every order event of the run (accepted, filled, rejected, cancelled...;
        ``fills`` when left out) and ``orders``: the orders sent, for :attr:`orders`
        (:func:`orders_frame`). ``conversions``: with an account currency, the value of one
        unit of quote currency at each fill (in fill order), kept as the trades' ``conversion``
        column; round trips realise their P&L at their closing fill's conversion, as the broker
        does."""
        if not isinstance(equity, pd.Series):
            raise TypeError("equity: expected a pandas Series indexed by time")
        fills = fills if isinstance(fills, RecordLog) else list(fills)
        sent = orders if orders is None or isinstance(orders, RecordLog) else list(orders)
        trades = trades_frame(fills)
        if conversions is not None:
            rates = [float(r) for r in conversions]
            if len(rates) != len(trades):
                raise ValueError(f"conversions: {len(rates)} values for {len(trades)} fills")
            trades["conversion"] = rates
        result = cls(
            trades,
            (equity if equity.dtype in (np.float64, np.float32) else equity.astype(float)).rename(
                "equity"
            ),
            initial_cash=initial_cash,
            prices=prices,
            open_positions=open_positions,
            name=name,
            params=params,
            multipliers=multipliers,
        )
        if events is not None and not isinstance(events, RecordLog | list):
            events = list(events)  # it is read later, when the orders are first asked for
        result._orders_from = (fills if events is None else events, sent)
        return result

    # -- figures ----------------------------------------------------------------------------
    @property
    def final_value(self) -> float:
        """Cash plus open positions marked at the last close."""
        return float(self.equity.iloc[-1]) if len(self.equity) else self.initial_cash

    @property
    def positions(self) -> pd.DataFrame:
        """Round trips (entry to exit per instrument) from :func:`stats.round_trips`."""
        if self._positions is None:
            self._positions = _round_trips(self.trades, self.multipliers)
        return self._positions

    @property
    def holdings(self) -> pd.DataFrame:
        """Units held per symbol after every bar (one column per traded symbol)."""
        if self._holdings is None:
            self._holdings = holdings_frame(self.trades, pd.DatetimeIndex(self.equity.index))
        return self._holdings

    @property
    def orders(self) -> pd.DataFrame:
        """One row per order sent (columns :data:`ORDER_COLUMNS`), with its final state; see
        :func:`orders_frame`."""
        if self._orders is None:
            if self._orders_from is not None:
                self._orders = orders_frame(*self._orders_from)
                self._orders_from = None
            else:
                self._orders = orders_frame(_fill_events(self.trades))
        return self._orders

    @property
    def rejections(self) -> dict[str, int]:
        """Rejected orders by reason, most frequent first: reason -> count (empty when none)."""
        orders = self.orders
        reasons = orders.loc[orders["state"] == "rejected", "reason"].fillna("")
        counts = reasons.replace("", "no reason given").value_counts()
        ranked = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
        return {str(reason): int(count) for reason, count in ranked}

    def rejection_summary(self, notes: Mapping[str, str] | None = None) -> str:
        """One line on the rejected orders (``''`` when none): see :func:`rejection_summary`."""
        return rejection_summary(self.rejections, notes)

    @property
    def periods_per_year(self) -> float:
        """The bars per year the ratios are annualised with
        (:func:`~osmarkets.backtest.stats.infer_periods_per_year` of the equity's index)."""
        index = self.equity.index
        if not isinstance(index, pd.DatetimeIndex):
            return math.nan
        return stats.infer_periods_per_year(index)

    def annualisation(self) -> str:
        """How the ratios are annualised, for people: ``'periods per year: 199,534 (inferred
        from 30,889 bars over 56.5 days, the observed rate)'``."""
        ppy = self.periods_per_year
        index = self.equity.index
        if math.isnan(ppy) or not isinstance(index, pd.DatetimeIndex):
            return "periods per year: undefined (fewer than two bars): ratios are not annualised"
        times = index.as_unit("ns").asi8
        span = pd.Timedelta(int(times.max() - times.min()), unit="ns")
        days = span / pd.Timedelta(days=1)
        if days >= 30:
            source = f"{len(index):,} bars over {days:,.1f} days, the observed rate"
        else:
            spacing = _duration(float(np.median(np.diff(np.sort(times)))))
            source = (
                f"the median spacing between bars, {spacing}: {days:,.1f} days are too few "
                "for an observed rate"
            )
        return f"periods per year: {ppy:,.0f} (inferred from {source})"

    @property
    def stats(self) -> dict[str, Any]:
        if self._stats is None:
            self._stats = dict(
                stats.summary(
                    self.equity,
                    self.trades,
                    initial_cash=self.initial_cash,
                    positions=self.holdings,
                )
            )
            if self.multipliers or "conversion" in self.trades:
                # summary() prices round trips at 1 per point, in quote currency: redo those
                trips = self.positions
                self._stats["win_rate"] = stats.win_rate(trips)
                self._stats["profit_factor"] = stats.profit_factor(trips)
                self._stats["average_trade"] = stats.average_trade(trips)
            states = self.orders["state"]
            self._stats["orders"] = len(states)
            for state in ("filled", "rejected", "cancelled"):
                self._stats[f"orders_{state}"] = int((states == state).sum())
        return self._stats

    def __repr__(self) -> str:
        head = f"<Result {self.name}" if self.name else "<Result"
        if not len(self.equity):
            return f"{head}: no bars>"
        stats = self.stats
        parts = [f"final_value={self.final_value:,.2f}"]
        for key in ("total_return", "sharpe", "max_drawdown"):
            value = stats.get(key)
            if isinstance(value, int | float) and not math.isnan(value):
                parts.append(f"{key}={value:.4g}")
        parts.append(f"fills={len(self.trades)}")
        return f"{head} {' '.join(parts)}>"

    def stats_table(self) -> str:
        """The statistics as aligned ``name  value`` lines (what the CLI prints)."""
        rows = [(key, format_stat(key, value)) for key, value in self.stats.items()]
        width = max((len(k) for k, _ in rows), default=0)
        return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)

    # -- reports ----------------------------------------------------------------------------
    def plot(self, symbol: str | None = None) -> Any:
        """A matplotlib figure: price with buy/sell markers, equity, drawdown.

        A step between bars longer than :data:`GAP_FACTOR` times the usual bar spacing (a
        night, a weekend) is left as a gap in every line, not bridged by a straight one. With
        more than :data:`MANY_FILLS` fills on a side, their markers are small, faint and drawn
        under the price; the legend counts them."""
        plt = _pyplot()
        from matplotlib import dates as mdates

        fig, (ax_price, ax_equity, ax_dd) = plt.subplots(
            3, 1, sharex=True, figsize=(11, 8), gridspec_kw={"height_ratios": [3, 2, 1]}
        )
        if symbol is None and self.prices:
            symbol = next(iter(self.prices))
        if symbol is not None and symbol in self.prices:
            close = self.prices[symbol]["close"]
            x, y = gapped(close.index, close.to_numpy(dtype=float))
            ax_price.plot(x, y, lw=0.8, color="0.3", label=symbol, zorder=2)
            mine = self.trades[self.trades["symbol"] == symbol]
            for side, marker, color in (("buy", "^", "tab:green"), ("sell", "v", "tab:red")):
                rows = mine[mine["side"] == side]
                many = len(rows) > MANY_FILLS
                ax_price.scatter(
                    _utc_naive(rows["time"]), rows["price"].to_numpy(dtype=float), marker=marker,
                    color=color, s=8 if many else 30, alpha=0.35 if many else 0.8,
                    linewidths=0, label=f"{side} ({len(rows):,})", zorder=1 if many else 3,
                )  # fmt: skip
            ax_price.legend(loc="upper left")
        ax_price.set_ylabel("price")
        x, y = gapped(self.equity.index, self.equity.to_numpy(dtype=float))
        ax_equity.plot(x, y, color="tab:blue", lw=1)
        ax_equity.set_ylabel("equity")
        peak = self.equity.cummax()
        drawdown = (self.equity / peak - 1.0) * 100
        x, y = gapped(drawdown.index, drawdown.to_numpy(dtype=float))
        ax_dd.fill_between(x, y, 0.0, color="tab:red", alpha=0.4)
        ax_dd.set_ylabel("drawdown %")
        locator = mdates.AutoDateLocator()
        ax_dd.xaxis.set_major_locator(locator)
        ax_dd.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        title = self.name or "backtest"
        fig.suptitle(f"{title}: final value {self.final_value:,.2f}")
        fig.tight_layout()
        return fig

    def to_html(self, path: str) -> str:
        """Write one self-contained HTML file (a warning when orders were rejected, statistics
        and how they are annualised, the plot as an embedded PNG, the orders, the trades) and
        return its path. Without matplotlib the report has no picture."""
        try:
            fig = self.plot()
        except ImportError:
            image = "<p>(install matplotlib for the chart)</p>"
        else:
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=90)
            _pyplot().close(fig)
            encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
            image = f'<img alt="price, equity and drawdown" src="data:image/png;base64,{encoded}">'
        title = html.escape(self.name or "backtest")
        params = html.escape(", ".join(f"{k}={v!r}" for k, v in self.params.items()))
        warning = ""
        summary = self.rejection_summary()
        if summary:
            warning = (
                f'<p class="warning">Warning: {html.escape(summary)}. '
                '<a href="#orders">See the orders</a>.</p>'
            )
        page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
th,td{{padding:2px 10px;text-align:right;border-bottom:1px solid #ddd}}img{{max-width:100%}}
.warning{{background:#fde8e8;border:1px solid #c33;padding:.5em 1em;font-weight:bold}}
.note{{color:#555}}
</style></head><body>
<h1>{title}</h1><p>{params}</p>
{warning}
<h2>Statistics</h2>{stats_html(self.stats)}
<p class="note">Ratios (Sharpe, Sortino, Calmar, annual return) annualised with
{html.escape(self.annualisation())}.</p>
<h2>Chart</h2>{image}
{self._orders_html()}
<h2>Trades ({len(self.trades)})</h2>{table_html(self.trades, "trades", "Result.trades")}
</body></html>
"""
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(page)
        return path

    def _orders_html(self) -> str:
        orders = self.orders
        counts = orders["state"].value_counts()
        states = {s: int(counts[s]) for s in ORDER_STATES if counts.get(s, 0)}
        parts = [
            f'<h2 id="orders">Orders ({len(orders):,})</h2>',
            "<h3>By final state</h3>",
            _count_table(states, "state") if states else "<p>No order was sent.</p>",
        ]
        if self.rejections:
            parts += ["<h3>Rejections by reason</h3>", _count_table(self.rejections, "reason")]
        if len(orders):
            parts += ["<h3>Every order</h3>", table_html(orders, "orders", "Result.orders")]
        return "\n".join(parts)


def rejection_summary(
    rejections: Mapping[str, int], notes: Mapping[str, str] | None = None
) -> str:
    """One line on rejected orders from ``reason -> count`` (most frequent first), ``''`` when
    none: ``'641 orders rejected: insufficient margin'``, or with several reasons
    ``'650 orders rejected: 641 insufficient margin, 9 for 2 other reasons'``. ``notes``
    (reason -> text) adds a remark right after a reason, e.g. the cash and margin rate."""
    total = sum(rejections.values())
    if not total:
        return ""
    top, count = max(rejections.items(), key=lambda item: item[1])
    note = (notes or {}).get(top, "")
    head = f"{total:,} order{'' if total == 1 else 's'} rejected: "
    others = sum(1 for reason, n in rejections.items() if n and reason != top)
    if not others:
        return f"{head}{top}{note}"
    plural = "" if others == 1 else "s"
    return f"{head}{count:,} {top}{note}, {total - count:,} for {others} other reason{plural}"


def table_html(frame: pd.DataFrame, css: str, source: str, limit: int = HTML_MAX_ROWS) -> str:
    """``frame`` as an HTML table, cut after ``limit`` rows with a note naming ``source``,
    where the full table is."""
    shown = frame.head(limit).to_html(index=False, border=0, classes=css)
    if len(frame) <= limit:
        return shown
    return (
        f'<p class="note">The first {limit:,} of {len(frame):,} rows; {html.escape(source)} '
        f"has them all.</p>{shown}"
    )


def _count_table(counts: Mapping[str, int], name: str) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(key))}</th><td>{value:,}</td></tr>"
        for key, value in counts.items()
    )
    return f'<table class="{name}-counts"><tr><th>{name}</th><th>orders</th></tr>{rows}</table>'


def _duration(ns: float) -> str:
    """A time span for people: ``'1 minute'``, ``'4 hours'``, else pandas' own text."""
    for unit, size in (("day", 86_400e9), ("hour", 3_600e9), ("minute", 60e9), ("second", 1e9)):
        if ns >= size and ns % size == 0:
            count = ns / size
            return f"{count:g} {unit}{'' if count == 1 else 's'}"
    return str(pd.Timedelta(int(ns), unit="ns"))


def _utc_naive(times: Any) -> np.ndarray:
    """Times (a DatetimeIndex or a Series of timestamps, naive meaning UTC) as numpy
    ``datetime64[ns]`` in UTC, what the plots use on every axis."""
    index = pd.DatetimeIndex(times)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    return index.as_unit("ns").to_numpy()


def gapped(index: Any, values: np.ndarray, factor: float = GAP_FACTOR) -> tuple[np.ndarray, Any]:
    """``(x, y)`` for a line plot of ``values`` over the times ``index``, with a NaN point one bar
    after every step longer than ``factor`` times the median spacing (a night, a weekend), so
    the line is broken there instead of bridging the gap."""
    x = _utc_naive(index)
    y = np.asarray(values, dtype=float)
    if len(x) < 3:
        return x, y
    steps: np.ndarray = np.diff(x.view(np.int64)).astype(float)
    bar = float(np.median(steps))
    if not bar > 0:
        return x, y
    gaps = np.flatnonzero(steps > factor * bar)
    if not len(gaps):
        return x, y
    breaks = x[gaps] + np.timedelta64(int(bar), "ns")
    return np.insert(x, gaps + 1, breaks), np.insert(y, gaps + 1, np.nan)


_MONEY = {"final_value", "average_trade"}
_FRACTIONS = {
    "total_return", "annual_return", "max_drawdown", "win_rate", "exposure",
    "active_days_fraction",
}  # fmt: skip


def format_stat(key: str, value: Any) -> str:
    """A statistic of :func:`~osmarkets.backtest.stats.summary` for people: money with cents,
    fractions as percentages, ratios to four significant digits (one format for every report:
    backtest, optimiser, portfolio, walk-forward)."""
    if not isinstance(value, float) or value != value:
        return str(value)
    if key in _MONEY:
        return f"{value:,.2f}"
    if key in _FRACTIONS:
        return f"{value * 100:.4g} %"
    return f"{value:,.4g}"


def stats_html(items: Mapping[str, Any]) -> str:
    """``name | value`` rows of an HTML table, values as :func:`format_stat` shows them."""
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(format_stat(str(k), v))}</td></tr>"
        for k, v in items.items()
    )
    return f"<table>{rows}</table>"


def _pyplot() -> Any:
    try:
        import matplotlib

        interactive = matplotlib.get_backend().lower() not in (
            "agg",
            "module://matplotlib_inline.backend_inline",
        )
        if interactive and not os.environ.get("DISPLAY") and not os.environ.get("MPLBACKEND"):
            matplotlib.use("Agg")  # headless: no display to open a window on
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "plots need matplotlib: pip install matplotlib (or osmarkets[plot])"
        ) from exc
    return plt
