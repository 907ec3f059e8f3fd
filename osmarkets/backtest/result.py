"""The outcome of a backtest or a simulated run: fills, equity curve, statistics and reports.

The same :class:`Result` comes out of the in-process engine and out of
``SimulatedArchitecture.result()`` (through :meth:`Result.from_run`), so reports and
comparisons do not care which runner produced them.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..brokers.base import OrderEvent
from . import stats

TRADE_COLUMNS = (
    "time", "symbol", "side", "size", "price", "commission", "brain", "reason", "client_id",
)  # fmt: skip


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
    rows = [e for e in fills if e.kind == "filled"]
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime(np.array([e.time for e in rows], dtype=np.int64), utc=True),
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
    if not multipliers or not len(trips):
        return trips
    factor = trades["symbol"].map(multipliers).fillna(1.0).astype(float)
    if bool((factor == 1.0).all()):
        return trips
    valued = trades.assign(price=trades["price"] * factor)
    trips["pnl"] = stats.round_trips(valued)["pnl"].to_numpy()
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
    ) -> Result:
        """Build a Result from fill events (``kind == 'filled'``; others are ignored), the
        equity after every bar and, for plots, the bars of each symbol. ``multipliers``
        (symbol -> contract multiplier, 1 when left out) scale the round trips' P&L as the
        broker scaled the account's; the equity is taken as given."""
        if not isinstance(equity, pd.Series):
            raise TypeError("equity: expected a pandas Series indexed by time")
        return cls(
            trades_frame(fills),
            equity.astype(float).rename("equity"),
            initial_cash=initial_cash,
            prices=prices,
            open_positions=open_positions,
            name=name,
            params=params,
            multipliers=multipliers,
        )

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
            if self.multipliers:  # summary() prices round trips at 1 per point: redo those
                trips = self.positions
                self._stats["win_rate"] = stats.win_rate(trips)
                self._stats["profit_factor"] = stats.profit_factor(trips)
                self._stats["average_trade"] = stats.average_trade(trips)
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
        """A matplotlib figure: price with buy/sell markers, equity, drawdown."""
        plt = _pyplot()
        fig, (ax_price, ax_equity, ax_dd) = plt.subplots(
            3, 1, sharex=True, figsize=(11, 8), gridspec_kw={"height_ratios": [3, 2, 1]}
        )
        if symbol is None and self.prices:
            symbol = next(iter(self.prices))
        if symbol is not None and symbol in self.prices:
            close = self.prices[symbol]["close"]
            ax_price.plot(close.index, close.to_numpy(), lw=0.8, color="0.3", label=symbol)
            mine = self.trades[self.trades["symbol"] == symbol]
            for side, marker, color in (("buy", "^", "tab:green"), ("sell", "v", "tab:red")):
                rows = mine[mine["side"] == side]
                ax_price.scatter(rows["time"], rows["price"], marker=marker, color=color,
                                 s=30, label=side, zorder=3)  # fmt: skip
            ax_price.legend(loc="upper left")
        ax_price.set_ylabel("price")
        ax_equity.plot(self.equity.index, self.equity.to_numpy(), color="tab:blue", lw=1)
        ax_equity.set_ylabel("equity")
        peak = self.equity.cummax()
        drawdown = (self.equity / peak - 1.0) * 100
        ax_dd.fill_between(drawdown.index, drawdown.to_numpy(), 0.0, color="tab:red", alpha=0.4)
        ax_dd.set_ylabel("drawdown %")
        title = self.name or "backtest"
        fig.suptitle(f"{title}: final value {self.final_value:,.2f}")
        fig.tight_layout()
        return fig

    def to_html(self, path: str) -> str:
        """Write one self-contained HTML file (statistics, trades, the plot as an embedded PNG)
        and return its path. Without matplotlib the report has no picture."""
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
        trades = self.trades.to_html(index=False, border=0, classes="trades")
        title = html.escape(self.name or "backtest")
        params = html.escape(", ".join(f"{k}={v!r}" for k, v in self.params.items()))
        page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
th,td{{padding:2px 10px;text-align:right;border-bottom:1px solid #ddd}}img{{max-width:100%}}
</style></head><body>
<h1>{title}</h1><p>{params}</p>
<h2>Statistics</h2>{stats_html(self.stats)}
<h2>Chart</h2>{image}
<h2>Trades ({len(self.trades)})</h2>{trades}
</body></html>
"""
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(page)
        return path


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
