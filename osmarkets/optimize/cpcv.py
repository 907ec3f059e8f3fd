"""Walk-forward by combinatorial purged cross-validation (CPCV; López de Prado, *Advances in
Financial Machine Learning*, 2018, ch. 12): ``walk_forward(..., method='cpcv')``.

Rolling windows give one out-of-sample path, so one number whose luck cannot be told apart
from skill. CPCV cuts the bars into ``groups`` contiguous groups; for every choice of
``test_groups`` of them as the test set (C(groups, test_groups) splits) the configuration is
chosen on the other groups only, then judged on the test groups. Each group is tested by
φ = C(groups − 1, test_groups − 1) splits, which stitch into φ complete out-of-sample paths
(:func:`~osmarkets.optimize.overfit.cpcv_paths`): a distribution of out-of-sample Sharpe ratios.

How a split chooses, here: every configuration of the search is run once on all the bars (a
strategy's return on a bar depends only on the bars before it, so the bars after a test group
do not change its returns there); a split picks the configuration with the best per-period
Sharpe ratio on its training bars, leaving out ``purge`` bars before each test block and
``embargo`` bars after it (what remembers the test block: positions held across its edges,
serially correlated returns). Filters and the portfolio are not applied: both would be judged
on all the bars, test bars included. The path's return on a bar is the return of the
configuration chosen by the split that tested the bar's group.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..backtest import stats as st
from ..brain import Brain
from .overfit import _group_bounds, cpcv_paths, cpcv_splits, return_moments
from .results import _img, _note, _page, _stats, _table, save_table
from .space import Space


@dataclass
class CPCVResult:
    """``splits`` (one row per split: its test groups, the chosen configuration, its Sharpe
    ratio in-sample and out-of-sample, annualised), ``paths`` (one row per path: annualised
    Sharpe ratio, total and annual return of the stitched out-of-sample returns),
    ``path_returns`` (bars × paths), the search's ``exploration`` (every configuration, run on
    all the bars), ``periods_per_year`` and ``annualisation``."""

    splits: pd.DataFrame
    paths: pd.DataFrame
    path_returns: pd.DataFrame
    exploration: Any
    groups: int
    test_groups: int
    purge: int
    embargo: int
    periods_per_year: float = math.nan
    annualisation: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    def to_pandas(self) -> pd.DataFrame:
        return self.paths

    def save(self, path: str | os.PathLike) -> str:
        """Every configuration of the search, to Parquet or CSV."""
        return save_table(self.exploration.table, path)

    def __repr__(self) -> str:
        median = self.stats.get("median_sharpe", math.nan)
        return (f"<CPCVResult {len(self.splits)} splits, {len(self.paths)} paths, "
                f"median out-of-sample sharpe {median:.3g}>")  # fmt: skip

    def summary(self) -> str:
        lines = [
            repr(self),
            f"{self.groups} groups, {self.test_groups} tested per split, purge {self.purge} "
            f"and embargo {self.embargo} bars",
            self.splits.drop(columns=["params"]).to_string(index=False),
            self.paths.to_string(),
            "out-of-sample Sharpe over the paths: "
            + ", ".join(f"{k} {v:.4g}" for k, v in self.stats.items()),
        ]
        if self.annualisation:
            lines.append(self.annualisation)
        return "\n".join(lines)

    def plot(self) -> Any:
        """Each path's out-of-sample equity (growth of 1) and the distribution of their Sharpe
        ratios."""
        from ..backtest.result import _pyplot

        plt = _pyplot()
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        growth = (1.0 + self.path_returns.fillna(0.0)).cumprod()
        for column in growth:
            left.plot(growth.index, growth[column], linewidth=0.8, label=str(column))
        left.set_title("out-of-sample paths (growth of 1)")
        left.legend(loc="best", fontsize=7)
        right.hist(self.paths["sharpe"].dropna(), bins=max(5, len(self.paths)))
        right.set_xlabel("annualised Sharpe ratio")
        right.set_title("out-of-sample Sharpe over the paths")
        fig.tight_layout()
        return fig

    def to_html(self, path: str | os.PathLike) -> str:
        """One self-contained HTML report: the distribution over the paths, the paths and
        splits, the annualisation used."""
        parts = ["<h2>Out-of-sample Sharpe over the paths</h2>", _stats(self.stats),
                 _note(self.annualisation), _img(self.plot, "CPCV paths"),
                 "<h2>Paths</h2>", _table(self.paths, index=True),
                 "<h2>Splits</h2>", _table(self.splits, wide=True)]  # fmt: skip
        text = os.fspath(path)
        with open(text, "w", encoding="utf-8") as handle:
            handle.write(_page("Walk-forward by CPCV", "\n".join(parts)))
        return text


def cpcv_walk_forward(
    brain_class: type[Brain],
    data: Any,
    space: Space | Mapping[str, Any],
    *,
    groups: int = 6,
    test_groups: int = 2,
    purge: int = 0,
    embargo: int = 0,
    **options: Any,
) -> CPCVResult:
    """CPCV walk-forward (see the module documentation); ``options`` are
    :func:`~osmarkets.optimize.explore`'s (generation, ``cash``, broker and data options;
    its filters and portfolio are not used to choose)."""
    from .pipeline import explore

    if options.get("search") in ("tpe", "nsga2") or options.get("refine"):
        raise ValueError(
            "cpcv: a model search or refinement chooses its configurations from scores on "
            "every bar, test groups included: use search='random' or 'grid'"
        )
    for name in ("filters", "max_correlation", "max_members", "candidates", "smooth"):
        options.pop(name, None)
    exploration = explore(brain_class, data, space, portfolio=False, **options)
    evaluator = exploration.evaluator
    assert evaluator is not None
    table = exploration.table
    configs = [exploration.space.config_of(row) for row in table.to_dict("records")]  # type: ignore[arg-type]
    returns = np.array(evaluator.returns(configs), dtype=float)
    returns[~np.isfinite(returns)] = 0.0
    n = len(returns)
    index = pd.DatetimeIndex(evaluator.frame.index)
    ppy = evaluator.periods_per_year
    root = math.sqrt(ppy) if ppy > 0 else math.nan
    splits = list(cpcv_splits(n, groups, test_groups, purge, embargo))
    chosen: list[int] = []
    rows = []
    tests = itertools.combinations(range(groups), test_groups)  # cpcv_splits' order
    for number, ((train, test), tested) in enumerate(zip(splits, tests, strict=True)):
        if len(train) < 2:
            raise ValueError(
                f"purge/embargo: split {number} keeps {len(train)} training bar(s) of {n} "
                "(at least 2 are needed to choose): use fewer groups or shorter purge/embargo"
            )
        is_sharpe = _sharpe(returns[train])
        best = int(np.nanargmax(is_sharpe)) if np.isfinite(is_sharpe).any() else 0
        chosen.append(best)
        oos = _sharpe(returns[test, best : best + 1])[0]
        rows.append({"split": number, "test_groups": list(tested), "train_bars": len(train),
                     "config": table["id"].iloc[best], "params": configs[best],
                     "is_sharpe": is_sharpe[best] * root, "oos_sharpe": oos * root})  # fmt: skip
    bounds = _group_bounds(n, groups)
    series = {}
    for number, path in enumerate(cpcv_paths(n, groups, test_groups, purge, embargo)):
        values = np.empty(n)
        for split, group in path:
            start, stop = bounds[group], bounds[group + 1]
            values[start:stop] = returns[start:stop, chosen[split]]
        series[f"path {number}"] = values
    path_returns = pd.DataFrame(series, index=index)
    cash = evaluator.cash
    summary = []
    for column in path_returns:
        path_return = path_returns[column]
        equity = pd.Series(cash * np.cumprod(1.0 + path_return.to_numpy()), index=index)
        summary.append({"path": column, "sharpe": st.sharpe(path_return, ppy),
                        "total_return": st.total_return(equity, cash),
                        "annual_return": st.annual_return(equity, ppy, cash)})  # fmt: skip
    paths = pd.DataFrame(summary).set_index("path")
    sharpes = paths["sharpe"].to_numpy(dtype=float)
    finite = sharpes[np.isfinite(sharpes)]
    stats = {
        "paths": len(paths), "splits": len(splits),
        "mean_sharpe": float(finite.mean()) if len(finite) else math.nan,
        "median_sharpe": float(np.median(finite)) if len(finite) else math.nan,
        "std_sharpe": float(finite.std(ddof=1)) if len(finite) > 1 else math.nan,
        "min_sharpe": float(finite.min()) if len(finite) else math.nan,
        "negative_paths": float((finite < 0).mean()) if len(finite) else math.nan,
    }  # fmt: skip
    return CPCVResult(pd.DataFrame(rows), paths, path_returns, exploration, groups, test_groups,
                      purge, embargo, ppy, exploration.annualisation, stats)  # fmt: skip


def _sharpe(returns: np.ndarray) -> np.ndarray:
    """Per-period Sharpe ratio of each column (bars x configurations), as the table's."""
    return return_moments(returns.T)["period_sharpe"]


__all__ = ["CPCVResult", "cpcv_walk_forward"]
