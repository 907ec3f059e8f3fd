"""The Backtester's work: evaluate configurations on in-sample data, then filter them.

:class:`Evaluator` holds one optimisation's data and settings. For a Brain with a ``signals``
classmethod it runs the vectorised path (:func:`osmarkets.backtest.vectorized.vectorized`,
many configurations at once); otherwise the event-driven engine
(:func:`osmarkets.backtest.backtest`), one configuration at a time. Both give the same
statistics, with the formulas of :mod:`osmarkets.backtest.stats` (the tests compare them).

:class:`Filters` are the thresholds a configuration must pass to be a portfolio candidate; a
missing (NaN) statistic fails any threshold on it. :func:`smooth_scores` replaces each score by
the mean over its nearest neighbours in parameter space, so that an isolated lucky peak ranks
below a plateau of good configurations.

Pure numpy/pandas: no osBrain here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..backtest.engine import backtest, load_bars
from ..backtest.stats import infer_periods_per_year
from ..backtest.vectorized import vectorized
from ..brain import Brain
from ..brokers.simulated import Commission
from ..data.conform import conform, own_timeframe
from ..data.timeframes import Alignment, BarSeriesID
from ..data.validate import validate_bars
from ..instruments import load_instruments
from .overfit import return_moments
from .space import Space, config_id

#: What the probabilistic and deflated Sharpe ratios of each configuration are computed from
#: (:func:`~osmarkets.optimize.overfit.return_moments` of its per-bar returns): the per-period
#: Sharpe ratio, skewness, kurtosis and number of returns.
MOMENT_KEYS = ("period_sharpe", "skewness", "kurtosis", "periods")

#: The statistics kept for every configuration (a subset of ``Result.stats``).
STAT_KEYS = (
    "final_value", "total_return", "sharpe", "sortino", "max_drawdown", "trades",
    "trades_per_day", "active_days_fraction", "rejected", *MOMENT_KEYS,
)  # fmt: skip
SCORES = ("sharpe", "sortino", "total_return", "final_value")
ENGINES = ("auto", "vectorized", "event")


@dataclass(frozen=True)
class Filters:
    """Thresholds; ``None`` disables one.

    ``min_trades_per_day``: fills per calendar day; ``min_active_days``: fraction of calendar
    days with at least one fill (daily activity); ``min_sharpe`` / ``min_sortino``: annualised
    ratios; ``max_drawdown``: largest fall from a peak as a fraction (0.2 = 20 %);
    ``min_trades``: number of fills. ``min_dsr``: the deflated Sharpe ratio (0 to 1, see
    :func:`~osmarkets.optimize.overfit.deflated_sharpe`); it depends on every trial, so it is
    applied once all are evaluated (:func:`~osmarkets.optimize.explore`), not per row.
    """

    min_trades_per_day: float | None = None
    min_active_days: float | None = None
    min_sharpe: float | None = None
    min_sortino: float | None = None
    max_drawdown: float | None = None
    min_trades: int | None = None
    min_dsr: float | None = None

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"filters.{name}: expected a number, got {value!r}")
            if math.isnan(value):
                raise ValueError(f"filters.{name}: NaN threshold")

    @classmethod
    def coerce(cls, filters: Filters | Mapping[str, Any] | None) -> Filters:
        if filters is None:
            return cls()
        if isinstance(filters, Filters):
            return filters
        known = set(cls.__dataclass_fields__)
        unknown = [k for k in filters if k not in known]
        if unknown:
            raise ValueError(f"filters: unknown filter {unknown[0]!r} (known: {sorted(known)})")
        return cls(**dict(filters))

    def verdict(self, stats: Mapping[str, Any]) -> str:
        """``''`` when ``stats`` pass every threshold, else the first failure, e.g.
        ``'sharpe 0.12 < 0.5'``."""
        rules = (
            ("trades_per_day", self.min_trades_per_day, 1),
            ("active_days_fraction", self.min_active_days, 1),
            ("sharpe", self.min_sharpe, 1),
            ("sortino", self.min_sortino, 1),
            ("max_drawdown", self.max_drawdown, -1),
            ("trades", self.min_trades, 1),
        )
        for key, limit, sign in rules:
            if limit is None:
                continue
            value = float(stats.get(key, math.nan))
            if math.isnan(value):
                return f"{key} undefined"
            if sign > 0 and value < limit:
                return f"{key} {value:.4g} < {limit:g}"
            if sign < 0 and value > limit:
                return f"{key} {value:.4g} > {limit:g}"
        return ""


class Evaluator:
    """One optimisation's data and settings; :meth:`evaluate` turns configurations into rows.

    ``data_options`` (or the same names as keywords: ``data_timeframe``, ``daily_alignment``,
    ``alignment_timezone``, ``weekly_alignment``, ``calendar``, ``regular_hours``,
    ``instruments``) say what the data is, as for :func:`~osmarkets.backtest.backtest`.

    ``engine``: ``'auto'`` (vectorised when the Brain has ``signals``), ``'vectorized'`` or
    ``'event'``. ``score``: the statistic configurations are ranked by (higher is better).
    ``params``: fixed parameters applied under every configuration. Broker options are those of
    :func:`~osmarkets.backtest.backtest`.
    """

    def __init__(
        self,
        brain_class: type[Brain],
        data: Any,
        bsid: Any = None,
        *,
        filters: Filters | Mapping[str, Any] | None = None,
        score: str = "sharpe",
        engine: str = "auto",
        params: Mapping[str, Any] | None = None,
        cash: float = 100_000.0,
        fill: str = "next_open",
        spread: float = 0.0,
        slippage: float = 0.0,
        commission: Commission | None = None,
        history: int | None = None,
        data_options: Mapping[str, Any] | None = None,
        **more_data_options: Any,
    ) -> None:
        if not (isinstance(brain_class, type) and issubclass(brain_class, Brain)):
            raise TypeError(f"brain_class: expected a Brain subclass, got {brain_class!r}")
        if score not in SCORES:
            raise ValueError(f"score: expected one of {', '.join(SCORES)}, got {score!r}")
        if engine not in ENGINES:
            raise ValueError(f"engine: expected one of {', '.join(ENGINES)}, got {engine!r}")
        has_signals = getattr(brain_class, "signals", None) is not None
        if engine == "vectorized" and not has_signals:
            raise ValueError(f"engine: {brain_class.__name__} has no signals classmethod")
        self.vectorized = engine == "vectorized" or (engine == "auto" and has_signals)
        self.brain_class = brain_class
        options = {**(data_options or {}), **more_data_options}
        self.frame, self.bsid, self.data_options = prepare_data(data, bsid, options)
        if len(self.frame) < 2:
            raise ValueError("data: at least two bars are needed to evaluate a strategy")
        if self.data_options.get("instruments") and self.vectorized:
            raise ValueError("instruments: the vectorised engine has no instrument model; "
                             "use engine='event'")  # fmt: skip
        self.filters = Filters.coerce(filters)
        self.score = score
        self.fixed = dict(params or {})
        known = brain_class.parameters()
        for key in self.fixed:
            if key not in known:
                raise ValueError(f"params: {brain_class.__name__} has no parameter {key!r}")
        self.cash = float(cash)
        self.options: dict[str, Any] = dict(
            fill=fill, spread=spread, slippage=slippage, commission=commission
        )
        self.history = history
        index = pd.DatetimeIndex(self.frame.index)
        self.periods_per_year = infer_periods_per_year(index)
        utc = index.tz_convert("UTC") if index.tz is not None else index
        self._day = np.unique(utc.normalize().asi8, return_inverse=True)[1]  # day of each bar
        self._calendar_days = int((utc.max().normalize() - utc.min().normalize()).days) + 1

    def check(self, params: Mapping[str, Any]) -> None:
        known = self.brain_class.parameters()
        for key in params:
            if key not in known:
                raise ValueError(
                    f"space: {self.brain_class.__name__} has no parameter {key!r} "
                    f"(known: {', '.join(known) or 'none'})"
                )

    def evaluate(self, configs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """One row per configuration: ``id``, ``params``, ``stats`` (:data:`STAT_KEYS`),
        ``score`` and ``reason`` (``''`` when it passed the filters)."""
        batch = [dict(c) for c in configs]
        if not batch:
            return []
        for config in batch:
            self.check(config)
        if self.vectorized:
            stats = self._vectorized_stats(batch)
        else:
            stats = [self._event_stats(c) for c in batch]
        rows = []
        for config, values in zip(batch, stats, strict=True):
            rows.append(
                {
                    "id": config_id(config),
                    "params": config,
                    "stats": values,
                    "score": float(values[self.score]),
                    "reason": self.filters.verdict(values),
                }
            )
        return rows

    # -- event-driven --------------------------------------------------------------------------
    def _event_stats(self, config: Mapping[str, Any]) -> dict[str, Any]:
        result = backtest(
            self.brain_class, self.frame, self.bsid, params={**self.fixed, **config},
            history=self.history, cash=self.cash, **self.options, **self.data_options,
        )  # fmt: skip
        curve = result.equity.to_numpy(dtype=float)
        moments = return_moments(_returns(curve[None, :], self.cash))
        stats = {**result.stats, "rejected": result.stats["orders_rejected"],
                 **{key: moments[key][0] for key in MOMENT_KEYS}}  # fmt: skip
        return {key: _number(stats[key]) for key in STAT_KEYS}

    # -- vectorised ----------------------------------------------------------------------------
    def _vectorized_stats(self, configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        full = [{**self.fixed, **c} for c in configs]
        run = vectorized(self.brain_class, self.frame, full, cash=self.cash, equity=True,
                         **self.options)  # fmt: skip
        assert run.equity is not None
        curves = run.equity.to_numpy().T  # (configurations, bars)
        fills = self._fill_mask(full)
        stats = batch_stats(
            curves,
            fills,
            self._day,
            self._calendar_days,
            self.cash,
            self.periods_per_year,
            run.table["max_drawdown"].to_numpy(),
        )
        stats["trades"] = run.table["trades"].to_numpy()
        # The vectorised path has no margin model (it trades every target it is given): no
        # order is ever rejected there, so its rejected count is 0 by construction.
        stats["rejected"] = np.zeros(len(configs))
        keys = list(STAT_KEYS)
        return [{key: _number(stats[key][i]) for key in keys} for i in range(len(configs))]

    def _fill_mask(self, full: list[dict[str, Any]]) -> np.ndarray:
        """Bars with a fill, per configuration: the target changes at bar *t* and the order
        fills at *t+1* (next open) or *t* (close)."""
        defaults = self.brain_class.parameters()
        params = [{**defaults, **c} for c in full]
        hook = getattr(self.brain_class, "signals_batch", None)
        n = len(self.frame)
        if hook is not None:
            target = np.asarray(hook(self.frame, params), dtype=float)
        else:
            signals = self.brain_class.signals  # type: ignore[attr-defined]
            target = np.vstack([np.asarray(signals(self.frame, **p), dtype=float) for p in params])
        moved = np.empty(target.shape, dtype=bool)
        moved[:, 0] = target[:, 0] != 0
        np.not_equal(target[:, 1:], target[:, :-1], out=moved[:, 1:])
        if self.options["fill"] == "next_open":
            shifted = np.zeros_like(moved)
            shifted[:, 1:] = moved[:, : n - 1]
            return shifted
        return moved

    # -- returns of many configurations --------------------------------------------------------
    def returns(self, configs: Sequence[Mapping[str, Any]], chunk: int = 256) -> pd.DataFrame:
        """The per-bar returns of each configuration (bars x configurations, columns by
        configuration id; the first bar's against the cash): what the probability of backtest
        overfitting is computed from. Vectorised in chunks of ``chunk`` configurations."""
        ids = [config_id(c) for c in configs]
        blocks = []
        for start in range(0, len(configs), chunk):
            part = [{**self.fixed, **c} for c in configs[start : start + chunk]]
            if self.vectorized:
                run = vectorized(self.brain_class, self.frame, part, cash=self.cash,
                                 equity=True, **self.options)  # fmt: skip
                assert run.equity is not None
                curves = run.equity.to_numpy(dtype=float).T
            else:
                curves = np.vstack([self.equity(c).to_numpy(dtype=float) for c in part])
            blocks.append(_returns(curves, self.cash))
        values = np.vstack(blocks).T if blocks else np.empty((len(self.frame), 0))
        return pd.DataFrame(values, index=self.frame.index, columns=ids)

    # -- equity of one configuration -----------------------------------------------------------
    def equity(self, config: Mapping[str, Any]) -> pd.Series:
        """The equity curve of one configuration (for the portfolio and walk-forward)."""
        full = {**self.fixed, **config}
        if self.vectorized:
            run = vectorized(self.brain_class, self.frame, [full], cash=self.cash, equity=True,
                             **self.options)  # fmt: skip
            assert run.equity is not None
            return run.equity.iloc[:, 0].rename("equity")
        result = backtest(self.brain_class, self.frame, self.bsid, params=full,
                          history=self.history, cash=self.cash, **self.options,
                          **self.data_options)  # fmt: skip
        return result.equity

    def spec(self) -> dict[str, Any]:
        """Everything needed to rebuild this evaluator in another process."""
        return {
            "brain_class": self.brain_class,
            "data": self.frame,
            "bsid": self.bsid,
            "filters": self.filters,
            "score": self.score,
            "engine": "vectorized" if self.vectorized else "event",
            "params": self.fixed,
            "cash": self.cash,
            "history": self.history,
            "data_options": self.data_options,
            **self.options,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Evaluator:
        spec = dict(spec)
        return cls(spec.pop("brain_class"), spec.pop("data"), spec.pop("bsid"), **spec)


DATA_OPTIONS = (
    "data_timeframe", "daily_alignment", "alignment_timezone", "weekly_alignment", "calendar",
    "regular_hours", "instruments",
)  # fmt: skip


def prepare_data(
    data: Any, bsid: Any, options: Mapping[str, Any] | None
) -> tuple[pd.DataFrame, BarSeriesID, dict[str, Any]]:
    """``(bars, bsid, backtest options)``: the data at the bar series' frame, made once for
    every configuration (:func:`~osmarkets.data.conform.conform`; the bsid defaults to the
    data's own frame), and the options that make :func:`backtest` take those bars as they are
    and derive nothing differently."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(DATA_OPTIONS))
    if unknown:
        raise ValueError(
            f"data_options: unknown option {unknown[0]!r} (known: {', '.join(DATA_OPTIONS)})"
        )
    frame = load_bars(data)
    validate_bars(frame)
    given = options.pop("data_timeframe", None)
    instruments = options.pop("instruments", None)
    alignment = Alignment.of(options)
    if bsid is None:
        own = own_timeframe(frame, given, default="M1")
        bsid = BarSeriesID("DATA", own.size, own.unit)
    bsid = BarSeriesID.parse(bsid)
    frame, alignment = conform(frame, bsid.timeframe, alignment, data_timeframe=given,
                               label=f"data for {bsid.symbol!r}")  # fmt: skip
    out: dict[str, Any] = {"data_timeframe": bsid.code, **alignment._asdict()}
    if instruments is not None:
        out["instruments"] = load_instruments(instruments)
    return frame, bsid, out


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _returns(curves: np.ndarray, cash: float) -> np.ndarray:
    """Per-bar returns of equity curves (configurations x bars), the first against ``cash``
    (an undefined one, after a curve reached zero, is inf or NaN)."""
    returns = np.empty_like(curves)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(curves[:, 0], cash, out=returns[:, 0])
        np.divide(curves[:, 1:], curves[:, :-1], out=returns[:, 1:])
    returns -= 1.0
    return returns


def batch_stats(
    curves: np.ndarray,
    fills: np.ndarray,
    day: np.ndarray,
    calendar_days: int,
    cash: float,
    periods_per_year: float,
    max_drawdown: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The statistics of many equity curves at once, with the formulas of
    :func:`osmarkets.backtest.stats.summary` (``curves``: configurations x bars; ``fills``:
    a boolean mask of the bars with a fill; ``day``: each bar's day number).

    ``max_drawdown``: the drawdowns already computed by the vectorised simulation (from the
    running peak of the curve); used when every curve starts at ``cash``, where the peak
    including the initial cash is the same."""
    k, n = curves.shape
    returns = _returns(curves, cash)
    out: dict[str, np.ndarray] = return_moments(returns)
    out["final_value"] = curves[:, -1].copy()
    out["total_return"] = curves[:, -1] / cash - 1.0
    root = math.sqrt(periods_per_year) if periods_per_year > 0 else math.nan
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if np.isfinite(returns).all():  # the usual case: plain (faster) reductions
            mean = returns.mean(axis=1)
            std = returns.std(axis=1, ddof=1)
            flat = returns.max(axis=1) == returns.min(axis=1)
            count = np.full(k, n)
        else:  # a curve reached zero: ignore the undefined returns, as stats.summary does
            returns[~np.isfinite(returns)] = np.nan
            mean = np.nanmean(returns, axis=1)
            std = np.nanstd(returns, axis=1, ddof=1)
            flat = np.nanmax(returns, axis=1) == np.nanmin(returns, axis=1)
            count = np.sum(~np.isnan(returns), axis=1)
            np.nan_to_num(returns, copy=False, nan=0.0)
        out["sharpe"] = np.where(flat | (count < 2), np.nan, mean / std * root)
        np.minimum(returns, 0.0, out=returns)
        np.square(returns, out=returns)
        downside = np.sqrt(returns.sum(axis=1) / count)
        out["sortino"] = np.where(downside > 0, mean / downside * root, np.nan)
        if max_drawdown is None or not np.all(curves[:, 0] == cash):
            peak = np.maximum(np.maximum.accumulate(curves, axis=1), cash)
            max_drawdown = np.max(1.0 - curves / peak, axis=1)
        out["max_drawdown"] = np.maximum(max_drawdown, 0.0)
    out["trades"] = fills.sum(axis=1)
    out["trades_per_day"] = out["trades"] / calendar_days
    starts = np.flatnonzero(np.r_[True, day[1:] != day[:-1]])
    active = np.logical_or.reduceat(fills, starts, axis=1) if n else np.zeros((k, 0), bool)
    out["active_days_fraction"] = active.sum(axis=1) / calendar_days
    return out


def smooth_scores(
    table: pd.DataFrame, space: Space, neighbours: int, score: str = "score"
) -> pd.Series:
    """Each configuration's score replaced by the mean score of its ``neighbours`` nearest
    configurations (itself included), distances measured in the unit cube of ``space``
    (log dimensions in log space, a different choice at distance 1). NaN scores count as
    missing; a configuration whose own score is NaN stays NaN."""
    if neighbours < 1:
        raise ValueError(f"smooth: expected a number of neighbours >= 1, got {neighbours}")
    values = table[score].to_numpy(dtype=float)
    if len(table) == 0:
        return pd.Series(values, index=table.index, name=f"{score}_smooth")
    records = table[space.names].to_dict("records")
    points = np.vstack([space.unit({str(k): v for k, v in row.items()}) for row in records])
    out = np.full(len(values), np.nan)
    k = min(neighbours, len(values))
    for start in range(0, len(values), 512):
        block = points[start : start + 512]
        dist = ((block[:, None, :] - points[None, :, :]) ** 2).sum(axis=2)
        nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all neighbours NaN -> NaN
            out[start : start + len(block)] = np.nanmean(values[nearest], axis=1)
    out[np.isnan(values)] = np.nan
    return pd.Series(out, index=table.index, name=f"{score}_smooth")


__all__ = [
    "ENGINES",
    "Evaluator",
    "MOMENT_KEYS",
    "Filters",
    "SCORES",
    "STAT_KEYS",
    "batch_stats",
    "smooth_scores",
]
