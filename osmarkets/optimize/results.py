"""Result objects of the optimiser and of walk-forward, with tables, plots and HTML reports.

Every evaluated configuration stays in :attr:`ExploreResult.table` (parameters, in-sample
statistics, score, filter verdict, included in the portfolio or not), so how a portfolio was
chosen, and how much was tried to find it, can be audited afterwards. Tables save to Parquet
(needs ``pyarrow``) or CSV by file extension. Plots use matplotlib, imported only when a plot
is asked for.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..backtest import stats as st
from ..backtest.result import _pyplot, format_stat, stats_html

if TYPE_CHECKING:
    from .evaluate import Evaluator
    from .overfit import PBOResult
    from .portfolio import Portfolio
    from .space import Space


def save_table(table: pd.DataFrame, path: str | os.PathLike) -> str:
    """Write ``table`` to ``path``: ``.parquet``/``.pq`` (pyarrow) or ``.csv``."""
    text = os.fspath(path)
    lower = text.lower()
    if lower.endswith((".parquet", ".pq")):
        try:
            table.to_parquet(text, index=False)
        except ImportError as exc:
            raise ImportError("saving Parquet needs pyarrow: pip install pyarrow") from exc
    elif lower.endswith(".csv"):
        table.to_csv(text, index=False)
    else:
        raise ValueError(f"path: expected a .parquet or .csv file name, got {text!r}")
    return text


def load_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a table written by :func:`save_table`."""
    text = os.fspath(path)
    if text.lower().endswith((".parquet", ".pq")):
        return pd.read_parquet(text)
    return pd.read_csv(text)


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    _pyplot().close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(fig_factory: Any, alt: str) -> str:
    try:
        fig = fig_factory()
    except ImportError:
        return "<p>(install matplotlib for the charts)</p>"
    if fig is None:
        return ""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{_png(fig)}">'


#: The report's CSS: tables sit in a container that scrolls sideways rather than run off the
#: page, wide tables fill the page width with fixed column layout and cells that wrap
#: (``overflow-wrap``/``word-break``), and images scale down to the page.
_STYLE = """<style>
body{font-family:sans-serif;margin:2em;max-width:80em}
.table-wrap{overflow-x:auto;max-width:100%;margin:0.5em 0 1em}
table{border-collapse:collapse;table-layout:auto}
table.wide{width:100%;min-width:40em;table-layout:fixed}
th,td{padding:2px 8px;text-align:right;border-bottom:1px solid #ddd;vertical-align:top;
white-space:normal;overflow-wrap:anywhere;word-break:break-word}
table.wide th,table.wide td{font-size:0.85em;padding:2px 4px}
p.note{max-width:60em;color:#333}
img{max-width:100%;height:auto}
</style>"""


def _table(frame: pd.DataFrame, *, index: bool = False, wide: bool = False) -> str:
    """A DataFrame as an HTML table in a scrolling container: numbers to four significant
    digits, times to the minute (UTC), lists and dicts as short text."""
    shown = frame.copy()
    for column in shown.columns:
        values = shown[column]
        if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(
            values
        ):
            shown[column] = values.map(_when)
        elif pd.api.types.is_float_dtype(values):
            shown[column] = values.map(lambda v, c=str(column): format_stat(c, float(v)))
        elif values.dtype == object:
            shown[column] = values.map(_short)
    classes = "wide" if wide else None
    text = shown.to_html(index=index, border=0, classes=classes, escape=True, na_rep="nan")
    return f'<div class="table-wrap">{text}</div>'


def _when(value: Any) -> str:
    if value is None or value is pd.NaT:
        return ""
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC")
    if stamp == stamp.normalize():
        return stamp.strftime("%Y-%m-%d")
    return stamp.strftime("%Y-%m-%d %H:%M")


def _short(value: Any) -> Any:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_short(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "; ".join(str(_short(v)) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, pd.Timestamp):
        return _when(value)
    return value


def annualisation_note(index: pd.Index, periods_per_year: float, frame: str | None = None) -> str:
    """One sentence stating how the ratios of a report are annualised: the periods per year
    and how :func:`~osmarkets.backtest.stats.infer_periods_per_year` got them from ``index``
    (the observed rate of bars over a sample of 30 days or more, else 365.25 days over the
    median bar spacing), with a warning when the sample is short."""
    what = "Sharpe and Sortino ratios, annual return and Calmar"
    times = pd.DatetimeIndex(index)
    bars = f"{frame} bars" if frame else "bars"
    if len(times) < 2 or not np.isfinite(periods_per_year):
        return f"{what} are not annualised (NaN): fewer than two bars, or no time between them."
    span = times.max() - times.min()
    days = span / pd.Timedelta(days=1)
    head = f"{what} are annualised with {periods_per_year:,.1f} periods per year, inferred from"
    if span >= pd.Timedelta(days=30):
        return (f"{head} the data: {len(times) - 1:,} bar-to-bar steps of the {bars} over "
                f"{days:,.1f} days ({st.DAYS_PER_YEAR}-day years), the observed rate of bars "
                "(closed markets and gaps count as they happened).")  # fmt: skip
    steps = np.diff(np.sort(times.as_unit("ns").asi8))
    spacing = _duration(float(np.median(steps)) / 1e9)
    return (f"{head} the median spacing of the {bars} ({spacing}): {st.DAYS_PER_YEAR} days "
            f"divided by it, as the sample spans only {days:,.1f} days (under 30, too short "
            "for an observed rate). Over so short a sample an annualised ratio is an "
            "extrapolation: read it with care.")  # fmt: skip


def _duration(seconds: float) -> str:
    """``90.0`` -> ``'1.5 min'``, ``86400.0`` -> ``'1 day'``."""
    for unit, size in (("days", 86_400.0), ("h", 3_600.0), ("min", 60.0)):
        if seconds >= size:
            value = seconds / size
            name = "day" if unit == "days" and value == 1 else unit
            return f"{value:.4g} {name}"
    return f"{seconds:.4g} s"


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>' if text else ""


def _date_axis(ax: Any) -> None:
    """Date labels that do not overlap: matplotlib's AutoDateLocator (a few ticks) and
    ConciseDateFormatter (each label only what changed since the previous one)."""
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.ticklabel_format(axis="y", useOffset=False)  # values as they are, not "+1e5"


def _with_gaps(series: pd.Series) -> pd.Series:
    """``series`` with a NaN inserted inside every gap in time longer than five times the
    median bar spacing (nights, weekends, missing data), so a line chart breaks there instead
    of drawing a straight line across it."""
    if len(series) < 3 or not isinstance(series.index, pd.DatetimeIndex):
        return series
    times = series.index.asi8
    steps = np.diff(times)
    median = float(np.median(steps))
    if not median > 0:
        return series
    gaps = np.flatnonzero(steps > 5 * median)
    if not len(gaps):
        return series
    stamps = series.index[gaps] + pd.Timedelta(int(median), unit="ns")
    holes = pd.Series(np.nan, index=stamps)
    return pd.concat([series.astype(float), holes]).sort_index(kind="stable")


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title>{_STYLE}</head><body>\n<h1>{html.escape(title)}</h1>\n{body}\n"
            "</body></html>\n")  # fmt: skip


# -- plots --------------------------------------------------------------------------------------


def plot_exploration(
    table: pd.DataFrame, x: str, y: str | None, score: str = "score", title: str = ""
) -> Any:
    """Exploration map: configurations at (x, y), colour = score; configurations that failed
    the filters are grey crosses, portfolio members are circled."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 6))
    passed = table[table["passed"]]
    failed = table[~table["passed"]]
    ys = (lambda t: t[y]) if y else (lambda t: t[score])
    if len(failed):
        ax.scatter(failed[x], ys(failed), marker="x", color="0.6", s=18, label="filtered out")
    if len(passed):
        points = ax.scatter(passed[x], ys(passed), c=passed[score], cmap="viridis", s=22,
                            label="passed")  # fmt: skip
        fig.colorbar(points, ax=ax, label=score)
    if "included" in table:
        chosen = table[table["included"]]
        if len(chosen):
            ax.scatter(chosen[x], ys(chosen), facecolors="none", edgecolors="red", s=120,
                       linewidths=1.5, label="in portfolio")  # fmt: skip
    ax.set_xlabel(x)
    ax.set_ylabel(y or score)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title or "exploration map")
    fig.tight_layout()
    return fig


def plot_overfitting(found: PBOResult) -> Any:
    """The histogram of the PBO logits (left of 0: overfit) and the out-of-sample against
    in-sample Sharpe ratio of the chosen configuration per split, with the degradation line."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    logits = np.asarray(found.logits, dtype=float)
    left.hist(logits[np.isfinite(logits)], bins=40, color="tab:blue")
    left.axvline(0.0, color="red", linewidth=1)
    left.set_xlabel("logit of the out-of-sample rank")
    left.set_ylabel("splits")
    left.set_title(f"PBO {found.pbo:.3f}")
    x = np.asarray(found.is_performance, dtype=float)
    y = np.asarray(found.oos_performance, dtype=float)
    both = np.isfinite(x) & np.isfinite(y)
    right.scatter(x[both], y[both], s=6, alpha=0.4)
    if both.sum() >= 2 and math.isfinite(found.degradation):
        xs = np.linspace(x[both].min(), x[both].max(), 2)
        intercept = y[both].mean() - found.degradation * x[both].mean()
        right.plot(xs, intercept + found.degradation * xs, color="red",
                   label=f"slope {found.degradation:.3g}")  # fmt: skip
        right.legend(loc="best", fontsize=8)
    right.set_xlabel("in-sample Sharpe (per bar)")
    right.set_ylabel("out-of-sample Sharpe (per bar)")
    right.set_title("degradation")
    fig.tight_layout()
    return fig


def plot_portfolio(portfolio: Portfolio) -> Any:
    """Correlation matrix of the members' returns and the combined equity."""
    plt = _pyplot()
    fig, (ax_corr, ax_eq) = plt.subplots(1, 2, figsize=(12, 5))
    corr = portfolio.correlation
    if len(corr):
        image = ax_corr.imshow(corr.to_numpy(), vmin=-1, vmax=1, cmap="coolwarm")
        labels = [str(c)[:6] for c in corr.columns]
        ax_corr.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax_corr.set_yticks(range(len(labels)), labels, fontsize=7)
        for (i, j), value in np.ndenumerate(corr.to_numpy()):
            ax_corr.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6)
        fig.colorbar(image, ax=ax_corr)
    ax_corr.set_title("correlation of members' returns")
    members = portfolio.member_equity
    if len(members.columns):
        starts = np.asarray(members.attrs.get("start") or members.iloc[0], dtype=float)
        normal = members.div(starts, axis=1)
        for column in normal.columns:
            line = _with_gaps(normal[column])
            ax_eq.plot(line.index, line.to_numpy(), lw=0.6, alpha=0.6)
    if len(portfolio.equity):
        line = _with_gaps(portfolio.equity / portfolio.cash)
        ax_eq.plot(line.index, line.to_numpy(), color="black", lw=1.5, label="portfolio")
        ax_eq.legend(loc="best")
        _date_axis(ax_eq)
    ax_eq.set_title("equity (members and combined, normalised)")
    fig.tight_layout()
    return fig


def plot_walkforward(windows: pd.DataFrame, equity: pd.Series, measure: str) -> Any:
    """Stitched out-of-sample equity (window boundaries marked) and in-sample vs
    out-of-sample scatter of the measure per window."""
    plt = _pyplot()
    fig, (ax_eq, ax_sc) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [2, 1]})
    line = _with_gaps(equity)
    ax_eq.plot(line.index, line.to_numpy(), color="tab:blue", lw=1)
    for start in windows["test_start"]:
        ax_eq.axvline(start, color="0.8", lw=0.6)
    ax_eq.set_title("stitched out-of-sample equity (window starts marked)")
    if len(equity):
        _date_axis(ax_eq)
    is_col, oos_col = f"is_{measure}", f"oos_{measure}"
    ax_sc.scatter(windows[is_col], windows[oos_col], color="tab:purple")
    for number, row in windows.iterrows():
        ax_sc.annotate(str(number), (row[is_col], row[oos_col]), fontsize=7)
    finite = pd.concat([windows[is_col], windows[oos_col]]).replace([np.inf, -np.inf], np.nan)
    finite = finite.dropna()
    if len(finite):
        lo, hi = float(finite.min()), float(finite.max())
        ax_sc.plot([lo, hi], [lo, hi], color="0.5", ls="--", lw=0.8, label="OOS = IS")
        ax_sc.legend(loc="best", fontsize=8)
    ax_sc.axhline(0, color="0.8", lw=0.6)
    ax_sc.set_xlabel(f"in-sample {measure}")
    ax_sc.set_ylabel(f"out-of-sample {measure}")
    ax_sc.set_title("in-sample vs out-of-sample")
    fig.tight_layout()
    return fig


# -- results ------------------------------------------------------------------------------------


@dataclass
class ExploreResult:
    """One exploration: ``table`` (one row per evaluated configuration), the ``portfolio``
    built from it, the ``space``, and ``meta`` (timing, engine, workers, filters)."""

    table: pd.DataFrame
    space: Space
    score_column: str = "score"
    evaluator: Evaluator | None = None
    portfolio: Portfolio | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    #: the last :meth:`overfit` (None before)
    overfitting: PBOResult | None = None

    def overfit(self, partitions: int = 16, top: int | None = None) -> PBOResult:
        """The probability of backtest overfitting of this search
        (:func:`~osmarkets.optimize.overfit.pbo`), on the per-bar returns of the
        configurations that passed the filters, or of the ``top`` best by score whatever the
        filters (what was really chosen among; at least 2 either way). The returns are
        recomputed from the evaluator (one vectorised run per 256 configurations); a return
        left undefined by a curve that reached zero counts as 0. Kept in :attr:`overfitting`
        for the summary and the report."""
        from .overfit import pbo

        if self.evaluator is None:
            raise ValueError("overfit: this result has no evaluator (it was loaded from a file)")
        table = self.table
        if top is None:
            pool = table[table["passed"]]
            if len(pool) < 2:
                raise ValueError(
                    f"overfit: {len(pool)} configuration(s) passed the filters, at least 2 are "
                    "needed; pass top=K to use the K best by score"
                )
        else:
            if isinstance(top, bool) or not isinstance(top, int) or top < 2:
                raise ValueError(f"overfit: top: expected an integer >= 2, got {top!r}")
            scores = table[self.score_column].to_numpy(dtype=float)
            pool = (
                table[np.isfinite(scores)]
                .sort_values(self.score_column, ascending=False, kind="stable")
                .head(top)
            )
        configs = [self.space.config_of(row) for row in pool.to_dict("records")]  # type: ignore[arg-type]
        returns = np.array(self.evaluator.returns(configs), dtype=float)  # a writable copy
        returns[~np.isfinite(returns)] = 0.0
        self.overfitting = pbo(returns, partitions)
        self.meta["pbo"] = self.overfitting.pbo
        return self.overfitting

    def to_pandas(self) -> pd.DataFrame:
        return self.table

    def save(self, path: str | os.PathLike) -> str:
        """Every evaluated configuration, to Parquet or CSV."""
        return save_table(self.table, path)

    def best(self, n: int = 10) -> pd.DataFrame:
        """The ``n`` best configurations that passed the filters."""
        passed = self.table[self.table["passed"]]
        return passed.sort_values(self.score_column, ascending=False, kind="stable").head(n)

    def __repr__(self) -> str:
        passed = int(self.table["passed"].sum()) if len(self.table) else 0
        members = len(self.portfolio.members) if self.portfolio is not None else 0
        return (f"<ExploreResult {len(self.table)} configurations, {passed} passed, "
                f"{members} in portfolio>")  # fmt: skip

    def summary(self) -> str:
        """A few lines for a terminal: counts, the best configurations, the portfolio."""
        lines = [repr(self)]
        if self.annualisation:
            lines.append(self.annualisation)
        seconds = self.meta.get("seconds")
        if seconds:
            rate = len(self.table) / seconds
            lines.append(f"{seconds:.2f} s, {rate:,.1f} configurations/s")
        reasons = self.table.loc[~self.table["passed"], "reason"].str.split().str[0]
        if len(reasons):
            counts = reasons.value_counts()
            lines.append("filtered out: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        cols = [*self.space.names, "sharpe", "total_return", "max_drawdown", "trades",
                self.score_column, "included"]  # fmt: skip
        best = self.best(10)
        if len(best):
            lines.append(best[list(dict.fromkeys(cols))].to_string(index=False))
        if self.portfolio is not None and self.portfolio.members:
            p = self.portfolio
            lines.append(f"portfolio: {len(p.members)} members, {p.measure} {p.value:.4g}")
        lines.extend(self._overfitting_lines())
        return "\n".join(lines)

    def _overfitting_lines(self) -> list[str]:
        """PBO (once :meth:`overfit` ran) and the DSR of the best configuration and of the
        portfolio's members, with the number of trials they were deflated by."""
        lines = []
        found = self.overfitting
        if found is not None:
            lines.append(
                f"overfitting: PBO {found.pbo:.3f} over {found.combinations:,} combinations of "
                f"{found.partitions} partitions (probability of loss {found.prob_loss:.3f}, "
                f"degradation {found.degradation:.3g})"
            )
        best = self.best(1)
        if len(best) and "dsr" in best:
            trials = self.meta.get("trials", len(self.table))
            dsr, psr = float(best["dsr"].iloc[0]), float(best["psr"].iloc[0])
            lines.append(
                f"best configuration: DSR {dsr:.3f}, PSR {psr:.3f} (deflated by {trials} trials)"
            )
        if self.portfolio is not None and self.portfolio.members and "dsr" in self.table:
            members = self.table.set_index("id").loc[list(self.portfolio.members), "dsr"]
            shown = ", ".join(f"{key} {value:.3f}" for key, value in members.items())
            lines.append(f"portfolio members' DSR: {shown}")
        return lines

    def plot(self, x: str | None = None, y: str | None = None) -> Any:
        """Exploration map of parameters ``x`` and ``y`` (default: the first two numeric
        parameters; with one parameter, score against it)."""
        names = [n for n in self.space.names if pd.api.types.is_numeric_dtype(self.table[n])]
        names = names or self.space.names
        x = x or names[0]
        if y is None and len(names) > 1:
            y = next(n for n in names if n != x)
        return plot_exploration(self.table, x, y, self.score_column,
                                f"{self.meta.get('brain', '')} exploration")  # fmt: skip

    def _overfitting_html(self) -> list[str]:
        """The report's "Overfitting" section: PBO with its logit histogram and the
        in-sample vs out-of-sample scatter (computing :meth:`overfit` if it was not, when it
        can), then the deflated Sharpe ratios and what they were deflated by."""
        parts = ["<h2>Overfitting</h2>"]
        if (
            self.overfitting is None
            and self.evaluator is not None
            and self.meta.get("overfit", True)
        ):
            try:
                self.overfit()
            except ValueError as exc:
                parts.append(_note(f"No probability of backtest overfitting: {exc}."))
        found = self.overfitting
        if found is not None:
            parts += [
                _stats(
                    {
                        "PBO": found.pbo,
                        "combinations": found.combinations,
                        "partitions": found.partitions,
                        "probability of loss": found.prob_loss,
                        "degradation (slope)": found.degradation,
                    }
                ),  # fmt: skip
                _note(
                    "PBO: the fraction of in-sample/out-of-sample splits where the best "
                    "in-sample configuration falls to or below the out-of-sample median "
                    "(0.5: the search picks no better than chance)."
                ),  # fmt: skip
                _img(lambda: plot_overfitting(found), "overfitting: logits and degradation"),
            ]
        trials = self.meta.get("trials", len(self.table))
        benchmark = self.meta.get("expected_max_sharpe", math.nan)
        parts.append(_note(
            f"Deflated Sharpe ratios (DSR) are deflated by {trials} trials: the Sharpe ratio the "
            f"best of them would reach by luck alone is {benchmark:.4g} per bar."
        ))  # fmt: skip
        rows = self.best(1)
        if self.portfolio is not None and self.portfolio.members:
            members = self.table[self.table["id"].isin(self.portfolio.members)]
            rows = pd.concat([rows, members]).drop_duplicates("id")
        if len(rows) and "dsr" in rows:
            columns = ["id", *self.space.names, "sharpe", "psr", "dsr", "included"]
            parts.append(_table(rows[[c for c in columns if c in rows]]))
        return parts

    @property
    def annualisation(self) -> str:
        """How the ratios of this exploration are annualised (one sentence)."""
        return str(self.meta.get("annualisation", ""))

    def to_html(self, path: str | os.PathLike) -> str:
        """One self-contained HTML report: summary (with the annualisation used), exploration
        map, portfolio (members, statistics, correlation matrix, combined equity), best
        configurations."""
        meta = {k: ("; ".join(map(str, v)) if isinstance(v, list) else v)
                for k, v in self.meta.items() if k != "annualisation"}  # fmt: skip
        parts = ["<h2>Summary</h2>", _stats(meta), _note(self.annualisation),
                 "<h2>Exploration map</h2>", _img(self.plot, "exploration map")]  # fmt: skip
        if self.portfolio is not None:
            p = self.portfolio
            parts += [f"<h2>Portfolio ({len(p.members)} members)</h2>", _table(p.to_pandas()),
                      "<h3>Portfolio statistics</h3>", _stats(p.stats),
                      "<h3>Correlation and combined equity</h3>",
                      _img(p.plot, "portfolio correlation and equity")]  # fmt: skip
        parts += self._overfitting_html()
        parts += ["<h2>Best configurations</h2>", _table(self.best(25), wide=True)]
        text = os.fspath(path)
        with open(text, "w", encoding="utf-8") as handle:
            handle.write(_page(f"Optimisation of {self.meta.get('brain', '')}", "\n".join(parts)))
        return text


@dataclass
class WalkForwardResult:
    """Walk-forward: ``windows`` (one row per window: bounds, members, in-sample and
    out-of-sample statistics, efficiency), ``equity`` (stitched out-of-sample equity),
    ``explorations`` (each window's :class:`ExploreResult`), ``efficiency`` (overall
    walk-forward efficiency), ``measure``, ``stats`` (of the stitched out-of-sample equity and
    the members' fills), ``periods_per_year`` and ``annualisation`` (how the ratios are
    annualised, one sentence)."""

    windows: pd.DataFrame
    equity: pd.Series
    explorations: list[ExploreResult]
    efficiency: float
    measure: str = "sharpe"
    stats: dict[str, Any] = field(default_factory=dict)
    periods_per_year: float = math.nan
    annualisation: str = ""

    def to_pandas(self) -> pd.DataFrame:
        return self.windows

    def configurations(self) -> pd.DataFrame:
        """Every configuration evaluated in every window (column ``window``)."""
        frames = [e.table.assign(window=k) for k, e in enumerate(self.explorations)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def save(self, path: str | os.PathLike) -> str:
        """Every configuration of every window, to Parquet or CSV."""
        return save_table(self.configurations(), path)

    def __repr__(self) -> str:
        return (f"<WalkForwardResult {len(self.windows)} windows efficiency="
                f"{self.efficiency:.3g}>")  # fmt: skip

    def summary(self) -> str:
        cols = [
            "train_start",
            "test_start",
            "test_end",
            "members",
            f"is_{self.measure}",
            f"oos_{self.measure}",
            "is_annual_return",
            "oos_annual_return",
            "efficiency",
        ]
        lines = [repr(self), self.windows[cols].to_string()]
        lines.append(f"out-of-sample: {_kv_line(self.stats)}")
        if self.annualisation:
            lines.append(self.annualisation)
        return "\n".join(lines)

    def plot(self) -> Any:
        return plot_walkforward(self.windows, self.equity, self.measure)

    def to_html(self, path: str | os.PathLike) -> str:
        """One self-contained HTML report: out-of-sample summary (with the annualisation used),
        stitched equity and IS vs OOS scatter, the windows and each window's exploration
        map."""
        summary = {"windows": len(self.windows), "efficiency": self.efficiency, **self.stats}
        parts = ["<h2>Out-of-sample summary</h2>", _stats(summary), _note(self.annualisation),
                 "<h2>Stitched equity and in-sample vs out-of-sample</h2>",
                 _img(self.plot, "walk-forward"), "<h2>Windows</h2>",
                 _table(self.windows, index=True, wide=True)]  # fmt: skip
        for k, exploration in enumerate(self.explorations):
            parts += [f"<h2>Window {k}: exploration</h2>", _img(exploration.plot, f"window {k}")]
        text = os.fspath(path)
        with open(text, "w", encoding="utf-8") as handle:
            handle.write(_page("Walk-forward", "\n".join(parts)))
        return text


def portfolio_html(portfolio: Portfolio, path: str | os.PathLike) -> str:
    parts = ["<h2>Members</h2>", _table(portfolio.to_pandas()),
             "<h2>Statistics</h2>", _stats(portfolio.stats), _note(portfolio.annualisation),
             "<h2>Correlation and combined equity</h2>",
             _img(portfolio.plot, "portfolio correlation and equity"),
             "<h2>Decisions</h2>", _table(portfolio.decisions, wide=True)]  # fmt: skip
    text = os.fspath(path)
    with open(text, "w", encoding="utf-8") as handle:
        handle.write(_page(f"Portfolio ({len(portfolio.members)} members)", "\n".join(parts)))
    return text


def _stats(items: Mapping[str, Any]) -> str:
    if not items:
        return "<p>(no statistics: no member)</p>"
    return f'<div class="table-wrap">{stats_html(items)}</div>'


def _kv_line(items: dict[str, Any]) -> str:
    keys = ("total_return", "annual_return", "sharpe", "max_drawdown", "trades", "win_rate")
    return ", ".join(f"{k} {format_stat(k, items[k])}" for k in keys if k in items)


__all__ = [
    "ExploreResult", "WalkForwardResult", "annualisation_note", "load_table", "plot_exploration",
    "plot_portfolio", "plot_walkforward", "save_table",
]  # fmt: skip
