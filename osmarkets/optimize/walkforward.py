"""Walk-forward simulation: optimise on a training window, trade the chosen portfolio on the
following test window untouched, move on, and stitch the out-of-sample results.

Windows (:func:`make_windows`) are positions in the bars: ``train``, ``test`` and ``step`` are
each a number of bars or a pandas offset/timedelta (``'30D'``, ``pd.DateOffset(months=1)``).
Rolling windows keep the training length and move by ``step`` (default ``test``); anchored
windows keep the first bar and grow by ``step``. A training window ends on the bar before its
test window starts and no bar of a test window is ever seen by the optimisation of that window
(a test checks it to the bar). The last test window may be shorter than ``test`` (at least two
bars).

In a test window each member runs with its chosen parameters on the test bars only, starting
flat with its share of the cash; indicators warm up inside the window, as they would after a
real re-optimisation. The stitched equity chains the windows' combined returns.

Walk-forward efficiency (Pardo): annualised out-of-sample return over annualised in-sample
return, per window and overall (the stitched out-of-sample annual return over the mean
in-sample annual return of the windows that had a portfolio); NaN when the in-sample return is
not positive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..backtest import stats as st
from ..brain import Brain
from .cpcv import CPCVResult, cpcv_walk_forward
from .evaluate import DATA_OPTIONS, Evaluator, prepare_data
from .pipeline import InProcessRunner, explore, member_run
from .portfolio import Activity, activity_stats, combine, measure_of
from .results import ExploreResult, WalkForwardResult, annualisation_note
from .space import Space

Length = int | str | pd.Timedelta | pd.DateOffset


@dataclass(frozen=True)
class Window:
    """Positions of one window's bars: ``train`` and ``test`` are ``slice(start, stop)``."""

    train: slice
    test: slice


def _advance(index: pd.DatetimeIndex, pos: int, length: Length, label: str) -> int:
    if isinstance(length, bool):
        raise ValueError(f"{label}: expected a number of bars or an offset, got {length!r}")
    if isinstance(length, int | np.integer):
        if length < 1:
            raise ValueError(f"{label}: expected at least 1 bar, got {length}")
        return pos + int(length)
    try:
        offset = pd.tseries.frequencies.to_offset(length) if isinstance(length, str) else length
    except ValueError:
        raise ValueError(f"{label}: not a pandas offset: {length!r}") from None
    if pos >= len(index):
        return len(index) + 1
    target = index[pos] + offset
    if target <= index[pos]:
        raise ValueError(f"{label}: expected a positive length, got {length!r}")
    return int(index.searchsorted(target, side="left"))


def make_windows(
    index: pd.DatetimeIndex,
    train: Length,
    test: Length,
    step: Length | None = None,
    anchored: bool = False,
) -> list[Window]:
    """The walk-forward windows over ``index`` (see the module documentation)."""
    n = len(index)
    step = test if step is None else step
    windows: list[Window] = []
    start = 0
    train_end = _advance(index, 0, train, "train")
    while True:
        if not anchored:
            train_end = _advance(index, start, train, "train")
        test_end = min(_advance(index, train_end, test, "test"), n)
        if train_end >= n or test_end - train_end < 2:
            break
        windows.append(Window(slice(start, train_end), slice(train_end, test_end)))
        if anchored:
            nxt = _advance(index, train_end, step, "step")
            if nxt <= train_end:
                raise ValueError("step: must move the window forward")
            train_end = nxt
        else:
            nxt = _advance(index, start, step, "step")
            if nxt <= start:
                raise ValueError("step: must move the window forward")
            start = nxt
    if not windows:
        raise ValueError(
            f"train/test: no complete window fits in {n} bars (train={train!r}, test={test!r})"
        )
    return windows


def walk_forward(
    brain_class: type[Brain],
    data: Any,
    space: Space | Mapping[str, Any],
    *,
    train: Length | None = None,
    test: Length | None = None,
    step: Length | None = None,
    anchored: bool = False,
    bsid: Any = None,
    measure: str = "sharpe",
    workers: int = 0,
    progress: Any = None,
    runner: Any = None,
    method: str = "windows",
    groups: int = 6,
    test_groups: int = 2,
    purge: int = 0,
    embargo: int = 0,
    **options: Any,
) -> WalkForwardResult | CPCVResult:
    """Walk-forward optimisation of ``brain_class`` over ``data``.

    Each window runs :func:`~osmarkets.optimize.explore` on its training bars (``options`` are
    explore's: ``samples``, ``grid``, ``constraints``, ``filters``, ``max_correlation``,
    ``cash``, ...) and trades the resulting portfolio on its test bars (``constraints`` are
    checked once, before the first window). ``progress(window, windows, done, total)`` is
    called as configurations complete. ``workers=N`` keeps the same N Backtester
    agents for every window; ``runner``: an existing runner (e.g. an
    :class:`~osmarkets.optimize.agents.AgentRunner` that remote workers join), not closed here.

    ``method``: ``'windows'`` (rolling, or anchored with ``anchored=True``; ``'rolling'`` and
    ``'anchored'`` say it in one word), or ``'cpcv'``: combinatorial purged cross-validation
    instead of windows (``groups``,
    ``test_groups``, ``purge`` and ``embargo`` bars; ``train``, ``test``, ``step`` and
    ``anchored`` are not used): a :class:`~osmarkets.optimize.cpcv.CPCVResult` with the
    distribution of out-of-sample Sharpe ratios over its paths (see
    :mod:`osmarkets.optimize.cpcv`).
    """
    if method == "cpcv":
        return cpcv_walk_forward(
            brain_class, data, space, groups=groups, test_groups=test_groups, purge=purge,
            embargo=embargo, bsid=bsid, workers=workers, runner=runner,
            progress=None if progress is None else (lambda d, t: progress(0, 1, d, t)),
            **options,
        )  # fmt: skip
    if method not in ("windows", "rolling", "anchored"):
        raise ValueError(
            f"method: expected 'windows' ('rolling' or 'anchored') or 'cpcv', got {method!r}"
        )
    anchored = anchored or method == "anchored"
    if train is None or test is None:
        raise ValueError("train/test: a walk-forward by windows needs both lengths")
    given = dict(options.pop("data_options", None) or {})
    given.update({k: options.pop(k) for k in DATA_OPTIONS if k in options})
    frame, bsid, data_options = prepare_data(data, bsid, given)
    index = pd.DatetimeIndex(frame.index)
    windows = make_windows(index, train, test, step, anchored)
    space = Space.coerce(space)
    constraints = options.pop("constraints", None)
    if constraints:  # checked once, before any window runs
        space = space.with_constraints(constraints)
    ppy = st.infer_periods_per_year(index)
    cash = float(options.get("cash", 100_000.0))
    names = ("cash", "fill", "spread", "slippage", "commission", "history", "engine", "params")
    settings = {k: options[k] for k in names if k in options}
    settings["data_options"] = data_options
    own_runner = runner is None
    rows: list[dict[str, Any]] = []
    explorations: list[ExploreResult] = []
    pieces: list[np.ndarray] = []
    activities: list[list[tuple[str, Activity, float]]] = []  # per window: (key, run, weight)
    try:
        for number, window in enumerate(windows):
            train_frame = frame.iloc[window.train]
            test_frame = frame.iloc[window.test]
            evaluator = Evaluator(brain_class, train_frame, bsid,
                                  filters=options.get("filters"),
                                  score=options.get("score", "sharpe"), **settings)  # fmt: skip
            if runner is None:
                if workers:
                    from .agents import AgentRunner

                    runner = AgentRunner(evaluator, workers=workers,
                                         batch=options.get("batch") or 16,
                                         host=options.get("host", "127.0.0.1"),
                                         requeue_after=options.get("requeue_after"))  # fmt: skip
                else:
                    runner = InProcessRunner(evaluator, options.get("batch") or 64)

            def report(done: int, total: int, number: int = number) -> None:
                if progress is not None:
                    progress(number, len(windows), done, total)

            explore_options = {k: v for k, v in options.items()
                               if k not in ("batch", "host", "requeue_after")}  # fmt: skip
            explore_options["data_options"] = data_options
            exploration = explore(brain_class, train_frame, space, bsid=bsid, runner=runner,
                                  progress=report, measure=measure, workers=workers,
                                  **explore_options)  # fmt: skip
            explorations.append(exploration)
            portfolio = exploration.portfolio
            assert portfolio is not None
            members = portfolio.members
            test_eval = Evaluator(brain_class, test_frame, bsid, **settings)
            runs = {m: member_run(test_eval, portfolio.params[m]) for m in members}
            activities.append([(f"w{number}:{m}", runs[m][1], float(portfolio.weights[m]))
                               for m in members])  # fmt: skip
            if members:
                curves = pd.DataFrame({m: runs[m][0] for m in members})
                curves.attrs["start"] = [cash] * len(members)
                oos = combine(curves, portfolio.weights.to_numpy(), cash)
            else:
                oos = pd.Series(cash, index=test_frame.index, name="equity", dtype=float)
            is_equity = portfolio.equity
            pieces.append(oos.to_numpy() / cash)
            is_annual = st.annual_return(is_equity, ppy, cash) if members else math.nan
            is_value = measure_of(is_equity, measure, ppy, cash) if members else math.nan
            oos_annual = st.annual_return(oos, ppy, cash)
            rows.append({
                "train_start": index[window.train.start],
                "train_end": index[window.train.stop - 1],
                "test_start": index[window.test.start],
                "test_end": index[window.test.stop - 1],
                "train_bars": window.train.stop - window.train.start,
                "test_bars": window.test.stop - window.test.start,
                "configurations": len(exploration.table),
                "passed": int(exploration.table["passed"].sum()),
                "members": len(members),
                f"is_{measure}": is_value,
                f"oos_{measure}": measure_of(oos, measure, ppy, cash),
                "is_annual_return": is_annual,
                "oos_annual_return": oos_annual,
                "oos_total_return": st.total_return(oos, cash),
                "oos_trades": sum(len(run.trades) for _, run, _ in activities[-1]),
                "efficiency": _efficiency(oos_annual, is_annual),
                "params": [portfolio.params[m] for m in members],
            })  # fmt: skip
    finally:
        if own_runner and runner is not None:
            runner.close()
    table = pd.DataFrame(rows)
    growth = _stitch(pieces)
    test_index = index[np.concatenate([np.arange(w.test.start, w.test.stop) for w in windows])]
    equity = pd.Series(cash * growth, index=test_index, name="equity")
    # each window's members traded on a share of the stitched account's value at its start
    levels = np.r_[1.0, np.cumprod([p[-1] if len(p) else 1.0 for p in pieces])[:-1]]
    parts = [(key, run, weight * float(level))
             for level, window_runs in zip(levels, activities, strict=True)
             for key, run, weight in window_runs]  # fmt: skip
    summary = activity_stats(equity, parts, cash=cash, periods_per_year=ppy)
    usable = table.loc[table["members"] > 0, "is_annual_return"]
    overall = _efficiency(
        summary["annual_return"], float(usable.mean()) if len(usable) else math.nan
    )
    note = annualisation_note(index, ppy, bsid.timeframe.code)
    return WalkForwardResult(table, equity, explorations, overall, measure, summary, ppy, note)


def _stitch(pieces: list[np.ndarray]) -> np.ndarray:
    """Chain each window's growth factors (equity / cash) into one curve."""
    out = []
    level = 1.0
    for growth in pieces:
        out.append(level * growth)
        if len(growth):
            level *= float(growth[-1])
    return np.concatenate(out) if out else np.empty(0)


def _efficiency(oos: float, is_: float) -> float:
    if math.isnan(oos) or math.isnan(is_) or not is_ > 0:
        return math.nan
    return float(oos / is_)


__all__ = ["Window", "make_windows", "walk_forward"]
